/*
 * framing.c - RFC 9112's framing rules that tally checks itself (see framing.h
 * for why: the parser's build decides what it lets through).
 */
#include "http/framing.h"

#include <string.h>
#include <strings.h>

#include "util/banned.h"

static bool tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

size_t framing_token_len(const char *s, size_t len)
{
    size_t n = 0;

    while (n < len && tchar(s[n]))
        n++;
    return n;
}

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

void framing_trim_ows(const char **s, size_t *len)
{
    while (*len > 0 && ows(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && ows((*s)[*len - 1]))
        (*len)--;
}

const char *framing_lines_feed(struct framing_lines *fl, const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = p[i];

        if (fl->cr && c != '\n')
            return "a CR not followed by LF";
        if (c == '\n' && !fl->cr)
            return "a bare LF where CRLF is required";
        if (fl->line_start && ows(c))
            return "a line starting with whitespace (obsolete line folding)";
        fl->line_start = fl->cr && c == '\n';
        fl->cr = c == '\r';
    }
    return NULL;
}

int framing_transfer_coding(const char *list, size_t len, const char **why)
{
    int chunked = 0, others = 0;
    bool last_chunked = false;
    size_t at = 0;

    while (at <= len) {
        const char *comma = memchr(list + at, ',', len - at);
        size_t end = comma ? (size_t)(comma - list) : len;
        const char *e = list + at;
        size_t n = end - at;

        framing_trim_ows(&e, &n);
        if (n > 0) { /* empty list elements are allowed (RFC 9110 5.6.1) */
            if (framing_token_len(e, n) < n) {
                *why = "a transfer coding is not a token";
                return 400;
            }
            last_chunked = n == 7 && strncasecmp(e, "chunked", 7) == 0;
            chunked += last_chunked;
            others += !last_chunked;
        }
        at = end + 1;
    }
    if (!last_chunked) {
        *why = "chunked must be the final transfer coding";
        return 400;
    }
    if (chunked > 1) {
        *why = "chunked must not be applied twice";
        return 400;
    }
    if (others > 0) {
        *why = "chunked is the only transfer coding implemented";
        return 501;
    }
    return 0;
}
