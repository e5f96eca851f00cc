/*
 * sqlite.c - the embedded store: SQLite in WAL mode.
 *
 * DESIGN
 *   One writer, concurrent readers. SQLite allows one write transaction at a
 *   time per database, so instead of letting threads collide on SQLITE_BUSY
 *   the adapter keeps exactly one writer connection behind a mutex, and a
 *   small pool of reader connections that WAL lets run beside the writer.
 *   Each connection prepares every statement once, at open, and keeps it.
 *
 *   Transitions are detected from what the write did, not from a read
 *   before it: the like upsert only updates a row whose status is 0, so
 *   sqlite3_changes() is 1 exactly when a like became active. Collections
 *   read the row first (under the writer lock, which makes that safe)
 *   because a move between collections changes the row but not the count.
 *
 *   The schema is versioned with PRAGMA user_version: migrations[i] takes
 *   the database from version i to i + 1, each in its own transaction.
 */
#include "store/sqlite.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/clock.h"
#include "store/admin.h"
#include "util/error.h"
#include "util/log.h"
#include "util/pool.h"
#include "util/strbuf.h"
#include "util/xmalloc.h"
#include "util/banned.h"

#define READERS        4    /* in-process: a wait for one is another reader's query */
#define READER_WAIT_MS 2000 /* ... and never longer than this (then TALLY_EUNAVAIL, a 503) */
#define EXPIRE_MEMOS 5000 /* memo rows deleted per expiry step */
#define UPSERT_CHUNK 256 /* rows per multi-row read upsert */

static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE interactive ("
    "  id INTEGER PRIMARY KEY,"
    "  biz TEXT NOT NULL, biz_id INTEGER NOT NULL,"
    "  read_cnt INTEGER NOT NULL DEFAULT 0,"
    "  like_cnt INTEGER NOT NULL DEFAULT 0,"
    "  collect_cnt INTEGER NOT NULL DEFAULT 0,"
    "  ctime INTEGER NOT NULL, utime INTEGER NOT NULL,"
    "  UNIQUE (biz, biz_id));"
    "CREATE INDEX interactive_top_read ON interactive (biz, read_cnt DESC, biz_id);"
    "CREATE INDEX interactive_top_like ON interactive (biz, like_cnt DESC, biz_id);"
    "CREATE INDEX interactive_top_collect ON interactive (biz, collect_cnt DESC, biz_id);"
    "CREATE TABLE user_like ("
    "  id INTEGER PRIMARY KEY,"
    "  uid INTEGER NOT NULL, biz TEXT NOT NULL, biz_id INTEGER NOT NULL,"
    "  status INTEGER NOT NULL,"
    "  ctime INTEGER NOT NULL, utime INTEGER NOT NULL,"
    "  UNIQUE (uid, biz, biz_id));"
    "CREATE INDEX user_like_list ON user_like (uid, biz, status, utime DESC, id DESC);"
    "CREATE TABLE user_collection ("
    "  id INTEGER PRIMARY KEY,"
    "  uid INTEGER NOT NULL, cid INTEGER NOT NULL,"
    "  biz TEXT NOT NULL, biz_id INTEGER NOT NULL,"
    "  status INTEGER NOT NULL,"
    "  ctime INTEGER NOT NULL, utime INTEGER NOT NULL,"
    "  UNIQUE (uid, biz, biz_id));"
    "CREATE INDEX user_collection_list"
    "  ON user_collection (uid, cid, status, utime DESC, id DESC);"
    "CREATE TABLE read_offsets ("
    "  topic TEXT NOT NULL, part INTEGER NOT NULL,"
    "  next_offset INTEGER NOT NULL, utime INTEGER NOT NULL,"
    "  PRIMARY KEY (topic, part)) WITHOUT ROWID;",
    /* 1 -> 2: read events the store refused for good (topic/part/msg_offset NULL on the
     * local bus). */
    "CREATE TABLE read_dead_letter ("
    "  id INTEGER PRIMARY KEY,"
    "  biz TEXT NOT NULL, biz_id INTEGER NOT NULL, uid INTEGER NOT NULL, ts INTEGER NOT NULL,"
    "  topic TEXT, part INTEGER, msg_offset INTEGER,"
    "  error TEXT NOT NULL, ctime INTEGER NOT NULL);",
    /* 2 -> 3: an item's active rows, counted by tallyctl's recount and import. */
    "CREATE INDEX IF NOT EXISTS user_like_item ON user_like (biz, biz_id, status);"
    "CREATE INDEX IF NOT EXISTS user_collection_item ON user_collection (biz, biz_id, status);",
    /* 3 -> 4: trending windows. Hourly counts (history, and what leaves a window), the
     * rolling per-window sums that top lists scan by index, and per window the first hour
     * it still holds: every hour before it has been subtracted (see store.h). */
    "CREATE TABLE interactive_hour ("
    "  id INTEGER PRIMARY KEY,"
    "  biz TEXT NOT NULL, biz_id INTEGER NOT NULL, hour INTEGER NOT NULL,"
    "  read_cnt INTEGER NOT NULL DEFAULT 0,"
    "  like_cnt INTEGER NOT NULL DEFAULT 0,"
    "  collect_cnt INTEGER NOT NULL DEFAULT 0,"
    "  UNIQUE (biz, biz_id, hour));"
    "CREATE INDEX interactive_hour_by_hour ON interactive_hour (hour);"
    "CREATE TABLE interactive_window ("
    "  biz TEXT NOT NULL, win INTEGER NOT NULL, biz_id INTEGER NOT NULL,"
    "  read_cnt INTEGER NOT NULL DEFAULT 0,"
    "  like_cnt INTEGER NOT NULL DEFAULT 0,"
    "  collect_cnt INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (biz, win, biz_id)) WITHOUT ROWID;"
    "CREATE INDEX interactive_window_read ON interactive_window (biz, win, read_cnt DESC, biz_id);"
    "CREATE INDEX interactive_window_like ON interactive_window (biz, win, like_cnt DESC, biz_id);"
    "CREATE INDEX interactive_window_collect"
    "  ON interactive_window (biz, win, collect_cnt DESC, biz_id);"
    "CREATE TABLE window_mark (win INTEGER PRIMARY KEY, hour INTEGER NOT NULL);",
    /* 4 -> 5: what the read consumer remembers (store.h, enum read_memo): per idempotency
     * key, and per (reader, item), a time; expired by that time. */
    "CREATE TABLE read_idem (k INTEGER PRIMARY KEY, ms INTEGER NOT NULL);"
    "CREATE INDEX read_idem_ms ON read_idem (ms);"
    "CREATE TABLE read_seen (k INTEGER PRIMARY KEY, ms INTEGER NOT NULL);"
    "CREATE INDEX read_seen_ms ON read_seen (ms);",
    /* 5 -> 6: per partition, the newest event time committed (or the clock, while its
     * owner had read it to its end): memos expire behind the lowest (store.h). */
    "ALTER TABLE read_offsets ADD COLUMN event_ms INTEGER NOT NULL DEFAULT 0",
};

static const char *const memo_table[MEMO_COUNT] = {"read_idem", "read_seen"};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

int store_sqlite_schema_version(void)
{
    return SCHEMA_VERSION;
}

enum stmt {
    S_BEGIN,
    S_BEGIN_WRITE,
    S_COMMIT,
    S_ROLLBACK,
    S_COUNTS,
    S_LIKED,
    S_COLLECTED,
    S_LIKE_ON,
    S_LIKE_OFF,
    S_BUMP,
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
    S_EVENTS_FLOOR,
    S_EVENTS_TOUCH,
    S_PING,
    S_DEAD_LETTER,
    S_MARKS,
    S_MARK_INIT,
    S_MARK_CAS,
    S_HOUR_NEXT,
    S_WINDOW_SUB,
    S_HOUR_EXPIRE,
    S_TOPW_READ,
    S_TOPW_LIKE,
    S_TOPW_COLLECT,
    S_HIST_READ,
    S_HIST_LIKE,
    S_HIST_COLLECT,
    S_LIKE_ITEMS,
    S_COLLECT_ITEMS,
    S_LIKE_ERASE,
    S_COLLECT_ERASE,
    S_UPSERT_CHUNK,
    S_HOUR_CHUNK,
    S_WINDOW_CHUNK,
    STMT_COUNT
};
#define PREPARED_COUNT S_UPSERT_CHUNK /* statements with a fixed text */

#define READ_ROW "(?,?,?,0,0,?,?)"
#define READ_UPSERT_HEAD \
    "INSERT INTO interactive (biz, biz_id, read_cnt, like_cnt, collect_cnt, ctime, utime) VALUES "
/* SQLite turns an integer overflow into a REAL: a sum that would pass 2^63-1 becomes NULL
 * instead, which the NOT NULL constraint refuses (TALLY_EREJECTED), so the row is unchanged. */
#define READ_UPSERT_TAIL                                                             \
    " ON CONFLICT (biz, biz_id) DO UPDATE SET read_cnt = CASE"                       \
    " WHEN excluded.read_cnt > 9223372036854775807 - read_cnt THEN NULL"            \
    " ELSE read_cnt + excluded.read_cnt END, utime = excluded.utime"
#define TOP_SQL(col)                                                  \
    "SELECT biz_id, read_cnt, like_cnt, collect_cnt FROM interactive" \
    " WHERE biz = ?1 ORDER BY " col " DESC, biz_id ASC LIMIT ?2"

#define COUNT_ROW "(?,?,?,?,?,?)"
#define COUNT_TAIL(key)                                                             \
    " ON CONFLICT " key " DO UPDATE SET read_cnt = read_cnt + excluded.read_cnt,"   \
    " like_cnt = like_cnt + excluded.like_cnt,"                                      \
    " collect_cnt = collect_cnt + excluded.collect_cnt"
#define HOUR_HEAD \
    "INSERT INTO interactive_hour (biz, biz_id, hour, read_cnt, like_cnt, collect_cnt) VALUES "
#define HOUR_TAIL COUNT_TAIL("(biz, biz_id, hour)")
#define WINDOW_HEAD \
    "INSERT INTO interactive_window (biz, biz_id, win, read_cnt, like_cnt, collect_cnt) VALUES "
#define WINDOW_TAIL COUNT_TAIL("(biz, win, biz_id)")
/* The window's sum joined to the item's totals: a range of the (biz, win, cnt DESC,
 * biz_id) index, read in order, LIMIT rows long. */
#define TOPW_SQL(col)                                                                 \
    "SELECT w.biz_id, w." col ", i.read_cnt, i.like_cnt, i.collect_cnt"              \
    " FROM interactive_window w JOIN interactive i ON i.biz = w.biz AND i.biz_id = w.biz_id" \
    " WHERE w.biz = ?1 AND w.win = ?2 AND w." col " > 0"                              \
    " ORDER BY w." col " DESC, w.biz_id ASC LIMIT ?3"
#define HIST_SQL(col)                                                                  \
    "SELECT hour, " col " FROM interactive_hour WHERE biz = ?1 AND biz_id = ?2"       \
    " AND hour BETWEEN ?3 AND ?4 AND " col " <> 0 ORDER BY hour"

static const char *const stmt_sql[PREPARED_COUNT] = {
    [S_BEGIN] = "BEGIN",
    [S_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_COUNTS] = "SELECT read_cnt, like_cnt, collect_cnt FROM interactive"
                 " WHERE biz = ?1 AND biz_id = ?2",
    [S_LIKED] = "SELECT status FROM user_like WHERE uid = ?1 AND biz = ?2 AND biz_id = ?3",
    [S_COLLECTED] = "SELECT status, cid FROM user_collection"
                    " WHERE uid = ?1 AND biz = ?2 AND biz_id = ?3",
    [S_LIKE_ON] = "INSERT INTO user_like (uid, biz, biz_id, status, ctime, utime)"
                  " VALUES (?1, ?2, ?3, 1, ?4, ?4)"
                  " ON CONFLICT (uid, biz, biz_id) DO UPDATE SET status = 1, utime = ?4"
                  " WHERE status = 0",
    [S_LIKE_OFF] = "UPDATE user_like SET status = 0, utime = ?4"
                   " WHERE uid = ?1 AND biz = ?2 AND biz_id = ?3 AND status = 1",
    [S_BUMP] =
        "INSERT INTO interactive (biz, biz_id, read_cnt, like_cnt, collect_cnt, ctime, utime)"
        " VALUES (?1, ?2, 0, ?3, ?4, ?5, ?5)"
        " ON CONFLICT (biz, biz_id) DO UPDATE SET like_cnt = like_cnt + ?3,"
        " collect_cnt = collect_cnt + ?4, utime = ?5",
    [S_COLLECT_PUT] = "INSERT INTO user_collection (uid, cid, biz, biz_id, status, ctime, utime)"
                      " VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5)"
                      " ON CONFLICT (uid, biz, biz_id) DO UPDATE SET cid = ?2, status = 1,"
                      " utime = ?5",
    [S_COLLECT_OFF] = "UPDATE user_collection SET status = 0, utime = ?5"
                      " WHERE uid = ?1 AND cid = ?2 AND biz = ?3 AND biz_id = ?4"
                      " AND status = 1",
    [S_LIST_LIKES] = "SELECT id, biz, biz_id, utime FROM user_like"
                     " WHERE uid = ?1 AND biz = ?2 AND status = 1 AND (utime, id) < (?3, ?4)"
                     " ORDER BY utime DESC, id DESC LIMIT ?5",
    [S_LIST_COLLECTION] = "SELECT id, biz, biz_id, utime FROM user_collection"
                          " WHERE uid = ?1 AND cid = ?2 AND status = 1"
                          " AND (utime, id) < (?3, ?4)"
                          " ORDER BY utime DESC, id DESC LIMIT ?5",
    [S_TOP_READ] = TOP_SQL("read_cnt"),
    [S_TOP_LIKE] = TOP_SQL("like_cnt"),
    [S_TOP_COLLECT] = TOP_SQL("collect_cnt"),
    [S_OFFSET_GET] = "SELECT next_offset FROM read_offsets WHERE topic = ?1 AND part = ?2",
    [S_OFFSET_CAS] = "UPDATE read_offsets SET next_offset = ?3, utime = ?5,"
                     " event_ms = max(event_ms, ?6)"
                     " WHERE topic = ?1 AND part = ?2 AND next_offset = ?4",
    [S_OFFSET_NEW] = "INSERT INTO read_offsets (topic, part, next_offset, utime, event_ms)"
                     " VALUES (?1, ?2, ?3, ?5, ?6) ON CONFLICT DO NOTHING",
    [S_EVENTS_FLOOR] = "SELECT min(event_ms) FROM read_offsets WHERE topic = ?1",
    [S_EVENTS_TOUCH] = "UPDATE read_offsets SET event_ms = max(event_ms, ?3)"
                       " WHERE topic = ?1 AND part = ?2",
    [S_PING] = "PRAGMA user_version",
    [S_DEAD_LETTER] = "INSERT INTO read_dead_letter"
                      " (biz, biz_id, uid, ts, topic, part, msg_offset, error, ctime)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [S_MARKS] = "SELECT win, hour FROM window_mark",
    [S_MARK_INIT] = "INSERT INTO window_mark (win, hour) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    [S_MARK_CAS] = "UPDATE window_mark SET hour = ?3 WHERE win = ?1 AND hour = ?2",
    [S_HOUR_NEXT] = "SELECT min(hour) FROM interactive_hour WHERE hour >= ?1",
    [S_WINDOW_SUB] = "INSERT INTO interactive_window"
                     " (biz, biz_id, win, read_cnt, like_cnt, collect_cnt)"
                     " SELECT biz, biz_id, ?1, -read_cnt, -like_cnt, -collect_cnt"
                     " FROM interactive_hour WHERE hour = ?2" WINDOW_TAIL,
    [S_HOUR_EXPIRE] = "DELETE FROM interactive_hour WHERE id IN"
                      " (SELECT id FROM interactive_hour WHERE hour < ?1 LIMIT ?2)",
    [S_TOPW_READ] = TOPW_SQL("read_cnt"),
    [S_TOPW_LIKE] = TOPW_SQL("like_cnt"),
    [S_TOPW_COLLECT] = TOPW_SQL("collect_cnt"),
    [S_HIST_READ] = HIST_SQL("read_cnt"),
    [S_HIST_LIKE] = HIST_SQL("like_cnt"),
    [S_HIST_COLLECT] = HIST_SQL("collect_cnt"),
    /* A user's erasure: their rows' items in the unique key's order, then row by row. */
    [S_LIKE_ITEMS] = "SELECT biz, biz_id FROM user_like WHERE uid = ?1"
                     " ORDER BY biz, biz_id LIMIT ?2",
    [S_COLLECT_ITEMS] = "SELECT biz, biz_id FROM user_collection WHERE uid = ?1"
                        " ORDER BY biz, biz_id LIMIT ?2",
    [S_LIKE_ERASE] = "DELETE FROM user_like WHERE uid = ?1 AND biz = ?2 AND biz_id = ?3",
    [S_COLLECT_ERASE] = "DELETE FROM user_collection WHERE uid = ?1 AND biz = ?2 AND biz_id = ?3",
};

/* One connection and its prepared statements. Used by one thread at a time:
 * the writer under sqlite_store.write_lock, a reader while checked out of the pool. */
struct conn {
    sqlite3 *db;
    sqlite3_stmt *stmt[STMT_COUNT];
};

/* Shared by all threads; the locks below say who may touch which connection. */
struct sqlite_store {
    struct store base;
    char *path;
    pthread_mutex_t write_lock; /* owns writer */
    struct conn writer;
    struct pool readers_pool; /* hands out readers */
    struct conn readers[READERS];
};

/* The one place SQLite's result codes become tally's. */
static int map_err(sqlite3 *db, int rc, const char *what)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW: return 0;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_NOMEM:
        log_warn("sqlite: %s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        return TALLY_EUNAVAIL;
    /* The data's fault, not the store's: the same write can never succeed. */
    case SQLITE_CONSTRAINT:
    case SQLITE_CORRUPT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
        log_warn("sqlite: %s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        return TALLY_EREJECTED;
    default:
        log_error("sqlite: %s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        return TALLY_EINTERNAL;
    }
}

static sqlite3_stmt *stmt(struct conn *c, enum stmt which)
{
    sqlite3_stmt *st = c->stmt[which];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

/* Runs a statement that returns no rows (or whose rows are ignored). */
static int exec_stmt(struct conn *c, sqlite3_stmt *st)
{
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    rc = map_err(c->db, rc, sqlite3_sql(st));
    sqlite3_reset(st);
    return rc;
}

static int run(struct conn *c, enum stmt which)
{
    return exec_stmt(c, stmt(c, which));
}

static void bind_item(sqlite3_stmt *st, int at, const struct item *it)
{
    sqlite3_bind_text(st, at, it->biz, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, at + 1, it->id);
}

static void conn_close(struct conn *c)
{
    for (int i = 0; i < STMT_COUNT; i++)
        sqlite3_finalize(c->stmt[i]);
    sqlite3_close(c->db);
    memset(c, 0, sizeof(*c));
}

static int exec_sql(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

    if (rc != SQLITE_OK) {
        log_error("sqlite: %s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return map_err(NULL, rc, "exec");
    }
    return 0;
}

static int migrate(sqlite3 *db)
{
    sqlite3_stmt *st;
    int version = 0, rc;

    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return map_err(db, sqlite3_errcode(db), "user_version");
    if (sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version > SCHEMA_VERSION) {
        log_error("sqlite: database schema version %d is newer than this tallyd (%d)", version,
                  SCHEMA_VERSION);
        return TALLY_EINTERNAL;
    }
    for (; version < SCHEMA_VERSION; version++) {
        struct strbuf sql = STRBUF_INIT;

        strbuf_addf(&sql, "BEGIN IMMEDIATE; %s; PRAGMA user_version = %d; COMMIT;",
                    migrations[version], version + 1);
        rc = exec_sql(db, sql.buf);
        strbuf_release(&sql);
        if (rc) {
            exec_sql(db, "ROLLBACK");
            return rc;
        }
        log_info("sqlite: schema migrated to version %d", version + 1);
    }
    return 0;
}

/* "HEAD row,row,...,row TAIL" with n rows: built by the caller, freed with strbuf_release. */
static void multi_row(struct strbuf *sb, const char *head, const char *row, size_t n,
                      const char *tail)
{
    strbuf_addstr(sb, head);
    for (size_t i = 0; i < n; i++) {
        if (i)
            strbuf_addch(sb, ',');
        strbuf_addstr(sb, row);
    }
    strbuf_addstr(sb, tail);
}

static int conn_open(struct conn *c, const char *path, bool writer)
{
    static const char *upsert_chunk, *hour_chunk, *window_chunk;
    int rc;

    memset(c, 0, sizeof(*c));
    rc = sqlite3_open_v2(path, &c->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = map_err(c->db, rc, path);
        goto fail;
    }
    sqlite3_busy_timeout(c->db, 5000);
    if (writer) {
        if ((rc = exec_sql(c->db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")))
            goto fail;
        if ((rc = migrate(c->db)))
            goto fail;
    }
    if (!upsert_chunk) {
        /* Built once; read-only afterwards. Opening is single-threaded. */
        static struct strbuf sb = STRBUF_INIT;
        strbuf_addstr(&sb, READ_UPSERT_HEAD);
        for (int i = 0; i < UPSERT_CHUNK; i++)
            strbuf_addstr(&sb, i ? "," READ_ROW : READ_ROW);
        strbuf_addstr(&sb, READ_UPSERT_TAIL);
        upsert_chunk = sb.buf;
        static struct strbuf hb = STRBUF_INIT, wb = STRBUF_INIT;
        multi_row(&hb, HOUR_HEAD, COUNT_ROW, UPSERT_CHUNK, HOUR_TAIL);
        multi_row(&wb, WINDOW_HEAD, COUNT_ROW, UPSERT_CHUNK, WINDOW_TAIL);
        hour_chunk = hb.buf;
        window_chunk = wb.buf;
    }
    for (int i = 0; i < STMT_COUNT; i++) {
        const char *sql = i == S_UPSERT_CHUNK   ? upsert_chunk
                          : i == S_HOUR_CHUNK   ? hour_chunk
                          : i == S_WINDOW_CHUNK ? window_chunk
                                                : stmt_sql[i];
        rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[i], NULL);
        if (rc != SQLITE_OK) {
            rc = map_err(c->db, rc, "prepare");
            goto fail;
        }
    }
    return 0;
fail:
    conn_close(c);
    return rc;
}

/* A reader into *c: 0, or TALLY_EUNAVAIL when none came back within READER_WAIT_MS. */
static int reader_get(struct sqlite_store *s, struct conn **c)
{
    void *taken;
    int rc = pool_get(&s->readers_pool, &taken);

    *c = rc ? NULL : taken;
    return rc;
}

static void reader_put(struct sqlite_store *s, struct conn *c)
{
    pool_put(&s->readers_pool, c);
}

static struct conn *writer_get(struct sqlite_store *s)
{
    pthread_mutex_lock(&s->write_lock);
    return &s->writer;
}

static void writer_put(struct sqlite_store *s)
{
    pthread_mutex_unlock(&s->write_lock);
}

/* Ends a transaction: COMMIT when rc is 0, else ROLLBACK. Returns the final rc. */
static int finish(struct conn *c, int rc)
{
    if (rc == 0) {
        rc = run(c, S_COMMIT);
        if (rc == 0)
            return 0;
    }
    if (!sqlite3_get_autocommit(c->db))
        run(c, S_ROLLBACK);
    return rc;
}

static int read_counts(struct conn *c, const struct item *it, struct counts *out)
{
    sqlite3_stmt *st = stmt(c, S_COUNTS);
    int rc;

    bind_item(st, 1, it);
    memset(out, 0, sizeof(*out));
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->read_cnt = sqlite3_column_int64(st, 0);
        out->like_cnt = sqlite3_column_int64(st, 1);
        out->collect_cnt = sqlite3_column_int64(st, 2);
    }
    rc = map_err(c->db, rc, "counts");
    sqlite3_reset(st);
    return rc;
}

/* Status (and cid) of uid's row for it; status 0 when there is no row. */
static int read_status(struct conn *c, enum stmt which, int64_t uid, const struct item *it,
                       int *status, int64_t *cid)
{
    sqlite3_stmt *st = stmt(c, which);
    int rc;

    sqlite3_bind_int64(st, 1, uid);
    bind_item(st, 2, it);
    *status = 0;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *status = sqlite3_column_int(st, 0);
        if (cid)
            *cid = sqlite3_column_int64(st, 1);
    }
    rc = map_err(c->db, rc, "status");
    sqlite3_reset(st);
    return rc;
}

/* The item's counts and uid's flags on it, as the writer's transaction sees them. */
static int read_state(struct conn *c, int64_t uid, const struct item *it, struct item_state *out)
{
    int rc, liked = 0, collected = 0;

    out->item = *it;
    if ((rc = read_counts(c, it, &out->counts)) ||
        (rc = read_status(c, S_LIKED, uid, it, &liked, NULL)) ||
        (rc = read_status(c, S_COLLECTED, uid, it, &collected, NULL)))
        return rc;
    out->liked = liked == 1;
    out->collected = collected == 1;
    return 0;
}

static int sqlite_counts(struct store *base, const struct item *items, size_t n, struct counts *out)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct conn *c;
    int rc;

    if ((rc = reader_get(s, &c)))
        return rc;
    rc = n > 1 ? run(c, S_BEGIN) : 0; /* one snapshot for the whole batch */
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = read_counts(c, &items[i], &out[i]);
    if (n > 1)
        rc = finish(c, rc);
    reader_put(s, c);
    return rc;
}

static int sqlite_flags(struct store *base, int64_t uid, const struct item *items, size_t n,
                        bool *liked, bool *collected)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct conn *c;
    int rc, status;

    if ((rc = reader_get(s, &c)))
        return rc;
    rc = run(c, S_BEGIN);
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = read_status(c, S_LIKED, uid, &items[i], &status, NULL);
        liked[i] = status == 1;
        if (rc == 0)
            rc = read_status(c, S_COLLECTED, uid, &items[i], &status, NULL);
        collected[i] = status == 1;
    }
    rc = finish(c, rc);
    reader_put(s, c);
    return rc;
}

/* mark[w]: the first hour window w still holds. */
static int read_marks(struct conn *c, int64_t mark[WINDOW_COUNT])
{
    sqlite3_stmt *st = stmt(c, S_MARKS);
    int rc;

    for (int w = 0; w < WINDOW_COUNT; w++)
        mark[w] = INT64_MAX; /* no mark (cannot happen after open): add to no window */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t win = sqlite3_column_int64(st, 0);
        for (int w = 0; w < WINDOW_COUNT; w++)
            if (window_hours[w] == win)
                mark[w] = sqlite3_column_int64(st, 1);
    }
    rc = map_err(c->db, rc, "window marks");
    sqlite3_reset(st);
    return rc;
}

/* Adds rows [0, n) to interactive_hour (window false) or interactive_window (true). */
static int upsert_counts(struct conn *c, bool window, const struct store_row *r, size_t n)
{
    int rc = 0;

    for (size_t done = 0, k; done < n && rc == 0; done += k) {
        sqlite3_stmt *st;

        k = n - done < UPSERT_CHUNK ? n - done : UPSERT_CHUNK;
        if (k == UPSERT_CHUNK) {
            st = stmt(c, window ? S_WINDOW_CHUNK : S_HOUR_CHUNK);
        } else {
            struct strbuf sql = STRBUF_INIT;

            multi_row(&sql, window ? WINDOW_HEAD : HOUR_HEAD, COUNT_ROW, k,
                      window ? WINDOW_TAIL : HOUR_TAIL);
            rc = sqlite3_prepare_v2(c->db, sql.buf, (int)sql.len, &st, NULL);
            strbuf_release(&sql);
            if (rc != SQLITE_OK)
                return map_err(c->db, rc, "prepare count upsert");
        }
        for (size_t i = 0; i < k; i++) {
            const struct store_row *row = &r[done + i];
            int at = (int)i * 6 + 1;

            bind_item(st, at, &row->item);
            sqlite3_bind_int64(st, at + 2, row->key);
            for (int f = 0; f < FIELD_COUNT; f++)
                sqlite3_bind_int64(st, at + 3 + f, row->v[f]);
        }
        rc = exec_stmt(c, st);
        if (k != UPSERT_CHUNK)
            sqlite3_finalize(st);
    }
    return rc;
}

/*
 * Adds hourly rows [0, n) (sorted by item, then hour) to their hours and to every
 * window that still holds their hour. Inside the writer's transaction, so a sweep
 * cannot move a mark in between.
 */
static int add_hourly(struct conn *c, const struct store_row *r, size_t n)
{
    int64_t mark[WINDOW_COUNT];
    struct store_row one[WINDOW_COUNT], *sum;
    int rc;

    if (n == 0)
        return 0;
    if ((rc = upsert_counts(c, false, r, n)) || (rc = read_marks(c, mark)))
        return rc;
    sum = n == 1 ? one : xcalloc(n * WINDOW_COUNT, sizeof(*sum));
    rc = upsert_counts(c, true, sum, store__window_sums(r, n, mark, sum));
    if (sum != one)
        free(sum);
    return rc;
}

/* One like or collection transition, in the hour of now_ms. */
static int add_transition(struct conn *c, const struct item *it, enum count_field f,
                          int64_t delta, int64_t now_ms)
{
    struct store_row row = {.item = *it, .key = store__hour_of(now_ms)};

    row.v[f] = delta;
    return add_hourly(c, &row, 1);
}

static int bump(struct conn *c, const struct item *it, int64_t dlike, int64_t dcollect,
                int64_t now_ms)
{
    sqlite3_stmt *st = stmt(c, S_BUMP);

    bind_item(st, 1, it);
    sqlite3_bind_int64(st, 3, dlike);
    sqlite3_bind_int64(st, 4, dcollect);
    sqlite3_bind_int64(st, 5, now_ms);
    return exec_stmt(c, st);
}

static int sqlite_set_like(struct store *base, int64_t uid, const struct item *it, bool on,
                           int64_t now_ms, bool *changed, struct item_state *out)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct conn *c = writer_get(s);
    sqlite3_stmt *st;
    int rc;

    *changed = false;
    if ((rc = run(c, S_BEGIN_WRITE)))
        goto out;
    st = stmt(c, on ? S_LIKE_ON : S_LIKE_OFF);
    sqlite3_bind_int64(st, 1, uid);
    bind_item(st, 2, it);
    sqlite3_bind_int64(st, 4, now_ms);
    if ((rc = exec_stmt(c, st)))
        goto out;
    *changed = sqlite3_changes(c->db) == 1;
    if (*changed && ((rc = bump(c, it, on ? 1 : -1, 0, now_ms)) ||
                     (rc = add_transition(c, it, FIELD_LIKE_CNT, on ? 1 : -1, now_ms))))
        goto out;
    rc = read_state(c, uid, it, out);
out:
    rc = finish(c, rc);
    if (rc)
        *changed = false;
    writer_put(s);
    return rc;
}

static int sqlite_set_collect(struct store *base, int64_t uid, int64_t cid, const struct item *it,
                              bool on, int64_t now_ms, bool *changed, struct item_state *out)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct conn *c = writer_get(s);
    sqlite3_stmt *st;
    int64_t cur_cid = 0;
    int rc, status;

    *changed = false;
    if ((rc = run(c, S_BEGIN_WRITE)))
        goto out;
    if ((rc = read_status(c, S_COLLECTED, uid, it, &status, &cur_cid)))
        goto out;
    if (on && !(status == 1 && cur_cid == cid)) {
        st = stmt(c, S_COLLECT_PUT); /* insert, reactivate, or move */
        *changed = status != 1;
    } else if (!on && status == 1 && cur_cid == cid) {
        st = stmt(c, S_COLLECT_OFF);
        *changed = true;
    } else {
        st = NULL; /* already there, or not in cid: nothing to do */
    }
    if (st) {
        sqlite3_bind_int64(st, 1, uid);
        sqlite3_bind_int64(st, 2, cid);
        bind_item(st, 3, it);
        sqlite3_bind_int64(st, 5, now_ms);
        if ((rc = exec_stmt(c, st)))
            goto out;
    }
    if (*changed && ((rc = bump(c, it, 0, on ? 1 : -1, now_ms)) ||
                     (rc = add_transition(c, it, FIELD_COLLECT_CNT, on ? 1 : -1, now_ms))))
        goto out;
    rc = read_state(c, uid, it, out);
out:
    rc = finish(c, rc);
    if (rc)
        *changed = false;
    writer_put(s);
    return rc;
}

static int column_biz(sqlite3_stmt *st, int at, struct item *it);

static int sqlite_user_items(struct store *base, int64_t uid, enum user_table t, size_t limit,
                             struct item *out, size_t *n)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct conn *c;
    sqlite3_stmt *st;
    int rc;

    *n = 0;
    if ((rc = reader_get(s, &c)))
        return rc;
    st = stmt(c, t == USER_LIKES ? S_LIKE_ITEMS : S_COLLECT_ITEMS);
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    while (*n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if ((rc = column_biz(st, 0, &out[*n])))
            goto out;
        out[(*n)++].id = sqlite3_column_int64(st, 1);
    }
    rc = map_err(c->db, rc, "user items");
out:
    sqlite3_reset(st);
    reader_put(s, c);
    return rc;
}

/*
 * One chunk of an erasure under the writer lock: the single writer is the lock on uid's
 * rows. Each row is read (its status), deleted, and when it was active its item loses it
 * as an unlike would take it: the total now, the hour and windows of now_ms after.
 */
static int sqlite_erase_rows(struct store *base, int64_t uid, enum user_table t,
                             const struct item *items, size_t n, int64_t now_ms,
                             struct counts *delta, size_t *removed)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    enum count_field f = t == USER_LIKES ? FIELD_LIKE_CNT : FIELD_COLLECT_CNT;
    struct store_row hours[STORE_ERASE_MAX];
    size_t nhours = 0, gone = 0;
    struct conn *c;
    int rc, status;

    TALLY_ASSERT(n <= STORE_ERASE_MAX);
    memset(delta, 0, n * sizeof(*delta));
    c = writer_get(s);
    if ((rc = run(c, S_BEGIN_WRITE)))
        goto out;
    for (size_t i = 0; i < n && rc == 0; i++) {
        sqlite3_stmt *st;

        if ((rc = read_status(c, t == USER_LIKES ? S_LIKED : S_COLLECTED, uid, &items[i], &status,
                              NULL)))
            break;
        st = stmt(c, t == USER_LIKES ? S_LIKE_ERASE : S_COLLECT_ERASE);
        sqlite3_bind_int64(st, 1, uid);
        bind_item(st, 2, &items[i]);
        if ((rc = exec_stmt(c, st)))
            break;
        gone += (size_t)sqlite3_changes(c->db);
        if (status != 1)
            continue;
        if (t == USER_LIKES)
            delta[i].like_cnt = -1;
        else
            delta[i].collect_cnt = -1;
        rc = bump(c, &items[i], delta[i].like_cnt, delta[i].collect_cnt, now_ms);
        hours[nhours] = (struct store_row){.item = items[i], .key = store__hour_of(now_ms)};
        hours[nhours++].v[f] = -1;
    }
    if (rc == 0)
        rc = add_hourly(c, hours, nhours); /* sorted by item, as items are */
out:
    rc = finish(c, rc);
    writer_put(s);
    if (rc)
        memset(delta, 0, n * sizeof(*delta));
    *removed = rc ? 0 : gone;
    return rc;
}

/* Steps a list query whose columns are (id, biz, biz_id, utime). */
static int read_list(struct conn *c, sqlite3_stmt *st, struct list_entry *out, size_t *n)
{
    int rc;

    *n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct list_entry *e = &out[*n];
        const unsigned char *biz = sqlite3_column_text(st, 1);
        size_t len = (size_t)sqlite3_column_bytes(st, 1);

        if (!biz || len > ITEM_BIZ_MAX) { /* a row written by hand: refuse, never abort */
            log_error("sqlite: list: a row's biz is not a valid biz");
            sqlite3_reset(st);
            return TALLY_EINTERNAL;
        }
        (*n)++;
        memcpy(e->item.biz, biz, len);
        e->item.biz[len] = '\0';
        e->cursor_id = sqlite3_column_int64(st, 0);
        e->item.id = sqlite3_column_int64(st, 2);
        e->ctime = sqlite3_column_int64(st, 3);
    }
    rc = map_err(c->db, rc, "list");
    sqlite3_reset(st);
    return rc;
}

static int sqlite_list_likes(struct store *base, int64_t uid, const char *biz,
                             const struct list_cursor *after, size_t limit, struct list_entry *out,
                             size_t *n)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct conn *c;
    sqlite3_stmt *st;
    int rc;

    if ((rc = reader_get(s, &c)))
        return rc;
    st = stmt(c, S_LIST_LIKES);

    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_text(st, 2, biz, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, after->time);
    sqlite3_bind_int64(st, 4, after->id);
    sqlite3_bind_int64(st, 5, (int64_t)limit);
    rc = read_list(c, st, out, n);
    reader_put(s, c);
    return rc;
}

static int sqlite_list_collection(struct store *base, int64_t uid, int64_t cid,
                                  const struct list_cursor *after, size_t limit,
                                  struct list_entry *out, size_t *n)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct conn *c;
    sqlite3_stmt *st;
    int rc;

    if ((rc = reader_get(s, &c)))
        return rc;
    st = stmt(c, S_LIST_COLLECTION);

    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_int64(st, 2, cid);
    sqlite3_bind_int64(st, 3, after->time);
    sqlite3_bind_int64(st, 4, after->id);
    sqlite3_bind_int64(st, 5, (int64_t)limit);
    rc = read_list(c, st, out, n);
    reader_put(s, c);
    return rc;
}

static int sqlite_top(struct store *base, const char *biz, enum count_field by, size_t limit,
                      struct item_state *out, size_t *n)
{
    static const enum stmt by_stmt[FIELD_COUNT] = {S_TOP_READ, S_TOP_LIKE, S_TOP_COLLECT};
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct conn *c;
    sqlite3_stmt *st;
    int rc;

    if ((rc = reader_get(s, &c)))
        return rc;
    st = stmt(c, by_stmt[by]);

    sqlite3_bind_text(st, 1, biz, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)limit);
    *n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct item_state *e = &out[(*n)++];

        memset(e, 0, sizeof(*e));
        snprintf(e->item.biz, sizeof(e->item.biz), "%s", biz);
        e->item.id = sqlite3_column_int64(st, 0);
        e->counts.read_cnt = sqlite3_column_int64(st, 1);
        e->counts.like_cnt = sqlite3_column_int64(st, 2);
        e->counts.collect_cnt = sqlite3_column_int64(st, 3);
    }
    rc = map_err(c->db, rc, "top");
    sqlite3_reset(st);
    reader_put(s, c);
    return rc;
}

/* Upserts rows [0, n) of d with one statement. */
static int upsert_reads(struct conn *c, const struct read_delta *d, size_t n, int64_t now_ms)
{
    sqlite3_stmt *st;
    int rc;

    if (n == UPSERT_CHUNK) {
        st = stmt(c, S_UPSERT_CHUNK);
    } else {
        struct strbuf sql = STRBUF_INIT;

        strbuf_addstr(&sql, READ_UPSERT_HEAD);
        for (size_t i = 0; i < n; i++)
            strbuf_addstr(&sql, i ? "," READ_ROW : READ_ROW);
        strbuf_addstr(&sql, READ_UPSERT_TAIL);
        rc = sqlite3_prepare_v2(c->db, sql.buf, (int)sql.len, &st, NULL);
        strbuf_release(&sql);
        if (rc != SQLITE_OK)
            return map_err(c->db, rc, "prepare read upsert");
    }
    for (size_t i = 0; i < n; i++) {
        int at = (int)i * 5 + 1;
        bind_item(st, at, &d[i].item);
        sqlite3_bind_int64(st, at + 2, d[i].n);
        sqlite3_bind_int64(st, at + 3, now_ms);
        sqlite3_bind_int64(st, at + 4, now_ms);
    }
    rc = exec_stmt(c, st);
    if (n != UPSERT_CHUNK)
        sqlite3_finalize(st);
    return rc;
}

static int move_offset(struct conn *c, const char *topic, const struct store_offset *o,
                       int64_t now_ms)
{
    sqlite3_stmt *st = stmt(c, o->expect < 0 ? S_OFFSET_NEW : S_OFFSET_CAS);
    int rc;

    sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, o->partition);
    sqlite3_bind_int64(st, 3, o->next);
    sqlite3_bind_int64(st, 4, o->expect);
    sqlite3_bind_int64(st, 5, now_ms);
    sqlite3_bind_int64(st, 6, o->event_ms);
    if ((rc = exec_stmt(c, st)))
        return rc;
    return sqlite3_changes(c->db) == 1 ? 0 : TALLY_ESTALE;
}

/* Looks up keys [0, n) of memo table m (chunks of one IN list each), setting their ms. */
static int memo_lookup(struct conn *c, enum read_memo m, struct memo *keys, size_t n)
{
    int rc = 0;

    for (size_t i = 0; i < n; i++)
        keys[i].ms = INT64_MIN;
    for (size_t done = 0, k; done < n && rc == 0; done += k) {
        struct strbuf sql = STRBUF_INIT;
        sqlite3_stmt *st;

        k = n - done < UPSERT_CHUNK ? n - done : UPSERT_CHUNK;
        strbuf_addf(&sql, "SELECT k, ms FROM %s WHERE k IN (", memo_table[m]);
        for (size_t i = 0; i < k; i++)
            strbuf_addstr(&sql, i ? ",?" : "?");
        strbuf_addch(&sql, ')');
        rc = sqlite3_prepare_v2(c->db, sql.buf, (int)sql.len, &st, NULL);
        strbuf_release(&sql);
        if (rc != SQLITE_OK)
            return map_err(c->db, rc, "prepare memo lookup");
        for (size_t i = 0; i < k; i++)
            sqlite3_bind_int64(st, (int)i + 1, keys[done + i].key);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t key = sqlite3_column_int64(st, 0);
            size_t lo = done, hi = done + k; /* keys are sorted */

            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (keys[mid].key < key)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo < done + k && keys[lo].key == key)
                keys[lo].ms = sqlite3_column_int64(st, 1);
        }
        rc = map_err(c->db, rc, "memo lookup");
        sqlite3_finalize(st);
    }
    return rc;
}

/* Upserts rows [0, n) into memo table m. */
static int memo_write(struct conn *c, enum read_memo m, const struct memo *rows, size_t n)
{
    int rc = 0;

    for (size_t done = 0, k; done < n && rc == 0; done += k) {
        struct strbuf sql = STRBUF_INIT;
        sqlite3_stmt *st;

        k = n - done < UPSERT_CHUNK ? n - done : UPSERT_CHUNK;
        strbuf_addf(&sql, "INSERT INTO %s (k, ms) VALUES ", memo_table[m]);
        for (size_t i = 0; i < k; i++)
            strbuf_addstr(&sql, i ? ",(?,?)" : "(?,?)");
        strbuf_addstr(&sql, " ON CONFLICT (k) DO UPDATE SET ms = excluded.ms");
        rc = sqlite3_prepare_v2(c->db, sql.buf, (int)sql.len, &st, NULL);
        strbuf_release(&sql);
        if (rc != SQLITE_OK)
            return map_err(c->db, rc, "prepare memo write");
        for (size_t i = 0; i < k; i++) {
            sqlite3_bind_int64(st, (int)i * 2 + 1, rows[done + i].key);
            sqlite3_bind_int64(st, (int)i * 2 + 2, rows[done + i].ms);
        }
        rc = exec_stmt(c, st);
        sqlite3_finalize(st);
    }
    return rc;
}

/* The batch's hourly read rows still within retention; caller frees *out. */
static size_t hourly_reads(const struct read_batch *b, struct store_row **out)
{
    int64_t oldest = store__hour_of(b->now_ms) - b->retention_hours;
    size_t k = 0;

    *out = xcalloc(b->nhours ? b->nhours : 1, sizeof(**out));
    for (size_t i = 0; i < b->nhours; i++) {
        if (b->hours[i].hour < oldest)
            continue; /* counted in the totals; its hour is past keeping */
        (*out)[k].item = b->hours[i].item;
        (*out)[k].key = b->hours[i].hour;
        (*out)[k].v[FIELD_READ_CNT] = b->hours[i].n;
        k++;
    }
    return k;
}

static int sqlite_apply_reads(struct store *base, struct read_batch *b)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct store_row *rows = NULL;
    size_t nrows = 0;
    struct conn *c = writer_get(s);
    int rc;

    if ((rc = run(c, S_BEGIN_WRITE)))
        goto out;
    for (size_t i = 0; i < b->noffs && rc == 0; i++)
        rc = move_offset(c, b->topic, &b->offs[i], b->now_ms);
    for (int m = 0; m < MEMO_COUNT && rc == 0 && b->decide; m++)
        rc = memo_lookup(c, (enum read_memo)m, b->lookup[m], b->nlookup[m]);
    if (rc == 0 && b->decide)
        rc = b->decide(b);
    for (int m = 0; m < MEMO_COUNT && rc == 0 && b->decide; m++)
        rc = memo_write(c, (enum read_memo)m, b->write[m], b->nwrite[m]);
    nrows = rc ? 0 : hourly_reads(b, &rows);
    for (size_t done = 0; done < b->n && rc == 0; done += UPSERT_CHUNK) {
        size_t k = b->n - done < UPSERT_CHUNK ? b->n - done : UPSERT_CHUNK;
        rc = upsert_reads(c, b->d + done, k, b->now_ms);
    }
    if (rc == 0)
        rc = add_hourly(c, rows, nrows);
out:
    rc = finish(c, rc);
    writer_put(s);
    free(rows);
    return rc;
}

static int sqlite_expire_memos(struct store *base, enum read_memo m, int64_t before_ms,
                               bool *more)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct strbuf sql = STRBUF_INIT;
    struct conn *c;
    sqlite3_stmt *st;
    int rc;

    *more = false;
    strbuf_addf(&sql, "DELETE FROM %s WHERE k IN (SELECT k FROM %s WHERE ms < ?1 LIMIT %d)",
                memo_table[m], memo_table[m], EXPIRE_MEMOS);
    c = writer_get(s);
    rc = sqlite3_prepare_v2(c->db, sql.buf, (int)sql.len, &st, NULL);
    if (rc != SQLITE_OK) {
        rc = map_err(c->db, rc, "prepare memo expiry");
    } else {
        sqlite3_bind_int64(st, 1, before_ms);
        rc = exec_stmt(c, st);
        *more = rc == 0 && sqlite3_changes(c->db) == EXPIRE_MEMOS;
        sqlite3_finalize(st);
    }
    writer_put(s);
    strbuf_release(&sql);
    return rc;
}

static int sqlite_top_window(struct store *base, const char *biz, enum count_field by,
                             enum window w, size_t limit, struct item_state *out,
                             int64_t *window_cnt, size_t *n)
{
    static const enum stmt by_stmt[FIELD_COUNT] = {S_TOPW_READ, S_TOPW_LIKE, S_TOPW_COLLECT};
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct conn *c;
    sqlite3_stmt *st;
    int rc;

    if ((rc = reader_get(s, &c)))
        return rc;
    st = stmt(c, by_stmt[by]);

    sqlite3_bind_text(st, 1, biz, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, window_hours[w]);
    sqlite3_bind_int64(st, 3, (int64_t)limit);
    *n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < limit) {
        struct item_state *e = &out[*n];

        memset(e, 0, sizeof(*e));
        snprintf(e->item.biz, sizeof(e->item.biz), "%s", biz);
        e->item.id = sqlite3_column_int64(st, 0);
        window_cnt[*n] = sqlite3_column_int64(st, 1);
        e->counts.read_cnt = sqlite3_column_int64(st, 2);
        e->counts.like_cnt = sqlite3_column_int64(st, 3);
        e->counts.collect_cnt = sqlite3_column_int64(st, 4);
        (*n)++;
    }
    rc = map_err(c->db, rc, "top window");
    sqlite3_reset(st);
    reader_put(s, c);
    return rc;
}

static int sqlite_history(struct store *base, const struct item *it, enum count_field by,
                          int64_t from_hour, int64_t to_hour, struct hour_count *out, size_t *n)
{
    static const enum stmt by_stmt[FIELD_COUNT] = {S_HIST_READ, S_HIST_LIKE, S_HIST_COLLECT};
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct conn *c;
    sqlite3_stmt *st;
    size_t cap = (size_t)(to_hour - from_hour + 1);
    int rc;

    if ((rc = reader_get(s, &c)))
        return rc;
    st = stmt(c, by_stmt[by]);

    bind_item(st, 1, it);
    sqlite3_bind_int64(st, 3, from_hour);
    sqlite3_bind_int64(st, 4, to_hour);
    *n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < cap) {
        out[*n].hour = sqlite3_column_int64(st, 0);
        out[*n].n = sqlite3_column_int64(st, 1);
        (*n)++;
    }
    rc = map_err(c->db, rc, "history");
    sqlite3_reset(st);
    reader_put(s, c);
    return rc;
}

/* One int64 from a one-row statement already bound; *null when it is NULL or absent. */
static int step_i64(struct conn *c, sqlite3_stmt *st, int64_t *v, bool *null)
{
    int rc = sqlite3_step(st);

    *null = rc != SQLITE_ROW || sqlite3_column_type(st, 0) == SQLITE_NULL;
    if (!*null)
        *v = sqlite3_column_int64(st, 0);
    rc = map_err(c->db, rc, sqlite3_sql(st));
    sqlite3_reset(st);
    return rc;
}

/*
 * Moves window w's mark towards the first hour the window holds at cur_hour: the
 * next hour that has rows is subtracted and the mark moved past it, in one
 * transaction, compare-and-set on the mark, so each hour leaves each window once,
 * even with two tallyd sweeping or a crash in between. *more: not there yet.
 */
static int sweep_window(struct conn *c, int w, int64_t cur_hour, bool *more, int64_t *held)
{
    int64_t target = cur_hour - window_hours[w] + 1, mark = 0, next = 0, to;
    sqlite3_stmt *st;
    bool null;
    int rc, got = 0;

    *held = INT64_MIN;
    if ((rc = run(c, S_BEGIN_WRITE)))
        goto out;
    st = stmt(c, S_MARKS);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (sqlite3_column_int64(st, 0) == window_hours[w])
            mark = sqlite3_column_int64(st, 1), got = 1;
    sqlite3_reset(st);
    *held = got ? mark : INT64_MIN;
    if ((rc = map_err(c->db, rc, "marks")) || !got || mark >= target)
        goto out;
    st = stmt(c, S_HOUR_NEXT);
    sqlite3_bind_int64(st, 1, mark);
    if ((rc = step_i64(c, st, &next, &null)))
        goto out;
    to = target;
    if (!null && next < target) {
        st = stmt(c, S_WINDOW_SUB);
        sqlite3_bind_int(st, 1, window_hours[w]);
        sqlite3_bind_int64(st, 2, next);
        if ((rc = exec_stmt(c, st)))
            goto out;
        to = next + 1;
    }
    st = stmt(c, S_MARK_CAS);
    sqlite3_bind_int(st, 1, window_hours[w]);
    sqlite3_bind_int64(st, 2, mark);
    sqlite3_bind_int64(st, 3, to);
    if ((rc = exec_stmt(c, st)))
        goto out;
    *held = to;
    *more = *more || to < target;
out:
    return finish(c, rc);
}

#define EXPIRE_ROWS 5000 /* hourly rows deleted per sweep step */

static int sqlite_sweep_windows(struct store *base, int64_t now_ms, int64_t retention_hours,
                                bool *more)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    int64_t cur = store__hour_of(now_ms), before = cur - retention_hours, held = 0;
    struct conn *c;
    sqlite3_stmt *st;
    int rc = 0;

    *more = false;
    for (int w = 0; w < WINDOW_COUNT && rc == 0; w++) {
        c = writer_get(s); /* one window per hold: likes wait for one step at most */
        rc = sweep_window(c, w, cur, more, &held);
        writer_put(s);
        if (held < before) /* an hour leaves the table only once every window let it go */
            before = held;
    }
    if (rc)
        return rc;
    c = writer_get(s);
    st = stmt(c, S_HOUR_EXPIRE);
    sqlite3_bind_int64(st, 1, before);
    sqlite3_bind_int(st, 2, EXPIRE_ROWS);
    rc = exec_stmt(c, st);
    if (rc == 0 && sqlite3_changes(c->db) == EXPIRE_ROWS)
        *more = true;
    writer_put(s);
    return rc;
}

/* Every window starts at the current hour: nothing is in it yet. */
static int init_marks(struct conn *c, int64_t now_ms)
{
    int rc = 0;

    for (int w = 0; w < WINDOW_COUNT && rc == 0; w++) {
        sqlite3_stmt *st = stmt(c, S_MARK_INIT);
        sqlite3_bind_int(st, 1, window_hours[w]);
        sqlite3_bind_int64(st, 2, store__hour_of(now_ms) - window_hours[w] + 1);
        rc = exec_stmt(c, st);
    }
    return rc;
}

static int insert_dead(struct conn *c, const char *topic, const struct read_event *ev,
                       const char *error, int64_t now_ms)
{
    sqlite3_stmt *st = stmt(c, S_DEAD_LETTER);

    bind_item(st, 1, &ev->item);
    sqlite3_bind_int64(st, 3, ev->uid);
    sqlite3_bind_int64(st, 4, ev->ts);
    if (ev->partition >= 0 && topic) {
        sqlite3_bind_text(st, 5, topic, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 6, ev->partition);
        sqlite3_bind_int64(st, 7, ev->offset);
    }
    sqlite3_bind_text(st, 8, error, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 9, now_ms);
    return exec_stmt(c, st);
}

static int sqlite_dead_letter(struct store *base, const struct read_event *ev, size_t n,
                              const char *topic, const struct store_offset *offs, size_t noffs,
                              const char *error, int64_t now_ms)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct conn *c = writer_get(s);
    int rc;

    if ((rc = run(c, S_BEGIN_WRITE)))
        goto out;
    for (size_t i = 0; i < noffs && rc == 0; i++)
        rc = move_offset(c, topic, &offs[i], now_ms);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = insert_dead(c, topic, &ev[i], error, now_ms);
out:
    rc = finish(c, rc);
    writer_put(s);
    return rc;
}

/* Runs a one-value query on a reader, topic bound to ?1 and, when partition >= 0, the
 * partition to ?2: *out is its value, or dflt when it has no row or gives NULL. */
static int reader_i64(struct sqlite_store *s, enum stmt which, const char *topic,
                      int32_t partition, int64_t dflt, int64_t *out)
{
    struct conn *c;
    sqlite3_stmt *st;
    int rc;

    *out = dflt;
    if ((rc = reader_get(s, &c)))
        return rc;
    st = stmt(c, which);
    sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC);
    if (partition >= 0)
        sqlite3_bind_int(st, 2, partition);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        *out = sqlite3_column_int64(st, 0);
    rc = map_err(c->db, rc, sqlite3_sql(st));
    sqlite3_reset(st);
    reader_put(s, c);
    return rc;
}

static int sqlite_load_offset(struct store *base, const char *topic, int32_t partition,
                              int64_t *next)
{
    return reader_i64((struct sqlite_store *)base, S_OFFSET_GET, topic, partition, -1, next);
}

static int sqlite_events_floor(struct store *base, const char *topic, int64_t *floor_ms)
{
    return reader_i64((struct sqlite_store *)base, S_EVENTS_FLOOR, topic, -1, INT64_MAX,
                      floor_ms);
}

static int sqlite_events_touch(struct store *base, const char *topic, const int32_t *parts,
                               size_t n, int64_t ms)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct conn *c = writer_get(s);
    int rc = 0;

    for (size_t i = 0; i < n && rc == 0; i++) { /* autocommit each: a raise is idempotent */
        sqlite3_stmt *st = stmt(c, S_EVENTS_TOUCH);

        sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, parts[i]);
        sqlite3_bind_int64(st, 3, ms);
        rc = exec_stmt(c, st);
    }
    writer_put(s);
    return rc;
}

static int sqlite_ping(struct store *base)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct conn *c;
    int rc;

    if ((rc = reader_get(s, &c)))
        return rc;
    rc = run(c, S_PING);

    reader_put(s, c);
    return rc;
}

static void sqlite_free(struct store *base)
{
    struct sqlite_store *s = (struct sqlite_store *)base;

    for (int i = 0; i < READERS; i++)
        conn_close(&s->readers[i]);
    conn_close(&s->writer);
    pthread_mutex_destroy(&s->write_lock);
    pool_release(&s->readers_pool);
    free(s->path);
    free(s);
}

/* ------------------------------------------------------------ administration (tallyctl) */

static const char *const import_sql[RECORD_INTERACTIVE_COUNT] = {
    [RECORD_ITEM] =
        "INSERT INTO interactive (biz, biz_id, read_cnt, like_cnt, collect_cnt, ctime, utime)"
        " VALUES (?1, ?2, ?3, 0, 0, ?6, ?7) ON CONFLICT (biz, biz_id) DO UPDATE SET"
        " read_cnt = max(read_cnt, excluded.read_cnt), ctime = min(ctime, excluded.ctime),"
        " utime = max(utime, excluded.utime)"
        " WHERE excluded.read_cnt > read_cnt OR excluded.ctime < ctime"
        " OR excluded.utime > utime",
    [RECORD_LIKE] =
        "INSERT INTO user_like (uid, biz, biz_id, status, ctime, utime)"
        " VALUES (?4, ?1, ?2, ?5, ?6, ?7) ON CONFLICT (uid, biz, biz_id) DO UPDATE SET"
        " status = CASE WHEN excluded.utime > utime THEN excluded.status ELSE status END,"
        " ctime = min(ctime, excluded.ctime), utime = max(utime, excluded.utime)"
        " WHERE excluded.utime > utime OR excluded.ctime < ctime",
    [RECORD_COLLECTION] =
        "INSERT INTO user_collection (uid, cid, biz, biz_id, status, ctime, utime)"
        " VALUES (?4, ?3, ?1, ?2, ?5, ?6, ?7) ON CONFLICT (uid, biz, biz_id) DO UPDATE SET"
        " status = CASE WHEN excluded.utime > utime THEN excluded.status ELSE status END,"
        " cid = CASE WHEN excluded.utime > utime THEN excluded.cid ELSE cid END,"
        " ctime = min(ctime, excluded.ctime), utime = max(utime, excluded.utime)"
        " WHERE excluded.utime > utime OR excluded.ctime < ctime",
};

/* Sets an item's like/collect counts to its active rows, creating it when missing. */
#define RECOUNT_SQL                                                                          \
    "INSERT INTO interactive (biz, biz_id, read_cnt, like_cnt, collect_cnt, ctime, utime)"  \
    " VALUES (?1, ?2, 0,"                                                                    \
    " (SELECT count(*) FROM user_like WHERE biz = ?1 AND biz_id = ?2 AND status = 1),"       \
    " (SELECT count(*) FROM user_collection WHERE biz = ?1 AND biz_id = ?2 AND status = 1)," \
    " ?3, ?4) ON CONFLICT (biz, biz_id) DO UPDATE SET like_cnt = excluded.like_cnt,"         \
    " collect_cnt = excluded.collect_cnt"                                                    \
    " WHERE like_cnt != excluded.like_cnt OR collect_cnt != excluded.collect_cnt"

static int prepare_once(struct conn *c, const char *sql, sqlite3_stmt **out)
{
    int rc = sqlite3_prepare_v2(c->db, sql, -1, out, NULL);
    return rc == SQLITE_OK ? 0 : map_err(c->db, rc, "prepare");
}

/* Copies column `at` (a biz) into it; refuses what no tallyd wrote. */
static int column_biz(sqlite3_stmt *st, int at, struct item *it)
{
    const unsigned char *biz = sqlite3_column_text(st, at);
    size_t len = (size_t)sqlite3_column_bytes(st, at);

    if (!biz || len > ITEM_BIZ_MAX) {
        log_error("sqlite: a row's biz is not a valid biz");
        return TALLY_EINTERNAL;
    }
    memcpy(it->biz, biz, len);
    it->biz[len] = '\0';
    return 0;
}

/* Emits one table, page after page, inside the caller's read transaction. */
static int export_table(struct conn *c, enum record_type type,
                        int (*emit)(void *arg, const struct record *r), void *arg)
{
    sqlite3_stmt *st;
    int64_t after = 0;
    size_t got;
    int rc;

    if ((rc = prepare_once(c, store__export_sql[type], &st)))
        return rc;
    do {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, after);
        sqlite3_bind_int64(st, 2, STORE_EXPORT_PAGE);
        got = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            struct record r = {.type = type};

            after = sqlite3_column_int64(st, 0);
            got++;
            if ((rc = column_biz(st, 1, &r.item)))
                goto out;
            r.item.id = sqlite3_column_int64(st, 2);
            r.uid = sqlite3_column_int64(st, 3);
            r.cid = sqlite3_column_int64(st, 4);
            r.status = sqlite3_column_int(st, 5);
            r.counts.read_cnt = sqlite3_column_int64(st, 6);
            r.counts.like_cnt = sqlite3_column_int64(st, 7);
            r.counts.collect_cnt = sqlite3_column_int64(st, 8);
            r.ctime = sqlite3_column_int64(st, 9);
            r.utime = sqlite3_column_int64(st, 10);
            if ((rc = emit(arg, &r)))
                goto out;
        }
        if ((rc = map_err(c->db, rc, "export")))
            goto out;
    } while (got == STORE_EXPORT_PAGE);
out:
    sqlite3_finalize(st);
    return rc;
}

/*
 * The other tables, in admin.h's columns, a page after the last key: params says
 * what to bind to ?1, ?2... (s, a or b of struct store__key), then the page size. A
 * row value "(a, b) > (?, ?)" is read from the table's own index.
 */
struct export_part {
    enum record_type type;
    int memo;
    const char *params, *sql;
};
#define NO_TEXT "NULL, NULL, NULL, "
static const struct export_part export_parts[] = {
    {RECORD_MARK, 0, "a",
     "SELECT " NO_TEXT "win, hour, 0, 0, 0, 0, 0, 0 FROM window_mark WHERE win > ?1"
     " ORDER BY win LIMIT ?2"},
    {RECORD_HOUR, 0, "sab",
     "SELECT biz, NULL, NULL, biz_id, hour, read_cnt, like_cnt, collect_cnt, 0, 0, 0"
     " FROM interactive_hour WHERE (biz, biz_id, hour) > (?1, ?2, ?3)"
     " ORDER BY biz, biz_id, hour LIMIT ?4"},
    {RECORD_WINDOW, 0, "sab",
     "SELECT biz, NULL, NULL, win, biz_id, read_cnt, like_cnt, collect_cnt, 0, 0, 0"
     " FROM interactive_window WHERE (biz, win, biz_id) > (?1, ?2, ?3)"
     " ORDER BY biz, win, biz_id LIMIT ?4"},
    {RECORD_MEMO, MEMO_IDEM, "a",
     "SELECT " NO_TEXT "k, ms, 0, 0, 0, 0, 0, 0 FROM read_idem WHERE k >= ?1 ORDER BY k LIMIT ?2"},
    {RECORD_MEMO, MEMO_SEEN, "a",
     "SELECT " NO_TEXT "k, ms, 0, 0, 0, 0, 0, 0 FROM read_seen WHERE k >= ?1 ORDER BY k LIMIT ?2"},
    {RECORD_DEAD_LETTER, 0, "a", STORE__DEAD_EXPORT_SQL},
    {RECORD_OFFSET, 0, "sa",
     "SELECT topic, NULL, NULL, part, next_offset, utime, event_ms, 0, 0, 0, 0 FROM read_offsets"
     " WHERE (topic, part) > (?1, ?2) ORDER BY topic, part LIMIT ?3"},
};

/* The current row of st, in admin.h's columns. */
static void column_row(sqlite3_stmt *st, struct store__row *row)
{
    for (int i = 0; i < STORE__TEXTS; i++) {
        const unsigned char *t;

        row->text_null[i] = sqlite3_column_type(st, i) == SQLITE_NULL; /* before converting */
        t = sqlite3_column_text(st, i);
        row->len[i] = t ? (size_t)sqlite3_column_bytes(st, i) : 0;
        if (t) /* a longer text is cut to one byte more than the longest allowed */
            memcpy(row->text[i], t,
                   row->len[i] < sizeof(row->text[i]) ? row->len[i] : sizeof(row->text[i]));
    }
    for (int i = 0; i < STORE__INTS; i++) {
        row->null[i] = sqlite3_column_type(st, STORE__TEXTS + i) == SQLITE_NULL;
        row->v[i] = sqlite3_column_int64(st, STORE__TEXTS + i);
    }
}

/* Emits one of the other tables, page after page, inside the caller's read transaction. */
static int export_part(struct conn *c, const struct export_part *p,
                       int (*emit)(void *arg, const struct record *r), void *arg)
{
    struct store__key k;
    struct store__row row;
    struct record r;
    sqlite3_stmt *st;
    size_t got;
    int rc, at;

    store__key_start(&k);
    if ((rc = prepare_once(c, p->sql, &st)))
        return rc;
    do {
        sqlite3_reset(st);
        at = 1;
        for (const char *q = p->params; *q; q++) /* copied: k moves while the page is read */
            if (*q == 's')
                sqlite3_bind_text(st, at++, k.s, -1, SQLITE_TRANSIENT);
            else
                sqlite3_bind_int64(st, at++, *q == 'a' ? k.a : k.b);
        sqlite3_bind_int64(st, at, STORE_EXPORT_PAGE);
        got = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            got++;
            column_row(st, &row);
            if ((rc = store__export_row(p->type, p->memo, &row, &r, &k)) || (rc = emit(arg, &r)))
                goto out;
        }
        if ((rc = map_err(c->db, rc, "export")))
            goto out;
    } while (got == STORE_EXPORT_PAGE && !k.done);
out:
    sqlite3_finalize(st);
    return rc;
}

/* One read transaction: WAL keeps its snapshot while tallyd goes on writing. */
static int sqlite_export(struct store *base, int (*emit)(void *arg, const struct record *r),
                         void *arg)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct conn *c;
    int rc;

    if ((rc = reader_get(s, &c)))
        return rc;
    rc = run(c, S_BEGIN);

    for (int t = 0; t < RECORD_INTERACTIVE_COUNT && rc == 0; t++)
        rc = export_table(c, (enum record_type)t, emit, arg);
    for (size_t i = 0; i < sizeof(export_parts) / sizeof(export_parts[0]) && rc == 0; i++)
        rc = export_part(c, &export_parts[i], emit, arg);
    rc = finish(c, rc);
    reader_put(s, c);
    return rc;
}

static int import_one(struct conn *c, sqlite3_stmt *st, const struct record *r, size_t *changed)
{
    int rc;

    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    bind_item(st, 1, &r->item);
    sqlite3_bind_int64(st, 3, r->type == RECORD_ITEM ? r->counts.read_cnt : r->cid);
    sqlite3_bind_int64(st, 4, r->uid);
    sqlite3_bind_int(st, 5, r->status);
    sqlite3_bind_int64(st, 6, r->ctime);
    sqlite3_bind_int64(st, 7, r->utime);
    if ((rc = exec_stmt(c, st)) == 0)
        *changed += (size_t)sqlite3_changes(c->db);
    return rc;
}

static int recount_one(struct conn *c, sqlite3_stmt *st, const struct item *it, int64_t ctime,
                       int64_t utime, size_t *changed)
{
    int rc;

    sqlite3_reset(st);
    bind_item(st, 1, it);
    sqlite3_bind_int64(st, 3, ctime);
    sqlite3_bind_int64(st, 4, utime);
    if ((rc = exec_stmt(c, st)) == 0)
        *changed += (size_t)sqlite3_changes(c->db);
    return rc;
}

/*
 * The other tables' rules (store.h, import). A window's mark only moves forward:
 * the hours it passes leave the window's sums, as a sweep would take them.
 */
enum { I_OFFSET, I_IDEM, I_SEEN, I_WINDOW, I_MARK_SUB, I_MARK_SET, I_STMT_COUNT };
static const char *const import_more_sql[I_STMT_COUNT] = {
    [I_OFFSET] = "INSERT INTO read_offsets (topic, part, next_offset, utime, event_ms)"
                 " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (topic, part) DO NOTHING",
    [I_IDEM] = "INSERT INTO read_idem (k, ms) VALUES (?1, ?2)"
               " ON CONFLICT (k) DO UPDATE SET ms = excluded.ms WHERE excluded.ms > ms",
    [I_SEEN] = "INSERT INTO read_seen (k, ms) VALUES (?1, ?2)"
               " ON CONFLICT (k) DO UPDATE SET ms = excluded.ms WHERE excluded.ms > ms",
    [I_WINDOW] = "INSERT INTO interactive_window"
                 " (biz, biz_id, win, read_cnt, like_cnt, collect_cnt)"
                 " VALUES (?1, ?2, ?3, 0, 0, 0) ON CONFLICT (biz, win, biz_id) DO NOTHING",
    [I_MARK_SUB] = "INSERT INTO interactive_window"
                   " (biz, biz_id, win, read_cnt, like_cnt, collect_cnt)"
                   " SELECT biz, biz_id, ?1, -sum(read_cnt), -sum(like_cnt), -sum(collect_cnt)"
                   " FROM interactive_hour WHERE hour >= ?2 AND hour < ?3"
                   " GROUP BY biz, biz_id" WINDOW_TAIL,
    [I_MARK_SET] = "UPDATE window_mark SET hour = ?2 WHERE win = ?1",
};

/* Runs st (bound) and adds the rows it changed. */
static int exec_counted(struct conn *c, sqlite3_stmt *st, size_t *changed)
{
    int rc = exec_stmt(c, st);

    if (rc == 0)
        *changed += (size_t)sqlite3_changes(c->db);
    return rc;
}

/* Offsets and memos: before the items, in the order tallyd's read consumer writes. */
static int import_positions(struct conn *c, sqlite3_stmt **im, const struct record *r, size_t n,
                            size_t *changed)
{
    int rc = 0;

    for (size_t i = 0; i < n && rc == 0; i++) {
        sqlite3_stmt *st;

        if (r[i].type == RECORD_OFFSET) {
            st = im[I_OFFSET];
            sqlite3_reset(st);
            sqlite3_bind_text(st, 1, r[i].topic, -1, SQLITE_STATIC);
            sqlite3_bind_int(st, 2, r[i].partition);
            sqlite3_bind_int64(st, 3, r[i].offset);
            sqlite3_bind_int64(st, 4, r[i].utime);
            sqlite3_bind_int64(st, 5, r[i].ms);
        } else if (r[i].type == RECORD_MEMO) {
            st = im[r[i].memo == MEMO_IDEM ? I_IDEM : I_SEEN];
            sqlite3_reset(st);
            sqlite3_bind_int64(st, 1, r[i].key);
            sqlite3_bind_int64(st, 2, r[i].ms);
        } else {
            continue;
        }
        rc = exec_counted(c, st, changed);
    }
    return rc;
}

/* Marks first (a later one moves the window on), then hours, then windows' rows. */
static int import_windows(struct conn *c, sqlite3_stmt **im, const struct record *r, size_t n,
                          size_t *changed)
{
    struct store_row *rows = NULL, *stored = NULL;
    int64_t mark[WINDOW_COUNT];
    size_t nrows = 0, ns = 0, left = 0;
    int rc = 0;

    for (size_t i = 0; i < n && rc == 0; i++) {
        int w = 0;

        if (r[i].type != RECORD_MARK)
            continue;
        if ((rc = read_marks(c, mark)))
            break;
        while (window_hours[w] != r[i].win) /* the record was checked: one of them */
            w++;
        if (mark[w] == INT64_MAX) {
            log_error("sqlite: window %s has no mark", window_names[w]);
            rc = TALLY_EINTERNAL;
        } else if (r[i].hour > mark[w]) {
            sqlite3_reset(im[I_MARK_SUB]);
            sqlite3_bind_int(im[I_MARK_SUB], 1, r[i].win);
            sqlite3_bind_int64(im[I_MARK_SUB], 2, mark[w]);
            sqlite3_bind_int64(im[I_MARK_SUB], 3, r[i].hour);
            sqlite3_reset(im[I_MARK_SET]);
            sqlite3_bind_int(im[I_MARK_SET], 1, r[i].win);
            sqlite3_bind_int64(im[I_MARK_SET], 2, r[i].hour);
            if ((rc = exec_stmt(c, im[I_MARK_SUB])) == 0)
                rc = exec_counted(c, im[I_MARK_SET], changed);
        }
    }
    nrows = rc ? 0 : store__hour_rows(r, n, &rows);
    stored = xmalloc((nrows ? nrows : 1) * sizeof(*stored));
    for (size_t done = 0, k; done < nrows && rc == 0; done += k) {
        struct strbuf sql = STRBUF_INIT;
        sqlite3_stmt *st;
        int step = SQLITE_DONE;

        k = nrows - done < UPSERT_CHUNK ? nrows - done : UPSERT_CHUNK;
        store__hour_lookup_sql(&sql, k);
        rc = prepare_once(c, sql.buf, &st);
        strbuf_release(&sql);
        if (rc)
            break;
        for (size_t i = 0; i < k; i++) {
            bind_item(st, (int)i * 3 + 1, &rows[done + i].item);
            sqlite3_bind_int64(st, (int)i * 3 + 3, rows[done + i].key);
        }
        while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
            struct store_row *o = &stored[ns++]; /* a key matches one row at most */

            rc = column_biz(st, 0, &o->item);
            o->item.id = sqlite3_column_int64(st, 1);
            o->key = sqlite3_column_int64(st, 2);
            for (int f = 0; f < FIELD_COUNT; f++)
                o->v[f] = sqlite3_column_int64(st, 3 + f);
        }
        if (rc == 0)
            rc = map_err(c->db, step, "hour lookup");
        sqlite3_finalize(st);
    }
    if (rc == 0 && (rc = store__hour_deltas(rows, nrows, stored, ns, &left)) == 0 &&
        (rc = add_hourly(c, rows, left)) == 0)
        *changed += left;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (r[i].type != RECORD_WINDOW)
            continue;
        sqlite3_reset(im[I_WINDOW]);
        bind_item(im[I_WINDOW], 1, &r[i].item);
        sqlite3_bind_int(im[I_WINDOW], 3, r[i].win);
        rc = exec_counted(c, im[I_WINDOW], changed);
    }
    free(rows);
    free(stored);
    return rc;
}

/* Inserts dead letter d until the table holds d->n rows like it; it holds `have`. */
static int insert_dead_copies(struct conn *c, const struct record *d, int64_t have,
                              size_t *changed)
{
    int rc = 0;

    for (; have < d->n && rc == 0; have++) {
        sqlite3_stmt *st = stmt(c, S_DEAD_LETTER);

        bind_item(st, 1, &d->item);
        sqlite3_bind_int64(st, 3, d->uid);
        sqlite3_bind_int64(st, 4, d->ts);
        if (d->has_topic)
            sqlite3_bind_text(st, 5, d->topic, -1, SQLITE_STATIC);
        if (d->has_partition)
            sqlite3_bind_int(st, 6, d->partition);
        if (d->has_offset)
            sqlite3_bind_int64(st, 7, d->offset);
        sqlite3_bind_text(st, 8, d->error, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 9, d->ctime);
        if ((rc = exec_stmt(c, st)) == 0)
            (*changed)++;
    }
    return rc;
}

static int dead_ptr_cmp(const void *a, const void *b)
{
    return store__dead_cmp(*(const struct record *const *)a, *(const struct record *const *)b);
}

static int dead_cmp(const void *a, const void *b)
{
    return store__dead_cmp(a, b);
}

/*
 * Dead letters, UPSERT_CHUNK at a time: the identical groups the table holds among
 * the rows of those ctimes (the table has no other index to look them up by), then
 * the copies each record still lacks.
 */
static int import_dead(struct conn *c, const struct record *r, size_t n, size_t *changed)
{
    const struct record **d = xmalloc((n ? n : 1) * sizeof(*d));
    struct record *have = NULL;
    size_t nd = 0, cap = 0;
    int rc = 0;

    for (size_t i = 0; i < n; i++)
        if (r[i].type == RECORD_DEAD_LETTER)
            d[nd++] = &r[i];
    qsort(d, nd, sizeof(*d), dead_ptr_cmp); /* identical records side by side */
    for (size_t done = 0, k; done < nd && rc == 0; done += k) {
        struct strbuf sql = STRBUF_INIT;
        struct store__key key;
        struct store__row row;
        sqlite3_stmt *st;
        size_t nh = 0;
        int step = SQLITE_DONE;

        k = nd - done < UPSERT_CHUNK ? nd - done : UPSERT_CHUNK;
        store__dead_lookup_sql(&sql, k);
        rc = prepare_once(c, sql.buf, &st);
        strbuf_release(&sql);
        if (rc)
            break;
        for (size_t i = 0; i < k; i++)
            sqlite3_bind_int64(st, (int)i + 1, d[done + i]->ctime);
        while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
            if (nh == cap) /* other dead letters may share those ctimes */
                have = xrealloc(have, (cap = cap ? 2 * cap : 64) * sizeof(*have));
            column_row(st, &row);
            rc = store__export_row(RECORD_DEAD_LETTER, 0, &row, &have[nh++], &key);
        }
        if (rc == 0)
            rc = map_err(c->db, step, "dead letter lookup");
        sqlite3_finalize(st);
        if (nh) /* have is NULL until a first group */
            qsort(have, nh, sizeof(*have), dead_cmp);
        for (size_t i = 0; i < k && rc == 0; i++) {
            const struct record *h =
                nh ? bsearch(d[done + i], have, nh, sizeof(*have), dead_cmp) : NULL;
            int64_t n_have = h ? h->n : 0;

            /* an identical record just before in this chunk: its copies are there now */
            if (i && store__dead_cmp(d[done + i - 1], d[done + i]) == 0 &&
                d[done + i - 1]->n > n_have)
                n_have = d[done + i - 1]->n;
            rc = insert_dead_copies(c, d[done + i], n_have, changed);
        }
    }
    free(have);
    free(d);
    return rc;
}

static int sqlite_import(struct store *base, const struct record *r, size_t n, int64_t now_ms,
                         size_t *changed, struct counts *after)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct conn *c = writer_get(s);
    sqlite3_stmt *up[RECORD_INTERACTIVE_COUNT] = {NULL}, *im[I_STMT_COUNT] = {NULL};
    sqlite3_stmt *recount = NULL;
    struct store__touched *t = NULL;
    size_t nt = store__touched(r, n, &t), k = 0;
    int rc = 0;

    (void)now_ms;
    *changed = 0;
    for (int i = 0; i < RECORD_INTERACTIVE_COUNT && rc == 0; i++)
        rc = prepare_once(c, import_sql[i], &up[i]);
    for (int i = 0; i < I_STMT_COUNT && rc == 0; i++)
        rc = prepare_once(c, import_more_sql[i], &im[i]);
    if (rc || (rc = prepare_once(c, RECOUNT_SQL, &recount)) || (rc = run(c, S_BEGIN_WRITE)))
        goto out;
    rc = import_positions(c, im, r, n, changed);
    for (size_t i = 0; i < n && rc == 0; i++)
        if (r[i].type < RECORD_INTERACTIVE_COUNT)
            rc = import_one(c, up[r[i].type], &r[i], changed);
    for (size_t i = 0; i < nt && rc == 0; i++)
        rc = recount_one(c, recount, &t[i].item, t[i].ctime, t[i].utime, changed);
    for (size_t i = 0; i < n && rc == 0 && after; i++)
        if (r[i].type == RECORD_ITEM)
            rc = read_counts(c, &r[i].item, &after[k++]);
    if (rc == 0)
        rc = import_windows(c, im, r, n, changed);
    if (rc == 0)
        rc = import_dead(c, r, n, changed);
    rc = finish(c, rc);
out:
    for (int i = 0; i < RECORD_INTERACTIVE_COUNT; i++)
        sqlite3_finalize(up[i]);
    for (int i = 0; i < I_STMT_COUNT; i++)
        sqlite3_finalize(im[i]);
    sqlite3_finalize(recount);
    writer_put(s);
    free(t);
    return rc;
}

static int sqlite_scan_counts(struct store *base, int64_t after, size_t limit,
                              struct count_check *out, size_t *n)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct conn *c;
    sqlite3_stmt *st = NULL;
    int rc;

    if ((rc = reader_get(s, &c)))
        return rc;
    *n = 0;
    if ((rc = prepare_once(c, STORE__SCAN_SQL, &st)))
        goto out;
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, (int64_t)limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct count_check *e = &out[*n];

        memset(e, 0, sizeof(*e));
        e->row_id = sqlite3_column_int64(st, 0);
        if ((rc = column_biz(st, 1, &e->item)))
            goto out;
        e->item.id = sqlite3_column_int64(st, 2);
        e->stored.read_cnt = sqlite3_column_int64(st, 3);
        e->stored.like_cnt = sqlite3_column_int64(st, 4);
        e->stored.collect_cnt = sqlite3_column_int64(st, 5);
        e->likes = sqlite3_column_int64(st, 6);
        e->collects = sqlite3_column_int64(st, 7);
        (*n)++;
    }
    rc = map_err(c->db, rc, "scan counts");
out:
    sqlite3_finalize(st);
    reader_put(s, c);
    return rc;
}

static int sqlite_recount(struct store *base, const struct item *items, size_t n, int64_t now_ms,
                          size_t *changed)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct conn *c = writer_get(s);
    sqlite3_stmt *st = NULL;
    int rc;

    *changed = 0;
    if ((rc = prepare_once(c, RECOUNT_SQL, &st)) || (rc = run(c, S_BEGIN_WRITE)))
        goto out;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = recount_one(c, st, &items[i], now_ms, now_ms, changed);
    rc = finish(c, rc);
out:
    sqlite3_finalize(st);
    writer_put(s);
    return rc;
}

/* The first column of sql's first row as an integer; -1 when it has no row. */
static int query_i64(struct conn *c, const char *sql, int64_t *out)
{
    sqlite3_stmt *st;
    int rc;

    if ((rc = prepare_once(c, sql, &st)))
        return rc;
    *out = -1;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    rc = map_err(c->db, rc, sql);
    sqlite3_finalize(st);
    return rc;
}

/* PRAGMA integrity_check: "ok", or up to 10 problems (the first is shown). */
static bool check_integrity(struct conn *c, struct strbuf *detail)
{
    sqlite3_stmt *st;
    int rc, problems = 0;

    if (sqlite3_prepare_v2(c->db, "PRAGMA integrity_check(10)", -1, &st, NULL) != SQLITE_OK) {
        strbuf_addstr(detail, sqlite3_errmsg(c->db));
        return false;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *msg = (const char *)sqlite3_column_text(st, 0);

        if (msg && strcmp(msg, "ok") == 0)
            continue;
        if (problems++ == 0)
            strbuf_addstr(detail, msg ? msg : "?");
    }
    if (rc != SQLITE_DONE) {
        if (problems++ == 0)
            strbuf_addstr(detail, sqlite3_errmsg(c->db));
    } else if (problems > 1) {
        strbuf_addf(detail, " (and %d more%s)", problems - 1, problems == 10 ? " at least" : "");
    }
    sqlite3_finalize(st);
    if (problems == 0)
        strbuf_addstr(detail, "ok");
    return problems == 0;
}

/* The current row of a check query (admin.h, struct store__check_row), with the kind of
 * each value read from its table: SQLite takes any kind in any column. */
static void check_columns(sqlite3_stmt *st, struct store__check_row *row)
{
    int n = sqlite3_column_count(st);

    memset(row, 0, sizeof(*row));
    for (int i = 0; i < STORE__TEXTS; i++) {
        int type = sqlite3_column_type(st, i); /* before converting */
        const unsigned char *t;

        row->text_null[i] = type == SQLITE_NULL;
        row->not_text[i] = type != SQLITE_NULL && type != SQLITE_TEXT;
        t = sqlite3_column_text(st, i);
        row->len[i] = t ? (size_t)sqlite3_column_bytes(st, i) : 0;
        if (t)
            memcpy(row->text[i], t,
                   row->len[i] < sizeof(row->text[i]) ? row->len[i] : sizeof(row->text[i]));
    }
    for (int i = 0; i < STORE__CHECK_INTS; i++) {
        int type = i + STORE__TEXTS < n ? sqlite3_column_type(st, i + STORE__TEXTS)
                                        : SQLITE_NULL;

        row->null[i] = type == SQLITE_NULL;
        row->not_int[i] = type != SQLITE_NULL && type != SQLITE_INTEGER;
        if (!row->null[i])
            row->v[i] = sqlite3_column_int64(st, i + STORE__TEXTS);
    }
}

/* Reads one part of the check, page after page (each page one statement: one snapshot). */
static void check_part(struct conn *c, const struct store__check_sql *q, struct store__check *ck)
{
    const char *params = q->params[0];
    sqlite3_value *last[8] = {NULL}; /* the last row's key, as it is stored */
    sqlite3_stmt *st[2] = {NULL, NULL};
    size_t nparams = strlen(params), got;
    int rc = SQLITE_OK;

    TALLY_ASSERT(nparams <= sizeof(last) / sizeof(last[0]));
    store__check_part(ck, q->part);
    for (int next = 0; next < 2 && rc == SQLITE_OK; next++) {
        struct strbuf sql = STRBUF_INIT;

        strbuf_addf(&sql, "%s(%s)%s", q->head, next ? q->after[0] : "1 = 1", q->tail);
        rc = sqlite3_prepare_v2(c->db, sql.buf, (int)sql.len, &st[next], NULL);
        strbuf_release(&sql);
    }
    for (bool first = true; rc == SQLITE_OK; first = false) {
        sqlite3_stmt *page = st[!first];
        struct store__check_row row;
        int at = 1;

        sqlite3_reset(page);
        for (size_t i = 0; i < nparams && !first; i++)
            sqlite3_bind_value(page, at++, last[i]);
        sqlite3_bind_int(page, at, STORE__CHECK_PAGE);
        got = 0;
        while ((rc = sqlite3_step(page)) == SQLITE_ROW) {
            got++;
            check_columns(page, &row);
            store__check_row(ck, q->part, &row);
            for (size_t i = 0; i < nparams; i++) {
                int col = params[i] >= 'a' ? STORE__TEXTS + params[i] - 'a' : params[i] - '0';

                sqlite3_value_free(last[i]);
                last[i] = sqlite3_value_dup(sqlite3_column_value(page, col));
                TALLY_ASSERT(last[i] != NULL); /* out of memory */
            }
        }
        if (rc != SQLITE_DONE)
            break;
        rc = SQLITE_OK;
        store__check_page(ck);
        if (got == 0)
            break;
    }
    if (rc != SQLITE_OK)
        store__check_fail(ck, sqlite3_errmsg(c->db));
    for (size_t i = 0; i < nparams; i++)
        sqlite3_value_free(last[i]);
    sqlite3_finalize(st[0]);
    sqlite3_finalize(st[1]);
}

static int sqlite_check(struct store *base, const struct store_check_out *out)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct store__check ck;
    struct conn *c;
    struct strbuf d = STRBUF_INIT;
    int64_t v = -1;
    bool ok;
    int rc;

    if ((rc = reader_get(s, &c)))
        return rc;
    ok = query_i64(c, "PRAGMA user_version", &v) == 0 && v == SCHEMA_VERSION;
    strbuf_addf(&d, "version %lld (this build: %d)", (long long)v, SCHEMA_VERSION);
    out->check(out->arg, ok, "schema", d.buf);

    strbuf_reset(&d);
    ok = check_integrity(c, &d);
    out->check(out->arg, ok, "integrity", d.buf);
    strbuf_release(&d);

    store__check_init(&ck, out, SCHEMA_VERSION);
    for (int p = 0; p < STORE__CHECK_PARTS; p++)
        if (store__check_sql[p].after[0])
            check_part(c, &store__check_sql[p], &ck);
    store__check_done(&ck);
    reader_put(s, c);
    return 0;
}

/*
 * The backup reads inside one read transaction of its own connection, so
 * in WAL mode it copies one snapshot while tallyd commits beside it and is
 * never restarted by those commits.
 */
static int sqlite_backup(struct store *base, const char *dest,
                         void (*progress)(void *arg, int64_t done, int64_t total), void *arg)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3 *src = NULL, *dst = NULL;
    sqlite3_backup *b = NULL;
    int rc;

    if (access(dest, F_OK) == 0) /* never overwrite: the caller says so */
        return TALLY_EINVAL;
    rc = sqlite3_open_v2(s->path, &src, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_open_v2(dest, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        rc = map_err(dst ? dst : src, rc, "backup open");
        goto out;
    }
    sqlite3_busy_timeout(src, 5000);
    if ((rc = exec_sql(src, "BEGIN; SELECT count(*) FROM sqlite_schema;")))
        goto out;
    if (!(b = sqlite3_backup_init(dst, "main", src, "main"))) {
        rc = map_err(dst, sqlite3_errcode(dst), "backup init");
        goto out;
    }
    do {
        rc = sqlite3_backup_step(b, 1024);
        if (progress)
            progress(arg, sqlite3_backup_pagecount(b) - sqlite3_backup_remaining(b),
                     sqlite3_backup_pagecount(b));
        if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
            sqlite3_sleep(10);
    } while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
    rc = rc == SQLITE_DONE ? 0 : map_err(dst, rc, "backup step");
out:
    if (b && sqlite3_backup_finish(b) != SQLITE_OK && rc == 0)
        rc = map_err(dst, sqlite3_errcode(dst), "backup finish");
    if (src && !sqlite3_get_autocommit(src))
        exec_sql(src, "COMMIT");
    sqlite3_close(src);
    sqlite3_close(dst);
    if (rc && dst)
        unlink(dest);
    return rc;
}

static const struct store_ops sqlite_ops = {
    .name = "sqlite",
    .counts = sqlite_counts,
    .flags = sqlite_flags,
    .set_like = sqlite_set_like,
    .set_collect = sqlite_set_collect,
    .user_items = sqlite_user_items,
    .erase_rows = sqlite_erase_rows,
    .list_likes = sqlite_list_likes,
    .list_collection = sqlite_list_collection,
    .top = sqlite_top,
    .top_window = sqlite_top_window,
    .history = sqlite_history,
    .apply_reads = sqlite_apply_reads,
    .sweep_windows = sqlite_sweep_windows,
    .expire_memos = sqlite_expire_memos,
    .dead_letter = sqlite_dead_letter,
    .load_offset = sqlite_load_offset,
    .events_floor = sqlite_events_floor,
    .events_touch = sqlite_events_touch,
    .ping = sqlite_ping,
    .free = sqlite_free,
    .export_rows = sqlite_export,
    .import = sqlite_import,
    .scan_counts = sqlite_scan_counts,
    .recount = sqlite_recount,
    .check = sqlite_check,
    .backup = sqlite_backup,
};

int store_sqlite_open(const char *path, struct store **out, char **err)
{
    struct sqlite_store *s = xcalloc(1, sizeof(*s));
    int rc;

    s->base.ops = &sqlite_ops;
    s->path = xstrdup(path);
    pthread_mutex_init(&s->write_lock, NULL);
    pool_init(&s->readers_pool, "sqlite", READERS, READER_WAIT_MS);
    if ((rc = conn_open(&s->writer, path, true)) || (rc = init_marks(&s->writer, clock_now_ms())))
        goto fail;
    for (int i = 0; i < READERS; i++) {
        if ((rc = conn_open(&s->readers[i], path, false)))
            goto fail;
        pool_put(&s->readers_pool, &s->readers[i]);
    }
    *out = &s->base;
    return 0;
fail:
    *err = xstrfmt("cannot open sqlite store '%s': %s", path, tally_strerror(rc));
    sqlite_free(&s->base);
    return rc;
}
