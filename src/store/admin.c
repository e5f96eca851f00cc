/*
 * admin.c - the pieces of tallyctl's bulk work both adapters share (admin.h).
 */
#include "store/admin.h"

#include <stdarg.h>
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
    qsort(rows, k, sizeof(*rows), store__row_cmp);
    for (size_t i = 0; i < k; i++) {
        if (m && store__row_cmp(&rows[m - 1], &rows[i]) == 0) {
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

    qsort(stored, ns, sizeof(*stored), store__row_cmp);
    for (size_t i = 0; i < n; i++) {
        const struct store_row *old = bsearch(&rows[i], stored, ns, sizeof(*stored), store__row_cmp);
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

/* ------------------------------------------------------------ check */

#define HOUR_MAX (INT64_MAX / HOUR_MS) /* an hour whose start in ms still fits */

static const char *const check_tables[STORE__CHECK_PARTS] = {
    [STORE__CHECK_ITEMS] = "interactive",
    [STORE__CHECK_LIKES] = "user_like",
    [STORE__CHECK_COLLECTIONS] = "user_collection",
    [STORE__CHECK_HOURS] = "interactive_hour",
    [STORE__CHECK_WINDOWS] = "interactive_window",
    [STORE__CHECK_HELD] = "interactive_window",
    [STORE__CHECK_MARKS] = "window_mark",
    [STORE__CHECK_QUEUE] = "transition_queue",
    [STORE__CHECK_IDEM] = "read_idem",
    [STORE__CHECK_SEEN] = "read_seen",
    [STORE__CHECK_DEAD] = "read_dead_letter",
    [STORE__CHECK_OFFSETS] = "read_offsets",
    [STORE__CHECK_VERSIONS] = "tally_schema",
};

/*
 * The table's column behind each of a part's columns (admin.h), for the checks every column
 * gets: NULL where the query computes it; a leading '?' where NULL is a value.
 */
#define CHECK_COLUMNS (STORE__TEXTS + STORE__CHECK_INTS)
static const char *const check_columns[STORE__CHECK_PARTS][CHECK_COLUMNS] = {
    [STORE__CHECK_ITEMS] = {"biz", NULL, NULL, "id", "biz_id", "read_cnt", "like_cnt",
                            "collect_cnt", "ctime", "utime"},
    [STORE__CHECK_LIKES] = {"biz", NULL, NULL, "id", "uid", "biz_id", "status", "ctime",
                            "utime"},
    [STORE__CHECK_COLLECTIONS] = {"biz", NULL, NULL, "id", "uid", "biz_id", "status", "ctime",
                                  "utime", NULL, "cid"},
    [STORE__CHECK_HOURS] = {"biz", NULL, NULL, "biz_id", "hour", "read_cnt", "like_cnt",
                            "collect_cnt"},
    [STORE__CHECK_WINDOWS] = {"biz", NULL, NULL, "win", "biz_id", "read_cnt", "like_cnt",
                              "collect_cnt"},
    [STORE__CHECK_HELD] = {NULL},
    [STORE__CHECK_MARKS] = {NULL, NULL, NULL, "win", "hour"},
    [STORE__CHECK_QUEUE] = {"biz", NULL, NULL, "id", "biz_id", "hour", "like_cnt",
                            "collect_cnt"},
    [STORE__CHECK_IDEM] = {NULL, NULL, NULL, "k", "ms"},
    [STORE__CHECK_SEEN] = {NULL, NULL, NULL, "k", "ms"},
    [STORE__CHECK_DEAD] = {"biz", "?topic", "error", "id", "biz_id", "uid", "ts", "?part",
                           "?msg_offset", "ctime"},
    [STORE__CHECK_OFFSETS] = {"topic", NULL, NULL, "part", "next_offset", "utime", "event_ms"},
    [STORE__CHECK_VERSIONS] = {NULL, NULL, NULL, "version"},
};

#define ACTIVE(t)                                                                    \
    " (SELECT count(*) FROM " t " r WHERE r.biz = i.biz AND r.biz_id = i.biz_id" \
    " AND r.status = 1)"
#define ITEM_ROW " EXISTS (SELECT 1 FROM interactive i WHERE i.biz = r.biz AND i.biz_id = r.biz_id)"
#define BY_ID    " ORDER BY id LIMIT ?"
#define WINDOWS  "(1, 24, 168, 720)" /* window_hours */
#define SQLITE_AND_MARIADB(sqlite, mariadb, sqlite_params, mariadb_params) \
    {sqlite, mariadb}, { sqlite_params, mariadb_params }
#define BOTH(after, params) {after, after}, { params, params }

const struct store__check_sql store__check_sql[STORE__CHECK_PARTS] = {
    {STORE__CHECK_ITEMS,
     "SELECT biz, NULL, NULL, id, biz_id, read_cnt, like_cnt, collect_cnt, ctime, utime,"
     ACTIVE("user_like") "," ACTIVE("user_collection") " FROM interactive i WHERE ",
     BY_ID, BOTH("id > ?", "a")},
    {STORE__CHECK_LIKES,
     "SELECT biz, NULL, NULL, id, uid, biz_id, status, ctime, utime," ITEM_ROW
     " FROM user_like r WHERE ",
     BY_ID, BOTH("id > ?", "a")},
    {STORE__CHECK_COLLECTIONS,
     "SELECT biz, NULL, NULL, id, uid, biz_id, status, ctime, utime," ITEM_ROW ", cid"
     " FROM user_collection r WHERE ",
     BY_ID, BOTH("id > ?", "a")},
    {STORE__CHECK_HOURS,
     "SELECT biz, NULL, NULL, biz_id, hour, read_cnt, like_cnt, collect_cnt"
     " FROM interactive_hour WHERE ",
     " ORDER BY biz, biz_id, hour LIMIT ?",
     SQLITE_AND_MARIADB("(biz, biz_id, hour) > (?, ?, ?)",
                        "biz > ? OR (biz = ? AND (biz_id > ? OR (biz_id = ? AND hour > ?)))",
                        "0ab", "00aab")},
    /* The window's rows of a page, each with the sums of its item's hours since its mark. */
    {STORE__CHECK_WINDOWS,
     "SELECT w.biz, NULL, NULL, w.win, w.biz_id, w.read_cnt, w.like_cnt, w.collect_cnt,"
     " sum(h.read_cnt), sum(h.like_cnt), sum(h.collect_cnt) FROM (SELECT biz, win, biz_id,"
     " read_cnt, like_cnt, collect_cnt FROM interactive_window WHERE ",
     " ORDER BY biz, win, biz_id LIMIT ?) w LEFT JOIN window_mark m ON m.win = w.win"
     " LEFT JOIN interactive_hour h ON h.biz = w.biz AND h.biz_id = w.biz_id"
     " AND h.hour >= m.hour GROUP BY w.biz, w.win, w.biz_id, w.read_cnt, w.like_cnt,"
     " w.collect_cnt ORDER BY w.biz, w.win, w.biz_id",
     SQLITE_AND_MARIADB("(biz, win, biz_id) > (?, ?, ?)",
                        "biz > ? OR (biz = ? AND (win > ? OR (win = ? AND biz_id > ?)))",
                        "0ab", "00aab")},
    /* A page of the items that have hours, each with every window: its row or none, and the
     * sums of the hours it holds. */
    {STORE__CHECK_HELD,
     "SELECT p.biz, NULL, NULL, p.biz_id, m.win, max(w.win IS NOT NULL), sum(h.read_cnt),"
     " sum(h.like_cnt), sum(h.collect_cnt) FROM (SELECT biz, biz_id FROM interactive_hour"
     " WHERE ",
     " GROUP BY biz, biz_id ORDER BY biz, biz_id LIMIT ?) p"
     " JOIN window_mark m ON m.win IN " WINDOWS
     " LEFT JOIN interactive_window w ON w.biz = p.biz AND w.win = m.win"
     " AND w.biz_id = p.biz_id LEFT JOIN interactive_hour h ON h.biz = p.biz"
     " AND h.biz_id = p.biz_id AND h.hour >= m.hour GROUP BY p.biz, p.biz_id, m.win"
     " ORDER BY p.biz, p.biz_id, m.win",
     SQLITE_AND_MARIADB("(biz, biz_id) > (?, ?)", "biz > ? OR (biz = ? AND biz_id > ?)", "0a",
                        "00a")},
    {STORE__CHECK_MARKS, "SELECT NULL, NULL, NULL, win, hour FROM window_mark WHERE ",
     " ORDER BY win LIMIT ?", BOTH("win > ?", "a")},
    {STORE__CHECK_QUEUE,
     "SELECT biz, NULL, NULL, id, biz_id, hour, like_cnt, collect_cnt FROM transition_queue"
     " WHERE ",
     BY_ID, SQLITE_AND_MARIADB(NULL, "id > ?", NULL, "a")},
    {STORE__CHECK_IDEM, "SELECT NULL, NULL, NULL, k, ms FROM read_idem WHERE ",
     " ORDER BY k LIMIT ?", BOTH("k > ?", "a")},
    {STORE__CHECK_SEEN, "SELECT NULL, NULL, NULL, k, ms FROM read_seen WHERE ",
     " ORDER BY k LIMIT ?", BOTH("k > ?", "a")},
    {STORE__CHECK_DEAD,
     "SELECT biz, topic, error, id, biz_id, uid, ts, part, msg_offset, ctime"
     " FROM read_dead_letter WHERE ",
     BY_ID, BOTH("id > ?", "a")},
    {STORE__CHECK_OFFSETS,
     "SELECT topic, NULL, NULL, part, next_offset, utime, event_ms FROM read_offsets WHERE ",
     " ORDER BY topic, part LIMIT ?",
     SQLITE_AND_MARIADB("(topic, part) > (?, ?)", "topic > ? OR (topic = ? AND part > ?)",
                        "0a", "00a")},
    {STORE__CHECK_VERSIONS,
     "SELECT NULL, NULL, NULL, version FROM tally_schema WHERE ",
     " GROUP BY version ORDER BY version LIMIT ?",
     SQLITE_AND_MARIADB(NULL, "version > ?", NULL, "a")},
};

void store__check_init(struct store__check *c, const struct store_check_out *out,
                       int schema_version)
{
    memset(c, 0, sizeof(*c));
    c->out = out;
    c->schema_version = schema_version;
}

const char *store__check_table(enum store__check_part p)
{
    return check_tables[p];
}

static void table_done(struct store__check *c)
{
    if (!c->table)
        return;
    c->out->table(c->out->arg, c->table, c->rows, c->problems, c->error);
    free(c->error);
    c->error = NULL;
    c->table = NULL;
    c->rows = c->problems = 0;
}

void store__check_part(struct store__check *c, enum store__check_part p)
{
    if (c->table && strcmp(c->table, check_tables[p]) != 0)
        table_done(c);
    c->table = check_tables[p];
}

void store__check_page(struct store__check *c)
{
    if (c->out->progress)
        c->out->progress(c->out->arg, c->table, c->rows);
}

void store__check_fail(struct store__check *c, const char *why)
{
    if (!c->error)
        c->error = xstrdup(why);
}

void store__check_done(struct store__check *c)
{
    table_done(c);
}

/* The row being judged and what is found wrong with it. */
struct judge {
    struct store__check *c;
    const struct store__check_row *row;
    struct strbuf key;
    bool keyed; /* key holds the row's key */
    void (*add_key)(struct judge *j);
};

/* Text i as it stands: bare when it looks like a biz or a topic, else quoted, escaped, cut. */
static void add_text(struct strbuf *sb, const struct store__check_row *row, int i)
{
    size_t n = row->len[i] < sizeof(row->text[i]) ? row->len[i] : sizeof(row->text[i]);
    bool plain = n > 0 && n <= 64 && n == row->len[i];

    if (row->text_null[i]) {
        strbuf_addstr(sb, "NULL");
        return;
    }
    for (size_t k = 0; k < n && plain; k++) {
        char ch = row->text[i][k];
        plain = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' ||
                ch == '.';
    }
    if (plain) {
        strbuf_add(sb, row->text[i], n);
        return;
    }
    strbuf_addch(sb, '"');
    for (size_t k = 0; k < n && k < 64; k++) {
        unsigned char ch = (unsigned char)row->text[i][k];
        if (ch < 0x20 || ch > 0x7e || ch == '"' || ch == '\\')
            strbuf_addf(sb, "\\x%02x", ch);
        else
            strbuf_addch(sb, (char)ch);
    }
    strbuf_addstr(sb, row->len[i] > 64 ? "\"..." : "\"");
}

/* One problem: what, formatted, under the row's key. */
static void __attribute__((format(printf, 2, 3))) wrong(struct judge *j, const char *fmt, ...)
{
    struct strbuf what = STRBUF_INIT;
    va_list ap;

    if (!j->keyed) {
        j->add_key(j);
        j->keyed = true;
    }
    va_start(ap, fmt);
    strbuf_vaddf(&what, fmt, ap);
    va_end(ap);
    j->c->out->problem(j->c->out->arg, j->c->table, j->key.buf, what.buf);
    j->c->problems++;
    strbuf_release(&what);
}

static int64_t iv(const struct judge *j, int i)
{
    return j->row->v[i];
}

/* (biz, id) of text 0 and integer i. */
static void add_item(struct judge *j, int i)
{
    add_text(&j->key, j->row, 0);
    strbuf_addf(&j->key, "/%lld", (long long)iv(j, i));
}

static void add_window(struct strbuf *sb, int64_t win)
{
    for (int w = 0; w < WINDOW_COUNT; w++)
        if (window_hours[w] == win) {
            strbuf_addstr(sb, window_names[w]);
            return;
        }
    strbuf_addf(sb, "win %lld", (long long)win);
}

static bool window_valid(int64_t win)
{
    for (int w = 0; w < WINDOW_COUNT; w++)
        if (window_hours[w] == win)
            return true;
    return false;
}

static void key_items(struct judge *j)
{
    add_item(j, 1);
    strbuf_addf(&j->key, " (id %lld)", (long long)iv(j, 0));
}

static void key_likes(struct judge *j)
{
    strbuf_addf(&j->key, "id %lld (uid %lld, ", (long long)iv(j, 0), (long long)iv(j, 1));
    if (!j->row->null[7])
        strbuf_addf(&j->key, "cid %lld, ", (long long)iv(j, 7));
    add_item(j, 2);
    strbuf_addch(&j->key, ')');
}

static void key_hours(struct judge *j)
{
    add_item(j, 0);
    strbuf_addf(&j->key, " hour %lld", (long long)iv(j, 1));
}

static void key_windows(struct judge *j)
{
    add_item(j, 1);
    strbuf_addch(&j->key, ' ');
    add_window(&j->key, iv(j, 0));
}

static void key_held(struct judge *j)
{
    add_item(j, 0);
    strbuf_addch(&j->key, ' ');
    add_window(&j->key, iv(j, 1));
}

static void key_marks(struct judge *j)
{
    add_window(&j->key, iv(j, 0));
}

static void key_memos(struct judge *j)
{
    strbuf_addf(&j->key, "k %lld", (long long)iv(j, 0));
}

/* A row with an id of its own, then its item's. */
static void key_id_item(struct judge *j)
{
    strbuf_addf(&j->key, "id %lld (", (long long)iv(j, 0));
    add_item(j, 1);
    strbuf_addch(&j->key, ')');
}

static void key_offsets(struct judge *j)
{
    strbuf_addstr(&j->key, "topic ");
    add_text(&j->key, j->row, 0);
    strbuf_addf(&j->key, " partition %lld", (long long)iv(j, 0));
}

static void key_versions(struct judge *j)
{
    strbuf_addf(&j->key, "version %lld", (long long)iv(j, 0));
}

static void (*const check_keys[STORE__CHECK_PARTS])(struct judge *) = {
    [STORE__CHECK_ITEMS] = key_items,     [STORE__CHECK_LIKES] = key_likes,
    [STORE__CHECK_COLLECTIONS] = key_likes, [STORE__CHECK_HOURS] = key_hours,
    [STORE__CHECK_WINDOWS] = key_windows, [STORE__CHECK_HELD] = key_held,
    [STORE__CHECK_MARKS] = key_marks,     [STORE__CHECK_QUEUE] = key_id_item,
    [STORE__CHECK_IDEM] = key_memos,
    [STORE__CHECK_SEEN] = key_memos,      [STORE__CHECK_DEAD] = key_id_item,
    [STORE__CHECK_OFFSETS] = key_offsets, [STORE__CHECK_VERSIONS] = key_versions,
};

/* Every column read from the table: there (unless NULL is a value) and of its kind. */
static void judge_columns(struct judge *j, enum store__check_part p)
{
    for (int i = 0; i < CHECK_COLUMNS; i++) {
        const char *name = check_columns[p][i];
        bool text = i < STORE__TEXTS, nullable = name && *name == '?';
        int at = text ? i : i - STORE__TEXTS;

        if (!name)
            continue;
        name += nullable;
        if (text ? j->row->text_null[at] : j->row->null[at]) {
            if (!nullable)
                wrong(j, "%s is NULL", name);
        } else if (text ? j->row->not_text[at] : j->row->not_int[at]) {
            wrong(j, "%s holds %s", name, text ? "a value that is not text" : "a value that is"
                                                                            " not an integer");
        }
    }
}

static void judge_biz(struct judge *j)
{
    const struct store__check_row *row = j->row;
    char biz[ITEM_BIZ_MAX + 1];

    if (row->text_null[0])
        return; /* judge_columns said so */
    if (row->len[0] > ITEM_BIZ_MAX || item_parse_biz(row->text[0], row->len[0], biz)) {
        struct strbuf b = STRBUF_INIT;

        add_text(&b, row, 0);
        wrong(j, "biz %s is not a valid biz (^[a-z][a-z0-9_]{0,31}$)", b.buf);
        strbuf_release(&b);
    }
}

/* An id (biz_id, uid, cid): 1..2^63-1. */
static void judge_id(struct judge *j, int i, const char *name)
{
    if (!j->row->null[i] && !item_id_valid(iv(j, i)))
        wrong(j, "%s %lld is not a valid id (1..2^63-1)", name, (long long)iv(j, i));
}

static void judge_min(struct judge *j, int i, const char *name, int64_t min, int64_t max)
{
    if (j->row->null[i] || (iv(j, i) >= min && iv(j, i) <= max))
        return;
    if (min == 0 && iv(j, i) < 0)
        wrong(j, "%s %lld is negative", name, (long long)iv(j, i));
    else
        wrong(j, "%s %lld is out of range (%lld..%lld)", name, (long long)iv(j, i),
              (long long)min, (long long)max);
}

static void judge_nonneg(struct judge *j, int i, const char *name)
{
    judge_min(j, i, name, 0, INT64_MAX);
}

/* A stored count against the active rows it must equal. */
static void judge_count(struct judge *j, int i, const char *name, int rows, const char *noun)
{
    if (j->row->null[i] || j->row->null[rows])
        return;
    if (iv(j, i) < 0)
        wrong(j, "%s %lld is negative (%lld %s)", name, (long long)iv(j, i),
              (long long)iv(j, rows), noun);
    else if (iv(j, i) != iv(j, rows))
        wrong(j, "%s %lld, %lld %s", name, (long long)iv(j, i), (long long)iv(j, rows), noun);
}

/* A topic or error: len bytes of printable ASCII, len in min..RECORD_TEXT_MAX. */
static void judge_text(struct judge *j, int i, const char *name, size_t min)
{
    const struct store__check_row *row = j->row;
    bool printable = true;

    if (row->text_null[i])
        return;
    for (size_t k = 0; k < row->len[i] && k < sizeof(row->text[i]); k++)
        printable = printable && row->text[i][k] >= 0x20 && row->text[i][k] <= 0x7e;
    if (row->len[i] < min)
        wrong(j, "%s is empty", name);
    else if (row->len[i] > RECORD_TEXT_MAX)
        wrong(j, "%s is %zu bytes long (at most %d)", name, row->len[i], RECORD_TEXT_MAX);
    else if (!printable)
        wrong(j, "%s holds a character that is not printable ASCII", name);
}

/* Integer i as a sum: NULL (no rows) is 0. */
static int64_t sum_of(const struct judge *j, int i)
{
    return j->row->null[i] ? 0 : iv(j, i);
}

/* A like's or a collection's transition: one of the two 1 or -1, the other 0. */
static bool one_transition(int64_t like, int64_t collect)
{
    return like == 0 ? collect == 1 || collect == -1 : collect == 0 && (like == 1 || like == -1);
}

void store__check_row(struct store__check *c, enum store__check_part p,
                      const struct store__check_row *row)
{
    struct judge j = {.c = c, .row = row, .key = STRBUF_INIT, .add_key = check_keys[p]};

    c->rows += p != STORE__CHECK_HELD; /* its rows are the windows' rows again */
    judge_columns(&j, p);
    switch (p) {
    case STORE__CHECK_ITEMS:
        judge_biz(&j);
        judge_id(&j, 1, "biz_id");
        judge_nonneg(&j, 2, "read_cnt");
        judge_count(&j, 3, "like_cnt", 7, "active likes");
        judge_count(&j, 4, "collect_cnt", 8, "active collections");
        judge_nonneg(&j, 5, "ctime");
        judge_nonneg(&j, 6, "utime");
        break;
    case STORE__CHECK_LIKES:
    case STORE__CHECK_COLLECTIONS:
        judge_biz(&j);
        judge_id(&j, 1, "uid");
        judge_id(&j, 2, "biz_id");
        if (p == STORE__CHECK_COLLECTIONS)
            judge_id(&j, 7, "cid");
        if (!row->null[3] && iv(&j, 3) != 0 && iv(&j, 3) != 1)
            wrong(&j, "status %lld is neither 0 nor 1", (long long)iv(&j, 3));
        judge_nonneg(&j, 4, "ctime");
        judge_nonneg(&j, 5, "utime");
        if (!row->null[6] && !iv(&j, 6))
            wrong(&j, "its item has no row in interactive");
        break;
    case STORE__CHECK_HOURS:
        judge_biz(&j);
        judge_id(&j, 0, "biz_id");
        judge_min(&j, 1, "hour", 0, HOUR_MAX);
        judge_nonneg(&j, 2, "read_cnt");
        break;
    case STORE__CHECK_WINDOWS:
        judge_biz(&j);
        judge_id(&j, 1, "biz_id");
        if (!row->null[0] && !window_valid(iv(&j, 0)))
            wrong(&j, "win %lld is not a window's length (1, 24, 168 or 720 hours)",
                  (long long)iv(&j, 0));
        else if (sum_of(&j, 2) != sum_of(&j, 5) || sum_of(&j, 3) != sum_of(&j, 6) ||
                 sum_of(&j, 4) != sum_of(&j, 7))
            wrong(&j, "read_cnt %lld, like_cnt %lld, collect_cnt %lld; the hourly rows it holds"
                      " sum to %lld, %lld, %lld",
                  (long long)iv(&j, 2), (long long)iv(&j, 3), (long long)iv(&j, 4),
                  (long long)sum_of(&j, 5), (long long)sum_of(&j, 6), (long long)sum_of(&j, 7));
        break;
    case STORE__CHECK_HELD:
        if (!iv(&j, 2) && (sum_of(&j, 3) || sum_of(&j, 4) || sum_of(&j, 5)))
            wrong(&j, "no row, but the hourly rows the window holds sum to read_cnt %lld,"
                      " like_cnt %lld, collect_cnt %lld",
                  (long long)sum_of(&j, 3), (long long)sum_of(&j, 4), (long long)sum_of(&j, 5));
        break;
    case STORE__CHECK_MARKS:
        if (!row->null[0] && !window_valid(iv(&j, 0)))
            wrong(&j, "not a window's length (1, 24, 168 or 720 hours)");
        judge_min(&j, 1, "hour", 0, HOUR_MAX);
        break;
    case STORE__CHECK_QUEUE:
        judge_biz(&j);
        judge_id(&j, 1, "biz_id");
        judge_min(&j, 2, "hour", 0, HOUR_MAX);
        if (!row->null[3] && !row->null[4] && !one_transition(iv(&j, 3), iv(&j, 4)))
            wrong(&j, "like_cnt %lld, collect_cnt %lld is not one transition (one of them 1"
                      " or -1, the other 0)",
                  (long long)iv(&j, 3), (long long)iv(&j, 4));
        break;
    case STORE__CHECK_IDEM:
    case STORE__CHECK_SEEN:
        judge_nonneg(&j, 1, "ms");
        break;
    case STORE__CHECK_DEAD:
        judge_biz(&j);
        judge_id(&j, 1, "biz_id");
        judge_nonneg(&j, 2, "uid");
        judge_nonneg(&j, 3, "ts");
        judge_min(&j, 4, "part", 0, INT32_MAX);
        judge_nonneg(&j, 5, "msg_offset");
        judge_nonneg(&j, 6, "ctime");
        judge_text(&j, 1, "topic", 1);
        judge_text(&j, 2, "error", 0);
        break;
    case STORE__CHECK_OFFSETS:
        judge_text(&j, 0, "topic", 1);
        judge_min(&j, 0, "part", 0, INT32_MAX);
        judge_nonneg(&j, 1, "next_offset");
        judge_nonneg(&j, 2, "utime");
        judge_nonneg(&j, 3, "event_ms");
        break;
    case STORE__CHECK_VERSIONS:
        judge_min(&j, 0, "version", 1, c->schema_version);
        break;
    default: TALLY_ASSERT(!"a part of check");
    }
    strbuf_release(&j.key);
}
