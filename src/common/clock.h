/* Time for deadlines: monotonic seconds, and what poll() should wait for one. */
#ifndef FOEHN_COMMON_CLOCK_H
#define FOEHN_COMMON_CLOCK_H

/* Seconds on the monotonic clock (immune to wall-clock jumps). */
double foehn_now(void);

/* Milliseconds from now until deadline for poll(): rounded up, so that poll
 * never wakes before the deadline; 0 when it has passed; capped to fit an int. */
int foehn_ms_until(double deadline);

#endif
