/* The launcher table: one row per launcher, innermost first (see discovery.h). */
#include <stddef.h>

#include "discovery/discovery.h"

static const foehn_launcher_row launchers[] = {
    /* foehn run: the contract between `foehn run` and its ranks. */
    {.id = FOEHN_LAUNCHER_FOEHN, .marker = {"FOEHN_RANK"}, .requires = "FOEHN_SIZE",
     .rank = {"FOEHN_RANK"}, .size = {"FOEHN_SIZE"},
     .local_rank = {"FOEHN_LOCAL_RANK"}, .local_size = {"FOEHN_LOCAL_SIZE"},
     .node_index = {"FOEHN_NODE_INDEX"}, .num_nodes = {"FOEHN_NUM_NODES"},
     .job_id = {"FOEHN_JOB_ID"}, .hostlist = {"FOEHN_HOSTS"}, .counts = {"FOEHN_RANKS_PER_HOST"}},

    /* torchrun often runs inside srun or a batch script: its variables win. */
    {.id = FOEHN_LAUNCHER_TORCHRUN, .marker = {"TORCHELASTIC_RUN_ID"}, .requires = "RANK",
     .rank = {"RANK"}, .size = {"WORLD_SIZE"},
     .local_rank = {"LOCAL_RANK"}, .local_size = {"LOCAL_WORLD_SIZE"},
     .node_index = {"GROUP_RANK"}, .num_nodes = {"GROUP_WORLD_SIZE"},
     .job_id = {"TORCHELASTIC_RUN_ID"}},

    /* jsrun (LSF) also sets OMPI_COMM_WORLD_* for Spectrum MPI: check it first. */
    {.id = FOEHN_LAUNCHER_LSF, .marker = {"JSM_NAMESPACE_RANK"},
     .rank = {"JSM_NAMESPACE_RANK"}, .size = {"JSM_NAMESPACE_SIZE"},
     .local_rank = {"JSM_NAMESPACE_LOCAL_RANK"}, .local_size = {"JSM_NAMESPACE_LOCAL_SIZE"}},

    /* Open MPI's mpirun (ORTE in 4.x, PRRTE in 5.x). It hosts a PMIx server too. */
    {.id = FOEHN_LAUNCHER_OPENMPI, .marker = {"OMPI_COMM_WORLD_RANK"},
     .rank = {"OMPI_COMM_WORLD_RANK"}, .size = {"OMPI_COMM_WORLD_SIZE"},
     .local_rank = {"OMPI_COMM_WORLD_LOCAL_RANK"}, .local_size = {"OMPI_COMM_WORLD_LOCAL_SIZE"},
     .job_id = {"OMPI_MCA_ess_base_jobid", "OMPI_MCA_orte_ess_jobid"}},

    {.id = FOEHN_LAUNCHER_MVAPICH, .marker = {"MV2_COMM_WORLD_RANK"},
     .rank = {"MV2_COMM_WORLD_RANK"}, .size = {"MV2_COMM_WORLD_SIZE"},
     .local_rank = {"MV2_COMM_WORLD_LOCAL_RANK"}, .local_size = {"MV2_COMM_WORLD_LOCAL_SIZE"}},

    /* PALS also sets the PMI_* names Hydra uses: check it before Hydra. */
    {.id = FOEHN_LAUNCHER_PALS, .marker = {"PALS_RANKID"},
     .rank = {"PALS_RANKID"}, .size = {"PMI_SIZE", "PALS_SIZE"},
     .local_rank = {"PALS_LOCAL_RANKID"}, .local_size = {"PALS_LOCAL_SIZE", "PMI_LOCAL_SIZE"},
     .node_index = {"PALS_NODEID"}, .job_id = {"PALS_APID"}},

    /* flux run also serves PMI-1, and so sets PMI_RANK: check it before Hydra. */
    {.id = FOEHN_LAUNCHER_FLUX, .marker = {"FLUX_TASK_RANK"},
     .rank = {"FLUX_TASK_RANK"}, .size = {"FLUX_JOB_SIZE"},
     .local_rank = {"FLUX_TASK_LOCAL_ID"}, .num_nodes = {"FLUX_JOB_NNODES"},
     .job_id = {"FLUX_JOB_ID"}},

    /* Hydra (MPICH, Intel MPI). srun --mpi=pmi2 sets PMI_RANK as well, but never
     * MPI_LOCALRANKID, which tells the two apart. */
    {.id = FOEHN_LAUNCHER_HYDRA, .marker = {"PMI_RANK"}, .requires = "MPI_LOCALRANKID",
     .rank = {"PMI_RANK"}, .size = {"PMI_SIZE"},
     .local_rank = {"MPI_LOCALRANKID"}, .local_size = {"MPI_LOCALNRANKS"}},

    /* srun: a job step. A batch script has SLURM_PROCID too, but no step id
     * (see the sbatch recording), so it is a plain process inside an allocation. */
    {.id = FOEHN_LAUNCHER_SLURM, .marker = {"SLURM_STEP_ID", "SLURM_STEPID"},
     .requires = "SLURM_PROCID",
     .rank = {"SLURM_PROCID"}, .size = {"SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_NPROCS"},
     .local_rank = {"SLURM_LOCALID"}, .node_index = {"SLURM_NODEID"},
     .num_nodes = {"SLURM_STEP_NUM_NODES", "SLURM_NNODES"},
     .job_id = {"SLURM_JOB_ID", "SLURM_JOBID"},
     .hostlist = {"SLURM_STEP_NODELIST"}, .counts = {"SLURM_STEP_TASKS_PER_NODE"},
     /* Only slurmd's own tasks can trust it: mpiexec.hydra forwards its whole
      * environment, so its ranks on other nodes see the batch node's name. */
     .node_name = {"SLURMD_NODENAME"}},

    /* Any other PMIx server (prterun without Open MPI's personality, ...): the
     * rank is in the environment, the rest comes from PMIx itself. */
    {.id = FOEHN_LAUNCHER_PMIX, .marker = {"PMIX_RANK"},
     .rank = {"PMIX_RANK"}, .job_id = {"PMIX_NAMESPACE"}},
};

const foehn_launcher_row *foehn_launcher_detect(char *const *envp, const char **variable)
{
    for (size_t i = 0; i < sizeof launchers / sizeof launchers[0]; i++) {
        const foehn_launcher_row *row = &launchers[i];
        const char *found = NULL;
        if (!foehn_env_first(envp, row->marker, &found))
            continue;
        if (row->requires && !foehn_env_get(envp, row->requires))
            continue;
        if (variable)
            *variable = found;
        return row;
    }
    if (variable)
        *variable = NULL;
    return NULL;
}
