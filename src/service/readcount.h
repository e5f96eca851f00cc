/*
 * readcount.h - the read-count consumer: bus -> batch -> store -> cache.
 *
 * One thread per tallyd. It collects up to `batch` events or waits
 * `flush_ms` after the first one, merges the events per item, applies the
 * batch in one store transaction (together with the bus offsets, when the
 * bus has any), then increments the cache. The same code drains the local
 * bus and a broker.
 *
 * Failures: a store that cannot commit now (TALLY_EUNAVAIL) is retried with
 * capped backoff and the events are held; readcount_failing() says so, for
 * /healthz. Events the store refuses for good (TALLY_EREJECTED, or
 * TALLY_EINTERNAL a few times over) are isolated by splitting the batch and
 * recorded in the store's dead-letter table; the others are counted.
 */
#ifndef TALLY_READCOUNT_H
#define TALLY_READCOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"
#include "cache/cache.h"
#include "store/store.h"

struct readcount;

struct readcount_config {
    size_t batch;      /* events per store transaction, >= 1 */
    size_t read_ahead; /* events read from the bus beyond the batch being committed */
    int flush_ms;     /* how long a partial batch may wait */
    int stop_wait_ms; /* how long a stop may take to deliver what was accepted */
    /* Whether reads are also counted per hour and in the windows (--windows). Likes and
     * collections always are: one row per transition costs little. */
    bool hourly_reads;
    /* Hourly counts are kept this long (>= WINDOW_MAX_HOURS); 0: no window upkeep at all
     * (the unit tests' scripted stores have none). */
    int64_t retention_hours;
    /* --read-window: a read by the same uid or viewer of the same item within this many
     * ms of their last counted read counts nothing; 0: every read counts. */
    int64_t read_window_ms;
};

/* A repeat of an idempotency key within this long of its first read counts nothing. */
#define READ_IDEM_MS (24 * HOUR_MS)



/* Starts the consumer thread. The three ports must outlive it. */
struct readcount *readcount_start(struct bus *bus, struct store *store, struct cache *cache,
                                  const struct readcount_config *cfg);
/*
 * Closes the bus and waits until everything it had accepted is applied, or
 * until stop_wait_ms have passed; then what the local bus still held is
 * counted lost (a broker's events stay in their topic). Joins the thread
 * and frees rc.
 */
void readcount_stop(struct readcount *rc);

/* Whether the consumer's last attempt to commit failed (the store is failing). Any thread. */
bool readcount_failing(const struct readcount *rc);

/*
 * Accepted read events this process lost (tally_read_events_lost_total):
 * dropped at a stop that ran out of time, or never acknowledged by a broker.
 */
int64_t readcount_lost_total(void);

/*
 * Sorts events by item and merges them into deltas (at most n; returns how
 * many). Exposed for the unit tests. out must hold n entries.
 */
size_t readcount_merge(struct read_event *ev, size_t n, struct read_delta *out);
/*
 * Merges the events of ev[0, n) per (item, hour of the event) into out (n
 * entries), sorted by item then hour; returns how many. ev is left as it is.
 */
size_t readcount_merge_hours(const struct read_event *ev, size_t n, int64_t now_ms,
                             struct read_delta *out);
/* The hour (since the epoch) a read counts in: its ts, or now_ms when the ts is
 * unknown or more than READ_FUTURE_MS ahead. */
int64_t readcount_event_hour(const struct read_event *ev, int64_t now_ms);

#endif
