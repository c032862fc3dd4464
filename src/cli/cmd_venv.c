/* foehn venv [NAME]: a virtual environment per job setup, on top of the site's
 * Python (a conda environment or a module), as ezpz's ezpz_setup_python makes:
 * <working dir>/venvs/<NAME, else the active conda environment's name, else the
 * interpreter's>, made with --system-site-packages (the site's torch and mpi4py stay
 * visible) or reused when it is there, and the line that activates it. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/subprocess.h"
#include "common/strbuf.h"
#include "foehn.h"

extern char **environ;

/* python -m venv on a shared file system can take a while; never forever. */
#define VENV_SECONDS 600

static void usage(FILE *to)
{
    fprintf(to,
            "usage: foehn venv [NAME] [--python PYTHON] [--shell]\n\n"
            "Creates (or reuses) <working dir>/venvs/<NAME> with --system-site-packages\n"
            "from the active Python, and prints how to activate it. NAME defaults to the\n"
            "active conda environment's name (CONDA_DEFAULT_ENV), else the interpreter's\n"
            "(python3.11). The working directory is the job's: PBS_O_WORKDIR, then\n"
            "SLURM_SUBMIT_DIR, then the current one.\n\n"
            "  --python PYTHON  the interpreter to build on (default: $CONDA_PREFIX/bin/\n"
            "                   python3 when conda is active, else python3 on PATH)\n"
            "  --shell          print only the activation line: eval \"$(foehn venv --shell)\"\n"
            "  -h, --help       this text\n");
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool valid_name(const char *name)
{
    if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (const char *p = name; *p; p++)
        if (*p == '/' || (unsigned char)*p < 0x20)
            return false;
    return true;
}

/* The interpreter to build on, into buf. */
static bool choose_python(const char *given, char *buf, size_t cap)
{
    if (given) {
        if (strchr(given, '/')) {
            snprintf(buf, cap, "%s", given);
            return is_file(buf) && access(buf, X_OK) == 0;
        }
        return cli_find_on_path(given, buf, cap);
    }
    const char *conda = getenv("CONDA_PREFIX");
    if (conda && *conda) {
        snprintf(buf, cap, "%s/bin/python3", conda);
        if (is_file(buf) && access(buf, X_OK) == 0)
            return true;
    }
    return cli_find_on_path("python3", buf, cap);
}

static void mkdir_parents(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    }
    mkdir(path, 0755);
}

int foehn_cmd_venv(int argc, char **argv)
{
    const char *name = NULL, *python_arg = NULL;
    bool shell = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--shell") == 0) {
            shell = true;
        } else if (strcmp(a, "--python") == 0 && i + 1 < argc) {
            python_arg = argv[++i];
        } else if (a[0] == '-' || name) {
            fprintf(stderr, "foehn venv: unexpected argument '%s'\n\n", a);
            usage(stderr);
            return 2;
        } else {
            name = a;
        }
    }
    char python[PATH_MAX];
    if (!choose_python(python_arg, python, sizeof python)) {
        fprintf(stderr, "foehn venv: no Python to build on: %s\n",
                python_arg ? "--python names no executable" : "no python3 on PATH (load the "
                "site's Python module or activate conda first)");
        return 1;
    }
    char resolved[PATH_MAX];
    const char *real = realpath(python, resolved) ? resolved : python;
    if (!name) {
        const char *conda = getenv("CONDA_DEFAULT_ENV");
        const char *prefix = getenv("CONDA_PREFIX");
        if (conda && *conda)
            name = conda;
        else if (prefix && *prefix && strrchr(prefix, '/'))
            name = strrchr(prefix, '/') + 1;
        else
            name = strrchr(real, '/') ? strrchr(real, '/') + 1 : real;
    }
    if (!valid_name(name)) {
        fprintf(stderr, "foehn venv: '%s' cannot name a folder of venvs/\n", name);
        return 2;
    }

    foehn_job job;
    foehn_error err;
    if (foehn_job_discover(&job, environ, NULL, &err) != FOEHN_OK) {
        fprintf(stderr, "foehn venv: %s\n", err.message);
        return 1;
    }
    char dir[PATH_MAX + 64], marker[PATH_MAX + 96];
    int len = snprintf(dir, sizeof dir, "%s/venvs/%s", job.workdir, name);
    foehn_job_clear(&job);
    if (len < 0 || (size_t)len >= PATH_MAX) {
        fprintf(stderr, "foehn venv: the path %s is too long\n", dir);
        return 1;
    }
    snprintf(marker, sizeof marker, "%s/bin/activate", dir);
    bool reused = is_file(marker);
    if (!reused) {
        char parent[PATH_MAX + 64];
        snprintf(parent, sizeof parent, "%s", dir);
        *strrchr(parent, '/') = '\0';
        mkdir_parents(parent);
        char output[8192];
        char *const cmd[] = {python, "-m", "venv", "--system-site-packages", dir, NULL};
        int status = cli_run(cmd, VENV_SECONDS, output, sizeof output);
        if (status != 0 || !is_file(marker)) {
            fprintf(stderr, "foehn venv: %s -m venv --system-site-packages %s %s%s\n", python,
                    dir, status < 0 ? "did not finish in time" : "failed", output[0] ? ":" : "");
            if (output[0])
                fprintf(stderr, "%s", output);
            return 1;
        }
    }
    foehn_strbuf line;
    foehn_strbuf_init(&line);
    foehn_strbuf_append(&line, "source ");
    foehn_strbuf_append_quoted(&line, marker);
    char *text = NULL;
    if (foehn_strbuf_finish(&line, &text) != FOEHN_OK)
        return 1;
    if (shell) {
        fprintf(stderr, "foehn venv: %s %s (from %s)\n", reused ? "reusing" : "created", dir,
                real);
        printf("%s\n", text);
    } else {
        printf("%s %s\n  on %s, with its site packages\nactivate it with:\n  %s\n",
               reused ? "reusing" : "created", dir, real, text);
    }
    free(text);
    return 0;
}
