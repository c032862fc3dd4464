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
    FOEHN_ERR_SYSTEM = -10, /* a system call failed; the message has strerror */
    FOEHN_ERR_MISMATCH = -11, /* peers called different collectives, or sizes differ */
    FOEHN_ERR_TRUNCATE = -12, /* a message larger than the receive buffer */
    FOEHN_ERR_CANCELLED = -13 /* a request was cancelled */
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

/* A rank's share of the accelerators this process sees (job->gpus, after every mask
 * in force: binding never widens one), for local_rank of local_size on this node:
 * G devices among L ranks give each G / L contiguous ones; fewer devices than ranks,
 * rank r shares device r mod G. The result is the "NAME=value" assignments to make
 * (CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES (+ HIP_VISIBLE_DEVICES when it was in
 * force) or ZE_AFFINITY_MASK): *assignments is a malloc'd array of *count strings
 * (foehn_strv_free). FOEHN_ERR_INVALID when there is nothing to bind or the local
 * rank is unknown. */
int foehn_gpu_share(const foehn_job *job, int local_rank, int local_size, char ***assignments,
                    size_t *count, foehn_error *err);


/* ---- layer 3: the communicator ------------------------------------------ */
/*
 * Ranks exchange endpoints through the process-management layer and talk to each
 * other directly over TCP (a full mesh, TCP_NODELAY). One progress thread per
 * process moves every byte; messages match by communicator, source and tag, in the
 * order each peer sent them (MPI's non-overtaking rule). Collectives run over the
 * same connections in a context of their own, each stamped with its kind and the
 * communicator's sequence number: a rank that calls a different collective than
 * its peers gets FOEHN_ERR_MISMATCH, never a wrong answer.
 *
 * A peer that dies (its connections close without a goodbye) makes every pending
 * and later operation fail with FOEHN_ERR_PEER naming it. Every wait is bounded:
 * FOEHN_COMM_TIMEOUT seconds (default 1800, torch's own default for gloo) unless
 * the call says otherwise; the error says what was waited for.
 *
 * Threads: every function may be called from any thread (the engine has one lock).
 * Counts are in elements of the dtype; sizes in bytes are size_t.
 */
#define FOEHN_ANY_SOURCE (-1)
#define FOEHN_ANY_TAG (-1)
#define FOEHN_PROC_NULL (-2)
#define FOEHN_UNDEFINED (-32766)   /* foehn_comm_split's color for "not in any part" */
#define FOEHN_TAG_MAX 2147483647

typedef enum foehn_dtype {
    FOEHN_BYTE = 0,     /* raw bytes: no arithmetic, bitwise ops allowed */
    FOEHN_BOOL,         /* C _Bool, one byte */
    FOEHN_INT8, FOEHN_UINT8, FOEHN_INT16, FOEHN_UINT16,
    FOEHN_INT32, FOEHN_UINT32, FOEHN_INT64, FOEHN_UINT64,
    FOEHN_FLOAT16,      /* IEEE binary16 */
    FOEHN_BFLOAT16,     /* bfloat16: the top half of a binary32 */
    FOEHN_FLOAT32, FOEHN_FLOAT64,
    FOEHN_LONG_DOUBLE,  /* C long double */
    FOEHN_COMPLEX64,    /* two float32: real, imaginary */
    FOEHN_COMPLEX128,   /* two float64 */
    /* value-index pairs for MINLOC/MAXLOC, laid out as C structs as MPI's are:
     * {float; int}, {double; int}, {long; int}, {int; int}, {short; int} */
    FOEHN_FLOAT_INT, FOEHN_DOUBLE_INT, FOEHN_LONG_INT, FOEHN_2INT, FOEHN_SHORT_INT,
    FOEHN_DTYPE_COUNT
} foehn_dtype;

typedef enum foehn_op {
    FOEHN_OP_SUM = 0, FOEHN_OP_PROD, FOEHN_OP_MIN, FOEHN_OP_MAX,
    FOEHN_OP_LAND, FOEHN_OP_LOR, FOEHN_OP_LXOR,
    FOEHN_OP_BAND, FOEHN_OP_BOR, FOEHN_OP_BXOR,
    FOEHN_OP_MINLOC, FOEHN_OP_MAXLOC,
    FOEHN_OP_REPLACE, /* inout = in (for completeness; MPI_REPLACE) */
    FOEHN_OP_COUNT
} foehn_op;

/* Size in bytes of one element; 0 for an unknown dtype. */
size_t foehn_dtype_size(foehn_dtype dtype);
const char *foehn_dtype_name(foehn_dtype dtype);
const char *foehn_op_name(foehn_op op);

/* inout[i] = in[i] op inout[i] for i < count (MPI_Reduce_local). FOEHN_ERR_INVALID
 * when op is not defined on dtype, by the MPI standard's table: logical ops on
 * integers and BOOL, bitwise ops on integers and BYTE, MIN/MAX on integers and reals,
 * SUM/PROD on those and complex, MINLOC/MAXLOC on the pair types. */
int foehn_reduce_local(const void *in, void *inout, size_t count, foehn_dtype dtype,
                       foehn_op op, foehn_error *err);

/* A user's reduction: inout[i] = in[i] op inout[i]; returns FOEHN_OK or an error
 * (set in err) that fails the collective. Non-commutative operations are applied in
 * rank order: the result is x0 op x1 op ... op x(n-1). */
typedef struct foehn_user_op {
    int (*fn)(const void *in, void *inout, size_t count, foehn_dtype dtype, void *ctx,
              foehn_error *err);
    void *ctx;
    int commute;
} foehn_user_op;

/* The reduction a collective applies: a built-in op, or (user != NULL) a user's. */
typedef struct foehn_reduction {
    foehn_op op;
    const foehn_user_op *user;
} foehn_reduction;

typedef struct foehn_comm foehn_comm;
typedef struct foehn_request foehn_request;

typedef struct foehn_msg_status {
    int source;     /* the sender's rank in the communicator */
    int tag;
    size_t bytes;   /* the message's length */
    int error;      /* FOEHN_OK or the request's failure */
    int cancelled;
} foehn_msg_status;

/* Joins the job (process management: discovery, the launcher's service, a fence)
 * and connects to every other rank; *world and *self are the process's
 * COMM_WORLD and COMM_SELF. Once per process; later calls return the same two.
 * timeout bounds the bootstrap (<= 0: FOEHN_TIMEOUT, else 300 s). */
int foehn_comm_init(foehn_comm **world, foehn_comm **self, double timeout, foehn_error *err);
/* Leaves: flushes every send, says goodbye to every peer and waits (bounded) for
 * theirs, closes, frees every communicator and request still held. */
void foehn_comm_finalize(void);
int foehn_comm_initialized(void);

int foehn_comm_rank(const foehn_comm *comm);
int foehn_comm_size(const foehn_comm *comm);
/* The world rank of comm's rank r (for messages that name peers). */
int foehn_comm_world_rank(const foehn_comm *comm, int r);
/* Collective: a new communicator with the same group and a fresh context. */
int foehn_comm_dup(foehn_comm *comm, foehn_comm **out, foehn_error *err);
/* Collective: ranks with the same color form one communicator, ordered by key then
 * by old rank; color FOEHN_UNDEFINED gives *out = NULL. */
int foehn_comm_split(foehn_comm *comm, int color, int key, foehn_comm **out, foehn_error *err);
/* Local: forgets comm (COMM_WORLD and COMM_SELF are freed by finalize only). */
void foehn_comm_free(foehn_comm *comm);
/* The default bound for waits (FOEHN_COMM_TIMEOUT, else 1800 s). */
double foehn_comm_timeout(void);

/* ---- point to point ---- */
/* Starts sending len bytes of buf to dest (FOEHN_PROC_NULL: completes at once). buf
 * must stay valid and unchanged until the request completes. tag in [0, TAG_MAX]. */
int foehn_isend(foehn_comm *comm, const void *buf, size_t len, int dest, int tag,
                foehn_request **req, foehn_error *err);
/* Starts receiving into buf (capacity cap bytes) from source (or FOEHN_ANY_SOURCE)
 * with tag (or FOEHN_ANY_TAG). A longer message fails the request with
 * FOEHN_ERR_TRUNCATE. buf NULL: the request allocates a buffer the size of the
 * message (take it with foehn_request_take). */
int foehn_irecv(foehn_comm *comm, void *buf, size_t cap, int source, int tag,
                foehn_request **req, foehn_error *err);
int foehn_send(foehn_comm *comm, const void *buf, size_t len, int dest, int tag,
               foehn_error *err);
int foehn_recv(foehn_comm *comm, void *buf, size_t cap, int source, int tag,
               foehn_msg_status *status, foehn_error *err);
/* Waits (timeout seconds; < 0: foehn_comm_timeout()) until a matching message has
 * arrived (not received): its status. */
int foehn_probe(foehn_comm *comm, int source, int tag, double timeout, foehn_msg_status *status,
                foehn_error *err);
/* *flag = 1 and status filled when one has arrived, else 0. */
int foehn_iprobe(foehn_comm *comm, int source, int tag, int *flag, foehn_msg_status *status,
                 foehn_error *err);

/* ---- requests ---- */
/* Waits until req completes (timeout seconds; < 0: foehn_comm_timeout()); fills
 * status (may be NULL). Returns the request's own result: FOEHN_OK, or its failure
 * with the message in err. A completed request may be waited on again (same result). */
int foehn_request_wait(foehn_request *req, double timeout, foehn_msg_status *status,
                       foehn_error *err);
/* *done = 1 when complete (then as wait), else 0. */
int foehn_request_test(foehn_request *req, int *done, foehn_msg_status *status, foehn_error *err);
/* Waits until at least one of reqs[0..n) completes (NULL entries are skipped):
 * *index is the first complete one, or -1 when all are NULL. */
int foehn_request_wait_any(foehn_request *const *reqs, size_t n, double timeout, size_t *index,
                           foehn_error *err);
/* Waits as wait_any, then says which are complete: done[i] = 1 for each (n entries),
 * *count of them (0 when all are NULL). */
int foehn_request_wait_some(foehn_request *const *reqs, size_t n, double timeout,
                            unsigned char *done, size_t *count, foehn_error *err);
/* A receive not yet matched is withdrawn (status.cancelled = 1); anything else
 * cannot be and completes as usual. Never blocks. */
void foehn_request_cancel(foehn_request *req);
/* The buffer an allocating receive (buf NULL) filled, handed to the caller (malloc'd,
 * free with free()); *data NULL when none or already taken. */
void foehn_request_take(foehn_request *req, void **data, size_t *len);
/* Releases the caller's hold. A request still running runs on (a send still sends,
 * so buf must stay valid until it would have completed). NULL is fine. */
void foehn_request_free(foehn_request *req);

/* ---- collectives (blocking; each has a nonblocking foehn_i* twin below) ----
 * sendbuf FOEHN_IN_PLACE: the data is taken from recvbuf, as MPI_IN_PLACE. */
#define FOEHN_IN_PLACE ((const void *)1)

int foehn_barrier(foehn_comm *comm, foehn_error *err);
int foehn_bcast(foehn_comm *comm, void *buf, size_t bytes, int root, foehn_error *err);
int foehn_reduce(foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t count,
                 foehn_dtype dtype, foehn_reduction op, int root, foehn_error *err);
int foehn_allreduce(foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t count,
                    foehn_dtype dtype, foehn_reduction op, foehn_error *err);
/* Each rank gets count elements: recvbuf[i] = reduction of the i-th blocks. */
int foehn_reduce_scatter_block(foehn_comm *comm, const void *sendbuf, void *recvbuf,
                               size_t count, foehn_dtype dtype, foehn_reduction op,
                               foehn_error *err);
int foehn_scan(foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t count,
               foehn_dtype dtype, foehn_reduction op, foehn_error *err);
/* recvbuf on rank 0 is left untouched, as MPI says. */
int foehn_exscan(foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t count,
                 foehn_dtype dtype, foehn_reduction op, foehn_error *err);
/* Byte-based data movement: every rank's block is `bytes` long. */
int foehn_gather(foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t bytes, int root,
                 foehn_error *err);
int foehn_scatter(foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t bytes,
                  int root, foehn_error *err);
int foehn_allgather(foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t bytes,
                    foehn_error *err);
int foehn_alltoall(foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t bytes,
                   foehn_error *err);
/* Vector forms: counts and displacements in bytes, one per rank (significant where
 * MPI says: at the root for gatherv/scatterv). */
int foehn_gatherv(foehn_comm *comm, const void *sendbuf, size_t sendbytes, void *recvbuf,
                  const size_t *recvbytes, const size_t *displs, int root, foehn_error *err);
int foehn_scatterv(foehn_comm *comm, const void *sendbuf, const size_t *sendbytes,
                   const size_t *displs, void *recvbuf, size_t recvbytes, int root,
                   foehn_error *err);
int foehn_allgatherv(foehn_comm *comm, const void *sendbuf, size_t sendbytes, void *recvbuf,
                     const size_t *recvbytes, const size_t *displs, foehn_error *err);
int foehn_alltoallv(foehn_comm *comm, const void *sendbuf, const size_t *sendbytes,
                    const size_t *sdispls, void *recvbuf, const size_t *recvbytes,
                    const size_t *rdispls, foehn_error *err);

/* Nonblocking twins: the same arguments plus the request; buffers (and count and
 * displacement arrays) must stay valid until it completes. Collectives on one
 * communicator must be started in the same order on every rank; they run in that
 * order, overlapping the caller's work. */
int foehn_ibarrier(foehn_comm *comm, foehn_request **req, foehn_error *err);
int foehn_ibcast(foehn_comm *comm, void *buf, size_t bytes, int root, foehn_request **req,
                 foehn_error *err);
int foehn_ireduce(foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t count,
                  foehn_dtype dtype, foehn_reduction op, int root, foehn_request **req,
                  foehn_error *err);
int foehn_iallreduce(foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t count,
                     foehn_dtype dtype, foehn_reduction op, foehn_request **req,
                     foehn_error *err);
int foehn_ireduce_scatter_block(foehn_comm *comm, const void *sendbuf, void *recvbuf,
                                size_t count, foehn_dtype dtype, foehn_reduction op,
                                foehn_request **req, foehn_error *err);
int foehn_iscan(foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t count,
                foehn_dtype dtype, foehn_reduction op, foehn_request **req, foehn_error *err);
int foehn_iexscan(foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t count,
                  foehn_dtype dtype, foehn_reduction op, foehn_request **req, foehn_error *err);
int foehn_igather(foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t bytes, int root,
                  foehn_request **req, foehn_error *err);
int foehn_iscatter(foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t bytes,
                   int root, foehn_request **req, foehn_error *err);
int foehn_iallgather(foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t bytes,
                     foehn_request **req, foehn_error *err);
int foehn_ialltoall(foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t bytes,
                    foehn_request **req, foehn_error *err);
int foehn_igatherv(foehn_comm *comm, const void *sendbuf, size_t sendbytes, void *recvbuf,
                   const size_t *recvbytes, const size_t *displs, int root,
                   foehn_request **req, foehn_error *err);
int foehn_iscatterv(foehn_comm *comm, const void *sendbuf, const size_t *sendbytes,
                    const size_t *displs, void *recvbuf, size_t recvbytes, int root,
                    foehn_request **req, foehn_error *err);
int foehn_iallgatherv(foehn_comm *comm, const void *sendbuf, size_t sendbytes, void *recvbuf,
                      const size_t *recvbytes, const size_t *displs, foehn_request **req,
                      foehn_error *err);
int foehn_ialltoallv(foehn_comm *comm, const void *sendbuf, const size_t *sendbytes,
                     const size_t *sdispls, void *recvbuf, const size_t *recvbytes,
                     const size_t *rdispls, foehn_request **req, foehn_error *err);

/* Object collectives for languages that serialise (Python's pickles): every rank
 * contributes one blob of any length; results are malloc'd and owned by the caller.
 * bcast: the root's blob to all (*out, *outlen on every rank, the root's a copy).
 * gather: at the root, *outs[i]/(*outlens)[i] for each rank (arrays malloc'd, free
 * each blob and both arrays); elsewhere NULL. allgather: the same on every rank.
 * alltoall: ins[j] goes to rank j; *outs[i] came from rank i. scatter: the root's
 * ins[j] to rank j.
 * The nonblocking forms (foehn_iNAME_blob) fill the outputs when the request completes;
 * the input blobs and the ins/inlens arrays must stay put until then. */
int foehn_bcast_blob(foehn_comm *comm, const void *in, size_t inlen, int root, void **out,
                     size_t *outlen, foehn_error *err);
int foehn_gather_blob(foehn_comm *comm, const void *in, size_t inlen, int root, void ***outs,
                      size_t **outlens, foehn_error *err);
int foehn_allgather_blob(foehn_comm *comm, const void *in, size_t inlen, void ***outs,
                         size_t **outlens, foehn_error *err);
int foehn_scatter_blob(foehn_comm *comm, const void *const *ins, const size_t *inlens,
                       int root, void **out, size_t *outlen, foehn_error *err);
int foehn_alltoall_blob(foehn_comm *comm, const void *const *ins, const size_t *inlens,
                        void ***outs, size_t **outlens, foehn_error *err);
int foehn_ibcast_blob(foehn_comm *comm, const void *in, size_t inlen, int root, void **out,
                      size_t *outlen, foehn_request **req, foehn_error *err);
int foehn_igather_blob(foehn_comm *comm, const void *in, size_t inlen, int root, void ***outs,
                       size_t **outlens, foehn_request **req, foehn_error *err);
int foehn_iallgather_blob(foehn_comm *comm, const void *in, size_t inlen, void ***outs,
                          size_t **outlens, foehn_request **req, foehn_error *err);
int foehn_iscatter_blob(foehn_comm *comm, const void *const *ins, const size_t *inlens,
                        int root, void **out, size_t *outlen, foehn_request **req,
                        foehn_error *err);
int foehn_ialltoall_blob(foehn_comm *comm, const void *const *ins, const size_t *inlens,
                         void ***outs, size_t **outlens, foehn_request **req, foehn_error *err);

/* Alltoall of objects in pieces: an object is a list of pieces (a pickle and the
 * buffers it refers to out of band, pickle protocol 5) that travel each from where
 * it lies, never copied into one blob. ins[j] goes to rank j; *outs (comm size
 * entries) holds, at i, what rank i sent, as the same pieces, each malloc'd (empty
 * ones NULL); free it with foehn_pieces_free(*outs, size). Nonblocking: the pieces
 * and ins must stay put, and *outs is filled, when the request completes. */
typedef struct foehn_pieces {
    size_t n;                 /* pieces */
    const void **data;        /* each piece's bytes */
    size_t *lens;             /* and length */
} foehn_pieces;
int foehn_alltoall_pieces(foehn_comm *comm, const foehn_pieces *ins, foehn_pieces **outs,
                          foehn_error *err);
int foehn_ialltoall_pieces(foehn_comm *comm, const foehn_pieces *ins, foehn_pieces **outs,
                           foehn_request **req, foehn_error *err);
void foehn_pieces_free(foehn_pieces *objs, size_t count);

#ifdef __cplusplus
}
#endif
#endif /* FOEHN_H */
