/*
 * inbox.h - how work done on another thread comes back to an event loop.
 *
 * A worker posts an item; the loop's event runs and takes every item posted so far, in
 * order. Both servers (HTTP and gRPC) get their answered requests back this way. Items are
 * intrusive: the caller embeds struct inbox_item in its own struct.
 */
#ifndef TALLY_HTTP_INBOX_H
#define TALLY_HTTP_INBOX_H

#include <event2/event.h>
#include <pthread.h>

struct inbox_item {
    struct inbox_item *next;
};

struct inbox {
    pthread_mutex_t lock; /* owns head and tail, which workers append to */
    struct inbox_item *head, *tail;
    struct event *ev; /* made active when the first item arrives */
};

/* run(fd, what, arg) runs on base's loop when items wait. */
void inbox_init(struct inbox *ib, struct event_base *base, event_callback_fn run, void *arg);
/* Appends it and wakes the loop. Any thread. */
void inbox_post(struct inbox *ib, struct inbox_item *it);
/* Every item posted so far, oldest first (linked by next), or NULL. */
struct inbox_item *inbox_take(struct inbox *ib);
/* Frees the event and the lock (items still in it are the caller's: take them first). */
void inbox_release(struct inbox *ib);

#endif
