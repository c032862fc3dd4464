/* What foehn launch must know about this machine beyond the environment: which
 * launchers are on PATH and what flavour `mpiexec` and `mpirun` are. A version
 * query runs under a deadline (cli_run), so that a wedged launcher can never hang
 * foehn launch. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli/launch_probe.h"
#include "cli/subprocess.h"

bool launch_on_path(const char *name)
{
    char buf[PATH_MAX];
    return cli_find_on_path(name, buf, sizeof buf);
}

/* `program --version`'s output (stdout and stderr) into buf; false when it cannot run
 * or takes longer than `seconds`. */
static bool version_text(const char *program, double seconds, char *buf, size_t cap)
{
    char *const argv[] = {(char *)program, "--version", NULL};
    int status = cli_run(argv, seconds, buf, cap);
    return status >= 0 && status != 127;
}

launch_mpiexec launch_mpiexec_flavour(void)
{
    char path[PATH_MAX];
    if (!cli_find_on_path("mpiexec", path, sizeof path))
        return MPIEXEC_NONE;
    /* Cray's PALS lives in its own tree (/opt/cray/pals/<version>/bin/mpiexec), and
     * its --version names no MPI. */
    char real[PATH_MAX];
    if (strstr(path, "/pals/") || (realpath(path, real) && strstr(real, "/pals/")))
        return MPIEXEC_PALS;
    char text[4096];
    if (!version_text("mpiexec", 10, text, sizeof text))
        return MPIEXEC_NONE;
    if (strstr(text, "PALS") || strstr(text, "pals"))
        return MPIEXEC_PALS;
    if (strstr(text, "Open MPI") || strstr(text, "OpenRTE") || strstr(text, "PRRTE"))
        return MPIEXEC_OPENMPI;
    if (strstr(text, "HYDRA") || strstr(text, "Hydra") || strstr(text, "Intel(R) MPI"))
        return MPIEXEC_HYDRA;
    return MPIEXEC_NONE;
}

bool launch_openmpi_mpirun(void)
{
    if (!launch_on_path("mpirun"))
        return false;
    char text[4096];
    return version_text("mpirun", 10, text, sizeof text) &&
           (strstr(text, "Open MPI") || strstr(text, "OpenRTE"));
}
