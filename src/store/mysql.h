/*
 * mysql.h - the MySQL / MariaDB store adapter.
 */
#ifndef TALLY_STORE_MYSQL_H
#define TALLY_STORE_MYSQL_H

#include "store/store.h"

struct url;
struct st_mysql; /* Connector/C's MYSQL */

/*
 * u: mysql://USER[:PASS]@HOST[:PORT]/DB[?pool=N&ssl=1&ssl_ca=PATH]. *why and
 * *err as for store_check and store_open_url. The pool holds N connections, by
 * default pool_size_for(workers) (util/pool.h).
 */
int store_mysql_check(const struct url *u, char **why);
int store_mysql_open(const struct url *u, int workers, struct store **out, char **err);
/* The schema version this build migrates a store to (tallyd --version). */
int store_mysql_schema_version(void);

/*
 * For a tool that reads other tables on such a server (tallyctl import
 * --from): one connection to what u names, set up exactly as the store's
 * own (utf8mb4, TLS and certificate verification as ssl and ssl_ca say),
 * with timeout_s to connect, read and write. Returns 0 and *db, which the
 * caller closes with mysql_close(); or TALLY_EINVAL (u fails
 * store_mysql_check) or TALLY_EUNAVAIL, and *err, the reason without the
 * password, nor a user given without one (caller frees). Single-threaded use only, like any MYSQL handle.
 */
int store_mysql_connect(const struct url *u, unsigned timeout_s, struct st_mysql **db,
                        char **err);
/*
 * "USER@HOST:PORT/DB" (and " (TLS)") of u, for messages: no password, and "***" for a USER
 * given without one (it may be the password in the wrong place). Caller frees.
 */
char *store_mysql_where(const struct url *u);

#endif
