/*
 * json.c - see json.h.
 */
#include "http/json.h"

#include "util/banned.h"

void json_add_string(struct strbuf *sb, const char *s)
{
    strbuf_add_json_string(sb, s);
}

static void add_item(struct strbuf *sb, const struct item *it)
{
    /* biz is validated to [a-z0-9_], so it needs no escaping. */
    strbuf_addstr(sb, "{\"biz\":\"");
    strbuf_addstr(sb, it->biz);
    strbuf_addstr(sb, "\",\"id\":");
    strbuf_add_i64(sb, it->id);
}

void json_add_state(struct strbuf *sb, const struct item_state *st)
{
    add_item(sb, &st->item);
    strbuf_addstr(sb, ",\"read_cnt\":");
    strbuf_add_i64(sb, st->counts.read_cnt);
    strbuf_addstr(sb, ",\"like_cnt\":");
    strbuf_add_i64(sb, st->counts.like_cnt);
    strbuf_addstr(sb, ",\"collect_cnt\":");
    strbuf_add_i64(sb, st->counts.collect_cnt);
    strbuf_addstr(sb, st->liked ? ",\"liked\":true" : ",\"liked\":false");
    strbuf_addstr(sb, st->collected ? ",\"collected\":true}" : ",\"collected\":false}");
}

void json_add_window_state(struct strbuf *sb, const struct item_state *st, int64_t window_cnt)
{
    json_add_state(sb, st);
    sb->len--; /* the closing brace, which json_add_state always writes last */
    strbuf_addstr(sb, ",\"window_cnt\":");
    strbuf_add_i64(sb, window_cnt);
    strbuf_addch(sb, '}');
}

void json_add_list_entry(struct strbuf *sb, const struct list_entry *e)
{
    add_item(sb, &e->item);
    strbuf_addstr(sb, ",\"ctime\":");
    strbuf_add_i64(sb, e->ctime);
    strbuf_addch(sb, '}');
}

void json_add_error(struct strbuf *sb, const char *code, const char *message)
{
    strbuf_addstr(sb, "{\"error\":{\"code\":");
    json_add_string(sb, code);
    strbuf_addstr(sb, ",\"message\":");
    json_add_string(sb, message);
    strbuf_addstr(sb, "}}");
}
