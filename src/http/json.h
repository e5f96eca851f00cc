/*
 * json.h - writing tally's JSON responses into a strbuf.
 *
 * Responses are small and fixed in shape, so they are written directly
 * (faster than building a jansson tree per request). Request bodies are
 * parsed with jansson in api.c.
 */
#ifndef TALLY_HTTP_JSON_H
#define TALLY_HTTP_JSON_H

#include "model/item.h"
#include "util/strbuf.h"

/* Appends s as a JSON string literal, escaped. */
void json_add_string(struct strbuf *sb, const char *s);
/* Appends {"biz":...,"id":...,"read_cnt":...,...,"liked":...,"collected":...}. */
void json_add_state(struct strbuf *sb, const struct item_state *st);
/* The same with ,"window_cnt":N before the closing brace (windowed top lists). */
void json_add_window_state(struct strbuf *sb, const struct item_state *st, int64_t window_cnt);
/* Appends {"biz":...,"id":...,"ctime":...}. */
void json_add_list_entry(struct strbuf *sb, const struct list_entry *e);
/* Appends {"error":{"code":...,"message":...}}. */
void json_add_error(struct strbuf *sb, const char *code, const char *message);

#endif
