/*
 * config.h - tallyd's settings, from flags and TALLY_* environment variables.
 */
#ifndef TALLY_CONFIG_H
#define TALLY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/url.h"

/*
 * Owned by main; the strings point into argv/environ, static defaults or
 * files[]. store, cache and bus may hold passwords: print url_redact's form.
 */
struct config {
    const char *listen; /* HOST:PORT as given */
    char host[64];
    int port;
    const char *grpc_listen; /* --grpc-listen as given; NULL: no gRPC server */
    const char *pid_file;    /* NULL: none */
    char grpc_host[64];
    int grpc_port;
    const char *store;
    const char *cache;
    const char *bus;
    struct url store_url, cache_url, bus_url; /* parsed once, checked by their adapters */
    char *files[3]; /* what --store, --cache, --bus @PATH read, or NULL */
    size_t batch;
    int flush_ms;
    int threads;
    size_t queue_max;
    size_t read_ahead;
    int header_timeout_ms;
    int idle_timeout_ms;
    int max_conns;
    int workers;
    size_t work_queue;
    const char *keys;         /* API keys file; NULL: none */
    const char *jwt_key;      /* PEM public key path, or hs256:PATH; NULL: none */
    const char *jwt_issuer;   /* NULL: not checked */
    const char *jwt_audience; /* NULL: not checked */
    const char *tls_cert;     /* with tls_key: HTTPS only; NULL: plain HTTP */
    const char *tls_key;
    bool insecure;   /* allow an open API on an address other than loopback */
    bool log_json;   /* --log-format json */
    bool access_log; /* one log line per request */
    int drain_ms;    /* after SIGTERM, serve this long with /readyz 503 before stopping */
    int stop_timeout_ms; /* how long a stop may take to deliver accepted reads */
    const char *rate_limit; /* a checked ratelimit_parse() spec; NULL or "": no limits */
    bool windows;                /* keep hourly counts and trending windows */
    int64_t window_retention_ms; /* hourly counts are kept this long (>= 30 days) */
    int64_t read_window_ms;      /* --read-window; 0: every read counts */
    bool test_clock;              /* --test-clock: tests only, see util/clock.h */
    int64_t test_clock_offset_ms; /* CLOCK_TEST_ENV, taken only with test_clock */
};

enum config_result { CONFIG_RUN, CONFIG_EXIT_OK, CONFIG_EXIT_USAGE };

/*
 * Fills cfg from defaults, then the environment, then argv (a flag wins).
 * On CONFIG_EXIT_USAGE, one line naming the bad value has been printed on
 * stderr; on CONFIG_EXIT_OK, --help or --version has been printed. Only
 * after CONFIG_RUN does cfg hold anything to free with config_release.
 */
enum config_result config_parse(struct config *cfg, int argc, char **argv);
void config_release(struct config *cfg);

#endif
