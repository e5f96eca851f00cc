/*
 * log.c - see log.h.
 */
#include "util/log.h"

#include <stdarg.h>
#include <time.h>
#include <unistd.h>

#include "util/strbuf.h"
#include "util/banned.h"

static _Atomic int min_level = LOG_INFO;

void log_set_level(enum log_level level)
{
    min_level = level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    struct strbuf sb = STRBUF_INIT;
    struct timespec ts;
    struct tm tm;
    va_list ap;

    if ((int)level < min_level)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strbuf_addf(&sb, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[level]);
    va_start(ap, fmt);
    strbuf_vaddf(&sb, fmt, ap);
    va_end(ap);
    strbuf_addch(&sb, '\n');
    /* A failed log write has nowhere to be reported; ignore it. */
    ssize_t n = write(STDERR_FILENO, sb.buf, sb.len);
    (void)n;
    strbuf_release(&sb);
}
