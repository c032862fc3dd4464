/* What a collective algorithm sees: point-to-point inside one running collective.
 *
 * Every collective call takes the communicator's next sequence number (the same on
 * every rank, since all ranks call collectives in the same order) and runs in the
 * communicator's collective context, apart from user messages. Each message it sends
 * is stamped with its kind and that number; a receive matches (source, number) and
 * fails with FOEHN_ERR_MISMATCH when the kind differs (the peer called another
 * collective) or the length differs from the one expected (buffers of other sizes).
 *
 * Algorithms (coll_*.c) are written as blocking code over these calls. The engine
 * runs a blocking collective on the caller's thread and a nonblocking one on the
 * communicator's worker thread (foehn_coll_start), in the order they were started.
 *
 * Every call returns FOEHN_OK or a negative foehn_status with c->err set; the first
 * failure is kept (later calls do not overwrite a set message).
 */
#ifndef FOEHN_COMM_COLL_H
#define FOEHN_COMM_COLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "foehn.h"

typedef enum foehn_coll_kind {
    FOEHN_COLL_BARRIER = 1,
    FOEHN_COLL_BCAST,
    FOEHN_COLL_REDUCE,
    FOEHN_COLL_ALLREDUCE,
    FOEHN_COLL_REDUCE_SCATTER_BLOCK,
    FOEHN_COLL_SCAN,
    FOEHN_COLL_EXSCAN,
    FOEHN_COLL_GATHER,
    FOEHN_COLL_GATHERV,
    FOEHN_COLL_SCATTER,
    FOEHN_COLL_SCATTERV,
    FOEHN_COLL_ALLGATHER,
    FOEHN_COLL_ALLGATHERV,
    FOEHN_COLL_ALLTOALL,
    FOEHN_COLL_ALLTOALLV,
    FOEHN_COLL_BCAST_BLOB,
    FOEHN_COLL_GATHER_BLOB,
    FOEHN_COLL_ALLGATHER_BLOB,
    FOEHN_COLL_SCATTER_BLOB,
    FOEHN_COLL_ALLTOALL_BLOB,
    FOEHN_COLL_ALLTOALL_PIECES,
    FOEHN_COLL_COMM_CREATE,    /* Dup and Split agreeing on a context */
    FOEHN_COLL_KIND_COUNT
} foehn_coll_kind;

/* "allreduce", "bcast", ...: for messages. */
const char *foehn_coll_kind_name(int kind);

typedef struct foehn_coll {
    foehn_comm *comm;
    int rank, size;       /* this rank's place in comm */
    int kind;             /* foehn_coll_kind */
    uint32_t seq;         /* the communicator's collective number */
    bool one_host;        /* all of comm on one host (foehn_comm's one_host) */
    foehn_error *err;     /* where failures are written (never NULL) */
} foehn_coll;

/* Takes comm's next number for a collective of kind (blocking use: on the caller's
 * thread, then call the algorithm). err must not be NULL. */
int foehn_coll_begin(foehn_comm *comm, int kind, foehn_coll *c, foehn_error *err);

/* Nonblocking use: takes the number now, on the caller's thread (so that numbers
 * follow the order of the calls), and queues run(c, args) on comm's worker thread.
 * *req completes with run's result and message. free_args(args) (may be NULL) is
 * called once run has returned, or at once when starting fails. begin (may be NULL)
 * may be called once, before run and before the earlier jobs have finished: it may
 * post what it can without blocking, and run then finishes what it began. */
int foehn_coll_start(foehn_comm *comm, int kind, void (*begin)(foehn_coll *c, void *args),
                     int (*run)(foehn_coll *c, void *args), void *args,
                     void (*free_args)(void *args), foehn_request **req, foehn_error *err);

/* Point to point inside the collective; peers are ranks of c->comm. A receive of
 * len bytes expects exactly len; buf NULL receives a message of any length into a
 * malloc'd buffer (foehn_request_take). */
int foehn_coll_isend(foehn_coll *c, int dest, const void *buf, size_t len, foehn_request **req);
int foehn_coll_irecv(foehn_coll *c, int source, void *buf, size_t len, foehn_request **req);
/* Waits (bounded by foehn_comm_timeout()) and frees req. */
int foehn_coll_wait(foehn_coll *c, foehn_request *req);
/* Waits for every non-NULL reqs[i] even after one fails, frees them all and sets
 * each to NULL; returns the first failure. */
int foehn_coll_waitall(foehn_coll *c, foehn_request **reqs, size_t n);
int foehn_coll_send(foehn_coll *c, int dest, const void *buf, size_t len);
int foehn_coll_recv(foehn_coll *c, int source, void *buf, size_t len);
/* Both at once (no deadlock when two ranks exchange). */
int foehn_coll_sendrecv(foehn_coll *c, int dest, const void *sendbuf, size_t sendlen,
                        int source, void *recvbuf, size_t recvlen);
/* A receive of any length: *data malloc'd (NULL when len is 0 is allowed). */
int foehn_coll_recv_blob(foehn_coll *c, int source, void **data, size_t *len);
/* The end of an allocating receive (foehn_coll_irecv with buf NULL): waits, hands its
 * data over as recv_blob does, frees req. */
int foehn_coll_wait_take(foehn_coll *c, foehn_request *req, void **data, size_t *len);

/* Applies a reduction: inout = in op inout (a user's function or a built-in). */
int foehn_reduction_apply(const foehn_reduction *op, const void *in, void *inout,
                          size_t count, foehn_dtype dtype, foehn_error *err);
/* Whether the reduction may be applied in any order. */
int foehn_reduction_commutes(const foehn_reduction *op);

#endif
