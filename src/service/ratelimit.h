/*
 * ratelimit.h - token buckets per caller and per uid (--rate-limit).
 *
 * A bucket holds up to `burst` tokens and gains `n` tokens every
 * `period_ms`; a request takes one token or is refused. So in any interval
 * of T seconds a bucket admits at most burst + rate * T requests (rate =
 * n / period), which is the invariant the tests check. Buckets live in
 * Redis when the cache can hold them (cache_take), shared by every tallyd
 * on that Redis, and in memory otherwise or while Redis does not answer.
 * Every function may be called from any thread.
 */
#ifndef TALLY_RATELIMIT_H
#define TALLY_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/cache.h"

/* Per kind; the default bound on the in-memory buckets (about 100 bytes each). */
#define RATELIMIT_MAX_ENTRIES 100000

/* The two kinds of bucket: per caller ("addr:IP", "key:NAME") and per uid. */
enum ratelimit_by { RATELIMIT_KEY, RATELIMIT_UID, RATELIMIT_KINDS };

/* n tokens per period_ms, at most burst held; n == 0: this kind is not limited. */
struct ratelimit_rule {
    int64_t n;
    int64_t period_ms;
    int64_t burst;
};

struct ratelimit_spec {
    struct ratelimit_rule rule[RATELIMIT_KINDS];
};

/*
 * Parses "key=200/s:400,uid=20/s:40" (either part may be absent; the unit
 * is s, m or h; ":BURST" defaults to one period's tokens). An empty spec
 * limits nothing. On TALLY_EINVAL *err says why; the caller frees it.
 */
int ratelimit_parse(const char *spec, struct ratelimit_spec *out, char **err);
/* ratelimit_parse without the result, in config.c's check_value() shape. */
int ratelimit_check(const char *spec, char **err);

struct ratelimit_config {
    struct ratelimit_spec spec;
    struct cache *cache;     /* borrowed; NULL, or one without take(): in memory only */
    size_t max_entries;      /* in-memory buckets per kind; 0: RATELIMIT_MAX_ENTRIES */
    int64_t (*now_ms)(void); /* tests only: one clock for both; NULL: the real clocks */
};

/* A new limiter; the caller frees it with ratelimit_free(). */
struct ratelimit *ratelimit_new(const struct ratelimit_config *cfg);
void ratelimit_free(struct ratelimit *rl);

/* True when ratelimit_take() may wait on Redis: then it must not run on an event loop. */
bool ratelimit_may_wait(const struct ratelimit *rl);

/*
 * Takes a token from the bucket of `name` (a caller, or a uid in decimal).
 * 0: admitted (also when `by` is not limited); TALLY_ELIMITED: refused, and
 * *retry_after_s (>= 1) says when a token will be there. Never another
 * error: when Redis fails, the in-memory buckets decide.
 */
int ratelimit_take(struct ratelimit *rl, enum ratelimit_by by, const char *name,
                   int *retry_after_s);

/* In-memory buckets of a kind right now (for tests). */
size_t ratelimit_entries(struct ratelimit *rl, enum ratelimit_by by);

#endif
