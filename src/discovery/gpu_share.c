/* One rank's share of this node's accelerators, as the variables that confine it:
 * what `foehn run --bind-gpus` and `foehn bind-gpus` (under `foehn launch
 * --bind-gpus`) set before the program starts.
 *
 * The share is taken from the devices this process may already use (job->gpus,
 * after every mask in force), so binding never widens a mask: with G devices and
 * L ranks on the node, rank r gets G / L of them, contiguous (r * G/L onwards);
 * with fewer devices than ranks, rank r shares device r mod G. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/strbuf.h"
#include "common/strv.h"
#include "discovery/discovery.h"
#include "foehn.h"

static int push_assignment(foehn_strv *out, const char *name, foehn_strbuf *value)
{
    char *text = NULL;
    if (foehn_strbuf_finish(value, &text) != FOEHN_OK)
        return FOEHN_ERR_NOMEM;
    foehn_strbuf line;
    foehn_strbuf_init(&line);
    foehn_strbuf_appendf(&line, "%s=%s", name, text);
    free(text);
    char *s = NULL;
    if (foehn_strbuf_finish(&line, &s) != FOEHN_OK)
        return FOEHN_ERR_NOMEM;
    int rc = foehn_strv_push(out, s);
    free(s);
    return rc;
}

int foehn_gpu_share(const foehn_job *job, int local_rank, int local_size, char ***assignments,
                    size_t *count, foehn_error *err)
{
    *assignments = NULL;
    *count = 0;
    if (local_rank == FOEHN_UNKNOWN || local_size == FOEHN_UNKNOWN)
        return foehn_fail(err, FOEHN_ERR_INVALID,
                          "cannot bind accelerators: the launcher (%s) does not say this "
                          "process's local rank", foehn_launcher_name(job->launcher));
    if (local_size < 1 || local_rank < 0 || local_rank >= local_size)
        return foehn_fail(err, FOEHN_ERR_INVALID,
                          "cannot bind accelerators: local rank %d of %d is out of range",
                          local_rank, local_size);
    if (job->gpu_vendor == FOEHN_GPU_NONE || job->ngpus == 0)
        return foehn_fail(err, FOEHN_ERR_INVALID,
                          "cannot bind accelerators: this process sees none (no driver "
                          "files and no CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES or "
                          "ZE_AFFINITY_MASK)");
    size_t g = job->ngpus, l = (size_t)local_size, r = (size_t)local_rank;
    size_t first, n;
    if (g >= l) {
        n = g / l;
        first = r * n;
    } else {
        n = 1;
        first = r % g;
    }
    /* HIP_VISIBLE_DEVICES indexes into what ROCR_VISIBLE_DEVICES leaves, and
     * job->gpus names devices as the outermost mask in force does (physical indices
     * when only HIP's is set): the share goes to ROCR_VISIBLE_DEVICES, and HIP's,
     * when it was in force, becomes the identity on top of it. */
    const char *outer = foehn_gpu_outer_mask(job->gpu_vendor);
    bool hip_inner = job->gpu_mask_variable &&
                     strcmp(job->gpu_mask_variable, "HIP_VISIBLE_DEVICES") == 0;
    foehn_strv out;
    foehn_strv_init(&out);
    foehn_strbuf value, identity;
    foehn_strbuf_init(&value);
    foehn_strbuf_init(&identity);
    for (size_t i = 0; i < n; i++) {
        foehn_strbuf_appendf(&value, "%s%s", i ? "," : "", job->gpus[first + i]);
        foehn_strbuf_appendf(&identity, "%s%zu", i ? "," : "", i);
    }
    int rc = push_assignment(&out, outer, &value);
    if (rc == FOEHN_OK && hip_inner)
        rc = push_assignment(&out, "HIP_VISIBLE_DEVICES", &identity);
    else
        foehn_strbuf_release(&identity);
    if (rc != FOEHN_OK) {
        foehn_strv_release(&out);
        return foehn_fail(err, rc, "out of memory");
    }
    *assignments = out.items;
    *count = out.len;
    return FOEHN_OK;
}
