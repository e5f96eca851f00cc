/*
 * server.h - tally's gRPC server: intr.v1.InteractiveService and gRPC health checking
 * over HTTP/2 (h2c, or TLS with ALPN "h2"), on --grpc-listen.
 */
#ifndef TALLY_GRPC_SERVER_H
#define TALLY_GRPC_SERVER_H

#include <stdbool.h>

#include "http/auth.h"
#include "http/server.h"
#include "service/interactive.h"

/* Limits of the server; config.c checks every field (the HTTP server's, where shared). */
struct grpc_config {
    const char *host;
    int port;              /* 0: any free port */
    int threads;           /* event loops, 1..64 */
    int header_timeout_ms; /* a call's request must arrive whole within this of its headers */
    int idle_timeout_ms;   /* a connection with no call open is closed after this */
    int max_conns;         /* open connections; past it new ones are closed at once */
    struct auth *auth;     /* the HTTP API's; NULL: open */
    bool access_log;       /* one log line per call */
    const char *tls_cert;  /* with tls_key: TLS only (ALPN h2); NULL: h2c */
    const char *tls_key;
};

struct grpc_server;

/*
 * Binds cfg->host:port and starts the loops. Calls run on http's worker pools (see
 * http_server_pool()), so http must outlive the gRPC server. NULL and *err (caller
 * frees) when the address cannot be bound or the certificate does not load.
 */
struct grpc_server *grpc_server_start(const struct grpc_config *cfg, struct http_server *http,
                                      struct interactive *svc, char **err);
/* Loads the TLS certificate and key again (SIGHUP); on failure the old ones stay. */
int grpc_server_reload_tls(struct grpc_server *srv, char **err);
int grpc_server_port(const struct grpc_server *srv);
/*
 * Stops accepting, sends every connection GOAWAY, lets the calls in flight finish (for
 * a short grace), joins the loops, waits for the calls still in a pool and frees srv.
 * Before http_server_stop(). NULL is a no-op.
 */
void grpc_server_stop(struct grpc_server *srv);

#endif
