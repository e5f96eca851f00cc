/*
 * workpool.c - see workpool.h.
 *
 * DESIGN: one mutex, one condition variable, a singly linked FIFO. The
 * items are few and the work behind each is a database round trip, so a
 * lock-free queue would buy nothing measurable; the lock is held only to
 * link or unlink one item. A submit wakes a thread only when no woken
 * thread is already on its way to the queue: a burst of requests from one
 * loop turn is taken by one thread after another without a wake-up (and
 * a context switch) per item.
 */
#include "util/workpool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "util/error.h"
#include "util/log.h"
#include "util/xmalloc.h"
#include "util/banned.h"

/* Shared by the submitting threads and the pool's threads; every field under lock. */
struct workpool {
    pthread_mutex_t lock;
    pthread_cond_t ready;
    struct work *head, *tail;
    size_t len, max;
    int idle;   /* threads waiting on `ready` */
    int waking; /* of those, signalled and not yet running */
    bool closing;
    int nthreads;
    pthread_t *threads;
};

static void *worker_main(void *arg)
{
    struct workpool *wp = arg;

    pthread_mutex_lock(&wp->lock);
    for (;;) {
        struct work *w = wp->head;

        if (!w) {
            if (wp->closing)
                break;
            wp->idle++;
            pthread_cond_wait(&wp->ready, &wp->lock);
            wp->idle--;
            if (wp->waking > 0)
                wp->waking--;
            continue;
        }
        wp->head = w->next;
        if (!wp->head)
            wp->tail = NULL;
        wp->len--;
        pthread_mutex_unlock(&wp->lock);
        w->next = NULL;
        w->run(w);
        pthread_mutex_lock(&wp->lock);
    }
    pthread_mutex_unlock(&wp->lock);
    return NULL;
}

struct workpool *workpool_new(const char *name, int threads, size_t queue_max)
{
    struct workpool *wp = xcalloc(1, sizeof(*wp));

    TALLY_ASSERT(threads >= 1 && queue_max >= 1);
    pthread_mutex_init(&wp->lock, NULL);
    pthread_cond_init(&wp->ready, NULL);
    wp->max = queue_max;
    wp->threads = xcalloc((size_t)threads, sizeof(*wp->threads));
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&wp->threads[i], NULL, worker_main, wp) != 0) {
            log_error("workpool %s: cannot start a thread", name);
            abort();
        }
        wp->nthreads++;
    }
    return wp;
}

int workpool_submit(struct workpool *wp, struct work *w)
{
    int rc = 0;

    w->next = NULL;
    pthread_mutex_lock(&wp->lock);
    if (wp->closing) {
        rc = TALLY_ECLOSED;
    } else if (wp->len >= wp->max) {
        rc = TALLY_EFULL;
    } else {
        if (wp->tail)
            wp->tail->next = w;
        else
            wp->head = w;
        wp->tail = w;
        wp->len++;
        if (wp->idle > wp->waking && wp->waking < (int)wp->len) {
            wp->waking++;
            pthread_cond_signal(&wp->ready);
        }
    }
    pthread_mutex_unlock(&wp->lock);
    return rc;
}

void workpool_free(struct workpool *wp)
{
    if (!wp)
        return;
    pthread_mutex_lock(&wp->lock);
    wp->closing = true;
    pthread_cond_broadcast(&wp->ready);
    pthread_mutex_unlock(&wp->lock);
    for (int i = 0; i < wp->nthreads; i++)
        pthread_join(wp->threads[i], NULL);
    pthread_mutex_destroy(&wp->lock);
    pthread_cond_destroy(&wp->ready);
    free(wp->threads);
    free(wp);
}
