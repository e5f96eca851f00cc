/*
 * bus.h - the bus port: carries read events from the API to the consumer.
 *
 * publish() is called by HTTP threads and must never block on a server: it
 * enqueues and returns, or says TALLY_EFULL so the API can answer 503
 * instead of dropping the event. poll() is called by the one read-count
 * consumer thread (service/readcount.c), the same code for every adapter.
 * After close(), publish() refuses with TALLY_ECLOSED and poll() hands out
 * what is still queued, then returns TALLY_ECLOSED: a graceful stop loses
 * nothing that was accepted, unless it runs out of time. An adapter that
 * gives up on an accepted event (a producer that never got it acknowledged)
 * counts it, once, in tally_read_events_lost_total.
 *
 * Offsets (a bus whose events have partitions, i.e. Kafka): the consumer
 * applies each batch together with, per partition, the offset range it
 * covers, compare-and-set against the offset stored with the counts. The
 * bus tells where each partition's next batch must start (expect), learns
 * of each commit (committed), and on assignment or rewind starts every
 * partition at the offset the store holds, read through the loader the
 * consumer installs. poll() returns TALLY_ESTALE when partitions were
 * taken away: the consumer drops what it holds uncommitted, since the new
 * owner starts from the stored offsets.
 *
 * Ownership: every assignment of a partition to this process is a new
 * incarnation with its own generation, carried by each event it hands out
 * (read_event.gen) and by the offsets committed from them. An offset moves
 * only by a commit of the incarnation that read it: committed() ignores an
 * offset of an older generation, and a consumer whose batch was committed
 * across a revocation rewinds to the store, so a partition handed back while
 * a batch of its old incarnation committed is read again from where that
 * commit left it, never from the stale position it was assigned at.
 */
#ifndef TALLY_BUS_H
#define TALLY_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "model/item.h"

struct bus;
struct store_offset;

/* Reads the next offset stored for (topic, partition); -1 when none. */
typedef int bus_offset_loader(void *ctx, const char *topic, int32_t partition, int64_t *next);

struct bus_ops {
    const char *name;
    int (*publish)(struct bus *b, const struct read_event *ev);
    /*
     * Waits up to timeout_ms for events and copies up to max of them into
     * out; *n says how many (0 on a timeout). Returns 0, or TALLY_ECLOSED
     * once the bus is closed and empty.
     */
    int (*poll)(struct bus *b, struct read_event *out, size_t max, int timeout_ms, size_t *n);
    /* Where the next batch of partition must start: the stored offset, -1 if none. */
    int64_t (*expect)(struct bus *b, int32_t partition);
    /* The store took a batch ending at these offsets; those of an incarnation other
     * than the partition's current one are ignored. */
    void (*committed)(struct bus *b, const struct store_offset *offs, size_t n);
    /* The store refused a batch's offsets: restart every partition from the store. */
    void (*rewind)(struct bus *b);
    /*
     * When every partition this process holds has been read to its end (nothing waits
     * in the topic for it), returns how many it holds and writes the first max of them
     * into parts; else, or with no partitions, 0. Memo expiry uses it
     * (service/readcount.c).
     */
    size_t (*caught_up)(struct bus *b, int32_t *parts, size_t max);
    /* Whether publish() would take an event now: 0, TALLY_EFULL or TALLY_ECLOSED (/readyz). */
    int (*ready)(struct bus *b);
    /*
     * Stops accepting. Waits up to timeout_ms for accepted events to leave the
     * process (a producer's queue to reach the broker); those that cannot are
     * dropped and counted lost.
     */
    void (*close)(struct bus *b, int timeout_ms);
    void (*free)(struct bus *b);
};

struct bus {
    const struct bus_ops *ops;
    const char *topic;              /* where offsets are filed in the store; NULL: no offsets */
    bus_offset_loader *load_offset; /* installed by the consumer before its first poll */
    void *load_ctx;
};

struct url;

/*
 * The bus named by u ("local" or kafka://HOST:PORT/TOPIC?group=NAME):
 * checked, opened (*why and *err as for store_check and store_open_url), or
 * from a string parsed first. queue_max bounds the events held in memory
 * (local ring, producer queue).
 */
int bus_check(const struct url *u, char **why);
int bus_open_url(const struct url *u, size_t queue_max, struct bus **out, char **err);
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
static inline int64_t bus_expect(struct bus *b, int32_t partition)
{
    return b->ops->expect(b, partition);
}
static inline void bus_committed(struct bus *b, const struct store_offset *offs, size_t n)
{
    b->ops->committed(b, offs, n);
}
static inline void bus_rewind(struct bus *b)
{
    b->ops->rewind(b);
}
static inline size_t bus_caught_up(struct bus *b, int32_t *parts, size_t max)
{
    return b->ops->caught_up ? b->ops->caught_up(b, parts, max) : 0;
}
static inline void bus_close(struct bus *b, int timeout_ms)
{
    b->ops->close(b, timeout_ms);
}
static inline int bus_ready(struct bus *b)
{
    return b->ops->ready(b);
}
static inline void bus_free(struct bus *b)
{
    if (b)
        b->ops->free(b);
}

#endif
