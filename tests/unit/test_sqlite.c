/*
 * test_sqlite.c - the SQLite store against a real database file.
 */
#include "unit.h"

#include <sqlite3.h>

#include "store/store.h"
#include "util/error.h"

struct fixture {
    char *path;
    struct store *s;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char url[256], *err = NULL;

    f->path = unit_temp_db();
    snprintf(url, sizeof(url), "sqlite:%s", f->path);
    assert_int_equal(store_open(url, &f->s, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    store_free(f->s);
    unit_remove_db(f->path);
    free(f);
    return 0;
}

static struct item item(const char *biz, int64_t id)
{
    struct item it = { .id = id };
    snprintf(it.biz, sizeof(it.biz), "%s", biz);
    return it;
}

static void like_counts_only_transitions(void **state)
{
    struct fixture *f = *state;
    struct item a = item("article", 7);
    struct item_state c;
    bool changed, liked, collected;

    assert_int_equal(store_set_like(f->s, 42, &a, true, 1000, &changed, &c), 0);
    assert_true(changed);
    assert_int_equal(c.counts.like_cnt, 1);
    assert_true(c.liked); /* the flags come back from the write's transaction */
    assert_false(c.collected);
    assert_int_equal(store_set_like(f->s, 42, &a, true, 1001, &changed, &c), 0);
    assert_false(changed);
    assert_int_equal(c.counts.like_cnt, 1);
    assert_int_equal(store_set_like(f->s, 43, &a, true, 1002, &changed, &c), 0);
    assert_int_equal(c.counts.like_cnt, 2);
    assert_int_equal(store_set_like(f->s, 42, &a, false, 1003, &changed, &c), 0);
    assert_true(changed);
    assert_int_equal(c.counts.like_cnt, 1);
    assert_false(c.liked);
    assert_int_equal(store_set_like(f->s, 42, &a, false, 1004, &changed, &c), 0);
    assert_false(changed);
    assert_int_equal(c.counts.like_cnt, 1);
    /* Unliking something never liked cannot go negative. */
    assert_int_equal(store_set_like(f->s, 99, &a, false, 1005, &changed, &c), 0);
    assert_false(changed);
    assert_int_equal(c.counts.like_cnt, 1);
    assert_int_equal(store_flags(f->s, 43, &a, 1, &liked, &collected), 0);
    assert_true(liked);
    assert_false(collected);
    assert_int_equal(store_flags(f->s, 42, &a, 1, &liked, &collected), 0);
    assert_false(liked);
}

static void collections_move_without_counting(void **state)
{
    struct fixture *f = *state;
    struct item a = item("video", 1);
    struct list_cursor start = LIST_CURSOR_START;
    struct list_entry e[4];
    struct item_state c;
    bool changed;
    size_t n;

    assert_int_equal(store_set_collect(f->s, 5, 10, &a, true, 100, &changed, &c), 0);
    assert_true(changed);
    assert_int_equal(c.counts.collect_cnt, 1);
    assert_int_equal(store_set_collect(f->s, 5, 11, &a, true, 101, &changed, &c), 0);
    assert_false(changed);
    assert_int_equal(c.counts.collect_cnt, 1);
    assert_int_equal(store_list_collection(f->s, 5, 10, &start, 4, e, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_list_collection(f->s, 5, 11, &start, 4, e, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(e[0].item.id, 1);
    assert_string_equal(e[0].item.biz, "video");
    assert_int_equal(e[0].ctime, 101);
    /* Removing from the wrong collection changes nothing. */
    assert_int_equal(store_set_collect(f->s, 5, 10, &a, false, 102, &changed, &c), 0);
    assert_false(changed);
    assert_int_equal(c.counts.collect_cnt, 1);
    assert_true(c.collected); /* still in collection 11 */
    assert_int_equal(store_set_collect(f->s, 5, 11, &a, false, 103, &changed, &c), 0);
    assert_true(changed);
    assert_int_equal(c.counts.collect_cnt, 0);
    assert_false(c.collected);
}

static void lists_page_newest_first(void **state)
{
    struct fixture *f = *state;
    struct list_cursor cur = LIST_CURSOR_START;
    struct list_entry e[3];
    struct item_state c;
    bool changed;
    size_t n, seen = 0;
    int64_t expect = 25;

    for (int64_t id = 1; id <= 25; id++) {
        struct item it = item("article", id);
        /* Items 1..25 liked in order; several share a timestamp. */
        assert_int_equal(store_set_like(f->s, 7, &it, true, 1000 + id / 3, &changed, &c), 0);
    }
    do {
        assert_int_equal(store_list_likes(f->s, 7, "article", &cur, 3, e, &n), 0);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(e[i].item.id, expect--);
        if (n > 0) {
            cur.time = e[n - 1].ctime;
            cur.id = e[n - 1].cursor_id;
        }
        seen += n;
    } while (n == 3);
    assert_int_equal(seen, 25);
    assert_int_equal(store_list_likes(f->s, 7, "video", &(struct list_cursor)LIST_CURSOR_START,
                                      3, e, &n),
                     0);
    assert_int_equal(n, 0);
}

static void top_uses_index_and_orders(void **state)
{
    struct fixture *f = *state;
    struct item_state st[5];
    struct item_state c;
    bool changed;
    size_t n;
    sqlite3 *db;
    sqlite3_stmt *q;
    char plan[512] = "";

    /* like_cnt: item 3 -> 2 likes, items 1 and 2 -> 1 like each. */
    for (int64_t uid = 1; uid <= 2; uid++) {
        struct item it = item("article", 3);
        assert_int_equal(store_set_like(f->s, uid, &it, true, 5, &changed, &c), 0);
    }
    for (int64_t id = 2; id >= 1; id--) {
        struct item it = item("article", id);
        assert_int_equal(store_set_like(f->s, 9, &it, true, 5, &changed, &c), 0);
    }
    assert_int_equal(store_top(f->s, "article", FIELD_LIKE_CNT, 5, st, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(st[0].item.id, 3);
    assert_int_equal(st[0].counts.like_cnt, 2);
    assert_int_equal(st[1].item.id, 1); /* tie broken by id ascending */
    assert_int_equal(st[2].item.id, 2);
    assert_int_equal(store_top(f->s, "article", FIELD_LIKE_CNT, 1, st, &n), 0);
    assert_int_equal(n, 1);

    assert_int_equal(sqlite3_open(((struct fixture *)*state)->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "EXPLAIN QUERY PLAN SELECT biz_id, read_cnt, like_cnt,"
                                        " collect_cnt FROM interactive"
                                        " WHERE biz = 'article' ORDER BY like_cnt DESC,"
                                        " biz_id ASC LIMIT 10",
                                        -1, &q, NULL),
                     SQLITE_OK);
    while (sqlite3_step(q) == SQLITE_ROW) {
        size_t len = strlen(plan);
        snprintf(plan + len, sizeof(plan) - len, "%s;", sqlite3_column_text(q, 3));
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    assert_non_null(strstr(plan, "INDEX interactive_top_like (biz=?)"));
    assert_null(strstr(plan, "TEMP B-TREE")); /* no sort: the index gives the order */
}

/* A batch of per-item deltas only (no hours): what the consumer sends with windows off. */
static int apply_plain(struct store *s, const struct read_delta *d, size_t n, const char *topic,
                       const struct store_offset *o, size_t noffs, int64_t now_ms)
{
    struct read_batch b = { .d = d, .n = n, .topic = topic, .offs = o, .noffs = noffs,
                            .now_ms = now_ms };
    return store_apply_reads(s, &b);
}

static void reads_and_offsets_apply_atomically(void **state)
{
    struct fixture *f = *state;
    struct read_delta d[300];
    struct counts c[2];
    struct item it[2] = { item("article", 1), item("article", 299) };
    struct store_offset o = { .partition = 0, .expect = -1, .next = 10 };
    int64_t next;

    for (int i = 0; i < 300; i++) {
        d[i].item = item("article", i + 1);
        d[i].n = i + 1;
    }
    /* 300 rows: one full 256-row chunk plus a remainder. */
    assert_int_equal(apply_plain(f->s, d, 300, "t", &o, 1, 7), 0);
    assert_int_equal(store_counts(f->s, it, 2, c), 0);
    assert_int_equal(c[0].read_cnt, 1);
    assert_int_equal(c[1].read_cnt, 299);
    assert_int_equal(store_load_offset(f->s, "t", 0, &next), 0);
    assert_int_equal(next, 10);
    assert_int_equal(store_load_offset(f->s, "t", 1, &next), 0);
    assert_int_equal(next, -1);

    /* A batch that expects an offset someone else already moved: nothing applies. */
    o = (struct store_offset){ .partition = 0, .expect = 5, .next = 20 };
    assert_int_equal(apply_plain(f->s, d, 2, "t", &o, 1, 8), TALLY_ESTALE);
    o.expect = -1; /* "no offset yet" is stale too once one exists */
    assert_int_equal(apply_plain(f->s, d, 2, "t", &o, 1, 8), TALLY_ESTALE);
    assert_int_equal(store_counts(f->s, it, 1, c), 0);
    assert_int_equal(c[0].read_cnt, 1);
    o.expect = 10;
    assert_int_equal(apply_plain(f->s, d, 2, "t", &o, 1, 9), 0);
    assert_int_equal(store_counts(f->s, it, 1, c), 0);
    assert_int_equal(c[0].read_cnt, 2);
    assert_int_equal(store_load_offset(f->s, "t", 0, &next), 0);
    assert_int_equal(next, 20);
}

/* A counter that would pass 2^63-1 is refused whole: no wrap, no REAL, offsets unmoved. */
static void read_counter_never_passes_int64_max(void **state)
{
    struct fixture *f = *state;
    struct read_delta d[2] = { { item("article", 1), INT64_MAX - 1, 0 }, { item("article", 2), 5, 0 } };
    struct store_offset o = { 0, -1, 10 };
    struct read_event e = { .item = item("article", 1), .uid = 3, .ts = 4, .partition = 0,
                            .offset = 10 };
    struct counts c[2];
    struct item items[2] = { d[0].item, d[1].item };
    sqlite3 *db;
    sqlite3_stmt *q;

    assert_int_equal(apply_plain(f->s, d, 2, "t", &o, 1, 1), 0);
    d[0].n = 2; /* INT64_MAX - 1 + 2 */
    o = (struct store_offset){ 0, 10, 20 };
    assert_int_equal(apply_plain(f->s, d, 2, "t", &o, 1, 2), TALLY_EREJECTED);
    assert_int_equal(store_counts(f->s, items, 2, c), 0);
    assert_int_equal(c[0].read_cnt, INT64_MAX - 1);
    assert_int_equal(c[1].read_cnt, 5); /* the whole transaction rolled back */
    d[0].n = 1; /* exactly INT64_MAX is a valid count */
    assert_int_equal(apply_plain(f->s, d, 1, "t", &o, 1, 3), 0);
    assert_int_equal(store_counts(f->s, items, 1, c), 0);
    assert_int_equal(c[0].read_cnt, INT64_MAX);
    /* The refused event is recorded, and its offset moved, in one transaction. */
    o = (struct store_offset){ 0, 20, 11 };
    assert_int_equal(store_dead_letter(f->s, &e, 1, "t", &o, 1, "rejected by the store", 5), 0);
    assert_int_equal(store_dead_letter(f->s, &e, 1, "t", &o, 1, "x", 6), TALLY_ESTALE);
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT typeof(read_cnt), (SELECT count(*) FROM "
                                            "read_dead_letter WHERE biz_id = 1 AND part = 0 AND "
                                            "msg_offset = 10 AND topic = 't') FROM interactive "
                                            "WHERE biz_id = 1", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "integer");
    assert_int_equal(sqlite3_column_int(q, 1), 1);
    sqlite3_finalize(q);
    sqlite3_close(db);
}

/* A row edited by hand (a biz longer than any valid one) fails the call; it never aborts. */
static void hand_written_row_is_an_error_not_a_crash(void **state)
{
    struct fixture *f = *state;
    struct list_cursor start = LIST_CURSOR_START;
    struct list_entry out[4];
    size_t n;
    sqlite3 *db;

    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "INSERT INTO user_collection (uid, cid, biz, biz_id, status,"
                                      " ctime, utime) VALUES (1, 2, printf('%.40c', 'x'), 3, 1,"
                                      " 4, 4)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(store_list_collection(f->s, 1, 2, &start, 4, out, &n), TALLY_EINTERNAL);
}

static void schema_survives_reopen(void **state)
{
    struct fixture *f = *state;
    struct item a = item("article", 1);
    struct item_state st;
    struct counts c;
    bool changed;
    char url[256], *err = NULL;
    sqlite3 *db;
    sqlite3_stmt *q;
    int ours;

    assert_int_equal(store_set_like(f->s, 1, &a, true, 1, &changed, &st), 0);
    store_free(f->s);
    snprintf(url, sizeof(url), "sqlite:%s", f->path);
    assert_int_equal(store_open(url, &f->s, &err), 0);
    assert_int_equal(store_counts(f->s, &a, 1, &c), 0);
    assert_int_equal(c.like_cnt, 1);
    assert_int_equal(store_ping(f->s), 0);

    /* A database from a newer tallyd is refused rather than misread. */
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    ours = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);
    sqlite3_close(db);
    store_free(f->s);
    f->s = NULL;
    assert_int_not_equal(store_open(url, &f->s, &err), 0);
    assert_non_null(strstr(err, "cannot open sqlite store"));
    free(err);
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    snprintf(url, sizeof(url), "PRAGMA user_version = %d", ours); /* this tallyd's */
    sqlite3_exec(db, url, NULL, NULL, NULL);
    sqlite3_close(db);
    snprintf(url, sizeof(url), "sqlite:%s", f->path);
    assert_int_equal(store_open(url, &f->s, &err), 0);
}

static void bad_urls(void **state)
{
    char *err = NULL;
    (void)state;

    assert_int_equal(store_check_url("sqlite:", &err), TALLY_EINVAL);
    assert_non_null(strstr(err, "'sqlite:'"));
    free(err);
    assert_int_equal(store_check_url("postgres://x", &err), TALLY_EINVAL);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(like_counts_only_transitions, setup, teardown),
        cmocka_unit_test_setup_teardown(collections_move_without_counting, setup, teardown),
        cmocka_unit_test_setup_teardown(lists_page_newest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(top_uses_index_and_orders, setup, teardown),
        cmocka_unit_test_setup_teardown(reads_and_offsets_apply_atomically, setup, teardown),
        cmocka_unit_test_setup_teardown(read_counter_never_passes_int64_max, setup, teardown),
        cmocka_unit_test_setup_teardown(hand_written_row_is_an_error_not_a_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(schema_survives_reopen, setup, teardown),
        cmocka_unit_test(bad_urls),
    };
    return cmocka_run_group_tests_name("store_sqlite", tests, NULL, NULL);
}
