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
 *   Users: the token's header names its key by `kid` when --jwt-key is a
 *   JWKS (jwks.h: which key a token without one gets); a single PEM key or
 *   secret takes any kid. The token's `alg` must be that key's algorithm,
 *   which closes both `none` and the confusion of an HS256 token "signed"
 *   with the RS256 public key. exp is required, nbf honoured, iss and aud
 *   checked when configured, all with 60 s of leeway for clocks that
 *   differ. `sub` is the uid. A token that passed is remembered by its
 *   SHA-256 (4,096 slots) until its exp: a session's next requests cost a
 *   hash, not a signature check.
 *
 *   Rotation: SIGHUP re-reads --jwt-key as it re-reads the keys file, whole
 *   or not at all, and logs one line either way. The keys in force are
 *   shared by reference: a check holds its reference while it runs, so a
 *   reload never frees a key under a worker, and the last one out frees
 *   it. Each load has a generation, and the tables of tokens verified and
 *   refused answer only for the generation in force: a token of a dropped
 *   key is refused from the reload on, and one refused for a kid not yet
 *   loaded is checked again once it is.
 *
 *   Why a token was refused (expired, bad_signature, unknown_kid, ...) is
 *   counted by reason and logged, at most one line a second per reason with
 *   the number left out since the last; never the token, never a key. The
 *   caller learns no more than before: 401, the same body.
 *
 *   Refusals that cost nothing. A token nobody has seen costs a signature
 *   check, which an attacker can ask for by the thousand without any
 *   credential, so: (1) auth_check() runs on the event loops and does only
 *   what costs a hash: tokens verified before, tokens refused before
 *   (remembered REFUSED_S), addresses out of failures; a token that needs
 *   a signature check is left to auth_verify() on a worker (TALLY_EAGAIN).
 *   (2) An address (an IPv6 one by its /64) may fail FAIL_MAX checks in
 *   FAIL_WINDOW_S; past that its new tokens are refused (429) without one
 *   until the window ends. (3) Public keys are parsed once, when loaded: the
 *   signature is checked with the key first (EVP_DigestVerify, or the HMAC),
 *   and only a token whose signature holds goes on to libjwt, which checks
 *   everything again (and re-parses its PEM key, 0.4 of its 0.6 ms, once
 *   per good token).
 *   docs/security.md has the flood's figures.
 */
#include "http/auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/jwks.h"
#include "model/item.h"
#include "util/base64url.h"
#include "util/error.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/strbuf.h"
#include "util/xmalloc.h"
#include "util/hex.h"
#include "util/banned.h"

#define LEEWAY_S      60
#define TOKEN_MAX     8192
#define KEYS_FILE_MAX (16 * 1024 * 1024)
#define MEMO_SLOTS    4096 /* tokens (addresses) remembered, direct-mapped by hash */
#define REFUSED_S     60   /* a token refused is refused unchecked this long */
#define FAIL_MAX      50   /* signature checks an address may fail per window... */
#define FAIL_WINDOW_S 10   /* ...of this many seconds, before it is refused unchecked */

/*
 * What a SHA-256 (of a token, or of an address) was found to be, and until when. Three
 * tables: tokens verified (value: the uid, until exp + leeway: a session sends the same
 * token again and again), tokens refused (until REFUSED_S on), and addresses' failures
 * (value: how many, until the window ends). Direct-mapped: a newer entry takes the slot.
 * A token's entry holds for the generation of the keys it was checked with only.
 */
struct memo_slot {
    unsigned char hash[32];
    int64_t value;
    long until;   /* 0: an empty slot */
    uint64_t gen; /* tokens: struct token_keys's gen; addresses: 0 */
};

struct memo {
    pthread_mutex_t lock;
    struct memo_slot slot[MEMO_SLOTS];
};

/* How a user token was refused: tally_auth_token_refusals_total{why}. */
enum refusal { REFUSED_INVALID, REFUSED_REMEMBERED, REFUSED_THROTTLED, REFUSAL_COUNT };
static const char *const refusal_names[REFUSAL_COUNT] = {"invalid", "remembered", "throttled"};

/* Why a checked user token was refused: logged, and tally_auth_token_refusal_reasons_total. */
enum reason {
    R_MALFORMED, R_WRONG_ALG, R_UNKNOWN_KID, R_BAD_SIGNATURE, R_EXPIRED, R_NOT_YET_VALID,
    R_WRONG_ISSUER, R_WRONG_AUDIENCE, R_UID_MISMATCH, REASON_COUNT
};
static const char *const reason_names[REASON_COUNT] = {
    "malformed", "wrong_alg", "unknown_kid", "bad_signature", "expired", "not_yet_valid",
    "wrong_issuer", "wrong_audience", "uid_mismatch"};

/*
 * Each reason's count and log line, process-wide (api.c reports uid mismatches without a
 * struct auth at hand): at most one line a second per reason, which says how many were
 * left out since the one before. Set up once (reasons_once); second and suppressed under
 * lock, count atomic.
 */
static struct reason_log {
    pthread_mutex_t lock;
    long second;         /* monotonic, of the last line; -1: none yet */
    uint64_t suppressed; /* refusals not logged since that line */
    struct metric *count;
} reasons[REASON_COUNT];
static pthread_once_t reasons_once = PTHREAD_ONCE_INIT;

/* Why one token was refused: a reason, and a fixed phrase that says more (no token data). */
struct refusal_why {
    enum reason reason;
    const char *detail;
};

/*
 * The users' token keys in force, and their generation (one more at each reload). Immutable
 * but for refs; a check holds a reference while it runs, the last one out frees it.
 */
struct token_keys {
    atomic_int refs;
    uint64_t gen;
    struct jwks *set;
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

/* Shared by every HTTP thread and the thread that reloads; `keys` and `tokens` under `lock`. */
struct auth {
    struct auth_config cfg;
    pthread_rwlock_t lock;
    struct keyset *keys;       /* NULL: no keys file */
    struct token_keys *tokens; /* NULL: no --jwt-key */
    struct metric *reload_failures;     /* tally_keys_reload_failures_total */
    struct metric *jwt_reload_failures; /* tally_jwt_keys_reload_failures_total */
    struct metric *refusals[REFUSAL_COUNT];
    struct memo verified, refused, failures;
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

static int sha256(const void *p, size_t n, unsigned char hash[32])
{
    unsigned int hlen = 0;

    return EVP_Digest(p, n, hash, &hlen, EVP_sha256(), NULL) && hlen == 32 ? 0 : TALLY_EINTERNAL;
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

/* Reads --jwt-key (PATH or hs256:PATH; see jwks.h) into a new generation gen of keys. */
static int load_token_keys(const char *spec, uint64_t gen, struct token_keys **out, char **err)
{
    struct strbuf text = STRBUF_INIT;
    bool hs256 = strncmp(spec, "hs256:", 6) == 0;
    const char *path = hs256 ? spec + 6 : spec;
    struct jwks *set = NULL;
    int rc;

    if ((rc = read_file(path, &text, err)) == 0 &&
        (rc = jwks_parse(path, text.buf, text.len, hs256, &set, err)) == 0) {
        *out = xcalloc(1, sizeof(**out));
        atomic_init(&(*out)->refs, 1);
        (*out)->gen = gen;
        (*out)->set = set;
    }
    OPENSSL_cleanse(text.buf, text.len);
    strbuf_release(&text);
    return rc;
}

/* A reference to the keys in force; give it back with token_keys_put(). */
static struct token_keys *token_keys_get(struct auth *a)
{
    struct token_keys *tk;

    pthread_rwlock_rdlock(&a->lock);
    tk = a->tokens;
    atomic_fetch_add(&tk->refs, 1);
    pthread_rwlock_unlock(&a->lock);
    return tk;
}

static void token_keys_put(struct token_keys *tk)
{
    if (tk && atomic_fetch_sub(&tk->refs, 1) == 1) {
        jwks_free(tk->set);
        free(tk);
    }
}

static void reasons_init(void)
{
    for (int i = 0; i < REASON_COUNT; i++) {
        struct strbuf labels = STRBUF_INIT;

        pthread_mutex_init(&reasons[i].lock, NULL);
        reasons[i].second = -1;
        strbuf_addf(&labels, "reason=\"%s\"", reason_names[i]);
        reasons[i].count = metrics_counter(
            "tally_auth_token_refusal_reasons_total",
            "User tokens refused after a check, by reason (all but uid_mismatch are also "
            "counted as why=\"invalid\" in tally_auth_token_refusals_total).",
            labels.buf);
        strbuf_release(&labels);
    }
}

/*
 * Counts a refusal by its reason and logs it, unless a line for the same reason went out
 * this second (then it is counted among the next line's suppressed). kid: the token's, if
 * safe to show (NULL: none); caller: "addr:IP" or NULL. Any thread.
 */
static void log_refusal(struct refusal_why why, const char *kid, const char *caller)
{
    struct reason_log *r;
    struct timespec ts;
    struct strbuf msg = STRBUF_INIT;
    struct log_field f[4];
    size_t n = 0;
    uint64_t suppressed;

    pthread_once(&reasons_once, reasons_init);
    r = &reasons[why.reason];
    metric_add(r->count, 1);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    pthread_mutex_lock(&r->lock);
    if (r->second == (long)ts.tv_sec) {
        r->suppressed++;
        pthread_mutex_unlock(&r->lock);
        return;
    }
    r->second = (long)ts.tv_sec;
    suppressed = r->suppressed;
    r->suppressed = 0;
    pthread_mutex_unlock(&r->lock);

    strbuf_addf(&msg, "auth: a user token refused (%s)", why.detail);
    f[n++] = (struct log_field){.key = "reason", .str = reason_names[why.reason]};
    if (kid)
        f[n++] = (struct log_field){.key = "kid", .str = kid};
    if (caller)
        f[n++] = (struct log_field){.key = "caller", .str = caller};
    f[n++] = (struct log_field){.key = "suppressed", .num = (int64_t)suppressed};
    log_fields(LOG_WARN, msg.buf, f, n);
    strbuf_release(&msg);
}

void auth_refused_uid(const char *caller)
{
    log_refusal((struct refusal_why){R_UID_MISMATCH, "its sub is not the uid the request names"},
                NULL, caller);
}

int auth_new(const struct auth_config *cfg, struct auth **out, char **err)
{
    struct auth *a = xcalloc(1, sizeof(*a));
    int rc = 0;

    a->cfg = *cfg;
    pthread_once(&reasons_once, reasons_init);
    a->reload_failures = metrics_counter("tally_keys_reload_failures_total",
                                         "Reloads of the keys file refused as a whole (the keys "
                                         "in force stayed).", "");
    a->jwt_reload_failures =
        metrics_counter("tally_jwt_keys_reload_failures_total",
                        "Reloads of --jwt-key (users' token keys) refused as a whole (the keys in "
                        "force stayed).", "");
    for (int i = 0; i < REFUSAL_COUNT; i++) {
        struct strbuf labels = STRBUF_INIT;

        strbuf_addf(&labels, "why=\"%s\"", refusal_names[i]);
        a->refusals[i] = metrics_counter(
            "tally_auth_token_refusals_total",
            "User tokens refused: invalid (checked), remembered (refused unchecked: it failed "
            "lately), throttled (429 unchecked: its address failed too many lately).",
            labels.buf);
        strbuf_release(&labels);
    }
    pthread_rwlock_init(&a->lock, NULL);
    pthread_mutex_init(&a->verified.lock, NULL);
    pthread_mutex_init(&a->refused.lock, NULL);
    pthread_mutex_init(&a->failures.lock, NULL);
    if (cfg->keys_path && (rc = load_keys(cfg->keys_path, &a->keys, err)))
        goto fail;
    if (cfg->jwt_key && (rc = load_token_keys(cfg->jwt_key, 1, &a->tokens, err)))
        goto fail;
    *out = a;
    return 0;
fail:
    auth_free(a);
    return rc;
}

/* Re-reads --jwt-key and swaps it in whole; logs what it loaded, or why the keys stay. */
static void reload_token_keys(struct auth *a)
{
    struct token_keys *tk, *old;
    struct strbuf what = STRBUF_INIT;
    char *err = NULL;

    if (!a->cfg.jwt_key)
        return;
    /* Its generation, the one in force plus one, is set as it is swapped in. */
    if (load_token_keys(a->cfg.jwt_key, 0, &tk, &err)) {
        metric_add(a->jwt_reload_failures, 1);
        log_error("auth: SIGHUP: keeping the users' token keys in force: %s", err);
        free(err);
        return;
    }
    jwks_describe(tk->set, &what);
    pthread_rwlock_wrlock(&a->lock);
    old = a->tokens;
    tk->gen = old->gen + 1;
    a->tokens = tk;
    pthread_rwlock_unlock(&a->lock);
    token_keys_put(old);
    log_info("auth: SIGHUP: users' token keys reloaded from %s: %s", a->cfg.jwt_key, what.buf);
    strbuf_release(&what);
}

int auth_reload(struct auth *a, size_t *loaded, char **err)
{
    struct keyset *ks, *old;
    int rc;

    *loaded = 0;
    reload_token_keys(a);
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
    return a && (a->cfg.keys_path || a->cfg.jwt_key);
}

static int check_key(struct auth *a, const char *token, size_t len, struct auth_principal *out)
{
    unsigned char hash[32];
    const struct key *found = NULL;
    int rc = TALLY_EUNAUTH;

    if (sha256(token, len, hash))
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

static struct memo_slot *memo_slot_of(struct memo *m, const unsigned char hash[32])
{
    return &m->slot[(hash[0] | hash[1] << 8) % MEMO_SLOTS];
}

/* Whether m holds hash of generation gen until now or later: its value in *value, until when
 * in *until. */
static bool memo_get(struct memo *m, const unsigned char hash[32], uint64_t gen, long now,
                     int64_t *value, long *until)
{
    struct memo_slot *e = memo_slot_of(m, hash);
    bool hit;

    pthread_mutex_lock(&m->lock);
    hit = e->until >= now && e->gen == gen && CRYPTO_memcmp(e->hash, hash, 32) == 0;
    if (hit) {
        *value = e->value;
        *until = e->until;
    }
    pthread_mutex_unlock(&m->lock);
    return hit;
}

static void memo_put(struct memo *m, const unsigned char hash[32], uint64_t gen, long until,
                     int64_t value)
{
    struct memo_slot *e = memo_slot_of(m, hash);

    pthread_mutex_lock(&m->lock);
    memcpy(e->hash, hash, 32);
    e->value = value;
    e->until = until;
    e->gen = gen;
    pthread_mutex_unlock(&m->lock);
}

/* Adds one to hash's count, or starts it at 1 until `until`. */
static void memo_count(struct memo *m, const unsigned char hash[32], long now, long until)
{
    struct memo_slot *e = memo_slot_of(m, hash);

    pthread_mutex_lock(&m->lock);
    if (e->until >= now && CRYPTO_memcmp(e->hash, hash, 32) == 0) {
        e->value++;
    } else {
        memcpy(e->hash, hash, 32);
        e->value = 1;
        e->until = until;
        e->gen = 0;
    }
    pthread_mutex_unlock(&m->lock);
}

/* The hash an address's failures are counted under: an IPv6 address by its /64 (one
 * client's usual share), anything else as it is. caller: "addr:IP". */
static int address_hash(const char *caller, unsigned char hash[32])
{
    unsigned char v6[16];

    if (strncmp(caller, "addr:", 5) == 0 && inet_pton(AF_INET6, caller + 5, v6) == 1) {
        memset(v6 + 8, 0, 8);
        return sha256(v6, sizeof(v6), hash);
    }
    return sha256(caller, strlen(caller), hash);
}

/* An ES256 signature (r || s, 32 bytes each) as the DER ECDSA-Sig-Value OpenSSL verifies. */
static long ecdsa_der(const unsigned char raw[64], unsigned char *der, size_t max)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, 32, NULL), *sv = BN_bin2bn(raw + 32, 32, NULL);
    long len = -1;

    if (sig && r && sv && ECDSA_SIG_set0(sig, r, sv)) {
        r = sv = NULL; /* owned by sig now */
        if (i2d_ECDSA_SIG(sig, NULL) <= (int)max)
            len = i2d_ECDSA_SIG(sig, &der);
    }
    BN_free(r);
    BN_free(sv);
    ECDSA_SIG_free(sig);
    return len;
}

/*
 * Whether the token's signature holds under k: the cheap first check (one public-key
 * operation, ~0.03 ms, or an HMAC), so that a forged token never costs libjwt's ~0.6 ms.
 */
static bool signature_holds(const struct jwks_key *k, const char *token)
{
    const char *dot = strrchr(token, '.');
    unsigned char sig[1024], der[80], mac[EVP_MAX_MD_SIZE];
    long n = base64url_decode(dot + 1, strlen(dot + 1), sig, sizeof(sig));
    const unsigned char *s = sig;
    unsigned int maclen = 0;
    EVP_MD_CTX *ctx;
    bool ok;

    if (n <= 0)
        return false;
    if (k->alg == JWT_ALG_HS256)
        return HMAC(EVP_sha256(), k->key, (int)k->key_len, (const unsigned char *)token,
                    (size_t)(dot - token), mac, &maclen) &&
               maclen == 32 && n == 32 && CRYPTO_memcmp(mac, sig, 32) == 0;
    if (k->alg == JWT_ALG_ES256) {
        if (n != 64 || (n = ecdsa_der(sig, der, sizeof(der))) <= 0)
            return false;
        s = der;
    }
    ctx = EVP_MD_CTX_new();
    ok = ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k->pkey) == 1 &&
         EVP_DigestVerify(ctx, s, (size_t)n, (const unsigned char *)token,
                          (size_t)(dot - token)) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/*
 * What the tables know of a user token checked with keys of generation gen, at the cost of
 * hashes: 0 (verified before: *out filled), TALLY_EUNAUTH (refused lately), TALLY_ELIMITED
 * (its address failed too many lately: out->kind AUTH_THROTTLED), or TALLY_EAGAIN: only a
 * signature check can tell.
 */
static int jwt_known(struct auth *a, const unsigned char hash[32], uint64_t gen,
                     const char *caller, long now, struct auth_principal *out)
{
    unsigned char addr[32];
    int64_t v;
    long until;

    if (memo_get(&a->verified, hash, gen, now, &v, &until)) {
        user_principal(out, v);
        return 0;
    }
    if (memo_get(&a->refused, hash, gen, now, &v, &until)) {
        metric_add(a->refusals[REFUSED_REMEMBERED], 1);
        return TALLY_EUNAUTH;
    }
    if (caller && address_hash(caller, addr) == 0 &&
        memo_get(&a->failures, addr, 0, now, &v, &until) && v >= FAIL_MAX) {
        out->kind = AUTH_THROTTLED;
        out->retry_after = until > now ? (int)(until - now) : 1;
        metric_add(a->refusals[REFUSED_THROTTLED], 1);
        return TALLY_ELIMITED;
    }
    return TALLY_EAGAIN;
}

/* A token that failed its checks: refused unchecked for REFUSED_S (under generation gen),
 * and counted against its address. */
static void refuse(struct auth *a, const unsigned char hash[32], uint64_t gen,
                   const char *caller, long now)
{
    unsigned char addr[32];

    metric_add(a->refusals[REFUSED_INVALID], 1);
    memo_put(&a->refused, hash, gen, now + REFUSED_S, 0);
    if (caller && address_hash(caller, addr) == 0)
        memo_count(&a->failures, addr, now, now + FAIL_WINDOW_S);
}

static int refused(struct refusal_why *why, enum reason reason, const char *detail)
{
    why->reason = reason;
    why->detail = detail;
    return TALLY_EUNAUTH;
}

/* libjwt's check of a token whose signature held under k: signature, alg and claims. */
static int decode_jwt(struct auth *a, const struct jwks_key *k, const char *token,
                      const unsigned char hash[32], uint64_t gen, long now,
                      struct auth_principal *out, struct refusal_why *why)
{
    jwt_t *jwt = NULL;
    long exp = 0, nbf = 0;
    bool has_exp, has_nbf;
    const char *sub, *iss;
    int64_t uid = 0;
    int rc = TALLY_EUNAUTH;

    if (jwt_decode(&jwt, token, k->key, (int)k->key_len) != 0)
        return refused(why, R_MALFORMED, "libjwt cannot decode it: its payload is not JSON?");
    if (jwt_get_alg(jwt) != k->alg)
        rc = refused(why, R_WRONG_ALG, "its alg is not its key's");
    else if (!time_claim(jwt, "exp", &exp, &has_exp) || !has_exp)
        rc = refused(why, R_MALFORMED, "no exp, or not a number");
    else if (now - LEEWAY_S > exp)
        rc = refused(why, R_EXPIRED, "exp passed, beyond 60 s of leeway");
    else if (!time_claim(jwt, "nbf", &nbf, &has_nbf))
        rc = refused(why, R_MALFORMED, "nbf is not a number");
    else if (has_nbf && now + LEEWAY_S < nbf)
        rc = refused(why, R_NOT_YET_VALID, "nbf is ahead, beyond 60 s of leeway");
    else if (a->cfg.jwt_issuer && (!(iss = jwt_get_grant(jwt, "iss")) ||
                                   strcmp(iss, a->cfg.jwt_issuer) != 0))
        rc = refused(why, R_WRONG_ISSUER, "iss missing or not --jwt-issuer");
    else if (a->cfg.jwt_audience && !audience_ok(jwt, a->cfg.jwt_audience))
        rc = refused(why, R_WRONG_AUDIENCE, "aud missing or not naming --jwt-audience");
    else if (!(sub = jwt_get_grant(jwt, "sub")) || item_parse_id(sub, strlen(sub), &uid) != 0)
        rc = refused(why, R_MALFORMED, "sub missing or not a uid (1 to 2^63-1)");
    else
        rc = 0;
    if (rc == 0) {
        user_principal(out, uid);
        /* Remembered only once valid now (nbf passed), and only until it would expire. */
        memo_put(&a->verified, hash, gen, exp > LONG_MAX - LEEWAY_S ? LONG_MAX : exp + LEEWAY_S,
                 uid);
    }
    jwt_free(jwt);
    return rc;
}

/*
 * The token's header: its alg, and its kid into kid (JWKS_KID_MAX + 1 bytes) with *has_kid.
 * A kid that no set could hold (jwks_kid_ok) is kept as "" with *has_kid: it selects no key,
 * and is not shown in a log. False when the header is not base64url JSON with a string alg.
 */
static bool parse_header(const char *token, jwt_alg_t *alg, char *kid, bool *has_kid)
{
    const char *dot = strchr(token, '.');
    size_t n = (size_t)(dot - token);
    unsigned char *text = xmalloc(n);
    long len = base64url_decode(token, n, text, n);
    json_t *head = len > 0 ? json_loadb((const char *)text, (size_t)len, 0, NULL) : NULL;
    json_t *a = json_object_get(head, "alg"), *k = json_object_get(head, "kid");
    bool ok = json_is_string(a) && (!k || json_is_string(k));

    *alg = ok ? jwt_str_alg(json_string_value(a)) : JWT_ALG_INVAL;
    *has_kid = ok && k;
    kid[0] = '\0';
    if (*has_kid && jwks_kid_ok(json_string_value(k), json_string_length(k)))
        memcpy(kid, json_string_value(k), json_string_length(k) + 1);
    json_decref(head);
    free(text);
    return ok;
}

/* The signature check and the claims of a token the tables did not know, with keys tk. */
static int verify_jwt(struct auth *a, const struct token_keys *tk, const char *token,
                      const unsigned char hash[32], const char *caller, long now,
                      struct auth_principal *out)
{
    char kid[JWKS_KID_MAX + 1];
    struct refusal_why why = {R_MALFORMED, "?"};
    const struct jwks_key *k = NULL;
    jwt_alg_t alg;
    bool has_kid;
    int rc;

    if (!parse_header(token, &alg, kid, &has_kid))
        rc = refused(&why, R_MALFORMED, "its header is not base64url JSON with an alg");
    else if (!(k = jwks_find(tk->set, has_kid ? kid : NULL)))
        rc = refused(&why, R_UNKNOWN_KID,
                     has_kid ? "no key of its kid is loaded"
                             : "it has no kid, and the JWKS holds several keys");
    else if (alg != k->alg)
        rc = refused(&why, R_WRONG_ALG, "its alg is not its key's");
    else if (!signature_holds(k, token))
        rc = refused(&why, R_BAD_SIGNATURE, "its signature does not hold under its key");
    else
        rc = decode_jwt(a, k, token, hash, tk->gen, now, out, &why);
    if (rc == TALLY_EUNAUTH) {
        refuse(a, hash, tk->gen, caller, now);
        log_refusal(why, has_kid && kid[0] ? kid : NULL, caller);
    }
    return rc;
}

/* A JWT is three base64url parts joined by two dots. */
static bool looks_like_jwt(const char *t)
{
    const char *d1 = strchr(t, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    return d1 && d2 && !strchr(d2 + 1, '.') && d1 > t && d2 > d1 + 1;
}

/* A user token: what the tables know, then (verify) the signature check they leave. */
static int check_jwt(struct auth *a, const char *token, const char *caller, bool verify,
                     struct auth_principal *out)
{
    unsigned char hash[32];
    long now = (long)time(NULL);
    struct token_keys *tk;
    int rc;

    if (sha256(token, strlen(token), hash))
        return TALLY_EINTERNAL;
    tk = token_keys_get(a);
    rc = jwt_known(a, hash, tk->gen, caller, now, out);
    if (rc == TALLY_EAGAIN && verify)
        rc = verify_jwt(a, tk, token, hash, caller, now, out);
    token_keys_put(tk);
    return rc;
}

static int authenticate(struct auth *a, const char *authorization, const char *caller,
                        bool verify, struct auth_principal *out)
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
    /* The server trimmed the value's ends (one rule for every header); the spaces between
     * "Bearer" and the token are the scheme's. */
    for (t = authorization + 7; *t == ' ';)
        t++;
    len = strlen(t);
    if (len == 0 || len > TOKEN_MAX)
        return TALLY_EUNAUTH;
    if (a->cfg.jwt_key && looks_like_jwt(t))
        return check_jwt(a, t, caller, verify, out);
    return check_key(a, t, len, out);
}

int auth_check(struct auth *a, const char *authorization, const char *caller,
               struct auth_principal *out)
{
    return authenticate(a, authorization, caller, false, out);
}

int auth_verify(struct auth *a, const char *authorization, const char *caller,
                struct auth_principal *out)
{
    return authenticate(a, authorization, caller, true, out);
}

void auth_free(struct auth *a)
{
    if (!a)
        return;
    keyset_free(a->keys);
    token_keys_put(a->tokens);
    OPENSSL_cleanse(a->verified.slot, sizeof(a->verified.slot));
    OPENSSL_cleanse(a->refused.slot, sizeof(a->refused.slot));
    pthread_rwlock_destroy(&a->lock);
    pthread_mutex_destroy(&a->verified.lock);
    pthread_mutex_destroy(&a->refused.lock);
    pthread_mutex_destroy(&a->failures.lock);
    free(a);
}
