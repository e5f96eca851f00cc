/*
 * maint.c - tallyctl recount, check and backup: looking after a store.
 *
 * recount scans items in row id order, a page at a time, comparing each
 * item's like_cnt/collect_cnt with its active rows (one statement per page,
 * so each page is consistent). --fix recounts a page's drifting items in one
 * transaction from the rows as they are then (so a like committed meanwhile
 * is counted, not overwritten), then drops their cache entries.
 *
 * check prints what the store's check finds (store.h, store_ops.check; the
 * rules are in store/admin.h): a line per problem as it is found, a line per
 * table, a summary. Nothing is held but counts, whatever the store's size.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "ctl/ctl.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/strbuf.h"
#include "util/url.h"
#include "util/xmalloc.h"
#include "util/banned.h"

#define SCAN_PAGE 1000

const char ctl_usage_recount[] =
    "usage: tallyctl recount --store URL [--cache URL] [--fix]\n"
    "\n"
    "Compares every item's like_cnt and collect_cnt with its active like and collection\n"
    "rows and prints each item that differs, then a summary line. With --fix, sets\n"
    "the counts to the rows (1,000 items per transaction, counting rows as they are\n"
    "then, so it is safe while tallyd serves) and deletes those items' entries from\n"
    "the cache (--cache redis://HOST:PORT, the one tallyd uses). Items that have rows\n"
    "but no item row are not looked at. Exit status: 0 no drift (or fixed), 1 drift\n"
    "found without --fix or a failure, 2 usage.\n";

const char ctl_usage_check[] =
    "usage: tallyctl check --store URL\n"
    "\n"
    "Checks the store: its schema version, integrity (PRAGMA integrity_check on SQLite,\n"
    "CHECK TABLE on MariaDB), then every row of every table against what tally keeps\n"
    "(valid biz and ids, no negative counts, like_cnt and collect_cnt equal to the active\n"
    "rows, windows equal to the hours they hold, ...), 1,000 rows per query. Prints one\n"
    "FAIL line per problem (table, row, what is wrong), one line per table, then a\n"
    "summary. The store is opened like tallyd opens it (an older schema is migrated).\n"
    "Counts that differ from their rows are fixed by tallyctl recount --fix. Exit\n"
    "status: 0 no problem, 1 a problem (or the store cannot be read), 2 usage.\n";

const char ctl_usage_backup[] =
    "usage: tallyctl backup --store sqlite:PATH DEST\n"
    "\n"
    "Copies the SQLite store to the new file DEST with SQLite's backup API, from one\n"
    "snapshot, while tallyd goes on writing. DEST must not exist. To restore, stop\n"
    "tallyd and put DEST in place of PATH (removing PATH-wal and PATH-shm). MariaDB\n"
    "stores are backed up with mariadb-dump: see docs/operations.md. Exit status:\n"
    "0 done, 1 failed, 2 usage.\n";

static const struct option opts[] = {{"store", required_argument, NULL, 's'},
                                     {"cache", required_argument, NULL, 'c'},
                                     {"fix", no_argument, NULL, 'f'},
                                     {NULL, 0, NULL, 0}};

/* --store, and --cache/--fix where allowed; one-line usage errors. */
static int parse_opts(const char *cmd, int argc, char **argv, bool maint, const char **store,
                      const char **cache, bool *fix)
{
    int c;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (c == 's') {
            *store = optarg;
        } else if (c == 'c' && maint) {
            *cache = optarg;
        } else if (c == 'f' && maint) {
            *fix = true;
        } else if (c == ':') {
            return ctl_usage(cmd, "%s needs a value (see tallyctl %s --help)", argv[optind - 1],
                             cmd);
        } else {
            return ctl_usage(cmd, "unknown option %s (see tallyctl %s --help)", argv[optind - 1],
                             cmd);
        }
    }
    if (!*store)
        return ctl_usage(cmd, "--store URL is required (see tallyctl %s --help)", cmd);
    return 0;
}

/* ------------------------------------------------------------ recount */

struct recount_totals {
    int64_t scanned, drifting, like_off, collect_off, fixed, dropped;
};

static int64_t absdiff(int64_t a, int64_t b)
{
    return a > b ? a - b : b - a;
}

/* Fixes the drifting items of one page and drops their cache entries. */
static int fix_page(struct store *s, struct cache *c, const struct item *items, size_t n,
                    struct recount_totals *t)
{
    size_t changed = 0;
    int rc;

    if (n == 0)
        return 0;
    if ((rc = store_recount(s, items, n, clock_now_ms(), &changed)))
        return ctl_fail("recount", "the store failed while fixing: %s", tally_strerror(rc));
    t->fixed += (int64_t)changed;
    if (c && (rc = cache_invalidate(c, items, n)))
        return ctl_fail("recount", "fixed %lld items but could not drop their cache entries (%s):"
                                   " run it again when the cache answers",
                        (long long)t->fixed, tally_strerror(rc));
    if (c)
        t->dropped += (int64_t)n;
    return 0;
}

static int recount_all(struct store *s, struct cache *c, bool fix, struct recount_totals *t)
{
    struct count_check *page = xcalloc(SCAN_PAGE, sizeof(*page));
    struct item *drift = xcalloc(SCAN_PAGE, sizeof(*drift));
    struct ctl_progress progress;
    int64_t after = 0;
    size_t n, nd;
    int rc = 0;

    ctl_progress_init(&progress);
    do {
        if ((rc = store_scan_counts(s, after, SCAN_PAGE, page, &n))) {
            ctl_progress_done(&progress);
            rc = ctl_fail("recount", "the store failed: %s", tally_strerror(rc));
            break;
        }
        nd = 0;
        for (size_t i = 0; i < n; i++) {
            const struct count_check *e = &page[i];

            after = e->row_id;
            if (e->stored.like_cnt == e->likes && e->stored.collect_cnt == e->collects)
                continue;
            ctl_progress_done(&progress);
            printf("%s %lld: like_cnt %lld, %lld active likes; collect_cnt %lld, %lld active"
                   " collections\n",
                   e->item.biz, (long long)e->item.id, (long long)e->stored.like_cnt,
                   (long long)e->likes, (long long)e->stored.collect_cnt,
                   (long long)e->collects);
            t->like_off += absdiff(e->stored.like_cnt, e->likes);
            t->collect_off += absdiff(e->stored.collect_cnt, e->collects);
            drift[nd++] = e->item;
        }
        t->scanned += (int64_t)n;
        t->drifting += (int64_t)nd;
        if (fix && (rc = fix_page(s, c, drift, nd, t)))
            break;
        ctl_progress(&progress, "recount: %lld items, %lld drifting", (long long)t->scanned,
                     (long long)t->drifting);
    } while (n == SCAN_PAGE);
    ctl_progress_done(&progress);
    free(page);
    free(drift);
    return rc;
}

int ctl_cmd_recount(int argc, char **argv)
{
    const char *url = NULL, *cache_url = NULL;
    struct recount_totals t = {0};
    struct url su = {0}, cu = {0};
    struct store *s = NULL;
    struct cache *c = NULL;
    bool fix = false;
    int rc;

    if ((rc = parse_opts("recount", argc, argv, true, &url, &cache_url, &fix)))
        return rc;
    if (optind < argc)
        return ctl_usage("recount", "unexpected argument '%s' (see tallyctl recount --help)",
                         argv[optind]);
    if (cache_url && !fix)
        return ctl_usage("recount", "--cache is used only with --fix");
    if ((rc = ctl_parse_url("recount", "--store", url, store_check, &su)) ||
        (cache_url && (rc = ctl_parse_url("recount", "--cache", cache_url, cache_check, &cu))) ||
        (cache_url && (rc = ctl_open_cache("recount", &cu, &c))) ||
        (rc = ctl_open_store("recount", &su, true, &s)))
        goto out;
    rc = recount_all(s, c, fix, &t);
    printf("recount: %lld items, %lld drifting (like_cnt off by %lld, collect_cnt off by %lld in"
           " total)",
           (long long)t.scanned, (long long)t.drifting, (long long)t.like_off,
           (long long)t.collect_off);
    if (fix)
        printf("; %lld fixed, %lld cache entries dropped", (long long)t.fixed,
               (long long)t.dropped);
    printf("\n");
    if (rc == 0 && t.drifting && !fix)
        rc = 1;
out:
    store_free(s);
    cache_free(c);
    url_release(&su);
    url_release(&cu);
    return rc;
}

/* ------------------------------------------------------------ check */

struct check_state {
    struct ctl_progress progress;
    int checks, tables;
    int64_t rows, problems;
    struct strbuf failing; /* "table N, table N" */
};

static void check_line(void *arg, bool ok, const char *what, const char *detail)
{
    struct check_state *st = arg;

    ctl_progress_done(&st->progress);
    st->checks++;
    st->problems += !ok;
    printf("%-4s  %s: %s\n", ok ? "ok" : "FAIL", what, detail);
}

static void check_problem(void *arg, const char *table, const char *key, const char *what)
{
    struct check_state *st = arg;

    ctl_progress_done(&st->progress);
    printf("FAIL  %s %s: %s\n", table, key, what);
}

static void check_table(void *arg, const char *table, int64_t rows, int64_t problems,
                        const char *error)
{
    struct check_state *st = arg;
    int64_t all = problems + (error != NULL); /* a table not read to its end is one more */

    ctl_progress_done(&st->progress);
    st->tables++;
    st->rows += rows;
    st->problems += all;
    if (all)
        strbuf_addf(&st->failing, "%s%s %lld", st->failing.len ? ", " : "", table,
                    (long long)all);
    printf("%-4s  %s: %lld row%s", all ? "FAIL" : "ok", table, (long long)rows,
           rows == 1 ? "" : "s");
    if (problems)
        printf(", %lld problem%s", (long long)problems, problems == 1 ? "" : "s");
    if (error)
        printf("; not read to its end: %s", error);
    printf("\n");
}

static void check_progress(void *arg, const char *table, int64_t rows)
{
    struct check_state *st = arg;

    ctl_progress(&st->progress, "check: %s, %lld rows", table, (long long)rows);
}

int ctl_cmd_check(int argc, char **argv)
{
    const char *url = NULL;
    struct check_state st = {.failing = STRBUF_INIT};
    struct store_check_out out = {&st, check_line, check_problem, check_table, check_progress};
    struct url su = {0};
    struct store *s = NULL;
    int rc;

    if ((rc = parse_opts("check", argc, argv, false, &url, NULL, NULL)))
        return rc;
    if (optind < argc)
        return ctl_usage("check", "unexpected argument '%s' (see tallyctl check --help)",
                         argv[optind]);
    if ((rc = ctl_parse_url("check", "--store", url, store_check, &su)))
        goto out;
    if ((rc = ctl_open_store("check", &su, true, &s))) {
        printf("FAIL  open: see the line above\ncheck: the store cannot be opened\n");
        goto out;
    }
    ctl_progress_init(&st.progress);
    if ((rc = store_check_integrity(s, &out))) {
        ctl_progress_done(&st.progress);
        printf("FAIL  store: %s\n", tally_strerror(rc));
        st.problems++;
    }
    printf("check: %d checks, %d tables, %lld rows, %lld problem%s%s%s\n", st.checks, st.tables,
           (long long)st.rows, (long long)st.problems, st.problems == 1 ? "" : "s",
           st.failing.len ? ": " : "", st.failing.len ? st.failing.buf : "");
    rc = st.problems ? 1 : 0;
out:
    strbuf_release(&st.failing);
    store_free(s);
    url_release(&su);
    return rc;
}

/* ------------------------------------------------------------ backup */

struct backup_state {
    struct ctl_progress progress;
    int64_t pages;
};

static void backup_progress(void *arg, int64_t done, int64_t total)
{
    struct backup_state *b = arg;

    b->pages = total;
    ctl_progress(&b->progress, "backup: %lld of %lld pages", (long long)done, (long long)total);
}

int ctl_cmd_backup(int argc, char **argv)
{
    const char *url = NULL, *dest;
    struct backup_state b = {.pages = 0};
    struct url su = {0};
    struct store *s = NULL;
    int rc;

    if ((rc = parse_opts("backup", argc, argv, false, &url, NULL, NULL)))
        return rc;
    if (argc - optind != 1)
        return ctl_usage("backup", "give one DEST file (see tallyctl backup --help)");
    dest = argv[optind];
    if ((rc = ctl_parse_url("backup", "--store", url, store_check, &su)))
        return rc;
    if (strcmp(su.scheme, "mysql") == 0) {
        rc = ctl_usage("backup", "MariaDB stores are backed up with mariadb-dump"
                                 " --single-transaction (docs/operations.md)");
        goto out;
    }
    if ((rc = ctl_open_store("backup", &su, true, &s)))
        goto out;
    if (!store_has_backup(s)) {
        rc = ctl_usage("backup", "the %s store has no online backup here", s->ops->name);
        goto out;
    }
    ctl_progress_init(&b.progress);
    rc = store_backup(s, dest, backup_progress, &b);
    ctl_progress_done(&b.progress);
    if (rc == TALLY_EINVAL)
        rc = ctl_fail("backup", "%s exists; not overwriting it", dest);
    else if (rc)
        rc = ctl_fail("backup", "failed: %s (%s removed)", tally_strerror(rc), dest);
    else
        printf("backup: %lld pages copied to %s\n", (long long)b.pages, dest);
out:
    store_free(s);
    url_release(&su);
    return rc;
}
