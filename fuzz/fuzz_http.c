/*
 * fuzz_http.c - libFuzzer target for tallyd's HTTP layer (src/http/server.c): the
 * connection state machine, http-parser's callbacks, the unknown-method request line,
 * pipelining and every limit, behind a real socket. One in-process server (SQLite
 * store, local bus, no credentials) serves every input: the input is sent on a new
 * connection, the write side is shut, and whatever comes back is read to the end.
 * Every reply must be HTTP/1.1 and JSON-framed; no status may be a 5xx other than
 * 501 (a transfer coding the input asked for), 503 (the bounded read queue) or 505
 * (an HTTP version the input asked for).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bus/local.h"
#include "cache/cache.h"
#include "http/server.h"
#include "store/store.h"
#include "util/log.h"

static struct interactive svc;
static struct http_server *srv;
static struct bus *bus;

static void setup(void)
{
    char url[64], *err = NULL;
    struct store *store;
    struct cache *cache;

    log_set_level(LOG_ERROR);
    snprintf(url, sizeof(url), "sqlite:/tmp/tally-fuzz-http-%d.db", (int)getpid());
    if (store_open(url, &store, &err) || cache_open("none", &cache, &err))
        abort();
    bus = bus_local_new(1 << 20);
    interactive_init(&svc, store, cache, bus);
    srv = http_server_start(&(struct http_config){.host = "127.0.0.1",
                                                  .threads = 1,
                                                  .header_timeout_ms = 2000,
                                                  .idle_timeout_ms = 2000,
                                                  .max_conns = 64,
                                                  .workers = 1,
                                                  .work_queue = 64},
                            &svc, &err);
    if (!srv)
        abort();
}

/* Checks every status line in what came back. */
static void check_reply(const char *r, size_t n)
{
    for (const char *p = r; p && p < r + n; p = memmem(p + 1, (size_t)(r + n - p - 1),
                                                       "\r\nHTTP/1.1 ", 11)) {
        const char *line = *p == '\r' ? p + 2 : p;
        int status;

        if ((size_t)(r + n - line) < 12 || memcmp(line, "HTTP/1.1 ", 9) != 0)
            abort();
        status = (int)strtol(line + 9, NULL, 10);
        if (status < 100 || (status >= 500 && status != 501 && status != 503 && status != 505))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    static char reply[1 << 20];
    size_t got = 0;
    int fd;

    if (!srv)
        setup();
    sin.sin_port = htons((unsigned short)http_server_port(srv));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
        abort();
    for (size_t off = 0; off < size;) {
        ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the server may answer and close before reading everything */
        off += (size_t)w;
    }
    shutdown(fd, SHUT_WR);
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t r;

        if (poll(&pfd, 1, 5000) != 1)
            abort(); /* a half-closed connection must be answered and closed */
        r = recv(fd, reply + got, sizeof(reply) - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
        if (got == sizeof(reply))
            got = 0; /* only the framing matters past here */
    }
    close(fd);
    check_reply(reply, got);
    return 0;
}
