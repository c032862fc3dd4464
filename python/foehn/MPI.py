"""foehn.MPI: mpi4py's names and semantics over Foehn's communicator.

    from foehn import MPI
    comm = MPI.COMM_WORLD
    data = comm.bcast({"step": 1}, root=0)          # lowercase: any picklable object
    buf = numpy.arange(10.0); comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)  # uppercase

Importing the module joins the job (as mpi4py's MPI_Init does) and the job is left at
exit. Lowercase methods pickle Python objects; uppercase methods move buffers (anything
with the buffer protocol, CPU torch tensors, or mpi4py's [buf, count, MPI.DOUBLE]
specs). Nonblocking forms return Requests. `comm.submit(proto.OperationRequest(...))`
runs pympi's custom operations. Every C call that waits runs without the GIL.
"""
from __future__ import annotations

import atexit
import builtins
import functools
import hashlib
import operator
import os
import pickle as _pickle
import re
import socket
import struct
import sys
import threading
import time
import weakref
from concurrent import futures

from . import _foehn, proto
from ._foehn import Error

# ---- constants -------------------------------------------------------------------

ANY_SOURCE = _foehn.ANY_SOURCE
ANY_TAG = _foehn.ANY_TAG
PROC_NULL = _foehn.PROC_NULL
UNDEFINED = _foehn.UNDEFINED
TAG_UB = 0  # the attribute key of Comm.Get_attr; its value is the largest tag
_TAG_MAX = _foehn.TAG_MAX

THREAD_SINGLE, THREAD_FUNNELED, THREAD_SERIALIZED, THREAD_MULTIPLE = range(4)
IDENT, CONGRUENT, SIMILAR, UNEQUAL = range(4)

# Error classes; the numbers follow Open MPI's where MPI leaves them open.
SUCCESS = 0
ERR_BUFFER, ERR_COUNT, ERR_TYPE, ERR_TAG, ERR_COMM, ERR_RANK, ERR_REQUEST, ERR_ROOT = range(1, 9)
ERR_GROUP, ERR_OP, ERR_TOPOLOGY, ERR_DIMS, ERR_ARG, ERR_UNKNOWN, ERR_TRUNCATE = range(9, 16)
ERR_OTHER, ERR_INTERN, ERR_IN_STATUS, ERR_PENDING = range(16, 20)
ERR_IO = 32
ERR_NO_MEM = 34
ERR_PROC_FAILED = 75
ERR_LASTCODE = 100

# foehn_status (include/foehn.h: FOEHN_ERR_INVALID = -1 ...) -> (error class, meaning)
_STATUS_CLASS = {
    -1: (ERR_ARG, "invalid argument"), -2: (ERR_NO_MEM, "out of memory"),
    -3: (ERR_IO, "I/O error"), -4: (ERR_COUNT, "over a limit"),
    -5: (ERR_OTHER, "timed out"), -6: (ERR_PROC_FAILED, "a peer rank failed"),
    -7: (ERR_OTHER, "not found"), -8: (ERR_OTHER, "service unavailable"),
    -9: (ERR_INTERN, "protocol error"), -10: (ERR_OTHER, "system error"),
    -11: (ERR_OTHER, "ranks called different operations"),
    -12: (ERR_TRUNCATE, "message truncated"), -13: (ERR_REQUEST, "request cancelled"),
}
_CLASS_TEXT = {
    SUCCESS: "no error", ERR_BUFFER: "invalid buffer", ERR_COUNT: "invalid count",
    ERR_TYPE: "invalid datatype", ERR_TAG: "invalid tag", ERR_COMM: "invalid communicator",
    ERR_RANK: "invalid rank", ERR_REQUEST: "invalid request", ERR_ROOT: "invalid root",
    ERR_OP: "invalid operation", ERR_ARG: "invalid argument", ERR_UNKNOWN: "unknown error",
    ERR_TRUNCATE: "message truncated", ERR_OTHER: "other error", ERR_INTERN: "internal error",
    ERR_IO: "I/O error", ERR_NO_MEM: "out of memory", ERR_PROC_FAILED: "a process failed",
}


def _error_class(status: int) -> int:
    """The MPI error class of a foehn status (or of an MPI error code)."""
    if status >= 0:
        return status
    return _STATUS_CLASS.get(status, (ERR_UNKNOWN, ""))[0]


def Get_error_class(errorcode: int) -> int:
    return _error_class(errorcode)


def Get_error_string(errorcode: int) -> str:
    cls = _error_class(errorcode)
    return _CLASS_TEXT.get(cls, f"error class {cls}")


# ---- exceptions ------------------------------------------------------------------

class Exception(Error):  # noqa: A001 -- mpi4py's name
    """An MPI failure: a foehn.Error with mpi4py's Get_error_class and friends. A dead
    peer raises one that is also a foehn.PeerError, a wait that ran out one that is
    also a foehn.TimeoutError, a bad argument one that is also a ValueError."""

    def __init__(self, ierr: int = ERR_OTHER, message: str | None = None) -> None:
        builtins.Exception.__init__(self, ierr, message)
        self.foehn_status = ierr if ierr < 0 else None
        self.error_code = ierr
        self.error_class = _error_class(ierr)
        self.error_string = message or Get_error_string(ierr)

    def __str__(self) -> str:
        return self.error_string

    def __int__(self) -> int:
        return self.error_code

    def Get_error_code(self) -> int:
        return self.error_code

    def Get_error_class(self) -> int:
        return self.error_class

    def Get_error_string(self) -> str:
        return self.error_string


class _ArgumentError(Exception, ValueError):
    pass


class _MemoryError(Exception, MemoryError):
    pass


class _TimeoutError(Exception, _foehn.TimeoutError):
    pass


class _PeerError(Exception, _foehn.PeerError):
    pass


_foehn.comm_set_exceptions({
    status: {-1: _ArgumentError, -2: _MemoryError, -4: _ArgumentError, -5: _TimeoutError,
             -6: _PeerError}.get(status, Exception)
    for status in _STATUS_CLASS
})

_BaseException = builtins.Exception

# ---- datatypes -------------------------------------------------------------------


class Datatype:
    """A predefined datatype: its foehn code and size in bytes."""

    __slots__ = ("_code", "_name", "_size", "typechar")

    def __init__(self, datatype: "Datatype | None" = None) -> None:
        src = datatype if datatype is not None else DATATYPE_NULL
        for name in self.__slots__:
            object.__setattr__(self, name, getattr(src, name, None))

    @classmethod
    def _make(cls, name: str, code: int | None, typechar: str | None = None) -> "Datatype":
        self = cls.__new__(cls)
        self._code, self._name, self.typechar = code, name, typechar
        self._size = 0 if code is None else _foehn.dtype_size(code)
        return self

    def Get_size(self) -> int:
        return self._size

    def Get_extent(self) -> tuple[int, int]:
        return (0, self._size)

    Get_true_extent = Get_extent

    def Get_name(self) -> str:
        return self._name

    def Commit(self) -> "Datatype":
        return self

    def Free(self) -> None:
        pass

    def Dup(self) -> "Datatype":
        return self

    size = property(Get_size)
    extent = property(lambda self: self._size)
    lb = property(lambda self: 0)
    ub = property(lambda self: self._size)
    name = property(Get_name)
    is_predefined = property(lambda self: True)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Datatype) and other._code == self._code and \
            other._name == self._name

    def __hash__(self) -> int:
        return hash((self._code, self._name))

    def __bool__(self) -> bool:
        return self._code is not None

    def __repr__(self) -> str:
        return f"<foehn.MPI.Datatype {self._name}>"


def _native(ch: str) -> int:
    return struct.calcsize(ch)


_INT_CODES = {1: _foehn.DTYPE_INT8, 2: _foehn.DTYPE_INT16, 4: _foehn.DTYPE_INT32,
              8: _foehn.DTYPE_INT64}
_UINT_CODES = {1: _foehn.DTYPE_UINT8, 2: _foehn.DTYPE_UINT16, 4: _foehn.DTYPE_UINT32,
               8: _foehn.DTYPE_UINT64}


def _c_int(name: str, ch: str) -> Datatype:
    codes = _UINT_CODES if ch.isupper() else _INT_CODES
    return Datatype._make(name, codes[_native(ch)], ch)


DATATYPE_NULL = Datatype._make("MPI_DATATYPE_NULL", None)
BYTE = Datatype._make("MPI_BYTE", _foehn.DTYPE_BYTE)
PACKED = Datatype._make("MPI_PACKED", _foehn.DTYPE_BYTE)
CHAR = Datatype._make("MPI_CHAR", _foehn.DTYPE_INT8, "c")
SIGNED_CHAR = _c_int("MPI_SIGNED_CHAR", "b")
UNSIGNED_CHAR = _c_int("MPI_UNSIGNED_CHAR", "B")
SHORT = _c_int("MPI_SHORT", "h")
UNSIGNED_SHORT = _c_int("MPI_UNSIGNED_SHORT", "H")
INT = _c_int("MPI_INT", "i")
UNSIGNED = _c_int("MPI_UNSIGNED", "I")
LONG = _c_int("MPI_LONG", "l")
UNSIGNED_LONG = _c_int("MPI_UNSIGNED_LONG", "L")
LONG_LONG = _c_int("MPI_LONG_LONG", "q")
UNSIGNED_LONG_LONG = _c_int("MPI_UNSIGNED_LONG_LONG", "Q")
SIGNED_SHORT, SIGNED_INT, SIGNED_LONG, SIGNED_LONG_LONG = SHORT, INT, LONG, LONG_LONG
UNSIGNED_INT, LONG_LONG_INT = UNSIGNED, LONG_LONG
INT8_T = Datatype._make("MPI_INT8_T", _foehn.DTYPE_INT8)
INT16_T = Datatype._make("MPI_INT16_T", _foehn.DTYPE_INT16)
INT32_T = Datatype._make("MPI_INT32_T", _foehn.DTYPE_INT32)
INT64_T = Datatype._make("MPI_INT64_T", _foehn.DTYPE_INT64)
UINT8_T = Datatype._make("MPI_UINT8_T", _foehn.DTYPE_UINT8)
UINT16_T = Datatype._make("MPI_UINT16_T", _foehn.DTYPE_UINT16)
UINT32_T = Datatype._make("MPI_UINT32_T", _foehn.DTYPE_UINT32)
UINT64_T = Datatype._make("MPI_UINT64_T", _foehn.DTYPE_UINT64)
AINT = Datatype._make("MPI_AINT", _foehn.DTYPE_INT64)
OFFSET = Datatype._make("MPI_OFFSET", _foehn.DTYPE_INT64)
COUNT = Datatype._make("MPI_COUNT", _foehn.DTYPE_INT64)
FLOAT16 = Datatype._make("MPIX_C_FLOAT16", _foehn.DTYPE_FLOAT16, "e")
BFLOAT16 = Datatype._make("MPIX_BFLOAT16", _foehn.DTYPE_BFLOAT16)
FLOAT = Datatype._make("MPI_FLOAT", _foehn.DTYPE_FLOAT32, "f")
DOUBLE = Datatype._make("MPI_DOUBLE", _foehn.DTYPE_FLOAT64, "d")
LONG_DOUBLE = Datatype._make("MPI_LONG_DOUBLE", _foehn.DTYPE_LONG_DOUBLE, "g")
C_BOOL = Datatype._make("MPI_C_BOOL", _foehn.DTYPE_BOOL, "?")
BOOL = Datatype._make("MPI_CXX_BOOL", _foehn.DTYPE_BOOL, "?")
CXX_BOOL = BOOL
C_FLOAT_COMPLEX = Datatype._make("MPI_C_FLOAT_COMPLEX", _foehn.DTYPE_COMPLEX64, "F")
C_DOUBLE_COMPLEX = Datatype._make("MPI_C_DOUBLE_COMPLEX", _foehn.DTYPE_COMPLEX128, "D")
C_COMPLEX = C_FLOAT_COMPLEX
COMPLEX = Datatype._make("MPI_COMPLEX", _foehn.DTYPE_COMPLEX64, "F")
DOUBLE_COMPLEX = Datatype._make("MPI_DOUBLE_COMPLEX", _foehn.DTYPE_COMPLEX128, "D")
CXX_FLOAT_COMPLEX, CXX_DOUBLE_COMPLEX = C_FLOAT_COMPLEX, C_DOUBLE_COMPLEX
FLOAT_INT = Datatype._make("MPI_FLOAT_INT", _foehn.DTYPE_FLOAT_INT)
DOUBLE_INT = Datatype._make("MPI_DOUBLE_INT", _foehn.DTYPE_DOUBLE_INT)
LONG_INT = Datatype._make("MPI_LONG_INT", _foehn.DTYPE_LONG_INT)
TWOINT = Datatype._make("MPI_2INT", _foehn.DTYPE_2INT)
INT_INT = TWOINT
SHORT_INT = Datatype._make("MPI_SHORT_INT", _foehn.DTYPE_SHORT_INT)
globals()["2INT"] = TWOINT

# buffer format characters (native sizes) -> datatype
_FORMATS = {
    "?": C_BOOL, "c": CHAR, "b": SIGNED_CHAR, "B": UNSIGNED_CHAR, "h": SHORT,
    "H": UNSIGNED_SHORT, "i": INT, "I": UNSIGNED, "l": LONG, "L": UNSIGNED_LONG,
    "q": LONG_LONG, "Q": UNSIGNED_LONG_LONG, "e": FLOAT16, "f": FLOAT, "d": DOUBLE,
    "g": LONG_DOUBLE, "Zf": C_FLOAT_COMPLEX, "Zd": C_DOUBLE_COMPLEX, "F": C_FLOAT_COMPLEX,
    "D": C_DOUBLE_COMPLEX,
}
for _ch, _dt in (("n", _native("n")), ("N", _native("N"))):
    _FORMATS[_ch] = Datatype._make("MPI_AINT", (_UINT_CODES if _ch == "N" else _INT_CODES)[_dt])
# standard sizes ('<', '=', '!' prefixes): kind -> {itemsize: datatype}
_STANDARD = {
    "?": {1: C_BOOL}, "c": {1: CHAR}, "e": {2: FLOAT16}, "f": {4: FLOAT}, "d": {8: DOUBLE},
    **{ch: {1: INT8_T, 2: INT16_T, 4: INT32_T, 8: INT64_T} for ch in "bhilqn"},
    **{ch: {1: UINT8_T, 2: UINT16_T, 4: UINT32_T, 8: UINT64_T} for ch in "BHILQN"},
}
# NumPy's aligned {value; int} records: 'T{d:v:i:i:}' and the like
_PAIR_FORMAT = re.compile(r"^T\{[@=<]?([fdlhi]):[^:]*:[@=<]?i:[^:]*:\}$")
_PAIRS = {"f": FLOAT_INT, "d": DOUBLE_INT, "l": LONG_INT, "i": TWOINT, "h": SHORT_INT}
_LITTLE = sys.byteorder == "little"
_TORCH_DTYPES = {
    "bool": C_BOOL, "int8": INT8_T, "uint8": UINT8_T, "int16": INT16_T, "uint16": UINT16_T,
    "int32": INT32_T, "uint32": UINT32_T, "int64": INT64_T, "uint64": UINT64_T,
    "float16": FLOAT16, "bfloat16": BFLOAT16, "float32": FLOAT, "float64": DOUBLE,
    "complex64": C_FLOAT_COMPLEX, "complex128": C_DOUBLE_COMPLEX,
}


def _datatype_of_format(fmt: str, itemsize: int) -> Datatype | None:
    """The datatype a buffer's struct format describes, or None."""
    if fmt in _FORMATS and _FORMATS[fmt].size == itemsize:
        return _FORMATS[fmt]
    pair = _PAIR_FORMAT.match(fmt)
    if pair:
        dt = _PAIRS[pair.group(1)]
        return dt if dt.size == itemsize else None
    order, kind = fmt[:1], fmt[1:]
    if order == "@":
        return _datatype_of_format(kind, itemsize)
    if order in "<>=!" and order and (order in "=" or (order == "<") == _LITTLE):
        if kind in ("Zf", "Zd"):
            return _FORMATS[kind] if _FORMATS[kind].size == itemsize else None
        return _STANDARD.get(kind, {}).get(itemsize)
    return None


def _datatype_arg(obj) -> Datatype:
    """A datatype given as such, as a type character ('d', 'i'...) or a NumPy dtype."""
    if isinstance(obj, Datatype):
        if obj._code is None:
            raise TypeError("DATATYPE_NULL cannot describe a buffer")
        return obj
    char = obj if isinstance(obj, str) else getattr(obj, "char", None)
    if isinstance(char, str) and char in _FORMATS:
        return _FORMATS[char]
    raise TypeError(f"not an MPI datatype: {obj!r}")


# ---- buffers and message specs ---------------------------------------------------

class _InPlace:
    __slots__ = ()

    def __repr__(self) -> str:
        return "IN_PLACE"


class _Bottom(_InPlace):
    __slots__ = ()

    def __repr__(self) -> str:
        return "BOTTOM"


IN_PLACE = _InPlace()
BOTTOM = _Bottom()


def _torch_view(obj):
    """A NumPy array sharing a CPU tensor's memory, and its datatype."""
    if obj.device.type != "cpu":
        raise TypeError(f"a {obj.device.type} tensor cannot be sent: foehn.MPI moves "
                        f"CPU memory only (use .cpu())")
    name = str(obj.dtype).rpartition(".")[2]
    if name not in _TORCH_DTYPES:
        raise TypeError(f"tensors of {obj.dtype} have no MPI datatype")
    t = obj.detach()
    if name == "bfloat16":
        import torch
        t = t.view(torch.int16)
    return t.numpy(), _TORCH_DTYPES[name]


def _is_tensor(obj) -> bool:
    return type(obj).__module__.partition(".")[0] == "torch" and hasattr(obj, "numpy") and \
        hasattr(obj, "device")


def _byte_view(obj, writable: bool):
    """A flat, contiguous byte memoryview of obj's memory and the datatype its format
    says (None when it says nothing usable)."""
    datatype = None
    if _is_tensor(obj):
        obj, datatype = _torch_view(obj)
    try:
        view = memoryview(obj)
    except TypeError:
        raise TypeError(f"{type(obj).__name__} does not support the buffer protocol; "
                        f"give a buffer (NumPy array, bytearray, array.array, memoryview, "
                        f"CPU tensor)") from None
    if writable and view.readonly:
        raise BufferError(f"a receive buffer must be writable ({type(obj).__name__} is "
                          f"read-only)")
    if datatype is None:
        datatype = _datatype_of_format(view.format, view.itemsize)
    if not view.c_contiguous:
        if not view.contiguous:
            raise BufferError("the buffer is not contiguous")
        import numpy  # Fortran order: NumPy gives its memory as one flat view
        view = memoryview(numpy.asarray(obj).ravel(order="A"))
    return view.cast("B") if (view.ndim != 1 or view.format != "B") else view, datatype


class _Message:
    """One side of a message: a byte view of exactly the message, its element count
    (per block, for the collectives that hold one block per rank) and datatype."""

    __slots__ = ("view", "count", "datatype")

    def __init__(self, view, count: int, datatype: Datatype) -> None:
        self.view, self.count, self.datatype = view, count, datatype

    @property
    def nbytes(self) -> int:
        """Bytes of one block (of the whole message when it has one)."""
        return self.count * self.datatype.size


class _VMessage(_Message):
    """A vector message: the whole buffer, and per-rank counts and displacements in
    elements (bytes: bcounts, bdispls)."""

    __slots__ = ("counts", "displs")

    def __init__(self, view, counts, displs, datatype: Datatype) -> None:
        super().__init__(view, sum(counts), datatype)
        self.counts, self.displs = counts, displs

    @property
    def bcounts(self) -> list[int]:
        return [c * self.datatype.size for c in self.counts]

    @property
    def bdispls(self) -> list[int]:
        return [d * self.datatype.size for d in self.displs]


_SPEC_FORMS = ("buf, [buf, datatype], [buf, count, datatype], [buf, (count, displ), datatype] "
               "or [buf, count, displ, datatype]")


def _is_datatype(obj) -> bool:
    return isinstance(obj, (Datatype, str)) or hasattr(obj, "char")


def _is_pair(obj, vector: bool) -> bool:
    """(count, displ) in a simple spec, (counts, displs) in a vector one."""
    if not isinstance(obj, tuple) or len(obj) != 2:
        return False
    if vector:
        return all(x is None or hasattr(x, "__len__") for x in obj)
    return all(isinstance(x, int) for x in obj)


def _split_spec(spec, vector: bool):
    """(buf, count(s), displ(s), datatype) from mpi4py's message forms."""
    if not isinstance(spec, (list, tuple)):
        return spec, None, None, None
    if not spec:
        raise TypeError(f"an empty message spec: expected {_SPEC_FORMS}")
    buf, rest = spec[0], list(spec[1:])
    datatype = rest.pop() if rest and _is_datatype(rest[-1]) else None
    if len(rest) > 2:
        raise TypeError(f"message spec {_describe(spec)}: expected {_SPEC_FORMS}")
    count = rest[0] if rest else None
    displ = rest[1] if len(rest) == 2 else None
    if len(rest) == 1 and _is_pair(count, vector):
        count, displ = count
    return buf, count, displ, datatype


def _describe(spec) -> str:
    return "[" + ", ".join(type(x).__name__ for x in spec) + "]"


def _buffer(buf, datatype, writable: bool):
    """(byte view, its datatype) of a message's buffer; None or BOTTOM: no buffer."""
    if buf is None or isinstance(buf, _Bottom):
        return memoryview(bytearray()), _datatype_arg(datatype) if datatype is not None else BYTE
    view, inferred = _byte_view(buf, writable)
    if datatype is not None:
        return view, _datatype_arg(datatype)
    if inferred is None:
        fmt = memoryview(buf).format if not _is_tensor(buf) else "?"
        raise TypeError(f"cannot tell the MPI datatype of a buffer of format {fmt!r}; "
                        f"give it: [buf, MPI.DOUBLE]")
    return view, inferred


def _elements(view, datatype: Datatype) -> int:
    if datatype.size == 0 or view.nbytes % datatype.size:
        raise ValueError(f"a buffer of {view.nbytes} bytes is not a whole number of "
                         f"{datatype.name} ({datatype.size} bytes)")
    return view.nbytes // datatype.size


def _simple(spec, writable: bool, blocks: int = 1) -> _Message:
    """A contiguous message of `blocks` equal blocks from mpi4py's forms: a count
    given counts one block, as in mpi4py; without one the buffer (from the
    displacement on) splits evenly."""
    buf, count, displ, datatype = _split_spec(spec, vector=False)
    view, datatype = _buffer(buf, datatype, writable)
    displ = 0 if displ is None else _index(displ, "displacement")
    count = _block(_elements(view, datatype) - displ, blocks, datatype) if count is None \
        else _index(count, "count")
    start, end = displ * datatype.size, (displ + count * blocks) * datatype.size
    if end > view.nbytes:
        raise ValueError(f"message of {count * blocks} {datatype.name} at {displ} overruns a "
                         f"buffer of {view.nbytes} bytes")
    return _Message(view[start:end], count, datatype)


def _block(total: int, blocks: int, datatype: Datatype) -> int:
    """Elements per block of a buffer of total elements split over blocks ranks."""
    if total % blocks:
        raise ValueError(f"a buffer of {total} {datatype.name} does not split evenly over "
                         f"{blocks} ranks: {total} is not a multiple of {blocks}")
    return total // blocks


def _index(value, what: str) -> int:
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, not {type(value).__name__}") from None
    if n < 0:
        raise ValueError(f"{what} must be >= 0, not {n}")
    return n


def _vector(spec, writable: bool, size: int) -> _VMessage:
    """A vector message (counts and displacements per rank) from mpi4py's forms:
    buf, [buf, datatype], [buf, counts, datatype], [buf, (counts, displs), datatype],
    [buf, counts, displs, datatype]; counts None splits the buffer evenly."""
    buf, counts, displs, datatype = _split_spec(spec, vector=True)
    view, datatype = _buffer(buf, datatype, writable)
    if counts is None:
        counts = [_block(_elements(view, datatype), size, datatype)] * size
    elif isinstance(counts, int):
        counts = [_index(counts, "count")] * size
    else:
        counts = [_index(c, "count") for c in counts]
    if displs is None:
        displs = [sum(counts[:i]) for i in range(len(counts))]
    elif isinstance(displs, int):
        displs = [_index(displs, "displacement") + i * c for i, c in enumerate(counts)]
    else:
        displs = [_index(d, "displacement") for d in displs]
    if len(counts) != size or len(displs) != size:
        raise ValueError(f"counts and displacements need one entry per rank ({size})")
    for c, d in zip(counts, displs):
        if c and (d + c) * datatype.size > view.nbytes:
            raise ValueError(f"a block of {c} {datatype.name} at {d} overruns a buffer of "
                             f"{view.nbytes} bytes")
    return _VMessage(view, counts, displs, datatype)


def _carg(msg):
    """What the C layer takes for a message: its view, Ellipsis for IN_PLACE, None."""
    if msg is IN_PLACE:
        return ...
    return None if msg is None else msg.view


def _scratch(nbytes: int) -> _Message:
    return _Message(memoryview(bytearray(nbytes)), nbytes, BYTE)


def _same(a: int, b: int, what: str) -> int:
    if a != b:
        raise ValueError(f"{what}: the send and receive sides differ ({a} and {b} bytes per "
                         f"rank)")
    return a


# ---- pickling --------------------------------------------------------------------

class Pickle:
    """How lowercase methods serialise objects (MPI.pickle): dumps and loads."""

    def __init__(self, dumps=_pickle.dumps, loads=_pickle.loads,
                 protocol: int | None = _pickle.HIGHEST_PROTOCOL) -> None:
        self._dumps, self._loads, self.PROTOCOL = dumps, loads, protocol

    def dumps(self, obj) -> bytes:
        return self._dumps(obj, self.PROTOCOL) if self.PROTOCOL is not None else \
            self._dumps(obj)

    def loads(self, data):
        return self._loads(data)

    def dumps_oob(self, obj) -> tuple:
        """(pickle, buffers): with the standard pickle and protocol 5 or more, the
        buffers of 64 KiB or more that obj refers to (NumPy arrays, PickleBuffer)
        are left out of the pickle, to travel from where they lie."""
        if self._dumps is not _pickle.dumps or (self.PROTOCOL or 0) < 5:
            return self.dumps(obj), []
        buffers: list = []

        def keep_out(buf):
            if memoryview(buf).nbytes < _OUT_OF_BAND_MIN:
                return True  # in the pickle
            buffers.append(buf)
            return False

        return _pickle.dumps(obj, self.PROTOCOL, buffer_callback=keep_out), buffers

    def loads_oob(self, data, buffers):
        return _pickle.loads(data, buffers=buffers) if buffers else self.loads(data)


_OUT_OF_BAND_MIN = 1 << 16
pickle = Pickle()


def _dumps(obj) -> bytes:
    return pickle.dumps(obj)


def _loads(data):
    """An object from a message; an empty message (PROC_NULL) is None."""
    return pickle.loads(data) if len(data) else None


def _dump_pieces(obj) -> list:
    """obj as pieces (foehn.MPI's alltoall): its pickle, then its large buffers."""
    data, buffers = pickle.dumps_oob(obj)
    return [data, *buffers]


def _load_pieces(pieces):
    return pickle.loads_oob(pieces[0], pieces[1:]) if pieces and len(pieces[0]) else None


# ---- reduction operations --------------------------------------------------------

def _max(x, y):
    return y if y > x else x


def _min(x, y):
    return y if y < x else x


def _loc(better):
    def op(x, y):
        (u, i), (v, j) = x, y
        if better(u, v):
            return x
        if better(v, u):
            return y
        return (u, min(i, j))
    return op


_OBJECT_OPS = {
    "SUM": lambda x, y: x + y, "PROD": lambda x, y: x * y, "MAX": _max, "MIN": _min,
    "LAND": lambda x, y: bool(x) and bool(y), "LOR": lambda x, y: bool(x) or bool(y),
    "LXOR": lambda x, y: bool(x) != bool(y), "BAND": lambda x, y: x & y,
    "BOR": lambda x, y: x | y, "BXOR": lambda x, y: x ^ y,
    "MINLOC": _loc(lambda a, b: a < b), "MAXLOC": _loc(lambda a, b: a > b),
    "REPLACE": lambda x, y: y, "NO_OP": lambda x, y: x,
}


class Op:
    """A reduction: a predefined one (on buffers in C, on objects as Python operators,
    as mpi4py does) or a user's from Op.Create(function, commute)."""

    __slots__ = ("_code", "_name", "_function", "_object", "_commute", "_pympi")

    def __init__(self, op: "Op | None" = None) -> None:
        for name in self.__slots__:
            object.__setattr__(self, name, getattr(op or OP_NULL, name, None))

    @classmethod
    def _make(cls, name: str, code, function=None, commute: bool = True,
              pympi: bool = False) -> "Op":
        """code: foehn's op number (None for a user's); function: the buffer function of
        a user's op (or NO_OP); objects are reduced with _OBJECT_OPS[name] or, for a
        user's op, function(x, y, None)."""
        self = cls.__new__(cls)
        self._name, self._code, self._function, self._commute, self._pympi = \
            name, code, function, commute, pympi
        self._object = _OBJECT_OPS.get(name) or (
            (lambda x, y: function(x, y, None)) if function is not None else None)
        return self

    @classmethod
    def Create(cls, function, commute: bool = False) -> "Op":
        """A user's op: function(inbuf, inoutbuf, datatype) stores inbuf op inoutbuf in
        inoutbuf (memoryviews of bytes) for buffers; for objects mpi4py's convention
        holds: function(x, y, None) returns the result."""
        if not callable(function):
            raise TypeError("Op.Create needs a callable")
        return cls._make("user", None, function, bool(commute))

    def Free(self) -> None:
        """A user's op becomes OP_NULL; predefined ops cannot be freed."""
        if self.is_predefined:
            raise Exception(ERR_OP, f"{self._name} is predefined and cannot be freed")
        for name in self.__slots__:
            object.__setattr__(self, name, getattr(OP_NULL, name))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Op):
            return NotImplemented
        return self is other or (self._name, self._code, self._function) == \
            (other._name, other._code, other._function)

    def __hash__(self) -> int:
        return hash((self._name, self._code))

    def Is_commutative(self) -> bool:
        return self._commute

    is_commutative = property(Is_commutative)
    is_predefined = property(lambda self: self._name not in ("user", "OP_NULL"))

    def __call__(self, x, y):
        """x op y on objects."""
        if self._object is None:
            raise ValueError("OP_NULL is not a reduction")
        return self._object(x, y)

    def _prepare(self, values: list) -> list:
        """MINLOC/MAXLOC pair each value that is not already a (value, index) pair with
        its rank (pympi's ReduceOperation pairs every value)."""
        if self._name not in ("MINLOC", "MAXLOC"):
            return values
        return [v if (not self._pympi and isinstance(v, (tuple, list)) and len(v) == 2)
                else (v, r) for r, v in enumerate(values)]

    def _fold(self, values: list):
        """values[0] op values[1] op ... in rank order."""
        return functools.reduce(self, self._prepare(values))

    def _prefixes(self, values: list, exclusive: bool) -> list:
        """The running reductions (scan), or the ones before each rank (exscan: None
        first)."""
        out, acc = [], None
        for i, value in enumerate(self._prepare(values)):
            if exclusive:
                out.append(acc)
            acc = value if i == 0 else self(acc, value)
            if not exclusive:
                out.append(acc)
        return out

    def _c_arg(self, datatype: Datatype):
        """What the C layer takes: the op number, or a function of (in, inout, code)."""
        if self._code is not None:
            return self._code
        function = self._function
        return lambda inbuf, inoutbuf, _code: function(inbuf, inoutbuf, datatype)

    def Reduce_local(self, inbuf, inoutbuf) -> None:
        """inoutbuf = inbuf op inoutbuf, here."""
        src, dst = _simple(inbuf, False), _simple(inoutbuf, True)
        if dst.count < src.count:
            raise ValueError("inoutbuf is shorter than inbuf")
        if self._code is None:
            self._function(src.view, dst.view[:src.nbytes], src.datatype)
        else:
            _foehn.reduce_local(src.view, dst.view, src.count, src.datatype._code, self._code)

    def __repr__(self) -> str:
        return f"<foehn.MPI.Op {self._name}>"


OP_NULL = Op._make("OP_NULL", None, commute=False)
MAX = Op._make("MAX", _foehn.OP_MAX)
MIN = Op._make("MIN", _foehn.OP_MIN)
SUM = Op._make("SUM", _foehn.OP_SUM)
PROD = Op._make("PROD", _foehn.OP_PROD)
LAND = Op._make("LAND", _foehn.OP_LAND)
BAND = Op._make("BAND", _foehn.OP_BAND)
LOR = Op._make("LOR", _foehn.OP_LOR)
BOR = Op._make("BOR", _foehn.OP_BOR)
LXOR = Op._make("LXOR", _foehn.OP_LXOR)
BXOR = Op._make("BXOR", _foehn.OP_BXOR)
MINLOC = Op._make("MINLOC", _foehn.OP_MINLOC)
MAXLOC = Op._make("MAXLOC", _foehn.OP_MAXLOC)
REPLACE = Op._make("REPLACE", _foehn.OP_REPLACE, commute=False)
NO_OP = Op._make("NO_OP", None, lambda inbuf, inoutbuf, datatype: None, commute=False)


def _as_op(op) -> Op:
    """An Op from an Op or pympi's proto.ReduceOperation (whose MINLOC/MAXLOC pair
    each value with its rank)."""
    if isinstance(op, Op):
        if op._object is None:
            raise ValueError("OP_NULL is not a reduction")
        return op
    if isinstance(op, proto.ReduceOperation):
        return Op._make(op.name, globals()[op.name]._code, pympi=True)
    raise TypeError(f"not a reduction op: {op!r}")


# ---- status ----------------------------------------------------------------------

class Status:
    """What a receive or probe found: source, tag, error and length."""

    __slots__ = ("source", "tag", "error", "_count", "_cancelled")

    def __init__(self, status: "Status | None" = None) -> None:
        self.source, self.tag, self.error = ANY_SOURCE, ANY_TAG, SUCCESS
        self._count, self._cancelled = 0, False
        if status is not None:
            self.source, self.tag, self.error = status.source, status.tag, status.error
            self._count, self._cancelled = status._count, status._cancelled

    def _fill(self, st) -> None:
        if st is None:
            st = (ANY_SOURCE, ANY_TAG, 0, 0, 0)
        self.source, self.tag, self._count = st[0], st[1], st[2]
        self.error, self._cancelled = _error_class(st[3]), bool(st[4])

    def Get_source(self) -> int:
        return self.source

    def Set_source(self, source: int) -> None:
        self.source = source

    def Get_tag(self) -> int:
        return self.tag

    def Set_tag(self, tag: int) -> None:
        self.tag = tag

    def Get_error(self) -> int:
        return self.error

    def Set_error(self, error: int) -> None:
        self.error = error

    def Get_count(self, datatype: Datatype = BYTE) -> int:
        size = datatype.size
        return UNDEFINED if not size or self._count % size else self._count // size

    Get_elements = Get_count

    def Set_elements(self, datatype: Datatype, count: int) -> None:
        self._count = count * datatype.size

    def Is_cancelled(self) -> bool:
        return self._cancelled

    def Set_cancelled(self, flag: bool) -> None:
        self._cancelled = bool(flag)

    count = property(Get_count)
    cancelled = property(Is_cancelled)

    def __repr__(self) -> str:
        return (f"<foehn.MPI.Status source={self.source} tag={self.tag} "
                f"count={self._count} error={self.error}>")


def _fill(status: Status | None, st) -> None:
    if status is not None:
        status._fill(st)


# ---- requests --------------------------------------------------------------------

class Request:
    """A nonblocking operation: a C request (buffers, p2p, collectives), or a future
    (pympi's custom operations, run on a helper thread).
    Once completed by a wait or a successful test it is REQUEST_NULL."""

    def __init__(self, request: "Request | None" = None) -> None:
        self._c = self._future = self._post = self._done = None
        if request is not None:
            self.__dict__.update(request.__dict__)
            if self._future is not None:
                _future_requests.add(self)

    @classmethod
    def _of(cls, c=None, future=None, post=None) -> "Request":
        self = cls()
        self._c, self._future, self._post = c, future, post
        if future is not None:
            future.add_done_callback(_note_completion)
            _future_requests.add(self)
        return self

    def _clear(self) -> None:
        """Null: nothing of the operation is kept."""
        self._c = self._future = self._post = self._done = None
        _future_requests.discard(self)

    def _active(self) -> bool:
        return self._c is not None or self._future is not None or self._done is not None

    def _poll(self, block: bool) -> bool:
        """Whether the operation is complete (its outcome kept in self._done)."""
        if self._done is not None or not self._active():
            return True
        try:
            if self._c is not None:
                st = self._c.wait() if block else self._c.test()
                if st == ():
                    return False
                # st None: another thread finished the C request first
                value = self._post(self._c, st) if self._post and st is not None else None
            else:
                if not block and not self._future.done():
                    return False
                st, value = None, self._future.result()
        except _BaseException as exc:
            if self._c is not None and self._c.active:
                raise  # the wait ran out; the operation runs on
            self._done = (None, None, exc)
        else:
            self._done = (value, st, None)
        return True

    def _consume(self, status: Status | None):
        """The outcome of a complete request (raised if it failed); it becomes null."""
        value, st, exc = self._done if self._done is not None else (None, None, None)
        self._clear()
        _fill(status, st)
        if exc is not None:
            raise exc
        return value

    # mpi4py's instance methods
    def Wait(self, status: Status | None = None) -> bool:
        self._poll(True)
        self._consume(status)
        return True

    def wait(self, status: Status | None = None):
        self._poll(True)
        return self._consume(status)

    def Test(self, status: Status | None = None) -> bool:
        return self.test(status)[0]

    def test(self, status: Status | None = None):
        if not self._poll(False):
            return (False, None)
        return (True, self._consume(status))

    def Get_status(self, status: Status | None = None) -> bool:
        done = self._poll(False)
        if done and self._done is not None:
            _fill(status, self._done[1])
        return done

    def Cancel(self) -> None:
        if self._c is not None:
            self._c.cancel()

    cancel = Cancel

    def Free(self) -> None:
        self._clear()

    def __bool__(self) -> bool:
        return self._active()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return self is other or (not self._active() and not other._active())

    __hash__ = object.__hash__

    # mpi4py's (and pympi's) class methods over lists of requests
    @classmethod
    def _scan(cls, requests, first: bool):
        """(indices of the complete active requests, whether any is active); with first,
        only the first complete one."""
        done, active = [], False
        for i, r in enumerate(requests):
            if r._active():
                active = True
                if r._poll(False):
                    done.append(i)
                    if first:
                        break
        return done, active

    @staticmethod
    def _block(requests, seen: int, delay: float) -> float:
        """Sleeps until one of the active requests may have completed; the next delay
        for a mix of kinds, which is polled."""
        active = [r for r in requests if r._active()]
        cs = [r._c for r in active]
        if all(c is not None for c in cs):
            _foehn.wait_any(cs)
        elif all(r._future is not None for r in active):
            # one condition for every future, not futures.wait: that hooks a waiter
            # onto each future per call, O(n) each time Waitsome is called again
            with _completion:
                _completion.wait_for(lambda: _completions != seen)
        else:
            time.sleep(delay)
            return min(delay * 2, 2e-3)
        return delay

    @classmethod
    def _wait_done(cls, requests, first: bool):
        """Waits until an active request is complete; (indices complete, as _scan), or
        None when none is active. One pass over the list per wake-up."""
        if not _future_requests:
            # C requests only (or null ones): the engine finds the complete ones in one
            # call (those already finished count as complete), instead of a test of
            # each request per wake-up (pympi's iops loop calls Waitsome on 2,000
            # requests until none is left)
            done = _foehn.wait_some([r._c for r in requests])
            if not done:
                return None
            done = done[:1] if first else done
            for i in done:
                requests[i]._poll(True)
            return done
        delay = 5e-5
        while True:
            seen = _completions  # before the scan: a completion during it is not missed
            done, active = cls._scan(requests, first)
            if done:
                return done
            if not active:
                return None
            delay = cls._block(requests, seen, delay)

    @classmethod
    def _wait_any(cls, requests) -> int | None:
        """The index of a complete active request (waiting for one), None if none is
        active."""
        done = cls._wait_done(requests, True)
        return None if done is None else done[0]

    @staticmethod
    def _statuses(statuses, n: int):
        if statuses is None:
            return [None] * n
        while len(statuses) < n:
            statuses.append(Status())
        return statuses

    @classmethod
    def _consume_all(cls, requests, indices, statuses):
        """The values of requests[indices] (consumed), raising the first failure once
        all are consumed."""
        values, first = [], None
        for i, status in zip(indices, statuses):
            try:
                values.append(requests[i]._consume(status))
            except _BaseException as exc:
                values.append(None)
                first = first or exc
        if first is not None:
            raise first
        return values

    @classmethod
    def waitany(cls, requests, status: Status | None = None):
        """(index, value) of one completed request; (UNDEFINED, None) if none is active."""
        i = cls._wait_any(requests)
        if i is None:
            _fill(status, None)
            return (UNDEFINED, None)
        return (i, requests[i]._consume(status))

    @classmethod
    def Waitany(cls, requests, status: Status | None = None) -> int:
        return cls.waitany(requests, status)[0]

    @classmethod
    def waitall(cls, requests, statuses=None) -> list:
        for r in requests:
            try:
                r._poll(True)
            except _BaseException:
                if not r._done:
                    raise
        return cls._consume_all(requests, range(len(requests)),
                                cls._statuses(statuses, len(requests)))

    @classmethod
    def Waitall(cls, requests, statuses=None) -> bool:
        cls.waitall(requests, statuses)
        return True

    @classmethod
    def waitsome(cls, requests, statuses=None):
        """(indices, values) of the requests complete now (waiting for at least one);
        (None, None) if none is active."""
        done = cls._wait_done(requests, False)
        if done is None:
            return (None, None)
        return (done, cls._consume_all(requests, done, cls._statuses(statuses, len(done))))

    @classmethod
    def _some(cls, requests, statuses):
        done = [i for i, r in enumerate(requests) if r._active() and r._poll(False)]
        values = cls._consume_all(requests, done, cls._statuses(statuses, len(done)))
        return (done, values)

    @classmethod
    def Waitsome(cls, requests, statuses=None) -> list[int] | None:
        return cls.waitsome(requests, statuses)[0]

    @classmethod
    def testany(cls, requests, status: Status | None = None):
        """(index, flag, value): flag says whether one completed (index UNDEFINED if
        none; flag True with UNDEFINED when none is active)."""
        active = [i for i, r in enumerate(requests) if r._active()]
        for i in active:
            if requests[i]._poll(False):
                return (i, True, requests[i]._consume(status))
        _fill(status, None)
        return (UNDEFINED, not active, None)

    @classmethod
    def Testany(cls, requests, status: Status | None = None):
        i, flag, _ = cls.testany(requests, status)
        return (i, flag)

    @classmethod
    def testall(cls, requests, statuses=None):
        """(flag, values): all complete (then consumed), or (False, None)."""
        if not all([r._poll(False) for r in requests]):
            return (False, None)
        return (True, cls._consume_all(requests, range(len(requests)),
                                       cls._statuses(statuses, len(requests))))

    @classmethod
    def Testall(cls, requests, statuses=None) -> bool:
        return cls.testall(requests, statuses)[0]

    @classmethod
    def testsome(cls, requests, statuses=None):
        if not any(r._active() for r in requests):
            return (None, None)
        return cls._some(requests, statuses)

    @classmethod
    def Testsome(cls, requests, statuses=None):
        return cls.testsome(requests, statuses)[0]

    def __repr__(self) -> str:
        kind = "null" if not self._active() else ("c" if self._c is not None else "future")
        return f"<foehn.MPI.Request {kind}>"


REQUEST_NULL = Request()
# The requests behind a future (helper threads) not yet completed and consumed: while
# there are none, a wait over many requests is one call into the engine.
_future_requests: "weakref.WeakSet[Request]" = weakref.WeakSet()


# Every future behind a Request signals here when it completes, so that a wait over
# many requests sleeps on one condition (Request._wait_any).
_completion = threading.Condition()
_completions = 0


def _note_completion(_future) -> None:
    global _completions
    with _completion:
        _completions += 1
        _completion.notify_all()


def _done_request(value=None) -> Request:
    future = futures.Future()
    future.set_result(value)
    return Request._of(future=future)


# ---- helper threads: custom operations ---------------------------------------------

class _OpState:
    """One custom operation as one rank sees it."""

    __slots__ = ("group", "ctx", "data", "future", "result", "applied", "is_root")

    def __init__(self) -> None:
        self.group = self.ctx = self.future = self.result = None
        self.data: dict = {}
        self.applied = self.is_root = False


class _Router:
    """pympi's custom operations on one communicator (Comm.submit). Every member of
    the group calls submit in the same order; the k-th call with a given group is
    the same operation everywhere. Sources send their data to the group's root; the
    root applies the context and sends each destination its share. One thread per
    communicator receives, on the private duplicate, so that nothing waits on the
    caller."""

    _TAG = 0x0F0E

    def __init__(self, side) -> None:
        self._side = side
        self._rank = side.rank
        self._lock = threading.Lock()
        self._counters: dict = {}
        self._ops: dict = {}
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="foehn.MPI operations",
                                        daemon=True)
        self._thread.start()

    @staticmethod
    def _key(group: proto.CommunicationGroup) -> bytes:
        text = f"{tuple(group.src)}>{tuple(group.dst)}".encode()
        return hashlib.blake2b(text, digest_size=12).digest()

    def submit(self, op: proto.OperationRequest) -> Request:
        group, me = op.group, self._rank
        for r in (*group.src, *group.dst):
            if not 0 <= r < self._side.size:
                raise ValueError(f"rank {r} of the group is not in the communicator")
        if me not in group:
            return _done_request(None)
        root, key = group.root, self._key(group)
        future = None
        with self._lock:
            if self._failure is not None:
                raise self._failure
            seq = self._counters.get(key, 0)
            self._counters[key] = seq + 1
            opkey = (key, seq)
            if me == root or me in group.dst:
                state = self._ops.setdefault(opkey, _OpState())
                future = state.future = futures.Future()
                if me == root:
                    state.group, state.ctx, state.is_root = group, op.ctx, True
                    if me in group.src:
                        state.data[me] = op.data
                self._resolve(opkey, state)
        if me == root:
            self._apply(opkey)
        elif me in group.src:
            # dropped unwaited, the send runs on (its buffer held) until it is done
            send = self._side.isend(_dumps(("d", opkey, me, op.data)), root, self._TAG)
            if future is None:
                return Request._of(c=send)
        return Request._of(future=future)

    def _resolve(self, opkey, state: _OpState) -> None:
        """Hands a destination its result once both it and the local submit are in
        (under the lock), and forgets the operation."""
        if state.future is not None and state.result is not None and not state.is_root:
            ok, value = state.result
            (state.future.set_result if ok else state.future.set_exception)(value)
            del self._ops[opkey]

    def _apply(self, opkey) -> None:
        """At the root, once every source's data is in: apply, send each destination
        its share, and complete the root's own request."""
        with self._lock:
            state = self._ops.get(opkey)
            if state is None or not state.is_root or state.applied or \
                    any(r not in state.data for r in state.group.src):
                return
            state.applied = True
            del self._ops[opkey]
        group, me = state.group, self._rank
        try:
            if state.ctx is None:
                raise ValueError("the root's OperationRequest has no context")
            shares = state.ctx.apply({r: state.data[r] for r in group.src}, group.dst)
            outcomes = {d: (True, shares[d] if d in shares else None) for d in group.dst}
            mine = outcomes.get(me, (True, None))
        except BaseException as exc:  # noqa: B036 -- every destination hears of it
            error = proto.RemoteException.from_exception(exc)
            outcomes = dict.fromkeys(group.dst, (False, error))
            mine = (False, exc)
        for d, outcome in outcomes.items():
            if d != me:
                try:
                    self._side.send(self._result_blob(opkey, outcome), d, self._TAG)
                except BaseException as exc:  # noqa: B036 -- the root's request fails
                    mine = (False, exc)
        (state.future.set_result if mine[0] else state.future.set_exception)(mine[1])

    @staticmethod
    def _result_blob(opkey, outcome) -> bytes:
        try:
            return _dumps(("r", opkey) + outcome)
        except BaseException as exc:  # noqa: B036 -- an unpicklable result
            return _dumps(("r", opkey, False, proto.RemoteException.from_exception(exc)))

    def _run(self) -> None:
        while True:
            try:
                req = self._side.irecv(None, ANY_SOURCE, self._TAG)
                while True:
                    try:
                        req.wait()
                        break
                    except _foehn.TimeoutError:
                        if not req.active:
                            raise
                message = _loads(req.data())
            except BaseException as exc:  # noqa: B036 -- the engine failed or finalized
                self._fail(exc)
                return
            kind, opkey = message[0], message[1] if len(message) > 1 else None
            if kind == "x":
                return
            if kind == "d":
                with self._lock:
                    self._ops.setdefault(opkey, _OpState()).data[message[2]] = message[3]
                self._apply(opkey)
            elif kind == "r":
                with self._lock:
                    state = self._ops.setdefault(opkey, _OpState())
                    state.result = (message[2], message[3])
                    self._resolve(opkey, state)

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            self._failure = exc
            for state in self._ops.values():
                if state.future is not None and not state.future.done():
                    state.future.set_exception(exc)
            self._ops.clear()

    def stop(self, timeout: float) -> None:
        try:
            self._side.send(_dumps(("x",)), self._rank, self._TAG)
            self._thread.join(timeout)
        except _BaseException:
            pass
        self._fail(Exception(ERR_OTHER, "the communicator was freed or finalized before "
                             "the operation completed"))


_helpers_lock = threading.Lock()


# ---- communicators ---------------------------------------------------------------

def _pair(impl, name: str):
    """The blocking method `name` and its nonblocking twin `I<name>` over one
    implementation impl(self, nonblocking, ...)."""
    def blocking(self, *args, **kwargs):
        impl(self, False, *args, **kwargs)

    def nonblocking(self, *args, **kwargs) -> Request:
        return impl(self, True, *args, **kwargs)

    for fn, fname in ((blocking, name), (nonblocking, "I" + name[0].lower() + name[1:])):
        fn.__name__ = fn.__qualname__ = fname
        fn.__doc__ = impl.__doc__
    return blocking, nonblocking


class _BlobCall:
    """An object collective the C engine runs whole on the pickles: `name` (a blob
    collective of the C communicator) on args, then finish (unpickling) on what it
    gives. Nonblocking, the engine's own worker runs it and the waiter unpickles:
    no Python thread is involved."""

    __slots__ = ("name", "args", "finish", "blocking")

    def __init__(self, name: str, args: tuple, finish, blocking=None) -> None:
        """blocking: how the blocking form runs instead, where it differs."""
        self.name, self.args, self.finish, self.blocking = name, args, finish, blocking

    def __call__(self, c):
        if self.blocking is not None:
            return self.blocking(c)
        return self.finish(getattr(c, self.name)(*self.args))

    def start(self, c) -> "Request":
        finish = self.finish
        return Request._of(c=getattr(c, "i" + self.name)(*self.args),
                           post=lambda creq, _st: finish(creq.data()))


def _load_pieces_all(objs):
    return [_load_pieces(p) for p in objs]


def _loads_all(blobs):
    return None if blobs is None else [_loads(b) for b in blobs]


def _object_pair(prepare, name: str):
    """The lowercase collective `name` and its nonblocking twin `i<name>`: prepare
    (on the caller's thread: checks and pickling) returns the _BlobCall, run here or
    started in the C engine."""
    def blocking(self, *args, **kwargs):
        return prepare(self, *args, **kwargs)(self._handle())

    def nonblocking(self, *args, **kwargs) -> Request:
        return prepare(self, *args, **kwargs).start(self._handle())

    for fn, fname in ((blocking, name), (nonblocking, "i" + name)):
        fn.__name__ = fn.__qualname__ = fname
        fn.__doc__ = prepare.__doc__
    return blocking, nonblocking


def _shared(c, outcome_at_root, root: int):
    """Everyone gets the root's outcome (value, or the exception it raised)."""
    blob = None
    if c.rank == root:
        try:
            blob = _dumps((True, outcome_at_root()))
        except BaseException as exc:  # noqa: B036 -- raised on every rank
            blob = _dumps((False, proto.RemoteException.from_exception(exc)))
    ok, value = _loads(c.bcast_blob(blob, root))
    if not ok:
        raise value
    return value


def _everywhere(outcome):
    """outcome(), computed alike on every rank: a failure raised as the blocking forms
    raise the root's (RemoteException)."""
    try:
        return outcome()
    except BaseException as exc:  # noqa: B036 -- raised on every rank
        raise proto.RemoteException.from_exception(exc) from None


def _prefixes(c, blob: bytes, op: Op, exclusive: bool):
    """Scan (or exscan) over objects: gathered at rank 0, folded there in rank order,
    each rank's result scattered back (a failure is raised on every rank)."""
    blobs = c.gather_blob(blob, 0)
    outcome = None
    if blobs is not None:
        try:
            results = op._prefixes(_loads_all(blobs), exclusive)
            outcome = [_dumps((True, r)) for r in results]
        except BaseException as exc:  # noqa: B036 -- raised on every rank
            outcome = [_dumps((False, proto.RemoteException.from_exception(exc)))] * len(blobs)
    ok, value = _loads(c.scatter_blob(outcome, 0))
    if not ok:
        raise value
    return value


def _exchange(request: Request, send) -> Request:
    """A posted receive's request once send() is done (the receive withdrawn if the
    send fails)."""
    try:
        send()
    except BaseException:
        request.Cancel()
        raise
    return request


class Comm:
    """A communicator: mpi4py's methods. COMM_WORLD and COMM_SELF exist from import."""

    def __init__(self, comm: "Comm | None" = None) -> None:
        self._c = self._side = None
        self._name = ""
        self._helpers_state = None
        if comm is not None:
            self._c, self._side, self._name = comm._c, comm._side, comm._name
            self._helpers_state = comm._helpers_state

    @classmethod
    def _make(cls, c, name: str = "") -> "Comm":
        self = cls()
        self._c, self._side, self._name = c, c.dup(), name
        self._helpers_state = {"router": None, "lock": threading.Lock()}
        return self

    def _handle(self):
        if self._c is None:
            raise Exception(ERR_COMM, "invalid communicator (COMM_NULL or freed)")
        return self._c

    def _helper(self, kind: str, make):
        state = self._helpers_state
        if state is None:
            self._handle()
            raise Exception(ERR_COMM, "this communicator has no helpers")
        with state["lock"]:
            if state[kind] is None:
                state[kind] = make(self._side)
                with _helpers_lock:
                    _HELPERS.append(state[kind])
            return state[kind]

    # -- about the communicator --
    def Get_rank(self) -> int:
        return self._handle().rank

    def Get_size(self) -> int:
        return self._handle().size

    rank = property(Get_rank)
    size = property(Get_size)

    def Get_name(self) -> str:
        return self._name

    def Set_name(self, name: str) -> None:
        self._name = name

    name = property(Get_name, Set_name)

    def Is_inter(self) -> bool:
        return False

    def Is_intra(self) -> bool:
        return True

    is_inter = property(Is_inter)
    is_intra = property(Is_intra)

    def Get_attr(self, keyval: int):
        return _TAG_MAX if keyval == TAG_UB else None

    def Compare(self, other: "Comm") -> int:
        if self._c is other._c:
            return IDENT
        return CONGRUENT if self.size == other.size and all(
            self._c.world_rank(r) == other._c.world_rank(r) for r in range(self.size)) \
            else UNEQUAL

    def __bool__(self) -> bool:
        return self._c is not None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Comm):
            return NotImplemented
        return self._c is other._c

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        if self._c is None:
            return "<foehn.MPI.Comm COMM_NULL>"
        return f"<foehn.MPI.Intracomm {self._name or 'comm'} rank {self.rank} of {self.size}>"

    # -- new communicators and their end --
    def Dup(self, info=None) -> "Intracomm":
        """A new communicator with the same ranks (collective)."""
        return Intracomm._make(self._handle().dup())

    Clone = Dup

    def Split(self, color: int = 0, key: int = 0) -> "Intracomm":
        """Ranks with the same color form one communicator, ordered by key (collective);
        color UNDEFINED gives COMM_NULL."""
        c = self._handle().split(color, key)
        return Intracomm._make(c) if c is not None else COMM_NULL

    def Free(self) -> None:
        """Forgets the communicator (local); it becomes COMM_NULL."""
        c = self._handle()
        if self is COMM_WORLD or self is COMM_SELF or c is _world_c or c is _self_c:
            raise Exception(ERR_COMM, "COMM_WORLD and COMM_SELF cannot be freed")
        state = self._helpers_state
        helper = state["router"] if state else None
        if helper is not None:
            helper.stop(5.0)
            with _helpers_lock:
                _HELPERS.remove(helper)
        c.free()
        self._side.free()
        self._c = self._side = None

    Disconnect = Free

    def Abort(self, errorcode: int = 0) -> None:
        """Ends the whole job: this process exits at once with errorcode (1 when 0)
        and the launcher stops the other ranks."""
        Abort(errorcode)

    # -- point to point, objects --
    def _send_object(self, nonblocking: bool, obj, dest: int, tag: int = 0):
        blob = _dumps(obj)
        if nonblocking:
            return Request._of(c=self._handle().isend(blob, dest, tag))
        self._handle().send(blob, dest, tag)

    def send(self, obj, dest: int, tag: int = 0) -> None:
        """Sends a picklable object."""
        self._send_object(False, obj, dest, tag)

    def isend(self, obj, dest: int, tag: int = 0) -> Request:
        return self._send_object(True, obj, dest, tag)

    ssend, issend = send, isend

    def _recv_view(self, buf):
        return None if buf is None else _byte_view(buf, True)[0]

    def recv(self, buf=None, source: int = ANY_SOURCE, tag: int = ANY_TAG,
             status: Status | None = None):
        """Receives an object (buf: optional space for its pickle)."""
        view = self._recv_view(buf)
        st, data = self._handle().recv(view, source, tag)
        _fill(status, st)
        return _loads(data if view is None else view[:st[2]])

    def irecv(self, buf=None, source: int = ANY_SOURCE, tag: int = ANY_TAG) -> Request:
        view = self._recv_view(buf)

        def post(c, st):
            return _loads(c.data() if view is None else view[:st[2]])
        return Request._of(c=self._handle().irecv(view, source, tag), post=post)

    def sendrecv(self, sendobj, dest: int, sendtag: int = 0, recvbuf=None,
                 source: int = ANY_SOURCE, recvtag: int = ANY_TAG,
                 status: Status | None = None):
        """Sends one object and receives another (no deadlock between two ranks)."""
        request = self.irecv(recvbuf, source, recvtag)
        return _exchange(request, lambda: self.send(sendobj, dest, sendtag)).wait(status)

    def probe(self, source: int = ANY_SOURCE, tag: int = ANY_TAG,
              status: Status | None = None) -> bool:
        _fill(status, self._handle().probe(source, tag))
        return True

    def iprobe(self, source: int = ANY_SOURCE, tag: int = ANY_TAG,
               status: Status | None = None) -> bool:
        st = self._handle().iprobe(source, tag)
        if st is not None:
            _fill(status, st)
        return st is not None

    Probe, Iprobe = probe, iprobe

    # -- point to point, buffers --
    def _send_buffer(self, nonblocking: bool, buf, dest: int, tag: int = 0):
        """Sends a buffer message: buf, [buf, datatype], [buf, count, datatype]..."""
        view = _simple(buf, False).view
        if nonblocking:
            return Request._of(c=self._handle().isend(view, dest, tag))
        self._handle().send(view, dest, tag)

    Send, Isend = _pair(_send_buffer, "Send")
    Ssend, Issend = Send, Isend

    def Recv(self, buf, source: int = ANY_SOURCE, tag: int = ANY_TAG,
             status: Status | None = None) -> None:
        """Receives into a buffer message (a longer message fails with ERR_TRUNCATE)."""
        st, _ = self._handle().recv(_simple(buf, True).view, source, tag)
        _fill(status, st)

    def Irecv(self, buf, source: int = ANY_SOURCE, tag: int = ANY_TAG) -> Request:
        return Request._of(c=self._handle().irecv(_simple(buf, True).view, source, tag))

    def Sendrecv(self, sendbuf, dest: int, sendtag: int = 0, recvbuf=None,
                 source: int = ANY_SOURCE, recvtag: int = ANY_TAG,
                 status: Status | None = None) -> None:
        request = self.Irecv(recvbuf, source, recvtag)
        _exchange(request, lambda: self.Send(sendbuf, dest, sendtag)).Wait(status)

    def Sendrecv_replace(self, buf, dest: int, sendtag: int = 0, source: int = ANY_SOURCE,
                         recvtag: int = ANY_TAG, status: Status | None = None) -> None:
        msg = _simple(buf, True)
        self.Sendrecv(bytes(msg.view), dest, sendtag, msg.view, source, recvtag, status)

    # -- collectives, buffers --
    def _run(self, nonblocking: bool, name: str, *args) -> Request | None:
        c = self._handle()
        if nonblocking:
            return Request._of(c=getattr(c, "i" + name)(*args))
        getattr(c, name)(*args)
        return None

    def _barrier(self, nonblocking: bool):
        """Waits until every rank has called it."""
        return self._run(nonblocking, "barrier")

    Barrier, Ibarrier = _pair(_barrier, "Barrier")

    def _bcast(self, nonblocking: bool, buf, root: int = 0):
        """The root's buffer to every rank."""
        return self._run(nonblocking, "bcast", _simple(buf, self.rank != root).view, root)

    Bcast, Ibcast = _pair(_bcast, "Bcast")

    def _gather(self, nonblocking: bool, sendbuf, recvbuf, root: int = 0):
        """Every rank's block to the root, in rank order (IN_PLACE at the root)."""
        at_root = self.rank == root
        r = _simple(recvbuf, True, self.size) if at_root else None
        s = IN_PLACE if (at_root and sendbuf is IN_PLACE) else _simple(sendbuf, False)
        nbytes = r.nbytes if s is IN_PLACE else s.nbytes
        if r is not None:
            _same(nbytes, r.nbytes, "Gather")
        return self._run(nonblocking, "gather", _carg(s), _carg(r), nbytes, root)

    Gather, Igather = _pair(_gather, "Gather")

    def _scatter(self, nonblocking: bool, sendbuf, recvbuf, root: int = 0):
        """Block i of the root's buffer to rank i (IN_PLACE at the root)."""
        at_root = self.rank == root
        s = _simple(sendbuf, False, self.size) if at_root else None
        r = _scratch(s.nbytes) if (at_root and recvbuf is IN_PLACE) else _simple(recvbuf, True)
        if s is not None:
            _same(s.nbytes, r.nbytes, "Scatter")
        return self._run(nonblocking, "scatter", _carg(s), _carg(r), r.nbytes, root)

    Scatter, Iscatter = _pair(_scatter, "Scatter")

    def _allgather(self, nonblocking: bool, sendbuf, recvbuf):
        """Every rank's block to every rank, in rank order (IN_PLACE: each rank's block
        is already in place in recvbuf)."""
        r = _simple(recvbuf, True, self.size)
        s = IN_PLACE if sendbuf is IN_PLACE else _simple(sendbuf, False)
        if s is not IN_PLACE:
            _same(s.nbytes, r.nbytes, "Allgather")
        return self._run(nonblocking, "allgather", _carg(s), _carg(r), r.nbytes)

    Allgather, Iallgather = _pair(_allgather, "Allgather")

    def _alltoall(self, nonblocking: bool, sendbuf, recvbuf):
        """Block j of rank i's buffer to block i of rank j's."""
        r = _simple(recvbuf, True, self.size)
        if sendbuf is IN_PLACE:  # a copy of what is received into
            s = _Message(memoryview(bytes(r.view)), r.count, r.datatype)
        else:
            s = _simple(sendbuf, False, self.size)
        _same(s.nbytes, r.nbytes, "Alltoall")
        return self._run(nonblocking, "alltoall", _carg(s), _carg(r), r.nbytes)

    Alltoall, Ialltoall = _pair(_alltoall, "Alltoall")

    def _gatherv(self, nonblocking: bool, sendbuf, recvbuf, root: int = 0):
        """Blocks of any length to the root: recvbuf [buf, counts, displs, datatype]."""
        at_root = self.rank == root
        r = _vector(recvbuf, True, self.size) if at_root else None
        s = IN_PLACE if (at_root and sendbuf is IN_PLACE) else _simple(sendbuf, False)
        nbytes = r.bcounts[root] if s is IN_PLACE else s.nbytes
        return self._run(nonblocking, "gatherv", _carg(s), nbytes, _carg(r),
                         r.bcounts if r else None, r.bdispls if r else None, root)

    Gatherv, Igatherv = _pair(_gatherv, "Gatherv")

    def _scatterv(self, nonblocking: bool, sendbuf, recvbuf, root: int = 0):
        """Blocks of any length from the root: sendbuf [buf, counts, displs, datatype]."""
        at_root = self.rank == root
        s = _vector(sendbuf, False, self.size) if at_root else None
        r = _scratch(s.bcounts[root]) if (at_root and recvbuf is IN_PLACE) else \
            _simple(recvbuf, True)
        return self._run(nonblocking, "scatterv", _carg(s), s.bcounts if s else None,
                         s.bdispls if s else None, _carg(r), r.nbytes, root)

    Scatterv, Iscatterv = _pair(_scatterv, "Scatterv")

    def _allgatherv(self, nonblocking: bool, sendbuf, recvbuf):
        """Blocks of any length to every rank: recvbuf [buf, counts, displs, datatype]."""
        r = _vector(recvbuf, True, self.size)
        s = IN_PLACE if sendbuf is IN_PLACE else _simple(sendbuf, False)
        nbytes = r.bcounts[self.rank] if s is IN_PLACE else s.nbytes
        return self._run(nonblocking, "allgatherv", _carg(s), nbytes, _carg(r), r.bcounts,
                         r.bdispls)

    Allgatherv, Iallgatherv = _pair(_allgatherv, "Allgatherv")

    def _alltoallv(self, nonblocking: bool, sendbuf, recvbuf):
        """Blocks of any length between every pair: [buf, counts, displs, datatype]."""
        r = _vector(recvbuf, True, self.size)
        if sendbuf is IN_PLACE:
            s = _VMessage(memoryview(bytes(r.view)), r.counts, r.displs, r.datatype)
        else:
            s = _vector(sendbuf, False, self.size)
        return self._run(nonblocking, "alltoallv", _carg(s), s.bcounts, s.bdispls, _carg(r),
                         r.bcounts, r.bdispls)

    Alltoallv, Ialltoallv = _pair(_alltoallv, "Alltoallv")

    def _reduction(self, nonblocking: bool, kind: str, sendbuf, recvbuf, op, root: int = 0):
        op = _as_op(op)
        in_place = sendbuf is IN_PLACE
        significant = kind != "reduce" or self.rank == root
        if in_place and not significant:
            raise ValueError("IN_PLACE is for the root of a reduce only")
        r = _simple(recvbuf, True) if (significant or recvbuf is not None) else None
        s = IN_PLACE if in_place else _simple(sendbuf, False)
        data = r if in_place else s
        count = data.count
        if kind == "reduce_scatter_block":  # the input holds one block per rank
            count = _block(count, self.size, data.datatype)
        if r is not None and s is not IN_PLACE and r.datatype._code != s.datatype._code:
            raise TypeError(f"send ({s.datatype.name}) and receive ({r.datatype.name}) "
                            f"datatypes differ")
        return self._run(nonblocking, kind, _carg(s), _carg(r), count, data.datatype._code,
                         op._c_arg(data.datatype), root, op._commute)

    def _reduce(self, nonblocking: bool, sendbuf, recvbuf, op=SUM, root: int = 0):
        """sendbuf op ... over every rank, in rank order, to the root."""
        return self._reduction(nonblocking, "reduce", sendbuf, recvbuf, op, root)

    def _allreduce(self, nonblocking: bool, sendbuf, recvbuf, op=SUM):
        """sendbuf op ... over every rank, to every rank."""
        return self._reduction(nonblocking, "allreduce", sendbuf, recvbuf, op)

    def _reduce_scatter_block(self, nonblocking: bool, sendbuf, recvbuf, op=SUM):
        """The reduction of block i of every rank's buffer to rank i."""
        return self._reduction(nonblocking, "reduce_scatter_block", sendbuf, recvbuf, op)

    def _scan(self, nonblocking: bool, sendbuf, recvbuf, op=SUM):
        """Rank i gets the reduction over ranks 0..i."""
        return self._reduction(nonblocking, "scan", sendbuf, recvbuf, op)

    def _exscan(self, nonblocking: bool, sendbuf, recvbuf, op=SUM):
        """Rank i gets the reduction over ranks 0..i-1 (rank 0's recvbuf is untouched)."""
        return self._reduction(nonblocking, "exscan", sendbuf, recvbuf, op)

    Reduce, Ireduce = _pair(_reduce, "Reduce")
    Allreduce, Iallreduce = _pair(_allreduce, "Allreduce")
    Reduce_scatter_block, Ireduce_scatter_block = _pair(_reduce_scatter_block,
                                                        "Reduce_scatter_block")
    Scan, Iscan = _pair(_scan, "Scan")
    Exscan, Iexscan = _pair(_exscan, "Exscan")

    # -- collectives, objects --
    def barrier(self) -> None:
        """Waits until every rank has called it."""
        self._handle().barrier()

    def ibarrier(self) -> Request:
        return Request._of(c=self._handle().ibarrier())

    def _o_bcast(self, obj=None, root: int = 0):
        """The root's object to every rank (each gets its own copy)."""
        blob = _dumps(obj) if self.rank == root else None
        return _BlobCall("bcast_blob", (blob, root), _loads)

    def _o_gather(self, sendobj, root: int = 0):
        """Every rank's object, in rank order, as a list at the root (None elsewhere)."""
        return _BlobCall("gather_blob", (_dumps(sendobj), root), _loads_all)

    def _o_allgather(self, sendobj):
        """Every rank's object, in rank order, as a list on every rank."""
        return _BlobCall("allgather_blob", (_dumps(sendobj),), _loads_all)

    def _per_rank(self, sendobj, what: str, dump=_dumps) -> list:
        items = list(sendobj) if sendobj is not None else []
        if len(items) != self.size:
            raise ValueError(f"{what} needs one object per rank ({self.size}), "
                             f"not {len(items)}")
        return [dump(x) for x in items]

    def _o_scatter(self, sendobj=None, root: int = 0):
        """Item i of the root's sequence to rank i."""
        blobs = self._per_rank(sendobj, "scatter") if self.rank == root else None
        return _BlobCall("scatter_blob", (blobs, root), _loads)

    def _o_alltoall(self, sendobj):
        """Item j of rank i's sequence to rank j, as item i of its list. Arrays in the
        items travel from their memory: a nonblocking one's must not change before
        it completes (as in pympi and MPI)."""
        return _BlobCall("alltoall_pieces", (self._per_rank(sendobj, "alltoall", _dump_pieces),),
                         _load_pieces_all)

    def _o_reduce(self, sendobj, op=SUM, root: int = 0):
        """sendobj op ... over every rank in rank order (mpi4py: Python operators for
        the predefined ops), at the root; None elsewhere."""
        op = _as_op(op)

        def fold(blobs):
            return None if blobs is None else op._fold(_loads_all(blobs))
        return _BlobCall("gather_blob", (_dumps(sendobj), root), fold)

    # The other reductions of objects: blocking, gathered at rank 0, folded there once
    # and the outcome sent back; nonblocking, gathered on every rank by the engine and
    # folded (all of it, so that a failure fails every rank, as it does blocking) by
    # whichever thread takes the result, so that no Python thread runs them.

    def _o_allreduce(self, sendobj, op=SUM):
        """sendobj op ... over every rank in rank order, on every rank."""
        op, blob = _as_op(op), _dumps(sendobj)

        def run(c):
            blobs = c.gather_blob(blob, 0)
            return _shared(c, lambda: op._fold(_loads_all(blobs)), 0)
        return _BlobCall("allgather_blob", (blob,),
                         lambda blobs: _everywhere(lambda: op._fold(_loads_all(blobs))), run)

    def _o_scan(self, sendobj, op=SUM):
        """Rank i gets the reduction over ranks 0..i."""
        return self._o_prefix(sendobj, op, exclusive=False)

    def _o_exscan(self, sendobj, op=SUM):
        """Rank i gets the reduction over ranks 0..i-1 (None on rank 0)."""
        return self._o_prefix(sendobj, op, exclusive=True)

    def _o_prefix(self, sendobj, op, exclusive: bool):
        op, blob, rank = _as_op(op), _dumps(sendobj), self.rank

        def mine(blobs):
            return _everywhere(lambda: op._prefixes(_loads_all(blobs), exclusive))[rank]
        return _BlobCall("allgather_blob", (blob,), mine,
                         lambda c: _prefixes(c, blob, op, exclusive))

    bcast, ibcast = _object_pair(_o_bcast, "bcast")
    gather, igather = _object_pair(_o_gather, "gather")
    allgather, iallgather = _object_pair(_o_allgather, "allgather")
    scatter, iscatter = _object_pair(_o_scatter, "scatter")
    alltoall, ialltoall = _object_pair(_o_alltoall, "alltoall")
    reduce, ireduce = _object_pair(_o_reduce, "reduce")
    allreduce, iallreduce = _object_pair(_o_allreduce, "allreduce")
    scan, iscan = _object_pair(_o_scan, "scan")
    exscan, iexscan = _object_pair(_o_exscan, "exscan")

    # -- pympi's custom operations --
    def submit(self, operation: proto.OperationRequest) -> Request:
        """Starts pympi's custom operation: the sources' data go to the group's root,
        whose context applies; wait() gives a destination its share (None elsewhere;
        ranks outside the group get None at once)."""
        if not isinstance(operation, proto.OperationRequest):
            raise TypeError("submit takes a proto.OperationRequest")
        return self._helper("router", _Router).submit(operation)


class Intracomm(Comm):
    """A communicator within one group of ranks (all of Foehn's are)."""


COMM_NULL = Intracomm()

# ---- the environment -------------------------------------------------------------

_HELPERS: list = []
_world_c, _self_c = _foehn.comm_init()
COMM_WORLD = Intracomm._make(_world_c, "MPI_COMM_WORLD")
COMM_SELF = Intracomm._make(_self_c, "MPI_COMM_SELF")


def Init() -> None:
    """Already done at import."""


def Init_thread(required: int = THREAD_MULTIPLE) -> int:
    return THREAD_MULTIPLE


def Query_thread() -> int:
    return THREAD_MULTIPLE


def Is_thread_main() -> bool:
    return threading.current_thread() is threading.main_thread()


def Is_initialized() -> bool:
    return bool(_foehn.comm_initialized()) or bool(_foehn.comm_finalized())


def Is_finalized() -> bool:
    return bool(_foehn.comm_finalized())


def Finalize() -> None:
    """Leaves the job (done at exit; later calls do nothing)."""
    with _helpers_lock:
        helpers = list(_HELPERS)
        _HELPERS.clear()
    for helper in helpers:
        helper.stop(5.0)
    _foehn.comm_finalize()


atexit.register(Finalize)


def Wtime() -> float:
    return _foehn.wtime()


def Wtick() -> float:
    return 1e-9


def Get_processor_name() -> str:
    return socket.gethostname()


def Get_version() -> tuple[int, int]:
    return (3, 1)


def Get_library_version() -> str:
    return f"Foehn {_foehn.version}"


def Pcontrol(level: int) -> None:
    pass


def Abort(errorcode: int = 0) -> None:
    """Ends the job: says so on stderr, asks the launcher (through the process's shared
    process-management service) to stop every rank with errorcode, and exits at once
    (status errorcode, 1 for 0) should that return."""
    rank = _world_c.rank if _foehn.comm_initialized() else "?"
    message = f"foehn.MPI: rank {rank} called Abort({errorcode}); ending the job"
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except _BaseException:
            pass
    try:
        os.write(2, (message + "\n").encode())
        if _foehn.comm_initialized():
            from ._pm import init
            init().abort(errorcode, message)
    finally:
        os._exit(errorcode if 0 < errorcode < 256 else 1)
