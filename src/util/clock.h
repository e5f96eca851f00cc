/*
 * clock.h - the two clocks tally reads.
 */
#ifndef TALLY_CLOCK_H
#define TALLY_CLOCK_H

#include <stdint.h>
#include <time.h>

/*
 * Test only: added to the wall clock, so that the end-to-end tests can put likes,
 * reads and window upkeep in hours of their choosing. tallyd sets it once at start,
 * before any thread, from CLOCK_TEST_ENV, which config.c takes only together with
 * the flag --test-clock (and tallyd then says so in a WARN line); 0 otherwise.
 */
#define CLOCK_TEST_ENV "TALLY_TEST_CLOCK_OFFSET_MS"
extern int64_t clock_offset_ms;

/* Wall clock, milliseconds since the epoch: what the store records. */
static inline int64_t clock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + clock_offset_ms;
}

/* Monotonic clock, microseconds: for deadlines and latencies. */
static inline int64_t clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

#endif
