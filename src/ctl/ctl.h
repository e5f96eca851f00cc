/*
 * ctl.h - what tallyctl's subcommands share: usage errors, store and cache
 * URLs (checked like tallyd's, never echoed with their password), and the
 * progress line.
 *
 * Conventions every subcommand keeps: a usage error is one line on stderr
 * and exit status 2; a failure while working is one line on stderr and exit
 * status 1; `tallyctl CMD --help` prints the usage on stdout; long work shows
 * a progress line on stderr only when stderr is a terminal; the last line on
 * stdout (stderr for export, whose stdout may be the data) is a summary.
 * tallyctl is single-threaded.
 */
#ifndef TALLY_CTL_H
#define TALLY_CTL_H

#include <stdbool.h>
#include <stdint.h>

struct store;
struct cache;
struct url;

/* Prints "tallyctl CMD: message" on stderr; returns 2. */
int ctl_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "tallyctl CMD: message" on stderr; returns 1. */
int ctl_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * A URL flag's value, or @PATH, a file holding it, parsed and checked
 * exactly as tallyd does (url_parse_arg with the adapter's check: store_check,
 * cache_check, course_check). Returns 0, or 2 after one line that shows the
 * URL only in url_redact's form. *u is released by the caller in every case.
 */
int ctl_parse_url(const char *cmd, const char *flag, const char *value,
                  int (*check)(const struct url *, char **), struct url *u);
/*
 * Opens the store u names (parsed by ctl_parse_url with store_check).
 * must_exist: a SQLite file that is not there is an error rather than a new
 * empty store. Returns 0, or 1 after printing one line.
 */
int ctl_open_store(const char *cmd, const struct url *u, bool must_exist, struct store **out);
int ctl_open_cache(const char *cmd, const struct url *u, struct cache **out);

/* A progress line, redrawn at most 5 times a second, only on a terminal. */
struct ctl_progress {
    bool tty;
    bool shown;
    int64_t last_us;
};
void ctl_progress_init(struct ctl_progress *p);
void ctl_progress(struct ctl_progress *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Erases the line, if one was drawn. */
void ctl_progress_done(struct ctl_progress *p);

/* Parses a positive integer flag value in 1..max; false when it is not one. */
bool ctl_parse_count(const char *s, int64_t max, int64_t *out);

/* The subcommands (each file's header says what it does). */
int ctl_cmd_export(int argc, char **argv);
int ctl_cmd_import(int argc, char **argv);
int ctl_cmd_recount(int argc, char **argv);
int ctl_cmd_check(int argc, char **argv);
int ctl_cmd_backup(int argc, char **argv);
int ctl_cmd_erase_user(int argc, char **argv);
int ctl_cmd_probe(int argc, char **argv);
extern const char ctl_usage_export[], ctl_usage_import[], ctl_usage_recount[], ctl_usage_check[],
    ctl_usage_backup[], ctl_usage_erase_user[], ctl_usage_probe[];

#endif
