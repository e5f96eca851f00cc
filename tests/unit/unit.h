/*
 * unit.h - shared set-up for the cmocka unit tests.
 */
#ifndef TALLY_TEST_UNIT_H
#define TALLY_TEST_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A fresh database path under $TMPDIR; the caller frees it and removes the files. */
static inline char *unit_temp_db(void)
{
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    size_t len = strlen(dir) + 40;
    char *path = malloc(len);
    static int seq;

    snprintf(path, len, "%s/tally-unit-%d-%d.db", dir, (int)getpid(), seq++);
    unlink(path);
    return path;
}

static inline void unit_remove_db(char *path)
{
    size_t len = strlen(path) + 8;
    char *p = malloc(len);

    unlink(path);
    snprintf(p, len, "%s-wal", path);
    unlink(p);
    snprintf(p, len, "%s-shm", path);
    unlink(p);
    free(p);
    free(path);
}

#endif
