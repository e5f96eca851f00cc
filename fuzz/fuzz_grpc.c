/*
 * fuzz_grpc.c - libFuzzer target for the gRPC methods behind HTTP/2: each method's protobuf
 * decoding (protobuf-c), its mapping onto the API's route, the API itself with a real SQLite
 * store and the local bus, and the encoding of the answer. The first byte picks the method,
 * the rest is its message. No input may crash, leak or answer an internal error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus/local.h"
#include "cache/cache.h"
#include "grpc/methods.h"
#include "store/store.h"
#include "util/log.h"

static struct interactive svc;
static struct bus *bus;

static void setup(void)
{
    char url[64], *err = NULL;
    struct store *store;
    struct cache *cache;

    log_set_level(LOG_ERROR);
    snprintf(url, sizeof(url), "sqlite:/tmp/tally-fuzz-grpc-%d.db", (int)getpid());
    if (store_open(url, &store, &err) || cache_open("none", &cache, &err))
        abort();
    bus = bus_local_new(1024);
    interactive_init(&svc, store, cache, bus);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct grpc_method *m;
    struct grpc_request g;
    struct api_response res;
    struct strbuf out = STRBUF_INIT;
    struct read_event drained[1024];
    const char *why = NULL;
    size_t n;

    if (!bus)
        setup();
    if (size < 1)
        return 0;
    m = grpc_method_at(data[0] % GRPC_METHODS);
    grpc_request_init(&g);
    api_response_init(&res);
    if (m->decode(data + 1, size - 1, &g, &why) == 0) {
        api_handle(&svc, &g.req, &res);
        if (grpc_code_of(res.status) == GRPC_INTERNAL)
            __builtin_trap();
        if (grpc_code_of(res.status) == GRPC_OK || m->any_status)
            m->encode(&res, &out);
    } else if (!why) {
        __builtin_trap(); /* a refusal always says why */
    }
    api_response_release(&res);
    grpc_request_release(&g);
    strbuf_release(&out);
    bus_poll(bus, drained, 1024, 0, &n); /* keep the queue from filling */
    return 0;
}
