/* where: a C program that asks Foehn where it runs. Build it against an
 * installed Foehn with
 *     cc where.c $(pkg-config --cflags --libs foehn) -o where
 * and start it under any launcher (srun, mpirun, mpiexec, torchrun, ...). */
#include <stdio.h>

#include <foehn.h>

extern char **environ;

int main(void)
{
    foehn_job job;
    foehn_error err;
    if (foehn_job_discover(&job, environ, NULL, &err) != FOEHN_OK) {
        fprintf(stderr, "where: %s\n", err.message);
        return 1;
    }
    printf("rank %d of %d on %s (node %d of %d), launched by %s\n", job.rank, job.size,
           job.hostname, job.node_index, job.num_nodes, foehn_launcher_name(job.launcher));
    foehn_job_clear(&job);
    return 0;
}
