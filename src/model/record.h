/*
 * record.h - one row of the store as tallyctl moves it: an item with its
 * counters, a like or a collection, with its times and status; and the rows
 * of the tables the read consumer and the trending windows keep (a window's
 * mark, an hourly count, a window's sum, a memo, a dead letter, a read
 * offset), so that an export holds every table that holds state.
 *
 * The unit of export and import (store.h: export, import). Plain data:
 * copy it freely; nothing owns heap memory.
 */
#ifndef TALLY_MODEL_RECORD_H
#define TALLY_MODEL_RECORD_H

#include <stdbool.h>
#include <stdint.h>

#include "model/item.h"

/* In the order an export writes them (store.h, export_rows). */
enum record_type {
    RECORD_ITEM,
    RECORD_LIKE,
    RECORD_COLLECTION,
    RECORD_MARK,        /* window_mark */
    RECORD_HOUR,        /* interactive_hour */
    RECORD_WINDOW,      /* interactive_window */
    RECORD_MEMO,        /* read_idem, read_seen */
    RECORD_DEAD_LETTER, /* read_dead_letter */
    RECORD_OFFSET,      /* read_offsets */
    RECORD_TYPE_COUNT
};
/* Item, like and collection: the types the course schema also has. */
#define RECORD_INTERACTIVE_COUNT 3

#define RECORD_TEXT_MAX   255     /* a topic or an error: printable ASCII, as the tables hold it */
#define RECORD_DEAD_N_MAX 1000000 /* identical dead letters one record may stand for */

struct record {
    enum record_type type;
    struct item item;     /* item, like, collection, hour, window, dead_letter */
    int64_t uid;          /* like, collection, dead_letter (0: anonymous) */
    int64_t cid;          /* collection */
    int status;           /* like, collection: 1 active, 0 withdrawn */
    struct counts counts; /* item; hour and window: their sums (like/collect may be < 0) */
    int64_t ctime, utime; /* ms since the epoch; utime also of an offset, ctime of a dead letter */
    int64_t hour;         /* hour: its hour; mark: the first hour the window holds (since 1970) */
    int win;              /* mark, window: the window's length in hours (store.h, window_hours) */
    int memo;             /* memo: which table, an enum read_memo (store.h) */
    int64_t key, ms;      /* memo: its key and time; offset: ms is its event_ms (store.h) */
    /* dead_letter: the refused event and why; offset: a partition's next offset */
    int64_t ts;           /* dead_letter: the event's time (0: unknown) */
    bool has_topic, has_partition, has_offset; /* dead_letter: false where the row holds NULL */
    char topic[RECORD_TEXT_MAX + 1];
    int32_t partition;
    int64_t offset;       /* dead_letter: the message's offset; offset: the next one to read */
    char error[RECORD_TEXT_MAX + 1];
    int64_t n;            /* dead_letter: how many identical rows the table holds (>= 1) */
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
