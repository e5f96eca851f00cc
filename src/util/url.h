/*
 * url.h - the one parser of the adapters' URLs, and their redaction.
 *
 * Grammar (a subset of RFC 3986, what tally's adapters need):
 *
 *   scheme://[USER[:PASSWORD]@]HOST[:PORT][,HOST[:PORT]...][/PATH][?KEY=VALUE[&KEY=VALUE...]]
 *   scheme:OPAQUE                            (sqlite:PATH: OPAQUE kept verbatim)
 *   scheme                                   (none, local)
 *
 * The user information runs to the last '@' before the first '?', so a
 * password may hold ':', '/' and '@' as they are; '%XX' is decoded in USER,
 * PASSWORD and option values ('%' always starts an escape, '?' and '&' need
 * one). A HOST is a name or an IPv6 address in brackets. Keys are
 * [A-Za-z0-9._-]+ and appear once. What each scheme allows (how many hosts,
 * a path, which options) is checked by its adapter, not here.
 */
#ifndef TALLY_URL_H
#define TALLY_URL_H

#include <stdbool.h>
#include <stddef.h>

#include "util/strbuf.h"

#define URL_MAX 4096 /* longest URL accepted, in bytes */

struct url_host {
    char *name; /* without the brackets of an IPv6 address */
    int port;   /* 1..65535, or 0 when the URL gives none */
};

struct url_option {
    char *key;
    char *value; /* decoded; may be "" */
};

/*
 * A parsed URL. Owned by whoever called url_parse; every string is its own
 * allocation, freed by url_release. password may hold a secret: never print
 * it, print url_redact's form of the whole URL.
 */
struct url {
    char *scheme;   /* lowercase */
    char *user;     /* NULL when absent */
    char *password; /* NULL when absent; "" for "user:@" */
    struct url_host *hosts;
    size_t nhosts;  /* 0 for the opaque and bare forms */
    char *path;     /* after the authority's '/', or OPAQUE; "" when absent */
    struct url_option *opts;
    size_t nopts;
    bool opaque; /* scheme:OPAQUE or a bare scheme: no authority, no options */
};

/*
 * Parses s[0..len) into *out (which the caller releases with url_release,
 * also on failure). Returns 0, or TALLY_EINVAL with *why set to a static
 * reason that never quotes the input.
 */
int url_parse(const char *s, size_t len, struct url *out, const char **why);
void url_release(struct url *u);

/* The value of option key, or NULL. */
const char *url_option(const struct url *u, const char *key);

/*
 * Option key as an integer in lo..hi (decimal digits only) into *out, or
 * def when it is absent. TALLY_EINVAL when it is there but not such a number.
 */
int url_option_int(const struct url *u, const char *key, long long lo, long long hi,
                   long long def, long long *out);

/*
 * 0 if every option of u is in known (NULL-terminated); else TALLY_EINVAL
 * and *why, a new string naming the first unknown option, that the caller
 * frees.
 */
int url_check_options(const struct url *u, const char *const *known, char **why);

/* Whether an option of this name holds a secret (its value is redacted). */
bool url_is_secret_key(const char *key, size_t len);

/*
 * Parses s and checks it with the adapter's check (which returns 0, or an
 * error and a reason it allocates). On failure *err is one line, freed by
 * the caller: "invalid WHAT 'REDACTED-URL': reason". *out is released by
 * the caller in every case.
 */
int url_parse_checked(const char *what, const char *s, int (*check)(const struct url *, char **),
                      struct url *out, char **err);

/*
 * A URL flag's value as tallyd and tallyctl take it: the URL, or @PATH, a
 * file holding it (trailing newlines trimmed), so that a password stays out
 * of ps and shell history. Read, then parsed and checked as
 * url_parse_checked does. *text (may be NULL): the file's contents when
 * value is @PATH, a new string the caller frees, else NULL. On failure *err
 * is one line, freed by the caller, naming the flag and the file or showing
 * the URL redacted. *out is released by the caller in every case.
 */
int url_parse_arg(const char *flag, const char *value,
                  int (*check)(const struct url *, char **), struct url *out, char **text,
                  char **err);

/*
 * Appends s with the password (or, when there is none, the user name, which
 * may be a password in the wrong place) and every secret option's value
 * replaced by "***". Works on any string, parseable or not, so that an error
 * about a malformed URL can show it safely.
 */
void url_redact(struct strbuf *out, const char *s);

/*
 * Appends text with every occurrence of secret replaced by "***" (for a
 * library's message that might echo it). A NULL or empty secret hides nothing.
 */
void url_scrub(struct strbuf *out, const char *text, const char *secret);

#endif
