/*
 * foehn.h — the public C API of Foehn.
 *
 * Layer 1, job discovery: a pure function from an environment snapshot (and the
 * files it names) to one foehn_job record. No sockets, no globals.
 *
 * Conventions: functions return FOEHN_OK (0) or a negative foehn_status; on error
 * a foehn_error receives a sentence naming what was wrong (the variable and its
 * value for bad input). Every string a record holds is owned by the record and
 * released by its *_clear function.
 */
#ifndef FOEHN_H
#define FOEHN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FOEHN_VERSION "0.1.0"

typedef enum foehn_status {
    FOEHN_OK = 0,
    FOEHN_ERR_INVALID = -1, /* malformed input: a variable, a hostlist, a file's contents */
    FOEHN_ERR_NOMEM = -2,
    FOEHN_ERR_IO = -3,      /* a named file could not be read */
    FOEHN_ERR_LIMIT = -4,   /* input asks for more than Foehn will hold (e.g. 10^9 hosts) */
    FOEHN_ERR_TIMEOUT = -5, /* a wait ran out of time; the message says what for */
    FOEHN_ERR_PEER = -6,    /* a peer rank died or disconnected; the message names it */
    FOEHN_ERR_NOTFOUND = -7, /* a key no rank put */
    FOEHN_ERR_UNAVAILABLE = -8, /* a service this needs is missing (libpmix, PMI_FD, ...) */
    FOEHN_ERR_PROTOCOL = -9, /* a peer or server said something malformed or unexpected */
    FOEHN_ERR_SYSTEM = -10  /* a system call failed; the message has strerror */
} foehn_status;

/* A sentence for the user; always NUL-terminated, empty when there is no error. */
typedef struct foehn_error {
    char message[1024];
} foehn_error;

/* ---- hostlists --------------------------------------------------------- */

/* Most hosts one hostlist may expand to; more is FOEHN_ERR_LIMIT, not an OOM. */
#define FOEHN_HOSTLIST_MAX 1048576

/* Expands a Slurm hostlist ("n[001-004,010],gpu[1-2]-ib,r[1-2]n[1-2]") into
 * *hosts (a malloc'd array of *count malloc'd strings, in order, duplicates kept).
 * On error *hosts is NULL and *count 0. Free with foehn_strv_free. */
int foehn_hostlist_expand(const char *hostlist, char ***hosts, size_t *count, foehn_error *err);

/* The inverse: a compact hostlist for hosts[0..count), in the same order, so that
 * expanding the result gives back exactly the same list. *out is malloc'd. */
int foehn_hostlist_compress(const char *const *hosts, size_t count, char **out, foehn_error *err);

/* Expands Slurm's task counts ("2(x3),1" -> 2,2,2,1) into a malloc'd array. */
int foehn_counts_expand(const char *counts, int **values, size_t *count, foehn_error *err);

void foehn_strv_free(char **strings, size_t count);

/* ---- job discovery ----------------------------------------------------- */

typedef enum foehn_launcher {
    FOEHN_LAUNCHER_NONE = 0,
    FOEHN_LAUNCHER_FOEHN,    /* foehn run */
    FOEHN_LAUNCHER_PMIX,     /* any PMIx server that says nothing else (prterun, ...) */
    FOEHN_LAUNCHER_SLURM,    /* srun */
    FOEHN_LAUNCHER_OPENMPI,  /* Open MPI mpirun (ORTE or PRRTE) */
    FOEHN_LAUNCHER_HYDRA,    /* MPICH / Intel MPI mpiexec.hydra */
    FOEHN_LAUNCHER_MVAPICH,  /* mpirun_rsh */
    FOEHN_LAUNCHER_PALS,     /* HPE Cray PALS mpiexec */
    FOEHN_LAUNCHER_FLUX,     /* flux run */
    FOEHN_LAUNCHER_LSF,      /* jsrun */
    FOEHN_LAUNCHER_TORCHRUN
} foehn_launcher;

typedef enum foehn_scheduler {
    FOEHN_SCHEDULER_NONE = 0,
    FOEHN_SCHEDULER_SLURM,
    FOEHN_SCHEDULER_PBS,
    FOEHN_SCHEDULER_FLUX,
    FOEHN_SCHEDULER_LSF,
    FOEHN_SCHEDULER_COBALT
} foehn_scheduler;

typedef enum foehn_gpu_vendor {
    FOEHN_GPU_NONE = 0,
    FOEHN_GPU_NVIDIA,
    FOEHN_GPU_AMD,
    FOEHN_GPU_INTEL
} foehn_gpu_vendor;

/* A number the environment does not tell (e.g. the size of a PMIx job, which
 * the process-management layer learns from PMIx itself). */
#define FOEHN_UNKNOWN (-1)

typedef struct foehn_job {
    foehn_launcher launcher;
    foehn_scheduler scheduler;
    char *job_id;           /* the scheduler's (else the launcher's) job id, or NULL */

    int rank, size;         /* FOEHN_UNKNOWN where the environment does not say */
    int local_rank, local_size;
    int node_index, num_nodes;

    char *hostname;         /* this process's host name */

    /* Where the job's ranks run: hosts in order, deduplicated, and how many ranks
     * each holds (ranks_per_host NULL where the launcher does not say). hosts is
     * NULL when the hosts cannot be known from the environment. */
    char **hosts;
    int *ranks_per_host;
    size_t nhosts;

    /* The scheduler's allocation: its hosts in order, deduplicated, and the task
     * slots on each (NULL where the scheduler does not say). */
    char **allocation_hosts;
    int *allocation_slots;
    size_t allocation_nhosts;

    foehn_gpu_vendor gpu_vendor;
    char **gpus;            /* devices this process may use, as the mask names them */
    size_t ngpus;
    int node_gpus;          /* devices the driver shows on this node; FOEHN_UNKNOWN if none read */
    const char *gpu_mask_variable; /* the variable that restricted gpus, or NULL */

    char *workdir;          /* where a job script expects to run */

    /* Which variable decided the launcher and the scheduler (static strings). */
    const char *launcher_variable;
    const char *scheduler_variable;
} foehn_job;

typedef struct foehn_discover_options {
    const char *sysroot;    /* prefix for /proc and /sys; NULL means "/" */
    const char *hostname;   /* NULL: taken from the snapshot's HOSTNAME, else gethostname() */
    const char *cwd;        /* NULL: getcwd() */
} foehn_discover_options;

/* Fills *job from envp (a NULL-terminated "KEY=VALUE" array, like environ).
 * On error *job is left cleared and err names the variable and its value. */
int foehn_job_discover(foehn_job *job, char *const *envp,
                       const foehn_discover_options *options, foehn_error *err);
void foehn_job_clear(foehn_job *job);

const char *foehn_launcher_name(foehn_launcher launcher);
const char *foehn_scheduler_name(foehn_scheduler scheduler);
const char *foehn_gpu_vendor_name(foehn_gpu_vendor vendor);

/* The job as one line of JSON (schema "foehn.job/1", see docs/job-schema.md);
 * *out is malloc'd. */
int foehn_job_to_json(const foehn_job *job, char **out);

/* The job as `export NAME=value` lines for `eval "$(foehn env --shell)"`. */
int foehn_job_to_shell(const foehn_job *job, char **out);

#ifdef __cplusplus
}
#endif
#endif /* FOEHN_H */
