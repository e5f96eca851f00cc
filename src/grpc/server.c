/*
 * server.c - gRPC over HTTP/2: nghttp2 sessions on libevent bufferevents.
 *
 * DESIGN
 *   The same shape as the HTTP server (http/server.c): N event-loop threads accept from
 *   one listening socket and own the connections they accepted; the loops never wait on
 *   a server. A call whose request is whole is decoded (grpc/methods.c) into the HTTP
 *   API's request for the same thing and handed to the HTTP server's worker pools (the
 *   verifying pool first for a user token never seen), which post it back to its loop;
 *   what needs no server (refusals, a read published on the bus) is answered on the loop.
 *   Both APIs thus share their threads, their queues' bounds, and every rule of the API.
 *
 *   nghttp2 does HTTP/2 itself (framing, HPACK, flow control, stream states, and its
 *   guards against floods of resets, pings and settings); this file speaks the gRPC
 *   protocol on top (doc/PROTOCOL-HTTP2.md of grpc): POST, content-type application/grpc,
 *   one length-prefixed message each way, and the status in trailers, or in the one
 *   HEADERS frame of a "Trailers-Only" answer when there is no message. Compressed
 *   messages are refused (UNIMPLEMENTED: tally offers only identity).
 *
 *   Limits every connection lives under: at most MAX_CALLS calls open at once (the
 *   SETTINGS it announces; nghttp2 refuses more), metadata of MAX_METADATA bytes a call,
 *   a request message of API_MAX_BODY bytes (RESOURCE_EXHAUSTED past it, the rest
 *   dropped), every call's request whole within header_timeout_ms of its headers (the
 *   connection is closed otherwise), no call open for idle_timeout_ms (closed), and no
 *   more read while MAX_UNSENT bytes of answers wait for the client. What a connection's
 *   unfinished requests hold is bounded by HTTP/2's flow control, which tally drives
 *   itself: the window (CONN_WINDOW for the connection, CALL_WINDOW a call) is given back
 *   only once a call's request has been decoded, or dropped for being too big, so a client
 *   cannot make a connection hold more than CONN_WINDOW bytes of requests.
 *
 *   Ownership: a connection owns its calls; a call out in a pool is the pool's until it
 *   comes back, and a connection closed meanwhile keeps its struct (not its socket or
 *   session) until its last call is back. The server counts calls out in pools, and
 *   grpc_server_stop() frees nothing while one is out.
 */
#include "grpc/server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "grpc/methods.h"
#include "http/json.h"
#include "http/inbox.h"
#include "http/listener.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/strbuf.h"
#include "util/workpool.h"
#include "util/xmalloc.h"
#include "util/banned.h"

#define MAX_THREADS   64
#define MAX_CALLS     100
#define MAX_METADATA  (16 * 1024)
#define MAX_UNSENT    (1024 * 1024)
#define STOP_GRACE_MS 2000
#define FRAME_PREFIX  5 /* compressed flag, 4-byte big-endian length */
/* Flow control: a call may send one whole message, and a byte more (so that one past the
 * limit is seen, dropped and its window given back), before its window must be given back;
 * a connection twice that. Bytes are given back once a call's request is decoded. */
#define CALL_WINDOW   (FRAME_PREFIX + API_MAX_BODY + 1)
#define CONN_WINDOW   (2 * CALL_WINDOW)

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct conn;

/* One call (an HTTP/2 stream). Owned by its connection; by a pool while `out`. */
struct call {
    struct work work;
    struct conn *conn;
    struct call *prev, *next; /* the connection's list */
    int32_t id;
    const struct grpc_method *method; /* NULL until the request is whole and known */
    struct strbuf path, authorization, idempotency_key, body;
    size_t metadata_bytes;
    size_t received, given_back; /* DATA bytes, and those whose window went back */
    const char *bad_metadata;    /* why the metadata cannot be taken, or NULL */
    bool post, grpc_type, too_big, whole, out, closed;
    int64_t started_us;
    struct grpc_request g;
    struct api_response res;
    struct auth_principal principal;
    struct strbuf reply; /* the framed response message */
    size_t reply_sent;
    struct inbox_item done; /* its place in the loop's inbox, once back from a pool */
};

/* One client connection. Owned by its loop's thread. */
struct conn {
    struct loop *loop;
    struct conn *prev, *next; /* the loop's list */
    struct bufferevent *bev;  /* NULL once closed while calls were out */
    nghttp2_session *h2;
    struct event *timer;
    struct strbuf caller;
    struct call *calls;
    int ncalls, nout;
    bool read_paused, goaway;
};

struct loop {
    struct grpc_server *srv;
    struct event_base *base;
    struct listener_accept accept;
    struct event *stop_ev;
    bool stopping;
    struct conn *conns;
    int nconns;
    struct inbox done; /* calls the pools answered */
    pthread_t thread;
};

#define METHOD_SLOTS (GRPC_METHODS + 1) /* the methods, and one for unknown ones */

struct grpc_server {
    struct grpc_config cfg;
    struct interactive *svc;
    struct http_server *http;
    int fd, port, nloops;
    struct loop loops[MAX_THREADS];
    struct listener_tls tls;
    struct listener_limits limits; /* connections open, and what accepting counts */
    atomic_int out; /* calls in the pools */
    _Atomic(struct metric *) calls[METHOD_SLOTS][GRPC_CODES];
    struct metric *latency[METHOD_SLOTS];
    nghttp2_session_callbacks *callbacks;
    nghttp2_option *options;
    struct metric *m_timeouts;
};

/* ------------------------------------------------------------ metrics */

static int method_slot(const struct call *k)
{
    return k->method ? grpc_method_index(k->method) : METHOD_SLOTS - 1;
}

static const char *method_name(const struct call *k)
{
    return k->method ? k->method->name : "unknown";
}

static void count_call(struct grpc_server *srv, const struct call *k, int code, size_t bytes)
{
    int slot = method_slot(k);
    int64_t us = clock_mono_us() - k->started_us;
    struct metric *m = atomic_load_explicit(&srv->calls[slot][code], memory_order_acquire);

    if (!m) {
        struct strbuf labels = STRBUF_INIT;

        strbuf_addf(&labels, "method=\"%s\",code=\"%s\"", method_name(k), grpc_code_name(code));
        m = metrics_counter("tally_grpc_requests_total", "gRPC calls by method and status code.",
                            labels.buf);
        strbuf_release(&labels);
        atomic_store_explicit(&srv->calls[slot][code], m, memory_order_release);
    }
    metric_add(m, 1);
    metric_observe(srv->latency[slot], (double)us / 1e6);
    if (srv->cfg.access_log) {
        struct log_field f[] = {
            {"method", method_name(k), 0},
            {"code", grpc_code_name(code), 0},
            {"duration_us", NULL, us},
            {"bytes", NULL, (int64_t)bytes},
        };

        log_fields(LOG_INFO, "grpc", f, sizeof(f) / sizeof(f[0]));
    }
}

/* ------------------------------------------------------------ calls */

static void call_free(struct call *k)
{
    strbuf_release(&k->path);
    strbuf_release(&k->authorization);
    strbuf_release(&k->idempotency_key);
    strbuf_release(&k->body);
    strbuf_release(&k->reply);
    grpc_request_release(&k->g);
    api_response_release(&k->res);
    free(k);
}

static struct call *call_new(struct conn *c, int32_t id)
{
    struct call *k = xcalloc(1, sizeof(*k));

    k->conn = c;
    k->id = id;
    k->started_us = clock_mono_us();
    strbuf_init(&k->path, 0);
    strbuf_init(&k->authorization, 0);
    strbuf_init(&k->idempotency_key, 0);
    strbuf_init(&k->body, 0);
    strbuf_init(&k->reply, 0);
    grpc_request_init(&k->g);
    api_response_init(&k->res);
    k->next = c->calls;
    if (c->calls)
        c->calls->prev = k;
    c->calls = k;
    c->ncalls++;
    return k;
}

/* Takes k off its connection's list (it stays allocated while out). */
static void call_unlink(struct call *k)
{
    struct conn *c = k->conn;

    if (k->prev)
        k->prev->next = k->next;
    else
        c->calls = k->next;
    if (k->next)
        k->next->prev = k->prev;
    k->prev = k->next = NULL;
    c->ncalls--;
}

/* Gives the flow-control window of the bytes k received back to its client. */
static void give_back(struct call *k)
{
    size_t n = k->received - k->given_back;

    if (n && k->conn->h2) {
        /* On a closed stream only the connection's window moves: nothing else is owed. */
        nghttp2_session_consume(k->conn->h2, k->id, n);
        k->given_back += n;
    }
}

/* ------------------------------------------------------------ answers */

static nghttp2_nv header(const char *name, const char *value)
{
    return (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                        NGHTTP2_NV_FLAG_NONE};
}

/* grpc-message is percent-encoded: anything outside printable ASCII, and '%'. */
static void add_grpc_message(struct strbuf *out, const char *msg)
{
    static const char hex[] = "0123456789ABCDEF";

    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
            strbuf_addch(out, (char)*p);
        } else {
            strbuf_addch(out, '%');
            strbuf_addch(out, hex[*p >> 4]);
            strbuf_addch(out, hex[*p & 15]);
        }
    }
}

/* A call that ends without a message: one HEADERS frame with its status ("Trailers-Only"). */
static void answer_status(struct call *k, int code, const char *message)
{
    struct strbuf msg = STRBUF_INIT;
    char status[16];
    nghttp2_nv nv[4];

    snprintf(status, sizeof(status), "%d", code);
    add_grpc_message(&msg, message ? message : "");
    nv[0] = header(":status", "200");
    nv[1] = header("content-type", "application/grpc");
    nv[2] = header("grpc-status", status);
    nv[3] = header("grpc-message", msg.buf);
    nghttp2_submit_response(k->conn->h2, k->id, nv, message ? 4 : 3, NULL);
    strbuf_release(&msg);
    count_call(k->conn->loop->srv, k, code, 0);
}

/* An answer that is not gRPC's at all (not a POST, not application/grpc): HTTP's status,
 * counted under the gRPC code that says the same. */
static void answer_http(struct call *k, const char *status, int code)
{
    nghttp2_nv nv[] = {header(":status", status)};

    nghttp2_submit_response(k->conn->h2, k->id, nv, 1, NULL);
    count_call(k->conn->loop->srv, k, code, 0);
}

/* The message goes out as DATA; the trailers follow it (submitted when it is all read). */
static ssize_t read_reply(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t length,
                          uint32_t *flags, nghttp2_data_source *source, void *arg)
{
    struct call *k = source->ptr;
    size_t n = k->reply.len - k->reply_sent;

    (void)arg;
    if (n > length)
        n = length;
    memcpy(buf, k->reply.buf + k->reply_sent, n);
    k->reply_sent += n;
    if (k->reply_sent == k->reply.len) {
        nghttp2_nv trailers[] = {header("grpc-status", "0")};

        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        if (nghttp2_submit_trailer(h2, id, trailers, 1) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
}

/* The message of the API's JSON error, for grpc-message; "" if it has none. */
static void error_message(const struct api_response *res, struct strbuf *out)
{
    json_t *root = json_loadb(res->body.buf, res->body.len, 0, NULL);
    const char *msg = json_string_value(json_object_get(json_object_get(root, "error"),
                                                        "message"));

    strbuf_addstr(out, msg ? msg : "");
    json_decref(root);
}

/* Answers a call the API has answered. */
static void answer(struct call *k)
{
    const struct api_response *res = &k->res;
    int code = grpc_code_of(res->status);

    if (code == GRPC_OK || k->method->any_status) {
        nghttp2_nv nv[] = {header(":status", "200"), header("content-type", "application/grpc")};
        nghttp2_data_provider data = {.source.ptr = k, .read_callback = read_reply};
        size_t len;

        strbuf_reset(&k->reply);
        strbuf_add(&k->reply, "\0\0\0\0\0", FRAME_PREFIX);
        k->method->encode(res, &k->reply);
        len = k->reply.len - FRAME_PREFIX;
        for (int i = 0; i < 4; i++)
            k->reply.buf[1 + i] = (char)(len >> (8 * (3 - i)) & 0xff);
        nghttp2_submit_response(k->conn->h2, k->id, nv, 2, &data);
        count_call(k->conn->loop->srv, k, GRPC_OK, k->reply.len);
    } else {
        struct strbuf msg = STRBUF_INIT;

        error_message(res, &msg);
        answer_status(k, code, msg.buf);
        strbuf_release(&msg);
    }
}

/* ------------------------------------------------------------ pools */

/* Hands a call the pools are done with back to its loop. Any thread. */
static void call_done(struct call *k)
{
    struct loop *l = k->conn->loop;
    struct grpc_server *srv = l->srv;

    inbox_post(&l->done, &k->done);
    atomic_fetch_sub(&srv->out, 1); /* the last touch of the server: stop may free it now */
}

static void call_run(struct work *w)
{
    struct call *k = container_of(w, struct call, work);

    api_handle(k->conn->loop->srv->svc, &k->g.req, &k->res);
    call_done(k);
}

static void busy(struct call *k)
{
    k->res.status = 503;
    json_add_error(&k->res.body, "unavailable", "the server is busy; try again");
}

/* On the verifying pool: the token's signature, then the call as dispatch() would. */
static void verify_run(struct work *w)
{
    struct call *k = container_of(w, struct call, work);
    struct grpc_server *srv = k->conn->loop->srv;
    enum api_work work;
    int route;

    auth_verify(srv->cfg.auth, k->authorization.len ? k->authorization.buf : NULL,
                k->conn->caller.buf, &k->principal);
    k->work.run = call_run;
    work = api_work_of(srv->svc, &k->g.req, &route);
    if (work == API_WORK_LOOP) {
        call_run(w);
    } else if (workpool_submit(http_server_pool(srv->http, work), &k->work) != 0) {
        busy(k); /* still out, as it was since queue(): call_done() ends that */
        call_done(k);
    }
}

/* Queues k to pool; false when the pool is full. */
static bool queue(struct call *k, struct workpool *pool)
{
    struct grpc_server *srv = k->conn->loop->srv;

    atomic_fetch_add(&srv->out, 1);
    if (workpool_submit(pool, &k->work) != 0) {
        atomic_fetch_sub(&srv->out, 1);
        return false;
    }
    k->out = true;
    k->conn->nout++;
    return true;
}

/* A whole request: checked, decoded, and answered on the loop or sent to a pool. */
static void dispatch(struct call *k)
{
    struct conn *c = k->conn;
    struct grpc_server *srv = c->loop->srv;
    const char *why = NULL;
    const uint8_t *b = (const uint8_t *)k->body.buf;
    enum api_work work;
    int route, code;

    if (!k->post) {
        answer_http(k, "405", GRPC_UNIMPLEMENTED);
        return;
    }
    if (!k->grpc_type) {
        answer_http(k, "415", GRPC_INVALID_ARGUMENT);
        return;
    }
    if (!(k->method = grpc_method_find(k->path.buf))) {
        answer_status(k, GRPC_UNIMPLEMENTED, "unknown method");
        return;
    }
    if (k->bad_metadata) {
        answer_status(k, GRPC_INVALID_ARGUMENT, k->bad_metadata);
        return;
    }
    if (k->too_big) {
        answer_status(k, GRPC_RESOURCE_EXHAUSTED, "the request message is over 64 KiB");
        return;
    }
    if (k->body.len < FRAME_PREFIX ||
        ((size_t)b[1] << 24 | (size_t)b[2] << 16 | (size_t)b[3] << 8 | b[4]) !=
            k->body.len - FRAME_PREFIX) {
        answer_status(k, GRPC_INTERNAL, "the request is not one length-prefixed message");
        return;
    }
    if (b[0] != 0) {
        answer_status(k, GRPC_UNIMPLEMENTED,
                      "compressed messages are not accepted (identity only)");
        return;
    }
    if ((code = k->method->decode(b + FRAME_PREFIX, k->body.len - FRAME_PREFIX, &k->g, &why))) {
        answer_status(k, code, why);
        return;
    }
    k->g.req.principal = srv->cfg.auth ? &k->principal : NULL;
    k->g.req.caller = c->caller.buf;
    k->g.req.idempotency_key = k->idempotency_key.len ? k->idempotency_key.buf : NULL;
    if (srv->cfg.auth &&
        auth_check(srv->cfg.auth, k->authorization.len ? k->authorization.buf : NULL,
                   c->caller.buf, &k->principal) == TALLY_EAGAIN) {
        k->work.run = verify_run; /* a user token never seen: a worker checks it */
        if (queue(k, http_server_verify_pool(srv->http)))
            return;
        busy(k);
    } else if ((work = api_work_of(srv->svc, &k->g.req, &route)) != API_WORK_LOOP) {
        k->work.run = call_run;
        if (queue(k, http_server_pool(srv->http, work)))
            return;
        busy(k);
    } else {
        api_handle(srv->svc, &k->g.req, &k->res);
    }
    answer(k);
}

/* ------------------------------------------------------------ HTTP/2 */

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *arg)
{
    struct conn *c = arg;

    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        nghttp2_session_set_stream_user_data(h2, frame->hd.stream_id,
                                             call_new(c, frame->hd.stream_id));
    return 0;
}

static bool name_is(const uint8_t *name, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(name, want, len) == 0;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *arg)
{
    struct call *k = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);

    (void)flags, (void)arg;
    if (!k || frame->headers.cat != NGHTTP2_HCAT_REQUEST) /* a request's trailers: not read */
        return 0;
    k->metadata_bytes += namelen + valuelen + 32; /* HTTP/2's own measure of a field */
    if (k->metadata_bytes > MAX_METADATA)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset */
    if (name_is(name, namelen, ":path")) {
        strbuf_reset(&k->path);
        strbuf_add(&k->path, value, valuelen);
    } else if (name_is(name, namelen, ":method")) {
        k->post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
    } else if (name_is(name, namelen, "content-type")) {
        /* application/grpc, or application/grpc+proto or ;charset: the same thing */
        k->grpc_type = valuelen >= 16 && memcmp(value, "application/grpc", 16) == 0 &&
                       (valuelen == 16 || value[16] == '+' || value[16] == ';');
    } else if (name_is(name, namelen, "authorization")) {
        if (k->authorization.len) /* two credentials: which one speaks? neither */
            k->bad_metadata = "authorization is given twice";
        strbuf_add(&k->authorization, value, valuelen);
    } else if (name_is(name, namelen, "idempotency-key")) {
        if (k->idempotency_key.len)
            k->bad_metadata = "idempotency-key is given twice";
        strbuf_add(&k->idempotency_key, value, valuelen);
    }
    return 0;
}

static int on_data(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *arg)
{
    struct call *k = nghttp2_session_get_stream_user_data(h2, id);

    (void)flags, (void)arg;
    if (!k)
        return 0;
    k->received += len;
    if (!k->too_big && k->body.len + len > FRAME_PREFIX + API_MAX_BODY) {
        k->too_big = true; /* answered when it ends; what follows is dropped */
        strbuf_release(&k->body);
        strbuf_init(&k->body, 0);
    }
    if (k->too_big)
        give_back(k); /* dropped bytes hold nothing: let the client finish */
    else
        strbuf_add(&k->body, data, len);
    return 0;
}

static int on_frame(nghttp2_session *h2, const nghttp2_frame *frame, void *arg)
{
    struct call *k;

    (void)arg;
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    k = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
    if (k && !k->whole) {
        k->whole = true;
        dispatch(k);
        strbuf_release(&k->body); /* decoded: the request lives in k->g now */
        strbuf_init(&k->body, 0);
        give_back(k);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t id, uint32_t error, void *arg)
{
    struct call *k = nghttp2_session_get_stream_user_data(h2, id);

    (void)error, (void)arg;
    if (!k)
        return 0;
    nghttp2_session_set_stream_user_data(h2, id, NULL);
    give_back(k); /* a request reset before it was whole */
    call_unlink(k);
    if (k->out)
        k->closed = true; /* freed when it comes back */
    else
        call_free(k);
    return 0;
}

/* ------------------------------------------------------------ connections */

static void conn_close(struct conn *c);

static void set_timer(struct conn *c, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* What the timer watches now: the oldest unfinished request, or idleness. */
static void arm_timer(struct conn *c)
{
    const struct grpc_config *cfg = &c->loop->srv->cfg;
    int64_t oldest = 0;

    for (struct call *k = c->calls; k; k = k->next)
        if (!k->whole && (!oldest || k->started_us < oldest))
            oldest = k->started_us;
    if (oldest) {
        int64_t left = oldest + (int64_t)cfg->header_timeout_ms * 1000 - clock_mono_us();
        set_timer(c, left > 0 ? (int)(left / 1000) + 1 : 0);
    } else if (c->ncalls == 0) {
        set_timer(c, cfg->idle_timeout_ms);
    } else {
        evtimer_del(c->timer); /* calls are being answered: nothing is the client's to do */
    }
}

/*
 * Sends what nghttp2 has to send; closes the connection when the session is over. False
 * when it closed it: then c may be freed already.
 */
static bool conn_flush(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->h2, &data);

        if (n < 0) {
            conn_close(c);
            return false;
        }
        if (n == 0)
            break;
        evbuffer_add(out, data, (size_t)n);
    }
    if (evbuffer_get_length(out) == 0 &&
        ((!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)) ||
         (c->goaway && c->ncalls == 0))) { /* the session is over, or stopping and answered */
        conn_close(c);
        return false;
    }
    arm_timer(c);
    return true;
}

static void conn_close(struct conn *c)
{
    struct loop *l = c->loop;
    struct grpc_server *srv = l->srv;

    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
        nghttp2_session_del(c->h2); /* calls no callback: the calls are ours to free */
        c->h2 = NULL;
        listener_conn_closed(&srv->limits);
        while (c->calls) {
            struct call *k = c->calls;

            call_unlink(k);
            if (k->out)
                k->closed = true;
            else
                call_free(k);
        }
        evtimer_del(c->timer);
    }
    if (c->nout)
        return; /* freed when its last call comes back */
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    l->nconns--;
    event_free(c->timer);
    strbuf_release(&c->caller);
    free(c);
    if (l->stopping && l->nconns == 0)
        event_base_loopbreak(l->base);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    ssize_t n = nghttp2_session_mem_recv(c->h2, evbuffer_pullup(in, -1), len);

    if (n < 0) { /* a protocol error: nghttp2 has queued its GOAWAY */
        log_debug("grpc: closing a connection: %s", nghttp2_strerror((int)n));
        evbuffer_drain(in, len);
        bufferevent_disable(bev, EV_READ);
    } else {
        evbuffer_drain(in, (size_t)n);
        if (c->nout > 0) {
            /* What the frames just read call for (a PING's ACK, a WINDOW_UPDATE) goes out
             * with the answer of a call in a pool, which flushes when it comes back: one
             * write a call instead of two (gRPC clients PING after each answer they read). */
            arm_timer(c);
            return;
        }
    }
    if (conn_flush(c) && evbuffer_get_length(bufferevent_get_output(bev)) > MAX_UNSENT) {
        c->read_paused = true; /* until the client reads its answers */
        bufferevent_disable(bev, EV_READ);
    }
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;

    if (c->read_paused) {
        c->read_paused = false;
        bufferevent_enable(bev, EV_READ);
    }
    conn_flush(c); /* the session may have been waiting for this to close */
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what == BEV_EVENT_CONNECTED) /* a TLS handshake finished */
        return;
    conn_close(arg); /* EOF, an error, or a client that stopped reading */
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd, (void)what;
    metric_add(c->loop->srv->m_timeouts, 1);
    conn_close(c);
}

/* A connection the loop l (arg) accepted. */
static void conn_new(void *arg, int fd)
{
    struct loop *l = arg;
    struct grpc_server *srv = l->srv;
    struct conn *c = xcalloc(1, sizeof(*c));
    struct timeval write_tv = {srv->cfg.idle_timeout_ms / 1000,
                               (srv->cfg.idle_timeout_ms % 1000) * 1000};
    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_CALLS},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_METADATA},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, CALL_WINDOW},
    };
    int one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->loop = l;
    c->bev = listener_bufferevent(&srv->tls, l->base, fd);
    c->timer = evtimer_new(l->base, on_timer, c);
    TALLY_ASSERT(c->bev && c->timer);
    strbuf_init(&c->caller, 0);
    listener_peer_name(&c->caller, fd);
    TALLY_ASSERT(nghttp2_session_server_new2(&c->h2, srv->callbacks, c, srv->options) == 0);
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, settings,
                            sizeof(settings) / sizeof(settings[0]));
    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    c->next = l->conns;
    if (l->conns)
        l->conns->prev = c;
    l->conns = c;
    l->nconns++;
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_set_timeouts(c->bev, NULL, &write_tv);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    conn_flush(c);
}

/* ------------------------------------------------------------ loops */

/* Calls the pools are done with: answer them and flush their connections. */
static void on_done(evutil_socket_t fd, short what, void *arg)
{
    struct loop *l = arg;
    struct inbox_item *it = inbox_take(&l->done);

    (void)fd, (void)what;
    while (it) {
        struct inbox_item *next = it->next;
        struct call *k = container_of(it, struct call, done);
        struct conn *c = k->conn;

        k->out = false;
        c->nout--;
        if (k->closed) { /* the client reset it, or the connection went */
            call_free(k);
            if (!c->bev && c->nout == 0)
                conn_close(c);
        } else {
            answer(k);
            conn_flush(c);
        }
        it = next;
    }
}

/* Stopping: GOAWAY to every connection; each closes once its calls are answered. */
static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct loop *l = arg;
    struct timeval grace = {STOP_GRACE_MS / 1000, (STOP_GRACE_MS % 1000) * 1000};

    (void)fd, (void)what;
    l->stopping = true;
    listener_accept_stop(&l->accept);
    for (struct conn *c = l->conns, *next; c; c = next) {
        next = c->next;
        if (!c->bev)
            continue;
        c->goaway = true;
        nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->h2), NGHTTP2_NO_ERROR,
                              NULL, 0);
        conn_flush(c);
    }
    if (l->nconns == 0)
        event_base_loopbreak(l->base);
    else
        event_base_loopexit(l->base, &grace);
}

static void *loop_main(void *arg)
{
    struct loop *l = arg;

    event_base_dispatch(l->base);
    return NULL;
}

static void loop_init(struct loop *l, struct grpc_server *srv)
{
    l->srv = srv;
    l->base = event_base_new();
    TALLY_ASSERT(l->base);
    l->stop_ev = event_new(l->base, -1, 0, on_stop, l);
    TALLY_ASSERT(l->stop_ev);
    inbox_init(&l->done, l->base, on_done, l);
    listener_accept_start(&l->accept, l->base, srv->fd, &srv->limits, conn_new, l);
}

/* ------------------------------------------------------------ the server */

static void init_metrics(struct grpc_server *srv)
{
    static const double bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                    0.01,   0.025,   0.05,   0.1,   0.25,   1};

    for (int i = 0; i < METHOD_SLOTS; i++) {
        struct strbuf labels = STRBUF_INIT;

        strbuf_addf(&labels, "method=\"%s\"",
                    i < GRPC_METHODS ? grpc_method_at(i)->name : "unknown");
        srv->latency[i] = metrics_histogram("tally_grpc_request_duration_seconds",
                                            "Time to answer a gRPC call, by method.", labels.buf,
                                            bounds, sizeof(bounds) / sizeof(bounds[0]));
        strbuf_release(&labels);
    }
    srv->limits.m_conns = metrics_gauge("tally_grpc_connections", "Open gRPC connections.", "");
    srv->limits.m_refused = metrics_counter(
        "tally_grpc_connections_refused_total",
        "gRPC connections closed on accept: --max-conns were open.", "");
    srv->limits.m_paused = metrics_counter(
        "tally_grpc_accept_paused_total",
        "Times accepting gRPC connections paused: the process was out of descriptors or memory.",
        "");
    srv->m_timeouts = metrics_counter(
        "tally_grpc_timeouts_total",
        "gRPC connections closed idle, or with a request that did not arrive in time.", "");
}

static nghttp2_session_callbacks *new_callbacks(void)
{
    nghttp2_session_callbacks *cbs;

    TALLY_ASSERT(nghttp2_session_callbacks_new(&cbs) == 0);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    return cbs;
}

int grpc_server_reload_tls(struct grpc_server *srv, char **err)
{
    return listener_tls_reload(&srv->tls, err);
}

struct grpc_server *grpc_server_bind(const struct grpc_config *cfg, char **err)
{
    struct grpc_server *srv = xcalloc(1, sizeof(*srv));
    int fd;

    TALLY_ASSERT(cfg->threads >= 1 && cfg->threads <= MAX_THREADS);
    if (listener_tls_init(&srv->tls, cfg->tls_cert, cfg->tls_key, "h2", err)) {
        free(srv);
        return NULL;
    }
    if ((fd = listener_open(cfg->host, cfg->port, err)) < 0) {
        listener_tls_release(&srv->tls);
        free(srv);
        return NULL;
    }
    evthread_use_pthreads();
    srv->cfg = *cfg;
    srv->limits = (struct listener_limits){.name = "grpc", .max_conns = cfg->max_conns};
    srv->fd = fd;
    srv->port = listener_port(fd);
    srv->callbacks = new_callbacks();
    TALLY_ASSERT(nghttp2_option_new(&srv->options) == 0);
    nghttp2_option_set_no_auto_window_update(srv->options, 1); /* give_back() does it */
    init_metrics(srv);
    return srv;
}

void grpc_server_start(struct grpc_server *srv, struct http_server *http,
                       struct interactive *svc)
{
    srv->svc = svc;
    srv->http = http;
    for (int i = 0; i < srv->cfg.threads; i++) {
        struct loop *l = &srv->loops[i];

        loop_init(l, srv);
        if (pthread_create(&l->thread, NULL, loop_main, l) != 0) {
            log_error("grpc: cannot start loop thread");
            abort();
        }
        srv->nloops++;
    }
}

int grpc_server_port(const struct grpc_server *srv)
{
    return srv->port;
}

void grpc_server_stop(struct grpc_server *srv)
{
    if (!srv)
        return;
    for (int i = 0; i < srv->nloops; i++)
        event_active(srv->loops[i].stop_ev, EV_READ, 0);
    for (int i = 0; i < srv->nloops; i++)
        pthread_join(srv->loops[i].thread, NULL);
    /* Calls still in the pools finish there (each within the store's and the cache's own
     * timeouts); nothing is freed before the last has let go of its loop. */
    while (atomic_load(&srv->out) > 0)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    for (int i = 0; i < srv->nloops; i++) {
        struct loop *l = &srv->loops[i];

        l->stopping = false; /* no loopbreak from the frees below */
        on_done(-1, 0, l);   /* the calls that came back after the loop ended */
        while (l->conns) {
            struct conn *c = l->conns;

            if (c->bev)
                conn_close(c);
            else /* closed earlier with calls out: they are back now */
                c->nout = 0, conn_close(c);
        }
        listener_accept_release(&l->accept);
        event_free(l->stop_ev);
        inbox_release(&l->done);
        event_base_free(l->base);
    }
    close(srv->fd);
    nghttp2_session_callbacks_del(srv->callbacks);
    nghttp2_option_del(srv->options);
    listener_tls_release(&srv->tls);
    free(srv);
}
