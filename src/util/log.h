/*
 * log.h - one-line log records on stderr.
 *
 * Each record is "2026-11-26T20:20:46.123Z LEVEL message" written with one
 * write(2), so lines from different threads never interleave. LOG_ONCE logs
 * the first occurrence at a call site and stays quiet afterwards (for errors
 * that repeat per message, which are counted in /metrics instead).
 */
#ifndef TALLY_LOG_H
#define TALLY_LOG_H

#include <stdatomic.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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
