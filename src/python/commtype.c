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
#include "python/module.h"

#if Py_LIMITED_API + 0 < 0x030B0000
/* The buffer protocol joined the limited API in 3.11 (PEP 688's groundwork), but
 * the Py_buffer struct has had exactly this layout since Python 3.3 and every
 * CPython 3.x exports PyObject_GetBuffer and PyBuffer_Release, so a 3.9 stable-ABI
 * build may declare them itself, as CPython's own headers do. */
typedef struct {
    void *buf;
    PyObject *obj;
    Py_ssize_t len;
    Py_ssize_t itemsize;
    int readonly;
    int ndim;
    char *format;
    Py_ssize_t *shape;
    Py_ssize_t *strides;
    Py_ssize_t *suboffsets;
    void *internal;
} Py_buffer;
#define PyBUF_SIMPLE 0
#define PyBUF_WRITABLE 0x0001
PyAPI_FUNC(int) PyObject_GetBuffer(PyObject *obj, Py_buffer *view, int flags);
PyAPI_FUNC(void) PyBuffer_Release(Py_buffer *view);
#endif
#ifndef PyBUF_READ
#define PyBUF_READ 0x100
#define PyBUF_WRITE 0x200
#endif

/* Copies larger than this run without the GIL. */
#define BIG_COPY 65536

/* ---- engine state ------------------------------------------------------- */

enum { ENGINE_NEW = 0, ENGINE_LIVE, ENGINE_FINALIZED };
static int engine_state = ENGINE_NEW;
static PyObject *world_obj, *self_obj; /* the Comm objects comm_init returned */
static PyTypeObject *comm_type, *request_type;
static PyObject *exception_map; /* {foehn status: exception class}, from foehn.MPI */

/* Raises the exception for rc: the class foehn.MPI registered for it, called with
 * (rc, message), else foehn_py_raise's. Returns NULL. */
static PyObject *comm_raise(int rc, const foehn_error *err)
{
    const char *message = err && err->message[0] ? err->message : "foehn: unknown error";
    PyObject *cls = NULL;
    if (exception_map) {
        PyObject *key = PyLong_FromLong(rc);
        if (!key)
            return NULL;
        cls = PyDict_GetItem(exception_map, key); /* borrowed */
        Py_DECREF(key);
    }
    if (!cls)
        return foehn_py_raise(rc, err);
    PyObject *args = Py_BuildValue("(is)", rc, message);
    if (args) {
        PyErr_SetObject(cls, args);
        Py_DECREF(args);
    }
    return NULL;
}

/* A bad argument: the class registered for FOEHN_ERR_INVALID (MPI.Exception and
 * ValueError), else ValueError. Returns NULL. */
static PyObject *invalid(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static PyObject *invalid(const char *fmt, ...)
{
    foehn_error err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.message, sizeof err.message, fmt, ap);
    va_end(ap);
    return comm_raise(FOEHN_ERR_INVALID, &err);
}

static int engine_live(void)
{
    if (engine_state == ENGINE_LIVE)
        return 1;
    PyErr_SetString(foehn_py_state.error, engine_state == ENGINE_NEW
                    ? "the communicator is not initialised (call comm_init first)"
                    : "the communicator was finalized");
    return 0;
}

/* ---- what a call holds: buffers, arrays, a user's op ----------------------- */

typedef struct py_user_op {
    foehn_user_op uop;      /* uop.ctx points back here */
    PyObject *fn;           /* fn(inbuf, inoutbuf, dtype) */
    PyObject *exc_type, *exc_value, *exc_tb; /* the first exception fn raised */
} py_user_op;

typedef struct hold {
    Py_buffer views[2];
    int nviews;
    size_t *arrays;         /* counts and displacements (malloc'd), or NULL */
    py_user_op *op;         /* a user's reduction (malloc'd), or NULL */
    foehn_request *req;     /* an orphan's request */
    struct hold *next;      /* the orphan list */
} hold;

static hold *orphans;

static void user_op_clear(py_user_op *op)
{
    Py_CLEAR(op->fn);
    Py_CLEAR(op->exc_type);
    Py_CLEAR(op->exc_value);
    Py_CLEAR(op->exc_tb);
}

/* Gives back everything h holds (not h itself); needs the GIL. */
static void hold_release(hold *h)
{
    for (int i = 0; i < h->nviews; i++)
        PyBuffer_Release(&h->views[i]);
    h->nviews = 0;
    free(h->arrays);
    h->arrays = NULL;
    if (h->op) {
        user_op_clear(h->op);
        free(h->op);
        h->op = NULL;
    }
}

static void hold_free(hold *h)
{
    if (h) {
        hold_release(h);
        free(h);
    }
}

/* Lets go of the orphans whose requests are done (all of them once the engine is
 * finalized: it has freed their requests and touches their buffers no more). */
static void reap_orphans(void)
{
    hold **link = &orphans;
    while (*link) {
        hold *h = *link;
        int done = 1;
        if (engine_state == ENGINE_LIVE) {
            foehn_msg_status st;
            foehn_error err;
            done = 0;
            foehn_request_test(h->req, &done, &st, &err);
            if (done)
                foehn_request_free(h->req);
        }
        if (done) {
            *link = h->next;
            hold_free(h);
        } else {
            link = &h->next;
        }
    }
}

/* Takes obj's buffer into h: None gives NULL (length 0), Ellipsis gives
 * FOEHN_IN_PLACE when in_place allows it. */
static int take_buffer(hold *h, PyObject *obj, int writable, int in_place, void **ptr,
                       size_t *len, const char *what)
{
    *ptr = NULL;
    *len = 0;
    if (!obj || obj == Py_None)
        return 0;
    if (obj == Py_Ellipsis) {
        if (!in_place) {
            invalid("%s cannot be IN_PLACE", what);
            return -1;
        }
        *ptr = (void *)FOEHN_IN_PLACE;
        return 0;
    }
    Py_buffer *view = &h->views[h->nviews];
    if (PyObject_GetBuffer(obj, view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
        return -1;
    h->nviews++;
    *ptr = view->buf;
    *len = (size_t)view->len;
    return 0;
}

static int is_in_place(const void *p)
{
    return p == FOEHN_IN_PLACE;
}

/* A buffer must hold at least need bytes where it is significant. */
static int check_len(const void *ptr, size_t len, size_t need, const char *what)
{
    if (is_in_place(ptr))
        return 0;
    if (!ptr && need > 0) {
        invalid("%s is required here (%zu bytes)", what, need);
        return -1;
    }
    if (ptr && len < need) {
        invalid("%s is too short: %zu bytes, %zu needed", what, len,
                     need);
        return -1;
    }
    return 0;
}

static int mul_size(size_t a, size_t b, size_t *out)
{
    if (b && a > SIZE_MAX / b) {
        PyErr_SetString(PyExc_OverflowError, "message size overflows size_t");
        return -1;
    }
    *out = a * b;
    return 0;
}

/* ---- user reductions ------------------------------------------------------ */

static int user_op_call(const void *in, void *inout, size_t count, foehn_dtype dtype, void *ctx,
                        foehn_error *err)
{
    py_user_op *op = ctx;
    size_t bytes = count * foehn_dtype_size(dtype);
    int rc = FOEHN_OK;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *a = PyMemoryView_FromMemory((char *)in, (Py_ssize_t)bytes, PyBUF_READ);
    PyObject *b = a ? PyMemoryView_FromMemory(inout, (Py_ssize_t)bytes, PyBUF_WRITE) : NULL;
    PyObject *r = b ? PyObject_CallFunction(op->fn, "OOi", a, b, (int)dtype) : NULL;
    Py_XDECREF(r);
    if (!r) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        PyObject *text = value ? PyObject_Str(value) : NULL;
        PyObject *utf8 = text ? PyUnicode_AsUTF8String(text) : NULL;
        PyObject *name = type ? PyObject_GetAttrString(type, "__name__") : NULL;
        PyObject *name8 = name ? PyUnicode_AsUTF8String(name) : NULL;
        PyErr_Clear();
        snprintf(err->message, sizeof err->message, "the user's reduction raised %s: %s",
                 name8 ? PyBytes_AsString(name8) : "an exception",
                 utf8 ? PyBytes_AsString(utf8) : "?");
        Py_XDECREF(text);
        Py_XDECREF(utf8);
        Py_XDECREF(name);
        Py_XDECREF(name8);
        if (!op->exc_type) {
            op->exc_type = type;
            op->exc_value = value;
            op->exc_tb = tb;
        } else {
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
        }
        rc = FOEHN_ERR_INVALID;
    }
    /* The views must not outlive the call: release them (an export the function
     * kept, e.g. a NumPy array over them, makes release fail; that is its problem). */
    PyObject *views[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        if (!views[i])
            continue;
        PyObject *res = PyObject_CallMethod(views[i], "release", NULL);
        if (!res)
            PyErr_Clear();
        Py_XDECREF(res);
        Py_DECREF(views[i]);
    }
    if (!a || !b) {
        PyErr_Clear();
        snprintf(err->message, sizeof err->message, "the user's reduction: out of memory");
        rc = FOEHN_ERR_NOMEM;
    }
    PyGILState_Release(gil);
    return rc;
}

/* op: a built-in op's number, or a callable fn(inbuf, inoutbuf, dtype). A user's op
 * goes into *user (which the caller owns and clears). */
static int parse_op(PyObject *obj, int commute, py_user_op *user, foehn_reduction *red)
{
    red->op = FOEHN_OP_SUM;
    red->user = NULL;
    if (PyLong_Check(obj)) {
        long v = PyLong_AsLong(obj);
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (v < 0 || v >= FOEHN_OP_COUNT) {
            invalid("unknown reduction op %ld", v);
            return -1;
        }
        red->op = (foehn_op)v;
        return 0;
    }
    if (!PyCallable_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "op must be a built-in op number or a callable");
        return -1;
    }
    memset(user, 0, sizeof *user);
    user->uop.fn = user_op_call;
    user->uop.ctx = user;
    user->uop.commute = commute;
    Py_INCREF(obj);
    user->fn = obj;
    red->user = &user->uop;
    return 0;
}

/* Raises what a failed call says: the user's own exception where one was saved. */
static PyObject *raise_failure(int rc, const foehn_error *err, py_user_op *user)
{
    if (user && user->exc_type) {
        PyErr_Restore(user->exc_type, user->exc_value, user->exc_tb);
        user->exc_type = user->exc_value = user->exc_tb = NULL;
        return NULL;
    }
    return comm_raise(rc, err);
}

static int parse_dtype(int v, foehn_dtype *out)
{
    if (v < 0 || v >= FOEHN_DTYPE_COUNT) {
        invalid("unknown dtype %d", v);
        return -1;
    }
    *out = (foehn_dtype)v;
    return 0;
}

/* ---- Request ------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    foehn_request *req;     /* NULL once finished and no thread is inside a call on it */
    int finished;           /* completed and handed over: its hold is released */
    int busy;               /* threads in a call on req without the GIL */
    hold *h;
    int allocating;         /* a receive whose buffer the engine allocates */
    PyObject *data;         /* that buffer as bytes, once finished, until taken */
} RequestObject;

/* A call on the request that releases the GIL enters first and leaves after: the
 * request is freed by whoever is last, so no thread waits on freed memory when two
 * wait on one request. Both under the GIL. */
static foehn_request *request_enter(RequestObject *self)
{
    self->busy++;
    return self->req;
}

static void request_leave(RequestObject *self)
{
    if (--self->busy == 0 && self->finished && self->req) {
        foehn_request_free(self->req);
        self->req = NULL;
    }
}

static PyObject *status_tuple(const foehn_msg_status *st)
{
    return Py_BuildValue("(iinii)", st->source, st->tag, (Py_ssize_t)st->bytes, st->error,
                         st->cancelled);
}

/* A bytes object copied from data (len bytes), without the GIL when it is big. */
static PyObject *bytes_from(const void *data, size_t len)
{
    if (len < BIG_COPY)
        return PyBytes_FromStringAndSize(data, (Py_ssize_t)len);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    if (!out)
        return NULL;
    char *dst = PyBytes_AsString(out);
    Py_BEGIN_ALLOW_THREADS
    memcpy(dst, data, len);
    Py_END_ALLOW_THREADS
    return out;
}

/* The request is complete with result rc: take its data, let go of everything,
 * and return the status tuple (or raise its failure). */
static PyObject *request_finish(RequestObject *self, int rc, const foehn_msg_status *st,
                                const foehn_error *err)
{
    PyObject *result = NULL;
    int raised = 0;
    self->finished = 1; /* first: bytes_from may let another thread in */
    if (rc == FOEHN_OK && self->allocating) {
        void *data = NULL;
        size_t len = 0;
        foehn_request_take(self->req, &data, &len);
        Py_CLEAR(self->data);
        self->data = bytes_from(data ? data : "", len);
        free(data);
        raised = self->data == NULL;
    }
    if (!raised && rc == FOEHN_OK)
        result = status_tuple(st);
    else if (!raised)
        raise_failure(rc, err, self->h ? self->h->op : NULL);
    hold_free(self->h);
    self->h = NULL;
    if (!self->busy) {
        foehn_request_free(self->req);
        self->req = NULL;
    }
    return result;
}

/* A new Request owning req and h (h may be NULL). */
static PyObject *request_new(foehn_request *req, hold *h, int allocating)
{
    reap_orphans();
    allocfunc alloc = (allocfunc)PyType_GetSlot(request_type, Py_tp_alloc);
    RequestObject *self = (RequestObject *)alloc(request_type, 0);
    if (!self) {
        /* Nobody can wait for it now: it runs on as an orphan. */
        if (!h)
            h = calloc(1, sizeof *h);
        if (h) {
            h->req = req;
            h->next = orphans;
            orphans = h;
        }
        return NULL;
    }
    self->req = req;
    self->h = h;
    self->allocating = allocating;
    return (PyObject *)self;
}

static void request_dealloc(PyObject *obj)
{
    RequestObject *self = (RequestObject *)obj;
    PyTypeObject *type = Py_TYPE(obj);
    if (self->req && !self->finished && engine_state == ENGINE_LIVE) {
        foehn_msg_status st;
        foehn_error err;
        int done = 0;
        foehn_request_test(self->req, &done, &st, &err);
        if (done) {
            foehn_request_free(self->req);
            hold_free(self->h);
        } else {
            hold *h = self->h ? self->h : calloc(1, sizeof *h);
            if (h) {
                h->req = self->req;
                h->next = orphans;
                orphans = h;
            } /* else: out of memory, the request's buffers are kept forever */
        }
    } else {
        if (self->req && engine_state == ENGINE_LIVE)
            foehn_request_free(self->req); /* finished while another call was inside */
        hold_free(self->h);                /* (finalize freed every request itself) */
    }
    self->req = NULL;
    self->h = NULL;
    Py_CLEAR(self->data);
    freefunc tp_free = (freefunc)PyType_GetSlot(type, Py_tp_free);
    tp_free(obj);
    Py_DECREF(type);
}

/* timeout None: the communicator's default (< 0 to the C API). */
static int parse_wait_timeout(PyObject *obj, double *out)
{
    *out = -1;
    if (!obj || obj == Py_None)
        return 0;
    *out = PyFloat_AsDouble(obj);
    if (*out == -1.0 && PyErr_Occurred())
        return -1;
    if (!(*out >= 0)) {
        invalid("timeout must be a number of seconds >= 0");
        return -1;
    }
    return 0;
}

static PyObject *request_wait(PyObject *obj, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"timeout", NULL};
    RequestObject *self = (RequestObject *)obj;
    PyObject *timeout_o = Py_None;
    double timeout;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O", kwlist, &timeout_o) ||
        parse_wait_timeout(timeout_o, &timeout) < 0)
        return NULL;
    if (self->finished)
        Py_RETURN_NONE;
    if (!engine_live())
        return NULL;
    foehn_msg_status st;
    foehn_error err;
    int rc, done = 1;
    memset(&st, 0, sizeof st);
    foehn_request *req = request_enter(self);
    Py_BEGIN_ALLOW_THREADS
    rc = foehn_request_wait(req, timeout, &st, &err);
    if (rc == FOEHN_ERR_TIMEOUT) {
        /* Did the request fail with a timeout, or did this wait run out? */
        foehn_error terr;
        done = 0;
        foehn_request_test(req, &done, &st, &terr);
    }
    Py_END_ALLOW_THREADS
    PyObject *result = !done ? comm_raise(rc, &err)
                     : self->finished ? Py_BuildValue("") /* another thread finished it */
                     : request_finish(self, rc, &st, &err);
    request_leave(self);
    return result;
}

static PyObject *request_test(PyObject *obj, PyObject *unused)
{
    (void)unused;
    RequestObject *self = (RequestObject *)obj;
    if (self->finished)
        Py_RETURN_NONE;
    if (!engine_live())
        return NULL;
    foehn_msg_status st;
    foehn_error err;
    int rc, done = 0;
    memset(&st, 0, sizeof st);
    rc = foehn_request_test(self->req, &done, &st, &err); /* never blocks: keeps the GIL */
    if (!done) {
        if (rc != FOEHN_OK)
            return comm_raise(rc, &err);
        return Py_BuildValue("()");
    }
    return request_finish(self, rc, &st, &err);
}

static PyObject *request_cancel(PyObject *obj, PyObject *unused)
{
    (void)unused;
    RequestObject *self = (RequestObject *)obj;
    if (!self->finished && engine_state == ENGINE_LIVE)
        foehn_request_cancel(self->req);
    Py_RETURN_NONE;
}

static PyObject *request_data(PyObject *obj, PyObject *unused)
{
    (void)unused;
    RequestObject *self = (RequestObject *)obj;
    PyObject *data = self->data;
    self->data = NULL;
    if (!data)
        Py_RETURN_NONE;
    return data;
}

static PyObject *request_active(PyObject *obj, void *closure)
{
    (void)closure;
    return PyBool_FromLong(!((RequestObject *)obj)->finished);
}

static PyMethodDef request_methods[] = {
    {"wait", (PyCFunction)(void (*)(void))request_wait, METH_VARARGS | METH_KEYWORDS,
     "wait(timeout=None) -> status tuple (source, tag, bytes, error, cancelled), or None "
     "when already finished; raises the request's failure"},
    {"test", request_test, METH_NOARGS,
     "test() -> () while running, the status tuple once complete (as wait), None when "
     "already finished"},
    {"cancel", request_cancel, METH_NOARGS,
     "cancel(): withdraw a receive not yet matched (anything else completes as usual)"},
    {"data", request_data, METH_NOARGS,
     "data() -> bytes an allocating receive got (once), else None"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef request_getset[] = {
    {"active", request_active, NULL, "whether the request has not been finished yet", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot request_slots[] = {
    {Py_tp_dealloc, request_dealloc},
    {Py_tp_methods, request_methods},
    {Py_tp_getset, request_getset},
    {Py_tp_doc, "A nonblocking operation of the communicator, holding its buffers until it "
                "completes."},
    {0, NULL},
};

static PyType_Spec request_spec = {
    .name = "foehn._foehn.Request",
    .basicsize = sizeof(RequestObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = request_slots,
};

/* ---- Comm --------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    foehn_comm *comm;       /* NULL once freed */
    int builtin;            /* COMM_WORLD or COMM_SELF: freed by finalize only */
} CommObject;

static PyObject *comm_wrap(foehn_comm *comm, int builtin)
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

static foehn_comm *live_comm(PyObject *obj)
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

static int check_rank(foehn_comm *c, int r, const char *what)
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
static PyObject *list_of(PyObject *obj, Py_ssize_t n, const char *what)
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

/* ---- blob collectives (for pickles) ---- */

/* A list of n bytes objects from malloc'd blobs; frees them and both arrays. */
static PyObject *blob_list(void **outs, size_t *lens, int n)
{
    PyObject *list = NULL;
    if (!outs)
        PyErr_SetString(foehn_py_state.error, "the blob collective returned nothing");
    else
        list = PyList_New(n);
    for (int i = 0; outs && i < n; i++) {
        if (list) {
            PyObject *b = bytes_from(outs[i] ? outs[i] : "", lens[i]);
            if (b)
                PyList_SetItem(list, i, b);
            else
                Py_CLEAR(list);
        }
        free(outs[i]);
    }
    free(outs);
    free(lens);
    return list;
}

static PyObject *blob_bytes(void *out, size_t len)
{
    PyObject *b = bytes_from(out ? out : "", len);
    free(out);
    return b;
}

/* Buffers of each item of a sequence of n bytes-like objects; views[] must have n. */
static int take_blobs(PyObject *seq_o, int n, Py_buffer *views, const void **ins, size_t *lens)
{
    PyObject *seq = list_of(seq_o, n, "blobs");
    if (!seq)
        return -1;
    for (int i = 0; i < n; i++) {
        if (PyObject_GetBuffer(PyList_GetItem(seq, i), &views[i], PyBUF_SIMPLE) < 0) {
            while (i-- > 0)
                PyBuffer_Release(&views[i]);
            Py_DECREF(seq);
            return -1;
        }
        ins[i] = views[i].buf;
        lens[i] = (size_t)views[i].len;
    }
    Py_DECREF(seq);
    return 0;
}

static void release_blobs(Py_buffer *views, int n)
{
    for (int i = 0; i < n; i++)
        PyBuffer_Release(&views[i]);
}

/* bcast_blob(data or None, root) -> bytes (data needed at the root only) */
static PyObject *comm_bcast_blob(PyObject *obj, PyObject *args)
{
    PyObject *data_o;
    int root;
    foehn_comm *c = live_comm(obj);
    if (!c || !PyArg_ParseTuple(args, "Oi", &data_o, &root) || check_rank(c, root, "root") < 0)
        return NULL;
    hold h;
    memset(&h, 0, sizeof h);
    void *in, *out = NULL;
    size_t inlen, outlen = 0;
    if (take_buffer(&h, foehn_comm_rank(c) == root ? data_o : Py_None, 0, 0, &in, &inlen,
                    "the data") < 0)
        return NULL;
    foehn_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = foehn_bcast_blob(c, in, inlen, root, &out, &outlen, &err);
    Py_END_ALLOW_THREADS
    hold_release(&h);
    if (rc != FOEHN_OK)
        return comm_raise(rc, &err);
    return blob_bytes(out, outlen);
}

/* gather_blob(data, root) -> list of bytes at the root, None elsewhere;
 * allgather_blob(data) -> list of bytes */
static PyObject *gather_blobs(PyObject *obj, PyObject *args, int all)
{
    PyObject *data_o;
    int root = 0;
    foehn_comm *c = live_comm(obj);
    if (!c || !(all ? PyArg_ParseTuple(args, "O", &data_o)
                    : PyArg_ParseTuple(args, "Oi", &data_o, &root)) ||
        check_rank(c, root, "root") < 0)
        return NULL;
    hold h;
    memset(&h, 0, sizeof h);
    void *in, **outs = NULL;
    size_t inlen, *outlens = NULL;
    if (take_buffer(&h, data_o, 0, 0, &in, &inlen, "the data") < 0)
        return NULL;
    foehn_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = all ? foehn_allgather_blob(c, in, inlen, &outs, &outlens, &err)
             : foehn_gather_blob(c, in, inlen, root, &outs, &outlens, &err);
    Py_END_ALLOW_THREADS
    hold_release(&h);
    if (rc != FOEHN_OK)
        return comm_raise(rc, &err);
    if (!all && foehn_comm_rank(c) != root) {
        free(outs);
        free(outlens);
        Py_RETURN_NONE;
    }
    return blob_list(outs, outlens, foehn_comm_size(c));
}

static PyObject *comm_gather_blob(PyObject *obj, PyObject *args)
{
    return gather_blobs(obj, args, 0);
}

static PyObject *comm_allgather_blob(PyObject *obj, PyObject *args)
{
    return gather_blobs(obj, args, 1);
}

/* scatter_blob(blobs or None, root) -> bytes (blobs at the root: one per rank);
 * alltoall_blob(blobs) -> list of bytes */
static PyObject *scatter_blobs(PyObject *obj, PyObject *args, int all)
{
    PyObject *blobs_o;
    int root = 0;
    foehn_comm *c = live_comm(obj);
    if (!c || !(all ? PyArg_ParseTuple(args, "O", &blobs_o)
                    : PyArg_ParseTuple(args, "Oi", &blobs_o, &root)) ||
        check_rank(c, root, "root") < 0)
        return NULL;
    int n = foehn_comm_size(c);
    int sends = all || foehn_comm_rank(c) == root;
    Py_buffer *views = NULL;
    const void **ins = NULL;
    size_t *lens = NULL;
    if (sends) {
        views = calloc((size_t)n, sizeof *views);
        ins = calloc((size_t)n, sizeof *ins);
        lens = calloc((size_t)n, sizeof *lens);
        if (!views || !ins || !lens) {
            free(views);
            free(ins);
            free(lens);
            return PyErr_NoMemory();
        }
        if (take_blobs(blobs_o, n, views, ins, lens) < 0) {
            free(views);
            free(ins);
            free(lens);
            return NULL;
        }
    }
    void *out = NULL, **outs = NULL;
    size_t outlen = 0, *outlens = NULL;
    foehn_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = all ? foehn_alltoall_blob(c, (const void *const *)ins, lens, &outs, &outlens, &err)
             : foehn_scatter_blob(c, (const void *const *)ins, lens, root, &out, &outlen, &err);
    Py_END_ALLOW_THREADS
    if (sends)
        release_blobs(views, n);
    free(views);
    free(ins);
    free(lens);
    if (rc != FOEHN_OK)
        return comm_raise(rc, &err);
    return all ? blob_list(outs, outlens, n) : blob_bytes(out, outlen);
}

static PyObject *comm_scatter_blob(PyObject *obj, PyObject *args)
{
    return scatter_blobs(obj, args, 0);
}

static PyObject *comm_alltoall_blob(PyObject *obj, PyObject *args)
{
    return scatter_blobs(obj, args, 1);
}

#define METH_KW(name, doc) \
    {#name, (PyCFunction)(void (*)(void))comm_##name, METH_VARARGS | METH_KEYWORDS, doc}
#define METH_ARGS(name, doc) {#name, comm_##name, METH_VARARGS, doc}
#define RED_DOC(name)                                                                    \
    name "(sendbuf, recvbuf, count, dtype, op, root=0, commute=True): counts in elements; " \
         "op a foehn_op number or fn(inbuf, inoutbuf, dtype); sendbuf ... for IN_PLACE"
#define MOVE_DOC(name) name "(sendbuf, recvbuf, bytes[, root]): bytes per rank's block"

static PyMethodDef comm_methods[] = {
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
    METH_ARGS(bcast_blob, "bcast_blob(data or None, root) -> bytes"),
    METH_ARGS(gather_blob, "gather_blob(data, root) -> list of bytes at the root, else None"),
    METH_ARGS(allgather_blob, "allgather_blob(data) -> list of bytes"),
    METH_ARGS(scatter_blob, "scatter_blob(blobs or None, root) -> bytes"),
    METH_ARGS(alltoall_blob, "alltoall_blob(blobs) -> list of bytes"),
    {NULL, NULL, 0, NULL},
};

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
static PyObject *py_wait_any(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
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
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GetItem(seq, i);
        if (item != Py_None && !((RequestObject *)item)->finished)
            reqs[i] = request_enter((RequestObject *)item);
    }
    size_t index = 0;
    foehn_error err;
    int rc;
    /* seq keeps every Request (so every foehn_request) alive meanwhile */
    Py_BEGIN_ALLOW_THREADS
    rc = foehn_request_wait_any((foehn_request *const *)reqs, (size_t)n, timeout, &index, &err);
    Py_END_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        if (reqs[i])
            request_leave((RequestObject *)PyList_GetItem(seq, i));
    free(reqs);
    Py_DECREF(seq);
    if (rc != FOEHN_OK)
        return comm_raise(rc, &err);
    return PyLong_FromSsize_t(index == (size_t)-1 ? -1 : (Py_ssize_t)index);
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
    {"dtype_size", py_dtype_size, METH_VARARGS, "dtype_size(dtype) -> bytes per element"},
    {"reduce_local", py_reduce_local, METH_VARARGS,
     "reduce_local(inbuf, inoutbuf, count, dtype, op): inoutbuf = inbuf op inoutbuf"},
    {"comm_set_exceptions", py_set_exceptions, METH_O,
     "comm_set_exceptions({status: class}): the classes communicator failures raise, "
     "called with (status, message)"},
    {NULL, NULL, 0, NULL},
};

int foehn_py_comm_add(PyObject *m)
{
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
    if (PyModule_AddFunctions(m, functions) < 0)
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
