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

/* ------------------------------------------------------------ check */

/*
 * tallyctl check reads every table in pages of STORE__CHECK_PAGE rows (or items) by key, each
 * page one statement, so a count and the rows it must equal are read from one snapshot; the
 * adapters run the queries (store_ops.check) and store__check_row judges every row, so both
 * find the same problems. Each part is one query of each adapter's, answering STORE__TEXTS
 * texts then up to STORE__CHECK_INTS integers (t: texts, i: integers; "=" marks what the
 * query computes rather than reads from the table), and what holds for every row of it:
 *
 *   items       interactive: t0 biz; i0 id, i1 biz_id, i2..i4 read_cnt, like_cnt,
 *               collect_cnt, i5 ctime, i6 utime, i7 = active likes, i8 = active
 *               collections. A valid biz and id; counts and times >= 0; like_cnt and
 *               collect_cnt equal to the item's active rows (store.h: a count moves only
 *               with its row; tallyctl recount --fix restores it).
 *   likes       user_like: t0 biz; i0 id, i1 uid, i2 biz_id, i3 status, i4 ctime, i5 utime,
 *               i6 = the item has an interactive row. A valid biz, id and uid, status 0 or
 *               1, times >= 0, and an item row (every write and import creates it).
 *   collections user_collection: as likes, and i7 cid, a valid id.
 *   hours       interactive_hour: t0 biz; i0 biz_id, i1 hour, i2..i4 read_cnt, like_cnt,
 *               collect_cnt. A valid biz and id, an hour in 0..HOUR_MAX, read_cnt >= 0
 *               (like_cnt and collect_cnt are < 0 in an hour that took more unlikes than
 *               likes).
 *   windows     interactive_window: t0 biz; i0 win, i1 biz_id, i2..i4 the sums, i5..i7 =
 *               the sums of the item's hourly rows the window holds (hour >= its mark; NULL:
 *               none). A valid biz and id, a window's length (1, 24, 168, 720), and sums
 *               equal to those of its hours (store.h, "Trending windows").
 *   held        interactive_window again, per item with hourly rows and per window: t0 biz;
 *               i0 biz_id, i1 win, i2 = the window has a row for the item, i3..i5 = the sums
 *               of the item's hours it holds. No row stands for sums of 0: a missing row is
 *               a problem only when its hours do not sum to 0.
 *   marks       window_mark: i0 win, i1 hour. A window's length, an hour in 0..HOUR_MAX.
 *               (A missing mark is never seen: opening the store, as check does, adds it.)
 *   queue       transition_queue (MariaDB): t0 biz; i0 id, i1 biz_id, i2 hour, i3 like_cnt,
 *               i4 collect_cnt. A valid biz and id, an hour in 0..HOUR_MAX, and one
 *               transition: one of the two counts 1 or -1, the other 0.
 *   idem, seen  read_idem, read_seen: i0 k, i1 ms. ms >= 0 (an event's time).
 *   dead        read_dead_letter: t0 biz, t1 topic, t2 error; i0 id, i1 biz_id, i2 uid, i3 ts,
 *               i4 part, i5 msg_offset, i6 ctime. A valid biz and id; uid, ts, ctime >= 0;
 *               topic, part, msg_offset NULL (the local bus) or a topic of 1..255 printable
 *               ASCII characters, a partition and an offset >= 0; an error of 0..255.
 *   offsets     read_offsets: t0 topic; i0 part, i1 next_offset, i2 utime, i3 event_ms. A
 *               topic of 1..255 printable ASCII characters, the rest >= 0.
 *   versions    tally_schema (MariaDB): i0 version. 1..the build's schema version.
 *
 * The ranges are those tallyctl export and import hold records to (ctl/data.c,
 * check_record). Every column a part reads from its table must be there (not NULL, but
 * the dead letters' topic, part and msg_offset) and, on SQLite, hold its declared kind (an
 * integer column an integer, a text column text), which SQLite does not enforce. Times are
 * not compared with each other or with the clock: clocks move back, and imports merge.
 */
enum store__check_part {
    STORE__CHECK_ITEMS,
    STORE__CHECK_LIKES,
    STORE__CHECK_COLLECTIONS,
    STORE__CHECK_HOURS,
    STORE__CHECK_WINDOWS,
    STORE__CHECK_HELD,
    STORE__CHECK_MARKS,
    STORE__CHECK_QUEUE,
    STORE__CHECK_IDEM,
    STORE__CHECK_SEEN,
    STORE__CHECK_DEAD,
    STORE__CHECK_OFFSETS,
    STORE__CHECK_VERSIONS,
    STORE__CHECK_PARTS
};
#define STORE__CHECK_INTS 9
#define STORE__CHECK_PAGE 1000

/*
 * A part's query: head, then on the first page "1 = 1" and on the next ones after, which
 * compares the table's key with the last row read (SQLite: a row value, read from the key's
 * index; MariaDB: spelled out with OR, as the export's), then tail, whose last ? is the page
 * size. after's ? are that row's columns params names, in order: '0'..'2' a text, 'a' + i
 * integer i. [0] is SQLite's, [1] MariaDB's; NULL: the store has no such table.
 */
struct store__check_sql {
    enum store__check_part part;
    const char *head, *tail;
    const char *after[2], *params[2];
};
extern const struct store__check_sql store__check_sql[STORE__CHECK_PARTS];

/* One row of a part's query. Column c of the query is text c (c < STORE__TEXTS) or integer
 * c - STORE__TEXTS; the integers a query does not answer are NULL. */
struct store__check_row {
    char text[STORE__TEXTS][RECORD_TEXT_MAX + 2]; /* not NUL-terminated; cut to fit */
    size_t len[STORE__TEXTS];                     /* the whole value's length */
    bool text_null[STORE__TEXTS];
    int64_t v[STORE__CHECK_INTS];
    bool null[STORE__CHECK_INTS];
    /* SQLite only: a value of another kind than its column's (a text in an integer column,
     * a blob in a text one), read here converted. */
    bool not_text[STORE__TEXTS], not_int[STORE__CHECK_INTS];
};

/*
 * A check under way: the adapter calls store__check_part before each part's first page,
 * store__check_row for each row, store__check_fail when a part cannot be read to its end,
 * store__check_done at the end. A table's line goes to out once its last part is done.
 */
struct store__check {
    const struct store_check_out *out;
    int schema_version; /* the versions' upper bound (MariaDB's tally_schema) */
    const char *table;  /* the table being read, NULL before the first */
    int64_t rows, problems;
    char *error; /* why the table was not read to its end (first reason); owned */
};

void store__check_init(struct store__check *c, const struct store_check_out *out,
                       int schema_version);
/* The table of a part, as the problem lines name it. */
const char *store__check_table(enum store__check_part p);
void store__check_part(struct store__check *c, enum store__check_part p);
void store__check_row(struct store__check *c, enum store__check_part p,
                      const struct store__check_row *row);
/* Reports a page read (out->progress). */
void store__check_page(struct store__check *c);
void store__check_fail(struct store__check *c, const char *why);
/* Reports the last table and frees what c holds. */
void store__check_done(struct store__check *c);

#endif
