/*
 * mysql.h - the MySQL / MariaDB store adapter.
 */
#ifndef TALLY_STORE_MYSQL_H
#define TALLY_STORE_MYSQL_H

#include "store/store.h"

struct url;

/*
 * u: mysql://USER[:PASS]@HOST[:PORT]/DB[?pool=N&ssl=1&ssl_ca=PATH]. *why and
 * *err as for store_check and store_open_url.
 */
int store_mysql_check(const struct url *u, char **why);
int store_mysql_open(const struct url *u, struct store **out, char **err);

#endif
