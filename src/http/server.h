/*
 * server.h - tally's HTTP/1.1 server: event loops, connections, worker pools.
 */
#ifndef TALLY_HTTP_SERVER_H
#define TALLY_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "http/api.h"
#include "http/auth.h"
#include "service/interactive.h"

/* Limits of the server; every field is checked by config.c before it gets here. */
struct http_config {
    const char *host;
    int port;               /* 0: any free port */
    int threads;            /* event loops, 1..64 */
    int header_timeout_ms;  /* a request must arrive whole within this of its first byte */
    int idle_timeout_ms;    /* a keep-alive connection with no request, or unsent output
                             * that does not move, is closed after this */
    int max_conns;          /* open connections; past it new ones are closed at once */
    int workers;            /* threads of each worker pool (reads, writes) */
    size_t work_queue;      /* requests each pool holds waiting; full: 503 */
    struct auth *auth;      /* who may call; NULL: the API is open (tests, benchmarks) */
    bool access_log;        /* one log line per request */
    const char *tls_cert;   /* with tls_key: HTTPS only; NULL: plain HTTP */
    const char *tls_key;
};

struct http_server;

/*
 * Binds cfg->host:port and starts the loops and the pools serving the API with svc
 * (which must outlive the server). Returns NULL and sets *err (caller frees)
 * when the address cannot be bound.
 */
struct http_server *http_server_start(const struct http_config *cfg, struct interactive *svc,
                                      char **err);
/* Loads the TLS certificate and key again (SIGHUP); on failure the old ones stay. */
int http_server_reload_tls(struct http_server *srv, char **err);
/* The port actually bound (useful with port 0). */
int http_server_port(const struct http_server *srv);
/*
 * The pools the gRPC server (grpc/server.h) hands its calls to, so that both APIs share
 * one set of threads and one bound on work waiting: the pool for work (API_WORK_READ or
 * API_WORK_WRITE), and the one that checks the signatures of users' new tokens. They
 * live until http_server_stop(), which must come after the gRPC server's stop.
 */
struct workpool *http_server_pool(struct http_server *srv, enum api_work work);
struct workpool *http_server_verify_pool(struct http_server *srv);
/*
 * Stops accepting, lets the requests in flight finish (for a short grace), joins
 * the loops and the pools and frees srv. NULL is a no-op.
 */
void http_server_stop(struct http_server *srv);

#endif
