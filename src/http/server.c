/*
 * server.c - HTTP/1.1 over libevent bufferevents, parsed by http-parser.
 *
 * DESIGN
 *   N event-loop threads (default 2) each accept from one shared listening
 *   socket and own the connections they accepted; no connection ever
 *   crosses a loop. The loops never wait on a server: a request that needs
 *   the store or the cache is handed to a worker pool (one for reads, one
 *   for writes, so a store whose write lock is taken elsewhere holds up
 *   only the writes), and the pool posts the finished response back to the
 *   connection's loop. What needs no server (errors, /metrics, publishing a
 *   read on the bus) is answered on the loop at once. Nor do the loops check
 *   signatures: a request whose user token auth_check() cannot decide at the
 *   cost of a hash goes first to the verify pool, which checks it and sends
 *   the request on as the loop would have (auth.h).
 *
 *   Why not libevent's evhttp: it cannot bound what a client makes it
 *   hold. Its header timeout restarts on every byte, it buffers pipelined
 *   input and unsent output without limit, takes the first of two
 *   Content-Length headers, answers its own errors in HTML and spins at the
 *   fd limit. Here every connection is a small state machine with hard
 *   limits; the HTTP grammar itself is left to http-parser, which refuses
 *   duplicate Content-Length, Content-Length with Transfer-Encoding, bad
 *   chunk sizes and control bytes. What decides where a request ends is
 *   checked here as well, whatever the parser's build lets through
 *   (framing.h: Debian's is the lenient one): field names are tokens, with
 *   no whitespace before the colon; Transfer-Encoding is exactly chunked
 *   (400, or 501 for a coding not implemented); outside the content, lines
 *   end in CRLF and none is folded. Header values are trimmed of optional
 *   whitespace in one place (header_done), and trailer fields are not read.
 *   docs/architecture.md has the measurements.
 *
 *   Limits every connection lives under:
 *     - a request (line, headers and body) arrives whole within
 *       header_timeout_ms of its first byte, however it is dribbled: the
 *       deadline is set once and never pushed back; 408 when it passes.
 *       The request's duration (access log, metrics) runs from that byte
 *       too, whatever the answer, a refusal included;
 *     - an idle keep-alive connection is closed after idle_timeout_ms, and
 *       so is one whose unsent output makes no progress for that long;
 *     - headers are at most 16 KiB (431), bodies 64 KiB (413, unread);
 *     - one request at a time: while one is being answered the parser is
 *       paused, at most MAX_PIPELINED bytes of the next ones are buffered,
 *       and a connection with more than MAX_UNSENT bytes of responses its
 *       client has not read is not read from until they drain.
 *   Per server: at most max_conns connections (more are closed on
 *   accept); at the fd limit the loop stops accepting, backs off (10 ms
 *   doubling to 1 s) and resumes by itself, logging at most a line a
 *   second.
 *
 *   TLS (--tls-cert/--tls-key): the same connections over libevent's OpenSSL
 *   bufferevents, TLS 1.2 or newer; a reload swaps the context under a
 *   lock, and each connection keeps the one it was accepted with.
 *
 *   A reply that ends a connection (an error, Connection: close) is
 *   written, then the socket is shut for writing and read and discarded
 *   for up to LINGER_MS, so that the client sees the reply instead of a
 *   reset.
 *
 *   Stopping: each loop stops accepting, closes its idle connections,
 *   answers what is in flight and exits when its last connection closes
 *   (or after STOP_GRACE_MS). The pools are freed after the loops are
 *   joined and before any connection is freed, so a job never outlives
 *   the connection it answers.
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/api.h"
#include "http/framing.h"
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

#define MAX_THREADS      64
#define MAX_HEADER_BYTES (16 * 1024)
#define MAX_PIPELINED    (64 * 1024)   /* unparsed input held while a request is answered */
#define MAX_UNSENT       (1024 * 1024) /* unread responses before reading stops */
#define LINGER_MS        500
#define VERIFY_THREADS   2 /* the verifying pool's: signature checks of users' new tokens */
#define STOP_GRACE_MS    2000

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

enum conn_state {
    C_IDLE,    /* between requests; the idle timeout runs */
    C_READING, /* a request has begun; its deadline runs */
    C_WORKING, /* a whole request is being answered in a pool; the parser is paused */
    C_CLOSING, /* the last reply is being written */
    C_LINGER,  /* written and shut for writing; input is read and dropped */
};

/* Which header the value being parsed belongs to (the ones the server reads itself). */
enum header {
    H_OTHER,
    H_HOST,
    H_EXPECT,
    H_AUTHORIZATION,
    H_REQUEST_ID,
    H_IDEMPOTENCY_KEY,
    H_TRANSFER_ENCODING
};

#define REQUEST_ID_MAX 128

/*
 * A request being answered in a pool. Embedded in its connection; the worker
 * touches only req, res and work, and hands the job back through its loop.
 */
struct job {
    struct work work;
    struct loop *loop;
    struct interactive *svc;
    struct api_request req;
    struct api_response res;
    const char *request_id; /* its connection's, for the worker's log lines */
    /* For a signature check on the verifying pool: the connection's own, stable while
     * the job is out (the parser is paused). */
    const char *authorization;
    struct auth_principal *principal;
    struct inbox_item done; /* its place in the loop's inbox, once answered */
};

/* One client connection. Owned by its loop's thread. */
struct conn {
    struct loop *loop;
    struct conn *prev, *next; /* the loop's list */
    struct bufferevent *bev;  /* NULL once closed while a job was out */
    http_parser parser;
    enum conn_state state;
    struct event *timer; /* idle timeout, request deadline or linger, by state */
    /* the request being read */
    struct strbuf url, path, query, body;
    char field[32];
    size_t field_len;
    bool in_value, headers_done; /* headers_done: what follows is trailers, not read */
    enum header header;
    struct strbuf value; /* the value of a header the server reads, until it ends */
    int hosts, authorizations, idempotency_keys, request_ids, transfer_encodings;
    struct strbuf authorization, idempotency_key, transfer_coding; /* trimmed values */
    struct framing_lines lines; /* line ends outside the content, checked as they are read */
    const char *unscanned;      /* in the input being parsed: where the line check stopped */
    char request_id[REQUEST_ID_MAX + 1]; /* taken from X-Request-Id, or made; "" until then */
    size_t request_id_len;
    bool request_id_bad, request_id_ready;
    const char *method; /* for the access log */
    struct auth_principal principal;
    bool expect_continue, complete, bad_method, eof, read_paused;
    int reject;             /* a status the parser callbacks decided on, 0 if none */
    const char *reject_why; /* and its message */
    bool keep_alive, head, http10;
    int64_t started_us; /* the request's first byte */
    struct strbuf caller; /* "addr:IP" of the peer, read once at accept: the per-caller limit */
    struct job job;
};

/* One event loop. Owned by its thread once started; `stop_ev` and `done` are the ways in. */
struct loop {
    struct http_server *srv;
    struct event_base *base;
    struct listener_accept accept;
    struct event *stop_ev;
    bool stopping;
    struct conn *conns;
    int nconns;
    struct inbox done; /* jobs the pools answered */
    struct strbuf head; /* scratch for response headers */
    time_t date_sec;
    char date[64];
    pthread_t thread;
};

#define ROUTE_SLOTS  24 /* routes (api_route_count) and the malformed requests' */
#define STATUS_SLOTS 17
static const int status_slots[STATUS_SLOTS] = {200, 202, 400, 401, 403, 404, 405, 408, 413,
                                               417, 429, 431, 500, 501, 503, 505, 0 /* other */};

/* Created and freed by the main thread; loops and pools read it. */
struct http_server {
    struct http_config cfg;
    struct interactive *svc;
    evutil_socket_t fd;
    int port;
    int nloops;
    struct loop loops[MAX_THREADS];
    struct workpool *pools[3]; /* indexed by enum api_work; [API_WORK_LOOP] unused */
    struct workpool *verify;   /* users' tokens' signature checks (auth_verify) */
    struct listener_tls tls;
    struct listener_limits limits; /* connections open, and what accepting counts */
    unsigned request_id_prefix; /* random per process, so that ids of two instances differ */
    atomic_ullong request_ids;
    int malformed_route; /* the metrics' route for requests that never reached the API */
    /* [route][status slot], created on first use; see count_request(). */
    _Atomic(struct metric *) requests[ROUTE_SLOTS][STATUS_SLOTS];
    struct metric *latency[ROUTE_SLOTS];
    struct metric *m_timeout_header, *m_timeout_idle,
        *m_timeout_write;
};

static const struct http_parser_settings parser_settings;

/* ------------------------------------------------------------ metrics */

static void count_request(struct http_server *srv, int route, int status, double seconds)
{
    int slot = 0;
    struct metric *m;

    while (slot < STATUS_SLOTS - 1 && status_slots[slot] != status)
        slot++;
    m = atomic_load_explicit(&srv->requests[route][slot], memory_order_acquire);
    if (!m) {
        struct strbuf labels = STRBUF_INIT;

        strbuf_addf(&labels, "route=\"%s\",status=\"", route == srv->malformed_route
                                                             ? "malformed"
                                                             : api_route_name(route));
        if (status_slots[slot])
            strbuf_addf(&labels, "%d\"", status_slots[slot]);
        else
            strbuf_addstr(&labels, "other\"");
        m = metrics_counter("tally_http_requests_total", "HTTP requests by route and status.",
                            labels.buf);
        strbuf_release(&labels);
        atomic_store_explicit(&srv->requests[route][slot], m, memory_order_release);
    }
    metric_add(m, 1);
    metric_observe(srv->latency[route], seconds);
}

static const char *reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* ------------------------------------------------------------ connections */

static void conn_process(struct conn *c);
static void conn_finish(struct conn *c);
static void set_timer(struct conn *c, int ms);

/* Closes the socket; the struct goes too unless a job still points at it. */
static void conn_close(struct conn *c)
{
    struct loop *l = c->loop;

    if (c->bev) {
        bufferevent_free(c->bev); /* closes the socket */
        c->bev = NULL;
        listener_conn_closed(&l->srv->limits);
    }
    if (c->state == C_WORKING)
        return; /* freed when the job comes back */
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    l->nconns--;
    event_free(c->timer);
    strbuf_release(&c->url);
    strbuf_release(&c->path);
    strbuf_release(&c->query);
    strbuf_release(&c->body);
    strbuf_release(&c->authorization);
    strbuf_release(&c->idempotency_key);
    strbuf_release(&c->transfer_coding);
    strbuf_release(&c->value);
    strbuf_release(&c->caller);
    free(c);
    if (l->stopping && l->nconns == 0)
        event_base_loopbreak(l->base);
}

/* Closes c once what it has to send is written (the client stopped sending, or a stop). */
static void conn_finish(struct conn *c)
{
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        conn_close(c);
        return;
    }
    c->state = C_CLOSING;
    evtimer_del(c->timer);
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
}

/* Shuts the socket for writing and drops what the client still sends, for a moment. */
static void conn_linger(struct conn *c)
{
    c->state = C_LINGER;
    if (!bufferevent_openssl_get_ssl(c->bev)) /* TLS: the peer's close ends it */
        shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    bufferevent_enable(c->bev, EV_READ);
    set_timer(c, LINGER_MS);
}

static void set_timer(struct conn *c, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

static const char *http_date(struct loop *l)
{
    time_t now = time(NULL);

    if (now != l->date_sec) {
        struct tm tm;

        gmtime_r(&now, &tm);
        strftime(l->date, sizeof(l->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        l->date_sec = now;
    }
    return l->date;
}

static void forget_request_id(struct conn *c)
{
    c->request_id[0] = '\0';
    c->request_id_len = 0;
    c->request_id_bad = c->request_id_ready = false;
    c->method = NULL;
}

/*
 * The request's id: the client's X-Request-Id when it is 1..128 characters of
 * [A-Za-z0-9._:/+=~-], else one made here (process prefix + counter, unique per process).
 */
static const char *request_id(struct conn *c)
{
    struct http_server *srv = c->loop->srv;
    size_t n = c->request_id_len;
    bool ok = !c->request_id_bad && n > 0 && n <= REQUEST_ID_MAX;

    if (c->request_id_ready)
        return c->request_id;
    for (size_t i = 0; ok && i < n; i++) {
        char ch = c->request_id[i];
        ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             (ch && strchr("._:/+=~-", ch));
    }
    if (ok) {
        c->request_id[n] = '\0';
    } else {
        snprintf(c->request_id, sizeof(c->request_id), "%08x%016llx", srv->request_id_prefix,
                 (unsigned long long)atomic_fetch_add(&srv->request_ids, 1));
        c->request_id_len = strlen(c->request_id);
    }
    c->request_id_ready = true;
    return c->request_id;
}

/* One line per request, when --access-log is on. */
static void access_log(struct conn *c, const struct api_response *res, int64_t us)
{
    struct http_server *srv = c->loop->srv;
    struct log_field f[] = {
        {"method", c->method ? c->method : "-", 0},
        {"route", res->route == srv->malformed_route ? "malformed" : api_route_name(res->route), 0},
        {"status", NULL, res->status},
        {"duration_us", NULL, us},
        {"bytes", NULL, (int64_t)(c->head ? 0 : res->body.len)},
        {"request_id", c->request_id, 0},
    };

    log_fields(LOG_INFO, "request", f, sizeof(f) / sizeof(f[0]));
}

/* Writes one response and moves the connection on: to the next request, or to closing. */
static void respond(struct conn *c, const struct api_response *res)
{
    struct loop *l = c->loop;
    struct strbuf *h = &l->head;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    int64_t us;

    strbuf_reset(h);
    strbuf_addf(h, "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n",
                res->status, reason(res->status), http_date(l), res->content_type, res->body.len);
    if (res->allow)
        strbuf_addf(h, "Allow: %s\r\n", res->allow);
    if (res->challenge)
        strbuf_addstr(h, "WWW-Authenticate: Bearer\r\n");
    if (res->retry_after > 0)
        strbuf_addf(h, "Retry-After: %d\r\n", res->retry_after);
    if (res->headers)
        strbuf_addstr(h, res->headers);
    strbuf_addf(h, "X-Request-Id: %s\r\n", request_id(c));
    if (res->status >= 400 && res->route == l->srv->malformed_route)
        c->keep_alive = false;
    if (l->stopping)
        c->keep_alive = false;
    if (!c->keep_alive)
        strbuf_addstr(h, "Connection: close\r\n");
    else if (c->http10)
        strbuf_addstr(h, "Connection: keep-alive\r\n");
    strbuf_addstr(h, "\r\n");
    evbuffer_add(out, h->buf, h->len);
    if (!c->head)
        evbuffer_add(out, res->body.buf, res->body.len);
    us = clock_mono_us() - c->started_us;
    count_request(l->srv, res->route, res->status, (double)us / 1e6);
    if (l->srv->cfg.access_log)
        access_log(c, res, us);
    forget_request_id(c); /* the next request has its own */
    if (c->keep_alive) {
        c->state = C_IDLE;
        set_timer(c, l->srv->cfg.idle_timeout_ms);
    } else {
        conn_finish(c);
    }
}

/* Answers with an error of the server's own (the request never reached the API). */
static void reject(struct conn *c, int status, const char *code, const char *message)
{
    struct api_response res;

    api_response_init(&res);
    res.status = status;
    res.route = c->loop->srv->malformed_route;
    json_add_error(&res.body, code, message);
    c->keep_alive = false;
    c->head = false;
    respond(c, &res);
    api_response_release(&res);
}

/* ------------------------------------------------------------ parser callbacks */

/* Records the first reason found to refuse the request; answered once parsing stops. */
static void refuse(struct conn *c, int status, const char *why)
{
    if (!c->reject) {
        c->reject = status;
        c->reject_why = why;
    }
}

/*
 * Feeds the bytes read since the line check last stopped, up to `upto`, to it:
 * false (and the request refused) when they break RFC 9112's line rules.
 */
static bool lines_ok(struct conn *c, const char *upto)
{
    const char *why = framing_lines_feed(&c->lines, c->unscanned, (size_t)(upto - c->unscanned));

    c->unscanned = upto;
    if (why)
        refuse(c, 400, why);
    return !why;
}

static int on_message_begin(http_parser *p)
{
    struct conn *c = p->data;

    strbuf_reset(&c->url);
    strbuf_reset(&c->body);
    strbuf_reset(&c->value);
    strbuf_reset(&c->authorization);
    strbuf_reset(&c->idempotency_key);
    strbuf_reset(&c->transfer_coding);
    forget_request_id(c);
    c->field_len = 0;
    c->in_value = c->headers_done = false;
    c->header = H_OTHER;
    c->hosts = c->authorizations = c->idempotency_keys = c->request_ids = 0;
    c->transfer_encodings = 0;
    c->expect_continue = false;
    c->reject = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    strbuf_add(&c->url, at, len);
    return 0;
}

/* X-Request-Id: kept when it is the only one and fits; request_id() checks its characters. */
static void take_request_id(struct conn *c, const char *v, size_t n)
{
    if (++c->request_ids > 1 || n > REQUEST_ID_MAX) {
        c->request_id_bad = true; /* make one */
        return;
    }
    memcpy(c->request_id, v, n);
    c->request_id_len = n;
}

/* Appends one Transfer-Encoding field's codings to the request's list of them. */
static void add_transfer_codings(struct conn *c, const char *v, size_t n)
{
    if (c->transfer_encodings++ > 0)
        strbuf_addch(&c->transfer_coding, ',');
    strbuf_add(&c->transfer_coding, v, n);
}

/*
 * A header's value has ended. The one place values are trimmed: optional
 * whitespace (SP, HTAB) goes from both ends (RFC 9110 5.5) before anything
 * looks at them.
 */
static void header_done(struct conn *c)
{
    const char *v = c->value.buf;
    size_t n = c->value.len;

    framing_trim_ows(&v, &n);
    switch (c->header) {
    case H_OTHER: break;
    case H_HOST: c->hosts++; break;
    case H_EXPECT:
        if (n == 12 && strncasecmp(v, "100-continue", 12) == 0)
            c->expect_continue = true;
        else
            refuse(c, 417, "only Expect: 100-continue is understood");
        break;
    case H_AUTHORIZATION:
        if (++c->authorizations > 1)
            refuse(c, 400, "a request may carry one Authorization header");
        strbuf_add(&c->authorization, v, n);
        break;
    case H_IDEMPOTENCY_KEY:
        if (++c->idempotency_keys > 1)
            refuse(c, 400, "a request may carry one Idempotency-Key header");
        strbuf_add(&c->idempotency_key, v, n);
        break;
    case H_REQUEST_ID: take_request_id(c, v, n); break;
    case H_TRANSFER_ENCODING: add_transfer_codings(c, v, n); break;
    }
    c->header = H_OTHER;
    c->in_value = false;
    strbuf_reset(&c->value);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    lines_ok(c, at + len); /* the lines before it, so that refusals come in the bytes' order */
    if (c->in_value) { /* a new field begins */
        header_done(c);
        c->field_len = 0;
    }
    if (framing_token_len(at, len) < len) /* RFC 9112 5.1: no whitespace before the colon */
        refuse(c, 400, "a header field name must be a token, with no whitespace before its colon");
    /* Only short names matter here; a longer one just stops matching. */
    if (c->field_len + len < sizeof(c->field))
        memcpy(c->field + c->field_len, at, len);
    c->field_len += len;
    return 0;
}

static bool field_is(const struct conn *c, const char *name)
{
    size_t n = strlen(name);
    return c->field_len == n && strncasecmp(c->field, name, n) == 0;
}

/* The header whose value begins; trailer fields are not read (RFC 9110 6.5.1). */
static enum header header_of(const struct conn *c)
{
    if (c->headers_done)
        return H_OTHER;
    return field_is(c, "host")                ? H_HOST
           : field_is(c, "expect")            ? H_EXPECT
           : field_is(c, "authorization")     ? H_AUTHORIZATION
           : field_is(c, "idempotency-key")   ? H_IDEMPOTENCY_KEY
           : field_is(c, "x-request-id")      ? H_REQUEST_ID
           : field_is(c, "transfer-encoding") ? H_TRANSFER_ENCODING
                                              : H_OTHER;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    lines_ok(c, at + len);
    if (!c->in_value) {
        c->in_value = true;
        c->header = header_of(c);
    }
    if (c->header != H_OTHER)
        strbuf_add(&c->value, at, len);
    return 0;
}

/* Transfer-Encoding, if any, frames the body as exactly one coding: chunked (RFC 9112 6.1). */
static void check_transfer_coding(struct conn *c, const http_parser *p)
{
    const char *why;
    int status;

    if (!c->transfer_encodings)
        return;
    if (p->http_minor == 0) {
        refuse(c, 400, "Transfer-Encoding is not HTTP/1.0: the framing is faulty");
        return;
    }
    if ((status = framing_transfer_coding(c->transfer_coding.buf, c->transfer_coding.len, &why)))
        refuse(c, status, why);
    else if (!(p->flags & F_CHUNKED)) /* the parser must frame it as this check does */
        refuse(c, 400, "Transfer-Encoding: chunked in a form the parser does not frame as such");
}

static int on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;

    if (c->in_value)
        header_done(c);
    c->headers_done = true;
    if (p->http_major != 1 || p->http_minor > 1)
        refuse(c, 505, "HTTP/1.0 and HTTP/1.1 only");
    else if (c->hosts > 1 || (p->http_minor == 1 && c->hosts == 0))
        refuse(c, 400, "HTTP/1.1 requires exactly one Host header"); /* RFC 9112 3.2 */
    check_transfer_coding(c, p);
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > API_MAX_BODY)
        refuse(c, 413, "request body is over 64 KiB");
    if (c->reject)
        return -1;
    if (c->expect_continue && ((p->flags & F_CHUNKED) || p->content_length > 0))
        bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    return 0;
}

/* Content: the line check resumes after it. */
static int on_body(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    if (!lines_ok(c, at))
        return -1;
    framing_lines_reset(&c->lines);
    c->unscanned = at + len;
    if (c->body.len + len > API_MAX_BODY) {
        refuse(c, 413, "request body is over 64 KiB");
        return -1;
    }
    strbuf_add(&c->body, at, len);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;

    c->complete = true;
    http_parser_pause(p, 1); /* one request at a time */
    return 0;
}

static const struct http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ------------------------------------------------------------ requests */

static enum api_method method_of(unsigned m)
{
    switch (m) {
    case HTTP_GET: return API_GET;
    case HTTP_HEAD: return API_HEAD;
    case HTTP_POST: return API_POST;
    case HTTP_PUT: return API_PUT;
    case HTTP_DELETE: return API_DELETE;
    default: return API_OTHER;
    }
}

/* Splits the request target into c->path and c->query; false when it is not a URL. */
static bool split_target(struct conn *c, const char *url, size_t len, bool connect)
{
    struct http_parser_url u;

    http_parser_url_init(&u);
    if (len == 0 || http_parser_parse_url(url, len, connect, &u) != 0)
        return false;
    strbuf_reset(&c->path);
    strbuf_reset(&c->query);
    if (u.field_set & (1 << UF_PATH))
        strbuf_add(&c->path, url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    else
        strbuf_addch(&c->path, '/');
    if (u.field_set & (1 << UF_QUERY))
        strbuf_add(&c->query, url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
    return true;
}

/* Hands a finished job back to its connection's loop. Any thread. */
static void job_done(struct job *j)
{
    inbox_post(&j->loop->done, &j->done);
}

static void job_run(struct work *w)
{
    struct job *j = container_of(w, struct job, work);

    log_set_request_id(j->request_id);
    api_handle(j->svc, &j->req, &j->res);
    log_set_request_id(NULL);
    job_done(j);
}

/* The answer when a pool's queue is full. */
static void busy(struct api_response *res, int route)
{
    res->status = 503;
    res->route = route;
    json_add_error(&res->body, "unavailable", "the server is busy; try again");
}

/*
 * On the verifying pool: the signature check of a user token the loop could not decide
 * (auth_check), then the request as dispatch() would have sent it on: answered here, or
 * queued to its own pool.
 */
static void verify_run(struct work *w)
{
    struct job *j = container_of(w, struct job, work);
    struct http_server *srv = j->loop->srv;
    enum api_work work;
    int route;

    auth_verify(srv->cfg.auth, j->authorization, j->req.caller, j->principal);
    j->work.run = job_run;
    work = api_work_of(j->svc, &j->req, &route);
    if (work == API_WORK_LOOP) {
        job_run(w);
    } else if (workpool_submit(srv->pools[work], &j->work) != 0) {
        busy(&j->res, route);
        job_done(j);
    }
}

/* Queues j to pool; false (the connection's state untouched) when the queue is full. */
static bool queue_job(struct conn *c, struct workpool *pool)
{
    if (workpool_submit(pool, &c->job.work) != 0)
        return false;
    c->state = C_WORKING;
    evtimer_del(c->timer);
    return true;
}

/* Answers the request c has read, on the loop or through a pool. */
static void dispatch(struct conn *c, enum api_method method)
{
    struct http_server *srv = c->loop->srv;
    struct job *j = &c->job;
    enum api_work work;
    int route;

    api_response_init(&j->res);
    j->req = (struct api_request){
        .method = method,
        .path = c->path.buf,
        .query = c->query.buf,
        .body = c->body.len ? c->body.buf : "",
        .body_len = c->body.len,
        .principal = srv->cfg.auth ? &c->principal : NULL,
        .caller = c->caller.buf,
        .idempotency_key = c->idempotency_keys ? c->idempotency_key.buf : NULL,
    };
    j->request_id = request_id(c);
    j->authorization = c->authorization.len ? c->authorization.buf : NULL;
    j->principal = &c->principal;
    if (srv->cfg.auth &&
        auth_check(srv->cfg.auth, j->authorization, c->caller.buf, j->principal) ==
            TALLY_EAGAIN) {
        /* A user token never seen: its signature check is a worker's, not the loop's. */
        j->work.run = verify_run;
        if (queue_job(c, srv->verify))
            return;
        j->work.run = job_run;
        api_work_of(srv->svc, &j->req, &route); /* for the 503's route */
        busy(&j->res, route);
    } else if ((work = api_work_of(srv->svc, &j->req, &route)) != API_WORK_LOOP) {
        if (queue_job(c, srv->pools[work]))
            return;
        busy(&j->res, route);
    } else {
        log_set_request_id(j->request_id);
        api_handle(srv->svc, &j->req, &j->res);
        log_set_request_id(NULL);
    }
    respond(c, &j->res);
    api_response_release(&j->res);
}

static void request_complete(struct conn *c)
{
    http_parser *p = &c->parser;

    c->complete = false;
    http_parser_pause(p, 0);
    c->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    c->head = p->method == HTTP_HEAD;
    c->http10 = p->http_minor == 0;
    c->method = http_method_str(p->method);
    if (!split_target(c, c->url.buf, c->url.len, p->method == HTTP_CONNECT)) {
        reject(c, 400, "bad_request", "the request target is not a valid URL");
        return;
    }
    dispatch(c, method_of(p->method));
}

/*
 * http-parser knows a fixed list of methods. Any other well-formed request
 * line ("FOO /v1/items/a/1 HTTP/1.1") is still a request for a path: the API
 * answers it (405 with Allow, or 404), and the connection closes since the
 * body's framing is unknown. Returns false while the line is incomplete.
 */
static bool answer_unknown_method(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t eol_len, len;
    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
    const char *line, *sp1, *sp2;
    bool ok = true;

    if (eol.pos < 0) {
        if (evbuffer_get_length(in) <= MAX_HEADER_BYTES && !c->eof)
            return false;
        reject(c, evbuffer_get_length(in) > MAX_HEADER_BYTES ? 431 : 400,
               evbuffer_get_length(in) > MAX_HEADER_BYTES ? "headers_too_large" : "bad_request",
               "malformed request line");
        return true;
    }
    line = (const char *)evbuffer_pullup(in, eol.pos + 1);
    len = (size_t)eol.pos;
    if (len == 0 || line[--len] != '\r') { /* RFC 9112 2.2: CRLF, not a bare LF */
        reject(c, 400, "bad_request", "malformed request line");
        return true;
    }
    sp1 = memchr(line, ' ', len);
    sp2 = sp1 ? memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - line)) : NULL;
    ok = sp1 && sp2 && sp1 > line && sp2 > sp1 + 1 &&
         (size_t)(line + len - (sp2 + 1)) == 8 &&
         (memcmp(sp2 + 1, "HTTP/1.1", 8) == 0 || memcmp(sp2 + 1, "HTTP/1.0", 8) == 0);
    ok = ok && framing_token_len(line, (size_t)(sp1 - line)) == (size_t)(sp1 - line);
    if (!ok || !split_target(c, sp1 + 1, (size_t)(sp2 - sp1 - 1), false)) {
        reject(c, 400, "bad_request", "malformed request line");
        return true;
    }
    c->keep_alive = false;
    c->head = false;
    c->http10 = false;
    c->method = "OTHER";
    dispatch(c, API_OTHER);
    return true;
}

/* The parser stopped on an error: answer it and close. */
static void parse_failed(struct conn *c)
{
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    struct strbuf msg = STRBUF_INIT;

    switch (c->reject) {
    case 0: break;
    case 413: reject(c, 413, "payload_too_large", c->reject_why); return;
    case 417: reject(c, 417, "expectation_failed", c->reject_why); return;
    case 501: reject(c, 501, "not_implemented", c->reject_why); return;
    case 505: reject(c, 505, "http_version_not_supported", c->reject_why); return;
    default: reject(c, c->reject, "bad_request", c->reject_why); return;
    }
    if (e == HPE_HEADER_OVERFLOW) {
        reject(c, 431, "headers_too_large", "request line and headers are over 16 KiB");
        return;
    }
    strbuf_addf(&msg, "malformed HTTP request: %s", http_errno_description(e));
    reject(c, 400, "bad_request", msg.buf);
    strbuf_release(&msg);
}

/* Reads requests from the input buffer and answers them, as far as the limits allow. */
static void conn_process(struct conn *c)
{
    struct evbuffer *in, *out;

    while (c->bev && (c->state == C_IDLE || c->state == C_READING)) {
        size_t len, n;
        const char *data;

        in = bufferevent_get_input(c->bev);
        out = bufferevent_get_output(c->bev);
        if (evbuffer_get_length(out) > MAX_UNSENT) { /* wait until the client reads */
            c->read_paused = true;
            bufferevent_disable(c->bev, EV_READ);
            return;
        }
        if ((len = evbuffer_get_length(in)) == 0)
            break;
        if (c->state == C_IDLE) { /* the first byte of a request: its deadline and clock start */
            c->state = C_READING;
            c->started_us = clock_mono_us();
            set_timer(c, c->loop->srv->cfg.header_timeout_ms);
        }
        if (c->bad_method) {
            if (!answer_unknown_method(c))
                break;
            continue;
        }
        data = (const char *)evbuffer_pullup(in, -1);
        c->unscanned = data;
        n = http_parser_execute(&c->parser, &parser_settings, data, len);
        lines_ok(c, data + n);
        if (c->reject) { /* a refusal decided while parsing: no need to read on */
            parse_failed(c);
            break;
        }
        if (c->complete) {
            framing_lines_reset(&c->lines); /* the next request starts afresh */
            evbuffer_drain(in, n);
            request_complete(c);
            continue;
        }
        if (HTTP_PARSER_ERRNO(&c->parser) == HPE_INVALID_METHOD) {
            c->bad_method = true;
            continue;
        }
        if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK) {
            parse_failed(c);
            break;
        }
        evbuffer_drain(in, n);
    }
    if (c->bev && c->eof && (c->state == C_IDLE || c->state == C_READING))
        conn_finish(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;

    if (c->state == C_LINGER) {
        struct evbuffer *in = bufferevent_get_input(bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    conn_process(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;

    if (c->state == C_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            conn_linger(c);
        return;
    }
    if (c->read_paused) { /* the client read its responses: take its next requests */
        c->read_paused = false;
        bufferevent_enable(bev, EV_READ);
        conn_process(c);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;

    (void)bev;
    if (what == BEV_EVENT_CONNECTED) /* a TLS handshake finished: requests follow */
        return;
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_WRITING)) {
        metric_add(c->loop->srv->m_timeout_write, 1);
        conn_close(c);
    } else if ((what & BEV_EVENT_EOF) && c->state != C_LINGER) {
        /* The client is done sending; what it asked for is still answered. */
        c->eof = true;
        if (c->state == C_IDLE || c->state == C_READING)
            conn_process(c);
    } else {
        conn_close(c);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd, (void)what;
    switch (c->state) {
    case C_IDLE:
        metric_add(c->loop->srv->m_timeout_idle, 1);
        conn_close(c);
        break;
    case C_READING:
        metric_add(c->loop->srv->m_timeout_header, 1);
        reject(c, 408, "request_timeout", "the request did not arrive in time");
        break;
    default: conn_close(c); break;
    }
}

/* A connection the loop l (arg) accepted. */
static void conn_new(void *arg, int fd)
{
    struct loop *l = arg;
    struct conn *c = xcalloc(1, sizeof(*c));
    struct http_server *srv = l->srv;
    struct timeval write_tv = {srv->cfg.idle_timeout_ms / 1000,
                               (srv->cfg.idle_timeout_ms % 1000) * 1000};
    int one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->loop = l;
    c->bev = listener_bufferevent(&srv->tls, l->base, fd);
    c->timer = evtimer_new(l->base, on_timer, c);
    TALLY_ASSERT(c->bev && c->timer);
    strbuf_init(&c->url, 0);
    strbuf_init(&c->path, 0);
    strbuf_init(&c->query, 0);
    strbuf_init(&c->body, 0);
    strbuf_init(&c->authorization, 0);
    strbuf_init(&c->idempotency_key, 0);
    strbuf_init(&c->transfer_coding, 0);
    strbuf_init(&c->value, 0);
    strbuf_init(&c->caller, 0);
    listener_peer_name(&c->caller, fd);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->job.work.run = job_run;
    c->job.loop = l;
    c->job.svc = srv->svc;
    c->state = C_IDLE;
    c->next = l->conns;
    if (l->conns)
        l->conns->prev = c;
    l->conns = c;
    l->nconns++;
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, MAX_PIPELINED);
    bufferevent_setwatermark(c->bev, EV_WRITE, MAX_UNSENT / 2, 0);
    bufferevent_set_timeouts(c->bev, NULL, &write_tv);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    set_timer(c, srv->cfg.idle_timeout_ms);
}

/* ------------------------------------------------------------ loops */

/* Jobs the pools finished: answer them and go on with their connections. */
static void on_done(evutil_socket_t fd, short what, void *arg)
{
    struct loop *l = arg;
    struct inbox_item *it = inbox_take(&l->done);

    (void)fd, (void)what;
    while (it) {
        struct inbox_item *next = it->next;
        struct job *j = container_of(it, struct job, done);
        struct conn *c = container_of(j, struct conn, job);

        if (!c->bev) { /* the client went away meanwhile */
            api_response_release(&j->res);
            c->state = C_CLOSING;
            conn_close(c);
        } else {
            respond(c, &j->res);
            api_response_release(&j->res); /* before the next request reuses the job */
            conn_process(c);
        }
        it = next;
    }
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct loop *l = arg;
    struct timeval grace = {STOP_GRACE_MS / 1000, (STOP_GRACE_MS % 1000) * 1000};
    struct conn *c = l->conns;

    (void)fd, (void)what;
    l->stopping = true;
    listener_accept_stop(&l->accept);
    while (c) { /* idle ones go now; the others after their reply */
        struct conn *next = c->next;

        c->keep_alive = false;
        if (c->state == C_IDLE)
            conn_finish(c);
        c = next;
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

static void init_metrics(struct http_server *srv)
{
    static const double bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                    0.01,   0.025,   0.05,   0.1,   0.25,   1};
    const char *timeouts = "HTTP connections closed for a timeout, by phase.";

    for (int r = 0; r <= srv->malformed_route; r++) {
        struct strbuf labels = STRBUF_INIT;

        strbuf_addf(&labels, "route=\"%s\"",
                    r == srv->malformed_route ? "malformed" : api_route_name(r));
        srv->latency[r] = metrics_histogram("tally_http_request_duration_seconds",
                                            "Time to handle a request, by route.", labels.buf,
                                            bounds, sizeof(bounds) / sizeof(bounds[0]));
        strbuf_release(&labels);
    }
    srv->limits.m_conns = metrics_gauge("tally_http_connections", "Open HTTP connections.", "");
    srv->limits.m_refused = metrics_counter(
        "tally_http_connections_refused_total",
        "Connections closed on accept: --max-conns were open.", "");
    srv->limits.m_paused = metrics_counter(
        "tally_http_accept_paused_total",
        "Times accepting paused because the process was out of descriptors or memory.", "");
    srv->m_timeout_header = metrics_counter("tally_http_timeouts_total", timeouts,
                                            "phase=\"header\"");
    srv->m_timeout_idle = metrics_counter("tally_http_timeouts_total", timeouts, "phase=\"idle\"");
    srv->m_timeout_write = metrics_counter("tally_http_timeouts_total", timeouts,
                                           "phase=\"write\"");
}

static void loop_init(struct loop *l, struct http_server *srv)
{
    l->srv = srv;
    l->base = event_base_new();
    TALLY_ASSERT(l->base);
    l->stop_ev = event_new(l->base, -1, 0, on_stop, l);
    TALLY_ASSERT(l->stop_ev);
    inbox_init(&l->done, l->base, on_done, l);
    strbuf_init(&l->head, 256);
    listener_accept_start(&l->accept, l->base, srv->fd, &srv->limits, conn_new, l);
}

int http_server_reload_tls(struct http_server *srv, char **err)
{
    return listener_tls_reload(&srv->tls, err);
}

struct http_server *http_server_start(const struct http_config *cfg, struct interactive *svc,
                                      char **err)
{
    struct http_server *srv = xcalloc(1, sizeof(*srv));
    evutil_socket_t fd;

    TALLY_ASSERT(cfg->threads >= 1 && cfg->threads <= MAX_THREADS);
    TALLY_ASSERT(api_route_count() + 1 <= ROUTE_SLOTS);
    if (listener_tls_init(&srv->tls, cfg->tls_cert, cfg->tls_key, NULL, err)) {
        free(srv);
        return NULL;
    }
    if ((fd = listener_open(cfg->host, cfg->port, err)) < 0) {
        listener_tls_release(&srv->tls);
        free(srv);
        return NULL;
    }
    evthread_use_pthreads();
    http_parser_set_max_header_size(MAX_HEADER_BYTES);
    srv->cfg = *cfg;
    srv->svc = svc;
    srv->limits = (struct listener_limits){.name = "http", .max_conns = cfg->max_conns};
    srv->fd = fd;
    srv->port = listener_port(fd);
    srv->malformed_route = api_route_count();
    if (RAND_bytes((unsigned char *)&srv->request_id_prefix, sizeof(srv->request_id_prefix)) != 1)
        srv->request_id_prefix = (unsigned)getpid();
    init_metrics(srv);
    srv->pools[API_WORK_READ] = workpool_new("reads", cfg->workers, cfg->work_queue);
    srv->pools[API_WORK_WRITE] = workpool_new("writes", cfg->workers, cfg->work_queue);
    srv->verify = workpool_new("verify", VERIFY_THREADS, cfg->work_queue);
    for (int i = 0; i < cfg->threads; i++) {
        struct loop *l = &srv->loops[i];

        loop_init(l, srv);
        if (pthread_create(&l->thread, NULL, loop_main, l) != 0) {
            log_error("http: cannot start loop thread");
            abort();
        }
        srv->nloops++;
    }
    return srv;
}

int http_server_port(const struct http_server *srv)
{
    return srv->port;
}

struct workpool *http_server_pool(struct http_server *srv, enum api_work work)
{
    TALLY_ASSERT(work == API_WORK_READ || work == API_WORK_WRITE);
    return srv->pools[work];
}

struct workpool *http_server_verify_pool(struct http_server *srv)
{
    return srv->verify;
}

void http_server_stop(struct http_server *srv)
{
    if (!srv)
        return;
    for (int i = 0; i < srv->nloops; i++)
        event_active(srv->loops[i].stop_ev, EV_READ, 0);
    for (int i = 0; i < srv->nloops; i++)
        pthread_join(srv->loops[i].thread, NULL);
    /* Jobs still out finish now; their connections are freed only after. A signature
     * check may queue its request to another pool: it goes first. */
    workpool_free(srv->verify);
    workpool_free(srv->pools[API_WORK_READ]);
    workpool_free(srv->pools[API_WORK_WRITE]);
    for (int i = 0; i < srv->nloops; i++) {
        struct loop *l = &srv->loops[i];

        l->stopping = false; /* no loopbreak from the frees below */
        for (struct inbox_item *it = inbox_take(&l->done); it; it = it->next)
            api_response_release(&container_of(it, struct job, done)->res);
        while (l->conns) {
            l->conns->state = C_CLOSING;
            conn_close(l->conns);
        }
        listener_accept_release(&l->accept);
        event_free(l->stop_ev);
        inbox_release(&l->done);
        strbuf_release(&l->head);
        event_base_free(l->base);
    }
    close(srv->fd);
    listener_tls_release(&srv->tls);
    free(srv);
}
