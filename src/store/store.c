/*
 * store.c - choosing a store adapter by URL.
 */
#include "store/store.h"

#include <string.h>

#include "store/mysql.h"
#include "store/sqlite.h"
#include "util/error.h"
#include "util/strbuf.h"
#include "util/banned.h"

static const char *sqlite_path(const char *url)
{
    return strncmp(url, "sqlite:", 7) == 0 ? url + 7 : NULL;
}

int store_check_url(const char *url, char **err)
{
    const char *path = sqlite_path(url);

    if (path && *path)
        return 0;
    if (strncmp(url, "mysql://", 8) == 0)
        return store_mysql_check_url(url, err);
    *err = path
               ? xstrfmt("invalid --store '%s': sqlite: needs a file path", url)
               : xstrfmt(
                     "invalid --store '%s': expected sqlite:PATH or mysql://USER:PASS@HOST:PORT/DB",
                     url);
    return TALLY_EINVAL;
}

int store_open(const char *url, struct store **out, char **err)
{
    int rc = store_check_url(url, err);

    if (rc)
        return rc;
    if (strncmp(url, "mysql://", 8) == 0)
        return store_mysql_open(url, out, err);
    return store_sqlite_open(sqlite_path(url), out, err);
}
