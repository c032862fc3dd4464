/* The job record as JSON (schema "foehn.job/1", docs/job-schema.md) and as
 * shell export lines. One serializer: the CLI and the Python face both use it. */
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/strbuf.h"
#include "discovery/discovery.h"

static const char *name_or_null(const char *name)
{
    return strcmp(name, "none") == 0 ? NULL : name;
}

int foehn_job_to_json(const foehn_job *job, char **out)
{
    foehn_strbuf b;
    foehn_strbuf_init(&b);
    foehn_strbuf_append(&b, "{\"schema\":\"foehn.job/1\",\"launcher\":");
    foehn_json_string(&b, foehn_launcher_name(job->launcher));
    foehn_strbuf_append(&b, ",\"launcher_variable\":");
    foehn_json_string(&b, job->launcher_variable);
    foehn_strbuf_append(&b, ",\"scheduler\":");
    foehn_json_string(&b, foehn_scheduler_name(job->scheduler));
    foehn_strbuf_append(&b, ",\"scheduler_variable\":");
    foehn_json_string(&b, job->scheduler_variable);
    foehn_strbuf_append(&b, ",\"job_id\":");
    foehn_json_string(&b, job->job_id);
    const struct { const char *key; int value; } numbers[] = {
        {"rank", job->rank},           {"size", job->size},
        {"local_rank", job->local_rank}, {"local_size", job->local_size},
        {"node_index", job->node_index}, {"num_nodes", job->num_nodes},
    };
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        foehn_strbuf_appendf(&b, ",\"%s\":", numbers[i].key);
        foehn_json_int(&b, numbers[i].value);
    }
    foehn_strbuf_append(&b, ",\"hostname\":");
    foehn_json_string(&b, job->hostname);
    foehn_strbuf_append(&b, ",\"hosts\":");
    foehn_json_strings(&b, job->hosts, job->nhosts, true);
    foehn_strbuf_append(&b, ",\"ranks_per_host\":");
    foehn_json_ints(&b, job->ranks_per_host, job->nhosts);
    foehn_strbuf_append(&b, ",\"allocation_hosts\":");
    foehn_json_strings(&b, job->allocation_hosts, job->allocation_nhosts, true);
    foehn_strbuf_append(&b, ",\"allocation_slots\":");
    foehn_json_ints(&b, job->allocation_slots, job->allocation_nhosts);
    foehn_strbuf_append(&b, ",\"gpu_vendor\":");
    foehn_json_string(&b, name_or_null(foehn_gpu_vendor_name(job->gpu_vendor)));
    foehn_strbuf_append(&b, ",\"gpus\":");
    foehn_json_strings(&b, job->gpus, job->ngpus, false);
    foehn_strbuf_append(&b, ",\"gpu_mask_variable\":");
    foehn_json_string(&b, job->gpu_mask_variable);
    foehn_strbuf_append(&b, ",\"node_gpus\":");
    foehn_json_int(&b, job->node_gpus);
    foehn_strbuf_append(&b, ",\"workdir\":");
    foehn_json_string(&b, job->workdir);
    foehn_strbuf_append(&b, "}");
    return foehn_strbuf_finish(&b, out);
}

static void export_str(foehn_strbuf *b, const char *name, const char *value)
{
    foehn_strbuf_appendf(b, "export %s=", name);
    foehn_strbuf_append_quoted(b, value ? value : "");
    foehn_strbuf_append(b, "\n");
}

static void export_int(foehn_strbuf *b, const char *name, long value)
{
    foehn_strbuf_appendf(b, "export %s=%ld\n", name, value);
}

int foehn_job_to_shell(const foehn_job *job, char **out)
{
    /* What a job script wants: the allocation when there is one (it launches
     * into it), else the hosts this job runs on. */
    char *const *hosts = job->allocation_nhosts ? job->allocation_hosts : job->hosts;
    size_t nhosts = job->allocation_nhosts ? job->allocation_nhosts : job->nhosts;
    if (!hosts) {
        hosts = (char *const *)&job->hostname;
        nhosts = 1;
    }
    char *hostlist = NULL;
    if (foehn_hostlist_compress((const char *const *)hosts, nhosts, &hostlist, NULL) != FOEHN_OK)
        hostlist = NULL; /* names Slurm's grammar cannot hold: FOEHN_HOSTS still has them */

    foehn_strbuf b;
    foehn_strbuf_init(&b);
    export_str(&b, "FOEHN_LAUNCHER", foehn_launcher_name(job->launcher));
    export_str(&b, "FOEHN_SCHEDULER", foehn_scheduler_name(job->scheduler));
    export_str(&b, "FOEHN_JOBID", job->job_id);
    export_int(&b, "FOEHN_NHOSTS", (long)nhosts);
    foehn_strbuf_append(&b, "export FOEHN_HOSTS=");
    foehn_strbuf joined;
    foehn_strbuf_init(&joined);
    for (size_t i = 0; i < nhosts; i++) {
        if (i)
            foehn_strbuf_append(&joined, " ");
        foehn_strbuf_append(&joined, hosts[i]);
    }
    foehn_strbuf_append_quoted(&b, joined.data ? joined.data : "");
    foehn_strbuf_release(&joined);
    foehn_strbuf_append(&b, "\n");
    export_str(&b, "FOEHN_HOSTLIST", hostlist ? hostlist : "");
    export_str(&b, "FOEHN_GPU_VENDOR", name_or_null(foehn_gpu_vendor_name(job->gpu_vendor)));
    export_int(&b, "FOEHN_NGPU_PER_HOST", (long)job->ngpus);
    export_int(&b, "FOEHN_NGPUS", (long)(job->ngpus * nhosts));
    export_str(&b, "FOEHN_WORKDIR", job->workdir);
    free(hostlist);
    return foehn_strbuf_finish(&b, out);
}
