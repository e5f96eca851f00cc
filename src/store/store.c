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

const int window_hours[WINDOW_COUNT] = {1, 24, 168, 720};
const char *const window_names[WINDOW_COUNT] = {"1h", "24h", "7d", "30d"};

size_t store__window_sums(const struct store_row *rows, size_t n,
                          const int64_t mark[WINDOW_COUNT], struct store_row *out)
{
    size_t k = 0;

    for (int w = 0; w < WINDOW_COUNT; w++) {
        size_t first = k;

        for (size_t i = 0; i < n; i++) {
            if (rows[i].key < mark[w])
                continue;
            if (k == first || item_cmp(&out[k - 1].item, &rows[i].item) != 0) {
                out[k] = rows[i];
                out[k].key = window_hours[w];
                k++;
            } else {
                for (int f = 0; f < FIELD_COUNT; f++)
                    out[k - 1].v[f] += rows[i].v[f];
            }
        }
    }
    return k;
}

int store__row_cmp(const void *a, const void *b)
{
    const struct store_row *x = a, *y = b;
    int c = item_cmp(&x->item, &y->item);

    return c ? c : (x->key > y->key) - (x->key < y->key);
}

size_t store__merge_rows(struct store_row *rows, size_t n)
{
    size_t k = 0;

    qsort(rows, n, sizeof(*rows), store__row_cmp);
    for (size_t i = 0; i < n; i++) {
        if (k && store__row_cmp(&rows[k - 1], &rows[i]) == 0) {
            for (int f = 0; f < FIELD_COUNT; f++)
                rows[k - 1].v[f] += rows[i].v[f];
            continue;
        }
        rows[k++] = rows[i];
    }
    return k;
}

int64_t store__hour_of(int64_t ms)
{
    return ms >= 0 ? ms / HOUR_MS : -((-ms + HOUR_MS - 1) / HOUR_MS);
}

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

int store_open_url(const struct url *u, int workers, struct store **out, char **err)
{
    if (strcmp(u->scheme, "mysql") == 0)
        return store_mysql_open(u, workers, out, err);
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
        rc = store_open_url(&u, STORE_WORKERS_DEFAULT, out, err);
    url_release(&u);
    return rc;
}
