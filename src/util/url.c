/*
 * url.c - see url.h.
 *
 * DESIGN
 *   One parser for every adapter, so that a URL means the same thing to
 *   tallyd's --store, --cache and --bus and to tallyctl's --store, --cache
 *   and --from (both read a flag through url_parse_arg), and so that the redaction knows exactly
 *   where the parser found the password: url_redact splits a string with
 *   the same rules (user information up to the last '@' before the first
 *   '?', options split on '&' and '='). A user given without a password
 *   is hidden as well: `redis://SECRET@host` is a password written where
 *   the user goes, and nothing tells the two apart. A string that does not
 *   parse is redacted more broadly, from "://" to its last '@', because
 *   where its password ends is then a guess.
 *
 *   The parser is strict about what it can judge without knowing the
 *   scheme (length, control bytes, escapes, hosts, ports, option syntax,
 *   duplicates) and leaves the rest to the adapters. Its reasons are static
 *   strings that never quote the input, so an error cannot echo a secret.
 */
#include "util/url.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/error.h"
#include "util/xmalloc.h"
#include "util/hex.h"
#include "util/banned.h"

static int fail(const char **why, const char *reason)
{
    *why = reason;
    return TALLY_EINVAL;
}

/* Decodes %XX escapes of s[0..n) into a new string (*out, freed by the caller). */
static int decode(const char *s, size_t n, char **out, const char **why)
{
    char *d = xmalloc(n + 1), *w = d;

    *out = d;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            *w++ = s[i];
            continue;
        }
        if (i + 2 >= n || hex_value(s[i + 1]) < 0 || hex_value(s[i + 2]) < 0) {
            *w = '\0';
            return fail(why, "a '%' must start an escape of two hex digits");
        }
        *w = (char)(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
        if (*w == '\0')
            return fail(why, "an escape decodes to a NUL byte");
        w++;
        i += 2;
    }
    *w = '\0';
    return 0;
}

static const char *last_in(const char *from, const char *to, char c)
{
    const char *hit = NULL;

    for (const char *p = from; p < to; p++)
        if (*p == c)
            hit = p;
    return hit;
}

static const char *first_in(const char *from, const char *to, char c)
{
    const char *p = memchr(from, c, (size_t)(to - from));

    return p ? p : to;
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-' || c == '_';
}

static int parse_port(const char *s, size_t n, int *out, const char **why)
{
    long v = 0;

    if (n == 0)
        return fail(why, "a ':' must be followed by a port");
    if (n > 5)
        return fail(why, "the port must be an integer in 1..65535");
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return fail(why, "the port must be an integer in 1..65535");
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return fail(why, "the port must be an integer in 1..65535");
    *out = (int)v;
    return 0;
}

/* One HOST[:PORT] or [IPV6][:PORT] of s[0..n). */
static int parse_host(const char *s, size_t n, struct url_host *h, const char **why)
{
    const char *end = s + n, *name = s, *name_end, *rest;

    if (n > 0 && s[0] == '[') {
        name = s + 1;
        name_end = first_in(name, end, ']');
        if (name_end == end || name_end == name)
            return fail(why, "an IPv6 address needs its closing ']'");
        for (const char *p = name; p < name_end; p++)
            if (!(hex_value(*p) >= 0 || *p == ':' || *p == '.'))
                return fail(why, "malformed IPv6 address");
        rest = name_end + 1;
        if (rest < end && *rest != ':')
            return fail(why, "unexpected text after an IPv6 address");
    } else {
        name_end = first_in(s, end, ':');
        rest = name_end;
        if (name_end == s)
            return fail(why, "missing host");
        for (const char *p = s; p < name_end; p++)
            if (!is_name_char(*p))
                return fail(why, "a host name is letters, digits, '.', '-' and '_'");
    }
    if (rest < end && parse_port(rest + 1, (size_t)(end - rest - 1), &h->port, why))
        return TALLY_EINVAL;
    h->name = xstrndup(name, (size_t)(name_end - name));
    return 0;
}

static int parse_hosts(const char *s, const char *end, struct url *u, const char **why)
{
    size_t n = 1;

    if (s == end)
        return fail(why, "missing host");
    for (const char *p = s; p < end; p++)
        n += *p == ',';
    u->hosts = xcalloc(n, sizeof(*u->hosts));
    while (u->nhosts < n) {
        const char *comma = first_in(s, end, ',');

        if (parse_host(s, (size_t)(comma - s), &u->hosts[u->nhosts], why))
            return TALLY_EINVAL;
        u->nhosts++;
        if (comma == end)
            break;
        s = comma + 1;
    }
    return 0;
}

static int parse_options(const char *s, const char *end, struct url *u, const char **why)
{
    size_t n = 1;

    for (const char *p = s; p < end; p++)
        n += *p == '&';
    u->opts = xcalloc(n, sizeof(*u->opts));
    while (u->nopts < n) {
        const char *amp = first_in(s, end, '&'), *eq = first_in(s, amp, '=');
        struct url_option *o = &u->opts[u->nopts];

        if (amp == s)
            return fail(why, "an empty option (a stray '&' or '?')");
        if (eq == amp)
            return fail(why, "an option must be KEY=VALUE");
        if (eq == s)
            return fail(why, "an option has an empty name");
        for (const char *p = s; p < eq; p++)
            if (!is_name_char(*p))
                return fail(why, "an option name is letters, digits, '.', '-' and '_'");
        o->key = xstrndup(s, (size_t)(eq - s));
        for (size_t i = 0; i < u->nopts; i++)
            if (strcmp(u->opts[i].key, o->key) == 0) {
                free(o->key);
                o->key = NULL;
                return fail(why, "an option is given twice");
            }
        u->nopts++;
        if (decode(eq + 1, (size_t)(amp - eq - 1), &o->value, why))
            return TALLY_EINVAL;
        if (amp == end)
            break;
        s = amp + 1;
    }
    return 0;
}

static int parse_userinfo(const char *s, const char *at, struct url *u, const char **why)
{
    const char *colon = first_in(s, at, ':');

    if (decode(s, (size_t)(colon - s), &u->user, why))
        return TALLY_EINVAL;
    if (colon < at && decode(colon + 1, (size_t)(at - colon - 1), &u->password, why))
        return TALLY_EINVAL;
    if (!*u->user) {
        free(u->user);
        u->user = NULL;
        if (!u->password)
            return fail(why, "an '@' with nothing before it");
    }
    return 0;
}

int url_parse(const char *s, size_t len, struct url *u, const char **why)
{
    const char *end = s + len, *p, *q, *at, *slash;

    memset(u, 0, sizeof(*u));
    if (len == 0)
        return fail(why, "empty");
    if (len > URL_MAX)
        return fail(why, "longer than 4096 bytes");
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\0')
            return fail(why, "contains a NUL byte");
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
            return fail(why, "contains a space or a control character");
    }
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return fail(why, "expected SCHEME://... or SCHEME:...");
    for (p = s; p < end && *p != ':'; p++)
        if (!is_name_char(*p) && *p != '+')
            return fail(why, "expected SCHEME://... or SCHEME:...");
    u->scheme = xstrndup(s, (size_t)(p - s));
    for (char *c = u->scheme; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    if (p == end || (size_t)(end - p) < 3 || memcmp(p, "://", 3) != 0) {
        u->opaque = true; /* "none", or "sqlite:PATH" verbatim */
        u->path = p == end ? xstrdup("") : xstrndup(p + 1, (size_t)(end - p - 1));
        return 0;
    }
    p += 3;
    q = first_in(p, end, '?');
    at = last_in(p, q, '@');
    if (at) {
        if (parse_userinfo(p, at, u, why))
            return TALLY_EINVAL;
        p = at + 1;
    }
    slash = first_in(p, q, '/');
    if (parse_hosts(p, slash, u, why))
        return TALLY_EINVAL;
    u->path = slash < q ? xstrndup(slash + 1, (size_t)(q - slash - 1)) : xstrdup("");
    if (q < end && parse_options(q + 1, end, u, why))
        return TALLY_EINVAL;
    return 0;
}

void url_release(struct url *u)
{
    free(u->scheme);
    free(u->user);
    free(u->password);
    for (size_t i = 0; i < u->nhosts; i++)
        free(u->hosts[i].name);
    free(u->hosts);
    free(u->path);
    for (size_t i = 0; i < u->nopts; i++) {
        free(u->opts[i].key);
        free(u->opts[i].value);
    }
    free(u->opts);
    memset(u, 0, sizeof(*u));
}

const char *url_option(const struct url *u, const char *key)
{
    for (size_t i = 0; i < u->nopts; i++)
        if (strcmp(u->opts[i].key, key) == 0)
            return u->opts[i].value;
    return NULL;
}

int url_option_int(const struct url *u, const char *key, long long lo, long long hi,
                   long long def, long long *out)
{
    const char *v = url_option(u, key);
    long long n = 0;

    *out = def;
    if (!v)
        return 0;
    if (!*v || strlen(v) > 18)
        return TALLY_EINVAL;
    for (const char *c = v; *c; c++) {
        if (*c < '0' || *c > '9')
            return TALLY_EINVAL;
        n = n * 10 + (*c - '0');
    }
    if (n < lo || n > hi)
        return TALLY_EINVAL;
    *out = n;
    return 0;
}

int url_check_options(const struct url *u, const char *const *known, char **why)
{
    for (size_t i = 0; i < u->nopts; i++) {
        const char *const *k = known;
        struct strbuf sb = STRBUF_INIT;

        while (*k && strcmp(*k, u->opts[i].key) != 0)
            k++;
        if (*k)
            continue;
        strbuf_addf(&sb, "unknown option '%s' (", u->opts[i].key);
        for (k = known; *k; k++)
            strbuf_addf(&sb, "%s%s", k == known ? "known: " : ", ", *k);
        strbuf_addstr(&sb, k == known ? "it takes none)" : ")");
        *why = strbuf_detach(&sb, NULL);
        return TALLY_EINVAL;
    }
    return 0;
}

bool url_is_secret_key(const char *key, size_t len)
{
    static const char *const words[] = {"pass", "pwd", "secret", "token", "credential", "private"};

    for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
        size_t wl = strlen(words[w]);

        for (size_t i = 0; i + wl <= len; i++)
            if (strncasecmp(key + i, words[w], wl) == 0)
                return true;
    }
    return false;
}

/*
 * Appends the query [s, end) (after the '?') with secret options' values
 * hidden; greedy also hides everything after a secret option's '=', for a
 * string whose '&' may be part of the secret.
 */
static void redact_options(struct strbuf *out, const char *s, const char *end, bool greedy)
{
    for (;;) {
        const char *amp = first_in(s, end, '&'), *eq = first_in(s, amp, '=');

        if (eq < amp && url_is_secret_key(s, (size_t)(eq - s))) {
            strbuf_add(out, s, (size_t)(eq + 1 - s));
            strbuf_addstr(out, "***");
            if (greedy)
                return;
        } else {
            strbuf_add(out, s, (size_t)(amp - s));
        }
        if (amp == end)
            return;
        strbuf_addch(out, '&');
        s = amp + 1;
    }
}

void url_redact(struct strbuf *out, const char *s)
{
    const char *end = s + strlen(s), *sep = strstr(s, "://"), *q, *at, *colon;
    struct url u;
    const char *why;
    bool exact = url_parse(s, (size_t)(end - s), &u, &why) == 0 && !u.opaque;

    url_release(&u);
    if (exact) {
        /* The parser's own split: user information up to the last '@' before the '?'. */
        q = first_in(sep + 3, end, '?');
        if ((at = last_in(sep + 3, q, '@'))) {
            /* USER:PASSWORD shows USER; a USER alone may be a password written there. */
            colon = first_in(sep + 3, at, ':');
            strbuf_add(out, s, (size_t)((colon < at ? colon : sep + 3) - s));
            strbuf_addstr(out, colon < at ? ":***" : "***");
            s = at;
        }
    } else if ((at = last_in(s, end, '@'))) {
        /* Where a password ends is a guess: hide everything up to the last '@'. */
        const char *from = sep && sep < at ? sep + 3 : s;

        if (!(sep && sep < at) && (colon = memchr(s, ':', (size_t)(at - s))))
            from = colon + 1;
        strbuf_add(out, s, (size_t)(from - s));
        strbuf_addstr(out, "***");
        s = at;
    }
    q = first_in(s, end, '?');
    strbuf_add(out, s, (size_t)(q - s));
    if (q < end) {
        strbuf_addch(out, '?');
        redact_options(out, q + 1, end, !exact);
    }
}

int url_parse_checked(const char *what, const char *s, int (*check)(const struct url *, char **),
                      struct url *out, char **err)
{
    struct strbuf shown = STRBUF_INIT;
    const char *why = NULL;
    char *reason = NULL;
    int rc = url_parse(s, strlen(s), out, &why);

    if (rc == 0 && (rc = check(out, &reason)) == 0)
        return 0;
    url_redact(&shown, s);
    *err = xstrfmt("invalid %s '%s': %s", what, shown.buf, reason ? reason : why);
    free(reason);
    strbuf_release(&shown);
    return rc;
}

/*
 * The contents of the file at path, trailing newlines trimmed, into *out
 * (caller frees). Unreadable, empty or holding a NUL byte: *err names the file.
 */
static int read_url_file(const char *flag, const char *path, char **out, char **err)
{
    FILE *f = fopen(path, "rb");
    struct strbuf sb = STRBUF_INIT;
    char chunk[1024];
    size_t n;
    int failed;

    if (!f) {
        *err = xstrfmt("cannot read the %s file '%s': %s", flag, path, strerror(errno));
        return TALLY_EINVAL;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && sb.len <= URL_MAX)
        strbuf_add(&sb, chunk, n);
    failed = ferror(f);
    fclose(f);
    while (sb.len && (sb.buf[sb.len - 1] == '\n' || sb.buf[sb.len - 1] == '\r'))
        sb.buf[--sb.len] = '\0';
    if (failed || sb.len == 0 || memchr(sb.buf, '\0', sb.len)) {
        *err = xstrfmt("the %s file '%s' %s", flag, path,
                       failed ? "cannot be read" : sb.len ? "holds a NUL byte" : "is empty");
        strbuf_release(&sb);
        return TALLY_EINVAL;
    }
    *out = strbuf_detach(&sb, NULL);
    return 0;
}

int url_parse_arg(const char *flag, const char *value,
                  int (*check)(const struct url *, char **), struct url *out, char **text,
                  char **err)
{
    char *file = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if (text)
        *text = NULL;
    if (value[0] == '@' && (rc = read_url_file(flag, value + 1, &file, err)))
        return rc;
    rc = url_parse_checked(flag, file ? file : value, check, out, err);
    if (text)
        *text = file;
    else
        free(file);
    return rc;
}

void url_scrub(struct strbuf *out, const char *text, const char *secret)
{
    size_t n = secret ? strlen(secret) : 0;
    const char *hit;

    while (n && (hit = strstr(text, secret))) {
        strbuf_add(out, text, (size_t)(hit - text));
        strbuf_addstr(out, "***");
        text = hit + n;
    }
    strbuf_addstr(out, text);
}
