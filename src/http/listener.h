/*
 * listener.h - what the HTTP and the gRPC servers share about sockets: the listening
 * socket, the bound port, the name of a peer, and the TLS context of a certificate.
 */
#ifndef TALLY_HTTP_LISTENER_H
#define TALLY_HTTP_LISTENER_H

#include <openssl/ssl.h>
#include <pthread.h>

#include "util/strbuf.h"

struct bufferevent;
struct event_base;

/* A non-blocking listening socket on host:port (numeric; port 0: any free one), or -1
 * and *err (caller frees). */
int listener_open(const char *host, int port, char **err);
/* The port fd is bound to; -1 if it cannot be read. */
int listener_port(int fd);
/* Appends "addr:IP" of fd's peer ("addr:unknown" if it cannot be read): who calls, for
 * the per-caller rate limit of an open API. */
void listener_peer_name(struct strbuf *out, int fd);
/*
 * A server context for TLS 1.2 or newer with cert's chain and key. alpn: the protocol
 * the server selects by ALPN ("h2" for gRPC), which a client must offer; NULL: none is
 * negotiated. NULL and *err (caller frees) when the files do not load or do not match.
 */
SSL_CTX *listener_tls_context(const char *cert, const char *key, const char *alpn, char **err);

/*
 * A server's TLS: the context in force, which a reload swaps under the lock while loops
 * accept; each connection keeps the one it was accepted with (SSL_new takes a reference).
 */
struct listener_tls {
    const char *cert, *key, *alpn; /* cert NULL: plain */
    pthread_mutex_t lock;          /* owns ctx */
    SSL_CTX *ctx;
};

/* Loads cert and key (cert NULL: plain, always 0); 0, or TALLY_EINVAL and *err. */
int listener_tls_init(struct listener_tls *t, const char *cert, const char *key, const char *alpn,
                      char **err);
/* Loads them again (SIGHUP); on failure the old context stays, and *err says why. */
int listener_tls_reload(struct listener_tls *t, char **err);
void listener_tls_release(struct listener_tls *t);
/* A bufferevent owning fd on base: a plain socket, or TLS accepting with the context in
 * force now. */
struct bufferevent *listener_bufferevent(struct listener_tls *t, struct event_base *base, int fd);

#endif
