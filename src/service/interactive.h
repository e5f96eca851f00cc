/*
 * interactive.h - the domain rules of tally: likes, collections, reads and
 * the queries over them.
 *
 * The service combines the three ports. The store decides every count (a
 * count moves only on a real transition, in the row's transaction); the
 * cache is consulted for counters and told about committed changes; reads
 * are published on the bus and counted later by service/readcount.c.
 * liked/collected always come from the store: they must be exact right
 * after the user's own change.
 *
 * Arguments are already validated by the caller (ids >= 1, biz well formed,
 * 1 <= n <= INTERACTIVE_MAX_IDS). All functions are thread-safe.
 */
#ifndef TALLY_INTERACTIVE_H
#define TALLY_INTERACTIVE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"
#include "cache/cache.h"
#include "model/item.h"
#include "service/readcount.h"
#include "store/store.h"

#define INTERACTIVE_MAX_IDS   100
#define INTERACTIVE_MAX_LIMIT 100

struct ratelimit;

/* Borrows the three ports; they must outlive it. Owned by main. */
struct interactive {
    struct store *store;
    struct cache *cache;
    struct bus *bus;
    struct readcount *reads; /* optional, set by main: while it cannot commit, health fails */
    struct ratelimit *limits; /* borrowed; NULL (the default): no rate limits; set by main */
    atomic_bool draining;     /* set by main at SIGTERM: /readyz answers 503 from then on */
    int64_t started_ms;       /* wall clock at interactive_init, for /v1/status */
    int64_t started_us;       /* the monotonic clock then: uptime never jumps with the wall's */
    struct metric *m_published, *m_rejected, *m_cache_errors;
};

void interactive_init(struct interactive *svc, struct store *store, struct cache *cache,
                      struct bus *bus);

/* States of n items of one biz for uid (0: nobody), in the order given. */
int interactive_get(struct interactive *svc, const struct item *items, size_t n, int64_t uid,
                    struct item_state *out);
int interactive_like(struct interactive *svc, int64_t uid, const struct item *it, bool on,
                     struct item_state *out);
int interactive_collect(struct interactive *svc, int64_t uid, int64_t cid, const struct item *it,
                        bool on, struct item_state *out);
/* Queues one read by uid, or by viewer (a hash64), or by nobody (both 0), with an
 * idempotency key's hash64 or 0; TALLY_EFULL when the bus cannot take it now. */
int interactive_read(struct interactive *svc, const struct item *it, int64_t uid,
                     uint64_t viewer, uint64_t idem);
/*
 * One page of a list: up to limit entries after *cursor, newest first.
 * *cursor is updated to the next page's start; *more says whether it exists.
 * out must hold limit + 1 entries.
 */
int interactive_list_likes(struct interactive *svc, int64_t uid, const char *biz, size_t limit,
                           struct list_cursor *cursor, struct list_entry *out, size_t *n,
                           bool *more);
int interactive_list_collection(struct interactive *svc, int64_t uid, int64_t cid, size_t limit,
                                struct list_cursor *cursor, struct list_entry *out, size_t *n,
                                bool *more);
int interactive_top(struct interactive *svc, const char *biz, enum count_field by, size_t limit,
                    struct item_state *out, size_t *n);
/* The top of biz by the sum of `by` over window w; window_cnt[i] is out[i]'s sum. */
int interactive_top_window(struct interactive *svc, const char *biz, enum count_field by,
                           enum window w, size_t limit, struct item_state *out,
                           int64_t *window_cnt, size_t *n);

#define INTERACTIVE_MAX_POINTS 1000 /* points of one history answer */

/* A point of an item's history: the bucket's start (UTC ms) and its count. */
struct history_point {
    int64_t t;
    int64_t n;
};

/*
 * it's `by` counts per bucket of bucket_hours (1 or 24) whose start lies in
 * [from_ms, to_ms], oldest first, buckets with 0 left out. TALLY_EINVAL when
 * that is more than INTERACTIVE_MAX_POINTS buckets. out holds that many.
 */
int interactive_history(struct interactive *svc, const struct item *it, enum count_field by,
                        int bucket_hours, int64_t from_ms, int64_t to_ms,
                        struct history_point *out, size_t *n);

/* What one interactive_erase_user call did. */
struct erase_result {
    int64_t removed[USER_TABLE_COUNT]; /* rows deleted: likes, collections */
    int64_t chunks;                    /* store transactions run, one per chunk */
    bool done;                         /* no row of the user was left when it looked */
};

/*
 * Erases uid's likes and collections, active and inactive alike (a data-protection
 * request), a chunk of up to STORE_ERASE_MAX rows per store transaction and at most
 * max_chunks chunks (then out->done is false: call again). Each chunk lowers its items'
 * counts by the rows that were active, as unlikes would (totals, the hour, the windows),
 * and is fenced in the cache like a like: begin before the transaction, end with its
 * deltas after, and the user's cached flags forgotten. Running it again, or after a
 * crash mid-way, finishes the job and changes nothing more. On an error *out says what
 * was done before it. Touches only the store and the cache (tallyctl calls it too).
 */
int interactive_erase_user(struct interactive *svc, int64_t uid, int64_t max_chunks,
                           struct erase_result *out);

/* 0 when the store answers and the read consumer's last commit succeeded. */
int interactive_health(struct interactive *svc);
/* For /readyz: not draining, the store answers, the bus would take a read; *why says
 * which is not so (static text), NULL when all are. */
int interactive_ready(struct interactive *svc, const char **why);

/*
 * What /v1/status shows: each part's kind and its error code now (0: fine).
 * Filled by interactive_status; strings are static, nothing to free.
 */
struct interactive_status {
    int64_t started_ms, uptime_ms;
    bool draining;
    bool ready;             /* what /readyz would answer: 200 or not */
    const char *store_kind; /* "sqlite", "mysql" */
    int store;              /* store_ping: 0 or TALLY_EUNAVAIL */
    const char *cache_kind; /* "none", "redis", "redis-cluster" */
    bool cache_off;         /* "none": nothing to ask, cache is 0 */
    int cache;              /* cache_ping: 0 or TALLY_EUNAVAIL */
    const char *bus_kind;   /* "local", "kafka" */
    int bus;                /* bus_ready: 0, TALLY_EFULL, TALLY_ECLOSED, TALLY_EUNAVAIL */
    bool reads_failing;     /* the read consumer's last commit failed */
    int64_t reads_lost;     /* accepted reads this process lost (tally_read_events_lost_total) */
};

/*
 * Asks each part once: a store round trip and (Redis) a cache round trip, each
 * bounded by its adapter's timeout, so call it from a worker, never a loop.
 */
void interactive_status(struct interactive *svc, struct interactive_status *out);

#endif
