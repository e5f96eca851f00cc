/*
 * inbox.c - a mutex-guarded list and an event to wake its loop.
 */
#include "http/inbox.h"

#include <stdbool.h>
#include <stddef.h>

#include "util/xmalloc.h"
#include "util/banned.h"

void inbox_init(struct inbox *ib, struct event_base *base, event_callback_fn run, void *arg)
{
    ib->head = ib->tail = NULL;
    ib->ev = event_new(base, -1, EV_PERSIST, run, arg);
    TALLY_ASSERT(ib->ev);
    pthread_mutex_init(&ib->lock, NULL);
}

void inbox_post(struct inbox *ib, struct inbox_item *it)
{
    bool wake;

    it->next = NULL;
    pthread_mutex_lock(&ib->lock);
    wake = ib->head == NULL; /* else the loop is woken already and will take this too */
    if (ib->tail)
        ib->tail->next = it;
    else
        ib->head = it;
    ib->tail = it;
    pthread_mutex_unlock(&ib->lock);
    if (wake)
        event_active(ib->ev, EV_READ, 0);
}

struct inbox_item *inbox_take(struct inbox *ib)
{
    struct inbox_item *all;

    pthread_mutex_lock(&ib->lock);
    all = ib->head;
    ib->head = ib->tail = NULL;
    pthread_mutex_unlock(&ib->lock);
    return all;
}

void inbox_release(struct inbox *ib)
{
    event_free(ib->ev);
    pthread_mutex_destroy(&ib->lock);
}
