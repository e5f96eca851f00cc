/*
 * main.c - tallyd: wiring and lifetime.
 *
 * Builds the three adapters from their URLs, starts the read-count
 * consumer and the HTTP loops, then waits for SIGTERM or SIGINT. The stop
 * runs in the reverse order of the start: no new requests, then the bus is
 * drained into the store, then everything is freed. Signals are blocked in
 * every thread and taken with sigwait() here, so no handler runs in the
 * middle of library code.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"
#include "cache/cache.h"
#include "config.h"
#include "http/server.h"
#include "service/interactive.h"
#include "service/readcount.h"
#include "store/store.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/strbuf.h"
#include "util/url.h"
#include "util/banned.h"

static int fatal(char *err)
{
    fprintf(stderr, "tallyd: %s\n", err);
    free(err);
    return 1;
}

int main(int argc, char **argv)
{
    struct config cfg;
    struct store *store = NULL;
    struct cache *cache = NULL;
    struct bus *bus = NULL;
    struct readcount *rc = NULL;
    struct http_server *srv = NULL;
    struct interactive svc;
    struct strbuf shown = STRBUF_INIT;
    sigset_t sigs;
    char *err = NULL;
    int sig, status = 1;

    switch (config_parse(&cfg, argc, argv)) {
    case CONFIG_EXIT_OK: return 0;
    case CONFIG_EXIT_USAGE: return 2;
    case CONFIG_RUN: break;
    }
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* inherited by every thread started below */
    signal(SIGPIPE, SIG_IGN);

    if (store_open_url(&cfg.store_url, &store, &err) ||
        cache_open_url(&cfg.cache_url, &cache, &err) ||
        bus_open_url(&cfg.bus_url, cfg.queue_max, &bus, &err)) {
        status = fatal(err);
        goto out;
    }
    interactive_init(&svc, store, cache, bus);
    rc = readcount_start(bus, store, cache,
                         &(struct readcount_config){
                             .batch = cfg.batch, .flush_ms = cfg.flush_ms, .stop_wait_ms = 10000});
    srv = http_server_start(&(struct http_config){.host = cfg.host,
                                                  .port = cfg.port,
                                                  .threads = cfg.threads,
                                                  .header_timeout_ms = cfg.header_timeout_ms,
                                                  .idle_timeout_ms = cfg.idle_timeout_ms,
                                                  .max_conns = cfg.max_conns,
                                                  .workers = cfg.workers,
                                                  .work_queue = cfg.work_queue},
                            &svc, &err);
    if (!srv) {
        status = fatal(err);
        goto out;
    }
    url_redact(&shown, cfg.store);
    strbuf_addstr(&shown, ", cache ");
    url_redact(&shown, cfg.cache);
    strbuf_addstr(&shown, ", bus ");
    url_redact(&shown, cfg.bus);
    log_info("tallyd listening on %s port %d (store %s, batch %zu, flush %d ms)", cfg.host,
             http_server_port(srv), shown.buf, cfg.batch, cfg.flush_ms);
    strbuf_release(&shown);
    sigwait(&sigs, &sig);
    log_info("tallyd: signal %d, stopping", sig);
    status = 0;
out:
    http_server_stop(srv);
    readcount_stop(rc); /* drains the bus into the store */
    bus_free(bus);
    cache_free(cache);
    store_free(store);
    metrics_release();
    config_release(&cfg);
    if (status == 0)
        log_info("tallyd: stopped cleanly");
    return status;
}
