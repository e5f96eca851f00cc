/*
 * test_ratelimit.c - the token buckets: the invariant against an injected
 * clock (in memory, and in Redis's script when TALLY_TEST_REDIS is set),
 * the spec parser, bounded memory, concurrent takes, and the API's 429.
 */
#include "unit.h"

#include <pthread.h>

#include "bus/local.h"
#include "cache/cache.h"
#include "http/api.h"
#include "service/ratelimit.h"
#include "store/store.h"
#include "util/error.h"

static int64_t fake_now; /* ms */

static int64_t fake_clock(void)
{
    return fake_now;
}

static struct ratelimit *limiter(const char *spec, struct cache *cache, size_t max_entries)
{
    struct ratelimit_config cfg = {.cache = cache, .max_entries = max_entries,
                                   .now_ms = fake_clock};
    char *err = NULL;

    assert_int_equal(ratelimit_parse(spec, &cfg.spec, &err), 0);
    return ratelimit_new(&cfg);
}

static uint64_t rng = 88172645463325252ULL;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/*
 * Every window between two admissions [t_i, t_j] holds at most
 * burst + rate * (t_j - t_i) admissions: the invariant, checked on every
 * pair (a window that does not start and end on an admission holds no more
 * than the tightest one inside it).
 */
static void assert_bound(const int64_t *t, size_t n, double rate_per_ms, int64_t burst)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = i; j < n; j++) {
            double bound = (double)burst + rate_per_ms * (double)(t[j] - t[i]);
            if ((double)(j - i + 1) > bound + 1e-9)
                fail_msg("%zu admitted in [%lld, %lld] ms, bound %.3f", j - i + 1,
                         (long long)t[i], (long long)t[j], bound);
        }
}

/*
 * Requests at random gaps (bursts and lulls) for `ms` of fake time; returns
 * how many were admitted. The admission times go into t.
 */
static size_t hammer(struct ratelimit *rl, enum ratelimit_by by, const char *name, int64_t ms,
                     int64_t *t, size_t tmax, int64_t *retry_checked, int64_t *paused)
{
    int64_t end = fake_now + ms;
    size_t n = 0;

    while (fake_now < end) {
        int retry = -1;
        int rc = ratelimit_take(rl, by, name, &retry);

        if (rc == 0) {
            assert_int_equal(retry, 0);
            assert_true(n < tmax);
            t[n++] = fake_now;
        } else {
            assert_int_equal(rc, TALLY_ELIMITED);
            assert_true(retry >= 1);
            (*retry_checked)++;
        }
        /* dense (a request every 0-2 ms), and now and then a pause of up to 3 s */
        if (next_rand() % 3000 == 0) {
            int64_t pause = (int64_t)(next_rand() % 3000);
            fake_now += pause;
            *paused += pause;
        } else {
            fake_now += (int64_t)(next_rand() % 3);
        }
    }
    return n;
}

static void invariant_against(struct cache *cache, int64_t ms)
{
    static const struct {
        const char *spec;
        double rate_per_ms;
        int64_t burst;
    } cases[] = {
        {"key=200/s:400", 0.2, 400},
        {"key=3/s:5", 0.003, 5},   /* a period not divisible by the rate */
        {"key=7/m:2", 7.0 / 60000, 2},
        {"uid=1/s:1", 0.001, 1},
    };
    static int64_t t[200000];
    char name[64];

    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        struct ratelimit *rl = limiter(cases[k].spec, cache, 0);
        enum ratelimit_by by = cases[k].spec[0] == 'k' ? RATELIMIT_KEY : RATELIMIT_UID;
        int64_t start = fake_now, refused = 0, paused = 0;
        size_t n;

        snprintf(name, sizeof(name), "addr:test-%d-%zu", (int)getpid(), k);
        n = hammer(rl, by, name, ms, t, sizeof(t) / sizeof(t[0]), &refused, &paused);
        assert_bound(t, n, cases[k].rate_per_ms, cases[k].burst);
        /* and it is not stingy: while requests kept coming, it admitted the rate */
        if ((double)n < cases[k].rate_per_ms * (double)(t[n - 1] - start - paused) * 0.95)
            fail_msg("%s: %zu admitted in %lld ms", cases[k].spec, n,
                     (long long)(t[n - 1] - start));
        assert_true(refused > 0);
        ratelimit_free(rl);
        fake_now += 10 * 3600 * 1000; /* any bucket left is full again */
    }
}

static void invariant_in_memory(void **state)
{
    (void)state;
    invariant_against(NULL, 60000);
}

/* A dense stream is admitted exactly to the bound: burst, then one per 1/rate. */
static void dense_stream_gets_exactly_the_bound(void **state)
{
    struct ratelimit *rl = limiter("key=10/s:20", NULL, 0);
    int admitted = 0, retry;
    (void)state;

    fake_now = 1000000;
    for (int ms = 0; ms <= 5000; ms++, fake_now++)
        for (int i = 0; i < 3; i++)
            admitted += ratelimit_take(rl, RATELIMIT_KEY, "addr:x", &retry) == 0;
    assert_int_equal(admitted, 20 + 10 * 5); /* burst + rate * 5 s */
    ratelimit_free(rl);
}

static void retry_after_is_when_a_token_is_back(void **state)
{
    struct ratelimit *rl = limiter("uid=1/m:1", NULL, 0);
    int retry;
    (void)state;

    fake_now = 5000000;
    assert_int_equal(ratelimit_take(rl, RATELIMIT_UID, "7", &retry), 0);
    assert_int_equal(ratelimit_take(rl, RATELIMIT_UID, "7", &retry), TALLY_ELIMITED);
    assert_int_equal(retry, 60);
    fake_now += 59001;
    assert_int_equal(ratelimit_take(rl, RATELIMIT_UID, "7", &retry), TALLY_ELIMITED);
    assert_int_equal(retry, 1); /* 999 ms: rounded up, never 0 */
    fake_now += 999;
    assert_int_equal(ratelimit_take(rl, RATELIMIT_UID, "7", &retry), 0);
    /* the other kind is not limited; other names have their own buckets */
    assert_int_equal(ratelimit_take(rl, RATELIMIT_KEY, "addr:a", &retry), 0);
    assert_int_equal(ratelimit_take(rl, RATELIMIT_UID, "8", &retry), 0);
    ratelimit_free(rl);
}

static void specs(void **state)
{
    static const char *const bad[] = {
        "key",        "key=",         "key=10",      "key=10/",     "key=10/d",
        "key=10/ss",  "key=0/s",      "key=-1/s",    "key=10/s:",   "key=10/s:0",
        "key=1.5/s",  "key=10/s:x",   "ip=10/s",     "key=1/s,",    ",key=1/s",
        "key=1/s,key=2/s",            "key=1000001/s", "key=1/s:1000001", "key=1/s;uid=1/s",
        "KEY=1/s",    "key=1/s:2:3",  "key=1:2/s",
    };
    struct ratelimit_spec s;
    char *err = NULL;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (ratelimit_parse(bad[i], &s, &err) != TALLY_EINVAL)
            fail_msg("accepted '%s'", bad[i]);
        assert_non_null(strstr(err, "invalid --rate-limit '"));
        assert_null(strchr(err, '\n'));
        free(err);
        err = NULL;
    }
    assert_int_equal(ratelimit_parse("key=200/s:400,uid=20/m:40", &s, &err), 0);
    assert_int_equal(s.rule[RATELIMIT_KEY].n, 200);
    assert_int_equal(s.rule[RATELIMIT_KEY].period_ms, 1000);
    assert_int_equal(s.rule[RATELIMIT_KEY].burst, 400);
    assert_int_equal(s.rule[RATELIMIT_UID].n, 20);
    assert_int_equal(s.rule[RATELIMIT_UID].period_ms, 60000);
    assert_int_equal(s.rule[RATELIMIT_UID].burst, 40);
    assert_int_equal(ratelimit_parse("uid=5/h", &s, &err), 0);
    assert_int_equal(s.rule[RATELIMIT_KEY].n, 0); /* absent: not limited */
    assert_int_equal(s.rule[RATELIMIT_UID].burst, 5); /* one period's tokens */
    assert_int_equal(s.rule[RATELIMIT_UID].period_ms, 3600000);
    assert_int_equal(ratelimit_parse("", &s, &err), 0);
    assert_int_equal(s.rule[RATELIMIT_KEY].n + s.rule[RATELIMIT_UID].n, 0);
}

/* However many distinct names come, the buckets stay under the cap; idle ones go. */
static void memory_is_bounded(void **state)
{
    struct ratelimit *rl = limiter("key=10/s:20,uid=1/s:1", NULL, 160);
    char name[64];
    int retry;
    (void)state;

    fake_now = 9000000;
    for (int i = 0; i < 100000; i++) {
        snprintf(name, sizeof(name), "addr:10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        assert_int_equal(ratelimit_take(rl, RATELIMIT_KEY, name, &retry), 0);
        assert_true(ratelimit_entries(rl, RATELIMIT_KEY) <= 160);
        if (i % 7 == 0)
            fake_now++;
    }
    assert_true(ratelimit_entries(rl, RATELIMIT_KEY) >= 150);
    assert_int_equal(ratelimit_entries(rl, RATELIMIT_UID), 0);
    /* 2 s later every bucket is full again: taking a few names drops them */
    fake_now += 2000;
    for (int i = 0; i < 400; i++) {
        snprintf(name, sizeof(name), "addr:late-%d", i % 50);
        ratelimit_take(rl, RATELIMIT_KEY, name, &retry);
    }
    /* the old 160 are gone; of the 50 new ones a shard (cap 10) may have had to evict some */
    assert_in_range(ratelimit_entries(rl, RATELIMIT_KEY), 40, 50);
    ratelimit_free(rl);
}

/* A bucket that is used stays, a flood of new names evicts only idle ones first. */
static void flood_evicts_least_recently_used(void **state)
{
    struct ratelimit *rl = limiter("key=1/s:3", NULL, 16 * 4);
    char name[64];
    int retry, admitted = 0;
    (void)state;

    fake_now = 20000000;
    for (int round = 0; round < 50; round++) {
        admitted += ratelimit_take(rl, RATELIMIT_KEY, "addr:abuser", &retry) == 0;
        for (int i = 0; i < 3; i++) { /* three new names per take: fewer than a shard holds */
            snprintf(name, sizeof(name), "addr:flood-%d-%d", round, i);
            ratelimit_take(rl, RATELIMIT_KEY, name, &retry);
        }
    }
    assert_int_equal(admitted, 3); /* the abuser's bucket was never reset */
    ratelimit_free(rl);
}

struct racer {
    struct ratelimit *rl;
    int admitted;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    int retry;

    for (int i = 0; i < 20000; i++)
        r->admitted += ratelimit_take(r->rl, RATELIMIT_UID, "42", &retry) == 0;
    return NULL;
}

/* Many threads on one bucket at one instant: exactly burst get through. */
static void concurrent_takes_admit_exactly_burst(void **state)
{
    struct racer r[4];
    pthread_t th[4];
    struct ratelimit *rl = limiter("uid=1/h:1000", NULL, 0);
    int total = 0;
    (void)state;

    fake_now = 30000000;
    for (int i = 0; i < 4; i++) {
        r[i] = (struct racer){rl, 0};
        assert_int_equal(pthread_create(&th[i], NULL, race, &r[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += r[i].admitted;
    }
    assert_int_equal(total, 1000);
    ratelimit_free(rl);
}

/* The same invariant from Redis's script, and a bucket key that expires. */
static void invariant_in_redis(void **state)
{
    const char *url = getenv("TALLY_TEST_REDIS");
    struct cache *c;
    char *err = NULL;
    (void)state;

    if (!url)
        skip();
    assert_int_equal(cache_open(url, &c, &err), 0);
    assert_true(cache_has_take(c));
    fake_now = 1700000000000LL; /* a wall clock, as tallyd passes */
    invariant_against(c, 8000); /* a round trip per take: 8 s of fake time per case */
    cache_free(c);
}

/* The API: a 429 with retry_after, before anything is written. */
static void api_answers_429_and_changes_nothing(void **state)
{
    char *path = unit_temp_db(), url[256], *err = NULL;
    struct store *s;
    struct cache *c;
    struct bus *b = bus_local_new(16);
    struct interactive svc;
    struct api_response res;
    struct api_request req = {.method = API_PUT, .path = "/v1/users/5/likes/article/1",
                              .body = "", .caller = "addr:192.0.2.1"};
    (void)state;

    snprintf(url, sizeof(url), "sqlite:%s", path);
    assert_int_equal(store_open(url, &s, &err), 0);
    assert_int_equal(cache_open("none", &c, &err), 0);
    interactive_init(&svc, s, c, b);
    svc.limits = limiter("uid=1/s:1", c, 0);
    fake_now = 40000000;
    for (int i = 0; i < 2; i++) {
        api_response_init(&res);
        api_handle(&svc, &req, &res);
        assert_int_equal(res.status, i == 0 ? 200 : 429);
        assert_int_equal(res.retry_after, i == 0 ? 0 : 1);
        if (i == 1)
            assert_non_null(strstr(res.body.buf, "\"code\":\"rate_limited\""));
        api_response_release(&res);
    }
    req.path = "/v1/items/article/1/reads";
    req.method = API_POST;
    req.body = "{\"uid\":5}";
    req.body_len = strlen(req.body);
    api_response_init(&res);
    api_handle(&svc, &req, &res);
    assert_int_equal(res.status, 429);
    api_response_release(&res);
    {
        struct read_event ev[4];
        size_t n = 9;

        assert_int_equal(bus_poll(b, ev, 4, 0, &n), 0);
        assert_int_equal(n, 0); /* nothing was published */
    }
    ratelimit_free(svc.limits);
    bus_free(b);
    cache_free(c);
    store_free(s);
    unit_remove_db(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(invariant_in_memory),
        cmocka_unit_test(dense_stream_gets_exactly_the_bound),
        cmocka_unit_test(retry_after_is_when_a_token_is_back),
        cmocka_unit_test(specs),
        cmocka_unit_test(memory_is_bounded),
        cmocka_unit_test(flood_evicts_least_recently_used),
        cmocka_unit_test(concurrent_takes_admit_exactly_burst),
        cmocka_unit_test(invariant_in_redis),
        cmocka_unit_test(api_answers_429_and_changes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
