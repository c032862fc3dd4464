/* bootstrap_c: the pure C bootstrap the benchmark times — init the pm layer,
 * publish a ~40-byte endpoint, fence, read every rank's endpoint — one rank of it.
 * Each endpoint carries the moment its rank started (wall clock: one machine), so
 * rank 0 can tell the bootstrap itself (from the last rank's start to having every
 * endpoint) from the launch spread before it (first rank's start to last's).
 * Rank 0 prints {"ranks":N,"provider":...,"bootstrap_s":...,"spread_s":...}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pm/pm.h"

extern char **environ;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(void)
{
    double t0 = now();
    foehn_pm *pm;
    foehn_error err;
    if (foehn_pm_init(&pm, environ, &err) != FOEHN_OK) {
        fprintf(stderr, "bootstrap_c: %s\n", err.message);
        return 1;
    }
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "%.6f tcp://10.%d.%d.%d:%05d", t0, pm->rank / 65536 % 256,
             pm->rank / 256 % 256, pm->rank % 256, 20000 + pm->rank % 40000);
    int rc = foehn_pm_put(pm, "ep", endpoint, strlen(endpoint), &err);
    if (rc == FOEHN_OK)
        rc = foehn_pm_commit(pm, &err);
    if (rc == FOEHN_OK)
        rc = foehn_pm_fence(pm, 0, &err);
    double first = t0, last = t0;
    for (int r = 0; r < pm->size && rc == FOEHN_OK; r++) {
        void *value;
        size_t len;
        rc = foehn_pm_get(pm, r, "ep", &value, &len, 0, &err);
        if (rc == FOEHN_OK) {
            double started = strtod(value, NULL);
            first = started < first ? started : first;
            last = started > last ? started : last;
            free(value);
        }
    }
    double t1 = now();
    if (rc != FOEHN_OK) {
        fprintf(stderr, "bootstrap_c rank %d: %s\n", pm->rank, err.message);
        return 1;
    }
    if (pm->rank == 0)
        printf("{\"ranks\":%d,\"provider\":\"%s\",\"bootstrap_s\":%.6f,\"spread_s\":%.6f}\n",
               pm->size, pm->provider->name, t1 - last, last - first);
    foehn_pm_finalize(pm);
    return 0;
}
