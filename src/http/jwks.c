/*
 * jwks.c - see jwks.h.
 *
 * DESIGN
 *   libjwt 1.10 (Debian 12) takes a PEM key or an HMAC secret and knows
 *   nothing of JWKs, so each JWK becomes what libjwt and OpenSSL take: an
 *   RSA JWK's n and e, or an EC JWK's x and y on P-256, are handed to
 *   OpenSSL 3 as parameters (EVP_PKEY_fromdata), the key it builds is
 *   checked (EVP_PKEY_public_check) and written out as PEM for libjwt; an
 *   `oct` JWK's k is the HS256 secret. No arithmetic of tally's own.
 *
 *   A set is taken whole or not at all, as the API keys file is: every key
 *   needs a kid of its own, a kty tally verifies (RSA, EC on P-256, oct) and
 *   an alg, when given, that is the one tally verifies for it (RS256, ES256,
 *   HS256); `use`, when given, must be "sig"; a JWK that holds a private
 *   part (`d`) is refused, since a verifier has no business with it. RSA
 *   keys under 2,048 bits and secrets under 32 bytes are refused too.
 *   Errors name the file, the key's place and its kid, never key material;
 *   jansson's own message is left out since it quotes the text near the
 *   fault, which may be a secret.
 */
#include "http/jwks.h"

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/base64url.h"
#include "util/error.h"
#include "util/xmalloc.h"
#include "util/banned.h"

#define SECRET_MIN 32   /* bytes of an HS256 secret */
#define RSA_MIN    2048 /* bits of an RSA modulus */
#define NUM_MAX    1024 /* bytes of one decoded JWK member (an 8,192-bit modulus) */

/* Sets *err (the caller frees it) to one line and returns TALLY_EINVAL. */
__attribute__((format(printf, 2, 3))) static int fail(char **err, const char *fmt, ...)
{
    struct strbuf sb = STRBUF_INIT;
    va_list ap;

    va_start(ap, fmt);
    strbuf_vaddf(&sb, fmt, ap);
    va_end(ap);
    *err = strbuf_detach(&sb, NULL);
    return TALLY_EINVAL;
}

bool jwks_kid_ok(const char *s, size_t n)
{
    if (n == 0 || n > JWKS_KID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~' || s[i] == '"' || s[i] == '\\')
            return false;
    return true;
}

static void key_release(struct jwks_key *k)
{
    EVP_PKEY_free(k->pkey);
    if (k->key) {
        OPENSSL_cleanse(k->key, k->key_len);
        free(k->key);
    }
}

void jwks_free(struct jwks *ks)
{
    if (!ks)
        return;
    for (size_t i = 0; i < ks->n; i++)
        key_release(&ks->keys[i]);
    free(ks->keys);
    free(ks);
}

/* The key's PEM (SubjectPublicKeyInfo) text, for libjwt, into k. */
static int write_pem(struct jwks_key *k)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *p = NULL;
    long n = 0;
    int rc = TALLY_EINTERNAL;

    if (bio && PEM_write_bio_PUBKEY(bio, k->pkey) == 1 && (n = BIO_get_mem_data(bio, &p)) > 0) {
        k->key = xmalloc((size_t)n + 1);
        memcpy(k->key, p, (size_t)n);
        k->key[n] = '\0';
        k->key_len = (size_t)n;
        rc = 0;
    }
    BIO_free(bio);
    return rc;
}

/* The public key OpenSSL builds of params (type "RSA" or "EC"), once it checked it; or NULL. */
static EVP_PKEY *pkey_from(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = params ? EVP_PKEY_CTX_new_from_name(NULL, type, NULL) : NULL;
    EVP_PKEY_CTX *check = NULL;
    EVP_PKEY *pk = NULL;

    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out;
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    if (!check || EVP_PKEY_public_check(check) != 1) {
        EVP_PKEY_free(pk);
        pk = NULL;
    }
out:
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pk;
}

/*
 * A JWK member that is a base64url string, decoded into out (room for max bytes): its
 * length, or -1 when it is absent, not a string or not base64url.
 */
static long member_bytes(json_t *jwk, const char *name, unsigned char *out, size_t max)
{
    json_t *v = json_object_get(jwk, name);

    if (!json_is_string(v))
        return -1;
    return base64url_decode(json_string_value(v), json_string_length(v), out, max);
}

/* An RSA JWK's n and e as the RS256 key k. *why: what is wrong, when it is. */
static void rsa_key(json_t *jwk, struct jwks_key *k, const char **why)
{
    unsigned char n[NUM_MAX], e[8];
    long nlen = member_bytes(jwk, "n", n, sizeof(n)), elen = member_bytes(jwk, "e", e, sizeof(e));
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *bn = nlen > 0 ? BN_bin2bn(n, (int)nlen, NULL) : NULL;
    BIGNUM *be = elen > 0 ? BN_bin2bn(e, (int)elen, NULL) : NULL;

    if (!bn || !be) {
        *why = "n and e must be base64url numbers";
    } else if (BN_num_bits(bn) < RSA_MIN) {
        *why = "an RSA key under 2048 bits";
    } else if (!bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
               !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) ||
               !(k->pkey = pkey_from("RSA", bld))) {
        *why = "n and e do not make an RSA public key";
    } else {
        k->alg = JWT_ALG_RS256;
    }
    BN_free(bn);
    BN_free(be);
    OSSL_PARAM_BLD_free(bld);
}

/* An EC JWK's x and y on P-256 as the ES256 key k. */
static void ec_key(json_t *jwk, struct jwks_key *k, const char **why)
{
    unsigned char point[65] = {0x04}; /* uncompressed: 04 || x || y */
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    OSSL_PARAM_BLD *bld = NULL;

    if (!crv || strcmp(crv, "P-256") != 0) {
        *why = "crv must be P-256 (ES256)";
        return;
    }
    if (member_bytes(jwk, "x", point + 1, 32) != 32 ||
        member_bytes(jwk, "y", point + 33, 32) != 32) {
        *why = "x and y must be 32 bytes each, base64url";
        return;
    }
    bld = OSSL_PARAM_BLD_new();
    if (!bld ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)) ||
        !(k->pkey = pkey_from("EC", bld)))
        *why = "x and y are not a point of P-256";
    else
        k->alg = JWT_ALG_ES256;
    OSSL_PARAM_BLD_free(bld);
}

/* An oct JWK's k as the HS256 secret. */
static void oct_key(json_t *jwk, struct jwks_key *k, const char **why)
{
    json_t *v = json_object_get(jwk, "k");
    size_t max = json_is_string(v) ? json_string_length(v) : 0;
    unsigned char *secret = xmalloc(max + 1);
    long n = member_bytes(jwk, "k", secret, max);

    if (n < SECRET_MIN) {
        *why = n < 0 ? "k must be a base64url secret" : "an HS256 secret must be at least 32 bytes";
        OPENSSL_cleanse(secret, max + 1);
        free(secret);
        return;
    }
    k->key = secret;
    k->key_len = (size_t)n;
    k->alg = JWT_ALG_HS256;
}

/* keys[i] of a JWKS, into k; NULL, or what is wrong with it. */
static const char *parse_jwk(json_t *jwk, struct jwks_key *k)
{
    static const char *const algs[] = {[JWT_ALG_RS256] = "RS256", [JWT_ALG_ES256] = "ES256",
                                       [JWT_ALG_HS256] = "HS256"};
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    json_t *use = json_object_get(jwk, "use"), *alg = json_object_get(jwk, "alg");
    const char *why = NULL;

    if (!kty)
        return "no kty";
    if (use && !(json_is_string(use) && strcmp(json_string_value(use), "sig") == 0))
        return "use must be \"sig\"";
    if (alg && !json_is_string(alg))
        return "alg must be a string";
    if (strcmp(kty, "oct") != 0 && json_object_get(jwk, "d"))
        return "it holds a private key (d): give the public key only";
    if (strcmp(kty, "RSA") == 0)
        rsa_key(jwk, k, &why);
    else if (strcmp(kty, "EC") == 0)
        ec_key(jwk, k, &why);
    else if (strcmp(kty, "oct") == 0)
        oct_key(jwk, k, &why);
    else
        return "kty must be RSA, EC or oct";
    if (!why && alg && strcmp(json_string_value(alg), algs[k->alg]) != 0)
        why = k->alg == JWT_ALG_RS256   ? "alg must be RS256 for an RSA key"
              : k->alg == JWT_ALG_ES256 ? "alg must be ES256 for an EC key"
                                        : "alg must be HS256 for an oct key";
    if (!why && k->pkey && write_pem(k))
        why = "OpenSSL could not write the key as PEM";
    return why;
}

static int parse_set(const char *path, const char *text, size_t len, struct jwks *ks,
                     char **err)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *keys = json_object_get(root, "keys"), *jwk;
    size_t i;
    int rc = 0;

    if (!root) {
        rc = fail(err, "'%s': not valid JSON (line %d, column %d)", path, jerr.line,
                  jerr.column);
        goto out;
    }
    if (!json_is_array(keys) || json_array_size(keys) == 0 ||
        json_array_size(keys) > JWKS_KEYS_MAX) {
        rc = fail(err, "'%s': a JWKS needs \"keys\": an array of 1 to %d keys", path,
                  JWKS_KEYS_MAX);
        goto out;
    }
    ks->keys = xcalloc(json_array_size(keys), sizeof(*ks->keys));
    json_array_foreach (keys, i, jwk) {
        json_t *kid = json_object_get(jwk, "kid");
        struct jwks_key *k = &ks->keys[i];
        const char *why;

        if (!json_is_object(jwk) || !json_is_string(kid) ||
            !jwks_kid_ok(json_string_value(kid), json_string_length(kid))) {
            rc = fail(err, "'%s': keys[%zu]: needs a kid of 1 to %d printable characters "
                           "(no spaces, quotes or backslashes)", path, i, JWKS_KID_MAX);
            goto out;
        }
        memcpy(k->kid, json_string_value(kid), json_string_length(kid) + 1);
        ks->n++; /* from here on released with the set */
        if (jwks_find(ks, k->kid) != k) {
            rc = fail(err, "'%s': keys[%zu]: kid \"%s\" is already in the set", path, i, k->kid);
            goto out;
        }
        if ((why = parse_jwk(jwk, k))) {
            rc = fail(err, "'%s': keys[%zu] (kid \"%s\"): %s", path, i, k->kid, why);
            goto out;
        }
    }
out:
    json_decref(root);
    return rc;
}

/* An HS256 secret file: its bytes, less the line ends at its end. */
static int parse_secret(const char *path, const char *text, size_t len, struct jwks *ks,
                        char **err)
{
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    if (len < SECRET_MIN)
        return fail(err, "'%s': an HS256 secret must be at least 32 bytes", path);
    ks->keys = xcalloc(1, sizeof(*ks->keys));
    ks->n = 1;
    ks->keys[0].alg = JWT_ALG_HS256;
    ks->keys[0].key = (unsigned char *)xstrndup(text, len);
    ks->keys[0].key_len = len;
    return 0;
}

/* A PEM public key file: RS256 for an RSA key, ES256 for an EC one. */
static int parse_pem(const char *path, const char *text, size_t len, struct jwks *ks,
                     char **err)
{
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    EVP_PKEY *pk = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    int type = pk ? EVP_PKEY_get_base_id(pk) : 0;

    BIO_free(bio);
    if (type != EVP_PKEY_RSA && type != EVP_PKEY_EC) {
        EVP_PKEY_free(pk);
        return fail(err, "'%s' is not a PEM RSA or EC public key, nor a JWKS (or use "
                         "hs256:PATH)", path);
    }
    ks->keys = xcalloc(1, sizeof(*ks->keys));
    ks->n = 1;
    ks->keys[0].alg = type == EVP_PKEY_RSA ? JWT_ALG_RS256 : JWT_ALG_ES256;
    ks->keys[0].pkey = pk;
    ks->keys[0].key = (unsigned char *)xstrndup(text, len);
    ks->keys[0].key_len = len;
    return 0;
}

int jwks_parse(const char *path, const char *text, size_t len, bool hs256, struct jwks **out,
               char **err)
{
    struct jwks *ks = xcalloc(1, sizeof(*ks));
    size_t lead = 0;
    int rc;

    while (lead < len && (text[lead] == ' ' || text[lead] == '\t' || text[lead] == '\r' ||
                          text[lead] == '\n'))
        lead++;
    ks->by_kid = !hs256 && lead < len && text[lead] == '{';
    if (hs256)
        rc = parse_secret(path, text, len, ks, err);
    else if (ks->by_kid)
        rc = parse_set(path, text, len, ks, err);
    else
        rc = parse_pem(path, text, len, ks, err);
    if (rc) {
        jwks_free(ks);
        return rc;
    }
    *out = ks;
    return 0;
}

const struct jwks_key *jwks_find(const struct jwks *ks, const char *kid)
{
    if (!ks->by_kid || !kid)
        return ks->by_kid && ks->n != 1 ? NULL : &ks->keys[0];
    for (size_t i = 0; i < ks->n; i++)
        if (strcmp(ks->keys[i].kid, kid) == 0)
            return &ks->keys[i];
    return NULL;
}

void jwks_describe(const struct jwks *ks, struct strbuf *out)
{
    static const char *const algs[] = {[JWT_ALG_RS256] = "RS256", [JWT_ALG_ES256] = "ES256",
                                       [JWT_ALG_HS256] = "HS256"};

    if (!ks->by_kid) {
        strbuf_addf(out, "one %s key (%s)", algs[ks->keys[0].alg],
                    ks->keys[0].pkey ? "PEM" : "secret");
        return;
    }
    strbuf_addf(out, "%zu key%s from a JWKS (kids:", ks->n, ks->n == 1 ? "" : "s");
    for (size_t i = 0; i < ks->n; i++)
        strbuf_addf(out, "%s %s %s", i ? "," : "", ks->keys[i].kid, algs[ks->keys[i].alg]);
    strbuf_addch(out, ')');
}
