/*
 * mysql.c - the production store: MySQL / MariaDB through MariaDB Connector/C.
 *
 * DESIGN
 *   A small pool of connections (default 8), each used by one thread at a
 *   time, each holding its prepared statements. Statements with an IN list
 *   or a multi-row VALUES list are prepared once per size on first use and
 *   kept, so the steady state never parses SQL.
 *
 *   Transitions come from what the write did: the like upsert reports 1
 *   affected row for an insert, 2 for a row it changed and 0 for a row that
 *   was already active (no CLIENT_FOUND_ROWS), so the count moves exactly
 *   when a like becomes active, with no read-then-write. Collections lock
 *   the user's row (SELECT ... FOR UPDATE) because a move changes the row
 *   but not the count.
 *
 *   Failure: any client-side error (CR_*) marks the connection broken; it is
 *   closed and reopened on its next use, and the call reports
 *   TALLY_EUNAVAIL. Connect, read and write timeouts keep a dead or hung
 *   server from blocking a caller for more than about two seconds. InnoDB
 *   deadlocks and lock wait timeouts retry the whole transaction.
 *
 *   Schema: CREATE ... IF NOT EXISTS migrations numbered like SQLite's,
 *   recorded in tally_schema, run under GET_LOCK so that several tallyd
 *   starting at once migrate exactly once.
 */
#include "store/mysql.h"

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/log.h"
#include "util/strbuf.h"
#include "util/xmalloc.h"
#include "util/banned.h"

#define POOL_MAX     64
#define UPSERT_CHUNK 256
#define TX_RETRIES   5
#define E_RETRY      (-100) /* internal: deadlock, run the transaction again */

static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE IF NOT EXISTS interactive ("
    "  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    "  biz VARCHAR(32) NOT NULL, biz_id BIGINT NOT NULL,"
    "  read_cnt BIGINT NOT NULL DEFAULT 0,"
    "  like_cnt BIGINT NOT NULL DEFAULT 0,"
    "  collect_cnt BIGINT NOT NULL DEFAULT 0,"
    "  ctime BIGINT NOT NULL, utime BIGINT NOT NULL,"
    "  UNIQUE KEY uk_biz (biz, biz_id),"
    "  KEY top_read (biz, read_cnt DESC, biz_id),"
    "  KEY top_like (biz, like_cnt DESC, biz_id),"
    "  KEY top_collect (biz, collect_cnt DESC, biz_id)"
    ") ENGINE=InnoDB DEFAULT CHARSET=ascii;"
    "CREATE TABLE IF NOT EXISTS user_like ("
    "  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    "  uid BIGINT NOT NULL, biz VARCHAR(32) NOT NULL, biz_id BIGINT NOT NULL,"
    "  status TINYINT NOT NULL,"
    "  ctime BIGINT NOT NULL, utime BIGINT NOT NULL,"
    "  UNIQUE KEY uk_user_item (uid, biz, biz_id),"
    "  KEY list (uid, biz, status, utime DESC, id DESC)"
    ") ENGINE=InnoDB DEFAULT CHARSET=ascii;"
    "CREATE TABLE IF NOT EXISTS user_collection ("
    "  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    "  uid BIGINT NOT NULL, cid BIGINT NOT NULL,"
    "  biz VARCHAR(32) NOT NULL, biz_id BIGINT NOT NULL,"
    "  status TINYINT NOT NULL,"
    "  ctime BIGINT NOT NULL, utime BIGINT NOT NULL,"
    "  UNIQUE KEY uk_user_item (uid, biz, biz_id),"
    "  KEY list (uid, cid, status, utime DESC, id DESC)"
    ") ENGINE=InnoDB DEFAULT CHARSET=ascii;"
    "CREATE TABLE IF NOT EXISTS read_offsets ("
    "  topic VARCHAR(255) NOT NULL, part INT NOT NULL,"
    "  next_offset BIGINT NOT NULL, utime BIGINT NOT NULL,"
    "  PRIMARY KEY (topic, part)"
    ") ENGINE=InnoDB DEFAULT CHARSET=ascii",
    /* 1 -> 2: read events the store refused for good (topic/part/msg_offset NULL on the
     * local bus). */
    "CREATE TABLE IF NOT EXISTS read_dead_letter ("
    "  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    "  biz VARCHAR(32) NOT NULL, biz_id BIGINT NOT NULL, uid BIGINT NOT NULL,"
    "  ts BIGINT NOT NULL,"
    "  topic VARCHAR(255) NULL, part INT NULL, msg_offset BIGINT NULL,"
    "  error VARCHAR(255) NOT NULL, ctime BIGINT NOT NULL"
    ") ENGINE=InnoDB DEFAULT CHARSET=ascii",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

enum stmt {
    S_COUNTS,
    S_LIKE_ON,
    S_LIKE_OFF,
    S_BUMP,
    S_COLLECTED_LOCK,
    S_COLLECT_PUT,
    S_COLLECT_OFF,
    S_LIST_LIKES,
    S_LIST_COLLECTION,
    S_TOP_READ,
    S_TOP_LIKE,
    S_TOP_COLLECT,
    S_OFFSET_GET,
    S_OFFSET_CAS,
    S_OFFSET_NEW,
    S_DEAD_LETTER,
    STMT_COUNT
};

#define TOP_SQL(col)                                                  \
    "SELECT biz_id, read_cnt, like_cnt, collect_cnt FROM interactive" \
    " WHERE biz = ? ORDER BY " col " DESC, biz_id ASC LIMIT ?"

static const char *const stmt_sql[STMT_COUNT] = {
    [S_COUNTS] = "SELECT read_cnt, like_cnt, collect_cnt FROM interactive"
                 " WHERE biz = ? AND biz_id = ?",
    /* utime is assigned before status, so IF() still sees the old status. */
    [S_LIKE_ON] = "INSERT INTO user_like (uid, biz, biz_id, status, ctime, utime)"
                  " VALUES (?, ?, ?, 1, ?, ?) ON DUPLICATE KEY UPDATE"
                  " utime = IF(status = 0, VALUES(utime), utime), status = 1",
    [S_LIKE_OFF] = "UPDATE user_like SET status = 0, utime = ?"
                   " WHERE uid = ? AND biz = ? AND biz_id = ? AND status = 1",
    [S_BUMP] =
        "INSERT INTO interactive (biz, biz_id, read_cnt, like_cnt, collect_cnt, ctime, utime)"
        " VALUES (?, ?, 0, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE"
        " like_cnt = like_cnt + VALUES(like_cnt),"
        " collect_cnt = collect_cnt + VALUES(collect_cnt), utime = VALUES(utime)",
    [S_COLLECTED_LOCK] = "SELECT status, cid FROM user_collection"
                         " WHERE uid = ? AND biz = ? AND biz_id = ? FOR UPDATE",
    [S_COLLECT_PUT] = "INSERT INTO user_collection (uid, cid, biz, biz_id, status, ctime, utime)"
                      " VALUES (?, ?, ?, ?, 1, ?, ?) ON DUPLICATE KEY UPDATE"
                      " cid = VALUES(cid), status = 1, utime = VALUES(utime)",
    [S_COLLECT_OFF] = "UPDATE user_collection SET status = 0, utime = ?"
                      " WHERE uid = ? AND cid = ? AND biz = ? AND biz_id = ? AND status = 1",
    [S_LIST_LIKES] = "SELECT id, biz, biz_id, utime FROM user_like"
                     " WHERE uid = ? AND biz = ? AND status = 1"
                     " AND (utime < ? OR (utime = ? AND id < ?))"
                     " ORDER BY utime DESC, id DESC LIMIT ?",
    [S_LIST_COLLECTION] = "SELECT id, biz, biz_id, utime FROM user_collection"
                          " WHERE uid = ? AND cid = ? AND status = 1"
                          " AND (utime < ? OR (utime = ? AND id < ?))"
                          " ORDER BY utime DESC, id DESC LIMIT ?",
    [S_TOP_READ] = TOP_SQL("read_cnt"),
    [S_TOP_LIKE] = TOP_SQL("like_cnt"),
    [S_TOP_COLLECT] = TOP_SQL("collect_cnt"),
    [S_OFFSET_GET] = "SELECT next_offset FROM read_offsets WHERE topic = ? AND part = ?",
    [S_OFFSET_CAS] = "UPDATE read_offsets SET next_offset = ?, utime = ?"
                     " WHERE topic = ? AND part = ? AND next_offset = ?",
    [S_OFFSET_NEW] = "INSERT IGNORE INTO read_offsets (topic, part, next_offset, utime)"
                     " VALUES (?, ?, ?, ?)",
    [S_DEAD_LETTER] = "INSERT INTO read_dead_letter"
                      " (biz, biz_id, uid, ts, topic, part, msg_offset, error, ctime)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
};

/* Statements whose text depends on a count, prepared on first use per count. */
enum sized { Z_COUNTS, Z_LIKED, Z_COLLECTED, Z_UPSERT, SIZED_COUNT };

/* One connection. Used by one thread at a time, while checked out of the pool. */
struct conn {
    MYSQL *db;            /* NULL: not connected (yet, or since it broke) */
    MYSQL_BIND *upsert_b; /* UPSERT_BINDS parameters for do_apply, allocated on first use */
    unsigned long *upsert_len;
    MYSQL_STMT *stmt[STMT_COUNT];
    MYSQL_STMT *sized[SIZED_COUNT][UPSERT_CHUNK + 1];
    struct conn *next_free;
};

struct mysql_cfg {
    char *host, *user, *pass, *dbname;
    unsigned port;
    int pool;
};

/* Shared by all threads; pool_lock guards free_conns. */
struct mysql_store {
    struct store base;
    struct mysql_cfg cfg;
    pthread_mutex_t pool_lock;
    pthread_cond_t pool_cond;
    struct conn conns[POOL_MAX];
    struct conn *free_conns;
};

/* ------------------------------------------------------------ connections */

static void conn_close(struct conn *c)
{
    for (int i = 0; i < STMT_COUNT; i++)
        if (c->stmt[i])
            mysql_stmt_close(c->stmt[i]);
    for (int z = 0; z < SIZED_COUNT; z++)
        for (int n = 0; n <= UPSERT_CHUNK; n++)
            if (c->sized[z][n])
                mysql_stmt_close(c->sized[z][n]);
    if (c->db)
        mysql_close(c->db);
    free(c->upsert_b);
    free(c->upsert_len);
    struct conn *next = c->next_free;
    memset(c, 0, sizeof(*c));
    c->next_free = next;
}

/*
 * The one place Connector/C errors become tally's. A client-side error
 * means the connection is gone: it is closed, to be reopened on next use.
 */
static int map_err(struct conn *c, unsigned err, const char *msg, const char *what)
{
    if (err == ER_LOCK_DEADLOCK || err == ER_LOCK_WAIT_TIMEOUT)
        return E_RETRY;
    if (err >= CR_MIN_ERROR && err <= CR_MAX_ERROR) {
        LOG_ONCE(LOG_WARN, "mysql: %s: %s (reconnecting on next use)", what, msg);
        conn_close(c);
        return TALLY_EUNAVAIL;
    }
    if (err == ER_SERVER_SHUTDOWN || err == 1927 /* ER_CONNECTION_KILLED */ ||
        err == ER_CON_COUNT_ERROR) {
        conn_close(c);
        return TALLY_EUNAVAIL;
    }
    /* A full disk or a read-only server is the store's state, not the data's: hold and retry. */
    if (err == ER_RECORD_FILE_FULL || err == ER_DISK_FULL || err == ER_OPTION_PREVENTS_STATEMENT ||
        err == ER_READ_ONLY_MODE) {
        LOG_ONCE(LOG_WARN, "mysql: %s: %u %s", what, err, msg);
        return TALLY_EUNAVAIL;
    }
    /* The data's fault: out of range (a counter past 2^63-1), truncated, NULL, too long. */
    if (err == ER_WARN_DATA_OUT_OF_RANGE || err == ER_DATA_OUT_OF_RANGE ||
        err == ER_TRUNCATED_WRONG_VALUE_FOR_FIELD || err == WARN_DATA_TRUNCATED ||
        err == ER_BAD_NULL_ERROR || err == ER_DATA_TOO_LONG) {
        log_warn("mysql: %s: %u %s", what, err, msg);
        return TALLY_EREJECTED;
    }
    log_error("mysql: %s: %u %s", what, err, msg);
    return TALLY_EINTERNAL;
}

static int db_err(struct conn *c, const char *what)
{
    return map_err(c, mysql_errno(c->db), mysql_error(c->db), what);
}

static int stmt_err(struct conn *c, MYSQL_STMT *st, const char *what)
{
    return map_err(c, mysql_stmt_errno(st), mysql_stmt_error(st), what);
}

static int query(struct conn *c, const char *sql)
{
    if (mysql_query(c->db, sql)) /* ... a statement without values */
        return db_err(c, sql);
    /* Drain any result sets (multi-statement migrations). */
    do {
        MYSQL_RES *res = mysql_store_result(c->db);
        if (res)
            mysql_free_result(res);
    } while (mysql_next_result(c->db) == 0);
    return mysql_errno(c->db) ? db_err(c, sql) : 0;
}

static int prepare(struct conn *c, const char *sql, size_t len, MYSQL_STMT **out)
{
    MYSQL_STMT *st = mysql_stmt_init(c->db);

    if (!st)
        return db_err(c, "stmt_init");
    if (mysql_stmt_prepare(st, sql, (unsigned long)len)) {
        int rc = stmt_err(c, st, "prepare");
        mysql_stmt_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

/* Connects c, without preparing anything. */
static int conn_connect(struct mysql_store *s, struct conn *c)
{
    unsigned connect_timeout = 1, io_timeout = 2;
    int rc;

    c->db = mysql_init(NULL);
    TALLY_ASSERT(c->db);
    mysql_options(c->db, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
    mysql_options(c->db, MYSQL_OPT_READ_TIMEOUT, &io_timeout);
    mysql_options(c->db, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout);
    mysql_options(c->db, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    if (!mysql_real_connect(c->db, s->cfg.host, s->cfg.user, s->cfg.pass, s->cfg.dbname,
                            s->cfg.port, NULL, CLIENT_MULTI_STATEMENTS)) {
        rc = db_err(c, "connect");
        conn_close(c);
        return rc == TALLY_EINTERNAL ? TALLY_EUNAVAIL : rc;
    }
    return 0;
}

static int conn_open(struct mysql_store *s, struct conn *c)
{
    int rc = conn_connect(s, c);

    for (int i = 0; i < STMT_COUNT && rc == 0; i++)
        rc = prepare(c, stmt_sql[i], strlen(stmt_sql[i]), &c->stmt[i]);
    return rc;
}

static int conn_get(struct mysql_store *s, struct conn **out)
{
    struct conn *c;
    int rc = 0;

    pthread_mutex_lock(&s->pool_lock);
    while (!s->free_conns)
        pthread_cond_wait(&s->pool_cond, &s->pool_lock);
    c = s->free_conns;
    s->free_conns = c->next_free;
    pthread_mutex_unlock(&s->pool_lock);
    if (!c->db && (rc = conn_open(s, c))) {
        conn_close(c);
        pthread_mutex_lock(&s->pool_lock);
        c->next_free = s->free_conns;
        s->free_conns = c;
        pthread_cond_signal(&s->pool_cond);
        pthread_mutex_unlock(&s->pool_lock);
        return rc;
    }
    *out = c;
    return 0;
}

static void conn_put(struct mysql_store *s, struct conn *c)
{
    pthread_mutex_lock(&s->pool_lock);
    c->next_free = s->free_conns;
    s->free_conns = c;
    pthread_cond_signal(&s->pool_cond);
    pthread_mutex_unlock(&s->pool_lock);
}

/* ------------------------------------------------------------ binding */

/* Parameters or results of one statement, filled left to right, in storage the
 * caller provides: BINDS() on the stack for ordinary statements, the connection's
 * own arrays for the 1,280 parameters of a full multi-row upsert. */
struct binds {
    MYSQL_BIND *b;
    unsigned long *len;
    int n, cap;
};

#define BINDS(name, capacity)           \
    MYSQL_BIND name##_b[capacity];      \
    unsigned long name##_len[capacity]; \
    struct binds name = {name##_b, name##_len, 0, capacity}

#define LIST_BINDS   (UPSERT_CHUNK + 4) /* an IN list of up to UPSERT_CHUNK ids, plus keys */
#define UPSERT_BINDS (UPSERT_CHUNK * 5)

static void bind_reset(struct binds *p)
{
    memset(p->b, 0, sizeof(p->b[0]) * (size_t)(p->n ? p->n : 1));
    p->n = 0;
}

static void bind_i64(struct binds *p, const int64_t *v)
{
    TALLY_ASSERT(p->n < p->cap);
    MYSQL_BIND *b = &p->b[p->n++];

    memset(b, 0, sizeof(*b));
    b->buffer_type = MYSQL_TYPE_LONGLONG;
    b->buffer = (void *)v;
}

static void bind_i32(struct binds *p, const int32_t *v)
{
    TALLY_ASSERT(p->n < p->cap);
    MYSQL_BIND *b = &p->b[p->n++];

    memset(b, 0, sizeof(*b));
    b->buffer_type = MYSQL_TYPE_LONG;
    b->buffer = (void *)v;
}

/* For parameters: s is read; for results: s receives up to cap bytes. */
static void bind_str(struct binds *p, const char *s, size_t cap)
{
    TALLY_ASSERT(p->n < p->cap);
    int i = p->n++;
    MYSQL_BIND *b = &p->b[i];

    memset(b, 0, sizeof(*b));
    p->len[i] = (unsigned long)strlen(s);
    b->buffer_type = MYSQL_TYPE_STRING;
    b->buffer = (void *)s;
    b->buffer_length = (unsigned long)cap;
    b->length = &p->len[i];
}

static void bind_item(struct binds *p, const struct item *it)
{
    bind_str(p, it->biz, ITEM_BIZ_MAX + 1);
    bind_i64(p, &it->id);
}

/* Executes st with params; when res is given, binds it and buffers the rows. */
static int exec(struct conn *c, MYSQL_STMT *st, struct binds *params, struct binds *res)
{
    if (params && params->n && mysql_stmt_bind_param(st, params->b))
        return stmt_err(c, st, "bind");
    if (mysql_stmt_execute(st))
        return stmt_err(c, st, "execute");
    if (res) {
        if (mysql_stmt_bind_result(st, res->b))
            return stmt_err(c, st, "bind result");
        if (mysql_stmt_store_result(st))
            return stmt_err(c, st, "store result");
    }
    return 0;
}

/* Fetches the next buffered row: 1 row, 0 done, <0 error. Frees the result when done. */
static int fetch(struct conn *c, MYSQL_STMT *st)
{
    int rc = mysql_stmt_fetch(st);

    if (rc == 0 || rc == MYSQL_DATA_TRUNCATED)
        return 1;
    mysql_stmt_free_result(st);
    return rc == MYSQL_NO_DATA ? 0 : stmt_err(c, st, "fetch");
}

/* A statement whose SQL depends on n, built by `build` on first use. */
static int sized(struct conn *c, enum sized z, size_t n, void (*build)(struct strbuf *, size_t),
                 MYSQL_STMT **out)
{
    TALLY_ASSERT(n >= 1 && n <= UPSERT_CHUNK);
    if (!c->sized[z][n]) {
        struct strbuf sql = STRBUF_INIT;
        int rc;

        build(&sql, n);
        rc = prepare(c, sql.buf, sql.len, &c->sized[z][n]);
        strbuf_release(&sql);
        if (rc)
            return rc;
    }
    *out = c->sized[z][n];
    return 0;
}

static void add_marks(struct strbuf *sql, size_t n)
{
    for (size_t i = 0; i < n; i++)
        strbuf_addstr(sql, i ? ",?" : "?");
    strbuf_addch(sql, ')');
}

static void build_counts(struct strbuf *sql, size_t n)
{
    strbuf_addstr(sql, "SELECT biz_id, read_cnt, like_cnt, collect_cnt FROM interactive"
                       " WHERE biz = ? AND biz_id IN (");
    add_marks(sql, n);
}

static void build_liked(struct strbuf *sql, size_t n)
{
    strbuf_addstr(sql, "SELECT biz_id FROM user_like WHERE uid = ? AND biz = ? AND status = 1"
                       " AND biz_id IN (");
    add_marks(sql, n);
}

static void build_collected(struct strbuf *sql, size_t n)
{
    strbuf_addstr(sql, "SELECT biz_id FROM user_collection WHERE uid = ? AND biz = ?"
                       " AND status = 1 AND biz_id IN (");
    add_marks(sql, n);
}

static void build_upsert(struct strbuf *sql, size_t n)
{
    strbuf_addstr(sql, "INSERT INTO interactive (biz, biz_id, read_cnt, like_cnt, collect_cnt,"
                       " ctime, utime) VALUES ");
    for (size_t i = 0; i < n; i++)
        strbuf_addstr(sql, i ? ",(?,?,?,0,0,?,?)" : "(?,?,?,0,0,?,?)");
    strbuf_addstr(sql, " ON DUPLICATE KEY UPDATE read_cnt = read_cnt + VALUES(read_cnt),"
                       " utime = VALUES(utime)");
}

/* ------------------------------------------------------------ transactions */

/*
 * Runs fn(c, arg) on a pooled connection; inside a transaction when tx.
 * Deadlocks retry the whole function; errors roll back.
 */
static int with_conn(struct mysql_store *s, bool tx, int (*fn)(struct conn *, void *), void *arg)
{
    struct conn *c;
    int rc = TALLY_EINTERNAL;

    for (int attempt = 0; attempt < TX_RETRIES; attempt++) {
        if ((rc = conn_get(s, &c)))
            return rc;
        rc = tx ? query(c, "START TRANSACTION") : 0;
        if (rc == 0)
            rc = fn(c, arg);
        if (tx && c->db) {
            if (rc == 0) {
                if (mysql_commit(c->db))
                    rc = db_err(c, "commit");
            } else if (c->db) {
                mysql_rollback(c->db);
            }
        }
        conn_put(s, c);
        if (rc != E_RETRY)
            return rc;
    }
    log_warn("mysql: transaction deadlocked %d times; giving up", TX_RETRIES);
    return TALLY_EUNAVAIL;
}

/* ------------------------------------------------------------ operations */

struct counts_args {
    const struct item *items;
    size_t n;
    struct counts *out;
};

static int do_counts(struct conn *c, void *arg)
{
    struct counts_args *a = arg;
    BINDS(p, LIST_BINDS);
    BINDS(r, 8);
    MYSQL_STMT *st;
    int64_t id;
    struct counts row;
    int rc;

    memset(a->out, 0, a->n * sizeof(*a->out));
    if ((rc = sized(c, Z_COUNTS, a->n, build_counts, &st)))
        return rc;
    bind_str(&p, a->items[0].biz, ITEM_BIZ_MAX + 1);
    for (size_t i = 0; i < a->n; i++)
        bind_i64(&p, &a->items[i].id);
    bind_i64(&r, &id);
    bind_i64(&r, &row.read_cnt);
    bind_i64(&r, &row.like_cnt);
    bind_i64(&r, &row.collect_cnt);
    if ((rc = exec(c, st, &p, &r)))
        return rc;
    while ((rc = fetch(c, st)) == 1)
        for (size_t i = 0; i < a->n; i++)
            if (a->items[i].id == id)
                a->out[i] = row;
    return rc;
}

static int mdb_counts(struct store *base, const struct item *items, size_t n, struct counts *out)
{
    struct counts_args a = {items, n, out};

    /* All items of one call share a biz (the API's batch is per biz). */
    for (size_t i = 1; i < n; i++)
        TALLY_ASSERT(strcmp(items[i].biz, items[0].biz) == 0);
    return with_conn((struct mysql_store *)base, false, do_counts, &a);
}

struct flags_args {
    int64_t uid;
    const struct item *items;
    size_t n;
    bool *liked, *collected;
};

static int read_flag_set(struct conn *c, enum sized z, void (*build)(struct strbuf *, size_t),
                         struct flags_args *a, bool *out)
{
    BINDS(p, LIST_BINDS);
    BINDS(r, 8);
    MYSQL_STMT *st;
    int64_t id;
    int rc;

    memset(out, 0, a->n * sizeof(*out));
    if ((rc = sized(c, z, a->n, build, &st)))
        return rc;
    bind_i64(&p, &a->uid);
    bind_str(&p, a->items[0].biz, ITEM_BIZ_MAX + 1);
    for (size_t i = 0; i < a->n; i++)
        bind_i64(&p, &a->items[i].id);
    bind_i64(&r, &id);
    if ((rc = exec(c, st, &p, &r)))
        return rc;
    while ((rc = fetch(c, st)) == 1)
        for (size_t i = 0; i < a->n; i++)
            if (a->items[i].id == id)
                out[i] = true;
    return rc;
}

static int do_flags(struct conn *c, void *arg)
{
    struct flags_args *a = arg;
    int rc = read_flag_set(c, Z_LIKED, build_liked, a, a->liked);

    return rc ? rc : read_flag_set(c, Z_COLLECTED, build_collected, a, a->collected);
}

static int mdb_flags(struct store *base, int64_t uid, const struct item *items, size_t n,
                     bool *liked, bool *collected)
{
    struct flags_args a = {uid, items, n, liked, collected};

    return with_conn((struct mysql_store *)base, false, do_flags, &a);
}

static int read_counts(struct conn *c, const struct item *it, struct counts *out)
{
    struct counts_args a = {it, 1, out};
    return do_counts(c, &a);
}

static int bump(struct conn *c, const struct item *it, int64_t dlike, int64_t dcollect,
                const int64_t *now)
{
    BINDS(p, 8);

    bind_item(&p, it);
    bind_i64(&p, &dlike);
    bind_i64(&p, &dcollect);
    bind_i64(&p, now);
    bind_i64(&p, now);
    return exec(c, c->stmt[S_BUMP], &p, NULL);
}

struct write_args {
    int64_t uid, cid, now;
    const struct item *it;
    bool on, changed;
    struct counts *out;
};

static int do_like(struct conn *c, void *arg)
{
    struct write_args *a = arg;
    BINDS(p, 8);
    MYSQL_STMT *st = c->stmt[a->on ? S_LIKE_ON : S_LIKE_OFF];
    int rc;

    if (a->on) {
        bind_i64(&p, &a->uid);
        bind_item(&p, a->it);
        bind_i64(&p, &a->now);
        bind_i64(&p, &a->now);
    } else {
        bind_i64(&p, &a->now);
        bind_i64(&p, &a->uid);
        bind_item(&p, a->it);
    }
    if ((rc = exec(c, st, &p, NULL)))
        return rc;
    /* 1: inserted, 2: reactivated (on) / 1: deactivated (off); 0: no transition. */
    a->changed = mysql_stmt_affected_rows(st) > 0;
    if (a->changed && (rc = bump(c, a->it, a->on ? 1 : -1, 0, &a->now)))
        return rc;
    return read_counts(c, a->it, a->out);
}

static int mdb_set_like(struct store *base, int64_t uid, const struct item *it, bool on,
                        int64_t now_ms, bool *changed, struct counts *out)
{
    struct write_args a = {.uid = uid, .now = now_ms, .it = it, .on = on, .out = out};
    int rc = with_conn((struct mysql_store *)base, true, do_like, &a);

    *changed = rc == 0 && a.changed;
    return rc;
}

static int do_collect(struct conn *c, void *arg)
{
    struct write_args *a = arg;
    BINDS(p, 8);
    BINDS(r, 8);
    MYSQL_STMT *st = c->stmt[S_COLLECTED_LOCK];
    int64_t status = 0, cur_cid = 0;
    int rc;

    bind_i64(&p, &a->uid);
    bind_item(&p, a->it);
    bind_i64(&r, &status);
    bind_i64(&r, &cur_cid);
    if ((rc = exec(c, st, &p, &r)))
        return rc;
    while ((rc = fetch(c, st)) == 1)
        ;
    if (rc)
        return rc;
    a->changed = false;
    bind_reset(&p);
    if (a->on && !(status == 1 && cur_cid == a->cid)) { /* insert, reactivate or move */
        a->changed = status != 1;
        bind_i64(&p, &a->uid);
        bind_i64(&p, &a->cid);
        bind_item(&p, a->it);
        bind_i64(&p, &a->now);
        bind_i64(&p, &a->now);
        rc = exec(c, c->stmt[S_COLLECT_PUT], &p, NULL);
    } else if (!a->on && status == 1 && cur_cid == a->cid) {
        a->changed = true;
        bind_i64(&p, &a->now);
        bind_i64(&p, &a->uid);
        bind_i64(&p, &a->cid);
        bind_item(&p, a->it);
        rc = exec(c, c->stmt[S_COLLECT_OFF], &p, NULL);
    }
    if (rc)
        return rc;
    if (a->changed && (rc = bump(c, a->it, 0, a->on ? 1 : -1, &a->now)))
        return rc;
    return read_counts(c, a->it, a->out);
}

static int mdb_set_collect(struct store *base, int64_t uid, int64_t cid, const struct item *it,
                           bool on, int64_t now_ms, bool *changed, struct counts *out)
{
    struct write_args a = {.uid = uid, .cid = cid, .now = now_ms, .it = it, .on = on, .out = out};
    int rc = with_conn((struct mysql_store *)base, true, do_collect, &a);

    *changed = rc == 0 && a.changed;
    return rc;
}

struct list_args {
    enum stmt which;
    int64_t uid, cid, limit;
    const char *biz;
    const struct list_cursor *after;
    struct list_entry *out;
    size_t n;
};

static int do_list(struct conn *c, void *arg)
{
    struct list_args *a = arg;
    BINDS(p, 8);
    BINDS(r, 8);
    MYSQL_STMT *st = c->stmt[a->which];
    struct list_entry e;
    int rc;

    bind_i64(&p, &a->uid);
    if (a->which == S_LIST_LIKES)
        bind_str(&p, a->biz, ITEM_BIZ_MAX + 1);
    else
        bind_i64(&p, &a->cid);
    bind_i64(&p, &a->after->time);
    bind_i64(&p, &a->after->time);
    bind_i64(&p, &a->after->id);
    bind_i64(&p, &a->limit);
    memset(&e, 0, sizeof(e));
    bind_i64(&r, &e.cursor_id);
    bind_str(&r, e.item.biz, ITEM_BIZ_MAX + 1);
    bind_i64(&r, &e.item.id);
    bind_i64(&r, &e.ctime);
    if ((rc = exec(c, st, &p, &r)))
        return rc;
    a->n = 0;
    while ((rc = fetch(c, st)) == 1) {
        if (r.len[1] > ITEM_BIZ_MAX || a->n >= (size_t)a->limit) {
            /* A row written by hand, or a server ignoring LIMIT: refuse, never abort. */
            log_error("mysql: list: a row's biz is not a valid biz, or too many rows");
            mysql_stmt_free_result(st);
            return TALLY_EINTERNAL;
        }
        e.item.biz[r.len[1]] = '\0';
        a->out[a->n++] = e;
    }
    return rc;
}

static int mdb_list_likes(struct store *base, int64_t uid, const char *biz,
                          const struct list_cursor *after, size_t limit, struct list_entry *out,
                          size_t *n)
{
    struct list_args a = {.which = S_LIST_LIKES,
                          .uid = uid,
                          .limit = (int64_t)limit,
                          .biz = biz,
                          .after = after,
                          .out = out};
    int rc = with_conn((struct mysql_store *)base, false, do_list, &a);

    *n = rc ? 0 : a.n;
    return rc;
}

static int mdb_list_collection(struct store *base, int64_t uid, int64_t cid,
                               const struct list_cursor *after, size_t limit,
                               struct list_entry *out, size_t *n)
{
    struct list_args a = {.which = S_LIST_COLLECTION,
                          .uid = uid,
                          .cid = cid,
                          .limit = (int64_t)limit,
                          .after = after,
                          .out = out};
    int rc = with_conn((struct mysql_store *)base, false, do_list, &a);

    *n = rc ? 0 : a.n;
    return rc;
}

struct top_args {
    const char *biz;
    enum count_field by;
    int64_t limit;
    struct item_state *out;
    size_t n;
};

static int do_top(struct conn *c, void *arg)
{
    static const enum stmt by_stmt[FIELD_COUNT] = {S_TOP_READ, S_TOP_LIKE, S_TOP_COLLECT};
    struct top_args *a = arg;
    BINDS(p, 8);
    BINDS(r, 8);
    MYSQL_STMT *st = c->stmt[by_stmt[a->by]];
    struct item_state e;
    int rc;

    memset(&e, 0, sizeof(e));
    snprintf(e.item.biz, sizeof(e.item.biz), "%s", a->biz);
    bind_str(&p, a->biz, ITEM_BIZ_MAX + 1);
    bind_i64(&p, &a->limit);
    bind_i64(&r, &e.item.id);
    bind_i64(&r, &e.counts.read_cnt);
    bind_i64(&r, &e.counts.like_cnt);
    bind_i64(&r, &e.counts.collect_cnt);
    if ((rc = exec(c, st, &p, &r)))
        return rc;
    a->n = 0;
    while ((rc = fetch(c, st)) == 1) {
        TALLY_ASSERT(a->n < (size_t)a->limit);
        a->out[a->n++] = e;
    }
    return rc;
}

static int mdb_top(struct store *base, const char *biz, enum count_field by, size_t limit,
                   struct item_state *out, size_t *n)
{
    struct top_args a = {biz, by, (int64_t)limit, out, 0};
    int rc = with_conn((struct mysql_store *)base, false, do_top, &a);

    *n = rc ? 0 : a.n;
    return rc;
}

struct apply_args {
    const struct read_delta *d;
    size_t n;
    const char *topic;
    const struct store_offset *offs;
    size_t noffs;
    int64_t now;
};

static int move_offset(struct conn *c, const char *topic, const struct store_offset *o,
                       const int64_t *now)
{
    BINDS(p, 8);
    MYSQL_STMT *st;
    int rc;

    if (o->expect < 0) {
        st = c->stmt[S_OFFSET_NEW];
        bind_str(&p, topic, 0);
        bind_i32(&p, &o->partition);
        bind_i64(&p, &o->next);
        bind_i64(&p, now);
    } else {
        st = c->stmt[S_OFFSET_CAS];
        bind_i64(&p, &o->next);
        bind_i64(&p, now);
        bind_str(&p, topic, 0);
        bind_i32(&p, &o->partition);
        bind_i64(&p, &o->expect);
    }
    if ((rc = exec(c, st, &p, NULL)))
        return rc;
    return mysql_stmt_affected_rows(st) == 1 ? 0 : TALLY_ESTALE;
}

static int do_apply(struct conn *c, void *arg)
{
    struct apply_args *a = arg;
    struct binds p;
    int rc = 0;

    if (!c->upsert_b) {
        c->upsert_b = xcalloc(UPSERT_BINDS, sizeof(*c->upsert_b));
        c->upsert_len = xcalloc(UPSERT_BINDS, sizeof(*c->upsert_len));
    }
    p = (struct binds){c->upsert_b, c->upsert_len, 0, UPSERT_BINDS};
    for (size_t i = 0; i < a->noffs && rc == 0; i++)
        rc = move_offset(c, a->topic, &a->offs[i], &a->now);
    for (size_t done = 0, k; done < a->n && rc == 0; done += k) {
        MYSQL_STMT *st;

        /* Full chunks, then the rest in powers of two: at most 9 statement sizes are
         * ever prepared per connection, whatever the batch sizes. */
        k = UPSERT_CHUNK;
        while (k > a->n - done)
            k /= 2;

        if ((rc = sized(c, Z_UPSERT, k, build_upsert, &st)))
            break;
        p.n = 0;
        for (size_t i = done; i < done + k; i++) {
            bind_item(&p, &a->d[i].item);
            bind_i64(&p, &a->d[i].n);
            bind_i64(&p, &a->now);
            bind_i64(&p, &a->now);
        }
        rc = exec(c, st, &p, NULL);
    }
    return rc;
}

struct dead_args {
    const struct read_event *ev;
    size_t n;
    const char *topic;
    const struct store_offset *offs;
    size_t noffs;
    const char *error;
    int64_t now;
};

static int insert_dead(struct conn *c, const struct dead_args *a, const struct read_event *ev)
{
    BINDS(p, 12);
    MYSQL_BIND *b;
    bool in_topic = ev->partition >= 0 && a->topic;

    bind_item(&p, &ev->item);
    bind_i64(&p, &ev->uid);
    bind_i64(&p, &ev->ts);
    bind_str(&p, in_topic ? a->topic : "", 0);
    bind_i32(&p, &ev->partition);
    bind_i64(&p, &ev->offset);
    for (b = &p.b[p.n - 3]; !in_topic && b < &p.b[p.n]; b++)
        b->buffer_type = MYSQL_TYPE_NULL;
    bind_str(&p, a->error, 0);
    bind_i64(&p, &a->now);
    return exec(c, c->stmt[S_DEAD_LETTER], &p, NULL);
}

static int do_dead_letter(struct conn *c, void *arg)
{
    struct dead_args *a = arg;
    int rc = 0;

    for (size_t i = 0; i < a->noffs && rc == 0; i++)
        rc = move_offset(c, a->topic, &a->offs[i], &a->now);
    for (size_t i = 0; i < a->n && rc == 0; i++)
        rc = insert_dead(c, a, &a->ev[i]);
    return rc;
}

static int mdb_dead_letter(struct store *base, const struct read_event *ev, size_t n,
                           const char *topic, const struct store_offset *offs, size_t noffs,
                           const char *error, int64_t now_ms)
{
    struct dead_args a = {ev, n, topic, offs, noffs, error, now_ms};

    return with_conn((struct mysql_store *)base, true, do_dead_letter, &a);
}

static int mdb_apply_reads(struct store *base, const struct read_delta *d, size_t n,
                           const char *topic, const struct store_offset *offs, size_t noffs,
                           int64_t now_ms)
{
    struct apply_args a = {d, n, topic, offs, noffs, now_ms};

    return with_conn((struct mysql_store *)base, true, do_apply, &a);
}

struct offset_args {
    const char *topic;
    int32_t partition;
    int64_t next;
};

static int do_load_offset(struct conn *c, void *arg)
{
    struct offset_args *a = arg;
    BINDS(p, 8);
    BINDS(r, 8);
    MYSQL_STMT *st = c->stmt[S_OFFSET_GET];
    int64_t v;
    int rc;

    bind_str(&p, a->topic, 0);
    bind_i32(&p, &a->partition);
    bind_i64(&r, &v);
    if ((rc = exec(c, st, &p, &r)))
        return rc;
    a->next = -1;
    while ((rc = fetch(c, st)) == 1)
        a->next = v;
    return rc;
}

static int mdb_load_offset(struct store *base, const char *topic, int32_t partition, int64_t *next)
{
    struct offset_args a = {topic, partition, -1};
    int rc = with_conn((struct mysql_store *)base, false, do_load_offset, &a);

    *next = a.next;
    return rc;
}

static int do_ping(struct conn *c, void *arg)
{
    (void)arg;
    return query(c, "SELECT 1");
}

static int mdb_ping(struct store *base)
{
    return with_conn((struct mysql_store *)base, false, do_ping, NULL);
}

/* ------------------------------------------------------------ open and free */

static void cfg_release(struct mysql_cfg *cfg)
{
    free(cfg->host);
    free(cfg->user);
    free(cfg->pass);
    free(cfg->dbname);
    memset(cfg, 0, sizeof(*cfg));
}

static void mdb_free(struct store *base)
{
    struct mysql_store *s = (struct mysql_store *)base;

    for (int i = 0; i < s->cfg.pool; i++)
        conn_close(&s->conns[i]);
    cfg_release(&s->cfg);
    pthread_mutex_destroy(&s->pool_lock);
    pthread_cond_destroy(&s->pool_cond);
    free(s);
}

static int do_migrate(struct conn *c, void *arg)
{
    MYSQL_RES *res;
    MYSQL_ROW row;
    int version = 0, rc;

    (void)arg;
    if ((rc = query(c, "CREATE TABLE IF NOT EXISTS tally_schema (version INT NOT NULL)")))
        return rc;
    if (mysql_query(c->db, "SELECT COALESCE(MAX(version), 0) FROM tally_schema"))
        return db_err(c, "schema version");
    res = mysql_store_result(c->db);
    if (res && (row = mysql_fetch_row(res)) && row[0])
        version = (int)strtol(row[0], NULL, 10);
    if (res)
        mysql_free_result(res);
    if (version > SCHEMA_VERSION) {
        log_error("mysql: database schema version %d is newer than this tallyd (%d)", version,
                  SCHEMA_VERSION);
        return TALLY_EINTERNAL;
    }
    for (; version < SCHEMA_VERSION; version++) {
        struct strbuf sql = STRBUF_INIT;

        if ((rc = query(c, migrations[version])))
            return rc;
        strbuf_addf(&sql, "INSERT INTO tally_schema (version) VALUES (%d)", version + 1);
        rc = query(c, sql.buf);
        strbuf_release(&sql);
        if (rc)
            return rc;
        log_info("mysql: schema migrated to version %d", version + 1);
    }
    return 0;
}

static int migrate(struct mysql_store *s)
{
    struct conn c = {.db = NULL};
    int rc;

    if ((rc = conn_connect(s, &c)))
        return rc;
    /* Several tallyd may start at once: one migrates, the others wait and find it done. */
    rc = query(&c, "DO GET_LOCK('tally_migrate', 30)");
    if (rc == 0) {
        rc = do_migrate(&c, NULL);
        if (c.db)
            query(&c, "DO RELEASE_LOCK('tally_migrate')");
    }
    conn_close(&c);
    return rc;
}

/* Takes "user:pass@host:port/db?pool=N" apart; returns 0 or a reason. */
static const char *parse_url(const char *url, struct mysql_cfg *cfg)
{
    const char *p = url + strlen("mysql://"), *at, *slash, *colon, *q;
    int64_t v;

    memset(cfg, 0, sizeof(*cfg));
    cfg->port = 3306;
    cfg->pool = 8;
    at = strrchr(p, '@');
    if (!at)
        return "expected mysql://USER:PASS@HOST:PORT/DB";
    colon = memchr(p, ':', (size_t)(at - p));
    cfg->user = xstrndup(p, colon ? (size_t)(colon - p) : (size_t)(at - p));
    cfg->pass = colon ? xstrndup(colon + 1, (size_t)(at - colon - 1)) : xstrdup("");
    p = at + 1;
    slash = strchr(p, '/');
    if (!slash || !*cfg->user)
        return "expected mysql://USER:PASS@HOST:PORT/DB";
    colon = memchr(p, ':', (size_t)(slash - p));
    cfg->host = xstrndup(p, colon ? (size_t)(colon - p) : (size_t)(slash - p));
    if (!*cfg->host)
        return "missing host";
    if (colon) {
        if (item_parse_id(colon + 1, (size_t)(slash - colon - 1), &v) || v > 65535)
            return "the port must be an integer in 1..65535";
        cfg->port = (unsigned)v;
    }
    q = strchr(slash + 1, '?');
    cfg->dbname = q ? xstrndup(slash + 1, (size_t)(q - slash - 1)) : xstrdup(slash + 1);
    if (!*cfg->dbname)
        return "missing database name";
    if (q) {
        if (strncmp(q + 1, "pool=", 5) != 0 || item_parse_id(q + 6, strlen(q + 6), &v) ||
            v > POOL_MAX)
            return "the only option is pool=N, N in 1..64";
        cfg->pool = (int)v;
    }
    return NULL;
}

int store_mysql_check_url(const char *url, char **err)
{
    struct mysql_cfg cfg;
    const char *why = parse_url(url, &cfg);

    cfg_release(&cfg);
    if (!why)
        return 0;
    *err = xstrfmt("invalid --store '%s': %s", url, why);
    return TALLY_EINVAL;
}

static const struct store_ops mdb_ops = {
    .name = "mysql",
    .counts = mdb_counts,
    .flags = mdb_flags,
    .set_like = mdb_set_like,
    .set_collect = mdb_set_collect,
    .list_likes = mdb_list_likes,
    .list_collection = mdb_list_collection,
    .top = mdb_top,
    .apply_reads = mdb_apply_reads,
    .dead_letter = mdb_dead_letter,
    .load_offset = mdb_load_offset,
    .ping = mdb_ping,
    .free = mdb_free,
};

int store_mysql_open(const char *url, struct store **out, char **err)
{
    struct mysql_store *s;
    int rc;

    if ((rc = store_mysql_check_url(url, err)))
        return rc;
    s = xcalloc(1, sizeof(*s));
    s->base.ops = &mdb_ops;
    parse_url(url, &s->cfg);
    pthread_mutex_init(&s->pool_lock, NULL);
    pthread_cond_init(&s->pool_cond, NULL);
    for (int i = s->cfg.pool - 1; i >= 0; i--) {
        s->conns[i].next_free = s->free_conns;
        s->free_conns = &s->conns[i];
    }
    if ((rc = migrate(s))) {
        *err = xstrfmt("cannot open mysql store %s@%s:%u/%s: %s", s->cfg.user, s->cfg.host,
                       s->cfg.port, s->cfg.dbname, tally_strerror(rc));
        mdb_free(&s->base);
        return rc;
    }
    *out = &s->base;
    return 0;
}
