/*
 * cache.h - the cache port: counters kept near the API, never a ledger.
 *
 * A cache holds copies of struct counts for hot items. Losing it loses
 * nothing: a miss reads the store and fills. Increments apply only to
 * entries that exist (an absent entry is filled from the store on the next
 * read), so a cache can never invent a count. Every function may be called
 * from any thread; a cache that cannot be reached reports misses and
 * TALLY_EUNAVAIL, and callers carry on from the store.
 */
#ifndef TALLY_CACHE_H
#define TALLY_CACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "model/item.h"

struct cache;

struct cache_ops {
    const char *name;
    /* hit[i] tells whether out[i] was filled from the cache. */
    int (*get)(struct cache *c, const struct item *items, size_t n, struct counts *out, bool *hit);
    /* Stores counts read from the store for n items. */
    int (*fill)(struct cache *c, const struct item *items, size_t n, const struct counts *counts);
    /* Adds delta to each cached item that exists; absent items stay absent. */
    int (*incr)(struct cache *c, const struct item *items, size_t n, const struct counts *delta);
    void (*free)(struct cache *c);
};

struct cache {
    const struct cache_ops *ops;
};

/* Opens the cache named by url ("none"). *err as for store_open. */
int cache_open(const char *url, struct cache **out, char **err);
int cache_check_url(const char *url, char **err);

static inline int cache_get(struct cache *c, const struct item *items, size_t n, struct counts *out,
                            bool *hit)
{
    return c->ops->get(c, items, n, out, hit);
}
static inline int cache_fill(struct cache *c, const struct item *items, size_t n,
                             const struct counts *counts)
{
    return c->ops->fill(c, items, n, counts);
}
static inline int cache_incr(struct cache *c, const struct item *items, size_t n,
                             const struct counts *delta)
{
    return c->ops->incr(c, items, n, delta);
}
static inline void cache_free(struct cache *c)
{
    if (c)
        c->ops->free(c);
}

#endif
