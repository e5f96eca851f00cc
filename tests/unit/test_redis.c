/*
 * test_redis.c - the Redis cache's fence against a real Redis, step by step.
 *
 * Each test plays one interleaving of a reader (get -> store read -> fill)
 * and a writer (begin -> store commit -> end) that a black-box test could
 * only hit by luck. Needs TALLY_TEST_REDIS (set by `make test`); skipped
 * without it.
 *
 * redis.c and redis_link.c are included (and so not linked: see the
 * Makefile), so that a test can reach the pool's retry clock and put a seam
 * between the module and libvalkey: every reply the module reads passes
 * through seam_get_reply, which can run another thread's step at that exact
 * point or break the connection under the module.
 */
#include "unit.h"

#include <signal.h>
#include <sys/socket.h>

#include "cache/redis_link.h"

static int seam_get_reply(valkeyContext *ctx, void **reply);
#define valkeyGetReply seam_get_reply
#include "cache/redis_link.c"
#undef valkeyGetReply
#include "cache/redis.c"

static const struct item it = { "race", 1 }, other = { "race", 2 };
enum { USER = 77 };

static void (*before_next_reply)(void *arg); /* one shot */
static void *before_next_reply_arg;
static int replies_to_break; /* the module's next N reply reads find the connection broken */

static int seam_get_reply(valkeyContext *ctx, void **reply)
{
    void (*run)(void *) = before_next_reply;
    bool broken = replies_to_break > 0;

    replies_to_break -= broken;
    before_next_reply = NULL;
    if (run)
        run(before_next_reply_arg);
    if (broken)
        shutdown(ctx->fd, SHUT_RDWR); /* before the pipelined commands go out: none runs */
    return valkeyGetReply(ctx, reply);
}

struct fixture {
    struct cache *c;
    valkeyContext *r;
};

static int setup(void **state)
{
    const char *url = getenv("TALLY_TEST_REDIS");
    struct fixture *f;
    struct url u;
    char *err = NULL;

    if (!url)
        return 0;
    f = calloc(1, sizeof(*f));
    assert_int_equal(url_parse_checked("--cache", url, cache_redis_check, &u, &err), 0);
    assert_int_equal(cache_redis_open(&u, CACHE_WORKERS_DEFAULT, &f->c, &err), 0);
    f->r = valkeyConnect(u.hosts[0].name, u.hosts[0].port);
    assert_true(f->r && !f->r->err);
    if (u.password) /* the fixture's own connection, authenticated like the cache's */
        freeReplyObject(u.user ? valkeyCommand(f->r, "AUTH %s %s", u.user, u.password)
                               : valkeyCommand(f->r, "AUTH %s", u.password));
    url_release(&u);
    freeReplyObject(valkeyCommand(f->r, "DEL interactive:race:1 interactive:race:2 user_flags:%d",
                                 USER));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    if (!f)
        return 0;
    cache_free(f->c);
    valkeyFree(f->r);
    free(f);
    return 0;
}

#define NEED_REDIS()                                                                              \
    do {                                                                                          \
        if (!*state)                                                                              \
            skip();                                                                               \
    } while (0)

/* Whether the cache holds the item, and its counts. */
static bool lookup(struct fixture *f, struct counts *out, cache_token *token)
{
    bool hit;

    assert_int_equal(cache_get(f->c, &it, 1, out, &hit, token, NULL), 0);
    return hit;
}

static void fill_then_write_increments(void **state)
{
    NEED_REDIS();
    struct fixture *f = *state;
    struct counts got, five = { 5, 0, 0 }, plus_one = { 1, 0, 0 };
    cache_token tok;

    assert_false(lookup(f, &got, &tok));
    assert_int_equal(cache_fill(f->c, &it, 1, &five, &tok), 0);
    assert_true(lookup(f, &got, &tok));
    assert_int_equal(got.read_cnt, 5);
    assert_int_equal(cache_begin(f->c, &it, 1, NULL), 0);
    assert_int_equal(cache_end(f->c, &it, 1, &plus_one, NULL), 0);
    assert_true(lookup(f, &got, &tok));
    assert_int_equal(got.read_cnt, 6);
}

/* Reader reads 5 from the store; a write commits 6 and ends; the old fill must not land. */
static void stale_fill_after_write_is_refused(void **state)
{
    NEED_REDIS();
    struct fixture *f = *state;
    struct counts got, stale = { 5, 0, 0 }, plus_one = { 1, 0, 0 };
    cache_token tok, tok2;

    assert_false(lookup(f, &got, &tok));
    assert_int_equal(cache_begin(f->c, &it, 1, NULL), 0);
    assert_int_equal(cache_end(f->c, &it, 1, &plus_one, NULL), 0); /* not cached: no increment */
    assert_int_equal(cache_fill(f->c, &it, 1, &stale, &tok), 0);
    assert_false(lookup(f, &got, &tok2)); /* refused: the next reader fills afresh */
    assert_int_not_equal(tok2, tok);
}

/* Reader reads 6 (the write's commit included) while the write is in flight: no fill,
 * or the write's increment would count it twice. */
static void fill_during_write_is_refused(void **state)
{
    NEED_REDIS();
    struct fixture *f = *state;
    struct counts got, fresh = { 6, 0, 0 }, plus_one = { 1, 0, 0 };
    cache_token tok;

    assert_int_equal(cache_begin(f->c, &it, 1, NULL), 0);
    assert_false(lookup(f, &got, &tok));
    assert_true(tok == CACHE_NO_FILL); /* the miss saw the write in flight */
    assert_int_equal(cache_fill(f->c, &it, 1, &fresh, &tok), 0);
    assert_int_equal(cache_end(f->c, &it, 1, &plus_one, NULL), 0);
    assert_false(lookup(f, &got, &tok));
    /* Once writes are done, a fill with a current token is taken. */
    assert_int_equal(cache_fill(f->c, &it, 1, &fresh, &tok), 0);
    assert_true(lookup(f, &got, &tok));
    assert_int_equal(got.read_cnt, 6);
}

/* A miss before the write began, a fill after it began: refused by the generation. */
static void fill_straddling_begin_is_refused(void **state)
{
    NEED_REDIS();
    struct fixture *f = *state;
    struct counts got, fresh = { 6, 0, 0 }, plus_one = { 1, 0, 0 };
    cache_token tok;

    assert_false(lookup(f, &got, &tok));
    assert_int_equal(cache_begin(f->c, &it, 1, NULL), 0);
    assert_int_equal(cache_fill(f->c, &it, 1, &fresh, &tok), 0);
    assert_int_equal(cache_end(f->c, &it, 1, &plus_one, NULL), 0);
    assert_false(lookup(f, &got, &tok));
}

/* The entry is evicted (DEL) while a write is in flight, taking the fence with it; a reader
 * misses, reads the write's commit (6) and fills. The write's end must not add its +1 on top. */
static void eviction_mid_write_never_counts_twice(void **state)
{
    NEED_REDIS();
    struct fixture *f = *state;
    struct counts got, fresh = { 6, 0, 0 }, plus_one = { 1, 0, 0 };
    cache_token tok;

    assert_int_equal(cache_begin(f->c, &it, 1, NULL), 0);
    freeReplyObject(valkeyCommand(f->r, "DEL interactive:race:1"));
    assert_false(lookup(f, &got, &tok));
    assert_int_equal(cache_fill(f->c, &it, 1, &fresh, &tok), 0);
    assert_int_equal(cache_end(f->c, &it, 1, &plus_one, NULL), 0);
    if (lookup(f, &got, &tok))
        assert_int_equal(got.read_cnt, 6); /* never 7 */
    /* The next miss fills afresh. */
    assert_false(lookup(f, &got, &tok));
    assert_int_equal(cache_fill(f->c, &it, 1, &fresh, &tok), 0);
    assert_true(lookup(f, &got, &tok));
    assert_int_equal(got.read_cnt, 6);
}

/* Evicted mid-write, and a reader that read the store before the commit (5) fills only after
 * the write ended: that stale fill must be refused. */
static void eviction_mid_write_refuses_a_stale_fill(void **state)
{
    NEED_REDIS();
    struct fixture *f = *state;
    struct counts got, stale = { 5, 0, 0 }, plus_one = { 1, 0, 0 };
    cache_token tok, tok2;

    assert_int_equal(cache_begin(f->c, &it, 1, NULL), 0);
    freeReplyObject(valkeyCommand(f->r, "DEL interactive:race:1"));
    assert_false(lookup(f, &got, &tok));
    assert_int_equal(cache_end(f->c, &it, 1, &plus_one, NULL), 0);
    assert_int_equal(cache_fill(f->c, &it, 1, &stale, &tok), 0);
    assert_false(lookup(f, &got, &tok2));
}

/* More items than one pipeline carries: get and fill send them in parts. */
static void batches_larger_than_a_pipeline(void **state)
{
    NEED_REDIS();
    struct fixture *f = *state;
    enum { N = 2 * PIPELINE_MAX + 3 };
    struct item *items = calloc(N, sizeof(*items));
    struct counts *got = calloc(N, sizeof(*got));
    cache_token *tok = calloc(N, sizeof(*tok));
    bool *hit = calloc(N, sizeof(*hit));

    for (int i = 0; i < N; i++) {
        snprintf(items[i].biz, sizeof(items[i].biz), "batch");
        items[i].id = i + 1;
        freeReplyObject(valkeyCommand(f->r, "DEL interactive:batch:%d", i + 1));
    }
    assert_int_equal(cache_get(f->c, items, N, got, hit, tok, NULL), 0);
    for (int i = 0; i < N; i++) {
        assert_false(hit[i]);
        got[i].read_cnt = i;
    }
    tok[N - 1] = CACHE_NO_FILL; /* the last one is not filled */
    assert_int_equal(cache_fill(f->c, items, N, got, tok), 0);
    memset(got, 0, N * sizeof(*got));
    assert_int_equal(cache_get(f->c, items, N, got, hit, tok, NULL), 0);
    for (int i = 0; i < N - 1; i++) {
        assert_true(hit[i]);
        assert_int_equal(got[i].read_cnt, i);
    }
    assert_false(hit[N - 1]);
    free(items);
    free(got);
    free(tok);
    free(hit);
}

/* Lets dropped connections reconnect now rather than after RETRY_AFTER_US. */
static void reconnect_now(struct fixture *f)
{
    struct redis_cache *rc = (struct redis_cache *)f->c;

    for (size_t i = 0; i < rc->nlinks; i++)
        rc->links[i].retry_at_us = 0;
}

/* Another thread: the end() of a write to `it` cannot reach Redis. */
static void end_fails(void *arg)
{
    struct fixture *f = arg;
    struct counts plus_one = { 1, 0, 0 };

    replies_to_break = 1;
    assert_int_equal(cache_end(f->c, &it, 1, &plus_one, NULL), TALLY_EUNAVAIL);
}

/*
 * A repair takes the list, and while its DELs are on the wire another
 * write's end() fails and puts its key on the list. The repair fails too.
 * The key must survive on the list: it is cached with a count that misses
 * that write, and only the repair removes it before its TTL.
 */
static void failed_repair_keeps_keys_added_meanwhile(void **state)
{
    NEED_REDIS();
    struct fixture *f = *state;
    struct counts got, five = { 5, 0, 0 };
    cache_token tok;
    bool hit;

    assert_false(lookup(f, &got, &tok));
    assert_int_equal(cache_fill(f->c, &it, 1, &five, &tok), 0);
    assert_int_equal(cache_begin(f->c, &it, 1, NULL), 0); /* the store then commits 6 */
    replies_to_break = 1;
    assert_int_equal(cache_begin(f->c, &other, 1, NULL), TALLY_EUNAVAIL); /* `other` awaits repair */
    reconnect_now(f);
    before_next_reply = end_fails; /* runs while the repair's DEL is on the wire, */
    before_next_reply_arg = f;
    replies_to_break = 1; /* then the repair's connection breaks */
    assert_int_equal(cache_get(f->c, &it, 1, &got, &hit, &tok, NULL), TALLY_EUNAVAIL);
    assert_int_equal(replies_to_break, 0);
    reconnect_now(f);
    if (lookup(f, &got, &tok)) /* the repair must have deleted the 5 that missed the write */
        fail_msg("a failed repair lost a key: read_cnt %lld served after a write to 6",
                 (long long)got.read_cnt);
}

/* ------------------------------------------------------------ users' flags */

/* Whether the cache holds USER's flags on item i (in *flags), and the fill token. */
static bool lookup_flags(struct fixture *f, const struct item *i, uint8_t *flags,
                         cache_token *token)
{
    struct counts counts;
    cache_token count_token;
    bool count_hit, hit = false;
    struct flag_lookup user = {.uid = USER, .flags = flags, .hit = &hit};

    assert_int_equal(cache_get(f->c, i, 1, &counts, &count_hit, &count_token, &user), 0);
    *token = user.token;
    return hit;
}

/* The end of a user's write whose transaction committed with flags. */
static int end_committed(struct fixture *f, struct flag_write *w, uint8_t flags)
{
    w->committed = true;
    w->flags = flags;
    return cache_end(f->c, w->item, 1, NULL, w);
}

/* A user's write: begin, the store commits flags, end. */
static void user_write(struct fixture *f, const struct item *i, uint8_t flags)
{
    struct flag_write w = {.uid = USER, .item = i};

    assert_int_equal(cache_begin(f->c, i, 1, &w), 0);
    assert_int_equal(end_committed(f, &w, flags), 0);
}

/* A miss fills; the writer's own write then lands in the cache: read-your-writes. */
static void flags_fill_then_follow_the_users_writes(void **state)
{
    NEED_REDIS();
    struct fixture *f = *state;
    uint8_t flags = 0xff, collected = FLAG_COLLECTED;
    cache_token tok;

    assert_false(lookup_flags(f, &it, &flags, &tok));
    assert_int_equal(cache_fill_flags(f->c, USER, &it, 1, &collected, tok), 0);
    assert_true(lookup_flags(f, &it, &flags, &tok));
    assert_int_equal(flags, FLAG_COLLECTED);
    user_write(f, &it, FLAG_LIKED | FLAG_COLLECTED);
    assert_true(lookup_flags(f, &it, &flags, &tok));
    assert_int_equal(flags, FLAG_LIKED | FLAG_COLLECTED);
    user_write(f, &it, FLAG_COLLECTED); /* the unlike */
    assert_true(lookup_flags(f, &it, &flags, &tok));
    assert_int_equal(flags, FLAG_COLLECTED);
}

/* A reader read "not liked" before the user's like committed and fills after its end: refused. */
static void flag_fill_straddling_a_write_is_refused(void **state)
{
    NEED_REDIS();
    struct fixture *f = *state;
    uint8_t flags, none = 0;
    cache_token tok, tok2;

    assert_false(lookup_flags(f, &it, &flags, &tok));
    user_write(f, &it, FLAG_LIKED);
    assert_int_equal(cache_fill_flags(f->c, USER, &it, 1, &none, tok), 0);
    assert_true(lookup_flags(f, &it, &flags, &tok2));
    assert_int_equal(flags, FLAG_LIKED);
}

/* While a write of the user is in flight, a miss gets no fill token. */
static void flag_fill_during_a_write_is_refused(void **state)
{
    NEED_REDIS();
    struct fixture *f = *state;
    struct flag_write w = {.uid = USER, .item = &it};
    uint8_t flags, none = 0;
    cache_token tok;

    assert_int_equal(cache_begin(f->c, &it, 1, &w), 0);
    assert_false(lookup_flags(f, &other, &flags, &tok));
    assert_true(tok == CACHE_NO_FILL);
    assert_int_equal(cache_fill_flags(f->c, USER, &other, 1, &none, tok), 0);
    assert_int_equal(end_committed(f, &w, FLAG_LIKED), 0);
    assert_false(lookup_flags(f, &other, &flags, &tok));
}

/* Two writes of the user overlap: their commits' order is unknown, so neither end may cache
 * its flags; the next reader fills from the store. */
static void overlapping_writes_leave_flags_to_the_store(void **state)
{
    NEED_REDIS();
    struct fixture *f = *state;
    struct flag_write w1 = {.uid = USER, .item = &it}, w2 = {.uid = USER, .item = &it};
    uint8_t flags;
    cache_token tok;

    assert_int_equal(cache_begin(f->c, &it, 1, &w1), 0);
    assert_int_equal(cache_begin(f->c, &it, 1, &w2), 0);
    assert_int_equal(end_committed(f, &w2, 0), 0);
    assert_false(lookup_flags(f, &it, &flags, &tok));
    assert_int_equal(end_committed(f, &w1, FLAG_LIKED), 0);
    assert_false(lookup_flags(f, &it, &flags, &tok));
    /* Ended in the order they began: the store may still have committed w2 before w1
     * (w1's thread ran late between its commit and its end), so w2 caches nothing. */
    assert_int_equal(cache_begin(f->c, &it, 1, &w1), 0);
    assert_int_equal(cache_begin(f->c, &it, 1, &w2), 0);
    assert_int_equal(end_committed(f, &w1, 0), 0);
    assert_int_equal(end_committed(f, &w2, FLAG_LIKED), 0);
    assert_false(lookup_flags(f, &it, &flags, &tok));
    /* A write that failed caches nothing either. */
    assert_int_equal(cache_begin(f->c, &it, 1, &w1), 0);
    w1.committed = false;
    assert_int_equal(cache_end(f->c, &it, 1, NULL, &w1), 0);
    assert_false(lookup_flags(f, &it, &flags, &tok));
}

/* The user's hash is evicted mid-write and a reader fills what it read before the commit:
 * the write's end must drop that fill. */
static void eviction_mid_write_drops_the_users_fills(void **state)
{
    NEED_REDIS();
    struct fixture *f = *state;
    struct flag_write w = {.uid = USER, .item = &it};
    uint8_t flags, none = 0;
    cache_token tok;

    assert_int_equal(cache_begin(f->c, &it, 1, &w), 0);
    freeReplyObject(valkeyCommand(f->r, "DEL user_flags:%d", USER));
    assert_false(lookup_flags(f, &it, &flags, &tok));
    assert_int_equal(cache_fill_flags(f->c, USER, &it, 1, &none, tok), 0);
    assert_int_equal(end_committed(f, &w, FLAG_LIKED), 0);
    if (lookup_flags(f, &it, &flags, &tok))
        assert_int_equal(flags, FLAG_LIKED); /* never the stale "not liked" */
}

/* A user's write whose end cannot reach Redis: the first call that reaches it again drops the
 * user's cached flags. */
static void failed_end_drops_the_users_flags(void **state)
{
    NEED_REDIS();
    struct fixture *f = *state;
    struct flag_write w = {.uid = USER, .item = &it};
    uint8_t flags, none = 0;
    cache_token tok;

    assert_false(lookup_flags(f, &it, &flags, &tok));
    assert_int_equal(cache_fill_flags(f->c, USER, &it, 1, &none, tok), 0);
    assert_true(lookup_flags(f, &it, &flags, &tok));
    assert_int_equal(cache_begin(f->c, &it, 1, &w), 0);
    replies_to_break = 1;
    assert_int_equal(end_committed(f, &w, FLAG_LIKED), TALLY_EUNAVAIL);
    reconnect_now(f);
    assert_false(lookup_flags(f, &it, &flags, &tok)); /* not the "not liked" of before */
}

/*
 * Failover: Redis acknowledged a write's end, then its master died before the replica had
 * it, and the promoted replica holds the counters of before (set here by hand). The outage
 * that the failover is to tallyd must drop the keys of the writes that ended last, so the
 * count that misses the write is never served.
 */
static void a_failover_drops_the_last_writes_keys(void **state)
{
    NEED_REDIS();
    struct fixture *f = *state;
    struct counts got;
    cache_token tok;

    fill_then_write_increments(state); /* 5 filled, a write ended: 6 cached */
    freeReplyObject(valkeyCommand(f->r, "HSET interactive:race:1 read_cnt 5")); /* the replica */
    replies_to_break = 1; /* the old master is gone: the link breaks */
    assert_int_equal(cache_get(f->c, &other, 1, &got, &(bool){false}, &tok, NULL),
                     TALLY_EUNAVAIL);
    reconnect_now(f);
    if (lookup(f, &got, &tok))
        fail_msg("read_cnt %lld served after a failover lost the write to 6",
                 (long long)got.read_cnt);
}

/* A write whose effect is unknown (CACHE_UNKNOWN) drops the counters, and a fill read
 * before it (its token) is refused: the next reader fills from the store. */
static void an_unknown_outcome_drops_the_counters(void **state)
{
    NEED_REDIS();
    struct fixture *f = *state;
    struct counts got, five = { 5, 0, 0 }, six = { 6, 0, 0 };
    cache_token tok, before;

    assert_false(lookup(f, &got, &before));
    assert_int_equal(cache_fill(f->c, &it, 1, &five, &before), 0);
    assert_true(lookup(f, &got, &tok));
    assert_int_equal(cache_begin(f->c, &it, 1, NULL), 0);
    assert_int_equal(cache_end(f->c, &it, 1, CACHE_UNKNOWN, NULL), 0);
    assert_false(lookup(f, &got, &tok)); /* not the 5 of before */
    assert_int_equal(cache_fill(f->c, &it, 1, &five, &before), 0); /* a stale token */
    assert_false(lookup(f, &got, &tok));
    assert_int_equal(cache_fill(f->c, &it, 1, &six, &tok), 0);
    assert_true(lookup(f, &got, &tok));
    assert_int_equal(got.read_cnt, 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(fill_then_write_increments, setup, teardown),
        cmocka_unit_test_setup_teardown(stale_fill_after_write_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(fill_during_write_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(fill_straddling_begin_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(eviction_mid_write_never_counts_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(eviction_mid_write_refuses_a_stale_fill, setup, teardown),
        cmocka_unit_test_setup_teardown(batches_larger_than_a_pipeline, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_repair_keeps_keys_added_meanwhile, setup, teardown),
        cmocka_unit_test_setup_teardown(flags_fill_then_follow_the_users_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(flag_fill_straddling_a_write_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(flag_fill_during_a_write_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(overlapping_writes_leave_flags_to_the_store, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(eviction_mid_write_drops_the_users_fills, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_end_drops_the_users_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(a_failover_drops_the_last_writes_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(an_unknown_outcome_drops_the_counters, setup, teardown),
    };

    signal(SIGPIPE, SIG_IGN); /* as tallyd does: a broken connection is an error, not a signal */
    return cmocka_run_group_tests_name("cache_redis", tests, NULL, NULL);
}
