/*
 * pidfile.c - a pid file under an flock held for the process's life.
 */
#include "util/pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "model/item.h"
#include "util/strbuf.h"
#include "util/banned.h"

int pidfile_create(const char *path, char **err)
{
    char line[32];
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    int n;

    if (fd < 0) {
        *err = xstrfmt("cannot open --pid-file %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        pid_t other = 0;
        char *why = NULL;

        if (pidfile_read(path, &other, &why) == 0)
            *err = xstrfmt("--pid-file %s is held by process %ld: another tallyd runs with it",
                           path, (long)other);
        else
            *err = xstrfmt("--pid-file %s is locked by another process", path);
        free(why);
        close(fd);
        return -1;
    }
    n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != n) {
        *err = xstrfmt("cannot write --pid-file %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

void pidfile_remove(const char *path, int fd)
{
    if (fd < 0)
        return;
    unlink(path); /* while the lock is held: no other tallyd's file is removed */
    close(fd);
}

int pidfile_read(const char *path, pid_t *pid, char **err)
{
    char buf[32];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    ssize_t n;
    int64_t v;

    if (fd < 0) {
        *err = xstrfmt("cannot open %s: %s (is tallyd running with --pid-file %s?)", path,
                       strerror(errno), path);
        return -1;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 1 || buf[n - 1] != '\n' || item_parse_id(buf, (size_t)n - 1, &v) != 0 ||
        v > 0x7fffffff) {
        *err = xstrfmt("%s is not a pid file (one pid and a newline)", path);
        close(fd);
        return -1;
    }
    if (flock(fd, LOCK_SH | LOCK_NB) == 0) { /* nobody holds it: no tallyd is running */
        *err = xstrfmt("%s is stale: no process holds it (tallyd is not running)", path);
        close(fd);
        return -1;
    }
    close(fd);
    *pid = (pid_t)v;
    return 0;
}
