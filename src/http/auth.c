/*
 * auth.c - see auth.h.
 *
 * DESIGN
 *   Keys: the file holds `NAME SCOPES SHA256HEX` lines. A presented token is
 *   hashed once (OpenSSL's EVP) and compared with every key's hash with
 *   CRYPTO_memcmp, without stopping at a match, so the time taken says
 *   nothing about which key or how much of it matched. A reload builds the
 *   new table aside and swaps it under a write lock; requests hold the read
 *   lock only for the comparison, so a SIGHUP drops no request. A file is
 *   taken whole or not at all, at start as on a reload: one that cannot be
 *   read (a directory), has a malformed line, gives a name or a token's hash
 *   twice (which name and scopes would that token get?) or holds no key at
 *   all (every caller would get 401) is refused, and the error names the
 *   file and the line, never a hash.
 *
 *   Users: libjwt verifies the signature with the one configured key; the
 *   token's `alg` must then be the key's algorithm, which closes both `none`
 *   and the confusion of an HS256 token "signed" with the RS256 public key.
 *   exp is required, nbf honoured, iss and aud checked when configured, all
 *   with 60 s of leeway for clocks that differ. `sub` is the uid. A token
 *   that passed is remembered by its SHA-256 (4,096 slots) until its exp:
 *   a session's next requests cost a hash, not a signature check.
 */
#include "http/auth.h"

#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/item.h"
#include "util/error.h"
#include "util/metrics.h"
#include "util/strbuf.h"
#include "util/xmalloc.h"
#include "util/hex.h"
#include "util/banned.h"

#define LEEWAY_S      60
#define TOKEN_MAX     8192
#define KEYS_FILE_MAX (16 * 1024 * 1024)
#define SEEN_SLOTS    4096 /* verified user tokens remembered, direct-mapped by hash */

/*
 * A user token that passed every check: its SHA-256, the uid it acts for, and until when
 * (exp + leeway) it stays good. A session sends the same token again and again; this spares
 * libjwt's verification (which parses the PEM key each time: ~0.3 ms for RS256) on repeats.
 */
struct seen_token {
    unsigned char hash[32];
    int64_t uid;
    long good_until; /* 0: an empty slot */
};

struct key {
    char name[AUTH_NAME_MAX + 1];
    unsigned scopes;
    unsigned char hash[32];
};

/* One loaded keys file. Immutable once built; freed by whoever swapped it out. */
struct keyset {
    struct key *keys;
    size_t n;
};

/* Shared by every HTTP thread and the thread that reloads; `keys` under `lock`. */
struct auth {
    struct auth_config cfg;
    pthread_rwlock_t lock;
    struct keyset *keys; /* NULL: no keys file */
    unsigned char *jwt_key;
    size_t jwt_key_len;
    jwt_alg_t jwt_alg; /* JWT_ALG_NONE: no JWT key */
    struct metric *reload_failures; /* tally_keys_reload_failures_total */
    pthread_mutex_t seen_lock; /* owns seen */
    struct seen_token seen[SEEN_SLOTS];
};

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

/*
 * Reads a whole file (at most KEYS_FILE_MAX bytes) into a NUL-terminated buffer. A directory
 * opens, then fails to read (EISDIR): an error, not an empty file.
 */
static int read_file(const char *path, struct strbuf *out, char **err)
{
    FILE *f = fopen(path, "rb");
    char chunk[4096];
    size_t n;
    int e = f ? 0 : errno;

    while (f && out->len <= KEYS_FILE_MAX && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        strbuf_add(out, chunk, n);
    if (f && ferror(f))
        e = errno ? errno : EIO;
    if (f)
        fclose(f);
    if (e)
        return fail(err, "cannot read '%s': %s", path, strerror(e));
    if (out->len > KEYS_FILE_MAX)
        return fail(err, "'%s' is over 16 MiB", path);
    return 0;
}

int auth_parse_scopes(const char *s, size_t len, unsigned *out)
{
    static const struct {
        const char *name;
        unsigned bit;
    } scopes[] = {
        {"read", AUTH_READ}, {"write", AUTH_WRITE}, {"metrics", AUTH_METRICS}, {"admin", AUTH_ADMIN}};
    const char *end = s + len;

    *out = 0;
    while (s < end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        size_t n = (size_t)((comma ? comma : end) - s);
        size_t i;

        for (i = 0; i < sizeof(scopes) / sizeof(scopes[0]); i++)
            if (strlen(scopes[i].name) == n && memcmp(scopes[i].name, s, n) == 0)
                break;
        if (i == sizeof(scopes) / sizeof(scopes[0]))
            return TALLY_EINVAL;
        *out |= scopes[i].bit;
        s += n + (comma ? 1 : 0);
        if (comma && s == end)
            return TALLY_EINVAL; /* trailing comma */
    }
    return *out ? 0 : TALLY_EINVAL;
}

static bool name_ok(const char *s, size_t len)
{
    if (len == 0 || len > AUTH_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return false;
    return true;
}

/* Splits the next whitespace-separated field of [*p, end). */
static bool field(const char **p, const char *end, const char **start, size_t *len)
{
    while (*p < end && (**p == ' ' || **p == '\t' || **p == '\r'))
        (*p)++;
    *start = *p;
    while (*p < end && **p != ' ' && **p != '\t' && **p != '\r')
        (*p)++;
    *len = (size_t)(*p - *start);
    return *len > 0;
}

/* Parses one non-comment line into k; false when malformed. */
static bool parse_key_line(const char *p, const char *end, struct key *k)
{
    const char *name, *scopes, *hex, *extra;
    size_t nlen, slen, hlen, xlen;

    if (!field(&p, end, &name, &nlen) || !field(&p, end, &scopes, &slen) ||
        !field(&p, end, &hex, &hlen) || field(&p, end, &extra, &xlen))
        return false;
    if (!name_ok(name, nlen) || auth_parse_scopes(scopes, slen, &k->scopes) || hlen != 64)
        return false;
    for (int i = 0; i < 32; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        k->hash[i] = (unsigned char)(hi * 16 + lo);
    }
    memcpy(k->name, name, nlen);
    k->name[nlen] = '\0';
    return true;
}

static void keyset_free(struct keyset *ks)
{
    if (!ks)
        return;
    OPENSSL_cleanse(ks->keys, ks->n * sizeof(*ks->keys));
    free(ks->keys);
    free(ks);
}

/* Why k cannot join ks (its name or its token is there already), or NULL. */
static const char *clash(const struct keyset *ks, const struct key *k)
{
    for (size_t i = 0; i < ks->n; i++) {
        if (strcmp(ks->keys[i].name, k->name) == 0)
            return "a key of that name is already in the file";
        if (CRYPTO_memcmp(ks->keys[i].hash, k->hash, sizeof(k->hash)) == 0)
            return "the same token (hash) is already in the file under another name";
    }
    return NULL;
}

/* Adds line [p, eol) of path to ks; a blank or comment line adds nothing. */
static int add_line(struct keyset *ks, size_t *cap, const char *p, const char *eol,
                    const char *path, long lineno, char **err)
{
    struct key k = {0};
    const char *why;

    while (p < eol && (*p == ' ' || *p == '\t' || *p == '\r'))
        p++;
    if (p == eol || *p == '#')
        return 0;
    if (!parse_key_line(p, eol, &k))
        return fail(err, "%s:%ld: expected NAME SCOPES SHA256HEX (scopes: read, write, metrics, "
                         "admin)", path, lineno);
    if ((why = clash(ks, &k)))
        return fail(err, "%s:%ld: %s", path, lineno, why);
    if (ks->n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        ks->keys = xrealloc(ks->keys, *cap * sizeof(*ks->keys));
    }
    ks->keys[ks->n++] = k;
    return 0;
}

/* The keys file at path, whole (see DESIGN), into *out (freed with keyset_free). */
static int load_keys(const char *path, struct keyset **out, char **err)
{
    struct strbuf text = STRBUF_INIT;
    struct keyset *ks = xcalloc(1, sizeof(*ks));
    size_t cap = 0;
    long lineno = 0;
    int rc = read_file(path, &text, err);

    for (const char *p = text.buf, *end = p + text.len; rc == 0 && p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));

        rc = add_line(ks, &cap, p, nl ? nl : end, path, ++lineno, err);
        p = nl ? nl + 1 : end;
    }
    if (rc == 0 && ks->n == 0)
        rc = fail(err, "%s: no keys, only blank lines and comments (every caller would get 401)",
                  path);
    if (rc)
        keyset_free(ks);
    else
        *out = ks;
    strbuf_release(&text);
    return rc;
}

/* Reads the JWT key and decides the one algorithm tokens must carry. */
static int load_jwt_key(struct auth *a, const char *spec, char **err)
{
    struct strbuf text = STRBUF_INIT;
    const char *path = strncmp(spec, "hs256:", 6) == 0 ? spec + 6 : spec;
    int rc;

    if ((rc = read_file(path, &text, err)))
        goto out;
    if (path != spec) {
        while (text.len > 0 && (text.buf[text.len - 1] == '\n' || text.buf[text.len - 1] == '\r'))
            text.len--;
        if (text.len < 32) {
            rc = fail(err, "'%s': an HS256 secret must be at least 32 bytes", path);
            goto out;
        }
        a->jwt_alg = JWT_ALG_HS256;
    } else {
        BIO *bio = BIO_new_mem_buf(text.buf, (int)text.len);
        EVP_PKEY *pk = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
        int type = pk ? EVP_PKEY_get_base_id(pk) : 0;

        EVP_PKEY_free(pk);
        BIO_free(bio);
        if (type == EVP_PKEY_RSA)
            a->jwt_alg = JWT_ALG_RS256;
        else if (type == EVP_PKEY_EC)
            a->jwt_alg = JWT_ALG_ES256;
        else {
            rc = fail(err, "'%s' is not a PEM RSA or EC public key (or use hs256:PATH)",
                      path);
            goto out;
        }
    }
    a->jwt_key_len = text.len;
    a->jwt_key = (unsigned char *)strbuf_detach(&text, NULL);
out:
    strbuf_release(&text);
    return rc;
}

int auth_new(const struct auth_config *cfg, struct auth **out, char **err)
{
    struct auth *a = xcalloc(1, sizeof(*a));
    int rc = 0;

    a->cfg = *cfg;
    a->reload_failures = metrics_counter("tally_keys_reload_failures_total",
                                         "Reloads of the keys file refused as a whole (the keys "
                                         "in force stayed).", "");
    pthread_rwlock_init(&a->lock, NULL);
    pthread_mutex_init(&a->seen_lock, NULL);
    if (cfg->keys_path && (rc = load_keys(cfg->keys_path, &a->keys, err)))
        goto fail;
    if (cfg->jwt_key && (rc = load_jwt_key(a, cfg->jwt_key, err)))
        goto fail;
    *out = a;
    return 0;
fail:
    auth_free(a);
    return rc;
}

int auth_reload(struct auth *a, size_t *loaded, char **err)
{
    struct keyset *ks, *old;
    int rc;

    *loaded = 0;
    if (!a->cfg.keys_path)
        return 0;
    if ((rc = load_keys(a->cfg.keys_path, &ks, err))) {
        metric_add(a->reload_failures, 1);
        return rc;
    }
    *loaded = ks->n;
    pthread_rwlock_wrlock(&a->lock);
    old = a->keys;
    a->keys = ks;
    pthread_rwlock_unlock(&a->lock);
    keyset_free(old);
    return 0;
}

bool auth_enabled(const struct auth *a)
{
    return a && (a->cfg.keys_path || a->jwt_alg != JWT_ALG_NONE);
}

static int check_key(struct auth *a, const char *token, size_t len, struct auth_principal *out)
{
    unsigned char hash[32];
    unsigned int hlen = 0;
    const struct key *found = NULL;
    int rc = TALLY_EUNAUTH;

    if (!EVP_Digest(token, len, hash, &hlen, EVP_sha256(), NULL) || hlen != sizeof(hash))
        return TALLY_EINTERNAL;
    pthread_rwlock_rdlock(&a->lock);
    for (size_t i = 0; a->keys && i < a->keys->n; i++) /* every key, match or not */
        if (CRYPTO_memcmp(hash, a->keys->keys[i].hash, sizeof(hash)) == 0)
            found = &a->keys->keys[i];
    if (found) {
        out->kind = AUTH_KEY;
        out->scopes = found->scopes;
        memcpy(out->name, found->name, sizeof(out->name));
        out->uid = 0;
        rc = 0;
    }
    pthread_rwlock_unlock(&a->lock);
    return rc;
}

/* Whether the token's aud (a string or an array of them) names the configured audience. */
static bool audience_ok(jwt_t *jwt, const char *want)
{
    char *json = jwt_get_grants_json(jwt, "aud");
    json_t *v = json ? json_loads(json, JSON_DECODE_ANY, NULL) : NULL;
    bool ok = false;
    size_t i;
    json_t *e;

    if (json_is_string(v))
        ok = strcmp(json_string_value(v), want) == 0;
    else if (json_is_array(v))
        json_array_foreach (v, i, e)
            ok = ok || (json_is_string(e) && strcmp(json_string_value(e), want) == 0);
    json_decref(v);
    free(json);
    return ok;
}

/*
 * A time claim: *present says whether it is there; false when it is there but not a number.
 * Read as JSON because libjwt 1.10's jwt_get_grant_int() answers 0, with no error, for a
 * string: "nbf":"99999999999" would pass as 1970.
 */
static bool time_claim(jwt_t *jwt, const char *name, long *value, bool *present)
{
    char *json = jwt_get_grants_json(jwt, name);
    json_t *v = json ? json_loads(json, JSON_DECODE_ANY, NULL) : NULL;
    bool ok = !json;

    *present = json != NULL;
    *value = 0;
    if (json_is_integer(v)) {
        *value = (long)json_integer_value(v);
        ok = true;
    } else if (json_is_real(v) && json_real_value(v) > -1e15 &&
               json_real_value(v) < 1e15) { /* RFC 7519: may be 1.5 */
        *value = (long)json_real_value(v);
        ok = true;
    }
    json_decref(v);
    free(json);
    return ok;
}

static void user_principal(struct auth_principal *out, int64_t uid)
{
    out->kind = AUTH_USER;
    out->scopes = AUTH_READ | AUTH_WRITE;
    out->name[0] = '\0';
    out->uid = uid;
}

/* Whether this exact token was verified before and is still within its exp (+ leeway). */
static bool seen_before(struct auth *a, const unsigned char hash[32], long now, int64_t *uid)
{
    struct seen_token *t = &a->seen[(hash[0] | hash[1] << 8) % SEEN_SLOTS];
    bool hit;

    pthread_mutex_lock(&a->seen_lock);
    hit = t->good_until >= now && CRYPTO_memcmp(t->hash, hash, 32) == 0;
    if (hit)
        *uid = t->uid;
    pthread_mutex_unlock(&a->seen_lock);
    return hit;
}

static void remember(struct auth *a, const unsigned char hash[32], long good_until, int64_t uid)
{
    struct seen_token *t = &a->seen[(hash[0] | hash[1] << 8) % SEEN_SLOTS];

    pthread_mutex_lock(&a->seen_lock);
    memcpy(t->hash, hash, 32);
    t->uid = uid;
    t->good_until = good_until;
    pthread_mutex_unlock(&a->seen_lock);
}

static int check_jwt(struct auth *a, const char *token, struct auth_principal *out)
{
    jwt_t *jwt = NULL;
    long exp, nbf, now = (long)time(NULL);
    bool has_exp, has_nbf;
    const char *sub, *iss;
    unsigned char hash[32];
    unsigned int hlen = 0;
    int64_t uid = 0;
    int rc = TALLY_EUNAUTH;

    if (!EVP_Digest(token, strlen(token), hash, &hlen, EVP_sha256(), NULL) || hlen != 32)
        return TALLY_EINTERNAL;
    if (seen_before(a, hash, now, &uid)) {
        user_principal(out, uid);
        return 0;
    }
    if (jwt_decode(&jwt, token, a->jwt_key, (int)a->jwt_key_len) != 0)
        return TALLY_EUNAUTH;
    if (jwt_get_alg(jwt) != a->jwt_alg)
        goto out;
    if (!time_claim(jwt, "exp", &exp, &has_exp) || !has_exp || now - LEEWAY_S > exp)
        goto out;
    if (!time_claim(jwt, "nbf", &nbf, &has_nbf) || (has_nbf && now + LEEWAY_S < nbf))
        goto out;
    iss = jwt_get_grant(jwt, "iss");
    if (a->cfg.jwt_issuer && (!iss || strcmp(iss, a->cfg.jwt_issuer) != 0))
        goto out;
    if (a->cfg.jwt_audience && !audience_ok(jwt, a->cfg.jwt_audience))
        goto out;
    sub = jwt_get_grant(jwt, "sub");
    if (!sub || item_parse_id(sub, strlen(sub), &uid) != 0)
        goto out;
    user_principal(out, uid);
    /* Remembered only once valid now (nbf passed), and only until it would expire. */
    remember(a, hash, exp > LONG_MAX - LEEWAY_S ? LONG_MAX : exp + LEEWAY_S, uid);
    rc = 0;
out:
    jwt_free(jwt);
    return rc;
}

/* A JWT is three base64url parts joined by two dots. */
static bool looks_like_jwt(const char *t)
{
    const char *d1 = strchr(t, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    return d1 && d2 && !strchr(d2 + 1, '.') && d1 > t && d2 > d1 + 1;
}

int auth_check(struct auth *a, const char *authorization, struct auth_principal *out)
{
    const char *t;
    size_t len;

    memset(out, 0, sizeof(*out));
    out->kind = AUTH_NONE;
    if (!auth_enabled(a)) {
        out->kind = AUTH_OPEN;
        out->scopes = AUTH_READ | AUTH_WRITE | AUTH_METRICS | AUTH_ADMIN;
        return 0;
    }
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
        return TALLY_EUNAUTH;
    for (t = authorization + 7; *t == ' ';)
        t++;
    len = strlen(t);
    while (len > 0 && (t[len - 1] == ' ' || t[len - 1] == '\t'))
        len--;
    if (len == 0 || len > TOKEN_MAX)
        return TALLY_EUNAUTH;
    if (a->jwt_alg != JWT_ALG_NONE && looks_like_jwt(t) && t[len] == '\0')
        return check_jwt(a, t, out);
    return check_key(a, t, len, out);
}

void auth_free(struct auth *a)
{
    if (!a)
        return;
    keyset_free(a->keys);
    if (a->jwt_key) {
        OPENSSL_cleanse(a->jwt_key, a->jwt_key_len);
        free(a->jwt_key);
    }
    OPENSSL_cleanse(a->seen, sizeof(a->seen));
    pthread_rwlock_destroy(&a->lock);
    pthread_mutex_destroy(&a->seen_lock);
    free(a);
}
