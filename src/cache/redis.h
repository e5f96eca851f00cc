/*
 * redis.h - the Redis counter cache.
 */
#ifndef TALLY_CACHE_REDIS_H
#define TALLY_CACHE_REDIS_H

#include "cache/cache.h"

struct url;

/*
 * u: redis://[[USER]:PASSWORD@]HOST[:PORT][?ttl=SECONDS&timeout_ms=MS&tls=1&tls_ca=PATH],
 * rediss:// (TLS), redis-cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...] (seed
 * nodes of a Redis Cluster) or rediss-cluster:// (a cluster over TLS). *why
 * and *err as for store_check and store_open_url. Credentials Redis refuses
 * at open are an error; Redis not answering is not (the cache is optional).
 * workers (--workers) sizes the connection pool (util/pool.h, pool_size_for).
 */
int cache_redis_check(const struct url *u, char **why);
int cache_redis_open(const struct url *u, int workers, struct cache **out, char **err);

#endif
