/*
 * test_grpc_methods.c - each gRPC method's message decoded into its HTTP route, and the
 * answers encoded, without sockets (the messages are built with the generated code).
 */
#include "unit.h"

#include "grpc/health/v1/health.pb-c.h"
#include "grpc/methods.h"
#include "intr/v1/intr.pb-c.h"

/* Decodes msg with the method at path into g (initialised here); returns the code. */
static int decode(const char *path, const ProtobufCMessage *msg, struct grpc_request *g,
                  const char **why)
{
    const struct grpc_method *m = grpc_method_find(path);
    uint8_t buf[4096];
    size_t n;

    assert_non_null(m);
    n = protobuf_c_message_pack(msg, buf);
    grpc_request_init(g);
    *why = NULL;
    return m->decode(buf, n, g, why);
}

static void each_method_names_its_route(void **state)
{
    Intr__V1__LikeRequest like = INTR__V1__LIKE_REQUEST__INIT;
    Intr__V1__CollectRequest collect = INTR__V1__COLLECT_REQUEST__INIT;
    Intr__V1__GetRequest get = INTR__V1__GET_REQUEST__INIT;
    Intr__V1__IncrReadCntRequest read = INTR__V1__INCR_READ_CNT_REQUEST__INIT;
    struct grpc_request g;
    const char *why;

    (void)state;
    like.biz = "article", like.biz_id = 7, like.uid = 42;
    assert_int_equal(decode("/intr.v1.InteractiveService/Like", &like.base, &g, &why), 0);
    assert_int_equal(g.req.method, API_PUT);
    assert_string_equal(g.req.path, "/v1/users/42/likes/article/7");
    assert_true(g.req.typed);
    grpc_request_release(&g);
    assert_int_equal(decode("/intr.v1.InteractiveService/CancelLike", &like.base, &g, &why), 0);
    assert_int_equal(g.req.method, API_DELETE);
    grpc_request_release(&g);

    collect.biz = "video", collect.biz_id = 3, collect.cid = 9, collect.uid = 5;
    assert_int_equal(decode("/intr.v1.InteractiveService/Collect", &collect.base, &g, &why), 0);
    assert_string_equal(g.req.path, "/v1/users/5/collections/9/items/video/3");
    grpc_request_release(&g);

    get.biz = "article", get.biz_id = 7; /* uid 0: anonymous, no query */
    assert_int_equal(decode("/intr.v1.InteractiveService/Get", &get.base, &g, &why), 0);
    assert_string_equal(g.req.path, "/v1/items/article/7");
    assert_null(g.req.query);
    grpc_request_release(&g);
    get.uid = 42;
    assert_int_equal(decode("/intr.v1.InteractiveService/Get", &get.base, &g, &why), 0);
    assert_string_equal(g.req.query, "uid=42");
    grpc_request_release(&g);

    read.biz = "article", read.biz_id = 7;
    assert_int_equal(decode("/intr.v1.InteractiveService/IncrReadCnt", &read.base, &g, &why), 0);
    assert_int_equal(g.req.method, API_POST);
    assert_string_equal(g.req.path, "/v1/items/article/7/reads");
    grpc_request_release(&g);
}

/* A biz is checked before it goes into a path: '/', '?' or '..' would name another route. */
static void a_biz_cannot_steer_the_route(void **state)
{
    static const char *const bad[] = {"a/b", "a?x=1", "..", "", "Article", "a b", "a%2f"};
    Intr__V1__LikeRequest like = INTR__V1__LIKE_REQUEST__INIT;
    struct grpc_request g;
    const char *why;

    (void)state;
    like.biz_id = 1, like.uid = 1;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        like.biz = (char *)bad[i];
        assert_int_equal(decode("/intr.v1.InteractiveService/Like", &like.base, &g, &why),
                         GRPC_INVALID_ARGUMENT);
        assert_non_null(why);
        assert_null(strstr(g.path.buf, bad[i][0] ? bad[i] : "\x01"));
        grpc_request_release(&g);
    }
}

static void get_by_ids_lists_the_ids_and_one_past_the_limit(void **state)
{
    Intr__V1__GetByIdsRequest req = INTR__V1__GET_BY_IDS_REQUEST__INIT;
    int64_t ids[150];
    struct grpc_request g;
    const char *why;
    int commas = 0;

    (void)state;
    for (int i = 0; i < 150; i++)
        ids[i] = i + 1;
    req.biz = "article", req.biz_ids = ids, req.n_biz_ids = 3;
    assert_int_equal(decode("/intr.v1.InteractiveService/GetByIds", &req.base, &g, &why), 0);
    assert_string_equal(g.req.path, "/v1/items/article");
    assert_string_equal(g.req.query, "ids=1,2,3");
    grpc_request_release(&g);
    /* 150 ids: the query carries 101, enough for the route's own 400, not all 150. */
    req.n_biz_ids = 150;
    assert_int_equal(decode("/intr.v1.InteractiveService/GetByIds", &req.base, &g, &why), 0);
    for (const char *p = g.req.query; *p; p++)
        commas += *p == ',';
    assert_int_equal(commas, INTERACTIVE_MAX_IDS);
    grpc_request_release(&g);
}

static void health_knows_its_services(void **state)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    const struct grpc_method *m = grpc_method_find("/grpc.health.v1.Health/Check");
    struct api_response res;
    struct strbuf out = STRBUF_INIT;
    Grpc__Health__V1__HealthCheckResponse *ans;
    struct grpc_request g;
    const char *why;

    (void)state;
    assert_int_equal(decode("/grpc.health.v1.Health/Check", &req.base, &g, &why), 0);
    assert_string_equal(g.req.path, "/readyz");
    grpc_request_release(&g);
    req.service = "nope";
    assert_int_equal(decode("/grpc.health.v1.Health/Check", &req.base, &g, &why),
                     GRPC_NOT_FOUND);
    grpc_request_release(&g);
    /* /readyz's 503 is an answer, NOT_SERVING, not an error. */
    assert_true(m->any_status);
    api_response_init(&res);
    res.status = 503;
    m->encode(&res, &out);
    ans = grpc__health__v1__health_check_response__unpack(NULL, out.len, (uint8_t *)out.buf);
    assert_non_null(ans);
    assert_int_equal(ans->status,
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
    grpc__health__v1__health_check_response__free_unpacked(ans, NULL);
    api_response_release(&res);
    strbuf_release(&out);
}

static void get_by_ids_answers_a_map_by_id(void **state)
{
    const struct grpc_method *m = grpc_method_find("/intr.v1.InteractiveService/GetByIds");
    struct api_response res;
    struct strbuf out = STRBUF_INIT;
    Intr__V1__GetByIdsResponse *ans;

    (void)state;
    api_response_init(&res);
    res.status = 200;
    res.nstates = 2;
    res.states = calloc(2, sizeof(*res.states));
    strcpy(res.states[0].item.biz, "article"), res.states[0].item.id = 7;
    res.states[0].counts.read_cnt = 3, res.states[0].liked = true;
    strcpy(res.states[1].item.biz, "article"), res.states[1].item.id = 1000;
    m->encode(&res, &out);
    ans = intr__v1__get_by_ids_response__unpack(NULL, out.len, (uint8_t *)out.buf);
    assert_non_null(ans);
    assert_int_equal(ans->n_intrs, 2);
    assert_int_equal(ans->intrs[0]->key, 7);
    assert_int_equal(ans->intrs[0]->value->read_cnt, 3);
    assert_true(ans->intrs[0]->value->liked);
    assert_string_equal(ans->intrs[0]->value->biz, "article");
    assert_int_equal(ans->intrs[1]->key, 1000);
    assert_int_equal(ans->intrs[1]->value->like_cnt, 0);
    intr__v1__get_by_ids_response__free_unpacked(ans, NULL);
    api_response_release(&res);
    strbuf_release(&out);
}

static void codes_follow_the_http_statuses(void **state)
{
    (void)state;
    assert_int_equal(grpc_code_of(200), GRPC_OK);
    assert_int_equal(grpc_code_of(202), GRPC_OK);
    assert_int_equal(grpc_code_of(400), GRPC_INVALID_ARGUMENT);
    assert_int_equal(grpc_code_of(401), GRPC_UNAUTHENTICATED);
    assert_int_equal(grpc_code_of(403), GRPC_PERMISSION_DENIED);
    assert_int_equal(grpc_code_of(429), GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(grpc_code_of(503), GRPC_UNAVAILABLE);
    assert_int_equal(grpc_code_of(500), GRPC_INTERNAL);
    assert_string_equal(grpc_code_name(GRPC_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_string_equal(grpc_code_name(99), "UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_method_names_its_route),
        cmocka_unit_test(a_biz_cannot_steer_the_route),
        cmocka_unit_test(get_by_ids_lists_the_ids_and_one_past_the_limit),
        cmocka_unit_test(health_knows_its_services),
        cmocka_unit_test(get_by_ids_answers_a_map_by_id),
        cmocka_unit_test(codes_follow_the_http_statuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
