/* foehn run's ranks: starting them, signalling them, and carrying their output. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/run.h"
#include "common/fdio.h"

extern char **environ;

/* One line (with its newline) to the stream's destination, tagged if asked:
 * one write per line, so lines of different ranks never interleave. */
static void emit_line(const run_stream *s, int rank, bool tag, const char *line, size_t len)
{
    foehn_strbuf out;
    foehn_strbuf_init(&out);
    if (tag)
        foehn_strbuf_appendf(&out, "[%d] ", rank);
    foehn_strbuf_append_n(&out, line, len);
    if (len == 0 || line[len - 1] != '\n')
        foehn_strbuf_append(&out, "\n");
    if (!out.failed)
        foehn_write_all(s->out, out.data, out.len);
    foehn_strbuf_release(&out);
}

void run_stream_pump(run_stream *s, int rank, bool tag)
{
    char buf[65536];
    ssize_t n = read(s->fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n > 0) {
        foehn_strbuf_append_n(&s->partial, buf, (size_t)n);
        size_t start = 0;
        for (size_t i = 0; i < s->partial.len; i++) {
            if (s->partial.data[i] == '\n') {
                emit_line(s, rank, tag, s->partial.data + start, i + 1 - start);
                start = i + 1;
            }
        }
        size_t rest = s->partial.len - start;
        memmove(s->partial.data, s->partial.data + start, rest);
        s->partial.len = rest;
        if (s->partial.data)
            s->partial.data[rest] = '\0';
        return;
    }
    /* EOF or error: what is left is a last line without its newline. */
    if (s->partial.len > 0)
        emit_line(s, rank, tag, s->partial.data, s->partial.len);
    foehn_strbuf_release(&s->partial);
    close(s->fd);
    s->fd = -1;
}

/* Child side of the spawn: wire the pipes, join a process group of its own (so
 * that stopping a rank stops what it started), and exec. Only async-signal-safe
 * calls between fork and exec. */
static void exec_rank(const char *path, char **argv, char **env, int in_fd, int out_fd,
                      int err_fd, int report_fd)
{
    setpgid(0, 0);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
        _exit(127);
    execve(path, argv, env);
    int e = errno;
    /* Tell the launcher why exec failed through the close-on-exec pipe. */
    ssize_t ignored = write(report_fd, &e, sizeof e);
    (void)ignored;
    _exit(127);
}

/* The environment of a rank: ours, then the extra variables (which win). */
static char **rank_environment(char **extra)
{
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (extra[m])
        m++;
    char **env = calloc(n + m + 1, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t keylen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        bool replaced = false;
        for (size_t j = 0; j < m && !replaced; j++)
            replaced = strncmp(extra[j], environ[i], keylen) == 0 && extra[j][keylen] == '=';
        if (!replaced)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++)
        env[k++] = extra[j];
    env[k] = NULL;
    return env;
}

/* The program's path as execvp would find it, looked up before fork because the
 * child of a threaded process may call only async-signal-safe functions. */
static char *resolve_program(const char *name)
{
    if (strchr(name, '/'))
        return strdup(name);
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t len = strcspn(path, ":");
        char *candidate = malloc(len + strlen(name) + 2);
        if (!candidate)
            return NULL;
        snprintf(candidate, len + strlen(name) + 2, "%.*s/%s", (int)len, path, name);
        if (access(candidate, X_OK) == 0)
            return candidate;
        free(candidate);
        path += len;
        if (*path == ':')
            path++;
    }
    return strdup(name); /* execve will fail and report ENOENT */
}

int run_spawn(run_rank *rank, const run_options *opt, char **extra_env, bool gets_stdin)
{
    int out[2] = {-1, -1}, err[2] = {-1, -1}, in[2] = {-1, -1}, report[2] = {-1, -1};
    char **env = rank_environment(extra_env);
    char *path = resolve_program(opt->argv[0]);
    int rc = -1;
    if (!env || !path || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) || pipe2(report, O_CLOEXEC))
        goto out;
    if (gets_stdin ? pipe2(in, O_CLOEXEC) : (in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
        goto out;
    pid_t pid = fork();
    if (pid < 0)
        goto out;
    if (pid == 0)
        exec_rank(path, opt->argv, env, in[0], out[1], err[1], report[1]);
    setpgid(pid, pid); /* also here: no race with an early signal to the group */
    close(report[1]);
    report[1] = -1;
    int exec_errno = 0;
    ssize_t got;
    do
        got = read(report[0], &exec_errno, sizeof exec_errno);
    while (got < 0 && errno == EINTR);
    rank->pid = pid;
    rank->streams[0] = (run_stream){.fd = out[0], .out = 1};
    rank->streams[1] = (run_stream){.fd = err[0], .out = 2};
    foehn_strbuf_init(&rank->streams[0].partial);
    foehn_strbuf_init(&rank->streams[1].partial);
    out[0] = err[0] = -1;
    rank->stdin_fd = gets_stdin ? in[1] : -1;
    if (gets_stdin) {
        in[1] = -1;
        fcntl(rank->stdin_fd, F_SETFL, O_NONBLOCK);
    }
    if (got == (ssize_t)sizeof exec_errno) {
        errno = exec_errno;
        rc = -2; /* started, but exec failed: the child exits 127 */
    } else {
        rc = 0;
    }
out:
    {
        int saved = errno;
        int fds[] = {out[0], out[1], err[0], err[1], in[0], in[1], report[0], report[1]};
        for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        free(env);
        free(path);
        errno = saved;
    }
    return rc;
}

void run_signal_rank(const run_rank *rank, int sig)
{
    if (rank->pid > 0 && kill(-rank->pid, sig) != 0)
        kill(rank->pid, sig); /* not yet its own group leader */
}

const char *run_describe_status(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "ended with wait status %d", status);
    return buf;
}

int run_exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}
