/*
 * ratelimit.c - see ratelimit.h.
 *
 * DESIGN
 *   A bucket is (level, ts) in integer units: a token is period_ms units and
 *   each millisecond adds n units, up to burst * period_ms. So a refill is
 *   exact (no float drift that could let one request too many through) and
 *   the same arithmetic runs here and in Redis's script (cache/redis.c).
 *
 *   Where buckets live. With a cache that can take() (Redis), every take is
 *   one script call, atomic in Redis, so several tallyd share the buckets;
 *   the key expires once the bucket is full again. When that call fails,
 *   the request is decided by the in-memory buckets instead (fail open: a
 *   Redis outage must not become a 5xx or lock everyone out) and
 *   tally_rate_limit_fallback_total counts it; the log shows each change of
 *   state. Meanwhile each tallyd limits on its own, so the shared bound
 *   loosens to one bucket per process until Redis is back.
 *
 *   Memory. The in-memory buckets of a kind are a hash map in SHARDS
 *   shards, each under its own mutex, with a fixed slot array and a list in
 *   order of last use. A bucket that has been idle long enough to be full
 *   again is the same as no bucket, so each take first drops such buckets
 *   from the old end of the list. If a shard is still at its cap (a flood
 *   of distinct callers or uids), the least recently used bucket is
 *   evicted: it starts full again if it comes back (counted in
 *   tally_rate_limit_evictions_total). Evicting instead of refusing new
 *   names keeps a flood of forged names from locking out everyone else;
 *   the memory stays bounded by max_entries either way.
 */
#include "service/ratelimit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/strbuf.h"
#include "util/xmalloc.h"
#include "util/banned.h"

#define SHARDS     16
#define MAX_N      1000000
#define MAX_BURST  1000000
#define SLOT_RATIO 4 /* buckets per slot when a shard is full */

/* One name's bucket. Owned by its shard, touched only under the shard's lock. */
struct bucket {
    struct bucket *hnext;       /* the slot's chain */
    struct bucket *newer, *older; /* the shard's list by last use */
    uint64_t hash;
    int64_t level; /* units; see DESIGN */
    int64_t ts;    /* ms of the last refill */
    char name[];
};

struct shard {
    pthread_mutex_t lock; /* guards everything below and the buckets */
    struct bucket **slots;
    struct bucket *newest, *oldest;
    size_t n;
};

/* The in-memory buckets of one kind. The rule and sizes are fixed at creation. */
struct table {
    struct ratelimit_rule rule;
    int64_t cap;     /* burst * period_ms units */
    int64_t full_ms; /* idle this long, any bucket is full again */
    size_t per_shard, nslots;
    struct shard shard[SHARDS];
};

/* Created by main, read by every HTTP thread; the tables lock themselves. */
struct ratelimit {
    struct table table[RATELIMIT_KINDS];
    struct cache *cache; /* NULL: in memory only */
    int64_t (*now_ms)(void);
    atomic_bool redis_down; /* for the log: a take failed and none has succeeded since */
    struct metric *m_limited[RATELIMIT_KINDS], *m_fallback, *m_evicted;
};

static const char *const kind_names[RATELIMIT_KINDS] = {"key", "uid"};

/* ------------------------------------------------------------ parsing */

/* One part, "200/s:400", into r; NULL or why not. */
static const char *parse_rule(const char *p, size_t len, struct ratelimit_rule *r)
{
    const char *slash = memchr(p, '/', len), *colon = memchr(p, ':', len), *end = p + len;
    int64_t v;

    if (!slash || (colon && colon < slash) || slash + 2 != (colon ? colon : end))
        return "expected key=RATE/s:BURST,uid=RATE/s:BURST (unit s, m or h)";
    if (item_parse_id(p, (size_t)(slash - p), &v) || v > MAX_N)
        return "the rate must be an integer in 1..1000000";
    r->n = v;
    switch (slash[1]) {
    case 's': r->period_ms = 1000; break;
    case 'm': r->period_ms = 60 * 1000; break;
    case 'h': r->period_ms = 3600 * 1000; break;
    default: return "the rate's unit must be s, m or h";
    }
    r->burst = r->n;
    if (colon) {
        if (item_parse_id(colon + 1, (size_t)(end - colon - 1), &v) || v > MAX_BURST)
            return "the burst must be an integer in 1..1000000";
        r->burst = v;
    }
    /* burst * period_ms (< 2^42) and the script's sums stay exact in doubles and int64 */
    return NULL;
}

int ratelimit_parse(const char *spec, struct ratelimit_spec *out, char **err)
{
    const char *p = spec, *why = NULL;

    memset(out, 0, sizeof(*out));
    while (*p && !why) {
        const char *comma = strchr(p, ','), *eq;
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        int by = -1;

        eq = memchr(p, '=', len);
        for (int k = 0; eq && k < RATELIMIT_KINDS; k++)
            if ((size_t)(eq - p) == strlen(kind_names[k]) &&
                memcmp(p, kind_names[k], (size_t)(eq - p)) == 0)
                by = k;
        if (by < 0)
            why = "expected key=RATE/s:BURST,uid=RATE/s:BURST (unit s, m or h)";
        else if (out->rule[by].n)
            why = "each of key and uid may be given once";
        else
            why = parse_rule(eq + 1, len - (size_t)(eq + 1 - p), &out->rule[by]);
        p = comma ? comma + 1 : p + len;
        if (comma && !*p && !why)
            why = "expected key=RATE/s:BURST,uid=RATE/s:BURST (unit s, m or h)";
    }
    if (!why)
        return 0;
    *err = xstrfmt("invalid --rate-limit '%s': %s", spec, why);
    memset(out, 0, sizeof(*out));
    return TALLY_EINVAL;
}

int ratelimit_check(const char *spec, char **err)
{
    struct ratelimit_spec s;

    return ratelimit_parse(spec, &s, err);
}

/* ------------------------------------------------------------ the bucket */

/*
 * Refills b to now and takes a token if there is one. Returns 0 or the ms
 * until a token is there. The same steps as the Redis script.
 */
static int64_t bucket_take(const struct ratelimit_rule *r, int64_t cap, int64_t full_ms,
                           int64_t *level, int64_t *ts, int64_t now)
{
    if (now > *ts) {
        *level = now - *ts >= full_ms ? cap : *level + (now - *ts) * r->n;
        if (*level > cap)
            *level = cap;
        *ts = now;
    }
    if (*level >= r->period_ms) {
        *level -= r->period_ms;
        return 0;
    }
    return (r->period_ms - *level + r->n - 1) / r->n;
}

/* ------------------------------------------------------------ in memory */

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    h ^= h >> 33; /* FNV's high bits barely move for short names: mix (MurmurHash3's fmix64) */
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static void table_init(struct table *t, const struct ratelimit_rule *r, size_t max_entries)
{
    t->rule = *r;
    t->cap = r->burst * r->period_ms;
    t->full_ms = r->n ? (t->cap + r->n - 1) / r->n : 0;
    t->per_shard = (max_entries + SHARDS - 1) / SHARDS;
    for (t->nslots = 1; t->nslots * SLOT_RATIO < t->per_shard; t->nslots *= 2)
        ;
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_init(&t->shard[i].lock, NULL);
        t->shard[i].slots = r->n ? xcalloc(t->nslots, sizeof(struct bucket *)) : NULL;
    }
}

static void table_release(struct table *t)
{
    for (int i = 0; i < SHARDS; i++) {
        struct bucket *b = t->shard[i].newest;

        while (b) {
            struct bucket *older = b->older;
            free(b);
            b = older;
        }
        free(t->shard[i].slots);
        pthread_mutex_destroy(&t->shard[i].lock);
    }
}

/* Unlinks b from its chain and the list, and frees it. Hold the shard's lock. */
static void shard_drop(const struct table *t, struct shard *s, struct bucket *b)
{
    struct bucket **link = &s->slots[b->hash & (t->nslots - 1)];

    while (*link != b)
        link = &(*link)->hnext;
    *link = b->hnext;
    if (b->newer)
        b->newer->older = b->older;
    else
        s->newest = b->older;
    if (b->older)
        b->older->newer = b->newer;
    else
        s->oldest = b->newer;
    s->n--;
    free(b);
}

static void shard_touch(struct shard *s, struct bucket *b)
{
    if (s->newest == b)
        return;
    b->newer->older = b->older; /* b is not the newest, so it has a newer one */
    if (b->older)
        b->older->newer = b->newer;
    else
        s->oldest = b->newer;
    b->newer = NULL;
    b->older = s->newest;
    s->newest->newer = b;
    s->newest = b;
}

/* Finds or makes name's bucket, dropping full-again ones and evicting past the cap. */
static struct bucket *shard_bucket(struct ratelimit *rl, struct table *t, struct shard *s,
                                   const char *name, uint64_t h, int64_t now)
{
    struct bucket *b;
    size_t len;

    while (s->oldest && now - s->oldest->ts >= t->full_ms)
        shard_drop(t, s, s->oldest);
    for (b = s->slots[h & (t->nslots - 1)]; b; b = b->hnext)
        if (b->hash == h && strcmp(b->name, name) == 0) {
            shard_touch(s, b);
            return b;
        }
    if (s->n >= t->per_shard) {
        shard_drop(t, s, s->oldest);
        metric_add(rl->m_evicted, 1);
    }
    len = strlen(name);
    b = xmalloc(sizeof(*b) + len + 1);
    memcpy(b->name, name, len + 1);
    b->hash = h;
    b->level = t->cap;
    b->ts = now;
    b->hnext = s->slots[h & (t->nslots - 1)];
    s->slots[h & (t->nslots - 1)] = b;
    b->newer = NULL;
    b->older = s->newest;
    if (s->newest)
        s->newest->newer = b;
    else
        s->oldest = b;
    s->newest = b;
    s->n++;
    return b;
}

static int64_t memory_take(struct ratelimit *rl, struct table *t, const char *name, int64_t now)
{
    uint64_t h = hash_name(name);
    struct shard *s = &t->shard[(h >> 32) % SHARDS];
    struct bucket *b;
    int64_t retry;

    pthread_mutex_lock(&s->lock);
    b = shard_bucket(rl, t, s, name, h, now);
    retry = bucket_take(&t->rule, t->cap, t->full_ms, &b->level, &b->ts, now);
    pthread_mutex_unlock(&s->lock);
    return retry;
}

/* ------------------------------------------------------------ the limiter */

static int64_t mono_ms(void)
{
    return clock_mono_us() / 1000;
}

struct ratelimit *ratelimit_new(const struct ratelimit_config *cfg)
{
    struct ratelimit *rl = xcalloc(1, sizeof(*rl));
    size_t max = cfg->max_entries ? cfg->max_entries : RATELIMIT_MAX_ENTRIES;

    for (int k = 0; k < RATELIMIT_KINDS; k++) {
        struct strbuf labels = STRBUF_INIT;

        table_init(&rl->table[k], &cfg->spec.rule[k], max);
        strbuf_addf(&labels, "by=\"%s\"", kind_names[k]);
        rl->m_limited[k] = metrics_counter("tally_rate_limited_total",
                                           "Requests refused by a rate limit (429), by bucket.",
                                           labels.buf);
        strbuf_release(&labels);
    }
    rl->cache = cache_has_take(cfg->cache) ? cfg->cache : NULL;
    rl->now_ms = cfg->now_ms;
    rl->m_fallback = metrics_counter(
        "tally_rate_limit_fallback_total",
        "Rate-limit decisions made in memory because Redis did not answer.", "");
    rl->m_evicted = metrics_counter(
        "tally_rate_limit_evictions_total",
        "In-memory rate-limit buckets dropped before they were full, to stay under the cap.", "");
    return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
    if (!rl)
        return;
    for (int k = 0; k < RATELIMIT_KINDS; k++)
        table_release(&rl->table[k]);
    free(rl);
}

bool ratelimit_may_wait(const struct ratelimit *rl)
{
    return rl && rl->cache;
}

/* The bucket in Redis; -1 when Redis did not answer. */
static int64_t redis_take(struct ratelimit *rl, struct table *t, enum ratelimit_by by,
                          const char *name)
{
    struct strbuf key = STRBUF_INIT;
    int64_t retry = -1, now = rl->now_ms ? rl->now_ms() : clock_now_ms();
    int err;

    strbuf_addf(&key, "ratelimit:%s:%s", kind_names[by], name);
    err = cache_take(rl->cache, key.buf, t->rule.n, t->rule.period_ms, t->rule.burst, now, &retry);
    strbuf_release(&key);
    if (err) {
        metric_add(rl->m_fallback, 1);
        if (!atomic_exchange(&rl->redis_down, true))
            log_warn("ratelimit: Redis: %s; limiting in memory until it answers",
                     tally_strerror(err));
        return -1;
    }
    if (atomic_load(&rl->redis_down) && atomic_exchange(&rl->redis_down, false))
        log_info("ratelimit: Redis answers again; buckets are shared again");
    return retry;
}

int ratelimit_take(struct ratelimit *rl, enum ratelimit_by by, const char *name,
                   int *retry_after_s)
{
    struct table *t = &rl->table[by];
    int64_t retry = -1;

    *retry_after_s = 0;
    if (t->rule.n == 0)
        return 0;
    if (rl->cache)
        retry = redis_take(rl, t, by, name);
    if (retry < 0)
        retry = memory_take(rl, t, name, rl->now_ms ? rl->now_ms() : mono_ms());
    if (retry == 0)
        return 0;
    metric_add(rl->m_limited[by], 1);
    *retry_after_s = (int)((retry + 999) / 1000);
    return TALLY_ELIMITED;
}

size_t ratelimit_entries(struct ratelimit *rl, enum ratelimit_by by)
{
    struct table *t = &rl->table[by];
    size_t n = 0;

    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&t->shard[i].lock);
        n += t->shard[i].n;
        pthread_mutex_unlock(&t->shard[i].lock);
    }
    return n;
}
