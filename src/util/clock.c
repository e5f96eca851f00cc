/*
 * clock.c - see clock.h.
 */
#include "util/clock.h"

#include "util/banned.h"

int64_t clock_offset_ms;
