/*
 * store.c - choosing a store adapter by URL.
 */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#include "store/mysql.h"
#include "store/sqlite.h"
#include "util/error.h"
#include "util/strbuf.h"
#include "util/url.h"
#include "util/xmalloc.h"
#include "util/banned.h"

int store_check(const struct url *u, char **why)
{
    if (strcmp(u->scheme, "mysql") == 0 && !u->opaque)
        return store_mysql_check(u, why);
    if (strcmp(u->scheme, "sqlite") == 0 && u->opaque && *u->path)
        return 0;
    *why = xstrdup(strcmp(u->scheme, "sqlite") == 0
                       ? "expected sqlite:PATH, with a file path"
                       : "expected sqlite:PATH or mysql://USER:PASS@HOST:PORT/DB");
    return TALLY_EINVAL;
}

int store_open_url(const struct url *u, struct store **out, char **err)
{
    if (strcmp(u->scheme, "mysql") == 0)
        return store_mysql_open(u, out, err);
    return store_sqlite_open(u->path, out, err);
}

int store_check_url(const char *url, char **err)
{
    struct url u;
    int rc = url_parse_checked("--store", url, store_check, &u, err);

    url_release(&u);
    return rc;
}

int store_open(const char *url, struct store **out, char **err)
{
    struct url u;
    int rc = url_parse_checked("--store", url, store_check, &u, err);

    if (rc == 0)
        rc = store_open_url(&u, out, err);
    url_release(&u);
    return rc;
}
