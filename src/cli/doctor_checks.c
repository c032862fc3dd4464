/* foehn doctor's checks of this process alone: the job record, libpmix, network
 * interfaces, accelerators, torch, and the limits that jobs of many ranks hit. */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/doctor.h"
#include "cli/subprocess.h"
#include "common/json.h"
#include "discovery/env.h"
#include "pm/pm.h"

static char *vformat(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        return NULL;
    return s;
}

void doctor_add(doctor_report *r, const char *name, check_level level, const char *advice,
                const char *fmt, ...)
{
    if (r->nchecks >= DOCTOR_MAX_CHECKS)
        return;
    doctor_check *c = &r->checks[r->nchecks++];
    c->name = name;
    c->level = level;
    va_list ap;
    va_start(ap, fmt);
    c->found = vformat(fmt, ap);
    va_end(ap);
    c->advice = advice ? strdup(advice) : NULL;
}

void doctor_report_release(doctor_report *r)
{
    for (int i = 0; i < r->nchecks; i++) {
        free(r->checks[i].found);
        free(r->checks[i].advice);
    }
    free(r->ranks);
    foehn_strbuf_release(&r->interfaces);
}

void doctor_check_job(doctor_report *r, const foehn_job *job, const char *error)
{
    if (error) {
        doctor_add(r, "job", CHECK_FAIL, "fix or unset the variable named above: Foehn "
                   "refuses to guess", "%s", error);
        return;
    }
    doctor_add(r, "job", CHECK_OK, NULL, "launcher %s%s%s%s, scheduler %s%s%s%s, job %s",
               foehn_launcher_name(job->launcher), job->launcher_variable ? " (from " : "",
               job->launcher_variable ? job->launcher_variable : "",
               job->launcher_variable ? ")" : "", foehn_scheduler_name(job->scheduler),
               job->scheduler_variable ? " (from " : "",
               job->scheduler_variable ? job->scheduler_variable : "",
               job->scheduler_variable ? ")" : "", job->job_id ? job->job_id : "-");
}

void doctor_check_libpmix(doctor_report *r, char *const *envp)
{
    char name[256], version[256];
    foehn_error err;
    bool pmix_launcher = foehn_env_get(envp, "PMIX_RANK") != NULL;
    if (foehn_pmix_probe(envp, name, sizeof name, version, sizeof version, &err) == FOEHN_OK) {
        doctor_add(r, "libpmix", CHECK_OK, NULL, "%s loads: %s", name, version);
    } else if (pmix_launcher) {
        doctor_add(r, "libpmix", CHECK_FAIL,
                   "this process was started by a PMIx launcher (PMIX_RANK is set) but cannot "
                   "load libpmix: install the PMIx library of that launcher (Debian: libpmix2) "
                   "or set FOEHN_LIBPMIX to its libpmix.so.2", "%s", err.message);
    } else {
        doctor_add(r, "libpmix", CHECK_OK, NULL,
                   "not loadable, and not needed here (no PMIx launcher): %s", err.message);
    }
}

void doctor_check_interfaces(doctor_report *r)
{
    struct ifaddrs *list = NULL;
    foehn_strbuf_append(&r->interfaces, "[");
    if (getifaddrs(&list) != 0) {
        foehn_strbuf_append(&r->interfaces, "]");
        doctor_add(r, "interfaces", CHECK_WARN, NULL, "cannot list them (getifaddrs failed)");
        return;
    }
    foehn_strbuf text;
    foehn_strbuf_init(&text);
    int n = 0;
    for (struct ifaddrs *a = list; a; a = a->ifa_next) {
        if (!a->ifa_addr || !(a->ifa_flags & IFF_UP))
            continue;
        int family = a->ifa_addr->sa_family;
        if (family != AF_INET && family != AF_INET6)
            continue;
        char ip[INET6_ADDRSTRLEN] = "";
        const void *where = family == AF_INET
            ? (const void *)&((struct sockaddr_in *)(void *)a->ifa_addr)->sin_addr
            : (const void *)&((struct sockaddr_in6 *)(void *)a->ifa_addr)->sin6_addr;
        inet_ntop(family, where, ip, sizeof ip);
        foehn_strbuf_appendf(&text, "%s%s %s", n ? ", " : "", a->ifa_name, ip);
        foehn_strbuf_append(&r->interfaces, n ? ",{\"name\":" : "{\"name\":");
        foehn_json_string(&r->interfaces, a->ifa_name);
        foehn_strbuf_append(&r->interfaces, ",\"address\":");
        foehn_json_string(&r->interfaces, ip);
        foehn_strbuf_append(&r->interfaces, "}");
        n++;
    }
    freeifaddrs(list);
    foehn_strbuf_append(&r->interfaces, "]");
    char *s = NULL;
    foehn_strbuf_finish(&text, &s);
    doctor_add(r, "interfaces", n ? CHECK_OK : CHECK_FAIL,
               n ? NULL : "no interface is up with an address: the ranks cannot talk",
               "%s", s && *s ? s : "none up");
    free(s);
}

void doctor_check_gpus(doctor_report *r, const foehn_job *job)
{
    if (job->gpu_vendor == FOEHN_GPU_NONE) {
        doctor_add(r, "gpus", CHECK_OK, NULL, "none on this node");
        return;
    }
    foehn_strbuf b;
    foehn_strbuf_init(&b);
    for (size_t i = 0; i < job->ngpus; i++)
        foehn_strbuf_appendf(&b, "%s%s", i ? "," : "", job->gpus[i]);
    char *list = NULL;
    foehn_strbuf_finish(&b, &list);
    char node[64] = "";
    if (job->node_gpus != FOEHN_UNKNOWN)
        snprintf(node, sizeof node, ", %d on the node", job->node_gpus);
    doctor_add(r, "gpus", CHECK_OK, NULL, "%s [%s]%s%s%s%s", foehn_gpu_vendor_name(job->gpu_vendor),
               list ? list : "", job->gpu_mask_variable ? " (mask " : "",
               job->gpu_mask_variable ? job->gpu_mask_variable : "",
               job->gpu_mask_variable ? ")" : "", node);
    free(list);
}

/* torch is Python's: asked of the python3 a job script would run, under a deadline. */
void doctor_check_torch(doctor_report *r)
{
    char python[4096];
    if (!cli_find_on_path("python3", python, sizeof python)) {
        doctor_add(r, "torch", CHECK_WARN, "put the job's Python on PATH (a venv, a module)",
                   "no python3 on PATH");
        return;
    }
    char out[2048];
    char *const argv[] = {python, "-c",
        "import torch, torch.distributed as d\n"
        "print('torch', torch.__version__, 'gloo', d.is_gloo_available(), 'nccl',"
        " d.is_nccl_available(), 'cuda', torch.cuda.is_available())", NULL};
    int status = cli_run(argv, 120, out, sizeof out);
    char *nl = strrchr(out, '\n');
    if (nl && nl[1] == '\0')
        *nl = '\0';
    if (status != 0) {
        const char *last = strrchr(out, '\n');
        doctor_add(r, "torch", CHECK_WARN, "pip install torch in the job's environment (only "
                   "PyTorch jobs need it)", "%s cannot import torch: %s", python,
                   status < 0 ? "it did not answer within 120 s" : last ? last + 1 : out);
        return;
    }
    const char *line = strrchr(out, '\n') ? strrchr(out, '\n') + 1 : out;
    doctor_add(r, "torch", CHECK_OK, NULL, "%s (%s)", line, python);
}

void doctor_check_limits(doctor_report *r, int size)
{
    struct rlimit files, procs;
    getrlimit(RLIMIT_NOFILE, &files);
    getrlimit(RLIMIT_NPROC, &procs);
    /* a rank holds a connection per peer, and foehn run three descriptors per rank;
     * Foehn raises the soft limit itself, up to the hard one */
    unsigned long long need = 3ULL * (unsigned long long)(size > 0 ? size : 1) + 64;
    char nproc[32];
    if (procs.rlim_cur == RLIM_INFINITY)
        snprintf(nproc, sizeof nproc, "unlimited");
    else
        snprintf(nproc, sizeof nproc, "%llu", (unsigned long long)procs.rlim_cur);
    bool short_files = files.rlim_max != RLIM_INFINITY && files.rlim_max < need;
    doctor_add(r, "limits", short_files ? CHECK_FAIL : CHECK_OK,
               short_files ? "raise the hard open-file limit (ulimit -Hn, or the site's "
                             "limits.conf): a rank keeps a connection to every other" : NULL,
               "open files %llu (hard %llu; %d rank%s need%s about %llu), processes %s",
               (unsigned long long)files.rlim_cur, (unsigned long long)files.rlim_max, size,
               size == 1 ? "" : "s", size == 1 ? "s" : "", need, nproc);
}
