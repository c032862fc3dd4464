/* foehn_job_discover: the launcher row gives the ranks, the scheduler row the
 * allocation, the accelerator table the devices; then what one implies about
 * another is filled in and checked. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "discovery/discovery.h"

static const char *const launcher_names[] = {
    [FOEHN_LAUNCHER_NONE] = "none",       [FOEHN_LAUNCHER_FOEHN] = "foehn",
    [FOEHN_LAUNCHER_PMIX] = "pmix",       [FOEHN_LAUNCHER_SLURM] = "slurm",
    [FOEHN_LAUNCHER_OPENMPI] = "openmpi", [FOEHN_LAUNCHER_HYDRA] = "hydra",
    [FOEHN_LAUNCHER_MVAPICH] = "mvapich", [FOEHN_LAUNCHER_PALS] = "pals",
    [FOEHN_LAUNCHER_FLUX] = "flux",       [FOEHN_LAUNCHER_LSF] = "lsf",
    [FOEHN_LAUNCHER_TORCHRUN] = "torchrun",
};

static const char *const scheduler_names[] = {
    [FOEHN_SCHEDULER_NONE] = "none", [FOEHN_SCHEDULER_SLURM] = "slurm",
    [FOEHN_SCHEDULER_PBS] = "pbs",   [FOEHN_SCHEDULER_FLUX] = "flux",
    [FOEHN_SCHEDULER_LSF] = "lsf",   [FOEHN_SCHEDULER_COBALT] = "cobalt",
};

static const char *const vendor_names[] = {
    [FOEHN_GPU_NONE] = "none", [FOEHN_GPU_NVIDIA] = "nvidia",
    [FOEHN_GPU_AMD] = "amd",   [FOEHN_GPU_INTEL] = "intel",
};

#define NAME_OF(table, i) \
    ((size_t)(i) < sizeof table / sizeof table[0] && table[i] ? table[i] : "unknown")

const char *foehn_launcher_name(foehn_launcher l) { return NAME_OF(launcher_names, l); }
const char *foehn_scheduler_name(foehn_scheduler s) { return NAME_OF(scheduler_names, s); }
const char *foehn_gpu_vendor_name(foehn_gpu_vendor v) { return NAME_OF(vendor_names, v); }

void foehn_job_clear(foehn_job *job)
{
    free(job->job_id);
    free(job->hostname);
    foehn_strv_free(job->hosts, job->nhosts);
    free(job->ranks_per_host);
    foehn_strv_free(job->allocation_hosts, job->allocation_nhosts);
    free(job->allocation_slots);
    foehn_strv_free(job->gpus, job->ngpus);
    free(job->workdir);
    memset(job, 0, sizeof *job);
    job->rank = job->size = job->local_rank = job->local_size = FOEHN_UNKNOWN;
    job->node_index = job->num_nodes = job->node_gpus = FOEHN_UNKNOWN;
}

/* Reads one count from the row's candidate names; absent leaves *out alone. */
static int read_count(char *const *envp, const foehn_names names, int *out, foehn_error *err)
{
    const char *name = NULL;
    const char *value = foehn_env_first(envp, names, &name);
    return value ? foehn_env_parse_count(name, value, out, err) : FOEHN_OK;
}

static int read_launcher_counts(const foehn_launcher_row *row, char *const *envp, foehn_job *job,
                                foehn_error *err)
{
    int rc = FOEHN_OK;
    if (rc == FOEHN_OK) rc = read_count(envp, row->rank, &job->rank, err);
    if (rc == FOEHN_OK) rc = read_count(envp, row->size, &job->size, err);
    if (rc == FOEHN_OK) rc = read_count(envp, row->local_rank, &job->local_rank, err);
    if (rc == FOEHN_OK) rc = read_count(envp, row->local_size, &job->local_size, err);
    if (rc == FOEHN_OK) rc = read_count(envp, row->node_index, &job->node_index, err);
    if (rc == FOEHN_OK) rc = read_count(envp, row->num_nodes, &job->num_nodes, err);
    return rc;
}

/* "rank 5 of size 4" and the like: an index must fall inside its count. */
static int check_index(char *const *envp, const foehn_names index_names, int index,
                       const foehn_names count_names, int count, foehn_error *err)
{
    if (index == FOEHN_UNKNOWN || count == FOEHN_UNKNOWN || index < count)
        return FOEHN_OK;
    const char *iname = NULL, *cname = NULL;
    const char *ivalue = foehn_env_first(envp, index_names, &iname);
    const char *cvalue = foehn_env_first(envp, count_names, &cname);
    if (ivalue && cvalue)
        return foehn_fail(err, FOEHN_ERR_INVALID, "%s=\"%s\" is not below %s=\"%s\"", iname,
                          ivalue, cname, cvalue);
    return foehn_fail(err, FOEHN_ERR_INVALID, "%s=\"%s\" is not below the %d the job has",
                      iname ? iname : cname, ivalue ? ivalue : cvalue,
                      ivalue ? count : index);
}

static int fill_hostname(foehn_job *job, const foehn_discover_options *opt)
{
    if (opt && opt->hostname) {
        job->hostname = strdup(opt->hostname);
    } else {
        char name[256];
        if (gethostname(name, sizeof name) != 0)
            strcpy(name, "localhost");
        name[sizeof name - 1] = '\0';
        job->hostname = strdup(name);
    }
    return job->hostname ? FOEHN_OK : FOEHN_ERR_NOMEM;
}

static int fill_workdir(foehn_job *job, const foehn_scheduler_row *sched, char *const *envp,
                        const foehn_discover_options *opt)
{
    /* PBS_O_WORKDIR first, then SLURM_SUBMIT_DIR, whichever scheduler is
     * innermost: a PBS job script cd's there by habit, Slurm starts there. */
    static const foehn_names preferred = {"PBS_O_WORKDIR", "SLURM_SUBMIT_DIR"};
    const char *dir = foehn_env_first(envp, preferred, NULL);
    if (!dir && sched)
        dir = foehn_env_first(envp, sched->workdir, NULL);
    if (dir && *dir) {
        job->workdir = strdup(dir);
    } else if (opt && opt->cwd) {
        job->workdir = strdup(opt->cwd);
    } else {
        job->workdir = getcwd(NULL, 0);
        if (!job->workdir)
            job->workdir = strdup(".");
    }
    return job->workdir ? FOEHN_OK : FOEHN_ERR_NOMEM;
}

/* The job's hosts: from the launcher when it says; a job whose ranks are all
 * local is on this host alone; a launcher that spans the allocation (mpirun or
 * mpiexec in a batch script) runs on its hosts. Otherwise unknown. */
static int fill_job_hosts(foehn_job *job, const foehn_launcher_row *row, char *const *envp,
                          foehn_host_table *alloc, foehn_error *err)
{
    foehn_host_table hosts;
    foehn_host_table_init(&hosts);
    int rc = FOEHN_OK;
    const char *list_var = NULL, *counts_var = NULL;
    const char *list = row ? foehn_env_first(envp, row->hostlist, &list_var) : NULL;
    const char *counts = row ? foehn_env_first(envp, row->counts, &counts_var) : NULL;

    if (list) {
        rc = foehn_hosts_from_slurm(&hosts, list_var, list, counts_var, counts, err);
    } else if (job->size != FOEHN_UNKNOWN && (job->local_size == job->size || job->size == 1)) {
        rc = foehn_host_table_add(&hosts, job->hostname, strlen(job->hostname), job->size);
        hosts.has_counts = true;
    } else if (row && alloc->hosts.len > 0 &&
               (job->num_nodes == FOEHN_UNKNOWN || (size_t)job->num_nodes == alloc->hosts.len)) {
        for (size_t i = 0; i < alloc->hosts.len && rc == FOEHN_OK; i++)
            rc = foehn_host_table_add(&hosts, alloc->hosts.items[i], strlen(alloc->hosts.items[i]),
                                      alloc->has_counts ? alloc->counts[i] : 0);
        /* Slots become ranks per host only when they add up to the job's size. */
        long total = 0;
        for (size_t i = 0; alloc->has_counts && i < alloc->hosts.len; i++)
            total += alloc->counts[i];
        hosts.has_counts = alloc->has_counts && job->size != FOEHN_UNKNOWN && total == job->size;
    }
    if (rc == FOEHN_OK && hosts.hosts.len > 0) {
        if (job->node_index == FOEHN_UNKNOWN) {
            /* Slurm names nodes by SLURMD_NODENAME, which may differ from the host name. */
            const char *me = row ? foehn_env_first(envp, row->node_name, NULL) : NULL;
            long at = foehn_host_table_find(&hosts, me ? me : job->hostname);
            if (at >= 0)
                job->node_index = (int)at;
        }
        if (job->num_nodes == FOEHN_UNKNOWN)
            job->num_nodes = (int)hosts.hosts.len;
        if (job->local_size == FOEHN_UNKNOWN && hosts.has_counts &&
            job->node_index != FOEHN_UNKNOWN && (size_t)job->node_index < hosts.hosts.len)
            job->local_size = hosts.counts[job->node_index];
        const char *where = list_var ? list_var : "the allocation";
        if ((size_t)job->num_nodes != hosts.hosts.len)
            rc = foehn_fail(err, FOEHN_ERR_INVALID, "the launcher says %d nodes but %s names %zu hosts",
                            job->num_nodes, where, hosts.hosts.len);
        else if (job->node_index != FOEHN_UNKNOWN && (size_t)job->node_index >= hosts.hosts.len)
            rc = foehn_fail(err, FOEHN_ERR_INVALID, "node index %d is not below the %zu hosts %s names",
                            job->node_index, hosts.hosts.len, where);
    }
    if (rc == FOEHN_OK)
        rc = foehn_host_table_export(&hosts, &job->hosts, &job->ranks_per_host, &job->nhosts);
    foehn_host_table_release(&hosts);
    return rc;
}

static int discover(foehn_job *job, char *const *envp, const foehn_discover_options *opt,
                    foehn_error *err)
{
    const foehn_launcher_row *lrow = foehn_launcher_detect(envp, &job->launcher_variable);
    const foehn_scheduler_row *srow = foehn_scheduler_detect(envp, &job->scheduler_variable);
    job->launcher = lrow ? lrow->id : FOEHN_LAUNCHER_NONE;
    job->scheduler = srow ? srow->id : FOEHN_SCHEDULER_NONE;

    int rc = fill_hostname(job, opt);
    if (rc != FOEHN_OK)
        return rc;
    const char *id = srow ? foehn_env_first(envp, srow->job_id, NULL) : NULL;
    if (!id && lrow)
        id = foehn_env_first(envp, lrow->job_id, NULL);
    if (id && !(job->job_id = strdup(id)))
        return FOEHN_ERR_NOMEM;

    if (lrow) {
        rc = read_launcher_counts(lrow, envp, job, err);
    } else {
        /* No launcher: a job of one, even inside an allocation of many. */
        job->rank = job->local_rank = job->node_index = 0;
        job->size = job->local_size = job->num_nodes = 1;
    }
    if (rc == FOEHN_OK && lrow)
        rc = check_index(envp, lrow->rank, job->rank, lrow->size, job->size, err);
    if (rc == FOEHN_OK && lrow)
        rc = check_index(envp, lrow->local_rank, job->local_rank, lrow->local_size,
                         job->local_size, err);
    if (rc == FOEHN_OK && lrow)
        rc = check_index(envp, lrow->node_index, job->node_index, lrow->num_nodes,
                         job->num_nodes, err);

    foehn_host_table alloc;
    foehn_host_table_init(&alloc);
    if (rc == FOEHN_OK && srow)
        rc = foehn_allocation_read(srow, envp, &alloc, err);
    if (rc == FOEHN_OK)
        rc = fill_job_hosts(job, lrow, envp, &alloc, err);
    if (rc == FOEHN_OK)
        rc = foehn_host_table_export(&alloc, &job->allocation_hosts, &job->allocation_slots,
                                     &job->allocation_nhosts);
    foehn_host_table_release(&alloc);

    if (rc == FOEHN_OK)
        rc = foehn_gpus_discover(job, envp, opt && opt->sysroot ? opt->sysroot : "", err);
    if (rc == FOEHN_OK)
        rc = fill_workdir(job, srow, envp, opt);
    return rc;
}

int foehn_job_discover(foehn_job *job, char *const *envp, const foehn_discover_options *options,
                       foehn_error *err)
{
    memset(job, 0, sizeof *job);
    foehn_job_clear(job);
    foehn_error_reset(err);
    int rc = discover(job, envp, options, err);
    if (rc == FOEHN_ERR_NOMEM && err && !err->message[0])
        foehn_fail(err, rc, "out of memory while discovering the job");
    if (rc != FOEHN_OK)
        foehn_job_clear(job);
    return rc;
}
