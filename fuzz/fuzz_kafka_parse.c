/*
 * fuzz_kafka_parse.c - libFuzzer target for the read-event message parser,
 * which reads whatever any producer wrote to the topic.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bus/kafka.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct read_event ev;

    log_set_level(LOG_ERROR);
    memset(&ev, 0, sizeof(ev));
    if (bus_kafka_parse((const char *)data, size, &ev) == 0) {
        /* A message taken as valid must satisfy the identifier rules. */
        if (ev.item.id < 1 || ev.item.biz[0] < 'a' || ev.item.biz[0] > 'z' || ev.uid < 0 ||
            ev.ts < 0)
            __builtin_trap();
    }
    memset(&ev, 0, sizeof(ev));
    if (bus_kafka_parse_course((const char *)data, size, "article", &ev) == 0) {
        if (ev.item.id < 1 || ev.item.biz[0] < 'a' || ev.item.biz[0] > 'z' || ev.uid < 0 ||
            ev.ts < 0)
            __builtin_trap();
    }
    return 0;
}
