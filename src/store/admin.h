/*
 * admin.h - what both store adapters share for tallyctl's bulk work
 * (store.h, "administration"). Internal to src/store/.
 *
 * The SQL here is plain enough to run unchanged on SQLite and MariaDB; the
 * upserts differ between the two and live in each adapter.
 */
#ifndef TALLY_STORE_ADMIN_H
#define TALLY_STORE_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "model/record.h"

#define STORE_EXPORT_PAGE 1000 /* rows per page of an export */

/*
 * One page of a table after row id ?, up to ? rows, in the columns
 * id, biz, biz_id, uid, cid, status, read_cnt, like_cnt, collect_cnt, ctime, utime.
 */
extern const char *const store__export_sql[RECORD_TYPE_COUNT];
#define STORE__EXPORT_COLUMNS 11

/* Items after row id ?, up to ?: id, biz, biz_id, like_cnt, collect_cnt, active likes,
 * active collections (index user_like_item / user_collection_item). */
#define STORE__SCAN_SQL                                                                    \
    "SELECT i.id, i.biz, i.biz_id, i.read_cnt, i.like_cnt, i.collect_cnt,"                 \
    " (SELECT COUNT(*) FROM user_like l"                                                   \
    "   WHERE l.biz = i.biz AND l.biz_id = i.biz_id AND l.status = 1),"                    \
    " (SELECT COUNT(*) FROM user_collection c"                                             \
    "   WHERE c.biz = i.biz AND c.biz_id = i.biz_id AND c.status = 1)"                     \
    " FROM interactive i WHERE i.id > ? ORDER BY i.id LIMIT ?"

/* An item an import touches, with the times to create it with if the store lacks it. */
struct store__touched {
    struct item item;
    int64_t ctime, utime;
};

/*
 * The distinct items of n records, sorted by item_cmp, each with the earliest
 * ctime and latest utime among its records. *out is allocated (caller frees);
 * returns how many.
 */
size_t store__touched(const struct record *r, size_t n, struct store__touched **out);

#endif
