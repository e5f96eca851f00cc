/*
 * pool.c - see pool.h.
 */
#include "util/pool.h"

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "util/clock.h"
#include "util/error.h"
#include "util/metrics.h"
#include "util/strbuf.h"
#include "util/xmalloc.h"
#include "util/banned.h"

void pool_init(struct pool *p, const char *name, size_t size, int wait_ms)
{
    struct strbuf labels = STRBUF_INIT;
    pthread_condattr_t attr;

    TALLY_ASSERT(size > 0 && wait_ms >= 0);
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* deadlines are clock_mono_us() */
    pthread_cond_init(&p->back, &attr);
    pthread_condattr_destroy(&attr);
    p->free = xcalloc(size, sizeof(*p->free));
    p->nfree = 0;
    p->size = size;
    p->wait_ms = wait_ms;
    strbuf_addf(&labels, "pool=\"%s\"", name);
    p->timeouts = metrics_counter("tally_pool_wait_timeouts_total",
                                  "Calls that found every connection of a pool taken for "
                                  "longer than its wait (answered as unavailable).",
                                  labels.buf);
    strbuf_release(&labels);
}

void pool_release(struct pool *p)
{
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->back);
    free(p->free);
    p->free = NULL;
}

int pool_get(struct pool *p, void **out)
{
    int64_t until = clock_mono_us() + (int64_t)p->wait_ms * 1000;
    struct timespec ts = {(time_t)(until / 1000000), (long)(until % 1000000) * 1000L};
    int rc = 0;

    pthread_mutex_lock(&p->lock);
    while (p->nfree == 0 && rc == 0)
        if (pthread_cond_timedwait(&p->back, &p->lock, &ts) != 0 && p->nfree == 0)
            rc = TALLY_EUNAVAIL;
    if (rc == 0)
        *out = p->free[--p->nfree];
    pthread_mutex_unlock(&p->lock);
    if (rc)
        metric_add(p->timeouts, 1);
    return rc;
}

void pool_put(struct pool *p, void *conn)
{
    pthread_mutex_lock(&p->lock);
    TALLY_ASSERT(p->nfree < p->size);
    p->free[p->nfree++] = conn;
    pthread_cond_signal(&p->back);
    pthread_mutex_unlock(&p->lock);
}
