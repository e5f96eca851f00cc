/*
 * readcount.c - see readcount.h.
 *
 * DESIGN: merging before writing is where the speed is. A batch of
 * 1,000 reads of a popular item becomes one row of one multi-row upsert;
 * the rows are sorted by (biz, id) so two consumers writing to the same
 * database always lock rows in the same order and cannot deadlock.
 * A batch is retried until the store takes it (or the bus says it is no
 * longer ours): reads are never dropped because a server is down.
 */
#include "service/readcount.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/xmalloc.h"
#include "util/banned.h"

#define MAX_PARTITIONS 64

/* Owned by the consumer thread, except `stopping`, which readcount_stop sets. */
struct readcount {
    struct bus *bus;
    struct store *store;
    struct cache *cache;
    struct readcount_config cfg;
    pthread_t thread;
    atomic_bool stopping;
    struct read_event *events;
    struct read_delta *deltas;
    struct item *items;
    struct counts *incr;
    struct metric *m_applied, *m_batches, *m_batch_size, *m_failures, *m_lost, *m_stale;
};

static int event_cmp(const void *a, const void *b)
{
    const struct read_event *x = a, *y = b;
    return item_cmp(&x->item, &y->item);
}

size_t readcount_merge(struct read_event *ev, size_t n, struct read_delta *out)
{
    size_t k = 0;

    qsort(ev, n, sizeof(*ev), event_cmp);
    for (size_t i = 0; i < n; i++) {
        if (ev[i].skip)
            continue;
        if (k > 0 && item_cmp(&out[k - 1].item, &ev[i].item) == 0) {
            out[k - 1].n++;
        } else {
            out[k].item = ev[i].item;
            out[k].n = 1;
            k++;
        }
    }
    return k;
}

/*
 * The offset range each partition of the batch covers (taken before merging
 * reorders the events): from where the bus says the partition stands in the
 * store, to just past the last event.
 */
static size_t collect_offsets(struct bus *bus, const struct read_event *ev, size_t n,
                              struct store_offset *offs)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        size_t j;

        if (ev[i].partition < 0)
            continue;
        for (j = 0; j < k && offs[j].partition != ev[i].partition; j++)
            ;
        if (j == k) {
            TALLY_ASSERT(k < MAX_PARTITIONS);
            offs[k].partition = ev[i].partition;
            offs[k].expect = bus_expect(bus, ev[i].partition);
            offs[k].next = ev[i].offset + 1;
            k++;
        } else if (ev[i].offset + 1 > offs[j].next) {
            offs[j].next = ev[i].offset + 1;
        }
    }
    return k;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void apply(struct readcount *rc, size_t n)
{
    struct store_offset offs[MAX_PARTITIONS];
    size_t noffs = collect_offsets(rc->bus, rc->events, n, offs);
    size_t k = readcount_merge(rc->events, n, rc->deltas);
    int64_t give_up_at = 0;
    int backoff = 50, err;

    for (size_t i = 0; i < k; i++) {
        rc->items[i] = rc->deltas[i].item;
        rc->incr[i] = (struct counts){.read_cnt = rc->deltas[i].n};
    }
    cache_begin(rc->cache, rc->items, k); /* fences fills while the batch commits */
    for (;;) {
        err = store_apply_reads(rc->store, rc->deltas, k, rc->bus->topic, offs, noffs,
                                clock_now_ms());
        if (err == 0 || err == TALLY_ESTALE)
            break;
        metric_add(rc->m_failures, 1);
        if (atomic_load(&rc->stopping)) {
            if (!give_up_at)
                give_up_at = clock_mono_us() + (int64_t)rc->cfg.stop_wait_ms * 1000;
            else if (clock_mono_us() >= give_up_at)
                break;
        }
        LOG_ONCE(LOG_WARN, "readcount: store %s; retrying the batch until it succeeds",
                 tally_strerror(err));
        sleep_ms(backoff);
        backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
    }
    cache_end(rc->cache, rc->items, k, err == 0 ? rc->incr : NULL);
    if (err == TALLY_ESTALE) {
        /* Another consumer moved these offsets: it counted the batch. Start again from
         * what the store holds, for every partition still ours. */
        log_warn("readcount: offsets moved by another consumer; batch of %zu left to it", n);
        metric_add(rc->m_stale, n);
        bus_rewind(rc->bus);
    } else if (err) {
        log_error("readcount: store still %s at stop; %zu read events lost", tally_strerror(err),
                  n);
        metric_add(rc->m_lost, n);
    } else {
        size_t counted = 0;

        for (size_t i = 0; i < k; i++)
            counted += (size_t)rc->deltas[i].n;
        bus_committed(rc->bus, offs, noffs);
        metric_add(rc->m_applied, counted);
        metric_add(rc->m_batches, 1);
        metric_observe(rc->m_batch_size, (double)n);
    }
}

static void *consumer_main(void *arg)
{
    struct readcount *rc = arg;
    int64_t deadline = 0;
    size_t n = 0;

    for (;;) {
        int timeout = 1000;
        size_t got = 0;
        int err;

        if (n > 0) {
            int64_t left = (deadline - clock_mono_us()) / 1000;
            timeout = left > 0 ? (int)left : 0;
        }
        err = bus_poll(rc->bus, rc->events + n, rc->cfg.batch - n, timeout, &got);
        if (err == TALLY_ESTALE) {
            /* Partitions were taken away: their new owner starts from the stored offsets. */
            metric_add(rc->m_stale, n + got);
            n = 0;
            continue;
        }
        if (got > 0 && n == 0)
            deadline = clock_mono_us() + (int64_t)rc->cfg.flush_ms * 1000;
        n += got;
        if (n > 0 && (err || n == rc->cfg.batch || clock_mono_us() >= deadline)) {
            apply(rc, n);
            n = 0;
        }
        if (err == TALLY_ECLOSED)
            break;
    }
    return NULL;
}

static int load_offset(void *ctx, const char *topic, int32_t partition, int64_t *next)
{
    struct readcount *rc = ctx;
    return store_load_offset(rc->store, topic, partition, next);
}

struct readcount *readcount_start(struct bus *bus, struct store *store, struct cache *cache,
                                  const struct readcount_config *cfg)
{
    static const double sizes[] = {1, 10, 100, 1000, 10000};
    struct readcount *rc = xcalloc(1, sizeof(*rc));

    TALLY_ASSERT(cfg->batch >= 1);
    rc->bus = bus;
    rc->store = store;
    rc->cache = cache;
    rc->cfg = *cfg;
    rc->events = xcalloc(cfg->batch, sizeof(*rc->events));
    rc->deltas = xcalloc(cfg->batch, sizeof(*rc->deltas));
    rc->items = xcalloc(cfg->batch, sizeof(*rc->items));
    rc->incr = xcalloc(cfg->batch, sizeof(*rc->incr));
    rc->m_applied = metrics_counter("tally_read_events_applied_total",
                                    "Read events counted into the store.", "");
    rc->m_batches =
        metrics_counter("tally_read_batches_total", "Read batches committed to the store.", "");
    rc->m_batch_size =
        metrics_histogram("tally_read_batch_size", "Read events per committed batch.", "", sizes,
                          sizeof(sizes) / sizeof(sizes[0]));
    rc->m_failures = metrics_counter("tally_read_batch_failures_total",
                                     "Attempts to apply a read batch that the store refused.", "");
    rc->m_stale = metrics_counter(
        "tally_read_events_stale_total",
        "Read events dropped uncommitted because their partition moved to another consumer.", "");
    rc->m_lost = metrics_counter("tally_read_events_lost_total",
                                 "Read events dropped at stop because the store was down.", "");
    bus->load_offset = load_offset;
    bus->load_ctx = rc;
    if (pthread_create(&rc->thread, NULL, consumer_main, rc) != 0) {
        log_error("readcount: cannot start the consumer thread");
        abort();
    }
    return rc;
}

void readcount_stop(struct readcount *rc)
{
    if (!rc)
        return;
    atomic_store(&rc->stopping, true);
    bus_close(rc->bus);
    pthread_join(rc->thread, NULL);
    free(rc->events);
    free(rc->deltas);
    free(rc->items);
    free(rc->incr);
    free(rc);
}
