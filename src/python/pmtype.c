/* foehn._foehn.PM: the process-management layer from Python (foehn.init()).
 * Every call that may wait releases the GIL. */
#define Py_LIMITED_API 0x03090000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>

#include "pm/pm.h"
#include "pm/watchdog.h"
#include "python/module.h"

extern char **environ;

typedef struct {
    PyObject_HEAD
    foehn_pm *pm;
    foehn_watchdog *wd;  /* the peer-death watchdog, once listening */
} PMObject;

/* The exception that matches a status, with the C layer's sentence. */
PyObject *foehn_py_raise(int rc, const foehn_error *err)
{
    PyObject *type;
    switch (rc) {
    case FOEHN_ERR_NOMEM: return PyErr_NoMemory();
    case FOEHN_ERR_TIMEOUT: type = foehn_py_state.timeout_error; break;
    case FOEHN_ERR_PEER: type = foehn_py_state.peer_error; break;
    case FOEHN_ERR_NOTFOUND: type = PyExc_KeyError; break;
    case FOEHN_ERR_INVALID:
    case FOEHN_ERR_LIMIT: type = PyExc_ValueError; break;
    default: type = foehn_py_state.error; break;
    }
    PyErr_SetString(type, err && err->message[0] ? err->message : "foehn: unknown error");
    return NULL;
}

static foehn_pm *live(PMObject *self)
{
    if (!self->pm)
        PyErr_SetString(foehn_py_state.error, "this process-management handle was finalized");
    return self->pm;
}

/* What to let go of: the watchdog (with a clean goodbye), the pm handle, or both.
 * At interpreter exit the watchdog is left to its own exit hook, which knows the
 * exit status: a goodbye said here would hide a rank that is exiting because of an
 * error (Python runs atexit handlers and deallocates before the status is final). */
enum { RELEASE_WATCHDOG = 1, RELEASE_PM = 2 };

/* Releases without the GIL (both may wait on the network); each once. */
static void release(PMObject *self, int what)
{
    foehn_watchdog *wd = (what & RELEASE_WATCHDOG) ? self->wd : NULL;
    foehn_pm *pm = (what & RELEASE_PM) ? self->pm : NULL;
    if (what & RELEASE_WATCHDOG)
        self->wd = NULL;
    if (what & RELEASE_PM)
        self->pm = NULL;
    Py_BEGIN_ALLOW_THREADS
    foehn_watchdog_stop(wd);
    foehn_pm_release(pm);
    Py_END_ALLOW_THREADS
}

static PyObject *pm_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "", kwlist))
        return NULL;
    foehn_pm *pm = NULL;
    foehn_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = foehn_pm_acquire(&pm, environ, &err);
    Py_END_ALLOW_THREADS
    if (rc != FOEHN_OK)
        return foehn_py_raise(rc, &err);
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    PMObject *self = (PMObject *)alloc(type, 0);
    if (!self) {
        foehn_pm_release(pm);
        return NULL;
    }
    self->pm = pm;
    return (PyObject *)self;
}

static void pm_dealloc(PyObject *obj)
{
    PMObject *self = (PMObject *)obj;
    PyTypeObject *type = Py_TYPE(obj);
    release(self, RELEASE_PM); /* the watchdog, if any, is ended by its exit hook */
    freefunc tp_free = (freefunc)PyType_GetSlot(type, Py_tp_free);
    tp_free(obj);
    Py_DECREF(type);
}

/* Value bytes from a str (UTF-8) or a bytes-like object. */
static PyObject *value_bytes(PyObject *value)
{
    if (PyUnicode_Check(value))
        return PyUnicode_AsUTF8String(value);
    return PyBytes_FromObject(value);
}

static PyObject *pm_put(PyObject *obj, PyObject *args)
{
    const char *key;
    PyObject *value;
    foehn_pm *pm = live((PMObject *)obj);
    if (!pm || !PyArg_ParseTuple(args, "sO", &key, &value))
        return NULL;
    PyObject *bytes = value_bytes(value);
    if (!bytes)
        return NULL;
    foehn_error err;
    int rc = foehn_pm_put(pm, key, PyBytes_AsString(bytes), (size_t)PyBytes_Size(bytes), &err);
    Py_DECREF(bytes);
    if (rc != FOEHN_OK)
        return foehn_py_raise(rc, &err);
    Py_RETURN_NONE;
}

static PyObject *pm_commit(PyObject *obj, PyObject *unused)
{
    (void)unused;
    foehn_pm *pm = live((PMObject *)obj);
    if (!pm)
        return NULL;
    foehn_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = foehn_pm_commit(pm, &err);
    Py_END_ALLOW_THREADS
    if (rc != FOEHN_OK)
        return foehn_py_raise(rc, &err);
    Py_RETURN_NONE;
}

/* timeout=None means the job's default (FOEHN_TIMEOUT, else 300 s). */
static int parse_timeout(PyObject *obj, double *out)
{
    *out = 0;
    if (!obj || obj == Py_None)
        return 0;
    *out = PyFloat_AsDouble(obj);
    if (*out == -1.0 && PyErr_Occurred())
        return -1;
    if (!(*out > 0)) {
        PyErr_SetString(PyExc_ValueError, "timeout must be a positive number of seconds");
        return -1;
    }
    return 0;
}

typedef int (*wait_fn)(foehn_pm *, double, foehn_error *);

static PyObject *pm_wait(PyObject *obj, PyObject *args, PyObject *kwargs, wait_fn fn)
{
    static char *kwlist[] = {"timeout", NULL};
    PyObject *timeout_o = Py_None;
    double timeout;
    foehn_pm *pm = live((PMObject *)obj);
    if (!pm || !PyArg_ParseTupleAndKeywords(args, kwargs, "|O", kwlist, &timeout_o) ||
        parse_timeout(timeout_o, &timeout) < 0)
        return NULL;
    foehn_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = fn(pm, timeout, &err);
    Py_END_ALLOW_THREADS
    if (rc != FOEHN_OK)
        return foehn_py_raise(rc, &err);
    Py_RETURN_NONE;
}

static PyObject *pm_fence(PyObject *obj, PyObject *args, PyObject *kwargs)
{
    return pm_wait(obj, args, kwargs, foehn_pm_fence);
}

static PyObject *pm_barrier(PyObject *obj, PyObject *args, PyObject *kwargs)
{
    return pm_wait(obj, args, kwargs, foehn_pm_barrier);
}

static PyObject *pm_get(PyObject *obj, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"rank", "key", "timeout", NULL};
    int rank;
    const char *key;
    PyObject *timeout_o = Py_None;
    double timeout;
    foehn_pm *pm = live((PMObject *)obj);
    if (!pm || !PyArg_ParseTupleAndKeywords(args, kwargs, "is|O", kwlist, &rank, &key, &timeout_o) ||
        parse_timeout(timeout_o, &timeout) < 0)
        return NULL;
    void *value = NULL;
    size_t len = 0;
    foehn_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = foehn_pm_get(pm, rank, key, &value, &len, timeout, &err);
    Py_END_ALLOW_THREADS
    if (rc != FOEHN_OK)
        return foehn_py_raise(rc, &err);
    PyObject *out = PyBytes_FromStringAndSize(value, (Py_ssize_t)len);
    free(value);
    return out;
}

static PyObject *pm_abort(PyObject *obj, PyObject *args)
{
    int status = 1;
    const char *message = "";
    foehn_pm *pm = live((PMObject *)obj);
    if (!pm || !PyArg_ParseTuple(args, "|is", &status, &message))
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = foehn_pm_abort(pm, status, message);
    Py_END_ALLOW_THREADS
    foehn_error err;
    snprintf(err.message, sizeof err.message, "abort did not stop the job (status %d)", rc);
    return foehn_py_raise(FOEHN_ERR_SYSTEM, &err);
}

static PyObject *pm_finalize(PyObject *obj, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"at_exit", NULL};
    int at_exit = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|p", kwlist, &at_exit))
        return NULL;
    release((PMObject *)obj, at_exit ? RELEASE_PM : RELEASE_PM | RELEASE_WATCHDOG);
    Py_RETURN_NONE;
}

static PyObject *pm_watchdog_listen(PyObject *obj, PyObject *args)
{
    PMObject *self = (PMObject *)obj;
    const char *ip;
    foehn_pm *pm = live(self);
    if (!pm || !PyArg_ParseTuple(args, "s", &ip))
        return NULL;
    if (self->wd) {
        PyErr_SetString(foehn_py_state.error, "the watchdog is already listening");
        return NULL;
    }
    char publish[FOEHN_WATCHDOG_PUBLISH_MAX] = "";
    foehn_error err;
    int rc = foehn_watchdog_listen(&self->wd, pm->rank, pm->size, ip, publish, sizeof publish, &err);
    if (rc != FOEHN_OK)
        return foehn_py_raise(rc, &err);
    return PyUnicode_FromString(publish);
}

static PyObject *pm_watchdog_start(PyObject *obj, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"rank0_value", "timeout", NULL};
    PMObject *self = (PMObject *)obj;
    const char *value;
    PyObject *timeout_o = Py_None;
    double timeout;
    foehn_pm *pm = live(self);
    if (!pm || !PyArg_ParseTupleAndKeywords(args, kwargs, "s|O", kwlist, &value, &timeout_o) ||
        parse_timeout(timeout_o, &timeout) < 0)
        return NULL;
    if (!self->wd)
        Py_RETURN_NONE; /* disabled (FOEHN_WATCHDOG=0) or a job of one */
    foehn_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = foehn_watchdog_start(self->wd, value, pm->job.hostname, foehn_pm_timeout(pm, timeout),
                              &err);
    Py_END_ALLOW_THREADS
    if (rc != FOEHN_OK)
        return foehn_py_raise(rc, &err);
    Py_RETURN_NONE;
}

static PyObject *pm_watchdog_stop(PyObject *obj, PyObject *unused)
{
    (void)unused;
    release((PMObject *)obj, RELEASE_WATCHDOG);
    Py_RETURN_NONE;
}

static PyObject *pm_info(PyObject *obj, PyObject *unused)
{
    (void)unused;
    foehn_pm *pm = live((PMObject *)obj);
    if (!pm)
        return NULL;
    return Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:i,s:s,s:s,s:s,s:d}", "rank", pm->rank, "size",
                         pm->size, "local_rank", pm->local_rank, "local_size", pm->local_size,
                         "node_index", pm->node_index, "num_nodes", pm->num_nodes, "provider",
                         pm->provider->name, "launcher", foehn_launcher_name(pm->job.launcher),
                         "hostname", pm->job.hostname, "timeout", pm->timeout);
}

static PyMethodDef pm_methods[] = {
    {"put", pm_put, METH_VARARGS, "put(key, value): share value (str or bytes) under key"},
    {"commit", pm_commit, METH_NOARGS, "commit(): make the puts ready for the next fence"},
    {"fence", (PyCFunction)(void (*)(void))pm_fence, METH_VARARGS | METH_KEYWORDS,
     "fence(timeout=None): wait until every rank's committed values are visible"},
    {"get", (PyCFunction)(void (*)(void))pm_get, METH_VARARGS | METH_KEYWORDS,
     "get(rank, key, timeout=None) -> bytes"},
    {"barrier", (PyCFunction)(void (*)(void))pm_barrier, METH_VARARGS | METH_KEYWORDS,
     "barrier(timeout=None): wait for every rank"},
    {"abort", pm_abort, METH_VARARGS, "abort(status=1, message=''): stop the whole job"},
    {"finalize", (PyCFunction)(void (*)(void))pm_finalize, METH_VARARGS | METH_KEYWORDS,
     "finalize(at_exit=False): release the launcher's service (and the watchdog, with a "
     "clean goodbye, unless at_exit: then its exit hook decides by the exit status)"},
    {"info", pm_info, METH_NOARGS, "info() -> dict of rank, size, ..., provider, launcher"},
    {"watchdog_listen", pm_watchdog_listen, METH_VARARGS,
     "watchdog_listen(ip) -> str: rank 0 listens and returns what to publish ('' elsewhere)"},
    {"watchdog_start", (PyCFunction)(void (*)(void))pm_watchdog_start,
     METH_VARARGS | METH_KEYWORDS,
     "watchdog_start(rank0_value, timeout=None): join rank 0's watchdog after the fence"},
    {"watchdog_stop", pm_watchdog_stop, METH_NOARGS, "watchdog_stop(): a clean goodbye"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot pm_slots[] = {
    {Py_tp_new, pm_new},
    {Py_tp_dealloc, pm_dealloc},
    {Py_tp_methods, pm_methods},
    {Py_tp_doc, "PM(): this rank's handle on the launcher's process-management service."},
    {0, NULL},
};

static PyType_Spec pm_spec = {
    .name = "foehn._foehn.PM",
    .basicsize = sizeof(PMObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = pm_slots,
};

PyObject *foehn_py_pm_type(void)
{
    return PyType_FromSpec(&pm_spec);
}
