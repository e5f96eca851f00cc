/*
 * kafka.c - read events on Apache Kafka (librdkafka).
 *
 * DESIGN
 *   Producer: one idempotent producer shared by the HTTP threads
 *   (librdkafka's handles are thread-safe). publish() only enqueues into
 *   librdkafka's bounded local queue and returns; a full queue is
 *   TALLY_EFULL (a 503 at the API), never a silent drop. A small thread
 *   serves delivery reports and counts failures. Messages are keyed
 *   "{biz}:{id}" so that one item's reads stay in one partition.
 *
 *   Consumer: a classic consumer group, used only by the read-count reader thread.
 *   Offsets live in the store, in the same transaction as the counts; the
 *   group's own committed offsets are written afterwards only as a courtesy
 *   for monitoring tools and are never read. On assignment every partition
 *   starts at the offset the store holds (the beginning when it holds
 *   none), so a batch that was committed is never consumed again and one
 *   that was not is consumed again. On revocation the events the consumer
 *   holds uncommitted are dropped (poll returns TALLY_ESTALE): the next
 *   owner starts from the stored offsets. A consumer that lost its
 *   partitions without noticing (paused, partitioned) fails the store's
 *   compare-and-set on its next batch and rewinds.
 *
 *   A message that is not a valid read is counted, logged once per kind,
 *   and handed to the consumer marked skip, so its offset is stored with
 *   the batch and it is never read again. With format=course a message
 *   with "aid" is parsed as the course's read of the URL's biz, any other
 *   as tally's own; both then take the same path, so the exactly-once
 *   commit and the dedupe rules do not know the difference.
 *
 *   Topic: before subscribing, the consumer looks the topic up and creates
 *   it when missing (partitions=, replication=, cleanup.policy=delete); it
 *   never alters one that exists, and "already exists" (another tallyd won
 *   the race) is success. Neither client lets the broker auto-create it
 *   with its defaults. A refusal (ACLs, a replication factor the cluster
 *   cannot meet) is logged and retried with the reader's backoff rather
 *   than fatal: the broker may be down at start, and a topic an operator
 *   creates meanwhile is found on the next try. ready() is false until the
 *   group has assigned partitions once (even none), so that a ready tallyd
 *   counts a read within the flush interval instead of after the join.
 *
 *   Security: security.protocol, sasl.* and ssl.ca.location from the URL go
 *   to librdkafka as they are; nothing else is accepted. librdkafka logs
 *   through on_log, which scrubs the SASL password from every line, and its
 *   error strings pass through the same scrub before tally logs them.
 *
 *   Loss: an accepted read is lost only when the broker never acknowledges
 *   it. The delivery report is the one place that counts it (a message that
 *   timed out, or one purged when a stop runs out of time), so each is
 *   counted exactly once in tally_read_events_lost_total. A consumer's
 *   uncommitted batch is not lost at stop: it stays in the topic.
 */
#include "bus/kafka.h"

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/hash.h"
#include "util/hex.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/strbuf.h"
#include "util/url.h"
#include "util/xmalloc.h"
#include "util/banned.h"

enum skip_reason { SKIP_JSON, SKIP_ITEM, SKIP_FIELD, SKIP_COUNT };
static const char *const skip_names[SKIP_COUNT] = {"invalid_json", "invalid_item", "invalid_field"};

/* A partition this consumer holds (one incarnation of it): where its next batch must start. */
struct part {
    int32_t partition;
    uint32_t gen;   /* this incarnation: a new one at every assignment */
    int64_t expect; /* the stored next offset, -1 when the store has none */
    int64_t pos;    /* the offset the next message must have; -1: take the first */
    int64_t gap_at; /* a jump past pos seen once (a real gap if it shows again) */
    int64_t behind; /* messages left in the partition at the last poll; -1: not known */
    struct metric *lag;
};

/*
 * The producer side is shared by the HTTP threads (librdkafka is
 * thread-safe; `closed` is atomic). Everything under "consumer" is owned by
 * the read-count reader thread, including the rebalance callback, which librdkafka
 * runs inside that thread's poll; only `assigned` (atomic) is read by others (/readyz).
 */
struct kafka_bus {
    struct bus base;
    char *brokers, *topic, *group;
    char *course_biz;         /* format=course: the biz of {"aid","uid"} messages; else NULL */
    int partitions, replication; /* of the topic, if tallyd creates it; -1: the broker's */
    struct url_option *security; /* librdkafka settings from the URL (security.protocol, sasl.*) */
    size_t nsecurity;
    char *secret; /* sasl.password or NULL: scrubbed from every line librdkafka logs */
    int session_timeout_ms;
    rd_kafka_t *producer;
    rd_kafka_topic_t *producer_topic; /* kept so that the producer keeps the topic's metadata */
    pthread_t poller;
    atomic_bool closed, stop_poller;
    size_t queue_max; /* what librdkafka's producer queue holds */
    /* consumer */
    rd_kafka_t *consumer; /* created on the first poll */
    struct part *parts;   /* grown to the largest assignment seen */
    int nparts, parts_cap;
    bool revoked; /* since the last poll returned */
    uint32_t gen; /* the last generation given to an incarnation */
    bool start_failing; /* the consumer could not be created: logged once until it can */
    bool subscribed;    /* the topic exists (found or created) and is subscribed to */
    rd_kafka_resp_err_t topic_err; /* why the topic could not be made sure of, last logged */
    atomic_bool assigned; /* the group has assigned partitions once (any, even none) */
    struct metric *m_produced, *m_delivery_failed, *m_lost, *m_skipped[SKIP_COUNT], *m_rebalances;
};

/* ------------------------------------------------------------ message format */

/* Logs the first message of each kind of error; the caller counts them all. */
static int skip(enum skip_reason why, const char *detail)
{
    static atomic_flag logged[SKIP_COUNT] = {ATOMIC_FLAG_INIT, ATOMIC_FLAG_INIT, ATOMIC_FLAG_INIT};

    if (!atomic_flag_test_and_set(&logged[why]))
        log_warn("kafka: skipping a message that is not a valid read (%s: %s); further ones "
                 "are counted in tally_read_events_skipped_total",
                 skip_names[why], detail);
    return -(int)why - 1;
}

/* 16 lowercase hex digits, not all zero: a hash64 as tallyd's producer writes it. */
static bool parse_hash(json_t *v, uint64_t *out)
{
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    uint64_t h = 0;

    if (!s || json_string_length(v) != 16)
        return false;
    for (int i = 0; i < 16; i++) {
        int d = hex_value(s[i]);

        if (d < 0 || (s[i] >= 'A' && s[i] <= 'F')) /* lowercase only: one spelling per hash */
            return false;
        h = h << 4 | (uint64_t)d;
    }
    *out = h;
    return h != 0;
}

/* tally's own format (kafka.h); root is an object. */
static int parse_tally(json_t *root, struct read_event *out)
{
    json_t *v = json_object_get(root, "biz");

    if (!json_is_string(v) ||
        item_parse_biz(json_string_value(v), json_string_length(v), out->item.biz))
        return skip(SKIP_ITEM, "biz");
    v = json_object_get(root, "id");
    if (!json_is_integer(v) || !item_id_valid(json_integer_value(v)))
        return skip(SKIP_ITEM, "id");
    out->item.id = json_integer_value(v);
    if ((v = json_object_get(root, "uid"))) {
        if (!json_is_integer(v) || !item_id_valid(json_integer_value(v)))
            return skip(SKIP_FIELD, "uid");
        out->uid = json_integer_value(v);
    }
    if ((v = json_object_get(root, "viewer"))) {
        if (!json_is_string(v) ||
            !read_text_valid(json_string_value(v), json_string_length(v), READ_VIEWER_MAX))
            return skip(SKIP_FIELD, "viewer");
        out->viewer = hash64("viewer", json_string_value(v), json_string_length(v));
    }
    if ((v = json_object_get(root, "viewer_hash")) && (out->viewer || !parse_hash(v, &out->viewer)))
        return skip(SKIP_FIELD, "viewer_hash");
    if (out->viewer && out->uid)
        return skip(SKIP_FIELD, "uid and viewer");
    if ((v = json_object_get(root, "idem_hash")) && !parse_hash(v, &out->idem))
        return skip(SKIP_FIELD, "idem_hash");
    if ((v = json_object_get(root, "ts"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return skip(SKIP_FIELD, "ts");
        out->ts = json_integer_value(v);
    }
    return 0;
}

/*
 * The course's format: {"aid":N,"uid":M}, of the biz the URL names. uid 0
 * is an anonymous read (a Go producer writes its zero value). Other fields,
 * a "biz" among them, are ignored.
 */
static int parse_course(json_t *root, const char *biz, struct read_event *out)
{
    json_t *v = json_object_get(root, "aid");

    if (!json_is_integer(v) || !item_id_valid(json_integer_value(v)))
        return skip(SKIP_ITEM, "aid");
    out->item.id = json_integer_value(v);
    if (item_parse_biz(biz, strlen(biz), out->item.biz)) /* checked with the URL */
        return skip(SKIP_ITEM, "biz");
    if ((v = json_object_get(root, "uid"))) {
        if (!json_is_integer(v) ||
            (json_integer_value(v) != 0 && !item_id_valid(json_integer_value(v))))
            return skip(SKIP_FIELD, "uid");
        out->uid = json_integer_value(v);
    }
    return 0;
}

/* A message value in tally's format, or with course_biz, an "aid" one in the course's. */
static int parse_value(const char *data, size_t len, const char *course_biz,
                       struct read_event *out)
{
    json_error_t jerr;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    int rc;

    if (!root)
        return skip(SKIP_JSON, jerr.text);
    out->uid = 0;
    out->viewer = out->idem = 0;
    out->ts = 0;
    if (!json_is_object(root))
        rc = skip(SKIP_JSON, "not an object");
    else if (course_biz && json_object_get(root, "aid"))
        rc = parse_course(root, course_biz, out);
    else
        rc = parse_tally(root, out);
    json_decref(root);
    return rc;
}

int bus_kafka_parse(const char *data, size_t len, struct read_event *out)
{
    return parse_value(data, len, NULL, out);
}

int bus_kafka_parse_course(const char *data, size_t len, const char *biz, struct read_event *out)
{
    return parse_value(data, len, biz, out);
}

void bus_kafka_format(struct strbuf *value, const struct read_event *ev)
{
    strbuf_addstr(value, "{\"biz\":\"");
    strbuf_addstr(value, ev->item.biz); /* validated: [a-z0-9_] */
    strbuf_addstr(value, "\",\"id\":");
    strbuf_add_i64(value, ev->item.id);
    if (ev->uid) {
        strbuf_addstr(value, ",\"uid\":");
        strbuf_add_i64(value, ev->uid);
    }
    if (ev->viewer)
        strbuf_addf(value, ",\"viewer_hash\":\"%016llx\"", (unsigned long long)ev->viewer);
    if (ev->idem)
        strbuf_addf(value, ",\"idem_hash\":\"%016llx\"", (unsigned long long)ev->idem);
    strbuf_addstr(value, ",\"ts\":");
    strbuf_add_i64(value, ev->ts);
    strbuf_addch(value, '}');
}

/* ------------------------------------------------------------ producer */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct kafka_bus *kb = opaque;

    (void)rk;
    if (m->err) {
        /* The only place a produced event is declared lost: each report comes once. */
        metric_add(kb->m_delivery_failed, 1);
        metric_add(kb->m_lost, 1);
        LOG_ONCE(LOG_ERROR,
                 "kafka: a read event could not be delivered: %s (counted in "
                 "tally_kafka_delivery_failures_total and tally_read_events_lost_total)",
                 rd_kafka_err2str(m->err));
    } else {
        metric_add(kb->m_produced, 1);
    }
}

static void *poller_main(void *arg)
{
    struct kafka_bus *kb = arg;

    while (!atomic_load(&kb->stop_poller))
        rd_kafka_poll(kb->producer, 100);
    return NULL;
}

static int kafka_publish(struct bus *b, const struct read_event *ev)
{
    struct kafka_bus *kb = (struct kafka_bus *)b;
    struct strbuf key = STRBUF_INIT, value = STRBUF_INIT;
    rd_kafka_resp_err_t err;

    if (atomic_load(&kb->closed))
        return TALLY_ECLOSED;
    strbuf_addf(&key, "%s:%lld", ev->item.biz, (long long)ev->item.id);
    bus_kafka_format(&value, ev);
    err =
        rd_kafka_producev(kb->producer, RD_KAFKA_V_TOPIC(kb->topic),
                          RD_KAFKA_V_KEY(key.buf, key.len), RD_KAFKA_V_VALUE(value.buf, value.len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    strbuf_release(&key);
    strbuf_release(&value);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        return TALLY_EFULL;
    if (err) {
        LOG_ONCE(LOG_ERROR, "kafka: produce: %s", rd_kafka_err2str(err));
        return TALLY_EUNAVAIL;
    }
    return 0;
}

/* ------------------------------------------------------------ consumer */

static struct part *part_of(struct kafka_bus *kb, int32_t partition)
{
    for (int i = 0; i < kb->nparts; i++)
        if (kb->parts[i].partition == partition)
            return &kb->parts[i];
    return NULL;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The stored offset of a partition, waiting for the store if it is down. */
static int64_t stored_offset(struct kafka_bus *kb, int32_t partition)
{
    int64_t next = -1;
    int backoff = 50;

    if (!kb->base.load_offset) /* the consumer has stopped: nothing to start at */
        return -1;
    while (kb->base.load_offset(kb->base.load_ctx, kb->topic, partition, &next) != 0) {
        LOG_ONCE(LOG_WARN, "kafka: cannot read stored offsets; waiting for the store");
        if (atomic_load(&kb->closed))
            return -1;
        sleep_ms(backoff);
        backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
    }
    return next;
}

/*
 * Restarts p at the offset the store holds (its beginning when none) and
 * returns the offset to fetch from. pos is where the stream must continue:
 * messages of an earlier fetch that librdkafka still delivers after the
 * restart are told apart by their offsets (see take_or_drop).
 */
static int64_t restart_at_stored(struct kafka_bus *kb, struct part *p)
{
    int64_t lo = -1, hi;

    p->expect = stored_offset(kb, p->partition);
    p->gap_at = -1;
    p->behind = -1; /* until a poll has seen where the partition ends */
    p->pos = p->expect;
    if (p->pos < 0 && rd_kafka_query_watermark_offsets(kb->consumer, kb->topic, p->partition, &lo,
                                                       &hi, 5000) == 0)
        p->pos = lo;
    return p->expect >= 0 ? p->expect : RD_KAFKA_OFFSET_BEGINNING;
}

/* Starts each partition in list at its stored offset and remembers it (any number of them). */
static void start_at_stored(struct kafka_bus *kb, rd_kafka_topic_partition_list_t *list)
{
    if (list->cnt > kb->parts_cap) {
        kb->parts_cap = list->cnt;
        kb->parts = xrealloc(kb->parts, (size_t)kb->parts_cap * sizeof(*kb->parts));
    }
    kb->nparts = 0;
    for (int i = 0; i < list->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &list->elems[i];
        struct part *p = &kb->parts[kb->nparts++];
        struct strbuf labels = STRBUF_INIT;

        p->partition = tp->partition;
        p->gen = ++kb->gen;
        tp->offset = restart_at_stored(kb, p);
        strbuf_addf(&labels, "topic=\"%s\",partition=\"%d\"", kb->topic, (int)tp->partition);
        p->lag =
            metrics_gauge("tally_kafka_consumer_lag",
                          "Messages in a partition not yet consumed by this tallyd.", labels.buf);
        strbuf_release(&labels);
    }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *list, void *opaque)
{
    struct kafka_bus *kb = opaque;

    metric_add(kb->m_rebalances, 1);
    if (atomic_load(&kb->closed)) {
        /* Closing (rd_kafka_consumer_close): the read consumer has stopped and its state
         * may be gone, so take nothing and read no store. */
        kb->nparts = 0;
        rd_kafka_assign(rk, NULL);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        start_at_stored(kb, list);
        log_info("kafka: assigned %d partition(s) of %s", list->cnt, kb->topic);
        rd_kafka_assign(rk, list);
        atomic_store(&kb->assigned, true);
    } else {
        for (int i = 0; i < kb->nparts; i++)
            metric_set(kb->parts[i].lag, 0);
        kb->nparts = 0;
        kb->revoked = true;
        log_info("kafka: partitions of %s revoked", kb->topic);
        rd_kafka_assign(rk, NULL);
    }
}

static bool set(rd_kafka_conf_t *conf, const char *key, const char *value)
{
    char errstr[256];

    if (rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)) == RD_KAFKA_CONF_OK)
        return true;
    if (url_is_secret_key(key, strlen(key)))
        log_error("kafka: %s: refused by librdkafka", key); /* its errstr may quote the value */
    else
        log_error("kafka: %s=%s: %s", key, value, errstr);
    return false;
}

/* A message from librdkafka, logged with the SASL password scrubbed out of it. */
static void log_scrubbed(struct kafka_bus *kb, enum log_level level, const char *what,
                         const char *msg)
{
    struct strbuf line = STRBUF_INIT;

    url_scrub(&line, msg, kb->secret);
    log_msg(level, "kafka: %s: %s", what, line.buf);
    strbuf_release(&line);
}

/*
 * librdkafka's own log lines (and its errors, which it logs when no error
 * callback is set), on any of its threads: through tally's log, scrubbed.
 */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    log_scrubbed(rd_kafka_opaque(rk), level <= 3 ? LOG_ERROR : level == 4 ? LOG_WARN : LOG_INFO,
                 fac, buf);
}

/* What the producer and the consumer share: brokers, security, logging. */
static bool set_common(struct kafka_bus *kb, rd_kafka_conf_t *conf)
{
    rd_kafka_conf_set_opaque(conf, kb);
    rd_kafka_conf_set_log_cb(conf, on_log);
    if (!set(conf, "bootstrap.servers", kb->brokers) || !set(conf, "log_level", "4"))
        return false;
    for (size_t i = 0; i < kb->nsecurity; i++)
        if (!set(conf, kb->security[i].key, kb->security[i].value))
            return false;
    return true;
}

/* Frees what take_url allocated. */
static void release_url(struct kafka_bus *kb)
{
    free(kb->brokers);
    free(kb->topic);
    free(kb->group);
    free(kb->course_biz);
    for (size_t i = 0; i < kb->nsecurity; i++) {
        free(kb->security[i].key);
        free(kb->security[i].value);
    }
    free(kb->security);
    free(kb->secret);
}

static int start_consumer(struct kafka_bus *kb)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256], timeout[16];
    bool ok;

    snprintf(timeout, sizeof(timeout), "%d", kb->session_timeout_ms);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    ok = set_common(kb, conf) && set(conf, "group.id", kb->group) &&
         set(conf, "enable.auto.commit", "false") &&
         set(conf, "enable.auto.offset.store", "false") &&
         set(conf, "auto.offset.reset", "earliest") && set(conf, "session.timeout.ms", timeout) &&
         set(conf, "allow.auto.create.topics", "false") && /* subscribe() creates it */
         set(conf, "heartbeat.interval.ms", kb->session_timeout_ms >= 3000 ? "1000" : "300") &&
         set(conf, "partition.assignment.strategy", "range") &&
         set(conf, "fetch.wait.max.ms", "50") &&
         /* Bound what librdkafka holds ahead of the consumer (its defaults: 100,000
          * messages or 64 MiB, fetches of 50 MiB) by bytes only. Each queued message
          * costs about 300 bytes beside its payload, three times a parsed event in the
          * read-ahead (service/readcount.c), and librdkafka 2.0 stops fetching for a
          * second whenever this queue is full; measured draining a backlog (README,
          * Performance), 3 MiB with a read-ahead of 100,000 keeps tallyd under 64 MiB. */
         set(conf, "queued.min.messages", "1000000") &&
         set(conf, "queued.max.messages.kbytes", "3072") &&
         set(conf, "fetch.max.bytes", "1048576") && set(conf, "max.partition.fetch.bytes", "262144");
    if (!ok) {
        rd_kafka_conf_destroy(conf);
        return TALLY_EINTERNAL;
    }
    kb->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!kb->consumer) {
        if (!kb->start_failing) /* the read consumer retries with backoff: log the change */
            log_scrubbed(kb, LOG_ERROR, "consumer cannot start", errstr);
        kb->start_failing = true;
        rd_kafka_conf_destroy(conf);
        return TALLY_EUNAVAIL;
    }
    if (kb->start_failing)
        log_info("kafka: the consumer started");
    kb->start_failing = false;
    rd_kafka_poll_set_consumer(kb->consumer);
    return 0;
}

/* Logs why the topic could not be made sure of, when the reason changed; TALLY_EUNAVAIL. */
static int topic_failed(struct kafka_bus *kb, rd_kafka_resp_err_t err, const char *what,
                        const char *detail)
{
    if (err != kb->topic_err)
        log_scrubbed(kb, LOG_ERROR, what, detail);
    kb->topic_err = err;
    return TALLY_EUNAVAIL;
}

/* Whether the broker knows the topic: 0 and *exists, or TALLY_EUNAVAIL (logged). */
static int find_topic(struct kafka_bus *kb, bool *exists)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(kb->consumer, kb->topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err;
    int rc = 0;

    /* The consumer never asks the broker to auto-create (allow.auto.create.topics). */
    err = rd_kafka_metadata(kb->consumer, 0, rkt, &md, 3000);
    if (!err && md->topic_cnt == 1)
        err = md->topics[0].err;
    *exists = err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
    if (!*exists && err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
        rc = topic_failed(kb, err, "cannot look the topic up", rd_kafka_err2str(err));
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

/*
 * Creates the topic (partitions, replication, cleanup.policy=delete). One
 * that exists by now (another tallyd created it first) is success. Waits on
 * the admin result in short steps so that a stop is not held up.
 */
static int create_topic(struct kafka_bus *kb)
{
    char errstr[256];
    rd_kafka_NewTopic_t *nt =
        rd_kafka_NewTopic_new(kb->topic, kb->partitions, kb->replication, errstr, sizeof(errstr));
    rd_kafka_AdminOptions_t *opts =
        rd_kafka_AdminOptions_new(kb->consumer, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_queue_t *q = rd_kafka_queue_new(kb->consumer);
    rd_kafka_event_t *ev = NULL;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
    const char *why = "no answer within 15 s";
    int64_t deadline = clock_mono_us() + 15000000;
    int rc = TALLY_EUNAVAIL;

    if (!nt) { /* the URL's bounds keep librdkafka's: a bug if it refuses */
        rc = topic_failed(kb, RD_KAFKA_RESP_ERR__INVALID_ARG, "cannot create the topic", errstr);
        goto out;
    }
    /* Compaction keeps one message per key ("{biz}:{id}"): it would drop reads. */
    rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "delete");
    /* The broker answers once the topic is created, so that subscribing finds it. */
    rd_kafka_AdminOptions_set_operation_timeout(opts, 10000, errstr, sizeof(errstr));
    rd_kafka_AdminOptions_set_request_timeout(opts, 12000, errstr, sizeof(errstr));
    rd_kafka_CreateTopics(kb->consumer, &nt, 1, opts, q);
    while (!ev && clock_mono_us() < deadline && !atomic_load(&kb->closed))
        ev = rd_kafka_queue_poll(q, 100);
    if (ev && (err = rd_kafka_event_error(ev))) {
        why = rd_kafka_event_error_string(ev);
    } else if (ev) {
        size_t n = 0;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);

        err = n == 1 ? rd_kafka_topic_result_error(res[0]) : RD_KAFKA_RESP_ERR__FAIL;
        why = n == 1 && rd_kafka_topic_result_error_string(res[0])
                  ? rd_kafka_topic_result_error_string(res[0])
                  : rd_kafka_err2str(err);
    }
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        log_info("kafka: created the topic %s (%d partitions, replication %s)", kb->topic,
                 kb->partitions, kb->replication > 0 ? "as set" : "the broker's default");
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        rc = 0;
    else if (!atomic_load(&kb->closed))
        rc = topic_failed(kb, err, "cannot create the topic", why);
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(q);
    return rc;
}

/*
 * Tells the producer where the topic's partitions are. Without it, the first
 * read waits about a second in librdkafka before it leaves (its timer that
 * looks up topics it has not seen). Best effort: a failure only costs that.
 */
static void warm_producer(struct kafka_bus *kb)
{
    const struct rd_kafka_metadata *md = NULL;

    if (rd_kafka_metadata(kb->producer, 0, kb->producer_topic, &md, 3000) ==
        RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_metadata_destroy(md);
}

/*
 * Subscribes to the topic once it exists: found, or created here when it is
 * missing (never altered when it exists). Until then the reader retries with
 * backoff and /readyz says not ready.
 */
static int subscribe(struct kafka_bus *kb)
{
    rd_kafka_topic_partition_list_t *topics;
    bool exists;
    int rc;

    if ((rc = find_topic(kb, &exists)))
        return rc;
    if (!exists) {
        int64_t until = clock_mono_us() + 5000000;

        if ((rc = create_topic(kb)))
            return rc;
        /* Created, but the metadata may lag: the group's join must find the topic, or
         * librdkafka looks for it again only seconds later. */
        while (!exists && !atomic_load(&kb->closed) && clock_mono_us() < until) {
            sleep_ms(50);
            if (find_topic(kb, &exists))
                break;
        }
    }
    if (kb->topic_err)
        log_info("kafka: the topic %s is there", kb->topic);
    kb->topic_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, kb->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(kb->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    kb->subscribed = true;
    warm_producer(kb);
    return 0;
}

static void update_lag(struct kafka_bus *kb)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(kb->nparts);

    for (int i = 0; i < kb->nparts; i++)
        rd_kafka_topic_partition_list_add(list, kb->topic, kb->parts[i].partition);
    if (kb->nparts && rd_kafka_position(kb->consumer, list) == 0) {
        for (int i = 0; i < list->cnt; i++) {
            int64_t lo, hi, pos = list->elems[i].offset;
            struct part *p = part_of(kb, list->elems[i].partition);

            if (p && pos >= 0 &&
                rd_kafka_get_watermark_offsets(kb->consumer, kb->topic, p->partition, &lo, &hi) ==
                    0) {
                p->behind = hi > pos ? hi - pos : 0;
                metric_set(p->lag, p->behind);
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(list);
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A producer's Idempotency-Key, as the message header "idempotency-key" (the same rule
 * as the HTTP header), scoped to the message's item. 0, or a skip reason when it is
 * malformed. */
static int take_header_key(const rd_kafka_message_t *m, struct read_event *out)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *val = NULL;
    size_t size = 0;

    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, "idempotency-key", &val, &size) !=
            RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    if (!val || !read_text_valid(val, size, READ_IDEM_KEY_MAX) || out->idem)
        return skip(SKIP_FIELD, "idempotency-key header");
    out->idem = read_idem_digest("bus", &out->item, val, size);
    return 0;
}

/* Turns one message into out (marked skip when it is not a valid read). */
static void take_message(struct kafka_bus *kb, const rd_kafka_message_t *m, struct read_event *out)
{
    int why;

    memset(out, 0, sizeof(*out));
    out->partition = m->partition;
    out->offset = m->offset;
    why = parse_value(m->payload ? m->payload : "", m->len, kb->course_biz, out);
    if (!why)
        why = take_header_key(m, out);
    if (why) {
        out->skip = true;
        metric_add(kb->m_skipped[-why - 1], 1);
    } else {
        /* A read counts in the hour of its ts; without one (or one too far ahead), in the
         * hour the broker took it: the message's own timestamp, the same on every replay. */
        rd_kafka_timestamp_type_t type;
        int64_t arrival = rd_kafka_message_timestamp(m, &type);

        if (arrival <= 0)
            arrival = clock_now_ms();
        if (out->ts <= 0 || out->ts > arrival + READ_FUTURE_MS)
            out->ts = arrival;
    }
}

static void seek(struct kafka_bus *kb, rd_kafka_topic_partition_list_t *list)
{
    rd_kafka_error_t *err;

    if (list->cnt && (err = rd_kafka_seek_partitions(kb->consumer, list, 5000))) {
        log_warn("kafka: seek: %s", rd_kafka_error_string(err));
        rd_kafka_error_destroy(err);
    }
}

/*
 * Whether m continues its partition's stream. A message of a partition no
 * longer assigned, or before pos, is left over from an earlier fetch; one
 * past pos may be too (librdkafka can still hand out what it fetched before
 * a restart), so the partition is sought back to pos once. If the same
 * offset comes again, the log really has a gap there (compaction,
 * transaction markers) and the message is taken.
 */
static struct part *take_or_drop(struct kafka_bus *kb, const rd_kafka_message_t *m)
{
    struct part *p = part_of(kb, m->partition);
    rd_kafka_topic_partition_list_t *list;

    if (!p || (p->pos >= 0 && m->offset < p->pos))
        return NULL;
    if (p->pos >= 0 && m->offset > p->pos && m->offset != p->gap_at) {
        p->gap_at = m->offset;
        list = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(list, kb->topic, p->partition)->offset = p->pos;
        seek(kb, list);
        rd_kafka_topic_partition_list_destroy(list);
        return NULL;
    }
    p->pos = m->offset + 1;
    p->gap_at = -1;
    return p;
}

static int kafka_poll(struct bus *b, struct read_event *out, size_t max, int timeout_ms, size_t *n)
{
    struct kafka_bus *kb = (struct kafka_bus *)b;
    int64_t deadline = mono_us() + (int64_t)timeout_ms * 1000;
    struct part *p;
    int rc = 0;

    *n = 0;
    if (atomic_load(&kb->closed))
        return TALLY_ECLOSED;
    if (!kb->consumer && (rc = start_consumer(kb)))
        return rc;
    if (!kb->subscribed && (rc = subscribe(kb)))
        return rc;
    kb->revoked = false;
    while (*n < max) {
        /* Wait for the first message; after it, take only what is already here. */
        int64_t left = *n ? 0 : (deadline - mono_us()) / 1000;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(kb->consumer, left > 0 ? (int)left : 0);

        if (kb->revoked) {
            if (m)
                rd_kafka_message_destroy(m);
            rc = TALLY_ESTALE;
            break;
        }
        if (!m) {
            if (*n || mono_us() >= deadline || atomic_load(&kb->closed))
                break;
            continue;
        }
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                struct strbuf why = STRBUF_INIT;

                url_scrub(&why, rd_kafka_message_errstr(m), kb->secret);
                LOG_ONCE(LOG_WARN, "kafka: consumer: %s", why.buf);
                strbuf_release(&why);
            }
        } else if ((p = take_or_drop(kb, m))) {
            take_message(kb, m, &out[*n]);
            out[(*n)++].gen = p->gen;
        }
        rd_kafka_message_destroy(m);
    }
    update_lag(kb);
    return rc;
}

static int64_t kafka_expect(struct bus *b, int32_t partition)
{
    struct part *p = part_of((struct kafka_bus *)b, partition);
    return p ? p->expect : -1;
}

static void kafka_committed(struct bus *b, const struct store_offset *offs, size_t n)
{
    struct kafka_bus *kb = (struct kafka_bus *)b;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)n);

    for (size_t i = 0; i < n; i++) {
        struct part *p = part_of(kb, offs[i].partition);

        /* Revoked while its batch committed: its new owner, even a new incarnation of
         * it here, started from the store and moves by its own commits only. */
        if (!p || p->gen != offs[i].gen)
            continue;
        p->expect = offs[i].next;
        rd_kafka_topic_partition_list_add(list, kb->topic, offs[i].partition)->offset =
            offs[i].next;
    }
    /* Advisory only (monitoring tools read it); tally resumes from the store. */
    if (list->cnt)
        rd_kafka_commit(kb->consumer, list, 1);
    rd_kafka_topic_partition_list_destroy(list);
}

static size_t kafka_caught_up(struct bus *b, int32_t *parts, size_t max)
{
    struct kafka_bus *kb = (struct kafka_bus *)b;

    for (int i = 0; i < kb->nparts; i++)
        if (kb->parts[i].behind != 0)
            return 0;
    for (int i = 0; i < kb->nparts && (size_t)i < max; i++)
        parts[i] = kb->parts[i].partition;
    return (size_t)kb->nparts;
}

static void kafka_rewind(struct bus *b)
{
    struct kafka_bus *kb = (struct kafka_bus *)b;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(kb->nparts);

    for (int i = 0; i < kb->nparts; i++)
        rd_kafka_topic_partition_list_add(list, kb->topic, kb->parts[i].partition)->offset =
            restart_at_stored(kb, &kb->parts[i]);
    seek(kb, list);
    rd_kafka_topic_partition_list_destroy(list);
}

/*
 * Waits up to timeout_ms for the broker to acknowledge every produced event.
 * What is left is purged: each purged message gets a failed delivery report,
 * which counts it lost (on_delivery), served by the flush after the purge.
 */
static void kafka_close(struct bus *b, int timeout_ms)
{
    struct kafka_bus *kb = (struct kafka_bus *)b;

    if (atomic_exchange(&kb->closed, true))
        return;
    if (rd_kafka_flush(kb->producer, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    log_error("kafka: %d read events not acknowledged by the broker within %d ms; giving up "
              "on them",
              rd_kafka_outq_len(kb->producer), timeout_ms);
    rd_kafka_purge(kb->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    if (rd_kafka_flush(kb->producer, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        log_error("kafka: %d delivery reports still pending after the purge",
                  rd_kafka_outq_len(kb->producer));
}

static void kafka_free(struct bus *b)
{
    struct kafka_bus *kb = (struct kafka_bus *)b;

    kafka_close(b, 0);
    if (kb->consumer) {
        rd_kafka_consumer_close(kb->consumer);
        rd_kafka_destroy(kb->consumer);
    }
    atomic_store(&kb->stop_poller, true);
    pthread_join(kb->poller, NULL);
    rd_kafka_topic_destroy(kb->producer_topic);
    rd_kafka_destroy(kb->producer);
    release_url(kb);
    free(kb->parts);
    free(kb);
}

static int kafka_ready(struct bus *b)
{
    struct kafka_bus *kb = (struct kafka_bus *)b;

    if (atomic_load(&kb->closed))
        return TALLY_ECLOSED;
    /* Until the group has assigned partitions (any, even none) the topic may not exist
     * and no read would be counted: "ready" means a read sent now is counted soon. */
    if (!atomic_load(&kb->assigned))
        return TALLY_EUNAVAIL;
    return (size_t)rd_kafka_outq_len(kb->producer) >= kb->queue_max ? TALLY_EFULL : 0;
}

static const struct bus_ops kafka_ops = {
    .name = "kafka",
    .publish = kafka_publish,
    .poll = kafka_poll,
    .expect = kafka_expect,
    .committed = kafka_committed,
    .rewind = kafka_rewind,
    .caught_up = kafka_caught_up,
    .ready = kafka_ready,
    .close = kafka_close,
    .free = kafka_free,
};

/* ------------------------------------------------------------ open */

static const char *const known_options[] = {
    "group",          "session_timeout_ms", "format",          "biz",
    "partitions",     "replication",        "security.protocol", "sasl.mechanism",
    "sasl.username",  "sasl.password",      "ssl.ca.location", NULL,
};

/* Bounds of partitions= and replication= (Kafka's own limits are looser). */
#define PARTITIONS_DEFAULT 6
#define PARTITIONS_MAX 10000
#define REPLICATION_MAX 32

/* URL options handed to librdkafka, and their names there. */
static const char *const passed[][2] = {
    {"security.protocol", "security.protocol"},
    {"sasl.mechanism", "sasl.mechanisms"},
    {"sasl.username", "sasl.username"},
    {"sasl.password", "sasl.password"},
    {"ssl.ca.location", "ssl.ca.location"},
};

static bool one_of(const char *v, const char *const *list)
{
    for (; *list; list++)
        if (strcasecmp(v, *list) == 0)
            return true;
    return false;
}

static bool valid_topic(const char *t)
{
    if (strlen(t) > 249)
        return false;
    for (; *t; t++)
        if (!((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') || (*t >= '0' && *t <= '9') ||
              *t == '.' || *t == '_' || *t == '-'))
            return false;
    return true;
}

/* The rules of kafka://... beyond url_parse's; why as for store_check. */
static const char *check_rules(const struct url *u)
{
    static const char *const protocols[] = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL",
                                            NULL};
    static const char *const mechanisms[] = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", NULL};
    const char *proto = url_option(u, "security.protocol"), *mech = url_option(u, "sasl.mechanism");
    const char *user = url_option(u, "sasl.username"), *pass = url_option(u, "sasl.password");
    const char *ca = url_option(u, "ssl.ca.location"), *group = url_option(u, "group");
    const char *format = url_option(u, "format"), *biz = url_option(u, "biz");
    bool course = format && strcmp(format, "course") == 0;
    char parsed[ITEM_BIZ_MAX + 1];
    bool sasl = proto && strncasecmp(proto, "SASL_", 5) == 0;
    bool tls = proto && (strcasecmp(proto, "SSL") == 0 || strcasecmp(proto, "SASL_SSL") == 0);
    long long v;

    if (u->user || u->password)
        return "kafka:// takes credentials as the options sasl.username and sasl.password";
    if (!valid_topic(u->path))
        return "a topic is up to 249 of [a-zA-Z0-9._-]";
    if (group && !*group)
        return "group=NAME needs a name";
    if (url_option_int(u, "session_timeout_ms", 1000, 300000, 6000, &v))
        return "session_timeout_ms=N takes N in 1000..300000";
    if (format && !course && strcmp(format, "tally") != 0)
        return "format is tally or course";
    if (course && !biz)
        return "format=course needs biz=NAME (the biz of its reads)";
    if (biz && !course)
        return "biz=NAME goes with format=course";
    if (biz && item_parse_biz(biz, strlen(biz), parsed))
        return "biz=NAME takes a biz: ^[a-z][a-z0-9_]{0,31}$";
    if (url_option_int(u, "partitions", 1, PARTITIONS_MAX, PARTITIONS_DEFAULT, &v))
        return "partitions=N takes N in 1..10000";
    if (url_option_int(u, "replication", 1, REPLICATION_MAX, -1, &v))
        return "replication=N takes N in 1..32";
    if (proto && !one_of(proto, protocols))
        return "security.protocol is PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL";
    if (!sasl && (mech || user || pass))
        return "sasl.* options need security.protocol=SASL_PLAINTEXT or SASL_SSL";
    if (sasl && !(user && *user && pass))
        return "security.protocol=SASL_* needs sasl.username and sasl.password";
    if (mech && !one_of(mech, mechanisms))
        return "sasl.mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512";
    if (ca && !tls)
        return "ssl.ca.location needs security.protocol=SSL or SASL_SSL";
    if (ca && access(ca, R_OK) != 0)
        return "ssl.ca.location: the CA file cannot be read";
    return NULL;
}

int bus_kafka_check(const struct url *u, char **why)
{
    const char *reason;

    if (url_check_options(u, known_options, why))
        return TALLY_EINVAL;
    if (!(reason = check_rules(u)))
        return 0;
    *why = xstrdup(reason);
    return TALLY_EINVAL;
}

/* Takes what the bus needs from u (checked) into kb. */
static void take_url(struct kafka_bus *kb, const struct url *u)
{
    struct strbuf brokers = STRBUF_INIT;
    long long session_ms, n;

    for (size_t i = 0; i < u->nhosts; i++) {
        const char *name = u->hosts[i].name;

        strbuf_addf(&brokers, strchr(name, ':') ? "%s[%s]" : "%s%s", i ? "," : "", name);
        if (u->hosts[i].port)
            strbuf_addf(&brokers, ":%d", u->hosts[i].port);
    }
    kb->brokers = strbuf_detach(&brokers, NULL);
    kb->topic = xstrdup(*u->path ? u->path : "tally.reads");
    kb->group = xstrdup(url_option(u, "group") ? url_option(u, "group") : "tally");
    url_option_int(u, "session_timeout_ms", 1000, 300000, 6000, &session_ms);
    kb->session_timeout_ms = (int)session_ms;
    if (url_option(u, "biz"))
        kb->course_biz = xstrdup(url_option(u, "biz")); /* only with format=course */
    url_option_int(u, "partitions", 1, PARTITIONS_MAX, PARTITIONS_DEFAULT, &n);
    kb->partitions = (int)n;
    url_option_int(u, "replication", 1, REPLICATION_MAX, -1, &n);
    kb->replication = (int)n;
    kb->security = xcalloc(sizeof(passed) / sizeof(passed[0]), sizeof(*kb->security));
    for (size_t i = 0; i < sizeof(passed) / sizeof(passed[0]); i++) {
        const char *v = url_option(u, passed[i][0]);

        if (!v)
            continue;
        kb->security[kb->nsecurity].key = xstrdup(passed[i][1]);
        kb->security[kb->nsecurity++].value = xstrdup(v);
    }
    if (url_option(u, "sasl.password") && *url_option(u, "sasl.password"))
        kb->secret = xstrdup(url_option(u, "sasl.password"));
}

int bus_kafka_open(const struct url *u, size_t queue_max, struct bus **out, char **err)
{
    struct kafka_bus *kb;
    rd_kafka_conf_t *conf;
    char errstr[256], queue[24];
    int rc;

    kb = xcalloc(1, sizeof(*kb));
    kb->base.ops = &kafka_ops;
    take_url(kb, u);
    kb->base.topic = kb->topic;
    kb->queue_max = queue_max;
    kb->m_produced = metrics_counter("tally_kafka_messages_delivered_total",
                                     "Read events the broker acknowledged.", "");
    kb->m_delivery_failed = metrics_counter("tally_kafka_delivery_failures_total",
                                            "Read events the broker never acknowledged.", "");
    kb->m_lost = metrics_counter("tally_read_events_lost_total",
                                 "Accepted read events never applied nor dead-lettered: dropped "
                                 "at stop or never acknowledged by the broker.",
                                 ""); /* the same series as readcount's */
    kb->m_rebalances = metrics_counter("tally_kafka_rebalances_total",
                                       "Partition assignments and revocations seen.", "");
    for (int i = 0; i < SKIP_COUNT; i++) {
        struct strbuf labels = STRBUF_INIT;
        strbuf_addf(&labels, "reason=\"%s\"", skip_names[i]);
        kb->m_skipped[i] =
            metrics_counter("tally_read_events_skipped_total",
                            "Messages on the topic that were not valid reads.", labels.buf);
        strbuf_release(&labels);
    }
    snprintf(queue, sizeof(queue), "%zu", queue_max);
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    /* acks=all (which idempotence requires anyway): a read is on the topic once every
     * in-sync replica has it, so a broker lost after its ack loses no read. */
    if (!(set_common(kb, conf) && set(conf, "enable.idempotence", "true") &&
          set(conf, "acks", "all") && set(conf, "linger.ms", "5") &&
          /* The consumer creates the topic with the URL's settings (subscribe); a read
           * sent before that waits in the queue, as long as for an absent broker, rather
           * than creating it with the broker's defaults. */
          set(conf, "allow.auto.create.topics", "false") &&
          set(conf, "topic.metadata.propagation.max.ms", "300000") &&
          set(conf, "batch.num.messages", "10000") &&
          set(conf, "compression.type", "lz4") &&
          set(conf, "queue.buffering.max.messages", queue) &&
          set(conf, "message.timeout.ms", "300000"))) {
        rd_kafka_conf_destroy(conf);
        rc = TALLY_EINVAL;
        goto fail;
    }
    kb->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!kb->producer) {
        rd_kafka_conf_destroy(conf);
        log_scrubbed(kb, LOG_ERROR, "producer", errstr);
        rc = TALLY_EINTERNAL;
        goto fail;
    }
    kb->producer_topic = rd_kafka_topic_new(kb->producer, kb->topic, NULL);
    if (pthread_create(&kb->poller, NULL, poller_main, kb) != 0)
        abort();
    *out = &kb->base;
    return 0;
fail:
    *err = xstrdup("cannot set up the kafka producer");
    release_url(kb);
    free(kb);
    return rc;
}
