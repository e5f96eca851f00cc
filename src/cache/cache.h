/*
 * cache.h - the cache port: counters kept near the API, never a ledger.
 *
 * A cache holds copies of struct counts for hot items, and of users' flags
 * (liked, collected) on the items they look at. Losing it loses nothing: a
 * miss reads the store and fills. Every store write is bracketed by begin()
 * and end(); end() increments only entries that exist (an absent entry is
 * filled from the store on the next read), so a cache can never invent a
 * count. Every function may be called from any thread; a cache
 * that cannot be reached reports misses and TALLY_EUNAVAIL, and callers
 * carry on from the store.
 */
#ifndef TALLY_CACHE_H
#define TALLY_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/item.h"

struct cache;

/*
 * A fill token: what a miss saw of the entry's write generation. A fill
 * made with a token is refused when a write to the item began since, so a
 * value read from the store while a write was committing never lands in
 * the cache (see docs/architecture.md, "Cache staleness").
 */
typedef int64_t cache_token;
#define CACHE_NO_FILL INT64_MIN /* the miss saw a write in flight: do not fill */

/* A user's flags on one item, as cached. */
enum { FLAG_LIKED = 1, FLAG_COLLECTED = 2 };

/*
 * end()'s delta for writes whose effect on the store is known to be over but
 * not what it was: an attempt lost with its connection in the middle of a
 * commit, then found committed by the retry. Their entries are dropped, to be
 * read from the store again. (A write whose outcome is still open, that may
 * yet commit on the server, is not ended at all: its fence stays up until its
 * deadline, so no fill can cache a count read before that commit.)
 */
extern const struct counts cache_unknown[1];
#define CACHE_UNKNOWN cache_unknown

/*
 * One user's flags on the n items of a get(): flags[i] is valid where hit[i];
 * for the others, token is the fill token (one per user: the fence is the
 * user's, not the item's).
 */
struct flag_lookup {
    int64_t uid;
    uint8_t *flags;
    bool *hit;
    cache_token token;
};

/*
 * A user's write to their flags on one item (a like, a collection), fenced
 * like the counters: begin() sets token; end() caches flags, the state the
 * write's transaction read after it, if no other write of that user was in
 * flight at any time between begin() and end(), and otherwise forgets the
 * item's flags. item NULL: a write to every item of the user (an erasure):
 * end() forgets all their flags, keeping the fence.
 */
struct flag_write {
    int64_t uid;
    const struct item *item; /* NULL: every item of uid */
    uint8_t flags;     /* for end(): FLAG_* after the commit */
    bool committed;    /* for end(): false when the write failed (flags unknown) */
    cache_token token; /* set by begin() */
};

struct cache_ops {
    const char *name;
    /*
     * hit[i]: out[i] came from the cache; else token[i] is the fill token.
     * With user, also that user's flags on the items, in the same round trip.
     */
    int (*get)(struct cache *c, const struct item *items, size_t n, struct counts *out, bool *hit,
               cache_token *token, struct flag_lookup *user);
    /* Stores counts read from the store after misses, unless a write intervened. */
    int (*fill)(struct cache *c, const struct item *items, size_t n, const struct counts *counts,
                const cache_token *token);
    /* Stores a user's flags on n items read from the store, unless a write of theirs
     * intervened since the get() that gave token. */
    int (*fill_flags)(struct cache *c, int64_t uid, const struct item *items, size_t n,
                      const uint8_t *flags, cache_token token);
    /* Announces writes to n items (and with user, to that user's flags on one
     * item), before the store transaction. */
    int (*begin)(struct cache *c, const struct item *items, size_t n, struct flag_write *user);
    /*
     * Ends writes announced by begin(), after the store transaction: adds
     * delta[i] to each cached entry (delta NULL: the write changed nothing;
     * CACHE_UNKNOWN: the entries are dropped). Entries that are not cached
     * stay uncached.
     */
    int (*end)(struct cache *c, const struct item *items, size_t n, const struct counts *delta,
               const struct flag_write *user);
    /*
     * Takes a token from the token bucket at key, atomically for every
     * process sharing the cache (service/ratelimit.c): n tokens per
     * period_ms, at most burst, a full bucket when the key is absent; idle
     * buckets expire once full again. now_ms is the caller's wall clock.
     * *retry_ms: 0 when a token was taken, else when one will be there.
     * NULL in a cache that cannot hold buckets ("none"): see cache_has_take().
     */
    int (*take)(struct cache *c, const char *key, int64_t n, int64_t period_ms, int64_t burst,
                int64_t now_ms, int64_t *retry_ms);
    void (*free)(struct cache *c);
    /*
     * Drops the entries of n items, so that the next read fills them from the
     * store (tallyctl, after it rewrote counts behind tallyd's back).
     */
    int (*invalidate)(struct cache *c, const struct item *items, size_t n);
    /*
     * Whether the cache answers now: 0, or TALLY_EUNAVAIL. One round trip,
     * bounded like every call by the cache's timeout; a link that failed is
     * not retried sooner than any call would retry it. For /v1/status. NULL
     * in "none", which has nothing to ask: see cache_has_ping().
     */
    int (*ping)(struct cache *c);
};

struct cache {
    const struct cache_ops *ops;
};

struct url;

/* For adapters: a get() whose n lookups all missed, with no fill tokens. */
void cache_all_missed(size_t n, bool *hit, cache_token *token, struct flag_lookup *user);

/*
 * The cache named by u ("none" or redis://...): checked, opened (*why and
 * *err as for store_check and store_open_url), or from a string parsed first.
 * workers is --workers, which sizes the connection pool; cache_open assumes
 * the default.
 */
#define CACHE_WORKERS_DEFAULT 8
int cache_check(const struct url *u, char **why);
int cache_open_url(const struct url *u, int workers, struct cache **out, char **err);
int cache_open(const char *url, struct cache **out, char **err);
int cache_check_url(const char *url, char **err);

static inline int cache_get(struct cache *c, const struct item *items, size_t n, struct counts *out,
                            bool *hit, cache_token *token, struct flag_lookup *user)
{
    return c->ops->get(c, items, n, out, hit, token, user);
}
static inline int cache_fill(struct cache *c, const struct item *items, size_t n,
                             const struct counts *counts, const cache_token *token)
{
    return c->ops->fill(c, items, n, counts, token);
}
static inline int cache_fill_flags(struct cache *c, int64_t uid, const struct item *items,
                                   size_t n, const uint8_t *flags, cache_token token)
{
    return c->ops->fill_flags(c, uid, items, n, flags, token);
}
static inline int cache_begin(struct cache *c, const struct item *items, size_t n,
                              struct flag_write *user)
{
    return c->ops->begin(c, items, n, user);
}
static inline int cache_end(struct cache *c, const struct item *items, size_t n,
                            const struct counts *delta, const struct flag_write *user)
{
    return c->ops->end(c, items, n, delta, user);
}
static inline bool cache_has_take(const struct cache *c)
{
    return c && c->ops->take;
}
static inline int cache_take(struct cache *c, const char *key, int64_t n, int64_t period_ms,
                             int64_t burst, int64_t now_ms, int64_t *retry_ms)
{
    return c->ops->take(c, key, n, period_ms, burst, now_ms, retry_ms);
}
static inline int cache_invalidate(struct cache *c, const struct item *items, size_t n)
{
    return c->ops->invalidate(c, items, n);
}
/* What the cache is: "none", "redis" or "redis-cluster". */
static inline const char *cache_kind(const struct cache *c)
{
    return c->ops->name;
}
static inline bool cache_has_ping(const struct cache *c)
{
    return c && c->ops->ping;
}
static inline int cache_ping(struct cache *c)
{
    return c->ops->ping(c);
}
static inline void cache_free(struct cache *c)
{
    if (c)
        c->ops->free(c);
}

#endif
