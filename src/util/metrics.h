/*
 * metrics.h - process-wide counters, gauges and histograms for /metrics.
 *
 * DESIGN: a metric is found or created once by (name, labels) under a lock
 * and the caller keeps the pointer; updating it afterwards is one atomic
 * operation, so hot paths never lock. Metrics live until metrics_release()
 * at exit. metrics_render() writes the Prometheus text format (0.0.4),
 * keeping every series of one name together under one HELP/TYPE header.
 * Any thread may use any function here.
 */
#ifndef TALLY_METRICS_H
#define TALLY_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "util/strbuf.h"

struct metric;

/* labels is the inside of the braces, e.g. `route="get_item",status="200"`, or "". */
struct metric *metrics_counter(const char *name, const char *help, const char *labels);
struct metric *metrics_gauge(const char *name, const char *help, const char *labels);
/* bounds: ascending upper bounds, copied; +Inf is implied. */
struct metric *metrics_histogram(const char *name, const char *help, const char *labels,
                                 const double *bounds, size_t nbounds);

void metric_add(struct metric *m, uint64_t n);
void metric_set(struct metric *m, int64_t v);
void metric_observe(struct metric *m, double v);
/* Keeps a counter's or gauge's value in 1/divisor units, rendered as a fraction (call once,
 * right after creating it): e.g. CPU time in microseconds shown in seconds. */
void metric_set_divisor(struct metric *m, int64_t divisor);
/* Current value of a counter or gauge (for tests and for the consumer's lag). */
int64_t metric_value(const struct metric *m);

void metrics_render(struct strbuf *out);
void metrics_release(void);

#endif
