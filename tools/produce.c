/*
 * produce.c - tally-produce: writes read events straight to Kafka, as any
 * other producer of the topic would (the crash tests and the ingest
 * benchmark use it so that tallyd is only the consumer).
 *
 * usage: tally-produce [--format course] BROKERS TOPIC COUNT ITEMS [uniform|zipf:S] [MALFORMED]
 *        tally-produce BROKERS --check
 *        tally-produce BROKERS --create TOPIC PARTITIONS
 *        tally-produce BROKERS --partitions TOPIC
 *
 * Uniform sends item (i % ITEMS) + 1 for message i, so every item gets
 * COUNT / ITEMS reads exactly; zipf:S draws items from a Zipf law of
 * exponent S (seeded, repeatable). MALFORMED extra messages that are not
 * valid reads are mixed in evenly. Prints "produced N malformed M" and
 * exits 1 if the broker did not acknowledge every message. --create makes a
 * topic with that many partitions (auto-created topics get the broker's
 * default). --partitions prints "partitions N" for an existing topic and exits
 * 1 for a missing one (without creating it).
 *
 * --format course writes the course design's messages instead of tally's:
 * {"aid":ID,"uid":UID}, no key, no biz, no ts (tallyd reads them with
 * ?format=course&biz=B), and malformed ones of that shape.
 *
 * Environment (for the tests of trending windows):
 *   TALLY_PRODUCE_TS=BASE:SPAN   message i has ts BASE - (i * 2654435761) % SPAN (ms), so that
 *                                reads spread over SPAN ms before BASE; the default is
 *                                1700000000000 + i (2023, past any hourly retention)
 *   TALLY_PRODUCE_VIEWERS=V      message i reads as viewer "v<i % V>" instead of a uid
 *   TALLY_PRODUCE_KEYS=K:M       every M-th message (i % M == 0) carries the header
 *                                idempotency-key "k<i % K>"
 *
 * tally-produce --ceiling-sql COUNT ITEMS [uniform|zipf:S] prints, instead of producing, the
 * bare minimum of the same job in SQL (the benchmark's store ceiling): the same COUNT events
 * merged per 10,000 into one count per item, upserted into a plain table
 * ceiling(biz, biz_id, cnt) by multi-row statements of up to 1,000 rows, a transaction a
 * batch.
 */
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdbool.h>
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

static rd_kafka_t *producer(const char *brokers, const char *auto_create)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[256];
    const char *kv[][2] = {{"bootstrap.servers", brokers},
                           {"allow.auto.create.topics", auto_create},
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

/* key NULL: no key (librdkafka spreads such messages over the partitions). */
static void produce_one(rd_kafka_t *rk, const char *topic, const char *key, const char *value,
                        const char *idem)
{
    for (;;) {
        rd_kafka_headers_t *hdrs = NULL;
        rd_kafka_resp_err_t err;

        if (idem) {
            hdrs = rd_kafka_headers_new(1);
            rd_kafka_header_add(hdrs, "idempotency-key", -1, idem, -1);
        }
        err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                                RD_KAFKA_V_VALUE((void *)value, strlen(value)),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
        if (err && hdrs)
            rd_kafka_headers_destroy(hdrs); /* owned by the message only on success */
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
    rd_kafka_t *rk = producer(brokers, "true");
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

/* Prints the partition count of topic; 1 when it does not exist (the lookup creates nothing). */
static int describe_topic(const char *brokers, const char *topic)
{
    rd_kafka_t *rk = producer(brokers, "false");
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 5000);
    int rc = 1;

    if (!err && md->topic_cnt == 1)
        err = md->topics[0].err;
    if (!err) {
        printf("partitions %d\n", md->topics[0].partition_cnt);
        rc = 0;
    } else {
        fprintf(stderr, "tally-produce: %s: %s\n", topic, rd_kafka_err2str(err));
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return rc;
}

/* The item of message i: item (i % items) + 1, or drawn from the Zipf law cdf. */
static long item_of(long i, long items, const double *cdf, unsigned long long *rng)
{
    return cdf ? zipf_draw(cdf, items, rng) : i % items + 1;
}

#define CEILING_BATCH 10000 /* events merged per transaction (tallyd's default --batch) */
#define CEILING_ROWS  1000  /* rows per statement */

/* --ceiling-sql: the events of a run, merged per batch and upserted as plain counts. */
static int ceiling_sql(long count, long items, const double *cdf)
{
    long *n = calloc((size_t)items + 1, sizeof(*n)), *touched = malloc(CEILING_BATCH * sizeof(long));
    unsigned long long rng = 42;

    if (!n || !touched)
        return 1;
    for (long first = 0; first < count; first += CEILING_BATCH) {
        long k = 0;

        for (long i = first; i < count && i < first + CEILING_BATCH; i++) {
            long id = item_of(i, items, cdf, &rng);

            if (n[id]++ == 0)
                touched[k++] = id;
        }
        printf("BEGIN;\n");
        for (long j = 0; j < k; j++) {
            printf("%s('article',%ld,%ld)", j % CEILING_ROWS ? "," :
                   "INSERT INTO ceiling (biz, biz_id, cnt) VALUES ", touched[j], n[touched[j]]);
            if (j % CEILING_ROWS == CEILING_ROWS - 1 || j == k - 1)
                printf(" ON DUPLICATE KEY UPDATE cnt = cnt + VALUES(cnt);\n");
            n[touched[j]] = 0;
        }
        printf("COMMIT;\n");
    }
    free(n);
    free(touched);
    return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    static const char *const bad[] = {"not json",
                                      "{\"biz\":\"Article\",\"id\":1}",
                                      "{\"biz\":\"article\",\"id\":0}",
                                      "[1,2]",
                                      "{\"biz\":\"article\",\"id\":1,\"uid\":-4}",
                                      ""};
    /* The course's shape: invalid_json, invalid_item (aid), invalid_field (uid). */
    static const char *const bad_course[] = {"not json",
                                             "{\"aid\":0,\"uid\":1}",
                                             "[1,2]",
                                             "{\"aid\":1,\"uid\":-4}",
                                             "{\"aid\":\"7\",\"uid\":1}",
                                             "{\"aid\":2,\"uid\":\"x\"}"};
    const char *const *bads = bad;
    size_t nbad = sizeof(bad) / sizeof(bad[0]);
    bool course = false;
    rd_kafka_t *rk;
    long count, items, malformed = 0, sent_bad = 0;
    double *cdf = NULL;
    unsigned long long rng = 42;
    char key[64], value[160];

    if (argc > 2 && strcmp(argv[1], "--format") == 0) {
        if (strcmp(argv[2], "course") != 0 && strcmp(argv[2], "tally") != 0) {
            fprintf(stderr, "tally-produce: --format is tally or course\n");
            return 2;
        }
        course = strcmp(argv[2], "course") == 0;
        argv += 2;
        argc -= 2;
    }
    if (course) {
        bads = bad_course;
        nbad = sizeof(bad_course) / sizeof(bad_course[0]);
    }
    if (argc == 3 && strcmp(argv[2], "--check") == 0) {
        const struct rd_kafka_metadata *md;
        rk = producer(argv[1], "true");
        int ok = rd_kafka_metadata(rk, 0, NULL, &md, 3000) == RD_KAFKA_RESP_ERR_NO_ERROR;
        if (ok)
            rd_kafka_metadata_destroy(md);
        rd_kafka_destroy(rk);
        return ok ? 0 : 1;
    }
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "--ceiling-sql") == 0) {
        count = strtol(argv[2], NULL, 10);
        items = strtol(argv[3], NULL, 10);
        if (count < 0 || items < 1) {
            fprintf(stderr, "tally-produce: COUNT and ITEMS must be positive\n");
            return 2;
        }
        if (argc == 5 && strncmp(argv[4], "zipf:", 5) == 0)
            cdf = zipf_cdf(items, strtod(argv[4] + 5, NULL));
        int rc = ceiling_sql(count, items, cdf);
        free(cdf);
        return rc;
    }
    if (argc == 5 && strcmp(argv[2], "--create") == 0)
        return create_topic(argv[1], argv[3], (int)strtol(argv[4], NULL, 10));
    if (argc == 4 && strcmp(argv[2], "--partitions") == 0)
        return describe_topic(argv[1], argv[3]);
    if (argc < 5) {
        fprintf(stderr, "usage: tally-produce [--format course] BROKERS TOPIC COUNT ITEMS "
                        "[uniform|zipf:S] [MALFORMED]\n       tally-produce BROKERS --check\n"
                        "       tally-produce BROKERS --create TOPIC PARTITIONS\n"
                        "       tally-produce BROKERS --partitions TOPIC\n"
                        "       tally-produce --ceiling-sql COUNT ITEMS [uniform|zipf:S]\n");
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
    const char *ts_spec = getenv("TALLY_PRODUCE_TS");
    long long ts_base = 0, ts_span = 0;
    if (ts_spec && (sscanf(ts_spec, "%lld:%lld", &ts_base, &ts_span) != 2 || ts_span < 1)) {
        fprintf(stderr, "tally-produce: TALLY_PRODUCE_TS must be BASE:SPAN (ms)\n");
        return 2;
    }
    const char *viewers_spec = getenv("TALLY_PRODUCE_VIEWERS"), *keys_spec = getenv("TALLY_PRODUCE_KEYS");
    long viewers = viewers_spec ? strtol(viewers_spec, NULL, 10) : 0, keys = 0, every = 0;
    if (keys_spec && (sscanf(keys_spec, "%ld:%ld", &keys, &every) != 2 || keys < 1 || every < 1)) {
        fprintf(stderr, "tally-produce: TALLY_PRODUCE_KEYS must be K:M\n");
        return 2;
    }
    rk = producer(argv[1], "true");
    for (long i = 0; i < count; i++) {
        char idem[32], who[48];
        long id = item_of(i, items, cdf, &rng);

        snprintf(key, sizeof(key), "article:%ld", id);
        long long ts = ts_span ? ts_base - (long long)i * 2654435761LL % ts_span : 1700000000000LL + i;
        if (viewers)
            snprintf(who, sizeof(who), "\"viewer\":\"v%ld\"", i % viewers);
        else
            snprintf(who, sizeof(who), "\"uid\":%ld", i % 100000 + 1);
        if (course) /* the course's shape knows no viewer and no ts */
            snprintf(value, sizeof(value), "{\"aid\":%ld,\"uid\":%ld}", id, i % 100000 + 1);
        else
            snprintf(value, sizeof(value), "{\"biz\":\"article\",\"id\":%ld,%s,\"ts\":%lld}",
                     id, who, ts);
        snprintf(idem, sizeof(idem), "k%ld", keys ? i % keys : 0);
        produce_one(rk, argv[2], course ? NULL : key, value,
                    keys && i % every == 0 ? idem : NULL);
        /* Spread the malformed ones evenly through the stream. */
        while (sent_bad < malformed && (sent_bad + 1) * count <= (i + 1) * malformed) {
            produce_one(rk, argv[2], course ? NULL : "junk", bads[sent_bad % nbad], NULL);
            sent_bad++;
        }
        if (i % 10000 == 0)
            rd_kafka_poll(rk, 0);
    }
    while (sent_bad < malformed)
        produce_one(rk, argv[2], course ? NULL : "junk", bads[sent_bad++ % nbad], NULL);
    rd_kafka_flush(rk, 120000);
    if (rd_kafka_outq_len(rk) > 0)
        failed += rd_kafka_outq_len(rk);
    rd_kafka_destroy(rk);
    free(cdf);
    printf("produced %ld malformed %ld failed %ld\n", count, sent_bad, failed);
    return failed ? 1 : 0;
}
