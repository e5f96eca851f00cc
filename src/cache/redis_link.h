/*
 * redis_link.h - connections to Redis for the cache: one node or a cluster,
 * plain or TLS, through libvalkey (third_party/libvalkey).
 *
 * A link is what a pooled connection of the cache holds: a valkeyContext on
 * one node, or a valkeyClusterContext that routes each command to the master
 * of its key's slot (and follows MOVED and ASK for the commands it sends one
 * at a time). Commands are built as argument vectors (struct link_cmd), never
 * formatted from a string, so a key or value is sent as it is.
 *
 * The cache pipelines: link_append queues a command, link_reply reads the
 * next reply in order. On a cluster, a pipelined command whose slot moved
 * answers MOVED or ASK rather than being followed: link_redirected tells
 * such a reply, and the caller sends that command again with link_call, which
 * follows redirects. link_settle ends a pipeline (a cluster refreshes its
 * slot map there if a reply said it changed).
 */
#ifndef TALLY_CACHE_REDIS_LINK_H
#define TALLY_CACHE_REDIS_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include <valkey/valkey.h>

#include "util/strbuf.h"

struct url;
struct valkeyClusterContext;
typedef struct ssl_ctx_st SSL_CTX;

/* What every link of one cache shares; set at open, read-only afterwards. */
struct link_config {
    bool cluster;
    char *host; /* the first (or only) node, for the log */
    int port;
    char *seeds;          /* "HOST:PORT,HOST:PORT...", every node of the URL */
    char *user, *password; /* AUTH on every connection when password is set; never logged */
    struct timeval timeout;
    SSL_CTX *tls; /* NULL: plain TCP */
};

/* Whether scheme is one of Redis's (redis, rediss, redis-cluster, rediss-cluster), and which. */
bool link_scheme(const char *scheme, bool *cluster, bool *tls);

/* The TLS options a cache URL allows beside its own. */
#define LINK_URL_OPTIONS "tls", "tls_ca"

/*
 * Reads the URL's scheme (redis, rediss, redis-cluster, rediss-cluster),
 * nodes, credentials and tls/tls_ca options into *cfg. On failure *why is a
 * new string (the caller frees it) that never quotes the password.
 */
int link_config_init(struct link_config *cfg, const struct url *u, long long timeout_ms,
                     char **why);
void link_config_release(struct link_config *cfg);
/* The check half of link_config_init, for cache_redis_check (tls_ca must be readable). */
int link_url_check(const struct url *u, char **why);

struct link {
    valkeyContext *ctx;                /* one node; NULL when not connected */
    struct valkeyClusterContext *cc;   /* a cluster; NULL when not connected */
    int64_t retry_at_us;               /* after a failure, no reconnect before this */
};

/*
 * Connects (and authenticates). On failure why says what went wrong, with
 * the password scrubbed, and *refused is set if Redis refused the
 * credentials.
 */
int link_open(const struct link_config *cfg, struct link *l, struct strbuf *why, bool *refused);
void link_close(struct link *l);
static inline bool link_up(const struct link *l) { return l->ctx || l->cc; }
/* The last I/O error of the link. */
const char *link_error(const struct link *l);

/* A command's arguments, formatted one after another into buf. */
#define LINK_ARGS_MAX 520
struct link_cmd {
    struct strbuf *buf;
    size_t argc, at[LINK_ARGS_MAX], len[LINK_ARGS_MAX];
};

void link_cmd_start(struct link_cmd *m, struct strbuf *buf);
__attribute__((format(printf, 2, 3))) void link_cmd_arg(struct link_cmd *m, const char *fmt, ...);

int link_append(struct link *l, const struct link_cmd *m);
int link_reply(struct link *l, valkeyReply **r);
/* Sends one command and waits for its reply (following redirects on a cluster); NULL on error. */
valkeyReply *link_call(struct link *l, const struct link_cmd *m);
void link_settle(struct link *l);

/* Whether r is an error reply of this kind (its first word). */
bool link_reply_is(const valkeyReply *r, const char *kind);
/* Whether r says the command ran nowhere because its slot moved (MOVED, ASK, TRYAGAIN). */
bool link_redirected(const valkeyReply *r);

/* The slot of a key on a cluster (CRC16 of its hash tag, as every node computes it). */
unsigned link_slot(const char *key);

#endif
