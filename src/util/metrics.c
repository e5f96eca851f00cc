/*
 * metrics.c - see metrics.h.
 */
#include "util/metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/xmalloc.h"
#include "util/banned.h"

enum metric_kind { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct metric {
    enum metric_kind kind;
    char *name;
    char *help;
    char *labels;
    _Atomic int64_t value;     /* counter or gauge; histogram: observation count */
    _Atomic uint64_t sum_bits; /* histogram: the sum, a double kept as its bits */
    double *bounds;            /* histogram: nbounds upper bounds */
    _Atomic uint64_t *buckets; /* histogram: nbounds + 1 (non-cumulative) counts */
    size_t nbounds;
    int64_t divisor; /* counter or gauge: value is kept in 1/divisor units (0: whole) */
    struct metric *next;
};

/* The registry: a list kept grouped by name. Guarded by lock; entries are immutable
 * once published except for their atomic fields. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct metric *head;

static struct metric *find_or_add(enum metric_kind kind, const char *name, const char *help,
                                  const char *labels, const double *bounds, size_t nbounds)
{
    struct metric *m, *last_same = NULL, **link = &head;

    pthread_mutex_lock(&lock);
    for (m = head; m; m = m->next) {
        if (strcmp(m->name, name) == 0) {
            if (strcmp(m->labels, labels) == 0)
                goto out;
            last_same = m;
        }
        link = &m->next;
    }
    m = xcalloc(1, sizeof(*m));
    m->kind = kind;
    m->name = xstrdup(name);
    m->help = xstrdup(help);
    m->labels = xstrdup(labels);
    if (kind == METRIC_HISTOGRAM) {
        m->nbounds = nbounds;
        m->bounds = xmalloc(nbounds * sizeof(double));
        memcpy(m->bounds, bounds, nbounds * sizeof(double));
        m->buckets = xcalloc(nbounds + 1, sizeof(*m->buckets));
    }
    if (last_same) {
        m->next = last_same->next;
        last_same->next = m;
    } else {
        *link = m;
    }
out:
    pthread_mutex_unlock(&lock);
    TALLY_ASSERT(m->kind == kind);
    return m;
}

struct metric *metrics_counter(const char *name, const char *help, const char *labels)
{
    return find_or_add(METRIC_COUNTER, name, help, labels, NULL, 0);
}

struct metric *metrics_gauge(const char *name, const char *help, const char *labels)
{
    return find_or_add(METRIC_GAUGE, name, help, labels, NULL, 0);
}

struct metric *metrics_histogram(const char *name, const char *help, const char *labels,
                                 const double *bounds, size_t nbounds)
{
    return find_or_add(METRIC_HISTOGRAM, name, help, labels, bounds, nbounds);
}

void metric_add(struct metric *m, uint64_t n)
{
    atomic_fetch_add_explicit(&m->value, (int64_t)n, memory_order_relaxed);
}

void metric_set(struct metric *m, int64_t v)
{
    atomic_store_explicit(&m->value, v, memory_order_relaxed);
}

void metric_set_divisor(struct metric *m, int64_t divisor)
{
    m->divisor = divisor;
}

int64_t metric_value(const struct metric *m)
{
    return atomic_load_explicit(&m->value, memory_order_relaxed);
}

void metric_observe(struct metric *m, double v)
{
    size_t i = 0;
    uint64_t old, upd;
    double sum;

    while (i < m->nbounds && v > m->bounds[i])
        i++;
    atomic_fetch_add_explicit(&m->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->value, 1, memory_order_relaxed);
    old = atomic_load_explicit(&m->sum_bits, memory_order_relaxed);
    do {
        memcpy(&sum, &old, sizeof(sum));
        sum += v;
        memcpy(&upd, &sum, sizeof(upd));
    } while (!atomic_compare_exchange_weak_explicit(&m->sum_bits, &old, upd, memory_order_relaxed,
                                                    memory_order_relaxed));
}

static void render_series(struct strbuf *out, const char *name, const char *suffix,
                          const char *labels, const char *extra)
{
    strbuf_addstr(out, name);
    strbuf_addstr(out, suffix);
    if (*labels || *extra) {
        strbuf_addch(out, '{');
        strbuf_addstr(out, labels);
        if (*labels && *extra)
            strbuf_addch(out, ',');
        strbuf_addstr(out, extra);
        strbuf_addch(out, '}');
    }
    strbuf_addch(out, ' ');
}

static void render_histogram(struct strbuf *out, struct metric *m)
{
    uint64_t cum = 0, bits;
    double sum;
    char le[64];

    for (size_t i = 0; i <= m->nbounds; i++) {
        cum += atomic_load_explicit(&m->buckets[i], memory_order_relaxed);
        if (i < m->nbounds)
            snprintf(le, sizeof(le), "le=\"%g\"", m->bounds[i]);
        else
            snprintf(le, sizeof(le), "le=\"+Inf\"");
        render_series(out, m->name, "_bucket", m->labels, le);
        strbuf_addf(out, "%llu\n", (unsigned long long)cum);
    }
    bits = atomic_load_explicit(&m->sum_bits, memory_order_relaxed);
    memcpy(&sum, &bits, sizeof(sum));
    render_series(out, m->name, "_sum", m->labels, "");
    strbuf_addf(out, "%.9g\n", sum);
    render_series(out, m->name, "_count", m->labels, "");
    strbuf_addf(out, "%llu\n", (unsigned long long)cum);
}

void metrics_render(struct strbuf *out)
{
    static const char *types[] = {"counter", "gauge", "histogram"};
    const char *prev = "";

    pthread_mutex_lock(&lock);
    for (struct metric *m = head; m; m = m->next) {
        if (strcmp(prev, m->name) != 0) {
            strbuf_addf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
                        types[m->kind]);
            prev = m->name;
        }
        if (m->kind == METRIC_HISTOGRAM) {
            render_histogram(out, m);
        } else {
            render_series(out, m->name, "", m->labels, "");
            if (m->divisor > 1)
                strbuf_addf(out, "%.6f", (double)metric_value(m) / (double)m->divisor);
            else
                strbuf_add_i64(out, metric_value(m));
            strbuf_addch(out, '\n');
        }
    }
    pthread_mutex_unlock(&lock);
}

void metrics_release(void)
{
    pthread_mutex_lock(&lock);
    while (head) {
        struct metric *m = head;
        head = m->next;
        free(m->name);
        free(m->help);
        free(m->labels);
        free(m->bounds);
        free((void *)m->buckets);
        free(m);
    }
    pthread_mutex_unlock(&lock);
}
