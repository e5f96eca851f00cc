/*
 * admin.c - the pieces of tallyctl's bulk work both adapters share (admin.h).
 */
#include "store/admin.h"

#include <stdlib.h>

#include "util/xmalloc.h"
#include "util/banned.h"

const char *const store__export_sql[RECORD_TYPE_COUNT] = {
    [RECORD_ITEM] = "SELECT id, biz, biz_id, 0, 0, 1, read_cnt, like_cnt, collect_cnt, ctime,"
                    " utime FROM interactive WHERE id > ? ORDER BY id LIMIT ?",
    [RECORD_LIKE] = "SELECT id, biz, biz_id, uid, 0, status, 0, 0, 0, ctime, utime"
                    " FROM user_like WHERE id > ? ORDER BY id LIMIT ?",
    [RECORD_COLLECTION] = "SELECT id, biz, biz_id, uid, cid, status, 0, 0, 0, ctime, utime"
                          " FROM user_collection WHERE id > ? ORDER BY id LIMIT ?",
};

static int touched_cmp(const void *a, const void *b)
{
    return item_cmp(&((const struct store__touched *)a)->item,
                    &((const struct store__touched *)b)->item);
}

size_t store__touched(const struct record *r, size_t n, struct store__touched **out)
{
    struct store__touched *t = xmalloc((n ? n : 1) * sizeof(*t));
    size_t m = 0;

    for (size_t i = 0; i < n; i++)
        t[i] = (struct store__touched){r[i].item, r[i].ctime, r[i].utime};
    qsort(t, n, sizeof(*t), touched_cmp);
    for (size_t i = 0; i < n; i++) {
        if (m && item_cmp(&t[m - 1].item, &t[i].item) == 0) {
            if (t[i].ctime < t[m - 1].ctime)
                t[m - 1].ctime = t[i].ctime;
            if (t[i].utime > t[m - 1].utime)
                t[m - 1].utime = t[i].utime;
            continue;
        }
        t[m++] = t[i];
    }
    *out = t;
    return m;
}
