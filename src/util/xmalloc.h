/*
 * xmalloc.h - allocation that never returns NULL.
 *
 * tally cannot do anything useful once malloc fails, so the x* family logs
 * and aborts instead of threading ENOMEM through every caller (Redis's
 * zmalloc and git's xmalloc make the same choice). The caller frees the
 * result with free().
 */
#ifndef TALLY_XMALLOC_H
#define TALLY_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* An always-on assertion for cheap invariants. Never use it on outside input. */
#define TALLY_ASSERT(cond)                                 \
    do {                                                   \
        if (!(cond))                                       \
            tally__assert_fail(#cond, __FILE__, __LINE__); \
    } while (0)

_Noreturn void tally__assert_fail(const char *what, const char *file, int line);

#endif
