/*
 * jwks.h - the keys users' tokens may be signed with, as --jwt-key gives them.
 *
 * Three forms, told apart by the flag and the file's content: hs256:PATH, an
 * HS256 secret (the file's bytes); PATH of a PEM public key (RS256 or ES256);
 * or PATH of a JSON Web Key Set (RFC 7517, `{"keys":[...]}`: a file whose
 * first non-blank character is `{`), whose keys are told apart by their
 * `kid`, so that the issuer can rotate them without a window of 401s.
 */
#ifndef TALLY_HTTP_JWKS_H
#define TALLY_HTTP_JWKS_H

#include <jwt.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/strbuf.h"

#define JWKS_KID_MAX  64  /* bytes of a kid, printable ASCII without spaces, quotes or \ */
#define JWKS_KEYS_MAX 64  /* keys in one set */

/* One key. Immutable once loaded; owned by its struct jwks. */
struct jwks_key {
    char kid[JWKS_KID_MAX + 1]; /* "": none (a PEM key or a secret) */
    jwt_alg_t alg;              /* the one algorithm its tokens must carry */
    EVP_PKEY *pkey;             /* RS256/ES256: parsed once; NULL for HS256 */
    unsigned char *key;         /* what libjwt takes: the PEM text, or the HS256 secret */
    size_t key_len;
};

/* A loaded --jwt-key. Immutable once loaded; free with jwks_free(). */
struct jwks {
    struct jwks_key *keys;
    size_t n;
    bool by_kid; /* from a JWKS: a token names its key by kid */
};

/*
 * Parses the text of the file at path (named in errors only): hs256 says it is an HS256
 * secret (hs256:PATH); otherwise a JWKS when its first non-blank character is '{', else a
 * PEM public key. On failure returns TALLY_EINVAL and one line in *err (caller frees) that
 * names the file and the key at fault, never key material. The caller frees *out.
 */
int jwks_parse(const char *path, const char *text, size_t len, bool hs256, struct jwks **out,
               char **err);
/*
 * The key a token's kid (NULL: the token has none) selects, or NULL. Without a JWKS the one
 * key, whatever the kid. In a JWKS the key of that kid; a token without a kid gets the set's
 * only key, and none when the set holds several (trying each would multiply the work a
 * forged token costs, and which key was meant would be a guess).
 */
const struct jwks_key *jwks_find(const struct jwks *ks, const char *kid);
/* Whether s (n bytes) may be a kid: what a JWKS may hold, and what is safe to log. */
bool jwks_kid_ok(const char *s, size_t n);
/* Appends what ks holds, without key material: "2 keys from a JWKS (kids: a, b)". */
void jwks_describe(const struct jwks *ks, struct strbuf *out);
/* NULL is a no-op. */
void jwks_free(struct jwks *ks);

#endif
