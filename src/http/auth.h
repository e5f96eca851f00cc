/*
 * auth.h - who is calling: API keys with scopes, and users' signed tokens (JWT).
 *
 * A request's `Authorization: Bearer TOKEN` names its caller. A token with
 * the shape of a JWT is an end user's: verified against the configured key
 * (or the key of its kid, in a JWKS: http/jwks.h) and that key's algorithm
 * only, its `sub` is the uid it may act as. Any other token is
 * an API key: its SHA-256 is compared, in constant time, with the hashes in
 * the keys file (the secrets themselves are never stored). Without keys and
 * without a JWT key the API is open: every caller has every scope.
 */
#ifndef TALLY_HTTP_AUTH_H
#define TALLY_HTTP_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum auth_scope {
    AUTH_READ = 1 << 0,    /* GET of /v1 */
    AUTH_WRITE = 1 << 1,   /* POST, PUT, DELETE of /v1 */
    AUTH_METRICS = 1 << 2, /* /metrics */
    AUTH_ADMIN = 1 << 3,   /* everything */
};

#define AUTH_NAME_MAX 64

/* The caller of one request, as authenticated. Lives with the request. */
struct auth_principal {
    /* AUTH_NONE: no valid token; AUTH_THROTTLED: not checked, its address failed too often */
    enum { AUTH_OPEN, AUTH_NONE, AUTH_KEY, AUTH_USER, AUTH_THROTTLED } kind;
    unsigned scopes;               /* what the caller may do */
    char name[AUTH_NAME_MAX + 1];  /* AUTH_KEY: the key's name */
    int64_t uid;                   /* AUTH_USER: the uid of `sub`; 0 otherwise */
    int retry_after;               /* AUTH_THROTTLED: seconds until it may try again */
};

/* Set once at start from flags; auth_reload() re-reads the files at keys_path and jwt_key. */
struct auth_config {
    const char *keys_path;    /* NULL: no API keys */
    const char *jwt_key;      /* PATH of a PEM public key (RS256/ES256) or a JWKS, or hs256:PATH */
    const char *jwt_issuer;   /* NULL: not checked */
    const char *jwt_audience; /* NULL: not checked */
};

struct auth;

/*
 * Loads the keys file and the JWT key(s). On failure returns TALLY_EINVAL and one line in
 * *err (caller frees) naming the file and the line (or the JWK), never a hash or a key. A
 * keys file is refused whole when it cannot be read (a directory), has a malformed line,
 * gives a name or a token's hash twice, or holds no key. The caller frees *out with
 * auth_free().
 */
int auth_new(const struct auth_config *cfg, struct auth **out, char **err);
/*
 * SIGHUP. First re-reads the JWT key(s) by auth_new's rules and swaps them in whole, and
 * logs one line itself: what it loaded (how many keys, their kids), or why the keys in force
 * stay (tally_jwt_keys_reload_failures_total counts it); tokens verified or refused before
 * are checked again with the new keys. Then re-reads the keys file the same way, which the
 * caller reports: *loaded, how many API keys are in force (0 without a keys file); refused,
 * the keys in force stay, *err says why (caller frees), and tally_keys_reload_failures_total
 * counts it. The return value and *err are the keys file's only.
 */
int auth_reload(struct auth *a, size_t *loaded, char **err);
/* Whether any credential is configured (otherwise the API is open). */
bool auth_enabled(const struct auth *a);
/*
 * Authenticates the value of an Authorization header (NULL when absent) as far as an event
 * loop may: at the cost of a hash. 0 with *out filled; TALLY_EUNAUTH with out->kind
 * AUTH_NONE and no scopes; TALLY_ELIMITED with out->kind AUTH_THROTTLED (the address
 * failed too many signature checks lately; none is tried); or TALLY_EAGAIN: a user token
 * seen neither verified nor refused, whose signature check is a worker's: auth_verify().
 * caller: the peer, "addr:IP", whose failures are counted (NULL: none are). Any thread,
 * any time, also during a reload.
 */
int auth_check(struct auth *a, const char *authorization, const char *caller,
               struct auth_principal *out);
/* auth_check() with the signature check it leaves: never TALLY_EAGAIN. Any thread. */
int auth_verify(struct auth *a, const char *authorization, const char *caller,
                struct auth_principal *out);
/*
 * A user token asked to act for a uid other than its sub (answered 403 by the API): logged
 * and counted as reason uid_mismatch, as auth's own refusals are. caller: "addr:IP" or
 * NULL. Any thread.
 */
void auth_refused_uid(const char *caller);
/* Parses "read,write" into scope bits; TALLY_EINVAL on an unknown or empty scope. */
int auth_parse_scopes(const char *s, size_t len, unsigned *out);
/* NULL is a no-op. */
void auth_free(struct auth *a);

#endif
