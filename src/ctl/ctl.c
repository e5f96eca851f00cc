/*
 * ctl.c - the pieces tallyctl's subcommands share (ctl.h).
 */
#include "ctl/ctl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/cache.h"
#include "model/item.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/strbuf.h"
#include "util/xmalloc.h"
#include "util/banned.h"

static int say(int status, const char *cmd, const char *fmt, va_list ap)
{
    struct strbuf sb = STRBUF_INIT;

    strbuf_addf(&sb, "tallyctl %s: ", cmd);
    strbuf_vaddf(&sb, fmt, ap);
    strbuf_addch(&sb, '\n');
    fputs(sb.buf, stderr);
    strbuf_release(&sb);
    return status;
}

int ctl_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = say(2, cmd, fmt, ap);
    va_end(ap);
    return rc;
}

int ctl_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = say(1, cmd, fmt, ap);
    va_end(ap);
    return rc;
}

/* SCHEME://USER:PASS@HOST...: the password runs from the first ':' after the
 * scheme to the last '@' (the rule mysql.c parses by), whatever the scheme. */
char *ctl_redact(const char *url)
{
    const char *p = strstr(url, "://"), *at, *colon;
    struct strbuf sb = STRBUF_INIT;

    if (!p || !(at = strrchr(p + 3, '@')))
        return xstrdup(url);
    p += 3;
    colon = memchr(p, ':', (size_t)(at - p));
    if (!colon)
        return xstrdup(url);
    strbuf_add(&sb, url, (size_t)(colon - url) + 1);
    strbuf_addstr(&sb, "***");
    strbuf_addstr(&sb, at);
    return strbuf_detach(&sb, NULL);
}

/* err with every copy of url in it redacted. */
static char *redact_in(const char *err, const char *url)
{
    struct strbuf sb = STRBUF_INIT;
    char *safe = ctl_redact(url);
    size_t ulen = strlen(url);
    const char *p = err, *hit;

    while (ulen && (hit = strstr(p, url))) {
        strbuf_add(&sb, p, (size_t)(hit - p));
        strbuf_addstr(&sb, safe);
        p = hit + ulen;
    }
    strbuf_addstr(&sb, p);
    free(safe);
    return strbuf_detach(&sb, NULL);
}

int ctl_open_store(const char *cmd, const char *url, bool must_exist, struct store **out)
{
    char *err = NULL, *msg;
    int rc;

    if (store_check_url(url, &err)) {
        msg = redact_in(err, url);
        rc = ctl_usage(cmd, "%s", msg);
        free(msg);
        free(err);
        return rc;
    }
    if (must_exist && strncmp(url, "sqlite:", 7) == 0 && access(url + 7, F_OK) != 0)
        return ctl_fail(cmd, "no store at %s", url + 7);
    if (store_open(url, out, &err)) {
        msg = redact_in(err, url);
        rc = ctl_fail(cmd, "%s", msg);
        free(msg);
        free(err);
        return rc;
    }
    return 0;
}

int ctl_open_cache(const char *cmd, const char *url, struct cache **out)
{
    char *err = NULL;
    int rc;

    if (cache_check_url(url, &err)) {
        rc = ctl_usage(cmd, "%s", err);
        free(err);
        return rc;
    }
    if (cache_open(url, out, &err)) {
        rc = ctl_fail(cmd, "%s", err);
        free(err);
        return rc;
    }
    return 0;
}

void ctl_progress_init(struct ctl_progress *p)
{
    p->tty = isatty(STDERR_FILENO) == 1;
    p->shown = false;
    p->last_us = 0;
}

void ctl_progress(struct ctl_progress *p, const char *fmt, ...)
{
    struct strbuf sb = STRBUF_INIT;
    int64_t now = clock_mono_us();
    va_list ap;

    if (!p->tty || now - p->last_us < 200000)
        return;
    p->last_us = now;
    strbuf_addch(&sb, '\r');
    va_start(ap, fmt);
    strbuf_vaddf(&sb, fmt, ap);
    va_end(ap);
    strbuf_addstr(&sb, "\033[K");
    fputs(sb.buf, stderr);
    fflush(stderr);
    strbuf_release(&sb);
    p->shown = true;
}

void ctl_progress_done(struct ctl_progress *p)
{
    if (p->shown)
        fputs("\r\033[K", stderr);
    p->shown = false;
}

bool ctl_parse_count(const char *s, int64_t max, int64_t *out)
{
    return item_parse_id(s, strlen(s), out) == 0 && *out <= max;
}
