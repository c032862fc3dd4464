/* foehn launch: the launch line that fills the allocation this process is in.
 * The plan is a pure function of the discovered job, the user's overrides and the
 * few facts the command probes (which launchers are on PATH, and of which
 * flavour), so that it can be tested from recorded environments. */
#ifndef FOEHN_CLI_LAUNCH_H
#define FOEHN_CLI_LAUNCH_H

#include <stdbool.h>

#include "common/strv.h"
#include "foehn.h"

typedef struct launch_options {
    int n, ppn, nhosts;     /* 0: not given */
    const char *hostfile;   /* NULL: not given */
    const char *cpu_bind;   /* the launcher's own binding value; NULL: not given */
    bool bind_gpus;         /* each rank its own accelerators (through `foehn bind-gpus`) */
    char **argv;            /* the program and its arguments */
} launch_options;

/* What the command found out about this machine (not part of the environment). */
typedef enum launch_mpiexec { MPIEXEC_NONE = 0, MPIEXEC_PALS, MPIEXEC_HYDRA, MPIEXEC_OPENMPI }
    launch_mpiexec;

typedef struct launch_facts {
    launch_mpiexec mpiexec;     /* what `mpiexec` on PATH is */
    bool prterun;               /* prterun on PATH */
    bool openmpi_mpirun;        /* an Open MPI mpirun on PATH */
    bool root;                  /* running as root (Open MPI refuses it unless told) */
    const char *self;           /* this foehn program, for `foehn run` and `bind-gpus` */
} launch_facts;

typedef struct launch_plan {
    const char *launcher;   /* "srun", "mpiexec", "flux", "jsrun", "prterun", "mpirun", "foehn run" */
    int n, ppn, nhosts, gpus_per_host, gpus_per_rank;
    foehn_strv hosts;       /* the hosts the ranks go to */
    foehn_strv argv;        /* the whole line, the program included */
    foehn_strv why;         /* one sentence per choice, in the order made */
} launch_plan;

/* Fills *plan (launch_plan_release frees it, also after an error). envp is the
 * environment the job was discovered from (for the node file's path). */
int launch_plan_make(const foehn_job *job, char *const *envp, const launch_options *opt,
                     const launch_facts *facts, launch_plan *plan, foehn_error *err);
void launch_plan_release(launch_plan *plan);

/* Hosts of a host file: one per line, "host", "host slots=N", "host:N" or a
 * node file's one line per slot; '#' comments. Deduplicated, in order. */
int launch_read_hostfile(const char *path, foehn_strv *hosts, foehn_error *err);

#endif
