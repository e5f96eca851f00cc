/*
 * test_jwks.c - users' token keys: base64url, which key a kid selects (jwks_find), what a
 * reload says it loaded, and reloads of a JWKS while other threads verify tokens (run under
 * TSan too): a check under way never loses its key, and a key both sets hold never fails.
 */
#include "unit.h"

#include <jwt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "http/auth.h"
#include "http/jwks.h"
#include "util/base64url.h"
#include "util/error.h"
#include "util/log.h"
#include "util/strbuf.h"

/* Two HS256 secrets of 32 bytes, and their base64url for a JWKS's k. */
#define SECRET_A "0123456789abcdef0123456789abcdef"
#define SECRET_B "fedcba9876543210fedcba9876543210"
#define K_A      "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"
#define K_B      "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA"

static void put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    fclose(f);
}

static void base64url(void **state)
{
    unsigned char out[8];
    (void)state;

    assert_int_equal(base64url_decode("QUI", 3, out, sizeof(out)), 2);
    assert_memory_equal(out, "AB", 2);
    assert_int_equal(base64url_decode("-_8", 3, out, 2), 2); /* fits exactly */
    assert_memory_equal(out, "\xfb\xff", 2);
    assert_int_equal(base64url_decode("QUI", 3, out, 1), -1);   /* does not fit */
    assert_int_equal(base64url_decode("", 0, out, sizeof(out)), -1);
    assert_int_equal(base64url_decode("Q", 1, out, sizeof(out)), -1);  /* no whole byte */
    assert_int_equal(base64url_decode("QQ==", 4, out, sizeof(out)), -1); /* padding */
    assert_int_equal(base64url_decode("+/8", 3, out, sizeof(out)), -1);  /* base64's alphabet */
    assert_int_equal(base64url_decode("Q UI", 4, out, sizeof(out)), -1);
}

static void kids(void **state)
{
    const char *two = "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"" K_A "\"},"
                      "{\"kty\":\"oct\",\"kid\":\"b\",\"alg\":\"HS256\",\"k\":\"" K_B "\"}]}";
    const char *one = "\n  {\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"" K_A "\"}]}";
    struct strbuf what = STRBUF_INIT;
    struct jwks *ks = NULL;
    char *err = NULL;
    (void)state;

    assert_int_equal(jwks_parse("two", two, strlen(two), false, &ks, &err), 0);
    assert_true(ks->by_kid && ks->n == 2);
    assert_ptr_equal(jwks_find(ks, "a"), &ks->keys[0]);
    assert_ptr_equal(jwks_find(ks, "b"), &ks->keys[1]);
    assert_int_equal(ks->keys[1].key_len, 32);
    assert_memory_equal(ks->keys[1].key, SECRET_B, 32);
    assert_null(jwks_find(ks, "c"));
    assert_null(jwks_find(ks, NULL)); /* several keys: a token must name one */
    jwks_describe(ks, &what);
    assert_string_equal(what.buf, "2 keys from a JWKS (kids: a HS256, b HS256)");
    jwks_free(ks);

    assert_int_equal(jwks_parse("one", one, strlen(one), false, &ks, &err), 0);
    assert_ptr_equal(jwks_find(ks, NULL), &ks->keys[0]); /* the only key */
    assert_null(jwks_find(ks, "b"));
    jwks_free(ks);

    /* A secret file: one key, whatever the kid; its line ends are not part of it. */
    assert_int_equal(jwks_parse("s", SECRET_A "\r\n", 34, true, &ks, &err), 0);
    assert_true(!ks->by_kid && ks->keys[0].key_len == 32);
    assert_ptr_equal(jwks_find(ks, "any"), &ks->keys[0]);
    assert_ptr_equal(jwks_find(ks, NULL), &ks->keys[0]);
    strbuf_reset(&what);
    jwks_describe(ks, &what);
    assert_string_equal(what.buf, "one HS256 key (secret)");
    jwks_free(ks);
    jwks_free(NULL);

    assert_true(jwks_kid_ok("2026-01", 7) && jwks_kid_ok("a/b+c=", 6));
    assert_false(jwks_kid_ok("", 0) || jwks_kid_ok("a b", 3) || jwks_kid_ok("a\"", 2) ||
                 jwks_kid_ok("a\\", 2) || jwks_kid_ok("\xc3\xa9", 2));
    assert_false(jwks_kid_ok("0123456789012345678901234567890123456789012345678901234567890123"
                             "4", 65));
    /* Errors name the file and the key, never the secret. */
    assert_int_equal(jwks_parse("f", "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"QUJD\"}]}",
                                45, false, &ks, &err), TALLY_EINVAL);
    assert_string_equal(err, "'f': keys[0] (kid \"a\"): an HS256 secret must be at least 32 bytes");
    free(err);
    strbuf_release(&what);
}

/* An HS256 token for uid sub, signed with secret and naming kid. The caller frees it. */
static char *token(const char *secret, const char *kid, long sub)
{
    jwt_t *jwt = NULL;
    char subs[24], *t;

    snprintf(subs, sizeof(subs), "%ld", sub);
    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, 32), 0);
    assert_int_equal(jwt_add_header(jwt, "kid", kid), 0);
    assert_int_equal(jwt_add_grant(jwt, "sub", subs), 0);
    assert_int_equal(jwt_add_grant_int(jwt, "exp", (long)time(NULL) + 600), 0);
    assert_non_null(t = jwt_encode_str(jwt));
    jwt_free(jwt);
    return t;
}

struct verifier {
    struct auth *a;
    const char *secret, *kid;
    long first;
    bool good; /* whether its tokens should pass */
    atomic_bool *stop;
    atomic_int checked, failed;
};

/* Verifies new tokens (each a new sub, so none is remembered) until told to stop. */
static void *verify_loop(void *arg)
{
    struct verifier *v = arg;

    for (long sub = v->first; !atomic_load(v->stop); sub++) {
        struct auth_principal who;
        struct strbuf h = STRBUF_INIT;
        char *t = token(v->secret, v->kid, sub);

        strbuf_addf(&h, "Bearer %s", t);
        if ((auth_verify(v->a, h.buf, NULL, &who) == 0 && who.uid == sub) != v->good)
            v->failed++;
        v->checked++;
        strbuf_release(&h);
        free(t);
    }
    return NULL;
}

static void reload_while_verifying(void **state)
{
    const char *ab = "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"" K_A "\"},"
                     "{\"kty\":\"oct\",\"kid\":\"b\",\"k\":\"" K_B "\"}]}";
    const char *ba = "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"b\",\"k\":\"" K_B "\"},"
                     "{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"" K_A "\"}]}";
    char *path = unit_temp_db();
    atomic_bool stop = false;
    /* The third one's kid is in neither set: refused, counted and logged from its thread. */
    struct verifier v[3] = {
        {.secret = SECRET_A, .kid = "a", .first = 1, .good = true, .stop = &stop},
        {.secret = SECRET_B, .kid = "b", .first = 1000000000, .good = true, .stop = &stop},
        {.secret = SECRET_B, .kid = "c", .first = 2000000000, .good = false, .stop = &stop}};
    pthread_t th[3];
    struct auth *a = NULL;
    char *err = NULL;
    size_t n;
    (void)state;

    log_set_level(LOG_ERROR); /* not a line per reload, nor per refusal */
    put_file(path, ab);
    assert_int_equal(auth_new(&(struct auth_config){.jwt_key = path}, &a, &err), 0);
    for (int i = 0; i < 3; i++) {
        v[i].a = a;
        assert_int_equal(pthread_create(&th[i], NULL, verify_loop, &v[i]), 0);
    }
    /* Every reload frees a set that a verifier may be checking with. */
    for (int i = 0; i < 200 || v[0].checked + v[1].checked < 200; i++) {
        put_file(path, i % 2 ? ab : ba);
        assert_int_equal(auth_reload(a, &n, &err), 0);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(v[0].failed + v[1].failed + v[2].failed, 0);
    auth_free(a);
    unlink(path);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(base64url),
        cmocka_unit_test(kids),
        cmocka_unit_test(reload_while_verifying),
    };
    return cmocka_run_group_tests_name("jwks", tests, NULL, NULL);
}
