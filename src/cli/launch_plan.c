/* The launch line for the allocation: hosts, ranks per host, accelerators per
 * rank, then the scheduler's own launcher with its own flags. Every choice leaves a
 * sentence in plan->why saying what decided it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/launch.h"
#include "common/error.h"
#include "common/strbuf.h"
#include "discovery/env.h"

/* Appends a formatted string to v; a failed allocation latches in *rc. */
static void pushf(foehn_strv *v, int *rc, const char *fmt, ...) FOEHN_PRINTF(3, 4);
static void pushf(foehn_strv *v, int *rc, const char *fmt, ...)
{
    if (*rc != FOEHN_OK)
        return;
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (len < 0) {
        *rc = FOEHN_ERR_NOMEM;
        return;
    }
    *rc = foehn_strv_push(v, s);
    free(s);
}

static const char *vendor_title(foehn_gpu_vendor v)
{
    switch (v) {
    case FOEHN_GPU_NVIDIA: return "NVIDIA";
    case FOEHN_GPU_AMD: return "AMD";
    case FOEHN_GPU_INTEL: return "Intel";
    default: return "no";
    }
}

/* "n1,n2" (for --hosts style flags). */
static char *joined(const foehn_strv *hosts, size_t n)
{
    foehn_strbuf b;
    foehn_strbuf_init(&b);
    for (size_t i = 0; i < n; i++)
        foehn_strbuf_appendf(&b, "%s%s", i ? "," : "", hosts->items[i]);
    char *out = NULL;
    foehn_strbuf_finish(&b, &out);
    return out;
}

/* ---- the shape: hosts, ranks per host, accelerators ---------------------- */

static int choose_hosts(const foehn_job *job, const launch_options *opt, launch_plan *p,
                        foehn_error *err)
{
    int rc = FOEHN_OK;
    if (opt->hostfile) {
        rc = launch_read_hostfile(opt->hostfile, &p->hosts, err);
        if (rc != FOEHN_OK)
            return rc;
        pushf(&p->why, &rc, "hosts: the %zu in --hostfile %s", p->hosts.len, opt->hostfile);
    } else if (job->allocation_hosts && job->allocation_nhosts > 0) {
        for (size_t i = 0; i < job->allocation_nhosts && rc == FOEHN_OK; i++)
            rc = foehn_strv_push(&p->hosts, job->allocation_hosts[i]);
        pushf(&p->why, &rc, "hosts: the %s allocation's %zu (%s)",
              foehn_scheduler_name(job->scheduler), p->hosts.len,
              job->scheduler_variable ? job->scheduler_variable : "its variables");
    } else {
        rc = foehn_strv_push(&p->hosts, job->hostname);
        pushf(&p->why, &rc, "hosts: this one (%s): no scheduler allocation and no --hostfile",
              job->hostname);
    }
    if (rc != FOEHN_OK)
        return foehn_fail(err, rc, "out of memory");
    if (p->hosts.len == 0)
        return foehn_fail(err, FOEHN_ERR_INVALID, "--hostfile %s names no hosts", opt->hostfile);
    return FOEHN_OK;
}

static int choose_shape(const foehn_job *job, const launch_options *opt, launch_plan *p,
                        foehn_error *err)
{
    int rc = FOEHN_OK;
    int avail = (int)p->hosts.len;
    p->gpus_per_host = job->gpu_vendor == FOEHN_GPU_NONE ? 0 : (int)job->ngpus;
    if (p->gpus_per_host > 0)
        pushf(&p->why, &rc, "accelerators: %d %s per host (%s)", p->gpus_per_host,
              vendor_title(job->gpu_vendor),
              job->gpu_mask_variable ? job->gpu_mask_variable : "the driver's files on this node");
    else
        pushf(&p->why, &rc, "accelerators: none on this node");

    if (opt->nhosts > 0) {
        if (opt->nhosts > avail)
            return foehn_fail(err, FOEHN_ERR_INVALID, "--nhosts %d: only %d host%s to use (%s)",
                              opt->nhosts, avail, avail == 1 ? "" : "s", p->why.items[0]);
        p->nhosts = opt->nhosts;
        pushf(&p->why, &rc, "%d host%s: --nhosts", p->nhosts, p->nhosts == 1 ? "" : "s");
    } else if (opt->n > 0 && opt->ppn > 0) {
        p->nhosts = (opt->n + opt->ppn - 1) / opt->ppn;
        if (p->nhosts > avail)
            return foehn_fail(err, FOEHN_ERR_INVALID,
                              "-n %d at --ppn %d needs %d hosts; only %d to use", opt->n,
                              opt->ppn, p->nhosts, avail);
        pushf(&p->why, &rc, "%d host%s: -n %d at --ppn %d", p->nhosts,
              p->nhosts == 1 ? "" : "s", opt->n, opt->ppn);
    } else {
        p->nhosts = avail;
        pushf(&p->why, &rc, "%d host%s: all of them", p->nhosts, p->nhosts == 1 ? "" : "s");
    }

    if (opt->ppn > 0) {
        p->ppn = opt->ppn;
        pushf(&p->why, &rc, "%d rank%s per host: --ppn", p->ppn, p->ppn == 1 ? "" : "s");
    } else if (opt->n > 0) {
        p->ppn = (opt->n + p->nhosts - 1) / p->nhosts;
        pushf(&p->why, &rc, "%d rank%s per host: -n %d over %d host%s", p->ppn,
              p->ppn == 1 ? "" : "s", opt->n, p->nhosts, p->nhosts == 1 ? "" : "s");
    } else if (p->gpus_per_host > 0) {
        p->ppn = p->gpus_per_host;
        pushf(&p->why, &rc, "%d rank%s per host: one per accelerator", p->ppn,
              p->ppn == 1 ? "" : "s");
    } else {
        p->ppn = 1;
        pushf(&p->why, &rc, "1 rank per host: no accelerators");
    }

    p->n = opt->n > 0 ? opt->n : p->nhosts * p->ppn;
    if (p->n > p->nhosts * p->ppn)
        return foehn_fail(err, FOEHN_ERR_INVALID,
                          "-n %d does not fit %d host%s at %d rank%s per host", p->n,
                          p->nhosts, p->nhosts == 1 ? "" : "s", p->ppn, p->ppn == 1 ? "" : "s");
    pushf(&p->why, &rc, "%d rank%s in all%s", p->n, p->n == 1 ? "" : "s",
          opt->n > 0 ? ": -n" : ": hosts x ranks per host");
    p->gpus_per_rank = p->gpus_per_host >= p->ppn && p->gpus_per_host > 0
                       ? p->gpus_per_host / p->ppn : 0;
    if (opt->bind_gpus && p->gpus_per_host == 0)
        return foehn_fail(err, FOEHN_ERR_INVALID,
                          "--bind-gpus: this node has no accelerators to bind");
    if (rc != FOEHN_OK)
        return foehn_fail(err, rc, "out of memory");
    return FOEHN_OK;
}

/* ---- the line, per launcher ---------------------------------------------- */

/* True when the plan uses only some of the hosts it found, or hosts from a file:
 * the launcher must be told which. */
static bool names_hosts(const launch_options *opt, const launch_plan *p)
{
    return opt->hostfile || (size_t)p->nhosts < p->hosts.len;
}

static void line_srun(char *const *envp, const launch_options *opt, launch_plan *p, int *rc)
{
    p->launcher = "srun";
    pushf(&p->why, rc, "launcher: srun (a Slurm allocation)");
    pushf(&p->argv, rc, "srun");
    pushf(&p->argv, rc, "--nodes=%d", p->nhosts);
    pushf(&p->argv, rc, "--ntasks=%d", p->n);
    pushf(&p->argv, rc, "--ntasks-per-node=%d", p->ppn);
    if (p->gpus_per_rank > 0) {
        pushf(&p->argv, rc, "--gpus-per-task=%d", p->gpus_per_rank);
        pushf(&p->why, rc, "--gpus-per-task=%d: the host's accelerators shared evenly",
              p->gpus_per_rank);
    }
    if (opt->cpu_bind)
        pushf(&p->argv, rc, "--cpu-bind=%s", opt->cpu_bind);
    if (names_hosts(opt, p) && *rc == FOEHN_OK) {
        char **first = p->hosts.items;
        char *list = NULL;
        if (foehn_hostlist_compress((const char *const *)first, (size_t)p->nhosts, &list, NULL) !=
            FOEHN_OK)
            list = joined(&p->hosts, (size_t)p->nhosts);
        if (!list) {
            *rc = FOEHN_ERR_NOMEM;
            return;
        }
        pushf(&p->argv, rc, "--nodelist=%s", list);
        free(list);
    }
    const char *mpi = foehn_env_get(envp, "SLURM_MPI_TYPE");
    if (mpi) {
        pushf(&p->why, rc, "no --mpi: SLURM_MPI_TYPE=%s chooses it", mpi);
    } else {
        pushf(&p->argv, rc, "--mpi=pmix");
        pushf(&p->why, rc, "--mpi=pmix: the ranks bootstrap through Slurm's PMIx server "
              "(set SLURM_MPI_TYPE to choose another)");
    }
}

static void line_mpiexec(char *const *envp, const launch_options *opt, const launch_facts *f,
                         launch_plan *p, int *rc, foehn_error *err)
{
    const char *nodefile = opt->hostfile ? opt->hostfile : foehn_env_get(envp, "PBS_NODEFILE");
    char *hosts = names_hosts(opt, p) || !nodefile ? joined(&p->hosts, (size_t)p->nhosts) : NULL;
    p->launcher = "mpiexec";
    switch (f->mpiexec) {
    case MPIEXEC_PALS:
        pushf(&p->why, rc, "launcher: mpiexec, PALS (a PBS job; `mpiexec --version` says PALS)");
        pushf(&p->argv, rc, "mpiexec");
        pushf(&p->argv, rc, "--np");
        pushf(&p->argv, rc, "%d", p->n);
        pushf(&p->argv, rc, "--ppn");
        pushf(&p->argv, rc, "%d", p->ppn);
        if (hosts) {
            pushf(&p->argv, rc, "--hosts");
            pushf(&p->argv, rc, "%s", hosts);
        } else {
            pushf(&p->argv, rc, "--hostfile");
            pushf(&p->argv, rc, "%s", nodefile);
        }
        pushf(&p->argv, rc, "--envall");
        if (opt->cpu_bind) {
            pushf(&p->argv, rc, "--cpu-bind");
            pushf(&p->argv, rc, "%s", opt->cpu_bind);
        }
        break;
    case MPIEXEC_HYDRA:
        pushf(&p->why, rc, "launcher: mpiexec, Hydra (a PBS job; `mpiexec --version` says Hydra)");
        pushf(&p->argv, rc, "mpiexec");
        pushf(&p->argv, rc, "-n");
        pushf(&p->argv, rc, "%d", p->n);
        pushf(&p->argv, rc, "-ppn");
        pushf(&p->argv, rc, "%d", p->ppn);
        if (hosts) {
            pushf(&p->argv, rc, "-hosts");
            pushf(&p->argv, rc, "%s", hosts);
        } else {
            pushf(&p->argv, rc, "-f");
            pushf(&p->argv, rc, "%s", nodefile);
        }
        pushf(&p->argv, rc, "-envall");
        if (opt->cpu_bind) {
            pushf(&p->argv, rc, "-bind-to");
            pushf(&p->argv, rc, "%s", opt->cpu_bind);
        }
        break;
    case MPIEXEC_OPENMPI:
        pushf(&p->why, rc, "launcher: mpiexec, Open MPI (a PBS job; `mpiexec --version` says "
              "Open MPI)");
        pushf(&p->argv, rc, "mpiexec");
        pushf(&p->argv, rc, "-n");
        pushf(&p->argv, rc, "%d", p->n);
        pushf(&p->argv, rc, "--map-by");
        pushf(&p->argv, rc, "ppr:%d:node", p->ppn);
        if (hosts) {
            pushf(&p->argv, rc, "--host");
            pushf(&p->argv, rc, "%s", hosts);
        } else {
            pushf(&p->argv, rc, "--hostfile");
            pushf(&p->argv, rc, "%s", nodefile);
        }
        if (opt->cpu_bind) {
            pushf(&p->argv, rc, "--bind-to");
            pushf(&p->argv, rc, "%s", opt->cpu_bind);
        }
        if (f->root)
            pushf(&p->argv, rc, "--allow-run-as-root");
        break;
    case MPIEXEC_NONE:
        if (*rc == FOEHN_OK)
            *rc = foehn_fail(err, FOEHN_ERR_INVALID,
                             "a PBS job, but no mpiexec on PATH (load the site's MPI module)");
        break;
    }
    free(hosts);
}

static void line_flux(const launch_options *opt, launch_plan *p, int *rc, foehn_error *err)
{
    if (opt->hostfile) {
        *rc = foehn_fail(err, FOEHN_ERR_INVALID,
                         "--hostfile: flux run places ranks on the allocation's hosts "
                         "itself (use --nhosts)");
        return;
    }
    p->launcher = "flux";
    pushf(&p->why, rc, "launcher: flux run (a Flux instance)");
    pushf(&p->argv, rc, "flux");
    pushf(&p->argv, rc, "run");
    pushf(&p->argv, rc, "-N");
    pushf(&p->argv, rc, "%d", p->nhosts);
    pushf(&p->argv, rc, "-n");
    pushf(&p->argv, rc, "%d", p->n);
    pushf(&p->argv, rc, "--tasks-per-node=%d", p->ppn);
    if (p->gpus_per_rank > 0) {
        pushf(&p->argv, rc, "-g");
        pushf(&p->argv, rc, "%d", p->gpus_per_rank);
    }
    if (opt->cpu_bind) {
        pushf(&p->argv, rc, "-o");
        pushf(&p->argv, rc, "cpu-affinity=%s", opt->cpu_bind);
    }
}

static void line_jsrun(const launch_options *opt, launch_plan *p, int *rc, foehn_error *err)
{
    if (opt->hostfile) {
        *rc = foehn_fail(err, FOEHN_ERR_INVALID,
                         "--hostfile: jsrun places ranks on the allocation's hosts itself "
                         "(use --nhosts)");
        return;
    }
    /* One resource set per rank, P of them per host, each with its accelerators. */
    p->launcher = "jsrun";
    pushf(&p->why, rc, "launcher: jsrun (an LSF job), one resource set per rank");
    pushf(&p->argv, rc, "jsrun");
    pushf(&p->argv, rc, "--nrs");
    pushf(&p->argv, rc, "%d", p->n);
    pushf(&p->argv, rc, "--tasks_per_rs");
    pushf(&p->argv, rc, "1");
    pushf(&p->argv, rc, "--rs_per_host");
    pushf(&p->argv, rc, "%d", p->ppn);
    if (p->gpus_per_rank > 0) {
        pushf(&p->argv, rc, "--gpu_per_rs");
        pushf(&p->argv, rc, "%d", p->gpus_per_rank);
    }
    if (opt->cpu_bind) {
        pushf(&p->argv, rc, "--bind");
        pushf(&p->argv, rc, "%s", opt->cpu_bind);
    }
}

/* No scheduler (or Cobalt's node file): PRRTE or Open MPI across hosts, else foehn run. */
static void line_local(const foehn_job *job, char *const *envp, const launch_options *opt,
                       const launch_facts *f, launch_plan *p, int *rc, foehn_error *err)
{
    const char *hostfile = opt->hostfile;
    if (!hostfile && job->scheduler == FOEHN_SCHEDULER_COBALT)
        hostfile = foehn_env_get(envp, "COBALT_NODEFILE");
    bool here_only = p->nhosts == 1 && strcmp(p->hosts.items[0], job->hostname) == 0;
    if (f->prterun || f->openmpi_mpirun) {
        p->launcher = f->prterun ? "prterun" : "mpirun";
        pushf(&p->why, rc, "launcher: %s (no scheduler; %s is on PATH)", p->launcher,
              f->prterun ? "PRRTE's prterun" : "Open MPI's mpirun");
        pushf(&p->argv, rc, "%s", p->launcher);
        pushf(&p->argv, rc, "-n");
        pushf(&p->argv, rc, "%d", p->n);
        pushf(&p->argv, rc, "--map-by");
        pushf(&p->argv, rc, "ppr:%d:node", p->ppn);
        if (names_hosts(opt, p) || (!here_only && !hostfile)) {
            char *hosts = joined(&p->hosts, (size_t)p->nhosts);
            if (!hosts && *rc == FOEHN_OK)
                *rc = FOEHN_ERR_NOMEM;
            pushf(&p->argv, rc, "--host");
            pushf(&p->argv, rc, "%s", hosts);
            free(hosts);
        } else if (hostfile) {
            pushf(&p->argv, rc, "--hostfile");
            pushf(&p->argv, rc, "%s", hostfile);
        }
        if (opt->cpu_bind) {
            pushf(&p->argv, rc, "--bind-to");
            pushf(&p->argv, rc, "%s", opt->cpu_bind);
        }
        if (f->root) {
            pushf(&p->argv, rc, "--allow-run-as-root");
            pushf(&p->why, rc, "--allow-run-as-root: running as root, which %s refuses "
                  "otherwise", p->launcher);
        }
        return;
    }
    if (!here_only) {
        if (*rc == FOEHN_OK)
            *rc = foehn_fail(err, FOEHN_ERR_INVALID,
                             "%d hosts but no launcher that reaches them: neither prterun nor "
                             "Open MPI's mpirun is on PATH", p->nhosts);
        return;
    }
    if (opt->cpu_bind) {
        if (*rc == FOEHN_OK)
            *rc = foehn_fail(err, FOEHN_ERR_INVALID,
                             "--cpu-bind: foehn run (the launcher here) does not bind CPUs");
        return;
    }
    p->launcher = "foehn run";
    pushf(&p->why, rc, "launcher: foehn run (no scheduler, no MPI launcher on PATH: this "
          "machine only)");
    pushf(&p->argv, rc, "%s", f->self);
    pushf(&p->argv, rc, "run");
    pushf(&p->argv, rc, "-n");
    pushf(&p->argv, rc, "%d", p->n);
    if (opt->bind_gpus)
        pushf(&p->argv, rc, "--bind-gpus");
    pushf(&p->argv, rc, "--");
}

int launch_plan_make(const foehn_job *job, char *const *envp, const launch_options *opt,
                     const launch_facts *facts, launch_plan *p, foehn_error *err)
{
    memset(p, 0, sizeof *p);
    foehn_strv_init(&p->hosts);
    foehn_strv_init(&p->argv);
    foehn_strv_init(&p->why);
    if (!opt->argv || !opt->argv[0])
        return foehn_fail(err, FOEHN_ERR_INVALID, "no program to launch");
    int rc = choose_hosts(job, opt, p, err);
    if (rc == FOEHN_OK)
        rc = choose_shape(job, opt, p, err);
    if (rc != FOEHN_OK)
        return rc;
    switch (job->scheduler) {
    case FOEHN_SCHEDULER_SLURM: line_srun(envp, opt, p, &rc); break;
    case FOEHN_SCHEDULER_PBS: line_mpiexec(envp, opt, facts, p, &rc, err); break;
    case FOEHN_SCHEDULER_FLUX: line_flux(opt, p, &rc, err); break;
    case FOEHN_SCHEDULER_LSF: line_jsrun(opt, p, &rc, err); break;
    default: line_local(job, envp, opt, facts, p, &rc, err); break;
    }
    if (rc == FOEHN_OK && opt->bind_gpus && strcmp(p->launcher, "foehn run") != 0) {
        pushf(&p->argv, &rc, "%s", facts->self);
        pushf(&p->argv, &rc, "bind-gpus");
        pushf(&p->argv, &rc, "--");
        pushf(&p->why, &rc, "--bind-gpus: each rank runs through `foehn bind-gpus`, which "
              "gives it its share of the host's accelerators by its local rank");
    }
    for (char **a = opt->argv; *a && rc == FOEHN_OK; a++)
        rc = foehn_strv_push(&p->argv, *a);
    if (rc == FOEHN_ERR_NOMEM)
        return foehn_fail(err, rc, "out of memory");
    return rc;
}

void launch_plan_release(launch_plan *p)
{
    foehn_strv_release(&p->hosts);
    foehn_strv_release(&p->argv);
    foehn_strv_release(&p->why);
}
