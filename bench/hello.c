/*
 * hello.c - the ceiling: a bare "hello" server with tallyd's HTTP library
 * and thread model (N libevent loops accepting from one shared socket),
 * and no tally code at all. bench/ compares tallyd's endpoints against it.
 *
 * usage: hello PORT [THREADS]
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char body[] = "{\"hello\":\"world\"}";

static void on_request(struct evhttp_request *req, void *arg)
{
    struct evbuffer *out = evbuffer_new();

    (void)arg;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    evbuffer_add(out, body, sizeof(body) - 1);
    evhttp_send_reply(req, 200, NULL, out);
    evbuffer_free(out);
}

static void *loop_main(void *arg)
{
    int fd = *(int *)arg;
    struct event_base *base = event_base_new();
    struct evhttp *http = evhttp_new(base);

    evhttp_set_gencb(http, on_request, NULL);
    evhttp_accept_socket(http, dup(fd));
    event_base_dispatch(base);
    return NULL;
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    int threads = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 2;
    int one = 1, fd;
    pthread_t t[64];

    if (argc < 2 || threads < 1 || threads > 64) {
        fprintf(stderr, "usage: hello PORT [THREADS]\n");
        return 2;
    }
    sa.sin_port = htons((unsigned short)strtol(argv[1], NULL, 10));
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1024) < 0) {
        perror("hello: listen");
        return 1;
    }
    evthread_use_pthreads();
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, loop_main, &fd);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    return 0;
}
