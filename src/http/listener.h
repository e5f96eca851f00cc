/*
 * listener.h - what the HTTP and the gRPC servers share about sockets: the listening
 * socket, the bound port, the name of a peer, and the TLS context of a certificate.
 */
#ifndef TALLY_HTTP_LISTENER_H
#define TALLY_HTTP_LISTENER_H

#include <openssl/ssl.h>

#include "util/strbuf.h"

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

#endif
