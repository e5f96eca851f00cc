/*
 * readcount.c - see readcount.h.
 *
 * DESIGN: merging before writing is where the speed is. A batch of
 * 1,000 reads of a popular item becomes one row of one multi-row upsert;
 * the rows are sorted by (biz, id) so two consumers writing to the same
 * database always lock rows in the same order and cannot deadlock.
 *
 * Failures are sorted by what retrying can do. A store that cannot commit
 * now (down, locked, disk full) is retried with capped backoff for as long
 * as it takes, and the consumer says it is failing, so /healthz answers 503
 * and the bounded bus turns further reads into 503s: nothing accepted is
 * dropped because a server is down. A batch the store refuses for good is
 * split in halves, recursively, until the event it refuses is alone; that
 * event goes to the dead-letter table and the others are counted. Halves
 * follow the order the bus handed the events out, so each half covers a
 * contiguous offset range of every partition and is committed with those
 * offsets: splitting keeps every commit exactly once. A stop gives up at its
 * deadline; what the local bus still held is then lost, and counted.
 *
 * Two threads, so that reading the bus never waits for the store. The
 * reader owns the bus: it polls into a read-ahead buffer, hands one batch
 * at a time to the applier, and when the applier is done tells the bus what
 * was committed (or rewinds it). The applier owns the store side and knows
 * the partitions' stored offsets from a table the reader fills at each
 * handover. The read-ahead is what keeps a broker's backlog flowing: while a
 * batch commits, librdkafka 2.0 stops fetching for a whole second once its
 * own queue reaches its bound (kept small, since it costs about four times
 * the memory of a parsed event), so tally holds up to --read-ahead parsed
 * events itself, about a second of committing.
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
#include "util/hash.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/strbuf.h"
#include "util/xmalloc.h"
#include "util/banned.h"

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000
#define SWEEP_EVERY_MS 1000
/* Likes' queued transitions are moved into the windows this often (where the store queues
 * them): small steps, so neither a window lags a like by more than about this nor does a
 * second's worth of them land on the store at once. */
#define TRANSITIONS_EVERY_MS 100
#define INTERNAL_TRIES 3 /* a TALLY_EINTERNAL is a bug: tried this often, then dead-lettered */

enum dead_reason { DEAD_REJECTED, DEAD_INTERNAL, DEAD_COUNT };
static const char *const dead_names[DEAD_COUNT] = {"rejected", "internal"};

static const char lost_help[] = "Accepted read events never applied nor dead-lettered: dropped "
                                "at stop or never acknowledged by the broker.";

/*
 * The reader thread owns the bus and the read-ahead; the applier owns the
 * batch and everything after it, and `pos` while a job runs. Under lock:
 * stopping and deadline_us (set by readcount_stop; wake cuts a backoff
 * short), and the job handover (job_*, quit; job_cond). failing is read by
 * any thread for /healthz.
 */
struct readcount {
    struct bus *bus;
    struct store *store;
    struct cache *cache;
    struct readcount_config cfg;
    pthread_t thread, applier;
    pthread_mutex_t lock;
    pthread_cond_t wake, job_cond;
    bool stopping;
    int64_t deadline_us; /* clock_mono_us() when a stop gives up */
    atomic_bool failing;
    size_t job_n;   /* events of the batch handed to the applier; 0: none */
    bool job_done;  /* the applier finished it: its outcome below is ready */
    size_t job_stale; /* of it, events left uncommitted because another consumer moved on */
    bool quit;      /* the reader is done: the applier exits */
    /* Reader only: partitions were revoked since the job was handed over (finish_job
     * rewinds), and whether polling the bus fails (logged on change). */
    bool revoked_in_job, poll_failing;
    /* Polled, not yet handed over: ahead[ahead_at, ahead_at + nahead). */
    struct read_event *ahead;
    size_t ahead_cap, ahead_at, nahead;
    /* Per partition of the job: expect = the stored next offset at handover (from the
     * bus), next = where its next commit starts now (moved by the applier). */
    struct store_offset *pos;
    size_t npos;
    struct read_event *events;  /* the batch, in the order the bus handed it out */
    struct read_event *scratch; /* a copy of a range, reordered by merging */
    struct read_delta *deltas;
    struct read_delta *hours; /* per (item, hour) */
    /* Deciding which reads count (decide()): per event of the range being committed, its
     * memo keys (0: none); per memo table, the keys looked up (sorted, unique), their
     * state while deciding, and the rows to write. */
    const struct read_event *range;
    size_t nrange;
    int64_t *ev_key[MEMO_COUNT];
    struct memo *lookup[MEMO_COUNT], *write[MEMO_COUNT];
    int64_t *cur[MEMO_COUNT];
    size_t repeats, deduped; /* of the last decision */
    int64_t newest_ms;       /* the newest event time committed by this process */
    int64_t next_sweep_us;    /* clock_mono_us() of the next window upkeep step */
    bool upkeep_failing;      /* the last step failed (logged on change) */
    int64_t next_moves_us;    /* clock_mono_us() when queued transitions are next moved */
    bool moves_failing;       /* the last move failed (logged on change) */
    bool moved_last;          /* the applier's last step moved transitions (not upkeep) */
    /* Partitions the reader found read to their end with nothing held (caught_up), for
     * the applier to mark in the store at its next upkeep step; under lock. */
    int32_t *touch;
    size_t ntouch, touch_cap;
    int64_t touch_ms;
    int64_t next_touch_us; /* reader only: when to look again */
    /* clock_mono_us() when upkeep last had nothing left to do; the reader turns it into
     * tally_window_sweep_lag_seconds. */
    _Atomic int64_t upkeep_done_us;
    struct item *items;
    struct counts *incr;
    struct store_offset *offs; /* one per partition of a range: at most `batch` */
    size_t dead_in_batch;
    bool gave_up; /* a stop ran out of time */
    struct metric *m_deduped, *m_repeats;
    struct metric *m_applied, *m_batches, *m_batch_size, *m_failures, *m_lost, *m_stale,
        *m_failing, *m_dead[DEAD_COUNT], *m_sweep_lag;
};

static int event_cmp(const void *a, const void *b)
{
    const struct read_event *x = a, *y = b;
    return item_cmp(&x->item, &y->item);
}

int64_t readcount_event_hour(const struct read_event *ev, int64_t now_ms)
{
    int64_t ts = ev->ts;

    if (ts <= 0 || ts > now_ms + READ_FUTURE_MS)
        ts = now_ms; /* unknown, or too far ahead to trust: the arrival */
    return store__hour_of(ts);
}

static int hour_cmp(const void *a, const void *b)
{
    const struct read_delta *x = a, *y = b;
    int c = item_cmp(&x->item, &y->item);

    return c ? c : (x->hour > y->hour) - (x->hour < y->hour);
}

size_t readcount_merge_hours(const struct read_event *ev, size_t n, int64_t now_ms,
                             struct read_delta *out)
{
    size_t m = 0, k = 0;

    for (size_t i = 0; i < n; i++)
        if (!ev[i].skip)
            out[m++] = (struct read_delta){ev[i].item, 1, readcount_event_hour(&ev[i], now_ms)};
    qsort(out, m, sizeof(*out), hour_cmp);
    for (size_t i = 0; i < m; i++) {
        if (k > 0 && hour_cmp(&out[k - 1], &out[i]) == 0)
            out[k - 1].n++;
        else
            out[k++] = out[i];
    }
    return k;
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
            out[k].hour = 0;
            k++;
        }
    }
    return k;
}

/* Where partition's next commit starts, as the applier knows it (-1: nothing stored). */
static int64_t stored_next(const struct readcount *rc, int32_t partition)
{
    for (size_t i = 0; i < rc->npos; i++)
        if (rc->pos[i].partition == partition)
            return rc->pos[i].next;
    return -1;
}

/* Records a commit of offs[0, n) in the applier's table; the reader tells the bus. */
static void committed(struct readcount *rc, const struct store_offset *offs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < rc->npos; j++)
            if (rc->pos[j].partition == offs[i].partition)
                rc->pos[j].next = offs[i].next;
}

/*
 * The offset range each partition of ev[0, n) covers: from where the store
 * holds the partition, to just past its last event. Any number of
 * partitions: there are at most n, and rc->offs holds `batch`.
 */
static size_t collect_offsets(struct readcount *rc, const struct read_event *ev, size_t n)
{
    struct store_offset *offs = rc->offs;
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        size_t j;

        if (ev[i].partition < 0)
            continue;
        for (j = 0; j < k && offs[j].partition != ev[i].partition; j++)
            ;
        if (j == k) {
            offs[k].partition = ev[i].partition;
            offs[k].expect = stored_next(rc, ev[i].partition);
            offs[k].next = ev[i].offset + 1;
            offs[k].gen = ev[i].gen;
            offs[k].event_ms = 0;
            j = k++;
        } else if (ev[i].offset + 1 > offs[j].next) {
            offs[j].next = ev[i].offset + 1;
        }
        if (!ev[i].skip && ev[i].ts > offs[j].event_ms)
            offs[j].event_ms = ev[i].ts;
    }
    return k;
}

/* Whether a stop is under way and its deadline has passed. */
static bool out_of_time(struct readcount *rc)
{
    bool over;

    pthread_mutex_lock(&rc->lock);
    over = rc->stopping && clock_mono_us() >= rc->deadline_us;
    pthread_mutex_unlock(&rc->lock);
    return over;
}

/*
 * Waits *backoff_ms (then doubles it, up to BACKOFF_MAX_MS), never past a
 * stop's deadline. Returns false when that deadline has passed.
 */
static bool backoff_wait(struct readcount *rc, int *backoff_ms)
{
    int64_t until = clock_mono_us() + (int64_t)*backoff_ms * 1000, now;
    bool more = true;

    pthread_mutex_lock(&rc->lock);
    for (;;) {
        int64_t end = until;
        struct timespec ts;

        now = clock_mono_us();
        if (rc->stopping && rc->deadline_us < end)
            end = rc->deadline_us;
        if (now >= end) {
            more = !(rc->stopping && now >= rc->deadline_us);
            break;
        }
        ts.tv_sec = (time_t)(end / 1000000);
        ts.tv_nsec = (long)(end % 1000000) * 1000L;
        pthread_cond_timedwait(&rc->wake, &rc->lock, &ts);
    }
    pthread_mutex_unlock(&rc->lock);
    *backoff_ms = *backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *backoff_ms * 2;
    return more;
}

/* Publishes whether the store is failing; logs only the changes. */
static void set_failing(struct readcount *rc, bool failing, int err)
{
    if (atomic_exchange(&rc->failing, failing) == failing)
        return;
    metric_set(rc->m_failing, failing ? 1 : 0);
    if (failing)
        log_warn("readcount: the store cannot commit (%s); holding read events and retrying",
                 tally_strerror(err));
    else
        log_info("readcount: the store commits again");
}

/*
 * Whether err is worth another try: transient, or a bug not yet tried `tries`
 * times (INTERNAL_TRIES on a whole batch; once on the halves of a batch that
 * already failed so, or isolating a culprit would wait out backoffs at every level).
 */
static bool retry(struct readcount *rc, int err, int attempt, int tries)
{
    if (err != TALLY_EUNAVAIL && (err != TALLY_EINTERNAL || attempt >= tries))
        return false;
    set_failing(rc, true, err);
    return true;
}

/* The time a read is decided at: its event time, the same on every replay. */
static int64_t event_ms(const struct read_event *ev, int64_t now_ms)
{
    return ev->ts > 0 ? ev->ts : now_ms;
}

/* The read_seen key of (uid or viewer, item); 0 when the read has neither. */
static int64_t seen_key(const struct read_event *ev)
{
    struct strbuf sb = STRBUF_INIT;
    int64_t k;

    if (!ev->uid && !ev->viewer)
        return 0;
    if (ev->uid)
        strbuf_addf(&sb, "u%lld/%s/%lld", (long long)ev->uid, ev->item.biz,
                    (long long)ev->item.id);
    else
        strbuf_addf(&sb, "v%016llx/%s/%lld", (unsigned long long)ev->viewer, ev->item.biz,
                    (long long)ev->item.id);
    k = (int64_t)hash64("seen", sb.buf, sb.len);
    strbuf_release(&sb);
    return k;
}

static int memo_cmp(const void *a, const void *b)
{
    const struct memo *x = a, *y = b;
    return (x->key > y->key) - (x->key < y->key);
}

/* Index of key in the sorted lookup[0, n). */
static size_t memo_find(const struct memo *lookup, size_t n, int64_t key)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (lookup[mid].key < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    TALLY_ASSERT(lo < n && lookup[lo].key == key);
    return lo;
}

/* Sets each event's memo keys and the batch's sorted, unique lookups. */
static void memo_keys(struct readcount *rc, const struct read_event *ev, size_t n,
                      struct read_batch *b)
{
    for (int m = 0; m < MEMO_COUNT; m++) {
        size_t k = 0, u = 0;

        for (size_t i = 0; i < n; i++) {
            int64_t key = 0;

            if (!ev[i].skip && m == MEMO_IDEM)
                key = (int64_t)ev[i].idem;
            else if (!ev[i].skip && rc->cfg.read_window_ms > 0)
                key = seen_key(&ev[i]);
            rc->ev_key[m][i] = key;
            if (key)
                rc->lookup[m][k++] = (struct memo){key, INT64_MIN};
        }
        qsort(rc->lookup[m], k, sizeof(struct memo), memo_cmp);
        for (size_t i = 0; i < k; i++)
            if (u == 0 || rc->lookup[m][u - 1].key != rc->lookup[m][i].key)
                rc->lookup[m][u++] = rc->lookup[m][i];
        b->lookup[m] = rc->lookup[m];
        b->nlookup[m] = u;
    }
}

/*
 * Called by the store inside the batch's transaction, once it has looked up what it
 * remembers: decides, in bus order, which reads count, as if one by one. A read is not
 * counted when its idempotency key was first seen less than READ_IDEM_MS before it (a
 * repeat), or when its reader's last counted read of the item is less than --read-window
 * away (a duplicate). Times are the events' own, so a replay of the batch (this one was
 * not committed) finds the same state and decides the same.
 */
static int decide(struct read_batch *b)
{
    struct readcount *rc = b->ctx;
    const struct read_event *ev = rc->range;
    size_t k = 0;

    rc->repeats = rc->deduped = 0;
    for (int m = 0; m < MEMO_COUNT; m++)
        for (size_t i = 0; i < b->nlookup[m]; i++)
            rc->cur[m][i] = b->lookup[m][i].ms;
    for (size_t i = 0; i < rc->nrange; i++) {
        int64_t t = event_ms(&ev[i], b->now_ms), *idem = NULL, *seen = NULL;

        if (ev[i].skip)
            continue;
        if (rc->ev_key[MEMO_IDEM][i])
            idem = &rc->cur[MEMO_IDEM][memo_find(b->lookup[MEMO_IDEM], b->nlookup[MEMO_IDEM],
                                                 rc->ev_key[MEMO_IDEM][i])];
        if (rc->ev_key[MEMO_SEEN][i])
            seen = &rc->cur[MEMO_SEEN][memo_find(b->lookup[MEMO_SEEN], b->nlookup[MEMO_SEEN],
                                                 rc->ev_key[MEMO_SEEN][i])];
        if (idem && *idem != INT64_MIN && llabs(t - *idem) < READ_IDEM_MS) {
            rc->repeats++;
            continue;
        }
        if (idem)
            *idem = t; /* the key's first read, counted or not */
        if (seen && *seen != INT64_MIN && llabs(t - *seen) < rc->cfg.read_window_ms) {
            rc->deduped++;
            continue;
        }
        if (seen)
            *seen = t;
        rc->scratch[k++] = ev[i];
    }
    for (int m = 0; m < MEMO_COUNT; m++) {
        size_t w = 0;

        for (size_t i = 0; i < b->nlookup[m]; i++)
            if (rc->cur[m][i] != b->lookup[m][i].ms)
                rc->write[m][w++] = (struct memo){b->lookup[m][i].key, rc->cur[m][i]};
        b->write[m] = rc->write[m];
        b->nwrite[m] = w;
    }
    b->nhours = rc->cfg.hourly_reads ? readcount_merge_hours(rc->scratch, k, b->now_ms,
                                                             rc->hours)
                                     : 0;
    b->n = readcount_merge(rc->scratch, k, rc->deltas);
    return 0;
}

/*
 * Commits ev[0, n) in one transaction with its offset ranges. Returns 0,
 * TALLY_ESTALE (another consumer moved the offsets), TALLY_EREJECTED or
 * TALLY_EINTERNAL (permanent for this data), or TALLY_ECLOSED (a stop ran
 * out of time first).
 */
static int commit_range(struct readcount *rc, const struct read_event *ev, size_t n, int tries)
{
    size_t noffs = collect_offsets(rc, ev, n), k, counted = 0;
    int backoff = BACKOFF_MIN_MS, err = TALLY_ECLOSED;
    bool lost = false; /* an attempt failed with its outcome unknown */
    struct read_batch b = {.d = rc->deltas,
                           .hours = rc->hours,
                           .topic = rc->bus->topic,
                           .offs = rc->offs,
                           .noffs = noffs,
                           .retention_hours = rc->cfg.retention_hours,
                           .decide = decide,
                           .ctx = rc};

    /* Every item of the range is fenced in the cache; decide() says which reads count. */
    memcpy(rc->scratch, ev, n * sizeof(*ev));
    k = readcount_merge(rc->scratch, n, rc->deltas);
    for (size_t i = 0; i < k; i++)
        rc->items[i] = rc->deltas[i].item;
    rc->range = ev;
    rc->nrange = n;
    memo_keys(rc, ev, n, &b);
    cache_begin(rc->cache, rc->items, k, NULL); /* fences fills while the batch commits */
    for (int attempt = 1; !out_of_time(rc); attempt++) {
        b.now_ms = clock_now_ms();
        err = store_apply_reads(rc->store, &b);
        if (err == 0 || err == TALLY_ESTALE)
            break;
        lost |= err == TALLY_EUNAVAIL; /* a connection lost in the commit: outcome unknown */
        metric_add(rc->m_failures, 1);
        if (!retry(rc, err, attempt, tries))
            break;
        if (!backoff_wait(rc, &backoff)) {
            err = TALLY_ECLOSED;
            break;
        }
    }
    if (err == 0) { /* the decided deltas, by item, onto the fenced items (both sorted) */
        for (size_t i = 0, j = 0; i < k; i++) {
            rc->incr[i] = (struct counts){0};
            if (j < b.n && item_cmp(&b.d[j].item, &rc->items[i]) == 0) {
                rc->incr[i].read_cnt = b.d[j].n;
                counted += (size_t)b.d[j++].n;
            }
        }
        for (size_t i = 0; i < n; i++)
            if (!ev[i].skip && event_ms(&ev[i], b.now_ms) > rc->newest_ms)
                rc->newest_ms = event_ms(&ev[i], b.now_ms);
    }
    /*
     * The cache follows what the store did. Committed: the increments. Stale after an attempt
     * lost in its commit: that attempt may be what committed these offsets (the retry saw
     * them moved), so its counts are unknown to the cache: dropped. Given up after one: it may
     * still commit on the server, so the fence stays up until its deadline (cache/redis.c).
     */
    if (err == 0)
        cache_end(rc->cache, rc->items, k, rc->incr, NULL);
    else if (err == TALLY_ESTALE && lost)
        cache_end(rc->cache, rc->items, k, CACHE_UNKNOWN, NULL);
    else if (!lost)
        cache_end(rc->cache, rc->items, k, NULL, NULL);
    if (err == 0) {
        set_failing(rc, false, 0);
        committed(rc, rc->offs, noffs);
        metric_add(rc->m_applied, counted);
        metric_add(rc->m_deduped, rc->deduped);
        metric_add(rc->m_repeats, rc->repeats);
        metric_add(rc->m_batches, 1);
        metric_observe(rc->m_batch_size, (double)n);
    }
    return err;
}

/*
 * Records one event the store refused (why) in its dead-letter table, moving
 * its offset past it in the same transaction. Returns 0 (recorded, or lost
 * when even that is refused), TALLY_ESTALE or TALLY_ECLOSED.
 */
static int dead_letter(struct readcount *rc, const struct read_event *ev, int why)
{
    size_t noffs = collect_offsets(rc, ev, 1);
    int backoff = BACKOFF_MIN_MS, err = TALLY_ECLOSED;
    enum dead_reason reason = why == TALLY_EREJECTED ? DEAD_REJECTED : DEAD_INTERNAL;

    for (int attempt = 1; !out_of_time(rc); attempt++) {
        err = store_dead_letter(rc->store, ev, 1, rc->bus->topic, rc->offs, noffs,
                                tally_strerror(why), clock_now_ms());
        if (err == 0 || err == TALLY_ESTALE || !retry(rc, err, attempt, INTERNAL_TRIES))
            break;
        if (!backoff_wait(rc, &backoff)) {
            err = TALLY_ECLOSED;
            break;
        }
    }
    if (err == 0) {
        set_failing(rc, false, 0);
        committed(rc, rc->offs, noffs);
        metric_add(rc->m_dead[reason], 1);
        rc->dead_in_batch++;
    } else if (err != TALLY_ESTALE && err != TALLY_ECLOSED) {
        /* Not even its record is accepted: give it up rather than stall every later read.
         * Its offset is moved past by the next commit of its partition. */
        log_error("readcount: a read of %s/%lld was refused (%s) and cannot be dead-lettered "
                  "(%s); dropped",
                  ev->item.biz, (long long)ev->item.id, tally_strerror(why), tally_strerror(err));
        metric_add(rc->m_lost, 1);
        err = 0;
    }
    return err;
}

/*
 * Applies ev[0, n): whole when the store takes it, else in halves, down to
 * the single event it refuses. *done: how many events from the start were
 * committed or dead-lettered (the rest are untouched when an error returns).
 */
static int apply_range(struct readcount *rc, const struct read_event *ev, size_t n, bool split,
                       size_t *done)
{
    size_t half = n / 2, more = 0;
    int err = commit_range(rc, ev, n, split ? 1 : INTERNAL_TRIES);

    *done = 0;
    if (err == 0) {
        *done = n;
        return 0;
    }
    if (err != TALLY_EREJECTED && err != TALLY_EINTERNAL)
        return err;
    if (n == 1) {
        if ((err = dead_letter(rc, ev, err)) == 0)
            *done = 1;
        return err;
    }
    if ((err = apply_range(rc, ev, half, true, done)))
        return err;
    err = apply_range(rc, ev + half, n - half, true, &more);
    *done += more;
    return err;
}

/* A stop ran out of time: the local bus's events are lost; a broker's stay in their topic. */
static void give_up(struct readcount *rc, const struct read_event *ev, size_t n)
{
    size_t lost = 0;

    for (size_t i = 0; i < n; i++)
        lost += ev[i].partition < 0;
    metric_add(rc->m_lost, lost);
    if (!rc->gave_up) /* once: later batches of the same stop go the same way */
        log_warn("readcount: stop deadline reached with the store still failing; read events "
                 "not yet applied are given up (those of a topic remain in it)");
    rc->gave_up = true;
}

/* Applies the job's n events; a stale outcome is left for the reader, which owns the bus. */
static void apply(struct readcount *rc, size_t n)
{
    size_t done = 0;
    int err;

    rc->dead_in_batch = 0;
    err = apply_range(rc, rc->events, n, false, &done);
    if (rc->dead_in_batch)
        log_warn("readcount: %zu read events refused by the store are recorded in "
                 "read_dead_letter (tally_read_events_dead_total); the others were counted",
                 rc->dead_in_batch);
    if (err == TALLY_ESTALE)
        rc->job_stale = n - done;
    else if (err)
        give_up(rc, rc->events + done, n - done);
}

/*
 * The event time behind which no read still to be decided can fall, as far as
 * memos go (0: none known yet). On a bus without offsets, the newest event
 * this process committed. With offsets, the store holds, per partition, the
 * newest event time committed in it (raised to the clock while its owner has
 * read it to its end): the lowest of them, across every tallyd and partition
 * of the topic, so a partition whose owner is an hour behind, or dead with a
 * backlog, keeps the memos it will need. First the reader's caught-up
 * partitions are marked.
 */
static int memo_floor(struct readcount *rc, int64_t *floor_ms)
{
    int64_t floor = INT64_MAX, at;
    int32_t *parts = NULL;
    size_t n;
    int err = 0;

    if (!rc->bus->topic) {
        *floor_ms = rc->newest_ms;
        return 0;
    }
    pthread_mutex_lock(&rc->lock);
    n = rc->ntouch;
    at = rc->touch_ms;
    if (n) {
        parts = xcalloc(n, sizeof(*parts));
        memcpy(parts, rc->touch, n * sizeof(*parts));
        rc->ntouch = 0;
    }
    pthread_mutex_unlock(&rc->lock);
    if (n)
        err = store_events_touch(rc->store, rc->bus->topic, parts, n, at);
    free(parts);
    if (!err)
        err = store_events_floor(rc->store, rc->bus->topic, &floor);
    *floor_ms = floor == INT64_MAX ? rc->newest_ms : floor;
    return err;
}

/*
 * One bounded step of upkeep (windows, retention, memo expiry), due every
 * SWEEP_EVERY_MS and at once while work is left. The applier runs it between
 * jobs, so it keeps its schedule under any load (a job waits one step at
 * most); it holds no lock the store's sweep needs.
 */
static void sweep(struct readcount *rc)
{
    int64_t now_us = clock_mono_us(), floor_ms = 0;
    bool more = false;
    int err;

    err = store_sweep_windows(rc->store, clock_now_ms(), rc->cfg.retention_hours, &more);
    if (!err)
        err = memo_floor(rc, &floor_ms);
    /* Memos expire behind the floor (event time, like the decisions), with an hour's
     * slack for event times that run out of order within a partition. */
    for (int m = 0; m < MEMO_COUNT && !err && floor_ms; m++) {
        int64_t keep = (m == MEMO_IDEM ? READ_IDEM_MS : rc->cfg.read_window_ms) + HOUR_MS;
        bool left = false;

        err = store_expire_memos(rc->store, (enum read_memo)m, floor_ms - keep, &left);
        more = more || left;
    }
    if (err && !rc->upkeep_failing)
        log_warn("readcount: window and memo upkeep failed (%s); retrying every second",
                 tally_strerror(err));
    else if (!err && rc->upkeep_failing)
        log_info("readcount: window and memo upkeep runs again");
    rc->upkeep_failing = err != 0;
    if (!err && !more)
        atomic_store(&rc->upkeep_done_us, now_us);
    rc->next_sweep_us = clock_mono_us() + (more && !err ? 0 : SWEEP_EVERY_MS * 1000);
}

/* Whether window upkeep is due (it runs only where the store has windows). */
static bool sweep_due(const struct readcount *rc)
{
    return rc->cfg.retention_hours > 0 && clock_mono_us() >= rc->next_sweep_us;
}

/*
 * One bounded step moving likes' queued transitions into the hours and windows (a store
 * that queues them: store_has_transitions), every TRANSITIONS_EVERY_MS and at once while
 * some are left. A transition of an hour a window has let go meanwhile goes to its hour
 * only, as a late read does.
 */
static void move_transitions(struct readcount *rc)
{
    bool more = false;
    int err = store_apply_transitions(rc->store, &more);

    if (err && !rc->moves_failing)
        log_warn("readcount: moving likes into their windows failed (%s); retrying",
                 tally_strerror(err));
    else if (!err && rc->moves_failing)
        log_info("readcount: likes move into their windows again");
    rc->moves_failing = err != 0;
    rc->next_moves_us = clock_mono_us() + (more && !err ? 0 : TRANSITIONS_EVERY_MS * 1000);
}

static bool moves_due(const struct readcount *rc)
{
    return store_has_transitions(rc->store) && clock_mono_us() >= rc->next_moves_us;
}

/* When the applier must wake with no job: the next upkeep step or move, if any. */
static int64_t next_wake_us(const struct readcount *rc)
{
    int64_t at = rc->cfg.retention_hours > 0 ? rc->next_sweep_us : INT64_MAX;

    if (store_has_transitions(rc->store) && rc->next_moves_us < at)
        at = rc->next_moves_us;
    return at;
}

/* The applier thread: one job at a time; upkeep between jobs when due. */
static void *applier_main(void *arg)
{
    struct readcount *rc = arg;

    pthread_mutex_lock(&rc->lock);
    for (;;) {
        if (rc->job_n > 0 && !rc->job_done) {
            size_t n = rc->job_n;

            pthread_mutex_unlock(&rc->lock);
            apply(rc, n);
            pthread_mutex_lock(&rc->lock);
            rc->job_done = true;
            pthread_cond_broadcast(&rc->job_cond);
            continue;
        }
        if (rc->quit)
            break;
        bool moves = moves_due(rc), sweeps = sweep_due(rc);

        if (moves || sweeps) {
            /* Taking turns while both are due, so that neither starves the other. */
            moves = moves && (!sweeps || !rc->moved_last);
            rc->moved_last = moves;
            pthread_mutex_unlock(&rc->lock);
            if (moves)
                move_transitions(rc);
            else
                sweep(rc);
            pthread_mutex_lock(&rc->lock);
            continue;
        }
        int64_t wake = next_wake_us(rc);

        if (wake < INT64_MAX) {
            struct timespec ts = {(time_t)(wake / 1000000), (long)(wake % 1000000) * 1000L};
            pthread_cond_timedwait(&rc->job_cond, &rc->lock, &ts);
        } else {
            pthread_cond_wait(&rc->job_cond, &rc->lock);
        }
    }
    pthread_mutex_unlock(&rc->lock);
    return NULL;
}

/* Whether a job is with the applier and not done yet. */
static bool job_running(struct readcount *rc)
{
    bool running;

    pthread_mutex_lock(&rc->lock);
    running = rc->job_n > 0 && !rc->job_done;
    pthread_mutex_unlock(&rc->lock);
    return running;
}

/* Drops the read-ahead: its events are read again from where the store stands. */
static size_t drop_ahead(struct readcount *rc)
{
    size_t n = rc->nahead;

    rc->ahead_at = rc->nahead = 0;
    return n;
}

/*
 * The reader's side of a finished job: tells the bus which offsets were
 * committed. Then, when another consumer had moved them (the job was stale)
 * or partitions were revoked while the job ran, rewinds the bus to what the
 * store holds and drops the read-ahead: a partition handed back meanwhile
 * was assigned at the offset stored before this job committed, so its
 * read-ahead starts inside the job's range and would count it twice.
 */
static void finish_job(struct readcount *rc)
{
    size_t k = 0;

    for (size_t i = 0; i < rc->npos; i++)
        if (rc->pos[i].next != rc->pos[i].expect)
            rc->pos[k++] = rc->pos[i];
    bus_committed(rc->bus, rc->pos, k);
    if (rc->job_stale) /* another consumer moved these offsets: it counted the rest */
        log_warn("readcount: offsets moved by another consumer; %zu read events left to it",
                 rc->job_stale);
    if (rc->job_stale || rc->revoked_in_job) {
        metric_add(rc->m_stale, rc->job_stale + drop_ahead(rc));
        bus_rewind(rc->bus);
    }
    rc->revoked_in_job = false;
    pthread_mutex_lock(&rc->lock);
    rc->job_n = 0;
    rc->job_done = false;
    rc->job_stale = 0;
    pthread_mutex_unlock(&rc->lock);
}

/* Hands the first n events of the read-ahead to the (idle) applier. */
static void hand_over(struct readcount *rc, size_t n)
{
    memcpy(rc->events, rc->ahead + rc->ahead_at, n * sizeof(*rc->events));
    rc->ahead_at += n;
    rc->nahead -= n;
    if (rc->nahead == 0)
        rc->ahead_at = 0;
    rc->npos = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t part = rc->events[i].partition;
        size_t j;

        if (part < 0)
            continue;
        for (j = 0; j < rc->npos && rc->pos[j].partition != part; j++)
            ;
        if (j == rc->npos) {
            int64_t at = bus_expect(rc->bus, part);
            rc->pos[rc->npos++] = (struct store_offset){
                .partition = part, .expect = at, .next = at, .gen = rc->events[i].gen};
        }
    }
    pthread_mutex_lock(&rc->lock);
    rc->job_n = n;
    rc->job_done = false;
    pthread_cond_broadcast(&rc->job_cond);
    pthread_mutex_unlock(&rc->lock);
}

/* Room left at the end of the read-ahead, after moving what is left to its start if needed. */
static size_t ahead_room(struct readcount *rc)
{
    if (rc->ahead_at > 0 && rc->ahead_cap - rc->ahead_at - rc->nahead < rc->cfg.batch) {
        memmove(rc->ahead, rc->ahead + rc->ahead_at, rc->nahead * sizeof(*rc->ahead));
        rc->ahead_at = 0;
    }
    return rc->ahead_cap - rc->ahead_at - rc->nahead;
}

/* The bus cannot hand out events (a consumer that cannot start): log the change, back off. */
static void poll_failed(struct readcount *rc, int err, int *backoff_ms)
{
    int64_t until = clock_mono_us() + (int64_t)*backoff_ms * 1000;

    if (!rc->poll_failing)
        log_warn("readcount: cannot read read events (%s); retrying with backoff",
                 tally_strerror(err));
    rc->poll_failing = true;
    pthread_mutex_lock(&rc->lock);
    while (!rc->stopping && clock_mono_us() < until) { /* a stop closes the bus: poll again */
        struct timespec ts = {(time_t)(until / 1000000), (long)(until % 1000000) * 1000L};
        pthread_cond_timedwait(&rc->wake, &rc->lock, &ts);
    }
    pthread_mutex_unlock(&rc->lock);
    *backoff_ms = *backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *backoff_ms * 2;
}

/*
 * Once a second while the reader holds nothing (no batch, no read-ahead): if
 * every partition it holds is read to its end, hands them to the applier,
 * which marks them in the store (memo_floor): no read older than now is
 * still to come from them.
 */
static void note_caught_up(struct readcount *rc)
{
    size_t n;

    if (!rc->bus->topic || rc->job_n > 0 || rc->nahead > 0 ||
        clock_mono_us() < rc->next_touch_us)
        return;
    rc->next_touch_us = clock_mono_us() + SWEEP_EVERY_MS * 1000;
    pthread_mutex_lock(&rc->lock);
    while ((n = bus_caught_up(rc->bus, rc->touch, rc->touch_cap)) > rc->touch_cap) {
        rc->touch_cap = n;
        rc->touch = xrealloc(rc->touch, n * sizeof(*rc->touch));
    }
    rc->ntouch = n;
    rc->touch_ms = clock_now_ms();
    pthread_mutex_unlock(&rc->lock);
}

/* Waits (up to 100 ms) for the running job to end. */
static void wait_job(struct readcount *rc)
{
    int64_t at = clock_mono_us() + 100000;
    struct timespec ts = {(time_t)(at / 1000000), (long)(at % 1000000) * 1000L};

    pthread_mutex_lock(&rc->lock);
    if (rc->job_n > 0 && !rc->job_done)
        pthread_cond_timedwait(&rc->job_cond, &rc->lock, &ts);
    pthread_mutex_unlock(&rc->lock);
}

/*
 * The reader thread. A batch goes to the applier when it is idle and the
 * read-ahead holds `batch` events, or its oldest event has waited flush_ms,
 * or the bus is closed; meanwhile the bus is polled in short steps.
 */
static void *consumer_main(void *arg)
{
    struct readcount *rc = arg;
    int64_t deadline = 0; /* when the oldest event of the read-ahead must go */
    int poll_backoff = BACKOFF_MIN_MS;
    bool closed = false;

    for (;;) {
        bool running = job_running(rc);
        size_t room, got = 0;

        if (rc->cfg.retention_hours > 0) {
            int64_t behind = clock_mono_us() - atomic_load(&rc->upkeep_done_us) -
                             SWEEP_EVERY_MS * 1000;
            metric_set(rc->m_sweep_lag, behind > 0 ? behind / 1000000 : 0);
        }

        if (!running && rc->job_n > 0) /* read without the lock: only this thread sets it */
            finish_job(rc);
        note_caught_up(rc);
        room = ahead_room(rc);
        if (!closed && room > 0) {
            int timeout = 1000;
            int err;

            if (running)
                timeout = 5; /* to hand over the next batch soon after this one */
            else if (rc->nahead > 0)
                timeout = (int)((deadline - clock_mono_us()) / 1000 > 0
                                    ? (deadline - clock_mono_us()) / 1000
                                    : 0);
            err = bus_poll(rc->bus, rc->ahead + rc->ahead_at + rc->nahead, room, timeout, &got);
            if (err == TALLY_ESTALE) {
                /* Partitions were taken away: their new owner starts from the stored
                 * offsets. A job still with the applier fails its compare-and-set or
                 * commits; either way the bus rewinds once it is done (finish_job). */
                metric_add(rc->m_stale, drop_ahead(rc) + got);
                rc->revoked_in_job = rc->revoked_in_job || rc->job_n > 0;
                continue;
            }
            if (err && err != TALLY_ECLOSED) {
                poll_failed(rc, err, &poll_backoff);
                continue;
            }
            if (rc->poll_failing)
                log_info("readcount: reading read events again");
            rc->poll_failing = false;
            poll_backoff = BACKOFF_MIN_MS;
            if (got > 0 && rc->nahead == 0)
                deadline = clock_mono_us() + (int64_t)rc->cfg.flush_ms * 1000;
            rc->nahead += got;
            closed = err == TALLY_ECLOSED;
        } else if (running) {
            wait_job(rc);
            continue;
        }
        if (!running && rc->nahead > 0 &&
            (closed || rc->nahead >= rc->cfg.batch || clock_mono_us() >= deadline)) {
            hand_over(rc, rc->nahead < rc->cfg.batch ? rc->nahead : rc->cfg.batch);
            deadline = clock_mono_us(); /* what is left has waited already */
        }
        if (closed && rc->nahead == 0 && !running && rc->job_n == 0)
            break;
    }
    pthread_mutex_lock(&rc->lock);
    rc->quit = true;
    pthread_cond_broadcast(&rc->job_cond);
    pthread_mutex_unlock(&rc->lock);
    pthread_join(rc->applier, NULL);
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
    pthread_condattr_t attr;

    TALLY_ASSERT(cfg->batch >= 1);
    rc->bus = bus;
    rc->store = store;
    rc->cache = cache;
    rc->cfg = *cfg;
    pthread_mutex_init(&rc->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* deadlines are clock_mono_us() */
    pthread_cond_init(&rc->wake, &attr);
    pthread_cond_init(&rc->job_cond, &attr);
    pthread_condattr_destroy(&attr);
    rc->ahead_cap = cfg->batch + cfg->read_ahead;
    rc->ahead = xcalloc(rc->ahead_cap, sizeof(*rc->ahead));
    rc->pos = xcalloc(cfg->batch, sizeof(*rc->pos));
    rc->events = xcalloc(cfg->batch, sizeof(*rc->events));
    rc->scratch = xcalloc(cfg->batch, sizeof(*rc->scratch));
    rc->deltas = xcalloc(cfg->batch, sizeof(*rc->deltas));
    rc->hours = xcalloc(cfg->batch, sizeof(*rc->hours));
    for (int m = 0; m < MEMO_COUNT; m++) {
        rc->ev_key[m] = xcalloc(cfg->batch, sizeof(*rc->ev_key[m]));
        rc->lookup[m] = xcalloc(cfg->batch, sizeof(*rc->lookup[m]));
        rc->write[m] = xcalloc(cfg->batch, sizeof(*rc->write[m]));
        rc->cur[m] = xcalloc(cfg->batch, sizeof(*rc->cur[m]));
    }
    rc->m_deduped = metrics_counter("tally_read_events_deduplicated_total",
                                    "Reads not counted: the same uid or viewer read the item "
                                    "within --read-window of their last counted read.",
                                    "");
    rc->m_repeats = metrics_counter("tally_read_events_idempotent_repeats_total",
                                    "Reads not counted: a repeat of an Idempotency-Key seen "
                                    "less than 24 hours before.",
                                    "");
    rc->items = xcalloc(cfg->batch, sizeof(*rc->items));
    rc->incr = xcalloc(cfg->batch, sizeof(*rc->incr));
    rc->offs = xcalloc(cfg->batch, sizeof(*rc->offs));
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
    rc->m_lost = metrics_counter("tally_read_events_lost_total", lost_help, "");
    rc->m_sweep_lag = metrics_gauge(
        "tally_window_sweep_lag_seconds",
        "How far window, retention and memo upkeep is behind its once-a-second schedule.", "");
    atomic_store(&rc->upkeep_done_us, clock_mono_us());
    rc->m_failing = metrics_gauge("tally_read_store_failing",
                                  "1 while the read consumer's last attempt to commit failed.", "");
    for (int i = 0; i < DEAD_COUNT; i++) {
        struct strbuf labels = STRBUF_INIT;

        strbuf_addf(&labels, "reason=\"%s\"", dead_names[i]);
        rc->m_dead[i] = metrics_counter("tally_read_events_dead_total",
                                        "Read events the store refused for good, recorded in "
                                        "read_dead_letter.",
                                        labels.buf);
        strbuf_release(&labels);
    }
    bus->load_offset = load_offset;
    bus->load_ctx = rc;
    if (pthread_create(&rc->applier, NULL, applier_main, rc) != 0 ||
        pthread_create(&rc->thread, NULL, consumer_main, rc) != 0) {
        log_error("readcount: cannot start the consumer threads");
        abort();
    }
    return rc;
}

void readcount_stop(struct readcount *rc)
{
    if (!rc)
        return;
    pthread_mutex_lock(&rc->lock);
    rc->stopping = true;
    rc->deadline_us = clock_mono_us() + (int64_t)rc->cfg.stop_wait_ms * 1000;
    pthread_cond_broadcast(&rc->wake);
    pthread_mutex_unlock(&rc->lock);
    bus_close(rc->bus, rc->cfg.stop_wait_ms); /* a producer flushes meanwhile */
    pthread_join(rc->thread, NULL);
    /* The bus outlives rc: nothing it runs later (a rebalance while it closes) may
     * reach the state freed below. */
    rc->bus->load_offset = NULL;
    rc->bus->load_ctx = NULL;
    pthread_mutex_destroy(&rc->lock);
    pthread_cond_destroy(&rc->wake);
    pthread_cond_destroy(&rc->job_cond);
    free(rc->ahead);
    free(rc->pos);
    free(rc->events);
    free(rc->scratch);
    free(rc->deltas);
    free(rc->hours);
    for (int m = 0; m < MEMO_COUNT; m++) {
        free(rc->ev_key[m]);
        free(rc->lookup[m]);
        free(rc->write[m]);
        free(rc->cur[m]);
    }
    free(rc->items);
    free(rc->incr);
    free(rc->offs);
    free(rc->touch);
    free(rc);
}

bool readcount_failing(const struct readcount *rc)
{
    return atomic_load(&rc->failing);
}

int64_t readcount_lost_total(void)
{
    return metric_value(metrics_counter("tally_read_events_lost_total", lost_help, ""));
}
