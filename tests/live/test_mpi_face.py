"""foehn.MPI across ranks under `foehn run`: pympi's README example, a sample of every
method (lowercase, uppercase, nonblocking, communicators, requests), pympi's own test
programs, user reductions, a rank that dies, Abort, and the GIL left free while C
waits. The differential tests against mpi4py live elsewhere."""
from __future__ import annotations

import sys
import textwrap

import pytest

from tests.engines.base import foehn_program, run

PY = sys.executable


def launch(tmp_path, n: int, program: str, *args: str, timeout: float = 120):
    prog = tmp_path / "prog.py"
    prog.write_text(textwrap.dedent(program))
    return run([foehn_program(), "run", "-n", str(n), PY, str(prog), *args], timeout=timeout)


def lines(result) -> list[str]:
    return sorted(line for line in result.stdout.splitlines() if line.strip())


# pympi's README example, unchanged but for the import (and itertools.batched, which
# Python 3.11 lacks).
README = """
import itertools
if not hasattr(itertools, "batched"):
    itertools.batched = lambda it, n: (tuple(it[i:i + n]) for i in range(0, len(it), n))

from foehn import MPI, proto   # was: from pympi import MPI, proto
from dataclasses import dataclass
from typing import Callable, Mapping, Set

comm = MPI.COMM_WORLD
size = comm.size
rank = comm.rank


@dataclass(slots=True, frozen=True)
class PairReduce(proto.OperationContext):
    reducer: Callable

    def group(self, size: int) -> proto.CommunicationGroup:
        return proto.CommunicationGroup(range(size), range(0, size, 2))

    def apply(self, src: Mapping[int, int], dst: Set[int]) -> Mapping[int, int]:
        values = [src[rank] for rank in sorted(src)]
        result = map(self.reducer, itertools.batched(values, 2))
        return dict(zip(dst, result))


context = PairReduce(reducer=sum)
group = context.group(size=comm.size)
operation = proto.OperationRequest(group, context, rank)
request = comm.submit(operation)
result = request.wait()
print(f"R{rank}: {result}")
"""


def test_pympi_readme_example(tmp_path):
    r = launch(tmp_path, 4, README).check()
    assert lines(r) == ["R0: 1", "R1: None", "R2: 5", "R3: None"]


# Every method once, checked on every rank; prints "RESULT rank passed/total".
EVERY = """
import array
import numpy as np
from foehn import MPI, proto

comm = MPI.COMM_WORLD
rank, size = comm.rank, comm.size
nxt, prv, last = (rank + 1) % size, (rank - 1) % size, size - 1
checks = []


def check(name, got, want):
    ok = np.array_equal(got, want) if isinstance(want, np.ndarray) else got == want
    if not ok:
        print(f"FAIL rank {rank} {name}: got {got!r} want {want!r}", flush=True)
    checks.append(ok)


def blocks(dtype="i"):
    return np.concatenate([np.full(i + 1, i, dtype=dtype) for i in range(size)])


# lowercase point to point
st = MPI.Status()
comm.send({"from": rank}, dest=nxt, tag=7)
check("recv", comm.recv(source=prv, tag=7, status=st), {"from": prv})
check("status", (st.source, st.tag, st.Get_source(), st.Get_tag()), (prv, 7, prv, 7))
r = comm.isend([rank] * 3, dest=nxt, tag=8)
check("irecv", comm.irecv(source=prv, tag=8).wait(), [prv] * 3)
check("isend", r.wait(), None)
check("sendrecv", comm.sendrecv(rank, dest=nxt, source=prv), prv)
comm.send("probe-me", dest=nxt, tag=9)
check("probe", (comm.probe(source=prv, tag=9, status=st), st.source), (True, prv))
check("any source", comm.recv(source=MPI.ANY_SOURCE, tag=9), "probe-me")
check("iprobe", comm.iprobe(source=prv, tag=99), False)
big = np.arange(300_000, dtype="d") + rank
check("big object", comm.sendrecv(big, dest=nxt, source=prv), np.arange(300_000.0) + prv)

# lowercase collectives
comm.barrier()
comm.ibarrier().wait()
check("bcast", comm.bcast({"x": 1} if rank == 0 else None, root=0), {"x": 1})
check("bcast last", comm.bcast(rank, root=last), last)
check("scatter", comm.scatter(list(range(10, 10 + size)) if rank == 0 else None), 10 + rank)
check("gather", comm.gather(rank * 2, root=last),
      [2 * i for i in range(size)] if rank == last else None)
check("allgather", comm.allgather(rank), list(range(size)))
check("alltoall", comm.alltoall([(rank, j) for j in range(size)]),
      [(i, rank) for i in range(size)])
check("reduce", comm.reduce(rank, root=0), sum(range(size)) if rank == 0 else None)
check("allreduce", comm.allreduce(rank), sum(range(size)))
check("allreduce max", comm.allreduce(rank, op=MPI.MAX), last)
check("allreduce list", comm.allreduce([rank]), list(range(size)))
check("minloc pairs", comm.allreduce((rank % 2, rank), op=MPI.MINLOC), (0, 0))
check("pympi maxloc", comm.allreduce(rank % 2, op=proto.ReduceOperation.MAXLOC),
      (1, 1) if size > 1 else (0, 0))
check("scan", comm.scan(rank), sum(range(rank + 1)))
check("exscan", comm.exscan(rank), None if rank == 0 else sum(range(rank)))
concat = MPI.Op.Create(lambda a, b, dt: f"{a}{b}", commute=False)
check("user op, in rank order", comm.allreduce(str(rank), op=concat),
      "".join(map(str, range(size))))
check("scan user op", comm.scan(str(rank), op=concat), "".join(map(str, range(rank + 1))))
reqs = [comm.ibcast(rank, root=0), comm.iallreduce(rank), comm.ialltoall(list(range(size))),
        comm.igather(rank), comm.iscatter(list(range(size)) if rank == 0 else None),
        comm.iallgather(rank), comm.ireduce(rank), comm.iscan(1), comm.iexscan(1),
        comm.ibarrier()]
check("nonblocking", MPI.Request.waitall(reqs),
      [0, sum(range(size)), [rank] * size, list(range(size)) if rank == 0 else None, rank,
       list(range(size)), sum(range(size)) if rank == 0 else None, rank + 1,
       None if rank == 0 else rank, None])
# the nonblocking reductions of objects fold in rank order too, and an operation that
# fails anywhere fails them on every rank, as the blocking ones do
reqs = [comm.iallreduce(str(rank), op=concat), comm.iscan(str(rank), op=concat),
        comm.iexscan(str(rank), op=concat), comm.ireduce(str(rank), op=concat, root=size - 1)]
check("nonblocking user op", MPI.Request.waitall(list(reversed(reqs)))[::-1],
      ["".join(map(str, range(size))), "".join(map(str, range(rank + 1))),
       None if rank == 0 else "".join(map(str, range(rank))),
       "".join(map(str, range(size))) if rank == size - 1 else None])
picky = MPI.Op.Create(lambda a, b, dt: a + b if b != size - 1 else 1 / 0, commute=False)
for name in ("allreduce", "iallreduce", "scan", "iscan", "exscan", "iexscan"):
    try:
        got = getattr(comm, name)(rank, op=picky)
        got = got.wait() if name.startswith("i") else got
    except proto.RemoteException as exc:
        got = "ZeroDivisionError" in str(exc)
    check(f"{name}: a failing op", got,
          True if size > 1 else None if name.endswith("exscan") else rank)
# alltoall sends large buffers out of band (pickle protocol 5), from their memory: the
# arrays come back equal and writable, contiguous or not, inside other objects too
big = [np.full((300, 100), rank * 100 + j, dtype=np.float64) for j in range(size)]
big[0] = big[0][:, ::2]
for how, got in (("alltoall", comm.alltoall([{"a": b, "j": j} for j, b in enumerate(big)])),
                 ("ialltoall", comm.ialltoall([{"a": b, "j": j}
                                               for j, b in enumerate(big)]).wait())):
    want = [np.full((300, 50 if rank == 0 else 100), i * 100 + rank, dtype=np.float64)
            for i in range(size)]
    check(how + " of arrays", [(g["j"], g["a"].shape, bool(g["a"].flags.writeable),
                                bool(np.array_equal(g["a"], w))) for g, w in zip(got, want)],
          [(rank, w.shape, True, True) for w in want])
    got[-1]["a"][:] = -1
check("alltoall of bytearrays", comm.alltoall([bytearray([rank, j]) * 40000
                                               for j in range(size)]),
      [bytearray([i, rank]) * 40000 for i in range(size)])
# started in one order with blocking ones between, waited for in reverse: each gets its
# own result, and an object is taken when the call is made (changing it after is safe)
r1 = comm.ialltoall([(rank, j) for j in range(size)])
mid = comm.bcast("mid" if rank == 0 else None)
r2 = comm.iallgather(rank * 10)
snap = np.arange(4) + 7
r3 = comm.ibcast(snap if rank == 0 else None)
snap[:] = -1
check("interleaved", (r3.wait().tolist(), r2.wait(), mid, r1.wait()),
      ([7, 8, 9, 10], [10 * i for i in range(size)], "mid", [(i, rank) for i in range(size)]))

# uppercase point to point
a, b = np.arange(5, dtype="d") + rank, np.empty(5, dtype="d")
comm.Send(a, dest=nxt, tag=1)
comm.Recv([b, MPI.DOUBLE], source=prv, tag=1, status=st)
check("Send/Recv", (b.tolist(), st.Get_count(MPI.DOUBLE)), ((np.arange(5.0) + prv).tolist(), 5))
got = bytearray(4)
rq = comm.Irecv(got, source=prv, tag=2)
comm.Isend(bytes([rank] * 4), dest=nxt, tag=2).Wait()
rq.Wait()
check("Isend/Irecv", bytes(got), bytes([prv] * 4))
arr = array.array("i", [0, 0, 0])
comm.Sendrecv(array.array("i", [rank] * 3), dest=nxt, recvbuf=arr, source=prv)
check("Sendrecv", list(arr), [prv] * 3)
buf = np.full(3, rank, dtype=np.int64)
comm.Sendrecv_replace(buf, dest=nxt, source=prv)
check("Sendrecv_replace", buf, np.full(3, prv, dtype=np.int64))
comm.Send([np.arange(10, dtype="i"), 3, MPI.INT], dest=nxt, tag=3)
part = np.zeros(10, dtype="i")
comm.Recv([part, (3, 2), MPI.INT], source=prv, tag=3)
check("count and displ", part.tolist(), [0, 0, 0, 1, 2, 0, 0, 0, 0, 0])

# uppercase collectives
x = np.arange(4, dtype="f") if rank == 0 else np.zeros(4, dtype="f")
comm.Bcast(x, root=0)
check("Bcast", x, np.arange(4, dtype="f"))
recv = np.zeros(size * 2, dtype="i")
comm.Gather(np.array([rank, rank], dtype="i"), recv, root=0)
if rank == 0:
    check("Gather", recv, np.repeat(np.arange(size, dtype="i"), 2))
out = np.zeros(2, dtype="i")
comm.Scatter(np.repeat(np.arange(size, dtype="i"), 2) if rank == 0 else None, out, root=0)
check("Scatter", out, np.array([rank, rank], dtype="i"))
ag = np.zeros(size, dtype=np.int64)
comm.Allgather(np.array([rank * 3], dtype=np.int64), ag)
check("Allgather", ag, np.arange(size, dtype=np.int64) * 3)
ag[:] = 0
ag[rank] = rank + 100
comm.Allgather(MPI.IN_PLACE, ag)
check("Allgather IN_PLACE", ag, np.arange(size, dtype=np.int64) + 100)
at = np.zeros(size, dtype="d")
comm.Alltoall(np.arange(size, dtype="d") + 10 * rank, at)
check("Alltoall", at, np.arange(size, dtype="d") * 10 + rank)
counts = [i + 1 for i in range(size)]
displs = [sum(counts[:i]) for i in range(size)]
gv = np.zeros(sum(counts), dtype="i")
comm.Gatherv(np.full(rank + 1, rank, dtype="i"),
             [gv, counts, displs, MPI.INT] if rank == 0 else None, root=0)
if rank == 0:
    check("Gatherv", gv, blocks())
sv = np.zeros(rank + 1, dtype="i")
comm.Scatterv([blocks(), counts, displs, MPI.INT] if rank == 0 else None, sv, root=0)
check("Scatterv", sv, np.full(rank + 1, rank, dtype="i"))
agv = np.zeros(sum(counts), dtype="i")
comm.Allgatherv(np.full(rank + 1, rank, dtype="i"), [agv, (counts, displs), MPI.INT])
check("Allgatherv", agv, blocks())
ones, each = [1] * size, list(range(size))
atv = np.zeros(size, dtype="i")
comm.Alltoallv([np.arange(size, dtype="i") + 10 * rank, ones, each, MPI.INT],
               [atv, ones, each, MPI.INT])
check("Alltoallv", atv, np.arange(size, dtype="i") * 10 + rank)
v = np.array([rank, -rank], dtype=np.int32)
res = np.zeros(2, dtype=np.int32)
comm.Reduce(v, res, op=MPI.MAX, root=0)
if rank == 0:
    check("Reduce", res, np.array([last, 0], dtype=np.int32))
comm.Allreduce(v, res, op=MPI.SUM)
check("Allreduce", res, np.array([sum(range(size)), -sum(range(size))], dtype=np.int32))
ip = v.copy()
comm.Allreduce(MPI.IN_PLACE, ip, op=MPI.MIN)
check("Allreduce IN_PLACE", ip, np.array([0, -last], dtype=np.int32))
rsb = np.zeros(1, dtype="d")
comm.Reduce_scatter_block(np.arange(size, dtype="d"), rsb, op=MPI.SUM)
check("Reduce_scatter_block", rsb, np.array([rank * size], dtype="d"))
sc = np.zeros(1, dtype="i")
comm.Scan(np.array([1], dtype="i"), sc)
check("Scan", sc, np.array([rank + 1], dtype="i"))
ex = np.full(1, -1, dtype="i")
comm.Exscan(np.array([1], dtype="i"), ex)
check("Exscan", ex, np.array([rank if rank else -1], dtype="i"))
pair = np.dtype([("v", "f8"), ("i", "i4")], align=True)
mine, best = np.zeros(1, dtype=pair), np.zeros(1, dtype=pair)
mine[0] = (float(rank % 2), rank)
comm.Allreduce(mine, best, op=MPI.MAXLOC)
check("MAXLOC on DOUBLE_INT", (best[0]["v"], best[0]["i"]), (1.0, 1) if size > 1 else (0.0, 0))


def add(inbuf, inoutbuf, datatype):
    assert datatype is MPI.DOUBLE
    inout = np.frombuffer(inoutbuf, dtype="d")
    inout += np.frombuffer(inbuf, dtype="d")


u = np.zeros(3)
comm.Allreduce(np.full(3, rank, dtype="d"), u, op=MPI.Op.Create(add, commute=True))
check("user op on buffers", u, np.full(3, sum(range(size)), dtype="d"))
first = MPI.Op.Create(lambda i, io, dt: None, commute=False)   # keeps the later operand
k = np.zeros(1, dtype="i")
comm.Allreduce(np.array([rank], dtype="i"), k, op=first)
check("non-commutative user op", k.tolist(), [last])
q = [comm.Ibcast(x, root=0), comm.Iallreduce(v, res),
     comm.Ialltoall(np.arange(size, dtype="d"), at),
     comm.Igather(np.array([rank], dtype="i"), np.zeros(size, dtype="i")),
     comm.Iscatter(np.arange(size, dtype="i") if rank == 0 else None, np.zeros(1, dtype="i")),
     comm.Iallgather(np.array([rank], dtype="i"), np.zeros(size, dtype="i")),
     comm.Ireduce(v, np.zeros(2, dtype=np.int32)), comm.Iscan(np.array([1], dtype="i"), sc),
     comm.Iexscan(np.array([1], dtype="i"), ex),
     comm.Ireduce_scatter_block(np.arange(size, dtype="d"), rsb),
     comm.Iallgatherv(np.full(rank + 1, rank, dtype="i"), [agv, counts, displs, MPI.INT]),
     comm.Ialltoallv([np.arange(size, dtype="i"), ones, each, MPI.INT],
                     [atv, ones, each, MPI.INT]),
     comm.Igatherv(np.full(rank + 1, rank, dtype="i"),
                   [np.zeros(sum(counts), dtype="i"), counts, displs, MPI.INT]),
     comm.Iscatterv([blocks(), counts, displs, MPI.INT] if rank == 0 else None, sv),
     comm.Ibarrier()]
check("Waitany", 0 <= MPI.Request.Waitany(q) < len(q), True)
check("Waitall", (MPI.Request.Waitall(q), any(q)), (True, False))
check("after Iallreduce", res, np.array([sum(range(size)), -sum(range(size))], dtype=np.int32))
check("after Iscatterv", sv, np.full(rank + 1, rank, dtype="i"))

# communicators
dup = comm.Dup()
check("Dup", (dup.rank, dup.size, dup.allreduce(1), dup.iallreduce(2).wait()),
      (rank, size, size, 2 * size))
dup.Free()
sub = comm.Split(color=rank % 2, key=-rank)
mates = sorted(range(rank % 2, size, 2), reverse=True)
check("Split", (sub.size, sub.rank, sub.allgather(rank)), (len(mates), mates.index(rank), mates))
sub.Free()
check("Split UNDEFINED", comm.Split(MPI.UNDEFINED if rank == 0 else 1) == MPI.COMM_NULL,
      rank == 0)
check("COMM_SELF", (MPI.COMM_SELF.size, MPI.COMM_SELF.allreduce(rank)), (1, rank))

# CPU torch tensors
import torch
t = torch.full((4,), float(rank))
comm.Allreduce(MPI.IN_PLACE, t, op=MPI.SUM)
check("torch", t.tolist(), [float(sum(range(size)))] * 4)
bf = torch.full((2,), 1.5 if rank == 0 else 0.0, dtype=torch.bfloat16)
comm.Bcast(bf, root=0)
check("torch bfloat16", bf.tolist(), [1.5, 1.5])

print(f"RESULT {rank} {sum(checks)}/{len(checks)}", flush=True)
"""


@pytest.mark.parametrize("n", [2, 3, 4])
def test_every_method_across_ranks(tmp_path, n):
    r = launch(tmp_path, n, EVERY, timeout=180).check()
    results = [line.split() for line in r.stdout.splitlines() if line.startswith("RESULT")]
    assert sorted(int(rank) for _, rank, _ in results) == list(range(n)), r.stdout + r.stderr
    for _, rank, score in results:
        passed, total = score.split("/")
        assert passed == total, r.stdout


# pympi's own API test program (src/pympi/test/api.py), as its users run it.
PYMPI_API = """
from foehn import MPI
comm = MPI.COMM_WORLD
size, rank = comm.size, comm.rank
comm.barrier()
assert comm.bcast(rank, root=0) == 0
assert comm.allgather(rank) == list(range(size))
assert comm.allreduce(rank) == sum(range(size))
assert comm.scatter(list(range(size)), root=0) == rank
assert comm.alltoall(list(range(size))) == [rank] * size
assert comm.gather(rank, root=0) == (list(range(size)) if rank == 0 else None)
assert comm.reduce(rank, root=0) == (sum(range(size)) if rank == 0 else None)
comm.send((rank + 1) % size, dest=(rank + 1) % size)
assert comm.recv(source=(rank - 1) % size) == rank
assert comm.sendrecv((rank + 1) % size, dest=(rank + 1) % size, source=(rank - 1) % size) == rank
MPI.Finalize()
print(f"R{rank}: finalize")
"""


def test_pympi_api_program(tmp_path):
    r = launch(tmp_path, 3, PYMPI_API).check()
    assert lines(r) == ["R0: finalize", "R1: finalize", "R2: finalize"]


# pympi's exception test: a failing reduction raises proto.RemoteException on every
# rank, and the next collective works.
PYMPI_EXC = """
from foehn import MPI
from foehn.proto import RemoteException
comm = MPI.COMM_WORLD
try:
    res = comm.allreduce(None)
except RemoteException as exc:
    res = exc
comm.barrier()
print(f"R{comm.rank}: {type(res).__name__} {comm.allreduce(1)}")
"""


def test_pympi_error_handling_program(tmp_path):
    r = launch(tmp_path, 2, PYMPI_EXC).check()
    assert lines(r) == ["R0: RemoteException 2", "R1: RemoteException 2"]


# pympi's IOPS benchmark, async mode: many ialltoall in flight, collected with
# MPI.Request.Waitsome (the indices of the completed ones); then custom operations.
PYMPI_IOPS = """
import numpy
from foehn import MPI, proto
comm = MPI.COMM_WORLD
size, rank = comm.size, comm.rank
messages = [[a.copy() for a in numpy.array_split(numpy.arange(2 ** k, dtype=numpy.uint8), size)]
            for k in range(4, 16)] * 3
reqs = [comm.ialltoall(m) for m in messages]
finished = 0
while reqs:
    done = set(MPI.Request.Waitsome(reqs))
    finished += len(done)
    reqs = [req for i, req in enumerate(reqs) if i not in done]
ctx = proto.AllReduceContext(proto.ReduceOperation.SUM)
ops = [comm.submit(proto.OperationRequest(ctx.group(size), ctx, rank * i)) for i in range(20)]
sums = [op.wait() for op in ops]
gather = proto.GatherContext()
last = comm.submit(proto.OperationRequest(gather.group(root=size - 1, size=size), gather, rank))
print(f"R{rank}: {finished} {sums == [sum(range(size)) * i for i in range(20)]} {last.wait()}")
"""


def test_pympi_iops_and_many_operations(tmp_path):
    r = launch(tmp_path, 3, PYMPI_IOPS).check()
    assert lines(r) == ["R0: 36 True None", "R1: 36 True None", "R2: 36 True [0, 1, 2]"]


SCENARIOS = """
import os, sys, threading, time
import numpy as np
import foehn
from foehn import MPI
comm = MPI.COMM_WORLD
rank = comm.rank
what = sys.argv[1]
if what == "user-exception":
    def bad(a, b, dt):
        raise KeyError(f"boom on {rank}")
    try:
        comm.Allreduce(np.ones(2), np.zeros(2), op=MPI.Op.Create(bad, commute=True))
        print(rank, "no error")
    except KeyError as e:
        print(rank, "KeyError")
    except MPI.Exception as e:
        print(rank, "MPI.Exception")
    print(rank, "then", comm.allreduce(1))
elif what == "gil":
    spins, stop = [0], threading.Event()
    def spin():
        while not stop.is_set():
            spins[0] += 1
    t = threading.Thread(target=spin)
    t.start()
    if rank == 0:
        got = comm.recv(source=1)          # waits about a second, in C
    else:
        time.sleep(1.0)
        comm.send("hi", dest=0)
        got = "hi"
    stop.set()
    t.join()
    print(rank, got, spins[0] > 10000)
elif what == "death":
    if rank == 1:
        time.sleep(0.5)
        os._exit(0)                        # no goodbye
    try:
        comm.recv(source=1)
    except foehn.PeerError as e:
        print("PeerError", isinstance(e, MPI.Exception), e.Get_error_class() == MPI.ERR_PROC_FAILED)
elif what == "abort":
    if rank == 1:
        comm.Abort(5)
    time.sleep(60)
"""


def test_user_reduction_exception_is_raised_as_itself(tmp_path):
    r = launch(tmp_path, 2, SCENARIOS, "user-exception").check()
    out = lines(r)
    assert "0 then 2" in out and "1 then 2" in out, out       # and the job goes on
    errors = sorted(line.split()[1] for line in out if "then" not in line)
    # whichever rank applied the op raises KeyError; a rank that did not hears MPI.Exception
    assert len(errors) == 2 and errors[0] == "KeyError", out


def test_waits_release_the_gil(tmp_path):
    r = launch(tmp_path, 2, SCENARIOS, "gil").check()
    assert lines(r) == ["0 hi True", "1 hi True"]


def test_a_dead_peer_raises_peer_error(tmp_path):
    r = launch(tmp_path, 2, SCENARIOS, "death")
    assert "PeerError True True" in r.stdout, r.stdout + r.stderr


def test_abort_ends_the_job(tmp_path):
    r = launch(tmp_path, 2, SCENARIOS, "abort", timeout=60)
    assert r.returncode == 5, r.stdout + r.stderr
    assert "rank 1 called Abort(5)" in r.stderr
