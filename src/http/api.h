/*
 * api.h - the v1 HTTP API, independent of the server library.
 *
 * server.c turns each HTTP request into a struct api_request and sends back
 * the struct api_response (grpc/server.c does the same for gRPC calls); everything about routes, validation, JSON
 * and status codes lives behind api_handle(). Keeping the library out of
 * this file lets the unit tests and the fuzz target drive the whole API
 * without sockets.
 */
#ifndef TALLY_HTTP_API_H
#define TALLY_HTTP_API_H

#include <stdbool.h>
#include <stddef.h>

#include "http/auth.h"
#include "service/interactive.h"
#include "util/strbuf.h"

#define API_MAX_BODY (64 * 1024)

enum api_method { API_GET, API_HEAD, API_POST, API_PUT, API_DELETE, API_OTHER };

/* Borrowed from the caller for the duration of api_handle(). */
struct api_request {
    enum api_method method;
    const char *path;  /* decoded by nobody: raw, without the query */
    const char *query; /* raw, without '?'; NULL when absent */
    const char *body;
    size_t body_len;
    /* Who is calling, as the server authenticated them; NULL: the API is open. */
    const struct auth_principal *principal;
    /* The client's address, "addr:IP": names the per-caller rate limit's bucket when no
     * credential does (see caller_of() in api.c); NULL: none. */
    const char *caller;
    /* The Idempotency-Key header's value as received (unchecked); NULL: absent. */
    const char *idempotency_key;
    /* Item states go to res->states rather than into a JSON body (the gRPC layer, which
     * encodes them itself); errors are JSON either way. */
    bool typed;
};

/* Filled by api_handle(); release body with api_response_release(). */
struct api_response {
    int status;
    struct strbuf body;
    const char *content_type;
    const char *allow; /* for 405: the methods the path takes */
    bool challenge;    /* for 401: send WWW-Authenticate: Bearer */
    int retry_after;   /* for 429: seconds for the Retry-After header; 0: none */
    int route;         /* index for metrics; see api_route_name() */
    const char *headers; /* extra header lines, each ending in CRLF (static); NULL: none */
    struct item_state *states; /* for a typed request: the states answered, heap; else NULL */
    size_t nstates;
};

void api_response_init(struct api_response *res);
void api_response_release(struct api_response *res);

void api_handle(struct interactive *svc, const struct api_request *req, struct api_response *res);

/*
 * Where api_handle() may run for this request: on the event loop (it never
 * waits on a server: errors, /metrics, publishing a read), or on a worker
 * pool for reads or for writes of the store; *route is the route for metrics. Writes have a pool of their
 * own so that a store whose write lock is taken cannot hold up reads. svc
 * says whether the rate limiter may wait on Redis (then nothing limited
 * runs on the loop).
 */
enum api_work { API_WORK_LOOP, API_WORK_READ, API_WORK_WRITE };
enum api_work api_work_of(const struct interactive *svc, const struct api_request *req,
                          int *route);

/* Number of routes and a stable name for each ("unmatched" for 404s). */
int api_route_count(void);
const char *api_route_name(int route);

#endif
