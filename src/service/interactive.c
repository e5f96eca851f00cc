/*
 * interactive.c - see interactive.h.
 */
#include "service/interactive.h"

#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/xmalloc.h"
#include "util/banned.h"

void interactive_init(struct interactive *svc, struct store *store, struct cache *cache,
                      struct bus *bus)
{
    svc->store = store;
    svc->cache = cache;
    svc->bus = bus;
    svc->reads = NULL;
    atomic_init(&svc->draining, false);
    svc->started_ms = clock_now_ms();
    svc->started_us = clock_mono_us();
    svc->limits = NULL;
    svc->m_published =
        metrics_counter("tally_read_events_queued_total", "Read events accepted onto the bus.", "");
    svc->m_rejected =
        metrics_counter("tally_read_events_rejected_total",
                        "Read events refused because the bus was full or closed.", "");
    svc->m_cache_errors = metrics_counter(
        "tally_cache_errors_total", "Cache calls that failed (the store answered instead).", "");
}

static void cache_failed(struct interactive *svc, int err)
{
    if (err) {
        metric_add(svc->m_cache_errors, 1);
        LOG_ONCE(LOG_WARN, "cache: %s; serving from the store", tally_strerror(err));
    }
}

/*
 * Counts (and with user, the user's flags) from the cache where it has them;
 * counts it lacks from the store, then filled.
 */
static int get_counts(struct interactive *svc, const struct item *items, size_t n,
                      struct counts *out, struct flag_lookup *user)
{
    struct item miss[INTERACTIVE_MAX_IDS];
    struct counts got[INTERACTIVE_MAX_IDS];
    cache_token token[INTERACTIVE_MAX_IDS], miss_token[INTERACTIVE_MAX_IDS];
    bool hit[INTERACTIVE_MAX_IDS];
    size_t nmiss = 0, j = 0;
    int rc;

    TALLY_ASSERT(n <= INTERACTIVE_MAX_IDS);
    cache_failed(svc, cache_get(svc->cache, items, n, out, hit, token, user));
    for (size_t i = 0; i < n; i++) {
        if (!hit[i]) {
            miss_token[nmiss] = token[i];
            miss[nmiss++] = items[i];
        }
    }
    if (nmiss == 0)
        return 0;
    if ((rc = store_counts(svc->store, miss, nmiss, got)))
        return rc;
    cache_failed(svc, cache_fill(svc->cache, miss, nmiss, got, miss_token));
    for (size_t i = 0; i < n; i++)
        if (!hit[i])
            out[i] = got[j++];
    return 0;
}

/* The user's flags that get_counts did not find in the cache: from the store, then filled. */
static int get_flags(struct interactive *svc, const struct item *items, size_t n,
                     struct flag_lookup *user)
{
    struct item miss[INTERACTIVE_MAX_IDS];
    bool liked[INTERACTIVE_MAX_IDS], collected[INTERACTIVE_MAX_IDS];
    uint8_t got[INTERACTIVE_MAX_IDS];
    size_t nmiss = 0, j = 0;
    int rc;

    for (size_t i = 0; i < n; i++)
        if (!user->hit[i])
            miss[nmiss++] = items[i];
    if (nmiss == 0)
        return 0;
    if ((rc = store_flags(svc->store, user->uid, miss, nmiss, liked, collected)))
        return rc;
    for (size_t k = 0; k < nmiss; k++)
        got[k] = (uint8_t)((liked[k] ? FLAG_LIKED : 0) | (collected[k] ? FLAG_COLLECTED : 0));
    cache_failed(svc, cache_fill_flags(svc->cache, user->uid, miss, nmiss, got, user->token));
    for (size_t i = 0; i < n; i++)
        if (!user->hit[i])
            user->flags[i] = got[j++];
    return 0;
}

int interactive_get(struct interactive *svc, const struct item *items, size_t n, int64_t uid,
                    struct item_state *out)
{
    struct counts counts[INTERACTIVE_MAX_IDS];
    uint8_t flags[INTERACTIVE_MAX_IDS] = {0};
    bool flag_hit[INTERACTIVE_MAX_IDS];
    struct flag_lookup user = {.uid = uid, .flags = flags, .hit = flag_hit};
    int rc;

    if ((rc = get_counts(svc, items, n, counts, uid ? &user : NULL)) ||
        (uid && (rc = get_flags(svc, items, n, &user))))
        return rc;
    for (size_t i = 0; i < n; i++) {
        out[i].item = items[i];
        out[i].counts = counts[i];
        out[i].liked = flags[i] & FLAG_LIKED;
        out[i].collected = flags[i] & FLAG_COLLECTED;
    }
    return 0;
}

/*
 * Ends a write that cache_begin announced: the counters move by delta if the
 * write changed them, and the user's flags become those its transaction read.
 * A write the store could not answer for (TALLY_EUNAVAIL: a timeout, a lost
 * connection) may still commit on the server after this answer, so its fence
 * stays up: no fill can cache a count read before that commit, and the cache
 * drops the fence at its deadline as it does a killed tallyd's (cache/redis.c).
 */
static void end_write(struct interactive *svc, const struct item *it, int rc, bool changed,
                      const struct counts *delta, struct flag_write *user,
                      const struct item_state *out)
{
    if (rc == TALLY_EUNAVAIL)
        return;
    user->committed = rc == 0;
    if (rc == 0)
        user->flags =
            (uint8_t)((out->liked ? FLAG_LIKED : 0) | (out->collected ? FLAG_COLLECTED : 0));
    cache_failed(svc, cache_end(svc->cache, it, 1, changed ? delta : NULL, user));
}

int interactive_like(struct interactive *svc, int64_t uid, const struct item *it, bool on,
                     struct item_state *out)
{
    struct counts delta = {.like_cnt = on ? 1 : -1};
    struct flag_write user = {.uid = uid, .item = it};
    bool changed = false;
    int rc;

    cache_failed(svc, cache_begin(svc->cache, it, 1, &user));
    rc = store_set_like(svc->store, uid, it, on, clock_now_ms(), &changed, out);
    end_write(svc, it, rc, changed, &delta, &user, out);
    return rc;
}

int interactive_collect(struct interactive *svc, int64_t uid, int64_t cid, const struct item *it,
                        bool on, struct item_state *out)
{
    struct counts delta = {.collect_cnt = on ? 1 : -1};
    struct flag_write user = {.uid = uid, .item = it};
    bool changed = false;
    int rc;

    cache_failed(svc, cache_begin(svc->cache, it, 1, &user));
    rc = store_set_collect(svc->store, uid, cid, it, on, clock_now_ms(), &changed, out);
    end_write(svc, it, rc, changed, &delta, &user, out);
    return rc;
}

/*
 * One chunk of an erasure: the items are listed first (a read) so that the chunk can be
 * fenced in the cache before its transaction, which then touches those items alone; a
 * row added meanwhile on another item waits for the next chunk.
 */
static int erase_chunk(struct interactive *svc, int64_t uid, enum user_table t,
                       const struct item *items, size_t n, struct erase_result *out)
{
    struct counts delta[STORE_ERASE_MAX];
    struct flag_write user = {.uid = uid, .item = NULL}; /* every item of uid */
    size_t removed = 0;
    int rc;

    cache_failed(svc, cache_begin(svc->cache, items, n, &user));
    rc = store_erase_rows(svc->store, uid, t, items, n, clock_now_ms(), delta, &removed);
    if (rc != TALLY_EUNAVAIL) { /* else it may still commit: the fence stays up (end_write) */
        user.committed = rc == 0;
        cache_failed(svc, cache_end(svc->cache, items, n, rc == 0 ? delta : NULL, &user));
    }
    out->chunks++;
    out->removed[t] += (int64_t)removed;
    return rc;
}

int interactive_erase_user(struct interactive *svc, int64_t uid, int64_t max_chunks,
                           struct erase_result *out)
{
    struct item items[STORE_ERASE_MAX];
    size_t n;
    int rc;

    memset(out, 0, sizeof(*out));
    for (int t = 0; t < USER_TABLE_COUNT; t++) {
        do {
            if (out->chunks == max_chunks)
                return 0;
            if ((rc = store_user_items(svc->store, uid, (enum user_table)t, STORE_ERASE_MAX,
                                       items, &n)) ||
                (n && (rc = erase_chunk(svc, uid, (enum user_table)t, items, n, out))))
                return rc;
        } while (n == STORE_ERASE_MAX); /* a short list was the last of the table */
    }
    out->done = true;
    return 0;
}

int interactive_read(struct interactive *svc, const struct item *it, int64_t uid,
                     uint64_t viewer, uint64_t idem)
{
    struct read_event ev = {.item = *it,
                            .uid = uid,
                            .viewer = viewer,
                            .idem = idem,
                            .ts = clock_now_ms(),
                            .partition = -1,
                            .offset = -1};
    int rc = bus_publish(svc->bus, &ev);

    metric_add(rc ? svc->m_rejected : svc->m_published, 1);
    return rc;
}

/* Trims a page fetched with limit + 1 rows and moves the cursor past it. */
static void page(struct list_cursor *cursor, const struct list_entry *out, size_t limit, size_t *n,
                 bool *more)
{
    *more = *n > limit;
    if (*more)
        *n = limit;
    if (*n > 0) {
        cursor->time = out[*n - 1].ctime;
        cursor->id = out[*n - 1].cursor_id;
    }
}

int interactive_list_likes(struct interactive *svc, int64_t uid, const char *biz, size_t limit,
                           struct list_cursor *cursor, struct list_entry *out, size_t *n,
                           bool *more)
{
    int rc = store_list_likes(svc->store, uid, biz, cursor, limit + 1, out, n);

    if (rc == 0)
        page(cursor, out, limit, n, more);
    return rc;
}

int interactive_list_collection(struct interactive *svc, int64_t uid, int64_t cid, size_t limit,
                                struct list_cursor *cursor, struct list_entry *out, size_t *n,
                                bool *more)
{
    int rc = store_list_collection(svc->store, uid, cid, cursor, limit + 1, out, n);

    if (rc == 0)
        page(cursor, out, limit, n, more);
    return rc;
}

int interactive_top(struct interactive *svc, const char *biz, enum count_field by, size_t limit,
                    struct item_state *out, size_t *n)
{
    return store_top(svc->store, biz, by, limit, out, n);
}

int interactive_top_window(struct interactive *svc, const char *biz, enum count_field by,
                           enum window w, size_t limit, struct item_state *out,
                           int64_t *window_cnt, size_t *n)
{
    return store_top_window(svc->store, biz, by, w, limit, out, window_cnt, n);
}

/* The first hour of the bucket (bucket_hours long, aligned on the epoch) holding ms. */
static int64_t bucket_of(int64_t ms, int bucket_hours)
{
    int64_t h = store__hour_of(ms);

    return (h >= 0 ? h / bucket_hours : -((-h + bucket_hours - 1) / bucket_hours)) *
           bucket_hours;
}

int interactive_history(struct interactive *svc, const struct item *it, enum count_field by,
                        int bucket_hours, int64_t from_ms, int64_t to_ms,
                        struct history_point *out, size_t *n)
{
    int64_t from = bucket_of(from_ms, bucket_hours), to = bucket_of(to_ms, bucket_hours);
    struct hour_count *hours;
    size_t nh = 0;
    int rc;

    *n = 0;
    if (to < from || (to - from) / bucket_hours + 1 > INTERACTIVE_MAX_POINTS)
        return TALLY_EINVAL;
    hours = xcalloc((size_t)(to - from + bucket_hours), sizeof(*hours));
    rc = store_history(svc->store, it, by, from, to + bucket_hours - 1, hours, &nh);
    for (size_t i = 0; rc == 0 && i < nh; i++) {
        int64_t t = bucket_of(hours[i].hour * HOUR_MS, bucket_hours) * HOUR_MS;

        if (*n > 0 && out[*n - 1].t == t)
            out[*n - 1].n += hours[i].n;
        else
            out[(*n)++] = (struct history_point){t, hours[i].n};
    }
    free(hours);
    if (rc == 0) { /* a day whose hours cancel out (a like and its unlike) is left out too */
        size_t k = 0;
        for (size_t i = 0; i < *n; i++)
            if (out[i].n != 0)
                out[k++] = out[i];
        *n = k;
    }
    return rc;
}

int interactive_health(struct interactive *svc)
{
    /* A full disk still answers a ping: what matters is whether reads can be committed. */
    if (svc->reads && readcount_failing(svc->reads))
        return TALLY_EUNAVAIL;
    return store_ping(svc->store);
}

int interactive_ready(struct interactive *svc, const char **why)
{
    int rc;

    if (atomic_load(&svc->draining)) {
        *why = "stopping: draining connections";
        return TALLY_ECLOSED;
    }
    if ((rc = interactive_health(svc))) {
        *why = "the store does not answer, or cannot commit";
        return rc;
    }
    rc = bus_ready(svc->bus);
    *why = rc == TALLY_EFULL ? "the read queue is full"
           : rc ? "the bus cannot take reads yet (Kafka: no partitions assigned to this "
                  "instance so far)"
                : NULL;
    return rc;
}

void interactive_status(struct interactive *svc, struct interactive_status *out)
{
    out->started_ms = svc->started_ms;
    out->uptime_ms = (clock_mono_us() - svc->started_us) / 1000;
    out->draining = atomic_load(&svc->draining);
    out->store_kind = svc->store->ops->name;
    out->store = store_ping(svc->store);
    out->cache_kind = cache_kind(svc->cache);
    out->cache_off = !cache_has_ping(svc->cache);
    out->cache = out->cache_off ? 0 : cache_ping(svc->cache);
    out->bus_kind = svc->bus->ops->name;
    out->bus = bus_ready(svc->bus);
    out->reads_failing = svc->reads && readcount_failing(svc->reads);
    out->reads_lost = readcount_lost_total();
    /* interactive_ready's rule, on the answers above rather than a second round trip */
    out->ready = !out->draining && !out->reads_failing && out->store == 0 && out->bus == 0;
}
