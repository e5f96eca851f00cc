/*
 * server.c - libevent glue: sockets, event loops, metrics per request.
 *
 * DESIGN
 *   N event-loop threads (default 2, one per core) each run their own
 *   event_base and evhttp and accept from one shared listening socket, so
 *   the kernel spreads connections and no request ever crosses a thread.
 *   Handlers run to completion on the loop thread. Store calls block that
 *   loop for their duration: for SQLite that is microseconds, and for a
 *   networked store it is one round trip on a loopback or LAN link, which
 *   is why there are several loops rather than one. Everything slow
 *   (read counting, broker I/O) happens off these threads.
 *
 *   libevent was chosen by measurement; see docs/architecture.md.
 *
 *   Stopping: http_server_stop() activates a per-loop event that removes the
 *   listener and lets the loop run for a grace period, so responses already
 *   queued are written before the loop exits and the threads are joined.
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/api.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/strbuf.h"
#include "util/xmalloc.h"
#include "util/banned.h"

#define MAX_THREADS  64
#define STATUS_SLOTS 8
#define GRACE_MS     300

/* One event loop. Owned by its thread once started; `stop` is the only way in. */
struct loop {
    struct http_server *srv;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct event *stop;
    pthread_t thread;
};

/* Created and freed by the main thread; loops read srv->svc and the metric tables. */
struct http_server {
    struct interactive *svc;
    evutil_socket_t fd;
    int port;
    int nloops;
    struct loop loops[MAX_THREADS];
    /* [route][status slot], created on first use; see count_request(). */
    _Atomic(struct metric *) requests[16][STATUS_SLOTS];
    struct metric *latency[16];
};

static const int status_slots[STATUS_SLOTS] = {200, 202, 400, 404, 405, 413, 500, 503};

static void count_request(struct http_server *srv, int route, int status, double seconds)
{
    int slot = 0;
    struct metric *m;

    while (slot < STATUS_SLOTS - 1 && status_slots[slot] != status)
        slot++;
    m = atomic_load_explicit(&srv->requests[route][slot], memory_order_acquire);
    if (!m) {
        struct strbuf labels = STRBUF_INIT;

        strbuf_addf(&labels, "route=\"%s\",status=\"%d\"", api_route_name(route),
                    status_slots[slot]);
        m = metrics_counter("tally_http_requests_total", "HTTP requests by route and status.",
                            labels.buf);
        strbuf_release(&labels);
        atomic_store_explicit(&srv->requests[route][slot], m, memory_order_release);
    }
    metric_add(m, 1);
    metric_observe(srv->latency[route], seconds);
}

static enum api_method method_of(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET: return API_GET;
    case EVHTTP_REQ_HEAD: return API_HEAD;
    case EVHTTP_REQ_POST: return API_POST;
    case EVHTTP_REQ_PUT: return API_PUT;
    case EVHTTP_REQ_DELETE: return API_DELETE;
    default: return API_OTHER;
    }
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct http_server *srv = arg;
    int64_t start = clock_mono_us();
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    struct evbuffer *out;
    struct api_response res;
    struct api_request ar = {
        .method = method_of(evhttp_request_get_command(req)),
        .path = uri ? evhttp_uri_get_path(uri) : NULL,
        .query = uri ? evhttp_uri_get_query(uri) : NULL,
        .body_len = evbuffer_get_length(in),
    };

    if (!ar.path || !*ar.path)
        ar.path = "/";
    ar.body = ar.body_len ? (const char *)evbuffer_pullup(in, -1) : "";
    api_response_init(&res);
    api_handle(srv->svc, &ar, &res);

    evhttp_add_header(headers, "Content-Type", res.content_type);
    if (res.allow)
        evhttp_add_header(headers, "Allow", res.allow);
    out = evbuffer_new();
    evbuffer_add(out, res.body.buf, res.body.len);
    evhttp_send_reply(req, res.status, NULL, out);
    evbuffer_free(out);
    count_request(srv, res.route, res.status, (double)(clock_mono_us() - start) / 1e6);
    api_response_release(&res);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct loop *l = arg;
    struct timeval grace = {0, GRACE_MS * 1000};

    (void)fd, (void)what;
    if (l->bound)
        evhttp_del_accept_socket(l->http, l->bound);
    l->bound = NULL;
    event_base_loopexit(l->base, &grace);
}

static void *loop_main(void *arg)
{
    struct loop *l = arg;

    event_base_dispatch(l->base);
    return NULL;
}

static evutil_socket_t listen_on(const char *host, int port, char **err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    struct strbuf msg = STRBUF_INIT;
    char portstr[16];
    evutil_socket_t fd = -1;
    int one = 1, rc;

    snprintf(portstr, sizeof(portstr), "%d", port);
    if ((rc = getaddrinfo(host, portstr, &hints, &ai)) != 0) {
        strbuf_addf(&msg, "cannot resolve listen address '%s': %s", host, gai_strerror(rc));
        goto fail;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        strbuf_addf(&msg, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        goto fail;
    }
    freeaddrinfo(ai);
    return fd;
fail:
    if (fd >= 0)
        close(fd);
    if (ai)
        freeaddrinfo(ai);
    *err = strbuf_detach(&msg, NULL);
    return -1;
}

static int bound_port(evutil_socket_t fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

struct http_server *http_server_start(const char *host, int port, int threads,
                                      struct interactive *svc, char **err)
{
    static const double bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                    0.01,   0.025,   0.05,   0.1,   0.25,   1};
    struct http_server *srv;
    evutil_socket_t fd;

    TALLY_ASSERT(threads >= 1 && threads <= MAX_THREADS);
    TALLY_ASSERT(api_route_count() <= 16);
    if ((fd = listen_on(host, port, err)) < 0)
        return NULL;
    evthread_use_pthreads();
    srv = xcalloc(1, sizeof(*srv));
    srv->svc = svc;
    srv->fd = fd;
    srv->port = bound_port(fd);
    for (int r = 0; r < api_route_count(); r++) {
        struct strbuf labels = STRBUF_INIT;

        strbuf_addf(&labels, "route=\"%s\"", api_route_name(r));
        srv->latency[r] = metrics_histogram("tally_http_request_duration_seconds",
                                            "Time to handle a request, by route.", labels.buf,
                                            bounds, sizeof(bounds) / sizeof(bounds[0]));
        strbuf_release(&labels);
    }
    for (int i = 0; i < threads; i++) {
        struct loop *l = &srv->loops[i];

        l->srv = srv;
        l->base = event_base_new();
        l->http = evhttp_new(l->base);
        TALLY_ASSERT(l->base && l->http);
        /* Let every method through so that api.c answers 405 in JSON. */
        evhttp_set_allowed_methods(l->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                                EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                                EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                                EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
        /* Bodies between API_MAX_BODY and this get a JSON 413 from api.c; beyond it
         * libevent refuses them itself, without reading them into memory. */
        evhttp_set_max_body_size(l->http, 4 * API_MAX_BODY);
        evhttp_set_max_headers_size(l->http, 16 * 1024);
        evhttp_set_timeout(l->http, 30);
        evhttp_set_gencb(l->http, on_request, srv);
        /* Each listener closes its socket when freed, so each gets its own dup. */
        l->bound = evhttp_accept_socket_with_handle(l->http, dup(fd));
        l->stop = event_new(l->base, -1, 0, on_stop, l);
        TALLY_ASSERT(l->bound && l->stop);
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

void http_server_stop(struct http_server *srv)
{
    if (!srv)
        return;
    for (int i = 0; i < srv->nloops; i++)
        event_active(srv->loops[i].stop, EV_READ, 0);
    for (int i = 0; i < srv->nloops; i++) {
        struct loop *l = &srv->loops[i];

        pthread_join(l->thread, NULL);
        event_free(l->stop);
        evhttp_free(l->http);
        event_base_free(l->base);
    }
    close(srv->fd);
    free(srv);
}
