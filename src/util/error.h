/*
 * error.h - tally's error codes.
 *
 * Every fallible function returns 0 or one of these negative codes (the libuv
 * convention); results travel through out-parameters. Adapters translate
 * their library's errors into these in one place each, and the HTTP layer maps
 * them to statuses in one table (fail_err in http/api.c).
 *
 * Retrying: TALLY_EUNAVAIL is transient (a server down, a lock timeout, a
 * full disk) and may be retried; TALLY_EREJECTED is permanent for the data
 * given (retrying the same call cannot succeed); TALLY_EINTERNAL is a bug
 * and is retried at most a few times.
 */
#ifndef TALLY_ERROR_H
#define TALLY_ERROR_H

enum {
    TALLY_OK = 0,
    TALLY_EINVAL = -1,   /* input from outside is malformed */
    TALLY_EUNAVAIL = -2, /* a server (store, cache, broker) cannot be reached */
    TALLY_EFULL = -3,    /* a bounded queue is full; try again later */
    TALLY_ECLOSED = -4,  /* the object is shutting down */
    TALLY_ESTALE = -5,   /* an offset compare-and-set found someone else's offset */
    TALLY_EINTERNAL = -6, /* a bug or a broken invariant in a dependency */
    TALLY_EREJECTED = -7, /* the store refuses this data for good (a counter past 2^63-1) */
    TALLY_EUNAUTH = -8,   /* no valid credential: who is calling is unknown */
    TALLY_EDENIED = -9,   /* the caller is known but may not do this */
    TALLY_ELIMITED = -10, /* a rate limit refused the request; try again later */
    TALLY_EAGAIN = -11    /* not decided here: the caller must finish the work elsewhere */
};

/* A static, human-readable name for an error code. */
static inline const char *tally_strerror(int err)
{
    switch (err) {
    case TALLY_OK: return "ok";
    case TALLY_EINVAL: return "invalid argument";
    case TALLY_EUNAVAIL: return "unavailable";
    case TALLY_EFULL: return "queue full";
    case TALLY_ECLOSED: return "closed";
    case TALLY_ESTALE: return "stale offset";
    case TALLY_EUNAUTH: return "unauthenticated";
    case TALLY_EDENIED: return "permission denied";
    case TALLY_EREJECTED: return "rejected by the store";
    case TALLY_ELIMITED: return "rate limited";
    case TALLY_EAGAIN: return "not decided here";
    default: return "internal error";
    }
}

#endif
