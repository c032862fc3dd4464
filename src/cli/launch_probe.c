/* What foehn launch must know about this machine beyond the environment: which
 * launchers are on PATH and what flavour `mpiexec` and `mpirun` are. A version
 * query runs under a deadline and is killed past it, so that a wedged launcher
 * can never hang foehn launch. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/launch_probe.h"
#include "common/clock.h"
#include "common/fdio.h"

/* The path of `name` in a PATH directory into buf; false when there is none. */
static bool find_on_path(const char *name, char *buf, size_t cap)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        return false;
    for (const char *p = path; *p;) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        if (len > 0 && len + strlen(name) + 2 < cap) {
            snprintf(buf, cap, "%.*s/%s", (int)len, p, name);
            struct stat st;
            if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
                return true;
        }
        p += len;
        if (*p == ':')
            p++;
    }
    return false;
}

bool launch_on_path(const char *name)
{
    char buf[PATH_MAX];
    return find_on_path(name, buf, sizeof buf);
}

/* `program --version`'s output (stdout and stderr, the first 4 KiB) into buf;
 * false when it cannot run or takes longer than `seconds`. */
static bool version_text(const char *program, double seconds, char *buf, size_t cap)
{
    int fds[2];
    if (pipe(fds) != 0)
        return false;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return false;
    }
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        setpgid(0, 0);
        execlp(program, program, "--version", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    double deadline = foehn_now() + seconds;
    size_t len = 0;
    bool ok = true;
    for (;;) {
        int ready = foehn_wait_fd(fds[0], POLLIN, deadline);
        if (ready <= 0) {
            ok = false;
            break;
        }
        ssize_t r = read(fds[0], buf + len, cap - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == cap - 1)
            break;
    }
    buf[len] = '\0';
    close(fds[0]);
    if (!ok)
        kill(-pid, SIGKILL);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return ok && WIFEXITED(status) && WEXITSTATUS(status) != 127;
}

launch_mpiexec launch_mpiexec_flavour(void)
{
    char path[PATH_MAX];
    if (!find_on_path("mpiexec", path, sizeof path))
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
