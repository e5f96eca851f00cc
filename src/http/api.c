/*
 * api.c - routes, validation and responses of the v1 API.
 *
 * DESIGN: a route is a path pattern of literal segments and ":name"
 * captures, with a handler per method. A path that has the shape of a
 * route but a malformed value (/v1/items/Bad/7) is a 400, not a 404:
 * the client named a real resource type with a bad identifier. A path
 * of the right shape with an unsupported method is a 405 with Allow.
 * Statuses for tally's error codes come from one table, fail_err().
 *
 * Rate limits (service/ratelimit.c): every /v1 request that passed
 * authentication takes a token from its caller's bucket once its route and
 * method are known, and a write with a uid (likes, collections, a read with
 * a uid) one from the uid's bucket once the uid is parsed and bound; both
 * before any store or bus call, so a 429 changes nothing.
 */
#include "http/api.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/json.h"
#include "service/ratelimit.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/xmalloc.h"
#include "util/process.h"
#include "util/hex.h"
#include "util/version.h"
#include "http/ui_assets.h"
#include "util/banned.h"

#define MAX_CAPTURES 4
#define MAX_SEGMENTS 8
#define MAX_PARAMS   8

/* A slice of the request (path segment or query value), not NUL-terminated. */
struct slice {
    const char *p;
    size_t len;
};

/* One request being handled; lives on the stack of api_handle(). */
struct ctx {
    struct interactive *svc;
    const struct api_request *req;
    struct api_response *res;
    struct slice cap[MAX_CAPTURES];
    struct {
        char key[16];
        char *value; /* decoded, heap; freed by api_handle */
    } params[MAX_PARAMS];
    int nparams;
};

typedef void handler_fn(struct ctx *c);

struct route {
    const char *name;
    const char *pattern;
    handler_fn *on[API_OTHER]; /* indexed by method; NULL: not allowed */
    const char *allow;
    enum api_work work; /* where its handlers run; see api_work_of() */
};

/* ---------------------------------------------------------------- errors */

static void fail(struct ctx *c, int status, const char *code, const char *message)
{
    c->res->status = status;
    strbuf_reset(&c->res->body);
    json_add_error(&c->res->body, code, message);
}

static void invalid(struct ctx *c, const char *message)
{
    fail(c, 400, "invalid_argument", message);
}

/* The one table from tally's error codes to HTTP. */
static void fail_err(struct ctx *c, int err)
{
    switch (err) {
    case TALLY_EINVAL: invalid(c, "invalid argument"); break;
    case TALLY_EUNAVAIL:
    case TALLY_EFULL:
    case TALLY_ECLOSED: fail(c, 503, "unavailable", tally_strerror(err)); break;
    case TALLY_EUNAUTH:
        c->res->challenge = true;
        fail(c, 401, "unauthenticated", "a valid bearer token is required");
        break;
    case TALLY_EDENIED: fail(c, 403, "permission_denied", "this credential may not do that"); break;
    case TALLY_ELIMITED: /* the caller set res->retry_after */
        fail(c, 429, "rate_limited", "too many requests; retry after Retry-After seconds");
        break;
    default: fail(c, 500, "internal", tally_strerror(err)); break;
    }
}

/* ------------------------------------------------------- rate limits */

/* Takes a token from name's bucket; false, with the 429 written, when there was none. */
static bool admit(struct ctx *c, enum ratelimit_by by, const char *name)
{
    int err;

    if (!c->svc->limits || !name)
        return true;
    err = ratelimit_take(c->svc->limits, by, name, &c->res->retry_after);
    if (err)
        fail_err(c, err);
    return err == 0;
}

/* Appends who the caller authenticated as: "key:NAME", "user:UID", or nothing. */
static void add_principal(const struct ctx *c, struct strbuf *out)
{
    const struct auth_principal *p = c->req->principal;

    if (p && p->kind == AUTH_KEY)
        strbuf_addf(out, "key:%s", p->name);
    else if (p && p->kind == AUTH_USER)
        strbuf_addf(out, "user:%lld", (long long)p->uid);
}

/* The caller's bucket: its API key, its user, or (open API) its address. */
static bool admit_caller(struct ctx *c)
{
    struct strbuf name = STRBUF_INIT;
    bool ok;

    if (!c->svc->limits)
        return true;
    add_principal(c, &name);
    if (!name.len && c->req->caller)
        strbuf_addstr(&name, c->req->caller);
    ok = !name.len || admit(c, RATELIMIT_KEY, name.buf);
    strbuf_release(&name);
    return ok;
}

static bool admit_uid(struct ctx *c, int64_t uid)
{
    struct strbuf name = STRBUF_INIT;
    bool ok;

    if (!c->svc->limits)
        return true;
    strbuf_add_i64(&name, uid);
    ok = admit(c, RATELIMIT_UID, name.buf);
    strbuf_release(&name);
    return ok;
}

/* ------------------------------------------------------- parameters */

/* Percent-decodes [p, p+len) (and '+' as space) into a new string, or NULL if malformed. */
static char *url_decode(const char *p, size_t len)
{
    struct strbuf sb = STRBUF_INIT;

    for (size_t i = 0; i < len; i++) {
        if (p[i] == '%') {
            int hi = i + 2 < len ? hex_value(p[i + 1]) : -1;
            int lo = i + 2 < len ? hex_value(p[i + 2]) : -1;

            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) { /* truncated, not hex, or NUL */
                strbuf_release(&sb);
                return NULL;
            }
            strbuf_addch(&sb, (char)(hi * 16 + lo));
            i += 2;
        } else {
            strbuf_addch(&sb, p[i] == '+' ? ' ' : p[i]);
        }
    }
    return strbuf_detach(&sb, NULL);
}

/* Splits the query into params; unknown keys are kept and ignored later. */
static int parse_query(struct ctx *c)
{
    const char *q = c->req->query;

    while (q && *q) {
        const char *end = strchr(q, '&'), *eq;
        size_t len = end ? (size_t)(end - q) : strlen(q);

        eq = memchr(q, '=', len);
        if (len > 0) {
            size_t klen = eq ? (size_t)(eq - q) : len;
            char *value;

            if (c->nparams == MAX_PARAMS || klen >= sizeof(c->params[0].key))
                return TALLY_EINVAL;
            value = eq ? url_decode(eq + 1, len - klen - 1) : url_decode("", 0);
            if (!value)
                return TALLY_EINVAL;
            memcpy(c->params[c->nparams].key, q, klen);
            c->params[c->nparams].key[klen] = '\0';
            c->params[c->nparams].value = value;
            c->nparams++;
        }
        q = end ? end + 1 : NULL;
    }
    return 0;
}

static const char *param(struct ctx *c, const char *key)
{
    for (int i = 0; i < c->nparams; i++)
        if (strcmp(c->params[i].key, key) == 0)
            return c->params[i].value;
    return NULL;
}

static bool cap_biz(struct ctx *c, int i, char out[ITEM_BIZ_MAX + 1])
{
    if (item_parse_biz(c->cap[i].p, c->cap[i].len, out) == 0)
        return true;
    invalid(c, "biz must match ^[a-z][a-z0-9_]{0,31}$");
    return false;
}

static bool cap_id(struct ctx *c, int i, const char *what, int64_t *out)
{
    if (item_parse_id(c->cap[i].p, c->cap[i].len, out) == 0)
        return true;
    struct strbuf msg = STRBUF_INIT;
    strbuf_addf(&msg, "%s must be an integer in 1..9223372036854775807", what);
    invalid(c, msg.buf);
    strbuf_release(&msg);
    return false;
}

/* An optional id-like query parameter; *out is left alone when absent. */
static bool param_id(struct ctx *c, const char *key, int64_t *out)
{
    const char *v = param(c, key);

    if (!v || item_parse_id(v, strlen(v), out) == 0)
        return true;
    struct strbuf msg = STRBUF_INIT;
    strbuf_addf(&msg, "%s must be an integer in 1..9223372036854775807", key);
    invalid(c, msg.buf);
    strbuf_release(&msg);
    return false;
}

/*
 * A user's token acts for its own uid only: a uid the request names (path, query or
 * body) must be the token's, and one it leaves out is the token's. Service keys and
 * the open API act for whoever they name. `given` says whether the request named one.
 */
static bool bind_uid(struct ctx *c, int64_t *uid, bool given)
{
    const struct auth_principal *p = c->req->principal;

    if (!p || p->kind != AUTH_USER)
        return true;
    if (!given) {
        *uid = p->uid;
        return true;
    }
    if (*uid == p->uid)
        return true;
    auth_refused_uid(c->req->caller);
    fail_err(c, TALLY_EDENIED);
    return false;
}

static bool param_limit(struct ctx *c, size_t dflt, size_t *out)
{
    const char *v = param(c, "limit");
    int64_t n;

    *out = dflt;
    if (!v)
        return true;
    if (item_parse_id(v, strlen(v), &n) == 0 && n <= INTERACTIVE_MAX_LIMIT) {
        *out = (size_t)n;
        return true;
    }
    invalid(c, "limit must be an integer in 1..100");
    return false;
}

/* Cursors are "TIME.ID", as handed out in next_cursor. */
static bool param_cursor(struct ctx *c, struct list_cursor *out)
{
    const char *v = param(c, "cursor"), *dot;
    struct list_cursor start = LIST_CURSOR_START;

    *out = start;
    if (!v)
        return true;
    dot = strchr(v, '.');
    if (dot && item_parse_id(v, (size_t)(dot - v), &out->time) == 0 &&
        item_parse_id(dot + 1, strlen(dot + 1), &out->id) == 0)
        return true;
    invalid(c, "cursor is not one that this API handed out");
    return false;
}

/* ------------------------------------------------------- responses */

/* A typed request's states, copied for its caller; true when the request was typed. */
static bool reply_typed(struct ctx *c, const struct item_state *st, size_t n)
{
    if (!c->req->typed)
        return false;
    c->res->status = 200;
    c->res->states = n ? xmalloc(n * sizeof(*st)) : NULL;
    if (n)
        memcpy(c->res->states, st, n * sizeof(*st));
    c->res->nstates = n;
    return true;
}

static void reply_state(struct ctx *c, const struct item_state *st)
{
    if (reply_typed(c, st, 1))
        return;
    c->res->status = 200;
    json_add_state(&c->res->body, st);
}

static void reply_states(struct ctx *c, const struct item_state *st, size_t n)
{
    struct strbuf *b = &c->res->body;

    if (reply_typed(c, st, n))
        return;
    c->res->status = 200;
    strbuf_addstr(b, "{\"items\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            strbuf_addch(b, ',');
        json_add_state(b, &st[i]);
    }
    strbuf_addstr(b, "]}");
}

static void reply_list(struct ctx *c, const struct list_entry *e, size_t n,
                       const struct list_cursor *next, bool more)
{
    struct strbuf *b = &c->res->body;

    c->res->status = 200;
    strbuf_addstr(b, "{\"items\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            strbuf_addch(b, ',');
        json_add_list_entry(b, &e[i]);
    }
    strbuf_addstr(b, "],\"next_cursor\":");
    if (more)
        strbuf_addf(b, "\"%lld.%lld\"}", (long long)next->time, (long long)next->id);
    else
        strbuf_addstr(b, "null}");
}

/* ------------------------------------------------------- handlers */

static void h_health(struct ctx *c)
{
    if (interactive_health(c->svc) == 0) {
        c->res->status = 200;
        strbuf_addstr(&c->res->body, "{\"status\":\"ok\"}");
    } else {
        fail(c, 503, "unavailable", "the store does not answer, or cannot commit");
    }
}

/* The process and its loops answer: this runs on the loop that took the request. */
static void h_live(struct ctx *c)
{
    c->res->status = 200;
    strbuf_addstr(&c->res->body, "{\"status\":\"ok\"}");
}

/* Whether a load balancer should send traffic here: store, bus, and not draining. */
static void h_ready(struct ctx *c)
{
    const char *why;

    if (interactive_ready(c->svc, &why) == 0) {
        c->res->status = 200;
        strbuf_addstr(&c->res->body, "{\"status\":\"ok\"}");
    } else {
        fail(c, 503, "unavailable", why);
    }
}

static void h_metrics(struct ctx *c)
{
    process_metrics_update();
    c->res->status = 200;
    c->res->content_type = "text/plain; version=0.0.4";
    metrics_render(&c->res->body);
}

/* A part's state in /v1/status: tally's error code as a word. */
static const char *status_word(int err)
{
    switch (err) {
    case 0: return "ok";
    case TALLY_EFULL: return "full";
    case TALLY_ECLOSED: return "closed";
    default: return "unavailable";
    }
}

/*
 * GET /v1/status: which tallyd this is and how its parts are, for the operator's page.
 * Always a 200 when asked with the scope: a part that fails is in the body, not the status
 * (that is /readyz's job). No URL, host or credential of a part: only its kind.
 */
static void h_status(struct ctx *c)
{
    struct interactive_status st;
    struct strbuf *b = &c->res->body, instance = STRBUF_INIT;
    char host[256];

    interactive_status(c->svc, &st);
    if (gethostname(host, sizeof(host)) != 0)
        memcpy(host, "unknown", sizeof("unknown"));
    host[sizeof(host) - 1] = '\0'; /* a truncated name need not end in one */
    strbuf_addf(&instance, "%s:%ld", host, (long)getpid());
    c->res->status = 200;
    strbuf_addstr(b, "{\"version\":");
    json_add_string(b, tally_version());
    strbuf_addstr(b, ",\"commit\":");
    json_add_string(b, tally_commit());
    strbuf_addstr(b, ",\"instance\":");
    json_add_string(b, instance.buf);
    strbuf_addf(b, ",\"started\":%lld,\"uptime_s\":%lld,\"ready\":%s,\"draining\":%s",
                (long long)st.started_ms, (long long)(st.uptime_ms / 1000),
                st.ready ? "true" : "false", st.draining ? "true" : "false");
    strbuf_addf(b, ",\"store\":{\"kind\":\"%s\",\"status\":\"%s\"}", st.store_kind,
                status_word(st.store));
    strbuf_addf(b, ",\"cache\":{\"kind\":\"%s\",\"status\":\"%s\"}", st.cache_kind,
                st.cache_off ? "off" : status_word(st.cache));
    strbuf_addf(b, ",\"bus\":{\"kind\":\"%s\",\"status\":\"%s\"}", st.bus_kind,
                status_word(st.bus));
    strbuf_addf(b, ",\"reads\":{\"status\":\"%s\",\"lost\":%lld}}",
                st.reads_failing ? "failing" : "ok", (long long)st.reads_lost);
    strbuf_release(&instance);
}

/* GET /v1/items/{biz}/{id} */
static void h_get_item(struct ctx *c)
{
    struct item it;
    struct item_state st;
    int64_t uid = 0;
    int err;

    if (!cap_biz(c, 0, it.biz) || !cap_id(c, 1, "id", &it.id) || !param_id(c, "uid", &uid) ||
        !bind_uid(c, &uid, uid != 0))
        return;
    if ((err = interactive_get(c->svc, &it, 1, uid, &st))) {
        fail_err(c, err);
        return;
    }
    reply_state(c, &st);
}

/* GET /v1/items/{biz}?ids=1,2,3 */
static void h_get_items(struct ctx *c)
{
    struct item items[INTERACTIVE_MAX_IDS];
    struct item_state st[INTERACTIVE_MAX_IDS];
    char biz[ITEM_BIZ_MAX + 1];
    const char *ids = param(c, "ids");
    int64_t uid = 0;
    size_t n = 0;
    int err;

    if (!cap_biz(c, 0, biz) || !param_id(c, "uid", &uid) || !bind_uid(c, &uid, uid != 0))
        return;
    if (c->req->typed && ids && !*ids) { /* gRPC's GetByIds of no ids: an empty map */
        reply_typed(c, st, 0);
        return;
    }
    if (!ids) {
        invalid(c, "ids is required: 1 to 100 comma-separated ids");
        return;
    }
    for (const char *p = ids;; p++) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        if (n == INTERACTIVE_MAX_IDS || item_parse_id(p, len, &items[n].id)) {
            invalid(c, "ids must be 1 to 100 comma-separated integers in 1..9223372036854775807");
            return;
        }
        memcpy(items[n].biz, biz, sizeof(biz));
        n++;
        if (!end)
            break;
        p = end;
    }
    if ((err = interactive_get(c->svc, items, n, uid, st))) {
        fail_err(c, err);
        return;
    }
    reply_states(c, st, n);
}

/* The body of POST .../reads: empty, {"uid":U} or {"viewer":"V"}; *viewer: its hash64. */
static bool read_body_uid(struct ctx *c, int64_t *uid, uint64_t *viewer)
{
    const char *b = c->req->body;
    size_t len = c->req->body_len;
    json_error_t jerr;
    json_t *root, *v;
    const char *key;
    bool ok = false;

    while (len > 0 && (*b == ' ' || *b == '\t' || *b == '\r' || *b == '\n'))
        b++, len--;
    if (len == 0)
        return true;
    root = json_loadb(b, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        invalid(c, "body is not valid JSON");
        return false;
    }
    if (!json_is_object(root)) {
        invalid(c, "body must be a JSON object");
        goto out;
    }
    json_object_foreach (root, key, v) {
        if (strcmp(key, "viewer") == 0) {
            if (!json_is_string(v) ||
                !read_text_valid(json_string_value(v), json_string_length(v), READ_VIEWER_MAX)) {
                invalid(c, "viewer must be a string of 1 to 64 printable ASCII characters");
                goto out;
            }
            *viewer = hash64("viewer", json_string_value(v), json_string_length(v));
            continue;
        }
        if (strcmp(key, "uid") != 0) {
            invalid(c, "body may only have the field uid or the field viewer");
            goto out;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 1) {
            invalid(c, "uid must be an integer in 1..9223372036854775807");
            goto out;
        }
        *uid = json_integer_value(v);
    }
    if (*uid && *viewer) {
        invalid(c, "give uid or viewer, not both");
        goto out;
    }
    ok = true;
out:
    json_decref(root);
    return ok;
}

/* The read's Idempotency-Key, scoped to the caller (anonymous ones share one scope: an
 * address is not an identity) and to the item. */
static uint64_t idem_digest(const struct ctx *c, const struct item *it, const char *key)
{
    struct strbuf caller = STRBUF_INIT;
    uint64_t h;

    add_principal(c, &caller);
    if (!caller.len)
        strbuf_addstr(&caller, "anonymous");
    h = read_idem_digest(caller.buf, it, key, strlen(key));
    strbuf_release(&caller);
    return h;
}

/* POST /v1/items/{biz}/{id}/reads */
static void h_read(struct ctx *c)
{
    const char *key = c->req->idempotency_key;
    struct item it;
    int64_t uid = 0;
    uint64_t viewer = 0, idem = 0;
    int err;

    if (!cap_biz(c, 0, it.biz) || !cap_id(c, 1, "id", &it.id))
        return;
    if (key && !read_text_valid(key, strlen(key), READ_IDEM_KEY_MAX)) {
        invalid(c, "Idempotency-Key must be 1 to 128 printable ASCII characters");
        return;
    }
    if (!read_body_uid(c, &uid, &viewer) || (!viewer && !bind_uid(c, &uid, uid != 0)) ||
        (uid && !admit_uid(c, uid)))
        return;
    if (key)
        idem = idem_digest(c, &it, key);
    if ((err = interactive_read(c->svc, &it, uid, viewer, idem))) {
        fail_err(c, err);
        return;
    }
    c->res->status = 202;
    strbuf_addstr(&c->res->body, "{\"accepted\":true}");
}

/* {PUT,DELETE} /v1/users/{uid}/likes/{biz}/{id} */
static void like(struct ctx *c, bool on)
{
    struct item it;
    struct item_state st;
    int64_t uid;
    int err;

    if (!cap_id(c, 0, "uid", &uid) || !bind_uid(c, &uid, true) || !cap_biz(c, 1, it.biz) ||
        !cap_id(c, 2, "id", &it.id) || !admit_uid(c, uid))
        return;
    if ((err = interactive_like(c->svc, uid, &it, on, &st))) {
        fail_err(c, err);
        return;
    }
    reply_state(c, &st);
}

static void h_like(struct ctx *c)
{
    like(c, true);
}

static void h_unlike(struct ctx *c)
{
    like(c, false);
}

/* GET /v1/users/{uid}/likes/{biz} */
static void h_list_likes(struct ctx *c)
{
    struct list_entry e[INTERACTIVE_MAX_LIMIT + 1];
    struct list_cursor cur;
    char biz[ITEM_BIZ_MAX + 1];
    int64_t uid;
    size_t limit, n;
    bool more;
    int err;

    if (!cap_id(c, 0, "uid", &uid) || !bind_uid(c, &uid, true) || !cap_biz(c, 1, biz) ||
        !param_limit(c, 20, &limit) || !param_cursor(c, &cur))
        return;
    if ((err = interactive_list_likes(c->svc, uid, biz, limit, &cur, e, &n, &more))) {
        fail_err(c, err);
        return;
    }
    reply_list(c, e, n, &cur, more);
}

/* {PUT,DELETE} /v1/users/{uid}/collections/{cid}/items/{biz}/{id} */
static void collect(struct ctx *c, bool on)
{
    struct item it;
    struct item_state st;
    int64_t uid, cid;
    int err;

    if (!cap_id(c, 0, "uid", &uid) || !bind_uid(c, &uid, true) || !cap_id(c, 1, "cid", &cid) ||
        !cap_biz(c, 2, it.biz) || !cap_id(c, 3, "id", &it.id) || !admit_uid(c, uid))
        return;
    if ((err = interactive_collect(c->svc, uid, cid, &it, on, &st))) {
        fail_err(c, err);
        return;
    }
    reply_state(c, &st);
}

static void h_collect(struct ctx *c)
{
    collect(c, true);
}

static void h_uncollect(struct ctx *c)
{
    collect(c, false);
}

/* GET /v1/users/{uid}/collections/{cid}/items */
static void h_list_collection(struct ctx *c)
{
    struct list_entry e[INTERACTIVE_MAX_LIMIT + 1];
    struct list_cursor cur;
    int64_t uid, cid;
    size_t limit, n;
    bool more;
    int err;

    if (!cap_id(c, 0, "uid", &uid) || !bind_uid(c, &uid, true) || !cap_id(c, 1, "cid", &cid) ||
        !param_limit(c, 20, &limit) || !param_cursor(c, &cur))
        return;
    if ((err = interactive_list_collection(c->svc, uid, cid, limit, &cur, e, &n, &more))) {
        fail_err(c, err);
        return;
    }
    reply_list(c, e, n, &cur, more);
}

static bool param_by(struct ctx *c, enum count_field *out)
{
    const char *by = param(c, "by");

    if (by && count_field_parse(by, out) == 0)
        return true;
    invalid(c, "by must be one of like_cnt, read_cnt, collect_cnt");
    return false;
}

/* An optional time in ms since the epoch, 0..INT64_MAX; *out is left alone when absent. */
static bool param_ms(struct ctx *c, const char *key, int64_t *out)
{
    const char *v = param(c, key);

    if (!v || (strcmp(v, "0") == 0 && (*out = 0) == 0) || item_parse_id(v, strlen(v), out) == 0)
        return true;
    struct strbuf msg = STRBUF_INIT;
    strbuf_addf(&msg, "%s must be a time in ms since the epoch, 0..9223372036854775807", key);
    invalid(c, msg.buf);
    strbuf_release(&msg);
    return false;
}

/*
 * DELETE /v1/users/{uid}: erases the user's likes and collections (admin scope alone).
 * A request does at most ERASE_CHUNKS chunks, so its time is bounded whatever the user
 * holds; "done":false asks the caller to repeat it. The counts are this request's.
 */
#define ERASE_CHUNKS 4 /* 1,024 rows per request at most */
static void h_erase_user(struct ctx *c)
{
    struct erase_result r;
    int64_t uid;
    int err;

    if (!cap_id(c, 0, "uid", &uid))
        return;
    if ((err = interactive_erase_user(c->svc, uid, ERASE_CHUNKS, &r))) {
        log_warn("erase of user %lld failed after %lld likes and %lld collections removed: %s",
                 (long long)uid, (long long)r.removed[USER_LIKES],
                 (long long)r.removed[USER_COLLECTIONS], tally_strerror(err));
        fail_err(c, err);
        return;
    }
    c->res->status = 200;
    strbuf_addf(&c->res->body,
                "{\"uid\":%lld,\"likes_removed\":%lld,\"collections_removed\":%lld,"
                "\"done\":%s}",
                (long long)uid, (long long)r.removed[USER_LIKES],
                (long long)r.removed[USER_COLLECTIONS], r.done ? "true" : "false");
}

/* GET /v1/top/{biz}?by=F[&window=W] */
static void h_top(struct ctx *c)
{
    struct item_state st[INTERACTIVE_MAX_LIMIT];
    int64_t wcnt[INTERACTIVE_MAX_LIMIT];
    char biz[ITEM_BIZ_MAX + 1];
    const char *window = param(c, "window");
    enum count_field field;
    int w = WINDOW_COUNT;
    size_t limit, n;
    int err;

    if (!cap_biz(c, 0, biz) || !param_limit(c, 10, &limit) || !param_by(c, &field))
        return;
    for (int i = 0; window && i < WINDOW_COUNT; i++)
        if (strcmp(window, window_names[i]) == 0)
            w = i;
    if (window && w == WINDOW_COUNT) {
        invalid(c, "window must be one of 1h, 24h, 7d, 30d");
        return;
    }
    err = window ? interactive_top_window(c->svc, biz, field, (enum window)w, limit, st, wcnt, &n)
                 : interactive_top(c->svc, biz, field, limit, st, &n);
    if (err) {
        fail_err(c, err);
        return;
    }
    if (!window) {
        reply_states(c, st, n);
        return;
    }
    c->res->status = 200;
    strbuf_addstr(&c->res->body, "{\"items\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            strbuf_addch(&c->res->body, ',');
        json_add_window_state(&c->res->body, &st[i], wcnt[i]);
    }
    strbuf_addstr(&c->res->body, "]}");
}

/* GET /v1/items/{biz}/{id}/history?by=F&bucket=hour|day[&from=MS&to=MS] */
static void h_history(struct ctx *c)
{
    struct history_point *pts;
    const char *bucket = param(c, "bucket");
    struct item it;
    enum count_field field;
    int64_t to = clock_now_ms(), from = -1;
    int hours;
    size_t n;
    int err;

    if (!cap_biz(c, 0, it.biz) || !cap_id(c, 1, "id", &it.id) || !param_by(c, &field) ||
        !param_ms(c, "from", &from) || !param_ms(c, "to", &to))
        return;
    if (!bucket || (strcmp(bucket, "hour") && strcmp(bucket, "day"))) {
        invalid(c, "bucket must be hour or day");
        return;
    }
    hours = bucket[0] == 'h' ? 1 : 24;
    if (from < 0) /* the last INTERACTIVE_MAX_POINTS buckets up to `to` */
        from = to - (to > (INTERACTIVE_MAX_POINTS - 1) * hours * HOUR_MS
                         ? (INTERACTIVE_MAX_POINTS - 1) * hours * HOUR_MS
                         : to);
    if (from > to) {
        invalid(c, "from must not be after to");
        return;
    }
    pts = xcalloc(INTERACTIVE_MAX_POINTS, sizeof(*pts));
    err = interactive_history(c->svc, &it, field, hours, from, to, pts, &n);
    if (err == TALLY_EINVAL) {
        invalid(c, "the range holds more than 1000 buckets");
    } else if (err) {
        fail_err(c, err);
    } else {
        c->res->status = 200;
        strbuf_addstr(&c->res->body, "{\"points\":[");
        for (size_t i = 0; i < n; i++)
            strbuf_addf(&c->res->body, "%s{\"t\":%lld,\"n\":%lld}", i ? "," : "",
                        (long long)pts[i].t, (long long)pts[i].n);
        strbuf_addstr(&c->res->body, "]}");
    }
    free(pts);
}

/* ------------------------------------------------------- the operator's page */

/*
 * GET /ui: ui/index.html, embedded at build time (the Makefile turns it into
 * $(BUILD)/gen/ui_assets.c with xxd -i), so a tallyd binary is the whole
 * deployment. The page holds no data: it is open without a credential and asks
 * the operator for a token when the API answers 401. It only talks to its own
 * origin, which the Content-Security-Policy says (its one script and style are
 * inline, hence 'unsafe-inline').
 */
static void h_ui(struct ctx *c)
{
    c->res->status = 200;
    c->res->content_type = "text/html; charset=utf-8";
    c->res->headers = "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
                      "style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
                      "form-action 'none'; base-uri 'none'; frame-ancestors 'none'\r\n"
                      "X-Content-Type-Options: nosniff\r\n"
                      "Referrer-Policy: no-referrer\r\n";
    strbuf_add(&c->res->body, (const char *)ui_index_html, ui_index_html_len);
}

/* ------------------------------------------------------- routing */

static const struct route routes[] = {
    {"healthz", "healthz", {[API_GET] = h_health}, "GET, HEAD", API_WORK_READ},
    {"metrics", "metrics", {[API_GET] = h_metrics}, "GET, HEAD", API_WORK_LOOP},
    {"livez", "livez", {[API_GET] = h_live}, "GET, HEAD", API_WORK_LOOP},
    {"readyz", "readyz", {[API_GET] = h_ready}, "GET, HEAD", API_WORK_READ},
    {"get_item", "v1/items/:biz/:id", {[API_GET] = h_get_item}, "GET, HEAD", API_WORK_READ},
    {"get_items", "v1/items/:biz", {[API_GET] = h_get_items}, "GET, HEAD", API_WORK_READ},
    /* Publishing never waits on a server (bus.h), so reads are answered on the loop. */
    {"read", "v1/items/:biz/:id/reads", {[API_POST] = h_read}, "POST", API_WORK_LOOP},
    {"history",
     "v1/items/:biz/:id/history",
     {[API_GET] = h_history},
     "GET, HEAD",
     API_WORK_READ},
    {"like",
     "v1/users/:uid/likes/:biz/:id",
     {[API_PUT] = h_like, [API_DELETE] = h_unlike},
     "PUT, DELETE",
     API_WORK_WRITE},
    {"list_likes",
     "v1/users/:uid/likes/:biz",
     {[API_GET] = h_list_likes},
     "GET, HEAD",
     API_WORK_READ},
    {"collect",
     "v1/users/:uid/collections/:cid/items/:biz/:id",
     {[API_PUT] = h_collect, [API_DELETE] = h_uncollect},
     "PUT, DELETE",
     API_WORK_WRITE},
    {"list_collection",
     "v1/users/:uid/collections/:cid/items",
     {[API_GET] = h_list_collection},
     "GET, HEAD",
     API_WORK_READ},
    /* A user's erasure: chunks of store transactions (admin scope alone). */
    {"erase_user", "v1/users/:uid", {[API_DELETE] = h_erase_user}, "DELETE", API_WORK_WRITE},
    {"top", "v1/top/:biz", {[API_GET] = h_top}, "GET, HEAD", API_WORK_READ},
    /* Asks the store and the cache. */
    {"status", "v1/status", {[API_GET] = h_status}, "GET, HEAD", API_WORK_READ},
    /* A page from memory: nothing to wait on. */
    {"ui", "ui", {[API_GET] = h_ui}, "GET, HEAD", API_WORK_LOOP},
};
#define NROUTES ((int)(sizeof(routes) / sizeof(routes[0])))

int api_route_count(void)
{
    return NROUTES + 1;
}

const char *api_route_name(int route)
{
    return route >= 0 && route < NROUTES ? routes[route].name : "unmatched";
}

/* Splits "/a/b/c" into segments; false when there are too many or one is empty. */
static bool split_path(const char *path, struct slice *seg, int *nseg)
{
    const char *p = path;

    *nseg = 0;
    if (*p != '/')
        return false;
    while (*p == '/') {
        const char *start = ++p;
        while (*p && *p != '/')
            p++;
        if (p == start || *nseg == MAX_SEGMENTS)
            return false;
        seg[(*nseg)++] = (struct slice){start, (size_t)(p - start)};
    }
    return *p == '\0';
}

/* Matches segments against a pattern, capturing ":name" segments into c->cap. */
static bool match(const char *pattern, const struct slice *seg, int nseg, struct ctx *c)
{
    const char *p = pattern;
    int i = 0, ncap = 0;

    while (*p) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        if (i == nseg)
            return false;
        if (*p == ':')
            c->cap[ncap++] = seg[i];
        else if (len != seg[i].len || memcmp(p, seg[i].p, len) != 0)
            return false;
        i++;
        p += len;
        if (*p == '/')
            p++;
    }
    return i == nseg;
}

void api_response_init(struct api_response *res)
{
    res->status = 500;
    strbuf_init(&res->body, 0);
    res->content_type = "application/json";
    res->allow = NULL;
    res->challenge = false;
    res->retry_after = 0;
    res->route = NROUTES;
    res->headers = NULL;
    res->states = NULL;
    res->nstates = 0;
}

void api_response_release(struct api_response *res)
{
    strbuf_release(&res->body);
    free(res->states);
    res->states = NULL;
}

/* Routes anyone may call, with or without a credential: the load balancer's probes, and the
 * operator's page (which holds no data: it asks for a token to fetch any). */
static bool open_route(int r)
{
    return r < NROUTES && (routes[r].on[API_GET] == h_health || routes[r].on[API_GET] == h_live ||
                           routes[r].on[API_GET] == h_ready || routes[r].on[API_GET] == h_ui);
}

/* The route the request's path names and whether its method has a handler there. */
static int find_route(const struct api_request *req, struct ctx *c, bool *allowed)
{
    struct slice seg[MAX_SEGMENTS];
    enum api_method m = req->method == API_HEAD ? API_GET : req->method;
    int nseg, r;

    *allowed = false;
    /* "/ui/" is the page too (an empty last segment is a 404 anywhere else). */
    if (!split_path(strcmp(req->path, "/ui/") == 0 ? "/ui" : req->path, seg, &nseg))
        return NROUTES;
    for (r = 0; r < NROUTES; r++)
        if (match(routes[r].pattern, seg, nseg, c))
            break;
    *allowed = r < NROUTES && m != API_OTHER && routes[r].on[m];
    return r;
}

/* Whether the per-caller limit applies: every /v1 route. */
static bool limited(int r)
{
    return r < NROUTES && strncmp(routes[r].pattern, "v1/", 3) == 0;
}

enum api_work api_work_of(const struct interactive *svc, const struct api_request *req,
                          int *route)
{
    struct ctx c = {.req = req};
    bool allowed;
    int r = find_route(req, &c, &allowed);

    *route = r;
    /* 401, 404, 405, 413 and a throttled token's 429 are answered without a server. */
    if (req->principal && !open_route(r) &&
        (req->principal->kind == AUTH_NONE || req->principal->kind == AUTH_THROTTLED))
        return API_WORK_LOOP;
    if (!allowed || req->body_len > API_MAX_BODY)
        return API_WORK_LOOP;
    /*
     * With buckets in Redis a take is a network round trip (up to the
     * cache's timeout, 100 ms, when Redis hangs), which a loop must not
     * wait on: POST .../reads, otherwise answered on the loop, goes to the
     * read pool then. Measured (docs/security.md, "Rate limits"): 33-35k
     * reads/s this way against 25-31k with the take on the loop, since
     * four workers keep four round trips in flight where two loops keep two.
     * In-memory buckets only hold a shard's mutex for a moment, so without
     * Redis reads stay on the loop.
     */
    if (routes[r].work == API_WORK_LOOP && limited(r) && ratelimit_may_wait(svc->limits))
        return API_WORK_READ;
    return routes[r].work;
}

/*
 * Who may do what: /healthz is open; anything else needs a valid credential first (so
 * that routes cannot be probed without one), then the route's scope: `metrics` for
 * /metrics and /v1/status, `read` for GET and HEAD of the rest of /v1, `write` for the
 * rest but a user's erasure (DELETE /v1/users/{uid}), which is `admin`'s alone; `admin`
 * has them all.
 */
static bool authorized(struct ctx *c, int r, enum api_method m)
{
    const struct auth_principal *p = c->req->principal;
    unsigned need;

    if (!p || open_route(r))
        return true;
    if (p->kind == AUTH_NONE) {
        fail_err(c, TALLY_EUNAUTH);
        return false;
    }
    if (p->kind == AUTH_THROTTLED) { /* its address failed too many tokens lately */
        c->res->retry_after = p->retry_after;
        fail_err(c, TALLY_ELIMITED);
        return false;
    }
    if (r == NROUTES)
        return true; /* a 404 follows */
    if (routes[r].on[API_GET] == h_metrics || routes[r].on[API_GET] == h_status)
        need = AUTH_METRICS;
    else
        need = m == API_GET ? AUTH_READ : AUTH_WRITE;
    if (routes[r].on[API_DELETE] == h_erase_user)
        need = AUTH_ADMIN; /* erasing a user's data: not for every writer */
    if (p->scopes & (need | AUTH_ADMIN))
        return true;
    fail_err(c, TALLY_EDENIED);
    return false;
}

void api_handle(struct interactive *svc, const struct api_request *req, struct api_response *res)
{
    struct ctx c = {.svc = svc, .req = req, .res = res};
    enum api_method m = req->method == API_HEAD ? API_GET : req->method;
    bool allowed;
    int r = find_route(req, &c, &allowed);

    res->route = r;
    if (!authorized(&c, r, m))
        return;
    if (r == NROUTES) {
        fail(&c, 404, "not_found", "no such route");
        return;
    }
    if (!allowed) {
        res->allow = routes[r].allow;
        fail(&c, 405, "method_not_allowed", "method not allowed on this path");
        return;
    }
    if (req->body_len > API_MAX_BODY) {
        fail(&c, 413, "payload_too_large", "request body is over 64 KiB");
        return;
    }
    if (limited(r) && !admit_caller(&c))
        return; /* before anything else is parsed: malformed requests count too */
    if (parse_query(&c))
        invalid(&c, "malformed query string");
    else
        routes[r].on[m](&c);
    for (int i = 0; i < c.nparams; i++)
        free(c.params[i].value);
}
