/* Layer 2, process management: one small interface over the launcher's own
 * process-management service, with one provider per service:
 *
 *   pmix    the system's libpmix.so.2, dlopen'ed at run time (provider_pmix.c)
 *   pmi     PMI-1 and PMI-2 wire protocols over PMI_FD, spoken natively (provider_pmi.c)
 *   foehn   Foehn's own rendezvous service, hosted by `foehn run` (provider_foehn.c)
 *   single  a job of one process (pm.c)
 *
 * The model is PMIx's: each rank puts key/value pairs, commits them, and after a
 * collective fence any rank can get any other rank's values. Every blocking call
 * takes a timeout in seconds and fails with a sentence that says what it waited
 * for, under which launcher and provider, and what to check. A peer known to have
 * died makes the wait fail at once, naming the rank.
 */
#ifndef FOEHN_PM_PM_H
#define FOEHN_PM_PM_H

#include <stdbool.h>
#include <stddef.h>

#include "foehn.h"

/* Limits every provider honours (PMI-1 servers allow 64-byte keys, 1024-byte values;
 * the pmi provider escapes values, so the raw limit is smaller there). */
#define FOEHN_PM_KEY_MAX 48
#define FOEHN_PM_VALUE_MAX 480

typedef struct foehn_pm foehn_pm;

typedef struct foehn_pm_provider {
    const char *name;
    /* Fills pm->rank, size, local_rank, local_size, node_index, num_nodes
     * (whatever the service tells; pm.c fills the rest from discovery) and
     * pm->state. envp is the process environment snapshot. */
    int (*init)(foehn_pm *pm, char *const *envp, foehn_error *err);
    /* key: [A-Za-z0-9_.-], at most FOEHN_PM_KEY_MAX bytes; value: any bytes,
     * at most FOEHN_PM_VALUE_MAX. Visible to others after commit + fence. */
    int (*put)(foehn_pm *pm, const char *key, const void *value, size_t len, foehn_error *err);
    int (*commit)(foehn_pm *pm, foehn_error *err);
    /* Collective over all ranks: returns when every rank's committed values are
     * visible to every rank. */
    int (*fence)(foehn_pm *pm, double timeout, foehn_error *err);
    /* rank's value for key (after a fence): *value is malloc'd, NUL-terminated
     * beyond *len. FOEHN_ERR_NOTFOUND when that rank never put it. */
    int (*get)(foehn_pm *pm, int rank, const char *key, void **value, size_t *len, double timeout,
               foehn_error *err);
    /* Asks the launcher to stop the whole job; may not return. */
    int (*abort)(foehn_pm *pm, int status, const char *message);
    /* Releases the service and pm->state; called once. */
    void (*finalize)(foehn_pm *pm);
} foehn_pm_provider;

struct foehn_pm {
    const foehn_pm_provider *provider;
    void *state;                   /* the provider's own */
    int rank, size, local_rank, local_size, node_index, num_nodes;
    foehn_job job;                 /* what discovery saw (launcher, hosts, ...) */
    double timeout;                /* default for blocking calls: FOEHN_TIMEOUT, else 300 s */
    bool debug;                    /* FOEHN_DEBUG: phase timings to stderr */
    unsigned fences;               /* fences so far, for those timings */
};

extern const foehn_pm_provider foehn_pm_provider_pmix;
extern const foehn_pm_provider foehn_pm_provider_pmi;
extern const foehn_pm_provider foehn_pm_provider_foehn;
extern const foehn_pm_provider foehn_pm_provider_single;

/* Chooses the provider (FOEHN_PM=pmix|pmi|foehn|single forces one; otherwise by
 * the variables the launcher set) and initialises it. */
int foehn_pm_init(foehn_pm **pm, char *const *envp, foehn_error *err);
int foehn_pm_put(foehn_pm *pm, const char *key, const void *value, size_t len, foehn_error *err);
int foehn_pm_commit(foehn_pm *pm, foehn_error *err);
int foehn_pm_fence(foehn_pm *pm, double timeout, foehn_error *err);
int foehn_pm_get(foehn_pm *pm, int rank, const char *key, void **value, size_t *len,
                 double timeout, foehn_error *err);
/* A fence with nothing new to share. */
int foehn_pm_barrier(foehn_pm *pm, double timeout, foehn_error *err);
int foehn_pm_abort(foehn_pm *pm, int status, const char *message);
void foehn_pm_finalize(foehn_pm *pm);

/* The process's shared pm: the first acquire initialises it, the last release
 * finalizes it. Every user in a process goes through these, never a second init:
 * a launcher's service counts one client per rank in its fences. */
int foehn_pm_acquire(foehn_pm **pm, char *const *envp, foehn_error *err);
void foehn_pm_release(foehn_pm *pm);

/* Loads the PMIx library the pmix provider would (FOEHN_LIBPMIX, else libpmix.so.2,
 * then libpmix.so), says which and its version, and unloads it (for foehn doctor);
 * else the provider's own error. */
int foehn_pmix_probe(char *const *envp, char *name, size_t namelen, char *version, size_t vlen,
                     foehn_error *err);

/* A timeout of 0 or less means pm->timeout. */
double foehn_pm_timeout(const foehn_pm *pm, double timeout);

/* Checks a key and a value length against the limits above (shared by providers). */
int foehn_pm_check_put(const char *key, size_t len, foehn_error *err);

/* "under <launcher> with the <provider> provider": the context every wait error names. */
const char *foehn_pm_context(const foehn_pm *pm, char *buf, size_t len);

#endif
