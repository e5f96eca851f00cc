/*
 * store.h - the store port: where counts and like/collection rows live.
 *
 * The store is the source of truth. Every adapter (sqlite.c, mysql.c)
 * embeds struct store as its first member and fills in a struct store_ops;
 * callers use only the inline wrappers below, so the service layer never
 * knows which database it talks to (the shape of Redis's ConnectionType or
 * SQLite's sqlite3_io_methods).
 *
 * Contract every adapter keeps:
 *   - A count moves only on a real transition (like 0->1, unlike 1->0,
 *     first collection, uncollection), in the same transaction as the row.
 *   - Rows are soft-deleted (status 0/1), never deleted, but by erase_rows
 *     (a user's erasure), which lowers the counts of the active ones it
 *     deletes in the same transaction.
 *   - apply_reads applies all deltas and all offsets in one transaction, or
 *     nothing; an offset whose expected value does not match makes the whole
 *     call fail with TALLY_ESTALE.
 *   - Every function may be called from any thread at the same time; the
 *     adapter owns its connections and their locking.
 *   - A counter never passes 2^63-1: a write that would is refused whole
 *     (never wrapped, never turned into a float).
 *   - Errors: TALLY_EUNAVAIL when the database cannot take the write now
 *     (unreachable, locked, deadlocked, disk full, read-only: callers may
 *     retry); TALLY_EREJECTED when it refuses this data for good (a counter
 *     out of range, a constraint, a damaged page: retrying the same call
 *     cannot succeed); TALLY_EINTERNAL otherwise.
 */
#ifndef TALLY_STORE_H
#define TALLY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/item.h"
#include "model/record.h"

/* Position in a user's list: entries strictly older than (time, id). */
struct list_cursor {
    int64_t time;
    int64_t id;
};
#define LIST_CURSOR_START    \
    {                        \
        INT64_MAX, INT64_MAX \
    }

/* A merged batch of reads for one item (hour 0), or for one item in one hour. */
struct read_delta {
    struct item item;
    int64_t n;
    int64_t hour; /* hours since the epoch (UTC); 0 in the per-item totals */
};

/*
 * Trending windows: every count is also kept per hour (interactive_hour), and
 * each window keeps a rolling per-item sum of its last `hours` hours
 * (interactive_window) that ingest adds to and store_sweep_windows() subtracts
 * expiring hours from, so a windowed top list is one index range scan.
 */
enum window { WINDOW_1H, WINDOW_24H, WINDOW_7D, WINDOW_30D, WINDOW_COUNT };
extern const int window_hours[WINDOW_COUNT]; /* 1, 24, 168, 720 */
extern const char *const window_names[WINDOW_COUNT]; /* "1h", "24h", "7d", "30d" */
#define WINDOW_MAX_HOURS 720 /* the longest window: retention may not be shorter */
#define HOUR_MS          3600000LL

/* One point of an item's history: the hour (hours since the epoch) and its count. */
struct hour_count {
    int64_t hour;
    int64_t n;
};

/*
 * What the read consumer remembers to decide whether a read counts (see readcount.c):
 * MEMO_IDEM, per idempotency key, when its first read was (read_idem); MEMO_SEEN, per
 * (uid or viewer, item), when their last counted read was (read_seen). key is a hash64
 * (stored as a signed 64-bit integer), ms an event time; rows expire by ms.
 */
enum read_memo { MEMO_IDEM, MEMO_SEEN, MEMO_COUNT };
struct memo {
    int64_t key;
    int64_t ms; /* INT64_MIN: not remembered */
};

/*
 * One read batch as the consumer commits it: everything in one transaction.
 * d: per-item deltas, sorted by item. hours: per-(item, hour) deltas, sorted by
 * (item, hour); those older than retention_hours before now are not kept (they
 * still count in d). offs: the bus offsets of topic to move, compare-and-set.
 */
struct read_batch {
    const struct read_delta *d;
    size_t n;
    const struct read_delta *hours;
    size_t nhours;
    const char *topic;
    const struct store_offset *offs;
    size_t noffs;
    int64_t now_ms;
    int64_t retention_hours;
    /*
     * When decide is set, the store first looks up lookup[m][0, nlookup[m]) (keys sorted,
     * unique) in its memo tables, with a locking read, setting each ms; then calls
     * decide(b) inside the same transaction, which sets d/n, hours/nhours and
     * write/nwrite from what it found; then writes all of it. A transaction the store
     * retries looks up and decides again, from the same state, so it decides the same.
     */
    struct memo *lookup[MEMO_COUNT];
    size_t nlookup[MEMO_COUNT];
    int (*decide)(struct read_batch *b);
    void *ctx;
    const struct memo *write[MEMO_COUNT]; /* upserted: ms replaced */
    size_t nwrite[MEMO_COUNT];
};

/*
 * Where a read consumer stands in one partition: the batch being applied
 * started at `expect` (the stored value, or -1 when none is stored yet) and
 * ends before `next`.
 */
struct store_offset {
    int32_t partition;
    int64_t expect;
    int64_t next;
    uint32_t gen; /* the incarnation that read the range (bus.h); the store ignores it */
    /* The newest event time of the range (0: none): the stored event_ms of the partition
     * is raised to it, for memo expiry (store_events_floor). */
    int64_t event_ms;
};

/*
 * For adapters: one row of counts to add to an hourly or window row. key is
 * the hour (interactive_hour) or the window's length in hours (interactive_window).
 */
struct store_row {
    struct item item;
    int64_t key;
    int64_t v[FIELD_COUNT];
};

/*
 * For adapters: sums rows[0, n) (sorted by item, key = hour) into one row per
 * window and item, keyed by the window's length in hours, for every window w
 * that still holds the row's hour (hour >= mark[w]); out has room for
 * n * WINDOW_COUNT rows, ordered by window, then item (the order every writer
 * locks them in). Returns how many.
 */
size_t store__window_sums(const struct store_row *rows, size_t n,
                          const int64_t mark[WINDOW_COUNT], struct store_row *out);
/* For adapters: orders struct store_row by item, then key (for qsort and bsearch). */
int store__row_cmp(const void *a, const void *b);
/*
 * For adapters: sorts rows[0, n) by item, then key, and sums the rows of one item and key
 * into one. Returns how many are left.
 */
size_t store__merge_rows(struct store_row *rows, size_t n);
/* For adapters: the hour (since the epoch) of a time in ms; floor, also before 1970. */
int64_t store__hour_of(int64_t ms);

/*
 * A user's own rows, the tables an erasure deletes them from
 * (interactive_erase_user), STORE_ERASE_MAX rows per transaction at most.
 */
enum user_table { USER_LIKES, USER_COLLECTIONS, USER_TABLE_COUNT };
#define STORE_ERASE_MAX 256

struct store;

/* What a store's check (store_ops.check) tells its caller; every callback gets arg. */
struct store_check_out {
    void *arg;
    /* A check of the store as a whole (its schema version, the database's integrity). */
    void (*check)(void *arg, bool ok, const char *what, const char *detail);
    /* One problem: the table, the row's key, what is wrong with it. */
    void (*problem)(void *arg, const char *table, const char *key, const char *what);
    /* A table done: its rows read, the problems found in them; error: why it was not read
     * to its end (NULL: it was). */
    void (*table)(void *arg, const char *table, int64_t rows, int64_t problems,
                  const char *error);
    /* May be NULL: after each page, the table's rows read so far. */
    void (*progress)(void *arg, const char *table, int64_t rows);
};

struct store_ops {
    const char *name;
    /* Counts of n items (zeros for an unknown item). */
    int (*counts)(struct store *s, const struct item *items, size_t n, struct counts *out);
    /* Whether uid likes / has collected each of n items. */
    int (*flags)(struct store *s, int64_t uid, const struct item *items, size_t n, bool *liked,
                 bool *collected);
    /* Like (on) or unlike; *changed tells whether like_cnt moved; *out: the item's counts
     * and uid's flags on it after the write, read in its transaction. */
    int (*set_like)(struct store *s, int64_t uid, const struct item *it, bool on, int64_t now_ms,
                    bool *changed, struct item_state *out);
    /* Put into collection cid (moving it from another one) or take out of cid. */
    int (*set_collect)(struct store *s, int64_t uid, int64_t cid, const struct item *it, bool on,
                       int64_t now_ms, bool *changed, struct item_state *out);
    /*
     * Erasing a user, a chunk at a time. user_items: up to limit (<= STORE_ERASE_MAX)
     * distinct items on which uid has a row in table t, active or not, in the order
     * of the table's unique key (uid, biz, biz_id). erase_rows: in one transaction, deletes uid's rows in t on items[0, n)
     * (n <= STORE_ERASE_MAX), locking them first, and for each row that was active
     * lowers the item's like_cnt (collect_cnt) by one, in its total and in the hour of
     * now_ms and every window that holds it, as an unlike does; delta[i]: what
     * items[i]'s counts moved by; *removed: rows deleted. An item where uid has no row
     * is left alone, so a chunk run again changes nothing.
     */
    int (*user_items)(struct store *s, int64_t uid, enum user_table t, size_t limit,
                      struct item *out, size_t *n);
    int (*erase_rows)(struct store *s, int64_t uid, enum user_table t, const struct item *items,
                      size_t n, int64_t now_ms, struct counts *delta, size_t *removed);
    /* Active likes of uid in biz, newest first, after cursor; up to limit entries. */
    int (*list_likes)(struct store *s, int64_t uid, const char *biz,
                      const struct list_cursor *after, size_t limit, struct list_entry *out,
                      size_t *n);
    int (*list_collection)(struct store *s, int64_t uid, int64_t cid,
                           const struct list_cursor *after, size_t limit, struct list_entry *out,
                           size_t *n);
    /* Highest `by` first, ties by id ascending; liked/collected left false. */
    int (*top)(struct store *s, const char *biz, enum count_field by, size_t limit,
               struct item_state *out, size_t *n);
    /* Highest `by` summed over window w (positive sums only), ties by id ascending;
     * window_cnt[i] receives out[i]'s sum. */
    int (*top_window)(struct store *s, const char *biz, enum count_field by, enum window w,
                      size_t limit, struct item_state *out, int64_t *window_cnt, size_t *n);
    /* it's nonzero hourly `by` counts for hours in [from_hour, to_hour], oldest first;
     * out holds to_hour - from_hour + 1 entries. */
    int (*history)(struct store *s, const struct item *it, enum count_field by,
                   int64_t from_hour, int64_t to_hour, struct hour_count *out, size_t *n);
    /* Decide and add a batch of reads (totals, hours, windows, memos) and move offsets of
     * topic, atomically (see struct read_batch). */
    int (*apply_reads)(struct store *s, struct read_batch *b);
    /* Deletes up to a few thousand rows of memo table m older than before_ms; *more:
     * whether some may be left. */
    int (*expire_memos)(struct store *s, enum read_memo m, int64_t before_ms, bool *more);
    /*
     * One bounded step of window upkeep at now_ms: each window subtracts at most one
     * expiring hour (with its watermark, in one transaction), and at most a few
     * thousand hourly rows older than retention_hours are deleted. *more: whether
     * work is left for another call.
     */
    int (*sweep_windows)(struct store *s, int64_t now_ms, int64_t retention_hours, bool *more);
    /*
     * One bounded step that moves likes' and collections' transitions, queued by their
     * writes, into the hours and the windows (each once); *more: whether some are left.
     * NULL where a write adds them itself (SQLite). See "Trending windows" in
     * docs/architecture.md.
     */
    int (*apply_transitions)(struct store *s, bool *more);
    /*
     * Records n read events the store refused (one read_dead_letter row each,
     * with error) and moves offsets of topic, atomically: a poisoned event is
     * stored past exactly like a counted one.
     */
    int (*dead_letter)(struct store *s, const struct read_event *ev, size_t n, const char *topic,
                       const struct store_offset *offs, size_t noffs, const char *error,
                       int64_t now_ms);
    /* The stored next offset of (topic, partition), -1 when none. */
    int (*load_offset)(struct store *s, const char *topic, int32_t partition, int64_t *next);
    /*
     * Memo expiry across consumers: *floor_ms is the lowest event_ms stored for a
     * partition of topic (each raised by the commits of the partition's events and by
     * events_touch), INT64_MAX when topic has none. events_touch raises the event_ms of
     * the partitions given, which their owner has read to their end, to ms.
     */
    int (*events_floor)(struct store *s, const char *topic, int64_t *floor_ms);
    int (*events_touch)(struct store *s, const char *topic, const int32_t *parts, size_t n,
                        int64_t ms);
    /* Cheap round trip, for /healthz. */
    int (*ping)(struct store *s);
    void (*free)(struct store *s);

    /* ---- administration (tallyctl): bulk and maintenance work, never on tallyd's paths */

    /*
     * Calls emit for every row of every table that holds state, from one
     * snapshot, reading in pages (constant memory): every item, then every
     * like, then every collection, each table in row id order; then the
     * windows' marks, the hourly rows, the windows' rows, the memos (idem,
     * then seen), the dead letters (identical rows as one record with n) and
     * the read offsets, each in its key's order (record.h, enum record_type).
     * A non-zero return from emit stops the walk and is returned.
     */
    int (*export_rows)(struct store *s, int (*emit)(void *arg, const struct record *r),
                       void *arg);
    /*
     * Merges n records in one transaction. A like/collection row is inserted,
     * or replaces the stored one when its utime is newer; an item's read_cnt
     * becomes the larger of the two, ctime the earlier, utime the later; then
     * like_cnt and collect_cnt of every item the records touch are set to its
     * active rows (an item a row names and the store lacks is created).
     * Windows stay the sum of the hourly rows they hold (hour >= mark): a
     * window's mark becomes the later of the two, the hours in between leaving
     * its sums as a sweep would take them; an hourly row the store lacks is
     * added, one it has takes the larger of each count, and every window that
     * holds its hour moves by the same difference; a window's sums are never
     * taken from the record (it only makes sure the row exists). A memo's ms
     * becomes the later of the two. A dead letter is added until the store
     * holds n rows identical to it. An offset is added where the store has
     * none for its topic and partition; a stored one is never moved. So a
     * second import of the same records changes nothing. *changed: stored
     * rows inserted or changed. after (may be NULL): for each item record, its
     * counts once the transaction is done.
     */
    int (*import)(struct store *s, const struct record *r, size_t n, int64_t now_ms,
                  size_t *changed, struct counts *after);
    /* Up to limit items with row id > after, in row id order, with their active rows. */
    int (*scan_counts)(struct store *s, int64_t after, size_t limit, struct count_check *out,
                       size_t *n);
    /* Sets like_cnt/collect_cnt of n items to their active rows, in one transaction. */
    int (*recount)(struct store *s, const struct item *items, size_t n, int64_t now_ms,
                   size_t *changed);
    /*
     * Checks the store: its schema version and the database's own integrity
     * check, then every row of every table against what tally keeps (admin.h,
     * "check"), each table read in pages by key (constant memory), each page
     * one statement. Reports through out (struct store_check_out). Returns an
     * error only when the checks could not run at all.
     */
    int (*check)(struct store *s, const struct store_check_out *out);
    /*
     * A consistent copy of the store into the new file dest, while others
     * write (SQLite's backup API). NULL where the server has its own tools
     * (mysql: docs/operations.md). progress (may be NULL) sees pages done/total.
     */
    int (*backup)(struct store *s, const char *dest,
                  void (*progress)(void *arg, int64_t done, int64_t total), void *arg);
};

struct store {
    const struct store_ops *ops;
};

struct url;

/*
 * Whether u ("sqlite:PATH" or "mysql://...", parsed by util/url.h) names a
 * store this build knows, with valid options. Returns 0, or TALLY_EINVAL and
 * *why, a reason that quotes no secret (caller frees).
 */
int store_check(const struct url *u, char **why);
/*
 * Opens the store u names (store_check has passed), creating or migrating
 * its schema. workers is --workers, which sizes a connection pool (MariaDB;
 * store_open assumes the default). On failure returns an error and writes
 * one line into *err (caller frees), with no secret in it. The caller frees
 * the store with store_free().
 */
#define STORE_WORKERS_DEFAULT 8
int store_open_url(const struct url *u, int workers, struct store **out, char **err);
/* The same from a string, parsed and checked first (*err: "invalid --store '...': why"). */
int store_open(const char *url, struct store **out, char **err);
int store_check_url(const char *url, char **err);

static inline int store_counts(struct store *s, const struct item *items, size_t n,
                               struct counts *out)
{
    return s->ops->counts(s, items, n, out);
}
static inline int store_flags(struct store *s, int64_t uid, const struct item *items, size_t n,
                              bool *liked, bool *collected)
{
    return s->ops->flags(s, uid, items, n, liked, collected);
}
static inline int store_set_like(struct store *s, int64_t uid, const struct item *it, bool on,
                                 int64_t now_ms, bool *changed, struct item_state *out)
{
    return s->ops->set_like(s, uid, it, on, now_ms, changed, out);
}
static inline int store_set_collect(struct store *s, int64_t uid, int64_t cid,
                                    const struct item *it, bool on, int64_t now_ms, bool *changed,
                                    struct item_state *out)
{
    return s->ops->set_collect(s, uid, cid, it, on, now_ms, changed, out);
}
static inline int store_user_items(struct store *s, int64_t uid, enum user_table t,
                                   size_t limit, struct item *out, size_t *n)
{
    return s->ops->user_items(s, uid, t, limit, out, n);
}
static inline int store_erase_rows(struct store *s, int64_t uid, enum user_table t,
                                   const struct item *items, size_t n, int64_t now_ms,
                                   struct counts *delta, size_t *removed)
{
    return s->ops->erase_rows(s, uid, t, items, n, now_ms, delta, removed);
}
static inline int store_list_likes(struct store *s, int64_t uid, const char *biz,
                                   const struct list_cursor *after, size_t limit,
                                   struct list_entry *out, size_t *n)
{
    return s->ops->list_likes(s, uid, biz, after, limit, out, n);
}
static inline int store_list_collection(struct store *s, int64_t uid, int64_t cid,
                                        const struct list_cursor *after, size_t limit,
                                        struct list_entry *out, size_t *n)
{
    return s->ops->list_collection(s, uid, cid, after, limit, out, n);
}
static inline int store_top(struct store *s, const char *biz, enum count_field by, size_t limit,
                            struct item_state *out, size_t *n)
{
    return s->ops->top(s, biz, by, limit, out, n);
}
static inline int store_top_window(struct store *s, const char *biz, enum count_field by,
                                   enum window w, size_t limit, struct item_state *out,
                                   int64_t *window_cnt, size_t *n)
{
    return s->ops->top_window(s, biz, by, w, limit, out, window_cnt, n);
}
static inline int store_history(struct store *s, const struct item *it, enum count_field by,
                                int64_t from_hour, int64_t to_hour, struct hour_count *out,
                                size_t *n)
{
    return s->ops->history(s, it, by, from_hour, to_hour, out, n);
}
static inline int store_apply_reads(struct store *s, struct read_batch *b)
{
    return s->ops->apply_reads(s, b);
}
static inline int store_expire_memos(struct store *s, enum read_memo m, int64_t before_ms,
                                     bool *more)
{
    return s->ops->expire_memos(s, m, before_ms, more);
}
static inline int store_sweep_windows(struct store *s, int64_t now_ms, int64_t retention_hours,
                                      bool *more)
{
    return s->ops->sweep_windows(s, now_ms, retention_hours, more);
}
static inline bool store_has_transitions(const struct store *s)
{
    return s->ops->apply_transitions != NULL;
}
static inline int store_apply_transitions(struct store *s, bool *more)
{
    *more = false;
    return s->ops->apply_transitions ? s->ops->apply_transitions(s, more) : 0;
}
static inline int store_dead_letter(struct store *s, const struct read_event *ev, size_t n,
                                    const char *topic, const struct store_offset *offs,
                                    size_t noffs, const char *error, int64_t now_ms)
{
    return s->ops->dead_letter(s, ev, n, topic, offs, noffs, error, now_ms);
}
static inline int store_load_offset(struct store *s, const char *topic, int32_t partition,
                                    int64_t *next)
{
    return s->ops->load_offset(s, topic, partition, next);
}
static inline int store_events_floor(struct store *s, const char *topic, int64_t *floor_ms)
{
    return s->ops->events_floor(s, topic, floor_ms);
}
static inline int store_events_touch(struct store *s, const char *topic, const int32_t *parts,
                                     size_t n, int64_t ms)
{
    return s->ops->events_touch(s, topic, parts, n, ms);
}
static inline int store_ping(struct store *s)
{
    return s->ops->ping(s);
}
static inline void store_free(struct store *s)
{
    if (s)
        s->ops->free(s);
}
static inline int store_export(struct store *s, int (*emit)(void *arg, const struct record *r),
                               void *arg)
{
    return s->ops->export_rows(s, emit, arg);
}
static inline int store_import(struct store *s, const struct record *r, size_t n, int64_t now_ms,
                               size_t *changed, struct counts *after)
{
    return s->ops->import(s, r, n, now_ms, changed, after);
}
static inline int store_scan_counts(struct store *s, int64_t after, size_t limit,
                                    struct count_check *out, size_t *n)
{
    return s->ops->scan_counts(s, after, limit, out, n);
}
static inline int store_recount(struct store *s, const struct item *items, size_t n,
                                int64_t now_ms, size_t *changed)
{
    return s->ops->recount(s, items, n, now_ms, changed);
}
static inline int store_check_integrity(struct store *s, const struct store_check_out *out)
{
    return s->ops->check(s, out);
}
static inline bool store_has_backup(const struct store *s)
{
    return s->ops->backup != NULL;
}
static inline int store_backup(struct store *s, const char *dest,
                               void (*progress)(void *arg, int64_t done, int64_t total), void *arg)
{
    return s->ops->backup(s, dest, progress, arg);
}

#endif
