/* The blob collectives of foehn._foehn.Comm, blocking and nonblocking: foehn.MPI's
 * pickle-based methods hand each rank's pickles in as bytes-like objects and take
 * bytes (or lists of bytes) back. A nonblocking one holds its input blobs and the
 * outputs the engine fills (a blob_io in the Request's hold) until it is finished;
 * Request.data() then gives the result. The engine runs it on the communicator's
 * worker thread, so no Python thread (and no GIL hand-over) is involved. */
#define Py_LIMITED_API 0x03090000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>

#include "foehn.h"
#include "python/comm_shared.h"

enum { BLOB_BCAST, BLOB_GATHER, BLOB_ALLGATHER, BLOB_SCATTER, BLOB_ALLTOALL };

struct blob_io {
    int kind, n, root, rank;
    int nviews;             /* input blobs held */
    Py_buffer *views;
    const void **ins;       /* scatter (root) and alltoall: one per rank */
    size_t *inlens;
    const void *in;         /* the others: this rank's one blob */
    size_t inlen;
    void *out, **outs;      /* what the engine fills */
    size_t outlen, *outlens;
};

/* Under the GIL (it releases buffers). */
void blob_io_free(blob_io *io)
{
    if (!io)
        return;
    for (int i = 0; i < io->nviews; i++)
        PyBuffer_Release(&io->views[i]);
    free(io->views);
    free(io->ins);
    free(io->inlens);
    free(io->out);
    for (int i = 0; io->outs && i < io->n; i++)
        free(io->outs[i]);
    free(io->outs);
    free(io->outlens);
    free(io);
}

static int many_in(const blob_io *io)
{
    return io->kind == BLOB_ALLTOALL || (io->kind == BLOB_SCATTER && io->rank == io->root);
}

/* Holds data_o's buffer(s): one blob, or for scatter (root) and alltoall a sequence of
 * one per rank. None is no data (bcast and scatter away from the root). */
static int blob_io_take(blob_io *io, PyObject *data_o)
{
    int n = many_in(io) ? io->n : 1;
    if (!many_in(io) && (data_o == Py_None || io->kind == BLOB_SCATTER ||
                         (io->kind == BLOB_BCAST && io->rank != io->root)))
        return 0;
    io->views = calloc((size_t)n, sizeof *io->views);
    if (!io->views) {
        PyErr_NoMemory();
        return -1;
    }
    if (!many_in(io)) {
        if (PyObject_GetBuffer(data_o, &io->views[0], PyBUF_SIMPLE) < 0)
            return -1;
        io->nviews = 1;
        io->in = io->views[0].buf;
        io->inlen = (size_t)io->views[0].len;
        return 0;
    }
    io->ins = calloc((size_t)n, sizeof *io->ins);
    io->inlens = calloc((size_t)n, sizeof *io->inlens);
    PyObject *seq = io->ins && io->inlens ? list_of(data_o, n, "blobs") : PyErr_NoMemory();
    if (!seq)
        return -1;
    for (int i = 0; i < n; i++) {
        if (PyObject_GetBuffer(PyList_GetItem(seq, i), &io->views[i], PyBUF_SIMPLE) < 0) {
            Py_DECREF(seq);
            return -1;
        }
        io->nviews++;
        io->ins[i] = io->views[i].buf;
        io->inlens[i] = (size_t)io->views[i].len;
    }
    Py_DECREF(seq);
    return 0;
}

/* Starts (req) or runs (req NULL) the collective; without the GIL. */
static int blob_io_run(blob_io *io, foehn_comm *c, foehn_request **req, foehn_error *err)
{
    const void *const *ins = io->ins;
    switch (io->kind) {
    case BLOB_BCAST:
        return req ? foehn_ibcast_blob(c, io->in, io->inlen, io->root, &io->out, &io->outlen,
                                       req, err)
                   : foehn_bcast_blob(c, io->in, io->inlen, io->root, &io->out, &io->outlen,
                                      err);
    case BLOB_GATHER:
        return req ? foehn_igather_blob(c, io->in, io->inlen, io->root, &io->outs,
                                        &io->outlens, req, err)
                   : foehn_gather_blob(c, io->in, io->inlen, io->root, &io->outs,
                                       &io->outlens, err);
    case BLOB_ALLGATHER:
        return req ? foehn_iallgather_blob(c, io->in, io->inlen, &io->outs, &io->outlens, req,
                                           err)
                   : foehn_allgather_blob(c, io->in, io->inlen, &io->outs, &io->outlens, err);
    case BLOB_SCATTER:
        return req ? foehn_iscatter_blob(c, ins, io->inlens, io->root, &io->out, &io->outlen,
                                         req, err)
                   : foehn_scatter_blob(c, ins, io->inlens, io->root, &io->out, &io->outlen,
                                        err);
    default:
        return req ? foehn_ialltoall_blob(c, ins, io->inlens, &io->outs, &io->outlens, req, err)
                   : foehn_alltoall_blob(c, ins, io->inlens, &io->outs, &io->outlens, err);
    }
}

/* The result of a completed collective, its outputs handed over: bytes (bcast,
 * scatter), a list of bytes in rank order (gather at the root, allgather, alltoall),
 * or None (gather elsewhere). Under the GIL. */
PyObject *blob_io_result(blob_io *io)
{
    if (io->kind == BLOB_BCAST || io->kind == BLOB_SCATTER) {
        PyObject *b = bytes_from(io->out ? io->out : "", io->outlen);
        free(io->out);
        io->out = NULL;
        return b;
    }
    if (io->kind == BLOB_GATHER && io->rank != io->root)
        Py_RETURN_NONE;
    if (!io->outs) {
        PyErr_SetString(foehn_py_state.error, "the blob collective returned nothing");
        return NULL;
    }
    PyObject *list = PyList_New(io->n);
    for (int i = 0; list && i < io->n; i++) {
        PyObject *b = bytes_from(io->outs[i] ? io->outs[i] : "", io->outlens[i]);
        free(io->outs[i]);
        io->outs[i] = NULL;
        if (b)
            PyList_SetItem(list, i, b);
        else
            Py_CLEAR(list);
    }
    return list;
}

/* The end of an object collective (one of blobs, pieces): a Request that holds it
 * (nonblocking: h), the result, or the failure; what no Request took is freed. */
static PyObject *object_call_done(int rc, const foehn_error *err, hold *h, foehn_request *req,
                                  blob_io *blobs, pieces_io *pieces)
{
    if (rc == FOEHN_OK && h) {
        h->blobs = blobs;
        h->pieces = pieces;
        return request_new(req, h, 0);
    }
    PyObject *result = rc != FOEHN_OK ? comm_raise(rc, err)
                     : blobs          ? blob_io_result(blobs)
                                      : pieces_io_result(pieces);
    blob_io_free(blobs);
    pieces_io_free(pieces);
    free(h);
    return result;
}

/* A call's zeroed record of `size` bytes and, when nonblocking, the hold that keeps it
 * (and its Python objects) until the request is waited for (*h NULL otherwise); NULL
 * with MemoryError when either cannot be had. */
static void *call_alloc(size_t size, int nonblocking, hold **h)
{
    void *io = calloc(1, size);
    *h = nonblocking ? calloc(1, sizeof **h) : NULL;
    if (io && (!nonblocking || *h))
        return io;
    free(io);
    free(*h);
    PyErr_NoMemory();
    return NULL;
}

static PyObject *blob_call(PyObject *obj, PyObject *args, int kind, int nonblocking)
{
    PyObject *data_o;
    int root = 0;
    foehn_comm *c = live_comm(obj);
    int rooted = kind == BLOB_BCAST || kind == BLOB_GATHER || kind == BLOB_SCATTER;
    if (!c || !(rooted ? PyArg_ParseTuple(args, "Oi", &data_o, &root)
                       : PyArg_ParseTuple(args, "O", &data_o)) ||
        check_rank(c, root, "root") < 0)
        return NULL;
    hold *h;
    blob_io *io = call_alloc(sizeof *io, nonblocking, &h);
    if (!io)
        return NULL;
    *io = (blob_io){.kind = kind, .n = foehn_comm_size(c), .root = root,
                    .rank = foehn_comm_rank(c)};
    if (blob_io_take(io, data_o) < 0) {
        blob_io_free(io);
        free(h);
        return NULL;
    }
    foehn_request *req = NULL;
    foehn_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = blob_io_run(io, c, nonblocking ? &req : NULL, &err);
    Py_END_ALLOW_THREADS
    return object_call_done(rc, &err, h, req, io, NULL);
}

/* ---- alltoall in pieces ---- */

struct pieces_io {
    int n;                  /* ranks */
    foehn_pieces *ins;      /* one object per rank, its pieces views[] */
    Py_buffer *views;
    int nviews;
    foehn_pieces *outs;     /* what the engine fills */
};

void pieces_io_free(pieces_io *io)
{
    if (!io)
        return;
    for (int i = 0; i < io->nviews; i++)
        PyBuffer_Release(&io->views[i]);
    for (int j = 0; io->ins && j < io->n; j++) {
        free((void *)io->ins[j].data);
        free(io->ins[j].lens);
    }
    free(io->ins);
    free(io->views);
    foehn_pieces_free(io->outs, (size_t)io->n);
    free(io);
}

/* objs: one sequence of bytes-like pieces per rank. */
static int pieces_io_take(pieces_io *io, PyObject *objs_o)
{
    PyObject *objs = list_of(objs_o, io->n, "objects");
    if (!objs)
        return -1;
    PyObject **lists = calloc((size_t)io->n, sizeof *lists);
    io->ins = calloc((size_t)io->n, sizeof *io->ins);
    Py_ssize_t total = 0;
    int rc = lists && io->ins ? 0 : (PyErr_NoMemory(), -1);
    for (int j = 0; rc == 0 && j < io->n; j++) {
        lists[j] = PySequence_List(PyList_GetItem(objs, j));
        rc = lists[j] ? 0 : -1;
        if (rc == 0) {
            Py_ssize_t k = PyList_Size(lists[j]);
            total += k;
            io->ins[j].n = (size_t)k;
            io->ins[j].data = calloc((size_t)k + 1, sizeof *io->ins[j].data);
            io->ins[j].lens = calloc((size_t)k + 1, sizeof *io->ins[j].lens);
            if (!io->ins[j].data || !io->ins[j].lens)
                rc = (PyErr_NoMemory(), -1);
        }
    }
    if (rc == 0 && !(io->views = calloc((size_t)total + 1, sizeof *io->views)))
        rc = (PyErr_NoMemory(), -1);
    for (int j = 0; rc == 0 && j < io->n; j++) {
        for (size_t k = 0; rc == 0 && k < io->ins[j].n; k++) {
            Py_buffer *v = &io->views[io->nviews];
            rc = PyObject_GetBuffer(PyList_GetItem(lists[j], (Py_ssize_t)k), v, PyBUF_SIMPLE);
            if (rc == 0) {
                io->nviews++;
                io->ins[j].data[k] = v->buf;
                io->ins[j].lens[k] = (size_t)v->len;
            }
        }
    }
    for (int j = 0; lists && j < io->n; j++)
        Py_XDECREF(lists[j]);
    free(lists);
    Py_DECREF(objs);
    return rc;
}

/* [[pieces from rank 0], [pieces from rank 1], ...]; the outputs are let go. */
PyObject *pieces_io_result(pieces_io *io)
{
    if (!io->outs) {
        PyErr_SetString(foehn_py_state.error, "the alltoall returned nothing");
        return NULL;
    }
    PyObject *all = PyList_New(io->n);
    for (int i = 0; all && i < io->n; i++) {
        foehn_pieces *o = &io->outs[i];
        PyObject *list = PyList_New((Py_ssize_t)o->n);
        for (size_t k = 0; list && k < o->n; k++) {
            /* the pickle as bytes; the buffers as Pieces, handed over uncopied */
            PyObject *b = k == 0 ? bytes_from(o->data[k] ? o->data[k] : "", o->lens[k])
                                 : piece_adopt((void *)o->data[k], o->lens[k]);
            if (k)
                o->data[k] = NULL;
            if (b)
                PyList_SetItem(list, (Py_ssize_t)k, b);
            else
                Py_CLEAR(list);
        }
        if (list)
            PyList_SetItem(all, i, list);
        else
            Py_CLEAR(all);
    }
    foehn_pieces_free(io->outs, (size_t)io->n);
    io->outs = NULL;
    return all;
}

static PyObject *pieces_call(PyObject *obj, PyObject *objs_o, int nonblocking)
{
    foehn_comm *c = live_comm(obj);
    if (!c)
        return NULL;
    hold *h;
    pieces_io *io = call_alloc(sizeof *io, nonblocking, &h);
    if (!io)
        return NULL;
    io->n = foehn_comm_size(c);
    if (pieces_io_take(io, objs_o) < 0) {
        pieces_io_free(io);
        free(h);
        return NULL;
    }
    foehn_request *req = NULL;
    foehn_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = nonblocking ? foehn_ialltoall_pieces(c, io->ins, &io->outs, &req, &err)
                     : foehn_alltoall_pieces(c, io->ins, &io->outs, &err);
    Py_END_ALLOW_THREADS
    return object_call_done(rc, &err, h, req, NULL, io);
}

static PyObject *comm_alltoall_pieces(PyObject *obj, PyObject *objs)
{
    return pieces_call(obj, objs, 0);
}

static PyObject *comm_ialltoall_pieces(PyObject *obj, PyObject *objs)
{
    return pieces_call(obj, objs, 1);
}

#define BLOB_PAIR(name, kind)                                       \
    static PyObject *comm_##name##_blob(PyObject *obj, PyObject *args)  \
    {                                                               \
        return blob_call(obj, args, kind, 0);                       \
    }                                                               \
    static PyObject *comm_i##name##_blob(PyObject *obj, PyObject *args) \
    {                                                               \
        return blob_call(obj, args, kind, 1);                       \
    }

BLOB_PAIR(bcast, BLOB_BCAST)
BLOB_PAIR(gather, BLOB_GATHER)
BLOB_PAIR(allgather, BLOB_ALLGATHER)
BLOB_PAIR(scatter, BLOB_SCATTER)
BLOB_PAIR(alltoall, BLOB_ALLTOALL)

#define NB_DOC " (the i form: a Request whose data() is that once finished)"

PyMethodDef foehn_py_blob_methods[] = {
    METH_ARGS(bcast_blob, "bcast_blob(data or None, root) -> bytes" NB_DOC),
    METH_ARGS(ibcast_blob, "ibcast_blob(data or None, root) -> Request"),
    METH_ARGS(gather_blob, "gather_blob(data, root) -> list of bytes at the root, else None"
                           NB_DOC),
    METH_ARGS(igather_blob, "igather_blob(data, root) -> Request"),
    METH_ARGS(allgather_blob, "allgather_blob(data) -> list of bytes" NB_DOC),
    METH_ARGS(iallgather_blob, "iallgather_blob(data) -> Request"),
    METH_ARGS(scatter_blob, "scatter_blob(blobs or None, root) -> bytes" NB_DOC),
    METH_ARGS(iscatter_blob, "iscatter_blob(blobs or None, root) -> Request"),
    METH_ARGS(alltoall_blob, "alltoall_blob(blobs) -> list of bytes" NB_DOC),
    METH_ARGS(ialltoall_blob, "ialltoall_blob(blobs) -> Request"),
    {"alltoall_pieces", comm_alltoall_pieces, METH_O,
     "alltoall_pieces(objects) -> list: objects[j] (a sequence of bytes-like pieces) goes to "
     "rank j; item i is rank i's, as [bytes, Piece, ...]" NB_DOC},
    {"ialltoall_pieces", comm_ialltoall_pieces, METH_O, "ialltoall_pieces(objects) -> Request"},
    {NULL, NULL, 0, NULL},
};
