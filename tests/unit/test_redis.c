/*
 * test_redis.c - the Redis cache's fence against a real Redis, step by step.
 *
 * Each test plays one interleaving of a reader (get -> store read -> fill)
 * and a writer (begin -> store commit -> end) that a black-box test could
 * only hit by luck. Needs TALLY_TEST_REDIS (set by `make test`); skipped
 * without it.
 */
#include "unit.h"

#include <hiredis/hiredis.h>

#include "cache/cache.h"

static const struct item it = { "race", 1 };

struct fixture {
    struct cache *c;
    redisContext *r;
};

static int setup(void **state)
{
    const char *url = getenv("TALLY_TEST_REDIS");
    struct fixture *f;
    char *err = NULL;
    int port;

    if (!url)
        return 0;
    f = calloc(1, sizeof(*f));
    assert_int_equal(cache_open(url, &f->c, &err), 0);
    port = (int)strtol(strrchr(url, ':') + 1, NULL, 10);
    f->r = redisConnect("127.0.0.1", port);
    assert_true(f->r && !f->r->err);
    freeReplyObject(redisCommand(f->r, "DEL interactive:race:1"));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    if (!f)
        return 0;
    cache_free(f->c);
    redisFree(f->r);
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

    assert_int_equal(cache_get(f->c, &it, 1, out, &hit, token), 0);
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
    assert_int_equal(cache_begin(f->c, &it, 1), 0);
    assert_int_equal(cache_end(f->c, &it, 1, &plus_one), 0);
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
    assert_int_equal(cache_begin(f->c, &it, 1), 0);
    assert_int_equal(cache_end(f->c, &it, 1, &plus_one), 0); /* not cached: no increment */
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

    assert_int_equal(cache_begin(f->c, &it, 1), 0);
    assert_false(lookup(f, &got, &tok));
    assert_true(tok == CACHE_NO_FILL); /* the miss saw the write in flight */
    assert_int_equal(cache_fill(f->c, &it, 1, &fresh, &tok), 0);
    assert_int_equal(cache_end(f->c, &it, 1, &plus_one), 0);
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
    assert_int_equal(cache_begin(f->c, &it, 1), 0);
    assert_int_equal(cache_fill(f->c, &it, 1, &fresh, &tok), 0);
    assert_int_equal(cache_end(f->c, &it, 1, &plus_one), 0);
    assert_false(lookup(f, &got, &tok));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(fill_then_write_increments, setup, teardown),
        cmocka_unit_test_setup_teardown(stale_fill_after_write_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(fill_during_write_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(fill_straddling_begin_is_refused, setup, teardown),
    };
    return cmocka_run_group_tests_name("cache_redis", tests, NULL, NULL);
}
