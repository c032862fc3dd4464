/* Communicators (groups, contexts, Dup and Split), and what collective algorithms
 * build on: numbered collectives, their point-to-point, and the worker thread that
 * runs nonblocking collectives in the order they were started. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/coll.h"
#include "comm/engine.h"
#include "common/clock.h"
#include "common/error.h"

/* How long finalize waits for worker threads to finish their last collective (they
 * fail fast then: every pending request has been failed). */
#define WORKER_STOP_WAIT 10.0

/* How far down the queue jobs may begin ahead of the one that runs (foehn_coll_start's
 * begin): each holds its receives' buffers meanwhile. */
#define BEGIN_AHEAD_MAX 64

struct foehn_coll_job {
    struct foehn_coll_job *next;
    foehn_coll coll;
    foehn_error err;
    void (*begin)(foehn_coll *c, void *args);
    bool begin_called;
    int (*run)(foehn_coll *c, void *args);
    void *args;
    void (*free_args)(void *args);
    foehn_request *req;
};

static const char *const kind_names[FOEHN_COLL_KIND_COUNT] = {
    [FOEHN_COLL_BARRIER] = "barrier",
    [FOEHN_COLL_BCAST] = "bcast",
    [FOEHN_COLL_REDUCE] = "reduce",
    [FOEHN_COLL_ALLREDUCE] = "allreduce",
    [FOEHN_COLL_REDUCE_SCATTER_BLOCK] = "reduce_scatter_block",
    [FOEHN_COLL_SCAN] = "scan",
    [FOEHN_COLL_EXSCAN] = "exscan",
    [FOEHN_COLL_GATHER] = "gather",
    [FOEHN_COLL_GATHERV] = "gatherv",
    [FOEHN_COLL_SCATTER] = "scatter",
    [FOEHN_COLL_SCATTERV] = "scatterv",
    [FOEHN_COLL_ALLGATHER] = "allgather",
    [FOEHN_COLL_ALLGATHERV] = "allgatherv",
    [FOEHN_COLL_ALLTOALL] = "alltoall",
    [FOEHN_COLL_ALLTOALLV] = "alltoallv",
    [FOEHN_COLL_BCAST_BLOB] = "bcast (objects)",
    [FOEHN_COLL_GATHER_BLOB] = "gather (objects)",
    [FOEHN_COLL_ALLGATHER_BLOB] = "allgather (objects)",
    [FOEHN_COLL_SCATTER_BLOB] = "scatter (objects)",
    [FOEHN_COLL_ALLTOALL_BLOB] = "alltoall (objects)",
    [FOEHN_COLL_ALLTOALL_PIECES] = "alltoall (objects in pieces)",
    [FOEHN_COLL_COMM_CREATE] = "communicator creation (Dup/Split)",
};

const char *foehn_coll_kind_name(int kind)
{
    if (kind == 0)
        return "point-to-point";
    if (kind < 0 || kind >= FOEHN_COLL_KIND_COUNT || !kind_names[kind])
        return "an unknown collective";
    return kind_names[kind];
}

/* ---- communicators ------------------------------------------------------- */

int foehn_comm_create(foehn_engine *e, uint32_t ctx, const int *world_of, int size,
                      foehn_comm **out, foehn_error *err)
{
    *out = NULL;
    foehn_comm *c = calloc(1, sizeof *c);
    int *wo = malloc((size_t)size * sizeof *wo);
    int *ro = malloc((size_t)e->size * sizeof *ro);
    if (!c || !wo || !ro) {
        free(c);
        free(wo);
        free(ro);
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    }
    for (int w = 0; w < e->size; w++)
        ro[w] = -1;
    for (int r = 0; r < size; r++) {
        wo[r] = world_of[r];
        ro[world_of[r]] = r;
    }
    bool one_host = true;
    for (int r = 1; r < size && one_host; r++)
        one_host = strcmp(foehn_engine_host(e, wo[r]), foehn_engine_host(e, wo[0])) == 0;
    *c = (foehn_comm){.engine = e, .ctx = ctx, .rank = ro[e->rank], .size = size,
                      .world_of = wo, .rank_of = ro, .refs = 1, .one_host = one_host,
                      .next_comm = e->comms};
    pthread_cond_init(&c->jobs_cv, NULL);
    if (e->comms)
        e->comms->prev_comm = c;
    e->comms = c;
    *out = c;
    return FOEHN_OK;
}

void foehn_comm_unref_locked(foehn_comm *c)
{
    if (--c->refs > 0)
        return;
    foehn_engine *e = c->engine;
    if (c->prev_comm)
        c->prev_comm->next_comm = c->next_comm;
    else if (e->comms == c)
        e->comms = c->next_comm;
    if (c->next_comm)
        c->next_comm->prev_comm = c->prev_comm;
    pthread_cond_destroy(&c->jobs_cv);
    free(c->world_of);
    free(c->rank_of);
    free(c);
}

/* Stops every worker (each finishes what was queued: failing fast once the engine has
 * stopped), then lets go of COMM_WORLD and COMM_SELF. Under e->mu. */
void foehn_comm_destroy_all(foehn_engine *e)
{
    for (foehn_comm *c = e->comms; c; c = c->next_comm) {
        c->worker_stop = true;
        pthread_cond_broadcast(&c->jobs_cv);
    }
    double deadline = foehn_now() + WORKER_STOP_WAIT;
    while (e->workers > 0 && foehn_now() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 100000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&e->done_cv, &e->mu, &ts);
    }
    foehn_comm *builtin[2] = {e->world, e->self};
    e->world = e->self = NULL;
    for (int i = 0; i < 2; i++)
        if (builtin[i]) {
            builtin[i]->freed = true;
            foehn_comm_unref_locked(builtin[i]);
        }
}

int foehn_comm_rank(const foehn_comm *comm)
{
    return comm ? comm->rank : -1;
}

int foehn_comm_size(const foehn_comm *comm)
{
    return comm ? comm->size : 0;
}

int foehn_comm_world_rank(const foehn_comm *comm, int r)
{
    return comm && r >= 0 && r < comm->size ? comm->world_of[r] : -1;
}

void foehn_comm_free(foehn_comm *comm)
{
    if (!comm || comm->builtin)
        return;
    foehn_engine *e = comm->engine;
    pthread_mutex_lock(&e->mu);
    if (!comm->freed) {
        comm->freed = true;
        comm->worker_stop = true;
        pthread_cond_broadcast(&comm->jobs_cv);
        foehn_comm_unref_locked(comm);
    }
    pthread_mutex_unlock(&e->mu);
}

/* What each rank says when a communicator is made: its color and key, and the
 * smallest context it may use. */
typedef struct create_vote {
    int32_t color, key;
    uint32_t next_ctx;
} create_vote;

static int exchange_votes(foehn_comm *comm, create_vote *votes, foehn_error *err)
{
    foehn_coll c;
    int rc = foehn_coll_begin(comm, FOEHN_COLL_COMM_CREATE, &c, err);
    if (rc != FOEHN_OK)
        return rc;
    size_t n = (size_t)comm->size;
    foehn_request **reqs = calloc(2 * n, sizeof *reqs);
    if (!reqs)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    for (int r = 0; r < comm->size && rc == FOEHN_OK; r++) {
        if (r == comm->rank)
            continue;
        rc = foehn_coll_irecv(&c, r, &votes[r], sizeof votes[r], &reqs[r]);
        if (rc == FOEHN_OK)
            rc = foehn_coll_isend(&c, r, &votes[comm->rank], sizeof votes[comm->rank],
                                  &reqs[n + (size_t)r]);
    }
    int wrc = foehn_coll_waitall(&c, reqs, 2 * n);
    free(reqs);
    return rc != FOEHN_OK ? rc : wrc;
}

static int vote_order(const void *a, const void *b, void *votes_arg)
{
    const create_vote *votes = votes_arg;
    int ra = *(const int *)a, rb = *(const int *)b;
    if (votes[ra].key != votes[rb].key)
        return votes[ra].key < votes[rb].key ? -1 : 1;
    return ra < rb ? -1 : ra > rb;
}

static int create_from(foehn_comm *comm, int color, int key, foehn_comm **out, foehn_error *err)
{
    *out = NULL;
    foehn_engine *e = comm->engine;
    create_vote *votes = calloc((size_t)comm->size, sizeof *votes);
    int *members = malloc((size_t)comm->size * sizeof *members);
    int *world = malloc((size_t)comm->size * sizeof *world);
    if (!votes || !members || !world) {
        free(votes);
        free(members);
        free(world);
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_lock(&e->mu);
    votes[comm->rank] = (create_vote){color, key, e->next_ctx};
    pthread_mutex_unlock(&e->mu);
    int rc = exchange_votes(comm, votes, err);
    uint32_t ctx = 0;
    int n = 0;
    for (int r = 0; rc == FOEHN_OK && r < comm->size; r++) {
        ctx = votes[r].next_ctx > ctx ? votes[r].next_ctx : ctx;
        if (votes[r].color == color)
            members[n++] = r;
    }
    if (rc == FOEHN_OK) {
        qsort_r(members, (size_t)n, sizeof *members, vote_order, votes);
        for (int i = 0; i < n; i++)
            world[i] = comm->world_of[members[i]];
        pthread_mutex_lock(&e->mu);
        /* Contexts only grow: one this rank takes is above any it took before, and
         * above any its partners in this communicator took. */
        e->next_ctx = ctx + 2 > e->next_ctx ? ctx + 2 : e->next_ctx;
        rc = foehn_engine_check(e, err);
        if (rc == FOEHN_OK && color != FOEHN_UNDEFINED)
            rc = foehn_comm_create(e, ctx, world, n, out, err);
        pthread_mutex_unlock(&e->mu);
    }
    free(votes);
    free(members);
    free(world);
    return rc;
}

static int comm_usable(const foehn_comm *comm, foehn_error *err)
{
    if (!comm || comm->freed || !foehn_engine_get())
        return foehn_fail(err, FOEHN_ERR_INVALID,
                          "invalid communicator (freed, never made, or finalized)");
    return FOEHN_OK;
}

int foehn_comm_dup(foehn_comm *comm, foehn_comm **out, foehn_error *err)
{
    *out = NULL;
    int rc = comm_usable(comm, err);
    return rc == FOEHN_OK ? create_from(comm, 0, comm->rank, out, err) : rc;
}

int foehn_comm_split(foehn_comm *comm, int color, int key, foehn_comm **out, foehn_error *err)
{
    *out = NULL;
    int rc = comm_usable(comm, err);
    if (rc == FOEHN_OK && color < 0 && color != FOEHN_UNDEFINED)
        rc = foehn_fail(err, FOEHN_ERR_INVALID,
                        "invalid color %d for Split: colors are >= 0 or UNDEFINED", color);
    return rc == FOEHN_OK ? create_from(comm, color, key, out, err) : rc;
}

/* ---- numbered collectives ------------------------------------------------------ */

int foehn_coll_begin(foehn_comm *comm, int kind, foehn_coll *c, foehn_error *err)
{
    foehn_error_reset(err);
    *c = (foehn_coll){.comm = comm, .kind = kind, .err = err};
    int rc = comm_usable(comm, err);
    if (rc != FOEHN_OK)
        return rc;
    foehn_engine *e = comm->engine;
    pthread_mutex_lock(&e->mu);
    rc = foehn_engine_check(e, err);
    c->seq = comm->coll_seq++;
    pthread_mutex_unlock(&e->mu);
    c->rank = comm->rank;
    c->size = comm->size;
    c->one_host = comm->one_host;
    return rc;
}

/* Keeps the first failure of a collective: later ones are consequences. */
static int keep_first(foehn_coll *c, int rc, const foehn_error *local)
{
    if (rc != FOEHN_OK && c->err->message[0] == '\0')
        memcpy(c->err, local, sizeof *local);
    return rc;
}

static int coll_tag(const foehn_coll *c)
{
    return (int)(c->seq & 0x7fffffffu);
}

int foehn_coll_isend(foehn_coll *c, int dest, const void *buf, size_t len, foehn_request **req)
{
    foehn_error local = {{0}};
    foehn_engine *e = c->comm->engine;
    pthread_mutex_lock(&e->mu);
    int rc = foehn_p2p_isend_locked(c->comm, c->comm->ctx + 1, (uint32_t)c->kind, buf, len, dest,
                                    coll_tag(c), req, &local);
    pthread_mutex_unlock(&e->mu);
    return keep_first(c, rc, &local);
}

int foehn_coll_irecv(foehn_coll *c, int source, void *buf, size_t len, foehn_request **req)
{
    foehn_error local = {{0}};
    foehn_engine *e = c->comm->engine;
    pthread_mutex_lock(&e->mu);
    int rc = foehn_p2p_irecv_locked(c->comm, c->comm->ctx + 1, (uint32_t)c->kind, buf, len, true,
                                    source, coll_tag(c), req, &local);
    pthread_mutex_unlock(&e->mu);
    return keep_first(c, rc, &local);
}

int foehn_coll_wait(foehn_coll *c, foehn_request *req)
{
    foehn_error local = {{0}};
    int rc = foehn_request_wait(req, -1, NULL, &local);
    foehn_request_free(req);
    return keep_first(c, rc, &local);
}

int foehn_coll_waitall(foehn_coll *c, foehn_request **reqs, size_t n)
{
    int first = FOEHN_OK;
    for (size_t i = 0; i < n; i++) {
        if (!reqs[i])
            continue;
        int rc = foehn_coll_wait(c, reqs[i]);
        reqs[i] = NULL;
        if (first == FOEHN_OK)
            first = rc;
    }
    return first;
}

int foehn_coll_send(foehn_coll *c, int dest, const void *buf, size_t len)
{
    foehn_request *req;
    int rc = foehn_coll_isend(c, dest, buf, len, &req);
    return rc == FOEHN_OK ? foehn_coll_wait(c, req) : rc;
}

int foehn_coll_recv(foehn_coll *c, int source, void *buf, size_t len)
{
    foehn_request *req;
    int rc = foehn_coll_irecv(c, source, buf, len, &req);
    return rc == FOEHN_OK ? foehn_coll_wait(c, req) : rc;
}

int foehn_coll_sendrecv(foehn_coll *c, int dest, const void *sendbuf, size_t sendlen,
                        int source, void *recvbuf, size_t recvlen)
{
    foehn_request *reqs[2] = {NULL, NULL};
    int rc = foehn_coll_irecv(c, source, recvbuf, recvlen, &reqs[0]);
    if (rc == FOEHN_OK)
        rc = foehn_coll_isend(c, dest, sendbuf, sendlen, &reqs[1]);
    int wrc = foehn_coll_waitall(c, reqs, 2);
    return rc != FOEHN_OK ? rc : wrc;
}

int foehn_coll_wait_take(foehn_coll *c, foehn_request *req, void **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    foehn_error local = {{0}};
    int rc = keep_first(c, foehn_request_wait(req, -1, NULL, &local), &local);
    if (rc == FOEHN_OK)
        foehn_request_take(req, data, len);
    foehn_request_free(req);
    return rc;
}

int foehn_coll_recv_blob(foehn_coll *c, int source, void **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    foehn_request *req;
    int rc = foehn_coll_irecv(c, source, NULL, 0, &req);
    return rc != FOEHN_OK ? rc : foehn_coll_wait_take(c, req, data, len);
}

/* ---- the worker thread of nonblocking collectives ------------------------------ */

/* Under e->mu, which it drops meanwhile. Lets the next BEGIN_AHEAD_MAX queued jobs
 * begin, those that can and have not: only the thread that runs jobs takes them off
 * the queue, so the ones it walks stay put while it calls begin. */
static void begin_ahead(foehn_comm *comm)
{
    foehn_engine *e = comm->engine;
    int seen = 0;
    for (struct foehn_coll_job *job = comm->jobs_head; job && seen < BEGIN_AHEAD_MAX;
         job = job->next, seen++) {
        if (job->begin_called || !job->begin)
            continue;
        job->begin_called = true;
        pthread_mutex_unlock(&e->mu);
        job->begin(&job->coll, job->args);
        pthread_mutex_lock(&e->mu);
    }
}

/* Under e->mu, which it drops while the job runs (the worker's loop, and a waiter's:
 * engine.h): the next queued job of comm, when there is one and none runs; whether it
 * ran one. One at a time, in order: jobs were numbered when they were started, and
 * each waits for its peers' like-numbered ones. Jobs behind it that can (bursts of
 * small messages) begin first, posting their messages, so that many small
 * collectives travel at once and end one after the other without a round trip each. */
bool foehn_comm_help(foehn_comm *comm)
{
    foehn_engine *e = comm->engine;
    struct foehn_coll_job *job = comm->jobs_head;
    if (!job || comm->job_running)
        return false;
    comm->jobs_head = job->next;
    if (!comm->jobs_head)
        comm->jobs_tail = NULL;
    comm->job_running = true;
    begin_ahead(comm);
    pthread_mutex_unlock(&e->mu);
    int rc = job->run(&job->coll, job->args);
    if (job->free_args)
        job->free_args(job->args);
    pthread_mutex_lock(&e->mu);
    comm->job_running = false;
    foehn_request_complete(e, job->req, rc, rc == FOEHN_OK ? NULL : job->err.message);
    foehn_request_unref(e, job->req); /* the job's hold */
    free(job);
    return true;
}

void foehn_comm_helped(foehn_comm *comm)
{
    if (comm->jobs_head && !comm->job_running)
        pthread_cond_signal(&comm->jobs_cv);
}

static void *worker_main(void *arg)
{
    foehn_comm *comm = arg;
    foehn_engine *e = comm->engine;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        if (foehn_comm_help(comm))
            continue;
        if (comm->worker_stop && !comm->jobs_head)
            break;
        /* woken by a new job, by the stop, or by a waiter that ran jobs and left */
        pthread_cond_wait(&comm->jobs_cv, &e->mu);
    }
    comm->worker_started = false;
    e->workers--;
    pthread_cond_broadcast(&e->done_cv);
    foehn_comm_unref_locked(comm); /* the worker's hold */
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* Under e->mu. The worker is detached: it ends by itself once its communicator is
 * freed (or the engine finalizes) and nothing is queued. */
static int start_worker(foehn_comm *comm, foehn_error *err)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&comm->worker, &attr, worker_main, comm);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return foehn_fail(err, FOEHN_ERR_SYSTEM, "cannot start a thread for nonblocking "
                          "collectives: %s", strerror(rc));
    comm->worker_started = true;
    comm->refs++;
    comm->engine->workers++;
    return FOEHN_OK;
}

int foehn_coll_start(foehn_comm *comm, int kind, void (*begin)(foehn_coll *c, void *args),
                     int (*run)(foehn_coll *c, void *args), void *args,
                     void (*free_args)(void *args), foehn_request **req, foehn_error *err)
{
    *req = NULL;
    struct foehn_coll_job *job = calloc(1, sizeof *job);
    if (!job) {
        if (free_args)
            free_args(args);
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    }
    int rc = foehn_coll_begin(comm, kind, &job->coll, &job->err);
    foehn_engine *e = comm ? comm->engine : NULL;
    foehn_request *r = NULL;
    if (rc == FOEHN_OK) {
        pthread_mutex_lock(&e->mu);
        r = foehn_request_new(comm, REQ_COLL);
        if (!r)
            rc = foehn_fail(&job->err, FOEHN_ERR_NOMEM, "out of memory");
        else if (!comm->worker_started)
            rc = start_worker(comm, &job->err);
        if (rc == FOEHN_OK) {
            r->kind = (uint32_t)kind;
            r->tag = coll_tag(&job->coll);
            r->refs++; /* the job's hold */
            job->req = r;
            job->begin = begin;
            job->run = run;
            job->args = args;
            job->free_args = free_args;
            if (comm->jobs_tail)
                comm->jobs_tail->next = job;
            else
                comm->jobs_head = job;
            comm->jobs_tail = job;
            pthread_cond_signal(&comm->jobs_cv);
            *req = r;
        } else if (r) {
            foehn_request_unref(e, r);
        }
        pthread_mutex_unlock(&e->mu);
    }
    if (rc != FOEHN_OK) {
        memcpy(err, &job->err, sizeof *err);
        if (free_args)
            free_args(args);
        free(job);
    }
    return rc;
}
