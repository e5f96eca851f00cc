/*
 * test_pool.c - the shared connection pool: a wait that ends, a put that wakes a waiter,
 * and never more connections out than the pool holds.
 */
#include "unit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "util/clock.h"
#include "util/error.h"
#include "util/metrics.h"
#include "util/pool.h"

static int64_t timeouts(const char *name)
{
    char labels[64];

    snprintf(labels, sizeof(labels), "pool=\"%s\"", name);
    return metric_value(metrics_counter("tally_pool_wait_timeouts_total", "", labels));
}

/* Every connection taken: the next get gives up after the pool's wait, and says so. */
static void a_wait_for_a_connection_ends(void **state)
{
    struct pool p;
    int conns[2], t0_timeouts = (int)timeouts("t1");
    void *a, *b, *c = NULL;
    int64_t t0, waited;
    (void)state;

    pool_init(&p, "t1", 2, 50);
    pool_put(&p, &conns[0]);
    pool_put(&p, &conns[1]);
    assert_int_equal(pool_get(&p, &a), 0);
    assert_int_equal(pool_get(&p, &b), 0);
    assert_ptr_not_equal(a, b);
    t0 = clock_mono_us();
    assert_int_equal(pool_get(&p, &c), TALLY_EUNAVAIL);
    waited = clock_mono_us() - t0;
    assert_true(waited >= 50000 && waited < 2000000);
    assert_null(c);
    assert_int_equal(timeouts("t1") - t0_timeouts, 1);
    pool_put(&p, a);
    assert_int_equal(pool_get(&p, &c), 0);
    assert_ptr_equal(c, a);
    pool_release(&p);
}

struct churn {
    struct pool *pool;
    atomic_int out, most, fails;
};

static void *take_and_give(void *arg)
{
    struct churn *ch = arg;

    for (int i = 0; i < 2000; i++) {
        void *conn;
        int now;

        if (pool_get(ch->pool, &conn)) {
            atomic_fetch_add(&ch->fails, 1);
            continue;
        }
        now = atomic_fetch_add(&ch->out, 1) + 1;
        for (int most = atomic_load(&ch->most); now > most &&
                                                !atomic_compare_exchange_weak(&ch->most, &most, now);)
            ;
        atomic_fetch_sub(&ch->out, 1);
        pool_put(ch->pool, conn);
    }
    return NULL;
}

/* Eight threads over three connections: each waits its turn (a put wakes a waiter), none
 * times out with a generous wait, and at most three are ever out. */
static void threads_share_the_connections(void **state)
{
    struct pool p;
    int conns[3];
    struct churn ch = {.pool = &p};
    pthread_t th[8];
    (void)state;

    pool_init(&p, "t2", 3, 10000);
    for (int i = 0; i < 3; i++)
        pool_put(&p, &conns[i]);
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&th[i], NULL, take_and_give, &ch), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&ch.fails), 0);
    assert_true(atomic_load(&ch.most) >= 1 && atomic_load(&ch.most) <= 3);
    assert_int_equal(p.nfree, 3);
    pool_release(&p);
}

static void sizes_follow_the_workers(void **state)
{
    (void)state;
    assert_int_equal(pool_size_for(8), 20); /* the default --workers */
    assert_int_equal(pool_size_for(1), 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_wait_for_a_connection_ends),
        cmocka_unit_test(threads_share_the_connections),
        cmocka_unit_test(sizes_follow_the_workers),
    };
    return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
