/* The communicator's Python face, shared state: the engine's state, the exceptions
 * foehn.MPI registered, and what a call holds (buffers, arrays, a user's reduction)
 * until the C call is done with it. */
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

/* ---- engine state ------------------------------------------------------- */

int engine_state = ENGINE_NEW;
PyObject *world_obj, *self_obj; /* the Comm objects comm_init returned */
PyTypeObject *comm_type, *request_type;
PyObject *exception_map; /* {foehn status: exception class}, from foehn.MPI */

/* Raises the exception for rc: the class foehn.MPI registered for it, called with
 * (rc, message), else foehn_py_raise's. Returns NULL. */
PyObject *comm_raise(int rc, const foehn_error *err)
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
PyObject *invalid(const char *fmt, ...)
{
    foehn_error err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.message, sizeof err.message, fmt, ap);
    va_end(ap);
    return comm_raise(FOEHN_ERR_INVALID, &err);
}

int engine_live(void)
{
    if (engine_state == ENGINE_LIVE)
        return 1;
    PyErr_SetString(foehn_py_state.error, engine_state == ENGINE_NEW
                    ? "the communicator is not initialised (call comm_init first)"
                    : "the communicator was finalized");
    return 0;
}

/* ---- what a call holds: buffers, arrays, a user's op ----------------------- */



hold *orphans;

static void user_op_clear(py_user_op *op)
{
    Py_CLEAR(op->fn);
    Py_CLEAR(op->exc_type);
    Py_CLEAR(op->exc_value);
    Py_CLEAR(op->exc_tb);
}

/* Gives back everything h holds (not h itself); needs the GIL. */
void hold_release(hold *h)
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
    blob_io_free(h->blobs);
    h->blobs = NULL;
    pieces_io_free(h->pieces);
    h->pieces = NULL;
}

void hold_free(hold *h)
{
    if (h) {
        hold_release(h);
        free(h);
    }
}

/* Lets go of the orphans whose requests are done (all of them once the engine is
 * finalized: it has freed their requests and touches their buffers no more). */
void reap_orphans(void)
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
int take_buffer(hold *h, PyObject *obj, int writable, int in_place, void **ptr,
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

int is_in_place(const void *p)
{
    return p == FOEHN_IN_PLACE;
}

/* A buffer must hold at least need bytes where it is significant. */
int check_len(const void *ptr, size_t len, size_t need, const char *what)
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

int mul_size(size_t a, size_t b, size_t *out)
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
int parse_op(PyObject *obj, int commute, py_user_op *user, foehn_reduction *red)
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
PyObject *raise_failure(int rc, const foehn_error *err, py_user_op *user)
{
    if (user && user->exc_type) {
        PyErr_Restore(user->exc_type, user->exc_value, user->exc_tb);
        user->exc_type = user->exc_value = user->exc_tb = NULL;
        return NULL;
    }
    return comm_raise(rc, err);
}

int parse_dtype(int v, foehn_dtype *out)
{
    if (v < 0 || v >= FOEHN_DTYPE_COUNT) {
        invalid("unknown dtype %d", v);
        return -1;
    }
    *out = (foehn_dtype)v;
    return 0;
}
