/*
 * methods.c - intr.v1.InteractiveService and grpc.health.v1.Health/Check, onto the API.
 *
 * DESIGN: each method is a decode (message -> the route's method, path and query) and an
 * encode (the route's answer -> message). The biz is checked here before it is put in a
 * path, since a biz with a '/' or a '?' would name another route; every other check is
 * the route's own. Messages are protobuf-c's, generated at build time from api/.
 */
#include "grpc/methods.h"

#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "intr/v1/intr.pb-c.h"
#include "model/item.h"
#include "util/banned.h"

#define BIZ_RULE "biz must match ^[a-z][a-z0-9_]{0,31}$"

void grpc_request_init(struct grpc_request *r)
{
    memset(&r->req, 0, sizeof(r->req));
    strbuf_init(&r->path, 64);
    strbuf_init(&r->query, 0);
}

void grpc_request_release(struct grpc_request *r)
{
    strbuf_release(&r->path);
    strbuf_release(&r->query);
}

/* The request's path and query as strings the API reads (never NULL path). */
static void settle(struct grpc_request *out, enum api_method method)
{
    out->req.method = method;
    out->req.path = out->path.buf;
    out->req.query = out->query.len ? out->query.buf : NULL;
    out->req.body = "";
    out->req.body_len = 0;
    out->req.typed = true;
}

/* Appends "/v1/items/BIZ/ID" after checking biz; false with *why when it is invalid. */
static bool add_item_path(struct strbuf *path, const char *biz, int64_t id, bool with_id,
                          const char **why)
{
    char checked[ITEM_BIZ_MAX + 1];

    if (item_parse_biz(biz, strlen(biz), checked) != 0) {
        *why = BIZ_RULE;
        return false;
    }
    strbuf_addstr(path, "/v1/items/");
    strbuf_addstr(path, checked);
    if (with_id) {
        strbuf_addch(path, '/');
        strbuf_add_i64(path, id);
    }
    return true;
}

/* A message that does not parse is the caller's mistake: INVALID_ARGUMENT, as the API's 400. */
#define UNPACK(type, fn, msg, len, why)                                                     \
    type *m = fn(NULL, len, msg);                                                           \
    if (!m) {                                                                               \
        *why = "the request is not a valid " #type;                                         \
        return GRPC_INVALID_ARGUMENT;                                                       \
    }

static int decode_read(const uint8_t *msg, size_t len, struct grpc_request *out, const char **why)
{
    UNPACK(Intr__V1__IncrReadCntRequest, intr__v1__incr_read_cnt_request__unpack, msg, len, why);
    bool ok = add_item_path(&out->path, m->biz, m->biz_id, true, why);

    strbuf_addstr(&out->path, "/reads");
    intr__v1__incr_read_cnt_request__free_unpacked(m, NULL);
    settle(out, API_POST);
    return ok ? 0 : GRPC_INVALID_ARGUMENT;
}

/* "/v1/users/UID/likes/BIZ/ID": Like and CancelLike, which differ by method only. */
static int decode_like_of(const uint8_t *msg, size_t len, struct grpc_request *out,
                          const char **why, enum api_method method)
{
    UNPACK(Intr__V1__LikeRequest, intr__v1__like_request__unpack, msg, len, why);
    char checked[ITEM_BIZ_MAX + 1];
    bool ok = item_parse_biz(m->biz, strlen(m->biz), checked) == 0;

    strbuf_addf(&out->path, "/v1/users/%lld/likes/%s/%lld", (long long)m->uid,
                ok ? checked : "-", (long long)m->biz_id);
    intr__v1__like_request__free_unpacked(m, NULL);
    settle(out, method);
    if (!ok)
        *why = BIZ_RULE;
    return ok ? 0 : GRPC_INVALID_ARGUMENT;
}

/* LikeRequest and CancelLikeRequest have the same fields and numbers: one decoder. */
_Static_assert(sizeof(Intr__V1__LikeRequest) == sizeof(Intr__V1__CancelLikeRequest),
               "Like and CancelLike carry the same fields");

static int decode_like(const uint8_t *msg, size_t len, struct grpc_request *out, const char **why)
{
    return decode_like_of(msg, len, out, why, API_PUT);
}

static int decode_unlike(const uint8_t *msg, size_t len, struct grpc_request *out,
                         const char **why)
{
    return decode_like_of(msg, len, out, why, API_DELETE);
}

static int decode_collect(const uint8_t *msg, size_t len, struct grpc_request *out,
                          const char **why)
{
    UNPACK(Intr__V1__CollectRequest, intr__v1__collect_request__unpack, msg, len, why);
    char checked[ITEM_BIZ_MAX + 1];
    bool ok = item_parse_biz(m->biz, strlen(m->biz), checked) == 0;

    strbuf_addf(&out->path, "/v1/users/%lld/collections/%lld/items/%s/%lld", (long long)m->uid,
                (long long)m->cid, ok ? checked : "-", (long long)m->biz_id);
    intr__v1__collect_request__free_unpacked(m, NULL);
    settle(out, API_PUT);
    if (!ok)
        *why = BIZ_RULE;
    return ok ? 0 : GRPC_INVALID_ARGUMENT;
}

static int decode_get(const uint8_t *msg, size_t len, struct grpc_request *out, const char **why)
{
    UNPACK(Intr__V1__GetRequest, intr__v1__get_request__unpack, msg, len, why);
    bool ok = add_item_path(&out->path, m->biz, m->biz_id, true, why);

    if (m->uid != 0) /* 0: anonymous, as the course's callers mean it */
        strbuf_addf(&out->query, "uid=%lld", (long long)m->uid);
    intr__v1__get_request__free_unpacked(m, NULL);
    settle(out, API_GET);
    return ok ? 0 : GRPC_INVALID_ARGUMENT;
}

static int decode_get_by_ids(const uint8_t *msg, size_t len, struct grpc_request *out,
                             const char **why)
{
    UNPACK(Intr__V1__GetByIdsRequest, intr__v1__get_by_ids_request__unpack, msg, len, why);
    bool ok = add_item_path(&out->path, m->biz, 0, false, why);

    /* None is an empty map (api.c, for a typed request); more than the API's limit is its
     * 400, for which one id past the limit is enough. */
    strbuf_addstr(&out->query, "ids=");
    for (size_t i = 0; i < m->n_biz_ids && i <= INTERACTIVE_MAX_IDS; i++) {
        if (i)
            strbuf_addch(&out->query, ',');
        strbuf_add_i64(&out->query, m->biz_ids[i]);
    }
    intr__v1__get_by_ids_request__free_unpacked(m, NULL);
    settle(out, API_GET);
    return ok ? 0 : GRPC_INVALID_ARGUMENT;
}

/* The health of "" (the server) and of the one service: /readyz's answer. */
static int decode_health(const uint8_t *msg, size_t len, struct grpc_request *out,
                         const char **why)
{
    UNPACK(Grpc__Health__V1__HealthCheckRequest, grpc__health__v1__health_check_request__unpack,
           msg, len, why);
    bool known = !*m->service || strcmp(m->service, "intr.v1.InteractiveService") == 0;

    grpc__health__v1__health_check_request__free_unpacked(m, NULL);
    if (!known) {
        *why = "unknown service";
        return GRPC_NOT_FOUND;
    }
    strbuf_addstr(&out->path, "/readyz");
    settle(out, API_GET);
    return 0;
}

/* ------------------------------------------------------------ answers */

static void pack(const ProtobufCMessage *msg, struct strbuf *out)
{
    size_t n = protobuf_c_message_get_packed_size(msg);

    strbuf_grow(out, n);
    protobuf_c_message_pack(msg, (uint8_t *)out->buf + out->len);
    out->len += n;
    out->buf[out->len] = '\0';
}

static void encode_empty(const struct api_response *res, struct strbuf *out)
{
    (void)res, (void)out; /* every write's response message has no field */
}

static void to_interactive(const struct item_state *st, Intr__V1__Interactive *m)
{
    intr__v1__interactive__init(m);
    m->biz = (char *)st->item.biz;
    m->biz_id = st->item.id;
    m->read_cnt = st->counts.read_cnt;
    m->like_cnt = st->counts.like_cnt;
    m->collect_cnt = st->counts.collect_cnt;
    m->liked = st->liked;
    m->collected = st->collected;
}

static void encode_get(const struct api_response *res, struct strbuf *out)
{
    Intr__V1__GetResponse m = INTR__V1__GET_RESPONSE__INIT;
    Intr__V1__Interactive intr;

    to_interactive(&res->states[0], &intr);
    m.intr = &intr;
    pack(&m.base, out);
}

static void encode_get_by_ids(const struct api_response *res, struct strbuf *out)
{
    Intr__V1__GetByIdsResponse m = INTR__V1__GET_BY_IDS_RESPONSE__INIT;
    Intr__V1__GetByIdsResponse__IntrsEntry entries[INTERACTIVE_MAX_IDS];
    Intr__V1__GetByIdsResponse__IntrsEntry *slots[INTERACTIVE_MAX_IDS];
    Intr__V1__Interactive values[INTERACTIVE_MAX_IDS];

    for (size_t i = 0; i < res->nstates; i++) {
        intr__v1__get_by_ids_response__intrs_entry__init(&entries[i]);
        to_interactive(&res->states[i], &values[i]);
        entries[i].key = res->states[i].item.id;
        entries[i].value = &values[i];
        slots[i] = &entries[i];
    }
    m.n_intrs = res->nstates;
    m.intrs = slots;
    pack(&m.base, out);
}

static void encode_health(const struct api_response *res, struct strbuf *out)
{
    Grpc__Health__V1__HealthCheckResponse m = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

    m.status = res->status == 200
                   ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                   : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    pack(&m.base, out);
}

#define INTR "/intr.v1.InteractiveService/"
static const struct grpc_method methods[] = {
    {INTR "IncrReadCnt", INTR "IncrReadCnt" + 1, decode_read, encode_empty},
    {INTR "Like", INTR "Like" + 1, decode_like, encode_empty},
    {INTR "CancelLike", INTR "CancelLike" + 1, decode_unlike, encode_empty},
    {INTR "Collect", INTR "Collect" + 1, decode_collect, encode_empty},
    {INTR "Get", INTR "Get" + 1, decode_get, encode_get},
    {INTR "GetByIds", INTR "GetByIds" + 1, decode_get_by_ids, encode_get_by_ids},
    {"/grpc.health.v1.Health/Check", "grpc.health.v1.Health/Check", decode_health, encode_health,
     .any_status = true},
};
#define NMETHODS ((int)(sizeof(methods) / sizeof(methods[0])))
_Static_assert(NMETHODS == GRPC_METHODS, "GRPC_METHODS counts the methods table");

const struct grpc_method *grpc_method_find(const char *path)
{
    for (int i = 0; i < NMETHODS; i++)
        if (strcmp(methods[i].path, path) == 0)
            return &methods[i];
    return NULL;
}

const struct grpc_method *grpc_method_at(int i)
{
    return &methods[i];
}

int grpc_method_index(const struct grpc_method *m)
{
    return (int)(m - methods);
}

enum grpc_code grpc_code_of(int http_status)
{
    switch (http_status) {
    case 200:
    case 202: return GRPC_OK;
    case 400: return GRPC_INVALID_ARGUMENT;
    case 401: return GRPC_UNAUTHENTICATED;
    case 403: return GRPC_PERMISSION_DENIED;
    case 404: return GRPC_NOT_FOUND;
    case 405: return GRPC_UNIMPLEMENTED;
    case 413:
    case 429: return GRPC_RESOURCE_EXHAUSTED;
    case 503: return GRPC_UNAVAILABLE;
    default: return GRPC_INTERNAL;
    }
}

const char *grpc_code_name(int code)
{
    static const char *const names[GRPC_CODES] = {
        "OK",        "CANCELLED",         "UNKNOWN",          "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",   "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
        "UNIMPLEMENTED", "INTERNAL",      "UNAVAILABLE",      "DATA_LOSS",
        "UNAUTHENTICATED"};

    return code >= 0 && code < GRPC_CODES ? names[code] : "UNKNOWN";
}
