/*
 * probe.c - tallyctl probe: one GET of a tallyd probe (/livez, /readyz), for health checks
 * where no HTTP client is at hand (the container image has no shell and no curl).
 *
 * libevent's HTTP client makes the request, over TLS (OpenSSL, the certificate checked
 * against --ca or the system's CAs and the URL's host) for an https:// URL. One attempt,
 * within --timeout-ms; the exit status is the verdict: 0 for a 2xx answer, 1 for anything
 * else (said in one line on stderr), 2 for a usage error.
 */
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <getopt.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "util/banned.h"

#define DEFAULT_TIMEOUT_MS 2000

const char ctl_usage_probe[] =
    "usage: tallyctl probe [--timeout-ms N] [--ca PATH] URL\n"
    "\n"
    "GETs URL once (a probe of tallyd's: http://127.0.0.1:8080/readyz, /livez, /healthz)\n"
    "and exits 0 if the answer is 2xx, 1 otherwise (no answer within --timeout-ms, 2000 by\n"
    "default, or another status; one line on stderr says which), 2 for a usage error.\n"
    "An https:// URL is checked against --ca PATH (PEM), or the system's CAs, and its host.\n"
    "For container health checks: the image has no shell and no curl.\n";

struct outcome {
    struct event_base *base;
    int status;     /* 0: no answer */
    bool timed_out; /* no answer within the timeout, rather than a connection that failed */
};

static void on_answer(struct evhttp_request *req, void *arg)
{
    struct outcome *o = arg;

    o->status = req ? evhttp_request_get_response_code(req) : 0;
    event_base_loopexit(o->base, NULL);
}

static void on_error(enum evhttp_request_error err, void *arg)
{
    struct outcome *o = arg;

    o->timed_out = err == EVREQ_HTTP_TIMEOUT;
}

/* A TLS client for host: TLS 1.2+, the chain checked against ca (or the system's), and
 * the host name or IP. NULL after a line on stderr. */
static SSL *tls_client(SSL_CTX **ctx, const char *host, const char *ca)
{
    SSL *ssl;

    *ctx = SSL_CTX_new(TLS_client_method());
    if (!*ctx || !SSL_CTX_set_min_proto_version(*ctx, TLS1_2_VERSION) ||
        (ca ? SSL_CTX_load_verify_locations(*ctx, ca, NULL) != 1
            : SSL_CTX_set_default_verify_paths(*ctx) != 1)) {
        fprintf(stderr, "tallyctl probe: cannot load the CAs%s%s\n", ca ? " from " : "",
                ca ? ca : "");
        return NULL;
    }
    SSL_CTX_set_verify(*ctx, SSL_VERIFY_PEER, NULL);
    ssl = SSL_new(*ctx);
    if (!ssl || !SSL_set1_host(ssl, host) || !SSL_set_tlsext_host_name(ssl, host)) {
        fprintf(stderr, "tallyctl probe: cannot set up TLS for %s\n", host);
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

int ctl_cmd_probe(int argc, char **argv)
{
    static const struct option opts[] = {{"timeout-ms", required_argument, NULL, 't'},
                                         {"ca", required_argument, NULL, 'c'},
                                         {NULL, 0, NULL, 0}};
    int64_t timeout_ms = DEFAULT_TIMEOUT_MS;
    const char *ca = NULL, *scheme, *host, *path, *query;
    struct evhttp_uri *uri = NULL;
    struct evhttp_connection *conn = NULL;
    struct evhttp_request *req;
    struct bufferevent *bev = NULL;
    struct outcome o = {0};
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    char target[2048];
    int c, port, rc = 1;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (c == 't' && !ctl_parse_count(optarg, 600000, &timeout_ms))
            return ctl_usage("probe", "--timeout-ms must be an integer in 1..600000");
        else if (c == 'c')
            ca = optarg;
        else if (c == ':')
            return ctl_usage("probe", "%s needs a value (see tallyctl probe --help)",
                             argv[optind - 1]);
        else if (c == '?')
            return ctl_usage("probe", "unknown option %s (see tallyctl probe --help)",
                             argv[optind - 1]);
    }
    if (optind != argc - 1)
        return ctl_usage("probe", "usage: tallyctl probe [--timeout-ms N] [--ca PATH] URL");
    uri = evhttp_uri_parse(argv[optind]);
    scheme = uri ? evhttp_uri_get_scheme(uri) : NULL;
    host = uri ? evhttp_uri_get_host(uri) : NULL;
    if (!scheme || !host || !*host || (strcmp(scheme, "http") && strcmp(scheme, "https"))) {
        if (uri) /* libevent's free takes no NULL */
            evhttp_uri_free(uri);
        return ctl_usage("probe", "'%s' is not an http:// or https:// URL", argv[optind]);
    }
    port = evhttp_uri_get_port(uri);
    if (port < 0)
        port = strcmp(scheme, "https") == 0 ? 443 : 80;
    path = evhttp_uri_get_path(uri);
    query = evhttp_uri_get_query(uri);
    snprintf(target, sizeof(target), "%s%s%s", path && *path ? path : "/", query ? "?" : "",
             query ? query : "");

    o.base = event_base_new();
    if (strcmp(scheme, "https") == 0) {
        if (!(ssl = tls_client(&ctx, host, ca)))
            goto out;
        bev = bufferevent_openssl_socket_new(o.base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    }
    conn = evhttp_connection_base_bufferevent_new(o.base, NULL, bev, host, (unsigned short)port);
    if (!o.base || !conn) {
        fprintf(stderr, "tallyctl probe: cannot make a connection to %s\n", host);
        goto out;
    }
    evhttp_connection_set_timeout_tv(conn, &(struct timeval){timeout_ms / 1000,
                                                             (timeout_ms % 1000) * 1000});
    evhttp_connection_set_retries(conn, 0);
    req = evhttp_request_new(on_answer, &o);
    evhttp_request_set_error_cb(req, on_error);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", host);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    if (evhttp_make_request(conn, req, EVHTTP_REQ_GET, target) != 0) {
        fprintf(stderr, "tallyctl probe: cannot send the request to %s\n", host);
        goto out;
    }
    event_base_dispatch(o.base);
    if (o.status >= 200 && o.status < 300) {
        rc = 0;
    } else if (o.status) {
        fprintf(stderr, "tallyctl probe: %s answered %d\n", argv[optind], o.status);
    } else if (o.timed_out) {
        fprintf(stderr, "tallyctl probe: no answer from %s within %lld ms\n", argv[optind],
                (long long)timeout_ms);
    } else {
        unsigned long e = ERR_peek_last_error();

        fprintf(stderr,
                "tallyctl probe: %s: the connection failed (refused, closed or reset%s%s)\n",
                argv[optind], e ? "; TLS: " : "", e ? ERR_reason_error_string(e) : "");
    }
out:
    if (conn)
        evhttp_connection_free(conn); /* and bev, with the SSL */
    else if (bev)
        bufferevent_free(bev);
    else
        SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (o.base)
        event_base_free(o.base);
    evhttp_uri_free(uri);
    return rc;
}
