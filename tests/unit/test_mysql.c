/*
 * test_mysql.c - what the MySQL store's URL means: its check, the way
 * messages name a server, and the one connection set-up that the store and
 * tallyctl's course import share (store_mysql_connect). The TLS test needs
 * TALLY_TEST_MYSQL (set by `make test`: scripts/services.sh requires TLS of
 * the tally user) and is skipped without it.
 */
#include "unit.h"

#include <mysql.h>

#include "store/mysql.h"
#include "util/error.h"
#include "util/strbuf.h"
#include "util/url.h"

/* One URL: NULL err for a URL the store takes, else a piece of the reason. */
static const struct {
    const char *url, *err;
} check_cases[] = {
    {"mysql://tally:pw@127.0.0.1:3306/tally", NULL},
    {"mysql://tally@h/tally", NULL},
    {"mysql://tally:p%2Fw%40x@h/tally?pool=2&ssl=1", NULL},
    {"mysql://tally:pw@h/tally?ssl=0", NULL},
    {"mysql://tally:pw@h/tally?ssl=1&ssl_ca=/dev/null", NULL},
    {"mysql://tally:pw@h/tally?ssl_ca=/dev/null", "ssl_ca needs ssl=1"},
    {"mysql://tally:pw@h/tally?ssl=1&ssl_ca=/nonexistent/ca.pem", "cannot be read"},
    {"mysql://tally:pw@h/tally?ssl=yes", "ssl takes 0 or 1"},
    {"mysql://tally:pw@h/tally?pool=1025", "pool=N"},
    {"mysql://tally:pw@h/tally?sslca=x", "unknown option 'sslca'"},
    {"mysql://tally:pw@h/", "expected mysql://"},
    {"mysql://:pw@h/tally", "expected mysql://"},
    {"mysql://tally:pw@a,b/tally", "expected mysql://"},
    {"mysql://tally:pw@h/a/b", "one database name"},
};

static void check_takes_what_the_store_takes(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(check_cases) / sizeof(check_cases[0]); i++) {
        struct url u;
        char *err = NULL;
        int rc = url_parse_checked("--store", check_cases[i].url, store_mysql_check, &u, &err);

        if (!check_cases[i].err && rc != 0)
            fail_msg("'%s' refused: %s", check_cases[i].url, err);
        if (check_cases[i].err && (rc != TALLY_EINVAL || !strstr(err, check_cases[i].err)))
            fail_msg("'%s': expected '%s', got %d (%s)", check_cases[i].url,
                     check_cases[i].err, rc, err ? err : "no reason");
        if (err && strstr(err, "pw@"))
            fail_msg("'%s': the reason shows the password: %s", check_cases[i].url, err);
        free(err);
        url_release(&u);
    }
}

static void where_names_the_server_without_the_password(void **state)
{
    static const char *const cases[][2] = {
        {"mysql://tally:s3cret@127.0.0.1:3307/db?ssl=1", "tally@127.0.0.1:3307/db (TLS)"},
        {"mysql://tally:s3cret@h/db", "tally@h:3306/db"},
        {"mysql://u%40x:s3cret@[::1]/db?ssl=0", "u@x@::1:3306/db"},
        {"mysql://tally:@h/db", "tally@h:3306/db"},
        {"mysql://s3cret@h/db", "***@h:3306/db"}, /* a password written where the user goes */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct url u;
        const char *why;
        char *w;

        assert_int_equal(url_parse(cases[i][0], strlen(cases[i][0]), &u, &why), 0);
        w = store_mysql_where(&u);
        assert_string_equal(w, cases[i][1]);
        free(w);
        url_release(&u);
    }
}

/* store_mysql_connect on url: its code, and *err (freed) must not hold "s3cret". */
static int connect_once(const char *url, const char *want_in_err)
{
    struct url u;
    const char *why;
    char *err = NULL;
    MYSQL *db = NULL;
    int rc;

    assert_int_equal(url_parse(url, strlen(url), &u, &why), 0);
    rc = store_mysql_connect(&u, 2, &db, &err);
    assert_null(db);
    assert_non_null(err);
    if (want_in_err && !strstr(err, want_in_err))
        fail_msg("'%s': expected '%s' in '%s'", url, want_in_err, err);
    assert_null(strstr(err, "s3cret"));
    free(err);
    url_release(&u);
    return rc;
}

static void connect_checks_the_url_and_reports_an_unreachable_server(void **state)
{
    (void)state;
    assert_int_equal(connect_once("mysql://tally:s3cret@127.0.0.1:1/db?ssl_ca=/dev/null",
                                  "ssl_ca needs ssl=1"),
                     TALLY_EINVAL);
    assert_int_equal(connect_once("mysql://tally:s3cret@127.0.0.1:1/db", "127.0.0.1"),
                     TALLY_EUNAVAIL);
    assert_int_equal(connect_once("mysql://tally:s3cret@127.0.0.1:1/db?ssl=1&ssl_ca=/dev/null",
                                  NULL),
                     TALLY_EUNAVAIL);
}

/*
 * A user given without a password (a password in the wrong place): the server's refusal,
 * "Access denied for user '...'", must not name it. Needs TALLY_TEST_MYSQL.
 */
static void connect_hides_a_user_given_without_a_password(void **state)
{
    const char *url = getenv("TALLY_TEST_MYSQL"), *q, *at;
    struct strbuf sb = STRBUF_INIT;
    (void)state;

    if (!url) {
        skip();
        return;
    }
    q = strchr(url, '?');
    at = memrchr(url, '@', q ? (size_t)(q - url) : strlen(url));
    assert_non_null(at);
    strbuf_addf(&sb, "mysql://s3cret%s", at);
    assert_int_equal(connect_once(sb.buf, NULL), TALLY_EUNAVAIL);
    strbuf_release(&sb);
}

/* The test server's URL with ssl=1 and its CA: the connection is TLS, as the store's is. */
static void connect_uses_tls_as_the_url_says(void **state)
{
    const char *url = getenv("TALLY_TEST_MYSQL");
    struct url u;
    const char *why;
    char *err = NULL;
    MYSQL *db = NULL;
    MYSQL_RES *res;
    MYSQL_ROW row;
    (void)state;

    if (!url || !strstr(url, "ssl_ca=")) {
        skip();
        return;
    }
    assert_int_equal(url_parse(url, strlen(url), &u, &why), 0);
    if (store_mysql_connect(&u, 5, &db, &err))
        fail_msg("connect: %s", err);
    assert_int_equal(mysql_query(db, "SHOW STATUS LIKE 'Ssl_cipher'"), 0);
    assert_non_null(res = mysql_store_result(db));
    assert_non_null(row = mysql_fetch_row(res));
    assert_true(row[1] && *row[1]);
    mysql_free_result(res);
    mysql_close(db);
    url_release(&u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(check_takes_what_the_store_takes),
        cmocka_unit_test(where_names_the_server_without_the_password),
        cmocka_unit_test(connect_checks_the_url_and_reports_an_unreachable_server),
        cmocka_unit_test(connect_uses_tls_as_the_url_says),
        cmocka_unit_test(connect_hides_a_user_given_without_a_password),
    };
    return cmocka_run_group_tests_name("mysql", tests, NULL, NULL);
}
