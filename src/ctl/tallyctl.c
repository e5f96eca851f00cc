/*
 * tallyctl.c - the admin tool: one binary, a subcommand each.
 *
 *   tallyctl key NAME SCOPES    a new API key: the token on the first line (give it to the
 *                               caller), the keys-file line on the second (append it to the
 *                               file tallyd's --keys names, then SIGHUP tallyd)
 *   tallyctl export|import      every table that holds state as JSON Lines; import from
 *                               the course schema (data.c, course.c)
 *   tallyctl recount|check|backup   looking after a store (maint.c)
 *   tallyctl erase-user UID     a user's likes and collections erased (erase.c)
 *   tallyctl probe URL          one GET of a probe, the verdict in the exit status (probe.c)
 *   tallyctl reload --pid-file PATH  SIGHUP to the tallyd that holds PATH (util/pidfile.h)
 *
 * Usage errors print one line on stderr and exit 2; `tallyctl CMD --help` prints a
 * subcommand's help. The token is 32 random bytes from OpenSSL's CSPRNG (256 bits),
 * base64url without padding; only its SHA-256 goes into the keys file.
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "http/auth.h"
#include "store/mysql.h"
#include "store/sqlite.h"
#include "util/log.h"
#include "util/pidfile.h"
#include "util/strbuf.h"
#include "util/version.h"
#include "util/banned.h"

#define TOKEN_BYTES 32

struct command {
    const char *name;
    const char *usage;
    int (*run)(int argc, char **argv);
};

static int usage_error(const char *fmt, const char *arg)
{
    fputs("tallyctl: ", stderr);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    return 2;
}

/* base64url (RFC 4648 section 5) of n bytes, no padding. */
static void base64url(struct strbuf *out, const unsigned char *p, size_t n)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        strbuf_addch(out, abc[v >> 18 & 63]);
        strbuf_addch(out, abc[v >> 12 & 63]);
        if (i + 1 < n)
            strbuf_addch(out, abc[v >> 6 & 63]);
        if (i + 2 < n)
            strbuf_addch(out, abc[v & 63]);
    }
}

static int cmd_key(int argc, char **argv)
{
    unsigned char raw[TOKEN_BYTES], hash[32];
    unsigned int hlen = 0;
    struct strbuf token = STRBUF_INIT;
    unsigned scopes;
    size_t nlen;

    if (argc != 3)
        return usage_error("usage: tallyctl key NAME SCOPES (see tallyctl key --help)%s", "");
    nlen = strlen(argv[1]);
    if (nlen == 0 || nlen > AUTH_NAME_MAX || strspn(argv[1], "abcdefghijklmnopqrstuvwxyz"
                                                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                             "0123456789_-.") != nlen)
        return usage_error("invalid key name '%s': 1 to 64 of A-Z a-z 0-9 _ - .", argv[1]);
    if (auth_parse_scopes(argv[2], strlen(argv[2]), &scopes))
        return usage_error("invalid scopes '%s': a comma list of read, write, metrics, admin",
                           argv[2]);
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        fprintf(stderr, "tallyctl: the random generator failed\n");
        return 1;
    }
    base64url(&token, raw, sizeof(raw));
    OPENSSL_cleanse(raw, sizeof(raw));
    if (!EVP_Digest(token.buf, token.len, hash, &hlen, EVP_sha256(), NULL)) {
        fprintf(stderr, "tallyctl: SHA-256 failed\n");
        return 1;
    }
    printf("%s\n%s %s ", token.buf, argv[1], argv[2]);
    for (unsigned i = 0; i < hlen; i++)
        printf("%02x", hash[i]);
    printf("\n");
    OPENSSL_cleanse(token.buf, token.len);
    strbuf_release(&token);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* SIGHUP to one tallyd, the one that holds the pid file, rather than to every tallyd. */
static int cmd_reload(int argc, char **argv)
{
    pid_t pid;
    char *err = NULL;

    if (argc != 3 || strcmp(argv[1], "--pid-file") != 0)
        return usage_error("usage: tallyctl reload --pid-file PATH%s", "");
    if (pidfile_read(argv[2], &pid, &err) != 0) {
        fprintf(stderr, "tallyctl reload: %s\n", err);
        free(err);
        return 1;
    }
    if (kill(pid, SIGHUP) != 0) {
        fprintf(stderr, "tallyctl reload: cannot signal process %ld: %s\n", (long)pid,
                strerror(errno));
        return 1;
    }
    printf("tallyctl reload: SIGHUP sent to tallyd %ld (its log says what was reloaded)\n",
           (long)pid);
    return 0;
}

static const struct command commands[] = {
    {"key",
     "usage: tallyctl key NAME SCOPES\n"
     "\n"
     "Makes a new API key. Prints the token (256 random bits, base64url) on the first\n"
     "line and the line for tallyd's --keys file on the second: NAME SCOPES SHA256HEX.\n"
     "SCOPES is a comma list of read, write, metrics, admin. The token is shown once;\n"
     "the file keeps only its hash. Reload tallyd with SIGHUP after adding the line.\n",
     cmd_key},
    {"export", ctl_usage_export, ctl_cmd_export},
    {"import", ctl_usage_import, ctl_cmd_import},
    {"recount", ctl_usage_recount, ctl_cmd_recount},
    {"check", ctl_usage_check, ctl_cmd_check},
    {"backup", ctl_usage_backup, ctl_cmd_backup},
    {"erase-user", ctl_usage_erase_user, ctl_cmd_erase_user},
    {"probe", ctl_usage_probe, ctl_cmd_probe},
    {"reload",
     "usage: tallyctl reload --pid-file PATH\n"
     "\n"
     "Asks the tallyd started with --pid-file PATH to reload its API keys, users' token\n"
     "keys and TLS certificate (SIGHUP to that process alone). Exit 1 when no tallyd holds\n"
     "PATH: a stale file left by a killed tallyd is never trusted.\n",
     cmd_reload},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void print_usage(FILE *f)
{
    fputs("usage: tallyctl COMMAND [ARGS]   (tallyctl COMMAND --help; tallyctl --version)\n\n"
          "commands:\n", f);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %s\n", commands[i].name);
}

int main(int argc, char **argv)
{
    /* The adapters' own warnings would break the one-line errors; their errors stay. */
    log_set_level(LOG_ERROR);
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) { /* as tallyd --version says it */
        printf("tallyctl %s (%s; store schema: sqlite %d, mysql %d)\n", tally_version(),
               tally_commit(), store_sqlite_schema_version(), store_mysql_schema_version());
        return 0;
    }
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(argv[1], commands[i].name) != 0)
            continue;
        if (argc > 2 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
            fputs(commands[i].usage, stdout);
            return 0;
        }
        return commands[i].run(argc - 1, argv + 1);
    }
    return usage_error("unknown command '%s' (see tallyctl --help)", argv[1]);
}
