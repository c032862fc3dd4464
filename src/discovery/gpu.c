/* Accelerators on this node: the vendor, the devices this process may use (the
 * vendor's visibility mask when set, else every device the driver shows), and
 * how many the driver shows. Only files are read: no nvidia-smi, no subprocess. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/strv.h"
#include "discovery/discovery.h"

typedef enum token_kind { TOKEN_INDEX, TOKEN_UUID, TOKEN_SUBDEVICE, TOKEN_HIDE, TOKEN_BAD } token_kind;

static bool all_digits(const char *s, size_t n)
{
    if (n == 0 || n > 9)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static bool uuid_chars(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
              c == '-' || c == '/'))
            return false;
    }
    return true;
}

/* CUDA and ROCm accept indices and "GPU-<uuid>" (CUDA also "MIG-<uuid>");
 * Level Zero accepts "device" or "device.subdevice". A negative index hides
 * itself and everything after it, as the CUDA runtime does. */
static token_kind classify(const char *tok, size_t n, bool level_zero)
{
    if (n >= 2 && tok[0] == '-' && all_digits(tok + 1, n - 1))
        return TOKEN_HIDE;
    if (all_digits(tok, n))
        return TOKEN_INDEX;
    if (level_zero) {
        const char *dot = memchr(tok, '.', n);
        if (dot && all_digits(tok, (size_t)(dot - tok)) &&
            all_digits(dot + 1, n - (size_t)(dot - tok) - 1))
            return TOKEN_SUBDEVICE;
        return TOKEN_BAD;
    }
    if (n > 4 && (strncmp(tok, "GPU-", 4) == 0 || strncmp(tok, "MIG-", 4) == 0) &&
        uuid_chars(tok + 4, n - 4))
        return TOKEN_UUID;
    return TOKEN_BAD;
}

/* Splits a mask into device names. "" and Slurm's "NoDevFiles" mean none. */
static int parse_mask(const char *var, const char *value, bool level_zero, foehn_strv *out,
                      foehn_error *err)
{
    if (strcmp(value, "NoDevFiles") == 0)
        return FOEHN_OK;
    const char *p = value;
    while (*p) {
        size_t n = strcspn(p, ",");
        token_kind kind = classify(p, n, level_zero);
        if (kind == TOKEN_BAD)
            return foehn_fail(err, FOEHN_ERR_INVALID,
                              "%s=\"%s\": \"%.*s\" is not a device index%s", var, value, (int)n, p,
                              level_zero ? " or device.subdevice" : " or GPU-/MIG- UUID");
        if (kind == TOKEN_HIDE)
            break;
        if (foehn_strv_push_n(out, p, n) != FOEHN_OK)
            return FOEHN_ERR_NOMEM;
        p += n;
        if (*p == ',') {
            p++;
            if (!*p)
                return foehn_fail(err, FOEHN_ERR_INVALID, "%s=\"%s\": trailing comma", var, value);
        }
    }
    return FOEHN_OK;
}

static int count_dir_entries(const char *path, bool (*keep)(const char *dir, const char *name))
{
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && (!keep || keep(path, e->d_name)))
            n++;
    closedir(d);
    return n;
}

/* Reads a small sysfs attribute into buf; false when it cannot. */
static bool read_attr(const char *dir, const char *name, const char *attr, char *buf, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", dir, name, attr);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t got = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[got] = '\0';
    return got > 0;
}

/* A KFD topology node is a GPU when it has SIMD units (CPU nodes have none). */
static bool kfd_node_is_gpu(const char *dir, const char *name)
{
    char props[8192];
    if (!read_attr(dir, name, "properties", props, sizeof props))
        return false;
    const char *s = strstr(props, "simd_count ");
    return s && atoi(s + strlen("simd_count ")) > 0;
}

/* Intel data-centre GPUs show as DRM cards of vendor 0x8086, class 0x0380xx
 * (display controller); integrated graphics (VGA class) are not counted. */
static bool drm_card_is_intel_gpu(const char *dir, const char *name)
{
    if (strncmp(name, "card", 4) != 0 || !all_digits(name + 4, strlen(name + 4)))
        return false;
    char vendor[32], cls[32];
    if (!read_attr(dir, name, "device/vendor", vendor, sizeof vendor) ||
        !read_attr(dir, name, "device/class", cls, sizeof cls))
        return false;
    return strncmp(vendor, "0x8086", 6) == 0 && strncmp(cls, "0x0380", 6) == 0;
}

typedef struct vendor_row {
    foehn_gpu_vendor vendor;
    foehn_names masks;              /* visibility masks, outermost first */
    bool level_zero;                /* mask grammar */
    const char *driver_dir;         /* under the sysroot */
    bool (*is_device)(const char *dir, const char *name);
} vendor_row;

static const vendor_row vendors[] = {
    {FOEHN_GPU_NVIDIA, {"CUDA_VISIBLE_DEVICES"}, false, "proc/driver/nvidia/gpus", NULL},
    /* HIP_VISIBLE_DEVICES indexes into what ROCR_VISIBLE_DEVICES left visible. */
    {FOEHN_GPU_AMD, {"ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"}, false,
     "sys/class/kfd/kfd/topology/nodes", kfd_node_is_gpu},
    {FOEHN_GPU_INTEL, {"ZE_AFFINITY_MASK"}, true, "sys/class/drm", drm_card_is_intel_gpu},
};

const char *foehn_gpu_outer_mask(foehn_gpu_vendor vendor)
{
    for (size_t i = 0; i < sizeof vendors / sizeof vendors[0]; i++)
        if (vendors[i].vendor == vendor)
            return vendors[i].masks[0];
    return NULL;
}

/* Applies one mask on top of the devices visible so far. */
static int apply_mask(const char *var, const char *value, bool level_zero, foehn_strv *visible,
                      foehn_error *err)
{
    foehn_strv mask;
    foehn_strv_init(&mask);
    int rc = parse_mask(var, value, level_zero, &mask, err);
    if (rc != FOEHN_OK) {
        foehn_strv_release(&mask);
        return rc;
    }
    if (visible->len == 0) {
        *visible = mask;
        return FOEHN_OK;
    }
    /* An inner mask's indices select among the outer mask's devices. */
    foehn_strv chosen;
    foehn_strv_init(&chosen);
    for (size_t i = 0; i < mask.len && rc == FOEHN_OK; i++) {
        char *end;
        unsigned long idx = strtoul(mask.items[i], &end, 10);
        if (*end || idx >= visible->len)
            rc = foehn_fail(err, FOEHN_ERR_INVALID,
                            "%s=\"%s\": device %s is not among the %zu left visible by the outer mask",
                            var, value, mask.items[i], visible->len);
        else
            rc = foehn_strv_push(&chosen, visible->items[idx]);
    }
    foehn_strv_release(&mask);
    foehn_strv_release(visible);
    if (rc != FOEHN_OK) {
        foehn_strv_release(&chosen);
        return rc;
    }
    *visible = chosen;
    return FOEHN_OK;
}

int foehn_gpus_discover(foehn_job *job, char *const *envp, const char *sysroot, foehn_error *err)
{
    const size_t nvendors = sizeof vendors / sizeof vendors[0];
    int driver_count[sizeof vendors / sizeof vendors[0]];
    for (size_t v = 0; v < nvendors; v++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", sysroot, vendors[v].driver_dir);
        driver_count[v] = count_dir_entries(dir, vendors[v].is_device);
    }

    /* The vendor whose mask is set wins (the launcher set it for this rank);
     * otherwise the first vendor whose driver shows devices. */
    size_t chosen = nvendors;
    for (size_t v = 0; v < nvendors && chosen == nvendors; v++)
        if (foehn_env_first(envp, vendors[v].masks, NULL))
            chosen = v;
    for (size_t v = 0; v < nvendors && chosen == nvendors; v++)
        if (driver_count[v] > 0)
            chosen = v;

    job->gpu_vendor = FOEHN_GPU_NONE;
    job->node_gpus = FOEHN_UNKNOWN;
    job->gpu_mask_variable = NULL;
    job->gpus = NULL;
    job->ngpus = 0;
    if (chosen == nvendors)
        return FOEHN_OK;

    const vendor_row *row = &vendors[chosen];
    foehn_strv visible;
    foehn_strv_init(&visible);
    bool masked = false;
    int rc = FOEHN_OK;
    for (int m = 0; m < FOEHN_ENV_CANDIDATES && row->masks[m] && rc == FOEHN_OK; m++) {
        const char *value = foehn_env_get(envp, row->masks[m]);
        if (!value)
            continue;
        if (masked && visible.len == 0)
            break; /* the outer mask already hid everything */
        rc = apply_mask(row->masks[m], value, row->level_zero, &visible, err);
        masked = true;
        job->gpu_mask_variable = row->masks[m];
    }
    for (int i = 0; !masked && i < driver_count[chosen] && rc == FOEHN_OK; i++) {
        char idx[16];
        snprintf(idx, sizeof idx, "%d", i);
        rc = foehn_strv_push(&visible, idx) == FOEHN_OK ? FOEHN_OK : FOEHN_ERR_NOMEM;
    }
    if (rc != FOEHN_OK) {
        foehn_strv_release(&visible);
        job->gpu_mask_variable = NULL;
        return rc;
    }
    job->gpu_vendor = row->vendor;
    job->node_gpus = driver_count[chosen] > 0 ? driver_count[chosen] : FOEHN_UNKNOWN;
    job->gpus = visible.items;
    job->ngpus = visible.len;
    return FOEHN_OK;
}
