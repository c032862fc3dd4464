/* foehn env: what the discovery layer sees, for people (default), for programs
 * (--json, schema foehn.job/1) and for job scripts (--shell, to eval). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "foehn.h"

extern char **environ;

static void print_count(const char *label, int value)
{
    if (value == FOEHN_UNKNOWN)
        printf("%s ?", label);
    else
        printf("%s %d", label, value);
}

static void print_list(char *const *items, const int *counts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        printf("%s%s", i ? " " : "", items[i]);
        if (counts)
            printf("(%d)", counts[i]);
    }
}

static void print_human(const foehn_job *j)
{
    printf("launcher    %s", foehn_launcher_name(j->launcher));
    if (j->launcher_variable)
        printf("  (from %s)", j->launcher_variable);
    printf("\nscheduler   %s", foehn_scheduler_name(j->scheduler));
    if (j->scheduler_variable)
        printf("  (from %s)", j->scheduler_variable);
    printf("\njob id      %s\n", j->job_id ? j->job_id : "-");
    print_count("rank       ", j->rank);
    print_count(" of", j->size);
    print_count("\nlocal rank ", j->local_rank);
    print_count(" of", j->local_size);
    print_count("\nnode       ", j->node_index);
    print_count(" of", j->num_nodes);
    printf("\nhost        %s\n", j->hostname);
    printf("hosts       ");
    if (j->hosts)
        print_list(j->hosts, j->ranks_per_host, j->nhosts);
    else
        printf("? (the launcher does not say)");
    if (j->allocation_hosts) {
        printf("\nallocation  ");
        print_list(j->allocation_hosts, j->allocation_slots, j->allocation_nhosts);
    }
    printf("\ngpus        ");
    if (j->gpu_vendor == FOEHN_GPU_NONE) {
        printf("none");
    } else {
        printf("%s [", foehn_gpu_vendor_name(j->gpu_vendor));
        print_list(j->gpus, NULL, j->ngpus);
        printf("]");
        if (j->gpu_mask_variable)
            printf("  (from %s)", j->gpu_mask_variable);
        if (j->node_gpus != FOEHN_UNKNOWN)
            printf(", %d on this node", j->node_gpus);
    }
    printf("\nworkdir     %s\n", j->workdir);
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage: foehn env [--json | --shell]\n\n"
            "Tells where this process is: the launcher that started it, the scheduler's\n"
            "allocation, its rank and node, the hosts, and the GPUs it may use.\n\n"
            "  --json   one line of JSON, schema foehn.job/1 (docs/job-schema.md)\n"
            "  --shell  export lines for job scripts: eval \"$(foehn env --shell)\"\n");
}

int foehn_cmd_env(int argc, char **argv)
{
    enum { HUMAN, JSON, SHELL } format = HUMAN;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            format = JSON;
        } else if (strcmp(argv[i], "--shell") == 0) {
            format = SHELL;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "foehn env: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    foehn_job job;
    foehn_error err;
    if (foehn_job_discover(&job, environ, NULL, &err) != FOEHN_OK) {
        fprintf(stderr, "foehn env: %s\n", err.message);
        return 1;
    }
    int status = 0;
    if (format == HUMAN) {
        print_human(&job);
    } else {
        char *text = NULL;
        int rc = format == JSON ? foehn_job_to_json(&job, &text) : foehn_job_to_shell(&job, &text);
        if (rc != FOEHN_OK) {
            fprintf(stderr, "foehn env: out of memory\n");
            status = 1;
        } else {
            fputs(text, stdout);
            if (format == JSON)
                fputc('\n', stdout);
            free(text);
        }
    }
    foehn_job_clear(&job);
    return status;
}
