/*
 * redis.c - the counter cache on Redis: one node or a cluster (redis_link.h).
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
 *   is atomic in Redis; they run by EVALSHA, and by EVAL (which loads them)
 *   when a node answers NOSCRIPT (a restart, SCRIPT FLUSH, a promoted
 *   replica). begin and end take up to 128 keys per call, so a batch of
 *   reads costs a few calls, not two per item.
 *
 *   A cluster (redis-cluster://): every script touches one key, or (begin
 *   and end) keys grouped by slot, so each call runs whole on the master of
 *   its slot; an item's counters and fence are one hash, a user's flags and
 *   fence another, a rate-limit bucket a third, so no hash tags are needed
 *   and the keys are the ones a single node has. A command whose slot moved
 *   (MOVED, ASK, TRYAGAIN) is sent again and follows the redirect.
 *
 *   Failover: Redis replicates asynchronously, so a master that dies may
 *   take with it the last writes it acknowledged, and its promoted replica
 *   then serves counts that miss them. So the keys of the last RECENT_MAX
 *   writes whose end() Redis acknowledged are kept in a ring, and when a
 *   link fails (an outage begins) or Redis answers again, they join the
 *   repair list: deleted before any other call, read from the store again.
 *   A replica lags its master by far fewer writes than that on one network.
 *
 *   Credentials and TLS are the link's (redis_link.h). A refusal of the
 *   credentials (WRONGPASS, or NOAUTH without a password) stops tallyd at
 *   start; later it is an outage like any other, counted in
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
#include "cache/redis_link.h"

#include <openssl/sha.h>
#include <pthread.h>
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
#define WRITE_CHUNK    128 /* keys per begin/end script call */
#define PIPELINE_MAX   256 /* commands per pipeline(); callers send larger batches in parts */
/* A user's flags hash holds about this many items at most: one that grew past it starts
 * over (its fence fields kept), and the items it dropped are read from the store again.
 * A string for the scripts; the writes that add to it add at most INTERACTIVE_MAX_IDS. */
#define USER_FLAGS_MAX "1000"
/* The keys of the last this many writes Redis acknowledged: dropped when a node fails. */
#define RECENT_MAX     4096
/* Keys awaiting a repair: room for 10,000 failed writes beside the recent ring, twice (an
 * outage adds it when it begins and when Redis answers again). */
#define REPAIR_MAX     (10000 + 2 * RECENT_MAX)

#define ITEM_KEY "interactive:%s:%lld" /* an item's hash; biz and a long long id */
#define USER_KEY "user_flags:%lld"     /* a user's flags; a long long uid */


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
    /* KEYS: the items; ARGV[1]: fence TTL; then per key the three deltas, or 'x' and two
     * zeros when the write's effect is unknown (CACHE_UNKNOWN): its counters are dropped. */
    [SC_END] = "local f = {'read_cnt', 'like_cnt', 'collect_cnt'}\n"
               "for i, k in ipairs(KEYS) do\n"
               "  local left = redis.call('HINCRBY', k, 'inflight', -1)\n"
               "  local at = 1 + (i - 1) * 3\n"
               "  if left <= 0 then redis.call('HDEL', k, 'until') end\n"
               "  if left < 0 or ARGV[at + 1] == 'x' then\n"
               "    redis.call('HDEL', k, f[1], f[2], f[3])\n"
               "    if left < 0 then redis.call('HSET', k, 'inflight', 0) end\n"
               "    redis.call('HINCRBY', k, 'gen', 1)\n"
               "    redis.call('PEXPIRE', k, ARGV[1])\n"
               "  elseif redis.call('HEXISTS', k, 'read_cnt') == 1 then\n"
               "    for j = 1, 3 do\n"
               "      local d = ARGV[at + j]\n"
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
    /* KEYS[1]: the user's hash; ARGV: fence TTL, token, field ('' every item: an
     * erasure), flags ('' unknown), TTL. */
    [SC_UEND] = "local k = KEYS[1]\n"
                "local left = redis.call('HINCRBY', k, 'inflight', -1)\n"
                "if left <= 0 then redis.call('HDEL', k, 'until') end\n"
                "if left < 0 then\n"
                "  local g = tonumber(redis.call('HGET', k, 'gen') or '0')\n"
                "  redis.call('DEL', k)\n"
                "  redis.call('HSET', k, 'gen', g + 1, 'inflight', 0)\n"
                "  redis.call('PEXPIRE', k, ARGV[1])\n"
                "elseif ARGV[3] == '' then\n"
                "  for _, f in ipairs(redis.call('HKEYS', k)) do\n"
                "    if f ~= 'gen' and f ~= 'inflight' and f ~= 'until' then\n"
                "      redis.call('HDEL', k, f)\n"
                "    end\n"
                "  end\n"
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

/* A key to delete once Redis answers: an item's counters, or (uid != 0) a user's flags. */
struct stale {
    int64_t uid;
    struct item item;
};

/*
 * Shared by all threads. The pool hands out links (pool_size_for(--workers),
 * a wait as long as a call's timeout); repair_lock guards repair, nrepair,
 * repair_overflow and the recent ring. Keys are only ever added to the
 * list under the lock (repair_add_locked); a repair takes the whole list
 * under the lock, sends its DELs without it, and on failure adds what it
 * took back to whatever other threads added meanwhile: never replaces it.
 */
struct redis_cache {
    struct cache base;
    struct link_config cfg;
    char sha[SCRIPT_COUNT][41]; /* the scripts' SHA1s, for EVALSHA */
    int64_t ttl_ms;
    struct pool pool;
    struct link *links;
    size_t nlinks;
    pthread_mutex_t repair_lock;
    struct stale *repair;
    size_t nrepair;
    bool repair_overflow;
    struct stale recent[RECENT_MAX]; /* the keys of the last writes that ended, a ring */
    size_t nrecent;                  /* how many were ever added */
    atomic_bool down; /* a connection failed and none has reconnected since: for the log */
    atomic_bool auth_refused; /* the last connect failed on the credentials: for the log */
    bool opened;              /* set by cache_redis_open before any other thread runs */
    struct metric *m_auth_failed;
};

static void key_of(struct strbuf *sb, const struct item *it)
{
    strbuf_reset(sb);
    strbuf_addf(sb, ITEM_KEY, it->biz, (long long)it->id);
}

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

/* Starts a call of script `which`: by its SHA1, or (eval) with its text, which Redis keeps. */
static void cmd_script(struct link_cmd *m, const struct redis_cache *rc, enum script which,
                       bool eval)
{
    if (eval) {
        link_cmd_arg(m, "EVAL");
        link_cmd_arg(m, "%s", scripts[which]);
    } else {
        link_cmd_arg(m, "EVALSHA");
        link_cmd_arg(m, "%s", rc->sha[which]);
    }
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

/* Puts the keys of the last RECENT_MAX writes on the repair list (see DESIGN, failover). */
static void repair_recent(struct redis_cache *rc)
{
    size_t n = rc->nrecent < RECENT_MAX ? rc->nrecent : RECENT_MAX;

    pthread_mutex_lock(&rc->repair_lock);
    for (size_t i = 0; i < n; i++)
        repair_add_locked(rc, &rc->recent[i]);
    pthread_mutex_unlock(&rc->repair_lock);
}

/* Logs each outage once, when it begins, however many links it breaks. */
static void link_drop(struct redis_cache *rc, struct link *l, const char *why)
{
    if (!atomic_exchange(&rc->down, true)) {
        log_warn("redis: %s; serving from the store until it is back", why);
        repair_recent(rc);
    }
    link_close(l);
    l->retry_at_us = clock_mono_us() + RETRY_AFTER_US;
}

/* Connects a link; a refusal of the credentials is counted and logged once. */
static int connect_link(struct redis_cache *rc, struct link *l, struct strbuf *why)
{
    bool refused;
    int err = link_open(&rc->cfg, l, why, &refused);

    if (err && refused) {
        metric_add(rc->m_auth_failed, 1);
        /* A state change, logged once however many links it refuses (at open: an error). */
        if (!atomic_exchange(&rc->auth_refused, true) && rc->opened)
            log_warn("redis: %s:%d refused the credentials: %s", rc->cfg.host, rc->cfg.port,
                     why->buf);
    } else if (!err) {
        atomic_store(&rc->auth_refused, false);
    }
    return err;
}

static int link_get(struct redis_cache *rc, struct link **out)
{
    struct link *l;
    void *taken;

    if (pool_get(&rc->pool, &taken)) { /* every link stuck in a call: a miss */
        *out = NULL;
        return TALLY_EUNAVAIL;
    }
    l = taken;
    if (!link_up(l) && clock_mono_us() >= l->retry_at_us) {
        struct strbuf why = STRBUF_INIT;

        if (connect_link(rc, l, &why)) {
            link_drop(rc, l, why.buf);
        } else if (atomic_load(&rc->down) && atomic_exchange(&rc->down, false)) {
            log_info("redis: %s:%d answers again", rc->cfg.host, rc->cfg.port);
            repair_recent(rc); /* writes that ended while the outage was being noticed */
        }
        strbuf_release(&why);
    }
    *out = l;
    return link_up(l) ? 0 : TALLY_EUNAVAIL;
}

static void link_put(struct redis_cache *rc, struct link *l)
{
    if (l)
        pool_put(&rc->pool, l);
}

/*
 * Sends n <= PIPELINE_MAX commands built by `add` as one pipeline and
 * hands each reply to `take`. A command that did not run, because its
 * script is unknown to that node (NOSCRIPT: a restart, SCRIPT FLUSH, a
 * replica promoted) or its slot moved (a cluster resharding or failing
 * over), is sent once more on its own, scripts by their text.
 */
typedef void add_fn(struct redis_cache *rc, size_t i, void *arg, struct link_cmd *m, bool eval);
typedef void take_fn(size_t i, const valkeyReply *r, void *arg);

static int pipeline(struct redis_cache *rc, struct link *l, size_t n, add_fn *add, take_fn *take,
                    void *arg)
{
    bool again[PIPELINE_MAX];
    struct strbuf buf = STRBUF_INIT;
    struct link_cmd m;
    int err = 0;

    TALLY_ASSERT(n <= PIPELINE_MAX);
    for (size_t i = 0; i < n && err == 0; i++) {
        link_cmd_start(&m, &buf);
        add(rc, i, arg, &m, false);
        err = link_append(l, &m);
    }
    for (size_t i = 0; i < n && err == 0; i++) {
        valkeyReply *r;

        if ((err = link_reply(l, &r)))
            break;
        again[i] = link_reply_is(r, "NOSCRIPT") || link_redirected(r);
        if (!again[i] && take)
            take(i, r, arg);
        freeReplyObject(r);
    }
    if (err == 0)
        link_settle(l);
    for (size_t i = 0; i < n && err == 0; i++) {
        valkeyReply *r;

        if (!again[i])
            continue;
        link_cmd_start(&m, &buf);
        add(rc, i, arg, &m, true);
        if (!(r = link_call(l, &m))) {
            err = TALLY_EUNAVAIL;
            break;
        }
        if (take)
            take(i, r, arg);
        freeReplyObject(r);
    }
    if (err)
        link_drop(rc, l, link_error(l));
    strbuf_release(&buf);
    return err;
}

struct del_args {
    const struct stale *keys;
    struct strbuf key;
};

static void add_del(struct redis_cache *rc, size_t i, void *arg, struct link_cmd *m, bool eval)
{
    struct del_args *a = arg;

    (void)rc, (void)eval;
    stale_key(&a->key, &a->keys[i]);
    link_cmd_arg(m, "DEL");
    link_cmd_arg(m, "%s", a->key.buf);
}

/* Deletes the keys, PIPELINE_MAX per pipeline. */
static int del_all(struct redis_cache *rc, struct link *l, const struct stale *keys, size_t n)
{
    struct del_args a = {.key = STRBUF_INIT};
    int err = 0;

    for (size_t done = 0; done < n && err == 0; done += PIPELINE_MAX) {
        a.keys = keys + done;
        err = pipeline(rc, l, n - done < PIPELINE_MAX ? n - done : PIPELINE_MAX, add_del, NULL,
                       &a);
    }
    strbuf_release(&a.key);
    return err;
}

/* Deletes the keys of writes whose end() failed, now that Redis answers. */
static int repair(struct redis_cache *rc, struct link *l)
{
    struct stale *keys;
    size_t n;
    bool overflow;
    int err;

    pthread_mutex_lock(&rc->repair_lock);
    keys = rc->repair;
    n = rc->nrepair;
    overflow = rc->repair_overflow;
    rc->repair = NULL;
    rc->nrepair = 0;
    rc->repair_overflow = false;
    pthread_mutex_unlock(&rc->repair_lock);
    if (!keys)
        return 0;
    err = del_all(rc, l, keys, n);
    if (err == 0) {
        log_info("redis: dropped %zu entries that may miss writes%s", n,
                 overflow ? " (more writes were missed than tracked: those expire by TTL)" : "");
    } else { /* keep them for the next try, beside the keys added meanwhile */
        pthread_mutex_lock(&rc->repair_lock);
        for (size_t i = 0; i < n; i++)
            repair_add_locked(rc, &keys[i]);
        rc->repair_overflow |= overflow;
        pthread_mutex_unlock(&rc->repair_lock);
    }
    free(keys);
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

/* The keys of a write whose end() Redis acknowledged, into the recent ring. */
static void remember_recent(struct redis_cache *rc, const struct item *items, size_t n,
                            const struct flag_write *user)
{
    pthread_mutex_lock(&rc->repair_lock);
    for (size_t i = 0; i < n; i++)
        rc->recent[rc->nrecent++ % RECENT_MAX] = (struct stale){.item = items[i]};
    if (user)
        rc->recent[rc->nrecent++ % RECENT_MAX] = (struct stale){.uid = user->uid};
    pthread_mutex_unlock(&rc->repair_lock);
}

/* Checks out a link that is up and repaired. */
static int ready(struct redis_cache *rc, struct link **l)
{
    int err = link_get(rc, l);

    if (err == 0)
        err = repair(rc, *l);
    if (err)
        link_put(rc, *l);
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
static void cmd_field(struct link_cmd *m, const struct item *it)
{
    link_cmd_arg(m, "%s:%lld", it->biz, (long long)it->id);
}

static void add_get(struct redis_cache *rc, size_t i, void *arg, struct link_cmd *m, bool eval)
{
    static const char *const fields[] = {"read_cnt", "like_cnt", "collect_cnt", "gen",
                                         "inflight", "until"};
    struct get_args *a = arg;

    (void)rc, (void)eval;
    link_cmd_arg(m, "HMGET");
    if (i < a->k) {
        link_cmd_arg(m, ITEM_KEY, a->items[i].biz, (long long)a->items[i].id);
        for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
            link_cmd_arg(m, "%s", fields[f]);
        return;
    }
    link_cmd_arg(m, USER_KEY, (long long)a->user->uid);
    link_cmd_arg(m, "gen");
    link_cmd_arg(m, "inflight");
    link_cmd_arg(m, "until");
    for (size_t j = 0; j < a->n; j++)
        cmd_field(m, &a->all_items[j]);
}

static bool reply_i64(const valkeyReply *r, int64_t *v)
{
    char *end;

    if (!r || r->type != VALKEY_REPLY_STRING)
        return false;
    *v = strtoll(r->str, &end, 10);
    return end != r->str && *end == '\0';
}

/* Whether a hash's fence (inflight, until) has outlived any write that could end it. */
static bool orphaned(const valkeyReply *inflight, const valkeyReply *until, int64_t now_ms)
{
    int64_t n, at;

    return reply_i64(inflight, &n) && n > 0 && reply_i64(until, &at) && at < now_ms;
}

/* A get's reply for the user: gen, inflight, until, then a field per item. */
static void take_user_flags(const valkeyReply *r, struct get_args *a)
{
    int64_t gen = 0, inflight = 0, v;

    if (r->type != VALKEY_REPLY_ARRAY || r->elements != a->n + 3)
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

static void take_get(size_t i, const valkeyReply *r, void *arg)
{
    struct get_args *a = arg;
    int64_t inflight = 0;

    if (i == a->k) {
        take_user_flags(r, a);
        return;
    }
    if (r->type != VALKEY_REPLY_ARRAY || r->elements != 6)
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
    struct link *l;
    int err;

    TALLY_ASSERT(!user || n <= LINK_ARGS_MAX - 5);
    cache_all_missed(n, hit, token, user);
    if ((err = ready(rc, &l)))
        return err;
    for (size_t done = 0; done < n && err == 0; done += a.k) {
        bool with_user = user && done == 0; /* in the first pipeline */

        a.k = n - done < PIPELINE_MAX - 1 ? n - done : PIPELINE_MAX - 1;
        a.items = items + done;
        a.out = out + done;
        a.hit = hit + done;
        a.token = token + done;
        err = pipeline(rc, l, a.k + with_user, add_get, take_get, &a);
    }
    link_put(rc, l);
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

/* ------------------------------------------------------------ fill */

struct fill_args {
    const struct item *items;
    const struct counts *counts;
    const cache_token *token;
    size_t *index; /* which items to send */
};

static void add_fill(struct redis_cache *rc, size_t i, void *arg, struct link_cmd *m, bool eval)
{
    struct fill_args *a = arg;
    size_t k = a->index[i];

    cmd_script(m, rc, SC_FILL, eval);
    link_cmd_arg(m, "1");
    link_cmd_arg(m, ITEM_KEY, a->items[k].biz, (long long)a->items[k].id);
    link_cmd_arg(m, "%lld", (long long)a->token[k]);
    link_cmd_arg(m, "%lld", (long long)a->counts[k].read_cnt);
    link_cmd_arg(m, "%lld", (long long)a->counts[k].like_cnt);
    link_cmd_arg(m, "%lld", (long long)a->counts[k].collect_cnt);
    link_cmd_arg(m, "%lld", (long long)rc->ttl_ms);
}

static int redis_fill(struct cache *base, const struct item *items, size_t n,
                      const struct counts *counts, const cache_token *token)
{
    struct redis_cache *rc = (struct redis_cache *)base;
    size_t index[PIPELINE_MAX], i = 0, k;
    struct fill_args a = {.items = items, .counts = counts, .token = token, .index = index};
    struct link *l;
    int err;

    while (i < n && token[i] == CACHE_NO_FILL)
        i++;
    if (i == n)
        return 0;
    if ((err = ready(rc, &l)))
        return err;
    while (i < n && err == 0) { /* up to PIPELINE_MAX fills per pipeline */
        for (k = 0; i < n && k < PIPELINE_MAX; i++)
            if (token[i] != CACHE_NO_FILL)
                index[k++] = i;
        if (k > 0)
            err = pipeline(rc, l, k, add_fill, NULL, &a);
    }
    link_put(rc, l);
    return err;
}

struct fill_flags_args {
    int64_t uid;
    const struct item *items;
    size_t n;
    const uint8_t *flags;
    cache_token token;
};

static void add_fill_flags(struct redis_cache *rc, size_t i, void *arg, struct link_cmd *m,
                           bool eval)
{
    struct fill_flags_args *a = arg;

    (void)i;
    cmd_script(m, rc, SC_UFILL, eval);
    link_cmd_arg(m, "1");
    link_cmd_arg(m, USER_KEY, (long long)a->uid);
    link_cmd_arg(m, "%lld", (long long)a->token);
    link_cmd_arg(m, "%lld", (long long)rc->ttl_ms);
    for (size_t j = 0; j < a->n; j++) {
        cmd_field(m, &a->items[j]);
        link_cmd_arg(m, "%u", (unsigned)a->flags[j]);
    }
}

static int redis_fill_flags(struct cache *base, int64_t uid, const struct item *items, size_t n,
                            const uint8_t *flags, cache_token token)
{
    struct redis_cache *rc = (struct redis_cache *)base;
    struct fill_flags_args a = {uid, items, n, flags, token};
    struct link *l;
    int err;

    TALLY_ASSERT(n <= (LINK_ARGS_MAX - 6) / 2);
    if (n == 0 || token == CACHE_NO_FILL)
        return 0;
    if ((err = ready(rc, &l)))
        return err;
    err = pipeline(rc, l, 1, add_fill_flags, NULL, &a);
    link_put(rc, l);
    return err;
}

/* ------------------------------------------------------------ begin, end */

/* A script call of begin or end: items order[first .. first + count), all of one slot. */
struct chunk {
    size_t first, count;
};

struct write_args {
    const struct item *items;
    const struct counts *counts;   /* end: the deltas (NULL: none) */
    size_t *order;                 /* the items, ordered so that each chunk's are together */
    struct chunk *chunks;
    size_t first_call;             /* the pipeline's first chunk */
    size_t calls;                  /* chunk calls in this pipeline; then the user's */
    struct flag_write *user;       /* NULL, or the user's write */
    enum script items_script, user_script;
};

static int by_slot(const void *x, const void *y, void *slots)
{
    const unsigned *s = slots;
    unsigned a = s[*(const size_t *)x], b = s[*(const size_t *)y];

    return (a > b) - (a < b);
}

/*
 * Orders items into chunks of at most WRITE_CHUNK keys that one script call
 * can take: consecutive items on one node; on a cluster, items of one slot
 * (a script's keys must share one, and a random batch rarely has two in
 * one: most chunks there are single keys). Returns the number of chunks.
 */
static size_t plan_chunks(const struct redis_cache *rc, const struct item *items, size_t n,
                          size_t *order, struct chunk *chunks)
{
    unsigned *slots = NULL;
    size_t nchunks = 0;

    for (size_t i = 0; i < n; i++)
        order[i] = i;
    if (rc->cfg.cluster && n > 1) {
        struct strbuf key = STRBUF_INIT;

        slots = xmalloc(n * sizeof(*slots));
        for (size_t i = 0; i < n; i++) {
            key_of(&key, &items[i]);
            slots[i] = link_slot(key.buf);
        }
        strbuf_release(&key);
        qsort_r(order, n, sizeof(*order), by_slot, slots);
    }
    for (size_t i = 0; i < n; i++) {
        struct chunk *last = nchunks ? &chunks[nchunks - 1] : NULL;
        bool joins = last && last->count < WRITE_CHUNK &&
                     (!slots || slots[order[last->first]] == slots[order[i]]);

        if (joins)
            last->count++;
        else
            chunks[nchunks++] = (struct chunk){i, 1};
    }
    free(slots);
    return nchunks;
}

/* Appends one begin or end call over a chunk: a chunk of keys per call keeps a batch of a
 * thousand reads to a handful of calls on one node. */
static void add_write_chunk(struct redis_cache *rc, size_t c, struct write_args *a,
                            struct link_cmd *m, bool eval)
{
    static const struct counts zero = {0, 0, 0};
    const struct chunk *ch = &a->chunks[c];
    enum script which = a->items_script;

    cmd_script(m, rc, which, eval);
    link_cmd_arg(m, "%zu", ch->count);
    for (size_t k = ch->first; k < ch->first + ch->count; k++)
        link_cmd_arg(m, ITEM_KEY, a->items[a->order[k]].biz, (long long)a->items[a->order[k]].id);
    link_cmd_arg(m, "%d", FENCE_MS);
    if (which == SC_BEGIN)
        link_cmd_arg(m, "%lld", (long long)(clock_now_ms() + STUCK_MS));
    for (size_t k = ch->first; which == SC_END && k < ch->first + ch->count; k++) {
        const struct counts *d;

        if (a->counts == CACHE_UNKNOWN) {
            link_cmd_arg(m, "x");
            link_cmd_arg(m, "0");
            link_cmd_arg(m, "0");
            continue;
        }
        d = a->counts ? &a->counts[a->order[k]] : &zero;
        link_cmd_arg(m, "%lld", (long long)d->read_cnt);
        link_cmd_arg(m, "%lld", (long long)d->like_cnt);
        link_cmd_arg(m, "%lld", (long long)d->collect_cnt);
    }
}

/* Appends the user's ubegin or uend. */
static void add_user_write(struct redis_cache *rc, struct write_args *a, struct link_cmd *m,
                           bool eval)
{
    const struct flag_write *u = a->user;

    cmd_script(m, rc, a->user_script, eval);
    link_cmd_arg(m, "1");
    link_cmd_arg(m, USER_KEY, (long long)u->uid);
    link_cmd_arg(m, "%d", FENCE_MS);
    if (a->user_script == SC_UBEGIN) {
        link_cmd_arg(m, "%lld", (long long)(clock_now_ms() + STUCK_MS));
        return;
    }
    link_cmd_arg(m, "%lld", (long long)u->token);
    if (u->item)
        cmd_field(m, u->item);
    else
        link_cmd_arg(m, "%s", ""); /* every item of the user */
    if (u->committed)
        link_cmd_arg(m, "%u", (unsigned)u->flags);
    else
        link_cmd_arg(m, "%s", "");
    link_cmd_arg(m, "%lld", (long long)rc->ttl_ms);
}

static void add_write(struct redis_cache *rc, size_t i, void *arg, struct link_cmd *m, bool eval)
{
    struct write_args *a = arg;

    if (i < a->calls)
        add_write_chunk(rc, a->first_call + i, a, m, eval);
    else
        add_user_write(rc, a, m, eval);
}

/* The user's ubegin answers the write's token. */
static void take_begin(size_t i, const valkeyReply *r, void *arg)
{
    struct write_args *a = arg;

    if (i == a->calls && r->type == VALKEY_REPLY_INTEGER && r->integer > 0)
        a->user->token = r->integer;
}

/*
 * Runs begin or end over n items, a chunk per script call, and the user's
 * part (if any) in the first pipeline.
 */
static int write_all(struct redis_cache *rc, bool begin, const struct item *items, size_t n,
                     const struct counts *delta, struct flag_write *user)
{
    /* A like or a small batch plans on the stack; a batch of reads on the heap. */
    size_t order_small[16];
    struct chunk chunks_small[16];
    bool small = n <= 16;
    struct write_args a = {
        .items = items, .counts = delta, .user = user,
        .items_script = begin ? SC_BEGIN : SC_END, .user_script = begin ? SC_UBEGIN : SC_UEND,
        .order = small ? order_small : xmalloc(n * sizeof(*a.order)),
        .chunks = small ? chunks_small : xmalloc(n * sizeof(*a.chunks))};
    size_t calls = plan_chunks(rc, items, n, a.order, a.chunks);
    bool user_left = user != NULL;
    struct link *l = NULL;
    int err = 0;

    if ((n > 0 || user) && (err = ready(rc, &l)) == 0) {
        for (size_t done = 0; (done < calls || user_left) && err == 0; done += a.calls) {
            bool with_user = user_left;

            user_left = false;
            a.calls = calls - done < PIPELINE_MAX - 1 ? calls - done : PIPELINE_MAX - 1;
            a.first_call = done;
            err = pipeline(rc, l, a.calls + with_user, add_write,
                           with_user && begin ? take_begin : NULL, &a);
        }
        link_put(rc, l);
    }
    if (!small) {
        free(a.order);
        free(a.chunks);
    }
    return err;
}

static int redis_begin(struct cache *base, const struct item *items, size_t n,
                       struct flag_write *user)
{
    struct redis_cache *rc = (struct redis_cache *)base;
    int err;

    if (user)
        user->token = CACHE_NO_FILL; /* unless Redis answers */
    err = write_all(rc, true, items, n, NULL, user);
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
    int err = write_all(rc, false, items, n, delta, user ? &u : NULL);

    if (err)
        remember_for_repair(rc, items, n, user);
    else
        remember_recent(rc, items, n, user);
    return err;
}

/* ------------------------------------------------------------ take */

struct take_args {
    const char *key;
    int64_t n, period_ms, burst, now_ms;
    int64_t retry_ms; /* -1 until Redis answered */
};

static void add_take(struct redis_cache *rc, size_t i, void *arg, struct link_cmd *m, bool eval)
{
    struct take_args *a = arg;

    (void)i;
    cmd_script(m, rc, SC_TAKE, eval);
    link_cmd_arg(m, "1");
    link_cmd_arg(m, "%s", a->key);
    link_cmd_arg(m, "%lld", (long long)a->now_ms);
    link_cmd_arg(m, "%lld", (long long)a->n);
    link_cmd_arg(m, "%lld", (long long)a->period_ms);
    link_cmd_arg(m, "%lld", (long long)a->burst);
}

static void take_take(size_t i, const valkeyReply *r, void *arg)
{
    struct take_args *a = arg;

    (void)i;
    if (r->type == VALKEY_REPLY_INTEGER && r->integer >= 0)
        a->retry_ms = r->integer;
}

static int redis_take(struct cache *base, const char *key, int64_t n, int64_t period_ms,
                      int64_t burst, int64_t now_ms, int64_t *retry_ms)
{
    struct redis_cache *rc = (struct redis_cache *)base;
    struct take_args a = {key, n, period_ms, burst, now_ms, -1};
    struct link *l;
    int err;

    if ((err = ready(rc, &l)))
        return err;
    err = pipeline(rc, l, 1, add_take, take_take, &a);
    link_put(rc, l);
    if (err == 0 && a.retry_ms < 0) /* a script error: say so, the caller counts in memory */
        err = TALLY_EINTERNAL;
    *retry_ms = a.retry_ms;
    return err;
}

/* ------------------------------------------------------------ invalidate */

/* Unlike the other calls this one reports EUNAVAIL: its caller must know the keys stay. */
static int redis_invalidate(struct cache *base, const struct item *items, size_t n)
{
    struct redis_cache *rc = (struct redis_cache *)base;
    struct stale *keys;
    struct link *l;
    int err;

    if ((err = ready(rc, &l)))
        return err;
    keys = xcalloc(n ? n : 1, sizeof(*keys));
    for (size_t i = 0; i < n; i++)
        keys[i].item = items[i];
    err = del_all(rc, l, keys, n);
    free(keys);
    link_put(rc, l);
    return err;
}

/* ------------------------------------------------------------ ping */

static void add_ping(struct redis_cache *rc, size_t i, void *arg, struct link_cmd *m, bool eval)
{
    (void)rc, (void)i, (void)arg, (void)eval;
    /* A cluster routes a command by its key and PING has none: EXISTS of a key tally never
     * writes asks one master, as cheaply. */
    link_cmd_arg(m, "EXISTS");
    link_cmd_arg(m, "tally:ping");
}

static void take_ping(size_t i, const valkeyReply *r, void *arg)
{
    (void)i;
    *(bool *)arg = r->type == VALKEY_REPLY_INTEGER;
}

/*
 * Through ready(), as every call: a link that failed waits out its second, one that
 * reconnects logs the outage's end, and "ok" means the repair list is done too, so the
 * cache is serving again. An error reply (LOADING, NOAUTH, ...) is not an answer.
 */
static int redis_ping(struct cache *base)
{
    struct redis_cache *rc = (struct redis_cache *)base;
    struct link *l;
    bool answered = false;
    int err;

    if ((err = ready(rc, &l)))
        return err;
    err = pipeline(rc, l, 1, add_ping, take_ping, &answered);
    link_put(rc, l);
    return err ? err : answered ? 0 : TALLY_EUNAVAIL;
}

/* ------------------------------------------------------------ open and free */

static void redis_free(struct cache *base)
{
    struct redis_cache *rc = (struct redis_cache *)base;

    for (size_t i = 0; i < rc->nlinks; i++)
        link_close(&rc->links[i]);
    free(rc->links);
    pool_release(&rc->pool);
    pthread_mutex_destroy(&rc->repair_lock);
    free(rc->repair);
    link_config_release(&rc->cfg);
    free(rc);
}

/* The same calls under two names: what /v1/status shows as the cache's kind. */
#define REDIS_OPS(kind)                                                                          \
    {                                                                                            \
        .name = kind, .get = redis_get, .fill = redis_fill, .fill_flags = redis_fill_flags,     \
        .begin = redis_begin, .end = redis_end, .take = redis_take, .free = redis_free,          \
        .invalidate = redis_invalidate, .ping = redis_ping,                                      \
    }
static const struct cache_ops redis_ops = REDIS_OPS("redis");
static const struct cache_ops redis_cluster_ops = REDIS_OPS("redis-cluster");

static const char *const known_options[] = {"ttl", "timeout_ms", LINK_URL_OPTIONS, NULL};

/* The rules beyond url_parse's (redis.h). */
int cache_redis_check(const struct url *u, char **why)
{
    long long v;

    if (url_check_options(u, known_options, why) || link_url_check(u, why))
        return TALLY_EINVAL;
    if (url_option_int(u, "ttl", 1, 86400 * 365, 900, &v))
        *why = xstrdup("ttl=SECONDS takes 1..31536000");
    else if (url_option_int(u, "timeout_ms", 1, 60000, 100, &v))
        *why = xstrdup("timeout_ms=MS takes 1..60000");
    return *why ? TALLY_EINVAL : 0;
}

/* The scripts' SHA1s, as Redis names them for EVALSHA. */
static void hash_scripts(struct redis_cache *rc)
{
    for (int i = 0; i < SCRIPT_COUNT; i++) {
        unsigned char md[SHA_DIGEST_LENGTH];

        SHA1((const unsigned char *)scripts[i], strlen(scripts[i]), md);
        for (int b = 0; b < SHA_DIGEST_LENGTH; b++)
            snprintf(rc->sha[i] + 2 * b, 3, "%02x", md[b]);
    }
}

int cache_redis_open(const struct url *u, int workers, struct cache **out, char **err)
{
    struct redis_cache *rc;
    long long ttl_s, timeout_ms;
    struct strbuf why = STRBUF_INIT;
    char *bad = NULL;
    struct link *l;

    url_option_int(u, "ttl", 1, 86400 * 365, 900, &ttl_s);
    url_option_int(u, "timeout_ms", 1, 60000, 100, &timeout_ms);
    rc = xcalloc(1, sizeof(*rc));
    if (link_config_init(&rc->cfg, u, timeout_ms, &bad)) {
        *err = xstrfmt("cannot use --cache: %s", bad);
        free(bad);
        free(rc);
        return TALLY_EINVAL;
    }
    rc->base.ops = rc->cfg.cluster ? &redis_cluster_ops : &redis_ops;
    rc->ttl_ms = ttl_s * 1000;
    hash_scripts(rc);
    rc->m_auth_failed = metrics_counter("tally_redis_auth_failures_total",
                                        "Connections Redis refused to authenticate.", "");
    pthread_mutex_init(&rc->repair_lock, NULL);
    /* Waiting for a link is bounded like a call: as long as its timeout. */
    rc->nlinks = pool_size_for(workers);
    rc->links = xcalloc(rc->nlinks, sizeof(*rc->links));
    pool_init(&rc->pool, "redis", rc->nlinks, (int)timeout_ms);
    for (size_t i = rc->nlinks; i > 0; i--)
        pool_put(&rc->pool, &rc->links[i - 1]);
    /*
     * A cache is optional: tallyd starts even if Redis is down, and uses it once it is up.
     * Credentials Redis refuses are a configuration error, though: refuse to start.
     */
    l = &rc->links[0];
    if (connect_link(rc, l, &why)) {
        if (atomic_load(&rc->auth_refused)) {
            *err = xstrfmt("redis at %s:%d refused the credentials of --cache (%s)", rc->cfg.host,
                           rc->cfg.port, why.buf);
            strbuf_release(&why);
            redis_free(&rc->base);
            return TALLY_EINVAL;
        }
        log_warn("redis: %s:%d does not answer yet (%s); serving from the store", rc->cfg.host,
                 rc->cfg.port, why.buf);
        atomic_store(&rc->down, true); /* so that its coming back is logged */
        l->retry_at_us = clock_mono_us() + RETRY_AFTER_US;
    }
    strbuf_release(&why);
    rc->opened = true;
    *out = &rc->base;
    return 0;
}
