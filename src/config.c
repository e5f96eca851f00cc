/*
 * config.c - see config.h.
 *
 * Every value is checked here, before anything starts: a typo in a flag
 * must fail fast with one line on stderr and exit status 2, not half-start
 * a server. Adapter URLs are checked by their own modules (store_check_url
 * and friends) so that the knowledge of each scheme stays in one place.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"
#include "cache/cache.h"
#include "model/item.h"
#include "store/store.h"
#include "util/banned.h"

#ifndef TALLY_VERSION
#define TALLY_VERSION "0.1.0"
#endif

static const char usage[] =
    "usage: tallyd [--listen HOST:PORT] [--store URL] [--cache URL] [--bus URL]\n"
    "              [--batch N] [--flush-ms N] [--threads N] [--queue N]\n"
    "              [--stop-timeout-ms N]\n"
    "\n"
    "  --listen HOST:PORT  address to serve HTTP on (127.0.0.1:8080)\n"
    "  --store URL         sqlite:PATH (sqlite:tally.db)\n"
    "  --cache URL         none (none)\n"
    "  --bus URL           local (local)\n"
    "  --batch N           read events per store transaction, 1..100000 (10000)\n"
    "  --flush-ms N        longest wait of a partial read batch, 1..60000 (100)\n"
    "  --threads N         HTTP event-loop threads, 1..64 (2)\n"
    "  --queue N           read events the local bus holds, 1..10000000 (100000)\n"
    "  --stop-timeout-ms N longest a stop waits to deliver accepted reads; past it they\n"
    "                      are counted lost and tallyd exits 1, 1..3600000 (10000)\n"
    "\n"
    "Each flag may also be set as TALLY_LISTEN, TALLY_STORE, ... (a flag wins).\n";

static int bad(const char *what, const char *value, const char *why)
{
    fprintf(stderr, "tallyd: invalid %s '%s': %s\n", what, value, why);
    return -1;
}

static int parse_number(const char *what, const char *s, long long lo, long long hi, long long *out)
{
    int64_t v;

    if (item_parse_id(s, strlen(s), &v) || v < lo || v > hi) {
        char why[96];
        snprintf(why, sizeof(why), "expected an integer in %lld..%lld", lo, hi);
        return bad(what, s, why);
    }
    *out = v;
    return 0;
}

static int parse_listen(struct config *cfg, const char *s)
{
    const char *colon = strrchr(s, ':');
    const char *host = s;
    size_t hlen;
    int64_t port;

    if (!colon)
        return bad("--listen", s, "expected HOST:PORT");
    hlen = (size_t)(colon - s);
    if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']') /* [::1]:8080 */
        host++, hlen -= 2;
    if (hlen == 0 || hlen >= sizeof(cfg->host))
        return bad("--listen", s, "expected HOST:PORT");
    if (strcmp(colon + 1, "0") == 0) /* any free port */
        port = 0;
    else if (item_parse_id(colon + 1, strlen(colon + 1), &port) || port > 65535)
        return bad("--listen", s, "the port must be an integer in 0..65535");
    memcpy(cfg->host, host, hlen);
    cfg->host[hlen] = '\0';
    cfg->port = (int)port;
    cfg->listen = s;
    return 0;
}

static int check_url(const char *value, int (*check)(const char *, char **))
{
    char *err = NULL;

    if (check(value, &err) == 0)
        return 0;
    fprintf(stderr, "tallyd: %s\n", err);
    free(err);
    return -1;
}

enum opt {
    O_LISTEN,
    O_STORE,
    O_CACHE,
    O_BUS,
    O_BATCH,
    O_FLUSH,
    O_THREADS,
    O_QUEUE,
    O_STOP_TIMEOUT,
    O_COUNT
};

static const char *const env_names[O_COUNT] = {
    "TALLY_LISTEN", "TALLY_STORE",    "TALLY_CACHE",   "TALLY_BUS",
    "TALLY_BATCH",  "TALLY_FLUSH_MS", "TALLY_THREADS", "TALLY_QUEUE",
    "TALLY_STOP_TIMEOUT_MS",
};

static int apply(struct config *cfg, enum opt o, const char *v)
{
    static const char *const flags[O_COUNT] = {"--listen", "--store",    "--cache",   "--bus",
                                               "--batch",  "--flush-ms", "--threads", "--queue",
                                               "--stop-timeout-ms"};
    long long n;

    switch (o) {
    case O_LISTEN: return parse_listen(cfg, v);
    case O_STORE: cfg->store = v; return check_url(v, store_check_url);
    case O_CACHE: cfg->cache = v; return check_url(v, cache_check_url);
    case O_BUS: cfg->bus = v; return check_url(v, bus_check_url);
    case O_BATCH:
        if (parse_number(flags[o], v, 1, 100000, &n))
            return -1;
        cfg->batch = (size_t)n;
        return 0;
    case O_FLUSH:
        if (parse_number(flags[o], v, 1, 60000, &n))
            return -1;
        cfg->flush_ms = (int)n;
        return 0;
    case O_THREADS:
        if (parse_number(flags[o], v, 1, 64, &n))
            return -1;
        cfg->threads = (int)n;
        return 0;
    case O_QUEUE:
        if (parse_number(flags[o], v, 1, 10000000, &n))
            return -1;
        cfg->queue_max = (size_t)n;
        return 0;
    case O_STOP_TIMEOUT:
        if (parse_number(flags[o], v, 1, 3600000, &n))
            return -1;
        cfg->stop_timeout_ms = (int)n;
        return 0;
    default: return -1;
    }
}

enum config_result config_parse(struct config *cfg, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"store", required_argument, NULL, O_STORE},
        {"cache", required_argument, NULL, O_CACHE},
        {"bus", required_argument, NULL, O_BUS},
        {"batch", required_argument, NULL, O_BATCH},
        {"flush-ms", required_argument, NULL, O_FLUSH},
        {"threads", required_argument, NULL, O_THREADS},
        {"queue", required_argument, NULL, O_QUEUE},
        {"stop-timeout-ms", required_argument, NULL, O_STOP_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *given[O_COUNT] = {0};
    int ch;

    memset(cfg, 0, sizeof(*cfg));
    given[O_LISTEN] = "127.0.0.1:8080";
    given[O_STORE] = "sqlite:tally.db";
    given[O_CACHE] = "none";
    given[O_BUS] = "local";
    given[O_BATCH] = "10000";
    given[O_FLUSH] = "100";
    given[O_THREADS] = "2";
    given[O_QUEUE] = "100000";
    given[O_STOP_TIMEOUT] = "10000";
    for (int o = 0; o < O_COUNT; o++) {
        const char *env = getenv(env_names[o]);
        if (env)
            given[o] = env;
    }
    opterr = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (ch == 'h') {
            fputs(usage, stdout);
            return CONFIG_EXIT_OK;
        }
        if (ch == 'V') {
            printf("tallyd %s\n", TALLY_VERSION);
            return CONFIG_EXIT_OK;
        }
        if (ch == '?' || ch == ':') {
            fprintf(stderr, "tallyd: invalid option '%s' (see --help)\n", argv[optind - 1]);
            return CONFIG_EXIT_USAGE;
        }
        given[ch] = optarg;
    }
    if (optind < argc) {
        fprintf(stderr, "tallyd: unexpected argument '%s' (see --help)\n", argv[optind]);
        return CONFIG_EXIT_USAGE;
    }
    for (int o = 0; o < O_COUNT; o++)
        if (apply(cfg, (enum opt)o, given[o]))
            return CONFIG_EXIT_USAGE;
    return CONFIG_RUN;
}
