/*
 * test_url.c - the adapters' URL parser and its redaction, table-driven
 * (after h2o's t/00unit/lib/common/url.c).
 */
#include "unit.h"

#include "bus/bus.h"
#include "cache/cache.h"
#include "store/store.h"
#include "util/error.h"
#include "util/url.h"

/*
 * One parse. err: a piece of the expected reason, or NULL for a success
 * whose fields must be as given. hosts is "name:port,..." and opts
 * "key=value;..."; user and password NULL mean absent.
 */
struct parse_case {
    const char *in;
    size_t len; /* 0: strlen(in) */
    const char *err;
    const char *scheme, *user, *password, *hosts, *path, *opts;
};

static const struct parse_case parse_cases[] = {
    {"mysql://tally:pw@127.0.0.1:3306/tally?pool=2", 0, NULL, "mysql", "tally", "pw",
     "127.0.0.1:3306", "tally", "pool=2"},
    {"redis://:s3cret@localhost:6379", 0, NULL, "redis", NULL, "s3cret", "localhost:6379", "", ""},
    {"redis://alice:s3cret@h:1", 0, NULL, "redis", "alice", "s3cret", "h:1", "", ""},
    /* empty password, no password */
    {"mysql://u:@h/db", 0, NULL, "mysql", "u", "", "h:0", "db", ""},
    {"mysql://u@h/db", 0, NULL, "mysql", "u", NULL, "h:0", "db", ""},
    /* percent-encoded user and password; a raw '@' in a password */
    {"mysql://u%40x:p%3Aw%2F%25@h/db", 0, NULL, "mysql", "u@x", "p:w/%", "h:0", "db", ""},
    {"mysql://u:p@ss:w/rd@h/db", 0, NULL, "mysql", "u", "p@ss:w/rd", "h:0", "db", ""},
    {"mysql://u:p%zz@h/db", 0, "escape of two hex digits"},
    {"mysql://u:p%4@h/db", 0, "escape of two hex digits"},
    {"mysql://u:p%00@h/db", 0, "NUL"},
    {"redis://@h:1", 0, "nothing before it"},
    /* IPv6 in brackets */
    {"redis://[::1]:6379", 0, NULL, "redis", NULL, NULL, "::1:6379", "", ""},
    {"redis://[fe80::1%25eth0]:1", 0, "malformed IPv6"},
    {"redis://[::1]", 0, NULL, "redis", NULL, NULL, "::1:0", "", ""},
    {"redis://[::1:6379", 0, "closing ']'"},
    {"redis://[]:1", 0, "closing ']'"},
    {"redis://[::1]6379", 0, "after an IPv6"},
    {"redis://[zz]:1", 0, "malformed IPv6"},
    /* ports */
    {"redis://h", 0, NULL, "redis", NULL, NULL, "h:0", "", ""},
    {"redis://h:", 0, "followed by a port"},
    {"redis://h:0", 0, "1..65535"},
    {"redis://h:65535", 0, NULL, "redis", NULL, NULL, "h:65535", "", ""},
    {"redis://h:65536", 0, "1..65535"},
    {"redis://h:-1", 0, "1..65535"},
    {"redis://h:6379x", 0, "1..65535"},
    {"redis://h:0000006379", 0, "1..65535"},
    {"redis://h_o.s-t:1", 0, NULL, "redis", NULL, NULL, "h_o.s-t:1", "", ""},
    {"redis://h!:1", 0, "host name"},
    {"redis://:1", 0, "missing host"},
    {"redis://", 0, "missing host"},
    /* Kafka's host lists */
    {"kafka://a:1,b:2,[::1]:3/topic?group=g", 0, NULL, "kafka", NULL, NULL, "a:1,b:2,::1:3",
     "topic", "group=g"},
    {"kafka://a:1,,b:2/t", 0, "missing host"},
    {"kafka://a:1,/t", 0, "missing host"},
    /* options */
    {"kafka://h:1/t?group=a&group=b", 0, "twice"},
    {"kafka://h:1/t?group=a&", 0, "empty option"},
    {"kafka://h:1/t?", 0, "empty option"},
    {"kafka://h:1/t?group", 0, "KEY=VALUE"},
    {"kafka://h:1/t?=x", 0, "empty name"},
    {"kafka://h:1/t?gr%6Fup=x", 0, "option name"},
    {"kafka://h:1/t?sasl.password=a%26b%3D&x=", 0, NULL, "kafka", NULL, NULL, "h:1", "t",
     "sasl.password=a&b=;x="},
    {"redis://h:1?a=b=c", 0, NULL, "redis", NULL, NULL, "h:1", "", "a=b=c"},
    /* a raw '?' in a password ends the user information: the rest is no longer a port */
    {"mysql://u:p?w@h/db", 0, "1..65535"},
    /* the whole input, trailing junk, bytes that have no place in a URL */
    {"", 0, "empty"},
    {"redis://h:1 ", 0, "space"},
    {"redis://h:1\n", 0, "control"},
    {"redis://h:1\0:2", 13, "NUL"},
    {"://h", 0, "SCHEME"},
    {"1redis://h", 0, "SCHEME"},
    {"re dis://h", 0, "space"},
    /* scheme case, the opaque and bare forms */
    {"MySQL://u:p@h/db", 0, NULL, "mysql", "u", "p", "h:0", "db", ""},
    {"sqlite:/tmp/t.db?mode=x", 0, NULL, "sqlite", NULL, NULL, "", "/tmp/t.db?mode=x", ""},
    {"sqlite:", 0, NULL, "sqlite", NULL, NULL, "", "", ""},
    {"none", 0, NULL, "none", NULL, NULL, "", "", ""},
};

static void describe(const struct url *u, struct strbuf *hosts, struct strbuf *opts)
{
    for (size_t i = 0; i < u->nhosts; i++)
        strbuf_addf(hosts, "%s%s:%d", i ? "," : "", u->hosts[i].name, u->hosts[i].port);
    for (size_t i = 0; i < u->nopts; i++)
        strbuf_addf(opts, "%s%s=%s", i ? ";" : "", u->opts[i].key, u->opts[i].value);
}

static void check_null_or_equal(const char *in, const char *field, const char *want,
                                const char *got)
{
    if (want == got || (want && got && strcmp(want, got) == 0))
        return;
    fail_msg("%s: %s is '%s', expected '%s'", in, field, got ? got : "(null)",
             want ? want : "(null)");
}

static void parses_each_case(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        const struct parse_case *c = &parse_cases[i];
        size_t len = c->len ? c->len : strlen(c->in);
        struct url u;
        const char *why = NULL;
        int rc = url_parse(c->in, len, &u, &why);
        struct strbuf hosts = STRBUF_INIT, opts = STRBUF_INIT;

        if (c->err) {
            if (rc != TALLY_EINVAL || !why || !strstr(why, c->err))
                fail_msg("'%s': expected an error with '%s', got %d (%s)", c->in, c->err, rc,
                         why ? why : "no reason");
            url_release(&u);
            continue;
        }
        if (rc != 0)
            fail_msg("'%s': %s", c->in, why);
        describe(&u, &hosts, &opts);
        check_null_or_equal(c->in, "scheme", c->scheme, u.scheme);
        check_null_or_equal(c->in, "user", c->user, u.user);
        check_null_or_equal(c->in, "password", c->password, u.password);
        check_null_or_equal(c->in, "hosts", c->hosts, hosts.buf);
        check_null_or_equal(c->in, "path", c->path, u.path);
        check_null_or_equal(c->in, "options", c->opts, opts.buf);
        strbuf_release(&hosts);
        strbuf_release(&opts);
        url_release(&u);
    }
}

static void length_limit(void **state)
{
    struct strbuf sb = STRBUF_INIT;
    struct url u;
    const char *why;
    (void)state;

    strbuf_addstr(&sb, "redis://h:1?x=");
    while (sb.len < URL_MAX)
        strbuf_addch(&sb, 'a');
    assert_int_equal(url_parse(sb.buf, sb.len, &u, &why), 0);
    assert_int_equal(strlen(url_option(&u, "x")), URL_MAX - strlen("redis://h:1?x="));
    url_release(&u);
    strbuf_addch(&sb, 'a');
    assert_int_equal(url_parse(sb.buf, sb.len, &u, &why), TALLY_EINVAL);
    assert_non_null(strstr(why, "longer than"));
    url_release(&u);
    strbuf_release(&sb);
}

static void options_are_checked_against_a_list(void **state)
{
    static const char *const known[] = {"group", "session_timeout_ms", NULL};
    static const char *const none[] = {NULL};
    struct url u;
    const char *why;
    char *err = NULL;
    (void)state;

    assert_int_equal(url_parse("kafka://h:1/t?group=g&sasl.pasword=x", 36, &u, &why), 0);
    assert_string_equal(url_option(&u, "group"), "g");
    assert_null(url_option(&u, "nope"));
    assert_int_equal(url_check_options(&u, known, &err), TALLY_EINVAL);
    assert_string_equal(err,
                        "unknown option 'sasl.pasword' (known: group, session_timeout_ms)");
    free(err);
    assert_int_equal(url_check_options(&u, none, &err), TALLY_EINVAL);
    assert_string_equal(err, "unknown option 'group' (it takes none)");
    free(err);
    url_release(&u);
    assert_int_equal(url_parse("kafka://h:1/t?group=g", 21, &u, &why), 0);
    assert_int_equal(url_check_options(&u, known, &err), 0);
    url_release(&u);
}

static const char *const redact_cases[][2] = {
    {"mysql://tally:pw@127.0.0.1:3306/tally?pool=2", "mysql://tally:***@127.0.0.1:3306/tally?pool=2"},
    {"redis://:pw@h:1", "redis://:***@h:1"},
    {"redis://user:@h:1", "redis://user:***@h:1"},
    {"redis://user@h:1", "redis://***@h:1"}, /* see hides_a_user_without_a_password */
    {"mysql://u:p@ss@h/db", "mysql://u:***@h/db"},
    {"mysql://u:p%40ss@h/db", "mysql://u:***@h/db"},
    {"kafka://h:1/t?group=g&sasl.password=pw&sasl.username=me@x",
     "kafka://h:1/t?group=g&sasl.password=***&sasl.username=me@x"},
    {"kafka://h:1/t?password=a&x_token=b&SECRET=c&ssl.key.password=d&passwd=e&group=f",
     "kafka://h:1/t?password=***&x_token=***&SECRET=***&ssl.key.password=***&passwd=***&group=f"},
    /* not parseable: everything up to the last '@' goes */
    {"mysql://u:p?w@h/db", "mysql://***@h/db"},
    {"mysql://u:pw@h/db bad", "mysql://***@h/db bad"},
    {"mysql:/u:pw@h/db", "mysql:***@h/db"},
    {"u:pw@h", "u:***@h"},
    {"kafka://h:1/t?sasl.password=a&b", "kafka://h:1/t?sasl.password=***"},
    {"kafka://h:1/t?group=&&password=x&y", "kafka://h:1/t?group=&&password=***"},
    /* nothing secret */
    {"sqlite:tally.db", "sqlite:tally.db"},
    {"none", "none"},
    {"", ""},
    {"kafka://a:1,b:2/t?group=g", "kafka://a:1,b:2/t?group=g"},
};

static void redacts_each_case(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(redact_cases) / sizeof(redact_cases[0]); i++) {
        struct strbuf sb = STRBUF_INIT;

        url_redact(&sb, redact_cases[i][0]);
        if (strcmp(sb.buf, redact_cases[i][1]) != 0)
            fail_msg("'%s' redacted to '%s', expected '%s'", redact_cases[i][0], sb.buf,
                     redact_cases[i][1]);
        strbuf_release(&sb);
    }
}

/*
 * A password written where the user goes (no ':' before the '@'), for each scheme that takes
 * credentials: hidden in the URL as shown, and in the error its adapter's check leads to
 * (mysql's takes it, so an unknown option is added to make one). sqlite: has no user.
 */
static void hides_a_user_without_a_password(void **state)
{
    static const struct {
        const char *url, *shown;
        int (*check)(const struct url *, char **);
    } cases[] = {
        {"mysql://SECRET@h/db?nope=1", "mysql://***@h/db?nope=1", store_check},
        {"mysql://SEC%40RET@h:3306/db?nope=1", "mysql://***@h:3306/db?nope=1", store_check},
        {"redis://SECRET@h:1", "redis://***@h:1", cache_check},
        {"kafka://SECRET@h:1/t", "kafka://***@h:1/t", bus_check},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct strbuf sb = STRBUF_INIT;
        struct url u;
        char *err = NULL;

        url_redact(&sb, cases[i].url);
        if (strcmp(sb.buf, cases[i].shown) != 0)
            fail_msg("'%s' redacted to '%s'", cases[i].url, sb.buf);
        assert_int_equal(url_parse_checked("--x", cases[i].url, cases[i].check, &u, &err),
                         TALLY_EINVAL);
        if (strstr(err, "SEC") || !strstr(err, cases[i].shown))
            fail_msg("'%s': the error shows the user: %s", cases[i].url, err);
        free(err);
        url_release(&u);
        strbuf_release(&sb);
    }
}

/* A check that takes any URL with a host, as an adapter's would. */
static int needs_host(const struct url *u, char **why)
{
    if (u->nhosts)
        return 0;
    *why = strdup("expected a host");
    return TALLY_EINVAL;
}

/* Writes data into a fresh file under $TMPDIR; returns its path (caller frees). */
static char *temp_file(const char *data, size_t len)
{
    char *path = unit_temp_db();
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    return path;
}

static void flag_values_and_at_files(void **state)
{
#define TEMP(literal) temp_file(literal, sizeof(literal) - 1)
    char *ok = TEMP("mysql://u:p%2Fw@h/db?ssl=1\r\n\n"), *empty = TEMP("\n");
    char *nul = TEMP("redis://h\0:1"), *bad = TEMP("mysql://u:hunter2@/db");
#undef TEMP
    char *arg = NULL, *text = NULL, *err = NULL;
    struct url u;
    (void)state;

    /* the URL itself: no text, parsed and checked */
    assert_int_equal(url_parse_arg("--store", "redis://:pw@h:1", needs_host, &u, &text, &err), 0);
    assert_null(text);
    assert_string_equal(u.password, "pw");
    url_release(&u);
    assert_int_equal(url_parse_arg("--store", "sqlite:x:pw@y", needs_host, &u, &text, &err),
                     TALLY_EINVAL);
    assert_string_equal(err, "invalid --store 'sqlite:***@y': expected a host");
    free(err);
    url_release(&u);
    /* @PATH: the file's contents, newlines trimmed, handed back in text */
    arg = xstrfmt("@%s", ok);
    assert_int_equal(url_parse_arg("--from", arg, needs_host, &u, &text, &err), 0);
    assert_string_equal(text, "mysql://u:p%2Fw@h/db?ssl=1");
    assert_string_equal(u.password, "p/w");
    assert_string_equal(url_option(&u, "ssl"), "1");
    free(text);
    url_release(&u);
    assert_int_equal(url_parse_arg("--from", arg, needs_host, &u, NULL, &err), 0);
    url_release(&u);
    free(arg);
    /* a bad URL in a file is shown redacted; a bad file is named */
    arg = xstrfmt("@%s", bad);
    assert_int_equal(url_parse_arg("--from", arg, needs_host, &u, NULL, &err), TALLY_EINVAL);
    assert_string_equal(err, "invalid --from 'mysql://***@/db': missing host");
    free(err);
    url_release(&u);
    free(arg);
    for (char **f = (char *[]){empty, nul, NULL}; *f; f++) {
        arg = xstrfmt("@%s", *f);
        assert_int_equal(url_parse_arg("--cache", arg, needs_host, &u, &text, &err),
                         TALLY_EINVAL);
        assert_null(text);
        assert_non_null(strstr(err, *f));
        assert_non_null(strstr(err, *f == empty ? "is empty" : "holds a NUL byte"));
        free(err);
        url_release(&u);
        free(arg);
    }
    assert_int_equal(url_parse_arg("--cache", "@/nonexistent/url", needs_host, &u, &text, &err),
                     TALLY_EINVAL);
    assert_string_equal(err, "cannot read the --cache file '/nonexistent/url': No such file or"
                             " directory");
    free(err);
    url_release(&u);
    for (char **f = (char *[]){ok, empty, nul, bad, NULL}; *f; f++) {
        unlink(*f);
        free(*f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_each_case),
        cmocka_unit_test(length_limit),
        cmocka_unit_test(options_are_checked_against_a_list),
        cmocka_unit_test(redacts_each_case),
        cmocka_unit_test(hides_a_user_without_a_password),
        cmocka_unit_test(flag_values_and_at_files),
    };
    return cmocka_run_group_tests_name("url", tests, NULL, NULL);
}
