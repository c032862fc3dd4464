/* Foehn's own rendezvous: a server in this process, ranks as threads or forked
 * children going through foehn_pm_init with FOEHN_PM=foehn, and everything that
 * must not disturb the job (garbage, wrong tokens, impostors) or must stop it at
 * once (a rank that dies, aborts or leaves early). */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "common/error.h"
#include "pm/pm.h"
#include "pm/rendezvous.h"
#include "pm/rendezvous_wire.h"

#define SCALE_RANKS 256

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_s(double s)
{
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- a server, and the environment foehn run would give each rank ------- */

typedef struct aborted {
    pthread_mutex_t lock;
    int calls, rank, status;
    char message[256];
} aborted;

typedef struct server {
    foehn_rdv_server *srv;
    int size, port;
    char token[FOEHN_RDV_TOKEN_LEN + 1];
    char addr[64];
    aborted abort;
} server;

static void on_abort(void *arg, int rank, int status, const char *message)
{
    aborted *a = arg;
    pthread_mutex_lock(&a->lock);
    a->calls++;
    a->rank = rank;
    a->status = status;
    snprintf(a->message, sizeof a->message, "%s", message);
    pthread_mutex_unlock(&a->lock);
}

static bool server_start(server *s, int size)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->abort.lock, NULL);
    foehn_error err;
    s->size = size;
    if (foehn_rdv_new_token(s->token, &err) != FOEHN_OK)
        return false;
    foehn_rdv_server_options o = {.size = size, .bind_host = "127.0.0.1", .token = s->token,
                                  .on_abort = on_abort, .arg = &s->abort};
    if (foehn_rdv_server_start(&s->srv, &o, &err) != FOEHN_OK) {
        fprintf(stderr, "server start: %s\n", err.message);
        return false;
    }
    s->port = foehn_rdv_server_port(s->srv);
    snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", s->port);
    return true;
}

static void server_stop(server *s)
{
    foehn_rdv_server_stop(s->srv);
    pthread_mutex_destroy(&s->abort.lock);
}

#define NVARS 13

typedef struct rank_env {
    char text[NVARS][160];
    char *envp[NVARS + 1];
} rank_env;

/* What foehn run sets for one rank; token NULL: the server's. */
static char *const *make_env(rank_env *e, const server *s, int rank, const char *token,
                             const char *timeout)
{
    snprintf(e->text[0], sizeof e->text[0], "FOEHN_PM=foehn");
    snprintf(e->text[1], sizeof e->text[1], "FOEHN_RDV_ADDR=%s", s->addr);
    snprintf(e->text[2], sizeof e->text[2], "FOEHN_RDV_TOKEN=%s", token ? token : s->token);
    snprintf(e->text[3], sizeof e->text[3], "FOEHN_RANK=%d", rank);
    snprintf(e->text[4], sizeof e->text[4], "FOEHN_SIZE=%d", s->size);
    snprintf(e->text[5], sizeof e->text[5], "FOEHN_LOCAL_RANK=%d", rank);
    snprintf(e->text[6], sizeof e->text[6], "FOEHN_LOCAL_SIZE=%d", s->size);
    snprintf(e->text[7], sizeof e->text[7], "FOEHN_NODE_INDEX=0");
    snprintf(e->text[8], sizeof e->text[8], "FOEHN_NUM_NODES=1");
    snprintf(e->text[9], sizeof e->text[9], "FOEHN_JOB_ID=test-%d", s->port);
    snprintf(e->text[10], sizeof e->text[10], "HOSTNAME=testhost");
    snprintf(e->text[11], sizeof e->text[11], "FOEHN_TIMEOUT=%s", timeout ? timeout : "20");
    snprintf(e->text[12], sizeof e->text[12], "PATH=/usr/bin:/bin");
    for (int i = 0; i < NVARS; i++)
        e->envp[i] = e->text[i];
    e->envp[NVARS] = NULL;
    return e->envp;
}

/* Drops one variable (by name prefix) or replaces it. */
static void env_set(rank_env *e, const char *name, const char *value)
{
    size_t n = strlen(name);
    for (int i = 0; i < NVARS; i++)
        if (strncmp(e->text[i], name, n) == 0 && e->text[i][n] == '=') {
            if (value)
                snprintf(e->text[i], sizeof e->text[i], "%s=%s", name, value);
            else
                snprintf(e->text[i], sizeof e->text[i], "UNSET_%d=", i);
        }
}

/* ---- one rank's exchange (run by threads and by children) ---------------- */

typedef struct rank_run {
    pthread_t thread;
    server *s;
    int rank;
    double fence_timeout;
    /* gate: wait for go before the exchange (test 1) */
    pthread_mutex_t *gate_lock;
    pthread_cond_t *gate_cond;
    int *ready, *go;
    /* results */
    int rc;              /* first failure's status, FOEHN_OK if none */
    char message[1100];  /* its sentence */
    double t_done;
} rank_run;

static int run_fail(rank_run *r, int rc, const char *what, const foehn_error *err)
{
    if (r->rc == FOEHN_OK) {
        r->rc = rc;
        snprintf(r->message, sizeof r->message, "%s: %s", what, err ? err->message : "");
    }
    r->t_done = now();
    return rc;
}

static void make_value(int rank, const char *key, unsigned char *out, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (unsigned char)(i * 31 + (size_t)rank * 7 + (size_t)key[0]);
}

static void gate_wait(rank_run *r)
{
    if (!r->gate_lock)
        return;
    pthread_mutex_lock(r->gate_lock);
    (*r->ready)++;
    pthread_cond_broadcast(r->gate_cond);
    while (!*r->go)
        pthread_cond_wait(r->gate_cond, r->gate_lock);
    pthread_mutex_unlock(r->gate_lock);
}

/* Two rounds, every value checked, a miss, a barrier: FOEHN_OK or the failure. */
static int exchange(rank_run *r)
{
    rank_env env;
    foehn_pm *pm;
    foehn_error err;
    int rc = foehn_pm_init(&pm, make_env(&env, r->s, r->rank, NULL, NULL), &err);
    if (rc != FOEHN_OK)
        return run_fail(r, rc, "init", &err);
    gate_wait(r);
    unsigned char value[FOEHN_PM_VALUE_MAX];
    make_value(r->rank, "bin", value, sizeof value);
    char text[64];
    snprintf(text, sizeof text, "rank %d says hi", r->rank);
    if ((rc = foehn_pm_put(pm, "text", text, strlen(text), &err)) != FOEHN_OK ||
        (rc = foehn_pm_put(pm, "bin", value, sizeof value, &err)) != FOEHN_OK ||
        (rc = foehn_pm_commit(pm, &err)) != FOEHN_OK ||
        (rc = foehn_pm_put(pm, "late", "x", 1, &err)) != FOEHN_OK || /* not committed yet */
        (rc = foehn_pm_fence(pm, r->fence_timeout, &err)) != FOEHN_OK)
        goto out;
    for (int peer = 0; peer < r->s->size && rc == FOEHN_OK; peer++) {
        void *got;
        size_t len;
        make_value(peer, "bin", value, sizeof value);
        snprintf(text, sizeof text, "rank %d says hi", peer);
        if ((rc = foehn_pm_get(pm, peer, "bin", &got, &len, 0, &err)) != FOEHN_OK)
            break;
        bool ok = len == sizeof value && memcmp(got, value, len) == 0;
        free(got);
        if ((rc = foehn_pm_get(pm, peer, "text", &got, &len, 0, &err)) != FOEHN_OK)
            break;
        ok = ok && len == strlen(text) && strcmp(got, text) == 0;
        free(got);
        if (!ok)
            rc = foehn_fail(&err, FOEHN_ERR_PROTOCOL, "rank %d's values came back wrong", peer);
    }
    void *got;
    size_t len;
    if (rc == FOEHN_OK && foehn_pm_get(pm, (r->rank + 1) % r->s->size, "late", &got, &len, 0,
                                       &err) != FOEHN_ERR_NOTFOUND)
        rc = foehn_fail(&err, FOEHN_ERR_PROTOCOL, "a put before commit was visible after the fence");
    if (rc != FOEHN_OK)
        goto out;
    /* A second round overrides a key (and commits "late"); a third puts nothing (a barrier). */
    snprintf(text, sizeof text, "round two from %d", r->rank);
    if ((rc = foehn_pm_put(pm, "text", text, strlen(text), &err)) != FOEHN_OK ||
        (rc = foehn_pm_commit(pm, &err)) != FOEHN_OK ||
        (rc = foehn_pm_fence(pm, r->fence_timeout, &err)) != FOEHN_OK ||
        (rc = foehn_pm_barrier(pm, r->fence_timeout, &err)) != FOEHN_OK)
        goto out;
    int peer = (r->rank + 1) % r->s->size;
    snprintf(text, sizeof text, "round two from %d", peer);
    if ((rc = foehn_pm_get(pm, peer, "text", &got, &len, 0, &err)) == FOEHN_OK) {
        if (strcmp(got, text) != 0)
            rc = foehn_fail(&err, FOEHN_ERR_PROTOCOL, "round two came back \"%s\"", (char *)got);
        free(got);
    }
    /* "late" went out with the second round. A never-put key is not found. */
    if (rc == FOEHN_OK && (rc = foehn_pm_get(pm, peer, "late", &got, &len, 0, &err)) == FOEHN_OK)
        free(got);
    if (rc == FOEHN_OK && foehn_pm_get(pm, peer, "never-put", &got, &len, 0, &err) !=
                              FOEHN_ERR_NOTFOUND)
        rc = foehn_fail(&err, FOEHN_ERR_PROTOCOL, "a key nobody put was found");
out:
    if (rc != FOEHN_OK)
        run_fail(r, rc, "exchange", &err);
    r->t_done = now();
    foehn_pm_finalize(pm);
    return rc;
}

static void *exchange_thread(void *arg)
{
    exchange((rank_run *)arg);
    return NULL;
}

/* init, put, commit, fence (and nothing else): the fence's outcome is recorded. */
static void *fence_thread(void *arg)
{
    rank_run *r = arg;
    rank_env env;
    foehn_pm *pm;
    foehn_error err;
    int rc = foehn_pm_init(&pm, make_env(&env, r->s, r->rank, NULL, NULL), &err);
    if (rc != FOEHN_OK) {
        run_fail(r, rc, "init", &err);
        return NULL;
    }
    gate_wait(r);
    if ((rc = foehn_pm_put(pm, "k", "v", 1, &err)) == FOEHN_OK &&
        (rc = foehn_pm_commit(pm, &err)) == FOEHN_OK)
        rc = foehn_pm_fence(pm, r->fence_timeout, &err);
    if (rc != FOEHN_OK) {
        run_fail(r, rc, "fence", &err);
        /* A later fence fails at once, the same way. */
        double t = now();
        foehn_error again;
        if (foehn_pm_fence(pm, r->fence_timeout, &again) != rc || now() - t > 0.5)
            snprintf(r->message, sizeof r->message, "a second fence did not fail at once");
    }
    r->t_done = now();
    foehn_pm_finalize(pm);
    return NULL;
}

static void start_ranks(rank_run *runs, int n, server *s, int first_rank, double timeout,
                        void *(*fn)(void *))
{
    for (int i = 0; i < n; i++) {
        runs[i] = (rank_run){.s = s, .rank = first_rank + i, .fence_timeout = timeout};
        pthread_create(&runs[i].thread, NULL, fn, &runs[i]);
    }
}

static void join_ranks(rank_run *runs, int n)
{
    for (int i = 0; i < n; i++)
        pthread_join(runs[i].thread, NULL);
}

/* Forks a child that runs fn and exits with what it returns. */
static pid_t spawn(int (*fn)(void *), void *arg)
{
    fflush(NULL); /* or the child's exit() would print the parent's buffered output again */
    pid_t pid = fork();
    if (pid == 0)
        _exit(fn(arg));
    return pid;
}

/* spawn, with the child held until release(*gate): a child forked while another
 * thread of this test holds memory only that thread's stack points to sees it leaked
 * (LeakSanitizer checks at the child's exit), so fork before starting threads. */
static pid_t spawn_held(int (*fn)(void *), void *arg, int *gate)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        char go;
        close(fds[1]);
        ssize_t n;
        while ((n = read(fds[0], &go, 1)) < 0 && errno == EINTR)
            ;
        _exit(n == 1 ? fn(arg) : 99);
    }
    close(fds[0]);
    *gate = fds[1];
    return pid;
}

static void release(int gate)
{
    ssize_t n;
    while ((n = write(gate, "g", 1)) < 0 && errno == EINTR)
        ;
    close(gate);
}

static int wait_status(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- raw connections: what an intruder can send ------------------------- */

static int raw_connect(const server *s)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void raw_send(int fd, const void *data, size_t len)
{
    if (send(fd, data, len, MSG_NOSIGNAL) < 0) {
        /* the server may already have closed it: that is what we test for */
    }
}

/* True when the server closes fd within seconds (EOF or reset, nothing sent to us). */
static bool closed_within(int fd, double seconds)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, (int)(seconds * 1000)) <= 0)
        return false;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

static void hello_frame(unsigned char *f, const server *s, uint32_t magic, const char *token,
                        uint32_t rank)
{
    rdv_put_header(f, RDV_HELLO_LEN, RDV_HELLO);
    unsigned char *p = f + RDV_HEADER_LEN;
    memset(p, 0, RDV_HELLO_LEN);
    foehn_put_u32(p, magic);
    p[5] = RDV_VERSION;
    rdv_token_decode(token ? token : s->token, p + 8);
    foehn_put_u32(p + 8 + RDV_TOKEN_BYTES, rank);
}

static uint32_t xorshift(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

/* Intruders the server must close at once; each returns whether it was. */
static int intrude(const server *s, uint32_t *seed)
{
    int closed = 0, tries = 0;
    unsigned char f[RDV_HEADER_LEN + RDV_HELLO_LEN], junk[4096];
    char wrong[FOEHN_RDV_TOKEN_LEN + 1];
    snprintf(wrong, sizeof wrong, "%s", s->token);
    wrong[FOEHN_RDV_TOKEN_LEN - 1] = wrong[FOEHN_RDV_TOKEN_LEN - 1] == '0' ? '1' : '0';
    for (int kind = 0; kind < 7; kind++) {
        int fd = raw_connect(s);
        if (fd < 0)
            continue;
        tries++;
        switch (kind) {
        case 0: /* random bytes */
            for (size_t i = 0; i < sizeof junk; i++)
                junk[i] = (unsigned char)xorshift(seed);
            raw_send(fd, junk, 1 + xorshift(seed) % sizeof junk);
            break;
        case 1: /* a hello claiming a gigabyte */
            rdv_put_header(f, 1u << 30, RDV_HELLO);
            raw_send(fd, f, RDV_HEADER_LEN);
            break;
        case 2: /* wrong token */
            hello_frame(f, s, RDV_MAGIC, wrong, 0);
            raw_send(fd, f, sizeof f);
            break;
        case 3: /* right token, rank out of range */
            hello_frame(f, s, RDV_MAGIC, NULL, (uint32_t)s->size + 5);
            raw_send(fd, f, sizeof f);
            break;
        case 4: /* right token, wrong magic */
            hello_frame(f, s, 0xdeadbeef, NULL, 0);
            raw_send(fd, f, sizeof f);
            break;
        case 5: /* right token, a rank already connected */
            hello_frame(f, s, RDV_MAGIC, NULL, 1);
            raw_send(fd, f, sizeof f);
            break;
        case 6: /* a fence before any hello */
            rdv_put_header(f, 8, RDV_FENCE);
            memset(f + RDV_HEADER_LEN, 0, 8);
            raw_send(fd, f, RDV_HEADER_LEN + 8);
            break;
        }
        closed += closed_within(fd, 2.0);
        close(fd);
    }
    return closed == tries && tries == 7;
}

/* ---- the tests ----------------------------------------------------------- */

static void test_tokens(void)
{
    char a[FOEHN_RDV_TOKEN_LEN + 1], b[FOEHN_RDV_TOKEN_LEN + 1];
    foehn_error err;
    CHECK_INT(foehn_rdv_new_token(a, &err), FOEHN_OK);
    CHECK_INT(foehn_rdv_new_token(b, &err), FOEHN_OK);
    CHECK_INT(strlen(a), FOEHN_RDV_TOKEN_LEN);
    CHECK(strspn(a, "0123456789abcdef") == FOEHN_RDV_TOKEN_LEN);
    CHECK(strcmp(a, b) != 0);
    foehn_rdv_server *srv;
    foehn_rdv_server_options o = {.size = 2, .bind_host = "127.0.0.1", .token = "abc"};
    CHECK_INT(foehn_rdv_server_start(&srv, &o, &err), FOEHN_ERR_INVALID);
    CHECK_CONTAINS(err.message, "hex digits");
    o.token = a;
    o.size = 0;
    CHECK_INT(foehn_rdv_server_start(&srv, &o, &err), FOEHN_ERR_INVALID);
}

/* Four ranks exchange while intruders knock: idle ones, garbage, wrong tokens, an
 * impostor for a connected rank, and a real client with the wrong token. */
static void test_exchange_under_attack(void)
{
    server s;
    if (!server_start(&s, 4)) {
        CHECK(!"server started");
        return;
    }
    double t0 = now();
    int idle = raw_connect(&s);
    int half = raw_connect(&s);
    unsigned char f[RDV_HEADER_LEN + RDV_HELLO_LEN];
    hello_frame(f, &s, RDV_MAGIC, NULL, 3);
    raw_send(half, f, 20); /* half a hello, with the right token's start, then silence */

    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
    int ready = 0, go = 0;
    rank_run runs[4];
    for (int i = 0; i < 4; i++) {
        runs[i] = (rank_run){.s = &s, .rank = i, .fence_timeout = 20, .gate_lock = &lock,
                             .gate_cond = &cond, .ready = &ready, .go = &go};
        pthread_create(&runs[i].thread, NULL, exchange_thread, &runs[i]);
    }
    pthread_mutex_lock(&lock);
    while (ready < 4)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);

    /* All four are connected: now the intruders, including an impostor for rank 1. */
    uint32_t seed = 2463534242u;
    CHECK(intrude(&s, &seed));
    rank_env env;
    foehn_pm *pm = NULL;
    foehn_error err;
    char wrong[FOEHN_RDV_TOKEN_LEN + 1];
    memset(wrong, 'a', FOEHN_RDV_TOKEN_LEN);
    wrong[FOEHN_RDV_TOKEN_LEN] = '\0';
    CHECK_INT(foehn_pm_init(&pm, make_env(&env, &s, 2, wrong, NULL), &err), FOEHN_ERR_UNAVAILABLE);
    CHECK_CONTAINS(err.message, "turned rank 2 away");

    pthread_mutex_lock(&lock);
    go = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    for (int round = 0; round < 5; round++) /* and more while they exchange */
        CHECK(intrude(&s, &seed));
    join_ranks(runs, 4);
    for (int i = 0; i < 4; i++) {
        CHECK_INT(runs[i].rc, FOEHN_OK);
        if (runs[i].rc != FOEHN_OK)
            fprintf(stderr, "rank %d: %s\n", i, runs[i].message);
    }
    /* The silent ones are dropped after RDV_HELLO_TIMEOUT. */
    double left = t0 + RDV_HELLO_TIMEOUT + 2 - now();
    CHECK(closed_within(idle, left > 0 ? left : 0));
    CHECK(closed_within(half, 1.0));
    close(idle);
    close(half);
    server_stop(&s);
}

/* Many connections of random bytes at once, then a normal job on the same server. */
static void test_garbage_flood(void)
{
    server s;
    if (!server_start(&s, 2)) {
        CHECK(!"server started");
        return;
    }
    uint32_t seed = 88172645u;
    int fds[64], closed = 0;
    unsigned char junk[2048];
    for (int i = 0; i < 64; i++) {
        fds[i] = raw_connect(&s);
        for (size_t k = 0; k < sizeof junk; k++)
            junk[k] = (unsigned char)xorshift(&seed);
        if (fds[i] >= 0)
            raw_send(fds[i], junk, 1 + xorshift(&seed) % sizeof junk);
    }
    for (int i = 0; i < 64; i++) {
        closed += fds[i] >= 0 && closed_within(fds[i], 2.0);
        if (fds[i] >= 0)
            close(fds[i]);
    }
    CHECK_INT(closed, 64);
    rank_run runs[2];
    start_ranks(runs, 2, &s, 0, 20, exchange_thread);
    join_ranks(runs, 2);
    CHECK_INT(runs[0].rc, FOEHN_OK);
    CHECK_INT(runs[1].rc, FOEHN_OK);
    server_stop(&s);
}

static int init_then_exit9(void *arg)
{
    rank_run *r = arg;
    rank_env env;
    foehn_pm *pm;
    foehn_error err;
    if (foehn_pm_init(&pm, make_env(&env, r->s, r->rank, NULL, NULL), &err) != FOEHN_OK)
        return 1;
    sleep_s(0.2);
    return 9; /* no finalize: a death */
}

/* A rank exits without finalize: the others' fence fails within a second, naming it
 * (and, when the launcher reports it in time, saying how it died). */
static void test_rank_dies(bool launcher_reports)
{
    server s;
    if (!server_start(&s, 3)) {
        CHECK(!"server started");
        return;
    }
    rank_run child = {.s = &s, .rank = 2};
    pid_t pid = spawn(init_then_exit9, &child);
    rank_run runs[2];
    start_ranks(runs, 2, &s, 0, 20, fence_thread);
    int status = wait_status(pid);
    double died = now();
    if (launcher_reports)
        foehn_rdv_server_rank_died(s.srv, 2, "exited with status 9");
    join_ranks(runs, 2);
    CHECK_INT(status, 9);
    for (int i = 0; i < 2; i++) {
        CHECK_INT(runs[i].rc, FOEHN_ERR_PEER);
        CHECK_CONTAINS(runs[i].message, "rank 2 died");
        if (launcher_reports)
            CHECK_CONTAINS(runs[i].message, "rank 2 died (exited with status 9) before the fence");
        CHECK(runs[i].t_done - died < 1.0);
    }
    server_stop(&s);
}

/* The launcher reports a rank that never even connected. */
static void test_rank_died_reported(void)
{
    server s;
    if (!server_start(&s, 3)) {
        CHECK(!"server started");
        return;
    }
    rank_run runs[2];
    start_ranks(runs, 2, &s, 0, 20, fence_thread);
    sleep_s(0.2);
    double told = now();
    foehn_rdv_server_rank_died(s.srv, 2, "was killed by SIGKILL");
    join_ranks(runs, 2);
    for (int i = 0; i < 2; i++) {
        CHECK_INT(runs[i].rc, FOEHN_ERR_PEER);
        CHECK_CONTAINS(runs[i].message, "rank 2 died (was killed by SIGKILL) before the fence");
        CHECK_CONTAINS(runs[i].message, "foehn provider");
        CHECK(runs[i].t_done - told < 1.0);
    }
    server_stop(&s);
}

/* Rank 1 connects but never fences, rank 2 never connects: rank 0 times out and
 * says who is missing. */
static void test_timeout(void)
{
    server s;
    if (!server_start(&s, 3)) {
        CHECK(!"server started");
        return;
    }
    rank_env env;
    foehn_pm *idle;
    foehn_error err;
    CHECK_INT(foehn_pm_init(&idle, make_env(&env, &s, 1, NULL, NULL), &err), FOEHN_OK);
    rank_run runs[1];
    start_ranks(runs, 1, &s, 0, 0.5, fence_thread);
    double t = now();
    join_ranks(runs, 1);
    CHECK_INT(runs[0].rc, FOEHN_ERR_TIMEOUT);
    CHECK_CONTAINS(runs[0].message, "waited 0.5 s for fence 1 of all 3 ranks");
    CHECK_CONTAINS(runs[0].message, s.addr);
    CHECK_CONTAINS(runs[0].message, "1 of 3 ranks arrived; ranks not arrived: 1-2 (never connected: 2)");
    CHECK(now() - t < 3.0);
    foehn_pm_finalize(idle);
    server_stop(&s);
}

static int init_then_abort(void *arg)
{
    rank_run *r = arg;
    rank_env env;
    foehn_pm *pm;
    foehn_error err;
    if (foehn_pm_init(&pm, make_env(&env, r->s, r->rank, NULL, NULL), &err) != FOEHN_OK)
        return 1;
    foehn_pm_abort(pm, 7, "bad input\n"); /* does not return */
    return 2;
}

static void test_abort(void)
{
    server s;
    if (!server_start(&s, 2)) {
        CHECK(!"server started");
        return;
    }
    rank_run child = {.s = &s, .rank = 1};
    int gate = -1;
    pid_t pid = spawn_held(init_then_abort, &child, &gate);
    rank_run runs[1];
    start_ranks(runs, 1, &s, 0, 20, fence_thread);
    release(gate);
    double t = now();
    CHECK_INT(wait_status(pid), 7);
    CHECK(now() - t < 5.0); /* the server closes on the aborting rank: it need not wait */
    join_ranks(runs, 1);
    pthread_mutex_lock(&s.abort.lock);
    CHECK_INT(s.abort.calls, 1);
    CHECK_INT(s.abort.rank, 1);
    CHECK_INT(s.abort.status, 7);
    CHECK_STR(s.abort.message, "bad input?");
    pthread_mutex_unlock(&s.abort.lock);
    CHECK_INT(runs[0].rc, FOEHN_ERR_PEER);
    CHECK_CONTAINS(runs[0].message, "rank 1 aborted the job (status 7): bad input");
    server_stop(&s);
}

/* A rank that finalizes while another waits at a fence it never joined. */
static void test_left_early(void)
{
    server s;
    if (!server_start(&s, 2)) {
        CHECK(!"server started");
        return;
    }
    rank_run runs[1];
    start_ranks(runs, 1, &s, 0, 20, fence_thread);
    rank_env env;
    foehn_pm *pm;
    foehn_error err;
    CHECK_INT(foehn_pm_init(&pm, make_env(&env, &s, 1, NULL, NULL), &err), FOEHN_OK);
    sleep_s(0.1);
    foehn_pm_finalize(pm);
    join_ranks(runs, 1);
    CHECK_INT(runs[0].rc, FOEHN_ERR_PEER);
    CHECK_CONTAINS(runs[0].message, "rank 1 finalized and left before the fence");
    server_stop(&s);
}

/* The server stops while a rank waits. */
static void test_server_goes_away(void)
{
    server s;
    if (!server_start(&s, 2)) {
        CHECK(!"server started");
        return;
    }
    rank_run runs[1];
    start_ranks(runs, 1, &s, 0, 20, fence_thread);
    sleep_s(0.2);
    server_stop(&s);
    join_ranks(runs, 1);
    CHECK_INT(runs[0].rc, FOEHN_ERR_PEER);
    CHECK_CONTAINS(runs[0].message, "the rendezvous service (foehn run)");
    CHECK_CONTAINS(runs[0].message, "went away");
}

static void test_bad_environment(void)
{
    server s;
    if (!server_start(&s, 2)) {
        CHECK(!"server started");
        return;
    }
    rank_env env;
    foehn_pm *pm = NULL;
    foehn_error err;
    const char *vars[] = {FOEHN_RDV_TOKEN_VAR, FOEHN_RDV_ADDR_VAR, "FOEHN_NUM_NODES",
                          "FOEHN_JOB_ID"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        make_env(&env, &s, 0, NULL, NULL);
        env_set(&env, vars[i], NULL);
        CHECK_INT(foehn_pm_init(&pm, env.envp, &err), FOEHN_ERR_INVALID);
        CHECK_CONTAINS(err.message, vars[i]);
    }
    make_env(&env, &s, 0, "12345", NULL);
    CHECK_INT(foehn_pm_init(&pm, env.envp, &err), FOEHN_ERR_INVALID);
    CHECK_CONTAINS(err.message, FOEHN_RDV_TOKEN_VAR);
    make_env(&env, &s, 0, NULL, NULL);
    env_set(&env, FOEHN_RDV_ADDR_VAR, "localhost");
    CHECK_INT(foehn_pm_init(&pm, env.envp, &err), FOEHN_ERR_INVALID);
    CHECK_CONTAINS(err.message, "FOEHN_RDV_ADDR=\"localhost\"");
    make_env(&env, &s, 0, NULL, NULL);
    env_set(&env, "FOEHN_LOCAL_RANK", "x1");
    CHECK_INT(foehn_pm_init(&pm, env.envp, &err), FOEHN_ERR_INVALID);
    CHECK_CONTAINS(err.message, "FOEHN_LOCAL_RANK");
    /* Nobody listens there (any more): refused, retried briefly, then a clear error. */
    server_stop(&s);
    make_env(&env, &s, 0, NULL, "0.3");
    double t = now();
    CHECK_INT(foehn_pm_init(&pm, env.envp, &err), FOEHN_ERR_UNAVAILABLE);
    CHECK_CONTAINS(err.message, s.addr);
    CHECK_CONTAINS(err.message, "Connection refused");
    CHECK(now() - t < 2.0);
}

static int scale_rank(void *arg)
{
    rank_run *r = arg;
    rank_env env;
    foehn_pm *pm;
    foehn_error err;
    if (foehn_pm_init(&pm, make_env(&env, r->s, r->rank, NULL, NULL), &err) != FOEHN_OK) {
        fprintf(stderr, "scale rank %d: %s\n", r->rank, err.message);
        return 1;
    }
    char ep[64]; /* 40 bytes, like a transport endpoint */
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%05d/ep-%015d", 40000 + r->rank, r->rank);
    int bad = foehn_pm_put(pm, "ep", ep, strlen(ep), &err) != FOEHN_OK ||
              foehn_pm_commit(pm, &err) != FOEHN_OK || foehn_pm_fence(pm, 30, &err) != FOEHN_OK;
    for (int peer = 0; peer < r->s->size && !bad; peer++) {
        void *got;
        size_t len;
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:%05d/ep-%015d", 40000 + peer, peer);
        bad = foehn_pm_get(pm, peer, "ep", &got, &len, 0, &err) != FOEHN_OK;
        if (!bad) {
            bad = len != strlen(ep) || memcmp(got, ep, len) != 0;
            free(got);
        }
    }
    if (bad)
        fprintf(stderr, "scale rank %d: %s\n", r->rank, err.message);
    foehn_pm_finalize(pm);
    return bad;
}

/* SCALE_RANKS forked ranks bootstrap: connect, hello, one fence of a 40-byte endpoint. */
static void test_scale(void)
{
    server s;
    if (!server_start(&s, SCALE_RANKS)) {
        CHECK(!"server started");
        return;
    }
    static pid_t pids[SCALE_RANKS];
    double t = now();
    for (int i = 0; i < SCALE_RANKS; i++) {
        rank_run r = {.s = &s, .rank = i};
        pids[i] = spawn(scale_rank, &r);
    }
    int ok = 0;
    for (int i = 0; i < SCALE_RANKS; i++)
        ok += pids[i] > 0 && wait_status(pids[i]) == 0;
    double took = now() - t;
    CHECK_INT(ok, SCALE_RANKS);
    fprintf(stderr, "test_rendezvous: %d forked ranks bootstrapped in %.3f s\n", SCALE_RANKS, took);
    server_stop(&s);
}

int main(void)
{
    test_tokens();
    test_exchange_under_attack();
    test_garbage_flood();
    test_rank_dies(false);
    test_rank_dies(true);
    test_rank_died_reported();
    test_timeout();
    test_abort();
    test_left_early();
    test_server_goes_away();
    test_bad_environment();
    test_scale();
    return check_summary("rendezvous");
}
