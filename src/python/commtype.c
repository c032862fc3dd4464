/* foehn._foehn.Comm and foehn._foehn.Request: the communicator (layer 3) from
 * Python, one method per C call; foehn.MPI builds mpi4py's face on top of them.
 *
 * Buffers come from any object with the buffer protocol, taken contiguous (an
 * object that cannot give a contiguous buffer raises BufferError). The argument
 * None stands for "no buffer" (NULL: insignificant on this rank) and Ellipsis for
 * FOEHN_IN_PLACE. Every buffer taken is held until the C call is done with it: the
 * call itself for blocking calls, the request's completion for nonblocking ones.
 * A Request dropped before it completes is kept on a list of orphans (its buffers
 * still held) until the engine says it is done, so that no C call writes into
 * memory Python has freed.
 *
 * Every call that can wait or copy much runs without the GIL. A user reduction
 * (an MPI.Op from Python) is called back from C with the GIL taken again; an
 * exception it raises fails the collective, and is raised again as itself on the
 * rank where it happened.
 *
 * This file: the Comm type, point to point and the module's functions; the rest
 * lives in commhold.c (engine state, what a call holds, user reductions),
 * requesttype.c (the Request type) and commcoll.c (the collectives), which share
 * comm_shared.h.
 */
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

/* ---- Comm --------------------------------------------------------------- */


PyObject *comm_wrap(foehn_comm *comm, int builtin)
{
    allocfunc alloc = (allocfunc)PyType_GetSlot(comm_type, Py_tp_alloc);
    CommObject *self = (CommObject *)alloc(comm_type, 0);
    if (!self) {
        if (!builtin)
            foehn_comm_free(comm);
        return NULL;
    }
    self->comm = comm;
    self->builtin = builtin;
    return (PyObject *)self;
}

foehn_comm *live_comm(PyObject *obj)
{
    CommObject *self = (CommObject *)obj;
    if (!engine_live())
        return NULL;
    if (!self->comm)
        PyErr_SetString(foehn_py_state.error, "this communicator was freed");
    return self->comm;
}

static void comm_dealloc(PyObject *obj)
{
    CommObject *self = (CommObject *)obj;
    PyTypeObject *type = Py_TYPE(obj);
    if (self->comm && !self->builtin && engine_state == ENGINE_LIVE)
        foehn_comm_free(self->comm);
    self->comm = NULL;
    freefunc tp_free = (freefunc)PyType_GetSlot(type, Py_tp_free);
    tp_free(obj);
    Py_DECREF(type);
}

static PyObject *comm_get_rank(PyObject *obj, void *closure)
{
    (void)closure;
    foehn_comm *c = live_comm(obj);
    return c ? PyLong_FromLong(foehn_comm_rank(c)) : NULL;
}

static PyObject *comm_get_size(PyObject *obj, void *closure)
{
    (void)closure;
    foehn_comm *c = live_comm(obj);
    return c ? PyLong_FromLong(foehn_comm_size(c)) : NULL;
}

static PyObject *comm_get_freed(PyObject *obj, void *closure)
{
    (void)closure;
    return PyBool_FromLong(((CommObject *)obj)->comm == NULL);
}

int check_rank(foehn_comm *c, int r, const char *what)
{
    if (r < 0 || r >= foehn_comm_size(c)) {
        invalid("%s %d is not a rank of this communicator (size %d)",
                     what, r, foehn_comm_size(c));
        return -1;
    }
    return 0;
}

static PyObject *comm_world_rank(PyObject *obj, PyObject *args)
{
    int r;
    foehn_comm *c = live_comm(obj);
    if (!c || !PyArg_ParseTuple(args, "i", &r) || check_rank(c, r, "rank") < 0)
        return NULL;
    return PyLong_FromLong(foehn_comm_world_rank(c, r));
}

static PyObject *comm_dup(PyObject *obj, PyObject *unused)
{
    (void)unused;
    foehn_comm *c = live_comm(obj), *out = NULL;
    if (!c)
        return NULL;
    foehn_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = foehn_comm_dup(c, &out, &err);
    Py_END_ALLOW_THREADS
    if (rc != FOEHN_OK)
        return comm_raise(rc, &err);
    return comm_wrap(out, 0);
}

static PyObject *comm_split(PyObject *obj, PyObject *args)
{
    int color, key;
    foehn_comm *c = live_comm(obj), *out = NULL;
    if (!c || !PyArg_ParseTuple(args, "ii", &color, &key))
        return NULL;
    if (color < 0 && color != FOEHN_UNDEFINED) {
        invalid("color must be >= 0 or UNDEFINED, not %d", color);
        return NULL;
    }
    foehn_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = foehn_comm_split(c, color, key, &out, &err);
    Py_END_ALLOW_THREADS
    if (rc != FOEHN_OK)
        return comm_raise(rc, &err);
    if (!out)
        Py_RETURN_NONE;
    return comm_wrap(out, 0);
}

static PyObject *comm_free(PyObject *obj, PyObject *unused)
{
    (void)unused;
    CommObject *self = (CommObject *)obj;
    if (!live_comm(obj))
        return NULL;
    if (self->builtin) {
        invalid("COMM_WORLD and COMM_SELF cannot be freed");
        return NULL;
    }
    foehn_comm_free(self->comm);
    self->comm = NULL;
    Py_RETURN_NONE;
}

/* ---- point to point ---- */

static int check_tag(int tag, int any_allowed)
{
    if ((tag >= 0 && tag <= FOEHN_TAG_MAX) || (any_allowed && tag == FOEHN_ANY_TAG))
        return 0;
    invalid("tag %d is out of range [0, %d]", tag, FOEHN_TAG_MAX);
    return -1;
}

static int check_peer(foehn_comm *c, int r, int any_allowed, const char *what)
{
    if (r == FOEHN_PROC_NULL || (any_allowed && r == FOEHN_ANY_SOURCE))
        return 0;
    return check_rank(c, r, what);
}

/* send(buf, dest, tag) / isend(buf, dest, tag) -> Request */
static PyObject *p2p_send(PyObject *obj, PyObject *args, int nonblocking)
{
    PyObject *buf_o;
    int dest, tag;
    foehn_comm *c = live_comm(obj);
    if (!c || !PyArg_ParseTuple(args, "Oii", &buf_o, &dest, &tag) ||
        check_peer(c, dest, 0, "dest") < 0 || check_tag(tag, 0) < 0)
        return NULL;
    hold *h = calloc(1, sizeof *h);
    if (!h)
        return PyErr_NoMemory();
    void *buf;
    size_t len;
    if (take_buffer(h, buf_o, 0, 0, &buf, &len, "the send buffer") < 0) {
        hold_free(h);
        return NULL;
    }
    foehn_request *req = NULL;
    foehn_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = nonblocking ? foehn_isend(c, buf, len, dest, tag, &req, &err)
                     : foehn_send(c, buf, len, dest, tag, &err);
    Py_END_ALLOW_THREADS
    if (rc != FOEHN_OK || !nonblocking) {
        hold_free(h);
        if (rc != FOEHN_OK)
            return comm_raise(rc, &err);
        Py_RETURN_NONE;
    }
    return request_new(req, h, 0);
}

static PyObject *comm_send(PyObject *obj, PyObject *args)
{
    return p2p_send(obj, args, 0);
}

static PyObject *comm_isend(PyObject *obj, PyObject *args)
{
    return p2p_send(obj, args, 1);
}

/* Starts a receive into buf_o (None: the engine allocates). */
static int start_recv(foehn_comm *c, PyObject *buf_o, int source, int tag, hold *h,
                      foehn_request **req, foehn_error *err)
{
    void *buf;
    size_t cap;
    if (take_buffer(h, buf_o, 1, 0, &buf, &cap, "the receive buffer") < 0)
        return -1;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = foehn_irecv(c, buf, cap, source, tag, req, err);
    Py_END_ALLOW_THREADS
    return rc;
}

static int parse_recv(PyObject *obj, PyObject *args, foehn_comm **c, PyObject **buf_o,
                      int *source, int *tag)
{
    *c = live_comm(obj);
    if (!*c || !PyArg_ParseTuple(args, "Oii", buf_o, source, tag) ||
        check_peer(*c, *source, 1, "source") < 0 || check_tag(*tag, 1) < 0)
        return -1;
    return 0;
}

/* irecv(buf or None, source, tag) -> Request */
static PyObject *comm_irecv(PyObject *obj, PyObject *args)
{
    foehn_comm *c;
    PyObject *buf_o;
    int source, tag;
    if (parse_recv(obj, args, &c, &buf_o, &source, &tag) < 0)
        return NULL;
    hold *h = calloc(1, sizeof *h);
    if (!h)
        return PyErr_NoMemory();
    foehn_request *req = NULL;
    foehn_error err;
    int rc = start_recv(c, buf_o, source, tag, h, &req, &err);
    if (rc != FOEHN_OK) {
        hold_free(h);
        return rc < 0 && PyErr_Occurred() ? NULL : comm_raise(rc, &err);
    }
    return request_new(req, h, buf_o == Py_None);
}

/* recv(buf or None, source, tag) -> (status tuple, bytes or None) */
static PyObject *comm_recv(PyObject *obj, PyObject *args)
{
    foehn_comm *c;
    PyObject *buf_o;
    int source, tag;
    if (parse_recv(obj, args, &c, &buf_o, &source, &tag) < 0)
        return NULL;
    hold h;
    memset(&h, 0, sizeof h);
    foehn_request *req = NULL;
    foehn_error err;
    foehn_msg_status st;
    memset(&st, 0, sizeof st);
    int rc = start_recv(c, buf_o, source, tag, &h, &req, &err);
    if (rc != FOEHN_OK) {
        hold_release(&h);
        return rc < 0 && PyErr_Occurred() ? NULL : comm_raise(rc, &err);
    }
    void *data = NULL;
    size_t len = 0;
    Py_BEGIN_ALLOW_THREADS
    rc = foehn_request_wait(req, -1, &st, &err);
    if (rc == FOEHN_ERR_TIMEOUT) {
        /* Withdraw the receive, lest it take a later message nobody waits for; one
         * matched meanwhile completes instead, and counts. */
        foehn_error late;
        foehn_request_cancel(req);
        if (foehn_request_wait(req, -1, &st, &late) == FOEHN_OK && !st.cancelled)
            rc = FOEHN_OK;
    }
    if (rc == FOEHN_OK)
        foehn_request_take(req, &data, &len);
    foehn_request_free(req);
    Py_END_ALLOW_THREADS
    hold_release(&h);
    if (rc != FOEHN_OK) {
        free(data);
        return comm_raise(rc, &err);
    }
    PyObject *bytes = Py_None;
    if (buf_o == Py_None)
        bytes = bytes_from(data ? data : "", len);
    else
        Py_INCREF(bytes);
    free(data);
    if (!bytes)
        return NULL;
    PyObject *status = status_tuple(&st);
    PyObject *out = status ? PyTuple_Pack(2, status, bytes) : NULL;
    Py_XDECREF(status);
    Py_DECREF(bytes);
    return out;
}

/* probe(source, tag, timeout=None) -> status tuple */
static PyObject *comm_probe(PyObject *obj, PyObject *args)
{
    int source, tag;
    PyObject *timeout_o = Py_None;
    double timeout;
    foehn_comm *c = live_comm(obj);
    if (!c || !PyArg_ParseTuple(args, "ii|O", &source, &tag, &timeout_o) ||
        parse_wait_timeout(timeout_o, &timeout) < 0 || check_peer(c, source, 1, "source") < 0 ||
        check_tag(tag, 1) < 0)
        return NULL;
    foehn_msg_status st;
    foehn_error err;
    int rc;
    memset(&st, 0, sizeof st);
    Py_BEGIN_ALLOW_THREADS
    rc = foehn_probe(c, source, tag, timeout, &st, &err);
    Py_END_ALLOW_THREADS
    if (rc != FOEHN_OK)
        return comm_raise(rc, &err);
    return status_tuple(&st);
}

/* iprobe(source, tag) -> status tuple or None */
static PyObject *comm_iprobe(PyObject *obj, PyObject *args)
{
    int source, tag, flag = 0;
    foehn_comm *c = live_comm(obj);
    if (!c || !PyArg_ParseTuple(args, "ii", &source, &tag) ||
        check_peer(c, source, 1, "source") < 0 || check_tag(tag, 1) < 0)
        return NULL;
    foehn_msg_status st;
    foehn_error err;
    int rc;
    memset(&st, 0, sizeof st);
    Py_BEGIN_ALLOW_THREADS
    rc = foehn_iprobe(c, source, tag, &flag, &st, &err);
    Py_END_ALLOW_THREADS
    if (rc != FOEHN_OK)
        return comm_raise(rc, &err);
    if (!flag)
        Py_RETURN_NONE;
    return status_tuple(&st);
}

/* Point to point and the communicator's own methods; the collectives' come from
 * commcoll.c and are appended at module init (one table is what a type takes). */
static PyMethodDef comm_own_methods[] = {
    METH_ARGS(world_rank, "world_rank(r) -> the COMM_WORLD rank of this communicator's rank r"),
    {"dup", comm_dup, METH_NOARGS, "dup() -> Comm (collective)"},
    METH_ARGS(split, "split(color, key) -> Comm, or None for color UNDEFINED (collective)"),
    {"free", comm_free, METH_NOARGS, "free(): forget this communicator (local)"},
    METH_ARGS(send, "send(buf, dest, tag)"),
    METH_ARGS(isend, "isend(buf, dest, tag) -> Request"),
    METH_ARGS(recv, "recv(buf or None, source, tag) -> (status, bytes or None)"),
    METH_ARGS(irecv, "irecv(buf or None, source, tag) -> Request (None: data() has the bytes)"),
    METH_ARGS(probe, "probe(source, tag, timeout=None) -> status"),
    METH_ARGS(iprobe, "iprobe(source, tag) -> status or None"),
    {NULL, NULL, 0, NULL},
};

static PyMethodDef comm_methods[sizeof comm_own_methods / sizeof comm_own_methods[0] + 64];


static PyGetSetDef comm_getset[] = {
    {"rank", comm_get_rank, NULL, "this process's rank in the communicator", NULL},
    {"size", comm_get_size, NULL, "the number of ranks", NULL},
    {"freed", comm_get_freed, NULL, "whether free() was called", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot comm_slots[] = {
    {Py_tp_dealloc, comm_dealloc},
    {Py_tp_methods, comm_methods},
    {Py_tp_getset, comm_getset},
    {Py_tp_doc, "A communicator (from comm_init, dup or split); one method per C call."},
    {0, NULL},
};

static PyType_Spec comm_spec = {
    .name = "foehn._foehn.Comm",
    .basicsize = sizeof(CommObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = comm_slots,
};

/* ---- module functions ---------------------------------------------------- */

static PyObject *py_comm_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *kwlist[] = {"timeout", NULL};
    PyObject *timeout_o = Py_None;
    double timeout = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O", kwlist, &timeout_o))
        return NULL;
    if (timeout_o != Py_None && (timeout = PyFloat_AsDouble(timeout_o)) == -1.0 &&
        PyErr_Occurred())
        return NULL;
    if (engine_state == ENGINE_FINALIZED) {
        PyErr_SetString(foehn_py_state.error,
                        "the communicator was finalized; it cannot be initialised again");
        return NULL;
    }
    if (engine_state == ENGINE_NEW) {
        foehn_py_malloc_tune();
        foehn_comm *world = NULL, *me = NULL;
        foehn_error err;
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = foehn_comm_init(&world, &me, timeout, &err);
        Py_END_ALLOW_THREADS
        if (rc != FOEHN_OK)
            return comm_raise(rc, &err);
        world_obj = comm_wrap(world, 1);
        self_obj = world_obj ? comm_wrap(me, 1) : NULL;
        if (!self_obj) {
            Py_CLEAR(world_obj);
            return NULL;
        }
        engine_state = ENGINE_LIVE;
    }
    return PyTuple_Pack(2, world_obj, self_obj);
}

static PyObject *py_comm_finalize(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    if (engine_state != ENGINE_LIVE)
        Py_RETURN_NONE;
    engine_state = ENGINE_FINALIZED; /* no Python call reaches the engine any more */
    Py_BEGIN_ALLOW_THREADS
    foehn_comm_finalize();
    Py_END_ALLOW_THREADS
    reap_orphans();
    Py_RETURN_NONE;
}

static PyObject *py_comm_initialized(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyBool_FromLong(engine_state == ENGINE_LIVE && foehn_comm_initialized());
}

static PyObject *py_comm_finalized(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyBool_FromLong(engine_state == ENGINE_FINALIZED);
}

static PyObject *py_comm_timeout(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyFloat_FromDouble(foehn_comm_timeout());
}

static PyObject *py_wtime(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyFloat_FromDouble(foehn_now());
}

/* wait_any(requests, timeout=None) -> index of a complete one, -1 when none is active */
/* wait_any and wait_some: wait until one of the requests is complete; the index of
 * one (-1: none active), or with all the indices of every complete one ([] : none). */
static PyObject *wait_for_requests(PyObject *args, PyObject *kwargs, int all)
{
    static char *kwlist[] = {"requests", "timeout", NULL};
    PyObject *reqs_o, *timeout_o = Py_None;
    double timeout;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O", kwlist, &reqs_o, &timeout_o) ||
        parse_wait_timeout(timeout_o, &timeout) < 0 || !engine_live())
        return NULL;
    PyObject *seq = list_of(reqs_o, -1, "requests");
    if (!seq)
        return NULL;
    Py_ssize_t n = PyList_Size(seq);
    foehn_request **reqs = calloc((size_t)n + 1, sizeof *reqs);
    if (!reqs) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GetItem(seq, i);
        if (item == Py_None)
            continue;
        if (!PyObject_TypeCheck(item, request_type)) {
            PyErr_SetString(PyExc_TypeError, "wait_any takes Requests (or None)");
            free(reqs);
            Py_DECREF(seq);
            return NULL;
        }
    }
    unsigned char *done = all ? calloc((size_t)n + 1, 1) : NULL;
    size_t finished = 0; /* wait_some: those already finished are complete, at once */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GetItem(seq, i);
        if (item != Py_None && !((RequestObject *)item)->finished)
            reqs[i] = request_enter((RequestObject *)item);
        else if (item != Py_None && done)
            done[i] = 1, finished++;
    }
    size_t index = 0;
    foehn_error err;
    int rc = FOEHN_OK;
    /* seq keeps every Request (so every foehn_request) alive meanwhile */
    Py_BEGIN_ALLOW_THREADS
    size_t count = finished;
    if (done && !finished)
        rc = foehn_request_wait_some((foehn_request *const *)reqs, (size_t)n, timeout, done,
                                     &count, &err);
    else if (!done)
        rc = foehn_request_wait_any((foehn_request *const *)reqs, (size_t)n, timeout, &index,
                                    &err);
    index = done && !count ? (size_t)-1 : index;
    Py_END_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        if (reqs[i])
            request_leave((RequestObject *)PyList_GetItem(seq, i));
    free(reqs);
    Py_DECREF(seq);
    PyObject *result = NULL;
    if (rc != FOEHN_OK)
        comm_raise(rc, &err);
    else if (!all)
        result = PyLong_FromSsize_t(index == (size_t)-1 ? -1 : (Py_ssize_t)index);
    else if (!done)
        PyErr_NoMemory();
    else if ((result = PyList_New(0)) != NULL)
        for (Py_ssize_t i = 0; i < n && index != (size_t)-1 && result; i++) {
            PyObject *k = done[i] ? PyLong_FromSsize_t(i) : NULL;
            if (done[i] && (!k || PyList_Append(result, k) < 0))
                Py_CLEAR(result);
            Py_XDECREF(k);
        }
    free(done);
    return result;
}

static PyObject *py_wait_any(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    return wait_for_requests(args, kwargs, 0);
}

static PyObject *py_wait_some(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    return wait_for_requests(args, kwargs, 1);
}

static PyObject *py_dtype_size(PyObject *self, PyObject *args)
{
    (void)self;
    int v;
    foehn_dtype dt;
    if (!PyArg_ParseTuple(args, "i", &v) || parse_dtype(v, &dt) < 0)
        return NULL;
    return PyLong_FromSize_t(foehn_dtype_size(dt));
}

/* reduce_local(inbuf, inoutbuf, count, dtype, op): inout = in op inout, locally */
static PyObject *py_reduce_local(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *in_o, *inout_o, *op_o;
    Py_ssize_t count;
    int dtype_i;
    foehn_dtype dtype;
    if (!PyArg_ParseTuple(args, "OOniO", &in_o, &inout_o, &count, &dtype_i, &op_o) ||
        parse_dtype(dtype_i, &dtype) < 0)
        return NULL;
    if (count < 0 || !PyLong_Check(op_o)) {
        invalid("reduce_local takes count >= 0 and a built-in op");
        return NULL;
    }
    foehn_reduction red;
    if (parse_op(op_o, 1, NULL, &red) < 0)
        return NULL;
    hold h;
    memset(&h, 0, sizeof h);
    void *in, *inout;
    size_t inlen, inoutlen, bytes;
    if (mul_size((size_t)count, foehn_dtype_size(dtype), &bytes) < 0 ||
        take_buffer(&h, in_o, 0, 0, &in, &inlen, "inbuf") < 0 ||
        take_buffer(&h, inout_o, 1, 0, &inout, &inoutlen, "inoutbuf") < 0 ||
        check_len(in, inlen, bytes, "inbuf") < 0 ||
        check_len(inout, inoutlen, bytes, "inoutbuf") < 0) {
        hold_release(&h);
        return NULL;
    }
    foehn_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = foehn_reduce_local(in, inout, (size_t)count, dtype, red.op, &err);
    Py_END_ALLOW_THREADS
    hold_release(&h);
    if (rc != FOEHN_OK)
        return comm_raise(rc, &err);
    Py_RETURN_NONE;
}

static PyObject *py_set_exceptions(PyObject *self, PyObject *mapping)
{
    (void)self;
    if (!PyDict_Check(mapping)) {
        PyErr_SetString(PyExc_TypeError, "comm_set_exceptions takes a dict {status: class}");
        return NULL;
    }
    Py_INCREF(mapping);
    Py_XDECREF(exception_map);
    exception_map = mapping;
    Py_RETURN_NONE;
}

static PyMethodDef functions[] = {
    {"comm_init", (PyCFunction)(void (*)(void))py_comm_init, METH_VARARGS | METH_KEYWORDS,
     "comm_init(timeout=None) -> (world, self): join the job's communicator (once; later "
     "calls return the same two)"},
    {"comm_finalize", py_comm_finalize, METH_NOARGS,
     "comm_finalize(): leave (flush, goodbye, close); idempotent"},
    {"comm_initialized", py_comm_initialized, METH_NOARGS, "comm_initialized() -> bool"},
    {"comm_finalized", py_comm_finalized, METH_NOARGS, "comm_finalized() -> bool"},
    {"comm_timeout", py_comm_timeout, METH_NOARGS,
     "comm_timeout() -> the default bound for waits, in seconds"},
    {"wtime", py_wtime, METH_NOARGS, "wtime() -> seconds on the monotonic clock"},
    {"wait_any", (PyCFunction)(void (*)(void))py_wait_any, METH_VARARGS | METH_KEYWORDS,
     "wait_any(requests, timeout=None) -> index of a complete request (-1: none active)"},
    {"wait_some", (PyCFunction)(void (*)(void))py_wait_some, METH_VARARGS | METH_KEYWORDS,
     "wait_some(requests, timeout=None) -> indices of every complete request, once one is "
     "([]: none active)"},
    {"dtype_size", py_dtype_size, METH_VARARGS, "dtype_size(dtype) -> bytes per element"},
    {"reduce_local", py_reduce_local, METH_VARARGS,
     "reduce_local(inbuf, inoutbuf, count, dtype, op): inoutbuf = inbuf op inoutbuf"},
    {"comm_set_exceptions", py_set_exceptions, METH_O,
     "comm_set_exceptions({status: class}): the classes communicator failures raise, "
     "called with (status, message)"},
    {NULL, NULL, 0, NULL},
};

/* comm_methods = comm_own_methods + foehn_py_coll_methods + foehn_py_blob_methods +
 * the end mark. */
static int fill_methods(void)
{
    size_t n = 0, cap = sizeof comm_methods / sizeof comm_methods[0];
    const PyMethodDef *tables[] = {comm_own_methods, foehn_py_coll_methods,
                                   foehn_py_blob_methods};
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        for (const PyMethodDef *d = tables[t]; d->ml_name; d++) {
            if (n + 1 >= cap) {
                PyErr_SetString(PyExc_SystemError,
                                "foehn._foehn: Comm has more methods than room");
                return -1;
            }
            comm_methods[n++] = *d;
        }
    }
    comm_methods[n] = (PyMethodDef){NULL, NULL, 0, NULL};
    return 0;
}

int foehn_py_comm_add(PyObject *m)
{
    if (fill_methods() < 0)
        return -1;
    comm_type = (PyTypeObject *)PyType_FromSpec(&comm_spec);
    request_type = comm_type ? (PyTypeObject *)PyType_FromSpec(&request_spec) : NULL;
    if (!request_type)
        return -1;
    Py_INCREF(comm_type);
    if (PyModule_AddObject(m, "Comm", (PyObject *)comm_type) < 0) {
        Py_DECREF(comm_type);
        return -1;
    }
    Py_INCREF(request_type);
    if (PyModule_AddObject(m, "Request", (PyObject *)request_type) < 0) {
        Py_DECREF(request_type);
        return -1;
    }
    if (foehn_py_piece_add(m) < 0 || PyModule_AddFunctions(m, functions) < 0)
        return -1;
    static const struct { const char *name; int value; } constants[] = {
        {"ANY_SOURCE", FOEHN_ANY_SOURCE}, {"ANY_TAG", FOEHN_ANY_TAG},
        {"PROC_NULL", FOEHN_PROC_NULL},   {"UNDEFINED", FOEHN_UNDEFINED},
        {"TAG_MAX", FOEHN_TAG_MAX},
#define K(prefix, name) {#prefix #name, FOEHN_##name}
        K(DTYPE_, BYTE), K(DTYPE_, BOOL), K(DTYPE_, INT8), K(DTYPE_, UINT8), K(DTYPE_, INT16),
        K(DTYPE_, UINT16), K(DTYPE_, INT32), K(DTYPE_, UINT32), K(DTYPE_, INT64),
        K(DTYPE_, UINT64), K(DTYPE_, FLOAT16), K(DTYPE_, BFLOAT16), K(DTYPE_, FLOAT32),
        K(DTYPE_, FLOAT64), K(DTYPE_, LONG_DOUBLE), K(DTYPE_, COMPLEX64),
        K(DTYPE_, COMPLEX128), K(DTYPE_, FLOAT_INT), K(DTYPE_, DOUBLE_INT),
        K(DTYPE_, LONG_INT), K(DTYPE_, 2INT), K(DTYPE_, SHORT_INT),
        {"DTYPE_COUNT", FOEHN_DTYPE_COUNT},
        K(, OP_SUM), K(, OP_PROD), K(, OP_MIN), K(, OP_MAX), K(, OP_LAND), K(, OP_LOR),
        K(, OP_LXOR), K(, OP_BAND), K(, OP_BOR), K(, OP_BXOR), K(, OP_MINLOC),
        K(, OP_MAXLOC), K(, OP_REPLACE), K(, OP_COUNT),
#undef K
    };
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++)
        if (PyModule_AddIntConstant(m, constants[i].name, constants[i].value) < 0)
            return -1;
    return 0;
}
