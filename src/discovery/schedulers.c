/* The scheduler table: one row per scheduler, innermost first (Flux is often
 * started inside a Slurm or LSF allocation, whose variables it inherits). */
#include <stddef.h>

#include "discovery/discovery.h"

static const foehn_scheduler_row schedulers[] = {
    /* A flux batch script has FLUX_URI but no FLUX_JOB_ID; flux run sets both. */
    {.id = FOEHN_SCHEDULER_FLUX, .marker = {"FLUX_JOB_ID", "FLUX_URI"},
     .job_id = {"FLUX_JOB_ID"}, .hostlist = {"FLUX_JOB_NODELIST"},
     .node_count = {"FLUX_JOB_NNODES"}},

    {.id = FOEHN_SCHEDULER_LSF, .marker = {"LSB_JOBID"},
     .job_id = {"LSB_JOBID"}, .nodefile = {"LSB_DJOB_HOSTFILE"}, .host_slots = {"LSB_MCPU_HOSTS"},
     .first_host_is_launch_node = true, .workdir = {"LS_SUBCWD"}},

    {.id = FOEHN_SCHEDULER_PBS, .marker = {"PBS_JOBID"},
     .job_id = {"PBS_JOBID"}, .nodefile = {"PBS_NODEFILE"}, .workdir = {"PBS_O_WORKDIR"}},

    {.id = FOEHN_SCHEDULER_COBALT, .marker = {"COBALT_JOBID"},
     .job_id = {"COBALT_JOBID"}, .nodefile = {"COBALT_NODEFILE"}},

    {.id = FOEHN_SCHEDULER_SLURM, .marker = {"SLURM_JOB_ID", "SLURM_JOBID"},
     .job_id = {"SLURM_JOB_ID", "SLURM_JOBID"},
     .hostlist = {"SLURM_JOB_NODELIST", "SLURM_NODELIST"},
     /* Inside a step srun rewrites SLURM_TASKS_PER_NODE with the step's layout,
      * which may cover fewer nodes (mpirun's daemon step on one node): there the
      * allocation's slots are unknown. */
     .counts = {"SLURM_TASKS_PER_NODE"}, .step = {"SLURM_STEP_ID", "SLURM_STEPID"},
     .node_count = {"SLURM_JOB_NUM_NODES", "SLURM_NNODES"},
     .workdir = {"SLURM_SUBMIT_DIR"}},
};

const foehn_scheduler_row *foehn_scheduler_rows(size_t *count)
{
    *count = sizeof schedulers / sizeof schedulers[0];
    return schedulers;
}

const foehn_scheduler_row *foehn_scheduler_detect(char *const *envp, const char **variable)
{
    size_t n;
    const foehn_scheduler_row *rows = foehn_scheduler_rows(&n);
    for (size_t i = 0; i < n; i++) {
        const char *found = NULL;
        if (foehn_env_first(envp, rows[i].marker, &found)) {
            if (variable)
                *variable = found;
            return &rows[i];
        }
    }
    if (variable)
        *variable = NULL;
    return NULL;
}
