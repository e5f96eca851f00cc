/*
 * test_workpool.c - the bounded worker pool: every item runs, a full queue refuses,
 * freeing runs what is queued.
 */
#include "unit.h"

#include <pthread.h>
#include <stdatomic.h>

#include "util/error.h"
#include "util/workpool.h"

/* A work item that counts its runs; `gate` holds the pool's threads while it is locked. */
struct item {
    struct work work;
    atomic_int *runs;
    pthread_mutex_t *gate;
};

static void run_item(struct work *w)
{
    struct item *it = (struct item *)w;

    if (it->gate) {
        pthread_mutex_lock(it->gate);
        pthread_mutex_unlock(it->gate);
    }
    atomic_fetch_add(it->runs, 1);
}

static void every_item_runs_once(void **state)
{
    enum { N = 10000 };
    struct item *items = calloc(N, sizeof(*items));
    atomic_int runs = 0;
    struct workpool *wp = workpool_new("test", 4, N);
    (void)state;

    for (int i = 0; i < N; i++) {
        items[i] = (struct item){.work.run = run_item, .runs = &runs};
        assert_int_equal(workpool_submit(wp, &items[i].work), 0);
    }
    workpool_free(wp); /* runs what is still queued */
    assert_int_equal(atomic_load(&runs), N);
    free(items);
}

static void a_full_queue_refuses_and_changes_nothing(void **state)
{
    pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
    struct item items[8];
    atomic_int runs = 0;
    struct workpool *wp = workpool_new("test", 1, 2);
    int accepted = 0, refused = 0;
    (void)state;

    pthread_mutex_lock(&gate); /* the one thread blocks on the first item it takes */
    for (int i = 0; i < 8; i++) {
        items[i] = (struct item){.work.run = run_item, .runs = &runs, .gate = &gate};
        int rc = workpool_submit(wp, &items[i].work);

        assert_true(rc == 0 || rc == TALLY_EFULL);
        rc == 0 ? accepted++ : refused++;
    }
    /* At most one taken by the thread plus two queued; the rest refused. */
    assert_true(accepted >= 2 && accepted <= 3);
    assert_int_equal(accepted + refused, 8);
    pthread_mutex_unlock(&gate);
    workpool_free(wp);
    assert_int_equal(atomic_load(&runs), accepted);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_item_runs_once),
        cmocka_unit_test(a_full_queue_refuses_and_changes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
