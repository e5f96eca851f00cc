/*
 * item.c - see item.h.
 */
#include "model/item.h"

#include <string.h>

#include "util/error.h"
#include "util/hash.h"
#include "util/strbuf.h"
#include "util/banned.h"

const char *const count_field_names[FIELD_COUNT] = {"read_cnt", "like_cnt", "collect_cnt"};

int item_parse_biz(const char *s, size_t len, char out[ITEM_BIZ_MAX + 1])
{
    if (len == 0 || len > ITEM_BIZ_MAX || s[0] < 'a' || s[0] > 'z')
        return TALLY_EINVAL;
    for (size_t i = 1; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return TALLY_EINVAL;
    }
    memcpy(out, s, len);
    out[len] = '\0';
    return 0;
}

int item_parse_id(const char *s, size_t len, int64_t *out)
{
    uint64_t v = 0;

    if (len == 0 || len > 19)
        return TALLY_EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return TALLY_EINVAL;
        v = v * 10 + (uint64_t)(s[i] - '0'); /* 19 digits cannot overflow uint64 */
    }
    if (v == 0 || v > (uint64_t)INT64_MAX)
        return TALLY_EINVAL;
    *out = (int64_t)v;
    return 0;
}

bool item_id_valid(int64_t v)
{
    return v >= 1;
}

uint64_t read_idem_digest(const char *caller, const struct item *it, const char *key,
                          size_t len)
{
    struct strbuf sb = STRBUF_INIT;
    uint64_t h;

    /* NUL-separated: no caller or biz holds a NUL, and the key comes last. */
    strbuf_addstr(&sb, caller);
    strbuf_addch(&sb, '\0');
    strbuf_addf(&sb, "%s:%lld", it->biz, (long long)it->id);
    strbuf_addch(&sb, '\0');
    strbuf_add(&sb, key, len);
    h = hash64("idem", sb.buf, sb.len);
    strbuf_release(&sb);
    return h;
}

int count_field_parse(const char *s, enum count_field *out)
{
    for (int f = 0; f < FIELD_COUNT; f++) {
        if (strcmp(s, count_field_names[f]) == 0) {
            *out = (enum count_field)f;
            return 0;
        }
    }
    return TALLY_EINVAL;
}

int64_t counts_get(const struct counts *c, enum count_field f)
{
    switch (f) {
    case FIELD_READ_CNT: return c->read_cnt;
    case FIELD_LIKE_CNT: return c->like_cnt;
    default: return c->collect_cnt;
    }
}

int item_cmp(const struct item *a, const struct item *b)
{
    int c = strcmp(a->biz, b->biz);
    if (c)
        return c;
    return a->id < b->id ? -1 : a->id > b->id;
}

bool read_text_valid(const char *s, size_t len, size_t max)
{
    if (len < 1 || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return true;
}
