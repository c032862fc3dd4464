/* The collectives of foehn._foehn.Comm: one runner per family (barrier, bcast,
 * reductions, data movement, vector forms), blocking or not (the blob collectives
 * are commblob.c's). Every C call runs without the GIL. */
#define Py_LIMITED_API 0x03090000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "foehn.h"
#include "python/comm_shared.h"

/* ---- collectives: one runner per family, blocking (req NULL) or not ---- */

/* The end of every collective: a Request for a nonblocking call, None for a
 * blocking one, or the failure; h is freed unless a Request took it. */
static PyObject *coll_done(int rc, const foehn_error *err, hold *h, foehn_request *req,
                           int nonblocking)
{
    if (rc != FOEHN_OK) {
        PyObject *r = raise_failure(rc, err, h->op);
        hold_free(h);
        return r;
    }
    if (!nonblocking) {
        hold_free(h);
        Py_RETURN_NONE;
    }
    return request_new(req, h, 0);
}

static PyObject *coll_barrier(PyObject *obj, int nonblocking)
{
    foehn_comm *c = live_comm(obj);
    if (!c)
        return NULL;
    foehn_request *req = NULL;
    foehn_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = nonblocking ? foehn_ibarrier(c, &req, &err) : foehn_barrier(c, &err);
    Py_END_ALLOW_THREADS
    if (rc != FOEHN_OK)
        return comm_raise(rc, &err);
    if (!nonblocking)
        Py_RETURN_NONE;
    return request_new(req, NULL, 0);
}

static PyObject *comm_barrier(PyObject *obj, PyObject *unused)
{
    (void)unused;
    return coll_barrier(obj, 0);
}

static PyObject *comm_ibarrier(PyObject *obj, PyObject *unused)
{
    (void)unused;
    return coll_barrier(obj, 1);
}

/* bcast(buf, root): the whole buffer. */
static PyObject *coll_bcast(PyObject *obj, PyObject *args, int nonblocking)
{
    PyObject *buf_o;
    int root;
    foehn_comm *c = live_comm(obj);
    if (!c || !PyArg_ParseTuple(args, "Oi", &buf_o, &root) || check_rank(c, root, "root") < 0)
        return NULL;
    hold *h = calloc(1, sizeof *h);
    if (!h)
        return PyErr_NoMemory();
    void *buf;
    size_t len;
    /* The root only reads, but one writable buffer serves both sides. */
    int writable = foehn_comm_rank(c) != root;
    if (take_buffer(h, buf_o, writable, 0, &buf, &len, "the buffer") < 0) {
        hold_free(h);
        return NULL;
    }
    foehn_request *req = NULL;
    foehn_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = nonblocking ? foehn_ibcast(c, buf, len, root, &req, &err)
                     : foehn_bcast(c, buf, len, root, &err);
    Py_END_ALLOW_THREADS
    return coll_done(rc, &err, h, req, nonblocking);
}

static PyObject *comm_bcast(PyObject *obj, PyObject *args)
{
    return coll_bcast(obj, args, 0);
}

static PyObject *comm_ibcast(PyObject *obj, PyObject *args)
{
    return coll_bcast(obj, args, 1);
}

/* Reductions: (sendbuf, recvbuf, count, dtype, op, root=0, commute=True). */
enum { RED_REDUCE, RED_ALLREDUCE, RED_REDUCE_SCATTER_BLOCK, RED_SCAN, RED_EXSCAN };

static int run_reduction(int kind, foehn_comm *c, const void *s, void *r, size_t n,
                         foehn_dtype dt, foehn_reduction op, int root, foehn_request **req,
                         foehn_error *err)
{
    switch (kind) {
    case RED_REDUCE:
        return req ? foehn_ireduce(c, s, r, n, dt, op, root, req, err)
                   : foehn_reduce(c, s, r, n, dt, op, root, err);
    case RED_ALLREDUCE:
        return req ? foehn_iallreduce(c, s, r, n, dt, op, req, err)
                   : foehn_allreduce(c, s, r, n, dt, op, err);
    case RED_REDUCE_SCATTER_BLOCK:
        return req ? foehn_ireduce_scatter_block(c, s, r, n, dt, op, req, err)
                   : foehn_reduce_scatter_block(c, s, r, n, dt, op, err);
    case RED_SCAN:
        return req ? foehn_iscan(c, s, r, n, dt, op, req, err)
                   : foehn_scan(c, s, r, n, dt, op, err);
    default:
        return req ? foehn_iexscan(c, s, r, n, dt, op, req, err)
                   : foehn_exscan(c, s, r, n, dt, op, err);
    }
}

static PyObject *coll_reduction(PyObject *obj, PyObject *args, PyObject *kwargs, int kind,
                                int nonblocking)
{
    static char *kwlist[] = {"sendbuf", "recvbuf", "count", "dtype", "op", "root", "commute",
                             NULL};
    PyObject *send_o, *recv_o, *op_o;
    Py_ssize_t count;
    int dtype_i, root = 0, commute = 1;
    foehn_dtype dtype;
    foehn_comm *c = live_comm(obj);
    if (!c || !PyArg_ParseTupleAndKeywords(args, kwargs, "OOniO|ip", kwlist, &send_o, &recv_o,
                                           &count, &dtype_i, &op_o, &root, &commute) ||
        parse_dtype(dtype_i, &dtype) < 0)
        return NULL;
    if (count < 0) {
        invalid("count must be >= 0");
        return NULL;
    }
    if (kind == RED_REDUCE && check_rank(c, root, "root") < 0)
        return NULL;
    int rank = foehn_comm_rank(c), size = foehn_comm_size(c);
    hold *h = calloc(1, sizeof *h);
    if (!h)
        return PyErr_NoMemory();
    foehn_reduction red;
    void *s, *r;
    size_t slen, rlen, bytes, block, need_send, need_recv;
    if (!(h->op = calloc(1, sizeof *h->op))) {
        free(h);
        return PyErr_NoMemory();
    }
    if (parse_op(op_o, commute, h->op, &red) < 0 ||
        mul_size((size_t)count, foehn_dtype_size(dtype), &block) < 0 ||
        mul_size(block, (size_t)size, &bytes) < 0 ||
        take_buffer(h, send_o, 0, 1, &s, &slen, "the send buffer") < 0 ||
        take_buffer(h, recv_o, 1, 0, &r, &rlen, "the receive buffer") < 0)
        goto fail;
    if (!red.user) {
        free(h->op);
        h->op = NULL;
    }
    /* What each side must hold where it is significant. */
    need_send = kind == RED_REDUCE_SCATTER_BLOCK ? bytes : block;
    need_recv = block;
    if (is_in_place(s)) {
        if (kind == RED_REDUCE && rank != root) {
            invalid("IN_PLACE is for the root of a reduce only");
            goto fail;
        }
        need_recv = need_send;
    }
    if (kind == RED_REDUCE && rank != root)
        need_recv = 0;
    if (check_len(s, slen, need_send, "the send buffer") < 0 ||
        check_len(r, rlen, need_recv, "the receive buffer") < 0)
        goto fail;
    foehn_request *req = NULL;
    foehn_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = run_reduction(kind, c, s, r, (size_t)count, dtype, red, root,
                       nonblocking ? &req : NULL, &err);
    Py_END_ALLOW_THREADS
    return coll_done(rc, &err, h, req, nonblocking);
fail:
    hold_free(h);
    return NULL;
}

/* Data movement with one block size: (sendbuf, recvbuf, bytes, root=0). */
enum { MOVE_GATHER, MOVE_SCATTER, MOVE_ALLGATHER, MOVE_ALLTOALL };

static int run_move(int kind, foehn_comm *c, const void *s, void *r, size_t bytes, int root,
                    foehn_request **req, foehn_error *err)
{
    switch (kind) {
    case MOVE_GATHER:
        return req ? foehn_igather(c, s, r, bytes, root, req, err)
                   : foehn_gather(c, s, r, bytes, root, err);
    case MOVE_SCATTER:
        return req ? foehn_iscatter(c, s, r, bytes, root, req, err)
                   : foehn_scatter(c, s, r, bytes, root, err);
    case MOVE_ALLGATHER:
        return req ? foehn_iallgather(c, s, r, bytes, req, err)
                   : foehn_allgather(c, s, r, bytes, err);
    default:
        return req ? foehn_ialltoall(c, s, r, bytes, req, err)
                   : foehn_alltoall(c, s, r, bytes, err);
    }
}

static PyObject *coll_move(PyObject *obj, PyObject *args, int kind, int nonblocking)
{
    PyObject *send_o, *recv_o;
    Py_ssize_t bytes_s;
    int root = 0;
    foehn_comm *c = live_comm(obj);
    if (!c || !PyArg_ParseTuple(args, "OOn|i", &send_o, &recv_o, &bytes_s, &root))
        return NULL;
    if (bytes_s < 0) {
        invalid("bytes must be >= 0");
        return NULL;
    }
    int rooted = kind == MOVE_GATHER || kind == MOVE_SCATTER;
    if (rooted && check_rank(c, root, "root") < 0)
        return NULL;
    int rank = foehn_comm_rank(c), size = foehn_comm_size(c);
    int at_root = !rooted || rank == root;
    size_t bytes = (size_t)bytes_s, all, need_send, need_recv;
    void *s, *r;
    size_t slen, rlen;
    hold *h = calloc(1, sizeof *h);
    if (!h)
        return PyErr_NoMemory();
    int in_place_ok = kind != MOVE_SCATTER && at_root;
    if (mul_size(bytes, (size_t)size, &all) < 0 ||
        take_buffer(h, send_o, 0, in_place_ok, &s, &slen, "the send buffer") < 0 ||
        take_buffer(h, recv_o, 1, 0, &r, &rlen, "the receive buffer") < 0)
        goto fail;
    switch (kind) {
    case MOVE_GATHER: need_send = bytes; need_recv = at_root ? all : 0; break;
    case MOVE_SCATTER: need_send = at_root ? all : 0; need_recv = bytes; break;
    case MOVE_ALLGATHER: need_send = bytes; need_recv = all; break;
    default: need_send = all; need_recv = all; break;
    }
    if (check_len(s, slen, need_send, "the send buffer") < 0 ||
        check_len(r, rlen, need_recv, "the receive buffer") < 0)
        goto fail;
    foehn_request *req = NULL;
    foehn_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = run_move(kind, c, s, r, bytes, root, nonblocking ? &req : NULL, &err);
    Py_END_ALLOW_THREADS
    return coll_done(rc, &err, h, req, nonblocking);
fail:
    hold_free(h);
    return NULL;
}

/* A list of obj's items, which must be n (a new reference), or NULL with an error. */
PyObject *list_of(PyObject *obj, Py_ssize_t n, const char *what)
{
    PyObject *seq = PySequence_List(obj);
    if (!seq)
        return NULL;
    if (n >= 0 && PyList_Size(seq) != n) {
        invalid("%s must have one entry per rank (%zd), not %zd", what,
                     n, PyList_Size(seq));
        Py_DECREF(seq);
        return NULL;
    }
    return seq;
}

/* n sizes from a sequence of ints >= 0. */
static int parse_sizes(PyObject *obj, size_t *out, int n, const char *what)
{
    PyObject *seq = list_of(obj, n, what);
    if (!seq)
        return -1;
    for (int i = 0; i < n; i++) {
        Py_ssize_t v = PyNumber_AsSsize_t(PyList_GetItem(seq, i), PyExc_OverflowError);
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
        if (v < 0) {
            invalid("%s must be >= 0", what);
            Py_DECREF(seq);
            return -1;
        }
        out[i] = (size_t)v;
    }
    Py_DECREF(seq);
    return 0;
}

/* Every block of a vector buffer lies inside it. */
static int check_blocks(const void *buf, size_t len, const size_t *counts, const size_t *displs,
                        int n, const char *what)
{
    if (is_in_place(buf))
        return 0;
    for (int i = 0; i < n; i++) {
        if (counts[i] == 0)
            continue;
        if (!buf || displs[i] > len || counts[i] > len - displs[i]) {
            invalid("%s is too short: block %d ends at byte %zu, the buffer has %zu", what,
                         i, displs[i] + counts[i], len);
            return -1;
        }
    }
    return 0;
}

/* Vector forms, sizes in bytes:
 *   gatherv(sendbuf, sendbytes, recvbuf, recvbytes, displs, root)
 *   scatterv(sendbuf, sendbytes, displs, recvbuf, recvbytes, root)
 *   allgatherv(sendbuf, sendbytes, recvbuf, recvbytes, displs)
 *   alltoallv(sendbuf, sendbytes, sdispls, recvbuf, recvbytes, rdispls)
 * A count or displacement sequence may be None where it is insignificant. */
enum { VEC_GATHERV, VEC_SCATTERV, VEC_ALLGATHERV, VEC_ALLTOALLV };

static PyObject *coll_vector(PyObject *obj, PyObject *args, int kind, int nonblocking)
{
    PyObject *a[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    int root = 0;
    foehn_comm *c = live_comm(obj);
    if (!c)
        return NULL;
    int ok = kind == VEC_ALLGATHERV
        ? PyArg_ParseTuple(args, "OOOOO", &a[0], &a[1], &a[2], &a[3], &a[4])
        : kind == VEC_ALLTOALLV
        ? PyArg_ParseTuple(args, "OOOOOO", &a[0], &a[1], &a[2], &a[3], &a[4], &a[5])
        : PyArg_ParseTuple(args, "OOOOOi", &a[0], &a[1], &a[2], &a[3], &a[4], &root);
    if (!ok)
        return NULL;
    int rooted = kind == VEC_GATHERV || kind == VEC_SCATTERV;
    if (rooted && check_rank(c, root, "root") < 0)
        return NULL;
    int n = foehn_comm_size(c);
    int at_root = !rooted || foehn_comm_rank(c) == root;
    hold *h = calloc(1, sizeof *h);
    if (!h)
        return PyErr_NoMemory();
    /* four arrays of n: send counts, send displs, recv counts, recv displs */
    h->arrays = calloc(4 * (size_t)n, sizeof *h->arrays);
    if (!h->arrays) {
        free(h);
        return PyErr_NoMemory();
    }
    size_t *scounts = h->arrays, *sdispls = scounts + n, *rcounts = sdispls + n,
           *rdispls = rcounts + n;
    size_t sbytes = 0, rbytes = 0, slen, rlen;
    void *s, *r;
    PyObject *send_o, *recv_o;
    foehn_request *req = NULL;
    foehn_error err;
    int rc = FOEHN_OK;
    switch (kind) {
    case VEC_GATHERV:
        send_o = a[0];
        recv_o = a[2];
        if (take_buffer(h, send_o, 0, at_root, &s, &slen, "the send buffer") < 0 ||
            take_buffer(h, recv_o, 1, 0, &r, &rlen, "the receive buffer") < 0 ||
            (sbytes = (size_t)PyLong_AsSsize_t(a[1]), PyErr_Occurred()) ||
            check_len(s, slen, sbytes, "the send buffer") < 0 ||
            (at_root && (parse_sizes(a[3], rcounts, n, "recvbytes") < 0 ||
                         parse_sizes(a[4], rdispls, n, "displs") < 0 ||
                         check_blocks(r, rlen, rcounts, rdispls, n, "the receive buffer") < 0)))
            goto fail;
        if (!at_root) /* insignificant here */
            rcounts = rdispls = NULL;
        Py_BEGIN_ALLOW_THREADS
        rc = nonblocking ? foehn_igatherv(c, s, sbytes, r, rcounts, rdispls, root, &req, &err)
                         : foehn_gatherv(c, s, sbytes, r, rcounts, rdispls, root, &err);
        Py_END_ALLOW_THREADS
        break;
    case VEC_SCATTERV:
        send_o = a[0];
        recv_o = a[3];
        if (take_buffer(h, send_o, 0, 0, &s, &slen, "the send buffer") < 0 ||
            take_buffer(h, recv_o, 1, 0, &r, &rlen, "the receive buffer") < 0 ||
            (at_root && (parse_sizes(a[1], scounts, n, "sendbytes") < 0 ||
                         parse_sizes(a[2], sdispls, n, "displs") < 0 ||
                         check_blocks(s, slen, scounts, sdispls, n, "the send buffer") < 0)) ||
            (rbytes = (size_t)PyLong_AsSsize_t(a[4]), PyErr_Occurred()) ||
            check_len(r, rlen, rbytes, "the receive buffer") < 0)
            goto fail;
        if (!at_root) /* insignificant here */
            scounts = sdispls = NULL;
        Py_BEGIN_ALLOW_THREADS
        rc = nonblocking ? foehn_iscatterv(c, s, scounts, sdispls, r, rbytes, root, &req, &err)
                         : foehn_scatterv(c, s, scounts, sdispls, r, rbytes, root, &err);
        Py_END_ALLOW_THREADS
        break;
    case VEC_ALLGATHERV:
        send_o = a[0];
        recv_o = a[2];
        if (take_buffer(h, send_o, 0, 1, &s, &slen, "the send buffer") < 0 ||
            take_buffer(h, recv_o, 1, 0, &r, &rlen, "the receive buffer") < 0 ||
            (sbytes = (size_t)PyLong_AsSsize_t(a[1]), PyErr_Occurred()) ||
            check_len(s, slen, sbytes, "the send buffer") < 0 ||
            parse_sizes(a[3], rcounts, n, "recvbytes") < 0 ||
            parse_sizes(a[4], rdispls, n, "displs") < 0 ||
            check_blocks(r, rlen, rcounts, rdispls, n, "the receive buffer") < 0)
            goto fail;
        Py_BEGIN_ALLOW_THREADS
        rc = nonblocking ? foehn_iallgatherv(c, s, sbytes, r, rcounts, rdispls, &req, &err)
                         : foehn_allgatherv(c, s, sbytes, r, rcounts, rdispls, &err);
        Py_END_ALLOW_THREADS
        break;
    default:
        send_o = a[0];
        recv_o = a[3];
        if (take_buffer(h, send_o, 0, 1, &s, &slen, "the send buffer") < 0 ||
            take_buffer(h, recv_o, 1, 0, &r, &rlen, "the receive buffer") < 0 ||
            parse_sizes(a[4], rcounts, n, "recvbytes") < 0 ||
            parse_sizes(a[5], rdispls, n, "rdispls") < 0 ||
            check_blocks(r, rlen, rcounts, rdispls, n, "the receive buffer") < 0)
            goto fail;
        if (is_in_place(s)) { /* the send side is the receive side */
            memcpy(scounts, rcounts, (size_t)n * sizeof *scounts);
            memcpy(sdispls, rdispls, (size_t)n * sizeof *sdispls);
        } else if (parse_sizes(a[1], scounts, n, "sendbytes") < 0 ||
                   parse_sizes(a[2], sdispls, n, "sdispls") < 0 ||
                   check_blocks(s, slen, scounts, sdispls, n, "the send buffer") < 0) {
            goto fail;
        }
        Py_BEGIN_ALLOW_THREADS
        rc = nonblocking
            ? foehn_ialltoallv(c, s, scounts, sdispls, r, rcounts, rdispls, &req, &err)
            : foehn_alltoallv(c, s, scounts, sdispls, r, rcounts, rdispls, &err);
        Py_END_ALLOW_THREADS
        break;
    }
    return coll_done(rc, &err, h, req, nonblocking);
fail:
    hold_free(h);
    return NULL;
}

/* Method pairs (blocking, nonblocking) over one runner. */
#define REDUCTION_PAIR(name, kind)                                                        \
    static PyObject *comm_##name(PyObject *o, PyObject *a, PyObject *k)                  \
    {                                                                                     \
        return coll_reduction(o, a, k, kind, 0);                                          \
    }                                                                                     \
    static PyObject *comm_i##name(PyObject *o, PyObject *a, PyObject *k)                 \
    {                                                                                     \
        return coll_reduction(o, a, k, kind, 1);                                          \
    }
#define MOVE_PAIR(name, runner, kind)                                                     \
    static PyObject *comm_##name(PyObject *o, PyObject *a)                               \
    {                                                                                     \
        return runner(o, a, kind, 0);                                                     \
    }                                                                                     \
    static PyObject *comm_i##name(PyObject *o, PyObject *a)                              \
    {                                                                                     \
        return runner(o, a, kind, 1);                                                     \
    }

REDUCTION_PAIR(reduce, RED_REDUCE)
REDUCTION_PAIR(allreduce, RED_ALLREDUCE)
REDUCTION_PAIR(reduce_scatter_block, RED_REDUCE_SCATTER_BLOCK)
REDUCTION_PAIR(scan, RED_SCAN)
REDUCTION_PAIR(exscan, RED_EXSCAN)
MOVE_PAIR(gather, coll_move, MOVE_GATHER)
MOVE_PAIR(scatter, coll_move, MOVE_SCATTER)
MOVE_PAIR(allgather, coll_move, MOVE_ALLGATHER)
MOVE_PAIR(alltoall, coll_move, MOVE_ALLTOALL)
MOVE_PAIR(gatherv, coll_vector, VEC_GATHERV)
MOVE_PAIR(scatterv, coll_vector, VEC_SCATTERV)
MOVE_PAIR(allgatherv, coll_vector, VEC_ALLGATHERV)
MOVE_PAIR(alltoallv, coll_vector, VEC_ALLTOALLV)

PyMethodDef foehn_py_coll_methods[] = {
    {"barrier", comm_barrier, METH_NOARGS, "barrier()"},
    {"ibarrier", comm_ibarrier, METH_NOARGS, "ibarrier() -> Request"},
    METH_ARGS(bcast, "bcast(buf, root)"),
    METH_ARGS(ibcast, "ibcast(buf, root) -> Request"),
    METH_KW(reduce, RED_DOC("reduce")),
    METH_KW(ireduce, RED_DOC("ireduce")),
    METH_KW(allreduce, RED_DOC("allreduce")),
    METH_KW(iallreduce, RED_DOC("iallreduce")),
    METH_KW(reduce_scatter_block, RED_DOC("reduce_scatter_block")),
    METH_KW(ireduce_scatter_block, RED_DOC("ireduce_scatter_block")),
    METH_KW(scan, RED_DOC("scan")),
    METH_KW(iscan, RED_DOC("iscan")),
    METH_KW(exscan, RED_DOC("exscan")),
    METH_KW(iexscan, RED_DOC("iexscan")),
    METH_ARGS(gather, MOVE_DOC("gather")),
    METH_ARGS(igather, MOVE_DOC("igather")),
    METH_ARGS(scatter, MOVE_DOC("scatter")),
    METH_ARGS(iscatter, MOVE_DOC("iscatter")),
    METH_ARGS(allgather, MOVE_DOC("allgather")),
    METH_ARGS(iallgather, MOVE_DOC("iallgather")),
    METH_ARGS(alltoall, MOVE_DOC("alltoall")),
    METH_ARGS(ialltoall, MOVE_DOC("ialltoall")),
    METH_ARGS(gatherv, "gatherv(sendbuf, sendbytes, recvbuf, recvbytes, displs, root)"),
    METH_ARGS(igatherv, "igatherv(sendbuf, sendbytes, recvbuf, recvbytes, displs, root)"),
    METH_ARGS(scatterv, "scatterv(sendbuf, sendbytes, displs, recvbuf, recvbytes, root)"),
    METH_ARGS(iscatterv, "iscatterv(sendbuf, sendbytes, displs, recvbuf, recvbytes, root)"),
    METH_ARGS(allgatherv, "allgatherv(sendbuf, sendbytes, recvbuf, recvbytes, displs)"),
    METH_ARGS(iallgatherv, "iallgatherv(sendbuf, sendbytes, recvbuf, recvbytes, displs)"),
    METH_ARGS(alltoallv, "alltoallv(sendbuf, sendbytes, sdispls, recvbuf, recvbytes, rdispls)"),
    METH_ARGS(ialltoallv, "ialltoallv(sendbuf, sendbytes, sdispls, recvbuf, recvbytes, rdispls)"),
    {NULL, NULL, 0, NULL},
};
