/* Layer 1 internals: the launcher and scheduler tables, host tables, accelerators. */
#ifndef FOEHN_DISCOVERY_DISCOVERY_H
#define FOEHN_DISCOVERY_DISCOVERY_H

#include <stdbool.h>

#include "common/strv.h"
#include "discovery/env.h"
#include "foehn.h"

typedef const char *foehn_names[FOEHN_ENV_CANDIDATES];

/* One launcher: the variable that proves it started this process, and where it
 * keeps each number. Rows are tried in order, innermost launchers first, because
 * an outer launcher's variables leak into everything an inner one starts (ranks
 * of mpirun inside an sbatch script all inherit SLURM_PROCID=0). */
typedef struct foehn_launcher_row {
    foehn_launcher id;
    foehn_names marker;     /* any of these set means this launcher */
    const char *requires;   /* and this one too (NULL: nothing more) */
    foehn_names rank, size, local_rank, local_size, node_index, num_nodes, job_id;
    foehn_names hostlist;   /* the job's hosts, Slurm hostlist grammar */
    foehn_names counts;     /* ranks per host, Slurm "2(x3),1" grammar */
    foehn_names node_name;  /* this node as the hostlist names it (else the host name) */
} foehn_launcher_row;

/* One scheduler: how it names the job and where its allocation's hosts are. */
typedef struct foehn_scheduler_row {
    foehn_scheduler id;
    foehn_names marker;
    foehn_names job_id;
    foehn_names hostlist;   /* Slurm hostlist grammar */
    foehn_names counts;     /* slots per host, Slurm counts grammar */
    foehn_names step;       /* set inside a job step, whose counts replace the allocation's */
    foehn_names node_count; /* must agree with the hostlist when both are set */
    foehn_names nodefile;   /* a file with one line per slot */
    foehn_names host_slots; /* "host slots host slots ..." (LSB_MCPU_HOSTS) */
    bool first_host_is_launch_node; /* LSF: drop it when other hosts follow */
    foehn_names workdir;    /* where the job was submitted from */
} foehn_scheduler_row;

const foehn_launcher_row *foehn_launcher_detect(char *const *envp, const char **variable);
const foehn_scheduler_row *foehn_scheduler_detect(char *const *envp, const char **variable);
const foehn_scheduler_row *foehn_scheduler_rows(size_t *count);

/* Hosts in order of first appearance, each with a count (ranks or slots). */
typedef struct foehn_host_table {
    foehn_strv hosts;
    int *counts;
    bool has_counts;
} foehn_host_table;

void foehn_host_table_init(foehn_host_table *t);
void foehn_host_table_release(foehn_host_table *t);
/* Adds `count` to host (appending it if new). */
int foehn_host_table_add(foehn_host_table *t, const char *host, size_t hostlen, int count);
/* Index of host, comparing short names ("n1" matches "n1.cluster"); -1 if absent. */
long foehn_host_table_find(const foehn_host_table *t, const char *host);

/* Hosts from a Slurm hostlist plus optional counts variable (either may be NULL). */
int foehn_hosts_from_slurm(foehn_host_table *t, const char *hostlist_var, const char *hostlist,
                           const char *counts_var, const char *counts, foehn_error *err);

/* The allocation of the detected scheduler (t left empty when it tells none). */
int foehn_allocation_read(const foehn_scheduler_row *row, char *const *envp, foehn_host_table *t,
                          foehn_error *err);

/* The outermost visibility mask of a vendor's runtime (CUDA_VISIBLE_DEVICES,
 * ROCR_VISIBLE_DEVICES, ZE_AFFINITY_MASK), or NULL for FOEHN_GPU_NONE. */
const char *foehn_gpu_outer_mask(foehn_gpu_vendor vendor);

/* Accelerators: fills gpu_vendor, gpus, ngpus, node_gpus, gpu_mask_variable. */
int foehn_gpus_discover(foehn_job *job, char *const *envp, const char *sysroot, foehn_error *err);

/* Copies of the parts of a table the job record keeps. */
int foehn_host_table_export(foehn_host_table *t, char ***hosts, int **counts, size_t *n);

#endif
