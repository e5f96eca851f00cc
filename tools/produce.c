/*
 * produce.c - tally-produce: writes read events straight to Kafka, as any
 * other producer of the topic would (the crash tests and the ingest
 * benchmark use it so that tallyd is only the consumer).
 *
 * usage: tally-produce BROKERS TOPIC COUNT ITEMS [uniform|zipf:S] [MALFORMED]
 *        tally-produce BROKERS --check
 *        tally-produce BROKERS --create TOPIC PARTITIONS
 *
 * Uniform sends item (i % ITEMS) + 1 for message i, so every item gets
 * COUNT / ITEMS reads exactly; zipf:S draws items from a Zipf law of
 * exponent S (seeded, repeatable). MALFORMED extra messages that are not
 * valid reads are mixed in evenly. Prints "produced N malformed M" and
 * exits 1 if the broker did not acknowledge every message. --create makes a
 * topic with that many partitions (auto-created topics get the broker's
 * default).
 */
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long failed;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk, (void)opaque;
    if (m->err)
        failed++;
}

static rd_kafka_t *producer(const char *brokers)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[256];
    const char *kv[][2] = {{"bootstrap.servers", brokers},
                           {"enable.idempotence", "true"},
                           {"linger.ms", "20"},
                           {"batch.num.messages", "10000"},
                           {"compression.type", "lz4"},
                           {"queue.buffering.max.messages", "1000000"},
                           {"log_level", "3"}};
    rd_kafka_t *rk;

    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            fprintf(stderr, "tally-produce: %s\n", err);
            exit(2);
        }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)))) {
        fprintf(stderr, "tally-produce: %s\n", err);
        exit(2);
    }
    return rk;
}

/* Cumulative Zipf weights of ranks 1..n with exponent s. */
static double *zipf_cdf(long n, double s)
{
    double *cdf = malloc((size_t)n * sizeof(double)), sum = 0;

    for (long k = 0; k < n; k++)
        cdf[k] = (sum += 1.0 / pow((double)(k + 1), s));
    for (long k = 0; k < n; k++)
        cdf[k] /= sum;
    return cdf;
}

static long zipf_draw(const double *cdf, long n, unsigned long long *state)
{
    double u;
    long lo = 0, hi = n - 1;

    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    u = (double)(*state >> 11) / 9007199254740992.0;
    while (lo < hi) {
        long mid = (lo + hi) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo + 1;
}

static void produce_one(rd_kafka_t *rk, const char *topic, const char *key, const char *value)
{
    for (;;) {
        rd_kafka_resp_err_t err =
            rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                              RD_KAFKA_V_VALUE((void *)value, strlen(value)),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            if (err) {
                fprintf(stderr, "tally-produce: %s\n", rd_kafka_err2str(err));
                exit(1);
            }
            return;
        }
        rd_kafka_poll(rk, 10);
    }
}

/* Creates topic with n partitions (replication 1); 0 or 1. */
static int create_topic(const char *brokers, const char *topic, int n)
{
    rd_kafka_t *rk = producer(brokers);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    char err[256];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, n, 1, err, sizeof(err));
    rd_kafka_event_t *ev;
    const rd_kafka_topic_result_t **res;
    size_t cnt = 0;
    int rc = 1;

    if (!nt) {
        fprintf(stderr, "tally-produce: %s\n", err);
        return 1;
    }
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    ev = rd_kafka_queue_poll(q, 30000);
    if (ev && !rd_kafka_event_error(ev)) {
        res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
        if (cnt == 1 && rd_kafka_topic_result_error(res[0]) == RD_KAFKA_RESP_ERR_NO_ERROR)
            rc = 0;
        else if (cnt == 1)
            fprintf(stderr, "tally-produce: %s\n", rd_kafka_topic_result_error_string(res[0]));
    } else {
        fprintf(stderr, "tally-produce: create topic: %s\n",
                ev ? rd_kafka_event_error_string(ev) : "timed out");
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    if (rc == 0)
        printf("created %s partitions %d\n", topic, n);
    return rc;
}

int main(int argc, char **argv)
{
    static const char *const bad[] = {"not json",
                                      "{\"biz\":\"Article\",\"id\":1}",
                                      "{\"biz\":\"article\",\"id\":0}",
                                      "[1,2]",
                                      "{\"biz\":\"article\",\"id\":1,\"uid\":-4}",
                                      ""};
    rd_kafka_t *rk;
    long count, items, malformed = 0, sent_bad = 0;
    double *cdf = NULL;
    unsigned long long rng = 42;
    char key[64], value[160];

    if (argc == 3 && strcmp(argv[2], "--check") == 0) {
        const struct rd_kafka_metadata *md;
        rk = producer(argv[1]);
        int ok = rd_kafka_metadata(rk, 0, NULL, &md, 3000) == RD_KAFKA_RESP_ERR_NO_ERROR;
        if (ok)
            rd_kafka_metadata_destroy(md);
        rd_kafka_destroy(rk);
        return ok ? 0 : 1;
    }
    if (argc == 5 && strcmp(argv[2], "--create") == 0)
        return create_topic(argv[1], argv[3], (int)strtol(argv[4], NULL, 10));
    if (argc < 5) {
        fprintf(stderr, "usage: tally-produce BROKERS TOPIC COUNT ITEMS [uniform|zipf:S] "
                        "[MALFORMED]\n       tally-produce BROKERS --check\n"
                        "       tally-produce BROKERS --create TOPIC PARTITIONS\n");
        return 2;
    }
    count = strtol(argv[3], NULL, 10);
    items = strtol(argv[4], NULL, 10);
    if (argc > 5 && strncmp(argv[5], "zipf:", 5) == 0)
        cdf = zipf_cdf(items, strtod(argv[5] + 5, NULL));
    if (argc > 6)
        malformed = strtol(argv[6], NULL, 10);
    if (count < 0 || items < 1 || malformed < 0) {
        fprintf(stderr, "tally-produce: COUNT, ITEMS and MALFORMED must be positive\n");
        return 2;
    }
    rk = producer(argv[1]);
    for (long i = 0; i < count; i++) {
        long id = cdf ? zipf_draw(cdf, items, &rng) : i % items + 1;

        snprintf(key, sizeof(key), "article:%ld", id);
        snprintf(value, sizeof(value), "{\"biz\":\"article\",\"id\":%ld,\"uid\":%ld,\"ts\":%ld}",
                 id, i % 100000 + 1, 1700000000000L + i);
        produce_one(rk, argv[2], key, value);
        /* Spread the malformed ones evenly through the stream. */
        while (sent_bad < malformed && (sent_bad + 1) * count <= (i + 1) * malformed) {
            produce_one(rk, argv[2], "junk", bad[sent_bad % (sizeof(bad) / sizeof(bad[0]))]);
            sent_bad++;
        }
        if (i % 10000 == 0)
            rd_kafka_poll(rk, 0);
    }
    while (sent_bad < malformed)
        produce_one(rk, argv[2], "junk", bad[sent_bad++ % (sizeof(bad) / sizeof(bad[0]))]);
    rd_kafka_flush(rk, 120000);
    if (rd_kafka_outq_len(rk) > 0)
        failed += rd_kafka_outq_len(rk);
    rd_kafka_destroy(rk);
    free(cdf);
    printf("produced %ld malformed %ld failed %ld\n", count, sent_bad, failed);
    return failed ? 1 : 0;
}
