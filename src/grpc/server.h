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
 * Binds cfg->host:port (connections wait in the kernel's backlog from then on) and loads
 * the certificate. NULL and *err (caller frees) when the address cannot be bound or the
 * certificate does not load. Bound before the HTTP server starts, so that a tallyd whose
 * /healthz answers takes gRPC connections too.
 */
struct grpc_server *grpc_server_bind(const struct grpc_config *cfg, char **err);
/* Starts the loops. Calls run on http's worker pools (see http_server_pool()), so http
 * must outlive the gRPC server. */
void grpc_server_start(struct grpc_server *srv, struct http_server *http,
                       struct interactive *svc);
/* Loads the TLS certificate and key again (SIGHUP); on failure the old ones stay. */
int grpc_server_reload_tls(struct grpc_server *srv, char **err);
int grpc_server_port(const struct grpc_server *srv);
/*
 * Stops accepting, sends every connection GOAWAY, lets the calls in flight finish (for
 * a short grace), joins the loops, waits for the calls still in a pool and frees srv.
 * Before http_server_stop(). NULL is a no-op; so is a server bound but never started,
 * but for the freeing.
 */
void grpc_server_stop(struct grpc_server *srv);

#endif
