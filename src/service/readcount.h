/*
 * readcount.h - the read-count consumer: bus -> batch -> store -> cache.
 *
 * One thread per tallyd. It collects up to `batch` events or waits
 * `flush_ms` after the first one, merges the events per item, applies the
 * batch in one store transaction (together with the bus offsets, when the
 * bus has any), then increments the cache. The same code drains the local
 * bus and a broker.
 */
#ifndef TALLY_READCOUNT_H
#define TALLY_READCOUNT_H

#include <stddef.h>

#include "bus/bus.h"
#include "cache/cache.h"
#include "store/store.h"

struct readcount;

struct readcount_config {
    size_t batch;     /* events per store transaction, >= 1 */
    int flush_ms;     /* how long a partial batch may wait */
    int stop_wait_ms; /* how long a stop keeps retrying an unavailable store */
};

/* Starts the consumer thread. The three ports must outlive it. */
struct readcount *readcount_start(struct bus *bus, struct store *store, struct cache *cache,
                                  const struct readcount_config *cfg);
/*
 * Closes the bus, waits until everything it had accepted is applied (or
 * stop_wait_ms passed with the store down), joins the thread and frees rc.
 */
void readcount_stop(struct readcount *rc);

/*
 * Sorts events by item and merges them into deltas (at most n; returns how
 * many). Exposed for the unit tests. out must hold n entries.
 */
size_t readcount_merge(struct read_event *ev, size_t n, struct read_delta *out);

#endif
