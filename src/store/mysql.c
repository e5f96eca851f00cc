/*
 * mysql.c - the production store: MySQL / MariaDB through MariaDB Connector/C.
 *
 * DESIGN
 *   A small pool of connections (default 20), each used by one thread at a
 *   time, each holding its prepared statements. Statements with an IN list
 *   or a multi-row VALUES list are prepared once per size on first use and
 *   kept, so the steady state never parses SQL.
 *
 *   A like or a collection is one round trip: a CALL of a stored procedure
 *   (migration 6) that runs the whole transaction in the server and answers
 *   with one row (whether a count moved, the counts, the user's flags).
 *   Statements sent one by one cost a round trip each, and on a busy
 *   two-core machine each round trip is two context switches and a TCP
 *   wakeup on both sides: 5.5 of them per like held likes near 3,000/s.
 *   Transitions come from what the write did: the like upsert reports 1
 *   affected row for an insert, 2 for a row it changed and 0 for a row that
 *   was already active (no CLIENT_FOUND_ROWS, so ROW_COUNT() says the same),
 *   so the count moves exactly when a like becomes active, with no
 *   read-then-write. Collections lock the user's row (SELECT ... FOR UPDATE)
 *   because a move changes the row but not the count.
 *
 *   Failure: any client-side error (CR_*) marks the connection broken; it is
 *   closed and reopened on its next use, and the call reports
 *   TALLY_EUNAVAIL. Connect, read and write timeouts keep a dead or hung
 *   server from blocking a caller for more than about two seconds. InnoDB
 *   deadlocks and lock wait timeouts retry the whole transaction, and so do
 *   Galera's certification failures, which MariaDB reports as deadlocks.
 *   A connection lost in the middle of a commit leaves its outcome unknown:
 *   the caller sees TALLY_EUNAVAIL and may run it again, which every write
 *   here allows (a like sets a state; a read batch's offsets compare-and-set
 *   in the same transaction say whether it committed).
 *
 *   TLS: ?ssl=1 makes every connection TLS or none (MYSQL_OPT_SSL_ENFORCE);
 *   with ssl_ca the server's certificate must chain to that CA and name the
 *   host. The password is handed to Connector/C only and never printed.
 *   db_connect is the one place a connection is set up; tallyctl's course
 *   import gets its connection from it too (store_mysql_connect).
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
#include <unistd.h>

#include "util/clock.h"
#include "store/admin.h"
#include "util/error.h"
#include "util/log.h"
#include "util/pool.h"
#include "util/strbuf.h"
#include "util/url.h"
#include "util/xmalloc.h"
#include "util/banned.h"

#define POOL_MAX     1024 /* ?pool=N; by default pool_size_for(--workers) (util/pool.h) */
#define POOL_WAIT_MS 2000 /* a call that finds every connection taken this long: 503 */
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
    /* 2 -> 3: an item's active rows, counted by tallyctl's recount and import. */
    "CREATE INDEX IF NOT EXISTS user_like_item ON user_like (biz, biz_id, status);"
    "CREATE INDEX IF NOT EXISTS user_collection_item ON user_collection (biz, biz_id, status)",
    /* 3 -> 4: trending windows (see sqlite.c's migration 4 and store.h). */
    "CREATE TABLE IF NOT EXISTS interactive_hour ("
    "  biz VARCHAR(32) NOT NULL, biz_id BIGINT NOT NULL, hour BIGINT NOT NULL,"
    "  read_cnt BIGINT NOT NULL DEFAULT 0,"
    "  like_cnt BIGINT NOT NULL DEFAULT 0,"
    "  collect_cnt BIGINT NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (biz, biz_id, hour),"
    "  KEY by_hour (hour)"
    ") ENGINE=InnoDB DEFAULT CHARSET=ascii;"
    "CREATE TABLE IF NOT EXISTS interactive_window ("
    "  biz VARCHAR(32) NOT NULL, win INT NOT NULL, biz_id BIGINT NOT NULL,"
    "  read_cnt BIGINT NOT NULL DEFAULT 0,"
    "  like_cnt BIGINT NOT NULL DEFAULT 0,"
    "  collect_cnt BIGINT NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (biz, win, biz_id),"
    "  KEY top_read (biz, win, read_cnt DESC, biz_id),"
    "  KEY top_like (biz, win, like_cnt DESC, biz_id),"
    "  KEY top_collect (biz, win, collect_cnt DESC, biz_id)"
    ") ENGINE=InnoDB DEFAULT CHARSET=ascii;"
    "CREATE TABLE IF NOT EXISTS window_mark ("
    "  win INT NOT NULL PRIMARY KEY, hour BIGINT NOT NULL"
    ") ENGINE=InnoDB DEFAULT CHARSET=ascii",
    /* 4 -> 5: what the read consumer remembers (store.h, enum read_memo). */
    "CREATE TABLE IF NOT EXISTS read_idem ("
    "  k BIGINT NOT NULL PRIMARY KEY, ms BIGINT NOT NULL, KEY by_ms (ms)"
    ") ENGINE=InnoDB DEFAULT CHARSET=ascii;"
    "CREATE TABLE IF NOT EXISTS read_seen ("
    "  k BIGINT NOT NULL PRIMARY KEY, ms BIGINT NOT NULL, KEY by_ms (ms)"
    ") ENGINE=InnoDB DEFAULT CHARSET=ascii",
    /*
     * 5 -> 6: a like or collection in one round trip (see DESIGN). Each runs
     * its own transaction; the caller rolls back whatever an error left open.
     * Locks are taken in the order of ingest: the user's row, the item, the
     * marks (shared), the windows, the hour.
     */
    "CREATE OR REPLACE PROCEDURE tally_transition(p_biz VARCHAR(32) CHARACTER SET ascii,"
    "    p_id BIGINT, p_dlike BIGINT, p_dcollect BIGINT, p_now BIGINT, p_hour BIGINT)"
    "BEGIN"
    "  INSERT INTO interactive (biz, biz_id, read_cnt, like_cnt, collect_cnt, ctime, utime)"
    "    VALUES (p_biz, p_id, 0, p_dlike, p_dcollect, p_now, p_now) ON DUPLICATE KEY UPDATE"
    "    like_cnt = like_cnt + VALUES(like_cnt),"
    "    collect_cnt = collect_cnt + VALUES(collect_cnt), utime = VALUES(utime);"
    "  INSERT INTO interactive_window (biz, biz_id, win, read_cnt, like_cnt, collect_cnt)"
    "    SELECT p_biz, p_id, win, 0, p_dlike, p_dcollect FROM window_mark"
    "    WHERE hour <= p_hour LOCK IN SHARE MODE ON DUPLICATE KEY UPDATE"
    "    like_cnt = interactive_window.like_cnt + VALUES(like_cnt),"
    "    collect_cnt = interactive_window.collect_cnt + VALUES(collect_cnt);"
    "  INSERT INTO interactive_hour (biz, biz_id, hour, read_cnt, like_cnt, collect_cnt)"
    "    VALUES (p_biz, p_id, p_hour, 0, p_dlike, p_dcollect) ON DUPLICATE KEY UPDATE"
    "    like_cnt = like_cnt + VALUES(like_cnt), collect_cnt = collect_cnt + VALUES(collect_cnt);"
    "END;"
    /*
     * The write's answer: whether it changed a count, the counts, the user's
     * flags; the writer knows its own flag (p_liked or p_collected, NULL for
     * the other). Lookups by unique key, each a constant to the optimizer (one
     * SELECT with subqueries over a derived table spent most of its time being
     * optimized: likes went from 3,800 to 4,800 a second), then a row of
     * variables.
     */
    "CREATE OR REPLACE PROCEDURE tally_state(p_uid BIGINT,"
    "    p_biz VARCHAR(32) CHARACTER SET ascii, p_id BIGINT, p_changed INT, p_liked INT,"
    "    p_collected INT)"
    "BEGIN"
    "  DECLARE r, l, c BIGINT DEFAULT 0;"
    "  SELECT COALESCE(MAX(read_cnt), 0), COALESCE(MAX(like_cnt), 0),"
    "    COALESCE(MAX(collect_cnt), 0) INTO r, l, c"
    "    FROM interactive WHERE biz = p_biz AND biz_id = p_id;"
    "  IF p_liked IS NULL THEN"
    "    SELECT COUNT(*) INTO p_liked FROM user_like"
    "      WHERE uid = p_uid AND biz = p_biz AND biz_id = p_id AND status = 1;"
    "  END IF;"
    "  IF p_collected IS NULL THEN"
    "    SELECT COUNT(*) INTO p_collected FROM user_collection"
    "      WHERE uid = p_uid AND biz = p_biz AND biz_id = p_id AND status = 1;"
    "  END IF;"
    "  SELECT p_changed, r, l, c, p_liked, p_collected;"
    "END;"
    /* ROW_COUNT(): 1 inserted, 2 reactivated / 1 deactivated, 0 no transition. */
    "CREATE OR REPLACE PROCEDURE tally_like(p_uid BIGINT, p_biz VARCHAR(32) CHARACTER SET ascii,"
    "    p_id BIGINT, p_on BOOLEAN, p_now BIGINT, p_hour BIGINT)"
    "BEGIN"
    "  DECLARE changed INT DEFAULT 0;"
    "  START TRANSACTION;"
    "  IF p_on THEN"
    "    INSERT INTO user_like (uid, biz, biz_id, status, ctime, utime)"
    "      VALUES (p_uid, p_biz, p_id, 1, p_now, p_now) ON DUPLICATE KEY UPDATE"
    "      utime = IF(status = 0, VALUES(utime), utime), status = 1;"
    "    SET changed = ROW_COUNT() > 0;"
    "  ELSE"
    "    UPDATE user_like SET status = 0, utime = p_now"
    "      WHERE uid = p_uid AND biz = p_biz AND biz_id = p_id AND status = 1;"
    "    SET changed = ROW_COUNT() > 0;"
    "  END IF;"
    "  IF changed THEN"
    "    CALL tally_transition(p_biz, p_id, IF(p_on, 1, -1), 0, p_now, p_hour);"
    "  END IF;"
    "  CALL tally_state(p_uid, p_biz, p_id, changed, p_on, NULL);"
    "  COMMIT;"
    "END;"
    /* The user's row is locked first: a move changes the row but not the count. */
    "CREATE OR REPLACE PROCEDURE tally_collect(p_uid BIGINT, p_cid BIGINT,"
    "    p_biz VARCHAR(32) CHARACTER SET ascii, p_id BIGINT, p_on BOOLEAN, p_now BIGINT,"
    "    p_hour BIGINT)"
    "BEGIN"
    "  DECLARE cur_status INT DEFAULT 0;"
    "  DECLARE cur_cid BIGINT DEFAULT 0;"
    "  DECLARE changed INT DEFAULT 0;"
    "  START TRANSACTION;"
    "  SELECT COALESCE(MAX(status), 0), COALESCE(MAX(cid), 0) INTO cur_status, cur_cid"
    "    FROM user_collection WHERE uid = p_uid AND biz = p_biz AND biz_id = p_id FOR UPDATE;"
    "  IF p_on AND NOT (cur_status = 1 AND cur_cid = p_cid) THEN"
    "    INSERT INTO user_collection (uid, cid, biz, biz_id, status, ctime, utime)"
    "      VALUES (p_uid, p_cid, p_biz, p_id, 1, p_now, p_now) ON DUPLICATE KEY UPDATE"
    "      cid = VALUES(cid), status = 1, utime = VALUES(utime);"
    "    SET changed = cur_status <> 1;"
    "  ELSEIF NOT p_on AND cur_status = 1 AND cur_cid = p_cid THEN"
    "    UPDATE user_collection SET status = 0, utime = p_now"
    "      WHERE uid = p_uid AND cid = p_cid AND biz = p_biz AND biz_id = p_id AND status = 1;"
    "    SET changed = 1;"
    "  END IF;"
    "  IF changed THEN"
    "    CALL tally_transition(p_biz, p_id, 0, IF(p_on, 1, -1), p_now, p_hour);"
    "  END IF;"
    "  CALL tally_state(p_uid, p_biz, p_id, changed, NULL,"
    "    p_on OR (cur_status = 1 AND cur_cid <> p_cid));"
    "  COMMIT;"
    "END",
    /* 6 -> 7: per partition, the newest event time committed (or the clock, while its
     * owner had read it to its end): memos expire behind the lowest (store.h). */
    "ALTER TABLE read_offsets ADD COLUMN IF NOT EXISTS event_ms BIGINT NOT NULL DEFAULT 0",
    /*
     * 7 -> 8: a like or collection writes its row, the item's counter and one row here;
     * the readcount applier moves these rows into the hours and windows (do_drain), so
     * the user's transaction no longer updates an hourly row and four window rows, each
     * a B-tree change in up to four indexes. An append to one index.
     */
    "CREATE TABLE IF NOT EXISTS transition_queue ("
    "  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    "  biz VARCHAR(32) NOT NULL, biz_id BIGINT NOT NULL, hour BIGINT NOT NULL,"
    "  like_cnt BIGINT NOT NULL, collect_cnt BIGINT NOT NULL"
    ") ENGINE=InnoDB DEFAULT CHARSET=ascii;"
    "CREATE OR REPLACE PROCEDURE tally_transition(p_biz VARCHAR(32) CHARACTER SET ascii,"
    "    p_id BIGINT, p_dlike BIGINT, p_dcollect BIGINT, p_now BIGINT, p_hour BIGINT)"
    "BEGIN"
    "  INSERT INTO interactive (biz, biz_id, read_cnt, like_cnt, collect_cnt, ctime, utime)"
    "    VALUES (p_biz, p_id, 0, p_dlike, p_dcollect, p_now, p_now) ON DUPLICATE KEY UPDATE"
    "    like_cnt = like_cnt + VALUES(like_cnt),"
    "    collect_cnt = collect_cnt + VALUES(collect_cnt), utime = VALUES(utime);"
    "  INSERT INTO transition_queue (biz, biz_id, hour, like_cnt, collect_cnt)"
    "    VALUES (p_biz, p_id, p_hour, p_dlike, p_dcollect);"
    "END;"
    /*
     * A like, inline: every statement of a procedure costs the SQL layer far more than
     * its rows, and a nested CALL sets up a procedure's context each time (the like's
     * profile in mariadbd). The answer is one SELECT: the counts and, as a subquery, the
     * user's collection flag.
     */
    "CREATE OR REPLACE PROCEDURE tally_like(p_uid BIGINT, p_biz VARCHAR(32) CHARACTER SET ascii,"
    "    p_id BIGINT, p_on BOOLEAN, p_now BIGINT, p_hour BIGINT)"
    "BEGIN"
    "  DECLARE changed INT DEFAULT 0;"
    "  START TRANSACTION;"
    "  IF p_on THEN"
    "    INSERT INTO user_like (uid, biz, biz_id, status, ctime, utime)"
    "      VALUES (p_uid, p_biz, p_id, 1, p_now, p_now) ON DUPLICATE KEY UPDATE"
    "      utime = IF(status = 0, VALUES(utime), utime), status = 1;"
    "  ELSE"
    "    UPDATE user_like SET status = 0, utime = p_now"
    "      WHERE uid = p_uid AND biz = p_biz AND biz_id = p_id AND status = 1;"
    "  END IF;"
    "  SET changed = ROW_COUNT() > 0;"
    "  IF changed THEN"
    "    INSERT INTO interactive (biz, biz_id, read_cnt, like_cnt, collect_cnt, ctime, utime)"
    "      VALUES (p_biz, p_id, 0, IF(p_on, 1, -1), 0, p_now, p_now) ON DUPLICATE KEY UPDATE"
    "      like_cnt = like_cnt + VALUES(like_cnt), utime = VALUES(utime);"
    "    INSERT INTO transition_queue (biz, biz_id, hour, like_cnt, collect_cnt)"
    "      VALUES (p_biz, p_id, p_hour, IF(p_on, 1, -1), 0);"
    "  END IF;"
    "  SELECT changed, COALESCE(MAX(read_cnt), 0), COALESCE(MAX(like_cnt), 0),"
    "    COALESCE(MAX(collect_cnt), 0), p_on,"
    "    (SELECT COUNT(*) FROM user_collection WHERE uid = p_uid AND biz = p_biz"
    "      AND biz_id = p_id AND status = 1)"
    "    FROM interactive WHERE biz = p_biz AND biz_id = p_id;"
    "  COMMIT;"
    "END",
};

static const char *const memo_table[MEMO_COUNT] = {"read_idem", "read_seen"};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

int store_mysql_schema_version(void)
{
    return SCHEMA_VERSION;
}

enum stmt {
    S_COUNTS,
    S_LIKE,
    S_COLLECT,
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
    S_DEAD_LETTER,
    S_MARKS,
    S_MARK_LOCK,
    S_MARK_INIT,
    S_MARK_CAS,
    S_HOUR_NEXT,
    S_WINDOW_SUB,
    S_HOUR_EXPIRE,
    S_QUEUE_READ,
    S_TOPW_READ,
    S_TOPW_LIKE,
    S_TOPW_COLLECT,
    S_HIST_READ,
    S_HIST_LIKE,
    S_HIST_COLLECT,
    S_LIKE_ITEMS,
    S_COLLECT_ITEMS,
    STMT_COUNT
};

#define EXPIRE_ROWS 5000 /* hourly rows deleted per sweep step (also in S_HOUR_EXPIRE) */
#define QUEUE_ROWS  1024 /* transitions moved per step (also in S_QUEUE_READ) */
/* A range of the (biz, win, cnt DESC, biz_id) index, read in order, joined to the totals.
 * STRAIGHT_JOIN: left to itself the optimizer drives from interactive and sorts (1.3 s over
 * 100,000 items instead of under 1 ms). */
#define TOPW_SQL(col)                                                                  \
    "SELECT STRAIGHT_JOIN w.biz_id, w." col ", i.read_cnt, i.like_cnt, i.collect_cnt" \
    " FROM interactive_window w JOIN interactive i ON i.biz = w.biz AND i.biz_id = w.biz_id" \
    " WHERE w.biz = ? AND w.win = ? AND w." col " > 0"                                 \
    " ORDER BY w." col " DESC, w.biz_id ASC LIMIT ?"
#define HIST_SQL(col)                                                          \
    "SELECT hour, " col " FROM interactive_hour WHERE biz = ? AND biz_id = ?" \
    " AND hour BETWEEN ? AND ? AND " col " <> 0 ORDER BY hour"

#define TOP_SQL(col)                                                  \
    "SELECT biz_id, read_cnt, like_cnt, collect_cnt FROM interactive" \
    " WHERE biz = ? ORDER BY " col " DESC, biz_id ASC LIMIT ?"

static const char *const stmt_sql[STMT_COUNT] = {
    [S_COUNTS] = "SELECT read_cnt, like_cnt, collect_cnt FROM interactive"
                 " WHERE biz = ? AND biz_id = ?",
    [S_LIKE] = "CALL tally_like(?, ?, ?, ?, ?, ?)",
    [S_COLLECT] = "CALL tally_collect(?, ?, ?, ?, ?, ?, ?)",
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
    [S_OFFSET_CAS] = "UPDATE read_offsets SET next_offset = ?, utime = ?,"
                     " event_ms = GREATEST(event_ms, ?)"
                     " WHERE topic = ? AND part = ? AND next_offset = ?",
    [S_OFFSET_NEW] = "INSERT IGNORE INTO read_offsets (topic, part, next_offset, utime, event_ms)"
                     " VALUES (?, ?, ?, ?, ?)",
    [S_EVENTS_FLOOR] = "SELECT COALESCE(MIN(event_ms), 9223372036854775807) FROM read_offsets"
                       " WHERE topic = ?",
    [S_EVENTS_TOUCH] = "UPDATE read_offsets SET event_ms = GREATEST(event_ms, ?)"
                       " WHERE topic = ? AND part = ?",
    [S_DEAD_LETTER] = "INSERT INTO read_dead_letter"
                      " (biz, biz_id, uid, ts, topic, part, msg_offset, error, ctime)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    /* Ingest and likes read the marks shared; a sweep locks its window's mark first. */
    [S_MARKS] = "SELECT win, hour FROM window_mark LOCK IN SHARE MODE",
    [S_MARK_LOCK] = "SELECT hour FROM window_mark WHERE win = ? FOR UPDATE",
    [S_MARK_INIT] = "INSERT IGNORE INTO window_mark (win, hour) VALUES (?, ?)",
    [S_MARK_CAS] = "UPDATE window_mark SET hour = ? WHERE win = ? AND hour = ?",
    [S_HOUR_NEXT] = "SELECT hour FROM interactive_hour WHERE hour >= ? ORDER BY hour LIMIT 1",
    [S_WINDOW_SUB] = "INSERT INTO interactive_window"
                     " (biz, biz_id, win, read_cnt, like_cnt, collect_cnt)"
                     " SELECT biz, biz_id, ?, -read_cnt, -like_cnt, -collect_cnt"
                     " FROM interactive_hour WHERE hour = ? ON DUPLICATE KEY UPDATE"
                     " read_cnt = interactive_window.read_cnt + VALUES(read_cnt),"
                     " like_cnt = interactive_window.like_cnt + VALUES(like_cnt),"
                     " collect_cnt = interactive_window.collect_cnt + VALUES(collect_cnt)",
    [S_HOUR_EXPIRE] = "DELETE FROM interactive_hour WHERE hour < ? LIMIT 5000",
    [S_QUEUE_READ] = "SELECT id, biz, biz_id, hour, like_cnt, collect_cnt FROM transition_queue"
                     " ORDER BY id LIMIT 1024",
    [S_TOPW_READ] = TOPW_SQL("read_cnt"),
    [S_TOPW_LIKE] = TOPW_SQL("like_cnt"),
    [S_TOPW_COLLECT] = TOPW_SQL("collect_cnt"),
    [S_HIST_READ] = HIST_SQL("read_cnt"),
    [S_HIST_LIKE] = HIST_SQL("like_cnt"),
    [S_HIST_COLLECT] = HIST_SQL("collect_cnt"),
    /* A user's erasure: their rows' items, in the unique key's order (uk_user_item). */
    [S_LIKE_ITEMS] = "SELECT biz, biz_id FROM user_like WHERE uid = ? ORDER BY biz, biz_id LIMIT ?",
    [S_COLLECT_ITEMS] = "SELECT biz, biz_id FROM user_collection WHERE uid = ?"
                        " ORDER BY biz, biz_id LIMIT ?",
};

/* Statements whose text depends on a count, prepared on first use per count. */
enum sized {
    Z_COUNTS, Z_LIKED, Z_COLLECTED, Z_UPSERT, Z_HOUR, Z_WINDOW, Z_QUEUE_DEL,
    Z_IDEM_GET, Z_SEEN_GET, Z_IDEM_PUT, Z_SEEN_PUT,
    Z_ERASE_LOCK, Z_ERASE_DROP = Z_ERASE_LOCK + USER_TABLE_COUNT,
    Z_ERASE_DEL = Z_ERASE_DROP + USER_TABLE_COUNT, SIZED_COUNT = Z_ERASE_DEL + USER_TABLE_COUNT
};

/* One connection. Used by one thread at a time, while checked out of the pool. */
struct conn {
    MYSQL *db;            /* NULL: not connected (yet, or since it broke) */
    MYSQL_BIND *upsert_b; /* UPSERT_BINDS parameters for do_apply, allocated on first use */
    unsigned long *upsert_len;
    MYSQL_STMT *stmt[STMT_COUNT];
    MYSQL_STMT *sized[SIZED_COUNT][UPSERT_CHUNK + 1];
};

/* What the URL says; pass is a secret: never logged. */
struct mysql_cfg {
    char *host, *user, *pass, *dbname;
    bool user_secret; /* no password given: user may be one written in its place (never shown) */
    unsigned port;
    int pool;     /* ?pool=N; 0: sized from --workers */
    bool ssl;     /* TLS required */
    char *ssl_ca; /* NULL: the server's certificate is not verified */
};

/* Shared by all threads: the pool hands out conns, one thread at a time. */
struct mysql_store {
    struct store base;
    struct mysql_cfg cfg;
    struct pool pool;
    struct conn *conns;
    size_t nconns;
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
    memset(c, 0, sizeof(*c));
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
    /* ER_UNKNOWN_COM_ERROR is what a Galera node not (or no longer) Synced answers ("WSREP
     * has not yet prepared node for application use"): reconnect, perhaps to another one. */
    if (err == ER_SERVER_SHUTDOWN || err == 1927 /* ER_CONNECTION_KILLED */ ||
        err == ER_CON_COUNT_ERROR || err == ER_UNKNOWN_COM_ERROR) {
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

/*
 * A handle set up as cfg says (utf8mb4, timeouts, TLS) and connected: 0, or
 * TALLY_EUNAVAIL with *db kept for its error. The caller closes *db.
 */
static int db_connect(const struct mysql_cfg *cfg, unsigned connect_s, unsigned io_s,
                      unsigned long flags, MYSQL **db)
{
    *db = mysql_init(NULL);
    TALLY_ASSERT(*db);
    mysql_options(*db, MYSQL_OPT_CONNECT_TIMEOUT, &connect_s);
    mysql_options(*db, MYSQL_OPT_READ_TIMEOUT, &io_s);
    mysql_options(*db, MYSQL_OPT_WRITE_TIMEOUT, &io_s);
    mysql_options(*db, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    if (cfg->ssl) {
        /* TLS or no connection; with a CA, the certificate and the host name are verified. */
        my_bool enforce = 1, verify = cfg->ssl_ca != NULL;

        mysql_optionsv(*db, MYSQL_OPT_SSL_ENFORCE, &enforce);
        mysql_optionsv(*db, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify);
        if (cfg->ssl_ca)
            mysql_optionsv(*db, MYSQL_OPT_SSL_CA, cfg->ssl_ca);
    }
    if (!mysql_real_connect(*db, cfg->host, cfg->user, cfg->pass, cfg->dbname, cfg->port, NULL,
                            flags))
        return TALLY_EUNAVAIL;
    return 0;
}

/* The library's message for a failed connect (caller frees), the user hidden if secret. */
static char *connect_error(const struct mysql_cfg *cfg, MYSQL *db)
{
    struct strbuf sb = STRBUF_INIT;

    url_scrub(&sb, mysql_error(db), cfg->user_secret ? cfg->user : NULL);
    return strbuf_detach(&sb, NULL);
}

/* Connects c, without preparing anything. */
static int conn_connect(struct mysql_store *s, struct conn *c)
{
    char *msg;
    int rc;

    if (db_connect(&s->cfg, 1, 2, CLIENT_MULTI_STATEMENTS, &c->db) == 0)
        return 0;
    msg = connect_error(&s->cfg, c->db);
    rc = map_err(c, mysql_errno(c->db), msg, "connect");
    free(msg);
    conn_close(c);
    return rc == TALLY_EINTERNAL ? TALLY_EUNAVAIL : rc;
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
    void *taken;
    int rc;

    if ((rc = pool_get(&s->pool, &taken))) /* every connection stuck in a call */
        return rc;
    c = taken;
    if (!c->db && (rc = conn_open(s, c))) {
        conn_close(c);
        pool_put(&s->pool, c);
        return rc;
    }
    *out = c;
    return 0;
}

static void conn_put(struct mysql_store *s, struct conn *c)
{
    pool_put(&s->pool, c);
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
#define UPSERT_BINDS (UPSERT_CHUNK * 6) /* a full hourly or window upsert */

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

/*
 * The next chunk of a multi-row statement over `left` rows: full chunks of UPSERT_CHUNK,
 * then powers of two, so that a connection prepares at most log2(UPSERT_CHUNK) + 1 sizes.
 */
static size_t chunk_of(size_t left)
{
    size_t k = UPSERT_CHUNK;

    while (k > left)
        k /= 2;
    return k;
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

static void build_counts_upsert(struct strbuf *sql, const char *table, const char *key,
                                size_t n)
{
    strbuf_addf(sql, "INSERT INTO %s (biz, biz_id, %s, read_cnt, like_cnt, collect_cnt) VALUES ",
                table, key);
    for (size_t i = 0; i < n; i++)
        strbuf_addstr(sql, i ? ",(?,?,?,?,?,?)" : "(?,?,?,?,?,?)");
    strbuf_addstr(sql, " ON DUPLICATE KEY UPDATE read_cnt = read_cnt + VALUES(read_cnt),"
                       " like_cnt = like_cnt + VALUES(like_cnt),"
                       " collect_cnt = collect_cnt + VALUES(collect_cnt)");
}

/* A locking read: a key another consumer is deciding on waits for its commit. */
static void build_memo_get(struct strbuf *sql, const char *table, size_t n)
{
    strbuf_addf(sql, "SELECT k, ms FROM %s WHERE k IN (", table);
    add_marks(sql, n);
    strbuf_addstr(sql, " FOR UPDATE");
}

static void build_memo_put(struct strbuf *sql, const char *table, size_t n)
{
    strbuf_addf(sql, "INSERT INTO %s (k, ms) VALUES ", table);
    for (size_t i = 0; i < n; i++)
        strbuf_addstr(sql, i ? ",(?,?)" : "(?,?)");
    strbuf_addstr(sql, " ON DUPLICATE KEY UPDATE ms = VALUES(ms)");
}

static void build_idem_get(struct strbuf *sql, size_t n)
{
    build_memo_get(sql, "read_idem", n);
}

static void build_seen_get(struct strbuf *sql, size_t n)
{
    build_memo_get(sql, "read_seen", n);
}

static void build_idem_put(struct strbuf *sql, size_t n)
{
    build_memo_put(sql, "read_idem", n);
}

static void build_seen_put(struct strbuf *sql, size_t n)
{
    build_memo_put(sql, "read_seen", n);
}

static void build_hour_upsert(struct strbuf *sql, size_t n)
{
    build_counts_upsert(sql, "interactive_hour", "hour", n);
}

static void build_window_upsert(struct strbuf *sql, size_t n)
{
    build_counts_upsert(sql, "interactive_window", "win", n);
}

static void build_queue_del(struct strbuf *sql, size_t n)
{
    strbuf_addstr(sql, "DELETE FROM transition_queue WHERE id IN (");
    add_marks(sql, n);
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
        if (tx && rc == 0 && c->db && mysql_commit(c->db))
            rc = db_err(c, "commit");
        if (rc && c->db) /* also what a procedure's own transaction left open */
            mysql_rollback(c->db);
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

/* ------------------------------------------------------------ hours and windows */

/* mark[w]: the first hour window w still holds (shared lock: a sweep waits for us). */
static int read_marks(struct conn *c, int64_t mark[WINDOW_COUNT])
{
    BINDS(r, 4);
    MYSQL_STMT *st = c->stmt[S_MARKS];
    int64_t win = 0, hour = 0;
    int rc;

    for (int w = 0; w < WINDOW_COUNT; w++)
        mark[w] = INT64_MAX; /* no mark (cannot happen after open): add to no window */
    bind_i64(&r, &win);
    bind_i64(&r, &hour);
    if ((rc = exec(c, st, NULL, &r)))
        return rc;
    while ((rc = fetch(c, st)) == 1)
        for (int w = 0; w < WINDOW_COUNT; w++)
            if (window_hours[w] == win)
                mark[w] = hour;
    return rc;
}

static struct binds upsert_binds(struct conn *c)
{
    if (!c->upsert_b) {
        c->upsert_b = xcalloc(UPSERT_BINDS, sizeof(*c->upsert_b));
        c->upsert_len = xcalloc(UPSERT_BINDS, sizeof(*c->upsert_len));
    }
    return (struct binds){c->upsert_b, c->upsert_len, 0, UPSERT_BINDS};
}

/* Adds rows [0, n) to interactive_hour (window false) or interactive_window (true). */
static int upsert_counts(struct conn *c, bool window, const struct store_row *r, size_t n)
{
    struct binds p = upsert_binds(c);
    int rc = 0;

    for (size_t done = 0, k; done < n && rc == 0; done += k) {
        MYSQL_STMT *st;

        k = chunk_of(n - done);
        if ((rc = sized(c, window ? Z_WINDOW : Z_HOUR, k,
                        window ? build_window_upsert : build_hour_upsert, &st)))
            break;
        p.n = 0;
        for (size_t i = done; i < done + k; i++) {
            bind_item(&p, &r[i].item);
            bind_i64(&p, &r[i].key);
            for (int f = 0; f < FIELD_COUNT; f++)
                bind_i64(&p, &r[i].v[f]);
        }
        rc = exec(c, st, &p, NULL);
    }
    return rc;
}

/*
 * Adds hourly rows (sorted by item, then hour) to every window that still
 * holds their hour, then to their hours. Every writer takes its locks in that
 * order (marks shared, windows, hours), and a sweep takes its mark first, so
 * neither deadlocks the other.
 */
static int add_hourly(struct conn *c, const struct store_row *r, size_t n)
{
    int64_t mark[WINDOW_COUNT];
    struct store_row *sum;
    int rc;

    if (n == 0)
        return 0;
    if ((rc = read_marks(c, mark)))
        return rc;
    sum = xcalloc(n * WINDOW_COUNT, sizeof(*sum));
    rc = upsert_counts(c, true, sum, store__window_sums(r, n, mark, sum));
    free(sum);
    return rc ? rc : upsert_counts(c, false, r, n);
}

struct write_args {
    int64_t uid, cid, now;
    const struct item *it;
    bool on, changed;
    struct item_state *out;
};

/*
 * Runs a CALL of tally_like or tally_collect (params bound) and reads its
 * answer, one row: changed, the counts, liked, collected. The procedure
 * commits after that row, so what follows it is drained for an error too.
 */
static int call_write(struct conn *c, MYSQL_STMT *st, struct binds *p, struct write_args *a)
{
    BINDS(r, 8);
    int64_t changed = 0, liked = 0, collected = 0;
    int rc, more;

    memset(a->out, 0, sizeof(*a->out));
    a->out->item = *a->it;
    bind_i64(&r, &changed);
    bind_i64(&r, &a->out->counts.read_cnt);
    bind_i64(&r, &a->out->counts.like_cnt);
    bind_i64(&r, &a->out->counts.collect_cnt);
    bind_i64(&r, &liked);
    bind_i64(&r, &collected);
    if ((rc = exec(c, st, p, &r)))
        return rc;
    while ((rc = fetch(c, st)) == 1)
        ;
    while (rc == 0 && (more = mysql_stmt_next_result(st)) != -1)
        if (more > 0)
            rc = stmt_err(c, st, "call");
    a->changed = changed != 0;
    a->out->liked = liked != 0;
    a->out->collected = collected != 0;
    return rc;
}

static int do_like(struct conn *c, void *arg)
{
    struct write_args *a = arg;
    BINDS(p, 8);
    int64_t on = a->on;
    int64_t hour = store__hour_of(a->now);

    bind_i64(&p, &a->uid);
    bind_item(&p, a->it);
    bind_i64(&p, &on);
    bind_i64(&p, &a->now);
    bind_i64(&p, &hour);
    return call_write(c, c->stmt[S_LIKE], &p, a);
}

static int mdb_set_like(struct store *base, int64_t uid, const struct item *it, bool on,
                        int64_t now_ms, bool *changed, struct item_state *out)
{
    struct write_args a = {.uid = uid, .now = now_ms, .it = it, .on = on, .out = out};
    int rc = with_conn((struct mysql_store *)base, false, do_like, &a);

    *changed = rc == 0 && a.changed;
    return rc;
}

static int do_collect(struct conn *c, void *arg)
{
    struct write_args *a = arg;
    BINDS(p, 8);
    int64_t on = a->on;
    int64_t hour = store__hour_of(a->now);

    bind_i64(&p, &a->uid);
    bind_i64(&p, &a->cid);
    bind_item(&p, a->it);
    bind_i64(&p, &on);
    bind_i64(&p, &a->now);
    bind_i64(&p, &hour);
    return call_write(c, c->stmt[S_COLLECT], &p, a);
}

static int mdb_set_collect(struct store *base, int64_t uid, int64_t cid, const struct item *it,
                           bool on, int64_t now_ms, bool *changed, struct item_state *out)
{
    struct write_args a = {.uid = uid, .cid = cid, .now = now_ms, .it = it, .on = on, .out = out};
    int rc = with_conn((struct mysql_store *)base, false, do_collect, &a);

    *changed = rc == 0 && a.changed;
    return rc;
}

/* ------------------------------------------------------------ erasing a user */

struct user_items_args {
    int64_t uid, limit;
    enum user_table t;
    struct item *out;
    size_t n;
};

static int do_user_items(struct conn *c, void *arg)
{
    struct user_items_args *a = arg;
    MYSQL_STMT *st = c->stmt[a->t == USER_LIKES ? S_LIKE_ITEMS : S_COLLECT_ITEMS];
    BINDS(p, 2);
    BINDS(r, 2);
    struct item it = {0};
    int rc;

    bind_i64(&p, &a->uid);
    bind_i64(&p, &a->limit);
    bind_str(&r, it.biz, ITEM_BIZ_MAX + 1);
    bind_i64(&r, &it.id);
    if ((rc = exec(c, st, &p, &r)))
        return rc;
    a->n = 0;
    while ((rc = fetch(c, st)) == 1) {
        if (r.len[0] == 0 || r.len[0] > ITEM_BIZ_MAX || a->n >= (size_t)a->limit) {
            log_error("mysql: user items: a row's biz is not a valid biz, or too many rows");
            mysql_stmt_free_result(st);
            return TALLY_EINTERNAL;
        }
        it.biz[r.len[0]] = '\0';
        a->out[a->n++] = it;
    }
    return rc;
}

static int mdb_user_items(struct store *base, int64_t uid, enum user_table t, size_t limit,
                          struct item *out, size_t *n)
{
    struct user_items_args a = {.uid = uid, .limit = (int64_t)limit, .t = t, .out = out};
    int rc;

    TALLY_ASSERT(limit <= STORE_ERASE_MAX);
    rc = with_conn((struct mysql_store *)base, false, do_user_items, &a);
    *n = rc ? 0 : a.n;
    return rc;
}

/*
 * The erasure's statements, per table: uid's rows on one biz's ids locked (FOR UPDATE, the
 * like path's first lock too), those items' counts lowered, the rows deleted by primary
 * key. The index is forced: on a small table the optimizer may otherwise scan the primary
 * key, and a locking scan locks every row it reads, other users' included.
 */
static const char *const erase_table[USER_TABLE_COUNT] = {"user_like", "user_collection"};
static const char *const erase_column[USER_TABLE_COUNT] = {"like_cnt", "collect_cnt"};

static void build_erase_lock(struct strbuf *sql, enum user_table t, size_t n)
{
    strbuf_addf(sql, "SELECT id, biz_id, status FROM %s FORCE INDEX (uk_user_item)"
                     " WHERE uid = ? AND biz = ? AND biz_id IN (", erase_table[t]);
    add_marks(sql, n);
    strbuf_addstr(sql, " FOR UPDATE");
}

static void build_erase_drop(struct strbuf *sql, enum user_table t, size_t n)
{
    strbuf_addf(sql, "UPDATE interactive FORCE INDEX (uk_biz) SET %s = %s - 1, utime = ?"
                     " WHERE biz = ? AND biz_id IN (", erase_column[t], erase_column[t]);
    add_marks(sql, n);
}

static void build_erase_del(struct strbuf *sql, enum user_table t, size_t n)
{
    strbuf_addf(sql, "DELETE FROM %s WHERE id IN (", erase_table[t]);
    add_marks(sql, n);
}

static void build_erase_lock_likes(struct strbuf *sql, size_t n)
{
    build_erase_lock(sql, USER_LIKES, n);
}
static void build_erase_lock_collections(struct strbuf *sql, size_t n)
{
    build_erase_lock(sql, USER_COLLECTIONS, n);
}
static void build_erase_drop_likes(struct strbuf *sql, size_t n)
{
    build_erase_drop(sql, USER_LIKES, n);
}
static void build_erase_drop_collections(struct strbuf *sql, size_t n)
{
    build_erase_drop(sql, USER_COLLECTIONS, n);
}
static void build_erase_del_likes(struct strbuf *sql, size_t n)
{
    build_erase_del(sql, USER_LIKES, n);
}
static void build_erase_del_collections(struct strbuf *sql, size_t n)
{
    build_erase_del(sql, USER_COLLECTIONS, n);
}

_Static_assert(STORE_ERASE_MAX <= UPSERT_CHUNK, "an erasure's chunk is one sized statement");
static void (*const erase_build[3][USER_TABLE_COUNT])(struct strbuf *, size_t) = {
    {build_erase_lock_likes, build_erase_lock_collections},
    {build_erase_drop_likes, build_erase_drop_collections},
    {build_erase_del_likes, build_erase_del_collections},
};
enum erase_step { ERASE_LOCK, ERASE_DROP, ERASE_DEL };

struct erase_args {
    int64_t uid, now;
    enum user_table t;
    const struct item *items;
    size_t n;
    struct counts *delta;
    size_t removed;
    int64_t *row;  /* per item: the id of uid's row there, 0 when it has none */
    bool *active;  /* per item: that row was active */
};

/*
 * Deletes the rows found, already locked, one primary key per statement: given a list of
 * ids, the optimizer may scan a small table whole instead, and a deleting scan locks every
 * row it reads, so other users' writes would wait on (and deadlock with) the erasure.
 */
static int erase_del_rows(struct conn *c, struct erase_args *a, const int64_t *const *ids,
                          size_t k)
{
    MYSQL_STMT *st;
    BINDS(p, 1);
    int rc;

    if ((rc = sized(c, (enum sized)(Z_ERASE_DEL + (int)a->t), 1, erase_build[ERASE_DEL][a->t],
                    &st)))
        return rc;
    for (size_t i = 0; i < k && rc == 0; i++) {
        p.n = 0;
        bind_i64(&p, ids[i]);
        if ((rc = exec(c, st, &p, NULL)) == 0)
            a->removed += (size_t)mysql_stmt_affected_rows(st);
    }
    return rc;
}

/*
 * Runs one step over items[from, to), which share a biz: ERASE_LOCK reads uid's rows there
 * (row, active); ERASE_DROP lowers the counts of the items whose row was active;
 * ERASE_DEL deletes the rows found, adding them to removed.
 */
static int erase_step(struct conn *c, struct erase_args *a, enum erase_step step, size_t from,
                      size_t to)
{
    const int64_t *ids[STORE_ERASE_MAX];
    BINDS(p, STORE_ERASE_MAX + 3);
    BINDS(r, 3);
    MYSQL_STMT *st;
    int64_t row = 0, id = 0, status = 0;
    size_t k = 0;
    int rc;

    for (size_t i = from; i < to; i++) {
        if (step == ERASE_LOCK || (step == ERASE_DROP && a->active[i]))
            ids[k++] = &a->items[i].id;
        else if (step == ERASE_DEL && a->row[i])
            ids[k++] = &a->row[i];
    }
    if (k == 0)
        return 0;
    if (step == ERASE_DEL) /* one statement per row (erase_del_rows) */
        return erase_del_rows(c, a, ids, k);
    if ((rc = sized(c, (enum sized)(Z_ERASE_LOCK + (int)step * USER_TABLE_COUNT + (int)a->t), k,
                    erase_build[step][a->t], &st)))
        return rc;
    bind_i64(&p, step == ERASE_LOCK ? &a->uid : &a->now);
    bind_str(&p, a->items[from].biz, ITEM_BIZ_MAX + 1);
    for (size_t i = 0; i < k; i++)
        bind_i64(&p, ids[i]);
    if (step == ERASE_DROP)
        return exec(c, st, &p, NULL);
    bind_i64(&r, &row);
    bind_i64(&r, &id);
    bind_i64(&r, &status);
    if ((rc = exec(c, st, &p, &r)))
        return rc;
    while ((rc = fetch(c, st)) == 1) {
        for (size_t i = from; i < to; i++) {
            if (a->items[i].id == id) {
                a->row[i] = row;
                a->active[i] = status == 1;
            }
        }
    }
    return rc;
}

/*
 * One chunk of an erasure, in the like path's lock order: uid's rows (FOR UPDATE), the
 * items (ids ascending within each biz, bizes in the key's order), the marks shared, the
 * windows, the hours (add_hourly); then the rows, already locked, are deleted. A deadlock
 * reruns it from the start (with_conn), so everything it found is found again.
 */
static int do_erase(struct conn *c, void *arg)
{
    struct erase_args *a = arg;
    enum count_field f = a->t == USER_LIKES ? FIELD_LIKE_CNT : FIELD_COLLECT_CNT;
    struct store_row hours[STORE_ERASE_MAX];
    size_t nhours = 0;
    int rc = 0;

    a->removed = 0;
    memset(a->row, 0, a->n * sizeof(*a->row));
    memset(a->active, 0, a->n * sizeof(*a->active));
    memset(a->delta, 0, a->n * sizeof(*a->delta));
    for (int step = ERASE_LOCK; step <= ERASE_DEL && rc == 0; step++) {
        if (step == ERASE_DEL && (rc = add_hourly(c, hours, nhours)))
            break;
        for (size_t from = 0, to; from < a->n && rc == 0; from = to) {
            for (to = from + 1; to < a->n && strcmp(a->items[to].biz, a->items[from].biz) == 0;)
                to++;
            rc = erase_step(c, a, (enum erase_step)step, from, to);
        }
        for (size_t i = 0; step == ERASE_LOCK && rc == 0 && i < a->n; i++) {
            if (!a->active[i])
                continue;
            if (a->t == USER_LIKES)
                a->delta[i].like_cnt = -1;
            else
                a->delta[i].collect_cnt = -1;
            hours[nhours] = (struct store_row){.item = a->items[i], .key = store__hour_of(a->now)};
            hours[nhours++].v[f] = -1;
        }
    }
    return rc;
}

static int mdb_erase_rows(struct store *base, int64_t uid, enum user_table t,
                          const struct item *items, size_t n, int64_t now_ms,
                          struct counts *delta, size_t *removed)
{
    int64_t row[STORE_ERASE_MAX];
    bool active[STORE_ERASE_MAX];
    struct erase_args a = {.uid = uid, .now = now_ms, .t = t, .items = items, .n = n,
                           .delta = delta, .row = row, .active = active};
    int rc;

    TALLY_ASSERT(n <= STORE_ERASE_MAX);
    rc = n ? with_conn((struct mysql_store *)base, true, do_erase, &a) : 0;
    if (rc)
        memset(delta, 0, n * sizeof(*delta));
    *removed = rc ? 0 : a.removed;
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
    struct read_batch *b;
};

/* Looks up keys [0, n) (sorted) of memo table m, chunk by chunk, setting their ms. */
static int memo_lookup(struct conn *c, enum read_memo m, struct memo *keys, size_t n)
{
    BINDS(p, LIST_BINDS);
    BINDS(r, 2);
    int64_t key = 0, ms = 0;
    int rc = 0;

    for (size_t i = 0; i < n; i++)
        keys[i].ms = INT64_MIN;
    bind_i64(&r, &key);
    bind_i64(&r, &ms);
    for (size_t done = 0, k; done < n && rc == 0; done += k) {
        MYSQL_STMT *st;

        k = chunk_of(n - done);
        if ((rc = sized(c, m == MEMO_IDEM ? Z_IDEM_GET : Z_SEEN_GET, k,
                        m == MEMO_IDEM ? build_idem_get : build_seen_get, &st)))
            break;
        bind_reset(&p);
        for (size_t i = done; i < done + k; i++)
            bind_i64(&p, &keys[i].key);
        if ((rc = exec(c, st, &p, &r)))
            break;
        while ((rc = fetch(c, st)) == 1) {
            size_t lo = done, hi = done + k;

            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (keys[mid].key < key)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo < done + k && keys[lo].key == key)
                keys[lo].ms = ms;
        }
    }
    return rc;
}

/* Upserts rows [0, n) into memo table m. */
static int memo_write(struct conn *c, enum read_memo m, const struct memo *rows, size_t n)
{
    struct binds p = upsert_binds(c);
    int rc = 0;

    for (size_t done = 0, k; done < n && rc == 0; done += k) {
        MYSQL_STMT *st;

        k = chunk_of(n - done);
        if ((rc = sized(c, m == MEMO_IDEM ? Z_IDEM_PUT : Z_SEEN_PUT, k,
                        m == MEMO_IDEM ? build_idem_put : build_seen_put, &st)))
            break;
        p.n = 0;
        for (size_t i = done; i < done + k; i++) {
            bind_i64(&p, &rows[i].key);
            bind_i64(&p, &rows[i].ms);
        }
        rc = exec(c, st, &p, NULL);
    }
    return rc;
}

/* The batch's hourly read rows still within retention, into rows (nhours entries). */
static size_t hourly_reads(const struct read_batch *b, struct store_row *rows)
{
    int64_t oldest = store__hour_of(b->now_ms) - b->retention_hours;
    size_t k = 0;

    for (size_t i = 0; i < b->nhours; i++) {
        if (b->hours[i].hour < oldest)
            continue; /* counted in the totals; its hour is past keeping */
        rows[k].item = b->hours[i].item;
        rows[k].key = b->hours[i].hour;
        rows[k].v[FIELD_READ_CNT] = b->hours[i].n;
        k++;
    }
    return k;
}

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
        bind_i64(&p, &o->event_ms);
    } else {
        st = c->stmt[S_OFFSET_CAS];
        bind_i64(&p, &o->next);
        bind_i64(&p, now);
        bind_i64(&p, &o->event_ms);
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
    struct read_batch *b = a->b;
    struct binds p;
    struct store_row *rows;
    size_t nrows;
    int rc = 0;

    for (size_t i = 0; i < b->noffs && rc == 0; i++)
        rc = move_offset(c, b->topic, &b->offs[i], &b->now_ms);
    for (int m = 0; m < MEMO_COUNT && rc == 0 && b->decide; m++)
        rc = memo_lookup(c, (enum read_memo)m, b->lookup[m], b->nlookup[m]);
    if (rc == 0 && b->decide)
        rc = b->decide(b);
    for (int m = 0; m < MEMO_COUNT && rc == 0 && b->decide; m++)
        rc = memo_write(c, (enum read_memo)m, b->write[m], b->nwrite[m]);
    p = upsert_binds(c);
    for (size_t done = 0, k; done < b->n && rc == 0; done += k) {
        MYSQL_STMT *st;

        k = chunk_of(b->n - done);
        if ((rc = sized(c, Z_UPSERT, k, build_upsert, &st)))
            break;
        p.n = 0;
        for (size_t i = done; i < done + k; i++) {
            bind_item(&p, &b->d[i].item);
            bind_i64(&p, &b->d[i].n);
            bind_i64(&p, &b->now_ms);
            bind_i64(&p, &b->now_ms);
        }
        rc = exec(c, st, &p, NULL);
    }
    if (rc)
        return rc;
    rows = xcalloc(b->nhours ? b->nhours : 1, sizeof(*rows));
    nrows = hourly_reads(b, rows);
    rc = add_hourly(c, rows, nrows);
    free(rows);
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

static int mdb_apply_reads(struct store *base, struct read_batch *b)
{
    struct apply_args a = {b};

    return with_conn((struct mysql_store *)base, true, do_apply, &a);
}

struct expire_args {
    enum read_memo m;
    int64_t before;
    bool more;
};

static int do_expire_memos(struct conn *c, void *arg)
{
    struct expire_args *a = arg;
    struct strbuf sql = STRBUF_INIT;
    MYSQL_STMT *st = NULL;
    BINDS(p, 1);
    int rc;

    /* Two tables, rarely: prepared per call rather than kept. */
    strbuf_addf(&sql, "DELETE FROM %s WHERE ms < ? LIMIT %d", memo_table[a->m], EXPIRE_ROWS);
    rc = prepare(c, sql.buf, sql.len, &st);
    strbuf_release(&sql);
    if (rc)
        return rc;
    bind_i64(&p, &a->before);
    rc = exec(c, st, &p, NULL);
    a->more = rc == 0 && mysql_stmt_affected_rows(st) == EXPIRE_ROWS;
    mysql_stmt_close(st);
    return rc;
}

static int mdb_expire_memos(struct store *base, enum read_memo m, int64_t before_ms, bool *more)
{
    struct expire_args a = {m, before_ms, false};
    int rc = with_conn((struct mysql_store *)base, true, do_expire_memos, &a);

    *more = a.more;
    return rc;
}

struct topw_args {
    const char *biz;
    enum count_field by;
    int64_t win, limit;
    struct item_state *out;
    int64_t *window_cnt;
    size_t n;
};

static int do_top_window(struct conn *c, void *arg)
{
    static const enum stmt by_stmt[FIELD_COUNT] = {S_TOPW_READ, S_TOPW_LIKE, S_TOPW_COLLECT};
    struct topw_args *a = arg;
    BINDS(p, 4);
    BINDS(r, 8);
    MYSQL_STMT *st = c->stmt[by_stmt[a->by]];
    struct item_state e;
    int64_t wcnt;
    int rc;

    memset(&e, 0, sizeof(e));
    snprintf(e.item.biz, sizeof(e.item.biz), "%s", a->biz);
    bind_str(&p, a->biz, ITEM_BIZ_MAX + 1);
    bind_i64(&p, &a->win);
    bind_i64(&p, &a->limit);
    bind_i64(&r, &e.item.id);
    bind_i64(&r, &wcnt);
    bind_i64(&r, &e.counts.read_cnt);
    bind_i64(&r, &e.counts.like_cnt);
    bind_i64(&r, &e.counts.collect_cnt);
    if ((rc = exec(c, st, &p, &r)))
        return rc;
    a->n = 0;
    while ((rc = fetch(c, st)) == 1) {
        if (a->n == (size_t)a->limit)
            continue; /* a server ignoring LIMIT: never past out */
        a->window_cnt[a->n] = wcnt;
        a->out[a->n++] = e;
    }
    return rc;
}

static int mdb_top_window(struct store *base, const char *biz, enum count_field by,
                          enum window w, size_t limit, struct item_state *out,
                          int64_t *window_cnt, size_t *n)
{
    struct topw_args a = {biz, by, window_hours[w], (int64_t)limit, out, window_cnt, 0};
    int rc = with_conn((struct mysql_store *)base, false, do_top_window, &a);

    *n = rc ? 0 : a.n;
    return rc;
}

struct history_args {
    const struct item *it;
    enum count_field by;
    int64_t from, to;
    struct hour_count *out;
    size_t n;
};

static int do_history(struct conn *c, void *arg)
{
    static const enum stmt by_stmt[FIELD_COUNT] = {S_HIST_READ, S_HIST_LIKE, S_HIST_COLLECT};
    struct history_args *a = arg;
    BINDS(p, 4);
    BINDS(r, 4);
    MYSQL_STMT *st = c->stmt[by_stmt[a->by]];
    struct hour_count e;
    size_t cap = (size_t)(a->to - a->from + 1);
    int rc;

    bind_item(&p, a->it);
    bind_i64(&p, &a->from);
    bind_i64(&p, &a->to);
    bind_i64(&r, &e.hour);
    bind_i64(&r, &e.n);
    if ((rc = exec(c, st, &p, &r)))
        return rc;
    a->n = 0;
    while ((rc = fetch(c, st)) == 1)
        if (a->n < cap)
            a->out[a->n++] = e;
    return rc;
}

static int mdb_history(struct store *base, const struct item *it, enum count_field by,
                       int64_t from_hour, int64_t to_hour, struct hour_count *out, size_t *n)
{
    struct history_args a = {it, by, from_hour, to_hour, out, 0};
    int rc = with_conn((struct mysql_store *)base, false, do_history, &a);

    *n = rc ? 0 : a.n;
    return rc;
}

/* One int64 column of the first row of st (params bound); *none when there is no row. */
static int first_i64(struct conn *c, MYSQL_STMT *st, struct binds *p, int64_t *v, bool *none)
{
    BINDS(r, 1);
    int64_t got = 0;
    int rc;

    bind_i64(&r, &got);
    if ((rc = exec(c, st, p, &r)))
        return rc;
    *none = true;
    while ((rc = fetch(c, st)) == 1) {
        *v = got;
        *none = false;
    }
    return rc;
}

struct sweep_args {
    int64_t win, target; /* the window and the first hour it holds now */
    bool more;
    int64_t held; /* the first hour the window holds after the step */
};

/*
 * Moves one window's mark towards target: the next hour that has rows is
 * subtracted and the mark moved past it, in one transaction, with the mark row
 * locked and compare-and-set, so each hour leaves each window exactly once.
 */
static int do_sweep_window(struct conn *c, void *arg)
{
    struct sweep_args *a = arg;
    BINDS(p, 4);
    int64_t mark = 0, next = 0, to;
    bool none;
    int rc;

    bind_i64(&p, &a->win);
    rc = first_i64(c, c->stmt[S_MARK_LOCK], &p, &mark, &none);
    a->held = none ? INT64_MIN : mark;
    if (rc || none || mark >= a->target)
        return rc;
    bind_reset(&p);
    bind_i64(&p, &mark);
    if ((rc = first_i64(c, c->stmt[S_HOUR_NEXT], &p, &next, &none)))
        return rc;
    to = a->target;
    if (!none && next < a->target) {
        bind_reset(&p);
        bind_i64(&p, &a->win);
        bind_i64(&p, &next);
        if ((rc = exec(c, c->stmt[S_WINDOW_SUB], &p, NULL)))
            return rc;
        to = next + 1;
    }
    bind_reset(&p);
    bind_i64(&p, &to);
    bind_i64(&p, &a->win);
    bind_i64(&p, &mark);
    if ((rc = exec(c, c->stmt[S_MARK_CAS], &p, NULL)))
        return rc;
    a->more = to < a->target;
    a->held = to;
    return 0;
}

/* A biz fetched into buf (len bytes): refuses what no tallyd wrote. */
static int fetched_biz(const char *buf, unsigned long len, struct item *it)
{
    if (len == 0 || len > ITEM_BIZ_MAX) {
        log_error("mysql: a row's biz is not a valid biz");
        return TALLY_EINTERNAL;
    }
    memcpy(it->biz, buf, len);
    it->biz[len] = '\0';
    return 0;
}

struct drain_args {
    int64_t *ids;
    struct store_row *rows;
    size_t n; /* transitions moved */
};

/* Deletes the queue's rows ids[0, n); *gone: how many there were. */
static int delete_queued(struct conn *c, const int64_t *ids, size_t n, size_t *gone)
{
    BINDS(p, UPSERT_CHUNK);
    int rc = 0;

    *gone = 0;
    for (size_t done = 0, k; done < n && rc == 0; done += k) {
        MYSQL_STMT *st;

        k = chunk_of(n - done);
        if ((rc = sized(c, Z_QUEUE_DEL, k, build_queue_del, &st)))
            break;
        bind_reset(&p);
        for (size_t i = done; i < done + k; i++)
            bind_i64(&p, &ids[i]);
        if ((rc = exec(c, st, &p, NULL)) == 0)
            *gone += (size_t)mysql_stmt_affected_rows(st);
    }
    return rc;
}

/*
 * Moves the oldest QUEUE_ROWS likes' and collections' transitions into the hours and the
 * windows, as ingest adds reads, in its lock order (marks shared, windows, hours). The
 * rows are read from the transaction's snapshot, then deleted by id before anything is
 * added: if another tallyd deleted one of them meanwhile (it moved them), the transaction
 * runs again from a new snapshot, so each transition is added exactly once. Deleting by
 * id locks those rows only, never the gap new likes insert into.
 */
static int do_drain(struct conn *c, void *arg)
{
    struct drain_args *a = arg;
    MYSQL_STMT *st = c->stmt[S_QUEUE_READ];
    BINDS(r, 6);
    char biz[ITEM_BIZ_MAX + 2] = "";
    int64_t id = 0, biz_id = 0, hour = 0, dlike = 0, dcollect = 0;
    size_t gone;
    int rc;

    a->n = 0;
    bind_i64(&r, &id);
    bind_str(&r, biz, sizeof(biz));
    bind_i64(&r, &biz_id);
    bind_i64(&r, &hour);
    bind_i64(&r, &dlike);
    bind_i64(&r, &dcollect);
    if ((rc = exec(c, st, NULL, &r)))
        return rc;
    while ((rc = fetch(c, st)) == 1) {
        struct store_row *row = &a->rows[a->n];

        TALLY_ASSERT(a->n < QUEUE_ROWS); /* S_QUEUE_READ's LIMIT */
        if ((rc = fetched_biz(biz, r.len[1], &row->item))) {
            mysql_stmt_free_result(st);
            return rc;
        }
        row->item.id = biz_id;
        row->key = hour;
        row->v[FIELD_READ_CNT] = 0;
        row->v[FIELD_LIKE_CNT] = dlike;
        row->v[FIELD_COLLECT_CNT] = dcollect;
        a->ids[a->n++] = id;
    }
    if (rc || a->n == 0)
        return rc;
    if ((rc = delete_queued(c, a->ids, a->n, &gone)))
        return rc;
    if (gone != a->n)
        return E_RETRY;
    return add_hourly(c, a->rows, store__merge_rows(a->rows, a->n));
}

static int do_expire(struct conn *c, void *arg)
{
    int64_t *before = arg;
    BINDS(p, 1);
    MYSQL_STMT *st = c->stmt[S_HOUR_EXPIRE];
    int rc;

    bind_i64(&p, before);
    if ((rc = exec(c, st, &p, NULL)))
        return rc;
    *before = mysql_stmt_affected_rows(st) == EXPIRE_ROWS; /* more to delete */
    return 0;
}

static int mdb_sweep_windows(struct store *base, int64_t now_ms, int64_t retention_hours,
                             bool *more)
{
    struct mysql_store *s = (struct mysql_store *)base;
    int64_t cur = store__hour_of(now_ms), before = cur - retention_hours;
    int rc = 0;

    *more = false;
    for (int w = 0; w < WINDOW_COUNT && rc == 0; w++) {
        struct sweep_args a = {window_hours[w], cur - window_hours[w] + 1, false, INT64_MIN};

        rc = with_conn(s, true, do_sweep_window, &a);
        *more = *more || a.more;
        if (a.held < before) /* an hour leaves the table only once every window let it go */
            before = a.held;
    }
    if (rc == 0 && (rc = with_conn(s, true, do_expire, &before)) == 0 && before)
        *more = true;
    return rc;
}

static int mdb_apply_transitions(struct store *base, bool *more)
{
    struct drain_args d = {xcalloc(QUEUE_ROWS, sizeof(*d.ids)),
                           xcalloc(QUEUE_ROWS, sizeof(*d.rows)), 0};
    int rc = with_conn((struct mysql_store *)base, true, do_drain, &d);

    *more = rc == 0 && d.n == QUEUE_ROWS;
    free(d.ids);
    free(d.rows);
    return rc;
}

/* Every window starts at the current hour: nothing is in it yet. */
static int do_init_marks(struct conn *c, void *arg)
{
    int64_t cur = store__hour_of(*(const int64_t *)arg), win, hour;
    int rc = 0;

    for (int w = 0; w < WINDOW_COUNT && rc == 0; w++) {
        BINDS(p, 2);

        win = window_hours[w];
        hour = cur - win + 1;
        bind_i64(&p, &win);
        bind_i64(&p, &hour);
        rc = exec(c, c->stmt[S_MARK_INIT], &p, NULL);
    }
    return rc;
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

struct events_args {
    const char *topic;
    const int32_t *parts;
    size_t n;
    int64_t ms; /* touch: the time to raise to; floor: the answer */
};

static int do_events_floor(struct conn *c, void *arg)
{
    struct events_args *a = arg;
    BINDS(p, 1);
    BINDS(r, 1);
    MYSQL_STMT *st = c->stmt[S_EVENTS_FLOOR];
    int64_t v = INT64_MAX;
    int rc;

    bind_str(&p, a->topic, 0);
    bind_i64(&r, &v);
    if ((rc = exec(c, st, &p, &r)))
        return rc;
    while ((rc = fetch(c, st)) == 1)
        a->ms = v;
    return rc;
}

static int mdb_events_floor(struct store *base, const char *topic, int64_t *floor_ms)
{
    struct events_args a = {.topic = topic, .ms = INT64_MAX};
    int rc = with_conn((struct mysql_store *)base, false, do_events_floor, &a);

    *floor_ms = a.ms;
    return rc;
}

static int do_events_touch(struct conn *c, void *arg)
{
    struct events_args *a = arg;
    int rc = 0;

    for (size_t i = 0; i < a->n && rc == 0; i++) {
        BINDS(p, 3);

        bind_i64(&p, &a->ms);
        bind_str(&p, a->topic, 0);
        bind_i32(&p, &a->parts[i]);
        rc = exec(c, c->stmt[S_EVENTS_TOUCH], &p, NULL);
    }
    return rc;
}

static int mdb_events_touch(struct store *base, const char *topic, const int32_t *parts,
                            size_t n, int64_t ms)
{
    struct events_args a = {topic, parts, n, ms};

    return with_conn((struct mysql_store *)base, true, do_events_touch, &a);
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

/* ------------------------------------------------------------ administration (tallyctl) */

/* Assignments run left to right and see earlier ones: utime is assigned last. */
static const char *const import_sql[RECORD_INTERACTIVE_COUNT] = {
    [RECORD_ITEM] =
        "INSERT INTO interactive (biz, biz_id, read_cnt, like_cnt, collect_cnt, ctime, utime)"
        " VALUES (?, ?, ?, 0, 0, ?, ?) ON DUPLICATE KEY UPDATE"
        " read_cnt = GREATEST(read_cnt, VALUES(read_cnt)), ctime = LEAST(ctime, VALUES(ctime)),"
        " utime = GREATEST(utime, VALUES(utime))",
    [RECORD_LIKE] = "INSERT INTO user_like (uid, biz, biz_id, status, ctime, utime)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE"
                    " status = IF(VALUES(utime) > utime, VALUES(status), status),"
                    " ctime = LEAST(ctime, VALUES(ctime)), utime = GREATEST(utime, VALUES(utime))",
    [RECORD_COLLECTION] =
        "INSERT INTO user_collection (uid, cid, biz, biz_id, status, ctime, utime)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE"
        " status = IF(VALUES(utime) > utime, VALUES(status), status),"
        " cid = IF(VALUES(utime) > utime, VALUES(cid), cid),"
        " ctime = LEAST(ctime, VALUES(ctime)), utime = GREATEST(utime, VALUES(utime))",
};

/*
 * Recounting locks the item's rows in share mode before the item, the order
 * tallyd's own writes take (row, then item), so a like committing meanwhile
 * is either counted or waits.
 */
enum { A_COUNT_LIKES, A_COUNT_COLLECTS, A_SET_COUNTS, A_STMT_COUNT };
static const char *const recount_sql[A_STMT_COUNT] = {
    [A_COUNT_LIKES] = "SELECT COUNT(*) FROM user_like WHERE biz = ? AND biz_id = ? AND status = 1"
                      " LOCK IN SHARE MODE",
    [A_COUNT_COLLECTS] = "SELECT COUNT(*) FROM user_collection WHERE biz = ? AND biz_id = ?"
                         " AND status = 1 LOCK IN SHARE MODE",
    [A_SET_COUNTS] =
        "INSERT INTO interactive (biz, biz_id, read_cnt, like_cnt, collect_cnt, ctime, utime)"
        " VALUES (?, ?, 0, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE like_cnt = VALUES(like_cnt),"
        " collect_cnt = VALUES(collect_cnt)",
};

static void close_stmts(MYSQL_STMT **st, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (st[i])
            mysql_stmt_close(st[i]);
}

static int prepare_all(struct conn *c, const char *const *sql, size_t n, MYSQL_STMT **out)
{
    int rc = 0;

    memset(out, 0, n * sizeof(*out));
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = prepare(c, sql[i], strlen(sql[i]), &out[i]);
    return rc;
}

struct export_args {
    int (*emit)(void *arg, const struct record *r);
    void *arg;
};

static int export_table(struct conn *c, MYSQL_STMT *st, enum record_type type,
                        const struct export_args *a)
{
    int64_t after = 0, limit = STORE_EXPORT_PAGE, v[STORE__EXPORT_COLUMNS];
    char biz[ITEM_BIZ_MAX + 2] = "";
    size_t got;
    int rc;

    do {
        BINDS(p, 2);
        BINDS(r, STORE__EXPORT_COLUMNS);

        bind_i64(&p, &after);
        bind_i64(&p, &limit);
        for (int i = 0; i < STORE__EXPORT_COLUMNS; i++) {
            if (i == 1)
                bind_str(&r, biz, sizeof(biz));
            else
                bind_i64(&r, &v[i]);
        }
        if ((rc = exec(c, st, &p, &r)))
            return rc;
        got = 0;
        while ((rc = fetch(c, st)) == 1) {
            struct record rec = {.type = type};

            got++;
            after = v[0];
            if ((rc = fetched_biz(biz, r.len[1], &rec.item))) {
                mysql_stmt_free_result(st);
                return rc;
            }
            rec.item.id = v[2];
            rec.uid = v[3];
            rec.cid = v[4];
            rec.status = (int)v[5];
            rec.counts = (struct counts){v[6], v[7], v[8]};
            rec.ctime = v[9];
            rec.utime = v[10];
            if ((rc = a->emit(a->arg, &rec))) {
                mysql_stmt_free_result(st);
                return rc;
            }
        }
        if (rc < 0)
            return rc;
    } while (got == STORE_EXPORT_PAGE);
    return 0;
}

/*
 * The other tables, in admin.h's columns, a page after the last key: params says
 * what to bind to each ? (s, a or b of struct store__key), then the page size. The
 * key is compared spelled out with OR, which MariaDB reads as a range of the
 * primary key (a row value "(a, b) > (?, ?)" it reads from the table's start).
 */
struct export_part {
    enum record_type type;
    int memo;
    const char *params, *sql;
};
#define NO_TEXT "NULL, NULL, NULL, "
static const struct export_part export_parts[] = {
    {RECORD_MARK, 0, "a",
     "SELECT " NO_TEXT "win, hour, 0, 0, 0, 0, 0, 0 FROM window_mark WHERE win > ?"
     " ORDER BY win LIMIT ?"},
    {RECORD_HOUR, 0, "ssaab",
     "SELECT biz, NULL, NULL, biz_id, hour, read_cnt, like_cnt, collect_cnt, 0, 0, 0"
     " FROM interactive_hour WHERE biz > ? OR (biz = ? AND (biz_id > ? OR (biz_id = ?"
     " AND hour > ?))) ORDER BY biz, biz_id, hour LIMIT ?"},
    {RECORD_WINDOW, 0, "ssaab",
     "SELECT biz, NULL, NULL, win, biz_id, read_cnt, like_cnt, collect_cnt, 0, 0, 0"
     " FROM interactive_window WHERE biz > ? OR (biz = ? AND (win > ? OR (win = ?"
     " AND biz_id > ?))) ORDER BY biz, win, biz_id LIMIT ?"},
    {RECORD_MEMO, MEMO_IDEM, "a",
     "SELECT " NO_TEXT "k, ms, 0, 0, 0, 0, 0, 0 FROM read_idem WHERE k >= ? ORDER BY k LIMIT ?"},
    {RECORD_MEMO, MEMO_SEEN, "a",
     "SELECT " NO_TEXT "k, ms, 0, 0, 0, 0, 0, 0 FROM read_seen WHERE k >= ? ORDER BY k LIMIT ?"},
    {RECORD_DEAD_LETTER, 0, "a", STORE__DEAD_EXPORT_SQL},
    {RECORD_OFFSET, 0, "ssa",
     "SELECT topic, NULL, NULL, part, next_offset, utime, event_ms, 0, 0, 0, 0 FROM read_offsets"
     " WHERE topic > ? OR (topic = ? AND part > ?) ORDER BY topic, part LIMIT ?"},
};

#define ROW_COLUMNS (STORE__TEXTS + STORE__INTS)

/* Binds admin.h's columns to *row (zeroed first), their NULL flags to nulls. */
static void bind_row(struct binds *r, struct store__row *row, my_bool nulls[ROW_COLUMNS])
{
    memset(row, 0, sizeof(*row));
    for (int i = 0; i < STORE__TEXTS; i++)
        bind_str(r, row->text[i], sizeof(row->text[i]));
    for (int i = 0; i < STORE__INTS; i++)
        bind_i64(r, &row->v[i]);
    for (int i = 0; i < ROW_COLUMNS; i++)
        r->b[r->n - ROW_COLUMNS + i].is_null = &nulls[i];
}

/* After a fetch: the texts' lengths (a longer one than fits shows as too long) and NULLs. */
static void fetched_row(const struct binds *r, struct store__row *row,
                        const my_bool nulls[ROW_COLUMNS])
{
    for (int i = 0; i < STORE__TEXTS; i++) {
        row->text_null[i] = nulls[i];
        row->len[i] = nulls[i] ? 0 : r->len[r->n - ROW_COLUMNS + i];
    }
    for (int i = 0; i < STORE__INTS; i++)
        row->null[i] = nulls[STORE__TEXTS + i];
}

/* Emits one of the other tables, page after page, inside the caller's transaction. */
static int export_part(struct conn *c, const struct export_part *part,
                       const struct export_args *a)
{
    struct store__key k;
    struct store__row row;
    struct record rec;
    my_bool nulls[ROW_COLUMNS];
    int64_t limit = STORE_EXPORT_PAGE;
    MYSQL_STMT *st;
    size_t got;
    int rc;

    store__key_start(&k);
    if ((rc = prepare(c, part->sql, strlen(part->sql), &st)))
        return rc;
    do {
        BINDS(p, 8);
        BINDS(r, ROW_COLUMNS);

        for (const char *q = part->params; *q; q++)
            if (*q == 's')
                bind_str(&p, k.s, 0);
            else
                bind_i64(&p, *q == 'a' ? &k.a : &k.b);
        bind_i64(&p, &limit);
        bind_row(&r, &row, nulls);
        if ((rc = exec(c, st, &p, &r))) /* buffers the page: k may move while it is read */
            break;
        got = 0;
        while ((rc = fetch(c, st)) == 1) {
            got++;
            fetched_row(&r, &row, nulls);
            if ((rc = store__export_row(part->type, part->memo, &row, &rec, &k)) ||
                (rc = a->emit(a->arg, &rec))) {
                mysql_stmt_free_result(st);
                break;
            }
        }
    } while (rc == 0 && got == STORE_EXPORT_PAGE && !k.done);
    if (c->db)
        mysql_stmt_close(st);
    return rc;
}

/* One transaction (REPEATABLE READ): every page reads the snapshot of the first. */
static int do_export(struct conn *c, void *arg)
{
    MYSQL_STMT *st[RECORD_INTERACTIVE_COUNT];
    int rc = prepare_all(c, store__export_sql, RECORD_INTERACTIVE_COUNT, st);

    for (int t = 0; t < RECORD_INTERACTIVE_COUNT && rc == 0; t++)
        rc = export_table(c, st[t], (enum record_type)t, arg);
    if (c->db)
        close_stmts(st, RECORD_INTERACTIVE_COUNT);
    for (size_t i = 0; i < sizeof(export_parts) / sizeof(export_parts[0]) && rc == 0; i++)
        rc = export_part(c, &export_parts[i], arg);
    return rc;
}

static int mdb_export(struct store *base, int (*emit)(void *arg, const struct record *r), void *arg)
{
    struct export_args a = {emit, arg};

    return with_conn((struct mysql_store *)base, true, do_export, &a);
}

static int import_one(struct conn *c, MYSQL_STMT *st, const struct record *r, size_t *changed)
{
    int64_t status = r->status;
    BINDS(p, 8);
    int rc;

    switch (r->type) {
    case RECORD_ITEM:
        bind_item(&p, &r->item);
        bind_i64(&p, &r->counts.read_cnt);
        break;
    case RECORD_LIKE:
        bind_i64(&p, &r->uid);
        bind_item(&p, &r->item);
        bind_i64(&p, &status);
        break;
    default:
        bind_i64(&p, &r->uid);
        bind_i64(&p, &r->cid);
        bind_item(&p, &r->item);
        bind_i64(&p, &status);
        break;
    }
    bind_i64(&p, &r->ctime);
    bind_i64(&p, &r->utime);
    if ((rc = exec(c, st, &p, NULL)) == 0)
        *changed += mysql_stmt_affected_rows(st) > 0;
    return rc;
}

static int count_rows(struct conn *c, MYSQL_STMT *st, const struct item *it, int64_t *n)
{
    BINDS(p, 2);
    BINDS(r, 1);
    int rc;

    bind_item(&p, it);
    bind_i64(&r, n);
    *n = 0;
    if ((rc = exec(c, st, &p, &r)))
        return rc;
    while ((rc = fetch(c, st)) == 1)
        ;
    return rc;
}

static int recount_one(struct conn *c, MYSQL_STMT **st, const struct store__touched *t,
                       size_t *changed)
{
    int64_t likes, collects;
    BINDS(p, 6);
    int rc;

    if ((rc = count_rows(c, st[A_COUNT_LIKES], &t->item, &likes)) ||
        (rc = count_rows(c, st[A_COUNT_COLLECTS], &t->item, &collects)))
        return rc;
    bind_item(&p, &t->item);
    bind_i64(&p, &likes);
    bind_i64(&p, &collects);
    bind_i64(&p, &t->ctime);
    bind_i64(&p, &t->utime);
    if ((rc = exec(c, st[A_SET_COUNTS], &p, NULL)) == 0)
        *changed += mysql_stmt_affected_rows(st[A_SET_COUNTS]) > 0;
    return rc;
}

/*
 * The other tables' rules (store.h, import). A window's mark only moves forward:
 * the hours it passes leave the window's sums, as a sweep would take them. Rows
 * are locked in the order tallyd's own writers lock them: offsets, memos (the read
 * consumer's first), then items, then marks, windows, hours; a mark is locked
 * before its window's rows, as a sweep does.
 */
enum { I_OFFSET, I_IDEM, I_SEEN, I_WINDOW, I_MARK_SUB, I_MARK_SET, I_STMT_COUNT };
static const char *const import_more_sql[I_STMT_COUNT] = {
    [I_OFFSET] = "INSERT INTO read_offsets (topic, part, next_offset, utime, event_ms)"
                 " VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE next_offset = next_offset",
    [I_IDEM] = "INSERT INTO read_idem (k, ms) VALUES (?, ?)"
               " ON DUPLICATE KEY UPDATE ms = GREATEST(ms, VALUES(ms))",
    [I_SEEN] = "INSERT INTO read_seen (k, ms) VALUES (?, ?)"
               " ON DUPLICATE KEY UPDATE ms = GREATEST(ms, VALUES(ms))",
    [I_WINDOW] = "INSERT INTO interactive_window"
                 " (biz, biz_id, win, read_cnt, like_cnt, collect_cnt)"
                 " VALUES (?, ?, ?, 0, 0, 0) ON DUPLICATE KEY UPDATE read_cnt = read_cnt",
    [I_MARK_SUB] = "INSERT INTO interactive_window"
                   " (biz, biz_id, win, read_cnt, like_cnt, collect_cnt)"
                   " SELECT biz, biz_id, ?, -SUM(read_cnt), -SUM(like_cnt), -SUM(collect_cnt)"
                   " FROM interactive_hour WHERE hour >= ? AND hour < ? GROUP BY biz, biz_id"
                   " ON DUPLICATE KEY UPDATE"
                   " read_cnt = interactive_window.read_cnt + VALUES(read_cnt),"
                   " like_cnt = interactive_window.like_cnt + VALUES(like_cnt),"
                   " collect_cnt = interactive_window.collect_cnt + VALUES(collect_cnt)",
    [I_MARK_SET] = "UPDATE window_mark SET hour = ? WHERE win = ?",
};

/* Executes st with p and adds the rows it changed. */
static int exec_counted(struct conn *c, MYSQL_STMT *st, struct binds *p, size_t *changed)
{
    int rc = exec(c, st, p, NULL);

    if (rc == 0)
        *changed += (size_t)mysql_stmt_affected_rows(st);
    return rc;
}

static int import_positions(struct conn *c, MYSQL_STMT **im, const struct record *r, size_t n,
                            size_t *changed)
{
    int rc = 0;

    for (size_t i = 0; i < n && rc == 0; i++) {
        BINDS(p, 5);

        if (r[i].type == RECORD_OFFSET) {
            bind_str(&p, r[i].topic, 0);
            bind_i32(&p, &r[i].partition);
            bind_i64(&p, &r[i].offset);
            bind_i64(&p, &r[i].utime);
            bind_i64(&p, &r[i].ms);
            rc = exec_counted(c, im[I_OFFSET], &p, changed);
        } else if (r[i].type == RECORD_MEMO) {
            bind_i64(&p, &r[i].key);
            bind_i64(&p, &r[i].ms);
            rc = exec_counted(c, im[r[i].memo == MEMO_IDEM ? I_IDEM : I_SEEN], &p, changed);
        }
    }
    return rc;
}

/* Moves window win's mark on to hour when it is behind, taking the hours passed out. */
static int import_mark(struct conn *c, MYSQL_STMT **im, const struct record *m, size_t *changed)
{
    int64_t win = m->win, mark = 0;
    BINDS(p, 4);
    bool none;
    int rc;

    bind_i64(&p, &win);
    if ((rc = first_i64(c, c->stmt[S_MARK_LOCK], &p, &mark, &none)))
        return rc;
    if (none) {
        log_error("mysql: window %lld has no mark", (long long)win);
        return TALLY_EINTERNAL;
    }
    if (m->hour <= mark)
        return 0;
    bind_reset(&p);
    bind_i64(&p, &win);
    bind_i64(&p, &mark);
    bind_i64(&p, &m->hour);
    if ((rc = exec(c, im[I_MARK_SUB], &p, NULL)))
        return rc;
    bind_reset(&p);
    bind_i64(&p, &m->hour);
    bind_i64(&p, &win);
    return exec_counted(c, im[I_MARK_SET], &p, changed);
}

/* What interactive_hour holds of rows[0, n) (at most UPSERT_CHUNK), appended to stored. */
static int lookup_hours(struct conn *c, const struct store_row *rows, size_t n,
                        struct store_row *stored, size_t *ns)
{
    struct strbuf sql = STRBUF_INIT;
    struct binds p = upsert_binds(c);
    BINDS(r, 6);
    struct store_row o;
    char biz[ITEM_BIZ_MAX + 2] = "";
    MYSQL_STMT *st;
    int rc;

    store__hour_lookup_sql(&sql, n);
    rc = prepare(c, sql.buf, sql.len, &st);
    strbuf_release(&sql);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        bind_item(&p, &rows[i].item);
        bind_i64(&p, &rows[i].key);
    }
    bind_str(&r, biz, sizeof(biz));
    bind_i64(&r, &o.item.id);
    bind_i64(&r, &o.key);
    for (int f = 0; f < FIELD_COUNT; f++)
        bind_i64(&r, &o.v[f]);
    if ((rc = exec(c, st, &p, &r)) == 0) {
        while ((rc = fetch(c, st)) == 1) { /* a key matches one row at most */
            if ((rc = fetched_biz(biz, r.len[0], &o.item))) {
                mysql_stmt_free_result(st);
                break;
            }
            stored[(*ns)++] = o;
        }
    }
    if (c->db)
        mysql_stmt_close(st);
    return rc;
}

/* Marks first (a later one moves the window on), then hours, then windows' rows. */
static int import_windows(struct conn *c, MYSQL_STMT **im, const struct record *r, size_t n,
                          size_t *changed)
{
    struct store_row *rows = NULL, *stored;
    size_t nrows = 0, ns = 0, left = 0;
    int rc = 0;

    for (size_t i = 0; i < n && rc == 0; i++)
        if (r[i].type == RECORD_MARK)
            rc = import_mark(c, im, &r[i], changed);
    nrows = rc ? 0 : store__hour_rows(r, n, &rows);
    stored = xmalloc((nrows ? nrows : 1) * sizeof(*stored));
    for (size_t done = 0, k; done < nrows && rc == 0; done += k) {
        k = nrows - done < UPSERT_CHUNK ? nrows - done : UPSERT_CHUNK;
        rc = lookup_hours(c, rows + done, k, stored, &ns);
    }
    if (rc == 0 && (rc = store__hour_deltas(rows, nrows, stored, ns, &left)) == 0 &&
        (rc = add_hourly(c, rows, left)) == 0)
        *changed += left;
    for (size_t i = 0; i < n && rc == 0; i++) {
        int64_t win = r[i].win;
        BINDS(p, 4);

        if (r[i].type != RECORD_WINDOW)
            continue;
        bind_item(&p, &r[i].item);
        bind_i64(&p, &win);
        rc = exec_counted(c, im[I_WINDOW], &p, changed);
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
        BINDS(p, 12);

        bind_item(&p, &d->item);
        bind_i64(&p, &d->uid);
        bind_i64(&p, &d->ts);
        bind_str(&p, d->topic, 0);
        if (!d->has_topic)
            p.b[p.n - 1].buffer_type = MYSQL_TYPE_NULL;
        bind_i32(&p, &d->partition);
        if (!d->has_partition)
            p.b[p.n - 1].buffer_type = MYSQL_TYPE_NULL;
        bind_i64(&p, &d->offset);
        if (!d->has_offset)
            p.b[p.n - 1].buffer_type = MYSQL_TYPE_NULL;
        bind_str(&p, d->error, 0);
        bind_i64(&p, &d->ctime);
        if ((rc = exec(c, c->stmt[S_DEAD_LETTER], &p, NULL)) == 0)
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

/* The groups of identical dead letters among the rows with the ctimes of d[0, k). */
static int lookup_dead(struct conn *c, const struct record *const *d, size_t k,
                       struct record **have, size_t *nh, size_t *cap)
{
    struct strbuf sql = STRBUF_INIT;
    struct binds p = upsert_binds(c);
    BINDS(r, ROW_COLUMNS);
    my_bool nulls[ROW_COLUMNS];
    struct store__row row;
    struct store__key key;
    MYSQL_STMT *st;
    int rc;

    *nh = 0;
    store__dead_lookup_sql(&sql, k);
    rc = prepare(c, sql.buf, sql.len, &st);
    strbuf_release(&sql);
    if (rc)
        return rc;
    for (size_t i = 0; i < k; i++)
        bind_i64(&p, &d[i]->ctime);
    bind_row(&r, &row, nulls);
    if ((rc = exec(c, st, &p, &r)) == 0) {
        while ((rc = fetch(c, st)) == 1) {
            if (*nh == *cap) /* other dead letters may share those ctimes */
                *have = xrealloc(*have, (*cap = *cap ? 2 * *cap : 64) * sizeof(**have));
            fetched_row(&r, &row, nulls);
            if ((rc = store__export_row(RECORD_DEAD_LETTER, 0, &row, &(*have)[(*nh)++],
                                        &key))) {
                mysql_stmt_free_result(st);
                break;
            }
        }
    }
    if (c->db)
        mysql_stmt_close(st);
    return rc;
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
    size_t nd = 0, nh = 0, cap = 0;
    int rc = 0;

    for (size_t i = 0; i < n; i++)
        if (r[i].type == RECORD_DEAD_LETTER)
            d[nd++] = &r[i];
    qsort(d, nd, sizeof(*d), dead_ptr_cmp); /* identical records side by side */
    for (size_t done = 0, k; done < nd && rc == 0; done += k) {
        k = nd - done < UPSERT_CHUNK ? nd - done : UPSERT_CHUNK;
        if ((rc = lookup_dead(c, d + done, k, &have, &nh, &cap)))
            break;
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

struct import_args {
    const struct record *r;
    size_t n;
    const struct store__touched *t;
    size_t nt;
    size_t *changed;
    struct counts *after;
};

static int do_import(struct conn *c, void *arg)
{
    struct import_args *a = arg;
    MYSQL_STMT *up[RECORD_INTERACTIVE_COUNT], *rs[A_STMT_COUNT] = {NULL};
    MYSQL_STMT *im[I_STMT_COUNT] = {NULL};
    size_t k = 0;
    int rc = prepare_all(c, import_sql, RECORD_INTERACTIVE_COUNT, up);

    *a->changed = 0; /* a deadlock runs this again from the start */
    if (rc == 0)
        rc = prepare_all(c, recount_sql, A_STMT_COUNT, rs);
    if (rc == 0)
        rc = prepare_all(c, import_more_sql, I_STMT_COUNT, im);
    if (rc == 0)
        rc = import_positions(c, im, a->r, a->n, a->changed);
    for (size_t i = 0; i < a->n && rc == 0; i++)
        if (a->r[i].type < RECORD_INTERACTIVE_COUNT)
            rc = import_one(c, up[a->r[i].type], &a->r[i], a->changed);
    for (size_t i = 0; i < a->nt && rc == 0; i++)
        rc = recount_one(c, rs, &a->t[i], a->changed);
    for (size_t i = 0; i < a->n && rc == 0 && a->after; i++)
        if (a->r[i].type == RECORD_ITEM)
            rc = read_counts(c, &a->r[i].item, &a->after[k++]);
    if (rc == 0)
        rc = import_windows(c, im, a->r, a->n, a->changed);
    if (rc == 0)
        rc = import_dead(c, a->r, a->n, a->changed);
    if (c->db) {
        close_stmts(up, RECORD_INTERACTIVE_COUNT);
        close_stmts(rs, A_STMT_COUNT);
        close_stmts(im, I_STMT_COUNT);
    }
    return rc;
}

static int mdb_import(struct store *base, const struct record *r, size_t n, int64_t now_ms,
                      size_t *changed, struct counts *after)
{
    struct store__touched *t;
    struct import_args a = {r, n, NULL, 0, changed, after};
    int rc;

    (void)now_ms;
    a.nt = store__touched(r, n, &t);
    a.t = t;
    rc = with_conn((struct mysql_store *)base, true, do_import, &a);
    free(t);
    return rc;
}

struct scan_args {
    int64_t after, limit;
    struct count_check *out;
    size_t *n;
};

static int do_scan(struct conn *c, void *arg)
{
    struct scan_args *a = arg;
    MYSQL_STMT *st;
    int64_t v[8];
    char biz[ITEM_BIZ_MAX + 2] = "";
    BINDS(p, 2);
    BINDS(r, 8);
    int rc;

    *a->n = 0;
    if ((rc = prepare(c, STORE__SCAN_SQL, strlen(STORE__SCAN_SQL), &st)))
        return rc;
    bind_i64(&p, &a->after);
    bind_i64(&p, &a->limit);
    for (int i = 0; i < 8; i++) {
        if (i == 1)
            bind_str(&r, biz, sizeof(biz));
        else
            bind_i64(&r, &v[i]);
    }
    if ((rc = exec(c, st, &p, &r)) == 0) {
        while ((rc = fetch(c, st)) == 1) {
            struct count_check *e = &a->out[*a->n];

            memset(e, 0, sizeof(*e));
            if ((rc = fetched_biz(biz, r.len[1], &e->item))) {
                mysql_stmt_free_result(st);
                break;
            }
            e->row_id = v[0];
            e->item.id = v[2];
            e->stored = (struct counts){v[3], v[4], v[5]};
            e->likes = v[6];
            e->collects = v[7];
            (*a->n)++;
        }
    }
    if (c->db)
        mysql_stmt_close(st);
    return rc;
}

static int mdb_scan_counts(struct store *base, int64_t after, size_t limit,
                           struct count_check *out, size_t *n)
{
    struct scan_args a = {after, (int64_t)limit, out, n};

    return with_conn((struct mysql_store *)base, false, do_scan, &a);
}

struct recount_args {
    const struct store__touched *t;
    size_t n, *changed;
};

static int do_recount(struct conn *c, void *arg)
{
    struct recount_args *a = arg;
    MYSQL_STMT *rs[A_STMT_COUNT];
    int rc = prepare_all(c, recount_sql, A_STMT_COUNT, rs);

    *a->changed = 0;
    for (size_t i = 0; i < a->n && rc == 0; i++)
        rc = recount_one(c, rs, &a->t[i], a->changed);
    if (c->db)
        close_stmts(rs, A_STMT_COUNT);
    return rc;
}

static int mdb_recount(struct store *base, const struct item *items, size_t n, int64_t now_ms,
                       size_t *changed)
{
    struct store__touched *t = xmalloc((n ? n : 1) * sizeof(*t));
    struct recount_args a = {t, n, changed};
    int rc;

    for (size_t i = 0; i < n; i++)
        t[i] = (struct store__touched){items[i], now_ms, now_ms};
    rc = with_conn((struct mysql_store *)base, true, do_recount, &a);
    free(t);
    return rc;
}

/* The first column of the first row of a statement without values. */
static int query_i64(struct conn *c, const char *sql, int64_t *out)
{
    MYSQL_RES *res;
    MYSQL_ROW row;

    *out = -1;
    if (mysql_query(c->db, sql))
        return db_err(c, sql);
    if (!(res = mysql_store_result(c->db)))
        return db_err(c, sql);
    if ((row = mysql_fetch_row(res)) && row[0])
        *out = strtoll(row[0], NULL, 10);
    mysql_free_result(res);
    return 0;
}

/* CHECK TABLE on every table: a problem is an "error" row or a status other than OK. */
static bool check_tables(struct conn *c, struct strbuf *detail)
{
    MYSQL_RES *res;
    MYSQL_ROW row;
    int problems = 0, tables = 0;

    if (mysql_query(c->db, "CHECK TABLE interactive, user_like, user_collection,"
                           " interactive_hour, interactive_window, window_mark, read_idem,"
                           " read_seen, read_dead_letter, read_offsets, tally_schema") ||
        !(res = mysql_store_result(c->db))) {
        strbuf_addstr(detail, mysql_error(c->db));
        return false;
    }
    while ((row = mysql_fetch_row(res))) {
        bool status = row[2] && strcmp(row[2], "status") == 0;
        bool bad = (row[2] && strcmp(row[2], "error") == 0) ||
                   (status && row[3] && strcmp(row[3], "OK") != 0);

        tables += status;
        if (bad && problems++ == 0)
            strbuf_addf(detail, "%s: %s", row[0] ? row[0] : "?", row[3] ? row[3] : "?");
    }
    mysql_free_result(res);
    if (problems == 0)
        strbuf_addf(detail, "CHECK TABLE: %d tables OK", tables);
    else if (problems > 1)
        strbuf_addf(detail, " (and %d more)", problems - 1);
    return problems == 0;
}

/* Binds a check query's columns (admin.h, struct store__check_row) to *row: n of them. */
static void check_bind(struct binds *r, struct store__check_row *row, unsigned n,
                       my_bool nulls[STORE__TEXTS + STORE__CHECK_INTS])
{
    memset(row, 0, sizeof(*row));
    for (unsigned i = 0; i < n; i++) {
        if (i < STORE__TEXTS)
            bind_str(r, row->text[i], sizeof(row->text[i]));
        else
            bind_i64(r, &row->v[i - STORE__TEXTS]);
        r->b[i].is_null = &nulls[i];
        nulls[i] = 1; /* what the query does not answer stays NULL */
    }
}

static void check_fetched(const struct binds *r, struct store__check_row *row, unsigned n,
                          const my_bool nulls[STORE__TEXTS + STORE__CHECK_INTS])
{
    for (unsigned i = 0; i < STORE__TEXTS + STORE__CHECK_INTS; i++) {
        bool null = i >= n || nulls[i];

        if (i < STORE__TEXTS) {
            row->text_null[i] = null;
            row->len[i] = null ? 0 : r->len[i];
        } else {
            row->null[i - STORE__TEXTS] = null;
        }
    }
}

/* A parameter of *len bytes at s, not NUL-terminated (a key text as it was fetched). */
static void bind_bytes(struct binds *p, const char *s, unsigned long *len)
{
    TALLY_ASSERT(p->n < p->cap);
    MYSQL_BIND *b = &p->b[p->n++];

    memset(b, 0, sizeof(*b));
    b->buffer_type = MYSQL_TYPE_STRING;
    b->buffer = (void *)s;
    b->buffer_length = *len;
    b->length = len;
}

/* Why a check query failed: its statement's error, or the connection's. */
static const char *check_error(struct conn *c, MYSQL_STMT *const st[2])
{
    if (!c->db)
        return "the connection was lost";
    for (int i = 1; i >= 0; i--)
        if (st[i] && mysql_stmt_errno(st[i]))
            return mysql_stmt_error(st[i]);
    return *mysql_error(c->db) ? mysql_error(c->db) : "a query failed (see the log)";
}

/* Reads one part of the check, page after page (each page one statement: one snapshot). The
 * next page starts after the last row's key, bound from that row as it was fetched. */
static void check_part(struct conn *c, const struct store__check_sql *q, struct store__check *ck)
{
    const char *params = q->params[1];
    MYSQL_STMT *st[2] = {NULL, NULL};
    struct store__check_row row, last = {.len = {0}};
    my_bool nulls[STORE__TEXTS + STORE__CHECK_INTS];
    unsigned long key_len[STORE__TEXTS];
    int64_t limit = STORE__CHECK_PAGE;
    size_t got;
    int rc = 0;

    store__check_part(ck, q->part);
    for (int next = 0; next < 2 && rc == 0; next++) {
        struct strbuf sql = STRBUF_INIT;

        strbuf_addf(&sql, "%s(%s)%s", q->head, next ? q->after[1] : "1 = 1", q->tail);
        rc = prepare(c, sql.buf, sql.len, &st[next]);
        strbuf_release(&sql);
    }
    for (bool first = true; rc == 0; first = false) {
        MYSQL_STMT *page = st[!first];
        unsigned n = mysql_stmt_field_count(page);
        BINDS(p, 8);
        BINDS(r, STORE__TEXTS + STORE__CHECK_INTS);

        TALLY_ASSERT(n >= STORE__TEXTS && n <= STORE__TEXTS + STORE__CHECK_INTS);
        for (const char *k = params; *k && !first; k++) {
            int t = *k - '0';

            if (*k >= 'a') {
                bind_i64(&p, &last.v[*k - 'a']);
                continue;
            }
            key_len[t] = (unsigned long)(last.len[t] < sizeof(last.text[t]) ? last.len[t]
                                                                            : sizeof(last.text[t]));
            bind_bytes(&p, last.text[t], &key_len[t]);
        }
        bind_i64(&p, &limit);
        check_bind(&r, &row, n, nulls);
        if ((rc = exec(c, page, &p, &r)))
            break;
        got = 0;
        while ((rc = fetch(c, page)) == 1) {
            got++;
            check_fetched(&r, &row, n, nulls);
            store__check_row(ck, q->part, &row);
            last = row;
        }
        if (rc < 0)
            break;
        store__check_page(ck);
        if (got == 0)
            break;
    }
    if (rc)
        store__check_fail(ck, check_error(c, st));
    for (int i = 0; i < 2 && c->db; i++)
        if (st[i])
            mysql_stmt_close(st[i]);
}

struct check_args {
    const struct store_check_out *out;
};

static int do_check(struct conn *c, void *arg)
{
    const struct store_check_out *out = ((struct check_args *)arg)->out;
    struct store__check ck;
    struct strbuf d = STRBUF_INIT;
    int64_t v = -1;
    bool ok;

    ok = query_i64(c, "SELECT COALESCE(MAX(version), 0) FROM tally_schema", &v) == 0 &&
         v == SCHEMA_VERSION;
    strbuf_addf(&d, "version %lld (this build: %d)", (long long)v, SCHEMA_VERSION);
    out->check(out->arg, ok, "schema", d.buf);
    strbuf_reset(&d);
    ok = c->db && check_tables(c, &d);
    out->check(out->arg, ok, "integrity", d.buf);
    strbuf_release(&d);

    store__check_init(&ck, out, SCHEMA_VERSION);
    for (int p = 0; p < STORE__CHECK_PARTS; p++) {
        const struct store__check_sql *q = &store__check_sql[p];

        if (!q->after[1])
            continue;
        if (c->db) {
            check_part(c, q, &ck);
        } else { /* lost in an earlier part: said, not retried */
            store__check_part(&ck, q->part);
            store__check_fail(&ck, "the connection was lost");
        }
    }
    store__check_done(&ck);
    return 0;
}

static int mdb_check(struct store *base, const struct store_check_out *out)
{
    struct check_args a = {out};

    return with_conn((struct mysql_store *)base, false, do_check, &a);
}

/* ------------------------------------------------------------ open and free */

static void cfg_release(struct mysql_cfg *cfg)
{
    free(cfg->host);
    free(cfg->user);
    free(cfg->pass);
    free(cfg->dbname);
    free(cfg->ssl_ca);
    memset(cfg, 0, sizeof(*cfg));
}

static void mdb_free(struct store *base)
{
    struct mysql_store *s = (struct mysql_store *)base;

    for (size_t i = 0; i < s->nconns; i++)
        conn_close(&s->conns[i]);
    free(s->conns);
    cfg_release(&s->cfg);
    pool_release(&s->pool);
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

static const char *const known_options[] = {"pool", "ssl", "ssl_ca", NULL};

/* The settings u gives (cfg is released by the caller); 0 or a reason in *why. */
static int cfg_from_url(const struct url *u, struct mysql_cfg *cfg, char **why)
{
    const char *ssl = url_option(u, "ssl"), *ca = url_option(u, "ssl_ca");
    long long pool;

    memset(cfg, 0, sizeof(*cfg));
    *why = NULL;
    if (url_check_options(u, known_options, why))
        return TALLY_EINVAL;
    if (u->nhosts != 1 || !u->user || !*u->path)
        *why = xstrdup("expected mysql://USER:PASS@HOST:PORT/DB");
    else if (strchr(u->path, '/'))
        *why = xstrdup("the path is one database name");
    else if (url_option_int(u, "pool", 1, POOL_MAX, 0, &pool))
        *why = xstrdup("pool=N takes N in 1..1024");
    else if (ssl && strcmp(ssl, "0") != 0 && strcmp(ssl, "1") != 0)
        *why = xstrdup("ssl takes 0 or 1");
    else if (ca && !(ssl && strcmp(ssl, "1") == 0))
        *why = xstrdup("ssl_ca needs ssl=1");
    else if (ca && access(ca, R_OK) != 0)
        *why = xstrdup("ssl_ca: the CA file cannot be read");
    if (*why)
        return TALLY_EINVAL;
    cfg->host = xstrdup(u->hosts[0].name);
    cfg->port = u->hosts[0].port ? (unsigned)u->hosts[0].port : 3306;
    cfg->user = xstrdup(u->user);
    cfg->user_secret = !u->password;
    cfg->pass = xstrdup(u->password ? u->password : "");
    cfg->dbname = xstrdup(u->path);
    cfg->pool = (int)pool;
    cfg->ssl = ssl && strcmp(ssl, "1") == 0;
    cfg->ssl_ca = ca ? xstrdup(ca) : NULL;
    return 0;
}

/* USER@HOST:PORT/DB, and whether over TLS: what messages name, never the password. */
static char *where(const struct mysql_cfg *cfg)
{
    return xstrfmt("%s@%s:%u/%s%s", cfg->user_secret ? "***" : cfg->user, cfg->host, cfg->port,
                   cfg->dbname, cfg->ssl ? " (TLS)" : "");
}

int store_mysql_check(const struct url *u, char **why)
{
    struct mysql_cfg cfg;
    int rc = cfg_from_url(u, &cfg, why);

    cfg_release(&cfg);
    return rc;
}

static const struct store_ops mdb_ops = {
    .name = "mysql",
    .counts = mdb_counts,
    .flags = mdb_flags,
    .set_like = mdb_set_like,
    .set_collect = mdb_set_collect,
    .user_items = mdb_user_items,
    .erase_rows = mdb_erase_rows,
    .list_likes = mdb_list_likes,
    .list_collection = mdb_list_collection,
    .top = mdb_top,
    .top_window = mdb_top_window,
    .history = mdb_history,
    .apply_reads = mdb_apply_reads,
    .sweep_windows = mdb_sweep_windows,
    .apply_transitions = mdb_apply_transitions,
    .expire_memos = mdb_expire_memos,
    .dead_letter = mdb_dead_letter,
    .load_offset = mdb_load_offset,
    .events_floor = mdb_events_floor,
    .events_touch = mdb_events_touch,
    .ping = mdb_ping,
    .free = mdb_free,
    .export_rows = mdb_export,
    .import = mdb_import,
    .scan_counts = mdb_scan_counts,
    .recount = mdb_recount,
    .check = mdb_check,
    .backup = NULL, /* mariadb-dump --single-transaction: docs/operations.md */
};

int store_mysql_open(const struct url *u, int workers, struct store **out, char **err)
{
    struct mysql_store *s = xcalloc(1, sizeof(*s));
    char *why = NULL;
    int rc;

    if ((rc = cfg_from_url(u, &s->cfg, &why))) {
        *err = xstrfmt("invalid --store: %s", why);
        free(why);
        cfg_release(&s->cfg);
        free(s);
        return rc;
    }
    s->base.ops = &mdb_ops;
    s->nconns = s->cfg.pool ? (size_t)s->cfg.pool : pool_size_for(workers);
    s->conns = xcalloc(s->nconns, sizeof(*s->conns));
    pool_init(&s->pool, "mysql", s->nconns, POOL_WAIT_MS);
    for (size_t i = s->nconns; i > 0; i--)
        pool_put(&s->pool, &s->conns[i - 1]);
    int64_t now = clock_now_ms();
    if ((rc = migrate(s)) || (rc = with_conn(s, true, do_init_marks, &now))) {
        char *w = where(&s->cfg);

        *err = xstrfmt("cannot open mysql store %s: %s", w, tally_strerror(rc));
        free(w);
        mdb_free(&s->base);
        return rc;
    }
    *out = &s->base;
    return 0;
}

char *store_mysql_where(const struct url *u)
{
    struct mysql_cfg cfg;
    char *why = NULL, *w;

    if (cfg_from_url(u, &cfg, &why)) {
        free(why);
        cfg_release(&cfg);
        return xstrdup("(an invalid mysql URL)");
    }
    w = where(&cfg);
    cfg_release(&cfg);
    return w;
}

int store_mysql_connect(const struct url *u, unsigned timeout_s, MYSQL **db, char **err)
{
    struct mysql_cfg cfg;
    int rc;

    *db = NULL;
    if ((rc = cfg_from_url(u, &cfg, err)))
        goto out;
    if ((rc = db_connect(&cfg, timeout_s, timeout_s, 0, db))) {
        *err = connect_error(&cfg, *db);
        mysql_close(*db);
        *db = NULL;
    }
out:
    cfg_release(&cfg);
    return rc;
}
