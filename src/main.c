/*
 * main.c - tallyd: wiring and lifetime.
 *
 * Builds the three adapters from their URLs, starts the read-count
 * consumer, the HTTP loops and the gRPC loops (--grpc-listen), then waits for
 * SIGTERM or SIGINT; SIGHUP (tallyctl reload) reloads the API keys, the users'
 * token keys and the TLS certificate without dropping a request
 * (a file that does not load leaves the old one in force; a keys file or
 * JWT key that does not load at start is an exit 2, like a bad flag). The stop
 * runs in the reverse order of the start: no new requests, then the bus is
 * drained into the store, then everything is freed. A stop that could not
 * deliver every accepted read within --stop-timeout-ms says how many it
 * lost and exits 1. Signals are blocked in
 * every thread and taken with sigwait() here, so no handler runs in the
 * middle of library code.
 */
#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus/bus.h"
#include "cache/cache.h"
#include "config.h"
#include "grpc/server.h"
#include "http/auth.h"
#include "http/server.h"
#include "service/interactive.h"
#include "service/ratelimit.h"
#include "service/readcount.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/pidfile.h"
#include "util/process.h"
#include "util/version.h"
#include "util/metrics.h"
#include "util/strbuf.h"
#include "util/url.h"
#include "util/banned.h"

/* SIGHUP: the API keys, the users' token keys (auth_reload) and the TLS certificate, each
 * kept as it was if it does not load; every outcome is logged. */
static void reload(struct auth *auth, const char *keys, const char *tls_cert,
                   struct http_server *srv, struct grpc_server *grpc)
{
    char *err = NULL;
    size_t n;

    if (auth_reload(auth, &n, &err) != 0)
        log_error("tallyd: SIGHUP: keeping the API keys in force: %s", err);
    else if (keys)
        log_info("tallyd: SIGHUP: API keys reloaded: %zu in force from %s", n, keys);
    free(err);
    err = NULL;
    if (http_server_reload_tls(srv, &err))
        log_error("tallyd: SIGHUP: keeping the TLS certificate in force: %s", err);
    else if (grpc && grpc_server_reload_tls(grpc, &err))
        log_error("tallyd: SIGHUP: keeping gRPC's TLS certificate in force: %s", err);
    else if (tls_cert)
        log_info("tallyd: SIGHUP: TLS certificate reloaded from %s", tls_cert);
    free(err);
    if (!keys && !tls_cert && !auth_enabled(auth))
        log_info("tallyd: SIGHUP: nothing to reload (no --keys, --jwt-key or --tls-cert)");
}

/* libevent's own warnings go through tally's logger (and its format). */
static void libevent_log(int severity, const char *msg)
{
    log_msg(severity >= EVENT_LOG_ERR ? LOG_ERROR : severity >= EVENT_LOG_WARN ? LOG_WARN
                                                                                : LOG_DEBUG,
            "libevent: %s", msg);
}

/*
 * The first step of a stop: /readyz turns 503 at once, so load balancers take this
 * instance out, while it goes on serving for drain_ms; then it stops accepting.
 */
static void drain(struct interactive *svc, int drain_ms)
{
    struct timespec left = {drain_ms / 1000, (long)(drain_ms % 1000) * 1000000L};

    atomic_store(&svc->draining, true);
    if (drain_ms > 0) {
        log_info("tallyd: draining for %d ms (/readyz answers 503)", drain_ms);
        while (nanosleep(&left, &left) != 0)
            ;
    }
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
    struct ratelimit *limits = NULL;
    struct http_server *srv = NULL;
    struct grpc_server *grpc = NULL;
    struct auth *auth = NULL;
    struct interactive svc;
    struct strbuf shown = STRBUF_INIT;
    sigset_t sigs;
    char *err = NULL;
    int sig, status = 1, pid_fd = -1;
    int64_t lost;

    switch (config_parse(&cfg, argc, argv)) {
    case CONFIG_EXIT_OK: return 0;
    case CONFIG_EXIT_USAGE: return 2;
    case CONFIG_RUN: break;
    }
    log_set_format(cfg.log_json ? LOG_JSON : LOG_TEXT);
    event_set_log_callback(libevent_log);
    process_metrics_init(tally_version(), tally_commit());
    clock_offset_ms = cfg.test_clock_offset_ms; /* before any thread reads the clock */
    if (cfg.test_clock)
        log_warn("tallyd: --test-clock: the wall clock is shifted by %lld ms (every stored "
                 "time, event hour and rate-limit clock); tests only, never in production",
                 (long long)clock_offset_ms);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* inherited by every thread started below */
    signal(SIGPIPE, SIG_IGN);
    /* First: a second tallyd given the same file must not touch the store or the ports. */
    if (cfg.pid_file && (pid_fd = pidfile_create(cfg.pid_file, &err)) < 0) {
        status = fatal(err);
        goto out;
    }

    if (auth_new(&(struct auth_config){.keys_path = cfg.keys,
                                       .jwt_key = cfg.jwt_key,
                                       .jwt_issuer = cfg.jwt_issuer,
                                       .jwt_audience = cfg.jwt_audience},
                 &auth, &err)) {
        fatal(err);
        status = 2;
        goto out;
    }
    if (!auth_enabled(auth))
        log_warn("tallyd: no --keys and no --jwt-key: the API is open to anyone who can reach "
                 "%s", cfg.listen);
    if (store_open_url(&cfg.store_url, cfg.workers, &store, &err) ||
        cache_open_url(&cfg.cache_url, cfg.workers, &cache, &err) ||
        bus_open_url(&cfg.bus_url, cfg.queue_max, &bus, &err)) {
        status = fatal(err);
        goto out;
    }
    interactive_init(&svc, store, cache, bus);
    if (cfg.rate_limit && *cfg.rate_limit) {
        struct ratelimit_config rl = {.cache = cache};

        if (ratelimit_parse(cfg.rate_limit, &rl.spec, &err)) { /* config_parse checked it */
            status = fatal(err);
            goto out;
        }
        svc.limits = limits = ratelimit_new(&rl);
        log_info("rate limits %s, buckets %s", cfg.rate_limit,
                 ratelimit_may_wait(limits) ? "in Redis (in memory while it does not answer)"
                                            : "in memory");
    }
    rc = readcount_start(bus, store, cache,
                         &(struct readcount_config){.batch = cfg.batch,
                                                    /* the local bus is its own read-ahead */
                                                    .read_ahead = strcmp(cfg.bus_url.scheme,
                                                                         "kafka") == 0
                                                                      ? cfg.read_ahead
                                                                      : 0,
                                                    .flush_ms = cfg.flush_ms,
                                                    .stop_wait_ms = cfg.stop_timeout_ms,
                                                    .hourly_reads = cfg.windows,
                                                    .read_window_ms = cfg.read_window_ms,
                                                    .retention_hours =
                                                        cfg.window_retention_ms / HOUR_MS});
    svc.reads = rc;
    /* gRPC's port is bound before HTTP serves: a tallyd whose /healthz answers takes both. */
    if (cfg.grpc_listen &&
        !(grpc = grpc_server_bind(&(struct grpc_config){.host = cfg.grpc_host,
                                                        .port = cfg.grpc_port,
                                                        .threads = cfg.threads,
                                                        .header_timeout_ms = cfg.header_timeout_ms,
                                                        .idle_timeout_ms = cfg.idle_timeout_ms,
                                                        .max_conns = cfg.max_conns,
                                                        .auth = auth,
                                                        .access_log = cfg.access_log,
                                                        .tls_cert = cfg.tls_cert,
                                                        .tls_key = cfg.tls_key},
                                  &err))) {
        status = fatal(err);
        goto out;
    }
    srv = http_server_start(&(struct http_config){.host = cfg.host,
                                                  .port = cfg.port,
                                                  .threads = cfg.threads,
                                                  .header_timeout_ms = cfg.header_timeout_ms,
                                                  .idle_timeout_ms = cfg.idle_timeout_ms,
                                                  .max_conns = cfg.max_conns,
                                                  .workers = cfg.workers,
                                                  .work_queue = cfg.work_queue,
                                                  .auth = auth,
                                                  .access_log = cfg.access_log,
                                                  .tls_cert = cfg.tls_cert,
                                                  .tls_key = cfg.tls_key},
                            &svc, &err);
    if (!srv) {
        status = fatal(err);
        goto out;
    }
    if (grpc) {
        grpc_server_start(grpc, srv, &svc);
        log_info("tallyd: gRPC on %s port %d%s", cfg.grpc_host, grpc_server_port(grpc),
                 cfg.tls_cert ? " (TLS)" : " (h2c)");
    }
    url_redact(&shown, cfg.store);
    strbuf_addstr(&shown, ", cache ");
    url_redact(&shown, cfg.cache);
    strbuf_addstr(&shown, ", bus ");
    url_redact(&shown, cfg.bus);
    log_info("tallyd listening on %s port %d%s (store %s, batch %zu, flush %d ms)", cfg.host,
             http_server_port(srv), cfg.tls_cert ? " (HTTPS)" : "", shown.buf, cfg.batch,
             cfg.flush_ms);
    strbuf_release(&shown);
    while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP)
        reload(auth, cfg.keys, cfg.tls_cert, srv, grpc);
    log_info("tallyd: signal %d, stopping", sig);
    drain(&svc, cfg.drain_ms);
    status = 0;
out:
    grpc_server_stop(grpc); /* its calls run on the HTTP server's pools */
    http_server_stop(srv);
    ratelimit_free(limits); /* no request runs any more */
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
    pidfile_remove(cfg.pid_file, pid_fd);
    config_release(&cfg);
    if (status == 0)
        log_info("tallyd: stopped cleanly");
    return status;
}
