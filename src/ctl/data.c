/*
 * data.c - tallyctl export and import: moving a store's state in and out of
 * it: items, likes and collections, and everything trending windows and the
 * read consumer keep beside them.
 *
 * DESIGN
 *   Streams, in constant memory. Export walks each table in key order in
 *   pages from one snapshot (store.h, export_rows) and writes one JSON object
 *   per line. Import reads a line at a time into a batch of at most --batch
 *   records and hands each batch to the store as one transaction
 *   (store.h, import), whose merge rules make a second run change nothing and
 *   keep derived state consistent while tallyd serves: the counts of every
 *   item a batch touches are recounted from its rows in that same
 *   transaction, never added to, and each window stays the sum of the hourly
 *   rows it holds.
 *
 *   Every table that holds state is exported, so an import into an empty
 *   store gives back the same rows (tests/e2e/test_tallyctl.py compares every
 *   table the schema has). That includes the read offsets: the counts were
 *   taken up to exactly those positions in the Kafka topic, and a store
 *   without them would read the topic again from its start and count it twice.
 *   A stored offset is never moved, and --no-offsets leaves them out for a
 *   store that will read another topic's history (where they would skip
 *   events).
 *
 *   The file is read twice: once to check every line, then to import, so that
 *   bad input changes nothing (stdin is copied to a temporary file on the
 *   first pass). One check (check_record) serves both sides: export refuses to
 *   write a row that import would refuse.
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
#define HOUR_MAX      (INT64_MAX / HOUR_MS) /* an hour whose start in ms still fits */

static const char *const type_names[RECORD_TYPE_COUNT] = {
    "item", "like", "collection", "mark", "hour", "window", "memo", "dead_letter", "offset"};
/* The summary's words for each type, in the same order. */
static const char *const type_nouns[RECORD_TYPE_COUNT] = {
    "items", "likes", "collections", "marks", "hourly rows", "window rows", "memos",
    "dead letters", "offsets"};
static const char *const memo_names[MEMO_COUNT] = {"idem", "seen"};

const char ctl_usage_export[] =
    "usage: tallyctl export --store URL [--format jsonl] [FILE|-]\n"
    "\n"
    "Writes every table of the store that holds state to FILE (default: stdout), one\n"
    "JSON object per line, from one snapshot, in constant memory, so that an import into\n"
    "an empty store gives back the same rows in every table. Items, likes, collections:\n"
    "  {\"type\":\"item\",\"biz\":\"article\",\"id\":1,\"read_cnt\":9,\"like_cnt\":2,"
    "\"collect_cnt\":1,\"ctime\":MS,\"utime\":MS}\n"
    "  {\"type\":\"like\",\"uid\":5,\"biz\":\"article\",\"id\":1,\"status\":1,\"ctime\":MS,"
    "\"utime\":MS}\n"
    "  {\"type\":\"collection\",\"uid\":5,\"cid\":3,\"biz\":\"article\",\"id\":1,\"status\":1,"
    "\"ctime\":MS,\"utime\":MS}\n"
    "then trending windows (the first hour each window holds, hourly counts, the\n"
    "windows' sums), the read consumer's memory (per Idempotency-Key and per reader and\n"
    "item), the read events refused for good, and the read offsets:\n"
    "  {\"type\":\"mark\",\"window\":\"24h\",\"hour\":H}\n"
    "  {\"type\":\"hour\",\"biz\":\"article\",\"id\":1,\"hour\":H,\"read_cnt\":4,\"like_cnt\":1,"
    "\"collect_cnt\":0}\n"
    "  {\"type\":\"window\",\"biz\":\"article\",\"id\":1,\"window\":\"24h\",\"read_cnt\":4,"
    "\"like_cnt\":1,\"collect_cnt\":0}\n"
    "  {\"type\":\"memo\",\"memo\":\"idem\",\"key\":K,\"ms\":MS}      (\"seen\": a reader's read)\n"
    "  {\"type\":\"dead_letter\",\"biz\":\"article\",\"id\":1,\"uid\":0,\"ts\":MS,\"topic\":null,"
    "\"partition\":null,\"offset\":null,\"error\":\"...\",\"ctime\":MS,\"n\":1}\n"
    "  {\"type\":\"offset\",\"topic\":\"reads\",\"partition\":0,\"next\":N,\"utime\":MS,"
    "\"event_ms\":MS}\n"
    "status 0 is a like or collection that was withdrawn; H counts hours since\n"
    "1970-01-01 UTC; n is how many identical dead letters the line stands for. The\n"
    "offsets are where the counts stand in the Kafka topic that fed the store; see\n"
    "`tallyctl import --help` (--no-offsets). The summary line goes to stderr. Exit\n"
    "status: 0 done, 1 failed, 2 usage.\n";

const char ctl_usage_import[] =
    "usage: tallyctl import --store URL [--batch N] [--no-offsets] --format jsonl FILE|-\n"
    "       tallyctl import --store URL [--batch N] --from mysql://USER:PASS@HOST:PORT/DB\n"
    "                                           [?ssl=1&ssl_ca=PATH]\n"
    "\n"
    "Merges records into the store, N per transaction (default 1000, at most 10000).\n"
    "--format jsonl reads what `tallyctl export` writes (unknown fields are ignored).\n"
    "Every line is checked before anything is written: a bad one stops the import with\n"
    "FILE:LINE and why, and the store is left as it was (stdin is kept in a temporary\n"
    "file meanwhile).\n"
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
    "    from the active rows of every item a batch touches, in the same transaction;\n"
    "  - a window's mark becomes the later of the two (the hours it passes leave the\n"
    "    window); an hourly row the store lacks is added, one it has takes the larger\n"
    "    of each count; every window holding that hour moves with it, so windows stay\n"
    "    the sum of their hours; a window's own sums are never taken from the input;\n"
    "  - a memo's ms becomes the later of the two;\n"
    "  - a dead letter is added until the store holds n rows identical to it;\n"
    "  - an offset is added where the store has none for that topic and partition; a\n"
    "    stored one is never moved. --no-offsets leaves them all out: use it when the\n"
    "    store will read another Kafka cluster or a recreated topic, whose offsets mean\n"
    "    other messages (taking them would skip events there).\n"
    "Exit status: 0 done, 1 failed (batches committed before stay; run it again),\n"
    "2 usage.\n";

/* ------------------------------------------------------------ records */

static bool printable(const char *s)
{
    for (; *s; s++)
        if (*s < 0x20 || *s > 0x7e)
            return false;
    return true;
}

static int window_of(int hours)
{
    for (int w = 0; w < WINDOW_COUNT; w++)
        if (window_hours[w] == hours)
            return w;
    return -1;
}

/*
 * NULL when r is a record import takes, or why not. Both sides call it: a
 * line that passes can be imported, and export writes no other.
 */
static const char *check_record(const struct record *r)
{
    char biz[ITEM_BIZ_MAX + 1];
    bool has_item = r->type != RECORD_MARK && r->type != RECORD_MEMO && r->type != RECORD_OFFSET;

    if (has_item && item_parse_biz(r->item.biz, strlen(r->item.biz), biz))
        return "\"biz\" must match ^[a-z][a-z0-9_]{0,31}$";
    if (has_item && !item_id_valid(r->item.id))
        return "\"id\" must be an integer in 1..2^63-1";
    switch (r->type) {
    case RECORD_ITEM:
    case RECORD_LIKE:
    case RECORD_COLLECTION:
        if (r->ctime < 0 || r->utime < 0)
            return "\"ctime\" and \"utime\" must be integers >= 0 (ms since the epoch)";
        if (r->type == RECORD_ITEM)
            return r->counts.read_cnt < 0 ? "\"read_cnt\" must be an integer >= 0" : NULL;
        if (!item_id_valid(r->uid) || (r->type == RECORD_COLLECTION && !item_id_valid(r->cid)))
            return r->type == RECORD_LIKE ? "\"uid\" must be an integer in 1..2^63-1"
                                          : "\"uid\" and \"cid\" must be integers in 1..2^63-1";
        return r->status != 0 && r->status != 1 ? "\"status\" must be 0 or 1" : NULL;
    case RECORD_MARK:
    case RECORD_HOUR:
        if (r->hour < 0 || r->hour > HOUR_MAX)
            return "\"hour\" must be an integer in 0..2562047788015 (hours since the epoch)";
        if (r->type == RECORD_MARK)
            return window_of(r->win) < 0 ? "\"window\" must be 1h, 24h, 7d or 30d" : NULL;
        return r->counts.read_cnt < 0 ? "\"read_cnt\" must be an integer >= 0" : NULL;
    case RECORD_WINDOW:
        return window_of(r->win) < 0 ? "\"window\" must be 1h, 24h, 7d or 30d" : NULL;
    case RECORD_MEMO:
        if (r->memo != MEMO_IDEM && r->memo != MEMO_SEEN)
            return "\"memo\" must be \"idem\" or \"seen\"";
        return r->ms < 0 ? "\"ms\" must be an integer >= 0 (ms since the epoch)" : NULL;
    case RECORD_DEAD_LETTER:
        if (r->uid < 0 || r->ts < 0 || r->ctime < 0)
            return "\"uid\", \"ts\" and \"ctime\" must be integers >= 0";
        if ((r->has_partition && r->partition < 0) || (r->has_offset && r->offset < 0))
            return "\"partition\" and \"offset\" must be null or integers >= 0";
        if (r->has_topic && (!*r->topic || !printable(r->topic)))
            return "\"topic\" must be null or 1..255 printable ASCII characters";
        if (!printable(r->error))
            return "\"error\" must be 0..255 printable ASCII characters";
        return r->n < 1 || r->n > RECORD_DEAD_N_MAX ? "\"n\" must be an integer in 1..1000000"
                                                     : NULL;
    case RECORD_OFFSET:
        if (!*r->topic || !printable(r->topic))
            return "\"topic\" must be 1..255 printable ASCII characters";
        if (r->partition < 0 || r->offset < 0 || r->utime < 0 || r->ms < 0)
            return "\"partition\", \"next\", \"utime\" and \"event_ms\" must be integers >= 0";
        return NULL;
    default: return "unknown type";
    }
}

static void add_counts(struct strbuf *sb, const struct counts *c)
{
    strbuf_addf(sb, ",\"read_cnt\":%lld,\"like_cnt\":%lld,\"collect_cnt\":%lld",
                (long long)c->read_cnt, (long long)c->like_cnt, (long long)c->collect_cnt);
}

/* A text, or null. */
static void add_text(struct strbuf *sb, const char *key, bool has, const char *s)
{
    strbuf_addf(sb, ",\"%s\":", key);
    if (has)
        strbuf_add_json_string(sb, s);
    else
        strbuf_addstr(sb, "null");
}

static void add_i64_or_null(struct strbuf *sb, const char *key, bool has, int64_t v)
{
    if (has)
        strbuf_addf(sb, ",\"%s\":%lld", key, (long long)v);
    else
        strbuf_addf(sb, ",\"%s\":null", key);
}

/* r (checked) as one line of JSON, into sb. */
static void format_record(struct strbuf *sb, const struct record *r)
{
    strbuf_addf(sb, "{\"type\":\"%s\"", type_names[r->type]);
    switch (r->type) {
    case RECORD_ITEM:
    case RECORD_LIKE:
    case RECORD_COLLECTION:
        if (r->type != RECORD_ITEM)
            strbuf_addf(sb, ",\"uid\":%lld", (long long)r->uid);
        if (r->type == RECORD_COLLECTION)
            strbuf_addf(sb, ",\"cid\":%lld", (long long)r->cid);
        strbuf_addf(sb, ",\"biz\":\"%s\",\"id\":%lld", r->item.biz, (long long)r->item.id);
        if (r->type == RECORD_ITEM)
            add_counts(sb, &r->counts);
        else
            strbuf_addf(sb, ",\"status\":%d", r->status);
        strbuf_addf(sb, ",\"ctime\":%lld,\"utime\":%lld", (long long)r->ctime,
                    (long long)r->utime);
        break;
    case RECORD_MARK:
        strbuf_addf(sb, ",\"window\":\"%s\",\"hour\":%lld", window_names[window_of(r->win)],
                    (long long)r->hour);
        break;
    case RECORD_HOUR:
    case RECORD_WINDOW:
        strbuf_addf(sb, ",\"biz\":\"%s\",\"id\":%lld", r->item.biz, (long long)r->item.id);
        if (r->type == RECORD_HOUR)
            strbuf_addf(sb, ",\"hour\":%lld", (long long)r->hour);
        else
            strbuf_addf(sb, ",\"window\":\"%s\"", window_names[window_of(r->win)]);
        add_counts(sb, &r->counts);
        break;
    case RECORD_MEMO:
        strbuf_addf(sb, ",\"memo\":\"%s\",\"key\":%lld,\"ms\":%lld", memo_names[r->memo],
                    (long long)r->key, (long long)r->ms);
        break;
    case RECORD_DEAD_LETTER:
        strbuf_addf(sb, ",\"biz\":\"%s\",\"id\":%lld,\"uid\":%lld,\"ts\":%lld", r->item.biz,
                    (long long)r->item.id, (long long)r->uid, (long long)r->ts);
        add_text(sb, "topic", r->has_topic, r->topic);
        add_i64_or_null(sb, "partition", r->has_partition, r->partition);
        add_i64_or_null(sb, "offset", r->has_offset, r->offset);
        add_text(sb, "error", true, r->error);
        strbuf_addf(sb, ",\"ctime\":%lld,\"n\":%lld", (long long)r->ctime, (long long)r->n);
        break;
    case RECORD_OFFSET:
        add_text(sb, "topic", true, r->topic);
        strbuf_addf(sb, ",\"partition\":%d,\"next\":%lld,\"utime\":%lld,\"event_ms\":%lld",
                    (int)r->partition, (long long)r->offset, (long long)r->utime,
                    (long long)r->ms);
        break;
    default: TALLY_ASSERT(!"a record type without a format");
    }
    strbuf_addstr(sb, "}\n");
}

/* ------------------------------------------------------------ export */

struct export_state {
    FILE *out;
    struct ctl_progress progress;
    int64_t n[RECORD_TYPE_COUNT], total;
    struct strbuf line, bad; /* bad: why emit stopped, for the error line */
};

static int emit_line(void *arg, const struct record *r)
{
    struct export_state *e = arg;
    const char *why = check_record(r);

    if (why) {
        strbuf_addf(&e->bad, "a %s row holds what an import would refuse: %s",
                    type_names[r->type], why);
        return -1;
    }
    strbuf_reset(&e->line);
    format_record(&e->line, r);
    if (fwrite(e->line.buf, 1, e->line.len, e->out) != e->line.len || ferror(e->out)) {
        strbuf_addstr(&e->bad, "write failed");
        return -1;
    }
    e->n[r->type]++;
    ctl_progress(&e->progress, "export: %lld records", (long long)++e->total);
    return 0;
}

/* "N items, N likes, ..., N offsets" */
static void add_totals(struct strbuf *sb, const int64_t n[RECORD_TYPE_COUNT])
{
    for (int t = 0; t < RECORD_TYPE_COUNT; t++)
        strbuf_addf(sb, "%s%lld %s", t ? ", " : "", (long long)n[t], type_nouns[t]);
}

static const struct option store_opts[] = {
    {"store", required_argument, NULL, 's'}, {"format", required_argument, NULL, 'f'},
    {"from", required_argument, NULL, 'F'},  {"batch", required_argument, NULL, 'b'},
    {"no-offsets", no_argument, NULL, 'O'},  {NULL, 0, NULL, 0}};

/* The options of one subcommand; NULL members are ones it does not take. */
struct opts {
    const char *store, *format, *from;
    int64_t batch;
    bool no_offsets;
};

/* getopt_long with tallyctl's one-line usage errors. */
static int parse_opts(const char *cmd, int argc, char **argv, bool import, struct opts *o)
{
    int c;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", store_opts, NULL)) != -1) {
        switch (c) {
        case 's': o->store = optarg; break;
        case 'f': o->format = optarg; break;
        case 'F':
        case 'b':
        case 'O':
            if (!import)
                return ctl_usage(cmd, "unknown option %s (see tallyctl %s --help)",
                                 argv[optind - 1], cmd);
            if (c == 'F')
                o->from = optarg;
            else if (c == 'O')
                o->no_offsets = true;
            else if (!ctl_parse_count(optarg, BATCH_MAX, &o->batch))
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
    if (!o->store)
        return ctl_usage(cmd, "--store URL is required (see tallyctl %s --help)", cmd);
    if (o->format && strcmp(o->format, "jsonl") != 0)
        return ctl_usage(cmd, "unknown --format '%s': the format is jsonl", o->format);
    return 0;
}

int ctl_cmd_export(int argc, char **argv)
{
    const char *path = "-";
    struct opts o = {0};
    struct export_state e = {.out = stdout, .line = STRBUF_INIT, .bad = STRBUF_INIT};
    struct strbuf sum = STRBUF_INIT;
    struct url su = {0};
    struct store *s = NULL;
    int rc;

    if ((rc = parse_opts("export", argc, argv, false, &o)))
        return rc;
    if (argc - optind > 1)
        return ctl_usage("export", "one FILE at most (see tallyctl export --help)");
    if (optind < argc)
        path = argv[optind];
    if ((rc = ctl_parse_url("export", "--store", o.store, store_check, &su)) ||
        (rc = ctl_open_store("export", &su, true, &s)))
        goto out;
    if (strcmp(path, "-") != 0 && !(e.out = fopen(path, "w"))) {
        rc = ctl_fail("export", "cannot write %s", path);
        goto out;
    }
    ctl_progress_init(&e.progress);
    /* The transitions likes queued for the windows go into them first (tallyd would within
     * a second): an export holds every like in its hours and windows. */
    for (bool more = true; more && rc == 0;)
        rc = store_apply_transitions(s, &more);
    if (rc == 0)
        rc = store_export(s, emit_line, &e);
    ctl_progress_done(&e.progress);
    if (fflush(e.out) != 0 && !rc) {
        strbuf_addstr(&e.bad, "write failed");
        rc = -1;
    }
    if (rc) {
        rc = ctl_fail("export", "%s", e.bad.len ? e.bad.buf
                                                : "the store failed; nothing is complete");
        goto out;
    }
    add_totals(&sum, e.n);
    fprintf(stderr, "exported %s\n", sum.buf);
out:
    if (e.out && e.out != stdout && fclose(e.out) != 0 && rc == 0)
        rc = ctl_fail("export", "cannot write %s", path);
    strbuf_release(&e.line);
    strbuf_release(&e.bad);
    strbuf_release(&sum);
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
    bool no_offsets;
    int64_t total[RECORD_TYPE_COUNT], left_out, changed, txns, records;
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
    st->records += (int64_t)st->n;
    ctl_progress(&st->progress, "import: %lld records, %lld changed", (long long)st->records,
                 (long long)st->changed);
    return 0;
}

/* An integer member in [min, max]: absent is fine unless required (*out unchanged). */
static bool get_int(json_t *o, const char *key, bool required, int64_t min, int64_t max,
                    int64_t *out)
{
    json_t *v = json_object_get(o, key);

    if (!v)
        return !required;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return false;
    *out = json_integer_value(v);
    return true;
}

/* An integer member that may be null or absent (*has false). */
static bool get_nullable(json_t *o, const char *key, int64_t min, int64_t max, bool *has,
                         int64_t *out)
{
    json_t *v = json_object_get(o, key);

    *has = v && !json_is_null(v);
    return !*has || get_int(o, key, true, min, max, out);
}

/* A text member of up to RECORD_TEXT_MAX bytes into out (checked by check_record);
 * null or absent leaves *has false, and is fine only when nullable. */
static bool get_text(json_t *o, const char *key, bool nullable, bool *has, char *out)
{
    json_t *v = json_object_get(o, key);
    size_t len;

    *has = v && !json_is_null(v);
    if (!*has)
        return nullable;
    if (!json_is_string(v) || (len = json_string_length(v)) > RECORD_TEXT_MAX ||
        memchr(json_string_value(v), '\0', len))
        return false;
    memcpy(out, json_string_value(v), len + 1);
    return true;
}

/* A member naming one of n names (a window, a memo table); its index or -1. */
static int get_name(json_t *o, const char *key, const char *const *names, int n)
{
    const char *v = json_string_value(json_object_get(o, key));

    for (int i = 0; v && i < n; i++)
        if (strcmp(v, names[i]) == 0)
            return i;
    return -1;
}

/* The members of r's type into r; NULL, or why the line is not such a record. */
static const char *parse_members(json_t *o, struct record *r)
{
    const char *biz;
    int64_t v = 1;
    bool has;
    int w;

    if (r->type != RECORD_MARK && r->type != RECORD_MEMO && r->type != RECORD_OFFSET) {
        biz = json_string_value(json_object_get(o, "biz"));
        if (!biz || item_parse_biz(biz, strlen(biz), r->item.biz))
            return "\"biz\" must match ^[a-z][a-z0-9_]{0,31}$";
        if (!get_int(o, "id", true, 1, INT64_MAX, &r->item.id))
            return "\"id\" must be an integer in 1..2^63-1";
    }
    switch (r->type) {
    case RECORD_ITEM:
    case RECORD_LIKE:
    case RECORD_COLLECTION:
        if (!get_int(o, "ctime", true, 0, INT64_MAX, &r->ctime) ||
            !get_int(o, "utime", true, 0, INT64_MAX, &r->utime))
            return "\"ctime\" and \"utime\" must be integers >= 0 (ms since the epoch)";
        if (r->type == RECORD_ITEM) /* like_cnt, collect_cnt: recounted, never read */
            return get_int(o, "read_cnt", false, 0, INT64_MAX, &r->counts.read_cnt)
                       ? NULL
                       : "\"read_cnt\" must be an integer >= 0";
        if (!get_int(o, "uid", true, 1, INT64_MAX, &r->uid) ||
            (r->type == RECORD_COLLECTION && !get_int(o, "cid", true, 1, INT64_MAX, &r->cid)))
            return r->type == RECORD_LIKE ? "\"uid\" must be an integer in 1..2^63-1"
                                          : "\"uid\" and \"cid\" must be integers in 1..2^63-1";
        if (!get_int(o, "status", false, 0, 1, &v))
            return "\"status\" must be 0 or 1";
        r->status = (int)v;
        return NULL;
    case RECORD_MARK:
    case RECORD_WINDOW:
        if ((w = get_name(o, "window", window_names, WINDOW_COUNT)) < 0)
            return "\"window\" must be 1h, 24h, 7d or 30d";
        r->win = window_hours[w];
        if (r->type == RECORD_MARK && !get_int(o, "hour", true, 0, HOUR_MAX, &r->hour))
            return "\"hour\" must be an integer in 0..2562047788015 (hours since the epoch)";
        if (r->type == RECORD_WINDOW && /* checked, never read: windows are their hours' sum */
            (!get_int(o, "read_cnt", false, INT64_MIN, INT64_MAX, &r->counts.read_cnt) ||
             !get_int(o, "like_cnt", false, INT64_MIN, INT64_MAX, &r->counts.like_cnt) ||
             !get_int(o, "collect_cnt", false, INT64_MIN, INT64_MAX, &r->counts.collect_cnt)))
            return "\"read_cnt\", \"like_cnt\" and \"collect_cnt\" must be integers";
        return NULL;
    case RECORD_HOUR:
        if (!get_int(o, "hour", true, 0, HOUR_MAX, &r->hour))
            return "\"hour\" must be an integer in 0..2562047788015 (hours since the epoch)";
        if (!get_int(o, "read_cnt", true, 0, INT64_MAX, &r->counts.read_cnt))
            return "\"read_cnt\" must be an integer >= 0";
        if (!get_int(o, "like_cnt", true, INT64_MIN, INT64_MAX, &r->counts.like_cnt) ||
            !get_int(o, "collect_cnt", true, INT64_MIN, INT64_MAX, &r->counts.collect_cnt))
            return "\"like_cnt\" and \"collect_cnt\" must be integers";
        return NULL;
    case RECORD_MEMO:
        if ((r->memo = get_name(o, "memo", memo_names, MEMO_COUNT)) < 0)
            return "\"memo\" must be \"idem\" or \"seen\"";
        if (!get_int(o, "key", true, INT64_MIN, INT64_MAX, &r->key))
            return "\"key\" must be an integer";
        if (!get_int(o, "ms", true, 0, INT64_MAX, &r->ms))
            return "\"ms\" must be an integer >= 0 (ms since the epoch)";
        return NULL;
    case RECORD_DEAD_LETTER:
        if (!get_int(o, "uid", true, 0, INT64_MAX, &r->uid) ||
            !get_int(o, "ts", true, 0, INT64_MAX, &r->ts) ||
            !get_int(o, "ctime", true, 0, INT64_MAX, &r->ctime))
            return "\"uid\", \"ts\" and \"ctime\" must be integers >= 0";
        if (!get_text(o, "topic", true, &r->has_topic, r->topic))
            return "\"topic\" must be null or 1..255 printable ASCII characters";
        if (!get_nullable(o, "partition", 0, INT32_MAX, &r->has_partition, &v) ||
            !get_nullable(o, "offset", 0, INT64_MAX, &r->has_offset, &r->offset))
            return "\"partition\" and \"offset\" must be null or integers >= 0";
        r->partition = r->has_partition ? (int32_t)v : 0;
        if (!get_text(o, "error", false, &has, r->error))
            return "\"error\" must be 0..255 printable ASCII characters";
        if (!get_int(o, "n", true, 1, RECORD_DEAD_N_MAX, &r->n))
            return "\"n\" must be an integer in 1..1000000";
        return NULL;
    case RECORD_OFFSET:
        if (!get_text(o, "topic", false, &has, r->topic))
            return "\"topic\" must be 1..255 printable ASCII characters";
        if (!get_int(o, "partition", true, 0, INT32_MAX, &v) ||
            !get_int(o, "next", true, 0, INT64_MAX, &r->offset) ||
            !get_int(o, "utime", true, 0, INT64_MAX, &r->utime) ||
            !get_int(o, "event_ms", false, 0, INT64_MAX, &r->ms)) /* absent: 0, as before it */
            return "\"partition\", \"next\", \"utime\" and \"event_ms\" must be integers >= 0";
        r->partition = (int32_t)v;
        r->has_topic = r->has_partition = r->has_offset = true;
        return NULL;
    default: return "unknown type";
    }
}

/* One JSONL line into r; NULL, or why it is not a record. */
static const char *parse_record(const char *line, size_t len, struct record *r)
{
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
    const char *why = NULL, *type;

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
        why = "\"type\" must be one of item, like, collection, mark, hour, window, memo,"
              " dead_letter, offset";
        goto out;
    }
    if (!(why = parse_members(o, r)))
        why = check_record(r);
out:
    json_decref(o);
    return why;
}

/*
 * Reads in's lines, calling take for each record (NULL: only checks them); copies
 * them to spool when given. Returns 0, or 1 after naming the bad line.
 */
static int read_lines(struct import_state *st, FILE *in, const char *path, FILE *spool,
                      int (*take)(struct import_state *st, const struct record *r, int64_t line))
{
    struct record r;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t lineno = 0;
    int rc = 0;

    while (rc == 0 && (len = getline(&line, &cap, in)) >= 0) {
        const char *why;

        lineno++;
        if (spool && fwrite(line, 1, (size_t)len, spool) != (size_t)len) {
            rc = ctl_fail("import", "cannot keep stdin in a temporary file");
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        if (len > LINE_MAX_LEN) {
            rc = ctl_fail("import", "%s:%lld: line longer than %d bytes", path,
                          (long long)lineno, LINE_MAX_LEN);
            break;
        }
        if ((why = parse_record(line, (size_t)len, &r))) {
            rc = ctl_fail("import", "%s:%lld: %s", path, (long long)lineno, why);
            break;
        }
        if (take)
            rc = take(st, &r, lineno);
    }
    if (rc == 0 && ferror(in))
        rc = ctl_fail("import", "cannot read %s", path);
    free(line);
    return rc;
}

static int take_record(struct import_state *st, const struct record *r, int64_t lineno)
{
    if (r->type == RECORD_OFFSET && st->no_offsets) {
        st->left_out++;
        return 0;
    }
    int rc;

    st->batch[st->n] = *r;
    if (++st->n < st->cap)
        return 0;
    rc = flush_batch(st);
    st->n = 0;
    return rc ? ctl_fail("import", "the store failed at line %lld", (long long)lineno) : 0;
}

/* Checks every line first, so that bad input changes nothing; then imports them. */
static int import_jsonl(struct import_state *st, const char *path)
{
    bool is_stdin = strcmp(path, "-") == 0;
    FILE *in = is_stdin ? stdin : fopen(path, "r"), *spool = NULL;
    int rc;

    if (!in)
        return ctl_fail("import", "cannot read %s", path);
    if (is_stdin && !(spool = tmpfile())) {
        rc = ctl_fail("import", "cannot keep stdin in a temporary file");
        goto out;
    }
    if ((rc = read_lines(st, in, path, spool, NULL)))
        goto out;
    if (spool && fflush(spool) != 0) {
        rc = ctl_fail("import", "cannot keep stdin in a temporary file");
        goto out;
    }
    if (fseek(spool ? spool : in, 0, SEEK_SET) != 0) {
        rc = ctl_fail("import", "cannot read %s twice (a file, or - for stdin)", path);
        goto out;
    }
    rc = read_lines(st, spool ? spool : in, path, NULL, take_record);
    if (rc == 0 && flush_batch(st))
        rc = ctl_fail("import", "the store failed at the end of %s", path);
out:
    if (spool)
        fclose(spool);
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
    struct opts o = {.batch = BATCH_DEFAULT};
    struct import_state st = {0};
    struct strbuf sum = STRBUF_INIT;
    struct url su = {0}, fu = {0};
    int rc;

    if ((rc = parse_opts("import", argc, argv, true, &o)))
        return rc;
    if (!o.format == !o.from)
        return ctl_usage("import", "give --format jsonl FILE or --from mysql://... (see tallyctl"
                                   " import --help)");
    if (o.format && argc - optind != 1)
        return ctl_usage("import", "--format jsonl reads one FILE, or - for stdin");
    if (o.from && argc - optind != 0)
        return ctl_usage("import", "--from takes no FILE");
    if (o.from && o.no_offsets)
        return ctl_usage("import", "--no-offsets is for --format jsonl: the course has none");
    if ((rc = ctl_parse_url("import", "--store", o.store, store_check, &su)) ||
        (o.from && (rc = ctl_parse_url("import", "--from", o.from, course_check, &fu))) ||
        (rc = ctl_open_store("import", &su, false, &st.s)))
        goto out;
    st.cap = (size_t)o.batch;
    st.no_offsets = o.no_offsets;
    st.batch = xcalloc(st.cap, sizeof(*st.batch));
    st.after = xcalloc(st.cap, sizeof(*st.after));
    ctl_progress_init(&st.progress);
    rc = o.format ? import_jsonl(&st, argv[optind]) : import_course(&st, &fu);
    ctl_progress_done(&st.progress);
    add_totals(&sum, st.total);
    printf("imported %s in %lld transactions: %lld rows changed", sum.buf, (long long)st.txns,
           (long long)st.changed);
    if (o.no_offsets)
        printf("; %lld offsets left out (--no-offsets)", (long long)st.left_out);
    if (o.from)
        printf("; %lld items drifted in the course: like_cnt off by %lld, collect_cnt off by"
               " %lld in total",
               (long long)st.drift_items, (long long)st.drift_like, (long long)st.drift_collect);
    printf("%s\n", rc ? " (stopped by the error above)" : "");
    free(st.batch);
    free(st.after);
    store_free(st.s);
out:
    strbuf_release(&sum);
    url_release(&su);
    url_release(&fu);
    return rc;
}
