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
#include "util/error.h"
#include "util/strbuf.h"
#include "util/url.h"
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

/* 0 when rc is; else prints err (an adapter's one line, freed here) and returns status. */
static int report(int rc, int status, const char *cmd, char *err)
{
    const char *line = err ? err : tally_strerror(rc); /* an adapter that gave no reason */

    if (rc == 0)
        return 0;
    rc = status == 2 ? ctl_usage(cmd, "%s", line) : ctl_fail(cmd, "%s", line);
    free(err);
    return rc;
}

int ctl_parse_url(const char *cmd, const char *flag, const char *value,
                  int (*check)(const struct url *, char **), struct url *u)
{
    char *err = NULL;
    int rc = url_parse_arg(flag, value, check, u, NULL, &err);

    return report(rc, 2, cmd, err);
}

int ctl_open_store(const char *cmd, const struct url *u, bool must_exist, struct store **out)
{
    char *err = NULL;
    int rc;

    if (must_exist && strcmp(u->scheme, "sqlite") == 0 && access(u->path, F_OK) != 0)
        return ctl_fail(cmd, "no store at %s", u->path);
    rc = store_open_url(u, 1, out, &err); /* tallyctl: one thread */
    return report(rc, 1, cmd, err);
}

int ctl_open_cache(const char *cmd, const struct url *u, struct cache **out)
{
    char *err = NULL;
    int rc = cache_open_url(u, 1, out, &err); /* tallyctl: one thread */

    return report(rc, 1, cmd, err);
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
