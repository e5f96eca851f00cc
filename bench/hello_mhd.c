/*
 * hello_mhd.c - the same "hello" with GNU libmicrohttpd (thread pool of
 * THREADS epoll loops), kept to rerun the HTTP library comparison recorded
 * in docs/architecture.md. Built by `make bench-http`, not by `make`.
 *
 * usage: hello_mhd PORT [THREADS]
 */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char body[] = "{\"hello\":\"world\"}";

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls)
{
    struct MHD_Response *res;
    enum MHD_Result ret;

    (void)cls, (void)url, (void)method, (void)version, (void)upload_data, (void)upload_size;
    (void)con_cls;
    res = MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(res, "Content-Type", "application/json");
    ret = MHD_queue_response(conn, 200, res);
    MHD_destroy_response(res);
    return ret;
}

int main(int argc, char **argv)
{
    unsigned threads = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 2;
    struct MHD_Daemon *d;

    if (argc < 2) {
        fprintf(stderr, "usage: hello_mhd PORT [THREADS]\n");
        return 2;
    }
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL,
                         (unsigned short)strtoul(argv[1], NULL, 10), NULL, NULL, on_request,
                         NULL, MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT,
                         4096u, MHD_OPTION_END);
    if (!d) {
        perror("hello_mhd: start");
        return 1;
    }
    pause();
    return 0;
}
