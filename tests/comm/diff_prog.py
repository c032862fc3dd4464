#!/usr/bin/env python3
"""One rank of the differential tests of foehn.MPI against mpi4py (built on Open MPI).

    mpirun -n N python tests/comm/diff_prog.py --impl mpi4py --out DIR [--groups a,b]
    foehn run -n N python tests/comm/diff_prog.py --impl foehn --out DIR [--groups a,b]

Both runs execute the very same cases, in the same order, through `MPI` (mpi4py's or
foehn's). Each rank writes DIR/<label>-rank<R>.jsonl: a "meta" line, then one line per
case {"case": name, "value": canonical value} written (and flushed) as soon as the case
is done, then {"done": true}. tests/comm/compare.py compares two such sets case by case.

A case that raises records {"raised": class, "msg": text}: the comparison looks only at
whether both raised, never at the messages. Every case is run under a watchdog
(faulthandler): a rank stuck in a case prints every thread's stack and exits, and the
case it was in is the one after its last line.

Inputs are chosen so that results do not depend on the reduction order: floats hold
small integers (or halves), so float sums and products are exact on any algorithm.

Where mpi4py has no method (the lowercase nonblocking collectives ibcast, iallreduce,
...), the case calls the blocking twin there: foehn's nonblocking result is compared
with mpi4py's blocking one. Where mpi4py and Open MPI cannot compute a case at all
(float16, bfloat16), the mpi4py side computes it in float32 and rounds, which is exact
for the inputs used.
"""
from __future__ import annotations

import argparse
import array
import faulthandler
import hashlib
import json
import math
import os
import sys
import time
import zlib

import numpy as np

# --------------------------------------------------------------------------- registry

CASES: list = []  # (group, name, fn)


def case(group: str, name: str | None = None):
    def deco(fn):
        CASES.append((group, name or fn.__name__, fn))
        return fn
    return deco


def add(group: str, name: str, fn):
    CASES.append((group, name, fn))


GROUPS = ["env", "p2p", "coll", "icoll", "bufp2p", "bufcoll", "reduce", "ibuf",
          "requests", "userop", "errors", "torch", "big", "huge"]


TORCH_GROUPS = {"torch"}  # the groups that use torch tensors (slow to import)


class Ctx:
    """What a case gets: MPI, the world communicator, this rank, the size, the case tag."""

    def __init__(self, MPI, impl):
        self.MPI = MPI
        self.impl = impl
        self.comm = MPI.COMM_WORLD  # each case gets a duplicate of its own (see main)
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.tag = 0
        self._torch = None

    @property
    def torch(self):
        if self._torch is None:
            import torch
            self._torch = torch
        return self._torch

    @property
    def right(self):
        return (self.rank + 1) % self.size

    @property
    def left(self):
        return (self.rank - 1) % self.size


# --------------------------------------------------------------------------- canonical

BIG = 4096  # arrays larger than this many bytes are recorded as a digest


def enc(v):
    """A JSON value that says what v is, exactly enough to compare two implementations."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return {"int": v} if abs(v) > 2**53 else v
    if isinstance(v, float):
        return {"float": _f(v)}
    if isinstance(v, complex):
        return {"complex": [_f(v.real), _f(v.imag)]}
    if isinstance(v, np.ndarray):
        return _enc_array("ndarray", v)
    if isinstance(v, np.generic):
        return {"npscalar": v.dtype.str, "v": _plain(v.item())}
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    if isinstance(v, bytearray):
        return {"bytearray": bytes(v).hex()}
    if isinstance(v, memoryview):
        return {"memoryview": v.format, "data": v.tobytes().hex()}
    if isinstance(v, array.array):
        return {"array": v.typecode, "data": [_plain(x) for x in v]}
    if isinstance(v, tuple):
        return {"tuple": [enc(x) for x in v]}
    if isinstance(v, list):
        return [enc(x) for x in v]
    if isinstance(v, dict):
        items = sorted(v.items(), key=lambda kv: repr(kv[0]))
        return {"dict": [[enc(k), enc(x)] for k, x in items]}
    if type(v).__module__ == "torch" and type(v).__name__ == "Tensor":
        t = v.detach()
        torch = sys.modules["torch"]
        if t.dtype == torch.bfloat16:
            arr = t.float().numpy()
        else:
            arr = t.numpy()
        d = _enc_array("torch", arr)
        d["dtype"] = str(t.dtype)
        return d
    return {"repr": type(v).__name__}


def _f(x: float):
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _plain(x):
    if isinstance(x, float):
        return _f(x)
    if isinstance(x, complex):
        return [_f(x.real), _f(x.imag)]
    if isinstance(x, (bytes, bytearray)):
        return bytes(x).hex()
    if isinstance(x, tuple):
        return [_plain(y) for y in x]
    return x


def _enc_array(kind, a: np.ndarray):
    out = {kind: a.dtype.str if a.dtype.fields is None else str(a.dtype.descr),
           "shape": list(a.shape)}
    if a.nbytes > BIG:
        out["sha256"] = hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
        out["head"] = [_plain(x) for x in a.ravel()[:4].tolist()]
    else:
        out["data"] = [_plain(x) for x in a.ravel().tolist()]
    return out


# --------------------------------------------------------------------------- helpers

def icall(c: Ctx, name, *args, **kw):
    """comm.<name> (a lowercase nonblocking collective) and wait for it; where the
    implementation has no such method (mpi4py), the blocking twin."""
    f = getattr(c.comm, name, None)
    if f is not None:
        return f(*args, **kw).wait()
    return getattr(c.comm, name[1:])(*args, **kw)


def status_fields(MPI, st, dtype=None, base_tag=0):
    """What a Status says; tags relative to the case's base tag."""
    out = {"source": st.Get_source(), "tag": st.Get_tag() - base_tag, "source_attr": st.source,
           "tag_attr": st.tag - base_tag, "count_bytes": st.Get_count()}
    if dtype is not None:
        out["count"] = st.Get_count(dtype)
    return out


def ints(n, r, dt, mod=11, shift=0):
    return ((np.arange(n) * 3 + r * 7 + shift) % mod).astype(dt)


# --------------------------------------------------------------------------- env

@case("env")
def world_rank_size(c):
    w = c.MPI.COMM_WORLD
    return [w.rank, w.size, w.Get_rank(), w.Get_size(), c.rank == w.rank]


@case("env")
def self_rank_size(c):
    s = c.MPI.COMM_SELF
    return [s.rank, s.size, s.Get_rank(), s.Get_size()]


@case("env")
def is_initialized(c):
    return [c.MPI.Is_initialized(), c.MPI.Is_finalized()]


@case("env")
def constants(c):
    M = c.MPI
    return {"ANY_SOURCE": M.ANY_SOURCE, "ANY_TAG": M.ANY_TAG, "PROC_NULL": M.PROC_NULL,
            "UNDEFINED": M.UNDEFINED, "IN_PLACE": M.IN_PLACE is not None,
            "COMM_NULL": M.COMM_NULL is not None}


@case("env")
def wtime(c):
    M = c.MPI
    t0 = M.Wtime()
    t1 = M.Wtime()
    time.sleep(0.02)
    t2 = M.Wtime()
    return [type(t0).__name__, t1 >= t0, 0.015 <= t2 - t1 < 5.0, M.Wtick() > 0]


@case("env")
def processor_name(c):
    n = c.MPI.Get_processor_name()
    return [type(n).__name__, len(n) > 0]


@case("env")
def dup(c):
    M = c.MPI
    d = c.comm.Dup()
    res = [d.Get_rank(), d.Get_size(), d is not c.comm, d != M.COMM_NULL,
           d.allreduce(c.rank + 1)]
    # a message on the duplicate is invisible on the original
    req = d.isend(("dup", c.rank), dest=c.right, tag=c.tag)
    d.barrier()
    seen_world = c.comm.iprobe(source=c.left, tag=c.tag)
    got = d.recv(source=c.left, tag=c.tag)
    req.wait()
    c.comm.barrier()
    d.Free()
    res += [seen_world, got, d == M.COMM_NULL]
    return res


@case("env")
def dup_self(c):
    d = c.MPI.COMM_SELF.Dup()
    res = [d.rank, d.size, d.allreduce(c.rank), d.bcast(c.rank, root=0)]
    d.Free()
    return res


@case("env")
def split_parity_reversed(c):
    sub = c.comm.Split(c.rank % 2, c.size - c.rank)
    res = [sub.rank, sub.size, sub.allgather(c.rank), sub.allreduce(c.rank)]
    buf = np.zeros(1, dtype="i8")
    sub.Allreduce(np.array([c.rank], dtype="i8"), buf, op=c.MPI.MAX)
    res.append(int(buf[0]))
    sub.Free()
    return res


@case("env")
def split_equal_keys(c):
    sub = c.comm.Split(c.rank // 3, 0)
    res = [sub.rank, sub.size, sub.allgather(c.rank)]
    sub.Free()
    return res


@case("env")
def split_defaults(c):
    sub = c.comm.Split()
    res = [sub.rank, sub.size, sub.allgather(c.rank)]
    sub.Free()
    return res


@case("env")
def split_undefined(c):
    M = c.MPI
    color = M.UNDEFINED if c.rank == 0 else 1
    sub = c.comm.Split(color, c.rank)
    if sub == M.COMM_NULL:
        return ["COMM_NULL"]
    res = [sub.rank, sub.size, sub.allgather(c.rank)]
    sub.Free()
    return res


@case("env")
def split_of_split(c):
    a = c.comm.Split(c.rank % 2, c.rank)
    b = a.Split(a.rank % 2, -a.rank)
    res = [b.rank, b.size, b.allgather(c.rank), b.bcast(c.rank, root=b.size - 1)]
    b.Free()
    a.Free()
    return res


@case("env")
def split_p2p(c):
    sub = c.comm.Split(c.rank % 2, c.rank)
    r, s = sub.rank, sub.size
    got = sub.sendrecv(("x", c.rank), dest=(r + 1) % s, sendtag=3, source=(r - 1) % s,
                       recvtag=3)
    sub.Free()
    return got


@case("env")
def many_dups(c):
    out = []
    for i in range(20):
        d = c.comm.Dup()
        out.append(d.allreduce(i))
        d.Free()
    return out


# --------------------------------------------------------------------------- p2p (objects)

OBJS = [None, 0, -7, 2**70, 1.5, "text", b"\x00\xffbytes", ("t", 1, [2, 3.5]),
        {"k": [1, 2], "n": None}, list(range(50)), np.arange(6, dtype="f8").reshape(2, 3)]


def _pair_peer(c):
    """Pairs (0,1), (2,3), ...; the last of an odd size talks to itself."""
    if c.rank % 2 == 0:
        return c.rank + 1 if c.rank + 1 < c.size else c.rank
    return c.rank - 1


@case("p2p")
def send_recv_objects(c):
    peer = _pair_peer(c)
    out = []
    for i, obj in enumerate(OBJS):
        payload = (c.rank, i, obj)
        if peer == c.rank:
            req = c.comm.isend(payload, dest=peer, tag=c.tag + i)
            out.append(c.comm.recv(source=peer, tag=c.tag + i))
            req.wait()
        elif c.rank % 2 == 0:
            c.comm.send(payload, dest=peer, tag=c.tag + i)
            out.append(c.comm.recv(source=peer, tag=c.tag + i))
        else:
            out.append(c.comm.recv(source=peer, tag=c.tag + i))
            c.comm.send(payload, dest=peer, tag=c.tag + i)
    return out


@case("p2p")
def send_recv_large_object(c):
    obj = ("big", c.rank, "x" * 300_000, list(range(1000)))
    req = c.comm.isend(obj, dest=c.right, tag=c.tag)
    got = c.comm.recv(source=c.left, tag=c.tag)
    req.wait()
    return [got[0], got[1], len(got[2]), sum(got[3])]


@case("p2p")
def recv_status(c):
    M = c.MPI
    st = M.Status()
    req = c.comm.isend({"from": c.rank}, dest=c.right, tag=c.tag + c.rank)
    got = c.comm.recv(source=M.ANY_SOURCE, tag=M.ANY_TAG, status=st)
    req.wait()
    return [got, st.Get_source(), st.Get_tag() - c.tag, st.source, st.tag - c.tag]


@case("p2p")
def isend_irecv(c):
    rreq = c.comm.irecv(source=c.left, tag=c.tag)
    sreq = c.comm.isend([c.rank, "isend"], dest=c.right, tag=c.tag)
    got = rreq.wait()
    return [got, sreq.wait()]


@case("p2p")
def irecv_test_loop(c):
    rreq = c.comm.irecv(source=c.left, tag=c.tag)
    sreq = c.comm.isend(c.rank * 10, dest=c.right, tag=c.tag)
    t0 = time.time()
    while True:
        flag, val = rreq.test()
        if flag:
            break
        if time.time() - t0 > 30:
            return "test never completed"
    sflag = False
    while not sflag:
        sflag, _ = sreq.test()
    return [flag, val, sflag]


@case("p2p")
def sendrecv_ring(c):
    M = c.MPI
    st = M.Status()
    got = c.comm.sendrecv(("ring", c.rank), dest=c.right, sendtag=c.tag + 1,
                          source=c.left, recvtag=c.tag + 1, status=st)
    any_ = c.comm.sendrecv(c.rank, dest=c.right, sendtag=c.tag + 2)
    return [got, st.Get_source(), st.Get_tag() - c.tag, any_]


@case("p2p")
def probe_iprobe(c):
    M = c.MPI
    before = c.comm.iprobe(source=c.left, tag=c.tag + 7)  # nothing sent with that tag
    req = c.comm.isend("probed", dest=c.right, tag=c.tag + 1 + c.rank % 5)
    st = M.Status()
    p = c.comm.probe(source=c.left, tag=M.ANY_TAG, status=st)
    st2 = M.Status()
    flag = c.comm.iprobe(source=M.ANY_SOURCE, tag=M.ANY_TAG, status=st2)
    got = c.comm.recv(source=st.Get_source(), tag=st.Get_tag())
    req.wait()
    return [before, p, st.Get_source(), st.Get_tag() - c.tag, flag, st2.Get_source(),
            st2.Get_tag() - c.tag, got]


@case("p2p")
def proc_null(c):
    M = c.MPI
    c.comm.send("lost", dest=M.PROC_NULL, tag=c.tag)
    st = M.Status()
    got = c.comm.recv(source=M.PROC_NULL, tag=c.tag, status=st)
    got2 = c.comm.sendrecv("x", dest=M.PROC_NULL, source=M.PROC_NULL)
    return [got, got2, st.Get_source(), st.Get_tag()]


@case("p2p")
def non_overtaking(c):
    reqs = [c.comm.isend((c.rank, i), dest=c.right, tag=c.tag) for i in range(30)]
    got = [c.comm.recv(source=c.left, tag=c.tag) for _ in range(30)]
    for r in reqs:
        r.wait()
    return got


@case("p2p")
def tags_out_of_order(c):
    a = c.comm.isend("A", dest=c.right, tag=c.tag + 1)
    b = c.comm.isend("B", dest=c.right, tag=c.tag + 2)
    gb = c.comm.recv(source=c.left, tag=c.tag + 2)
    ga = c.comm.recv(source=c.left, tag=c.tag + 1)
    a.wait()
    b.wait()
    return [gb, ga]


@case("p2p")
def any_source_fan_in(c):
    M = c.MPI
    if c.rank == 0:
        got = []
        for _ in range(c.size - 1):
            st = M.Status()
            v = c.comm.recv(source=M.ANY_SOURCE, tag=M.ANY_TAG, status=st)
            got.append([v, st.Get_source(), st.Get_tag() - c.tag])
        return sorted(got)
    c.comm.send(c.rank * 3, dest=0, tag=c.tag + c.rank)
    return None


# --------------------------------------------------------------------------- collectives (objects)

@case("coll")
def barrier(c):
    return [c.comm.barrier(), c.comm.Barrier()]


@case("coll")
def bcast_each_root(c):
    return [c.comm.bcast({"root": root, "v": [root] * 3} if c.rank == root else None, root=root)
            for root in range(c.size)]


@case("coll")
def bcast_types(c):
    return [c.comm.bcast(o if c.rank == 0 else "garbage", root=0) for o in OBJS]


@case("coll")
def scatter_roots(c):
    out = []
    for root in sorted({0, c.size - 1}):
        data = [("s", root, i) for i in range(c.size)] if c.rank == root else None
        out.append(c.comm.scatter(data, root=root))
    return out


@case("coll")
def gather_roots(c):
    return [c.comm.gather(("g", c.rank), root=root) for root in sorted({0, c.size - 1})]


@case("coll")
def allgather(c):
    return [c.comm.allgather(c.rank * 2), c.comm.allgather({"r": c.rank}), c.comm.allgather(None)]


@case("coll")
def alltoall(c):
    return c.comm.alltoall([(c.rank, j) for j in range(c.size)])


def _obj_inputs(c):
    r = c.rank
    return {
        "int": r * 3 - 4,
        "float": r * 0.5 - 1.0,
        "complex": complex(r, -r),
        "list": [r],
        "str": str(r),
        "ndarray": np.arange(3, dtype="i8") + r,
        "small": (r % 3) + 1,
        "bits": (r * 37 + 5) & 0xFF,
        "truth": r % 3,
        "pair": ((r * 5) % 3, r),
        "fpair": ((r * 5) % 3 + 0.5, r),
    }


_OBJ_OPS = [("SUM", ["int", "float", "complex", "list", "str", "ndarray"]),
            ("PROD", ["small", "float"]),
            ("MIN", ["int", "float", "str"]),
            ("MAX", ["int", "float", "str"]),
            ("LAND", ["truth"]), ("LOR", ["truth"]), ("LXOR", ["truth"]),
            ("BAND", ["bits"]), ("BOR", ["bits"]), ("BXOR", ["bits"]),
            ("MINLOC", ["pair", "fpair"]), ("MAXLOC", ["pair", "fpair"])]


def _obj_op_case(opname, kinds):
    def fn(c):
        op = getattr(c.MPI, opname)
        ins = _obj_inputs(c)
        out = {}
        for k in kinds:
            x = ins[k]
            out[k] = {"allreduce": c.comm.allreduce(x, op=op),
                      "reduce": c.comm.reduce(x, op=op, root=c.size - 1),
                      "scan": c.comm.scan(x, op=op),
                      "exscan": c.comm.exscan(x, op=op)}
        return out
    return fn


for _op, _kinds in _OBJ_OPS:
    add("coll", f"lower_reductions.{_op}", _obj_op_case(_op, _kinds))


@case("coll")
def default_op_is_sum(c):
    return [c.comm.allreduce(c.rank), c.comm.reduce(c.rank), c.comm.scan(c.rank),
            c.comm.exscan(c.rank)]


# --------------------------------------------------------------------------- lowercase nonblocking

@case("icoll")
def ibarrier(c):
    return icall(c, "ibarrier")


@case("icoll")
def ibcast(c):
    return [icall(c, "ibcast", ("ib", root) if c.rank == root else None, root=root)
            for root in sorted({0, c.size - 1})]


@case("icoll")
def iallreduce(c):
    return [icall(c, "iallreduce", c.rank + 1), icall(c, "iallreduce", c.rank, op=c.MPI.MAX),
            icall(c, "iallreduce", [c.rank], op=c.MPI.SUM)]


@case("icoll")
def ialltoall(c):
    return icall(c, "ialltoall", [(c.rank, j) for j in range(c.size)])


@case("icoll")
def igather(c):
    return icall(c, "igather", c.rank * 2, root=c.size - 1)


@case("icoll")
def iscatter(c):
    return icall(c, "iscatter", [i * i for i in range(c.size)] if c.rank == 0 else None, root=0)


@case("icoll")
def iallgather(c):
    return icall(c, "iallgather", ("ag", c.rank))


@case("icoll")
def ireduce(c):
    return [icall(c, "ireduce", c.rank + 1, op=c.MPI.PROD, root=0),
            icall(c, "ireduce", str(c.rank), op=c.MPI.SUM, root=c.size - 1)]


# --------------------------------------------------------------------------- buffers

def buffers(c, kind, n, seed):
    """(send buffer, zeroed receive buffer, the MPI datatype or None, reader) of `kind`
    holding n elements; contents depend on seed (usually the sender's rank)."""
    M = c.MPI
    base = ints(n, seed, "f8", mod=13)
    if kind == "f8":
        return base.copy(), np.zeros(n, "f8")
    if kind == "i4":
        return base.astype("i4"), np.zeros(n, "i4")
    if kind == "u1":
        return base.astype("u1"), np.zeros(n, "u1")
    if kind == "c16":
        return (base + 1j * base[::-1]).astype("c16"), np.zeros(n, "c16")
    if kind == "bytearray":
        return bytearray(base.astype("u1").tobytes()), bytearray(n)
    if kind == "array.i":
        return array.array("i", base.astype("i4").tolist()), array.array("i", [0] * n)
    if kind == "array.d":
        return array.array("d", base.tolist()), array.array("d", [0.0] * n)
    if kind == "memoryview":
        return memoryview(base.copy()), memoryview(np.zeros(n, "f8"))
    if kind == "torch":
        t = c.torch
        return t.from_numpy(base.astype("f4")), t.zeros(n, dtype=t.float32)
    if kind == "spec":
        return [base.copy(), M.DOUBLE], [np.zeros(n, "f8"), M.DOUBLE]
    if kind == "spec3":
        return [base.copy(), n, M.DOUBLE], [np.zeros(n, "f8"), n, M.DOUBLE]
    if kind == "tuple":
        return (base.astype("i4"), M.INT), (np.zeros(n, "i4"), M.INT)
    raise ValueError(kind)


def payload(b):
    """The data object of a buffer or a [buf, ...] spec."""
    return b[0] if isinstance(b, (list, tuple)) else b


KINDS = ["f8", "i4", "u1", "c16", "bytearray", "array.i", "array.d", "memoryview", "torch",
         "spec", "spec3", "tuple"]


def kind_group(kind, group):
    return "torch" if kind == "torch" else group
SIZES = [0, 1, 7, 1001]


def _p2p_case(kind, n):
    def fn(c):
        M = c.MPI
        s, r = buffers(c, kind, n, c.rank)
        peer = _pair_peer(c)
        st = M.Status()
        if peer == c.rank:
            req = c.comm.Isend(s, dest=peer, tag=c.tag)
            c.comm.Recv(r, source=peer, tag=c.tag, status=st)
            req.Wait()
        elif c.rank % 2 == 0:
            c.comm.Send(s, dest=peer, tag=c.tag)
            c.comm.Recv(r, source=peer, tag=c.tag, status=st)
        else:
            c.comm.Recv(r, source=peer, tag=c.tag, status=st)
            c.comm.Send(s, dest=peer, tag=c.tag)
        return [payload(r), status_fields(M, st, M.BYTE, c.tag)]
    return fn


def _ip2p_case(kind, n):
    def fn(c):
        M = c.MPI
        s, r = buffers(c, kind, n, c.rank)
        rq = c.comm.Irecv(r, source=c.left, tag=c.tag)
        sq = c.comm.Isend(s, dest=c.right, tag=c.tag)
        st = M.Status()
        w = rq.Wait(st)
        sq.Wait()
        return [payload(r), w, st.Get_source(), st.Get_tag() - c.tag, st.Get_count(M.BYTE)]
    return fn


def _sendrecv_case(kind, n):
    def fn(c):
        M = c.MPI
        s, r = buffers(c, kind, n, c.rank)
        st = M.Status()
        c.comm.Sendrecv(s, dest=c.right, sendtag=c.tag, recvbuf=r, source=c.left,
                        recvtag=c.tag, status=st)
        return [payload(r), st.Get_source(), st.Get_count(M.BYTE)]
    return fn


for _k in KINDS:
    for _n in ([0, 1, 7] if _k not in ("f8",) else SIZES):
        add(kind_group(_k, "bufp2p"), f"SendRecv.{_k}.n{_n}", _p2p_case(_k, _n))
    add(kind_group(_k, "bufp2p"), f"IsendIrecv.{_k}.n5", _ip2p_case(_k, 5))
    add(kind_group(_k, "bufp2p"), f"Sendrecv.{_k}.n3", _sendrecv_case(_k, 3))


@case("bufp2p")
def recv_status_counts(c):
    M = c.MPI
    n = 3 + c.rank
    req = c.comm.Isend(np.arange(n, dtype="f8"), dest=c.right, tag=c.tag + c.rank)
    buf = np.full(20, -1.0)
    st = M.Status()
    c.comm.Recv(buf, source=M.ANY_SOURCE, tag=M.ANY_TAG, status=st)
    req.Wait()
    return [buf, st.Get_source(), st.Get_tag() - c.tag, st.Get_count(M.DOUBLE),
            st.Get_count(M.BYTE), st.Get_count(), st.Get_count(M.INT)]


@case("bufp2p")
def probe_then_recv(c):
    M = c.MPI
    n = 2 + c.rank * 3
    req = c.comm.Isend(np.arange(n, dtype="i4") * (c.rank + 1), dest=c.right, tag=c.tag)
    st = M.Status()
    c.comm.Probe(source=c.left, tag=c.tag, status=st)
    k = st.Get_count(M.INT)
    buf = np.empty(k, "i4")
    c.comm.Recv(buf, source=st.Get_source(), tag=st.Get_tag())
    req.Wait()
    it = c.comm.Iprobe(source=c.left, tag=c.tag)
    return [k, buf, it]


@case("bufp2p")
def proc_null_buffers(c):
    M = c.MPI
    buf = np.full(3, 7.0)
    c.comm.Send(np.ones(3), dest=M.PROC_NULL)
    st = M.Status()
    c.comm.Recv(buf, source=M.PROC_NULL, status=st)
    return [buf, st.Get_source(), st.Get_tag(), st.Get_count(M.DOUBLE)]


@case("bufp2p")
def recv_any_source_numpy(c):
    M = c.MPI
    if c.rank == 0:
        got = []
        for _ in range(c.size - 1):
            b = np.zeros(2, "i8")
            st = M.Status()
            c.comm.Recv(b, source=M.ANY_SOURCE, tag=c.tag, status=st)
            got.append([st.Get_source(), b.tolist()])
        return sorted(got)
    c.comm.Send(np.array([c.rank, c.rank * c.rank], "i8"), dest=0, tag=c.tag)
    return None


# --------------------------------------------------------------------------- collectives (buffers)

def _per_block(b, n):
    """A [buf, count, type] spec of a collective counts one block: n, not the total."""
    return [b[0], n, b[2]] if isinstance(b, list) and len(b) == 3 else b


def _coll_kinds_case(kind, n, coll):
    def fn(c):
        comm, size = c.comm, c.size
        if coll == "Bcast":  # from the last rank
            s, _ = buffers(c, kind, n, 99 if c.rank == size - 1 else c.rank)
            comm.Bcast(s, root=size - 1)
            return payload(s)
        if coll == "Scatter":  # root 0 holds size*n elements
            root_s, _ = buffers(c, kind, n * size, 50)
            _, r = buffers(c, kind, n, 0)
            comm.Scatter(_per_block(root_s, n) if c.rank == 0 else None, r, root=0)
            return payload(r)
        if coll == "Gather":  # at the last rank
            s, _ = buffers(c, kind, n, c.rank)
            _, big = buffers(c, kind, n * size, 0)
            comm.Gather(s, _per_block(big, n) if c.rank == size - 1 else None, root=size - 1)
            return payload(big) if c.rank == size - 1 else None
        if coll == "Allgather":
            s, _ = buffers(c, kind, n, c.rank)
            _, big = buffers(c, kind, n * size, 0)
            comm.Allgather(s, _per_block(big, n))
            return payload(big)
        if coll == "Alltoall":
            s, _ = buffers(c, kind, n * size, c.rank)
            _, big = buffers(c, kind, n * size, 0)
            comm.Alltoall(_per_block(s, n), _per_block(big, n))
            return payload(big)
        raise ValueError(coll)
    return fn


for _k in KINDS:
    for _n in ([0, 1, 7] if _k in ("f8", "u1") else [3]):
        for _coll in ("Bcast", "Scatter", "Gather", "Allgather", "Alltoall"):
            add(kind_group(_k, "bufcoll"), f"{_coll}.{_k}.n{_n}", _coll_kinds_case(_k, _n, _coll))


def _vcounts(size, shift=0):
    counts = [(i + shift) % 3 + (i % 2) for i in range(size)]  # includes zeros
    displs, d = [], 1  # a gap of one element at the front and between blocks
    for k in counts:
        displs.append(d)
        d += k + 1
    return counts, displs, d


@case("bufcoll")
def Scatterv(c):
    M, size = c.MPI, c.size
    counts, displs, total = _vcounts(size)
    sb = np.arange(total, dtype="f8") * 2 if c.rank == 0 else None
    rb = np.full(counts[c.rank], -1.0)
    c.comm.Scatterv([sb, counts, displs, M.DOUBLE] if c.rank == 0 else None, rb, root=0)
    rb2 = np.full(counts[c.rank], -1.0)
    c.comm.Scatterv([sb, (counts, displs), M.DOUBLE] if c.rank == 0 else None,
                    [rb2, M.DOUBLE], root=0)
    rb3 = np.full(counts[c.rank], -1, dtype="i4")
    sb3 = np.arange(sum(counts), dtype="i4") if c.rank == 0 else None
    c.comm.Scatterv([sb3, counts] if c.rank == 0 else None, rb3, root=0)
    return [rb, rb2, rb3]


@case("bufcoll")
def Gatherv(c):
    M, size = c.MPI, c.size
    counts, displs, total = _vcounts(size, 1)
    root = size - 1
    sb = np.arange(counts[c.rank], dtype="f8") + 10 * c.rank
    rb = np.full(total, -1.0) if c.rank == root else None
    c.comm.Gatherv(sb, [rb, counts, displs, M.DOUBLE] if c.rank == root else None, root=root)
    rb2 = np.full(sum(counts), -1, "i4") if c.rank == root else None
    c.comm.Gatherv(sb.astype("i4"), [rb2, counts] if c.rank == root else None, root=root)
    return [rb, rb2]


@case("bufcoll")
def Allgatherv(c):
    M, size = c.MPI, c.size
    counts, displs, total = _vcounts(size, 2)
    sb = np.arange(counts[c.rank], dtype="i8") + 100 * c.rank
    rb = np.full(total, -1, "i8")
    c.comm.Allgatherv(sb, [rb, counts, displs, M.INT64_T])
    rb2 = np.full(sum(counts), -1, "i8")
    c.comm.Allgatherv([sb, M.INT64_T], [rb2, (counts, None), M.INT64_T])
    return [rb, rb2]


@case("bufcoll")
def Alltoallv(c):
    M, size = c.MPI, c.size
    scounts = [(c.rank + j) % 3 for j in range(size)]
    rcounts = [(j + c.rank) % 3 for j in range(size)]
    sdispls = list(np.cumsum([0] + scounts[:-1]))
    rdispls = list(np.cumsum([0] + rcounts[:-1]))
    sb = np.arange(sum(scounts), dtype="f8") + 1000 * c.rank
    rb = np.full(sum(rcounts), -1.0)
    c.comm.Alltoallv([sb, (scounts, sdispls), M.DOUBLE], [rb, (rcounts, rdispls), M.DOUBLE])
    rb2 = np.full(sum(rcounts), -1.0)
    c.comm.Alltoallv([sb, scounts], [rb2, rcounts])
    return [rb, rb2]


@case("bufcoll")
def in_place(c):
    M, size, r = c.MPI, c.size, c.rank
    out = {}
    b = ints(5, r, "i8")
    c.comm.Allreduce(M.IN_PLACE, b, op=M.SUM)
    out["Allreduce"] = b
    b = ints(5, r, "f8")
    if r == 0:
        c.comm.Reduce(M.IN_PLACE, b, op=M.MAX, root=0)
    else:
        c.comm.Reduce(b, None, op=M.MAX, root=0)
    out["Reduce"] = b if r == 0 else None
    b = np.full(3 * size, -1, "i4")
    b[3 * r:3 * r + 3] = [r, r * 2, r * 3]
    c.comm.Allgather(M.IN_PLACE, b)
    out["Allgather"] = b
    b = np.full(2 * size, -1, "i4")
    b[2 * r:2 * r + 2] = [r + 5, r + 6]
    if r == size - 1:
        c.comm.Gather(M.IN_PLACE, b, root=size - 1)
        out["Gather"] = b
    else:
        c.comm.Gather(b[2 * r:2 * r + 2].copy(), None, root=size - 1)
    sb = np.arange(2 * size, dtype="i4") * 3
    if r == 0:
        c.comm.Scatter(sb, M.IN_PLACE, root=0)
        out["Scatter"] = sb
    else:
        rb = np.zeros(2, "i4")
        c.comm.Scatter(None, rb, root=0)
        out["Scatter"] = rb
    b = ints(4, r, "i4")
    c.comm.Scan(M.IN_PLACE, b, op=M.SUM)
    out["Scan"] = b
    b = ints(4, r, "i4")
    c.comm.Exscan(M.IN_PLACE, b, op=M.SUM)
    out["Exscan"] = b if r > 0 else None
    b = ints(2 * size, r, "i4")
    c.comm.Reduce_scatter_block(M.IN_PLACE, b, op=M.SUM)
    out["Reduce_scatter_block"] = b[:2]
    b = (np.arange(size, dtype="i4") + 10 * r)
    c.comm.Alltoall(M.IN_PLACE, b)
    out["Alltoall"] = b
    return out


# --------------------------------------------------------------------------- reductions

DTYPES = ["i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f4", "f8", "c8", "c16", "?",
          "f2", "bf16"]
OPS = ["SUM", "PROD", "MIN", "MAX", "LAND", "LOR", "LXOR", "BAND", "BOR", "BXOR",
       "MINLOC", "MAXLOC"]


def op_input(op, dt, n, r):
    """Inputs whose reduction is exact and free of overflow on up to 8 ranks."""
    i = np.arange(n)
    kind = np.dtype(dt).kind if dt != "bf16" else "f"
    if op == "SUM":
        v = (i * 3 + r * 7) % 11
        if kind in "ifc" and kind != "u":
            v = v - 5
    elif op == "PROD":
        v = np.where((i + r) % 4 == 0, 2, 1)
        if kind in "ifc" and kind != "u":
            v = v * np.where((i + 2 * r) % 5 == 0, -1, 1)
    elif op in ("MIN", "MAX"):
        v = (i * 7 + r * 13) % 17
        if kind in "ifc" and kind != "u":
            v = v - 8
    elif op in ("LAND", "LOR", "LXOR"):
        v = (i + r) % 3 if kind != "b" else ((i + r) % 3 != 0)
        if op == "LAND":
            v = np.where(i % 2 == 0, (v != 0) | True, v) if kind != "b" else (v | (i % 2 == 0))
    else:  # bitwise
        v = (i * 11 + r * 37 + 5) & 0x7F
    if kind == "b":
        return np.asarray(v).astype(bool)
    if dt == "bf16":
        return np.asarray(v, dtype="f4")
    a = np.asarray(v).astype(dt)
    if kind == "f" and op in ("MIN", "MAX"):
        a = a + np.asarray(0.5, dtype=dt)
    if kind == "c":
        a = a + 1j * np.asarray(v[::-1], dtype="f8").astype(dt)
    return a


def reduce_buffers(c, dt, op, n):
    """(sendbuf, recvbuf, convert-back) for dtype dt; float16 and bfloat16 go through
    float32 on mpi4py (it cannot reduce them), exactly for these inputs."""
    x = op_input(op, dt, n, c.rank)
    if dt == "bf16":
        t = c.torch
        s = t.from_numpy(x).to(t.bfloat16)
        if c.impl == "mpi4py":
            return (t.from_numpy(x), t.zeros(n, dtype=t.float32), lambda o: o.to(t.bfloat16))
        return s, t.zeros(n, dtype=t.bfloat16), lambda o: o
    if dt == "f2" and c.impl == "mpi4py":
        return x.astype("f4"), np.zeros(n, "f4"), lambda o: o.astype("f2")
    return x, np.zeros(n, dtype=x.dtype), lambda o: o


def _reduce_matrix_case(dt, op):
    def fn(c):
        M = c.MPI
        s, r, back = reduce_buffers(c, dt, op, 5)
        c.comm.Allreduce(s, r, op=getattr(M, op))
        return back(r)
    return fn


def _reduce_family_case(dt, op):
    def fn(c):
        M, size = c.MPI, c.size
        mop = getattr(M, op)
        out = {}
        s, r, back = reduce_buffers(c, dt, op, 4)
        c.comm.Reduce(s, r if c.rank == size - 1 else None, op=mop, root=size - 1)
        out["Reduce"] = back(r) if c.rank == size - 1 else None
        s, r, back = reduce_buffers(c, dt, op, 4)
        c.comm.Scan(s, r, op=mop)
        out["Scan"] = back(r)
        s, r, back = reduce_buffers(c, dt, op, 4)
        c.comm.Exscan(s, r, op=mop)
        out["Exscan"] = back(r) if c.rank > 0 else None
        s, _, back = reduce_buffers(c, dt, op, 3 * size)
        _, r, _ = reduce_buffers(c, dt, op, 3)
        c.comm.Reduce_scatter_block(s, r, op=mop)
        out["Reduce_scatter_block"] = back(r)
        return out
    return fn


for _dt in DTYPES:
    for _op in OPS:
        if _op in ("MINLOC", "MAXLOC") and _dt not in ("i4", "f8"):
            continue  # MINLOC on a plain type raises on both; two dtypes are enough
        add(kind_group("torch" if _dt == "bf16" else _dt, "reduce"), f"Allreduce.{_dt}.{_op}",
            _reduce_matrix_case(_dt, _op))

for _dt, _op in [("i4", "SUM"), ("f8", "SUM"), ("u8", "PROD"), ("f4", "MIN"), ("i2", "MAX"),
                 ("u1", "BXOR"), ("i8", "LOR"), ("c16", "SUM"), ("f2", "SUM"), ("bf16", "MAX"),
                 ("?", "LAND")]:
    add(kind_group("torch" if _dt == "bf16" else _dt, "reduce"), f"family.{_dt}.{_op}",
        _reduce_family_case(_dt, _op))


PAIRS = {  # name: (numpy structured dtype laid out as the C struct, value dtype)
    "FLOAT_INT": (np.dtype([("v", "f4"), ("i", "i4")], align=True), "f4"),
    "DOUBLE_INT": (np.dtype([("v", "f8"), ("i", "i4")], align=True), "f8"),
    "LONG_INT": (np.dtype([("v", "i8"), ("i", "i4")], align=True), "i8"),
    "2INT": (np.dtype([("v", "i4"), ("i", "i4")], align=True), "i4"),
    "SHORT_INT": (np.dtype([("v", "i2"), ("i", "i4")], align=True), "i2"),
}


def _pair_case(name, opname, coll):
    def fn(c):
        M, size = c.MPI, c.size
        dt, _ = PAIRS[name]
        mtype = getattr(M, "TWOINT" if name == "2INT" else name)
        n = 6
        x = np.zeros(n, dt)
        x["v"] = (np.arange(n) * 5 + c.rank * 3) % 4  # ties on purpose
        x["i"] = c.rank * 10 + np.arange(n)
        y = np.zeros(n, dt)
        y["v"] = -1
        op = getattr(M, opname)
        if coll == "Allreduce":
            c.comm.Allreduce([x, mtype], [y, mtype], op=op)
        elif coll == "Reduce":
            c.comm.Reduce([x, mtype], [y, mtype] if c.rank == 0 else None, op=op, root=0)
            if c.rank:
                return None
        elif coll == "Scan":
            c.comm.Scan([x, mtype], [y, mtype], op=op)
        return [y["v"].tolist(), y["i"].tolist()]
    return fn


for _name in PAIRS:
    for _op in ("MINLOC", "MAXLOC"):
        add("reduce", f"pair.{_name}.{_op}.Allreduce", _pair_case(_name, _op, "Allreduce"))
add("reduce", "pair.DOUBLE_INT.MINLOC.Reduce", _pair_case("DOUBLE_INT", "MINLOC", "Reduce"))
add("reduce", "pair.2INT.MAXLOC.Scan", _pair_case("2INT", "MAXLOC", "Scan"))


@case("reduce")
def reduce_sizes(c):
    M = c.MPI
    out = []
    for n in (0, 1, 2, 3, 17, 1023):
        s = ints(n, c.rank, "f8", mod=9)
        r = np.full(n, -1.0)
        c.comm.Allreduce(s, r, op=M.SUM)
        out.append(r)
    return out


@case("torch")
def reduce_buffer_kinds(c):
    M, t = c.MPI, c.torch
    out = []
    a = array.array("i", ints(4, c.rank, "i4").tolist())
    ra = array.array("i", [0] * 4)
    c.comm.Allreduce(a, ra, op=M.SUM)
    out.append(ra)
    ts = t.arange(5, dtype=t.float64) + c.rank
    tr = t.zeros(5, dtype=t.float64)
    c.comm.Allreduce(ts, tr, op=M.MAX)
    out.append(tr)
    ts = t.arange(4, dtype=t.int64) * (c.rank + 1)
    c.comm.Allreduce(M.IN_PLACE, ts, op=M.SUM)
    out.append(ts)
    s = ints(3, c.rank, "f8")
    r = np.zeros(3)
    c.comm.Allreduce([s, M.DOUBLE], [r, M.DOUBLE], op=M.SUM)
    out.append(r)
    r2 = np.zeros(3)
    c.comm.Allreduce([s, 3, M.DOUBLE], [r2, 3, M.DOUBLE], op=M.MIN)
    out.append(r2)
    mv = memoryview(np.zeros(3))
    c.comm.Allreduce(memoryview(s), mv, op=M.SUM)
    out.append(mv)
    return out


@case("reduce")
def exscan_rank0_untouched(c):
    M = c.MPI
    r = np.full(3, 42, "i4")
    c.comm.Exscan(np.array([1, 2, 3], "i4") * (c.rank + 1), r, op=M.SUM)
    return r


# --------------------------------------------------------------------------- nonblocking (buffers)

@case("ibuf")
def Ibcast(c):
    b = np.arange(7, dtype="f8") * (c.rank + 1)
    req = c.comm.Ibcast(b, root=c.size - 1)
    w = req.Wait()
    return [b, w]


@case("ibuf")
def Iallreduce(c):
    M = c.MPI
    s = ints(9, c.rank, "i8")
    r = np.zeros(9, "i8")
    req = c.comm.Iallreduce(s, r, op=M.SUM)
    req.Wait()
    b = ints(3, c.rank, "f8")
    req = c.comm.Iallreduce(M.IN_PLACE, b, op=M.MAX)
    req.Wait()
    return [r, b]


@case("ibuf")
def Ireduce(c):
    M = c.MPI
    s = ints(4, c.rank, "f4")
    r = np.zeros(4, "f4")
    c.comm.Ireduce(s, r if c.rank == 0 else None, op=M.SUM, root=0).Wait()
    return r if c.rank == 0 else None


@case("ibuf")
def Iscatter_Igather_Iallgather_Ialltoall(c):
    size = c.size
    out = {}
    sb = np.arange(3 * size, dtype="i4") * 2
    rb = np.zeros(3, "i4")
    c.comm.Iscatter(sb if c.rank == 0 else None, rb, root=0).Wait()
    out["Iscatter"] = rb
    g = np.zeros(2 * size, "u1")
    c.comm.Igather(np.array([c.rank, 200 - c.rank], "u1"), g if c.rank == 1 % size else None,
                   root=1 % size).Wait()
    out["Igather"] = g if c.rank == 1 % size else None
    ag = np.zeros(size, "f8")
    c.comm.Iallgather(np.array([c.rank * 1.5]), ag).Wait()
    out["Iallgather"] = ag
    at = np.zeros(2 * size, "i8")
    c.comm.Ialltoall(np.arange(2 * size, dtype="i8") + 100 * c.rank, at).Wait()
    out["Ialltoall"] = at
    return out


@case("ibuf")
def Iv_variants(c):
    M, size = c.MPI, c.size
    counts, displs, total = _vcounts(size)
    out = {}
    sb = np.arange(total, dtype="f8")
    rb = np.full(counts[c.rank], -1.0)
    c.comm.Iscatterv([sb, counts, displs, M.DOUBLE] if c.rank == 0 else None, rb, root=0).Wait()
    out["Iscatterv"] = rb
    gb = np.full(total, -1.0)
    c.comm.Igatherv(np.arange(counts[c.rank], dtype="f8") + c.rank,
                    [gb, counts, displs, M.DOUBLE] if c.rank == 0 else None, root=0).Wait()
    out["Igatherv"] = gb if c.rank == 0 else None
    ab = np.full(total, -1.0)
    c.comm.Iallgatherv(np.arange(counts[c.rank], dtype="f8") * 2,
                       [ab, counts, displs, M.DOUBLE]).Wait()
    out["Iallgatherv"] = ab
    sc = [1 + (c.rank + j) % 2 for j in range(size)]
    rc = [1 + (j + c.rank) % 2 for j in range(size)]
    sbv = np.arange(sum(sc), dtype="i4") + 10 * c.rank
    rbv = np.full(sum(rc), -1, "i4")
    c.comm.Ialltoallv([sbv, sc], [rbv, rc]).Wait()
    out["Ialltoallv"] = rbv
    return out


@case("ibuf")
def Iscan_Iexscan_Ireduce_scatter_block(c):
    M, size = c.MPI, c.size
    out = {}
    r = np.zeros(3, "i4")
    c.comm.Iscan(ints(3, c.rank, "i4"), r, op=M.SUM).Wait()
    out["Iscan"] = r
    r = np.full(3, 9, "i4")
    c.comm.Iexscan(ints(3, c.rank, "i4"), r, op=M.MAX).Wait()
    out["Iexscan"] = r if c.rank else None
    r = np.zeros(2, "i8")
    c.comm.Ireduce_scatter_block(ints(2 * size, c.rank, "i8"), r, op=M.SUM).Wait()
    out["Ireduce_scatter_block"] = r
    return out


@case("ibuf")
def Ibarrier_overlap(c):
    M = c.MPI
    reqs = [c.comm.Ibarrier()]
    s = ints(5, c.rank, "f8")
    r = np.zeros(5)
    reqs.append(c.comm.Iallreduce(s, r, op=M.SUM))
    b = np.full(2, float(c.rank))
    reqs.append(c.comm.Ibcast(b, root=0))
    M.Request.Waitall(reqs)
    return [r, b]


# --------------------------------------------------------------------------- requests

@case("requests")
def wait_test_variants(c):
    M = c.MPI
    out = []
    rq = c.comm.Irecv(np.zeros(2), source=c.left, tag=c.tag)
    sq = c.comm.Isend(np.ones(2) * c.rank, dest=c.right, tag=c.tag)
    st = M.Status()
    while not rq.Test(st):
        pass
    out.append([st.Get_source(), st.Get_count(M.DOUBLE)])
    out.append([rq.Test(), sq.Wait()])
    lr = c.comm.irecv(source=c.left, tag=c.tag + 1)
    ls = c.comm.isend({"r": c.rank}, dest=c.right, tag=c.tag + 1)
    out.append([lr.wait(), ls.wait()])
    return out


@case("requests")
def waitall_lower_and_upper(c):
    M = c.MPI
    rs = [c.comm.irecv(source=c.left, tag=c.tag + i) for i in range(3)]
    ss = [c.comm.isend((c.rank, i), dest=c.right, tag=c.tag + i) for i in range(3)]
    got = M.Request.waitall(rs)
    M.Request.waitall(ss)
    bufs = [np.zeros(2, "i4") for _ in range(3)]
    rs = [c.comm.Irecv(b, source=c.left, tag=c.tag + 10 + i) for i, b in enumerate(bufs)]
    ss = [c.comm.Isend(np.array([c.rank, i], "i4"), dest=c.right, tag=c.tag + 10 + i)
          for i in range(3)]
    sts = [M.Status() for _ in range(3)]
    w = M.Request.Waitall(rs, sts)
    M.Request.Waitall(ss)
    return [got, bufs, w, [s.Get_tag() - c.tag for s in sts]]


@case("requests")
def waitany_waitsome_testall(c):
    """Ring: each rank receives from its left neighbour, which sends only when told."""
    M = c.MPI
    t = c.tag
    out = {}
    bufs = [np.full(1, -1, "i4") for _ in range(3)]
    rs = [c.comm.Irecv(bufs[i], source=c.left, tag=t + i) for i in range(3)]
    out["testall_before"] = M.Request.Testall(rs)  # nothing was sent yet
    c.comm.barrier()
    # left neighbour sends tag t+1 only
    c.comm.Send(np.array([11], "i4"), dest=c.right, tag=t + 1)
    st = M.Status()
    out["waitany1"] = M.Request.Waitany(rs, st)
    out["waitany1_tag"] = st.Get_tag() - t
    c.comm.barrier()
    c.comm.Send(np.array([10], "i4"), dest=c.right, tag=t + 0)
    c.comm.Send(np.array([12], "i4"), dest=c.right, tag=t + 2)
    c.comm.Send(np.array([99], "i4"), dest=c.right, tag=t + 3)
    fence = np.zeros(1, "i4")
    c.comm.Recv(fence, source=c.left, tag=t + 3)
    idx = M.Request.Waitsome(rs)
    out["waitsome"] = sorted(idx) if idx is not None else None
    out["waitany_none"] = M.Request.Waitany(rs)
    out["waitsome_none"] = M.Request.Waitsome(rs)
    out["testall_after"] = M.Request.Testall(rs)
    out["bufs"] = bufs
    return out


@case("requests")
def cancel_unmatched_irecv(c):
    M = c.MPI
    out = []
    for method in ("Cancel", "cancel"):
        req = c.comm.Irecv(np.zeros(4), source=c.left, tag=c.tag + 77)
        getattr(req, method)()
        st = M.Status()
        req.Wait(st)
        out.append([st.Is_cancelled(), st.cancelled])
    c.comm.barrier()
    return out


@case("requests")
def status_object(c):
    M = c.MPI
    st = M.Status()
    req = c.comm.Isend(np.arange(6, dtype="i2"), dest=c.right, tag=c.tag + 4)
    b = np.zeros(10, "i2")
    c.comm.Recv(b, source=c.left, tag=M.ANY_TAG, status=st)
    req.Wait()
    return [st.Get_source(), st.Get_tag() - c.tag, st.Get_count(M.SHORT), st.Get_count(M.BYTE),
            st.Get_count(M.INT16_T), st.Is_cancelled()]


# --------------------------------------------------------------------------- user ops

def _add_i8(inmem, inoutmem, datatype):
    a = np.frombuffer(inmem, dtype="i8")
    b = np.frombuffer(inoutmem, dtype="i8")
    b += a


def _matmul(inmem, inoutmem, datatype):
    a = np.frombuffer(inmem, dtype="i8").reshape(-1, 2, 2)
    b = np.frombuffer(inoutmem, dtype="i8").reshape(-1, 2, 2)
    b[...] = a @ b


def _mats(c, k=3):
    m = np.zeros((k, 2, 2), "i8")
    m[:, 0, 0] = c.rank + 1 + np.arange(k)
    m[:, 0, 1] = 1
    m[:, 1, 0] = 1
    return m.reshape(-1)


@case("userop")
def userop_commutative(c):
    M = c.MPI
    op = M.Op.Create(_add_i8, commute=True)
    out = {"is_commutative": op.is_commutative, "Is_commutative()": op.Is_commutative(),
           "is_predefined": op.is_predefined, "SUM.is_predefined": M.SUM.is_predefined}
    s = ints(6, c.rank, "i8")
    r = np.zeros(6, "i8")
    c.comm.Allreduce(s, r, op=op)
    out["Allreduce"] = r.copy()
    r = np.zeros(6, "i8")
    c.comm.Reduce(s, r if c.rank == 0 else None, op=op, root=0)
    out["Reduce"] = r.copy() if c.rank == 0 else None
    r = np.zeros(6, "i8")
    c.comm.Scan(s, r, op=op)
    out["Scan"] = r.copy()
    r = np.full(6, 5, "i8")
    c.comm.Exscan(s, r, op=op)
    out["Exscan"] = r.copy() if c.rank else None
    s2 = ints(2 * c.size, c.rank, "i8")
    r = np.zeros(2, "i8")
    c.comm.Reduce_scatter_block(s2, r, op=op)
    out["Reduce_scatter_block"] = r.copy()
    op.Free()
    out["op == OP_NULL after Free()"] = op == M.OP_NULL
    return out


@case("userop")
def userop_noncommutative_rank_order(c):
    M = c.MPI
    op = M.Op.Create(_matmul, commute=False)
    out = [op.is_commutative]
    s = _mats(c)
    r = np.zeros_like(s)
    c.comm.Allreduce(s, r, op=op)
    out.append(r.copy())
    root = c.size // 2
    r = np.zeros_like(s)
    c.comm.Reduce(s, r if c.rank == root else None, op=op, root=root)
    out.append(r.copy() if c.rank == root else None)
    r = np.zeros_like(s)
    c.comm.Scan(s, r, op=op)
    out.append(r.copy())
    r = np.zeros_like(s)
    c.comm.Exscan(s, r, op=op)
    out.append(r.copy() if c.rank else None)
    r = np.zeros_like(s)
    c.comm.Iallreduce(s, r, op=op).Wait()
    out.append(r.copy())
    op.Free()
    return out


@case("userop")
def userop_lowercase(c):
    M = c.MPI
    cat = M.Op.Create(lambda a, b, dt=None: a + b, commute=False)
    add_ = M.Op.Create(lambda a, b, dt=None: a + b, commute=True)
    x = str(c.rank)
    out = [c.comm.allreduce(x, op=cat), c.comm.reduce(x, op=cat, root=c.size - 1),
           c.comm.scan(x, op=cat), c.comm.exscan(x, op=cat),
           c.comm.allreduce(c.rank + 1, op=add_)]
    cat.Free()
    add_.Free()
    return out


# --------------------------------------------------------------------------- errors (both raise)

@case("errors")
def band_on_float(c):
    c.comm.Allreduce(np.ones(3), np.zeros(3), op=c.MPI.BAND)


@case("errors")
def sum_on_bool(c):
    c.comm.Allreduce(np.ones(3, bool), np.zeros(3, bool), op=c.MPI.SUM)


@case("errors")
def minloc_on_plain_int(c):
    c.comm.Allreduce(np.ones(3, "i4"), np.zeros(3, "i4"), op=c.MPI.MINLOC)


@case("errors")
def max_on_complex(c):
    c.comm.Allreduce(np.ones(3, "c16"), np.zeros(3, "c16"), op=c.MPI.MAX)


@case("errors")
def send_to_bad_rank(c):
    c.comm.Send(np.ones(1), dest=c.size, tag=0)


@case("errors")
def send_negative_tag(c):
    c.comm.Send(np.ones(1), dest=c.rank, tag=-5)


@case("errors")
def bcast_bad_root(c):
    c.comm.Bcast(np.ones(1), root=c.size)


@case("errors")
def recv_truncated(c):
    """Every rank sends 5 doubles to its right and receives into room for 2."""
    req = c.comm.Isend(np.ones(5), dest=c.right, tag=c.tag)
    try:
        c.comm.Recv(np.zeros(2), source=c.left, tag=c.tag)
    finally:
        req.Wait()


@case("errors")
def lower_bad_dest(c):
    c.comm.send("x", dest=c.size + 3, tag=0)


@case("errors")
def after_errors_still_works(c):
    return c.comm.allreduce(c.rank)


# --------------------------------------------------------------------------- big

@case("big")
def mib_allreduce_f8(c):
    n = (1 << 20) // 8
    s = ((np.arange(n) % 1000) + c.rank).astype("f8")
    r = np.zeros(n)
    c.comm.Allreduce(s, r, op=c.MPI.SUM)
    return r


@case("big")
def mib_bcast_sendrecv_alltoall(c):
    n = 1 << 20
    b = ((np.arange(n) * 7 + 3) % 251).astype("u1") if c.rank == 0 else np.zeros(n, "u1")
    c.comm.Bcast(b, root=0)
    s = ((np.arange(n) + c.rank) % 253).astype("u1")
    r = np.zeros(n, "u1")
    c.comm.Sendrecv(s, dest=c.right, recvbuf=r, source=c.left)
    per = n // c.size
    a = ((np.arange(per * c.size) + 5 * c.rank) % 241).astype("u1")
    ar = np.zeros_like(a)
    c.comm.Alltoall(a, ar)
    return [b, r, ar]


@case("big")
def mib_lowercase_object(c):
    obj = bytes(((np.arange(1 << 20) + c.rank) % 256).astype("u1")) if c.rank == 0 else None
    got = c.comm.bcast(obj, root=0)
    return hashlib.sha256(got).hexdigest()


@case("huge")
def mib64_allreduce_f4(c):
    n = (64 << 20) // 4
    s = ((np.arange(n, dtype="i4") % 1000) + c.rank).astype("f4")
    r = np.zeros(n, "f4")
    c.comm.Allreduce(s, r, op=c.MPI.SUM)
    return r


@case("huge")
def mib64_bcast(c):
    n = 64 << 20
    b = (np.arange(n, dtype="u4") % 251).astype("u1") if c.rank == 1 % c.size else np.zeros(n, "u1")
    c.comm.Bcast(b, root=1 % c.size)
    return b


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impl", required=True, choices=["mpi4py", "foehn"])
    p.add_argument("--out", required=True, help="folder for <label>-rank<R>.jsonl")
    p.add_argument("--label", default=None, help="file name prefix (default: --impl)")
    p.add_argument("--groups", default="all", help="comma-separated groups, or all")
    p.add_argument("--only", default="", help="run only cases whose name contains this")
    p.add_argument("--skip", default="", help="comma-separated: skip cases whose name "
                   "contains one of these")
    p.add_argument("--case-timeout", type=float, default=15.0,
                   help="seconds a case may take (five times that for big and huge)")
    p.add_argument("--list", action="store_true", help="print the case names and exit")
    a = p.parse_args(argv)
    groups = GROUPS if a.groups == "all" else a.groups.split(",")
    unknown = set(groups) - set(GROUPS)
    if unknown:
        p.error(f"unknown groups {sorted(unknown)}; known: {GROUPS}")
    skip = [x for x in a.skip.split(",") if x]
    # in the order of --groups: a group that may leave a rank stuck goes last
    cases = [(g, n, f) for grp in groups for g, n, f in CASES if g == grp
             and a.only in f"{g}.{n}" and not any(x in f"{g}.{n}" for x in skip)]
    if a.list:
        for g, n, _ in cases:
            print(f"{g}\t{n}")
        return 0

    if set(groups) & TORCH_GROUPS:
        import torch  # noqa: F401 -- before MPI: a rank importing it mid-run stalls the rest
    if a.impl == "mpi4py":
        from mpi4py import MPI
    else:
        from foehn import MPI
    c = Ctx(MPI, a.impl)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"{a.label or a.impl}-rank{c.rank}.jsonl")
    with open(path, "w") as f:
        def emit(obj):
            f.write(json.dumps(obj) + "\n")
            f.flush()
        emit({"meta": {"impl": a.impl, "rank": c.rank, "size": c.size, "groups": groups,
                       "pid": os.getpid()}})
        # Each case runs on a communicator of its own, a duplicate of `ctl`, which only
        # duplicates and synchronises: a case that leaves the ranks out of step (one raised,
        # the others went on) spoils its own communicator, not the cases after it.
        ctl = MPI.COMM_WORLD.Dup()
        for g, name, fn in cases:
            c.tag = 1000 + 100 * (zlib.crc32(name.encode()) % 1000)
            limit = a.case_timeout * (5 if g in ("big", "huge") else 1)
            faulthandler.dump_traceback_later(limit, exit=True)
            if os.environ.get("DIFF_VERBOSE"):
                print(f"[rank {c.rank}] case {g}.{name}", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            try:
                c.comm = ctl.Dup()
                value = enc(fn(c))
            except Exception as e:  # noqa: BLE001 -- a raise is a result
                value = {"raised": type(e).__name__, "msg": str(e)[:300]}
            emit({"case": f"{g}.{name}", "value": value, "s": round(time.monotonic() - t0, 4)})
            ctl.Barrier()
            c.comm.Free()
        faulthandler.cancel_dump_traceback_later()
        emit({"done": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
