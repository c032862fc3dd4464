/* The watchdog's socket layer, without any process-management service: forked
 * children act as the ranks of a job; rank 0's published value reaches the others
 * through pipes from this process, which also plays the stranger. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "pm/watchdog.h"

#define N 4
/* Under ThreadSanitizer, a process with threads sleeps 1 s in exit (atexit_sleep_ms)
 * before it dies, which the 2-second bound below would count: not here. */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return "atexit_sleep_ms=0";
}

#define CHILD_BOUND_MS 4000 /* a rank nobody stops ends by itself (exit 99) after this */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int ms_until(double deadline)
{
    double left = deadline - now();
    return left <= 0 ? 0 : (int)(left * 1000.0) + 1;
}

/* ---- the children -------------------------------------------------------- */

typedef struct child {
    int rank;
    pid_t pid;
    int ctl;    /* parent -> child: the value, then commands */
    int report; /* child -> parent: "V<value>\n", "S\n" started, "E<message>\n" */
    int err;    /* the child's stderr */
    char rbuf[512];
    size_t rlen;
    char ebuf[4096];
    size_t elen;
    bool err_eof;
    double ended; /* when its stderr closed */
    int status;   /* waitpid's */
} child;

static int open_fds[64];
static int nopen;

static void track(int fd)
{
    open_fds[nopen++] = fd;
}

static void untrack_close(int *fd)
{
    for (int i = 0; i < nopen; i++)
        if (open_fds[i] == *fd) {
            open_fds[i] = open_fds[--nopen];
            break;
        }
    close(*fd);
    *fd = -1;
}

static void report(int fd, const char *fmt, ...)
{
    char line[1200];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0 && write(fd, line, (size_t)n) != n)
        _exit(98);
}

/* Reads one byte (or a line, into value) from ctl within the bound; -1 if none came. */
static int read_ctl(int ctl, char *value, size_t len)
{
    double deadline = now() + CHILD_BOUND_MS / 1000.0;
    size_t have = 0;
    for (;;) {
        struct pollfd pfd = {.fd = ctl, .events = POLLIN};
        if (poll(&pfd, 1, ms_until(deadline)) <= 0)
            return -1;
        char c;
        if (read(ctl, &c, 1) != 1)
            return -1;
        if (!value)
            return (unsigned char)c;
        if (c == '\n') {
            value[have] = '\0';
            return 0;
        }
        if (have + 1 < len)
            value[have++] = c;
    }
}

static _Noreturn void rank_main(int rank, int size, double timeout, int ctl, int rep)
{
    foehn_error err;
    foehn_watchdog *wd = NULL;
    char publish[FOEHN_WATCHDOG_PUBLISH_MAX], value[FOEHN_WATCHDOG_PUBLISH_MAX] = "";
    if (foehn_watchdog_listen(&wd, rank, size, "127.0.0.1", publish, sizeof publish, &err)) {
        report(rep, "E%s\n", err.message);
        _exit(4);
    }
    if (rank == 0)
        report(rep, "V%s\n", publish);
    else if (read_ctl(ctl, value, sizeof value) != 0)
        _exit(99);
    char host[16];
    snprintf(host, sizeof host, "node%d", rank);
    if (foehn_watchdog_start(wd, value, host, timeout, &err)) {
        report(rep, "E%s\n", err.message);
        foehn_watchdog_stop(wd);
        _exit(3);
    }
    report(rep, "S\n");
    /* The "collective": wait for the next command. */
    switch (read_ctl(ctl, NULL, 0)) {
    case 'q':
        foehn_watchdog_stop(wd);
        exit(0); /* not _exit: LeakSanitizer looks at this rank */
    case 'x':
        _exit(9); /* dies without a goodbye */
    case 'g': { /* forks a child that outlives this rank, holding copies of every fd */
        pid_t pid = fork();
        if (pid == 0) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 2); /* the test waits for the end of the rank's stderr */
            poll(NULL, 0, 3000); /* the test kills it sooner */
            _exit(0);
        }
        report(rep, "G%d\n", (int)pid);
        read_ctl(ctl, NULL, 0); /* killed meanwhile */
        _exit(99);
    }
    case 'e':
        exit(0); /* a clean end without stop: the exit hook says goodbye */
    case 'f':
        exit(1); /* a failed end (Python's uncaught exception): a death */
    default:
        _exit(99); /* nobody stopped this rank */
    }
}

static void spawn(child *c, int rank, int size, double timeout)
{
    int ctl[2], rep[2], err[2];
    if (pipe(ctl) || pipe(rep) || pipe(err)) {
        perror("pipe");
        exit(2);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        for (int i = 0; i < nopen; i++)
            close(open_fds[i]); /* other children's pipes */
        close(ctl[1]);
        close(rep[0]);
        close(err[0]);
        dup2(err[1], 2);
        close(err[1]);
        rank_main(rank, size, timeout, ctl[0], rep[1]);
    }
    close(ctl[0]);
    close(rep[1]);
    close(err[1]);
    *c = (child){.rank = rank, .pid = pid, .ctl = ctl[1], .report = rep[0], .err = err[0],
                 .status = -1};
    track(c->ctl);
    track(c->report);
    track(c->err);
}

static void send_ctl(child *c, const char *s)
{
    size_t n = strlen(s);
    if (write(c->ctl, s, n) != (ssize_t)n)
        fprintf(stderr, "write to rank %d: %s\n", c->rank, strerror(errno));
}

/* Drains stderr pipes (noting when they close) and report pipes, once, waiting up to ms. */
static void pump(child *cs, int n, int ms)
{
    struct pollfd pfds[2 * N];
    int nfds = 0;
    for (int i = 0; i < n; i++) {
        pfds[nfds++] = (struct pollfd){.fd = cs[i].err_eof ? -1 : cs[i].err, .events = POLLIN};
        pfds[nfds++] = (struct pollfd){.fd = cs[i].report, .events = POLLIN};
    }
    if (poll(pfds, (nfds_t)nfds, ms) <= 0)
        return;
    for (int i = 0; i < n; i++) {
        child *c = &cs[i];
        if (pfds[2 * i].revents) {
            ssize_t r = read(c->err, c->ebuf + c->elen, sizeof c->ebuf - 1 - c->elen);
            if (r > 0) {
                c->elen += (size_t)r;
                c->ebuf[c->elen] = '\0';
            } else {
                c->err_eof = true;
                c->ended = now();
            }
        }
        if (pfds[2 * i + 1].revents & POLLIN && c->rlen < sizeof c->rbuf - 1) {
            ssize_t r = read(c->report, c->rbuf + c->rlen, sizeof c->rbuf - 1 - c->rlen);
            if (r > 0) {
                c->rlen += (size_t)r;
                c->rbuf[c->rlen] = '\0';
            }
        }
    }
}

/* Waits until child's report holds a line starting with tag; returns it (or NULL). */
static const char *await_report(child *cs, int n, child *c, char tag, double deadline)
{
    for (;;) {
        for (char *line = c->rbuf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
            if (*line == tag && strchr(line, '\n'))
                return line + 1;
        if (ms_until(deadline) == 0)
            return NULL;
        pump(cs, n, ms_until(deadline));
    }
}

/* Waits for every child's end (stderr closed, then waitpid). */
static void finish(child *cs, int n, double deadline)
{
    for (;;) {
        bool all = true;
        for (int i = 0; i < n; i++)
            all = all && cs[i].err_eof;
        if (all || ms_until(deadline) == 0)
            break;
        pump(cs, n, ms_until(deadline));
    }
    for (int i = 0; i < n; i++) {
        child *c = &cs[i];
        if (c->pid <= 0)
            continue;
        if (!c->err_eof) { /* it hangs: a failure, but the test must not */
            fprintf(stderr, "rank %d still runs: killing it\n", c->rank);
            kill(c->pid, SIGKILL);
        }
        waitpid(c->pid, &c->status, 0);
        c->pid = 0;
        untrack_close(&c->ctl);
        untrack_close(&c->report);
        untrack_close(&c->err);
    }
}

static int exit_code(const child *c)
{
    return WIFEXITED(c->status) ? WEXITSTATUS(c->status) : 128 + WTERMSIG(c->status);
}

static void spawn_job(child *cs, int n, int size, double timeout, double deadline)
{
    spawn(&cs[0], 0, size, timeout);
    for (int i = 1; i < n; i++)
        spawn(&cs[i], i, size, timeout);
    (void)deadline;
}

/* Hands rank 0's value to ranks [from, to) of cs. */
static void hand_value(child *cs, int from, int to, const char *value)
{
    char line[FOEHN_WATCHDOG_PUBLISH_MAX + 2];
    snprintf(line, sizeof line, "%s\n", value);
    for (int i = from; i < to; i++)
        send_ctl(&cs[i], line);
}

static bool all_started(child *cs, int n, double deadline)
{
    bool ok = true;
    for (int i = 0; i < n; i++) {
        if (!await_report(cs, n, &cs[i], 'S', deadline)) {
            fprintf(stderr, "rank %d did not start: %s\n", cs[i].rank, cs[i].rbuf);
            ok = false;
        }
    }
    return ok;
}

static void copy_value(char *dst, const char *line)
{
    size_t n = strcspn(line, "\n");
    memcpy(dst, line, n);
    dst[n] = '\0';
}

/* ---- cases --------------------------------------------------------------- */

static void case_clean(void)
{
    child cs[N];
    double deadline = now() + 3;
    spawn_job(cs, N, N, 3.0, deadline);
    const char *v = await_report(cs, N, &cs[0], 'V', deadline);
    CHECK(v != NULL);
    char value[FOEHN_WATCHDOG_PUBLISH_MAX] = "";
    if (v)
        copy_value(value, v);
    hand_value(cs, 1, N, value);
    CHECK(all_started(cs, N, deadline));
    /* The others end (BYE) and are gone before rank 0 ends. */
    for (int i = 1; i < N; i++)
        send_ctl(&cs[i], "q");
    finish(cs + 1, N - 1, deadline);
    double until = now() + 0.1; /* a (wrong) rank 0 that took their ends for deaths */
    while (ms_until(until) > 0 && !cs[0].err_eof)
        pump(cs, 1, ms_until(until));
    send_ctl(&cs[0], "q");
    finish(cs, 1, deadline);
    for (int i = 0; i < N; i++) {
        CHECK_INT(exit_code(&cs[i]), 0);
        CHECK_STR(cs[i].ebuf, "");
    }
}

/* The victim dies ('x': by _exit(9); 'k': by SIGKILL; 'g': by SIGKILL, leaving behind a
 * child of fork() that holds copies of its descriptors); every other rank must stop
 * within 2 s, naming it. */
static void case_death(int victim, char how)
{
    bool sigkill = how != 'x';
    child cs[N];
    double deadline = now() + 3;
    spawn_job(cs, N, N, 3.0, deadline);
    const char *v = await_report(cs, N, &cs[0], 'V', deadline);
    char value[FOEHN_WATCHDOG_PUBLISH_MAX] = "";
    CHECK(v != NULL);
    if (v)
        copy_value(value, v);
    hand_value(cs, 1, N, value);
    CHECK(all_started(cs, N, deadline));
    pid_t grandchild = 0;
    if (how == 'g') {
        send_ctl(&cs[victim], "g");
        const char *g = await_report(cs, N, &cs[victim], 'G', deadline);
        CHECK(g != NULL);
        grandchild = g ? (pid_t)atoi(g) : 0;
    }
    double t0 = now();
    if (sigkill)
        kill(cs[victim].pid, SIGKILL);
    else
        send_ctl(&cs[victim], "x");
    finish(cs, N, t0 + 2.5);
    if (grandchild > 0)
        kill(grandchild, SIGKILL); /* not ours to wait for: init reaps it */
    CHECK_INT(exit_code(&cs[victim]), sigkill ? 128 + SIGKILL : 9);
    for (int i = 0; i < N; i++) {
        if (i == victim)
            continue;
        char want[128];
        snprintf(want, sizeof want,
                 "foehn: rank %d (host node%d) died without finishing; stopping rank %d\n", victim,
                 victim, i);
        CHECK_INT(exit_code(&cs[i]), FOEHN_WATCHDOG_EXIT);
        CHECK_STR(cs[i].ebuf, want);
        CHECK(cs[i].ended - t0 < 2.0);
    }
}

static int tcp_connect(const char *value)
{
    char ip[64];
    unsigned port = 0;
    const char *c = strchr(value, ':');
    if (!c || (size_t)(c - value) >= sizeof ip)
        return -1;
    memcpy(ip, value, (size_t)(c - value));
    ip[c - value] = '\0';
    port = (unsigned)strtoul(c + 1, NULL, 10);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* A HELLO as a rank would say it (the wire format of watchdog.c). */
static size_t hello_frame(unsigned char *f, const unsigned char token[16], uint32_t rank)
{
    const char *host = "stranger";
    size_t hl = strlen(host), len = 29 + hl;
    uint32_t be = htonl((uint32_t)len);
    memcpy(f, &be, 4);
    f[4] = 1;
    be = htonl(0x46574447u);
    memcpy(f + 5, &be, 4);
    f[9] = 0, f[10] = 1, f[11] = 0, f[12] = 0;
    memcpy(f + 13, token, 16);
    be = htonl(rank);
    memcpy(f + 29, &be, 4);
    f[33] = (unsigned char)hl;
    memcpy(f + 34, host, hl);
    return 5 + len;
}

/* True when the other end closes the connection (EOF or reset) within 2 s. */
static bool closed_by_peer(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    char buf[64];
    double deadline = now() + 2;
    while (poll(&pfd, 1, ms_until(deadline)) > 0) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            return true;
    }
    return false;
}

static bool stranger_is_closed(const char *value, const void *bytes, size_t len)
{
    int fd = tcp_connect(value);
    if (fd < 0)
        return false;
    bool closed = send(fd, bytes, len, MSG_NOSIGNAL) == (ssize_t)len && closed_by_peer(fd);
    close(fd);
    return closed;
}

static void token_of(const char *value, unsigned char token[16])
{
    const char *hex = strrchr(value, ':');
    for (int i = 0; i < 16 && hex; i++) {
        unsigned b = 0;
        sscanf(hex + 1 + 2 * i, "%2x", &b);
        token[i] = (unsigned char)b;
    }
}

static void case_strangers(void)
{
    child cs[N];
    double deadline = now() + 4;
    spawn_job(cs, N, N, 3.0, deadline);
    const char *v = await_report(cs, N, &cs[0], 'V', deadline);
    char value[FOEHN_WATCHDOG_PUBLISH_MAX] = "";
    CHECK(v != NULL);
    if (v)
        copy_value(value, v);
    unsigned char token[16], wrong[16], frame[64];
    token_of(value, token);
    memcpy(wrong, token, 16);
    wrong[7] ^= 1;

    int silent = tcp_connect(value); /* connects and says nothing */
    CHECK(silent >= 0);
    size_t n = hello_frame(frame, wrong, 1);
    CHECK(stranger_is_closed(value, frame, n));
    const char garbage[] = "GET / HTTP/1.0\r\n\r\n";
    CHECK(stranger_is_closed(value, garbage, sizeof garbage - 1));
    n = hello_frame(frame, token, 7); /* no such rank */
    CHECK(stranger_is_closed(value, frame, n));
    n = hello_frame(frame, token, 0); /* rank 0 does not say hello */
    CHECK(stranger_is_closed(value, frame, n));
    unsigned char huge[5] = {0x7f, 0xff, 0xff, 0xff, 1}; /* a HELLO of 2 GiB */
    CHECK(stranger_is_closed(value, huge, sizeof huge));

    /* Rank 1 first; then a second hello for rank 1, with the right token. */
    hand_value(cs, 1, 2, value);
    CHECK(await_report(cs, N, &cs[1], 'S', deadline) != NULL);
    n = hello_frame(frame, token, 1);
    CHECK(stranger_is_closed(value, frame, n));

    hand_value(cs, 2, N, value);
    CHECK(all_started(cs, N, deadline));
    CHECK(closed_by_peer(silent)); /* everyone is in: probation ends */
    close(silent);
    for (int i = 0; i < N; i++)
        send_ctl(&cs[i], "q");
    finish(cs, N, deadline);
    for (int i = 0; i < N; i++) {
        CHECK_INT(exit_code(&cs[i]), 0);
        CHECK_STR(cs[i].ebuf, "");
    }
}

/* Rank 0 ends cleanly first (END, by stop 'q' or by exit(0) 'e'): a later death
 * stops nobody. */
static void case_end_then_death(const char *how)
{
    child cs[N];
    double deadline = now() + 3;
    spawn_job(cs, N, N, 3.0, deadline);
    const char *v = await_report(cs, N, &cs[0], 'V', deadline);
    char value[FOEHN_WATCHDOG_PUBLISH_MAX] = "";
    CHECK(v != NULL);
    if (v)
        copy_value(value, v);
    hand_value(cs, 1, N, value);
    CHECK(all_started(cs, N, deadline));
    send_ctl(&cs[0], how);
    finish(cs, 1, deadline);
    CHECK_INT(exit_code(&cs[0]), 0);
    kill(cs[3].pid, SIGKILL);
    finish(cs + 3, 1, deadline);
    /* Give a (wrong) watchdog the chance to stop ranks 1 and 2. */
    double until = now() + 0.2;
    while (ms_until(until) > 0 && !cs[1].err_eof && !cs[2].err_eof)
        pump(cs + 1, 2, ms_until(until));
    send_ctl(&cs[1], "q");
    send_ctl(&cs[2], "q");
    finish(cs + 1, 2, deadline);
    for (int i = 1; i <= 2; i++) {
        CHECK_INT(exit_code(&cs[i]), 0);
        CHECK_STR(cs[i].ebuf, "");
    }
}

/* exit(0) without stop is a clean end; exit(1) without stop is a death. */
static void case_exit_status(void)
{
    child cs[N];
    double deadline = now() + 3;
    spawn_job(cs, N, N, 3.0, deadline);
    const char *v = await_report(cs, N, &cs[0], 'V', deadline);
    char value[FOEHN_WATCHDOG_PUBLISH_MAX] = "";
    CHECK(v != NULL);
    if (v)
        copy_value(value, v);
    hand_value(cs, 1, N, value);
    CHECK(all_started(cs, N, deadline));
    send_ctl(&cs[1], "e");
    finish(cs + 1, 1, deadline);
    CHECK_INT(exit_code(&cs[1]), 0);
    double until = now() + 0.1; /* a (wrong) rank 0 that took it for a death */
    while (ms_until(until) > 0 && !cs[0].err_eof)
        pump(cs, 1, ms_until(until));
    double t0 = now();
    send_ctl(&cs[2], "f");
    finish(cs, N, t0 + 2.5);
    CHECK_INT(exit_code(&cs[2]), 1);
    for (int i = 0; i < N; i += 3) {
        char want[128];
        snprintf(want, sizeof want,
                 "foehn: rank 2 (host node2) died without finishing; stopping rank %d\n", i);
        CHECK_INT(exit_code(&cs[i]), FOEHN_WATCHDOG_EXIT);
        CHECK_STR(cs[i].ebuf, want);
        CHECK(cs[i].ended - t0 < 2.0);
    }
    CHECK_STR(cs[1].ebuf, "");
    CHECK_STR(cs[2].ebuf, "");
}

/* Ranks that were told nothing by a rank 0 that gave up must not hang either. */
static void case_rank0_gives_up(void)
{
    child cs[2];
    double deadline = now() + 3;
    spawn_job(cs, 2, 3, 0.4, deadline); /* rank 2 never comes */
    const char *v = await_report(cs, 2, &cs[0], 'V', deadline);
    char value[FOEHN_WATCHDOG_PUBLISH_MAX] = "";
    CHECK(v != NULL);
    if (v)
        copy_value(value, v);
    hand_value(cs, 1, 2, value);
    const char *e = await_report(cs, 2, &cs[0], 'E', deadline);
    CHECK_CONTAINS(e, "waiting for rank 2 to join the watchdog");
    finish(cs, 2, deadline);
    CHECK_INT(exit_code(&cs[0]), 3);
    CHECK_INT(exit_code(&cs[1]), FOEHN_WATCHDOG_EXIT);
    CHECK_STR(cs[1].ebuf, "foehn: rank 0 (host node0) gave up after 0.4 s waiting for rank 2 to "
                          "join the watchdog; stopping rank 1\n");
}

/* A rank that dies while rank 0 still waits for others: rank 0's start fails at once. */
static void case_death_during_start(void)
{
    child cs[2];
    double deadline = now() + 3;
    spawn_job(cs, 2, 3, 3.0, deadline);
    const char *v = await_report(cs, 2, &cs[0], 'V', deadline);
    char value[FOEHN_WATCHDOG_PUBLISH_MAX] = "";
    CHECK(v != NULL);
    if (v)
        copy_value(value, v);
    hand_value(cs, 1, 2, value);
    CHECK(await_report(cs, 2, &cs[1], 'S', deadline) != NULL);
    double t0 = now();
    kill(cs[1].pid, SIGKILL);
    const char *e = await_report(cs, 2, &cs[0], 'E', deadline);
    CHECK_CONTAINS(e, "rank 1 (host node1) died without finishing");
    CHECK(now() - t0 < 2.0);
    finish(cs, 2, deadline);
    CHECK_INT(exit_code(&cs[0]), 3);
}

/* In this process: what needs no second rank. */
static void case_local(void)
{
    foehn_error err;
    foehn_watchdog *wd = (foehn_watchdog *)&err;
    char pub[FOEHN_WATCHDOG_PUBLISH_MAX] = "x";

    setenv("FOEHN_WATCHDOG", "0", 1);
    CHECK_INT(foehn_watchdog_listen(&wd, 0, 4, "127.0.0.1", pub, sizeof pub, &err), FOEHN_OK);
    CHECK(wd == NULL);
    CHECK_STR(pub, "");
    CHECK_INT(foehn_watchdog_start(wd, NULL, NULL, 1.0, &err), FOEHN_OK);
    foehn_watchdog_stop(wd);
    setenv("FOEHN_WATCHDOG", "sometimes", 1);
    CHECK_INT(foehn_watchdog_listen(&wd, 0, 4, "127.0.0.1", pub, sizeof pub, &err),
              FOEHN_ERR_INVALID);
    CHECK_CONTAINS(err.message, "FOEHN_WATCHDOG=\"sometimes\"");
    unsetenv("FOEHN_WATCHDOG");

    CHECK_INT(foehn_watchdog_listen(&wd, 0, 1, "127.0.0.1", pub, sizeof pub, &err), FOEHN_OK);
    CHECK(wd == NULL); /* a job of one */
    CHECK_INT(foehn_watchdog_listen(&wd, 4, 4, "127.0.0.1", pub, sizeof pub, &err),
              FOEHN_ERR_INVALID);
    CHECK_INT(foehn_watchdog_listen(&wd, 0, 4, "localhost", pub, sizeof pub, &err),
              FOEHN_ERR_INVALID);
    CHECK(wd == NULL);
    CHECK_INT(foehn_watchdog_listen(&wd, 0, 4, "127.0.0.1", pub, 10, &err), FOEHN_ERR_LIMIT);
    CHECK(wd == NULL);

    /* Rank 0 listens and is stopped without ever starting. */
    CHECK_INT(foehn_watchdog_listen(&wd, 0, 4, "127.0.0.1", pub, sizeof pub, &err), FOEHN_OK);
    CHECK(wd != NULL);
    CHECK(strncmp(pub, "127.0.0.1:", 10) == 0 && strlen(strrchr(pub, ':') + 1) == 32);
    char value[FOEHN_WATCHDOG_PUBLISH_MAX];
    snprintf(value, sizeof value, "%s", pub);
    foehn_watchdog_stop(wd);

    /* Rank 1: malformed values, and a port where nobody listens any more. */
    const char *bad[] = {"", "127.0.0.1", "127.0.0.1:80", "127.0.0.1:x:0123456789abcdef0123456789abcdef",
                         "127.0.0.1:80:0123456789abcdef0123456789abcdeg",
                         ":80:0123456789abcdef0123456789abcdef"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_INT(foehn_watchdog_listen(&wd, 1, 4, NULL, NULL, 0, &err), FOEHN_OK);
        CHECK_INT(foehn_watchdog_start(wd, bad[i], "h", 1.0, &err), FOEHN_ERR_INVALID);
        foehn_watchdog_stop(wd);
    }
    CHECK_INT(foehn_watchdog_listen(&wd, 1, 4, NULL, NULL, 0, &err), FOEHN_OK);
    CHECK_INT(foehn_watchdog_start(wd, value, "h", 1.0, &err), FOEHN_ERR_PEER);
    CHECK_CONTAINS(err.message, "could not connect to rank 0's watchdog");
    foehn_watchdog_stop(wd);
    CHECK_INT(foehn_watchdog_listen(&wd, 1, 4, NULL, NULL, 0, &err), FOEHN_OK);
    CHECK_INT(foehn_watchdog_start(wd, value, "h", 0, &err), FOEHN_ERR_INVALID);
    foehn_watchdog_stop(wd);
    foehn_watchdog_stop(NULL);

    /* IPv6, and a rank 0 that listens but never welcomes: the wait is bounded. */
    foehn_watchdog *r0 = NULL;
    if (foehn_watchdog_listen(&r0, 0, 2, "::1", pub, sizeof pub, &err) == FOEHN_OK) {
        CHECK(strncmp(pub, "::1:", 4) == 0);
        CHECK_INT(foehn_watchdog_listen(&wd, 1, 2, NULL, NULL, 0, &err), FOEHN_OK);
        double t0 = now();
        CHECK_INT(foehn_watchdog_start(wd, pub, "h", 0.2, &err), FOEHN_ERR_TIMEOUT);
        CHECK_CONTAINS(err.message, "did not welcome rank 1 within 0.2 s");
        CHECK(now() - t0 < 1.0);
        foehn_watchdog_stop(wd);
        foehn_watchdog_stop(r0);
    } else {
        fprintf(stderr, "no IPv6 loopback here (%s): skipped\n", err.message);
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    unsetenv("FOEHN_WATCHDOG");
    double t = now();
    case_local();
    case_clean();
    case_death(2, 'x');
    case_death(2, 'k');
    case_death(0, 'k');
    case_death(2, 'g');
    case_death(0, 'g');
    case_strangers();
    case_end_then_death("q");
    case_end_then_death("e");
    case_exit_status();
    case_rank0_gives_up();
    case_death_during_start();
    fprintf(stderr, "watchdog tests took %.2f s\n", now() - t);
    return check_summary("watchdog");
}
