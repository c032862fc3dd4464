/* foehn._foehn: the C core seen from Python. Built against the stable ABI
 * (limited API 3.9), so one build serves every interpreter from 3.9 on. */
#define Py_LIMITED_API 0x03090000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>

#include "foehn.h"
#include "net/address.h"
#include "python/module.h"

extern char **environ;

foehn_py_state_t foehn_py_state;

/* A UTF-8 copy of a str (malloc'd), or NULL with a Python error set. */
static char *utf8_copy(PyObject *s, const char *what)
{
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "%s must be str", what);
        return NULL;
    }
    PyObject *bytes = PyUnicode_AsUTF8String(s);
    if (!bytes)
        return NULL;
    char *copy = strdup(PyBytes_AsString(bytes));
    Py_DECREF(bytes);
    if (!copy)
        PyErr_NoMemory();
    return copy;
}

static void free_envp(char **envp)
{
    for (char **e = envp; e && *e; e++)
        free(*e);
    free(envp);
}

/* A NULL-terminated "KEY=VALUE" array from a mapping of str to str. */
static char **envp_from_mapping(PyObject *mapping)
{
    PyObject *items = PyMapping_Items(mapping);
    if (!items)
        return NULL;
    Py_ssize_t n = PyList_Size(items);
    char **envp = calloc((size_t)n + 1, sizeof *envp);
    if (!envp) {
        Py_DECREF(items);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GetItem(items, i);
        char *key = utf8_copy(PyTuple_GetItem(pair, 0), "environment keys");
        char *value = key ? utf8_copy(PyTuple_GetItem(pair, 1), "environment values") : NULL;
        if (!value) {
            free(key);
            free_envp(envp);
            Py_DECREF(items);
            return NULL;
        }
        size_t len = strlen(key) + strlen(value) + 2;
        envp[i] = malloc(len);
        if (envp[i])
            snprintf(envp[i], len, "%s=%s", key, value);
        free(key);
        free(value);
        if (!envp[i]) {
            free_envp(envp);
            Py_DECREF(items);
            PyErr_NoMemory();
            return NULL;
        }
    }
    Py_DECREF(items);
    return envp;
}

/* Optional str argument into a malloc'd copy (NULL for None). */
static int optional_str(PyObject *obj, const char *what, char **out)
{
    *out = NULL;
    if (!obj || obj == Py_None)
        return 0;
    *out = utf8_copy(obj, what);
    return *out ? 0 : -1;
}

PyDoc_STRVAR(job_json_doc,
"job_json(environ=None, *, sysroot=None, hostname=None, cwd=None) -> str\n\n"
"The job this process belongs to, as JSON (schema foehn.job/1). environ is a\n"
"mapping of str to str (default: the process environment); sysroot prefixes\n"
"/proc and /sys; hostname and cwd replace the machine's. Raises ValueError\n"
"naming the variable when the environment is malformed.");

static PyObject *job_json(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *kwlist[] = {"environ", "sysroot", "hostname", "cwd", NULL};
    PyObject *env = Py_None, *sysroot_o = Py_None, *hostname_o = Py_None, *cwd_o = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O$OOO", kwlist, &env, &sysroot_o,
                                     &hostname_o, &cwd_o))
        return NULL;
    char **envp = NULL;
    if (env != Py_None && !(envp = envp_from_mapping(env)))
        return NULL;
    char *sysroot = NULL, *hostname = NULL, *cwd = NULL;
    PyObject *result = NULL;
    if (optional_str(sysroot_o, "sysroot", &sysroot) || optional_str(hostname_o, "hostname", &hostname) ||
        optional_str(cwd_o, "cwd", &cwd))
        goto out;

    foehn_discover_options opt = {.sysroot = sysroot, .hostname = hostname, .cwd = cwd};
    foehn_job job;
    foehn_error err;
    int rc;
    char *text = NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = foehn_job_discover(&job, envp ? envp : environ, &opt, &err);
    if (rc == FOEHN_OK) {
        rc = foehn_job_to_json(&job, &text);
        foehn_job_clear(&job);
    }
    Py_END_ALLOW_THREADS
    if (rc == FOEHN_ERR_IO)
        PyErr_SetString(PyExc_OSError, err.message);
    else if (rc != FOEHN_OK)
        foehn_py_raise(rc, &err);
    else
        result = PyUnicode_FromString(text);
    free(text);
out:
    free(sysroot);
    free(hostname);
    free(cwd);
    free_envp(envp);
    return result;
}

PyDoc_STRVAR(hostlist_expand_doc,
"hostlist_expand(hostlist) -> list[str]\n\n"
"Expands a Slurm hostlist such as 'n[001-004,010],gpu[1-2]-ib' in order.");

static PyObject *hostlist_expand(PyObject *self, PyObject *arg)
{
    (void)self;
    char *text = utf8_copy(arg, "hostlist");
    if (!text)
        return NULL;
    char **hosts = NULL;
    size_t n = 0;
    foehn_error err;
    int rc = foehn_hostlist_expand(text, &hosts, &n, &err);
    free(text);
    if (rc != FOEHN_OK)
        return foehn_py_raise(rc, &err);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list && i < n; i++) {
        PyObject *s = PyUnicode_FromString(hosts[i]);
        if (!s) {
            Py_CLEAR(list);
            break;
        }
        PyList_SetItem(list, (Py_ssize_t)i, s);
    }
    foehn_strv_free(hosts, n);
    return list;
}

PyDoc_STRVAR(hostlist_compress_doc,
"hostlist_compress(hosts) -> str\n\n"
"The compact Slurm hostlist for a sequence of host names, order kept.");

static PyObject *hostlist_compress(PyObject *self, PyObject *arg)
{
    (void)self;
    PyObject *seq = PySequence_List(arg);
    if (!seq)
        return NULL;
    Py_ssize_t n = PyList_Size(seq);
    char **hosts = calloc((size_t)n + 1, sizeof *hosts);
    PyObject *result = NULL;
    if (!hosts) {
        PyErr_NoMemory();
        goto out;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (!(hosts[i] = utf8_copy(PyList_GetItem(seq, i), "host names")))
            goto out;
    char *text = NULL;
    foehn_error err;
    int rc = foehn_hostlist_compress((const char *const *)hosts, (size_t)n, &text, &err);
    if (rc != FOEHN_OK) {
        foehn_py_raise(rc, &err);
        goto out;
    }
    result = PyUnicode_FromString(text);
    free(text);
out:
    if (hosts)
        foehn_strv_free(hosts, (size_t)n);
    Py_DECREF(seq);
    return result;
}

PyDoc_STRVAR(choose_address_doc,
"choose_address(peers, single_host) -> (ip, interface, why)\n\n"
"The address of this host the job's other ranks can reach: FOEHN_IFACE when set,\n"
"loopback for a job on one host, else the route to one of peers (host names).");

static PyObject *choose_address(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *peers_o;
    int single_host;
    if (!PyArg_ParseTuple(args, "Op", &peers_o, &single_host))
        return NULL;
    PyObject *seq = PySequence_List(peers_o);
    if (!seq)
        return NULL;
    Py_ssize_t n = PyList_Size(seq);
    char **peers = calloc((size_t)n + 1, sizeof *peers);
    PyObject *result = NULL;
    if (!peers) {
        PyErr_NoMemory();
        goto out;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (!(peers[i] = utf8_copy(PyList_GetItem(seq, i), "host names")))
            goto out;
    foehn_address addr;
    foehn_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = foehn_address_choose(environ, (const char *const *)peers, (size_t)n, single_host, &addr,
                              &err);
    Py_END_ALLOW_THREADS
    if (rc != FOEHN_OK)
        foehn_py_raise(rc, &err);
    else
        result = Py_BuildValue("(sss)", addr.ip, addr.iface, addr.why);
out:
    if (peers)
        foehn_strv_free(peers, (size_t)n);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"choose_address", choose_address, METH_VARARGS, choose_address_doc},
    {"job_json", (PyCFunction)(void (*)(void))job_json, METH_VARARGS | METH_KEYWORDS, job_json_doc},
    {"hostlist_expand", hostlist_expand, METH_O, hostlist_expand_doc},
    {"hostlist_compress", hostlist_compress, METH_O, hostlist_compress_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "foehn._foehn", "The C core of Foehn.", -1, methods,
    NULL, NULL, NULL, NULL,
};

/* Adds an exception class named foehn.<name> with the given bases. */
static PyObject *add_exception(PyObject *m, const char *name, PyObject *bases, const char *doc)
{
    char qualified[64];
    snprintf(qualified, sizeof qualified, "foehn.%s", name);
    PyObject *exc = PyErr_NewExceptionWithDoc(qualified, doc, bases, NULL);
    if (!exc)
        return NULL;
    Py_INCREF(exc);
    if (PyModule_AddObject(m, name, exc) < 0) {
        Py_DECREF(exc);
        Py_DECREF(exc);
        return NULL;
    }
    return exc;
}

PyMODINIT_FUNC PyInit__foehn(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    foehn_py_state.error = add_exception(m, "Error", PyExc_RuntimeError,
                                         "A Foehn operation failed; the message says why.");
    PyObject *timeout_bases = foehn_py_state.error
        ? PyTuple_Pack(2, foehn_py_state.error, PyExc_TimeoutError) : NULL;
    foehn_py_state.timeout_error = timeout_bases
        ? add_exception(m, "TimeoutError", timeout_bases,
                        "A wait ran out of time; the message says what for and what to check.")
        : NULL;
    Py_XDECREF(timeout_bases);
    foehn_py_state.peer_error = foehn_py_state.error
        ? add_exception(m, "PeerError", foehn_py_state.error,
                        "Another rank of the job died or disconnected; the message names it.")
        : NULL;
    PyObject *pm_type = foehn_py_pm_type();
    if (!foehn_py_state.peer_error || !foehn_py_state.timeout_error || !pm_type ||
        PyModule_AddObject(m, "PM", pm_type) < 0 ||
        PyModule_AddStringConstant(m, "version", FOEHN_VERSION) < 0) {
        Py_XDECREF(pm_type);
        Py_DECREF(m);
        return NULL;
    }
    if (foehn_py_comm_add(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
