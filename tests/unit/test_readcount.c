/*
 * test_readcount.c - the local bus and the batch consumer over a real SQLite store.
 */
#include "unit.h"

#include "bus/local.h"
#include "cache/cache.h"
#include "service/readcount.h"
#include "store/store.h"
#include "util/error.h"

static struct read_event ev(const char *biz, int64_t id)
{
    struct read_event r = { .item.id = id, .partition = -1, .offset = -1 };
    snprintf(r.item.biz, sizeof(r.item.biz), "%s", biz);
    return r;
}

static void local_bus_bounds_and_drains(void **state)
{
    struct bus *b = bus_local_new(3);
    struct read_event e = ev("a", 1), out[8];
    size_t n;
    (void)state;

    assert_int_equal(bus_publish(b, &e), 0);
    assert_int_equal(bus_publish(b, &e), 0);
    assert_int_equal(bus_publish(b, &e), 0);
    assert_int_equal(bus_publish(b, &e), TALLY_EFULL);
    assert_int_equal(bus_poll(b, out, 2, 0, &n), 0);
    assert_int_equal(n, 2);
    bus_close(b, 0);
    assert_int_equal(bus_publish(b, &e), TALLY_ECLOSED);
    /* What was accepted before close is still handed out. */
    assert_int_equal(bus_poll(b, out, 8, 0, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(bus_poll(b, out, 8, 10, &n), TALLY_ECLOSED);
    assert_int_equal(n, 0);
    bus_free(b);
}

static void poll_times_out_empty(void **state)
{
    struct bus *b = bus_local_new(4);
    struct read_event out[1];
    size_t n = 99;
    (void)state;

    assert_int_equal(bus_poll(b, out, 1, 20, &n), 0);
    assert_int_equal(n, 0);
    bus_free(b);
}

static void merge_sorts_and_sums(void **state)
{
    struct read_event e[6] = { ev("b", 2), ev("a", 9), ev("b", 2),
                               ev("a", 10), ev("a", 9), ev("b", 2) };
    struct read_delta d[6];
    size_t k;
    (void)state;

    k = readcount_merge(e, 6, d);
    assert_int_equal(k, 3);
    assert_string_equal(d[0].item.biz, "a");
    assert_int_equal(d[0].item.id, 9);
    assert_int_equal(d[0].n, 2);
    assert_int_equal(d[1].item.id, 10);
    assert_int_equal(d[1].n, 1);
    assert_string_equal(d[2].item.biz, "b");
    assert_int_equal(d[2].n, 3);
}

/* 20,000 events over 50 items through the real consumer: every one is counted. */
static void consumer_counts_everything_by_stop(void **state)
{
    char *path = unit_temp_db(), url[256], *err = NULL;
    struct store *s;
    struct cache *c;
    struct bus *b = bus_local_new(100000);
    struct readcount_config cfg = { .batch = 512, .flush_ms = 5, .stop_wait_ms = 1000 };
    struct readcount *rc;
    struct item items[50];
    struct counts counts[50];
    int64_t total = 0;
    (void)state;

    snprintf(url, sizeof(url), "sqlite:%s", path);
    assert_int_equal(store_open(url, &s, &err), 0);
    assert_int_equal(cache_open("none", &c, &err), 0);
    rc = readcount_start(b, s, c, &cfg);
    for (int i = 0; i < 20000; i++) {
        struct read_event e = ev("article", 1 + i % 50);
        assert_int_equal(bus_publish(b, &e), 0);
    }
    readcount_stop(rc); /* graceful: drains the bus first */
    for (int i = 0; i < 50; i++)
        items[i] = ev("article", i + 1).item;
    assert_int_equal(store_counts(s, items, 50, counts), 0);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(counts[i].read_cnt, 400);
        total += counts[i].read_cnt;
    }
    assert_int_equal(total, 20000);
    bus_free(b);
    cache_free(c);
    store_free(s);
    unit_remove_db(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(local_bus_bounds_and_drains),
        cmocka_unit_test(poll_times_out_empty),
        cmocka_unit_test(merge_sorts_and_sums),
        cmocka_unit_test(consumer_counts_everything_by_stop),
    };
    return cmocka_run_group_tests_name("readcount", tests, NULL, NULL);
}
