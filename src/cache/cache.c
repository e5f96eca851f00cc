/*
 * cache.c - choosing a cache adapter by URL, and the "none" cache.
 *
 * "none" misses every lookup and ignores writes: with it every read goes to
 * the store, which is what the embedded default wants.
 */
#include "cache/cache.h"
#include "cache/redis.h"
#include "cache/redis_link.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/strbuf.h"
#include "util/url.h"
#include "util/xmalloc.h"
#include "util/banned.h"

void cache_all_missed(size_t n, bool *hit, cache_token *token, struct flag_lookup *user)
{
    memset(hit, 0, n * sizeof(*hit));
    for (size_t i = 0; i < n; i++)
        token[i] = CACHE_NO_FILL;
    if (user) {
        memset(user->hit, 0, n * sizeof(*user->hit));
        user->token = CACHE_NO_FILL;
    }
}

static int none_get(struct cache *c, const struct item *items, size_t n, struct counts *out,
                    bool *hit, cache_token *token, struct flag_lookup *user)
{
    (void)c, (void)items, (void)out;
    cache_all_missed(n, hit, token, user);
    return 0;
}

static int none_fill(struct cache *c, const struct item *items, size_t n,
                     const struct counts *counts, const cache_token *token)
{
    (void)c, (void)items, (void)n, (void)counts, (void)token;
    return 0;
}

static int none_fill_flags(struct cache *c, int64_t uid, const struct item *items, size_t n,
                           const uint8_t *flags, cache_token token)
{
    (void)c, (void)uid, (void)items, (void)n, (void)flags, (void)token;
    return 0;
}

static int none_begin(struct cache *c, const struct item *items, size_t n, struct flag_write *user)
{
    (void)c, (void)items, (void)n;
    if (user)
        user->token = CACHE_NO_FILL;
    return 0;
}

static int none_end(struct cache *c, const struct item *items, size_t n, const struct counts *delta,
                    const struct flag_write *user)
{
    (void)c, (void)items, (void)n, (void)delta, (void)user;
    return 0;
}

static int none_invalidate(struct cache *c, const struct item *items, size_t n)
{
    (void)c, (void)items, (void)n;
    return 0;
}

static void none_free(struct cache *c)
{
    (void)c; /* static instance */
}

static const struct cache_ops none_ops = {
    .name = "none",
    .get = none_get,
    .fill = none_fill,
    .fill_flags = none_fill_flags,
    .begin = none_begin,
    .end = none_end,
    .take = NULL, /* no buckets here: the rate limiter keeps them in memory */
    .free = none_free,
    .invalidate = none_invalidate,
    .ping = NULL, /* nothing to reach: /v1/status says "off" */
};

static struct cache none_cache = {&none_ops};

const struct counts cache_unknown[1];

/* redis://, rediss://, redis-cluster:// and rediss-cluster://: the link knows its schemes. */
static bool cache_is_redis(const struct url *u)
{
    bool cluster, tls;

    return link_scheme(u->scheme, &cluster, &tls);
}

int cache_check(const struct url *u, char **why)
{
    if (strcmp(u->scheme, "none") == 0 && u->opaque && !*u->path)
        return 0;
    if (cache_is_redis(u) && !u->opaque)
        return cache_redis_check(u, why);
    *why = xstrdup("expected none, redis://[USER:PASSWORD@]HOST:PORT, rediss://..., "
                   "redis-cluster://HOST:PORT[,HOST:PORT...] or rediss-cluster://...");
    return TALLY_EINVAL;
}

int cache_open_url(const struct url *u, int workers, struct cache **out, char **err)
{
    if (cache_is_redis(u))
        return cache_redis_open(u, workers, out, err);
    *out = &none_cache;
    return 0;
}

int cache_check_url(const char *url, char **err)
{
    struct url u;
    int rc = url_parse_checked("--cache", url, cache_check, &u, err);

    url_release(&u);
    return rc;
}

int cache_open(const char *url, struct cache **out, char **err)
{
    struct url u;
    int rc = url_parse_checked("--cache", url, cache_check, &u, err);

    if (rc == 0)
        rc = cache_open_url(&u, CACHE_WORKERS_DEFAULT, out, err);
    url_release(&u);
    return rc;
}
