/*
 * fuzz_api.c - libFuzzer target for the whole HTTP API behind the socket:
 * routing, query decoding, identifier and body validation, with a real
 * SQLite store and the local bus. The input is split as
 * METHOD-BYTE PATH '\n' BODY; no input may crash, leak or answer 5xx
 * (other than 503 for the bounded read queue).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus/local.h"
#include "cache/cache.h"
#include "http/api.h"
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
    snprintf(url, sizeof(url), "sqlite:/tmp/tally-fuzz-%d.db", (int)getpid());
    if (store_open(url, &store, &err) || cache_open("none", &cache, &err))
        abort();
    bus = bus_local_new(1024);
    interactive_init(&svc, store, cache, bus);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct api_request req = { 0 };
    struct api_response res;
    struct read_event drained[1024];
    char *copy, *nl, *q;
    size_t n;

    if (!bus)
        setup();
    if (size < 1)
        return 0;
    copy = malloc(size);
    memcpy(copy, data + 1, size - 1);
    copy[size - 1] = '\0';
    req.method = (enum api_method)(data[0] % (API_OTHER + 1));
    nl = strchr(copy, '\n');
    req.body = nl ? nl + 1 : "";
    req.body_len = nl ? strlen(nl + 1) : 0;
    if (nl)
        *nl = '\0';
    q = strchr(copy, '?');
    if (q)
        *q = '\0';
    req.path = copy;
    req.query = q ? q + 1 : NULL;
    api_response_init(&res);
    api_handle(&svc, &req, &res);
    if (res.status >= 500 && res.status != 503)
        __builtin_trap();
    api_response_release(&res);
    free(copy);
    bus_poll(bus, drained, 1024, 0, &n); /* keep the queue from filling */
    return 0;
}
