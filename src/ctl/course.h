/*
 * course.h - reading the course design's tables, the schema many sites run
 * before tally: interactives(id, biz_id, biz, read_cnt, like_cnt, collect_cnt,
 * ctime, utime), user_like_bizs(id, uid, biz_id, biz, status, ctime, utime) and
 * user_collection_bizs(id, uid, cid, biz_id, biz, [status,] ctime, utime),
 * times in ms. The collection table has no status column in the course (a row
 * is a collection); one that has it is read with it.
 *
 * Single-threaded: one connection, owned by the struct course.
 */
#ifndef TALLY_CTL_COURSE_H
#define TALLY_CTL_COURSE_H

#include <stddef.h>
#include <stdint.h>

#include "model/record.h"

struct course;

/* The course's own counters of an item, for the drift report. */
struct course_item {
    int64_t like_cnt, collect_cnt;
};

struct url;

/*
 * Whether u (parsed by util/url.h) is a mysql:// URL the store would take:
 * mysql://USER[:PASS]@HOST[:PORT]/DB[?ssl=1&ssl_ca=PATH]. 0, or TALLY_EINVAL
 * and *why, a reason that quotes no secret (caller frees).
 */
int course_check(const struct url *u, char **why);
/*
 * Connects to the database u names (course_check has passed), as the mysql
 * store would. TALLY_EUNAVAIL when it cannot be read; *err says why in one
 * line without the password (caller frees). Free with course_close.
 */
int course_open(const struct url *u, struct course **out, char **err);
/*
 * The next records of one table after row id *after, in id order: up to cap
 * records that tally can hold (rows with an invalid biz or id are skipped and
 * counted). *n < cap means the table is done. For items, ci[i] gets the
 * course's counters of out[i].
 */
int course_page(struct course *c, enum record_type type, int64_t *after, struct record *out,
                struct course_item *ci, size_t cap, size_t *n, char **err);
int64_t course_skipped(const struct course *c);
void course_close(struct course *c);

#endif
