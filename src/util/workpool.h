/*
 * workpool.h - a fixed set of threads taking work from one bounded queue.
 *
 * The HTTP loops hand anything that may wait on a server (the store, the
 * cache) to a pool, so a slow or locked store delays only the requests
 * that need it and never the loop that serves everyone else. The queue is
 * bounded: a full pool refuses work (TALLY_EFULL, a 503 at the API)
 * instead of growing without limit.
 *
 * Work items are intrusive: the caller embeds struct work in its own
 * struct and owns it; the pool only links it. run() is called on a pool
 * thread and must arrange its own completion (e.g. post back to a loop).
 */
#ifndef TALLY_WORKPOOL_H
#define TALLY_WORKPOOL_H

#include <stddef.h>

struct work {
    void (*run)(struct work *w);
    struct work *next; /* the pool's link while queued */
};

struct workpool;

/* Starts `threads` threads named for logs by `name`; the queue holds up to queue_max items. */
struct workpool *workpool_new(const char *name, int threads, size_t queue_max);
/* Queues w; TALLY_EFULL when queue_max items wait already, TALLY_ECLOSED after free began. */
int workpool_submit(struct workpool *wp, struct work *w);
/* Runs everything already queued, joins the threads and frees wp. NULL is a no-op. */
void workpool_free(struct workpool *wp);

#endif
