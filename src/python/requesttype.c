/* foehn._foehn.Request: a nonblocking call's request from Python; it holds the
 * call's buffers until the engine is done with them (see commtype.c). */
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

/* ---- Request ------------------------------------------------------------ */


/* A call on the request that releases the GIL enters first and leaves after: the
 * request is freed by whoever is last, so no thread waits on freed memory when two
 * wait on one request. Both under the GIL. */
foehn_request *request_enter(RequestObject *self)
{
    self->busy++;
    return self->req;
}

void request_leave(RequestObject *self)
{
    if (--self->busy == 0 && self->finished && self->req) {
        foehn_request_free(self->req);
        self->req = NULL;
    }
}

PyObject *status_tuple(const foehn_msg_status *st)
{
    return Py_BuildValue("(iinii)", st->source, st->tag, (Py_ssize_t)st->bytes, st->error,
                         st->cancelled);
}

/* A bytes object copied from data (len bytes), without the GIL when it is big. */
PyObject *bytes_from(const void *data, size_t len)
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

/* An allocating receive's message, as bytes. */
static PyObject *received_bytes(foehn_request *req)
{
    void *data = NULL;
    size_t len = 0;
    foehn_request_take(req, &data, &len);
    PyObject *b = bytes_from(data ? data : "", len);
    free(data);
    return b;
}

/* The request is complete with result rc: take its data, let go of everything,
 * and return the status tuple (or raise its failure). */
static PyObject *request_finish(RequestObject *self, int rc, const foehn_msg_status *st,
                                const foehn_error *err)
{
    PyObject *result = NULL;
    int raised = 0;
    self->finished = 1; /* first: bytes_from may let another thread in */
    hold *h = self->h;
    if (rc == FOEHN_OK && (self->allocating || (h && (h->blobs || h->pieces)))) {
        Py_CLEAR(self->data);
        self->data = self->allocating ? received_bytes(self->req)
                     : h->blobs       ? blob_io_result(h->blobs)
                                      : pieces_io_result(h->pieces);
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
PyObject *request_new(foehn_request *req, hold *h, int allocating)
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
int parse_wait_timeout(PyObject *obj, double *out)
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
     "data() -> bytes an allocating receive got, or an object collective's result "
     "(once), else None"},
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

PyType_Spec request_spec = {
    .name = "foehn._foehn.Request",
    .basicsize = sizeof(RequestObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = request_slots,
};
