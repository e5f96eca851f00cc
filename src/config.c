/*
 * config.c - see config.h.
 *
 * Every value is checked here, before anything starts: a typo in a flag
 * must fail fast with one line on stderr and exit status 2, not half-start
 * a server. Adapter URLs are checked by their own modules (store_check_url
 * and friends) so that the knowledge of each scheme stays in one place.
 */
#include "config.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
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
    "              [--header-timeout-ms N] [--idle-timeout-ms N] [--max-conns N]\n"
    "              [--workers N] [--work-queue N] [--keys PATH] [--jwt-key PATH]\n"
    "              [--jwt-issuer S] [--jwt-audience S] [--tls-cert PATH --tls-key PATH]\n"
    "              [--insecure] [--stop-timeout-ms N]\n"
    "\n"
    "  --listen HOST:PORT  address to serve HTTP on (127.0.0.1:8080)\n"
    "  --store URL         sqlite:PATH (sqlite:tally.db)\n"
    "  --cache URL         none (none)\n"
    "  --bus URL           local (local)\n"
    "  --batch N           read events per store transaction, 1..100000 (10000)\n"
    "  --flush-ms N        longest wait of a partial read batch, 1..60000 (100)\n"
    "  --threads N         HTTP event-loop threads, 1..64 (2)\n"
    "  --queue N           read events the local bus holds, 1..10000000 (100000)\n"
    "  --header-timeout-ms N  a request must arrive whole within N ms of its first\n"
    "                      byte, 100..600000 (10000)\n"
    "  --idle-timeout-ms N an idle keep-alive connection is closed, 100..3600000 (30000)\n"
    "  --max-conns N       open connections; more are closed at once, 1..1000000 (10000)\n"
    "  --workers N         threads of each worker pool (reads, writes), 1..256 (4)\n"
    "  --work-queue N      requests each pool holds waiting (then 503), 1..1000000 (1024)\n"
    "  --keys PATH         API keys, one 'NAME SCOPES SHA256HEX' a line (tallyctl key);\n"
    "                      reloaded on SIGHUP\n"
    "  --jwt-key PATH      users' tokens: a PEM public key (RS256, ES256) or hs256:PATH\n"
    "  --jwt-issuer S      the iss users' tokens must carry\n"
    "  --jwt-audience S    the aud users' tokens must carry\n"
    "  --tls-cert PATH     serve HTTPS only, with this certificate chain (PEM) ...\n"
    "  --tls-key PATH      ... and this private key; both reloaded on SIGHUP\n"
    "  --insecure          allow an open API (no --keys, no --jwt-key) on an address\n"
    "                      other than loopback\n"
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
    O_LISTEN, O_STORE, O_CACHE, O_BUS, O_BATCH, O_FLUSH, O_THREADS, O_QUEUE,
    O_HEADER_TIMEOUT, O_IDLE_TIMEOUT, O_MAX_CONNS, O_WORKERS, O_WORK_QUEUE,
    O_KEYS, O_JWT_KEY, O_JWT_ISSUER, O_JWT_AUDIENCE, O_TLS_CERT, O_TLS_KEY, O_INSECURE,
    O_STOP_TIMEOUT, O_COUNT
};

static const char *const env_names[O_COUNT] = {
    "TALLY_LISTEN",     "TALLY_STORE",    "TALLY_CACHE",   "TALLY_BUS",
    "TALLY_BATCH",      "TALLY_FLUSH_MS", "TALLY_THREADS", "TALLY_QUEUE",
    "TALLY_HEADER_TIMEOUT_MS", "TALLY_IDLE_TIMEOUT_MS", "TALLY_MAX_CONNS", "TALLY_WORKERS",
    "TALLY_WORK_QUEUE", "TALLY_KEYS", "TALLY_JWT_KEY", "TALLY_JWT_ISSUER", "TALLY_JWT_AUDIENCE",
    "TALLY_TLS_CERT", "TALLY_TLS_KEY", "TALLY_INSECURE", "TALLY_STOP_TIMEOUT_MS",
};

static const char *const flags[O_COUNT] = {
    "--listen",  "--store",   "--cache",     "--bus",     "--batch",
    "--flush-ms", "--threads", "--queue",    "--header-timeout-ms", "--idle-timeout-ms",
    "--max-conns", "--workers", "--work-queue", "--keys", "--jwt-key", "--jwt-issuer",
    "--jwt-audience", "--tls-cert", "--tls-key", "--insecure", "--stop-timeout-ms",
};

/* The integer options: where each goes and its range. */
static const struct {
    long long lo, hi;
    size_t offset;
    bool is_size;
} numbers[O_COUNT] = {
    [O_BATCH] = {1, 100000, offsetof(struct config, batch), true},
    [O_FLUSH] = {1, 60000, offsetof(struct config, flush_ms), false},
    [O_THREADS] = {1, 64, offsetof(struct config, threads), false},
    [O_QUEUE] = {1, 10000000, offsetof(struct config, queue_max), true},
    [O_HEADER_TIMEOUT] = {100, 600000, offsetof(struct config, header_timeout_ms), false},
    [O_IDLE_TIMEOUT] = {100, 3600000, offsetof(struct config, idle_timeout_ms), false},
    [O_MAX_CONNS] = {1, 1000000, offsetof(struct config, max_conns), false},
    [O_WORKERS] = {1, 256, offsetof(struct config, workers), false},
    [O_WORK_QUEUE] = {1, 1000000, offsetof(struct config, work_queue), true},
    [O_STOP_TIMEOUT] = {1, 3600000, offsetof(struct config, stop_timeout_ms), false},
};

static int apply(struct config *cfg, enum opt o, const char *v)
{
    long long n;

    switch (o) {
    case O_LISTEN: return parse_listen(cfg, v);
    case O_STORE: cfg->store = v; return check_url(v, store_check_url);
    case O_CACHE: cfg->cache = v; return check_url(v, cache_check_url);
    case O_BUS: cfg->bus = v; return check_url(v, bus_check_url);
    case O_KEYS: cfg->keys = v; return 0;
    case O_JWT_KEY: cfg->jwt_key = v; return 0;
    case O_JWT_ISSUER: cfg->jwt_issuer = v; return 0;
    case O_JWT_AUDIENCE: cfg->jwt_audience = v; return 0;
    case O_TLS_CERT: cfg->tls_cert = v; return 0;
    case O_TLS_KEY: cfg->tls_key = v; return 0;
    case O_INSECURE:
        if (strcmp(v, "1") && strcmp(v, "0") && strcmp(v, "true") && strcmp(v, "false"))
            return bad(flags[o], v, "expected 1, 0, true or false");
        cfg->insecure = strcmp(v, "1") == 0 || strcmp(v, "true") == 0;
        return 0;
    default:
        if (parse_number(flags[o], v, numbers[o].lo, numbers[o].hi, &n))
            return -1;
        if (numbers[o].is_size)
            *(size_t *)((char *)cfg + numbers[o].offset) = (size_t)n;
        else
            *(int *)((char *)cfg + numbers[o].offset) = (int)n;
        return 0;
    }
}

static bool is_loopback(const char *host)
{
    struct in_addr v4;
    struct in6_addr v6;

    if (inet_pton(AF_INET, host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, host, &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

/* Rules between flags, once each has been checked on its own. */
static int check_together(const struct config *cfg)
{
    if (!cfg->tls_cert != !cfg->tls_key) {
        fprintf(stderr, "tallyd: --tls-cert and --tls-key go together\n");
        return -1;
    }
    if ((cfg->jwt_issuer || cfg->jwt_audience) && !cfg->jwt_key) {
        fprintf(stderr, "tallyd: --jwt-issuer and --jwt-audience need --jwt-key\n");
        return -1;
    }
    if (!cfg->keys && !cfg->jwt_key && !cfg->insecure && !is_loopback(cfg->host)) {
        fprintf(stderr, "tallyd: refusing an open API on %s: give --keys or --jwt-key (or "
                        "--insecure)\n", cfg->listen);
        return -1;
    }
    return 0;
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
        {"header-timeout-ms", required_argument, NULL, O_HEADER_TIMEOUT},
        {"idle-timeout-ms", required_argument, NULL, O_IDLE_TIMEOUT},
        {"max-conns", required_argument, NULL, O_MAX_CONNS},
        {"workers", required_argument, NULL, O_WORKERS},
        {"work-queue", required_argument, NULL, O_WORK_QUEUE},
        {"keys", required_argument, NULL, O_KEYS},
        {"jwt-key", required_argument, NULL, O_JWT_KEY},
        {"jwt-issuer", required_argument, NULL, O_JWT_ISSUER},
        {"jwt-audience", required_argument, NULL, O_JWT_AUDIENCE},
        {"tls-cert", required_argument, NULL, O_TLS_CERT},
        {"tls-key", required_argument, NULL, O_TLS_KEY},
        {"insecure", no_argument, NULL, O_INSECURE},
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
    given[O_HEADER_TIMEOUT] = "10000";
    given[O_IDLE_TIMEOUT] = "30000";
    given[O_MAX_CONNS] = "10000";
    given[O_WORKERS] = "4";
    given[O_WORK_QUEUE] = "1024";
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
        given[ch] = ch == O_INSECURE ? "1" : optarg;
    }
    if (optind < argc) {
        fprintf(stderr, "tallyd: unexpected argument '%s' (see --help)\n", argv[optind]);
        return CONFIG_EXIT_USAGE;
    }
    for (int o = 0; o < O_COUNT; o++)
        if (given[o] && apply(cfg, (enum opt)o, given[o]))
            return CONFIG_EXIT_USAGE;
    return check_together(cfg) ? CONFIG_EXIT_USAGE : CONFIG_RUN;
}
