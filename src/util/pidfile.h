/*
 * pidfile.h - tallyd's --pid-file, and how tallyctl finds the tallyd it names.
 *
 * The file holds the pid in decimal and a newline, and tallyd keeps an exclusive flock on
 * it for as long as it runs: a second tallyd given the same file refuses to start, and a
 * file no process holds (left by a kill -9) is known to be stale rather than trusted, so
 * a signal never goes to whatever process reused the pid.
 */
#ifndef TALLY_PIDFILE_H
#define TALLY_PIDFILE_H

#include <sys/types.h>

/* Creates or takes over path, locks it and writes this process's pid. The descriptor
 * (kept open: it holds the lock), or -1 and *err (caller frees). */
int pidfile_create(const char *path, char **err);
/* Removes path and lets the lock go: at a clean stop. fd < 0: nothing. */
void pidfile_remove(const char *path, int fd);
/* The pid of the process that holds path's lock: 0, or -1 and *err (caller frees) when
 * the file cannot be read, is not a pid file, or no process holds it (stale). */
int pidfile_read(const char *path, pid_t *pid, char **err);

#endif
