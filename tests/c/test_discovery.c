/* Job discovery from recorded environments, written from each launcher's and
 * scheduler's documentation: one case per launcher and scheduler, nested ones,
 * and malformed input that must be refused with the variable named. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "foehn.h"
#include "job_check.h"

#define U FOEHN_UNKNOWN
#define MAXENV 40

typedef struct expect {
    placement where;
    const char *job_id;
    const char *allocation;       /* space separated; NULL: none */
    const char *slots;            /* space separated; NULL: none */
} expect;

typedef struct job_case {
    const char *name;
    const char *env[MAXENV];
    expect want;
} job_case;

static char tmpdir[] = "/tmp/foehn-test-XXXXXX";

/* Writes a node file under tmpdir; returns its path (static storage per slot). */
static const char *nodefile(int slot, const char *text)
{
    static char paths[8][256];
    snprintf(paths[slot], sizeof paths[slot], "%s/nodefile%d", tmpdir, slot);
    FILE *f = fopen(paths[slot], "w");
    fputs(text, f);
    fclose(f);
    return paths[slot];
}

static void run_case(const job_case *c)
{
    fprintf(stderr, "case %s\n", c->name);
    foehn_discover_options opt = {.sysroot = "/nonexistent-sysroot", .hostname = "h1", .cwd = "/work"};
    foehn_job job;
    foehn_error err;
    int rc = foehn_job_discover(&job, (char *const *)c->env, &opt, &err);
    CHECK_INT(rc, FOEHN_OK);
    if (rc != FOEHN_OK) {
        fprintf(stderr, "  error: %s\n", err.message);
        return;
    }
    const expect *w = &c->want;
    check_placement(&job, &w->where);
    CHECK_STR(job.job_id, w->job_id);
    char buf[1024];
    join_strings(buf, sizeof buf, job.allocation_hosts, job.allocation_nhosts);
    CHECK_STR(job.allocation_hosts ? buf : NULL, w->allocation);
    join_ints(buf, sizeof buf, job.allocation_slots, job.allocation_nhosts);
    CHECK_STR(job.allocation_slots ? buf : NULL, w->slots);
    foehn_job_clear(&job);
}

typedef struct bad_case {
    const char *name;
    const char *env[MAXENV];
    int status;
    const char *message[3]; /* each must appear in the error */
} bad_case;

static void run_bad(const bad_case *c)
{
    fprintf(stderr, "bad case %s\n", c->name);
    foehn_discover_options opt = {.sysroot = "/nonexistent-sysroot", .hostname = "h1", .cwd = "/work"};
    foehn_job job;
    foehn_error err;
    int rc = foehn_job_discover(&job, (char *const *)c->env, &opt, &err);
    CHECK_INT(rc, c->status);
    for (int i = 0; i < 3 && c->message[i]; i++)
        CHECK_CONTAINS(err.message, c->message[i]);
    /* A refused environment leaves a cleared record behind. */
    CHECK(job.hosts == NULL && job.job_id == NULL && job.hostname == NULL);
    foehn_job_clear(&job);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    char pbs_nodefile[300], lsf_hostfile[300], cobalt_nodefile[300], bad_nodefile[300];
    snprintf(pbs_nodefile, sizeof pbs_nodefile, "PBS_NODEFILE=%s",
             nodefile(0, "x3005c0s13b0n0.hsn.cm.polaris.alcf.anl.gov\nx3005c0s13b0n0.hsn.cm.polaris.alcf.anl.gov\n"
                         "h1.hsn.cm.polaris.alcf.anl.gov\nh1.hsn.cm.polaris.alcf.anl.gov\n"));
    snprintf(lsf_hostfile, sizeof lsf_hostfile, "LSB_DJOB_HOSTFILE=%s",
             nodefile(1, "batch3\nh41n03\nh41n03\nh41n03\nh1\nh1\nh1\n"));
    snprintf(cobalt_nodefile, sizeof cobalt_nodefile, "COBALT_NODEFILE=%s",
             nodefile(2, "nid00010\nnid00011\n"));
    snprintf(bad_nodefile, sizeof bad_nodefile, "PBS_NODEFILE=%s", nodefile(3, "good\nbad\x01name\n"));

    const job_case cases[] = {
        {"plain process",
         {NULL},
         {{"none", "none", 0, 1, 0, 1, 0, 1, "h1", "1"}, NULL, NULL, NULL}},
        {"srun, two nodes, rank 3 of 4",
         {"SLURM_JOB_ID=42", "SLURM_JOBID=42", "SLURM_STEP_ID=0", "SLURM_STEPID=0",
          "SLURM_PROCID=3", "SLURM_NTASKS=4", "SLURM_STEP_NUM_TASKS=4", "SLURM_LOCALID=1",
          "SLURM_NODEID=1", "SLURM_STEP_NUM_NODES=2", "SLURM_NNODES=2",
          "SLURM_STEP_NODELIST=n[1-2]", "SLURM_STEP_TASKS_PER_NODE=2(x2)",
          "SLURM_JOB_NODELIST=n[1-2]", "SLURM_NODELIST=n[1-2]", "SLURM_TASKS_PER_NODE=2(x2)",
          "SLURM_JOB_NUM_NODES=2", "SLURMD_NODENAME=n2", "SLURM_SUBMIT_DIR=/home/u", NULL},
         {{"slurm", "slurm", 3, 4, 1, 2, 1, 2, "n1 n2", "2 2"}, "42", "n1 n2", NULL}},
        {"srun, uneven tasks, step on part of the allocation",
         {"SLURM_JOB_ID=7", "SLURM_STEP_ID=3", "SLURM_PROCID=2", "SLURM_STEP_NUM_TASKS=3",
          "SLURM_NTASKS=3", "SLURM_LOCALID=0", "SLURM_NODEID=1", "SLURM_STEP_NUM_NODES=2",
          "SLURM_STEP_NODELIST=gpu[07-08]", "SLURM_STEP_TASKS_PER_NODE=2,1",
          "SLURM_JOB_NODELIST=gpu[07-08,11]", "SLURM_TASKS_PER_NODE=4(x3)",
          "SLURM_JOB_NUM_NODES=3", NULL},
         {{"slurm", "slurm", 2, 3, 0, 1, 1, 2, "gpu07 gpu08", "2 1"}, "7", "gpu07 gpu08 gpu11", NULL}},
        {"mpirun in sbatch, a rank on the second node: srun started mpirun's daemon there "
         "as a one-task step, whose SLURM_TASKS_PER_NODE says nothing of the allocation",
         {"SLURM_JOB_ID=1", "SLURM_STEP_ID=0", "SLURM_PROCID=0", "SLURM_NTASKS=1",
          "SLURM_NNODES=1", "SLURM_NODEID=0", "SLURM_STEP_NODELIST=n2", "SLURM_TASKS_PER_NODE=1",
          "SLURM_STEP_TASKS_PER_NODE=1", "SLURM_JOB_NODELIST=n[1-2]", "SLURM_JOB_NUM_NODES=2",
          "SLURMD_NODENAME=n2", "OMPI_COMM_WORLD_RANK=2", "OMPI_COMM_WORLD_SIZE=4",
          "OMPI_COMM_WORLD_LOCAL_RANK=0", "OMPI_COMM_WORLD_LOCAL_SIZE=2", NULL},
         {{"openmpi", "slurm", 2, 4, 0, 2, U, 2, "n1 n2", NULL}, "1", "n1 n2", NULL}},
        {"mpiexec.hydra in sbatch forwards the batch node's SLURMD_NODENAME and "
         "SLURM_NODEID to every rank: the host name decides the node",
         {"SLURM_JOB_ID=2", "SLURM_STEP_ID=0", "SLURM_NODEID=0", "SLURMD_NODENAME=n1",
          "SLURM_JOB_NODELIST=n1,h1", "PMI_RANK=3", "PMI_SIZE=4", "MPI_LOCALRANKID=1",
          "MPI_LOCALNRANKS=2", "PMI_FD=9", NULL},
         {{"hydra", "slurm", 3, 4, 1, 2, 1, 2, "n1 h1", NULL}, "2", "n1 h1", NULL}},
        {"srun --mpi=pmi2 is srun, not Hydra",
         {"SLURM_JOB_ID=9", "SLURM_STEP_ID=0", "SLURM_PROCID=1", "SLURM_NTASKS=2",
          "SLURM_LOCALID=1", "SLURM_NODEID=0", "SLURM_NNODES=1", "SLURM_STEP_NODELIST=h1",
          "SLURM_STEP_TASKS_PER_NODE=2", "SLURM_JOB_NODELIST=h1", "PMI_FD=7", "PMI_RANK=1",
          "PMI_SIZE=2", "PMI_JOBID=9.0", NULL},
         {{"slurm", "slurm", 1, 2, 1, 2, 0, 1, "h1", "2"}, "9", "h1", NULL}},
        {"sbatch script: a job of one inside the allocation",
         {"SLURM_JOB_ID=11", "SLURM_JOBID=11", "SLURM_PROCID=0", "SLURM_LOCALID=0",
          "SLURM_NODEID=0", "SLURM_JOB_NODELIST=n[1-2]", "SLURM_TASKS_PER_NODE=2(x2)",
          "SLURM_JOB_NUM_NODES=2", "SLURM_NTASKS=4", NULL},
         {{"none", "slurm", 0, 1, 0, 1, 0, 1, "h1", "1"}, "11", "n1 n2", "2 2"}},
        {"mpirun inside sbatch: the inner launcher wins over SLURM_PROCID=0",
         {"SLURM_JOB_ID=12", "SLURM_PROCID=0", "SLURM_LOCALID=0", "SLURM_NODEID=0",
          "SLURM_JOB_NODELIST=h[0-1]", "SLURM_TASKS_PER_NODE=2(x2)", "SLURM_JOB_NUM_NODES=2",
          "OMPI_COMM_WORLD_RANK=3", "OMPI_COMM_WORLD_SIZE=4", "OMPI_COMM_WORLD_LOCAL_RANK=1",
          "OMPI_COMM_WORLD_LOCAL_SIZE=2", "PMIX_RANK=3", "PMIX_NAMESPACE=1234@1", NULL},
         {{"openmpi", "slurm", 3, 4, 1, 2, 1, 2, "h0 h1", "2 2"}, "12", "h0 h1", "2 2"}},
        {"mpirun on one machine",
         {"OMPI_COMM_WORLD_RANK=2", "OMPI_COMM_WORLD_SIZE=4", "OMPI_COMM_WORLD_LOCAL_RANK=2",
          "OMPI_COMM_WORLD_LOCAL_SIZE=4", "PMIX_RANK=2", "PMIX_NAMESPACE=prterun-h1-99@1", NULL},
         {{"openmpi", "none", 2, 4, 2, 4, 0, 1, "h1", "4"}, NULL, NULL, NULL}},
        {"mpiexec.hydra (MPICH)",
         {"PMI_RANK=1", "PMI_SIZE=2", "PMI_FD=6", "MPI_LOCALRANKID=1", "MPI_LOCALNRANKS=2", NULL},
         {{"hydra", "none", 1, 2, 1, 2, 0, 1, "h1", "2"}, NULL, NULL, NULL}},
        {"mpiexec.hydra in a PBS job: hosts and slots from the node file",
         {"PBS_JOBID=1234.polaris-pbs-01", pbs_nodefile, "PBS_O_WORKDIR=/home/u/run",
          "PMI_RANK=3", "PMI_SIZE=4", "MPI_LOCALRANKID=1", "MPI_LOCALNRANKS=2", NULL},
         {{"hydra", "pbs", 3, 4, 1, 2, 1, 2, "x3005c0s13b0n0.hsn.cm.polaris.alcf.anl.gov h1.hsn.cm.polaris.alcf.anl.gov", "2 2"}, "1234.polaris-pbs-01", "x3005c0s13b0n0.hsn.cm.polaris.alcf.anl.gov h1.hsn.cm.polaris.alcf.anl.gov", "2 2"}},
        {"PALS mpiexec under PBS (Polaris, Aurora)",
         {"PBS_JOBID=77.aurora", pbs_nodefile, "PALS_RANKID=2", "PALS_LOCAL_RANKID=0",
          "PALS_NODEID=1", "PALS_APID=abc-123", "PMI_RANK=2", "PMI_SIZE=4", "PMI_LOCAL_RANK=0",
          "PMI_LOCAL_SIZE=2", NULL},
         {{"pals", "pbs", 2, 4, 0, 2, 1, 2, "x3005c0s13b0n0.hsn.cm.polaris.alcf.anl.gov h1.hsn.cm.polaris.alcf.anl.gov", "2 2"}, "77.aurora", "x3005c0s13b0n0.hsn.cm.polaris.alcf.anl.gov h1.hsn.cm.polaris.alcf.anl.gov", "2 2"}},
        {"flux run (serves PMI too)",
         {"FLUX_TASK_RANK=5", "FLUX_TASK_LOCAL_ID=1", "FLUX_JOB_SIZE=8", "FLUX_JOB_NNODES=2",
          "FLUX_JOB_ID=f3ETxsR9H", "FLUX_URI=local:///tmp/flux-x/local-0", "PMI_RANK=5",
          "PMI_SIZE=8", "PMI_FD=4", NULL},
         {{"flux", "flux", 5, 8, 1, U, U, 2, NULL, NULL}, "f3ETxsR9H", NULL, NULL}},
        {"flux with a node list",
         {"FLUX_TASK_RANK=1", "FLUX_TASK_LOCAL_ID=1", "FLUX_JOB_SIZE=4", "FLUX_JOB_NNODES=2",
          "FLUX_JOB_ID=f2", "FLUX_JOB_NODELIST=corona[171,173]", NULL},
         {{"flux", "flux", 1, 4, 1, U, U, 2, "corona171 corona173", NULL}, "f2", "corona171 corona173", NULL}},
        {"jsrun under LSF (Spectrum MPI sets OMPI_* too)",
         {"LSB_JOBID=555", "LSB_MCPU_HOSTS=batch3 1 h41n03 42 h1 42", "JSM_NAMESPACE_RANK=7",
          "JSM_NAMESPACE_SIZE=12", "JSM_NAMESPACE_LOCAL_RANK=1", "JSM_NAMESPACE_LOCAL_SIZE=6",
          "OMPI_COMM_WORLD_RANK=7", "OMPI_COMM_WORLD_SIZE=12", "OMPI_COMM_WORLD_LOCAL_RANK=1",
          "OMPI_COMM_WORLD_LOCAL_SIZE=6", NULL},
         {{"lsf", "lsf", 7, 12, 1, 6, 1, 2, "h41n03 h1", NULL}, "555", "h41n03 h1", "42 42"}},
        {"LSF host file wins over LSB_MCPU_HOSTS; launch node dropped",
         {"LSB_JOBID=556", lsf_hostfile, "LSB_MCPU_HOSTS=batch3 1 h41n03 3 h1 3", NULL},
         {{"none", "lsf", 0, 1, 0, 1, 0, 1, "h1", "1"}, "556", "h41n03 h1", "3 3"}},
        {"Cobalt node file",
         {"COBALT_JOBID=31337", cobalt_nodefile, NULL},
         {{"none", "cobalt", 0, 1, 0, 1, 0, 1, "h1", "1"}, "31337", "nid00010 nid00011", "1 1"}},
        {"mpirun_rsh (MVAPICH)",
         {"MV2_COMM_WORLD_RANK=0", "MV2_COMM_WORLD_SIZE=2", "MV2_COMM_WORLD_LOCAL_RANK=0",
          "MV2_COMM_WORLD_LOCAL_SIZE=2", NULL},
         {{"mvapich", "none", 0, 2, 0, 2, 0, 1, "h1", "2"}, NULL, NULL, NULL}},
        {"a PMIx server that says only the rank",
         {"PMIX_RANK=1", "PMIX_NAMESPACE=prterun-h1-4242@1", "PMIX_SERVER_URI41=x", NULL},
         {{"pmix", "none", 1, U, U, U, U, U, NULL, NULL}, "prterun-h1-4242@1", NULL, NULL}},
        {"torchrun inside srun: torchrun's variables win",
         {"SLURM_JOB_ID=20", "SLURM_STEP_ID=0", "SLURM_PROCID=0", "SLURM_NTASKS=2",
          "SLURM_LOCALID=0", "SLURM_NODEID=0", "SLURM_STEP_NODELIST=n[1-2]",
          "SLURM_JOB_NODELIST=n[1-2]", "SLURM_STEP_TASKS_PER_NODE=1(x2)",
          "TORCHELASTIC_RUN_ID=none", "RANK=5", "WORLD_SIZE=8", "LOCAL_RANK=1",
          "LOCAL_WORLD_SIZE=4", "GROUP_RANK=1", "GROUP_WORLD_SIZE=2", "MASTER_ADDR=n1",
          "MASTER_PORT=29500", NULL},
         {{"torchrun", "slurm", 5, 8, 1, 4, 1, 2, "n1 n2", NULL}, "20", "n1 n2", NULL}},
        {"foehn run",
         {"FOEHN_RANK=2", "FOEHN_SIZE=4", "FOEHN_LOCAL_RANK=2", "FOEHN_LOCAL_SIZE=4",
          "FOEHN_JOB_ID=foehn-h1-1234", NULL},
         {{"foehn", "none", 2, 4, 2, 4, 0, 1, "h1", "4"}, "foehn-h1-1234", NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);

    const bad_case bad[] = {
        {"non-numeric rank", {"SLURM_JOB_ID=1", "SLURM_STEP_ID=0", "SLURM_PROCID=abc", NULL},
         FOEHN_ERR_INVALID, {"SLURM_PROCID", "\"abc\""}},
        {"negative size", {"OMPI_COMM_WORLD_RANK=0", "OMPI_COMM_WORLD_SIZE=-4", NULL},
         FOEHN_ERR_INVALID, {"OMPI_COMM_WORLD_SIZE", "\"-4\""}},
        {"rank not below size", {"OMPI_COMM_WORLD_RANK=4", "OMPI_COMM_WORLD_SIZE=4", NULL},
         FOEHN_ERR_INVALID, {"OMPI_COMM_WORLD_RANK=\"4\"", "OMPI_COMM_WORLD_SIZE=\"4\""}},
        {"local rank not below local size",
         {"PMI_RANK=0", "PMI_SIZE=4", "MPI_LOCALRANKID=2", "MPI_LOCALNRANKS=2", NULL},
         FOEHN_ERR_INVALID, {"MPI_LOCALRANKID=\"2\""}},
        {"broken step hostlist",
         {"SLURM_JOB_ID=1", "SLURM_STEP_ID=0", "SLURM_PROCID=0", "SLURM_STEP_NODELIST=n[1-2",
          NULL},
         FOEHN_ERR_INVALID, {"SLURM_STEP_NODELIST", "n[1-2"}},
        {"counts that do not match the hosts",
         {"SLURM_JOB_ID=1", "SLURM_STEP_ID=0", "SLURM_PROCID=0", "SLURM_STEP_NODELIST=n[1-2]",
          "SLURM_STEP_TASKS_PER_NODE=2(x3)", NULL},
         FOEHN_ERR_INVALID, {"SLURM_STEP_TASKS_PER_NODE=\"2(x3)\"", "3 counts", "2 hosts"}},
        {"node count that does not match the node list",
         {"SLURM_JOB_ID=1", "SLURM_JOB_NODELIST=n[1-2]", "SLURM_JOB_NUM_NODES=3", NULL},
         FOEHN_ERR_INVALID, {"SLURM_JOB_NUM_NODES=\"3\"", "2 hosts"}},
        {"allocation counts that do not match its hosts (a batch script, no step)",
         {"SLURM_JOB_ID=1", "SLURM_JOB_NODELIST=n[1-2]", "SLURM_TASKS_PER_NODE=1", NULL},
         FOEHN_ERR_INVALID, {"SLURM_TASKS_PER_NODE=\"1\"", "SLURM_JOB_NODELIST=\"n[1-2]\""}},
        {"malformed task counts",
         {"SLURM_JOB_ID=1", "SLURM_JOB_NODELIST=n[1-2]", "SLURM_TASKS_PER_NODE=2(x", NULL},
         FOEHN_ERR_INVALID, {"SLURM_TASKS_PER_NODE", "2(x"}},
        {"node file that does not exist",
         {"PBS_JOBID=1", "PBS_NODEFILE=/nonexistent/nodefile", NULL},
         FOEHN_ERR_IO, {"PBS_NODEFILE", "/nonexistent/nodefile"}},
        {"node file with garbage", {"PBS_JOBID=1", bad_nodefile, NULL},
         FOEHN_ERR_INVALID, {"PBS_NODEFILE", "line 2"}},
        {"host/slot pairs with a bad count", {"LSB_JOBID=1", "LSB_MCPU_HOSTS=h1 x", NULL},
         FOEHN_ERR_INVALID, {"LSB_MCPU_HOSTS", "\"x\""}},
        {"a bad CUDA mask", {"CUDA_VISIBLE_DEVICES=0,gpu1", NULL},
         FOEHN_ERR_INVALID, {"CUDA_VISIBLE_DEVICES=\"0,gpu1\"", "\"gpu1\""}},
        {"node index beyond the step's hosts",
         {"SLURM_JOB_ID=1", "SLURM_STEP_ID=0", "SLURM_PROCID=0", "SLURM_NODEID=5",
          "SLURM_STEP_NODELIST=n[1-2]", NULL},
         FOEHN_ERR_INVALID, {"node index 5", "SLURM_STEP_NODELIST"}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        run_bad(&bad[i]);

    for (int slot = 0; slot < 4; slot++) {
        char path[300];
        snprintf(path, sizeof path, "%s/nodefile%d", tmpdir, slot);
        unlink(path);
    }
    rmdir(tmpdir);
    return check_summary("discovery");
}
