/*
 * framing.h - the parts of RFC 9112 that decide where a request ends, checked by
 * tally itself, and the one whitespace rule for header values.
 *
 * http-parser's behaviour depends on how the distribution built it: Debian's
 * 2.9.4 is the lenient build (HTTP_PARSER_STRICT=0), which takes
 * "Transfer-Encoding : chunked" as the framing header, swallows a bare LF
 * inside a chunk extension, folds continuation lines into a value and reads
 * "gzip, chunked" as chunked. A front proxy that parses any of these
 * differently sees other request boundaries than tallyd (request smuggling).
 * So server.c holds every request to the rules below whatever the parser
 * lets through; with a strict parser they cost a byte loop and change nothing.
 *
 * Pure functions on bytes: no allocation, no state but what the caller keeps.
 */
#ifndef TALLY_HTTP_FRAMING_H
#define TALLY_HTTP_FRAMING_H

#include <stdbool.h>
#include <stddef.h>

/* How many of the len bytes at s are RFC 9110 tchars (what methods and field names are made of). */
size_t framing_token_len(const char *s, size_t len);

/* Moves *s and *len past optional whitespace (SP, HTAB) at both ends of a value. */
void framing_trim_ows(const char **s, size_t *len);

/*
 * Line ends outside the content (request line, header and trailer lines, chunk
 * lines), fed in pieces as they arrive: CR and LF occur only as CRLF, and no
 * line after the first starts with SP or HTAB (a folded value, or whitespace
 * before the first header). Owned by the connection that feeds it.
 */
struct framing_lines {
    bool cr;         /* the last byte fed was a CR */
    bool line_start; /* the last bytes fed were CRLF */
};

/* Between two runs of bytes that are not adjacent (content came between): no line is open. */
static inline void framing_lines_reset(struct framing_lines *fl)
{
    fl->cr = fl->line_start = false;
}

/* Feeds len more bytes; returns NULL, or why they break the rule (a static string). */
const char *framing_lines_feed(struct framing_lines *fl, const char *p, size_t len);

/*
 * A request's Transfer-Encoding: its field values joined by commas. tally
 * implements one coding, chunked, so the list must be exactly "chunked"
 * (empty list elements and OWS around them are allowed, case is not
 * significant). Returns 0 for that, else the status RFC 9112 6.1 gives the
 * refusal with *why (a static string): 400 when chunked is missing, not
 * last, or given twice (the body's length cannot be known), 501 for a coding
 * tally does not implement before a final chunked.
 */
int framing_transfer_coding(const char *list, size_t len, const char **why);

#endif
