/*
 * methods.h - the gRPC methods tally serves, each mapped onto a route of the HTTP API.
 *
 * A call is decoded from its protobuf message into the struct api_request of the HTTP
 * route that does the same (api/intr/v1/intr.proto lists them), run by api_handle()
 * exactly as that route's requests are (credentials, scopes, rate limits, validation,
 * metrics of the store), and the answer is encoded back. So the two APIs cannot drift
 * apart: there is one place where a like is checked and applied. Nothing here touches
 * sockets; grpc/server.c carries the calls.
 */
#ifndef TALLY_GRPC_METHODS_H
#define TALLY_GRPC_METHODS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/api.h"
#include "util/strbuf.h"

/* gRPC status codes (grpc/doc/statuscodes.md), the ones tally answers. */
enum grpc_code {
    GRPC_OK = 0,
    GRPC_CANCELLED = 1,
    GRPC_INVALID_ARGUMENT = 3,
    GRPC_DEADLINE_EXCEEDED = 4,
    GRPC_NOT_FOUND = 5,
    GRPC_PERMISSION_DENIED = 7,
    GRPC_RESOURCE_EXHAUSTED = 8,
    GRPC_UNIMPLEMENTED = 12,
    GRPC_INTERNAL = 13,
    GRPC_UNAVAILABLE = 14,
    GRPC_UNAUTHENTICATED = 16,
};
#define GRPC_CODES 17

/* One call's request in the HTTP API's terms; owned by the call, strings included. */
struct grpc_request {
    struct api_request req;
    struct strbuf path, query;
};

struct grpc_method {
    const char *path; /* "/intr.v1.InteractiveService/Get" */
    const char *name; /* "intr.v1.InteractiveService/Get": metrics and logs */
    /*
     * Decodes msg into out (its req's method, path and query; the caller sets the
     * rest). 0, or GRPC_INVALID_ARGUMENT with *why (static) when it is not a valid
     * message or names an invalid item.
     */
    int (*decode)(const uint8_t *msg, size_t len, struct grpc_request *out, const char **why);
    /* Appends the response message for a successful answer of the API. */
    void (*encode)(const struct api_response *res, struct strbuf *out);
    /* Whether every answer of the route is a message (health: 503 is NOT_SERVING, not an
     * error); otherwise only a 2xx is, and the rest become a gRPC status. */
    bool any_status;
};

#define GRPC_METHODS 7 /* the six of intr.v1, and health's Check */

/* The method at path (":path" of the call), or NULL. */
const struct grpc_method *grpc_method_find(const char *path);
/* Methods are numbered 0..GRPC_METHODS-1, for metrics. */
const struct grpc_method *grpc_method_at(int i);
int grpc_method_index(const struct grpc_method *m);

void grpc_request_init(struct grpc_request *r);
void grpc_request_release(struct grpc_request *r);

/* The gRPC code of an HTTP status of the API. */
enum grpc_code grpc_code_of(int http_status);
/* A stable name of a code ("OK", "INVALID_ARGUMENT"...), for metrics and logs. */
const char *grpc_code_name(int code);

#endif
