/*
 * data.c - tallyctl export and import: moving items, likes and collections
 * in and out of a store.
 *
 * DESIGN
 *   Streams, in constant memory. Export walks each table in row id order in
 *   pages from one snapshot (store.h, export_rows) and writes one JSON object
 *   per line. Import reads a line at a time into a batch of at most --batch
 *   records and hands each batch to the store as one transaction
 *   (store.h, import), whose merge rules make a second run change nothing and
 *   keep like_cnt/collect_cnt equal to the active rows while tallyd serves:
 *   the counts of every item a batch touches are recounted from its rows in
 *   that same transaction, never added to.
 *
 *   The course schema (--from mysql://...) is read by course.c in the same
 *   record shape; its likes and collections go first and its items last, so
 *   each item's counts after the import (= its rows) can be compared with the
 *   counters the course kept, which drift.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/course.h"
#include "ctl/ctl.h"
#include "model/record.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/strbuf.h"
#include "util/url.h"
#include "util/xmalloc.h"
#include "util/banned.h"

#define BATCH_DEFAULT 1000
#define BATCH_MAX     10000
#define LINE_MAX_LEN  65536

static const char *const type_names[RECORD_TYPE_COUNT] = {"item", "like", "collection"};

const char ctl_usage_export[] =
    "usage: tallyctl export --store URL [--format jsonl] [FILE|-]\n"
    "\n"
    "Writes every item, like and collection of the store to FILE (default: stdout),\n"
    "one JSON object per line, from one snapshot, in constant memory:\n"
    "  {\"type\":\"item\",\"biz\":\"article\",\"id\":1,\"read_cnt\":9,\"like_cnt\":2,"
    "\"collect_cnt\":1,\"ctime\":MS,\"utime\":MS}\n"
    "  {\"type\":\"like\",\"uid\":5,\"biz\":\"article\",\"id\":1,\"status\":1,\"ctime\":MS,"
    "\"utime\":MS}\n"
    "  {\"type\":\"collection\",\"uid\":5,\"cid\":3,\"biz\":\"article\",\"id\":1,\"status\":1,"
    "\"ctime\":MS,\"utime\":MS}\n"
    "status 0 is a like or collection that was withdrawn. Read offsets and dead letters\n"
    "are not exported. The summary line goes to stderr. Exit status: 0 done, 1 failed,\n"
    "2 usage.\n";

const char ctl_usage_import[] =
    "usage: tallyctl import --store URL [--batch N] --format jsonl FILE|-\n"
    "       tallyctl import --store URL [--batch N] --from mysql://USER:PASS@HOST:PORT/DB\n"
    "                                           [?ssl=1&ssl_ca=PATH]\n"
    "\n"
    "Merges records into the store, N per transaction (default 1000, at most 10000).\n"
    "--format jsonl reads what `tallyctl export` writes (unknown fields are ignored).\n"
    "--from reads the course design's tables interactives, user_like_bizs and\n"
    "user_collection_bizs (with or without a status column) and prints each item whose\n"
    "like_cnt/collect_cnt there differ from its rows. It takes any URL tallyd's --store\n"
    "takes for MariaDB: a percent-encoded password, ssl=1 for TLS, ssl_ca to check the\n"
    "server's certificate. A URL may be given as @PATH, a file holding it.\n"
    "\n"
    "Rules, which make a second run change nothing and let tallyd serve meanwhile:\n"
    "  - a like or collection is added, or replaces the stored one if its utime is newer;\n"
    "  - an item's read_cnt becomes the larger of the store's and the imported value\n"
    "    (reads counted by tallyd before the import are not added to it), ctime the\n"
    "    earlier, utime the later;\n"
    "  - like_cnt and collect_cnt are never taken from the input: they are recounted\n"
    "    from the active rows of every item a batch touches, in the same transaction.\n"
    "Exit status: 0 done, 1 failed (batches committed before stay; run it again),\n"
    "2 usage.\n";

/* ------------------------------------------------------------ export */

struct export_state {
    FILE *out;
    struct ctl_progress progress;
    int64_t n[RECORD_TYPE_COUNT];
    const char *bad; /* why emit stopped, for the error line */
};

static int emit_line(void *arg, const struct record *r)
{
    struct export_state *e = arg;
    char biz[ITEM_BIZ_MAX + 1];
    int64_t total;

    /* What is printed unquoted must be a valid biz: one that is not is refused. */
    if (item_parse_biz(r->item.biz, strlen(r->item.biz), biz)) {
        e->bad = "a row's biz is not a valid biz";
        return -1;
    }
    fprintf(e->out, "{\"type\":\"%s\"", type_names[r->type]);
    if (r->type != RECORD_ITEM)
        fprintf(e->out, ",\"uid\":%lld", (long long)r->uid);
    if (r->type == RECORD_COLLECTION)
        fprintf(e->out, ",\"cid\":%lld", (long long)r->cid);
    fprintf(e->out, ",\"biz\":\"%s\",\"id\":%lld", biz, (long long)r->item.id);
    if (r->type == RECORD_ITEM)
        fprintf(e->out, ",\"read_cnt\":%lld,\"like_cnt\":%lld,\"collect_cnt\":%lld",
                (long long)r->counts.read_cnt, (long long)r->counts.like_cnt,
                (long long)r->counts.collect_cnt);
    else
        fprintf(e->out, ",\"status\":%d", r->status);
    fprintf(e->out, ",\"ctime\":%lld,\"utime\":%lld}\n", (long long)r->ctime,
            (long long)r->utime);
    if (ferror(e->out)) {
        e->bad = "write failed";
        return -1;
    }
    e->n[r->type]++;
    total = e->n[0] + e->n[1] + e->n[2];
    ctl_progress(&e->progress, "export: %lld records", (long long)total);
    return 0;
}

static const struct option store_opts[] = {
    {"store", required_argument, NULL, 's'}, {"format", required_argument, NULL, 'f'},
    {"from", required_argument, NULL, 'F'},  {"batch", required_argument, NULL, 'b'},
    {NULL, 0, NULL, 0}};

/* getopt_long with tallyctl's one-line usage errors. */
static int parse_opts(const char *cmd, int argc, char **argv, const char **store,
                      const char **format, const char **from, int64_t *batch)
{
    int c;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", store_opts, NULL)) != -1) {
        switch (c) {
        case 's': *store = optarg; break;
        case 'f': *format = optarg; break;
        case 'F':
            if (!from)
                return ctl_usage(cmd, "unknown option --from (see tallyctl %s --help)", cmd);
            *from = optarg;
            break;
        case 'b':
            if (!batch)
                return ctl_usage(cmd, "unknown option --batch (see tallyctl %s --help)", cmd);
            if (!ctl_parse_count(optarg, BATCH_MAX, batch))
                return ctl_usage(cmd, "--batch must be an integer in 1..%d", BATCH_MAX);
            break;
        case ':':
            return ctl_usage(cmd, "%s needs a value (see tallyctl %s --help)", argv[optind - 1],
                             cmd);
        default:
            return ctl_usage(cmd, "unknown option %s (see tallyctl %s --help)",
                             argv[optind - 1], cmd);
        }
    }
    if (!*store)
        return ctl_usage(cmd, "--store URL is required (see tallyctl %s --help)", cmd);
    if (*format && strcmp(*format, "jsonl") != 0)
        return ctl_usage(cmd, "unknown --format '%s': the format is jsonl", *format);
    return 0;
}

int ctl_cmd_export(int argc, char **argv)
{
    const char *url = NULL, *format = NULL, *path = "-";
    struct export_state e = {.out = stdout};
    struct url su = {0};
    struct store *s = NULL;
    int rc;

    if ((rc = parse_opts("export", argc, argv, &url, &format, NULL, NULL)))
        return rc;
    if (argc - optind > 1)
        return ctl_usage("export", "one FILE at most (see tallyctl export --help)");
    if (optind < argc)
        path = argv[optind];
    if ((rc = ctl_parse_url("export", "--store", url, store_check, &su)) ||
        (rc = ctl_open_store("export", &su, true, &s)))
        goto out;
    if (strcmp(path, "-") != 0 && !(e.out = fopen(path, "w"))) {
        rc = ctl_fail("export", "cannot write %s", path);
        goto out;
    }
    ctl_progress_init(&e.progress);
    rc = store_export(s, emit_line, &e);
    ctl_progress_done(&e.progress);
    if (fflush(e.out) != 0 && !rc) {
        e.bad = "write failed";
        rc = -1;
    }
    if (rc) {
        rc = ctl_fail("export", "%s", e.bad ? e.bad : "the store failed; nothing is complete");
        goto out;
    }
    fprintf(stderr, "exported %lld items, %lld likes, %lld collections\n", (long long)e.n[0],
            (long long)e.n[1], (long long)e.n[2]);
out:
    if (e.out && e.out != stdout && fclose(e.out) != 0 && rc == 0)
        rc = ctl_fail("export", "cannot write %s", path);
    store_free(s);
    url_release(&su);
    return rc;
}

/* ------------------------------------------------------------ import */

struct import_state {
    struct store *s;
    struct record *batch;
    struct counts *after;
    size_t n, cap;
    int64_t total[RECORD_TYPE_COUNT], changed, txns;
    struct ctl_progress progress;
    /* --from: drift between the course's counters and the rows */
    int64_t drift_items, drift_like, drift_collect;
    struct course_item *course; /* the course's counters of the items in batch */
};

static int flush_batch(struct import_state *st)
{
    size_t changed = 0;
    int rc;

    if (st->n == 0)
        return 0;
    rc = store_import(st->s, st->batch, st->n, clock_now_ms(), &changed, st->after);
    if (rc)
        return rc;
    st->changed += (int64_t)changed;
    st->txns++;
    for (size_t i = 0; i < st->n; i++)
        st->total[st->batch[i].type]++;
    ctl_progress(&st->progress, "import: %lld records, %lld changed",
                 (long long)(st->total[0] + st->total[1] + st->total[2]), (long long)st->changed);
    return 0;
}

static bool get_i64(json_t *o, const char *key, bool required, int64_t min, int64_t *out)
{
    json_t *v = json_object_get(o, key);

    if (!v)
        return !required;
    if (!json_is_integer(v) || json_integer_value(v) < min)
        return false;
    *out = json_integer_value(v);
    return true;
}

/* One JSONL line into r; NULL, or why it is not a record. */
static const char *parse_record(const char *line, size_t len, struct record *r)
{
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
    const char *why = NULL, *type, *biz;
    int64_t status = 1;

    memset(r, 0, sizeof(*r));
    if (!o || !json_is_object(o)) {
        why = "not a JSON object";
        goto out;
    }
    type = json_string_value(json_object_get(o, "type"));
    for (r->type = 0; type && r->type < RECORD_TYPE_COUNT; r->type++)
        if (strcmp(type, type_names[r->type]) == 0)
            break;
    if (!type || r->type == RECORD_TYPE_COUNT) {
        why = "\"type\" must be \"item\", \"like\" or \"collection\"";
        goto out;
    }
    biz = json_string_value(json_object_get(o, "biz"));
    if (!biz || item_parse_biz(biz, strlen(biz), r->item.biz)) {
        why = "\"biz\" must match ^[a-z][a-z0-9_]{0,31}$";
        goto out;
    }
    if (!get_i64(o, "id", true, 1, &r->item.id)) {
        why = "\"id\" must be an integer in 1..2^63-1";
        goto out;
    }
    if (!get_i64(o, "ctime", true, 0, &r->ctime) || !get_i64(o, "utime", true, 0, &r->utime)) {
        why = "\"ctime\" and \"utime\" must be integers >= 0 (ms since the epoch)";
        goto out;
    }
    if (r->type == RECORD_ITEM) {
        if (!get_i64(o, "read_cnt", false, 0, &r->counts.read_cnt))
            why = "\"read_cnt\" must be an integer >= 0";
        goto out;
    }
    if (!get_i64(o, "uid", true, 1, &r->uid) ||
        (r->type == RECORD_COLLECTION && !get_i64(o, "cid", true, 1, &r->cid))) {
        why = r->type == RECORD_LIKE ? "\"uid\" must be an integer in 1..2^63-1"
                                     : "\"uid\" and \"cid\" must be integers in 1..2^63-1";
        goto out;
    }
    if (!get_i64(o, "status", false, 0, &status) || status > 1)
        why = "\"status\" must be 0 or 1";
    r->status = (int)status;
out:
    json_decref(o);
    return why;
}

static int import_jsonl(struct import_state *st, const char *path)
{
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t lineno = 0;
    int rc = 0;

    if (!in)
        return ctl_fail("import", "cannot read %s", path);
    while (rc == 0 && (len = getline(&line, &cap, in)) >= 0) {
        const char *why;

        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        if (len > LINE_MAX_LEN) {
            rc = ctl_fail("import", "%s:%lld: line longer than %d bytes", path,
                          (long long)lineno, LINE_MAX_LEN);
            break;
        }
        if ((why = parse_record(line, (size_t)len, &st->batch[st->n]))) {
            rc = ctl_fail("import", "%s:%lld: %s", path, (long long)lineno, why);
            break;
        }
        if (++st->n == st->cap) {
            if (flush_batch(st))
                rc = ctl_fail("import", "the store failed at line %lld", (long long)lineno);
            st->n = 0;
        }
    }
    if (rc == 0 && ferror(in))
        rc = ctl_fail("import", "cannot read %s", path);
    if (rc == 0 && flush_batch(st))
        rc = ctl_fail("import", "the store failed at line %lld", (long long)lineno);
    free(line);
    if (in != stdin)
        fclose(in);
    return rc;
}

/* After a batch of the course's items: their counts now (= their rows) against the course's. */
static void report_drift(struct import_state *st)
{
    for (size_t i = 0; i < st->n; i++) {
        const struct course_item *ci = &st->course[i];
        const struct counts *now = &st->after[i];
        int64_t dl = ci->like_cnt - now->like_cnt, dc = ci->collect_cnt - now->collect_cnt;

        if (dl == 0 && dc == 0)
            continue;
        st->drift_items++;
        st->drift_like += dl < 0 ? -dl : dl;
        st->drift_collect += dc < 0 ? -dc : dc;
        printf("drift %s %lld: like_cnt %lld in the course, %lld rows; collect_cnt %lld in the"
               " course, %lld rows\n",
               st->batch[i].item.biz, (long long)st->batch[i].item.id, (long long)ci->like_cnt,
               (long long)now->like_cnt, (long long)ci->collect_cnt,
               (long long)now->collect_cnt);
    }
}

static int import_course(struct import_state *st, const struct url *from)
{
    static const enum record_type order[] = {RECORD_LIKE, RECORD_COLLECTION, RECORD_ITEM};
    struct course *c = NULL;
    char *err = NULL;
    int rc = 0;

    if ((rc = course_open(from, &c, &err))) {
        rc = ctl_fail("import", "%s", err);
        free(err);
        return rc;
    }
    st->course = xcalloc(st->cap, sizeof(*st->course));
    for (size_t k = 0; k < sizeof(order) / sizeof(order[0]) && rc == 0; k++) {
        int64_t after = 0;

        do {
            if (course_page(c, order[k], &after, st->batch, st->course, st->cap, &st->n, &err)) {
                rc = ctl_fail("import", "%s", err);
                free(err);
                break;
            }
            if (flush_batch(st)) {
                rc = ctl_fail("import", "the store failed; %lld batches were committed",
                              (long long)st->txns);
                break;
            }
            if (order[k] == RECORD_ITEM)
                report_drift(st);
        } while (st->n == st->cap);
        st->n = 0;
    }
    if (rc == 0 && course_skipped(c))
        fprintf(stderr, "tallyctl import: skipped %lld course rows whose biz or ids tally cannot"
                        " hold (biz ^[a-z][a-z0-9_]{0,31}$, ids 1..2^63-1)\n",
                (long long)course_skipped(c));
    free(st->course);
    course_close(c);
    return rc;
}

int ctl_cmd_import(int argc, char **argv)
{
    const char *url = NULL, *format = NULL, *from = NULL;
    int64_t batch = BATCH_DEFAULT;
    struct import_state st = {0};
    struct url su = {0}, fu = {0};
    int rc;

    if ((rc = parse_opts("import", argc, argv, &url, &format, &from, &batch)))
        return rc;
    if (!format == !from)
        return ctl_usage("import", "give --format jsonl FILE or --from mysql://... (see tallyctl"
                                   " import --help)");
    if (format && argc - optind != 1)
        return ctl_usage("import", "--format jsonl reads one FILE, or - for stdin");
    if (from && argc - optind != 0)
        return ctl_usage("import", "--from takes no FILE");
    if ((rc = ctl_parse_url("import", "--store", url, store_check, &su)) ||
        (from && (rc = ctl_parse_url("import", "--from", from, course_check, &fu))) ||
        (rc = ctl_open_store("import", &su, false, &st.s)))
        goto out;
    st.cap = (size_t)batch;
    st.batch = xcalloc(st.cap, sizeof(*st.batch));
    st.after = xcalloc(st.cap, sizeof(*st.after));
    ctl_progress_init(&st.progress);
    rc = format ? import_jsonl(&st, argv[optind]) : import_course(&st, &fu);
    ctl_progress_done(&st.progress);
    printf("imported %lld items, %lld likes, %lld collections in %lld transactions: %lld rows"
           " changed",
           (long long)st.total[RECORD_ITEM], (long long)st.total[RECORD_LIKE],
           (long long)st.total[RECORD_COLLECTION], (long long)st.txns, (long long)st.changed);
    if (from)
        printf("; %lld items drifted in the course: like_cnt off by %lld, collect_cnt off by"
               " %lld in total",
               (long long)st.drift_items, (long long)st.drift_like, (long long)st.drift_collect);
    printf("%s\n", rc ? " (stopped by the error above)" : "");
    free(st.batch);
    free(st.after);
    store_free(st.s);
out:
    url_release(&su);
    url_release(&fu);
    return rc;
}
