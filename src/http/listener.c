/*
 * listener.c - listening sockets, peers' names and TLS contexts for both servers.
 */
#include "http/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/xmalloc.h"
#include "util/banned.h"

int listener_open(const char *host, int port, char **err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    struct strbuf msg = STRBUF_INIT;
    char portstr[16];
    int fd = -1, one = 1, rc;

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

int listener_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void listener_peer_name(struct strbuf *out, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN];
    const void *a = NULL;

    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
        a = ss.ss_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
            : ss.ss_family == AF_INET ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
                                      : NULL;
    strbuf_addstr(out, "addr:");
    strbuf_addstr(out, a && inet_ntop(ss.ss_family, a, ip, sizeof(ip)) ? ip : "unknown");
}

/* ALPN: the server's one protocol if the client offers it; else no agreement, and the
 * handshake fails (a gRPC client that offers no "h2" cannot speak to this port). */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    const char *want = arg;
    size_t n = strlen(want);

    (void)ssl;
    for (unsigned i = 0; i < inlen; i += 1u + in[i]) {
        if (in[i] == n && i + 1u + n <= inlen && memcmp(in + i + 1, want, n) == 0) {
            *out = in + i + 1;
            *outlen = in[i];
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

SSL_CTX *listener_tls_context(const char *cert, const char *key, const char *alpn, char **err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    struct strbuf msg = STRBUF_INIT;
    const char *what = NULL;

    if (!ctx)
        what = "cannot create a TLS context";
    else if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
        what = "cannot require TLS 1.2";
    else if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        what = "cannot load --tls-cert";
    else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        what = "cannot load --tls-key";
    else if (SSL_CTX_check_private_key(ctx) != 1)
        what = "--tls-key does not match --tls-cert";
    if (!what) {
        if (alpn) /* a string literal: it outlives the context */
            SSL_CTX_set_alpn_select_cb(ctx, select_alpn, (void *)alpn);
        return ctx;
    }
    strbuf_addf(&msg, "%s: %s", what, ERR_reason_error_string(ERR_peek_last_error()) ?: "?");
    ERR_clear_error();
    SSL_CTX_free(ctx);
    *err = strbuf_detach(&msg, NULL);
    return NULL;
}

int listener_tls_init(struct listener_tls *t, const char *cert, const char *key, const char *alpn,
                      char **err)
{
    *t = (struct listener_tls){.cert = cert, .key = key, .alpn = alpn};
    if (cert && !(t->ctx = listener_tls_context(cert, key, alpn, err)))
        return TALLY_EINVAL;
    pthread_mutex_init(&t->lock, NULL);
    return 0;
}

int listener_tls_reload(struct listener_tls *t, char **err)
{
    SSL_CTX *ctx, *old;

    if (!t->cert)
        return 0;
    if (!(ctx = listener_tls_context(t->cert, t->key, t->alpn, err)))
        return TALLY_EINVAL;
    pthread_mutex_lock(&t->lock);
    old = t->ctx;
    t->ctx = ctx;
    pthread_mutex_unlock(&t->lock);
    SSL_CTX_free(old); /* connections made with it keep their own reference */
    return 0;
}

void listener_tls_release(struct listener_tls *t)
{
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->lock);
}

struct bufferevent *listener_bufferevent(struct listener_tls *t, struct event_base *base, int fd)
{
    struct bufferevent *bev;
    SSL *ssl;

    if (!t->cert)
        return bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    pthread_mutex_lock(&t->lock);
    ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->lock);
    TALLY_ASSERT(ssl); /* only out of memory */
    bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

#define ACCEPT_BATCH          64
#define ACCEPT_BACKOFF_MIN_MS 10
#define ACCEPT_BACKOFF_MAX_MS 1000

static void log_accept_pause(struct listener_limits *lim, int err)
{
    int64_t now = clock_mono_us(), last = atomic_load(&lim->logged_us);

    if (now - last >= 1000000 && atomic_compare_exchange_strong(&lim->logged_us, &last, now))
        log_warn("%s: cannot accept: %s; pausing accepts (tally_%s_accept_paused_total)",
                 lim->name, strerror(err), lim->name);
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
    struct listener_accept *a = arg;
    struct listener_limits *lim = a->limits;

    (void)what;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            metric_add(lim->m_paused, 1);
            log_accept_pause(lim, errno);
            a->backoff_ms = a->backoff_ms ? a->backoff_ms * 2 : ACCEPT_BACKOFF_MIN_MS;
            if (a->backoff_ms > ACCEPT_BACKOFF_MAX_MS)
                a->backoff_ms = ACCEPT_BACKOFF_MAX_MS;
            event_del(a->ev);
            struct timeval tv = {a->backoff_ms / 1000, (a->backoff_ms % 1000) * 1000};
            evtimer_add(a->resume_ev, &tv);
            return;
        }
        a->backoff_ms = 0;
        if (atomic_fetch_add(&lim->nconns, 1) >= lim->max_conns) {
            atomic_fetch_sub(&lim->nconns, 1);
            metric_add(lim->m_refused, 1);
            close(cfd);
            continue;
        }
        metric_set(lim->m_conns, atomic_load(&lim->nconns));
        a->conn_new(a->arg, cfd);
    }
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct listener_accept *a = arg;

    (void)fd, (void)what;
    if (!a->stopped)
        event_add(a->ev, NULL);
}

void listener_accept_start(struct listener_accept *a, struct event_base *base, int fd,
                           struct listener_limits *limits, void (*conn_new)(void *, int),
                           void *arg)
{
    *a = (struct listener_accept){.limits = limits, .conn_new = conn_new, .arg = arg};
    a->ev = event_new(base, fd, EV_READ | EV_PERSIST, on_accept, a);
    a->resume_ev = evtimer_new(base, on_resume, a);
    TALLY_ASSERT(a->ev && a->resume_ev);
    event_add(a->ev, NULL);
}

void listener_accept_stop(struct listener_accept *a)
{
    a->stopped = true;
    event_del(a->ev);
    evtimer_del(a->resume_ev);
}

void listener_accept_release(struct listener_accept *a)
{
    event_free(a->ev);
    event_free(a->resume_ev);
}

void listener_conn_closed(struct listener_limits *limits)
{
    atomic_fetch_sub(&limits->nconns, 1);
    metric_set(limits->m_conns, atomic_load(&limits->nconns));
}
