/*
 * record.h - one row of the store as tallyctl moves it: an item with its
 * counters, a like or a collection, with its times and status.
 *
 * The unit of export and import (store.h: export, import). Plain data:
 * copy it freely; nothing owns heap memory.
 */
#ifndef TALLY_MODEL_RECORD_H
#define TALLY_MODEL_RECORD_H

#include <stdint.h>

#include "model/item.h"

enum record_type { RECORD_ITEM, RECORD_LIKE, RECORD_COLLECTION, RECORD_TYPE_COUNT };

struct record {
    enum record_type type;
    struct item item;
    int64_t uid;          /* like, collection */
    int64_t cid;          /* collection */
    int status;           /* like, collection: 1 active, 0 withdrawn */
    struct counts counts; /* item */
    int64_t ctime, utime; /* ms since the epoch */
};

/*
 * An item's like/collect counters next to what its rows say: the unit of
 * recount. row_id is the store's own row id, the scan's cursor.
 */
struct count_check {
    int64_t row_id;
    struct item item;
    struct counts stored;
    int64_t likes;    /* active like rows */
    int64_t collects; /* active collection rows */
};

#endif
