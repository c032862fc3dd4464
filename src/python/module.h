/* Shared between the extension's files: its exceptions and the PM type. */
#ifndef FOEHN_PYTHON_MODULE_H
#define FOEHN_PYTHON_MODULE_H

#include "foehn.h"

typedef struct foehn_py_state_t {
    PyObject *error;         /* foehn.Error(RuntimeError) */
    PyObject *timeout_error; /* foehn.TimeoutError(Error, TimeoutError) */
    PyObject *peer_error;    /* foehn.PeerError(Error): a rank died */
} foehn_py_state_t;

/* The module is initialised once per process (single-phase), so its exceptions
 * live here rather than in per-module state. */
extern foehn_py_state_t foehn_py_state;

/* Raises the exception matching rc with err's sentence; returns NULL. */
PyObject *foehn_py_raise(int rc, const foehn_error *err);

/* A new reference to the PM heap type. */
PyObject *foehn_py_pm_type(void);

/* Adds the communicator (commtype.c) to the module: the Comm and Request types,
 * comm_init and the other module functions. 0, or -1 with an exception set. */
int foehn_py_comm_add(PyObject *m);

/* Sets glibc's malloc for megabyte messages (malloc_tune.c), unless told not to. */
void foehn_py_malloc_tune(void);

#endif
