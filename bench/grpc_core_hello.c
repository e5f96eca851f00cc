/*
 * grpc_core_hello.c - a unary gRPC "hello" on gRPC's C core (Debian's libgrpc-dev 1.51).
 *
 * The library tallyd did not choose, serving the least it can: any method, one fixed
 * answer (an intr.v1.GetResponse for article 7), status OK. bench/run.py calls it with the
 * same load generator (bench/grpcload, method Get) as tallyd's own gRPC Get and reports
 * calls/s, the threads the process runs and its RSS beside tallyd's (docs/architecture.md,
 * "gRPC library: measured").
 *
 * DESIGN
 *   The C core's server API: one completion queue, SLOTS calls requested up front with
 *   grpc_server_request_call, THREADS threads taking events from the queue. A new call
 *   gets one batch (initial metadata, the request read, the answer, the status, the close);
 *   when that batch completes the slot is freed and asks for the next call. Each slot is
 *   touched by one thread at a time: the queue hands each event to one caller. SIGTERM
 *   ends the process without a shutdown (a benchmark's server, nothing to flush).
 *
 *   grpc_core_hello PORT THREADS
 */
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS       128
#define MAX_THREADS 64

/* GetResponse{intr: {biz: "article", biz_id: 7, read_cnt: 1, like_cnt: 1}}, encoded. */
static const unsigned char ANSWER[] = {0x0a, 0x0f, 0x0a, 0x07, 'a', 'r', 't', 'i', 'c',
                                       'l', 'e', 0x10, 0x07, 0x18, 0x01, 0x20, 0x01};

/* One call being served. Owned by whichever thread took its last event from the queue. */
struct slot {
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array metadata;
    grpc_byte_buffer *request;
    int cancelled;
    int answering; /* 0: waiting for a call; 1: its batch is out */
};

static grpc_server *server;
static grpc_completion_queue *cq;
static struct slot slots[SLOTS];

static void wait_for_call(struct slot *s)
{
    grpc_call_details_init(&s->details);
    grpc_metadata_array_init(&s->metadata);
    s->answering = 0;
    if (grpc_server_request_call(server, &s->call, &s->details, &s->metadata, cq, cq, s) !=
        GRPC_CALL_OK) {
        fprintf(stderr, "grpc_core_hello: grpc_server_request_call failed\n");
        exit(1);
    }
}

static void answer(struct slot *s)
{
    grpc_slice body = grpc_slice_from_static_buffer(ANSWER, sizeof ANSWER);
    grpc_byte_buffer *reply = grpc_raw_byte_buffer_create(&body, 1);
    grpc_op ops[5];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_RECV_MESSAGE;
    ops[1].data.recv_message.recv_message = &s->request;
    ops[2].op = GRPC_OP_SEND_MESSAGE;
    ops[2].data.send_message.send_message = reply;
    ops[3].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[3].data.send_status_from_server.status = GRPC_STATUS_OK;
    ops[4].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[4].data.recv_close_on_server.cancelled = &s->cancelled;
    s->answering = 1;
    if (grpc_call_start_batch(s->call, ops, 5, s, NULL) != GRPC_CALL_OK) {
        fprintf(stderr, "grpc_core_hello: grpc_call_start_batch failed\n");
        exit(1);
    }
    grpc_byte_buffer_destroy(reply); /* the batch took its slices */
}

static void finish(struct slot *s)
{
    if (s->request)
        grpc_byte_buffer_destroy(s->request);
    s->request = NULL;
    grpc_call_unref(s->call);
    grpc_call_details_destroy(&s->details);
    grpc_metadata_array_destroy(&s->metadata);
    wait_for_call(s);
}

static void *serve(void *arg)
{
    (void)arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            return NULL;
        struct slot *s = ev.tag;
        if (!s->answering && ev.success)
            answer(s);
        else if (s->answering)
            finish(s);
        else
            return NULL; /* the server is going away */
    }
}

int main(int argc, char **argv)
{
    int threads = argc == 3 ? atoi(argv[2]) : 0;
    if (argc != 3 || atoi(argv[1]) <= 0 || threads < 1 || threads > MAX_THREADS) {
        fprintf(stderr, "usage: grpc_core_hello PORT THREADS (1..%d)\n", MAX_THREADS);
        return 2;
    }
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", atoi(argv[1]));

    grpc_init();
    server = grpc_server_create(NULL, NULL);
    cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(server, cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    if (!grpc_server_add_http2_port(server, addr, creds)) {
        fprintf(stderr, "grpc_core_hello: cannot listen on %s\n", addr);
        return 1;
    }
    grpc_server_credentials_release(creds);
    grpc_server_start(server);
    for (int i = 0; i < SLOTS; i++)
        wait_for_call(&slots[i]);

    pthread_t tid[MAX_THREADS];
    for (int i = 1; i < threads; i++)
        pthread_create(&tid[i], NULL, serve, NULL);
    serve(NULL);
    return 0;
}
