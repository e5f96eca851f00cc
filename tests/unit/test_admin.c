/*
 * test_admin.c - tallyctl check's judge (store/admin.c): rows no SQL statement in the e2e
 * tests can easily write (a biz with a NUL, a text past every buffer), what a part that
 * only cross-checks counts, and how tables are reported and closed.
 */
#include "unit.h"

#include "store/admin.h"
#include "util/strbuf.h"

/* Everything the check reported, one line each. */
static struct strbuf heard;

static void on_check(void *arg, bool ok, const char *what, const char *detail)
{
    (void)arg;
    strbuf_addf(&heard, "check %d %s: %s\n", ok, what, detail);
}

static void on_problem(void *arg, const char *table, const char *key, const char *what)
{
    (void)arg;
    strbuf_addf(&heard, "%s %s: %s\n", table, key, what);
}

static void on_table(void *arg, const char *table, int64_t rows, int64_t problems,
                     const char *error)
{
    (void)arg;
    strbuf_addf(&heard, "table %s %lld %lld %s\n", table, (long long)rows, (long long)problems,
                error ? error : "-");
}

static const struct store_check_out out = {NULL, on_check, on_problem, on_table, NULL};

/* A row of n integers v (the rest NULL) and texts t (NULL: a NULL text). */
static struct store__check_row row_of(const char *const t[STORE__TEXTS], const size_t len[],
                                      const int64_t *v, int n)
{
    struct store__check_row r;

    memset(&r, 0, sizeof(r));
    for (int i = 0; i < STORE__TEXTS; i++) {
        r.text_null[i] = !t[i];
        r.len[i] = t[i] ? len[i] : 0;
        if (t[i])
            memcpy(r.text[i], t[i], r.len[i] < sizeof(r.text[i]) ? r.len[i] : sizeof(r.text[i]));
    }
    for (int i = 0; i < STORE__CHECK_INTS; i++) {
        r.null[i] = i >= n;
        r.v[i] = i < n ? v[i] : 0;
    }
    return r;
}

static void odd_texts_are_shown_escaped_and_cut(void **state)
{
    char longbiz[300];
    const char *t[STORE__TEXTS] = {longbiz, NULL, NULL};
    size_t len[STORE__TEXTS] = {sizeof(longbiz), 0, 0};
    int64_t v[] = {7, 3, 0, 0, 0, 1, 1, 0, 0}; /* id 7, biz_id 3, counts equal to the rows */
    struct store__check ck;
    struct store__check_row r;
    (void)state;

    memset(longbiz, 'a', sizeof(longbiz));
    longbiz[1] = '\0';
    longbiz[2] = '\xff';
    r = row_of(t, len, v, 9);
    strbuf_init(&heard, 0);
    store__check_init(&ck, &out, 7);
    store__check_part(&ck, STORE__CHECK_ITEMS);
    store__check_row(&ck, STORE__CHECK_ITEMS, &r);
    store__check_done(&ck);
    assert_string_equal(
        heard.buf,
        "interactive \"a\\x00\\xffaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"..."
        "/3 (id 7): biz \"a\\x00\\xffaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "\"... is not a valid biz (^[a-z][a-z0-9_]{0,31}$)\n"
        "table interactive 1 1 -\n");
    strbuf_release(&heard);
}

static void nulls_are_problems_where_null_is_no_value(void **state)
{
    const char *t[STORE__TEXTS] = {"video", NULL, NULL}; /* no topic: the local bus; no error */
    size_t len[STORE__TEXTS] = {5, 0, 0};
    int64_t v[] = {4, 9, 0, 0}; /* id, biz_id, uid, ts; part, msg_offset, ctime NULL */
    struct store__check ck;
    struct store__check_row r = row_of(t, len, v, 4);
    (void)state;

    strbuf_init(&heard, 0);
    store__check_init(&ck, &out, 7);
    store__check_part(&ck, STORE__CHECK_DEAD);
    store__check_row(&ck, STORE__CHECK_DEAD, &r);
    store__check_done(&ck);
    assert_string_equal(heard.buf, "read_dead_letter id 4 (video/9): error is NULL\n"
                                   "read_dead_letter id 4 (video/9): ctime is NULL\n"
                                   "table read_dead_letter 1 2 -\n");
    strbuf_release(&heard);
}

static void held_sums_count_no_rows_and_zero_is_no_row(void **state)
{
    const char *t[STORE__TEXTS] = {"article", NULL, NULL};
    size_t len[STORE__TEXTS] = {7, 0, 0};
    int64_t window[] = {24, 5, 2, 0, 0, 2, 0, 0};  /* win 24, item 5: sums 2, hours 2 */
    int64_t zero[] = {5, 24, 0, 0, 0, 0};          /* no 24h row, hours summing to 0 */
    int64_t missing[] = {5, 168, 0, 1, -1, 0};     /* no 7d row, hours summing to 1, -1, 0 */
    struct store__check ck;
    struct store__check_row r;
    (void)state;

    strbuf_init(&heard, 0);
    store__check_init(&ck, &out, 7);
    store__check_part(&ck, STORE__CHECK_WINDOWS);
    r = row_of(t, len, window, 8);
    store__check_row(&ck, STORE__CHECK_WINDOWS, &r);
    store__check_part(&ck, STORE__CHECK_HELD); /* the same table: no line in between */
    r = row_of(t, len, zero, 6);
    store__check_row(&ck, STORE__CHECK_HELD, &r);
    r = row_of(t, len, missing, 6);
    store__check_row(&ck, STORE__CHECK_HELD, &r);
    store__check_fail(&ck, "first reason");
    store__check_fail(&ck, "second reason");
    store__check_part(&ck, STORE__CHECK_MARKS);
    store__check_done(&ck);
    assert_string_equal(heard.buf,
                        "interactive_window article/5 7d: no row, but the hourly rows the window"
                        " holds sum to read_cnt 1, like_cnt -1, collect_cnt 0\n"
                        "table interactive_window 1 1 first reason\n"
                        "table window_mark 0 0 -\n");
    strbuf_release(&heard);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(odd_texts_are_shown_escaped_and_cut),
        cmocka_unit_test(nulls_are_problems_where_null_is_no_value),
        cmocka_unit_test(held_sums_count_no_rows_and_zero_is_no_row),
    };
    return cmocka_run_group_tests_name("admin", tests, NULL, NULL);
}
