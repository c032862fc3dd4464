/* Checks of a discovered job shared by the discovery tests: lists are compared
 * as space-separated strings, NULL standing for "unknown". */
#ifndef FOEHN_TEST_JOB_CHECK_H
#define FOEHN_TEST_JOB_CHECK_H

#include "check.h"
#include "foehn.h"

/* What a rank must know of its place; hosts and ranks_per_host space separated. */
typedef struct placement {
    const char *launcher, *scheduler;
    int rank, size, local_rank, local_size, node_index, num_nodes;
    const char *hosts, *ranks_per_host;
} placement;

static inline void join_strings(char *out, size_t len, char *const *v, size_t n)
{
    out[0] = '\0';
    for (size_t i = 0; v && i < n; i++)
        snprintf(out + strlen(out), len - strlen(out), "%s%s", i ? " " : "", v[i]);
}

static inline void join_ints(char *out, size_t len, const int *v, size_t n)
{
    out[0] = '\0';
    for (size_t i = 0; v && i < n; i++)
        snprintf(out + strlen(out), len - strlen(out), "%s%d", i ? " " : "", v[i]);
}

static inline void check_placement(const foehn_job *job, const placement *w)
{
    char buf[1024];
    CHECK_STR(foehn_launcher_name(job->launcher), w->launcher);
    CHECK_STR(foehn_scheduler_name(job->scheduler), w->scheduler);
    CHECK_INT(job->rank, w->rank);
    CHECK_INT(job->size, w->size);
    CHECK_INT(job->local_rank, w->local_rank);
    CHECK_INT(job->local_size, w->local_size);
    CHECK_INT(job->node_index, w->node_index);
    CHECK_INT(job->num_nodes, w->num_nodes);
    join_strings(buf, sizeof buf, job->hosts, job->nhosts);
    CHECK_STR(job->hosts ? buf : NULL, w->hosts);
    join_ints(buf, sizeof buf, job->ranks_per_host, job->nhosts);
    CHECK_STR(job->ranks_per_host ? buf : NULL, w->ranks_per_host);
}

#endif
