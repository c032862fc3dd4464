/* The public collectives: each blocking call and its nonblocking twin fill one
 * argument record; a blocking call takes the communicator's next collective number
 * and runs the algorithm at once, a nonblocking one copies the record (with its count
 * and displacement arrays and the user's reduction) and queues it on the
 * communicator's worker. Arguments are checked when the collective runs, so that a
 * bad one fails the request like any other failure. */
#include <stdlib.h>
#include <string.h>

#include "comm/coll_impl.h"
#include "common/error.h"

typedef struct coll_args {
    int kind;
    const void *sendbuf;
    void *recvbuf;
    size_t count;             /* elements for reductions, else bytes per block */
    size_t sendbytes, recvbytes;
    foehn_dtype dtype;
    foehn_reduction op;
    foehn_user_op user;       /* nonblocking: a copy of *op.user, which then points here */
    int root;
    const size_t *v[4];       /* vector forms: sendbytes, sdispls, recvbytes, rdispls */
    size_t *copies;           /* nonblocking: the copies v[] points into */
    /* blobs */
    const void *const *ins;
    const size_t *inlens;
    void **out, ***outs;
    size_t *outlen, **outlens;
    /* objects in pieces */
    const foehn_pieces *pins;
    foehn_pieces **pouts;
    /* a nonblocking alltoall of pieces that began ahead of its turn (begin) */
    bool begun;
    int begun_rc;
    foehn_pieces_flight *flight;
} coll_args;

enum { SBYTES, SDISPLS, RBYTES, RDISPLS };

/* What each kind takes, for the checks. */
enum {
    ROOTED = 1,      /* a root argument */
    REDUCES = 2,     /* count elements of dtype reduced with op */
    SEND_INPLACE = 4 /* sendbuf may be FOEHN_IN_PLACE (at the root only when ROOTED) */
};
static const unsigned char kind_flags[FOEHN_COLL_KIND_COUNT] = {
    [FOEHN_COLL_BCAST] = ROOTED,
    [FOEHN_COLL_REDUCE] = ROOTED | REDUCES | SEND_INPLACE,
    [FOEHN_COLL_ALLREDUCE] = REDUCES | SEND_INPLACE,
    [FOEHN_COLL_REDUCE_SCATTER_BLOCK] = REDUCES | SEND_INPLACE,
    [FOEHN_COLL_SCAN] = REDUCES | SEND_INPLACE,
    [FOEHN_COLL_EXSCAN] = REDUCES | SEND_INPLACE,
    [FOEHN_COLL_GATHER] = ROOTED | SEND_INPLACE,
    [FOEHN_COLL_GATHERV] = ROOTED | SEND_INPLACE,
    [FOEHN_COLL_SCATTER] = ROOTED,
    [FOEHN_COLL_SCATTERV] = ROOTED,
    [FOEHN_COLL_ALLGATHER] = SEND_INPLACE,
    [FOEHN_COLL_ALLGATHERV] = SEND_INPLACE,
    [FOEHN_COLL_ALLTOALL] = SEND_INPLACE,
    [FOEHN_COLL_ALLTOALLV] = SEND_INPLACE,
    [FOEHN_COLL_BCAST_BLOB] = ROOTED,
    [FOEHN_COLL_GATHER_BLOB] = ROOTED,
    [FOEHN_COLL_SCATTER_BLOB] = ROOTED,
};

static int invalid(foehn_coll *c, const char *what)
{
    return foehn_fail(c->err, FOEHN_ERR_INVALID, "%s on rank %d: %s",
                      foehn_coll_kind_name(c->kind), c->rank, what);
}

static int check_reduction(foehn_coll *c, const coll_args *a)
{
    if (!foehn_dtype_size(a->dtype))
        return foehn_fail(c->err, FOEHN_ERR_INVALID, "%s: unknown dtype %d",
                          foehn_coll_kind_name(c->kind), (int)a->dtype);
    if (a->op.user && !a->op.user->fn)
        return invalid(c, "the user's reduction has no function (NULL)");
    size_t bytes;
    int rc = foehn_coll_mul(c, a->count, foehn_dtype_size(a->dtype), &bytes);
    if (rc == FOEHN_OK && !a->op.user) /* count 0: checks only that op suits dtype */
        rc = foehn_reduce_local(NULL, NULL, 0, a->dtype, a->op.op, c->err);
    return rc;
}

/* The vector arrays this rank must have (at the root only for gatherv/scatterv). */
static int check_vectors(foehn_coll *c, const coll_args *a)
{
    int need_s = a->kind == FOEHN_COLL_ALLTOALLV ? a->sendbuf != FOEHN_IN_PLACE
                                                 : a->kind == FOEHN_COLL_SCATTERV && c->rank == a->root;
    int need_r = a->kind == FOEHN_COLL_ALLTOALLV || a->kind == FOEHN_COLL_ALLGATHERV ||
                 (a->kind == FOEHN_COLL_GATHERV && c->rank == a->root);
    if ((need_s && (!a->v[SBYTES] || !a->v[SDISPLS])) ||
        (need_r && (!a->v[RBYTES] || !a->v[RDISPLS])))
        return invalid(c, "a count or displacement array is NULL");
    return FOEHN_OK;
}

static int nonzero(size_t bytes, const size_t *counts, const void *const *blobs, int n)
{
    for (int i = 0; counts && i < n && !bytes; i++)
        bytes = counts[i] && !(blobs && blobs[i]);
    return bytes != 0;
}

/* A NULL buffer (or blob) where this rank would move data through it. */
static int null_buffers(foehn_coll *c, const coll_args *a)
{
    int n = c->size, root = c->rank == a->root;
    size_t sb = a->sendbytes, rb = a->recvbytes;
    const size_t *sv = a->v[SBYTES], *rv = a->v[RBYTES];
    switch (a->kind) {
    case FOEHN_COLL_BCAST:
        rb = a->count;
        break;
    case FOEHN_COLL_GATHER:
    case FOEHN_COLL_GATHERV:
        rb = root ? a->sendbytes : 0;
        rv = root ? rv : NULL;
        break;
    case FOEHN_COLL_SCATTER:
    case FOEHN_COLL_SCATTERV:
        sb = root ? a->recvbytes : 0;
        sv = root ? sv : NULL;
        break;
    case FOEHN_COLL_ALLGATHER:
        rb = a->sendbytes;
        break;
    case FOEHN_COLL_ALLTOALL:
        sb = rb = a->count;
        break;
    default:
        break;
    }
    if ((!a->sendbuf && nonzero(sb, sv, NULL, n)) || (!a->recvbuf && nonzero(rb, rv, NULL, n)) ||
        (a->ins && nonzero(0, a->inlens, a->ins, n)))
        return invalid(c, "a buffer is NULL where data should be");
    return FOEHN_OK;
}

static int check_pieces(foehn_coll *c, const coll_args *a)
{
    if (!a->pins || !a->pouts)
        return invalid(c, "the objects or the output pointer is NULL");
    for (int j = 0; j < c->size; j++) {
        const foehn_pieces *o = &a->pins[j];
        if (o->n && (!o->data || !o->lens))
            return invalid(c, "an object's array of pieces or of their lengths is NULL");
        for (size_t k = 0; k < o->n; k++)
            if (o->lens[k] && !o->data[k])
                return invalid(c, "a piece is NULL where data should be");
    }
    return FOEHN_OK;
}

static int check(foehn_coll *c, const coll_args *a)
{
    unsigned flags = kind_flags[a->kind];
    int root_here = !(flags & ROOTED) || c->rank == a->root;
    int blob = a->kind >= FOEHN_COLL_BCAST_BLOB && a->kind <= FOEHN_COLL_ALLTOALL_BLOB;
    if ((flags & ROOTED) && (a->root < 0 || a->root >= c->size))
        return foehn_fail(c->err, FOEHN_ERR_INVALID, "%s: root %d is not a rank of a "
                          "communicator of %d", foehn_coll_kind_name(c->kind), a->root, c->size);
    if (a->sendbuf == FOEHN_IN_PLACE && !((flags & SEND_INPLACE) && root_here))
        return invalid(c, "FOEHN_IN_PLACE is not allowed for sendbuf here");
    if (a->recvbuf == FOEHN_IN_PLACE && !(root_here && (a->kind == FOEHN_COLL_SCATTER ||
                                                        a->kind == FOEHN_COLL_SCATTERV)))
        return invalid(c, "FOEHN_IN_PLACE for recvbuf is for the root of a scatter only");
    if (blob && ((a->out && !a->outlen) || (a->outs && !a->outlens) || (!a->out && !a->outs)))
        return invalid(c, "an output pointer is NULL");
    if ((a->kind == FOEHN_COLL_ALLTOALL_BLOB || (a->kind == FOEHN_COLL_SCATTER_BLOB && root_here)) &&
        (!a->ins || !a->inlens))
        return invalid(c, "the array of blobs or of their lengths is NULL");
    if (a->kind == FOEHN_COLL_ALLTOALL_PIECES)
        return check_pieces(c, a);
    if ((flags & REDUCES) && a->count && (!a->sendbuf || (!a->recvbuf && root_here)))
        return invalid(c, "a buffer is NULL");
    if (flags & REDUCES)
        return check_reduction(c, a);
    int rc = check_vectors(c, a);
    return rc != FOEHN_OK ? rc : null_buffers(c, a);
}

/* Blob outputs are NULL whenever the call fails, even before it starts. */
static void clear_outputs(const coll_args *a)
{
    if (a->out)
        *a->out = NULL;
    if (a->outlen)
        *a->outlen = 0;
    if (a->outs)
        *a->outs = NULL;
    if (a->outlens)
        *a->outlens = NULL;
    if (a->pouts)
        *a->pouts = NULL;
}

/* Ahead of its turn (foehn_coll_start's begin): an alltoall of pieces small enough to
 * burst posts its messages now. */
static void begin(foehn_coll *c, void *p)
{
    coll_args *a = p;
    if (a->kind != FOEHN_COLL_ALLTOALL_PIECES)
        return;
    int rc = check(c, a);
    if (rc == FOEHN_OK && !foehn_alg_alltoall_pieces_bursts(c, a->pins))
        return;
    a->begun = true;
    a->begun_rc = rc == FOEHN_OK ? foehn_alg_alltoall_pieces_start(c, a->pins, &a->flight) : rc;
}

static int run(foehn_coll *c, void *p)
{
    coll_args *a = p;
    if (a->begun) {
        if (a->begun_rc != FOEHN_OK && !a->flight)
            return a->begun_rc;
        return foehn_alg_alltoall_pieces_finish(c, a->flight, a->pouts);
    }
    int rc = check(c, a);
    if (rc != FOEHN_OK)
        return rc;
    const foehn_reduction *op = &a->op;
    switch (a->kind) {
    case FOEHN_COLL_BARRIER:
        return foehn_alg_barrier(c);
    case FOEHN_COLL_BCAST:
        return foehn_alg_bcast(c, a->recvbuf, a->count, a->root);
    case FOEHN_COLL_REDUCE:
        return foehn_alg_reduce(c, a->sendbuf, a->recvbuf, a->count, a->dtype, op, a->root);
    case FOEHN_COLL_ALLREDUCE:
        return foehn_alg_allreduce(c, a->sendbuf, a->recvbuf, a->count, a->dtype, op);
    case FOEHN_COLL_REDUCE_SCATTER_BLOCK:
        return foehn_alg_reduce_scatter_block(c, a->sendbuf, a->recvbuf, a->count, a->dtype, op);
    case FOEHN_COLL_SCAN:
    case FOEHN_COLL_EXSCAN:
        return foehn_alg_scan(c, a->sendbuf, a->recvbuf, a->count, a->dtype, op,
                              a->kind == FOEHN_COLL_EXSCAN);
    case FOEHN_COLL_GATHER:
    case FOEHN_COLL_GATHERV:
        return foehn_alg_gather(c, a->sendbuf, a->sendbytes, a->recvbuf, a->v[RBYTES],
                                a->v[RDISPLS], a->root);
    case FOEHN_COLL_SCATTER:
    case FOEHN_COLL_SCATTERV:
        return foehn_alg_scatter(c, a->sendbuf, a->v[SBYTES], a->v[SDISPLS], a->recvbuf,
                                 a->recvbytes, a->root);
    case FOEHN_COLL_ALLGATHER:
    case FOEHN_COLL_ALLGATHERV:
        return foehn_alg_allgather(c, a->sendbuf, a->sendbytes, a->recvbuf, a->v[RBYTES],
                                   a->v[RDISPLS]);
    case FOEHN_COLL_ALLTOALL:
    case FOEHN_COLL_ALLTOALLV:
        return foehn_alg_alltoall(c, a->sendbuf, a->v[SBYTES], a->v[SDISPLS], a->recvbuf,
                                  a->v[RBYTES], a->v[RDISPLS], a->count);
    case FOEHN_COLL_BCAST_BLOB:
        return foehn_alg_bcast_blob(c, a->sendbuf, a->sendbytes, a->root, a->out, a->outlen);
    case FOEHN_COLL_GATHER_BLOB:
        return foehn_alg_gather_blob(c, a->sendbuf, a->sendbytes, a->root, a->outs, a->outlens);
    case FOEHN_COLL_ALLGATHER_BLOB:
        return foehn_alg_allgather_blob(c, a->sendbuf, a->sendbytes, a->outs, a->outlens);
    case FOEHN_COLL_SCATTER_BLOB:
        return foehn_alg_scatter_blob(c, a->ins, a->inlens, a->root, a->out, a->outlen);
    case FOEHN_COLL_ALLTOALL_BLOB:
        return foehn_alg_alltoall_blob(c, a->ins, a->inlens, a->outs, a->outlens);
    case FOEHN_COLL_ALLTOALL_PIECES:
        return foehn_alg_alltoall_pieces(c, a->pins, a->pouts);
    default:
        return invalid(c, "unknown collective");
    }
}

static void args_free(void *p)
{
    coll_args *a = p;
    free(a->copies);
    free(a);
}

/* req NULL: blocking. */
static int dispatch(foehn_comm *comm, const coll_args *in, foehn_request **req, foehn_error *err)
{
    foehn_error local;
    if (!err)
        err = &local;
    clear_outputs(in);
    if (!req) {
        foehn_coll c;
        int rc = foehn_coll_begin(comm, in->kind, &c, err);
        return rc != FOEHN_OK ? rc : run(&c, (void *)in);
    }
    *req = NULL;
    size_t n = (size_t)foehn_comm_size(comm);
    coll_args *a = malloc(sizeof *a);
    size_t *copies = malloc(4 * n * sizeof *copies + 1);
    if (!a || !copies) {
        free(a);
        free(copies);
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory for a nonblocking %s",
                          foehn_coll_kind_name(in->kind));
    }
    *a = *in;
    a->copies = copies;
    for (size_t i = 0; i < 4; i++)
        if (a->v[i])
            a->v[i] = memcpy(copies + i * n, a->v[i], n * sizeof *copies);
    if (a->op.user) {
        a->user = *a->op.user;
        a->op.user = &a->user;
    }
    a->begun = false;
    a->flight = NULL;
    return foehn_coll_start(comm, a->kind, begin, run, a, args_free, req, err);
}

static int no_request(foehn_error *err)
{
    return foehn_fail(err, FOEHN_ERR_INVALID, "a nonblocking collective needs a request pointer");
}

/* foehn_NAME (blocking) and foehn_iNAME, taking PARAMS, filling the record with the
 * designated initializers that follow. */
#define UNPAREN(...) __VA_ARGS__
#define COLL_PAIR(name, PARAMS, ...)                                                       \
    int foehn_##name(UNPAREN PARAMS, foehn_error *err)                                     \
    {                                                                                      \
        return dispatch(comm, &(coll_args){__VA_ARGS__}, NULL, err);                       \
    }                                                                                      \
    int foehn_i##name(UNPAREN PARAMS, foehn_request **req, foehn_error *err)               \
    {                                                                                      \
        return req ? dispatch(comm, &(coll_args){__VA_ARGS__}, req, err) : no_request(err); \
    }

#define RED_PARAMS foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t count, \
                   foehn_dtype dtype, foehn_reduction op
#define RED_ARGS .sendbuf = sendbuf, .recvbuf = recvbuf, .count = count, .dtype = dtype, .op = op

COLL_PAIR(barrier, (foehn_comm *comm), .kind = FOEHN_COLL_BARRIER)
COLL_PAIR(bcast, (foehn_comm *comm, void *buf, size_t bytes, int root),
          .kind = FOEHN_COLL_BCAST, .recvbuf = buf, .count = bytes, .root = root)
COLL_PAIR(reduce, (RED_PARAMS, int root), .kind = FOEHN_COLL_REDUCE, RED_ARGS, .root = root)
COLL_PAIR(allreduce, (RED_PARAMS), .kind = FOEHN_COLL_ALLREDUCE, RED_ARGS)
COLL_PAIR(reduce_scatter_block, (RED_PARAMS), .kind = FOEHN_COLL_REDUCE_SCATTER_BLOCK, RED_ARGS)
COLL_PAIR(scan, (RED_PARAMS), .kind = FOEHN_COLL_SCAN, RED_ARGS)
COLL_PAIR(exscan, (RED_PARAMS), .kind = FOEHN_COLL_EXSCAN, RED_ARGS)
COLL_PAIR(gather, (foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t bytes, int root),
          .kind = FOEHN_COLL_GATHER, .sendbuf = sendbuf, .recvbuf = recvbuf, .sendbytes = bytes,
          .root = root)
COLL_PAIR(scatter, (foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t bytes, int root),
          .kind = FOEHN_COLL_SCATTER, .sendbuf = sendbuf, .recvbuf = recvbuf, .recvbytes = bytes,
          .root = root)
COLL_PAIR(allgather, (foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t bytes),
          .kind = FOEHN_COLL_ALLGATHER, .sendbuf = sendbuf, .recvbuf = recvbuf, .sendbytes = bytes)
COLL_PAIR(alltoall, (foehn_comm *comm, const void *sendbuf, void *recvbuf, size_t bytes),
          .kind = FOEHN_COLL_ALLTOALL, .sendbuf = sendbuf, .recvbuf = recvbuf, .count = bytes)
COLL_PAIR(gatherv, (foehn_comm *comm, const void *sendbuf, size_t sendbytes, void *recvbuf,
                    const size_t *recvbytes, const size_t *displs, int root),
          .kind = FOEHN_COLL_GATHERV, .sendbuf = sendbuf, .sendbytes = sendbytes,
          .recvbuf = recvbuf, .v = {[RBYTES] = recvbytes, [RDISPLS] = displs}, .root = root)
COLL_PAIR(scatterv, (foehn_comm *comm, const void *sendbuf, const size_t *sendbytes,
                     const size_t *displs, void *recvbuf, size_t recvbytes, int root),
          .kind = FOEHN_COLL_SCATTERV, .sendbuf = sendbuf, .recvbuf = recvbuf,
          .recvbytes = recvbytes, .v = {[SBYTES] = sendbytes, [SDISPLS] = displs}, .root = root)
COLL_PAIR(allgatherv, (foehn_comm *comm, const void *sendbuf, size_t sendbytes, void *recvbuf,
                       const size_t *recvbytes, const size_t *displs),
          .kind = FOEHN_COLL_ALLGATHERV, .sendbuf = sendbuf, .sendbytes = sendbytes,
          .recvbuf = recvbuf, .v = {[RBYTES] = recvbytes, [RDISPLS] = displs})
COLL_PAIR(alltoallv, (foehn_comm *comm, const void *sendbuf, const size_t *sendbytes,
                      const size_t *sdispls, void *recvbuf, const size_t *recvbytes,
                      const size_t *rdispls),
          .kind = FOEHN_COLL_ALLTOALLV, .sendbuf = sendbuf, .recvbuf = recvbuf,
          .v = {sendbytes, sdispls, recvbytes, rdispls})

/* The object collectives. Nonblocking: ins and inlens (the caller's) must stay put
 * until the request completes, and the outputs are written when it does. */
COLL_PAIR(bcast_blob, (foehn_comm *comm, const void *in, size_t inlen, int root, void **out,
                       size_t *outlen),
          .kind = FOEHN_COLL_BCAST_BLOB, .sendbuf = in, .sendbytes = inlen, .root = root,
          .out = out, .outlen = outlen)
COLL_PAIR(gather_blob, (foehn_comm *comm, const void *in, size_t inlen, int root, void ***outs,
                        size_t **outlens),
          .kind = FOEHN_COLL_GATHER_BLOB, .sendbuf = in, .sendbytes = inlen, .root = root,
          .outs = outs, .outlens = outlens)
COLL_PAIR(allgather_blob, (foehn_comm *comm, const void *in, size_t inlen, void ***outs,
                           size_t **outlens),
          .kind = FOEHN_COLL_ALLGATHER_BLOB, .sendbuf = in, .sendbytes = inlen, .outs = outs,
          .outlens = outlens)
COLL_PAIR(scatter_blob, (foehn_comm *comm, const void *const *ins, const size_t *inlens, int root,
                         void **out, size_t *outlen),
          .kind = FOEHN_COLL_SCATTER_BLOB, .ins = ins, .inlens = inlens, .root = root, .out = out,
          .outlen = outlen)
COLL_PAIR(alltoall_blob, (foehn_comm *comm, const void *const *ins, const size_t *inlens,
                          void ***outs, size_t **outlens),
          .kind = FOEHN_COLL_ALLTOALL_BLOB, .ins = ins, .inlens = inlens, .outs = outs,
          .outlens = outlens)
COLL_PAIR(alltoall_pieces, (foehn_comm *comm, const foehn_pieces *ins, foehn_pieces **outs),
          .kind = FOEHN_COLL_ALLTOALL_PIECES, .pins = ins, .pouts = outs)
