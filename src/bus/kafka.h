/*
 * kafka.h - the Kafka bus, and the read-event message format.
 *
 * The format is a contract (other producers may write to the topic; see
 * docs/kafka.md): key "{biz}:{id}", value
 * {"biz":"article","id":7,"uid":42,"ts":1700000000000}, uid and ts optional.
 * With format=course&biz=B in the URL the consumer also takes the course's
 * producers' {"aid":7,"uid":42} (no key) as reads of B; tallyd itself
 * always writes its own format.
 */
#ifndef TALLY_BUS_KAFKA_H
#define TALLY_BUS_KAFKA_H

#include "bus/bus.h"
#include "util/strbuf.h"

struct url;

/*
 * u: kafka://HOST:PORT[,...]/[TOPIC][?group=NAME&session_timeout_ms=N
 * &format=tally|course&biz=B&partitions=N&replication=N
 * &security.protocol=P&sasl.mechanism=M&sasl.username=U&sasl.password=S
 * &ssl.ca.location=PATH]. *why and *err as for store_check and store_open_url.
 */
int bus_kafka_check(const struct url *u, char **why);
int bus_kafka_open(const struct url *u, size_t queue_max, struct bus **out, char **err);

/*
 * Parses one message value into out->item, uid and ts. Returns 0, or a
 * negative reason (-1 not JSON / not an object, -2 bad biz or id, -3 bad
 * uid or ts); the first message of each reason is logged.
 */
int bus_kafka_parse(const char *data, size_t len, struct read_event *out);
/* The same for format=course: a value with "aid" is the course's read of biz (a
 * valid biz), any other one is parsed as tally's own. */
int bus_kafka_parse_course(const char *data, size_t len, const char *biz, struct read_event *out);
/* Appends the message value for ev. */
void bus_kafka_format(struct strbuf *value, const struct read_event *ev);

#endif
