/* foehn run: starts N ranks on this machine around a rendezvous service and
 * supervises them in one poll loop: output, stdin, signals, failures. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/run.h"
#include "common/clock.h"
#include "common/fdio.h"
#include "pm/rendezvous.h"

extern char **environ;

/* Seconds from SIGTERM to SIGKILL when stopping ranks. */
#define KILL_AFTER 2.0
/* After the last rank is reaped, how long its leftover output may still come
 * (a rank's own children may hold its pipes open). */
#define DRAIN_AFTER 1.0

/* The signal handler's only way out: a self-pipe the poll loop watches. */
static int wake_fd = -1;

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t ignored = write(wake_fd, &b, 1);
    (void)ignored;
    errno = saved;
}

typedef struct run_job {
    run_options opt;
    run_rank *ranks;
    int alive;
    foehn_rdv_server *server;
    int wake[2];
    /* The first failure decides the exit status. */
    int failed_rank, failed_status;
    int interrupted_by;          /* a signal we forwarded, or 0 */
    double stop_at, kill_at;     /* deadlines (monotonic seconds); 0 = none */
    double drain_until;
    /* Rank 0's stdin: bytes read from ours, not yet written to it. */
    bool stdin_open;
    char stdin_buf[65536];
    size_t stdin_len;
    /* An abort asked for by a rank, handed over from the server's thread. */
    pthread_mutex_t abort_lock;
    int abort_rank, abort_status;
    char abort_message[512];
    /* --bind-gpus: the job this foehn run sees, whose accelerators the ranks share. */
    foehn_job here;
    bool have_here;
} run_job;

/* Runs on the rendezvous server's thread: hand over and wake the loop. */
static void on_abort(void *arg, int rank, int status, const char *message)
{
    run_job *job = arg;
    pthread_mutex_lock(&job->abort_lock);
    if (job->abort_rank < 0) {
        job->abort_rank = rank;
        job->abort_status = status;
        snprintf(job->abort_message, sizeof job->abort_message, "%s", message ? message : "");
    }
    pthread_mutex_unlock(&job->abort_lock);
    on_signal(0);
}

static void signal_alive(run_job *job, int sig)
{
    for (int r = 0; r < job->opt.nranks; r++)
        run_signal_rank(&job->ranks[r], sig);
}

/* Starts stopping the job: the others get `grace` seconds, then SIGTERM, then SIGKILL. */
static void begin_stop(run_job *job, double grace)
{
    double at = foehn_now() + grace;
    if (job->stop_at == 0 || at < job->stop_at)
        job->stop_at = at;
}

static void record_failure(run_job *job, int rank, int status, const char *why)
{
    if (job->failed_rank >= 0 || job->interrupted_by)
        return;
    job->failed_rank = rank;
    job->failed_status = status;
    if (job->alive > 0)
        fprintf(stderr, "foehn run: rank %d %s; stopping the other %d rank%s\n", rank, why,
                job->alive, job->alive == 1 ? "" : "s");
    else
        fprintf(stderr, "foehn run: rank %d %s\n", rank, why);
    begin_stop(job, job->opt.grace);
}

static void reap(run_job *job)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        for (int r = 0; r < job->opt.nranks; r++) {
            run_rank *rank = &job->ranks[r];
            if (rank->pid != pid)
                continue;
            rank->pid = 0;
            rank->status = status;
            job->alive--;
            bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            char how[128];
            run_describe_status(status, how, sizeof how);
            if (ok) /* fine if it finalized; if not, the others must not wait for it */
                strcat(how, " without finalizing");
            foehn_rdv_server_rank_died(job->server, r, how);
            if (!ok)
                record_failure(job, r, status, how);
            if (rank->stdin_fd >= 0) {
                close(rank->stdin_fd);
                rank->stdin_fd = -1;
                job->stdin_open = false;
            }
        }
    }
}

static void take_abort(run_job *job)
{
    pthread_mutex_lock(&job->abort_lock);
    int rank = job->abort_rank, status = job->abort_status;
    char message[512];
    snprintf(message, sizeof message, "%s", job->abort_message);
    pthread_mutex_unlock(&job->abort_lock);
    if (rank < 0 || job->failed_rank >= 0)
        return;
    char why[700];
    snprintf(why, sizeof why, "called abort (status %d): %s", status, message);
    /* An abort is a deliberate stop of the whole job: no grace period. */
    record_failure(job, rank, (status & 0xff) << 8, why);
    job->stop_at = foehn_now();
}

static void handle_wake(run_job *job)
{
    unsigned char sigs[64];
    ssize_t n = read(job->wake[0], sigs, sizeof sigs);
    for (ssize_t i = 0; i < n; i++) {
        int sig = sigs[i];
        if (sig == SIGCHLD) {
            reap(job);
        } else if (sig == 0) {
            take_abort(job);
        } else {
            /* SIGINT, SIGTERM, SIGHUP: pass it on, and escalate if ignored. */
            if (!job->interrupted_by && job->failed_rank < 0)
                job->interrupted_by = sig;
            signal_alive(job, sig);
            double at = foehn_now() + job->opt.grace + KILL_AFTER;
            if (job->kill_at == 0 || at < job->kill_at)
                job->kill_at = at;
        }
    }
}

/* Moves stdin to rank 0: read only when the last chunk has been written. */
static void pump_stdin(run_job *job, bool readable, bool writable)
{
    run_rank *r0 = &job->ranks[0];
    if (readable && job->stdin_len == 0) {
        ssize_t n = read(0, job->stdin_buf, sizeof job->stdin_buf);
        if (n > 0) {
            job->stdin_len = (size_t)n;
        } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
            job->stdin_open = false;
            if (r0->stdin_fd >= 0) {
                close(r0->stdin_fd); /* rank 0 sees EOF */
                r0->stdin_fd = -1;
            }
            return;
        }
    }
    if ((writable || readable) && job->stdin_len > 0 && r0->stdin_fd >= 0) {
        ssize_t n = write(r0->stdin_fd, job->stdin_buf, job->stdin_len);
        if (n > 0) {
            memmove(job->stdin_buf, job->stdin_buf + n, job->stdin_len - (size_t)n);
            job->stdin_len -= (size_t)n;
        } else if (n < 0 && errno == EPIPE) {
            job->stdin_open = false; /* rank 0 closed its stdin */
        }
    }
}

static void escalate(run_job *job)
{
    double t = foehn_now();
    if (job->stop_at && t >= job->stop_at) {
        job->stop_at = 0;
        if (job->alive > 0) {
            signal_alive(job, SIGTERM);
            job->kill_at = t + KILL_AFTER;
        }
    }
    if (job->kill_at && t >= job->kill_at) {
        job->kill_at = 0;
        signal_alive(job, SIGKILL);
    }
}

static int poll_timeout_ms(const run_job *job)
{
    double next = 0;
    const double deadlines[] = {job->stop_at, job->kill_at, job->drain_until};
    for (size_t i = 0; i < 3; i++)
        if (deadlines[i] && (next == 0 || deadlines[i] < next))
            next = deadlines[i];
    return next == 0 ? -1 : foehn_ms_until(next);
}

static bool streams_open(const run_job *job)
{
    for (int r = 0; r < job->opt.nranks; r++)
        for (int s = 0; s < 2; s++)
            if (job->ranks[r].streams[s].fd >= 0)
                return true;
    return false;
}

static void loop(run_job *job)
{
    size_t cap = 2 + 2 * (size_t)job->opt.nranks;
    struct pollfd *fds = calloc(cap, sizeof *fds);
    int *owner = calloc(cap, sizeof *owner); /* rank*2+stream for stream entries */
    if (!fds || !owner) {
        fprintf(stderr, "foehn run: out of memory\n");
        signal_alive(job, SIGKILL);
        job->stop_at = 0;
    }
    while (fds && owner && (job->alive > 0 || streams_open(job))) {
        if (job->alive == 0 && job->drain_until == 0)
            job->drain_until = foehn_now() + DRAIN_AFTER;
        if (job->drain_until && foehn_now() >= job->drain_until)
            break;
        size_t n = 0;
        fds[n++] = (struct pollfd){.fd = job->wake[0], .events = POLLIN};
        bool stdin_polled = false, rank0_polled = false;
        run_rank *r0 = &job->ranks[0];
        if (job->stdin_open && r0->stdin_fd >= 0) {
            if (job->stdin_len == 0) {
                fds[n++] = (struct pollfd){.fd = 0, .events = POLLIN};
                stdin_polled = true;
            } else {
                fds[n++] = (struct pollfd){.fd = r0->stdin_fd, .events = POLLOUT};
                rank0_polled = true;
            }
        }
        size_t first_stream = n;
        for (int r = 0; r < job->opt.nranks; r++)
            for (int s = 0; s < 2; s++)
                if (job->ranks[r].streams[s].fd >= 0) {
                    owner[n] = r * 2 + s;
                    fds[n++] = (struct pollfd){.fd = job->ranks[r].streams[s].fd, .events = POLLIN};
                }
        int ready = poll(fds, n, poll_timeout_ms(job));
        if (ready < 0 && errno != EINTR)
            break;
        if (ready > 0) {
            if (fds[0].revents)
                handle_wake(job);
            if (stdin_polled && fds[1].revents)
                pump_stdin(job, true, false);
            if (rank0_polled && fds[1].revents)
                pump_stdin(job, false, true);
            for (size_t i = first_stream; i < n; i++)
                if (fds[i].revents) {
                    int r = owner[i] / 2;
                    run_stream_pump(&job->ranks[r].streams[owner[i] % 2], r, job->opt.tag_output);
                }
        }
        escalate(job);
    }
    free(fds);
    free(owner);
}

static int install_signals(run_job *job)
{
    if (pipe2(job->wake, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    wake_fd = job->wake[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    const int sigs[] = {SIGCHLD, SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* The variables of rank r. Returned strings live in `store` (freed by caller). */
static char **rank_vars(const run_job *job, int r, const char *job_id, const char *host,
                        const char *token, char store[][400], size_t nstore)
{
    static char *vars[24];
    int n = job->opt.nranks;
    int port = foehn_rdv_server_port(job->server);
    size_t k = 0;
#define SETVAR(...) (snprintf(store[k], 400, __VA_ARGS__), vars[k] = store[k], k++)
    SETVAR("FOEHN_RANK=%d", r);
    SETVAR("FOEHN_SIZE=%d", n);
    SETVAR("FOEHN_LOCAL_RANK=%d", r);
    SETVAR("FOEHN_LOCAL_SIZE=%d", n);
    SETVAR("FOEHN_NODE_INDEX=0");
    SETVAR("FOEHN_NUM_NODES=1");
    SETVAR("FOEHN_JOB_ID=%s", job_id);
    if (host)
        SETVAR("FOEHN_HOSTS=%s", host);
    if (host)
        SETVAR("FOEHN_RANKS_PER_HOST=%d", n);
    SETVAR("%s=127.0.0.1:%d", FOEHN_RDV_ADDR_VAR, port);
    SETVAR("%s=%s", FOEHN_RDV_TOKEN_VAR, token);
    /* What torch and friends read. */
    SETVAR("RANK=%d", r);
    SETVAR("WORLD_SIZE=%d", n);
    SETVAR("LOCAL_RANK=%d", r);
    SETVAR("LOCAL_WORLD_SIZE=%d", n);
    if (job->opt.bind_gpus) {
        /* checked before any rank started (foehn_cmd_run): cannot fail here */
        char **gpu = NULL;
        size_t ngpu = 0;
        if (foehn_gpu_share(&job->here, r, n, &gpu, &ngpu, NULL) == FOEHN_OK) {
            for (size_t i = 0; i < ngpu && k + 1 < nstore; i++)
                SETVAR("%s", gpu[i]);
            foehn_strv_free(gpu, ngpu);
        }
    }
#undef SETVAR
    (void)nstore;
    vars[k] = NULL;
    return vars;
}

/* This host's name if the hostlist grammar can carry it (for FOEHN_HOSTS). */
static char *hostlist_name(void)
{
    char name[256] = "";
    if (gethostname(name, sizeof name - 1) != 0)
        return NULL;
    const char *one[] = {name};
    char *list = NULL;
    if (foehn_hostlist_compress(one, 1, &list, NULL) != FOEHN_OK)
        return NULL;
    return list;
}

static int start_ranks(run_job *job, const char *token)
{
    char job_id[300];
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    snprintf(job_id, sizeof job_id, "foehn-%s-%d", host, (int)getpid());
    char *hosts = hostlist_name();
    char store[24][400];
    int status = 0;
    for (int r = 0; r < job->opt.nranks && status == 0; r++) {
        job->ranks[r] = (run_rank){.rank = r, .stdin_fd = -1};
        job->ranks[r].streams[0].fd = job->ranks[r].streams[1].fd = -1;
        char **vars = rank_vars(job, r, job_id, hosts, token, store, 24);
        int rc = run_spawn(&job->ranks[r], &job->opt, vars, r == 0);
        if (rc == -1) {
            fprintf(stderr, "foehn run: cannot start rank %d: %s\n", r, strerror(errno));
            status = 1;
            break;
        }
        job->alive++;
        if (rc == -2) {
            fprintf(stderr, "foehn run: cannot run '%s': %s\n", job->opt.argv[0], strerror(errno));
            status = 127;
        }
    }
    free(hosts);
    if (status != 0) {
        job->failed_rank = 0;
        job->failed_status = status << 8;
        signal_alive(job, SIGKILL);
    }
    job->stdin_open = job->ranks[0].stdin_fd >= 0;
    return status;
}

int foehn_cmd_run(int argc, char **argv)
{
    run_job job;
    memset(&job, 0, sizeof job);
    int parsed = run_parse(argc, argv, &job.opt);
    if (parsed >= 0)
        return parsed;
    job.failed_rank = job.abort_rank = -1;
    if (job.opt.bind_gpus) {
        /* Every rank's share is known before any starts: a job that cannot be bound
         * does not start at all. */
        foehn_error gerr;
        if (foehn_job_discover(&job.here, environ, NULL, &gerr) != FOEHN_OK) {
            fprintf(stderr, "foehn run: --bind-gpus: %s\n", gerr.message);
            return 1;
        }
        job.have_here = true;
        char **gpu = NULL;
        size_t ngpu = 0;
        if (foehn_gpu_share(&job.here, 0, job.opt.nranks, &gpu, &ngpu, &gerr) != FOEHN_OK) {
            fprintf(stderr, "foehn run: --bind-gpus: %s\n", gerr.message);
            foehn_job_clear(&job.here);
            return 1;
        }
        foehn_strv_free(gpu, ngpu);
    }
    pthread_mutex_init(&job.abort_lock, NULL);
    /* Two output pipes per rank here, and the rendezvous's connection to each. */
    foehn_fd_limit_raise(3ULL * (unsigned long long)job.opt.nranks + 64);
    char token[FOEHN_RDV_TOKEN_LEN + 1];
    foehn_error err;
    job.ranks = calloc((size_t)job.opt.nranks, sizeof *job.ranks);
    if (!job.ranks || install_signals(&job) != 0) {
        fprintf(stderr, "foehn run: %s\n", strerror(errno));
        return 1;
    }
    foehn_rdv_server_options sopt = {.size = job.opt.nranks, .bind_host = "127.0.0.1",
                                     .token = token, .on_abort = on_abort, .arg = &job};
    if (foehn_rdv_new_token(token, &err) != FOEHN_OK ||
        foehn_rdv_server_start(&job.server, &sopt, &err) != FOEHN_OK) {
        fprintf(stderr, "foehn run: cannot start the rendezvous service: %s\n", err.message);
        return 1;
    }
    start_ranks(&job, token);
    loop(&job);
    foehn_rdv_server_stop(job.server);
    for (int r = 0; r < job.opt.nranks; r++) {
        for (int s = 0; s < 2; s++) {
            if (job.ranks[r].streams[s].fd >= 0)
                close(job.ranks[r].streams[s].fd);
            foehn_strbuf_release(&job.ranks[r].streams[s].partial);
        }
        if (job.ranks[r].stdin_fd >= 0)
            close(job.ranks[r].stdin_fd);
    }
    free(job.ranks);
    if (job.have_here)
        foehn_job_clear(&job.here);
    close(job.wake[0]);
    close(job.wake[1]);
    pthread_mutex_destroy(&job.abort_lock);
    if (job.failed_rank >= 0)
        return run_exit_code(job.failed_status);
    if (job.interrupted_by)
        return 128 + job.interrupted_by;
    return 0;
}
