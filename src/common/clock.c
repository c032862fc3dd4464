#include "common/clock.h"

#include <time.h>

double foehn_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int foehn_ms_until(double deadline)
{
    double left = deadline - foehn_now();
    if (left <= 0)
        return 0;
    double ms = left * 1000.0 + 1.0;
    return ms > 1e9 ? 1000000000 : (int)ms;
}
