/* Job discovery on environments recorded from the real engines (see
 * tests/data/recorded/README.md): what each rank of a real launch saw, and what
 * Foehn must make of it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "foehn.h"
#include "job_check.h"

#define U FOEHN_UNKNOWN
#define MAXVARS 256

typedef struct recording {
    char *vars[MAXVARS + 1];
    char host[256];
} recording;

static void recording_free(recording *r)
{
    for (char **v = r->vars; *v; v++)
        free(*v);
}

/* Reads "# host: NAME" and KEY=VALUE lines. */
static int load(const char *name, recording *r)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/recorded/%s.env", FOEHN_TEST_DATA, name);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    memset(r, 0, sizeof *r);
    char line[8192];
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "# host: ", 8) == 0)
        {
            size_t len = strlen(line + 8);
            if (len >= sizeof r->host)
                len = sizeof r->host - 1;
            memcpy(r->host, line + 8, len);
            r->host[len] = '\0';
        }
        else if (line[0] && line[0] != '#' && n < MAXVARS)
            r->vars[n++] = strdup(line);
    }
    fclose(f);
    return 0;
}

typedef placement expect;

static void check_recording(const char *name, const expect *w)
{
    fprintf(stderr, "recording %s\n", name);
    recording r;
    if (load(name, &r) != 0) {
        CHECK(!"recording missing");
        return;
    }
    foehn_discover_options opt = {.sysroot = "/nonexistent", .hostname = r.host, .cwd = "/"};
    foehn_job job;
    foehn_error err;
    int rc = foehn_job_discover(&job, r.vars, &opt, &err);
    CHECK_INT(rc, FOEHN_OK);
    if (rc == FOEHN_OK) {
        check_placement(&job, w);
        foehn_job_clear(&job);
    } else {
        fprintf(stderr, "  error: %s\n", err.message);
    }
    recording_free(&r);
}

int main(void)
{
    char name[128];
    for (int r = 0; r < 4; r++) {
        /* One machine, four ranks: every launcher puts them all on this host. */
        const struct { const char *file, *launcher; } local[] = {
            {"openmpi-4ranks", "openmpi"}, {"hydra-4ranks", "hydra"},
            {"torchrun-4ranks", "torchrun"},
        };
        for (size_t i = 0; i < sizeof local / sizeof local[0]; i++) {
            snprintf(name, sizeof name, "%s-rank%d", local[i].file, r);
            expect w = {local[i].launcher, "none", r, 4, r, 4, 0, 1, "vm", "4"};
            check_recording(name, &w);
        }
        /* prterun tells only the rank; the rest comes from PMIx (bootstrap layer). */
        snprintf(name, sizeof name, "prterun-4ranks-rank%d", r);
        expect p = {"pmix", "none", r, U, U, U, U, U, NULL, NULL};
        check_recording(name, &p);

        const char *one_node[] = {"slurm-srun-none-1node", "slurm-srun-pmix-1node"};
        for (size_t i = 0; i < 2; i++) {
            snprintf(name, sizeof name, "%s-rank%d", one_node[i], r);
            expect w = {"slurm", "slurm", r, 4, r, 4, 0, 1, "n1", "4"};
            check_recording(name, &w);
        }
        const char *two_nodes[] = {"slurm-srun-none-2node", "slurm-sbatch-srun"};
        for (size_t i = 0; i < 2; i++) {
            snprintf(name, sizeof name, "%s-rank%d", two_nodes[i], r);
            expect w = {"slurm", "slurm", r, 4, r % 2, 2, r / 2, 2, "n1 n2", "2 2"};
            check_recording(name, &w);
        }
    }
    for (int r = 0; r < 2; r++) {
        snprintf(name, sizeof name, "slurm-srun-pmi2-1node-rank%d", r);
        expect w = {"slurm", "slurm", r, 2, r, 2, 0, 1, "n1", "2"};
        check_recording(name, &w);
    }
    /* srun -N2 -n3: two tasks on n1, one on n2. */
    const expect uneven[] = {
        {"slurm", "slurm", 0, 3, 0, 2, 0, 2, "n1 n2", "2 1"},
        {"slurm", "slurm", 1, 3, 1, 2, 0, 2, "n1 n2", "2 1"},
        {"slurm", "slurm", 2, 3, 0, 1, 1, 2, "n1 n2", "2 1"},
    };
    for (int r = 0; r < 3; r++) {
        snprintf(name, sizeof name, "slurm-srun-pmix-2node-rank%d", r);
        check_recording(name, &uneven[r]);
    }
    /* The batch script itself: a job of one inside a two-node allocation. */
    expect batch = {"none", "slurm", 0, 1, 0, 1, 0, 1, "n1", "1"};
    check_recording("slurm-sbatch-batch-rank0", &batch);
    return check_summary("recorded");
}
