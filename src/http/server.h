/*
 * server.h - the HTTP server: libevent's evhttp on a few event-loop threads.
 */
#ifndef TALLY_HTTP_SERVER_H
#define TALLY_HTTP_SERVER_H

#include "service/interactive.h"

struct http_server;

/*
 * Binds host:port and starts `threads` event loops serving the API with svc
 * (which must outlive the server). Returns NULL and sets *err (caller frees)
 * when the address cannot be bound.
 */
struct http_server *http_server_start(const char *host, int port, int threads,
                                      struct interactive *svc, char **err);
/* The port actually bound (useful with port 0). */
int http_server_port(const struct http_server *srv);
/* Stops accepting, lets requests in flight finish, joins the threads, frees srv. */
void http_server_stop(struct http_server *srv);

#endif
