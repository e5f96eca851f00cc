/*
 * strbuf.h - a growable, length-carrying byte buffer (after git's strbuf).
 *
 * Invariants, true between any two calls:
 *   - buf is never NULL and buf[len] == '\0', so buf is always a C string
 *     (it may also hold NUL bytes inside; len is the truth);
 *   - len < alloc once anything has been allocated; a fresh strbuf points at
 *     a shared empty string and alloc == 0.
 * Used for JSON output, SQL text, cache keys and log lines, instead of fixed
 * arrays and sprintf. A strbuf is owned by whoever declared it; release it
 * with strbuf_release().
 */
#ifndef TALLY_STRBUF_H
#define TALLY_STRBUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct strbuf {
    size_t len;
    size_t alloc;
    char *buf;
};

extern char strbuf_slopbuf[];
#define STRBUF_INIT          \
    {                        \
        0, 0, strbuf_slopbuf \
    }

void strbuf_init(struct strbuf *sb, size_t hint);
void strbuf_release(struct strbuf *sb);
/* Hands the buffer to the caller, who frees it; sb is left empty. */
char *strbuf_detach(struct strbuf *sb, size_t *len);
void strbuf_grow(struct strbuf *sb, size_t extra);
void strbuf_reset(struct strbuf *sb);

void strbuf_add(struct strbuf *sb, const void *data, size_t len);
void strbuf_addstr(struct strbuf *sb, const char *s);
void strbuf_addch(struct strbuf *sb, char c);
void strbuf_addf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap);
void strbuf_add_i64(struct strbuf *sb, int64_t v);
/* s as a JSON string literal, quotes included (control characters escaped). */
void strbuf_add_json_string(struct strbuf *sb, const char *s);

/* A new formatted string (git's xstrfmt); the caller frees it. */
char *xstrfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
