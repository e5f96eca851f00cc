/*
 * clock.c - see clock.h.
 */
#include "util/clock.h"

#include <stdlib.h>
#include <string.h>

#include "model/item.h"
#include "util/banned.h"

int64_t clock_offset_ms;

void clock_init_from_env(void)
{
    const char *v = getenv("TALLY_TEST_CLOCK_OFFSET_MS");
    int64_t n;

    if (!v || !*v)
        return;
    if (*v == '-' ? item_parse_id(v + 1, strlen(v + 1), &n) == 0 && (n = -n, 1)
                  : item_parse_id(v, strlen(v), &n) == 0)
        clock_offset_ms = n;
}
