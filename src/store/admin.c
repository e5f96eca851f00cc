/*
 * admin.c - the pieces of tallyctl's bulk work both adapters share (admin.h).
 */
#include "store/admin.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/log.h"
#include "util/strbuf.h"
#include "util/xmalloc.h"
#include "util/banned.h"

const char *const store__export_sql[RECORD_INTERACTIVE_COUNT] = {
    [RECORD_ITEM] = "SELECT id, biz, biz_id, 0, 0, 1, read_cnt, like_cnt, collect_cnt, ctime,"
                    " utime FROM interactive WHERE id > ? ORDER BY id LIMIT ?",
    [RECORD_LIKE] = "SELECT id, biz, biz_id, uid, 0, status, 0, 0, 0, ctime, utime"
                    " FROM user_like WHERE id > ? ORDER BY id LIMIT ?",
    [RECORD_COLLECTION] = "SELECT id, biz, biz_id, uid, cid, status, 0, 0, 0, ctime, utime"
                          " FROM user_collection WHERE id > ? ORDER BY id LIMIT ?",
};

static int touched_cmp(const void *a, const void *b)
{
    return item_cmp(&((const struct store__touched *)a)->item,
                    &((const struct store__touched *)b)->item);
}

size_t store__touched(const struct record *r, size_t n, struct store__touched **out)
{
    struct store__touched *t = xmalloc((n ? n : 1) * sizeof(*t));
    size_t m = 0, k = 0;

    for (size_t i = 0; i < n; i++)
        if (r[i].type < RECORD_INTERACTIVE_COUNT)
            t[k++] = (struct store__touched){r[i].item, r[i].ctime, r[i].utime};
    qsort(t, k, sizeof(*t), touched_cmp);
    for (size_t i = 0; i < k; i++) {
        if (m && item_cmp(&t[m - 1].item, &t[i].item) == 0) {
            if (t[i].ctime < t[m - 1].ctime)
                t[m - 1].ctime = t[i].ctime;
            if (t[i].utime > t[m - 1].utime)
                t[m - 1].utime = t[i].utime;
            continue;
        }
        t[m++] = t[i];
    }
    *out = t;
    return m;
}

/* ------------------------------------------------------------ export */

void store__key_start(struct store__key *k)
{
    memset(k, 0, sizeof(*k));
    k->a = k->b = INT64_MIN;
}

/* Text column i into out (cap RECORD_TEXT_MAX + 1); false when it is NULL or too long. */
static bool text_of(const struct store__row *row, int i, char *out)
{
    if (row->text_null[i] || row->len[i] > RECORD_TEXT_MAX)
        return false;
    memcpy(out, row->text[i], row->len[i]);
    out[row->len[i]] = '\0';
    return true;
}

static bool biz_of(const struct store__row *row, int i, struct item *it)
{
    return !row->text_null[i] && row->len[i] > 0 && row->len[i] <= ITEM_BIZ_MAX &&
           text_of(row, i, it->biz);
}

int store__export_row(enum record_type type, int m, const struct store__row *row,
                      struct record *r, struct store__key *k)
{
    const int64_t *v = row->v;
    bool ok = true;
    int nints = 0; /* the integer columns this type has, none of which may be NULL... */

    memset(r, 0, sizeof(*r));
    r->type = type;
    switch (type) {
    case RECORD_MARK:
        nints = 2;
        r->win = (int)v[0];
        r->hour = v[1];
        ok = v[0] > 0 && v[0] <= WINDOW_MAX_HOURS;
        k->a = v[0];
        break;
    case RECORD_HOUR:
    case RECORD_WINDOW:
        nints = 5;
        ok = biz_of(row, 0, &r->item);
        r->item.id = type == RECORD_HOUR ? v[0] : v[1];
        if (type == RECORD_HOUR)
            r->hour = v[1];
        else
            r->win = (int)v[0], ok = ok && v[0] > 0 && v[0] <= WINDOW_MAX_HOURS;
        r->counts = (struct counts){v[2], v[3], v[4]};
        memcpy(k->s, r->item.biz, sizeof(r->item.biz));
        k->a = v[0];
        k->b = v[1];
        break;
    case RECORD_MEMO:
        nints = 2;
        r->memo = m;
        r->key = v[0];
        r->ms = v[1];
        k->done = v[0] == INT64_MAX; /* the page query reads k >= a */
        k->a = k->done ? v[0] : v[0] + 1;
        break;
    case RECORD_DEAD_LETTER:
        nints = 8; /* ...but part and msg_offset (the local bus has none) */
        ok = biz_of(row, 0, &r->item) && text_of(row, 2, r->error);
        r->has_topic = !row->text_null[1];
        ok = ok && (!r->has_topic || text_of(row, 1, r->topic));
        r->item.id = v[0];
        r->uid = v[1];
        r->ts = v[2];
        r->has_partition = !row->null[3];
        r->partition = (int32_t)v[3];
        ok = ok && (row->null[3] || (v[3] >= INT32_MIN && v[3] <= INT32_MAX));
        r->has_offset = !row->null[4];
        r->offset = v[4];
        r->ctime = v[5];
        r->n = v[6];
        k->a = v[7];
        break;
    case RECORD_OFFSET:
        nints = 4;
        ok = text_of(row, 0, r->topic) && v[0] >= INT32_MIN && v[0] <= INT32_MAX;
        r->has_topic = r->has_partition = r->has_offset = true;
        r->partition = (int32_t)v[0];
        r->offset = v[1];
        r->utime = v[2];
        r->ms = v[3];
        memcpy(k->s, r->topic, sizeof(r->topic));
        k->a = v[0];
        break;
    default: TALLY_ASSERT(!"not a table of its own"); /* items, likes: store__export_sql */
    }
    for (int i = 0; i < nints; i++)
        if (row->null[i] && !(type == RECORD_DEAD_LETTER && (i == 3 || i == 4)))
            ok = false;
    if (!ok) {
        log_error("store: a %s row holds what no tallyd writes (a NULL, a text too long, an"
                  " unknown window or partition)",
                  type == RECORD_MEMO ? "memo" : "window, hour, dead letter or offset");
        return TALLY_EINTERNAL;
    }
    return 0;
}

void store__dead_lookup_sql(struct strbuf *sql, size_t n)
{
    strbuf_addstr(sql, STORE__DEAD_COLUMNS " WHERE ctime IN (");
    for (size_t i = 0; i < n; i++)
        strbuf_addstr(sql, i ? ",?" : "?");
    strbuf_addstr(sql, ")" STORE__DEAD_GROUP);
}

static int cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

int store__dead_cmp(const struct record *a, const struct record *b)
{
    int c;

    if ((c = cmp_i64(a->ctime, b->ctime)) || (c = item_cmp(&a->item, &b->item)) ||
        (c = cmp_i64(a->uid, b->uid)) || (c = cmp_i64(a->ts, b->ts)) ||
        (c = cmp_i64(a->has_topic, b->has_topic)) ||
        (a->has_topic && (c = strcmp(a->topic, b->topic))) ||
        (c = cmp_i64(a->has_partition, b->has_partition)) ||
        (a->has_partition && (c = cmp_i64(a->partition, b->partition))) ||
        (c = cmp_i64(a->has_offset, b->has_offset)) ||
        (a->has_offset && (c = cmp_i64(a->offset, b->offset))))
        return c;
    return strcmp(a->error, b->error);
}

/* ------------------------------------------------------------ hours */

static int row_cmp(const void *a, const void *b)
{
    const struct store_row *x = a, *y = b;
    int c = item_cmp(&x->item, &y->item);

    return c ? c : cmp_i64(x->key, y->key);
}

static int64_t max_i64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

size_t store__hour_rows(const struct record *r, size_t n, struct store_row **out)
{
    struct store_row *rows = xmalloc((n ? n : 1) * sizeof(*rows));
    size_t k = 0, m = 0;

    for (size_t i = 0; i < n; i++) {
        if (r[i].type != RECORD_HOUR)
            continue;
        rows[k] = (struct store_row){.item = r[i].item, .key = r[i].hour};
        rows[k].v[FIELD_READ_CNT] = r[i].counts.read_cnt;
        rows[k].v[FIELD_LIKE_CNT] = r[i].counts.like_cnt;
        rows[k].v[FIELD_COLLECT_CNT] = r[i].counts.collect_cnt;
        k++;
    }
    qsort(rows, k, sizeof(*rows), row_cmp);
    for (size_t i = 0; i < k; i++) {
        if (m && row_cmp(&rows[m - 1], &rows[i]) == 0) {
            for (int f = 0; f < FIELD_COUNT; f++)
                rows[m - 1].v[f] = max_i64(rows[m - 1].v[f], rows[i].v[f]);
            continue;
        }
        rows[m++] = rows[i];
    }
    *out = rows;
    return m;
}

void store__hour_lookup_sql(struct strbuf *sql, size_t n)
{
    strbuf_addstr(sql, "SELECT biz, biz_id, hour, read_cnt, like_cnt, collect_cnt"
                       " FROM interactive_hour WHERE ");
    /* Spelled out with OR: both databases read each term from the unique key. */
    for (size_t i = 0; i < n; i++)
        strbuf_addstr(sql, i ? " OR (biz = ? AND biz_id = ? AND hour = ?)"
                             : "(biz = ? AND biz_id = ? AND hour = ?)");
}

int store__hour_deltas(struct store_row *rows, size_t n, struct store_row *stored, size_t ns,
                       size_t *left)
{
    size_t k = 0;

    qsort(stored, ns, sizeof(*stored), row_cmp);
    for (size_t i = 0; i < n; i++) {
        const struct store_row *old = bsearch(&rows[i], stored, ns, sizeof(*stored), row_cmp);
        bool change = !old;

        for (int f = 0; f < FIELD_COUNT && old; f++) {
            if (__builtin_sub_overflow(max_i64(rows[i].v[f], old->v[f]), old->v[f],
                                       &rows[i].v[f]))
                return TALLY_EREJECTED; /* a stored count no tallyd could have written */
            change = change || rows[i].v[f] != 0;
        }
        if (change)
            rows[k++] = rows[i];
    }
    *left = k;
    return 0;
}
