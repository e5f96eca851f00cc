/*
 * bus.h - the bus port: carries read events from the API to the consumer.
 *
 * publish() is called by HTTP threads and must never block on a server: it
 * enqueues and returns, or says TALLY_EFULL so the API can answer 503
 * instead of dropping the event. poll() is called by the one read-count
 * consumer thread (service/readcount.c), the same code for every adapter.
 * After close(), publish() refuses with TALLY_ECLOSED and poll() hands out
 * what is still queued, then returns TALLY_ECLOSED: a graceful stop loses
 * nothing that was accepted.
 */
#ifndef TALLY_BUS_H
#define TALLY_BUS_H

#include <stddef.h>

#include "model/item.h"

struct bus;

struct bus_ops {
    const char *name;
    int (*publish)(struct bus *b, const struct read_event *ev);
    /*
     * Waits up to timeout_ms for events and copies up to max of them into
     * out; *n says how many (0 on a timeout). Returns 0, or TALLY_ECLOSED
     * once the bus is closed and empty.
     */
    int (*poll)(struct bus *b, struct read_event *out, size_t max, int timeout_ms, size_t *n);
    void (*close)(struct bus *b);
    void (*free)(struct bus *b);
};

struct bus {
    const struct bus_ops *ops;
    const char *topic; /* where offsets are filed in the store; NULL: no offsets */
};

/* Opens the bus named by url ("local"). queue_max bounds the events held in memory. */
int bus_open(const char *url, size_t queue_max, struct bus **out, char **err);
int bus_check_url(const char *url, char **err);

static inline int bus_publish(struct bus *b, const struct read_event *ev)
{
    return b->ops->publish(b, ev);
}
static inline int bus_poll(struct bus *b, struct read_event *out, size_t max, int timeout_ms,
                           size_t *n)
{
    return b->ops->poll(b, out, max, timeout_ms, n);
}
static inline void bus_close(struct bus *b)
{
    b->ops->close(b);
}
static inline void bus_free(struct bus *b)
{
    if (b)
        b->ops->free(b);
}

#endif
