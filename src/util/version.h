/*
 * version.h - which tally this is: the version (the VERSION file, also in
 * docs/openapi.yaml) and the git commit it was built from.
 */
#ifndef TALLY_VERSION_H
#define TALLY_VERSION_H

const char *tally_version(void);
const char *tally_commit(void);

#endif
