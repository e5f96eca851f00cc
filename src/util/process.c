/*
 * process.c - see process.h.
 */
#include "util/process.h"

#include <dirent.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util/metrics.h"
#include "util/strbuf.h"
#include "util/banned.h"

static struct metric *m_rss, *m_cpu, *m_fds;

void process_metrics_init(const char *version, const char *commit)
{
    struct strbuf labels = STRBUF_INIT;
    struct timespec now;

    m_rss = metrics_gauge("process_resident_memory_bytes", "Resident memory size in bytes.", "");
    m_cpu = metrics_counter("process_cpu_seconds_total",
                            "Total user and system CPU time spent in seconds.", "");
    metric_set_divisor(m_cpu, 1000000);
    m_fds = metrics_gauge("process_open_fds", "Number of open file descriptors.", "");
    clock_gettime(CLOCK_REALTIME, &now);
    metric_set(metrics_gauge("process_start_time_seconds",
                             "Start time of the process since the epoch in seconds.", ""),
               (int64_t)now.tv_sec);
    strbuf_addstr(&labels, "version=");
    strbuf_add_json_string(&labels, version);
    strbuf_addstr(&labels, ",commit=");
    strbuf_add_json_string(&labels, commit);
    metric_set(metrics_gauge("tally_build_info", "The running build: version and commit.",
                             labels.buf),
               1);
    strbuf_release(&labels);
    process_metrics_update();
}

void process_metrics_update(void)
{
    struct rusage ru;
    long pages = 0, rss = 0;
    FILE *f;
    DIR *d;

    if (!m_rss)
        return; /* not registered: a program without process metrics */
    if ((f = fopen("/proc/self/statm", "r"))) {
        if (fscanf(f, "%ld %ld", &pages, &rss) == 2)
            metric_set(m_rss, (int64_t)rss * sysconf(_SC_PAGESIZE));
        fclose(f);
    }
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        metric_set(m_cpu, ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
                              ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    if ((d = opendir("/proc/self/fd"))) {
        int64_t n = -1; /* not counting the descriptor of d itself */
        for (struct dirent *e; (e = readdir(d));)
            if (e->d_name[0] != '.')
                n++;
        closedir(d);
        metric_set(m_fds, n);
    }
}
