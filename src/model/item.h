/*
 * item.h - tally's value types and the validation of identifiers.
 *
 * These sit at the bottom of the layering so that adapters (store, cache,
 * bus), the service layer and the HTTP layer all speak the same types
 * without any of them importing upward. Everything here is plain data:
 * copy it freely; nothing owns heap memory.
 */
#ifndef TALLY_MODEL_ITEM_H
#define TALLY_MODEL_ITEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ITEM_BIZ_MAX 32 /* ^[a-z][a-z0-9_]{0,31}$ */

/* One countable thing: (biz, id). */
struct item {
    char biz[ITEM_BIZ_MAX + 1];
    int64_t id;
};

/* The three counters of an item. */
struct counts {
    int64_t read_cnt;
    int64_t like_cnt;
    int64_t collect_cnt;
};

/* An item's counters plus what one user did to it. */
struct item_state {
    struct item item;
    struct counts counts;
    bool liked;
    bool collected;
};

/* The counter fields, in the order of struct counts (for top lists and caches). */
enum count_field { FIELD_READ_CNT, FIELD_LIKE_CNT, FIELD_COLLECT_CNT, FIELD_COUNT };
extern const char *const count_field_names[FIELD_COUNT];

/*
 * One read, as carried by the bus. partition/offset say where it came from
 * (-1/-1 on the local bus) so the consumer can store offsets with the counts.
 * A message that was not a valid read still takes its place in its
 * partition, marked skip, so that its offset is stored and it is never
 * consumed again; it counts for nothing.
 */
struct read_event {
    struct item item;
    int64_t uid;     /* 0: anonymous */
    uint64_t viewer; /* hash64("viewer", ...) of the caller's viewer id; 0: none (or uid) */
    uint64_t idem;   /* hash64("idem", ...) of the Idempotency-Key; 0: none */
    int64_t ts;  /* ms since the epoch; 0: unknown (counted in the hour it arrived) */
    int32_t partition;
    int64_t offset;
    /* The bus's incarnation of the partition this event was read under: every
     * assignment of a partition to this process is a new one (see bus.h). */
    uint32_t gen;
    bool skip;
};

#define READ_VIEWER_MAX   64  /* a viewer id: 1..64 printable ASCII characters */
#define READ_IDEM_KEY_MAX 128 /* an idempotency key: 1..128 printable ASCII characters */

/* A read's ts more than this far ahead of its arrival is taken as the arrival. */
#define READ_FUTURE_MS (5 * 60 * 1000)

/* An entry of a user's like or collection list. */
struct list_entry {
    struct item item;
    int64_t ctime;     /* when the like/collection became active, ms */
    int64_t cursor_id; /* store row id, the tie-breaker of the list cursor */
};

/* Parsers for identifiers from outside. All return 0 or TALLY_EINVAL. */
int item_parse_biz(const char *s, size_t len, char out[ITEM_BIZ_MAX + 1]);
/* Decimal digits only, 1..INT64_MAX: the rule for id, uid and cid. */
int item_parse_id(const char *s, size_t len, int64_t *out);
bool item_id_valid(int64_t v);
/* 1..max printable ASCII characters (space to tilde): a read's viewer or idempotency key. */
bool read_text_valid(const char *s, size_t len, size_t max);
/*
 * The digest that stands for an idempotency key in read events and in the store, scoped
 * to whoever gave the key and to the item read: a key suppresses only its own caller's
 * repeats of a read of that item, never another caller's read or another item's. caller:
 * "key:NAME", "user:UID" or "anonymous" over HTTP; "bus" for a producer's Kafka header,
 * which is scoped to the item alone.
 */
uint64_t read_idem_digest(const char *caller, const struct item *it, const char *key,
                          size_t len);
int count_field_parse(const char *s, enum count_field *out);

int64_t counts_get(const struct counts *c, enum count_field f);
int item_cmp(const struct item *a, const struct item *b);

#endif
