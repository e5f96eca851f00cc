/*
 * config.c - see config.h.
 *
 * Every value is checked here, before anything starts: a typo in a flag
 * must fail fast with one line on stderr and exit status 2, not half-start
 * a server. Adapter URLs are parsed here, once, by util/url.c and checked
 * by their own modules (store_check and friends) so that the knowledge of
 * each scheme stays in one place; main opens the adapters from the parsed
 * URLs. A URL may hold a password, so a bad one is echoed only in
 * url_redact's form, and a URL flag's value may be @PATH, a file to read it
 * from, to keep the password out of ps and shell history.
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
#include "service/ratelimit.h"
#include "store/mysql.h"
#include "store/sqlite.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/strbuf.h"
#include "util/url.h"
#include "util/version.h"
#include "util/banned.h"


static const char usage[] =
    "usage: tallyd [--listen HOST:PORT] [--grpc-listen HOST:PORT] [--store URL]\n"
    "              [--cache URL] [--bus URL]\n"
    "              [--batch N] [--flush-ms N] [--read-ahead N] [--threads N] [--queue N]\n"
    "              [--header-timeout-ms N] [--idle-timeout-ms N] [--max-conns N]\n"
    "              [--workers N] [--work-queue N] [--keys PATH] [--jwt-key PATH]\n"
    "              [--jwt-issuer S] [--jwt-audience S] [--tls-cert PATH --tls-key PATH]\n"
    "              [--insecure] [--stop-timeout-ms N] [--rate-limit SPEC]\n"
    "              [--windows on|off] [--window-retention DURATION] [--read-window DURATION]\n"
    "              [--drain-ms N] [--log-format text|json] [--access-log] [--pid-file PATH]\n"
    "\n"
    "  --listen HOST:PORT  address to serve HTTP on (127.0.0.1:8080)\n"
    "  --grpc-listen HOST:PORT  address to serve gRPC on (intr.v1.InteractiveService,\n"
    "                      grpc.health.v1; h2c, or TLS with --tls-cert); none by default\n"
    "  --store URL         sqlite:PATH (sqlite:tally.db), or\n"
    "                      mysql://USER:PASS@HOST:PORT/DB[?pool=N&ssl=1&ssl_ca=PATH]\n"
    "  --cache URL         none (none), or\n"
    "                      redis://[USER:PASS@]HOST:PORT[?ttl=S&timeout_ms=MS]\n"
    "  --bus URL           local (local), or kafka://HOST:PORT[,...]/TOPIC?group=NAME\n"
    "                      [&security.protocol=P&sasl.mechanism=M&sasl.username=U\n"
    "                      &sasl.password=S&ssl.ca.location=PATH]\n"
    "  --batch N           read events per store transaction, 1..100000 (10000)\n"
    "  --flush-ms N        longest wait of a partial read batch, 1..60000 (100)\n"
    "  --read-ahead N      read events taken from Kafka beyond the batch being\n"
    "                      committed, 0..1000000 (100000; about 100 bytes each)\n"
    "  --threads N         HTTP event-loop threads, 1..64 (2)\n"
    "  --queue N           read events the local bus holds, 1..10000000 (100000)\n"
    "  --header-timeout-ms N  a request must arrive whole within N ms of its first\n"
    "                      byte, 100..600000 (10000)\n"
    "  --idle-timeout-ms N an idle keep-alive connection is closed, 100..3600000 (30000)\n"
    "  --max-conns N       open connections; more are closed at once, 1..1000000 (10000)\n"
    "  --workers N         threads of each worker pool (reads, writes), 1..256 (8)\n"
    "  --work-queue N      requests each pool holds waiting (then 503), 1..1000000 (1024)\n"
    "  --keys PATH         API keys, one 'NAME SCOPES SHA256HEX' a line (tallyctl key);\n"
    "                      reloaded on SIGHUP\n"
    "  --jwt-key PATH      users' tokens: a PEM public key (RS256, ES256), a JWKS (keys\n"
    "                      chosen by kid), or hs256:PATH; reloaded on SIGHUP\n"
    "  --jwt-issuer S      the iss users' tokens must carry\n"
    "  --jwt-audience S    the aud users' tokens must carry\n"
    "  --tls-cert PATH     serve HTTPS only, with this certificate chain (PEM) ...\n"
    "  --tls-key PATH      ... and this private key; both reloaded on SIGHUP\n"
    "  --insecure          allow an open API (no --keys, no --jwt-key) on an address\n"
    "                      other than loopback\n"
    "  --stop-timeout-ms N longest a stop waits to deliver accepted reads; past it they\n"
    "                      are counted lost and tallyd exits 1, 1..3600000 (10000)\n"
    "  --drain-ms N        after SIGTERM, keep serving this long with /readyz 503 before\n"
    "                      no longer accepting, 0..3600000 (0)\n"
    "  --log-format F      text or json (JSON Lines) (text)\n"
    "  --pid-file PATH     write the pid here, locked while tallyd runs (for tallyctl\n"
    "                      reload); a second tallyd with the same file refuses to start\n"
    "  --access-log        one log line per request: method, route, status, duration,\n"
    "                      bytes, request id\n"
    "  --rate-limit SPEC   token buckets per caller and per uid, e.g. key=200/s:400,uid=20/s:40\n"
    "                      (RATE/s|m|h:BURST; over it 429; none by default)\n"
    "  --read-window DURATION  a read by the same uid or viewer of the same item within\n"
    "                      this of their last counted one counts nothing, e.g. 8h, 30m, 2s;\n"
    "                      0: every read counts (0)\n"
    "  --windows on|off    keep hourly counts of reads and trending windows (on)\n"
    "  --window-retention DURATION  hourly counts (history, trending windows) are kept\n"
    "                      this long, e.g. 35d, 90d; at least 30d (35d)\n"
    "  --test-clock        tests only: shift the wall clock by TALLY_TEST_CLOCK_OFFSET_MS\n"
    "                      (announced at start); without this flag that variable is an\n"
    "                      error. No variable sets this flag\n"
    "\n"
    "Each flag may also be set as TALLY_LISTEN, TALLY_STORE, ... (a flag wins).\n"
    "A URL given as @PATH is read from that file, so that its password stays out of\n"
    "ps and shell history; passwords are shown as *** in every message.\n";

static int bad(const char *what, const char *value, const char *why)
{
    fprintf(stderr, "tallyd: invalid %s '%s': %s\n", what, value, why);
    return -1;
}

/*
 * 0 with *out set, or -1 with *out untouched. The -1 is spelled here rather than taken from
 * bad(): a caller that reads *out after a 0 must be able to see, where this is inlined, that
 * no other value comes back (GCC at -O1 does not inline bad() and warned that *out may be
 * read unset).
 */
static int parse_number(const char *what, const char *s, long long lo, long long hi, long long *out)
{
    int64_t v = 0;

    /* item_parse_id takes 1..2^63-1 in digits only; 0 is spelled "0". */
    if ((strcmp(s, "0") != 0 && item_parse_id(s, strlen(s), &v)) || v < lo || v > hi) {
        char why[96];
        snprintf(why, sizeof(why), "expected an integer in %lld..%lld", lo, hi);
        bad(what, s, why);
        return -1;
    }
    *out = v;
    return 0;
}

/* "0", or N followed by s, m, h or d; into ms, at most max_ms. */
static int parse_duration(const char *what, const char *s, int64_t min_ms, int64_t max_ms,
                          int64_t *out)
{
    static const struct {
        char unit;
        int64_t ms;
    } units[] = {{'s', 1000}, {'m', 60000}, {'h', 3600000}, {'d', 86400000}};
    size_t len = strlen(s);
    int64_t n;

    if (strcmp(s, "0") == 0 && min_ms == 0) {
        *out = 0;
        return 0;
    }
    for (size_t i = 0; len >= 2 && i < sizeof(units) / sizeof(units[0]); i++) {
        if (s[len - 1] != units[i].unit || item_parse_id(s, len - 1, &n) ||
            n > max_ms / units[i].ms)
            continue;
        if (n * units[i].ms < min_ms)
            break;
        *out = n * units[i].ms;
        return 0;
    }
    return bad(what, s, min_ms ? "expected a duration such as 35d or 720h, at least 30d"
                               : "expected 0 or a duration such as 8h, 30m, 2s");
}

/* HOST:PORT (or [V6]:PORT) of --listen or --grpc-listen into host and *port. */
static int parse_listen(const char *what, const char *s, char host_out[64], int *port_out)
{
    const char *colon = strrchr(s, ':');
    const char *host = s;
    size_t hlen;
    int64_t port;

    if (!colon)
        return bad(what, s, "expected HOST:PORT");
    hlen = (size_t)(colon - s);
    if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']') /* [::1]:8080 */
        host++, hlen -= 2;
    if (hlen == 0 || hlen >= 64)
        return bad(what, s, "expected HOST:PORT");
    if (strcmp(colon + 1, "0") == 0) /* any free port */
        port = 0;
    else if (item_parse_id(colon + 1, strlen(colon + 1), &port) || port > 65535)
        return bad(what, s, "the port must be an integer in 0..65535");
    memcpy(host_out, host, hlen);
    host_out[hlen] = '\0';
    *port_out = (int)port;
    return 0;
}

/* A value a module checks itself (the rate-limit spec): one line on stderr if bad. */
static int check_value(const char *value, int (*check)(const char *, char **))
{
    char *err = NULL;

    if (check(value, &err) == 0)
        return 0;
    fprintf(stderr, "tallyd: %s\n", err);
    free(err);
    return -1;
}

/* A URL flag: from @PATH or as given, parsed once into *u and checked by its adapter. */
static int parse_url_flag(const char *flag, const char *value, const char **shown, char **owned,
                          struct url *u, int (*check)(const struct url *, char **))
{
    char *err = NULL;
    int rc = url_parse_arg(flag, value, check, u, owned, &err);

    *shown = *owned ? *owned : value;
    if (rc == 0)
        return 0;
    fprintf(stderr, "tallyd: %s\n", err);
    free(err);
    return -1;
}

enum opt {
    O_LISTEN, O_GRPC_LISTEN, O_STORE, O_CACHE, O_BUS, O_BATCH, O_FLUSH, O_READ_AHEAD, O_THREADS,
    O_QUEUE,
    O_HEADER_TIMEOUT, O_IDLE_TIMEOUT, O_MAX_CONNS, O_WORKERS, O_WORK_QUEUE,
    O_KEYS, O_JWT_KEY, O_JWT_ISSUER, O_JWT_AUDIENCE, O_TLS_CERT, O_TLS_KEY, O_INSECURE,
    O_STOP_TIMEOUT, O_RATE_LIMIT, O_DRAIN, O_LOG_FORMAT, O_ACCESS_LOG,
    O_WINDOWS, O_WINDOW_RETENTION, O_READ_WINDOW, O_PID_FILE, O_TEST_CLOCK, O_COUNT
};

enum opt_type { T_TEXT, T_SWITCH, T_INT, T_SIZE };

/*
 * Every option, one row each: its flag (without the dashes), its variable (NULL: none, the
 * flag alone sets it), its default (NULL: none), and for numbers the field it fills and its
 * range. The rest of this file reads only this table.
 */
static const struct opt_spec {
    const char *flag, *env, *dflt;
    enum opt_type type;
    size_t offset;
    long long lo, hi;
} opts[O_COUNT] = {
#define NUM(t, field, lo, hi) t, offsetof(struct config, field), lo, hi
    [O_LISTEN] = {"listen", "TALLY_LISTEN", "127.0.0.1:8080", T_TEXT},
    [O_GRPC_LISTEN] = {"grpc-listen", "TALLY_GRPC_LISTEN", NULL, T_TEXT},
    [O_STORE] = {"store", "TALLY_STORE", "sqlite:tally.db", T_TEXT},
    [O_CACHE] = {"cache", "TALLY_CACHE", "none", T_TEXT},
    [O_BUS] = {"bus", "TALLY_BUS", "local", T_TEXT},
    [O_BATCH] = {"batch", "TALLY_BATCH", "10000", NUM(T_SIZE, batch, 1, 100000)},
    [O_FLUSH] = {"flush-ms", "TALLY_FLUSH_MS", "100", NUM(T_INT, flush_ms, 1, 60000)},
    [O_THREADS] = {"threads", "TALLY_THREADS", "2", NUM(T_INT, threads, 1, 64)},
    [O_READ_AHEAD] = {"read-ahead", "TALLY_READ_AHEAD", "100000",
                      NUM(T_SIZE, read_ahead, 0, 1000000)},
    [O_QUEUE] = {"queue", "TALLY_QUEUE", "100000", NUM(T_SIZE, queue_max, 1, 10000000)},
    [O_HEADER_TIMEOUT] = {"header-timeout-ms", "TALLY_HEADER_TIMEOUT_MS", "10000",
                          NUM(T_INT, header_timeout_ms, 100, 600000)},
    [O_IDLE_TIMEOUT] = {"idle-timeout-ms", "TALLY_IDLE_TIMEOUT_MS", "30000",
                        NUM(T_INT, idle_timeout_ms, 100, 3600000)},
    [O_MAX_CONNS] = {"max-conns", "TALLY_MAX_CONNS", "10000", NUM(T_INT, max_conns, 1, 1000000)},
    [O_WORKERS] = {"workers", "TALLY_WORKERS", "8", NUM(T_INT, workers, 1, 256)},
    [O_WORK_QUEUE] = {"work-queue", "TALLY_WORK_QUEUE", "1024",
                      NUM(T_SIZE, work_queue, 1, 1000000)},
    [O_KEYS] = {"keys", "TALLY_KEYS", NULL, T_TEXT},
    [O_JWT_KEY] = {"jwt-key", "TALLY_JWT_KEY", NULL, T_TEXT},
    [O_JWT_ISSUER] = {"jwt-issuer", "TALLY_JWT_ISSUER", NULL, T_TEXT},
    [O_JWT_AUDIENCE] = {"jwt-audience", "TALLY_JWT_AUDIENCE", NULL, T_TEXT},
    [O_TLS_CERT] = {"tls-cert", "TALLY_TLS_CERT", NULL, T_TEXT},
    [O_TLS_KEY] = {"tls-key", "TALLY_TLS_KEY", NULL, T_TEXT},
    [O_INSECURE] = {"insecure", "TALLY_INSECURE", NULL, T_SWITCH,
                    offsetof(struct config, insecure)},
    [O_STOP_TIMEOUT] = {"stop-timeout-ms", "TALLY_STOP_TIMEOUT_MS", "10000",
                        NUM(T_INT, stop_timeout_ms, 1, 3600000)},
    [O_RATE_LIMIT] = {"rate-limit", "TALLY_RATE_LIMIT", NULL, T_TEXT},
    [O_DRAIN] = {"drain-ms", "TALLY_DRAIN_MS", "0", NUM(T_INT, drain_ms, 0, 3600000)},
    [O_LOG_FORMAT] = {"log-format", "TALLY_LOG_FORMAT", "text", T_TEXT},
    [O_WINDOWS] = {"windows", "TALLY_WINDOWS", "on", T_TEXT},
    [O_WINDOW_RETENTION] = {"window-retention", "TALLY_WINDOW_RETENTION", "35d", T_TEXT},
    [O_READ_WINDOW] = {"read-window", "TALLY_READ_WINDOW", "0", T_TEXT},
    [O_PID_FILE] = {"pid-file", "TALLY_PID_FILE", NULL, T_TEXT},
    [O_ACCESS_LOG] = {"access-log", "TALLY_ACCESS_LOG", NULL, T_SWITCH,
                      offsetof(struct config, access_log)},
    /* No variable: an environment alone, leaked into production, cannot shift the clock. */
    [O_TEST_CLOCK] = {"test-clock", NULL, NULL, T_SWITCH, offsetof(struct config, test_clock)},
#undef NUM
};

/* A flag without a value (set to "1" when given) or its variable: 1, 0, true, false. */
static int parse_switch(const char *what, const char *v, bool *out)
{
    if (strcmp(v, "1") && strcmp(v, "0") && strcmp(v, "true") && strcmp(v, "false"))
        return bad(what, v, "expected 1, 0, true or false");
    *out = strcmp(v, "1") == 0 || strcmp(v, "true") == 0;
    return 0;
}

static int apply(struct config *cfg, enum opt o, const char *v)
{
    const struct opt_spec *spec = &opts[o];
    struct strbuf flag = STRBUF_INIT;
    long long n;
    int rc = 0;

    strbuf_addf(&flag, "--%s", spec->flag);
    switch (o) {
    case O_LISTEN:
        rc = parse_listen(flag.buf, v, cfg->host, &cfg->port);
        cfg->listen = v;
        break;
    case O_GRPC_LISTEN:
        rc = parse_listen(flag.buf, v, cfg->grpc_host, &cfg->grpc_port);
        cfg->grpc_listen = v;
        break;
    case O_STORE:
        rc = parse_url_flag(flag.buf, v, &cfg->store, &cfg->files[0], &cfg->store_url,
                            store_check);
        break;
    case O_CACHE:
        rc = parse_url_flag(flag.buf, v, &cfg->cache, &cfg->files[1], &cfg->cache_url,
                            cache_check);
        break;
    case O_BUS:
        rc = parse_url_flag(flag.buf, v, &cfg->bus, &cfg->files[2], &cfg->bus_url, bus_check);
        break;
    case O_KEYS: cfg->keys = v; break;
    case O_JWT_KEY: cfg->jwt_key = v; break;
    case O_JWT_ISSUER: cfg->jwt_issuer = v; break;
    case O_JWT_AUDIENCE: cfg->jwt_audience = v; break;
    case O_TLS_CERT: cfg->tls_cert = v; break;
    case O_TLS_KEY: cfg->tls_key = v; break;
    case O_PID_FILE:
        if (!*v)
            rc = bad(flag.buf, v, "expected a path");
        cfg->pid_file = v;
        break;
    case O_RATE_LIMIT: cfg->rate_limit = v; rc = check_value(v, ratelimit_check); break;
    case O_WINDOWS:
        if (strcmp(v, "on") && strcmp(v, "off"))
            rc = bad(flag.buf, v, "expected on or off");
        cfg->windows = strcmp(v, "on") == 0;
        break;
    case O_WINDOW_RETENTION:
        rc = parse_duration(flag.buf, v, WINDOW_MAX_HOURS * HOUR_MS, 3650 * 24 * HOUR_MS,
                            &cfg->window_retention_ms);
        break;
    case O_READ_WINDOW:
        rc = parse_duration(flag.buf, v, 0, 3650 * 24 * HOUR_MS, &cfg->read_window_ms);
        break;
    case O_LOG_FORMAT:
        if (strcmp(v, "text") && strcmp(v, "json"))
            rc = bad(flag.buf, v, "expected text or json");
        cfg->log_json = strcmp(v, "json") == 0;
        break;
    default:
        if (spec->type == T_SWITCH) {
            rc = parse_switch(flag.buf, v, (bool *)((char *)cfg + spec->offset));
        } else if ((rc = parse_number(flag.buf, v, spec->lo, spec->hi, &n)) == 0) {
            if (spec->type == T_SIZE)
                *(size_t *)((char *)cfg + spec->offset) = (size_t)n;
            else
                *(int *)((char *)cfg + spec->offset) = (int)n;
        }
        break;
    }
    strbuf_release(&flag);
    return rc;
}

static bool is_loopback(const char *host)
{
    struct in_addr v4;
    struct in6_addr v6;

    if (inet_pton(AF_INET, host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, host, &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

/*
 * The test clock (util/clock.h): CLOCK_TEST_ENV, in ms, is taken only with --test-clock;
 * set without it, tallyd refuses to start.
 */
static int parse_test_clock(struct config *cfg)
{
    const char *v = getenv(CLOCK_TEST_ENV), *digits = v && *v == '-' ? v + 1 : v;
    int64_t n = 0;

    if (!v || !*v)
        return 0;
    if (!cfg->test_clock) {
        fprintf(stderr, "tallyd: %s is set, but only a test may shift the clock: unset it "
                        "(or give --test-clock, tests only)\n", CLOCK_TEST_ENV);
        return -1;
    }
    if ((strcmp(digits, "0") != 0 && item_parse_id(digits, strlen(digits), &n)) ||
        n > 3650 * 24 * HOUR_MS)
        return bad(CLOCK_TEST_ENV, v, "expected milliseconds, at most ten years either way");
    cfg->test_clock_offset_ms = digits == v ? n : -n;
    return 0;
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
    if (!cfg->keys && !cfg->jwt_key && !cfg->insecure &&
        (!is_loopback(cfg->host) || (cfg->grpc_listen && !is_loopback(cfg->grpc_host)))) {
        fprintf(stderr, "tallyd: refusing an open API on %s: give --keys or --jwt-key (or "
                        "--insecure)\n", is_loopback(cfg->host) ? cfg->grpc_listen : cfg->listen);
        return -1;
    }
    return 0;
}

enum config_result config_parse(struct config *cfg, int argc, char **argv)
{
    struct option longopts[O_COUNT + 3];
    const char *given[O_COUNT];
    int ch;

    memset(cfg, 0, sizeof(*cfg));
    for (int o = 0; o < O_COUNT; o++) {
        const char *env = opts[o].env ? getenv(opts[o].env) : NULL;

        longopts[o] = (struct option){opts[o].flag,
                                      opts[o].type == T_SWITCH ? no_argument : required_argument,
                                      NULL, o};
        given[o] = env ? env : opts[o].dflt;
    }
    longopts[O_COUNT] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[O_COUNT + 1] = (struct option){"version", no_argument, NULL, 'V'};
    longopts[O_COUNT + 2] = (struct option){NULL, 0, NULL, 0};
    opterr = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (ch == 'h') {
            fputs(usage, stdout);
            return CONFIG_EXIT_OK;
        }
        if (ch == 'V') {
            printf("tallyd %s (%s; store schema: sqlite %d, mysql %d)\n", tally_version(),
                   tally_commit(), store_sqlite_schema_version(), store_mysql_schema_version());
            return CONFIG_EXIT_OK;
        }
        if (ch == '?' || ch == ':') {
            fprintf(stderr, "tallyd: invalid option '%s' (see --help)\n", argv[optind - 1]);
            return CONFIG_EXIT_USAGE;
        }
        given[ch] = opts[ch].type == T_SWITCH ? "1" : optarg;
    }
    if (optind < argc) {
        fprintf(stderr, "tallyd: unexpected argument '%s' (see --help)\n", argv[optind]);
        return CONFIG_EXIT_USAGE;
    }
    for (int o = 0; o < O_COUNT; o++)
        if (given[o] && apply(cfg, (enum opt)o, given[o])) {
            config_release(cfg);
            return CONFIG_EXIT_USAGE;
        }
    if (check_together(cfg) || parse_test_clock(cfg)) {
        config_release(cfg);
        return CONFIG_EXIT_USAGE;
    }
    return CONFIG_RUN;
}

void config_release(struct config *cfg)
{
    url_release(&cfg->store_url);
    url_release(&cfg->cache_url);
    url_release(&cfg->bus_url);
    for (size_t i = 0; i < sizeof(cfg->files) / sizeof(cfg->files[0]); i++)
        free(cfg->files[i]);
    memset(cfg, 0, sizeof(*cfg));
}
