/*
 * local.h - the in-process bus.
 */
#ifndef TALLY_BUS_LOCAL_H
#define TALLY_BUS_LOCAL_H

#include "bus/bus.h"

/* A bounded queue of capacity events; the caller frees it with bus_free(). */
struct bus *bus_local_new(size_t capacity);

#endif
