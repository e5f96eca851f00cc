/*
 * version.c - see version.h. The Makefile rebuilds this one file on every build, with
 * TALLY_VERSION and TALLY_COMMIT defined, so the commit is never a stale one.
 */
#include "util/version.h"

#ifndef TALLY_VERSION
#define TALLY_VERSION "unknown"
#endif
#ifndef TALLY_COMMIT
#define TALLY_COMMIT "unknown"
#endif

const char *tally_version(void)
{
    return TALLY_VERSION;
}

const char *tally_commit(void)
{
    return TALLY_COMMIT;
}
