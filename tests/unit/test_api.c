/*
 * test_api.c - routing, validation and JSON of the v1 API, without sockets.
 */
#include "unit.h"

#include "bus/local.h"
#include "cache/cache.h"
#include "http/api.h"
#include "store/store.h"

struct fixture {
    char *path;
    struct store *s;
    struct cache *c;
    struct bus *b;
    struct interactive svc;
    struct api_response res;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char url[256], *err = NULL;

    f->path = unit_temp_db();
    snprintf(url, sizeof(url), "sqlite:%s", f->path);
    assert_int_equal(store_open(url, &f->s, &err), 0);
    assert_int_equal(cache_open("none", &f->c, &err), 0);
    f->b = bus_local_new(2);
    interactive_init(&f->svc, f->s, f->c, f->b);
    api_response_init(&f->res);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    api_response_release(&f->res);
    bus_free(f->b);
    cache_free(f->c);
    store_free(f->s);
    unit_remove_db(f->path);
    free(f);
    return 0;
}

/* Sends one request; returns the status. The body is in f->res.body. */
static int call(struct fixture *f, enum api_method m, const char *target, const char *body)
{
    char path[512];
    const char *q = strchr(target, '?');
    struct api_request req = { .method = m, .path = path, .body = body ? body : "",
                               .body_len = body ? strlen(body) : 0 };

    snprintf(path, sizeof(path), "%.*s", q ? (int)(q - target) : (int)strlen(target), target);
    req.query = q ? q + 1 : NULL;
    api_response_release(&f->res);
    api_response_init(&f->res);
    api_handle(&f->svc, &req, &f->res);
    return f->res.status;
}

#define BODY (f->res.body.buf)

static void item_state_shape(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(call(f, API_GET, "/v1/items/article/7", NULL), 200);
    assert_string_equal(BODY, "{\"biz\":\"article\",\"id\":7,\"read_cnt\":0,\"like_cnt\":0,"
                              "\"collect_cnt\":0,\"liked\":false,\"collected\":false}");
    assert_int_equal(call(f, API_PUT, "/v1/users/42/likes/article/7", NULL), 200);
    assert_non_null(strstr(BODY, "\"like_cnt\":1,"));
    assert_non_null(strstr(BODY, "\"liked\":true"));
    assert_int_equal(call(f, API_GET, "/v1/items/article/7?uid=42", NULL), 200);
    assert_non_null(strstr(BODY, "\"liked\":true"));
    assert_int_equal(call(f, API_HEAD, "/v1/items/article/7", NULL), 200);
}

static void batch_keeps_order_and_decodes(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(call(f, API_GET, "/v1/items/article?ids=3%2C1,3&uid=5", NULL), 200);
    assert_non_null(strstr(BODY, "{\"items\":[{\"biz\":\"article\",\"id\":3,"));
    assert_non_null(strstr(BODY, "},{\"biz\":\"article\",\"id\":1,"));
    assert_non_null(strstr(BODY, "},{\"biz\":\"article\",\"id\":3,"));
}

static void bad_input_is_400(void **state)
{
    static const char *const bad[] = {
        "/v1/items/Article/7",
        "/v1/items/article/0",
        "/v1/items/article/-1",
        "/v1/items/article/1e3",
        "/v1/items/article/9223372036854775808",
        "/v1/items/article/7?uid=0",
        "/v1/items/article/7?uid=abc",
        "/v1/items/article",
        "/v1/items/article?ids=",
        "/v1/items/article?ids=1,,2",
        "/v1/items/article?ids=1,",
        "/v1/items/article?ids=%zz",
        "/v1/items/article?ids=1%00",
        "/v1/users/0/likes/article",
        "/v1/users/1/likes/article?limit=0",
        "/v1/users/1/likes/article?limit=101",
        "/v1/users/1/likes/article?cursor=abc",
        "/v1/users/1/likes/article?cursor=1.",
        "/v1/users/1/collections/x/items",
        "/v1/top/article",
        "/v1/top/article?by=likes",
        "/v1/top/article?by=like_cnt&limit=1000",
    };
    struct fixture *f = *state;
    char ids[1024] = "/v1/items/a?ids=1";

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (call(f, API_GET, bad[i], NULL) != 400)
            fail_msg("%s gave %d", bad[i], f->res.status);
        assert_non_null(strstr(BODY, "{\"error\":{\"code\":\"invalid_argument\",\"message\":"));
    }
    for (int i = 2; i <= 101; i++)
        snprintf(ids + strlen(ids), sizeof(ids) - strlen(ids), ",%d", i);
    assert_int_equal(call(f, API_GET, ids, NULL), 400); /* 101 ids */
    *strrchr(ids, ',') = '\0';
    assert_int_equal(call(f, API_GET, ids, NULL), 200); /* 100 ids */
}

static void read_bodies(void **state)
{
    static const char *const bad[] = {
        "{", "[]", "42", "{\"uid\":0}", "{\"uid\":-3}", "{\"uid\":1.5}", "{\"uid\":\"7\"}",
        "{\"uid\":null}", "{\"uid\":1,\"uid\":2}", "{\"user\":1}", "{\"uid\":99999999999999999999}",
    };
    struct fixture *f = *state;
    char *big;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (call(f, API_POST, "/v1/items/article/7/reads", bad[i]) != 400)
            fail_msg("body %s gave %d", bad[i], f->res.status);
    }
    assert_int_equal(call(f, API_POST, "/v1/items/article/7/reads", ""), 202);
    assert_string_equal(BODY, "{\"accepted\":true}");
    assert_int_equal(call(f, API_POST, "/v1/items/article/7/reads", " {\"uid\": 42}\n"), 202);
    /* The fixture's bus holds two events: the third is refused, not dropped. */
    assert_int_equal(call(f, API_POST, "/v1/items/article/7/reads", NULL), 503);
    assert_non_null(strstr(BODY, "\"code\":\"unavailable\""));

    big = malloc(API_MAX_BODY + 2);
    memset(big, ' ', API_MAX_BODY + 1);
    big[API_MAX_BODY + 1] = '\0';
    assert_int_equal(call(f, API_POST, "/v1/items/article/7/reads", big), 413);
    assert_non_null(strstr(BODY, "\"code\":\"payload_too_large\""));
    free(big);
}

static void routes_404_405(void **state)
{
    static const char *const missing[] = {
        "/", "/v1", "/v1/items", "/v1/items/article/7/likes", "/v2/items/a/1",
        "//v1/items/a/1", "/v1/items/a/1/", "/healthz/x", "/v1/users/1/likes",
        "relative",
    };
    struct fixture *f = *state;

    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        if (call(f, API_GET, missing[i], NULL) != 404)
            fail_msg("%s gave %d", missing[i], f->res.status);
        assert_non_null(strstr(BODY, "\"code\":\"not_found\""));
    }
    assert_int_equal(call(f, API_POST, "/v1/items/article/7", NULL), 405);
    assert_string_equal(f->res.allow, "GET, HEAD");
    assert_non_null(strstr(BODY, "\"code\":\"method_not_allowed\""));
    assert_int_equal(call(f, API_GET, "/v1/users/1/likes/article/7", NULL), 405);
    assert_string_equal(f->res.allow, "PUT, DELETE");
    assert_int_equal(call(f, API_OTHER, "/healthz", NULL), 405);
}

static void health_and_metrics(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(call(f, API_GET, "/healthz", NULL), 200);
    assert_string_equal(BODY, "{\"status\":\"ok\"}");
    assert_int_equal(call(f, API_GET, "/metrics", NULL), 200);
    assert_string_equal(f->res.content_type, "text/plain; version=0.0.4");
    assert_non_null(strstr(BODY, "# TYPE tally_read_events_queued_total counter"));
}

static void list_cursor_round_trip(void **state)
{
    struct fixture *f = *state;
    char next[128], target[256];
    const char *p;

    for (int id = 1; id <= 3; id++) {
        snprintf(target, sizeof(target), "/v1/users/9/likes/video/%d", id);
        assert_int_equal(call(f, API_PUT, target, NULL), 200);
    }
    assert_int_equal(call(f, API_GET, "/v1/users/9/likes/video?limit=2", NULL), 200);
    p = strstr(BODY, "\"next_cursor\":\"");
    assert_non_null(p);
    snprintf(next, sizeof(next), "%s", p + 15);
    *strchr(next, '"') = '\0';
    snprintf(target, sizeof(target), "/v1/users/9/likes/video?limit=2&cursor=%s", next);
    assert_int_equal(call(f, API_GET, target, NULL), 200);
    assert_non_null(strstr(BODY, "\"id\":1,"));
    assert_non_null(strstr(BODY, "\"next_cursor\":null}"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(item_state_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(batch_keeps_order_and_decodes, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_input_is_400, setup, teardown),
        cmocka_unit_test_setup_teardown(read_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(routes_404_405, setup, teardown),
        cmocka_unit_test_setup_teardown(health_and_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(list_cursor_round_trip, setup, teardown),
    };
    return cmocka_run_group_tests_name("api", tests, NULL, NULL);
}
