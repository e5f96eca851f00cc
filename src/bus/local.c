/*
 * local.c - the in-process bus: a bounded ring of read events.
 *
 * DESIGN: the embedded default needs no broker, so reads wait in memory
 * until the consumer applies them, at most one flush window later. That
 * is also what a kill -9 can lose (documented in docs/architecture.md); a
 * graceful stop drains the ring first. The ring is bounded so a stalled
 * store turns into 503s at the API rather than unbounded memory.
 */
#include "bus/local.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "util/error.h"
#include "util/metrics.h"
#include "util/xmalloc.h"
#include "util/banned.h"

/* Shared by the HTTP threads (producers) and the consumer thread; all under lock. */
struct local_bus {
    struct bus base;
    pthread_mutex_t lock;
    pthread_cond_t nonempty;
    struct read_event *ring;
    size_t cap, head, len;
    bool closed;
    struct metric *depth;
};

static int local_publish(struct bus *b, const struct read_event *ev)
{
    struct local_bus *lb = (struct local_bus *)b;
    int rc = 0;

    pthread_mutex_lock(&lb->lock);
    if (lb->closed) {
        rc = TALLY_ECLOSED;
    } else if (lb->len == lb->cap) {
        rc = TALLY_EFULL;
    } else {
        lb->ring[(lb->head + lb->len) % lb->cap] = *ev;
        lb->len++;
        metric_set(lb->depth, (int64_t)lb->len);
        pthread_cond_signal(&lb->nonempty);
    }
    pthread_mutex_unlock(&lb->lock);
    return rc;
}

static int local_poll(struct bus *b, struct read_event *out, size_t max, int timeout_ms, size_t *n)
{
    struct local_bus *lb = (struct local_bus *)b;
    struct timespec until;
    int rc = 0;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    *n = 0;
    pthread_mutex_lock(&lb->lock);
    while (lb->len == 0 && !lb->closed) {
        if (pthread_cond_timedwait(&lb->nonempty, &lb->lock, &until) == ETIMEDOUT)
            break;
    }
    while (*n < max && lb->len > 0) {
        out[(*n)++] = lb->ring[lb->head];
        lb->head = (lb->head + 1) % lb->cap;
        lb->len--;
    }
    metric_set(lb->depth, (int64_t)lb->len);
    if (*n == 0 && lb->closed)
        rc = TALLY_ECLOSED;
    pthread_mutex_unlock(&lb->lock);
    return rc;
}

/* Local events have no partitions, so there are no offsets to keep. */
static int64_t local_expect(struct bus *b, int32_t partition)
{
    (void)b, (void)partition;
    return -1;
}

static void local_committed(struct bus *b, const struct store_offset *offs, size_t n)
{
    (void)b, (void)offs, (void)n;
}

static void local_rewind(struct bus *b)
{
    (void)b;
}

/* Nothing to wait for here: the consumer drains the ring (and counts what it cannot apply). */
static void local_close(struct bus *b, int timeout_ms)
{
    struct local_bus *lb = (struct local_bus *)b;

    (void)timeout_ms;
    pthread_mutex_lock(&lb->lock);
    lb->closed = true;
    pthread_cond_broadcast(&lb->nonempty);
    pthread_mutex_unlock(&lb->lock);
}

static void local_free(struct bus *b)
{
    struct local_bus *lb = (struct local_bus *)b;

    pthread_mutex_destroy(&lb->lock);
    pthread_cond_destroy(&lb->nonempty);
    free(lb->ring);
    free(lb);
}

static int local_ready(struct bus *b)
{
    struct local_bus *lb = (struct local_bus *)b;
    int rc;

    pthread_mutex_lock(&lb->lock);
    rc = lb->closed ? TALLY_ECLOSED : lb->len == lb->cap ? TALLY_EFULL : 0;
    pthread_mutex_unlock(&lb->lock);
    return rc;
}

static const struct bus_ops local_ops = {
    .name = "local",
    .publish = local_publish,
    .poll = local_poll,
    .expect = local_expect,
    .committed = local_committed,
    .rewind = local_rewind,
    .ready = local_ready,
    .close = local_close,
    .free = local_free,
};

struct bus *bus_local_new(size_t capacity)
{
    struct local_bus *lb = xcalloc(1, sizeof(*lb));
    pthread_condattr_t attr;

    TALLY_ASSERT(capacity > 0);
    lb->base.ops = &local_ops;
    lb->ring = xcalloc(capacity, sizeof(*lb->ring));
    lb->cap = capacity;
    pthread_mutex_init(&lb->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&lb->nonempty, &attr);
    pthread_condattr_destroy(&attr);
    lb->depth = metrics_gauge("tally_bus_queue_depth", "Read events waiting in the local bus.", "");
    return &lb->base;
}
