/*
 * redis.c - the counter cache on Redis (hiredis).
 *
 * DESIGN
 *   One hash per item, interactive:{biz}:{id}, with the counters read_cnt,
 *   like_cnt and collect_cnt while the item is cached, and two fence fields,
 *   gen and inflight, that keep a fill from racing a write:
 *
 *     begin (before the store write)   gen += 1, inflight += 1
 *     end   (after the commit)         inflight -= 1; add the deltas only if
 *                                      the counters exist
 *     get   (a miss)                   remember gen as the fill token
 *     fill  (after reading the store)  write the counters only if they are
 *                                      still absent, gen equals the token
 *                                      and no write is in flight
 *
 *   So a value read from the store is cached only if no write began between
 *   the miss and the fill, and an increment is never applied on top of a
 *   fill that already contains it. All four steps are Lua scripts, so each
 *   is atomic in Redis; they run by EVALSHA and are reloaded when Redis
 *   answers NOSCRIPT (after a restart or SCRIPT FLUSH). begin and end take
 *   up to 128 keys per call, so a batch of reads costs a few calls, not
 *   two per item; this assumes one Redis node (as hiredis does): on a
 *   cluster, keys of one call would have to share a hash slot.
 *
 *   Failure: each call has a short timeout (100 ms by default). A failed
 *   connection is dropped and not retried for one second, so a dead Redis
 *   costs at most one timeout per second per connection; meanwhile every
 *   read is a miss served from the store. The log shows each change of
 *   state: the first failure of an outage, and the first reconnect. Writes whose end() could not
 *   reach Redis leave their keys on a repair list, and those keys are
 *   deleted as soon as Redis answers again, so a Redis that was only
 *   unreachable cannot keep serving counts that miss those writes.
 */
#include "cache/redis.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"
#include "util/strbuf.h"
#include "util/xmalloc.h"
#include "util/banned.h"

#define POOL           8
#define RETRY_AFTER_US 1000000
#define FENCE_MS       60000 /* how long fence fields outlive an uncached item's last write */
#define REPAIR_MAX     10000
#define WRITE_CHUNK    128 /* keys per begin/end script call */
#define PIPELINE_MAX   256 /* commands per pipeline(); callers send larger batches in parts */

enum script { SC_BEGIN, SC_END, SC_FILL, SCRIPT_COUNT };

static const char *const scripts[SCRIPT_COUNT] = {
    /* KEYS: the items; ARGV[1]: fence TTL in ms. */
    [SC_BEGIN] = "for _, k in ipairs(KEYS) do\n"
                 "  redis.call('HINCRBY', k, 'gen', 1)\n"
                 "  redis.call('HINCRBY', k, 'inflight', 1)\n"
                 "  if redis.call('HEXISTS', k, 'read_cnt') == 0 then\n"
                 "    redis.call('PEXPIRE', k, ARGV[1])\n"
                 "  end\n"
                 "end\n"
                 "return #KEYS\n",
    /* KEYS: the items; ARGV[1]: fence TTL; then per key the three deltas. */
    [SC_END] = "local f = {'read_cnt', 'like_cnt', 'collect_cnt'}\n"
               "for i, k in ipairs(KEYS) do\n"
               "  if redis.call('HINCRBY', k, 'inflight', -1) < 0 then\n"
               "    redis.call('HSET', k, 'inflight', 0)\n"
               "  end\n"
               "  if redis.call('HEXISTS', k, 'read_cnt') == 1 then\n"
               "    for j = 1, 3 do\n"
               "      local d = ARGV[1 + (i - 1) * 3 + j]\n"
               "      if d ~= '0' then redis.call('HINCRBY', k, f[j], d) end\n"
               "    end\n"
               "  else\n"
               "    redis.call('PEXPIRE', k, ARGV[1])\n"
               "  end\n"
               "end\n"
               "return #KEYS\n",
    [SC_FILL] = "if redis.call('HEXISTS', KEYS[1], 'read_cnt') == 1 then return 0 end\n"
                "if (redis.call('HGET', KEYS[1], 'gen') or '0') ~= ARGV[1] then return 0 end\n"
                "if tonumber(redis.call('HGET', KEYS[1], 'inflight') or '0') > 0 then\n"
                "  return 0\n"
                "end\n"
                "redis.call('HSET', KEYS[1], 'read_cnt', ARGV[2], 'like_cnt', ARGV[3],"
                " 'collect_cnt', ARGV[4])\n"
                "redis.call('PEXPIRE', KEYS[1], ARGV[5])\n"
                "return 1\n",
};

/* One connection; used by one thread at a time while checked out. */
struct rconn {
    redisContext *ctx;          /* NULL: not connected */
    int64_t retry_at_us;        /* after a failure, no reconnect before this */
    char sha[SCRIPT_COUNT][41]; /* the scripts' SHA1s, as this server loaded them */
    struct rconn *next_free;
};

/*
 * Shared by all threads. pool_lock guards free_conns; repair_lock guards
 * repair, nrepair and repair_overflow. Keys are only ever added to the
 * list under the lock (repair_add_locked); a repair takes the whole list
 * under the lock, sends its DELs without it, and on failure adds what it
 * took back to whatever other threads added meanwhile: never replaces it.
 */
struct redis_cache {
    struct cache base;
    char *host;
    int port;
    int64_t ttl_ms;
    struct timeval timeout;
    pthread_mutex_t pool_lock;
    pthread_cond_t pool_cond;
    struct rconn conns[POOL];
    struct rconn *free_conns;
    pthread_mutex_t repair_lock;
    struct item *repair;
    size_t nrepair;
    bool repair_overflow;
    atomic_bool down; /* a connection failed and none has reconnected since: for the log */
};

static void key_of(struct strbuf *sb, const struct item *it)
{
    strbuf_reset(sb);
    strbuf_addstr(sb, "interactive:");
    strbuf_addstr(sb, it->biz);
    strbuf_addch(sb, ':');
    strbuf_add_i64(sb, it->id);
}

/* Logs each outage once, when it begins, however many connections it breaks. */
static void rconn_drop(struct redis_cache *rc, struct rconn *c, const char *why)
{
    if (!atomic_exchange(&rc->down, true))
        log_warn("redis: %s; serving from the store until it is back", why);
    if (c->ctx)
        redisFree(c->ctx);
    c->ctx = NULL;
    c->retry_at_us = clock_mono_us() + RETRY_AFTER_US;
}

static int load_scripts(struct rconn *c)
{
    for (int i = 0; i < SCRIPT_COUNT; i++) {
        redisReply *r = redisCommand(c->ctx, "SCRIPT LOAD %s", scripts[i]);

        if (!r || r->type != REDIS_REPLY_STRING || r->len != 40) {
            if (r)
                freeReplyObject(r);
            return TALLY_EUNAVAIL;
        }
        memcpy(c->sha[i], r->str, 40);
        c->sha[i][40] = '\0';
        freeReplyObject(r);
    }
    return 0;
}

static int conn_get(struct redis_cache *rc, struct rconn **out)
{
    struct rconn *c;

    pthread_mutex_lock(&rc->pool_lock);
    while (!rc->free_conns)
        pthread_cond_wait(&rc->pool_cond, &rc->pool_lock);
    c = rc->free_conns;
    rc->free_conns = c->next_free;
    pthread_mutex_unlock(&rc->pool_lock);
    if (!c->ctx && clock_mono_us() >= c->retry_at_us) {
        c->ctx = redisConnectWithTimeout(rc->host, rc->port, rc->timeout);
        if (!c->ctx || c->ctx->err || redisSetTimeout(c->ctx, rc->timeout) != REDIS_OK ||
            load_scripts(c))
            rconn_drop(rc, c, c->ctx && c->ctx->err ? c->ctx->errstr : "cannot connect");
        else if (atomic_load(&rc->down) && atomic_exchange(&rc->down, false))
            log_info("redis: %s:%d answers again", rc->host, rc->port);
    }
    *out = c;
    return c->ctx ? 0 : TALLY_EUNAVAIL;
}

static void conn_put(struct redis_cache *rc, struct rconn *c)
{
    pthread_mutex_lock(&rc->pool_lock);
    c->next_free = rc->free_conns;
    rc->free_conns = c;
    pthread_cond_signal(&rc->pool_cond);
    pthread_mutex_unlock(&rc->pool_lock);
}

static bool is_noscript(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/*
 * Sends n <= PIPELINE_MAX commands built by `add` as one pipeline and
 * hands each reply to `take`. A script Redis no longer knows (NOSCRIPT) is
 * loaded again and the commands that hit it are sent once more: they were
 * not executed.
 */
typedef void add_fn(struct redis_cache *rc, struct rconn *c, size_t i, void *arg);
typedef void take_fn(size_t i, const redisReply *r, void *arg);

static int pipeline(struct redis_cache *rc, struct rconn *c, size_t n, add_fn *add, take_fn *take,
                    void *arg)
{
    bool again[PIPELINE_MAX];
    size_t nagain = 0;

    TALLY_ASSERT(n <= PIPELINE_MAX);
    for (size_t i = 0; i < n; i++)
        add(rc, c, i, arg);
    for (size_t i = 0; i < n; i++) {
        redisReply *r = NULL;

        if (redisGetReply(c->ctx, (void **)&r) != REDIS_OK) {
            rconn_drop(rc, c, c->ctx->errstr);
            return TALLY_EUNAVAIL;
        }
        again[i] = is_noscript(r);
        nagain += again[i];
        if (!again[i] && take)
            take(i, r, arg);
        freeReplyObject(r);
    }
    if (nagain == 0)
        return 0;
    log_warn("redis: scripts were flushed (NOSCRIPT); loading them again");
    if (load_scripts(c)) {
        rconn_drop(rc, c, "cannot load scripts");
        return TALLY_EUNAVAIL;
    }
    for (size_t i = 0; i < n; i++)
        if (again[i])
            add(rc, c, i, arg);
    for (size_t i = 0; i < n; i++) {
        redisReply *r = NULL;

        if (!again[i])
            continue;
        if (redisGetReply(c->ctx, (void **)&r) != REDIS_OK) {
            rconn_drop(rc, c, c->ctx->errstr);
            return TALLY_EUNAVAIL;
        }
        if (take && !is_noscript(r))
            take(i, r, arg);
        freeReplyObject(r);
    }
    return 0;
}

/* Adds keys to the repair list; past REPAIR_MAX only notes the overflow. Hold repair_lock. */
static void repair_add_locked(struct redis_cache *rc, const struct item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (rc->nrepair == REPAIR_MAX) {
            rc->repair_overflow = true;
            break;
        }
        if (!rc->repair)
            rc->repair = xmalloc(REPAIR_MAX * sizeof(*rc->repair));
        rc->repair[rc->nrepair++] = items[i];
    }
}

/* Deletes the keys of writes whose end() failed, now that Redis answers. */
static int repair(struct redis_cache *rc, struct rconn *c)
{
    struct strbuf key = STRBUF_INIT;
    struct item *items;
    size_t n;
    bool overflow;
    int err = 0;

    pthread_mutex_lock(&rc->repair_lock);
    items = rc->repair;
    n = rc->nrepair;
    overflow = rc->repair_overflow;
    rc->repair = NULL;
    rc->nrepair = 0;
    rc->repair_overflow = false;
    pthread_mutex_unlock(&rc->repair_lock);
    if (!items)
        return 0;
    for (size_t i = 0; i < n; i++) {
        key_of(&key, &items[i]);
        redisAppendCommand(c->ctx, "DEL %s", key.buf);
    }
    for (size_t i = 0; i < n && err == 0; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c->ctx, (void **)&r) != REDIS_OK) {
            rconn_drop(rc, c, c->ctx->errstr);
            err = TALLY_EUNAVAIL;
        }
        if (r)
            freeReplyObject(r);
    }
    if (err == 0) {
        log_info("redis: dropped %zu entries that missed writes%s", n,
                 overflow ? " (more writes were missed than tracked: those expire by TTL)" : "");
        free(items);
    } else { /* keep them for the next try, beside the keys added meanwhile */
        pthread_mutex_lock(&rc->repair_lock);
        repair_add_locked(rc, items, n);
        rc->repair_overflow |= overflow;
        pthread_mutex_unlock(&rc->repair_lock);
        free(items);
    }
    strbuf_release(&key);
    return err;
}

static void remember_for_repair(struct redis_cache *rc, const struct item *items, size_t n)
{
    pthread_mutex_lock(&rc->repair_lock);
    repair_add_locked(rc, items, n);
    pthread_mutex_unlock(&rc->repair_lock);
}

/* Checks out a connection that is up and repaired. */
static int ready(struct redis_cache *rc, struct rconn **c)
{
    int err = conn_get(rc, c);

    if (err == 0)
        err = repair(rc, *c);
    if (err)
        conn_put(rc, *c);
    return err;
}

/* ------------------------------------------------------------ get */

struct get_args {
    const struct item *items;
    struct counts *out;
    bool *hit;
    cache_token *token;
    struct strbuf key;
};

static void add_get(struct redis_cache *rc, struct rconn *c, size_t i, void *arg)
{
    struct get_args *a = arg;

    (void)rc;
    key_of(&a->key, &a->items[i]);
    redisAppendCommand(c->ctx, "HMGET %s read_cnt like_cnt collect_cnt gen inflight", a->key.buf);
}

static bool reply_i64(const redisReply *r, int64_t *v)
{
    char *end;

    if (!r || r->type != REDIS_REPLY_STRING)
        return false;
    *v = strtoll(r->str, &end, 10);
    return end != r->str && *end == '\0';
}

static void take_get(size_t i, const redisReply *r, void *arg)
{
    struct get_args *a = arg;
    int64_t inflight = 0;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 5)
        return;
    if (reply_i64(r->element[0], &a->out[i].read_cnt) &&
        reply_i64(r->element[1], &a->out[i].like_cnt) &&
        reply_i64(r->element[2], &a->out[i].collect_cnt)) {
        a->hit[i] = true;
        return;
    }
    if (!reply_i64(r->element[3], &a->token[i]))
        a->token[i] = 0;
    if (reply_i64(r->element[4], &inflight) && inflight > 0)
        a->token[i] = CACHE_NO_FILL;
}

static int redis_get(struct cache *base, const struct item *items, size_t n, struct counts *out,
                     bool *hit, cache_token *token)
{
    struct redis_cache *rc = (struct redis_cache *)base;
    struct get_args a = {.key = STRBUF_INIT};
    struct rconn *c;
    int err;

    memset(hit, 0, n * sizeof(*hit));
    for (size_t i = 0; i < n; i++)
        token[i] = CACHE_NO_FILL; /* unless Redis says otherwise */
    if ((err = ready(rc, &c)))
        return err;
    for (size_t done = 0, k; done < n && err == 0; done += k) {
        k = n - done < PIPELINE_MAX ? n - done : PIPELINE_MAX;
        a.items = items + done;
        a.out = out + done;
        a.hit = hit + done;
        a.token = token + done;
        err = pipeline(rc, c, k, add_get, take_get, &a);
    }
    conn_put(rc, c);
    strbuf_release(&a.key);
    if (err) { /* partial answers are not trusted */
        memset(hit, 0, n * sizeof(*hit));
        for (size_t i = 0; i < n; i++)
            token[i] = CACHE_NO_FILL;
    }
    return err;
}

/* ------------------------------------------------------------ fill, begin, end */

struct write_args {
    const struct item *items;
    const struct counts *counts;
    const cache_token *token;
    size_t *index;     /* fill: which items to send */
    size_t n;          /* begin, end: how many items */
    size_t first_call; /* begin, end: chunk number of the pipeline's first call */
    struct strbuf key; /* scratch */
};

static void add_fill(struct redis_cache *rc, struct rconn *c, size_t i, void *arg)
{
    struct write_args *a = arg;
    size_t k = a->index[i];

    key_of(&a->key, &a->items[k]);
    redisAppendCommand(c->ctx, "EVALSHA %s 1 %s %lld %lld %lld %lld %lld", c->sha[SC_FILL],
                       a->key.buf, (long long)a->token[k], (long long)a->counts[k].read_cnt,
                       (long long)a->counts[k].like_cnt, (long long)a->counts[k].collect_cnt,
                       (long long)rc->ttl_ms);
}

static int redis_fill(struct cache *base, const struct item *items, size_t n,
                      const struct counts *counts, const cache_token *token)
{
    struct redis_cache *rc = (struct redis_cache *)base;
    size_t index[PIPELINE_MAX], i = 0, k;
    struct write_args a = {
        .items = items, .counts = counts, .token = token, .index = index, .key = STRBUF_INIT};
    struct rconn *c;
    int err;

    while (i < n && token[i] == CACHE_NO_FILL)
        i++;
    if (i == n)
        return 0;
    if ((err = ready(rc, &c)))
        return err;
    while (i < n && err == 0) { /* up to PIPELINE_MAX fills per pipeline */
        for (k = 0; i < n && k < PIPELINE_MAX; i++)
            if (token[i] != CACHE_NO_FILL)
                index[k++] = i;
        if (k > 0)
            err = pipeline(rc, c, k, add_fill, NULL, &a);
    }
    conn_put(rc, c);
    strbuf_release(&a.key);
    return err;
}

/*
 * Appends one EVALSHA of begin or end over items [i * WRITE_CHUNK, ...):
 * a chunk of keys per script call keeps a batch of a thousand reads to a
 * handful of calls.
 */
static void add_write_chunk(struct rconn *c, size_t i, struct write_args *a, enum script which)
{
    static const struct counts zero = {0, 0, 0};
    size_t first = i * WRITE_CHUNK, m = a->n - first < WRITE_CHUNK ? a->n - first : WRITE_CHUNK;
    const char *argv[4 + WRITE_CHUNK * 4];
    size_t len[4 + WRITE_CHUNK * 4], at[4 + WRITE_CHUNK * 4], argc = 0;

    strbuf_reset(&a->key);
#define ARG(...)                           \
    do {                                   \
        at[argc] = a->key.len;             \
        strbuf_addf(&a->key, __VA_ARGS__); \
        len[argc] = a->key.len - at[argc]; \
        argc++;                            \
    } while (0)
    ARG("EVALSHA");
    ARG("%s", c->sha[which]);
    ARG("%zu", m);
    for (size_t k = first; k < first + m; k++)
        ARG("interactive:%s:%lld", a->items[k].biz, (long long)a->items[k].id);
    ARG("%d", FENCE_MS);
    for (size_t k = first; which == SC_END && k < first + m; k++) {
        const struct counts *d = a->counts ? &a->counts[k] : &zero;
        ARG("%lld", (long long)d->read_cnt);
        ARG("%lld", (long long)d->like_cnt);
        ARG("%lld", (long long)d->collect_cnt);
    }
#undef ARG
    for (size_t k = 0; k < argc; k++)
        argv[k] = a->key.buf + at[k];
    redisAppendCommandArgv(c->ctx, (int)argc, argv, len);
}

static void add_begin(struct redis_cache *rc, struct rconn *c, size_t i, void *arg)
{
    (void)rc;
    add_write_chunk(c, ((struct write_args *)arg)->first_call + i, arg, SC_BEGIN);
}

static void add_end(struct redis_cache *rc, struct rconn *c, size_t i, void *arg)
{
    (void)rc;
    add_write_chunk(c, ((struct write_args *)arg)->first_call + i, arg, SC_END);
}

/* Runs begin or end over n items, WRITE_CHUNK keys per script call, in one pipeline. */
static int write_all(struct redis_cache *rc, add_fn *add, const struct item *items, size_t n,
                     const struct counts *delta)
{
    struct write_args a = {.items = items, .counts = delta, .n = n, .key = STRBUF_INIT};
    size_t calls = (n + WRITE_CHUNK - 1) / WRITE_CHUNK;
    struct rconn *c;
    int err;

    if (n == 0)
        return 0;
    if ((err = ready(rc, &c)))
        return err;
    for (size_t done = 0; done < calls && err == 0; done += PIPELINE_MAX) {
        size_t k = calls - done < PIPELINE_MAX ? calls - done : PIPELINE_MAX;
        a.first_call = done;
        err = pipeline(rc, c, k, add, NULL, &a);
    }
    conn_put(rc, c);
    strbuf_release(&a.key);
    return err;
}

static int redis_begin(struct cache *base, const struct item *items, size_t n)
{
    struct redis_cache *rc = (struct redis_cache *)base;
    int err = write_all(rc, add_begin, items, n, NULL);

    /* Without a fence the write's end() cannot be trusted either: repair later. */
    if (err)
        remember_for_repair(rc, items, n);
    return err;
}

static int redis_end(struct cache *base, const struct item *items, size_t n,
                     const struct counts *delta)
{
    struct redis_cache *rc = (struct redis_cache *)base;
    int err = write_all(rc, add_end, items, n, delta);

    if (err)
        remember_for_repair(rc, items, n);
    return err;
}

/* ------------------------------------------------------------ open and free */

static void redis_free(struct cache *base)
{
    struct redis_cache *rc = (struct redis_cache *)base;

    for (int i = 0; i < POOL; i++)
        if (rc->conns[i].ctx)
            redisFree(rc->conns[i].ctx);
    pthread_mutex_destroy(&rc->pool_lock);
    pthread_cond_destroy(&rc->pool_cond);
    pthread_mutex_destroy(&rc->repair_lock);
    free(rc->repair);
    free(rc->host);
    free(rc);
}

static const struct cache_ops redis_ops = {
    .name = "redis",
    .get = redis_get,
    .fill = redis_fill,
    .begin = redis_begin,
    .end = redis_end,
    .free = redis_free,
};

/* Parses redis://HOST:PORT[?ttl=S&timeout_ms=MS]; returns NULL or why not. */
static const char *parse_url(const char *url, char **host, int *port, int64_t *ttl_s,
                             int64_t *timeout_ms)
{
    const char *p = url + strlen("redis://"), *colon = strchr(p, ':'), *q;
    int64_t v;

    *host = NULL;
    *ttl_s = 900;
    *timeout_ms = 100;
    if (!colon || colon == p)
        return "expected redis://HOST:PORT";
    q = strchr(colon, '?');
    if (item_parse_id(colon + 1, q ? (size_t)(q - colon - 1) : strlen(colon + 1), &v) || v > 65535)
        return "the port must be an integer in 1..65535";
    *port = (int)v;
    while (q && *q) {
        const char *opt = q + 1, *eq = strchr(opt, '='), *end;

        q = strchr(opt, '&');
        end = q ? q : opt + strlen(opt);
        if (!eq || eq > end || item_parse_id(eq + 1, (size_t)(end - eq - 1), &v))
            return "options are ttl=SECONDS and timeout_ms=MS, positive integers";
        if ((size_t)(eq - opt) == 3 && strncmp(opt, "ttl", 3) == 0 && v <= 86400 * 365)
            *ttl_s = v;
        else if ((size_t)(eq - opt) == 10 && strncmp(opt, "timeout_ms", 10) == 0 && v <= 60000)
            *timeout_ms = v;
        else
            return "options are ttl=SECONDS and timeout_ms=MS, positive integers";
    }
    *host = xstrndup(p, (size_t)(colon - p));
    return NULL;
}

int cache_redis_check_url(const char *url, char **err)
{
    char *host;
    int port;
    int64_t ttl, timeout;
    const char *why = parse_url(url, &host, &port, &ttl, &timeout);

    free(host);
    if (!why)
        return 0;
    *err = xstrfmt("invalid --cache '%s': %s", url, why);
    return TALLY_EINVAL;
}

int cache_redis_open(const char *url, struct cache **out, char **err)
{
    struct redis_cache *rc;
    int64_t ttl_s, timeout_ms;
    struct rconn *c;
    int rcode;

    if ((rcode = cache_redis_check_url(url, err)))
        return rcode;
    rc = xcalloc(1, sizeof(*rc));
    rc->base.ops = &redis_ops;
    parse_url(url, &rc->host, &rc->port, &ttl_s, &timeout_ms);
    rc->ttl_ms = ttl_s * 1000;
    rc->timeout.tv_sec = timeout_ms / 1000;
    rc->timeout.tv_usec = (timeout_ms % 1000) * 1000;
    pthread_mutex_init(&rc->pool_lock, NULL);
    pthread_cond_init(&rc->pool_cond, NULL);
    pthread_mutex_init(&rc->repair_lock, NULL);
    for (int i = POOL - 1; i >= 0; i--) {
        rc->conns[i].next_free = rc->free_conns;
        rc->free_conns = &rc->conns[i];
    }
    /* A cache is optional: tallyd starts even if Redis is down, and uses it once it is up. */
    if (conn_get(rc, &c))
        log_warn("redis: %s:%d does not answer yet; serving from the store", rc->host, rc->port);
    conn_put(rc, c);
    *out = &rc->base;
    return 0;
}
