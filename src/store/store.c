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

const int window_hours[WINDOW_COUNT] = {1, 24, 168, 720};
const char *const window_names[WINDOW_COUNT] = {"1h", "24h", "7d", "30d"};

size_t store__window_sum(const struct store_row *rows, size_t n, int64_t from_hour, int64_t win,
                         struct store_row *out)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        if (rows[i].key < from_hour)
            continue;
        if (k == 0 || item_cmp(&out[k - 1].item, &rows[i].item) != 0) {
            out[k] = rows[i];
            out[k].key = win;
            k++;
        } else {
            for (int f = 0; f < FIELD_COUNT; f++)
                out[k - 1].v[f] += rows[i].v[f];
        }
    }
    return k;
}

int64_t store__hour_of(int64_t ms)
{
    return ms >= 0 ? ms / HOUR_MS : -((-ms + HOUR_MS - 1) / HOUR_MS);
}

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
