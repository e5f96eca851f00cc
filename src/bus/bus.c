/*
 * bus.c - choosing a bus adapter by URL.
 */
#include "bus/bus.h"

#include <string.h>

#include "bus/kafka.h"
#include "bus/local.h"
#include "util/error.h"
#include "util/strbuf.h"
#include "util/banned.h"

int bus_check_url(const char *url, char **err)
{
    if (strcmp(url, "local") == 0)
        return 0;
    if (strncmp(url, "kafka://", 8) == 0)
        return bus_kafka_check_url(url, err);
    *err = xstrfmt("invalid --bus '%s': expected local or kafka://HOST:PORT/TOPIC?group=NAME", url);
    return TALLY_EINVAL;
}

int bus_open(const char *url, size_t queue_max, struct bus **out, char **err)
{
    int rc = bus_check_url(url, err);

    if (rc)
        return rc;
    if (strncmp(url, "kafka://", 8) == 0)
        return bus_kafka_open(url, queue_max, out, err);
    *out = bus_local_new(queue_max);
    return 0;
}
