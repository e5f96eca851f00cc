/*
 * log.c - see log.h.
 */
#include "util/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#include "util/strbuf.h"
#include "util/banned.h"

static _Atomic int min_level = LOG_INFO;
static _Atomic int format = LOG_TEXT;
static _Thread_local const char *request_id;

void log_set_level(enum log_level level)
{
    min_level = level;
}

void log_set_format(enum log_format f)
{
    format = f;
}

void log_set_request_id(const char *id)
{
    request_id = id;
}

/* Writes one record: the message, then the fields, then the request id if any. */
static void emit(enum log_level level, const char *msg, const struct log_field *f, size_t n)
{
    static const char *text_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    static const char *json_names[] = {"debug", "info", "warn", "error"};
    struct strbuf sb = STRBUF_INIT, ts = STRBUF_INIT;
    bool json = format == LOG_JSON;
    struct timespec now;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strbuf_addf(&ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);
    if (json) {
        strbuf_addf(&sb, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts.buf, json_names[level]);
        strbuf_add_json_string(&sb, msg);
    } else {
        strbuf_addf(&sb, "%s %s %s", ts.buf, text_names[level], msg);
    }
    for (size_t i = 0; i < n; i++) {
        if (json) {
            strbuf_addch(&sb, ',');
            strbuf_add_json_string(&sb, f[i].key);
            strbuf_addch(&sb, ':');
        } else {
            strbuf_addf(&sb, " %s=", f[i].key);
        }
        if (f[i].str && json)
            strbuf_add_json_string(&sb, f[i].str);
        else if (f[i].str)
            strbuf_addstr(&sb, f[i].str);
        else
            strbuf_add_i64(&sb, f[i].num);
    }
    if (request_id && json) {
        strbuf_addstr(&sb, ",\"request_id\":");
        strbuf_add_json_string(&sb, request_id);
    } else if (request_id) {
        strbuf_addf(&sb, " request_id=%s", request_id);
    }
    strbuf_addstr(&sb, json ? "}\n" : "\n");
    /* A failed log write has nowhere to be reported; ignore it. */
    ssize_t w = write(STDERR_FILENO, sb.buf, sb.len);
    (void)w;
    strbuf_release(&sb);
    strbuf_release(&ts);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    struct strbuf msg = STRBUF_INIT;
    va_list ap;

    if ((int)level < min_level)
        return;
    va_start(ap, fmt);
    strbuf_vaddf(&msg, fmt, ap);
    va_end(ap);
    emit(level, msg.buf, NULL, 0);
    strbuf_release(&msg);
}

void log_fields(enum log_level level, const char *msg, const struct log_field *f, size_t n)
{
    if ((int)level >= min_level)
        emit(level, msg, f, n);
}
