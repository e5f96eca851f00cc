/*
 * course.c - reads the course design's tables for tallyctl import --from
 * (course.h).
 *
 * Pages by primary key (WHERE id > ? ORDER BY id LIMIT ?), never OFFSET, so
 * each page costs the same however far the import has come and memory stays
 * at one page. Columns the course's ORM left nullable read NULL as 0, which
 * the validity check then refuses where 0 is not a value.
 *
 * --from is a mysql:// URL exactly as tallyd's --store takes it (the same
 * parser and check, percent-encoded passwords, ?ssl=1&ssl_ca=PATH), and the
 * connection is set up by the store's own code (store_mysql_connect), so TLS
 * and certificate checks cannot differ between the two.
 */
#include "ctl/course.h"

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "store/mysql.h"
#include "util/error.h"
#include "util/strbuf.h"
#include "util/url.h"
#include "util/xmalloc.h"
#include "util/banned.h"

#define NCOL   11 /* id, biz, biz_id, uid, cid, status, read_cnt, like_cnt, collect_cnt, ctime, utime */
#define BIZCAP 256

struct course {
    MYSQL *db;
    MYSQL_STMT *st[RECORD_INTERACTIVE_COUNT];
    int64_t skipped;
};

static const char *const page_sql[RECORD_INTERACTIVE_COUNT] = {
    [RECORD_ITEM] = "SELECT id, biz, biz_id, 0, 0, 1, read_cnt, like_cnt, collect_cnt, ctime,"
                    " utime FROM interactives WHERE id > ? ORDER BY id LIMIT ?",
    [RECORD_LIKE] = "SELECT id, biz, biz_id, uid, 0, status, 0, 0, 0, ctime, utime"
                    " FROM user_like_bizs WHERE id > ? ORDER BY id LIMIT ?",
    [RECORD_COLLECTION] = "SELECT id, biz, biz_id, uid, cid, %s, 0, 0, 0, ctime, utime"
                          " FROM user_collection_bizs WHERE id > ? ORDER BY id LIMIT ?",
};

/* Whether user_collection_bizs has a status column (the course's has none). */
static int has_status(MYSQL *db, bool *out)
{
    if (mysql_query(db, "SELECT status FROM user_collection_bizs LIMIT 0") == 0) {
        MYSQL_RES *res = mysql_store_result(db);
        if (res)
            mysql_free_result(res);
        *out = true;
        return 0;
    }
    *out = false;
    return mysql_errno(db) == ER_BAD_FIELD_ERROR ? 0 : -1;
}

int course_check(const struct url *u, char **why)
{
    if (strcmp(u->scheme, "mysql") == 0 && !u->opaque)
        return store_mysql_check(u, why);
    *why = xstrdup("expected mysql://USER:PASS@HOST:PORT/DB");
    return TALLY_EINVAL;
}

int course_open(const struct url *u, struct course **out, char **err)
{
    struct course *c = xcalloc(1, sizeof(*c));
    char *where = store_mysql_where(u), *why = NULL;
    bool status;
    int rc;

    *out = NULL;
    if ((rc = store_mysql_connect(u, 30, &c->db, &why)) == 0 && has_status(c->db, &status)) {
        why = xstrdup(mysql_error(c->db));
        rc = TALLY_EUNAVAIL;
    }
    if (rc) {
        *err = xstrfmt("course database %s: %s", where, why);
        goto out;
    }
    for (int t = 0; t < RECORD_INTERACTIVE_COUNT; t++) {
        char *sql = xstrfmt(page_sql[t], status ? "status" : "1");

        c->st[t] = mysql_stmt_init(c->db);
        if (!c->st[t] || mysql_stmt_prepare(c->st[t], sql, (unsigned long)strlen(sql))) {
            *err = xstrfmt("course database %s: %s (is this the course's schema?)", where,
                           c->st[t] ? mysql_stmt_error(c->st[t]) : mysql_error(c->db));
            rc = TALLY_EUNAVAIL;
        }
        free(sql);
        if (rc)
            goto out;
    }
    *out = c;
    c = NULL;
out:
    course_close(c);
    free(where);
    free(why);
    return rc;
}

/* Fetches up to want rows after *after into out; *rows: rows read (valid or not). */
static int fetch_rows(struct course *c, enum record_type type, int64_t *after, int64_t want,
                      struct record *out, struct course_item *ci, size_t *n, int64_t *rows,
                      char **err)
{
    MYSQL_STMT *st = c->st[type];
    MYSQL_BIND p[2], r[NCOL];
    int64_t v[NCOL];
    my_bool null[NCOL];
    char biz[BIZCAP];
    unsigned long bizlen = 0;
    int f;

    memset(p, 0, sizeof(p));
    memset(r, 0, sizeof(r));
    p[0].buffer_type = p[1].buffer_type = MYSQL_TYPE_LONGLONG;
    p[0].buffer = after;
    p[1].buffer = &want;
    for (int i = 0; i < NCOL; i++) {
        r[i].buffer_type = MYSQL_TYPE_LONGLONG;
        r[i].buffer = &v[i];
        r[i].is_null = &null[i];
    }
    r[1].buffer_type = MYSQL_TYPE_STRING;
    r[1].buffer = biz;
    r[1].buffer_length = sizeof(biz);
    r[1].length = &bizlen;
    *rows = 0;
    if (mysql_stmt_bind_param(st, p) || mysql_stmt_execute(st) || mysql_stmt_bind_result(st, r) ||
        mysql_stmt_store_result(st)) {
        *err = xstrfmt("reading the course's tables: %s", mysql_stmt_error(st));
        return TALLY_EUNAVAIL;
    }
    while ((f = mysql_stmt_fetch(st)) == 0 || f == MYSQL_DATA_TRUNCATED) {
        struct record *rec = &out[*n];

        for (int i = 0; i < NCOL; i++)
            if (null[i])
                v[i] = 0;
        (*rows)++;
        *after = v[0];
        memset(rec, 0, sizeof(*rec));
        rec->type = type;
        if (null[1] || f == MYSQL_DATA_TRUNCATED || item_parse_biz(biz, bizlen, rec->item.biz) ||
            !item_id_valid(v[2]) || (type != RECORD_ITEM && !item_id_valid(v[3])) ||
            (type == RECORD_COLLECTION && !item_id_valid(v[4])) || v[9] < 0 || v[10] < 0 ||
            v[6] < 0) {
            c->skipped++;
            continue;
        }
        rec->item.id = v[2];
        rec->uid = v[3];
        rec->cid = v[4];
        rec->status = v[5] == 1;
        rec->counts = (struct counts){v[6], v[7], v[8]};
        rec->ctime = v[9];
        rec->utime = v[10];
        if (ci)
            ci[*n] = (struct course_item){v[7], v[8]};
        (*n)++;
    }
    mysql_stmt_free_result(st);
    if (f != MYSQL_NO_DATA) {
        *err = xstrfmt("reading the course's tables: %s", mysql_stmt_error(st));
        return TALLY_EUNAVAIL;
    }
    return 0;
}

int course_page(struct course *c, enum record_type type, int64_t *after, struct record *out,
                struct course_item *ci, size_t cap, size_t *n, char **err)
{
    int64_t rows, want;
    int rc;

    *n = 0;
    do { /* skipped rows leave room: read on until the page is full or the table ends */
        want = (int64_t)(cap - *n);
        if ((rc = fetch_rows(c, type, after, want, out, type == RECORD_ITEM ? ci : NULL, n, &rows,
                             err)))
            return rc;
    } while (*n < cap && rows == want);
    return 0;
}

int64_t course_skipped(const struct course *c)
{
    return c->skipped;
}

void course_close(struct course *c)
{
    if (!c)
        return;
    for (int t = 0; t < RECORD_INTERACTIVE_COUNT; t++)
        if (c->st[t])
            mysql_stmt_close(c->st[t]);
    mysql_close(c->db);
    free(c);
}
