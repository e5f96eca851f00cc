/*
 * redis_link.c - connections to Redis, one node or a cluster, plain or TLS.
 *
 * DESIGN
 *   libvalkey does the protocol, the cluster's slot map and redirects, and
 *   the TLS handshake; this file chooses between its two kinds of context
 *   and holds the rules tally adds:
 *
 *   - TLS verifies the server's certificate against tls_ca (or the system's
 *     CAs) and its name or IP address against the host the link connects
 *     to. libvalkey's own TLS context checks the chain only, so each
 *     connection's SSL is made here (tls_start) and handed to libvalkey.
 *     On a cluster this runs for every node the slot map leads to.
 *   - Credentials: AUTH [USER] PASSWORD on every connection, first or not.
 *     Without a password a first PING tells a server that wants one
 *     (NOAUTH) at connect time rather than at the first command.
 */
#include "cache/redis_link.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <valkey/cluster.h>
#include <valkey/tls.h>

#include "util/error.h"
#include "util/url.h"
#include "util/xmalloc.h"
#include "util/banned.h"

bool link_scheme(const char *scheme, bool *cluster, bool *tls)
{
    static const struct {
        const char *name;
        bool cluster, tls;
    } schemes[] = {{"redis", false, false},
                   {"rediss", false, true},
                   {"redis-cluster", true, false},
                   {"rediss-cluster", true, true}};

    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        if (strcmp(scheme, schemes[i].name) == 0) {
            *cluster = schemes[i].cluster;
            *tls = schemes[i].tls;
            return true;
        }
    }
    return false;
}

int link_url_check(const struct url *u, char **why)
{
    bool cluster = false, tls = false;
    long long on;

    *why = NULL;
    if (!link_scheme(u->scheme, &cluster, &tls) || u->opaque)
        *why = xstrdup("expected redis://, rediss://, redis-cluster:// or rediss-cluster://");
    else if (!cluster && u->nhosts != 1)
        *why = xstrdup("expected redis://[USER:PASSWORD@]HOST:PORT (for several nodes, "
                       "redis-cluster://HOST:PORT,HOST:PORT...)");
    else if (*u->path)
        *why = xstrdup("a Redis URL takes no path (database numbers are not supported)");
    else if (u->user && !u->password)
        *why = xstrdup("a Redis user needs a password: redis://USER:PASSWORD@HOST:PORT");
    else if (url_option_int(u, "tls", 0, 1, tls, &on))
        *why = xstrdup("tls= takes 0 or 1");
    else if (!on && url_option(u, "tls_ca"))
        *why = xstrdup("tls_ca= needs TLS (rediss://, rediss-cluster:// or tls=1)");
    else if (url_option(u, "tls_ca") && !*url_option(u, "tls_ca"))
        *why = xstrdup("tls_ca= takes the path of a PEM file of CA certificates");
    else if (url_option(u, "tls_ca") && access(url_option(u, "tls_ca"), R_OK) != 0)
        *why = xstrfmt("cannot read tls_ca=%s", url_option(u, "tls_ca"));
    return *why ? TALLY_EINVAL : 0;
}

/* A client context that verifies servers against ca (NULL: the system's CAs). */
static SSL_CTX *tls_client(const char *ca, char **why)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    int ok;

    if (!ctx) {
        *why = xstrdup("cannot make a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    ok = ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL) : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        *why = ca ? xstrfmt("cannot read the CA certificates in tls_ca=%s", ca)
                  : xstrdup("cannot read the system's CA certificates");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int link_config_init(struct link_config *cfg, const struct url *u, long long timeout_ms,
                     char **why)
{
    bool cluster = false, tls = false;
    long long on;
    struct strbuf seeds = STRBUF_INIT;

    memset(cfg, 0, sizeof(*cfg));
    if (link_url_check(u, why))
        return TALLY_EINVAL;
    link_scheme(u->scheme, &cluster, &tls);
    url_option_int(u, "tls", 0, 1, tls, &on);
    if (on && !(cfg->tls = tls_client(url_option(u, "tls_ca"), why)))
        return TALLY_EINVAL;
    cfg->cluster = cluster;
    cfg->host = xstrdup(u->hosts[0].name);
    cfg->port = u->hosts[0].port ? u->hosts[0].port : 6379;
    for (size_t i = 0; i < u->nhosts; i++) {
        const char *name = u->hosts[i].name;
        bool v6 = strchr(name, ':') != NULL;

        strbuf_addf(&seeds, "%s%s%s%s:%d", i ? "," : "", v6 ? "[" : "", name, v6 ? "]" : "",
                    u->hosts[i].port ? u->hosts[i].port : 6379);
    }
    cfg->seeds = strbuf_detach(&seeds, NULL);
    cfg->user = u->user ? xstrdup(u->user) : NULL;
    cfg->password = u->password ? xstrdup(u->password) : NULL;
    cfg->timeout.tv_sec = timeout_ms / 1000;
    cfg->timeout.tv_usec = (timeout_ms % 1000) * 1000;
    return 0;
}

void link_config_release(struct link_config *cfg)
{
    if (cfg->tls)
        SSL_CTX_free(cfg->tls);
    free(cfg->host);
    free(cfg->seeds);
    free(cfg->user);
    free(cfg->password);
    memset(cfg, 0, sizeof(*cfg));
}

/*
 * libvalkey's TLS hook, for the first node and every node a cluster leads
 * to: an SSL from our context that checks the peer's name (or IP address)
 * too. `tls` is what the options' tls field holds: here, our SSL_CTX.
 */
static int tls_start(valkeyContext *c, struct valkeyTLSContext *tls)
{
    SSL *ssl = SSL_new((SSL_CTX *)(void *)tls);
    X509_VERIFY_PARAM *param;
    unsigned char addr[16];
    const char *host = c->tcp.host;
    bool ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;

    if (!ssl)
        return VALKEY_ERR;
    param = SSL_get0_param(ssl);
    if ((ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
            : X509_VERIFY_PARAM_set1_host(param, host, 0) &&
                  SSL_set_tlsext_host_name(ssl, host)) != 1 ||
        valkeyInitiateTLS(c, ssl) != VALKEY_OK) {
        SSL_free(ssl);
        return VALKEY_ERR;
    }
    return VALKEY_OK;
}

static void scrubbed(struct strbuf *why, const char *text, const struct link_config *cfg)
{
    url_scrub(why, text, cfg->password);
}

/* Whether a server's error refuses the client for its credentials (or their absence). */
static bool refuses(const char *err)
{
    return strncmp(err, "WRONGPASS", 9) == 0 || strncmp(err, "NOAUTH", 6) == 0 ||
           strncmp(err, "ERR AUTH", 8) == 0 || strncmp(err, "ERR invalid password", 20) == 0;
}

static int open_cluster(const struct link_config *cfg, struct link *l, struct strbuf *why,
                        bool *refused)
{
    valkeyClusterOptions o = {
        .initial_nodes = cfg->seeds,
        .connect_timeout = &cfg->timeout,
        .command_timeout = &cfg->timeout,
        .username = cfg->user,
        .password = cfg->password,
        .options = VALKEY_OPT_BLOCKING_INITIAL_UPDATE,
    };

    if (cfg->tls) {
        o.tls = cfg->tls;
        o.tls_init_fn = tls_start;
    }
    l->cc = valkeyClusterConnectWithOptions(&o);
    if (l->cc && !l->cc->err)
        return 0;
    if (l->cc) {
        *refused = refuses(l->cc->errstr);
        scrubbed(why, l->cc->errstr, cfg);
    } else {
        strbuf_addstr(why, "out of memory");
    }
    link_close(l);
    return TALLY_EUNAVAIL;
}

static int open_node(const struct link_config *cfg, struct link *l, struct strbuf *why,
                     bool *refused)
{
    valkeyOptions o = {.connect_timeout = &cfg->timeout, .command_timeout = &cfg->timeout};
    valkeyReply *r;

    VALKEY_OPTIONS_SET_TCP(&o, cfg->host, cfg->port);
    l->ctx = valkeyConnectWithOptions(&o);
    if (!l->ctx || l->ctx->err || (cfg->tls && tls_start(l->ctx, (void *)cfg->tls))) {
        scrubbed(why, l->ctx && l->ctx->err ? l->ctx->errstr : "cannot connect", cfg);
        link_close(l);
        return TALLY_EUNAVAIL;
    }
    if (cfg->password)
        r = cfg->user ? valkeyCommand(l->ctx, "AUTH %s %s", cfg->user, cfg->password)
                      : valkeyCommand(l->ctx, "AUTH %s", cfg->password);
    else
        r = valkeyCommand(l->ctx, "PING");
    if (r && r->type != VALKEY_REPLY_ERROR) {
        freeReplyObject(r);
        return 0;
    }
    if (r) {
        *refused = refuses(r->str);
        scrubbed(why, r->str, cfg);
        freeReplyObject(r);
    } else {
        scrubbed(why, l->ctx->errstr, cfg);
    }
    link_close(l);
    return TALLY_EUNAVAIL;
}

int link_open(const struct link_config *cfg, struct link *l, struct strbuf *why, bool *refused)
{
    *refused = false;
    return cfg->cluster ? open_cluster(cfg, l, why, refused) : open_node(cfg, l, why, refused);
}

void link_close(struct link *l)
{
    if (l->ctx)
        valkeyFree(l->ctx);
    if (l->cc)
        valkeyClusterFree(l->cc);
    l->ctx = NULL;
    l->cc = NULL;
}

/*
 * A blocking socket's receive timeout ends a read with EAGAIN, which libvalkey reports as
 * an I/O error in strerror's words ("Resource temporarily unavailable"): say what it is.
 */
static const char *error_text(int err, const char *errstr)
{
    if (err == VALKEY_ERR_TIMEOUT ||
        (err == VALKEY_ERR_IO && strcmp(errstr, strerror(EAGAIN)) == 0))
        return "timed out (no answer within the URL's timeout_ms)";
    return errstr;
}

const char *link_error(const struct link *l)
{
    if (l->cc && l->cc->err)
        return error_text(l->cc->err, l->cc->errstr);
    if (l->ctx && l->ctx->err)
        return error_text(l->ctx->err, l->ctx->errstr);
    return "connection lost";
}

void link_cmd_start(struct link_cmd *m, struct strbuf *buf)
{
    m->buf = buf;
    m->argc = 0;
    strbuf_reset(buf);
}

void link_cmd_arg(struct link_cmd *m, const char *fmt, ...)
{
    va_list ap;

    TALLY_ASSERT(m->argc < LINK_ARGS_MAX);
    m->at[m->argc] = m->buf->len;
    va_start(ap, fmt);
    strbuf_vaddf(m->buf, fmt, ap);
    va_end(ap);
    m->len[m->argc] = m->buf->len - m->at[m->argc];
    m->argc++;
}

static void cmd_argv(const struct link_cmd *m, const char **argv)
{
    for (size_t k = 0; k < m->argc; k++)
        argv[k] = m->buf->buf + m->at[k];
}

int link_append(struct link *l, const struct link_cmd *m)
{
    const char *argv[LINK_ARGS_MAX];
    int rc;

    cmd_argv(m, argv);
    rc = l->cc ? valkeyClusterAppendCommandArgv(l->cc, (int)m->argc, argv, m->len)
               : valkeyAppendCommandArgv(l->ctx, (int)m->argc, argv, m->len);
    return rc == VALKEY_OK ? 0 : TALLY_EUNAVAIL;
}

int link_reply(struct link *l, valkeyReply **r)
{
    void *reply = NULL;
    int rc = l->cc ? valkeyClusterGetReply(l->cc, &reply) : valkeyGetReply(l->ctx, &reply);

    *r = reply;
    if (rc == VALKEY_OK && reply)
        return 0;
    if (reply)
        freeReplyObject(reply);
    *r = NULL;
    return TALLY_EUNAVAIL;
}

valkeyReply *link_call(struct link *l, const struct link_cmd *m)
{
    const char *argv[LINK_ARGS_MAX];

    cmd_argv(m, argv);
    return l->cc ? valkeyClusterCommandArgv(l->cc, (int)m->argc, argv, m->len)
                 : valkeyCommandArgv(l->ctx, (int)m->argc, argv, m->len);
}

void link_settle(struct link *l)
{
    if (l->cc)
        valkeyClusterReset(l->cc);
}

bool link_reply_is(const valkeyReply *r, const char *kind)
{
    size_t n = strlen(kind);

    return r && r->type == VALKEY_REPLY_ERROR && r->len >= n && strncmp(r->str, kind, n) == 0 &&
           (r->str[n] == ' ' || r->str[n] == '\0');
}

bool link_redirected(const valkeyReply *r)
{
    return link_reply_is(r, "MOVED") || link_reply_is(r, "ASK") || link_reply_is(r, "TRYAGAIN");
}

unsigned link_slot(const char *key)
{
    return valkeyClusterGetSlotByKey((char *)key);
}
