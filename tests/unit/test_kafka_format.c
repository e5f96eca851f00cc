/*
 * test_kafka_format.c - the read-event message contract (docs/kafka.md).
 */
#include "unit.h"

#include "bus/kafka.h"

static int parse(const char *s, struct read_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    return bus_kafka_parse(s, strlen(s), ev);
}

static void valid_messages(void **state)
{
    struct read_event ev;
    (void)state;

    assert_int_equal(parse("{\"biz\":\"article\",\"id\":7,\"uid\":42,\"ts\":1700000000000}", &ev),
                     0);
    assert_string_equal(ev.item.biz, "article");
    assert_int_equal(ev.item.id, 7);
    assert_int_equal(ev.uid, 42);
    assert_true(ev.ts == 1700000000000LL);
    assert_int_equal(parse("{\"id\":9223372036854775807,\"biz\":\"v\"}", &ev), 0);
    assert_true(ev.item.id == INT64_MAX);
    assert_int_equal(ev.uid, 0);
    /* Fields other producers add are ignored. */
    assert_int_equal(parse("{\"biz\":\"a\",\"id\":1,\"source\":\"app\"}", &ev), 0);
}

static void invalid_messages_say_why(void **state)
{
    static const struct {
        const char *msg;
        int why;
    } bad[] = {
        { "", -1 },
        { "not json", -1 },
        { "[1]", -1 },
        { "{\"biz\":\"a\",\"id\":1,\"id\":2}", -1 },
        { "{\"biz\":\"Article\",\"id\":1}", -2 },
        { "{\"biz\":\"a\",\"id\":0}", -2 },
        { "{\"biz\":\"a\",\"id\":\"1\"}", -2 },
        { "{\"biz\":\"a\"}", -2 },
        { "{\"id\":1}", -2 },
        { "{\"biz\":\"a\",\"id\":1,\"uid\":0}", -3 },
        { "{\"biz\":\"a\",\"id\":1,\"uid\":1.5}", -3 },
        { "{\"biz\":\"a\",\"id\":1,\"ts\":-1}", -3 },
    };
    struct read_event ev;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (parse(bad[i].msg, &ev) != bad[i].why)
            fail_msg("'%s' did not give %d", bad[i].msg, bad[i].why);
}

static int parse_course(const char *s, struct read_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    return bus_kafka_parse_course(s, strlen(s), "article", ev);
}

/* format=course: {"aid","uid"} of the URL's biz; tally's own messages still read. */
static void course_messages(void **state)
{
    static const struct {
        const char *msg;
        int why;
    } bad[] = {
        { "", -1 },
        { "[1]", -1 },
        { "{\"aid\":1,\"aid\":2}", -1 },
        { "{\"aid\":0,\"uid\":1}", -2 },
        { "{\"aid\":\"7\",\"uid\":1}", -2 },
        { "{\"aid\":null}", -2 },
        { "{\"uid\":1}", -2 }, /* no aid: tally's format, which has no biz */
        { "{\"aid\":1,\"uid\":-4}", -3 },
        { "{\"aid\":1,\"uid\":1.5}", -3 },
    };
    struct read_event ev;
    (void)state;

    assert_int_equal(parse_course("{\"aid\":7,\"uid\":42}", &ev), 0);
    assert_string_equal(ev.item.biz, "article");
    assert_int_equal(ev.item.id, 7);
    assert_int_equal(ev.uid, 42);
    assert_true(ev.ts == 0); /* the broker's timestamp is used */
    /* uid 0 (a Go producer's zero value) or none: anonymous; other fields ignored. */
    assert_int_equal(parse_course("{\"aid\":9,\"uid\":0,\"biz\":\"video\",\"ts\":5}", &ev), 0);
    assert_string_equal(ev.item.biz, "article");
    assert_int_equal(ev.uid, 0);
    assert_true(ev.ts == 0);
    assert_int_equal(parse_course("{\"aid\":9223372036854775807}", &ev), 0);
    assert_true(ev.item.id == INT64_MAX);
    /* tallyd's own producer writes its format to the same topic. */
    assert_int_equal(parse_course("{\"biz\":\"video\",\"id\":3,\"uid\":2}", &ev), 0);
    assert_string_equal(ev.item.biz, "video");
    assert_int_equal(ev.item.id, 3);
    /* Without format=course, a course message is not a read. */
    assert_int_equal(parse("{\"aid\":7,\"uid\":42}", &ev), -2);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (parse_course(bad[i].msg, &ev) != bad[i].why)
            fail_msg("'%s' did not give %d", bad[i].msg, bad[i].why);
}

static void format_round_trips(void **state)
{
    struct read_event in = { .item = { "video", 12 }, .uid = 3, .ts = 99 }, out;
    struct strbuf sb = STRBUF_INIT;
    (void)state;

    bus_kafka_format(&sb, &in);
    assert_string_equal(sb.buf, "{\"biz\":\"video\",\"id\":12,\"uid\":3,\"ts\":99}");
    assert_int_equal(parse(sb.buf, &out), 0);
    assert_int_equal(out.item.id, 12);
    assert_int_equal(out.uid, 3);
    strbuf_release(&sb);
}

static void urls(void **state)
{
    static const char *const bad[] = {
        "kafka://", "kafka:///t", "kafka://h:1/t?group=", "kafka://h:1/t?x=1",
        "kafka://h:1/bad topic", "kafka://h:1/t?session_timeout_ms=5", "kafka://h o:1/t",
        /* security: only what librdkafka is meant to get, consistent, never quoted back */
        "kafka://u:pw-7@h:1/t",
        "kafka://h:1/t?security.protocol=SASL_PLAINTEXT&sasl.username=u",
        "kafka://h:1/t?sasl.username=u&sasl.password=pw-7",
        "kafka://h:1/t?security.protocol=SASL_PLAINTEXT&sasl.username=u&sasl.password=pw-7"
        "&sasl.mechanism=GSSAPI",
        "kafka://h:1/t?security.protocol=TLS",
        "kafka://h:1/t?security.protocol=PLAINTEXT&ssl.ca.location=/etc/hostname",
        "kafka://h:1/t?security.protocol=SSL&ssl.ca.location=/nonexistent/ca.pem",
        "kafka://h:1/t?security.protocol=SASL_SSL&sasl.username=u&sasl.password=pw-7"
        "&sasl.jaas.config=x",
        /* the course's format, and the topic tallyd creates */
        "kafka://h:1/t?format=course", "kafka://h:1/t?format=json&biz=a",
        "kafka://h:1/t?biz=article", "kafka://h:1/t?format=tally&biz=article",
        "kafka://h:1/t?format=course&biz=Article", "kafka://h:1/t?format=course&biz=",
        "kafka://h:1/t?partitions=0", "kafka://h:1/t?partitions=10001",
        "kafka://h:1/t?partitions=six", "kafka://h:1/t?replication=0",
        "kafka://h:1/t?replication=-1", "kafka://h:1/t?replication=33",
    };
    static const char *const good[] = {
        "kafka://h:1/t?security.protocol=SASL_PLAINTEXT&sasl.mechanism=PLAIN"
        "&sasl.username=u&sasl.password=pw-7",
        "kafka://h:1/t?security.protocol=sasl_ssl&sasl.mechanism=SCRAM-SHA-512"
        "&sasl.username=u&sasl.password=pw-7&ssl.ca.location=/etc/hostname",
        "kafka://[::1]:1,h:2/t?security.protocol=SSL",
        "kafka://h:1/read_article?format=course&biz=article&partitions=12&replication=3",
        "kafka://h:1/t?format=tally&partitions=1",
    };
    char *err = NULL;
    (void)state;

    assert_int_equal(bus_check_url("kafka://127.0.0.1:19092/tally.reads?group=g", &err), 0);
    assert_int_equal(bus_check_url("kafka://a:1,b:2/", &err), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (bus_check_url(bad[i], &err) == 0)
            fail_msg("%s was accepted", bad[i]);
        assert_non_null(strstr(err, "invalid --bus"));
        assert_null(strstr(err, "pw-7"));
        free(err);
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (bus_check_url(good[i], &err) != 0)
            fail_msg("%s was refused: %s", good[i], err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_messages),
        cmocka_unit_test(invalid_messages_say_why),
        cmocka_unit_test(course_messages),
        cmocka_unit_test(format_round_trips),
        cmocka_unit_test(urls),
    };
    return cmocka_run_group_tests_name("kafka_format", tests, NULL, NULL);
}
