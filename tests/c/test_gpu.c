/* Accelerators: visibility masks of each vendor, the driver files under a fake
 * sysroot (NVIDIA's /proc/driver/nvidia/gpus, AMD's KFD topology, Intel's DRM
 * cards), and malformed masks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "foehn.h"

static char root[] = "/tmp/foehn-gpu-XXXXXX";

/* Paths here are short; the buffers leave room for root plus any relative path. */
static void make_dirs(const char *rel)
{
    char path[2100];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    }
    mkdir(path, 0755);
}

static void write_file(const char *rel, const char *text)
{
    char path[2100];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", rel);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        make_dirs(dir);
    }
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

/* Runs discovery under sysroot `sub` of root with env; checks vendor and devices. */
static void expect_gpus(const char *what, const char *sub, const char *const *env,
                        const char *vendor, const char *devices, int node_gpus, const char *mask)
{
    fprintf(stderr, "case %s\n", what);
    char sysroot[2100];
    snprintf(sysroot, sizeof sysroot, "%s/%s", root, sub);
    foehn_discover_options opt = {.sysroot = sysroot, .hostname = "h1", .cwd = "/"};
    foehn_job job;
    foehn_error err;
    int rc = foehn_job_discover(&job, (char *const *)env, &opt, &err);
    CHECK_INT(rc, FOEHN_OK);
    if (rc != FOEHN_OK) {
        fprintf(stderr, "  error: %s\n", err.message);
        return;
    }
    char got[512] = "";
    for (size_t i = 0; i < job.ngpus; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? "," : "", job.gpus[i]);
    CHECK_STR(foehn_gpu_vendor_name(job.gpu_vendor), vendor);
    CHECK_STR(got, devices);
    CHECK_INT(job.node_gpus, node_gpus);
    CHECK_STR(job.gpu_mask_variable, mask);
    foehn_job_clear(&job);
}

static void expect_error(const char *what, const char *const *env, const char *needle)
{
    fprintf(stderr, "bad case %s\n", what);
    foehn_discover_options opt = {.sysroot = root, .hostname = "h1", .cwd = "/"};
    foehn_job job;
    foehn_error err;
    CHECK_INT(foehn_job_discover(&job, (char *const *)env, &opt, &err), FOEHN_ERR_INVALID);
    CHECK_CONTAINS(err.message, needle);
    foehn_job_clear(&job);
}

/* foehn_gpu_share for local_rank of local_size under sysroot `sub` with env: the
 * assignments joined by ' ' must be `want` (NULL: an error containing `error`). */
static void expect_share(const char *sub, const char *const *env, int local_rank, int local_size,
                         const char *want, const char *error)
{
    char sysroot[2100];
    snprintf(sysroot, sizeof sysroot, "%s/%s", root, sub);
    foehn_discover_options opt = {.sysroot = sysroot, .hostname = "h1", .cwd = "/"};
    foehn_job job;
    foehn_error err;
    CHECK_INT(foehn_job_discover(&job, (char *const *)env, &opt, &err), FOEHN_OK);
    char **vars = NULL;
    size_t n = 99;
    int rc = foehn_gpu_share(&job, local_rank, local_size, &vars, &n, &err);
    if (!want) {
        CHECK_INT(rc, FOEHN_ERR_INVALID);
        CHECK_CONTAINS(err.message, error);
        CHECK(vars == NULL && n == 0);
    } else {
        CHECK_INT(rc, FOEHN_OK);
        char got[512] = "";
        for (size_t i = 0; i < n; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? " " : "", vars[i]);
        CHECK_STR(got, want);
        foehn_strv_free(vars, n);
    }
    foehn_job_clear(&job);
}

static void test_share(void)
{
    const char *none[] = {NULL};
    /* four devices from the driver: two ranks get two each, contiguous */
    expect_share("nv", none, 0, 2, "CUDA_VISIBLE_DEVICES=0,1", NULL);
    expect_share("nv", none, 1, 2, "CUDA_VISIBLE_DEVICES=2,3", NULL);
    /* never wider than the mask in force: its devices, by their names there */
    const char *uuids[] = {"CUDA_VISIBLE_DEVICES=GPU-aa,GPU-bb,GPU-cc", NULL};
    expect_share("nv", uuids, 2, 3, "CUDA_VISIBLE_DEVICES=GPU-cc", NULL);
    /* fewer devices than ranks: shared round robin */
    expect_share("nv", uuids, 4, 5, "CUDA_VISIBLE_DEVICES=GPU-bb", NULL);
    /* AMD: HIP's mask inside ROCR's; the share goes to ROCR, HIP becomes the identity */
    const char *amd[] = {"ROCR_VISIBLE_DEVICES=0,1", "HIP_VISIBLE_DEVICES=1", NULL};
    expect_share("amd", amd, 0, 1, "ROCR_VISIBLE_DEVICES=1 HIP_VISIBLE_DEVICES=0", NULL);
    expect_share("amd", none, 1, 2, "ROCR_VISIBLE_DEVICES=1", NULL);
    expect_share("intel", none, 0, 1, "ZE_AFFINITY_MASK=0,1", NULL);
    expect_share("empty", none, 0, 1, NULL, "sees none");
    expect_share("nv", none, FOEHN_UNKNOWN, 4, NULL, "does not say this process's local rank");
    expect_share("nv", none, 4, 4, NULL, "local rank 4 of 4 is out of range");
}

int main(void)
{
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    /* A node with four NVIDIA GPUs. */
    for (int i = 0; i < 4; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "nv/proc/driver/nvidia/gpus/0000:%02x:00.0/information", i + 1);
        write_file(rel, "Model: NVIDIA H100\n");
    }
    /* A node with two AMD GPUs (KFD node 0 is the CPU: no SIMD units). */
    write_file("amd/sys/class/kfd/kfd/topology/nodes/0/properties", "cpu_cores_count 64\nsimd_count 0\n");
    write_file("amd/sys/class/kfd/kfd/topology/nodes/1/properties", "cpu_cores_count 0\nsimd_count 440\n");
    write_file("amd/sys/class/kfd/kfd/topology/nodes/2/properties", "cpu_cores_count 0\nsimd_count 440\n");
    /* A node with two Intel data-centre GPUs, one integrated VGA, one connector entry. */
    write_file("intel/sys/class/drm/card0/device/vendor", "0x8086\n");
    write_file("intel/sys/class/drm/card0/device/class", "0x030000\n");
    write_file("intel/sys/class/drm/card1/device/vendor", "0x8086\n");
    write_file("intel/sys/class/drm/card1/device/class", "0x038000\n");
    write_file("intel/sys/class/drm/card2/device/vendor", "0x8086\n");
    write_file("intel/sys/class/drm/card2/device/class", "0x038000\n");
    write_file("intel/sys/class/drm/card1-DP-1/status", "disconnected\n");
    make_dirs("empty");

    const char *none[] = {NULL};
    expect_gpus("no driver, no mask", "empty", none, "none", "", FOEHN_UNKNOWN, NULL);
    expect_gpus("NVIDIA driver, no mask", "nv", none, "nvidia", "0,1,2,3", 4, NULL);
    const char *cuda13[] = {"CUDA_VISIBLE_DEVICES=1,3", NULL};
    expect_gpus("CUDA mask", "nv", cuda13, "nvidia", "1,3", 4, "CUDA_VISIBLE_DEVICES");
    const char *uuids[] = {"CUDA_VISIBLE_DEVICES=GPU-8932f937-d72c-4106-c12f-20bd9faed9f6,"
                           "MIG-1f2a3b4c-aaaa-bbbb-cccc-0123456789ab", NULL};
    expect_gpus("CUDA UUIDs", "nv", uuids, "nvidia",
                "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6,MIG-1f2a3b4c-aaaa-bbbb-cccc-0123456789ab",
                4, "CUDA_VISIBLE_DEVICES");
    const char *hidden[] = {"CUDA_VISIBLE_DEVICES=", NULL};
    expect_gpus("empty CUDA mask hides all", "nv", hidden, "nvidia", "", 4, "CUDA_VISIBLE_DEVICES");
    const char *cut[] = {"CUDA_VISIBLE_DEVICES=2,-1,3", NULL};
    expect_gpus("a negative index ends the list", "nv", cut, "nvidia", "2", 4, "CUDA_VISIBLE_DEVICES");
    const char *nodev[] = {"CUDA_VISIBLE_DEVICES=NoDevFiles", NULL};
    expect_gpus("Slurm's NoDevFiles", "nv", nodev, "nvidia", "", 4, "CUDA_VISIBLE_DEVICES");
    const char *mask_no_driver[] = {"CUDA_VISIBLE_DEVICES=0", NULL};
    expect_gpus("mask without driver files", "empty", mask_no_driver, "nvidia", "0", FOEHN_UNKNOWN,
                "CUDA_VISIBLE_DEVICES");

    expect_gpus("AMD driver, no mask", "amd", none, "amd", "0,1", 2, NULL);
    const char *rocr[] = {"ROCR_VISIBLE_DEVICES=1", NULL};
    expect_gpus("ROCR mask", "amd", rocr, "amd", "1", 2, "ROCR_VISIBLE_DEVICES");
    const char *rocr_hip[] = {"ROCR_VISIBLE_DEVICES=0,2,4", "HIP_VISIBLE_DEVICES=1", NULL};
    expect_gpus("HIP indexes into ROCR", "amd", rocr_hip, "amd", "2", 2, "HIP_VISIBLE_DEVICES");
    const char *hip[] = {"HIP_VISIBLE_DEVICES=0", NULL};
    expect_gpus("HIP alone", "amd", hip, "amd", "0", 2, "HIP_VISIBLE_DEVICES");

    expect_gpus("Intel driver, no mask (VGA not counted)", "intel", none, "intel", "0,1", 2, NULL);
    const char *ze[] = {"ZE_AFFINITY_MASK=0.1,1", NULL};
    expect_gpus("Level Zero mask with a sub-device", "intel", ze, "intel", "0.1,1", 2,
                "ZE_AFFINITY_MASK");

    const char *bad_cuda[] = {"CUDA_VISIBLE_DEVICES=0,gpu1", NULL};
    expect_error("CUDA mask with a bad entry", bad_cuda, "CUDA_VISIBLE_DEVICES=\"0,gpu1\"");
    const char *trailing[] = {"CUDA_VISIBLE_DEVICES=0,", NULL};
    expect_error("CUDA mask with a trailing comma", trailing, "trailing comma");
    const char *bad_ze[] = {"ZE_AFFINITY_MASK=0.x", NULL};
    expect_error("bad Level Zero mask", bad_ze, "ZE_AFFINITY_MASK=\"0.x\"");
    const char *bad_hip[] = {"ROCR_VISIBLE_DEVICES=0,1", "HIP_VISIBLE_DEVICES=5", NULL};
    expect_error("HIP index beyond ROCR's devices", bad_hip, "HIP_VISIBLE_DEVICES=\"5\"");

    test_share();

    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return check_summary("gpu");
}
