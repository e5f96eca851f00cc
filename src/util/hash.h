/*
 * hash.h - stable 64-bit digests of outside strings (viewer ids, idempotency keys).
 *
 * DESIGN: the digest stands for the string in events and in store tables shared by every
 * tallyd, so it must be the same in every process and every version: the first 8 bytes of
 * SHA-256, never 0 (0 means "none" in a read event). A cryptographic hash because the
 * strings come from clients: finding a string whose digest equals someone else's (to make
 * their reads look like repeats) is a preimage search, not a birthday collision.
 */
#ifndef TALLY_HASH_H
#define TALLY_HASH_H

#include <stddef.h>
#include <stdint.h>

/* The digest of the `n` bytes at p, tagged by `kind` (a short literal) so that equal
 * strings of different kinds differ. Never 0. Any thread. */
uint64_t hash64(const char *kind, const void *p, size_t n);

#endif
