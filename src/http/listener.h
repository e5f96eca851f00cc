/*
 * listener.h - what the HTTP and the gRPC servers share about sockets: the listening
 * socket, the bound port, the name of a peer, and the TLS context of a certificate.
 */
#ifndef TALLY_HTTP_LISTENER_H
#define TALLY_HTTP_LISTENER_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "util/strbuf.h"

struct bufferevent;
struct event;
struct event_base;
struct metric;

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

/*
 * Accepting, shared by a server's loops: its connection limit and counters. Each loop
 * accepts from the one listening socket with a struct listener_accept of its own.
 *   - past max_conns a new connection is closed at once (m_refused);
 *   - out of descriptors or memory, the loop stops accepting and tries again after 10 ms,
 *     doubling to 1 s (m_paused, and a log line a second at most): the socket stays readable,
 *     so accepting again at once would spin; the kernel keeps the connections waiting.
 */
struct listener_limits {
    const char *name; /* "http", "grpc": for the log line */
    int max_conns;
    atomic_int nconns;
    atomic_llong logged_us;
    struct metric *m_conns, *m_refused, *m_paused; /* the server's: open, refused, pauses */
};

struct listener_accept {
    struct listener_limits *limits;
    struct event *ev, *resume_ev;
    int backoff_ms;
    bool stopped;
    void (*conn_new)(void *arg, int fd); /* a connection accepted within the limit */
    void *arg;
};

/* Starts accepting from fd on base; conn_new(arg, fd) takes each connection. */
void listener_accept_start(struct listener_accept *a, struct event_base *base, int fd,
                           struct listener_limits *limits, void (*conn_new)(void *, int),
                           void *arg);
/* Accepts no more (a stop). On the loop's thread. */
void listener_accept_stop(struct listener_accept *a);
/* Frees the events, once the loop has ended. */
void listener_accept_release(struct listener_accept *a);
/* One of the server's connections closed. */
void listener_conn_closed(struct listener_limits *limits);

#endif
