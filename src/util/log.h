/*
 * log.h - one-line log records on stderr, as text or as JSON Lines.
 *
 * Text: "2026-11-26T20:20:46.123Z LEVEL message key=value ...". JSON: one
 * object a line, {"ts":"...","level":"info","msg":"...", fields...}. Each
 * record is written with one write(2), so lines from different threads
 * never interleave. A thread that works on behalf of a request sets its id
 * (log_set_request_id) and every record it writes meanwhile carries it.
 * LOG_ONCE logs the first occurrence at a call site and stays quiet
 * afterwards (for errors that repeat per message, which are counted in
 * /metrics instead).
 */
#ifndef TALLY_LOG_H
#define TALLY_LOG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_TEXT, LOG_JSON };

/* A named value of a structured record: a string, or a number when str is NULL. */
struct log_field {
    const char *key;
    const char *str;
    int64_t num;
};

void log_set_level(enum log_level level);
void log_set_format(enum log_format format);
/* The request the calling thread now works for (NULL: none). The string must outlive it. */
void log_set_request_id(const char *id);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A record with fields (an access-log line, say). */
void log_fields(enum log_level level, const char *msg, const struct log_field *f, size_t n);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#define LOG_ONCE(level, ...)                              \
    do {                                                  \
        static atomic_flag log__done_ = ATOMIC_FLAG_INIT; \
        if (!atomic_flag_test_and_set(&log__done_))       \
            log_msg(level, __VA_ARGS__);                  \
    } while (0)

#endif
