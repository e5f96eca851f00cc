/*
 * main.c - tallyd: wiring and lifetime.
 *
 * Builds the three adapters from their URLs, starts the read-count
 * consumer and the HTTP loops, then waits for SIGTERM or SIGINT; SIGHUP
 * reloads the API keys and the TLS certificate without dropping a request
 * (a file that does not load leaves the old one in force). The stop
 * runs in the reverse order of the start: no new requests, then the bus is
 * drained into the store, then everything is freed. A stop that could not
 * deliver every accepted read within --stop-timeout-ms says how many it
 * lost and exits 1. Signals are blocked in
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
#include "http/auth.h"
#include "http/server.h"
#include "service/interactive.h"
#include "service/readcount.h"
#include "store/store.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/strbuf.h"
#include "util/banned.h"

/* scheme://user:secret@host... -> scheme://user:***@host..., for logs. */
static void redact_password(struct strbuf *out, const char *url)
{
    const char *auth = strstr(url, "://"), *at, *colon;

    if (auth && (at = strchr(auth + 3, '@')) &&
        (colon = memchr(auth + 3, ':', (size_t)(at - auth - 3)))) {
        strbuf_add(out, url, (size_t)(colon + 1 - url));
        strbuf_addstr(out, "***");
        strbuf_addstr(out, at);
    } else {
        strbuf_addstr(out, url);
    }
}

/* SIGHUP: the keys file and the TLS certificate, each kept as it was if it does not load. */
static void reload(struct auth *auth, struct http_server *srv)
{
    char *err = NULL;

    if (auth_reload(auth, &err) == 0)
        log_info("tallyd: SIGHUP: API keys reloaded");
    else
        log_error("tallyd: SIGHUP: keeping the API keys in force: %s", err);
    free(err);
    err = NULL;
    if (http_server_reload_tls(srv, &err))
        log_error("tallyd: SIGHUP: keeping the TLS certificate in force: %s", err);
    free(err);
}

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
    struct auth *auth = NULL;
    struct interactive svc;
    struct strbuf shown = STRBUF_INIT;
    sigset_t sigs;
    char *err = NULL;
    int sig, status = 1;
    int64_t lost;

    switch (config_parse(&cfg, argc, argv)) {
    case CONFIG_EXIT_OK: return 0;
    case CONFIG_EXIT_USAGE: return 2;
    case CONFIG_RUN: break;
    }
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* inherited by every thread started below */
    signal(SIGPIPE, SIG_IGN);

    if (auth_new(&(struct auth_config){.keys_path = cfg.keys,
                                       .jwt_key = cfg.jwt_key,
                                       .jwt_issuer = cfg.jwt_issuer,
                                       .jwt_audience = cfg.jwt_audience},
                 &auth, &err)) {
        status = fatal(err);
        goto out;
    }
    if (!auth_enabled(auth))
        log_warn("tallyd: no --keys and no --jwt-key: the API is open to anyone who can reach "
                 "%s", cfg.listen);
    if (store_open(cfg.store, &store, &err) || cache_open(cfg.cache, &cache, &err) ||
        bus_open(cfg.bus, cfg.queue_max, &bus, &err)) {
        status = fatal(err);
        goto out;
    }
    interactive_init(&svc, store, cache, bus);
    rc = readcount_start(bus, store, cache,
                         &(struct readcount_config){.batch = cfg.batch,
                                                    .flush_ms = cfg.flush_ms,
                                                    .stop_wait_ms = cfg.stop_timeout_ms});
    svc.reads = rc;
    srv = http_server_start(&(struct http_config){.host = cfg.host,
                                                  .port = cfg.port,
                                                  .threads = cfg.threads,
                                                  .header_timeout_ms = cfg.header_timeout_ms,
                                                  .idle_timeout_ms = cfg.idle_timeout_ms,
                                                  .max_conns = cfg.max_conns,
                                                  .workers = cfg.workers,
                                                  .work_queue = cfg.work_queue,
                                                  .auth = auth,
                                                  .tls_cert = cfg.tls_cert,
                                                  .tls_key = cfg.tls_key},
                            &svc, &err);
    if (!srv) {
        status = fatal(err);
        goto out;
    }
    redact_password(&shown, cfg.store);
    log_info("tallyd listening on %s port %d%s (store %s, cache %s, bus %s, batch %zu, "
             "flush %d ms)",
             cfg.host, http_server_port(srv), cfg.tls_cert ? " (HTTPS)" : "", shown.buf, cfg.cache, cfg.bus, cfg.batch,
             cfg.flush_ms);
    strbuf_release(&shown);
    while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP)
        reload(auth, srv);
    log_info("tallyd: signal %d, stopping", sig);
    status = 0;
out:
    http_server_stop(srv);
    readcount_stop(rc); /* drains the bus into the store, or gives up at the deadline */
    bus_free(bus);      /* after it, every delivery report has been counted */
    if ((lost = readcount_lost_total()) > 0) {
        log_error("tallyd: lost %lld accepted read events", (long long)lost);
        status = 1;
    }
    cache_free(cache);
    store_free(store);
    auth_free(auth);
    metrics_release();
    if (status == 0)
        log_info("tallyd: stopped cleanly");
    return status;
}
