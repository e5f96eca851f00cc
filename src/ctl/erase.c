/*
 * erase.c - tallyctl erase-user: removes what tally keeps about one user.
 *
 * The work is tallyd's own (interactive_erase_user: a chunk of the user's rows
 * per store transaction, each fenced in the cache like a like), run here on a
 * service with a store and a cache but no bus, so the rules and the cache
 * protocol are the same whichever of the two erases. Chunks are taken a few
 * at a time until the store has no row of the user left; a failure stops with
 * what was done so far on stderr, and running the command again finishes.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "ctl/ctl.h"
#include "service/interactive.h"
#include "store/store.h"
#include "util/error.h"
#include "util/url.h"
#include "util/banned.h"

#define CALL_CHUNKS 8 /* chunks per service call: a progress line between calls */

const char ctl_usage_erase_user[] =
    "usage: tallyctl erase-user --store URL [--cache URL] UID\n"
    "\n"
    "Erases user UID's likes and collections (a data-protection request): every row,\n"
    "active or not, is deleted, 256 rows per transaction, and each item's like_cnt and\n"
    "collect_cnt are lowered by the active ones, as unlikes would (hourly counts and\n"
    "windows too), so it is safe while tallyd serves. With --cache (the one tallyd uses),\n"
    "each chunk is fenced in the cache as tallyd's writes are and the user's cached flags\n"
    "are dropped. Running it again, or after it was stopped, finishes the job and changes\n"
    "nothing more. Prints: erase-user: uid UID: A likes and B collections removed in T\n"
    "transactions. What is and is not erased: docs/operations.md. Exit status: 0 erased,\n"
    "1 failed (run it again), 2 usage.\n";

static const struct option opts[] = {{"store", required_argument, NULL, 's'},
                                     {"cache", required_argument, NULL, 'c'},
                                     {NULL, 0, NULL, 0}};

static int parse_args(int argc, char **argv, const char **store, const char **cache,
                      int64_t *uid)
{
    int c;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (c == 's')
            *store = optarg;
        else if (c == 'c')
            *cache = optarg;
        else if (c == ':')
            return ctl_usage("erase-user", "%s needs a value (see tallyctl erase-user --help)",
                             argv[optind - 1]);
        else
            return ctl_usage("erase-user", "unknown option %s (see tallyctl erase-user --help)",
                             argv[optind - 1]);
    }
    if (!*store)
        return ctl_usage("erase-user", "--store URL is required (see tallyctl erase-user --help)");
    if (optind != argc - 1)
        return ctl_usage("erase-user", "give exactly one UID (see tallyctl erase-user --help)");
    if (!ctl_parse_count(argv[optind], INT64_MAX, uid))
        return ctl_usage("erase-user", "invalid UID '%s': an integer in 1..9223372036854775807",
                         argv[optind]);
    return 0;
}

/* Adds one service call's work to the totals. */
static void add(struct erase_result *total, const struct erase_result *r)
{
    for (int t = 0; t < USER_TABLE_COUNT; t++)
        total->removed[t] += r->removed[t];
    total->chunks += r->chunks;
    total->done = r->done;
}

int ctl_cmd_erase_user(int argc, char **argv)
{
    const char *url = NULL, *cache_url = NULL;
    struct erase_result total = {0}, r;
    struct url su = {0}, cu = {0};
    struct store *s = NULL;
    struct cache *c = NULL;
    struct interactive svc;
    struct ctl_progress progress;
    int64_t uid = 0;
    char *err = NULL;
    int rc;

    if ((rc = parse_args(argc, argv, &url, &cache_url, &uid)))
        return rc;
    if ((rc = ctl_parse_url("erase-user", "--store", url, store_check, &su)) ||
        (cache_url && (rc = ctl_parse_url("erase-user", "--cache", cache_url, cache_check, &cu))))
        goto out;
    if (cache_url)
        rc = ctl_open_cache("erase-user", &cu, &c);
    else if (cache_open("none", &c, &err))
        rc = ctl_fail("erase-user", "%s", err ? err : "cannot open the 'none' cache");
    if (rc || (rc = ctl_open_store("erase-user", &su, true, &s)))
        goto out;
    interactive_init(&svc, s, c, NULL); /* no bus: an erasure publishes nothing */
    ctl_progress_init(&progress);
    do {
        rc = interactive_erase_user(&svc, uid, CALL_CHUNKS, &r);
        add(&total, &r);
        ctl_progress(&progress, "erase-user: %lld likes, %lld collections removed",
                     (long long)total.removed[USER_LIKES],
                     (long long)total.removed[USER_COLLECTIONS]);
    } while (rc == 0 && !r.done);
    ctl_progress_done(&progress);
    if (rc) {
        rc = ctl_fail("erase-user",
                      "the store failed (%s) after %lld likes and %lld collections removed:"
                      " run it again to finish",
                      tally_strerror(rc), (long long)total.removed[USER_LIKES],
                      (long long)total.removed[USER_COLLECTIONS]);
        goto out;
    }
    printf("erase-user: uid %lld: %lld likes and %lld collections removed in %lld transactions\n",
           (long long)uid, (long long)total.removed[USER_LIKES],
           (long long)total.removed[USER_COLLECTIONS], (long long)total.chunks);
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    free(err);
    store_free(s);
    cache_free(c);
    url_release(&su);
    url_release(&cu);
    return rc;
}
