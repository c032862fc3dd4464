/* foehn._foehn.Piece: a received piece of an object (an out-of-band buffer of its
 * pickle), owning the engine's malloc'd bytes and lending them through the buffer
 * protocol, writable: pickle rebuilds a NumPy array right on it, with no copy, and
 * the array keeps the Piece (and so the bytes) alive.
 *
 * The buffer slots joined the limited API in 3.11, but CPython's PyType_FromSpec has
 * taken them since 3.x (its slot table has always had bf_getbuffer), and the
 * Py_buffer layout is declared in comm_shared.h for the same reason. */
#define Py_LIMITED_API 0x03090000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>

#include "python/comm_shared.h"

#ifndef Py_bf_getbuffer
#define Py_bf_getbuffer 1
#endif
#if Py_LIMITED_API + 0 < 0x030B0000
PyAPI_FUNC(int) PyBuffer_FillInfo(Py_buffer *view, PyObject *o, void *buf, Py_ssize_t len,
                                  int readonly, int flags);
#endif

typedef struct {
    PyObject_HEAD
    void *data;         /* malloc'd, or NULL when empty */
    Py_ssize_t len;
} PieceObject;

static PyTypeObject *piece_type;
static char empty_piece[1];

PyObject *piece_adopt(void *data, size_t len)
{
    allocfunc alloc = (allocfunc)PyType_GetSlot(piece_type, Py_tp_alloc);
    PieceObject *self = (PieceObject *)alloc(piece_type, 0);
    if (!self) {
        free(data);
        return NULL;
    }
    self->data = data;
    self->len = (Py_ssize_t)len;
    return (PyObject *)self;
}

static int piece_getbuffer(PyObject *obj, Py_buffer *view, int flags)
{
    PieceObject *self = (PieceObject *)obj;
    return PyBuffer_FillInfo(view, obj, self->data ? self->data : empty_piece, self->len, 0,
                             flags);
}

static void piece_dealloc(PyObject *obj)
{
    PyTypeObject *type = Py_TYPE(obj);
    free(((PieceObject *)obj)->data);
    freefunc tp_free = (freefunc)PyType_GetSlot(type, Py_tp_free);
    tp_free(obj);
    Py_DECREF(type);
}

static Py_ssize_t piece_len(PyObject *obj)
{
    return ((PieceObject *)obj)->len;
}

static PyType_Slot piece_slots[] = {
    {Py_tp_dealloc, piece_dealloc},
    {Py_bf_getbuffer, piece_getbuffer},
    {Py_sq_length, piece_len},
    {Py_tp_doc, "Bytes an object collective received, lent writable through the buffer "
                "protocol (memoryview(piece))."},
    {0, NULL},
};

static PyType_Spec piece_spec = {
    .name = "foehn._foehn.Piece",
    .basicsize = sizeof(PieceObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = piece_slots,
};

int foehn_py_piece_add(PyObject *m)
{
    piece_type = (PyTypeObject *)PyType_FromSpec(&piece_spec);
    if (!piece_type)
        return -1;
    Py_INCREF(piece_type);
    if (PyModule_AddObject(m, "Piece", (PyObject *)piece_type) < 0) {
        Py_DECREF(piece_type);
        return -1;
    }
    return 0;
}
