/*
 * test_auth.c - the keys file: taken whole or not at all, at start (auth_new) as on a
 * reload (auth_reload); a refused reload leaves the keys in force and is counted in
 * tally_keys_reload_failures_total.
 */
#include "unit.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#include "http/auth.h"
#include "util/error.h"
#include "util/metrics.h"
#include "util/strbuf.h"

#define OPS "token-of-ops" /* the token of the key "ops read,write" */

/* Each way a keys file is refused, and a piece of the one-line reason. */
enum { EMPTY, COMMENTS, DIRECTORY, TWO_NAMES, MALFORMED, NREFUSALS };
static const struct {
    const char *what, *err;
} refusals[NREFUSALS] = {
    [EMPTY] = {"empty", ": no keys"},
    [COMMENTS] = {"comments only", ": no keys"},
    [DIRECTORY] = {"a directory", "Is a directory"},
    [TWO_NAMES] = {"one token, two names", ":3: the same token"},
    [MALFORMED] = {"a malformed line", ":3: expected NAME SCOPES SHA256HEX"},
};

/* Appends the keys-file line of token as tallyctl key makes it. */
static void key_line(struct strbuf *sb, const char *name, const char *scopes, const char *token)
{
    unsigned char hash[32];
    unsigned int len = 0;

    assert_true(EVP_Digest(token, strlen(token), hash, &len, EVP_sha256(), NULL));
    strbuf_addf(sb, "%s %s ", name, scopes);
    for (unsigned i = 0; i < len; i++)
        strbuf_addf(sb, "%02x", hash[i]);
    strbuf_addch(sb, '\n');
}

/* Replaces whatever is at path (a file or an empty directory) with a file holding text. */
static void put_file(const char *path, const char *text)
{
    FILE *f;

    unlink(path);
    rmdir(path);
    assert_non_null(f = fopen(path, "wb"));
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    fclose(f);
}

/* Puts refusal i at path; where a line is at fault, the good key comes first. */
static void put_refusal(const char *path, int i)
{
    struct strbuf sb = STRBUF_INIT;

    key_line(&sb, "ops", "read,write", OPS);
    if (i == TWO_NAMES) {
        strbuf_addstr(&sb, "# the same token again, as admin\n");
        key_line(&sb, "root", "admin", OPS);
    } else if (i == MALFORMED) {
        strbuf_addstr(&sb, "\nsvc read,sudo 00\n");
    } else {
        strbuf_reset(&sb);
        strbuf_addstr(&sb, i == COMMENTS ? "# tally API keys\n\n   \n# none yet\n" : "");
    }
    put_file(path, sb.buf);
    if (i == DIRECTORY) {
        unlink(path);
        assert_int_equal(mkdir(path, 0700), 0);
    }
    strbuf_release(&sb);
}

/* err is one line naming the file, holds the reason, and never a hash. */
static void check_reason(const char *path, int i, const char *err)
{
    if (!err || !strstr(err, path) || !strstr(err, refusals[i].err) || strchr(err, '\n'))
        fail_msg("%s: expected '%s' naming %s, got %s", refusals[i].what, refusals[i].err, path,
                 err);
    for (const char *p = err; *p; p++)
        if (strspn(p, "0123456789abcdef") >= 64)
            fail_msg("%s: the reason shows a hash: %s", refusals[i].what, err);
}

/* Whether token authenticates with scope among its scopes. */
static bool allowed(struct auth *a, const char *token, unsigned scope)
{
    struct auth_principal who;
    struct strbuf h = STRBUF_INIT;
    bool ok;

    strbuf_addf(&h, "Bearer %s", token);
    ok = auth_check(a, h.buf, NULL, &who) == 0 && (who.scopes & scope);
    strbuf_release(&h);
    return ok;
}

static int64_t failures(void)
{
    return metric_value(metrics_counter("tally_keys_reload_failures_total", "", ""));
}

static void refused_at_start(void **state)
{
    char *path = unit_temp_db();
    (void)state;

    for (int i = 0; i < NREFUSALS; i++) {
        struct auth *a = NULL;
        char *err = NULL;

        put_refusal(path, i);
        assert_int_equal(auth_new(&(struct auth_config){.keys_path = path}, &a, &err),
                         TALLY_EINVAL);
        assert_null(a);
        check_reason(path, i, err);
        free(err);
    }
    rmdir(path);
    free(path);
}

static void a_refused_reload_keeps_the_keys_in_force(void **state)
{
    char *path = unit_temp_db();
    struct strbuf more = STRBUF_INIT;
    struct auth *a = NULL;
    char *err = NULL;
    int64_t before = failures();
    size_t n = 0;
    (void)state;

    key_line(&more, "ops", "read,write", OPS);
    put_file(path, more.buf);
    assert_int_equal(auth_new(&(struct auth_config){.keys_path = path}, &a, &err), 0);
    for (int i = 0; i < NREFUSALS; i++) {
        put_refusal(path, i);
        assert_int_equal(auth_reload(a, &n, &err), TALLY_EINVAL);
        check_reason(path, i, err);
        free(err);
        err = NULL;
        assert_int_equal(failures(), before + i + 1);
        if (!allowed(a, OPS, AUTH_WRITE) || allowed(a, OPS, AUTH_ADMIN))
            fail_msg("%s: the keys in force changed", refusals[i].what);
    }
    /* A good file again: taken whole, its keys counted, no failure added. */
    key_line(&more, "scraper", "metrics", "token-of-scraper");
    put_file(path, more.buf);
    assert_int_equal(auth_reload(a, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(failures(), before + NREFUSALS);
    assert_true(allowed(a, "token-of-scraper", AUTH_METRICS) && allowed(a, OPS, AUTH_WRITE));
    auth_free(a);
    unlink(path);
    strbuf_release(&more);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(refused_at_start),
        cmocka_unit_test(a_refused_reload_keeps_the_keys_in_force),
    };
    return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
