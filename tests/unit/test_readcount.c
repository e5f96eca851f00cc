/*
 * test_readcount.c - the local bus and the batch consumer over a real SQLite store,
 * and the consumer's failure handling (poison isolation, transient failures, the
 * stop deadline) over a scripted store and a partitioned bus.
 */
#include "unit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include <sqlite3.h>

#include "bus/local.h"
#include "cache/cache.h"
#include "service/readcount.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/metrics.h"

static struct read_event ev(const char *biz, int64_t id)
{
    struct read_event r = { .item.id = id, .partition = -1, .offset = -1 };
    snprintf(r.item.biz, sizeof(r.item.biz), "%s", biz);
    return r;
}

static void local_bus_bounds_and_drains(void **state)
{
    struct bus *b = bus_local_new(3);
    struct read_event e = ev("a", 1), out[8];
    size_t n;
    (void)state;

    assert_int_equal(bus_publish(b, &e), 0);
    assert_int_equal(bus_publish(b, &e), 0);
    assert_int_equal(bus_publish(b, &e), 0);
    assert_int_equal(bus_publish(b, &e), TALLY_EFULL);
    assert_int_equal(bus_poll(b, out, 2, 0, &n), 0);
    assert_int_equal(n, 2);
    bus_close(b, 0);
    assert_int_equal(bus_publish(b, &e), TALLY_ECLOSED);
    /* What was accepted before close is still handed out. */
    assert_int_equal(bus_poll(b, out, 8, 0, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(bus_poll(b, out, 8, 10, &n), TALLY_ECLOSED);
    assert_int_equal(n, 0);
    bus_free(b);
}

static void poll_times_out_empty(void **state)
{
    struct bus *b = bus_local_new(4);
    struct read_event out[1];
    size_t n = 99;
    (void)state;

    assert_int_equal(bus_poll(b, out, 1, 20, &n), 0);
    assert_int_equal(n, 0);
    bus_free(b);
}

static void merge_sorts_and_sums(void **state)
{
    struct read_event e[6] = { ev("b", 2), ev("a", 9), ev("b", 2),
                               ev("a", 10), ev("a", 9), ev("b", 2) };
    struct read_delta d[6];
    size_t k;
    (void)state;

    k = readcount_merge(e, 6, d);
    assert_int_equal(k, 3);
    assert_string_equal(d[0].item.biz, "a");
    assert_int_equal(d[0].item.id, 9);
    assert_int_equal(d[0].n, 2);
    assert_int_equal(d[1].item.id, 10);
    assert_int_equal(d[1].n, 1);
    assert_string_equal(d[2].item.biz, "b");
    assert_int_equal(d[2].n, 3);
}

/* 20,000 events over 50 items through the real consumer: every one is counted. */
static void consumer_counts_everything_by_stop(void **state)
{
    char *path = unit_temp_db(), url[256], *err = NULL;
    struct store *s;
    struct cache *c;
    struct bus *b = bus_local_new(100000);
    struct readcount_config cfg = { .batch = 512, .flush_ms = 5, .stop_wait_ms = 1000 };
    struct readcount *rc;
    struct item items[50];
    struct counts counts[50];
    int64_t total = 0;
    (void)state;

    snprintf(url, sizeof(url), "sqlite:%s", path);
    assert_int_equal(store_open(url, &s, &err), 0);
    assert_int_equal(cache_open("none", &c, &err), 0);
    rc = readcount_start(b, s, c, &cfg);
    for (int i = 0; i < 20000; i++) {
        struct read_event e = ev("article", 1 + i % 50);
        assert_int_equal(bus_publish(b, &e), 0);
    }
    readcount_stop(rc); /* graceful: drains the bus first */
    for (int i = 0; i < 50; i++)
        items[i] = ev("article", i + 1).item;
    assert_int_equal(store_counts(s, items, 50, counts), 0);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(counts[i].read_cnt, 400);
        total += counts[i].read_cnt;
    }
    assert_int_equal(total, 20000);
    bus_free(b);
    cache_free(c);
    store_free(s);
    unit_remove_db(path);
}

/* ------------------------------------------------------------ a scripted store */

#define FAKE_ITEMS 64
#define FAKE_PARTS 8
#define POISON_REJECTED 7 /* apply_reads refuses any batch with this id: TALLY_EREJECTED */
#define POISON_INTERNAL 9 /* ... and with this one: TALLY_EINTERNAL */

/* Shared by the consumer thread and the test under lock. */
struct fake_store {
    struct store base;
    pthread_mutex_t lock;
    int64_t count[FAKE_ITEMS];   /* read_cnt per id */
    int64_t stored[FAKE_PARTS];  /* next offset per partition, -1: none */
    struct read_event dead[4096];
    size_t ndead, applies, stale;
    int unavail;                 /* the next `unavail` calls fail with TALLY_EUNAVAIL */
    int lost_commits;            /* the next ... commit, then fail so (the connection lost) */
    int64_t internal_calls;
    bool hold;                   /* apply_reads waits (a commit held back by a row lock) */
    int waiting;                 /* calls waiting on hold */
    pthread_cond_t released;
};

/* The compare-and-set every adapter performs; 0 or TALLY_ESTALE. */
static int fake_offsets(struct fake_store *f, const struct store_offset *offs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (f->stored[offs[i].partition] != offs[i].expect) {
            f->stale++;
            return TALLY_ESTALE;
        }
    for (size_t i = 0; i < n; i++)
        f->stored[offs[i].partition] = offs[i].next;
    return 0;
}

static int fake_apply(struct store *s, struct read_batch *b)
{
    struct fake_store *f = (struct fake_store *)s;
    const struct read_delta *d = b->d;
    const struct store_offset *offs = b->offs;
    size_t n, noffs = b->noffs;
    int rc = 0;

    if (b->decide) /* nothing remembered: every read is new */
        b->decide(b);
    n = b->n;

    pthread_mutex_lock(&f->lock);
    f->waiting++;
    while (f->hold)
        pthread_cond_wait(&f->released, &f->lock);
    f->waiting--;
    if (f->unavail > 0) {
        f->unavail--;
        rc = TALLY_EUNAVAIL;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (d[i].item.id == POISON_REJECTED)
            rc = TALLY_EREJECTED;
        if (d[i].item.id == POISON_INTERNAL && !rc) {
            f->internal_calls++;
            rc = TALLY_EINTERNAL;
        }
    }
    if (rc || (rc = fake_offsets(f, offs, noffs)))
        goto out;
    for (size_t i = 0; i < n; i++)
        f->count[d[i].item.id] += d[i].n;
    f->applies++;
    if (f->lost_commits > 0) {
        f->lost_commits--;
        rc = TALLY_EUNAVAIL;
    }
out:
    pthread_mutex_unlock(&f->lock);
    return rc;
}

static int fake_dead_letter(struct store *s, const struct read_event *ev, size_t n,
                            const char *topic, const struct store_offset *offs, size_t noffs,
                            const char *error, int64_t now_ms)
{
    struct fake_store *f = (struct fake_store *)s;
    int rc;
    (void)topic, (void)error, (void)now_ms;

    pthread_mutex_lock(&f->lock);
    if ((rc = fake_offsets(f, offs, noffs)) == 0)
        for (size_t i = 0; i < n; i++)
            f->dead[f->ndead++] = ev[i];
    pthread_mutex_unlock(&f->lock);
    return rc;
}

static int fake_load_offset(struct store *s, const char *topic, int32_t partition, int64_t *next)
{
    struct fake_store *f = (struct fake_store *)s;
    (void)topic;

    pthread_mutex_lock(&f->lock);
    *next = f->stored[partition];
    pthread_mutex_unlock(&f->lock);
    return 0;
}

static const struct store_ops fake_store_ops = {
    .name = "fake",
    .apply_reads = fake_apply,
    .dead_letter = fake_dead_letter,
    .load_offset = fake_load_offset,
};

static struct fake_store *fake_store_new(void)
{
    struct fake_store *f = calloc(1, sizeof(*f));

    f->base.ops = &fake_store_ops;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->released, NULL);
    for (int p = 0; p < FAKE_PARTS; p++)
        f->stored[p] = -1;
    return f;
}

/* ------------------------------------------------------------ a partitioned bus */

/* A topic in memory: events with partitions and offsets, handed out in order. */
struct fake_bus {
    struct bus base;
    pthread_mutex_t lock;
    struct read_event ev[4096];
    size_t n, next;
    int64_t expect[FAKE_PARTS];
    bool closed;
};

static int fbus_publish(struct bus *b, const struct read_event *ev)
{
    struct fake_bus *fb = (struct fake_bus *)b;

    pthread_mutex_lock(&fb->lock);
    fb->ev[fb->n++] = *ev;
    pthread_mutex_unlock(&fb->lock);
    return 0;
}

static int fbus_poll(struct bus *b, struct read_event *out, size_t max, int timeout_ms, size_t *n)
{
    struct fake_bus *fb = (struct fake_bus *)b;
    int rc = 0;

    pthread_mutex_lock(&fb->lock);
    for (*n = 0; !fb->closed && *n < max && fb->next < fb->n;)
        out[(*n)++] = fb->ev[fb->next++];
    if (fb->closed)
        rc = TALLY_ECLOSED; /* like Kafka: a stop leaves the rest in the topic */
    pthread_mutex_unlock(&fb->lock);
    if (*n == 0 && !rc) {
        struct timespec ts = {0, (long)(timeout_ms < 5 ? timeout_ms : 5) * 1000000L};
        nanosleep(&ts, NULL);
    }
    return rc;
}

static int64_t fbus_expect(struct bus *b, int32_t partition)
{
    return ((struct fake_bus *)b)->expect[partition];
}

static void fbus_committed(struct bus *b, const struct store_offset *offs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ((struct fake_bus *)b)->expect[offs[i].partition] = offs[i].next;
}

static void fbus_rewind(struct bus *b)
{
    (void)b;
}

static void fbus_close(struct bus *b, int timeout_ms)
{
    struct fake_bus *fb = (struct fake_bus *)b;
    (void)timeout_ms;

    pthread_mutex_lock(&fb->lock);
    fb->closed = true;
    pthread_mutex_unlock(&fb->lock);
}

static const struct bus_ops fake_bus_ops = {
    .name = "fake",
    .publish = fbus_publish,
    .poll = fbus_poll,
    .expect = fbus_expect,
    .committed = fbus_committed,
    .rewind = fbus_rewind,
    .close = fbus_close,
};

static struct fake_bus *fake_bus_new(void)
{
    struct fake_bus *fb = calloc(1, sizeof(*fb));

    fb->base.ops = &fake_bus_ops;
    fb->base.topic = "t";
    pthread_mutex_init(&fb->lock, NULL);
    for (int p = 0; p < FAKE_PARTS; p++)
        fb->expect[p] = -1;
    return fb;
}

static bool fbus_consumed(struct fake_bus *fb)
{
    bool all;

    pthread_mutex_lock(&fb->lock);
    all = fb->next == fb->n;
    pthread_mutex_unlock(&fb->lock);
    return all;
}

static int64_t dead_metric(const char *reason)
{
    char labels[64];

    snprintf(labels, sizeof(labels), "reason=\"%s\"", reason);
    return metric_value(metrics_counter("tally_read_events_dead_total", "", labels));
}

/* Waits up to 10 s for cond(arg); false if it never held. */
static bool eventually(bool (*cond)(void *), void *arg)
{
    int64_t until = clock_mono_us() + 10 * 1000000;

    while (!cond(arg)) {
        struct timespec ts = {0, 2000000};
        if (clock_mono_us() > until)
            return false;
        nanosleep(&ts, NULL);
    }
    return true;
}

static bool store_settled(void *arg)
{
    struct fake_store *f = arg;
    bool idle;

    pthread_mutex_lock(&f->lock);
    idle = f->stored[0] == 500 && f->stored[1] == 500 && f->stored[2] == 500 &&
           f->stored[3] == 500; /* 2,000 events over 4 partitions: offsets 0..499 */
    pthread_mutex_unlock(&f->lock);
    return idle;
}

/*
 * 2,000 events over 4 partitions and 20 items in one batch; the store refuses every
 * batch holding item 7 (for good) or item 9 (as a bug). Splitting must isolate each of
 * those events, dead-letter it with its offset, count every other event exactly, and
 * keep every commit's offsets contiguous (the fake store's compare-and-set).
 */
static void poison_events_are_isolated_and_dead_lettered(void **state)
{
    struct fake_store *f = fake_store_new();
    struct fake_bus *fb = fake_bus_new();
    struct cache *c;
    char *err = NULL;
    struct readcount_config cfg = { .batch = 2000, .flush_ms = 20, .stop_wait_ms = 1000 };
    struct readcount *rc;
    int64_t want[FAKE_ITEMS] = {0}, rejected0 = dead_metric("rejected"),
            internal0 = dead_metric("internal"), last[FAKE_PARTS];
    size_t poison = 0;
    bool seen[2000] = {false};
    (void)state;

    assert_int_equal(cache_open("none", &c, &err), 0);
    for (int i = 0; i < 2000; i++) {
        struct read_event e = ev("article", 1 + (i * 7 + i / 3) % 20);
        e.partition = i % 4;
        e.offset = i / 4;
        last[e.partition] = e.offset;
        want[e.item.id]++;
        poison += e.item.id == POISON_REJECTED || e.item.id == POISON_INTERNAL;
        fbus_publish(&fb->base, &e);
    }
    rc = readcount_start(&fb->base, &f->base, c, &cfg);
    assert_true(eventually(store_settled, f));
    assert_true(fbus_consumed(fb));
    readcount_stop(rc);

    for (int id = 1; id <= 20; id++)
        if (id != POISON_REJECTED && id != POISON_INTERNAL)
            assert_int_equal(f->count[id], want[id]);
    assert_int_equal(f->count[POISON_REJECTED], 0);
    assert_int_equal(f->count[POISON_INTERNAL], 0);
    assert_int_equal(f->ndead, poison);
    for (size_t i = 0; i < f->ndead; i++) {
        int64_t at = f->dead[i].offset * 4 + f->dead[i].partition;
        assert_true(f->dead[i].item.id == POISON_REJECTED ||
                    f->dead[i].item.id == POISON_INTERNAL);
        assert_false(seen[at]); /* each poisoned event exactly once */
        seen[at] = true;
    }
    for (int p = 0; p < 4; p++)
        assert_int_equal(f->stored[p], last[p] + 1); /* stored past every event */
    assert_int_equal(f->stale, 0); /* every split commit continued where the last ended */
    assert_int_equal(dead_metric("rejected") - rejected0, want[POISON_REJECTED]);
    assert_int_equal(dead_metric("internal") - internal0, want[POISON_INTERNAL]);
    /* A bug is retried a few times on the whole batch, then once per split range. */
    assert_true(f->internal_calls <= 3 + 2 * want[POISON_INTERNAL] * 11);
    cache_free(c);
    free(fb);
    free(f);
}

static bool failing(void *arg)
{
    return readcount_failing(arg);
}

static bool applied_50(void *arg)
{
    struct fake_store *f = arg;
    bool done;

    pthread_mutex_lock(&f->lock);
    done = f->count[1] == 50;
    pthread_mutex_unlock(&f->lock);
    return done;
}

/* A store that cannot commit for a while: the consumer says so, holds, then applies all. */
static void transient_failures_are_held_and_reported(void **state)
{
    struct fake_store *f = fake_store_new();
    struct cache *c;
    struct bus *b = bus_local_new(1000);
    char *err = NULL;
    struct readcount_config cfg = { .batch = 100, .flush_ms = 5, .stop_wait_ms = 5000 };
    struct readcount *rc;
    (void)state;

    assert_int_equal(cache_open("none", &c, &err), 0);
    f->unavail = 6; /* 50 + 100 + ... ms of backoff */
    rc = readcount_start(b, &f->base, c, &cfg);
    for (int i = 0; i < 50; i++) {
        struct read_event e = ev("article", 1);
        assert_int_equal(bus_publish(b, &e), 0);
    }
    assert_true(eventually(failing, rc));
    assert_true(eventually(applied_50, f));
    assert_false(readcount_failing(rc));
    assert_int_equal(f->ndead, 0);
    readcount_stop(rc);
    bus_free(b);
    cache_free(c);
    free(f);
}

/* A cache that records how each batch's end() was called. */
struct spy_cache {
    struct cache base;
    pthread_mutex_t lock;
    int begins, ends;
    const struct counts *last_delta;
    int64_t last_read; /* delta[0].read_cnt of the last end() with increments */
};

static int spy_begin(struct cache *c, const struct item *items, size_t n, struct flag_write *u)
{
    struct spy_cache *spy = (struct spy_cache *)c;
    (void)items, (void)n, (void)u;

    pthread_mutex_lock(&spy->lock);
    spy->begins++;
    pthread_mutex_unlock(&spy->lock);
    return 0;
}

static int spy_end(struct cache *c, const struct item *items, size_t n,
                   const struct counts *delta, const struct flag_write *u)
{
    struct spy_cache *spy = (struct spy_cache *)c;
    (void)items, (void)n, (void)u;

    pthread_mutex_lock(&spy->lock);
    spy->ends++;
    spy->last_delta = delta;
    if (delta && delta != CACHE_UNKNOWN)
        spy->last_read = delta[0].read_cnt;
    pthread_mutex_unlock(&spy->lock);
    return 0;
}

static void spy_free(struct cache *c)
{
    (void)c;
}

static const struct cache_ops spy_ops = {
    .name = "spy", .begin = spy_begin, .end = spy_end, .free = spy_free};

static bool one_end(void *arg)
{
    struct spy_cache *spy = arg;
    bool done;

    pthread_mutex_lock(&spy->lock);
    done = spy->ends == 1;
    pthread_mutex_unlock(&spy->lock);
    return done;
}

/*
 * A batch's commit goes through but its answer is lost with the connection (a Galera
 * writer killed mid-commit): the retry finds the offsets moved (stale). The store holds
 * the batch once; the cache, which never got its increments, must drop the items rather
 * than keep counts that miss them. Without the loss the same batch ends with them.
 */
static void a_commit_lost_with_its_connection_drops_the_cached_items(void **state)
{
    for (int lost = 1; lost >= 0; lost--) {
        struct fake_store *f = fake_store_new();
        struct fake_bus *fb = fake_bus_new();
        struct spy_cache spy = {.base.ops = &spy_ops, .lock = PTHREAD_MUTEX_INITIALIZER};
        struct readcount_config cfg = { .batch = 100, .flush_ms = 5, .stop_wait_ms = 5000 };
        struct readcount *rc;
        (void)state;

        f->lost_commits = lost;
        for (int i = 0; i < 50; i++) { /* one partition: its offsets say what committed */
            struct read_event e = ev("article", 1);
            e.partition = 0;
            e.offset = i;
            fbus_publish(&fb->base, &e);
        }
        rc = readcount_start(&fb->base, &f->base, &spy.base, &cfg);
        assert_true(eventually(applied_50, f));
        assert_true(eventually(one_end, &spy));
        readcount_stop(rc);
        assert_int_equal(f->count[1], 50); /* once, whatever the cache was told */
        assert_int_equal(spy.begins, 1);
        if (lost) {
            assert_ptr_equal(spy.last_delta, CACHE_UNKNOWN);
        } else {
            assert_true(spy.last_delta && spy.last_delta != CACHE_UNKNOWN);
            assert_int_equal(spy.last_read, 50);
        }
        free(fb);
        free(f);
    }
}

/*
 * A stop with the store still failing gives up at its deadline: what the local bus held
 * is counted lost; a partitioned bus's events are not (they stay in their topic).
 */
static void stop_deadline_counts_local_events_lost(void **state)
{
    struct fake_store *f = fake_store_new();
    struct fake_bus *fb = fake_bus_new();
    struct cache *c;
    struct bus *b = bus_local_new(1000);
    char *err = NULL;
    struct readcount_config cfg = { .batch = 100, .flush_ms = 5, .stop_wait_ms = 300 };
    struct readcount *rc;
    int64_t lost0 = readcount_lost_total(), t0;
    (void)state;

    assert_int_equal(cache_open("none", &c, &err), 0);
    f->unavail = 1 << 30;
    rc = readcount_start(b, &f->base, c, &cfg);
    for (int i = 0; i < 250; i++) {
        struct read_event e = ev("article", 1 + i % 3);
        assert_int_equal(bus_publish(b, &e), 0);
    }
    assert_true(eventually(failing, rc));
    t0 = clock_mono_us();
    readcount_stop(rc);
    assert_true(clock_mono_us() - t0 < 2000000); /* bounded by the deadline, not the backoff */
    assert_int_equal(readcount_lost_total() - lost0, 250);
    bus_free(b);

    for (int i = 0; i < 30; i++) {
        struct read_event e = ev("article", 1);
        e.partition = 0;
        e.offset = i;
        fbus_publish(&fb->base, &e);
    }
    rc = readcount_start(&fb->base, &f->base, c, &cfg);
    assert_true(eventually(failing, rc));
    readcount_stop(rc);
    assert_int_equal(readcount_lost_total() - lost0, 250);
    assert_int_equal(f->count[1], 0);
    cache_free(c);
    free(fb);
    free(f);
}

/* ------------------------------------------------------------ a consumer group, scripted */

#define GROUP_PARTS 2
#define GROUP_EVENTS 100 /* per partition */

/*
 * One member of a consumer group over a topic in memory, its rebalances
 * scripted by the test: a revocation or an assignment asked for takes effect
 * inside the member's next poll, as librdkafka's rebalance callback does. An
 * assignment is a new incarnation (gen) that starts every partition at the
 * offset the store holds, read through the consumer's loader, as kafka.c
 * does; committed() moves a held partition's expected offset for any commit,
 * as kafka.c did before generations, so these tests hold the reader to its
 * own part of the invariant. Shared by the test and the reader: under lock.
 */
struct group_bus {
    struct bus base;
    pthread_mutex_t lock;
    struct read_event ev[GROUP_PARTS][GROUP_EVENTS];
    int64_t avail[GROUP_PARTS]; /* events in the topic: ev[p][0, avail[p]) */
    int64_t pos[GROUP_PARTS], expect[GROUP_PARTS];
    bool assigned, revoke_asked, assign_asked, closed;
    uint32_t gen;
    int revokes, assigns; /* taken effect */
};

/* Inside poll, like a rebalance callback: the loader reads the store. */
static void gbus_start_at_stored(struct group_bus *gb)
{
    for (int p = 0; p < GROUP_PARTS; p++) {
        int64_t next = -1;

        assert_int_equal(gb->base.load_offset(gb->base.load_ctx, "t", p, &next), 0);
        gb->expect[p] = next;
        gb->pos[p] = next < 0 ? 0 : next;
    }
}

static int gbus_poll(struct bus *b, struct read_event *out, size_t max, int timeout_ms, size_t *n)
{
    struct group_bus *gb = (struct group_bus *)b;
    int rc = 0;

    *n = 0;
    pthread_mutex_lock(&gb->lock);
    if (gb->closed) {
        rc = TALLY_ECLOSED;
    } else if (gb->revoke_asked) {
        gb->revoke_asked = false;
        gb->assigned = false;
        gb->revokes++;
        rc = TALLY_ESTALE;
    } else {
        if (gb->assign_asked) {
            gb->assign_asked = false;
            gb->assigned = true;
            gb->gen++;
            gb->assigns++;
            gbus_start_at_stored(gb);
        }
        for (bool more = gb->assigned; more && *n < max;) {
            more = false;
            for (int p = 0; p < GROUP_PARTS && *n < max; p++)
                if (gb->pos[p] < gb->avail[p]) {
                    out[*n] = gb->ev[p][gb->pos[p]++];
                    out[(*n)++].gen = gb->gen;
                    more = true;
                }
        }
    }
    pthread_mutex_unlock(&gb->lock);
    if (*n == 0 && !rc) {
        struct timespec ts = {0, (long)(timeout_ms < 5 ? timeout_ms : 5) * 1000000L};
        nanosleep(&ts, NULL);
    }
    return rc;
}

static int64_t gbus_expect(struct bus *b, int32_t partition)
{
    struct group_bus *gb = (struct group_bus *)b;
    int64_t at;

    pthread_mutex_lock(&gb->lock);
    at = gb->expect[partition];
    pthread_mutex_unlock(&gb->lock);
    return at;
}

static void gbus_committed(struct bus *b, const struct store_offset *offs, size_t n)
{
    struct group_bus *gb = (struct group_bus *)b;

    pthread_mutex_lock(&gb->lock);
    for (size_t i = 0; gb->assigned && i < n; i++)
        gb->expect[offs[i].partition] = offs[i].next;
    pthread_mutex_unlock(&gb->lock);
}

static void gbus_rewind(struct bus *b)
{
    struct group_bus *gb = (struct group_bus *)b;

    pthread_mutex_lock(&gb->lock);
    if (gb->assigned)
        gbus_start_at_stored(gb);
    pthread_mutex_unlock(&gb->lock);
}

static void gbus_close(struct bus *b, int timeout_ms)
{
    struct group_bus *gb = (struct group_bus *)b;
    (void)timeout_ms;

    pthread_mutex_lock(&gb->lock);
    gb->closed = true;
    pthread_mutex_unlock(&gb->lock);
}

static const struct bus_ops group_bus_ops = {
    .name = "group",
    .poll = gbus_poll,
    .expect = gbus_expect,
    .committed = gbus_committed,
    .rewind = gbus_rewind,
    .close = gbus_close,
};

/* Items 1..4, every event of partition p on item 1 + p * 2 + offset % 2. */
static struct group_bus *group_bus_new(void)
{
    struct group_bus *gb = calloc(1, sizeof(*gb));

    gb->base.ops = &group_bus_ops;
    gb->base.topic = "t";
    pthread_mutex_init(&gb->lock, NULL);
    for (int p = 0; p < GROUP_PARTS; p++)
        gb->avail[p] = GROUP_EVENTS;
    for (int p = 0; p < GROUP_PARTS; p++)
        for (int o = 0; o < GROUP_EVENTS; o++) {
            gb->ev[p][o] = ev("article", 1 + p * 2 + o % 2);
            gb->ev[p][o].partition = p;
            gb->ev[p][o].offset = o;
        }
    return gb;
}

/* Asks for a revocation (then an assignment, when again) and waits until both took effect. */
static void gbus_rebalance(struct group_bus *gb, bool again)
{
    int revokes, assigns;
    int64_t until = clock_mono_us() + 10 * 1000000;

    pthread_mutex_lock(&gb->lock);
    revokes = gb->revokes + 1;
    assigns = gb->assigns + again;
    gb->revoke_asked = true;
    gb->assign_asked = again;
    while ((gb->revokes < revokes || gb->assigns < assigns) && clock_mono_us() < until) {
        pthread_mutex_unlock(&gb->lock);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
        pthread_mutex_lock(&gb->lock);
    }
    assert_true(gb->revokes >= revokes && gb->assigns >= assigns);
    pthread_mutex_unlock(&gb->lock);
}

static bool group_read_all(void *arg)
{
    struct group_bus *gb = arg;
    bool all = true;

    pthread_mutex_lock(&gb->lock);
    for (int p = 0; p < GROUP_PARTS; p++)
        all = all && gb->assigned && gb->pos[p] == GROUP_EVENTS;
    pthread_mutex_unlock(&gb->lock);
    return all;
}

static bool store_waiting(void *arg)
{
    struct fake_store *f = arg;
    bool w;

    pthread_mutex_lock(&f->lock);
    w = f->waiting > 0;
    pthread_mutex_unlock(&f->lock);
    return w;
}

static bool group_stored_all(void *arg)
{
    struct fake_store *f = arg;
    bool all = true;

    pthread_mutex_lock(&f->lock);
    for (int p = 0; p < GROUP_PARTS; p++)
        all = all && f->stored[p] == GROUP_EVENTS;
    pthread_mutex_unlock(&f->lock);
    return all;
}

static bool store_saw_stale(void *arg)
{
    struct fake_store *f = arg;
    bool stale;

    pthread_mutex_lock(&f->lock);
    stale = f->stale > 0;
    pthread_mutex_unlock(&f->lock);
    return stale;
}

/* Another member of the group takes the partitions and commits offsets [0, upto) of each. */
static void other_member_commits(struct fake_store *f, struct group_bus *gb, int64_t upto)
{
    pthread_mutex_lock(&f->lock);
    for (int p = 0; p < GROUP_PARTS; p++) {
        struct store_offset off = {.partition = p, .expect = f->stored[p], .next = upto};

        for (int64_t o = off.expect < 0 ? 0 : off.expect; o < upto; o++)
            f->count[gb->ev[p][o].item.id]++;
        assert_int_equal(fake_offsets(f, &off, 1), 0);
    }
    pthread_mutex_unlock(&f->lock);
}

enum churn { CHURN_BACK, CHURN_OTHER, CHURN_OUTAGE, CHURN_SEVERAL };

/*
 * The reader hands a batch to the applier and the store holds its commit back
 * (a row lock, or an outage); meanwhile the group rebalances. Whatever the
 * churn, every event is counted exactly once: an offset moves only by a
 * commit of the incarnation that read it.
 */
static void churn_while_a_commit_is_held(enum churn churn)
{
    struct fake_store *f = fake_store_new();
    struct group_bus *gb = group_bus_new();
    struct cache *c;
    char *err = NULL;
    struct readcount_config cfg = {.batch = 50, .read_ahead = 1000, .flush_ms = 5,
                                   .stop_wait_ms = 1000};
    struct readcount *rc;

    assert_int_equal(cache_open("none", &c, &err), 0);
    if (churn == CHURN_OUTAGE)
        f->unavail = 1 << 30;
    else
        f->hold = true;
    gb->assign_asked = true;
    rc = readcount_start(&gb->base, &f->base, c, &cfg);
    if (churn == CHURN_OUTAGE)
        assert_true(eventually(failing, rc));
    else
        assert_true(eventually(store_waiting, f)); /* a batch of the first incarnation */
    switch (churn) {
    case CHURN_BACK:
    case CHURN_OUTAGE:
        gbus_rebalance(gb, true); /* handed back to the same member */
        break;
    case CHURN_SEVERAL:
        for (int i = 0; i < 3; i++)
            gbus_rebalance(gb, true);
        break;
    case CHURN_OTHER:
        gbus_rebalance(gb, false);
        other_member_commits(f, gb, 60);
        break;
    }
    if (churn != CHURN_OTHER) /* the new incarnation has read everything from the store */
        assert_true(eventually(group_read_all, gb));
    pthread_mutex_lock(&f->lock);
    f->hold = false;
    f->unavail = 0;
    pthread_cond_broadcast(&f->released);
    pthread_mutex_unlock(&f->lock);
    if (churn == CHURN_OTHER) {
        assert_true(eventually(store_saw_stale, f)); /* the held batch failed its CAS */
        pthread_mutex_lock(&gb->lock);
        gb->assign_asked = true; /* then the partitions come back */
        pthread_mutex_unlock(&gb->lock);
    }
    assert_true(eventually(group_stored_all, f));
    assert_true(eventually(group_read_all, gb));
    readcount_stop(rc);
    for (int id = 1; id <= 2 * GROUP_PARTS; id++)
        assert_int_equal(f->count[id], GROUP_EVENTS / 2);
    cache_free(c);
    free(gb);
    free(f);
}

static void revoked_and_handed_back_mid_commit(void **state)
{
    (void)state;
    churn_while_a_commit_is_held(CHURN_BACK);
}

static void revoked_to_another_member_mid_commit(void **state)
{
    (void)state;
    churn_while_a_commit_is_held(CHURN_OTHER);
}

static void handed_back_during_a_store_outage(void **state)
{
    (void)state;
    churn_while_a_commit_is_held(CHURN_OUTAGE);
}

static void several_rebalances_mid_commit(void **state)
{
    (void)state;
    churn_while_a_commit_is_held(CHURN_SEVERAL);
}

/* ------------------------------------------------------------ memo expiry across partitions */

static int64_t sql_count(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t n = -1;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

struct partition_behind {
    const char *path;
    int64_t sentinel_ms;
};

static bool sentinel_expired(void *arg)
{
    struct partition_behind *pb = arg;
    char sql[128];

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM read_seen WHERE ms = %lld",
             (long long)pb->sentinel_ms);
    return sql_count(pb->path, sql) == 0;
}

static bool offsets_at(void *arg)
{
    struct partition_behind *pb = arg;

    return sql_count(pb->path, "SELECT count(*) FROM read_offsets WHERE topic = 't' AND "
                               "((part = 0 AND next_offset = 2) OR "
                               "(part = 1 AND next_offset = 10))") == 2;
}

static bool first_offsets(void *arg)
{
    struct partition_behind *pb = arg;

    return sql_count(pb->path, "SELECT count(*) FROM read_offsets WHERE topic = 't' AND "
                               "((part = 0 AND next_offset = 1) OR "
                               "(part = 1 AND next_offset = 10))") == 2;
}

/*
 * Partition 0 runs two hours behind partition 1: its viewer read item 7 two hours ago, and
 * that viewer's repeat a minute later is still in the topic. Memo expiry, running on its
 * schedule meanwhile (a month-old memo goes), must keep what partition 0 will need: the
 * repeat is not counted. Expiring behind the newest event committed (partition 1's) lost
 * the memo and counted it.
 */
static void memos_outlive_a_partition_that_runs_behind(void **state)
{
    char *path = unit_temp_db(), url[256], *err = NULL, sql[160];
    struct store *s;
    struct cache *c;
    struct group_bus *gb = group_bus_new();
    struct readcount_config cfg = {.batch = 50, .read_ahead = 100, .flush_ms = 5,
                                   .stop_wait_ms = 1000, .retention_hours = 35 * 24,
                                   .read_window_ms = 10 * 60 * 1000};
    struct readcount *rc;
    struct item seven = ev("article", 7).item;
    struct counts n7;
    int64_t now = clock_now_ms();
    struct partition_behind pb = {path, now - 30LL * 24 * HOUR_MS};
    sqlite3 *db;
    (void)state;

    snprintf(url, sizeof(url), "sqlite:%s", path);
    assert_int_equal(store_open(url, &s, &err), 0);
    assert_int_equal(cache_open("none", &c, &err), 0);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    snprintf(sql, sizeof(sql), "INSERT INTO read_seen (k, ms) VALUES (1, %lld)",
             (long long)pb.sentinel_ms);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    for (int o = 0; o < 2; o++) { /* the viewer's read and its repeat, two hours ago */
        gb->ev[0][o] = ev("article", 7);
        gb->ev[0][o].viewer = 0xabc;
        gb->ev[0][o].ts = now - 2 * HOUR_MS + o * 60000;
        gb->ev[0][o].partition = 0;
        gb->ev[0][o].offset = o;
    }
    for (int o = 0; o < 10; o++) { /* now, other viewers */
        gb->ev[1][o] = ev("article", 8);
        gb->ev[1][o].viewer = 0x100 + (uint64_t)o;
        gb->ev[1][o].ts = now;
        gb->ev[1][o].partition = 1;
        gb->ev[1][o].offset = o;
    }
    gb->avail[0] = 1; /* the repeat is not in the topic yet */
    gb->avail[1] = 10;
    gb->assign_asked = true;
    rc = readcount_start(&gb->base, s, c, &cfg);
    assert_true(eventually(first_offsets, &pb));
    assert_true(eventually(sentinel_expired, &pb)); /* upkeep ran after both commits */
    pthread_mutex_lock(&gb->lock);
    gb->avail[0] = 2;
    pthread_mutex_unlock(&gb->lock);
    assert_true(eventually(offsets_at, &pb));
    readcount_stop(rc);
    assert_int_equal(store_counts(s, &seven, 1, &n7), 0);
    assert_int_equal(n7.read_cnt, 1);
    free(gb);
    cache_free(c);
    store_free(s);
    unit_remove_db(path);
}

/* ------------------------------------------------------------ start-up and stop */

/* A bus whose consumer cannot start: every poll fails, as kafka.c's does then. */
struct broken_bus {
    struct bus base;
    atomic_int polls;
    atomic_bool closed;
};

static int bbus_poll(struct bus *b, struct read_event *out, size_t max, int timeout_ms, size_t *n)
{
    struct broken_bus *bb = (struct broken_bus *)b;
    (void)out, (void)max, (void)timeout_ms;

    *n = 0;
    if (atomic_load(&bb->closed))
        return TALLY_ECLOSED;
    atomic_fetch_add(&bb->polls, 1);
    return TALLY_EUNAVAIL;
}

static void bbus_close(struct bus *b, int timeout_ms)
{
    (void)timeout_ms;
    atomic_store(&((struct broken_bus *)b)->closed, true);
}

static const struct bus_ops broken_bus_ops = {
    .name = "broken",
    .poll = bbus_poll,
    .expect = gbus_expect,
    .close = bbus_close,
};

/*
 * A consumer that cannot start is retried with backoff (50 ms, doubling, up to 2 s), not
 * at full CPU; a stop ends the retries at once; and once stopped, the bus no longer holds
 * the consumer's loader, which points at what the stop freed.
 */
static void a_bus_that_cannot_start_is_retried_with_backoff(void **state)
{
    struct fake_store *f = fake_store_new();
    struct broken_bus bb = {.base = {.ops = &broken_bus_ops, .topic = "t"}};
    struct cache *c;
    char *err = NULL;
    struct readcount_config cfg = {.batch = 10, .flush_ms = 5, .stop_wait_ms = 5000};
    struct readcount *rc;
    struct timespec second = {1, 0};
    int64_t t0;
    (void)state;

    assert_int_equal(cache_open("none", &c, &err), 0);
    rc = readcount_start(&bb.base, &f->base, c, &cfg);
    assert_non_null(bb.base.load_offset);
    nanosleep(&second, NULL); /* retries at 0, 50, 150, 350, 750 ms */
    assert_in_range(atomic_load(&bb.polls), 2, 6);
    nanosleep(&second, NULL); /* inside the 800 ms wait before the 1,550 ms retry */
    t0 = clock_mono_us();
    readcount_stop(rc);
    assert_true(clock_mono_us() - t0 < 300000); /* a stop cuts the backoff short */
    assert_null(bb.base.load_offset);
    assert_null(bb.base.load_ctx);
    cache_free(c);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(local_bus_bounds_and_drains),
        cmocka_unit_test(poll_times_out_empty),
        cmocka_unit_test(merge_sorts_and_sums),
        cmocka_unit_test(consumer_counts_everything_by_stop),
        cmocka_unit_test(poison_events_are_isolated_and_dead_lettered),
        cmocka_unit_test(transient_failures_are_held_and_reported),
        cmocka_unit_test(stop_deadline_counts_local_events_lost),
        cmocka_unit_test(revoked_and_handed_back_mid_commit),
        cmocka_unit_test(revoked_to_another_member_mid_commit),
        cmocka_unit_test(handed_back_during_a_store_outage),
        cmocka_unit_test(several_rebalances_mid_commit),
        cmocka_unit_test(a_bus_that_cannot_start_is_retried_with_backoff),
        cmocka_unit_test(memos_outlive_a_partition_that_runs_behind),
        cmocka_unit_test(a_commit_lost_with_its_connection_drops_the_cached_items),
    };
    return cmocka_run_group_tests_name("readcount", tests, NULL, NULL);
}
