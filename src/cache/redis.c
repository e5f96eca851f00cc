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
 *   fill that already contains it. An entry evicted (or deleted) while a
 *   write is in flight loses its fence with it: that write's end finds
 *   inflight below zero, and then drops whatever counters a reader has
 *   filled meanwhile and bumps gen, so neither a fill that already holds
 *   the write nor one read before its commit can stay cached.
 *
 *   A write whose tallyd is killed between begin and end leaves its fence
 *   up for good, and the counters beside it miss its commit. So the first
 *   begin of an in-flight period writes `until` (STUCK_MS ahead), the end
 *   that brings inflight back to zero removes it, and a get that finds
 *   inflight above zero past `until` serves the item as a miss (from the
 *   store) and deletes the hash (the repair list): a crash mid-write is
 *   stale for STUCK_MS at most, not for the TTL. A write that is only slow
 *   stays correct: its late end finds no hash, as after an eviction. The
 *   same holds for a user's flags hash. All four steps are Lua scripts, so each
 *   is atomic in Redis; they run by EVALSHA and are reloaded when Redis
 *   answers NOSCRIPT (after a restart or SCRIPT FLUSH). begin and end take
 *   up to 128 keys per call, so a batch of reads costs a few calls, not
 *   two per item; this assumes one Redis node (as hiredis does): on a
 *   cluster, keys of one call would have to share a hash slot.
 *
 *   Credentials: with a password in the URL every connection, first or
 *   reconnected, sends AUTH [USER] PASSWORD before anything else. A refusal
 *   (WRONGPASS, or NOAUTH without a password) stops tallyd at start; later
 *   it is an outage like any other, counted in
 *   tally_redis_auth_failures_total. The password is never logged.
 *
 *   Users' flags: one hash per user, user_flags:{uid}, a field per item the
 *   user looked at ("{biz}:{id}" = FLAG_* bits, "0" when neither), and the
 *   same two fence fields, per user: a like or collection brackets its store
 *   transaction with ubegin (gen += 1, inflight += 1; returns gen if no
 *   other write of the user was in flight) and uend (inflight -= 1; then, if
 *   the write had a gen and no other write of the user began since, so it
 *   was alone from begin to end, the item's field becomes the flags the
 *   write's transaction read, and the writer's next page view is a hit;
 *   otherwise the field is dropped: two writes that overlap may commit in
 *   either order, whichever ends last). A get of items for a user reads the user's fields in the same
 *   pipeline as the counters; a miss reads the store and ufill writes the
 *   fields only if gen is still the token and nothing is in flight. An
 *   eviction during a write is caught as for the counters (inflight below
 *   zero drops the user's fields and bumps gen). A user's hash is bounded:
 *   once it holds more than USER_FLAGS_MAX fields, the next fill starts it
 *   over (gen and inflight kept), so a user who views every item of a site
 *   costs about a thousand fields, not one per item forever.
 *
 *   SC_TAKE is not about counters: it is the rate limiter's token bucket
 *   (cache.h, take; service/ratelimit.c), kept here because this is where
 *   tallyd's Redis connections are.
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
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/pool.h"
#include "util/strbuf.h"
#include "util/url.h"
#include "util/xmalloc.h"
#include "util/banned.h"

#define RETRY_AFTER_US 1000000
#define FENCE_MS       60000 /* how long fence fields outlive an uncached item's last write */
/* A fence held this long since its writes began is presumed orphaned (a tallyd killed
 * between begin and end): its hash is served as a miss and deleted (see DESIGN). */
#define STUCK_MS       30000
#define REPAIR_MAX     10000
#define WRITE_CHUNK    128 /* keys per begin/end script call */
#define PIPELINE_MAX   256 /* commands per pipeline(); callers send larger batches in parts */
/* A user's flags hash holds about this many items at most: one that grew past it starts
 * over (its fence fields kept), and the items it dropped are read from the store again.
 * A string for the scripts; the writes that add to it add at most INTERACTIVE_MAX_IDS. */
#define USER_FLAGS_MAX "1000"


enum script { SC_BEGIN, SC_END, SC_FILL, SC_UBEGIN, SC_UEND, SC_UFILL, SC_TAKE, SCRIPT_COUNT };

static const char *const scripts[SCRIPT_COUNT] = {
    /* KEYS: the items; ARGV[1]: fence TTL in ms; ARGV[2]: when the fence is presumed
     * orphaned, if this write is the first in flight. */
    [SC_BEGIN] = "for _, k in ipairs(KEYS) do\n"
                 "  redis.call('HINCRBY', k, 'gen', 1)\n"
                 "  if redis.call('HINCRBY', k, 'inflight', 1) == 1 then\n"
                 "    redis.call('HSET', k, 'until', ARGV[2])\n"
                 "  end\n"
                 "  if redis.call('HEXISTS', k, 'read_cnt') == 0 then\n"
                 "    redis.call('PEXPIRE', k, ARGV[1])\n"
                 "  end\n"
                 "end\n"
                 "return #KEYS\n",
    /* KEYS: the items; ARGV[1]: fence TTL; then per key the three deltas. */
    [SC_END] = "local f = {'read_cnt', 'like_cnt', 'collect_cnt'}\n"
               "for i, k in ipairs(KEYS) do\n"
               "  local left = redis.call('HINCRBY', k, 'inflight', -1)\n"
               "  if left <= 0 then redis.call('HDEL', k, 'until') end\n"
               "  if left < 0 then\n"
               "    redis.call('HDEL', k, f[1], f[2], f[3])\n"
               "    redis.call('HSET', k, 'inflight', 0)\n"
               "    redis.call('HINCRBY', k, 'gen', 1)\n"
               "    redis.call('PEXPIRE', k, ARGV[1])\n"
               "  elseif redis.call('HEXISTS', k, 'read_cnt') == 1 then\n"
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
    /* KEYS[1]: the user's hash; ARGV[1]: fence TTL; ARGV[2]: as SC_BEGIN's. Returns the
     * write's token: gen when no other write of the user is in flight, else 0 (no gen). */
    [SC_UBEGIN] = "local g = redis.call('HINCRBY', KEYS[1], 'gen', 1)\n"
                  "local alone = redis.call('HINCRBY', KEYS[1], 'inflight', 1) == 1\n"
                  "if alone then redis.call('HSET', KEYS[1], 'until', ARGV[2]) end\n"
                  "if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then\n"
                  "  redis.call('PEXPIRE', KEYS[1], ARGV[1])\n"
                  "end\n"
                  "if alone then return g end\n"
                  "return 0\n",
    /* KEYS[1]: the user's hash; ARGV: fence TTL, token, field, flags ('' unknown), TTL. */
    [SC_UEND] = "local k = KEYS[1]\n"
                "local left = redis.call('HINCRBY', k, 'inflight', -1)\n"
                "if left <= 0 then redis.call('HDEL', k, 'until') end\n"
                "if left < 0 then\n"
                "  local g = tonumber(redis.call('HGET', k, 'gen') or '0')\n"
                "  redis.call('DEL', k)\n"
                "  redis.call('HSET', k, 'gen', g + 1, 'inflight', 0)\n"
                "  redis.call('PEXPIRE', k, ARGV[1])\n"
                "elseif left == 0 and ARGV[4] ~= '' and redis.call('HGET', k, 'gen') == ARGV[2] then\n"
                "  if redis.call('HLEN', k) > " USER_FLAGS_MAX " then\n"
                "    redis.call('DEL', k)\n"
                "    redis.call('HSET', k, 'gen', ARGV[2], 'inflight', 0)\n"
                "  end\n"
                "  redis.call('HSET', k, ARGV[3], ARGV[4])\n"
                "  redis.call('PEXPIRE', k, ARGV[5])\n"
                "else\n"
                "  redis.call('HDEL', k, ARGV[3])\n"
                "end\n"
                "return left\n",
    /* KEYS[1]: the user's hash; ARGV: token, TTL, then field, flags pairs. */
    [SC_UFILL] = "if (redis.call('HGET', KEYS[1], 'gen') or '0') ~= ARGV[1] then return 0 end\n"
                 "if tonumber(redis.call('HGET', KEYS[1], 'inflight') or '0') > 0 then\n"
                 "  return 0\n"
                 "end\n"
                 "if redis.call('HLEN', KEYS[1]) > " USER_FLAGS_MAX " then\n"
                 "  redis.call('DEL', KEYS[1])\n"
                 "  redis.call('HSET', KEYS[1], 'gen', ARGV[1], 'inflight', 0)\n"
                 "end\n"
                 "redis.call('HSET', KEYS[1], unpack(ARGV, 3))\n"
                 "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                 "return 1\n",
    /*
     * A token bucket (cache.h, take). KEYS[1]: the bucket; ARGV: now_ms, n,
     * period_ms, burst. A token is period_ms units and a millisecond adds n
     * units, so the arithmetic is exact in integers (below 2^53, checked by
     * ratelimit_parse). The clock never goes back for a bucket: a tallyd
     * whose clock is behind does not refill it. The key expires once full.
     */
    [SC_TAKE] = "local now, n, p = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
                "local cap = tonumber(ARGV[4]) * p\n"
                "local b = redis.call('HMGET', KEYS[1], 'level', 'ts')\n"
                "local level, ts = tonumber(b[1]), tonumber(b[2])\n"
                "if not level or not ts then level, ts = cap, now end\n"
                "if now > ts then\n"
                "  level = math.min(cap, level + (now - ts) * n)\n"
                "  ts = now\n"
                "end\n"
                "local retry = 0\n"
                "if level >= p then level = level - p\n"
                "else retry = math.ceil((p - level) / n) end\n"
                "redis.call('HSET', KEYS[1], 'level', string.format('%d', level),"
                " 'ts', string.format('%d', ts))\n"
                "redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil((cap - level) / n)"
                " + 1000))\n"
                "return retry\n",
};

/* One connection; used by one thread at a time while checked out. */
struct rconn {
    redisContext *ctx;          /* NULL: not connected */
    int64_t retry_at_us;        /* after a failure, no reconnect before this */
    char sha[SCRIPT_COUNT][41]; /* the scripts' SHA1s, as this server loaded them */
};

/* A key to delete once Redis answers: an item's counters, or (uid != 0) a user's flags. */
struct stale {
    int64_t uid;
    struct item item;
};

/*
 * Shared by all threads. The pool hands out conns (pool_size_for(--workers),
 * a wait as long as a call's timeout); repair_lock guards
 * repair, nrepair and repair_overflow. Keys are only ever added to the
 * list under the lock (repair_add_locked); a repair takes the whole list
 * under the lock, sends its DELs without it, and on failure adds what it
 * took back to whatever other threads added meanwhile: never replaces it.
 */
struct redis_cache {
    struct cache base;
    char *host;
    int port;
    char *user, *password; /* AUTH on every connect when password is set; never logged */
    int64_t ttl_ms;
    struct timeval timeout;
    struct pool pool;
    struct rconn *conns;
    size_t nconns;
    pthread_mutex_t repair_lock;
    struct stale *repair;
    size_t nrepair;
    bool repair_overflow;
    atomic_bool down; /* a connection failed and none has reconnected since: for the log */
    atomic_bool auth_refused; /* the last connect failed on AUTH or NOAUTH: for the log */
    bool opened;              /* set by cache_redis_open before any other thread runs */
    struct metric *m_auth_failed;
};

static void key_of(struct strbuf *sb, const struct item *it)
{
    strbuf_reset(sb);
    strbuf_addstr(sb, "interactive:");
    strbuf_addstr(sb, it->biz);
    strbuf_addch(sb, ':');
    strbuf_add_i64(sb, it->id);
}

#define USER_KEY "user_flags:%lld" /* a user's flags; the argument a long long uid */

static void user_key_of(struct strbuf *sb, int64_t uid)
{
    strbuf_reset(sb);
    strbuf_addf(sb, USER_KEY, (long long)uid);
}

static void stale_key(struct strbuf *sb, const struct stale *s)
{
    if (s->uid)
        user_key_of(sb, s->uid);
    else
        key_of(sb, &s->item);
}

/*
 * A command's arguments, formatted one after another into buf and sent with
 * redisAppendCommandArgv (binary-safe, no format string in between).
 */
#define CMD_ARGS_MAX (4 + WRITE_CHUNK * 4)
struct cmd {
    struct strbuf *buf;
    size_t argc, at[CMD_ARGS_MAX], len[CMD_ARGS_MAX];
};

static void cmd_start(struct cmd *m, struct strbuf *buf)
{
    m->buf = buf;
    m->argc = 0;
    strbuf_reset(buf);
}

__attribute__((format(printf, 2, 3))) static void cmd_arg(struct cmd *m, const char *fmt, ...)
{
    va_list ap;

    TALLY_ASSERT(m->argc < CMD_ARGS_MAX);
    m->at[m->argc] = m->buf->len;
    va_start(ap, fmt);
    strbuf_vaddf(m->buf, fmt, ap);
    va_end(ap);
    m->len[m->argc] = m->buf->len - m->at[m->argc];
    m->argc++;
}

static void cmd_append(redisContext *ctx, const struct cmd *m)
{
    const char *argv[CMD_ARGS_MAX];

    for (size_t k = 0; k < m->argc; k++)
        argv[k] = m->buf->buf + m->at[k];
    redisAppendCommandArgv(ctx, (int)m->argc, argv, m->len);
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

/* Whether r refuses a client for its credentials (also a command sent without AUTH). */
static bool is_auth_error(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR &&
           (strncmp(r->str, "WRONGPASS", 9) == 0 || strncmp(r->str, "NOAUTH", 6) == 0 ||
            strncmp(r->str, "ERR AUTH", 8) == 0 || strncmp(r->str, "ERR invalid password", 20) == 0);
}

/* Notes a refusal of the credentials in why (the server's words, scrubbed of the password). */
static void auth_refused(struct redis_cache *rc, const redisReply *r, struct strbuf *why)
{
    size_t at = why->len;

    metric_add(rc->m_auth_failed, 1);
    url_scrub(why, r->str, rc->password);
    /* A state change, logged once however many connections it refuses (at open: an error). */
    if (!atomic_exchange(&rc->auth_refused, true) && rc->opened)
        log_warn("redis: %s:%d refused the credentials: %s", rc->host, rc->port, why->buf + at);
}

/* AUTH [USER] PASSWORD on a fresh connection, when the URL has a password. */
static int authenticate(struct redis_cache *rc, struct rconn *c, struct strbuf *why)
{
    redisReply *r;
    int err = 0;

    if (!rc->password)
        return 0;
    r = rc->user ? redisCommand(c->ctx, "AUTH %s %s", rc->user, rc->password)
                 : redisCommand(c->ctx, "AUTH %s", rc->password);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        if (r)
            auth_refused(rc, r, why);
        err = TALLY_EUNAVAIL;
    }
    if (r)
        freeReplyObject(r);
    return err;
}

static int load_scripts(struct redis_cache *rc, struct rconn *c, struct strbuf *why)
{
    for (int i = 0; i < SCRIPT_COUNT; i++) {
        redisReply *r = redisCommand(c->ctx, "SCRIPT LOAD %s", scripts[i]);

        if (!r || r->type != REDIS_REPLY_STRING || r->len != 40) {
            if (is_auth_error(r))
                auth_refused(rc, r, why);
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

/* After NOSCRIPT: loads the scripts again, or drops the connection. */
static int reload_scripts(struct redis_cache *rc, struct rconn *c)
{
    struct strbuf why = STRBUF_INIT;
    int err = load_scripts(rc, c, &why);

    if (err)
        rconn_drop(rc, c, why.len ? why.buf : "cannot load scripts");
    strbuf_release(&why);
    return err;
}

/* Connects, authenticates and loads the scripts; on failure why says what went wrong. */
static int rconn_open(struct redis_cache *rc, struct rconn *c, struct strbuf *why)
{
    c->ctx = redisConnectWithTimeout(rc->host, rc->port, rc->timeout);
    if (!c->ctx || c->ctx->err || redisSetTimeout(c->ctx, rc->timeout) != REDIS_OK) {
        strbuf_addstr(why, c->ctx && c->ctx->err ? c->ctx->errstr : "cannot connect");
        return TALLY_EUNAVAIL;
    }
    if (authenticate(rc, c, why) || load_scripts(rc, c, why)) {
        if (!why->len)
            strbuf_addstr(why, c->ctx->err ? c->ctx->errstr : "unexpected reply");
        return TALLY_EUNAVAIL;
    }
    atomic_store(&rc->auth_refused, false);
    return 0;
}

static int conn_get(struct redis_cache *rc, struct rconn **out)
{
    struct rconn *c;
    void *taken;

    if (pool_get(&rc->pool, &taken)) { /* every connection stuck in a call: a miss */
        *out = NULL;
        return TALLY_EUNAVAIL;
    }
    c = taken;
    if (!c->ctx && clock_mono_us() >= c->retry_at_us) {
        struct strbuf why = STRBUF_INIT;

        if (rconn_open(rc, c, &why))
            rconn_drop(rc, c, why.buf);
        else if (atomic_load(&rc->down) && atomic_exchange(&rc->down, false))
            log_info("redis: %s:%d answers again", rc->host, rc->port);
        strbuf_release(&why);
    }
    *out = c;
    return c->ctx ? 0 : TALLY_EUNAVAIL;
}

static void conn_put(struct redis_cache *rc, struct rconn *c)
{
    if (c)
        pool_put(&rc->pool, c);
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
    if (reload_scripts(rc, c))
        return TALLY_EUNAVAIL;
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

/* Adds a key to the repair list; past REPAIR_MAX only notes the overflow. Hold repair_lock. */
static void repair_add_locked(struct redis_cache *rc, const struct stale *key)
{
    if (rc->nrepair == REPAIR_MAX) {
        rc->repair_overflow = true;
        return;
    }
    if (!rc->repair)
        rc->repair = xmalloc(REPAIR_MAX * sizeof(*rc->repair));
    rc->repair[rc->nrepair++] = *key;
}

/* Deletes the keys of writes whose end() failed, now that Redis answers. */
static int repair(struct redis_cache *rc, struct rconn *c)
{
    struct strbuf key = STRBUF_INIT;
    struct stale *items;
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
        stale_key(&key, &items[i]);
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
        for (size_t i = 0; i < n; i++)
            repair_add_locked(rc, &items[i]);
        rc->repair_overflow |= overflow;
        pthread_mutex_unlock(&rc->repair_lock);
        free(items);
    }
    strbuf_release(&key);
    return err;
}

/* The keys of a write whose begin or end failed: the items' and the user's. */
static void remember_for_repair(struct redis_cache *rc, const struct item *items, size_t n,
                                const struct flag_write *user)
{
    pthread_mutex_lock(&rc->repair_lock);
    for (size_t i = 0; i < n; i++)
        repair_add_locked(rc, &(struct stale){.item = items[i]});
    if (user)
        repair_add_locked(rc, &(struct stale){.uid = user->uid});
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
    const struct item *items; /* this pipeline's items */
    size_t k;                 /* how many; a command k is the user's flags, when asked */
    struct counts *out;
    bool *hit;
    cache_token *token;
    struct flag_lookup *user; /* NULL, or the user whose flags on all_items to read */
    const struct item *all_items;
    size_t n;
    struct strbuf key;
    int64_t now_ms;
    /* Hashes whose fence is orphaned (STUCK_MS): served as misses, then deleted. */
    struct item *stuck;
    size_t nstuck;
    bool user_stuck;
};


/* Appends the field of it in a user's hash: "{biz}:{id}". */
static void cmd_field(struct cmd *m, const struct item *it)
{
    cmd_arg(m, "%s:%lld", it->biz, (long long)it->id);
}

static void add_get(struct redis_cache *rc, struct rconn *c, size_t i, void *arg)
{
    struct get_args *a = arg;
    struct cmd m;

    (void)rc;
    if (i < a->k) {
        key_of(&a->key, &a->items[i]);
        redisAppendCommand(c->ctx, "HMGET %s read_cnt like_cnt collect_cnt gen inflight until",
                           a->key.buf);
        return;
    }
    cmd_start(&m, &a->key);
    cmd_arg(&m, "HMGET");
    cmd_arg(&m, USER_KEY, (long long)a->user->uid);
    cmd_arg(&m, "gen");
    cmd_arg(&m, "inflight");
    cmd_arg(&m, "until");
    for (size_t j = 0; j < a->n; j++)
        cmd_field(&m, &a->all_items[j]);
    cmd_append(c->ctx, &m);
}

static bool reply_i64(const redisReply *r, int64_t *v)
{
    char *end;

    if (!r || r->type != REDIS_REPLY_STRING)
        return false;
    *v = strtoll(r->str, &end, 10);
    return end != r->str && *end == '\0';
}

/* Whether a hash's fence (inflight, until) has outlived any write that could end it. */
static bool orphaned(const redisReply *inflight, const redisReply *until, int64_t now_ms)
{
    int64_t n, at;

    return reply_i64(inflight, &n) && n > 0 && reply_i64(until, &at) && at < now_ms;
}

/* A get's reply for the user: gen, inflight, until, then a field per item. */
static void take_user_flags(const redisReply *r, struct get_args *a)
{
    int64_t gen = 0, inflight = 0, v;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != a->n + 3)
        return;
    if (orphaned(r->element[1], r->element[2], a->now_ms)) {
        a->user_stuck = true; /* every flag a miss, no fill, and the hash deleted */
        return;
    }
    for (size_t j = 0; j < a->n; j++) {
        if (reply_i64(r->element[j + 3], &v) && v >= 0 && v <= (FLAG_LIKED | FLAG_COLLECTED)) {
            a->user->flags[j] = (uint8_t)v;
            a->user->hit[j] = true;
        }
    }
    reply_i64(r->element[0], &gen);
    a->user->token = reply_i64(r->element[1], &inflight) && inflight > 0 ? CACHE_NO_FILL : gen;
}

static void take_get(size_t i, const redisReply *r, void *arg)
{
    struct get_args *a = arg;
    int64_t inflight = 0;

    if (i == a->k) {
        take_user_flags(r, a);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 6)
        return;
    if (orphaned(r->element[4], r->element[5], a->now_ms)) {
        a->token[i] = CACHE_NO_FILL;
        if (!a->stuck)
            a->stuck = xcalloc(a->n, sizeof(*a->stuck));
        a->stuck[a->nstuck++] = a->items[i];
        return;
    }
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
                     bool *hit, cache_token *token, struct flag_lookup *user)
{
    struct redis_cache *rc = (struct redis_cache *)base;
    struct get_args a = {.user = user, .all_items = items, .n = n, .key = STRBUF_INIT,
                         .now_ms = clock_now_ms()};
    struct rconn *c;
    int err;

    TALLY_ASSERT(!user || n <= CMD_ARGS_MAX - 5);
    cache_all_missed(n, hit, token, user);
    if ((err = ready(rc, &c)))
        return err;
    for (size_t done = 0; done < n && err == 0; done += a.k) {
        bool with_user = user && done == 0; /* in the first pipeline */

        a.k = n - done < PIPELINE_MAX - 1 ? n - done : PIPELINE_MAX - 1;
        a.items = items + done;
        a.out = out + done;
        a.hit = hit + done;
        a.token = token + done;
        err = pipeline(rc, c, a.k + with_user, add_get, take_get, &a);
    }
    conn_put(rc, c);
    strbuf_release(&a.key);
    if (err) /* partial answers are not trusted */
        cache_all_missed(n, hit, token, user);
    if (a.nstuck || a.user_stuck) {
        /* Orphaned fences: their writes' end() will never come (or, if late, finds no
         * hash and drops whatever was filled meanwhile, as after an eviction). */
        remember_for_repair(rc, a.stuck, a.nstuck,
                            a.user_stuck ? &(struct flag_write){.uid = user->uid} : NULL);
        if (a.user_stuck)
            user->token = CACHE_NO_FILL;
    }
    free(a.stuck);
    return err;
}

/* ------------------------------------------------------------ fill, begin, end */

struct write_args {
    const struct item *items;
    const struct counts *counts;
    const cache_token *token;
    size_t *index;                 /* fill: which items to send */
    size_t n;                      /* begin, end: how many items */
    size_t first_call;             /* begin, end: chunk number of the pipeline's first call */
    size_t calls;                  /* begin, end: chunk calls in this pipeline; then the user's */
    struct flag_write *user;       /* begin, end: NULL, or the user's write */
    struct strbuf key;             /* scratch */
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

struct fill_flags_args {
    int64_t uid;
    const struct item *items;
    size_t n;
    const uint8_t *flags;
    cache_token token;
    struct strbuf key;
};

static void add_fill_flags(struct redis_cache *rc, struct rconn *c, size_t i, void *arg)
{
    struct fill_flags_args *a = arg;
    struct cmd m;

    (void)i;
    cmd_start(&m, &a->key);
    cmd_arg(&m, "EVALSHA");
    cmd_arg(&m, "%s", c->sha[SC_UFILL]);
    cmd_arg(&m, "1");
    cmd_arg(&m, USER_KEY, (long long)a->uid);
    cmd_arg(&m, "%lld", (long long)a->token);
    cmd_arg(&m, "%lld", (long long)rc->ttl_ms);
    for (size_t j = 0; j < a->n; j++) {
        cmd_field(&m, &a->items[j]);
        cmd_arg(&m, "%u", (unsigned)a->flags[j]);
    }
    cmd_append(c->ctx, &m);
}

static int redis_fill_flags(struct cache *base, int64_t uid, const struct item *items, size_t n,
                            const uint8_t *flags, cache_token token)
{
    struct redis_cache *rc = (struct redis_cache *)base;
    struct fill_flags_args a = {uid, items, n, flags, token, STRBUF_INIT};
    struct rconn *c;
    int err;

    TALLY_ASSERT(n <= (CMD_ARGS_MAX - 6) / 2);
    if (n == 0 || token == CACHE_NO_FILL)
        return 0;
    if ((err = ready(rc, &c)))
        return err;
    err = pipeline(rc, c, 1, add_fill_flags, NULL, &a);
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
    struct cmd cmd;

    cmd_start(&cmd, &a->key);
    cmd_arg(&cmd, "EVALSHA");
    cmd_arg(&cmd, "%s", c->sha[which]);
    cmd_arg(&cmd, "%zu", m);
    for (size_t k = first; k < first + m; k++)
        cmd_arg(&cmd, "interactive:%s:%lld", a->items[k].biz, (long long)a->items[k].id);
    cmd_arg(&cmd, "%d", FENCE_MS);
    if (which == SC_BEGIN)
        cmd_arg(&cmd, "%lld", (long long)(clock_now_ms() + STUCK_MS));
    for (size_t k = first; which == SC_END && k < first + m; k++) {
        const struct counts *d = a->counts ? &a->counts[k] : &zero;
        cmd_arg(&cmd, "%lld", (long long)d->read_cnt);
        cmd_arg(&cmd, "%lld", (long long)d->like_cnt);
        cmd_arg(&cmd, "%lld", (long long)d->collect_cnt);
    }
    cmd_append(c->ctx, &cmd);
}

/* Appends the user's ubegin or uend. */
static void add_user_write(struct redis_cache *rc, struct rconn *c, struct write_args *a,
                           enum script which)
{
    const struct flag_write *u = a->user;
    struct cmd m;

    cmd_start(&m, &a->key);
    cmd_arg(&m, "EVALSHA");
    cmd_arg(&m, "%s", c->sha[which]);
    cmd_arg(&m, "1");
    cmd_arg(&m, USER_KEY, (long long)u->uid);
    cmd_arg(&m, "%d", FENCE_MS);
    if (which == SC_UBEGIN)
        cmd_arg(&m, "%lld", (long long)(clock_now_ms() + STUCK_MS));
    if (which == SC_UEND) {
        cmd_arg(&m, "%lld", (long long)u->token);
        cmd_field(&m, u->item);
        if (u->committed)
            cmd_arg(&m, "%u", (unsigned)u->flags);
        else
            cmd_arg(&m, "%s", "");
        cmd_arg(&m, "%lld", (long long)rc->ttl_ms);
    }
    cmd_append(c->ctx, &m);
}

static void add_begin(struct redis_cache *rc, struct rconn *c, size_t i, void *arg)
{
    struct write_args *a = arg;

    if (i < a->calls)
        add_write_chunk(c, a->first_call + i, a, SC_BEGIN);
    else
        add_user_write(rc, c, a, SC_UBEGIN);
}

static void add_end(struct redis_cache *rc, struct rconn *c, size_t i, void *arg)
{
    struct write_args *a = arg;

    if (i < a->calls)
        add_write_chunk(c, a->first_call + i, a, SC_END);
    else
        add_user_write(rc, c, a, SC_UEND);
}

/* The user's ubegin answers the write's token. */
static void take_begin(size_t i, const redisReply *r, void *arg)
{
    struct write_args *a = arg;

    if (i == a->calls && r->type == REDIS_REPLY_INTEGER && r->integer > 0)
        a->user->token = r->integer;
}

/*
 * Runs begin or end over n items, WRITE_CHUNK keys per script call, and the
 * user's part (if any) in the first pipeline.
 */
static int write_all(struct redis_cache *rc, add_fn *add, const struct item *items, size_t n,
                     const struct counts *delta, struct flag_write *user)
{
    struct write_args a = {
        .items = items, .counts = delta, .n = n, .user = user, .key = STRBUF_INIT};
    size_t calls = (n + WRITE_CHUNK - 1) / WRITE_CHUNK;
    bool user_left = user != NULL;
    struct rconn *c;
    int err;

    if (n == 0 && !user)
        return 0;
    if ((err = ready(rc, &c)))
        return err;
    for (size_t done = 0; (done < calls || user_left) && err == 0; done += a.calls) {
        bool with_user = user_left;

        user_left = false;
        a.calls = calls - done < PIPELINE_MAX - 1 ? calls - done : PIPELINE_MAX - 1;
        a.first_call = done;
        err = pipeline(rc, c, a.calls + with_user, add, with_user ? take_begin : NULL, &a);
    }
    conn_put(rc, c);
    strbuf_release(&a.key);
    return err;
}

static int redis_begin(struct cache *base, const struct item *items, size_t n,
                       struct flag_write *user)
{
    struct redis_cache *rc = (struct redis_cache *)base;
    int err;

    if (user)
        user->token = CACHE_NO_FILL; /* unless Redis answers */
    err = write_all(rc, add_begin, items, n, NULL, user);
    /* Without a fence the write's end() cannot be trusted either: repair later. */
    if (err)
        remember_for_repair(rc, items, n, user);
    return err;
}

static int redis_end(struct cache *base, const struct item *items, size_t n,
                     const struct counts *delta, const struct flag_write *user)
{
    struct redis_cache *rc = (struct redis_cache *)base;
    /* write_all's user is not const: begin writes the token; end only reads it */
    struct flag_write u = user ? *user : (struct flag_write){0};
    int err = write_all(rc, add_end, items, n, delta, user ? &u : NULL);

    if (err)
        remember_for_repair(rc, items, n, user);
    return err;
}

/* ------------------------------------------------------------ take */

struct take_args {
    const char *key;
    int64_t n, period_ms, burst, now_ms;
    int64_t retry_ms; /* -1 until Redis answered */
};

static void add_take(struct redis_cache *rc, struct rconn *c, size_t i, void *arg)
{
    struct take_args *a = arg;

    (void)rc, (void)i;
    redisAppendCommand(c->ctx, "EVALSHA %s 1 %s %lld %lld %lld %lld", c->sha[SC_TAKE], a->key,
                       (long long)a->now_ms, (long long)a->n, (long long)a->period_ms,
                       (long long)a->burst);
}

static void take_take(size_t i, const redisReply *r, void *arg)
{
    struct take_args *a = arg;

    (void)i;
    if (r->type == REDIS_REPLY_INTEGER && r->integer >= 0)
        a->retry_ms = r->integer;
}

static int redis_take(struct cache *base, const char *key, int64_t n, int64_t period_ms,
                      int64_t burst, int64_t now_ms, int64_t *retry_ms)
{
    struct redis_cache *rc = (struct redis_cache *)base;
    struct take_args a = {key, n, period_ms, burst, now_ms, -1};
    struct rconn *c;
    int err;

    if ((err = ready(rc, &c)))
        return err;
    err = pipeline(rc, c, 1, add_take, take_take, &a);
    conn_put(rc, c);
    if (err == 0 && a.retry_ms < 0) /* a script error: say so, the caller counts in memory */
        err = TALLY_EINTERNAL;
    *retry_ms = a.retry_ms;
    return err;
}

/* ------------------------------------------------------------ open and free */

/* ------------------------------------------------------------ invalidate */

struct del_args {
    const struct item *items;
    struct strbuf key;
};

static void add_del(struct redis_cache *rc, struct rconn *c, size_t i, void *arg)
{
    struct del_args *a = arg;

    (void)rc;
    key_of(&a->key, &a->items[i]);
    redisAppendCommand(c->ctx, "DEL %s", a->key.buf);
}

/* Unlike the other calls this one reports EUNAVAIL: its caller must know the keys stay. */
static int redis_invalidate(struct cache *base, const struct item *items, size_t n)
{
    struct redis_cache *rc = (struct redis_cache *)base;
    struct del_args a = {.key = STRBUF_INIT};
    struct rconn *c;
    int err;

    if ((err = ready(rc, &c)))
        return err;
    for (size_t done = 0; done < n && err == 0; done += PIPELINE_MAX) {
        a.items = items + done;
        err = pipeline(rc, c, n - done < PIPELINE_MAX ? n - done : PIPELINE_MAX, add_del, NULL,
                       &a);
    }
    conn_put(rc, c);
    strbuf_release(&a.key);
    return err;
}

static void redis_free(struct cache *base)
{
    struct redis_cache *rc = (struct redis_cache *)base;

    for (size_t i = 0; i < rc->nconns; i++)
        if (rc->conns[i].ctx)
            redisFree(rc->conns[i].ctx);
    free(rc->conns);
    pool_release(&rc->pool);
    pthread_mutex_destroy(&rc->repair_lock);
    free(rc->repair);
    free(rc->host);
    free(rc->user);
    free(rc->password);
    free(rc);
}

static const struct cache_ops redis_ops = {
    .name = "redis",
    .get = redis_get,
    .fill = redis_fill,
    .fill_flags = redis_fill_flags,
    .begin = redis_begin,
    .end = redis_end,
    .take = redis_take,
    .free = redis_free,
    .invalidate = redis_invalidate,
};

static const char *const known_options[] = {"ttl", "timeout_ms", NULL};

/* redis://[[USER]:PASSWORD@]HOST[:PORT][?ttl=S&timeout_ms=MS]: the rules beyond url_parse's. */
int cache_redis_check(const struct url *u, char **why)
{
    long long v;

    if (url_check_options(u, known_options, why))
        return TALLY_EINVAL;
    *why = NULL;
    if (u->nhosts != 1)
        *why = xstrdup("expected redis://[USER:PASSWORD@]HOST:PORT");
    else if (*u->path)
        *why = xstrdup("redis:// takes no path (database numbers are not supported)");
    else if (u->user && !u->password)
        *why = xstrdup("a Redis user needs a password: redis://USER:PASSWORD@HOST:PORT");
    else if (url_option_int(u, "ttl", 1, 86400 * 365, 900, &v))
        *why = xstrdup("ttl=SECONDS takes 1..31536000");
    else if (url_option_int(u, "timeout_ms", 1, 60000, 100, &v))
        *why = xstrdup("timeout_ms=MS takes 1..60000");
    return *why ? TALLY_EINVAL : 0;
}

int cache_redis_open(const struct url *u, int workers, struct cache **out, char **err)
{
    struct redis_cache *rc;
    long long ttl_s, timeout_ms;
    struct strbuf why = STRBUF_INIT;
    struct rconn *c;

    rc = xcalloc(1, sizeof(*rc));
    rc->base.ops = &redis_ops;
    rc->host = xstrdup(u->hosts[0].name);
    rc->port = u->hosts[0].port ? u->hosts[0].port : 6379;
    rc->user = u->user ? xstrdup(u->user) : NULL;
    rc->password = u->password ? xstrdup(u->password) : NULL;
    url_option_int(u, "ttl", 1, 86400 * 365, 900, &ttl_s);
    url_option_int(u, "timeout_ms", 1, 60000, 100, &timeout_ms);
    rc->ttl_ms = ttl_s * 1000;
    rc->timeout.tv_sec = timeout_ms / 1000;
    rc->timeout.tv_usec = (timeout_ms % 1000) * 1000;
    rc->m_auth_failed = metrics_counter("tally_redis_auth_failures_total",
                                        "Connections Redis refused to authenticate.", "");
    pthread_mutex_init(&rc->repair_lock, NULL);
    /* Waiting for a connection is bounded like a call: as long as its timeout. */
    rc->nconns = pool_size_for(workers);
    rc->conns = xcalloc(rc->nconns, sizeof(*rc->conns));
    pool_init(&rc->pool, "redis", rc->nconns, (int)timeout_ms);
    for (size_t i = rc->nconns; i > 0; i--)
        pool_put(&rc->pool, &rc->conns[i - 1]);
    /*
     * A cache is optional: tallyd starts even if Redis is down, and uses it once it is up.
     * Credentials Redis refuses are a configuration error, though: refuse to start.
     */
    c = &rc->conns[0];
    if (rconn_open(rc, c, &why)) {
        if (atomic_load(&rc->auth_refused)) {
            *err = xstrfmt("redis at %s:%d refused the credentials of --cache (%s)", rc->host,
                           rc->port, why.buf);
            strbuf_release(&why);
            redis_free(&rc->base);
            return TALLY_EINVAL;
        }
        log_warn("redis: %s:%d does not answer yet (%s); serving from the store", rc->host,
                 rc->port, why.buf);
        atomic_store(&rc->down, true); /* so that its coming back is logged */
        redisFree(c->ctx);
        c->ctx = NULL;
        c->retry_at_us = clock_mono_us() + RETRY_AFTER_US;
    }
    strbuf_release(&why);
    rc->opened = true;
    *out = &rc->base;
    return 0;
}
