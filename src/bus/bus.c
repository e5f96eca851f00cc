/*
 * bus.c - choosing a bus adapter by URL.
 */
#include "bus/bus.h"

#include <string.h>

#include "bus/kafka.h"
#include "bus/local.h"
#include "util/error.h"
#include "util/strbuf.h"
#include "util/url.h"
#include "util/xmalloc.h"
#include "util/banned.h"

int bus_check(const struct url *u, char **why)
{
    if (strcmp(u->scheme, "local") == 0 && u->opaque && !*u->path)
        return 0;
    if (strcmp(u->scheme, "kafka") == 0 && !u->opaque)
        return bus_kafka_check(u, why);
    *why = xstrdup("expected local or kafka://HOST:PORT/TOPIC?group=NAME");
    return TALLY_EINVAL;
}

int bus_open_url(const struct url *u, size_t queue_max, struct bus **out, char **err)
{
    if (strcmp(u->scheme, "kafka") == 0)
        return bus_kafka_open(u, queue_max, out, err);
    *out = bus_local_new(queue_max);
    return 0;
}

int bus_check_url(const char *url, char **err)
{
    struct url u;
    int rc = url_parse_checked("--bus", url, bus_check, &u, err);

    url_release(&u);
    return rc;
}

int bus_open(const char *url, size_t queue_max, struct bus **out, char **err)
{
    struct url u;
    int rc = url_parse_checked("--bus", url, bus_check, &u, err);

    if (rc == 0)
        rc = bus_open_url(&u, queue_max, out, err);
    url_release(&u);
    return rc;
}
