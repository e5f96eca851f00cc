/*
 * hello_tally.c - tallyd's own HTTP layer (src/http/server.c: its loops, limits and
 * worker pools) serving one fixed JSON body, with no tally code behind it. Next to
 * bench/hello.c (bare libevent evhttp) it shows what the layer itself costs.
 *
 * usage: hello_tally PORT [THREADS]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "http/server.h"

/* The API the layer serves: one route, answered on the loop. */
void api_response_init(struct api_response *res)
{
    res->status = 200;
    strbuf_init(&res->body, 0);
    res->content_type = "application/json";
    res->allow = NULL;
    res->challenge = false;
    res->retry_after = 0;
    res->route = 0;
    res->headers = NULL;
}

void api_response_release(struct api_response *res)
{
    strbuf_release(&res->body);
}

void api_handle(struct interactive *svc, const struct api_request *req, struct api_response *res)
{
    (void)svc, (void)req;
    res->status = 200;
    strbuf_addstr(&res->body, "{\"hello\":\"world\"}");
}

enum api_work api_work_of(const struct interactive *svc, const struct api_request *req,
                          int *route)
{
    (void)svc, (void)req;
    *route = 0;
    return API_WORK_LOOP;
}

int api_route_count(void)
{
    return 1;
}

const char *api_route_name(int route)
{
    (void)route;
    return "hello";
}

int main(int argc, char **argv)
{
    struct http_config cfg = {.host = "127.0.0.1",
                              .threads = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 2,
                              .header_timeout_ms = 10000,
                              .idle_timeout_ms = 30000,
                              .max_conns = 10000,
                              .workers = 1,
                              .work_queue = 1};
    struct http_server *srv;
    sigset_t sigs;
    char *err = NULL;
    int sig;

    if (argc < 2) {
        fprintf(stderr, "usage: hello_tally PORT [THREADS]\n");
        return 2;
    }
    cfg.port = (int)strtol(argv[1], NULL, 10);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    if (!(srv = http_server_start(&cfg, NULL, &err))) {
        fprintf(stderr, "hello_tally: %s\n", err);
        return 1;
    }
    sigwait(&sigs, &sig);
    http_server_stop(srv);
    return 0;
}
