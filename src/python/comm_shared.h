/* Private to the communicator's Python face (commtype.c, requesttype.c,
 * commcoll.c, commhold.c): the objects, what a call holds, and the helpers they
 * share. The extension is built with hidden visibility: none of these leave it. */
#ifndef FOEHN_PYTHON_COMM_SHARED_H
#define FOEHN_PYTHON_COMM_SHARED_H

#include <stddef.h>

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

/* ---- engine state (commhold.c) ---- */

enum { ENGINE_NEW = 0, ENGINE_LIVE, ENGINE_FINALIZED };
extern int engine_state;
extern PyObject *world_obj, *self_obj; /* the Comm objects comm_init returned */
extern PyTypeObject *comm_type, *request_type;
extern PyObject *exception_map;        /* {foehn status: exception class}, from foehn.MPI */

/* ---- what a call holds (commhold.c) ---- */

typedef struct py_user_op {
    foehn_user_op uop;      /* uop.ctx points back here */
    PyObject *fn;           /* fn(inbuf, inoutbuf, dtype) */
    PyObject *exc_type, *exc_value, *exc_tb; /* the first exception fn raised */
} py_user_op;

/* An object collective's input blobs and outputs (commblob.c). */
typedef struct blob_io blob_io;
void blob_io_free(blob_io *io);
PyObject *blob_io_result(blob_io *io);
typedef struct pieces_io pieces_io;
/* A Piece owning data (malloc'd; freed here on failure), piecetype.c. */
PyObject *piece_adopt(void *data, size_t len);
int foehn_py_piece_add(PyObject *m);
void pieces_io_free(pieces_io *io);
PyObject *pieces_io_result(pieces_io *io);

typedef struct hold {
    Py_buffer views[2];
    int nviews;
    size_t *arrays;         /* counts and displacements (malloc'd), or NULL */
    py_user_op *op;         /* a user's reduction (malloc'd), or NULL */
    blob_io *blobs;         /* an object collective's blobs (malloc'd), or NULL */
    pieces_io *pieces;      /* or an alltoall's objects in pieces */
    foehn_request *req;     /* an orphan's request */
    struct hold *next;      /* the orphan list */
} hold;

extern struct hold *orphans;            /* requests dropped before they completed */

/* ---- the objects ---- */

typedef struct {
    PyObject_HEAD
    foehn_request *req;     /* NULL once finished and no thread is inside a call on it */
    int finished;           /* completed and handed over: its hold is released */
    int busy;               /* threads in a call on req without the GIL */
    hold *h;
    int allocating;         /* a receive whose buffer the engine allocates */
    PyObject *data;         /* that buffer as bytes, once finished, until taken */
} RequestObject;

typedef struct {
    PyObject_HEAD
    foehn_comm *comm;       /* NULL once freed */
    int builtin;            /* COMM_WORLD or COMM_SELF: freed by finalize only */
} CommObject;

/* ---- helpers ---- */

int check_len(const void *ptr, size_t len, size_t need, const char *what);
PyObject *comm_raise(int rc, const foehn_error *err);
int engine_live(void);
void hold_free(hold *h);
void hold_release(hold *h);
PyObject *invalid(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int is_in_place(const void *p);
int mul_size(size_t a, size_t b, size_t *out);
int parse_dtype(int v, foehn_dtype *out);
int parse_op(PyObject *obj, int commute, py_user_op *user, foehn_reduction *red);
PyObject *raise_failure(int rc, const foehn_error *err, py_user_op *user);
void reap_orphans(void);
int take_buffer(hold *h, PyObject *obj, int writable, int in_place, void **ptr, size_t *len, const char *what);
PyObject *bytes_from(const void *data, size_t len);
int parse_wait_timeout(PyObject *obj, double *out);
foehn_request *request_enter(RequestObject *self);
void request_leave(RequestObject *self);
PyObject *request_new(foehn_request *req, hold *h, int allocating);
PyObject *status_tuple(const foehn_msg_status *st);
int check_rank(foehn_comm *c, int r, const char *what);
foehn_comm *live_comm(PyObject *obj);
PyObject *comm_wrap(foehn_comm *comm, int builtin);
PyObject *list_of(PyObject *obj, Py_ssize_t n, const char *what);

/* The Request type's spec (requesttype.c). */
extern PyType_Spec request_spec;

/* The collectives' methods of Comm (commcoll.c), NULL-terminated. */
extern PyMethodDef foehn_py_coll_methods[];
/* The blob collectives' methods of Comm (commblob.c), NULL-terminated. */
extern PyMethodDef foehn_py_blob_methods[];

#define METH_KW(name, doc) \
    {#name, (PyCFunction)(void (*)(void))comm_##name, METH_VARARGS | METH_KEYWORDS, doc}
#define METH_ARGS(name, doc) {#name, comm_##name, METH_VARARGS, doc}
#define RED_DOC(name)                                                                    \
    name "(sendbuf, recvbuf, count, dtype, op, root=0, commute=True): counts in elements; " \
         "op a foehn_op number or fn(inbuf, inoutbuf, dtype); sendbuf ... for IN_PLACE"
#define MOVE_DOC(name) name "(sendbuf, recvbuf, bytes[, root]): bytes per rank's block"

#endif
