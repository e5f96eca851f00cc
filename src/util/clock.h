/*
 * clock.h - the two clocks tally reads.
 */
#ifndef TALLY_CLOCK_H
#define TALLY_CLOCK_H

#include <stdint.h>
#include <time.h>

/*
 * Test only: added to the wall clock, so that the end-to-end tests can put likes,
 * reads and window upkeep in hours of their choosing. Set once at start, from
 * TALLY_TEST_CLOCK_OFFSET_MS (clock_init_from_env), before any thread; 0 otherwise.
 */
extern int64_t clock_offset_ms;
void clock_init_from_env(void);

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
