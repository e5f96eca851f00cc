/*
 * sqlite.h - the embedded store adapter (SQLite, WAL mode).
 */
#ifndef TALLY_STORE_SQLITE_H
#define TALLY_STORE_SQLITE_H

#include "store/store.h"

/* Opens (creating and migrating) the database at path. *err as for store_open. */
int store_sqlite_open(const char *path, struct store **out, char **err);
/* The schema version this build migrates a store to (tallyd --version). */
int store_sqlite_schema_version(void);

#endif
