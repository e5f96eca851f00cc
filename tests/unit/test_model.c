/*
 * test_model.c - identifiers, strbuf and metrics: the floor everything stands on.
 */
#include "unit.h"

#include "model/item.h"
#include "util/error.h"
#include "util/metrics.h"
#include "util/strbuf.h"

static void biz_rules(void **state)
{
    char out[ITEM_BIZ_MAX + 1];
    (void)state;

    assert_int_equal(item_parse_biz("article", 7, out), 0);
    assert_string_equal(out, "article");
    assert_int_equal(item_parse_biz("a", 1, out), 0);
    assert_int_equal(item_parse_biz("a_9", 3, out), 0);
    assert_int_equal(item_parse_biz("abcdefghijabcdefghijabcdefghijab", 32, out), 0);
    assert_int_equal(item_parse_biz("abcdefghijabcdefghijabcdefghijabc", 33, out), TALLY_EINVAL);
    assert_int_equal(item_parse_biz("", 0, out), TALLY_EINVAL);
    assert_int_equal(item_parse_biz("9a", 2, out), TALLY_EINVAL);
    assert_int_equal(item_parse_biz("_a", 2, out), TALLY_EINVAL);
    assert_int_equal(item_parse_biz("Article", 7, out), TALLY_EINVAL);
    assert_int_equal(item_parse_biz("art-icle", 8, out), TALLY_EINVAL);
    assert_int_equal(item_parse_biz("a\0b", 3, out), TALLY_EINVAL);
}

static void id_rules(void **state)
{
    int64_t v;
    (void)state;

    assert_int_equal(item_parse_id("1", 1, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(item_parse_id("9223372036854775807", 19, &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(item_parse_id("007", 3, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(item_parse_id("9223372036854775808", 19, &v), TALLY_EINVAL);
    assert_int_equal(item_parse_id("99999999999999999999", 20, &v), TALLY_EINVAL);
    assert_int_equal(item_parse_id("0", 1, &v), TALLY_EINVAL);
    assert_int_equal(item_parse_id("", 0, &v), TALLY_EINVAL);
    assert_int_equal(item_parse_id("-1", 2, &v), TALLY_EINVAL);
    assert_int_equal(item_parse_id("+1", 2, &v), TALLY_EINVAL);
    assert_int_equal(item_parse_id(" 1", 2, &v), TALLY_EINVAL);
    assert_int_equal(item_parse_id("1e3", 3, &v), TALLY_EINVAL);
}

static void fields(void **state)
{
    enum count_field f;
    struct counts c = { 1, 2, 3 };
    (void)state;

    assert_int_equal(count_field_parse("like_cnt", &f), 0);
    assert_int_equal(counts_get(&c, f), 2);
    assert_int_equal(count_field_parse("collect_cnt", &f), 0);
    assert_int_equal(counts_get(&c, f), 3);
    assert_int_equal(count_field_parse("likes", &f), TALLY_EINVAL);
}

/* An idempotency key's digest is its caller's and its item's: any of the three differing,
 * or the boundary between them moving, gives another digest. */
static void idem_digests_are_scoped(void **state)
{
    const struct item a = {"article", 7}, b = {"article", 8}, c = {"article", 71};
    uint64_t base = read_idem_digest("key:backend", &a, "order-123", 9);

    (void)state;
    assert_true(base != 0);
    assert_true(base == read_idem_digest("key:backend", &a, "order-123", 9));
    assert_true(base != read_idem_digest("key:ops", &a, "order-123", 9));
    assert_true(base != read_idem_digest("key:backend", &b, "order-123", 9));
    assert_true(base != read_idem_digest("key:backend", &a, "order-124", 9));
    assert_true(base != read_idem_digest("bus", &a, "order-123", 9));
    /* item 7 with key "1x" is not item 71 with key "x" */
    assert_true(read_idem_digest("anonymous", &a, "1x", 2) !=
                read_idem_digest("anonymous", &c, "x", 1));
}

static void strbuf_grows_and_formats(void **state)
{
    struct strbuf sb = STRBUF_INIT;
    (void)state;

    assert_int_equal(sb.len, 0);
    assert_string_equal(sb.buf, "");
    for (int i = 0; i < 1000; i++)
        strbuf_addch(&sb, 'x');
    assert_int_equal(sb.len, 1000);
    assert_int_equal(sb.buf[1000], '\0');
    strbuf_reset(&sb);
    strbuf_add_i64(&sb, INT64_MIN);
    strbuf_addch(&sb, ' ');
    strbuf_add_i64(&sb, INT64_MAX);
    strbuf_addch(&sb, ' ');
    strbuf_add_i64(&sb, 0);
    assert_string_equal(sb.buf, "-9223372036854775808 9223372036854775807 0");
    strbuf_reset(&sb);
    strbuf_addf(&sb, "%s-%d-%0300d", "a", 7, 1);
    assert_int_equal(sb.len, 304);
    strbuf_release(&sb);
    assert_int_equal(sb.alloc, 0);
}

static void metrics_render_text(void **state)
{
    static const double bounds[] = { 1, 10 };
    struct strbuf sb = STRBUF_INIT;
    struct metric *a, *b, *h;
    (void)state;

    a = metrics_counter("t_requests_total", "Requests.", "route=\"a\"");
    metrics_gauge("t_depth", "Depth.", "");
    b = metrics_counter("t_requests_total", "Requests.", "route=\"b\"");
    assert_ptr_equal(a, metrics_counter("t_requests_total", "Requests.", "route=\"a\""));
    metric_add(a, 2);
    metric_add(b, 5);
    h = metrics_histogram("t_size", "Sizes.", "", bounds, 2);
    metric_observe(h, 0.5);
    metric_observe(h, 5);
    metric_observe(h, 50);
    metrics_render(&sb);
    /* Both series of one name sit together under one header. */
    assert_non_null(strstr(sb.buf, "# TYPE t_requests_total counter\n"
                                   "t_requests_total{route=\"a\"} 2\n"
                                   "t_requests_total{route=\"b\"} 5\n"));
    assert_non_null(strstr(sb.buf, "t_size_bucket{le=\"1\"} 1\n"
                                   "t_size_bucket{le=\"10\"} 2\n"
                                   "t_size_bucket{le=\"+Inf\"} 3\n"
                                   "t_size_sum 55.5\n"
                                   "t_size_count 3\n"));
    strbuf_release(&sb);
    metrics_release();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(biz_rules),
        cmocka_unit_test(id_rules),
        cmocka_unit_test(fields),
        cmocka_unit_test(idem_digests_are_scoped),
        cmocka_unit_test(strbuf_grows_and_formats),
        cmocka_unit_test(metrics_render_text),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
