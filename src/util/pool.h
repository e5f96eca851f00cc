/*
 * pool.h - a fixed set of connections shared by threads, taken with a deadline.
 *
 * The store and cache adapters each keep their own connection type; a pool
 * only hands out pointers to them, one thread at a time. Taking waits for one
 * to come back, but never longer than the pool's wait: a thread that finds
 * every connection held by stuck calls answers TALLY_EUNAVAIL (a 503 at the
 * API) instead of waiting forever behind them.
 *
 * Sizes: the adapters size their pools from --workers (pool_size_for), so
 * that every thread that may hold a connection at once (the two worker pools,
 * the read consumer, a probe) finds one without waiting; the wait is for
 * what goes wrong, not for the ordinary case.
 *
 * Thread-safe: any thread may get and put.
 */
#ifndef TALLY_POOL_H
#define TALLY_POOL_H

#include <pthread.h>
#include <stddef.h>

struct metric;

struct pool {
    pthread_mutex_t lock; /* guards free/nfree */
    pthread_cond_t back;  /* a connection was put back (CLOCK_MONOTONIC) */
    void **free;          /* connections not taken: free[0, nfree) */
    size_t nfree, size;
    int wait_ms;
    struct metric *timeouts; /* tally_pool_wait_timeouts_total{pool=name} */
};

/* The connections a pool needs for `workers` (--workers): two worker pools, the read
 * consumer's two threads, a probe and one spare. */
static inline size_t pool_size_for(int workers)
{
    return 2 * (size_t)workers + 4;
}

/* An empty pool named `name` (a metric label) whose get waits at most wait_ms; add the
 * size connections with pool_put. pool_release frees what pool_init allocated. */
void pool_init(struct pool *p, const char *name, size_t size, int wait_ms);
void pool_release(struct pool *p);
/* Takes a connection: 0 and *out, or TALLY_EUNAVAIL when none came back in time. */
int pool_get(struct pool *p, void **out);
/* Gives back a connection taken (or, at first, adds one of the size). */
void pool_put(struct pool *p, void *conn);

#endif
