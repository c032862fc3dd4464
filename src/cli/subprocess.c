/* Programs run by the foehn subcommands under a deadline (subprocess.h). */
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

#include "cli/subprocess.h"
#include "common/clock.h"
#include "common/fdio.h"

bool cli_find_on_path(const char *name, char *buf, size_t cap)
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

/* Reads the child's output until EOF or the deadline; false on the deadline. */
static bool drain(int fd, double deadline, char *out, size_t cap)
{
    size_t len = 0;
    char sink[4096];
    for (;;) {
        int ready = foehn_wait_fd(fd, POLLIN, deadline);
        if (ready <= 0)
            return false;
        char *into = out && len + 1 < cap ? out + len : sink;
        size_t room = out && len + 1 < cap ? cap - 1 - len : sizeof sink;
        ssize_t r = read(fd, into, room);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return true;
        if (into != sink) {
            len += (size_t)r;
            out[len] = '\0';
        }
    }
}

int cli_run(char *const argv[], double seconds, char *out, size_t cap)
{
    if (out && cap)
        out[0] = '\0';
    int fds[2] = {-1, -1};
    if (out && pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        if (out) {
            close(fds[0]);
            close(fds[1]);
        }
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        if (out) {
            dup2(fds[1], 1);
            dup2(fds[1], 2);
            close(fds[0]);
            close(fds[1]);
        }
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        execvp(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    double deadline = foehn_now() + seconds;
    bool in_time = true;
    if (out) {
        close(fds[1]);
        in_time = drain(fds[0], deadline, out, cap);
        close(fds[0]);
    }
    if (!in_time) { /* its output did not end in time */
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
    }
    int status = 0;
    for (;;) {
        pid_t got = waitpid(pid, &status, in_time ? WNOHANG : 0);
        if (got == pid)
            break;
        if (got < 0 && errno != EINTR)
            return -1;
        if (got == 0) {
            if (foehn_now() >= deadline) {
                in_time = false;
                kill(-pid, SIGKILL);
                kill(pid, SIGKILL);
                continue;
            }
            usleep(10000);
        }
    }
    if (!in_time)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
