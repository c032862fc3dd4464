/* foehn bind-gpus [--] program [args...]: run in each rank (foehn launch
 * --bind-gpus puts it in the line), narrows the accelerator mask to this rank's
 * share by its local rank (foehn_gpu_share), then becomes the program. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "foehn.h"

extern char **environ;

int foehn_cmd_bind_gpus(int argc, char **argv)
{
    int i = 1;
    if (i < argc && (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)) {
        printf("usage: foehn bind-gpus [--] program [args...]\n\n"
               "Gives this rank its share of the accelerators it sees, by its local rank\n"
               "(CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES or ZE_AFFINITY_MASK, never\n"
               "wider than a mask already set), then runs program.\n");
        return 0;
    }
    if (i < argc && strcmp(argv[i], "--") == 0)
        i++;
    if (i >= argc) {
        fprintf(stderr, "foehn bind-gpus: no program to run\n");
        return 2;
    }
    foehn_job job;
    foehn_error err;
    if (foehn_job_discover(&job, environ, NULL, &err) != FOEHN_OK) {
        fprintf(stderr, "foehn bind-gpus: %s\n", err.message);
        return 1;
    }
    char **vars = NULL;
    size_t n = 0;
    int rc = foehn_gpu_share(&job, job.local_rank, job.local_size, &vars, &n, &err);
    foehn_job_clear(&job);
    if (rc != FOEHN_OK) {
        fprintf(stderr, "foehn bind-gpus: %s\n", err.message);
        return 1;
    }
    for (size_t k = 0; k < n; k++) {
        char *eq = strchr(vars[k], '=');
        *eq = '\0';
        setenv(vars[k], eq + 1, 1);
    }
    foehn_strv_free(vars, n);
    execvp(argv[i], argv + i);
    fprintf(stderr, "foehn bind-gpus: cannot run '%s': %s\n", argv[i], strerror(errno));
    return 127;
}
