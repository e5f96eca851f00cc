/*
 * mysql.h - the MySQL / MariaDB store adapter.
 */
#ifndef TALLY_STORE_MYSQL_H
#define TALLY_STORE_MYSQL_H

#include "store/store.h"

/* url: mysql://USER:PASS@HOST[:PORT]/DB[?pool=N]. *err as for store_open. */
int store_mysql_open(const char *url, struct store **out, char **err);
int store_mysql_check_url(const char *url, char **err);

#endif
