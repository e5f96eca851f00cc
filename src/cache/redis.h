/*
 * redis.h - the Redis counter cache.
 */
#ifndef TALLY_CACHE_REDIS_H
#define TALLY_CACHE_REDIS_H

#include "cache/cache.h"

/* url: redis://HOST:PORT[?ttl=SECONDS&timeout_ms=MS]. *err as for store_open. */
int cache_redis_open(const char *url, struct cache **out, char **err);
int cache_redis_check_url(const char *url, char **err);

#endif
