/* Provider choice, the shared checks around every call, and the job of one. */
#include "pm/pm.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/error.h"
#include "discovery/env.h"

#define DEFAULT_TIMEOUT 300.0

static const foehn_pm_provider *const providers[] = {
    &foehn_pm_provider_foehn, &foehn_pm_provider_pmix, &foehn_pm_provider_pmi,
    &foehn_pm_provider_single,
};

static const foehn_pm_provider *provider_named(const char *name)
{
    for (size_t i = 0; i < sizeof providers / sizeof providers[0]; i++)
        if (strcmp(providers[i]->name, name) == 0)
            return providers[i];
    return NULL;
}

/* The service the launcher offers, judged by the variables it sets for it. */
static const foehn_pm_provider *provider_for(char *const *envp, const foehn_job *job,
                                             foehn_error *err)
{
    if (foehn_env_get(envp, "FOEHN_RDV_ADDR"))
        return &foehn_pm_provider_foehn;
    if (foehn_env_get(envp, "PMIX_RANK") || foehn_env_get(envp, "PMIX_NAMESPACE"))
        return &foehn_pm_provider_pmix;
    if (foehn_env_get(envp, "PMI_FD") || foehn_env_get(envp, "PMI_PORT"))
        return &foehn_pm_provider_pmi;
    if (job->launcher == FOEHN_LAUNCHER_NONE || job->size == 1)
        return &foehn_pm_provider_single;
    if (job->launcher == FOEHN_LAUNCHER_SLURM) {
        foehn_fail(err, FOEHN_ERR_UNAVAILABLE,
                   "srun started these %d ranks without a process-management service "
                   "(--mpi=none): start them with srun --mpi=pmix (or --mpi=pmi2)",
                   job->size);
        return NULL;
    }
    foehn_fail(err, FOEHN_ERR_UNAVAILABLE,
               "%s started this process (%s is set) but offers no process-management "
               "service Foehn can use (no PMIX_RANK, PMI_FD or FOEHN_RDV_ADDR); set FOEHN_PM "
               "to force one",
               foehn_launcher_name(job->launcher),
               job->launcher_variable ? job->launcher_variable : "?");
    return NULL;
}

static double timeout_from(char *const *envp, foehn_error *err, int *rc)
{
    const char *value = foehn_env_get(envp, "FOEHN_TIMEOUT");
    *rc = FOEHN_OK;
    if (!value)
        return DEFAULT_TIMEOUT;
    char *end;
    double t = strtod(value, &end);
    if (end == value || *end || !isfinite(t) || t <= 0) {
        *rc = foehn_fail(err, FOEHN_ERR_INVALID,
                         "FOEHN_TIMEOUT=\"%s\" is not a positive number of seconds", value);
        return 0;
    }
    return t;
}

/* FOEHN_DEBUG=1 (anything but empty or 0): how long each phase took, one line
 * each on stderr, so a slow or stuck bootstrap shows where. */
static bool debug_wanted(char *const *envp)
{
    const char *v = foehn_env_get(envp, "FOEHN_DEBUG");
    return v && *v && strcmp(v, "0") != 0;
}

static void debug_phase(const foehn_pm *pm, const char *phase, double started, int rc)
{
    if (!pm->debug)
        return;
    fprintf(stderr, "foehn[rank %d of %d]: %s %.3f ms (%s provider under %s)%s\n", pm->rank,
            pm->size, phase, (foehn_now() - started) * 1e3, pm->provider->name,
            foehn_launcher_name(pm->job.launcher), rc == FOEHN_OK ? "" : ": failed");
}

/* Fills what the provider did not tell from what discovery saw. */
static void fill_unknown(foehn_pm *pm)
{
    int *mine[] = {&pm->rank, &pm->size, &pm->local_rank, &pm->local_size, &pm->node_index,
                   &pm->num_nodes};
    const int known[] = {pm->job.rank, pm->job.size, pm->job.local_rank, pm->job.local_size,
                         pm->job.node_index, pm->job.num_nodes};
    for (size_t i = 0; i < sizeof mine / sizeof mine[0]; i++)
        if (*mine[i] == FOEHN_UNKNOWN)
            *mine[i] = known[i];
}

int foehn_pm_init(foehn_pm **out, char *const *envp, foehn_error *err)
{
    double started = foehn_now();
    *out = NULL;
    foehn_error_reset(err);
    foehn_pm *pm = calloc(1, sizeof *pm);
    if (!pm)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    int rc = foehn_job_discover(&pm->job, envp, NULL, err);
    if (rc == FOEHN_OK)
        pm->timeout = timeout_from(envp, err, &rc);
    if (rc != FOEHN_OK) {
        free(pm);
        return rc;
    }
    const char *forced = foehn_env_get(envp, "FOEHN_PM");
    if (forced && *forced) {
        pm->provider = provider_named(forced);
        if (!pm->provider)
            rc = foehn_fail(err, FOEHN_ERR_INVALID,
                            "FOEHN_PM=\"%s\" names no provider (pmix, pmi, foehn or single)",
                            forced);
    } else {
        pm->provider = provider_for(envp, &pm->job, err);
        if (!pm->provider)
            rc = FOEHN_ERR_UNAVAILABLE;
    }
    pm->rank = pm->size = pm->local_rank = pm->local_size = FOEHN_UNKNOWN;
    pm->node_index = pm->num_nodes = FOEHN_UNKNOWN;
    if (rc == FOEHN_OK)
        rc = pm->provider->init(pm, envp, err);
    if (rc != FOEHN_OK) {
        foehn_job_clear(&pm->job);
        free(pm);
        return rc;
    }
    fill_unknown(pm);
    pm->debug = debug_wanted(envp);
    debug_phase(pm, "pm init", started, FOEHN_OK);
    *out = pm;
    return FOEHN_OK;
}

int foehn_pm_check_put(const char *key, size_t len, foehn_error *err)
{
    size_t n = strlen(key);
    if (n == 0 || n > FOEHN_PM_KEY_MAX)
        return foehn_fail(err, FOEHN_ERR_INVALID, "key \"%s\" must have 1 to %d characters", key,
                          FOEHN_PM_KEY_MAX);
    for (const char *p = key; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return foehn_fail(err, FOEHN_ERR_INVALID,
                              "key \"%s\" may hold only letters, digits, '_', '.' and '-'", key);
    }
    if (len > FOEHN_PM_VALUE_MAX)
        return foehn_fail(err, FOEHN_ERR_LIMIT, "value for key \"%s\" has %zu bytes; at most %d",
                          key, len, FOEHN_PM_VALUE_MAX);
    return FOEHN_OK;
}

int foehn_pm_put(foehn_pm *pm, const char *key, const void *value, size_t len, foehn_error *err)
{
    foehn_error_reset(err);
    int rc = foehn_pm_check_put(key, len, err);
    return rc == FOEHN_OK ? pm->provider->put(pm, key, value, len, err) : rc;
}

int foehn_pm_commit(foehn_pm *pm, foehn_error *err)
{
    foehn_error_reset(err);
    return pm->provider->commit(pm, err);
}

double foehn_pm_timeout(const foehn_pm *pm, double timeout)
{
    return timeout > 0 ? timeout : pm->timeout;
}

int foehn_pm_fence(foehn_pm *pm, double timeout, foehn_error *err)
{
    foehn_error_reset(err);
    double started = foehn_now();
    int rc = pm->provider->fence(pm, foehn_pm_timeout(pm, timeout), err);
    char phase[32];
    snprintf(phase, sizeof phase, "fence %u", ++pm->fences);
    debug_phase(pm, phase, started, rc);
    return rc;
}

int foehn_pm_get(foehn_pm *pm, int rank, const char *key, void **value, size_t *len,
                 double timeout, foehn_error *err)
{
    foehn_error_reset(err);
    *value = NULL;
    *len = 0;
    if (rank < 0 || (pm->size != FOEHN_UNKNOWN && rank >= pm->size))
        return foehn_fail(err, FOEHN_ERR_INVALID, "rank %d is not in this job of %d ranks", rank,
                          pm->size);
    return pm->provider->get(pm, rank, key, value, len, foehn_pm_timeout(pm, timeout), err);
}

int foehn_pm_barrier(foehn_pm *pm, double timeout, foehn_error *err)
{
    int rc = foehn_pm_commit(pm, err);
    return rc == FOEHN_OK ? foehn_pm_fence(pm, timeout, err) : rc;
}

int foehn_pm_abort(foehn_pm *pm, int status, const char *message)
{
    return pm->provider->abort(pm, status, message);
}

void foehn_pm_finalize(foehn_pm *pm)
{
    if (!pm)
        return;
    pm->provider->finalize(pm);
    foehn_job_clear(&pm->job);
    free(pm);
}

/* The process's one pm, shared: the launcher sees one client per rank, whatever uses
 * it (foehn.init and torch's bootstrap, the communicator). */
static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static foehn_pm *shared_pm;
static int shared_refs;

int foehn_pm_acquire(foehn_pm **out, char *const *envp, foehn_error *err)
{
    pthread_mutex_lock(&shared_mu);
    int rc = FOEHN_OK;
    if (!shared_pm)
        rc = foehn_pm_init(&shared_pm, envp, err);
    if (rc == FOEHN_OK)
        shared_refs++;
    *out = shared_pm;
    pthread_mutex_unlock(&shared_mu);
    return rc;
}

void foehn_pm_release(foehn_pm *pm)
{
    if (!pm)
        return;
    pthread_mutex_lock(&shared_mu);
    if (pm == shared_pm && --shared_refs == 0) {
        foehn_pm_finalize(pm);
        shared_pm = NULL;
    }
    pthread_mutex_unlock(&shared_mu);
}

const char *foehn_pm_context(const foehn_pm *pm, char *buf, size_t len)
{
    snprintf(buf, len, "under %s with the %s provider", foehn_launcher_name(pm->job.launcher),
             pm->provider->name);
    return buf;
}

/* ---- single: a job of one process ------------------------------------- */

typedef struct single_kv {
    char key[FOEHN_PM_KEY_MAX + 1];
    char *value;
    size_t len;
    struct single_kv *next;
} single_kv;

static int single_init(foehn_pm *pm, char *const *envp, foehn_error *err)
{
    (void)envp;
    if (pm->job.size != FOEHN_UNKNOWN && pm->job.size > 1)
        return foehn_fail(err, FOEHN_ERR_INVALID,
                          "FOEHN_PM=single, but %s says this job has %d ranks",
                          foehn_launcher_name(pm->job.launcher), pm->job.size);
    pm->rank = pm->local_rank = pm->node_index = 0;
    pm->size = pm->local_size = pm->num_nodes = 1;
    pm->state = NULL;
    return FOEHN_OK;
}

static int single_put(foehn_pm *pm, const char *key, const void *value, size_t len,
                      foehn_error *err)
{
    single_kv *kv = calloc(1, sizeof *kv);
    char *copy = malloc(len + 1);
    if (!kv || !copy) {
        free(kv);
        free(copy);
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    }
    memcpy(copy, value, len);
    copy[len] = '\0';
    snprintf(kv->key, sizeof kv->key, "%s", key);
    kv->value = copy;
    kv->len = len;
    kv->next = pm->state; /* newest first: a later put of the same key wins */
    pm->state = kv;
    return FOEHN_OK;
}

static int single_nothing(foehn_pm *pm, foehn_error *err)
{
    (void)pm;
    (void)err;
    return FOEHN_OK;
}

static int single_fence(foehn_pm *pm, double timeout, foehn_error *err)
{
    (void)timeout;
    return single_nothing(pm, err);
}

static int single_get(foehn_pm *pm, int rank, const char *key, void **value, size_t *len,
                      double timeout, foehn_error *err)
{
    (void)rank;
    (void)timeout;
    for (single_kv *kv = pm->state; kv; kv = kv->next) {
        if (strcmp(kv->key, key) == 0) {
            char *copy = malloc(kv->len + 1);
            if (!copy)
                return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
            memcpy(copy, kv->value, kv->len + 1);
            *value = copy;
            *len = kv->len;
            return FOEHN_OK;
        }
    }
    return foehn_fail(err, FOEHN_ERR_NOTFOUND, "rank 0 put no key \"%s\"", key);
}

static int single_abort(foehn_pm *pm, int status, const char *message)
{
    (void)pm;
    fprintf(stderr, "foehn: abort: %s\n", message ? message : "");
    exit(status ? status : 1);
}

static void single_finalize(foehn_pm *pm)
{
    for (single_kv *kv = pm->state, *next; kv; kv = next) {
        next = kv->next;
        free(kv->value);
        free(kv);
    }
    pm->state = NULL;
}

const foehn_pm_provider foehn_pm_provider_single = {
    .name = "single",
    .init = single_init,
    .put = single_put,
    .commit = single_nothing,
    .fence = single_fence,
    .get = single_get,
    .abort = single_abort,
    .finalize = single_finalize,
};
