/*
 * process.h - the process_* metrics every Prometheus client exports, and tally_build_info.
 *
 * Read from /proc/self when /metrics is scraped, not sampled in the background.
 */
#ifndef TALLY_PROCESS_H
#define TALLY_PROCESS_H

/* Registers the metrics; version and commit label tally_build_info. Once, at start. */
void process_metrics_init(const char *version, const char *commit);
/* Refreshes resident memory, CPU time and open descriptors; nothing before init. Any thread. */
void process_metrics_update(void);

#endif
