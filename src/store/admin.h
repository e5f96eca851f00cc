/*
 * admin.h - what both store adapters share for tallyctl's bulk work
 * (store.h, "administration"). Internal to src/store/.
 *
 * The SQL here is plain enough to run unchanged on SQLite and MariaDB; the
 * upserts differ between the two and live in each adapter, and so do the
 * page queries of the tables keyed on several columns (SQLite uses its index
 * for a row value "(a, b) > (?, ?)", MariaDB only for the same test spelled
 * out with OR).
 */
#ifndef TALLY_STORE_ADMIN_H
#define TALLY_STORE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/record.h"
#include "store/store.h"

struct strbuf;

#define STORE_EXPORT_PAGE 1000 /* rows per page of an export */

/*
 * Items, likes and collections: one page of a table after row id ?, up to ? rows,
 * in the columns id, biz, biz_id, uid, cid, status, read_cnt, like_cnt,
 * collect_cnt, ctime, utime.
 */
extern const char *const store__export_sql[RECORD_INTERACTIVE_COUNT];
#define STORE__EXPORT_COLUMNS 11

/* Items after row id ?, up to ?: id, biz, biz_id, like_cnt, collect_cnt, active likes,
 * active collections (index user_like_item / user_collection_item). */
#define STORE__SCAN_SQL                                                                    \
    "SELECT i.id, i.biz, i.biz_id, i.read_cnt, i.like_cnt, i.collect_cnt,"                 \
    " (SELECT COUNT(*) FROM user_like l"                                                   \
    "   WHERE l.biz = i.biz AND l.biz_id = i.biz_id AND l.status = 1),"                    \
    " (SELECT COUNT(*) FROM user_collection c"                                             \
    "   WHERE c.biz = i.biz AND c.biz_id = i.biz_id AND c.status = 1)"                     \
    " FROM interactive i WHERE i.id > ? ORDER BY i.id LIMIT ?"

/*
 * Every other table is read by a query of each adapter's that answers the same
 * columns: STORE__TEXTS texts, then STORE__INTS integers, any of them NULL.
 * What each column is, per record type (t: texts, i: integers):
 *   mark         i0 win, i1 hour
 *   hour         t0 biz; i0 biz_id, i1 hour, i2..i4 read_cnt, like_cnt, collect_cnt
 *   window       t0 biz; i0 win, i1 biz_id, i2..i4 read_cnt, like_cnt, collect_cnt
 *   memo         i0 k, i1 ms
 *   dead_letter  t0 biz, t1 topic, t2 error; i0 biz_id, i1 uid, i2 ts, i3 part,
 *                i4 msg_offset, i5 ctime, i6 identical rows, i7 the first one's id
 *   offset       t0 topic; i0 part, i1 next_offset, i2 utime
 * Each page starts after the last row's key (struct store__key): mark after a
 * (win), hour after (s, a, b) = (biz, biz_id, hour), window after (biz, win,
 * biz_id), memo at a (k: INT64_MIN is a key too), dead_letter after a (the
 * first id), offset after (s, a) = (topic, part).
 */
#define STORE__TEXTS 3
#define STORE__INTS  8
struct store__row {
    char text[STORE__TEXTS][RECORD_TEXT_MAX + 2]; /* one byte more: a longer value shows */
    size_t len[STORE__TEXTS];
    bool text_null[STORE__TEXTS];
    int64_t v[STORE__INTS];
    bool null[STORE__INTS];
};

struct store__key {
    char s[RECORD_TEXT_MAX + 2];
    int64_t a, b;
    bool done; /* the last key there can be was read */
};

/* Where every table's first page starts: before any key. */
void store__key_start(struct store__key *k);

/*
 * One row of type's query (memo: of memo table m) into *r, moving *k past it.
 * Returns 0, or TALLY_EINTERNAL (logged) for a row no tallyd wrote: a biz, a
 * window, a text or a NULL it cannot have.
 */
int store__export_row(enum record_type type, int m, const struct store__row *row,
                      struct record *r, struct store__key *k);

/* Dead letters, identical rows grouped, in the column layout above: the export's pages
 * (after the first id ?, up to ? groups). */
#define STORE__DEAD_COLUMNS                                                              \
    "SELECT biz, topic, error, biz_id, uid, ts, part, msg_offset, ctime, count(*), min(id)" \
    " FROM read_dead_letter"
#define STORE__DEAD_GROUP " GROUP BY biz, biz_id, uid, ts, topic, part, msg_offset, error, ctime"
#define STORE__DEAD_EXPORT_SQL \
    STORE__DEAD_COLUMNS STORE__DEAD_GROUP " HAVING min(id) > ? ORDER BY min(id) LIMIT ?"
/* The same groups among the rows whose ctime is one of n values (n placeholders). */
void store__dead_lookup_sql(struct strbuf *sql, size_t n);
/* Orders dead letters by every column, NULL first: identical rows compare equal. */
int store__dead_cmp(const struct record *a, const struct record *b);

/* An item an import touches, with the times to create it with if the store lacks it. */
struct store__touched {
    struct item item;
    int64_t ctime, utime;
};

/*
 * The distinct items of the item, like and collection records among r[0, n),
 * sorted by item_cmp, each with the earliest ctime and latest utime among its
 * records. *out is allocated (caller frees); returns how many.
 */
size_t store__touched(const struct record *r, size_t n, struct store__touched **out);

/*
 * The hour records among r[0, n) as rows (key: the hour), sorted by item then
 * hour, one per (item, hour): two records of one hour count as one with the
 * larger of each count. *out is allocated (caller frees); returns how many.
 */
size_t store__hour_rows(const struct record *r, size_t n, struct store_row **out);
/* "SELECT biz, biz_id, hour, read_cnt, like_cnt, collect_cnt FROM interactive_hour"
 * of n (biz, biz_id, hour) keys, 3n placeholders in that order. */
void store__hour_lookup_sql(struct strbuf *sql, size_t n);
/*
 * Turns rows[0, n) (from store__hour_rows) into what to add to each hourly row
 * so that it follows the import's rule: a row the table lacks is added as it
 * is; one it has (in stored[0, ns), any order, sorted here) takes the larger
 * of each count. Rows that would not change are dropped; *left: how many are
 * left, still sorted. TALLY_EREJECTED when a difference passes 2^63-1.
 */
int store__hour_deltas(struct store_row *rows, size_t n, struct store_row *stored, size_t ns,
                       size_t *left);

#endif
