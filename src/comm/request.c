/* Requests: completion, waiting (bounded, naming what was waited for), and the
 * caller's and the engine's holds on them. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>

#include "comm/coll.h"
#include "comm/engine.h"
#include "common/clock.h"
#include "common/error.h"

/* Waits wake at least this often, so that a deadline is never overslept by much. */
#define WAIT_SLICE 0.5

foehn_request *foehn_request_new(foehn_comm *comm, foehn_req_type type)
{
    foehn_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->type = type;
    r->refs = 1; /* the caller's */
    r->comm = comm;
    r->src = r->dest = FOEHN_ANY_SOURCE;
    comm->refs++;
    return r;
}

void foehn_request_complete(foehn_engine *e, foehn_request *r, int result, const char *message)
{
    if (r->complete)
        return;
    r->result = result;
    r->status.error = result;
    if (result != FOEHN_OK && message)
        r->message = strdup(message);
    /* last, and atomically: whoever reads it without the lock then sees everything
     * above */
    __atomic_store_n(&r->complete, true, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&e->done_cv);
    /* a waiter asleep in poll() (foehn_engine_poll_wait) sees no condition variable:
     * whatever completes while it sleeps is some other thread's doing */
    foehn_engine_wake_poller(e);
}

void foehn_request_failf(foehn_engine *e, foehn_request *r, int result, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    foehn_request_complete(e, r, result, buf);
}

void foehn_request_unref(foehn_engine *e, foehn_request *r)
{
    (void)e;
    if (--r->refs > 0)
        return;
    foehn_comm_unref_locked(r->comm);
    free(r->taken);
    free(r->message);
    free(r);
}

void foehn_request_describe(const foehn_request *r, char *buf, size_t len)
{
    const foehn_comm *c = r->comm;
    switch (r->type) {
    case REQ_SEND:
        snprintf(buf, len, "a send of %zu bytes to rank %d", r->len,
                 r->dest >= 0 ? c->rank_of[r->dest] : r->dest);
        break;
    case REQ_RECV:
        if (r->kind)
            snprintf(buf, len, "%s data (collective number %d) from rank %d",
                     foehn_coll_kind_name((int)r->kind), r->tag,
                     r->src >= 0 ? c->rank_of[r->src] : r->src);
        else if (r->src == FOEHN_ANY_SOURCE)
            snprintf(buf, len, "a message from any rank with tag %d", r->tag);
        else
            snprintf(buf, len, "a message from rank %d with tag %d", c->rank_of[r->src], r->tag);
        break;
    case REQ_COLL:
        snprintf(buf, len, "a nonblocking %s (collective number %d)",
                 foehn_coll_kind_name((int)r->kind), r->tag);
        break;
    default:
        snprintf(buf, len, "a request");
    }
}

static int result_of(const foehn_request *r, foehn_msg_status *status, foehn_error *err)
{
    if (status) {
        *status = r->status;
        status->cancelled = r->cancelled;
    }
    if (r->result != FOEHN_OK)
        return foehn_fail(err, r->result, "%s", r->message ? r->message : "the request failed");
    return FOEHN_OK;
}

/* Sleeps on done_cv for at most WAIT_SLICE; false once deadline has passed. */
static bool sleep_until(foehn_engine *e, double deadline)
{
    double left = deadline - foehn_now();
    if (left <= 0)
        return false;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long ns = ts.tv_nsec + (long)((left < WAIT_SLICE ? left : WAIT_SLICE) * 1e9);
    ts.tv_sec += ns / 1000000000L;
    ts.tv_nsec = ns % 1000000000L;
    pthread_cond_timedwait(&e->done_cv, &e->mu, &ts);
    return true;
}

static double deadline_for(double timeout)
{
    return foehn_now() + (timeout < 0 ? foehn_comm_timeout() : timeout);
}

/* Under e->mu, which it drops while it yields or polls. A message on its way
 * completes its request within microseconds; a waiter asleep on done_cv costs a
 * second thread wake-up after the progress thread's, the larger part of a small
 * message's latency. So a waiter drives the sockets itself (foehn_engine_drive_begin):
 * for e->spin_us microseconds (foehn_engine_spin_us) it looks without sleeping
 * (foehn_engine_poll_once), yielding the core between looks, since on a node with
 * more threads than cores the peer that will answer may be waiting for this very
 * core; after that it sleeps in poll() on the sockets (foehn_engine_poll_wait), or
 * on done_cv while another waiter polls.
 *
 * Spinning pays only when waits are short. Where most take longer (the peers are
 * busy, or ranks outnumber cores and the spinning takes the core from the rank that
 * would answer), it is CPU taken from the work: 2,000 mixed-size ialltoalls on 4
 * ranks over 2 cores, most waits 0.1-1 ms, ran 30% faster without it. So each wait
 * that ends within spin_us pays off one unit of debt, each longer one adds two, and a
 * waiter spins only while the debt is at most SPIN_DEBT_SPIN (about two waits in
 * three short); a wait that did not spin still counts, so that spinning comes back
 * once waits are short again. The engine starts with none: it spins until waits
 * prove long. */
#define SPIN_DEBT_MAX 8
#define SPIN_DEBT_SPIN 4

typedef struct {
    double started, spin_until, deadline;
    foehn_comm *help; /* whose queued nonblocking collectives the waiter may run */
} wait_clock;

/* help: a request the waiter waits for, or NULL; when it is a nonblocking collective
 * the waiter runs its communicator's queued jobs itself (foehn_comm_help). */
static wait_clock wait_start(foehn_engine *e, double deadline, const foehn_request *help)
{
    foehn_engine_drive_begin(e);
    double now = foehn_now();
    bool spin = e->spin_us > 0 && e->spin_debt <= SPIN_DEBT_SPIN;
    return (wait_clock){.started = now,
                        .spin_until = spin ? now + e->spin_us * 1e-6 : now,
                        .deadline = deadline,
                        .help = help && help->type == REQ_COLL ? help->comm : NULL};
}

static void wait_end(foehn_engine *e, const wait_clock *w)
{
    if (w->help)
        foehn_comm_helped(w->help);
    foehn_engine_drive_end(e);
    bool short_wait = foehn_now() - w->started <= e->spin_us * 1e-6;
    if (short_wait && e->spin_debt > 0)
        e->spin_debt--;
    else if (!short_wait)
        e->spin_debt = e->spin_debt < SPIN_DEBT_MAX - 2 ? e->spin_debt + 2 : SPIN_DEBT_MAX;
}

/* One step of a wait whose request is not complete yet; false once the deadline has
 * passed. */
static bool wait_step(foehn_engine *e, const wait_clock *w)
{
    double now = foehn_now();
    if (now >= w->deadline)
        return false;
    if (w->help && foehn_comm_help(w->help))
        return true;
    if (now < w->spin_until) {
        if (!foehn_engine_poll_once(e)) {
            pthread_mutex_unlock(&e->mu);
            sched_yield();
            pthread_mutex_lock(&e->mu);
        }
        return true;
    }
    double until = now + WAIT_SLICE < w->deadline ? now + WAIT_SLICE : w->deadline;
    if (foehn_engine_poll_wait(e, until))
        return true;
    return sleep_until(e, w->deadline);
}

int foehn_request_wait_locked(foehn_engine *e, foehn_request *r, double deadline,
                              const char *what, foehn_error *err)
{
    if (r->complete)
        return FOEHN_OK;
    wait_clock w = wait_start(e, deadline, r);
    bool in_time = true;
    while (!r->complete && (in_time = wait_step(e, &w))) {
    }
    wait_end(e, &w);
    if (!in_time) {
        char desc[256];
        foehn_request_describe(r, desc, sizeof desc);
        return foehn_fail(err, FOEHN_ERR_TIMEOUT,
                          "%s on rank %d timed out waiting for %s (FOEHN_COMM_TIMEOUT=%.0f s "
                          "bounds every wait): is a peer stuck, or did the ranks call "
                          "different operations?",
                          what, r->comm->rank, desc, foehn_comm_timeout());
    }
    return FOEHN_OK;
}

int foehn_request_wait(foehn_request *req, double timeout, foehn_msg_status *status,
                       foehn_error *err)
{
    if (!req)
        return foehn_fail(err, FOEHN_ERR_INVALID, "wait on a NULL request");
    foehn_engine *e = req->comm->engine;
    pthread_mutex_lock(&e->mu);
    int rc = foehn_request_wait_locked(e, req, deadline_for(timeout), "wait", err);
    if (rc == FOEHN_OK)
        rc = result_of(req, status, err);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int foehn_request_test(foehn_request *req, int *done, foehn_msg_status *status, foehn_error *err)
{
    *done = 0;
    if (!req)
        return foehn_fail(err, FOEHN_ERR_INVALID, "test on a NULL request");
    foehn_engine *e = req->comm->engine;
    pthread_mutex_lock(&e->mu);
    int rc = FOEHN_OK;
    if (req->complete) {
        *done = 1;
        rc = result_of(req, status, err);
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

/* wait_any (done NULL) and wait_some: under one lock, so that a scan of thousands of
 * requests costs no lock each. */
static int wait_for(foehn_request *const *reqs, size_t n, double timeout, size_t *index,
                    unsigned char *done, size_t *count, foehn_error *err)
{
    *index = (size_t)-1;
    if (count)
        *count = 0;
    foehn_engine *e = NULL;
    for (size_t i = 0; i < n && !e; i++)
        if (reqs[i])
            e = reqs[i]->comm->engine;
    if (!e)
        return FOEHN_OK;
    pthread_mutex_lock(&e->mu);
    const foehn_request *coll = NULL;
    for (size_t i = 0; i < n && !coll; i++)
        if (reqs[i] && reqs[i]->type == REQ_COLL && !reqs[i]->complete)
            coll = reqs[i];
    wait_clock w = wait_start(e, deadline_for(timeout), coll);
    int rc = FOEHN_OK;
    for (;;) {
        for (size_t i = 0; i < n; i++) {
            bool complete = reqs[i] && reqs[i]->complete;
            if (complete && *index == (size_t)-1)
                *index = i;
            if (!done && complete)
                break;
            if (done) {
                done[i] = complete;
                *count += complete;
            }
        }
        if (*index != (size_t)-1)
            break;
        if (!wait_step(e, &w)) {
            rc = foehn_fail(err, FOEHN_ERR_TIMEOUT,
                            "waiting for any of %zu requests timed out (FOEHN_COMM_TIMEOUT=%.0f s)",
                            n, foehn_comm_timeout());
            break;
        }
    }
    wait_end(e, &w);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int foehn_request_wait_any(foehn_request *const *reqs, size_t n, double timeout, size_t *index,
                           foehn_error *err)
{
    return wait_for(reqs, n, timeout, index, NULL, NULL, err);
}

int foehn_request_wait_some(foehn_request *const *reqs, size_t n, double timeout,
                            unsigned char *done, size_t *count, foehn_error *err)
{
    size_t index;
    return wait_for(reqs, n, timeout, &index, done, count, err);
}

void foehn_request_cancel(foehn_request *req)
{
    if (!req)
        return;
    foehn_engine *e = req->comm->engine;
    pthread_mutex_lock(&e->mu);
    if (req->type == REQ_RECV && !req->complete && !req->matched) {
        /* Only a receive still on the posted list can be withdrawn. */
        if (req->prev_posted)
            req->prev_posted->next_posted = req->next_posted;
        else if (e->posted_head == req)
            e->posted_head = req->next_posted;
        if (req->next_posted)
            req->next_posted->prev_posted = req->prev_posted;
        else if (e->posted_tail == req)
            e->posted_tail = req->prev_posted;
        req->next_posted = req->prev_posted = NULL;
        req->cancelled = true;
        req->status.source = FOEHN_ANY_SOURCE;
        req->status.tag = FOEHN_ANY_TAG;
        foehn_request_complete(e, req, FOEHN_OK, NULL);
        foehn_request_unref(e, req); /* the posted list's hold */
    }
    pthread_mutex_unlock(&e->mu);
}

void foehn_request_take(foehn_request *req, void **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    if (!req)
        return;
    foehn_engine *e = req->comm->engine;
    pthread_mutex_lock(&e->mu);
    if (req->complete && req->result == FOEHN_OK && req->allocate) {
        *data = req->taken;
        *len = req->status.bytes;
        req->taken = NULL;
    }
    pthread_mutex_unlock(&e->mu);
}

void foehn_request_free(foehn_request *req)
{
    if (!req)
        return;
    foehn_engine *e = req->comm->engine;
    pthread_mutex_lock(&e->mu);
    foehn_request_unref(e, req);
    pthread_mutex_unlock(&e->mu);
}

int foehn_engine_spin_us(void)
{
    const char *v = getenv("FOEHN_SPIN_US");
    if (!v || !*v)
        /* bench/comm on 2 cores: 4 ranks' 1 MiB allreduce and alltoall take half the
         * time spinning 1000 us as spinning 100 (their waits are 0.2-0.5 ms, and a
         * wake-up on a virtual machine costs tens of us), small-message latency is
         * the same or better, and the debt (wait_end) stops the spinning where
         * waits are long */
        return 1000;
    int n = atoi(v);
    return n < 0 ? 0 : n > 100000 ? 100000 : n;
}
