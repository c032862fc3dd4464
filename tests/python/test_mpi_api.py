"""foehn.MPI in one process: COMM_SELF and a COMM_WORLD of one rank. Every method, the
datatypes buffers get, mpi4py's message specs, requests, ops, and the errors for bad
input; pympi's proto structures and Comm.submit. Finalize and Abort run in a child
process (they end the communicator for good). Many ranks: tests/live/test_mpi_face.py."""
import array
import dataclasses
import pickle
import subprocess
import sys
import threading
import time

import pytest

import foehn
from foehn import MPI, proto

np = pytest.importorskip("numpy")

WORLD, SELF = MPI.COMM_WORLD, MPI.COMM_SELF
COMMS = [WORLD, SELF]


def child(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout)


# ---- the environment ---------------------------------------------------------------

def test_initialised_on_import_with_one_rank():
    assert MPI.Is_initialized() and not MPI.Is_finalized()
    for comm in COMMS:
        assert (comm.rank, comm.size, comm.Get_rank(), comm.Get_size()) == (0, 1, 0, 1)
        assert comm.Is_intra() and not comm.Is_inter() and isinstance(comm, MPI.Intracomm)
    assert WORLD.Get_name() == "MPI_COMM_WORLD" and SELF.name == "MPI_COMM_SELF"
    assert WORLD.Get_attr(MPI.TAG_UB) == 2**31 - 1
    assert MPI.Query_thread() == MPI.Init_thread() == MPI.THREAD_MULTIPLE
    MPI.Init()  # already done: nothing happens


def test_wtime_processor_name_and_version():
    import socket
    t0 = MPI.Wtime()
    time.sleep(0.01)
    assert 0.005 < MPI.Wtime() - t0 < 5 and MPI.Wtick() > 0
    assert MPI.Get_processor_name() == socket.gethostname()
    assert MPI.Get_version() == (3, 1) and "Foehn" in MPI.Get_library_version()


def test_finalize_is_idempotent_and_ends_the_communicator():
    p = child("from foehn import MPI\nimport foehn\n"
              "MPI.Finalize(); MPI.Finalize()\n"
              "print(MPI.Is_initialized(), MPI.Is_finalized())\n"
              "try:\n    MPI.COMM_WORLD.barrier()\nexcept foehn.Error as e:\n    print('err', e)\n")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == "True True"
    assert "finalized" in p.stdout.splitlines()[1]


def test_finalized_at_exit_with_requests_and_helpers_pending():
    p = child("from foehn import MPI\n"
              "c = MPI.COMM_WORLD\n"
              "r = c.irecv(source=0, tag=9)\n"          # never matched
              "c.ibcast(1).wait()\n"                      # starts the collective worker
              "c.Irecv(bytearray(4), source=0, tag=9)\n"  # dropped unwaited
              "print('ok')\n")
    assert p.returncode == 0 and p.stdout == "ok\n", p.stderr


def test_abort_ends_the_process_with_the_code():
    p = child("from foehn import MPI\nMPI.COMM_WORLD.Abort(7)\nprint('not reached')")
    assert p.returncode == 7 and "not reached" not in p.stdout
    assert "Abort(7)" in p.stderr


# ---- point to point ----------------------------------------------------------------

@pytest.mark.parametrize("comm", COMMS, ids=["world", "self"])
def test_lowercase_send_recv_to_self(comm):
    status = MPI.Status()
    comm.isend({"a": [1, 2]}, dest=0, tag=3)
    assert comm.recv(source=0, tag=3, status=status) == {"a": [1, 2]}
    assert (status.source, status.tag, status.Get_source(), status.Get_tag()) == (0, 3, 0, 3)
    assert status.Get_count() == status.count > 0 and status.Get_error() == MPI.SUCCESS
    req = comm.irecv(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG)
    comm.send("x", dest=0, tag=4)
    assert req.wait() == "x"
    buf = bytearray(64)
    comm.isend([5], dest=0, tag=5)
    assert comm.recv(buf, source=0, tag=5) == [5]           # a buffer for the pickle
    comm.isend(6, dest=0, tag=6)
    assert comm.irecv(buf, source=0, tag=6).wait() == 6
    comm.isend(7, dest=0, tag=8)
    assert comm.sendrecv(8, dest=0, sendtag=7, source=0, recvtag=7) == 8
    assert comm.recv(source=0, tag=8) == 7


def test_probe_iprobe_and_proc_null():
    status = MPI.Status()
    assert not WORLD.iprobe(source=0, tag=11)
    WORLD.isend("probe me", dest=0, tag=11)
    assert WORLD.probe(source=0, tag=11, status=status) is True and status.tag == 11
    assert WORLD.iprobe(source=MPI.ANY_SOURCE, tag=11) and WORLD.Iprobe(0, 11)
    assert WORLD.recv(source=0, tag=11) == "probe me"
    WORLD.send("nowhere", dest=MPI.PROC_NULL)
    assert WORLD.recv(source=MPI.PROC_NULL, status=status) is None
    assert status.source == MPI.PROC_NULL and status.Get_count() == 0


def test_a_collective_spec_counts_one_block():
    out = np.zeros(4)
    WORLD.Scatter([np.arange(6.0), 4, MPI.DOUBLE], out, root=0)      # 4 per rank, not total
    assert out.tolist() == [0, 1, 2, 3]
    WORLD.Allgather([np.arange(6.0), 2, MPI.DOUBLE], [out, 2, MPI.DOUBLE])
    assert out.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="overruns"):
        WORLD.Gather(np.zeros(4), [np.zeros(2), 4, MPI.DOUBLE], root=0)


def test_uppercase_send_recv_and_specs():
    a = np.arange(6, dtype="i")
    b = np.zeros(6, dtype="i")
    status = MPI.Status()
    WORLD.Isend(a, dest=0, tag=1)
    WORLD.Recv([b, MPI.INT], source=0, tag=1, status=status)
    assert np.array_equal(a, b) and status.Get_count(MPI.INT) == 6
    assert status.Get_count(MPI.LONG_DOUBLE) == MPI.UNDEFINED   # 24 bytes: not whole
    b[:] = 0
    WORLD.Isend([a, 2, MPI.INT], dest=0, tag=2)            # [buf, count, datatype]
    WORLD.Recv([b, (2, 3), MPI.INT], source=0, tag=2)      # [buf, (count, displ), datatype]
    assert b.tolist() == [0, 0, 0, 0, 1, 0]
    WORLD.Isend([a, 2, 1, MPI.INT], dest=0, tag=3)         # [buf, count, displ, datatype]
    WORLD.Recv([b, 2, "i"], source=0, tag=3)               # a type character
    assert b[:2].tolist() == [1, 2]
    WORLD.Isend([a, np.dtype("i")], dest=0, tag=4)         # a NumPy dtype
    WORLD.Recv(b, source=0, tag=4)
    assert np.array_equal(a, b)
    r = WORLD.Irecv(b, source=0, tag=5)
    WORLD.Send(np.full(6, 9, dtype="i"), dest=0, tag=5)
    assert r.Wait() is True and (b == 9).all()
    c = np.zeros(6, dtype="i")
    WORLD.Sendrecv(a, dest=0, sendtag=6, recvbuf=c, source=0, recvtag=6)
    assert np.array_equal(a, c)
    WORLD.Sendrecv_replace(c, dest=0, source=0)
    assert np.array_equal(a, c)


def test_buffers_of_every_kind():
    for send, recv in [(b"abcd", bytearray(4)), (bytearray(b"wxyz"), memoryview(bytearray(4))),
                       (array.array("d", [1.5, 2.5]), array.array("d", [0, 0])),
                       (memoryview(np.arange(4, dtype="u2")), np.zeros(4, dtype="u2"))]:
        WORLD.Isend(send, dest=0, tag=20)
        WORLD.Recv(recv, source=0, tag=20)
        assert bytes(memoryview(recv)) == bytes(memoryview(send))
    fortran = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    out = np.zeros((2, 3), order="F")
    WORLD.Isend(fortran, dest=0, tag=21)
    WORLD.Recv(out, source=0, tag=21)
    assert np.array_equal(fortran, out)


def test_torch_tensors():
    torch = pytest.importorskip("torch")
    t = torch.arange(4, dtype=torch.float32)
    out = torch.zeros(4)
    WORLD.Allreduce(t, out, op=MPI.SUM)
    assert out.tolist() == [0.0, 1.0, 2.0, 3.0]
    bf = torch.tensor([1.5, -2.0], dtype=torch.bfloat16)
    got = torch.zeros(2, dtype=torch.bfloat16)
    WORLD.Isend(bf, dest=0, tag=22)
    WORLD.Recv(got, source=0, tag=22)
    assert got.tolist() == [1.5, -2.0]
    acc = torch.tensor([1.0, 2.0], dtype=torch.bfloat16)
    MPI.SUM.Reduce_local(bf, acc)                      # arithmetic in bfloat16
    assert acc.tolist() == [2.5, 0.0]
    with pytest.raises(TypeError, match="datatype"):
        WORLD.Bcast(torch.zeros(2, dtype=torch.float8_e4m3fn))


# ---- datatypes ---------------------------------------------------------------------

INFERRED = [("i1", MPI.INT8_T), ("u1", MPI.UINT8_T), ("i2", MPI.INT16_T), ("u2", MPI.UINT16_T),
            ("i4", MPI.INT32_T), ("u4", MPI.UINT32_T), ("i8", MPI.INT64_T), ("u8", MPI.UINT64_T),
            ("f2", MPI.FLOAT16), ("f4", MPI.FLOAT), ("f8", MPI.DOUBLE), ("g", MPI.LONG_DOUBLE),
            ("c8", MPI.C_FLOAT_COMPLEX), ("c16", MPI.C_DOUBLE_COMPLEX), ("?", MPI.C_BOOL)]


@pytest.mark.parametrize("dtype,datatype", INFERRED, ids=[d for d, _ in INFERRED])
def test_datatype_inferred_from_numpy(dtype, datatype):
    a = np.arange(3).astype(dtype)
    _, inferred = MPI._byte_view(a, False)
    assert inferred._code == datatype._code and inferred.size == np.dtype(dtype).itemsize
    acc = np.ones(3, dtype=dtype)
    if dtype != "?":
        MPI.SUM.Reduce_local(a, acc)                   # foehn adds in that dtype
        assert np.array_equal(acc, np.arange(3).astype(dtype) + np.ones(3, dtype=dtype))


def test_datatype_wraps_in_its_width():
    a = np.array([100, 100], dtype="i1")
    MPI.SUM.Reduce_local(a, a.copy())
    acc = np.array([100, -100], dtype="i1")
    MPI.SUM.Reduce_local(a, acc)
    assert acc.tolist() == [-56, 0]


def test_datatype_from_other_buffers_and_pairs():
    assert MPI._byte_view(array.array("l", [1]), False)[1] is MPI.LONG
    assert MPI._byte_view(bytearray(2), False)[1] is MPI.UNSIGNED_CHAR
    pair = np.dtype([("v", "f8"), ("i", "i4")], align=True)
    assert MPI._byte_view(np.zeros(2, dtype=pair), False)[1] is MPI.DOUBLE_INT
    assert MPI._byte_view(np.zeros(2, dtype=">i4"), False)[1] is None   # foreign byte order


def test_datatype_objects():
    assert MPI.DOUBLE.Get_size() == MPI.DOUBLE.size == 8 and MPI.DOUBLE.Get_extent() == (0, 8)
    assert MPI.INT.Get_name() == "MPI_INT" and getattr(MPI, "2INT") is MPI.TWOINT
    assert MPI.TWOINT.size == 8 and MPI.DOUBLE_INT.size == 16 and MPI.SHORT_INT.size == 8
    assert MPI.C_DOUBLE_COMPLEX.size == 16 and MPI.BFLOAT16.size == MPI.FLOAT16.size == 2
    assert MPI.DOUBLE.Commit() is MPI.DOUBLE and MPI.Datatype(MPI.INT) == MPI.INT
    assert not MPI.DATATYPE_NULL and MPI.LONG.size == np.dtype("l").itemsize


# ---- collectives on one rank ----------------------------------------------------------

@pytest.mark.parametrize("comm", COMMS, ids=["world", "self"])
def test_lowercase_collectives(comm):
    comm.barrier()
    assert comm.bcast({"k": 1}, root=0) == {"k": 1}
    assert comm.scatter([["a"]], root=0) == ["a"]
    assert comm.gather(3, root=0) == [3] and comm.allgather(4) == [4]
    assert comm.alltoall([5]) == [5]
    assert comm.reduce(6, op=MPI.SUM, root=0) == 6 and comm.allreduce(7) == 7
    assert comm.scan(8) == 8 and comm.exscan(9) is None
    requests = [comm.ibcast(1), comm.iscatter([2]), comm.igather(3), comm.iallgather(4),
                comm.ialltoall([5]), comm.ireduce(6), comm.iallreduce(7), comm.iscan(8),
                comm.iexscan(9), comm.ibarrier()]
    assert MPI.Request.waitall(requests) == [1, 2, [3], [4], [5], 6, 7, 8, None, None]
    with pytest.raises(ValueError, match="one object per rank"):
        comm.scatter([1, 2], root=0)


def test_ops_on_objects_follow_mpi4py():
    assert MPI.SUM(1, 2) == 3 and MPI.PROD(3, 4) == 12 and MPI.SUM([1], [2]) == [1, 2]
    assert MPI.MAX(1, 2) == 2 and MPI.MIN(1, 2) == 1
    assert (MPI.LAND(2, 3), MPI.LOR(0, 3), MPI.LXOR(1, 2)) == (True, True, False)  # bools
    assert MPI.LAND(1, 0) is False and MPI.LXOR(0, 5) is True
    assert MPI.BAND(6, 3) == 2 and MPI.BOR(6, 3) == 7 and MPI.BXOR(6, 3) == 5
    assert MPI.MINLOC((1, 5), (1, 2)) == (1, 2) and MPI.MAXLOC((3, 0), (2, 1)) == (3, 0)
    assert MPI.REPLACE(1, 2) == 2 and MPI.NO_OP(1, 2) == 1
    assert MPI.SUM.Is_commutative() and not MPI.REPLACE.is_commutative
    assert WORLD.allreduce(5, op=MPI.MINLOC) == (5, 0)            # a bare value: its rank
    assert WORLD.allreduce(5, op=proto.ReduceOperation.MAXLOC) == (5, 0)
    assert WORLD.allreduce(4, op=proto.ReduceOperation.SUM) == 4
    cat = MPI.Op.Create(lambda x, y, dt: x + y + "!", commute=False)
    assert cat("a", "b") == "ab!" and not cat.is_commutative and not cat.is_predefined
    assert WORLD.allreduce("a", op=cat) == "a"                   # one rank: nothing applied
    with pytest.raises(TypeError):
        WORLD.allreduce(1, op=len)
    with pytest.raises(ValueError):
        WORLD.allreduce(1, op=MPI.OP_NULL)


def test_user_op_on_buffers_here():
    seen = []

    def fn(inbuf, inoutbuf, datatype):
        seen.append(datatype)
        out = np.frombuffer(inoutbuf, dtype="d")
        out += np.frombuffer(inbuf, dtype="d") * 10

    op = MPI.Op.Create(fn, commute=True)
    acc = np.ones(2)
    op.Reduce_local(np.ones(2), acc)
    assert acc.tolist() == [11.0, 11.0] and seen == [MPI.DOUBLE]
    out = np.zeros(2)
    WORLD.Allreduce(np.full(2, 3.0), out, op=op)    # one rank: a copy
    assert out.tolist() == [3.0, 3.0]


@pytest.mark.parametrize("nonblocking", [False, True], ids=["blocking", "nonblocking"])
def test_uppercase_collectives(nonblocking):
    def run(name, *args, **kwargs):
        if nonblocking:
            req = getattr(WORLD, "I" + name[0].lower() + name[1:])(*args, **kwargs)
            assert isinstance(req, MPI.Request)
            req.Wait()
            assert not req
        else:
            assert getattr(WORLD, name)(*args, **kwargs) is None

    a = np.arange(4, dtype="d")
    out = np.zeros(4)
    run("Barrier")
    run("Bcast", a, root=0)
    for name in ("Gather", "Scatter", "Allgather", "Alltoall"):
        out[:] = 0
        run(name, a, out)
        assert np.array_equal(out, a), name
    for name, op in (("Reduce", MPI.MAX), ("Allreduce", MPI.SUM), ("Scan", MPI.PROD),
                     ("Reduce_scatter_block", MPI.MIN)):
        out[:] = 0
        run(name, a, out, op=op)
        assert np.array_equal(out, a), name
    ex = np.full(4, -1.0)
    run("Exscan", a, ex)
    assert (ex == -1).all()                         # rank 0's is left untouched
    counts, displs = [3], [1]
    for name in ("Gatherv", "Allgatherv"):
        out[:] = 0
        run(name, [a, 3, MPI.DOUBLE], [out, counts, displs, MPI.DOUBLE])
        assert out.tolist() == [0, 0, 1, 2], name
    out[:] = 0
    run("Scatterv", [a, (counts, displs), MPI.DOUBLE], [out, 3, MPI.DOUBLE])
    assert out.tolist() == [1, 2, 3, 0]
    out[:] = 0
    run("Alltoallv", [a, counts, displs, MPI.DOUBLE], [out, counts, [0], MPI.DOUBLE])
    assert out.tolist() == [1, 2, 3, 0]


def test_in_place():
    a = np.arange(4, dtype="i")
    for name in ("Allreduce", "Scan", "Exscan"):
        WORLD.__getattribute__(name)(MPI.IN_PLACE, a, op=MPI.SUM)
        assert a.tolist() == [0, 1, 2, 3], name
    WORLD.Reduce(MPI.IN_PLACE, a, root=0)
    WORLD.Reduce_scatter_block(MPI.IN_PLACE, a)
    for name in ("Gather", "Allgather"):
        getattr(WORLD, name)(MPI.IN_PLACE, a)
    WORLD.Scatter(a, MPI.IN_PLACE, root=0)
    WORLD.Alltoall(MPI.IN_PLACE, a)
    WORLD.Gatherv(MPI.IN_PLACE, [a, [4], [0], MPI.INT], root=0)
    WORLD.Allgatherv(MPI.IN_PLACE, [a, [4], [0], MPI.INT])
    WORLD.Alltoallv(MPI.IN_PLACE, [a, [4], [0], MPI.INT])
    WORLD.Scatterv([a, [4], [0], MPI.INT], MPI.IN_PLACE, root=0)
    assert a.tolist() == [0, 1, 2, 3]


def test_vector_specs():
    v = MPI._vector([np.zeros(6, dtype="i"), MPI.INT], True, 1)     # counts: the whole buffer
    assert (v.counts, v.displs, v.bcounts) == ([6], [0], [24])
    v = MPI._vector([np.zeros(6, dtype="i"), 2, MPI.INT], True, 3)  # one count for every rank
    assert (v.counts, v.displs) == ([2, 2, 2], [0, 2, 4])
    v = MPI._vector((bytearray(8), [1, 2], [5, 0], MPI.BYTE), True, 2)
    assert (v.counts, v.bdispls) == ([1, 2], [5, 0])
    with pytest.raises(ValueError, match="split evenly"):
        MPI._vector([np.zeros(5, dtype="i"), MPI.INT], True, 2)
    with pytest.raises(ValueError, match="overruns"):
        MPI._vector([np.zeros(4, dtype="i"), [2, 2], [0, 3], MPI.INT], True, 2)
    with pytest.raises(ValueError, match="one entry per rank"):
        MPI._vector([np.zeros(4, dtype="i"), [2, 2], MPI.INT], True, 3)


# ---- errors ------------------------------------------------------------------------

def test_bad_message_specs():
    a = np.zeros(4, dtype="i")
    with pytest.raises(TypeError, match="expected"):
        WORLD.Send([a, 1, 2, 3, MPI.INT], dest=0)
    with pytest.raises(TypeError, match="empty"):
        WORLD.Send([], dest=0)
    with pytest.raises(ValueError, match="overruns"):
        WORLD.Send([a, 5, MPI.INT], dest=0)                     # a short buffer
    with pytest.raises(ValueError, match="overruns"):
        WORLD.Send([a, (3, 2), MPI.INT], dest=0)
    with pytest.raises(ValueError, match="whole number"):
        WORLD.Send([bytearray(7), MPI.INT], dest=0)
    with pytest.raises(ValueError, match=">= 0"):
        WORLD.Send([a, -1, MPI.INT], dest=0)
    with pytest.raises(TypeError, match="integer"):
        WORLD.Send([a, 1.5, MPI.INT], dest=0)
    with pytest.raises(TypeError, match="buffer protocol"):
        WORLD.Send([1, 2, 3], dest=0)
    with pytest.raises(TypeError, match="buffer protocol"):
        WORLD.Bcast("text")
    with pytest.raises(TypeError, match="not an MPI datatype"):
        WORLD.Send([a, "zz"], dest=0)
    with pytest.raises(TypeError, match="DATATYPE_NULL"):
        WORLD.Send([a, MPI.DATATYPE_NULL], dest=0)


def test_unknown_dtypes_and_unusable_buffers():
    with pytest.raises(TypeError, match="cannot tell the MPI datatype"):
        WORLD.Bcast(np.zeros(2, dtype=[("a", "f8"), ("b", "i1")]))
    with pytest.raises(TypeError, match="cannot tell"):
        WORLD.Bcast(np.zeros(2, dtype="V8"))
    with pytest.raises(TypeError, match="cannot tell"):
        WORLD.Allreduce(np.zeros(2, dtype=">i4"), np.zeros(2, dtype=">i4"))
    WORLD.Bcast([np.zeros(2, dtype="V8"), MPI.BYTE])            # fine with a datatype
    with pytest.raises(BufferError, match="writable"):
        WORLD.Recv(b"read-only", source=0)
    with pytest.raises(BufferError, match="contiguous"):
        WORLD.Bcast(np.zeros((4, 4))[:, 1])
    with pytest.raises(ValueError, match="differ"):
        WORLD.Gather(np.zeros(2), np.zeros(3), root=0)
    with pytest.raises(TypeError, match="datatypes differ"):
        WORLD.Allreduce(np.zeros(2, dtype="f"), np.zeros(2, dtype="d"))
    with pytest.raises(ValueError, match="too short"):
        WORLD.Allreduce(np.zeros(4), np.zeros(2))
    with pytest.raises(MPI.Exception):                         # no arithmetic on bytes' BYTE
        WORLD.Allreduce([bytearray(2), MPI.BYTE], [bytearray(2), MPI.BYTE], op=MPI.SUM)
    with pytest.raises(MPI.Exception):
        WORLD.Allreduce(np.zeros(2), np.zeros(2), op=MPI.BAND)  # bitwise on floats


def test_bad_ranks_tags_and_communicators():
    with pytest.raises(MPI.Exception) as e:
        WORLD.send(1, dest=1)
    assert isinstance(e.value, ValueError) and e.value.Get_error_class() == MPI.ERR_ARG
    with pytest.raises(ValueError, match="root 3"):
        WORLD.bcast(1, root=3)
    with pytest.raises(ValueError, match="tag"):
        WORLD.send(1, dest=0, tag=-5)
    with pytest.raises(MPI.Exception, match="cannot be freed"):
        WORLD.Free()
    with pytest.raises(MPI.Exception, match="COMM_NULL"):
        MPI.COMM_NULL.barrier()
    assert not MPI.COMM_NULL and MPI.COMM_NULL == MPI.Comm()


def test_truncation_and_cancel():
    WORLD.Isend(b"0123456789", dest=0, tag=30)
    with pytest.raises(MPI.Exception) as e:
        WORLD.Recv(bytearray(4), source=0, tag=30)
    assert e.value.Get_error_class() == MPI.ERR_TRUNCATE
    req = WORLD.Irecv(bytearray(4), source=0, tag=31)
    req.Cancel()
    status = MPI.Status()
    req.Wait(status)
    assert status.Is_cancelled() and status.cancelled


def test_exception_classes():
    exc = MPI.Exception(MPI.ERR_TRUNCATE)
    assert isinstance(exc, foehn.Error) and exc.Get_error_class() == MPI.ERR_TRUNCATE
    assert int(exc) == MPI.ERR_TRUNCATE and "truncated" in exc.Get_error_string()
    assert MPI.Get_error_string(MPI.ERR_RANK) == "invalid rank"
    assert issubclass(MPI._PeerError, foehn.PeerError) and issubclass(MPI._PeerError, MPI.Exception)
    assert issubclass(MPI._TimeoutError, foehn.TimeoutError)
    err = MPI._TimeoutError(-5, "waited too long")
    assert str(err) == "waited too long" and err.Get_error_class() == MPI.ERR_OTHER


# ---- requests ----------------------------------------------------------------------

def test_request_null_and_reuse():
    assert not MPI.REQUEST_NULL and MPI.REQUEST_NULL == MPI.Request()
    req = WORLD.isend(1, dest=0, tag=40)
    assert req and req != MPI.REQUEST_NULL
    assert req.wait() is None and not req and req == MPI.REQUEST_NULL
    assert req.wait() is None and req.Test() is True        # a null request is complete
    assert WORLD.recv(source=0, tag=40) == 1


def test_test_and_get_status():
    req = WORLD.irecv(source=0, tag=41)
    assert req.test() == (False, None) and not req.Test() and not req.Get_status()
    WORLD.send("v", dest=0, tag=41)
    status = MPI.Status()
    deadline = time.monotonic() + 10
    while not req.Get_status(status):
        assert time.monotonic() < deadline
    assert status.tag == 41 and req                         # Get_status leaves it active
    assert req.test() == (True, "v") and not req


def test_waitsome_over_c_requests_one_complete_already():
    """The engine's one-call wait (no helper-thread request alive): a request that
    Get_status saw complete counts as complete; one still pending is left active."""
    reqs = [WORLD.irecv(source=0, tag=53), WORLD.irecv(source=0, tag=54)]
    WORLD.send("c", dest=0, tag=54)
    while not reqs[1].Get_status():
        pass
    assert MPI.Request.Waitsome(reqs) == [1] and reqs[0] and not reqs[1]
    assert MPI.Request.waitsome([MPI.REQUEST_NULL, reqs[1]]) == (None, None)
    WORLD.send("d", dest=0, tag=53)
    assert MPI.Request.waitsome(reqs) == ([0], ["d"])


def test_wait_any_some_all_over_mixed_requests():
    reqs = [WORLD.irecv(source=0, tag=50), WORLD.iallreduce(2), WORLD.Irecv(bytearray(1), 0, 51)]
    assert MPI.Request.Waitany(reqs) == 1 and not reqs[1]
    assert MPI.Request.Testany(reqs) == (MPI.UNDEFINED, False)
    assert MPI.Request.Testsome(reqs) == [] and not MPI.Request.Testall(reqs)
    WORLD.send("a", dest=0, tag=50)
    WORLD.Send(b"b", dest=0, tag=51)
    done = MPI.Request.Waitsome(reqs)
    while len(done) < 2:
        done += MPI.Request.Waitsome(reqs)
    assert sorted(done) == [0, 2]
    assert MPI.Request.Waitsome(reqs) is None and MPI.Request.Waitany(reqs) == MPI.UNDEFINED
    reqs = [WORLD.isend(i, dest=0, tag=52) for i in range(3)] + [WORLD.ibcast("x")]
    statuses = []
    assert MPI.Request.Waitall(reqs, statuses) is True and len(statuses) == 4
    assert [WORLD.recv(source=0, tag=52) for _ in range(3)] == [0, 1, 2]
    reqs = [WORLD.iallgather(i) for i in range(3)]
    flag, values = MPI.Request.testall(reqs)        # all done, or none consumed
    assert (values if flag else MPI.Request.waitall(reqs)) == [[0], [1], [2]]
    reqs = [WORLD.ibcast(5), WORLD.ibarrier()]
    index, value = MPI.Request.waitany(reqs)
    assert (index, value) in ((0, 5), (1, None))


def test_waits_run_without_the_gil():
    spins = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            spins[0] += 1
    t = threading.Thread(target=spin)
    t.start()
    try:
        req = SELF._c.irecv(None, 0, 60)                    # nothing will come
        with pytest.raises(foehn.TimeoutError):
            req.wait(timeout=0.3)
        assert req.active                                    # the wait ran out, not the receive
        req.cancel()
        assert req.wait()[4] == 1                            # cancelled
    finally:
        stop.set()
        t.join()
    assert spins[0] > 1000


# ---- communicators -----------------------------------------------------------------

def test_dup_split_free_compare():
    dup = WORLD.Dup()
    assert dup.size == 1 and dup != WORLD and dup.allreduce(3) == 3
    assert WORLD.Compare(WORLD) == MPI.IDENT and WORLD.Compare(dup) == MPI.CONGRUENT
    assert MPI.Comm(dup) == dup
    dup.Free()
    assert not dup and dup == MPI.COMM_NULL
    with pytest.raises(MPI.Exception):
        dup.Get_size()
    sub = WORLD.Split(color=3, key=0)
    assert sub.size == 1 and sub.bcast("s") == "s"
    sub.ibcast(1).wait()                                     # starts its worker
    sub.Free()
    assert WORLD.Split(color=MPI.UNDEFINED) == MPI.COMM_NULL
    assert WORLD.Clone().Get_size() == 1


# ---- pympi's custom operations -----------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Concat(proto.OperationContext):
    suffix: str

    def group(self, size: int) -> proto.CommunicationGroup:
        return proto.CommunicationGroup(range(size), range(size))

    def apply(self, src, dst):
        return {d: "".join(str(src[r]) for r in sorted(src)) + self.suffix for d in dst}


def test_submit_on_one_rank():
    ctx = Concat("!")
    request = WORLD.submit(proto.OperationRequest(ctx.group(1), ctx, 7))
    assert request.wait() == "7!"
    with pytest.raises(ValueError, match="rank 5"):
        WORLD.submit(proto.OperationRequest(proto.CommunicationGroup([5], [5]), ctx, 1))
    none = proto.OperationRequest(proto.CommunicationGroup([], []), ctx, 1)
    assert WORLD.submit(none).wait() is None                 # not in the group


def test_submit_failures_reach_the_destinations():
    class Broken(Concat):
        def apply(self, src, dst):
            raise KeyError("nope")
    ctx = Broken("")
    with pytest.raises(KeyError):
        WORLD.submit(proto.OperationRequest(ctx.group(1), ctx, 1)).wait()
    group = proto.CommunicationGroup([0], [0])
    with pytest.raises(ValueError, match="no context"):
        WORLD.submit(proto.OperationRequest(group, None, 1)).wait()
    assert SELF.submit(proto.OperationRequest(group, proto.BroadcastContext(), 3)).wait() == 3


def test_proto_structures():
    g = proto.CommunicationGroup({3, 1, 2}, range(0, 4, 2))
    assert list(g.src) == [1, 2, 3] and list(g.dst) == [0, 2] and g.root == 1
    assert 0 in g and 3 in g and 5 not in g
    assert proto.CommunicationGroup([], [4, 2]).root == 2
    assert g == proto.CommunicationGroup([1, 2, 3], [2, 0]) and hash(g) == hash(
        proto.CommunicationGroup([1, 2, 3], [2, 0]))
    assert pickle.loads(pickle.dumps(g)) == g
    assert g.src == {1, 2, 3} and isinstance(g.src, frozenset) is False
    assert dict(zip(g.dst, "ab")) == {0: "a", 2: "b"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.src = None
    with pytest.raises(TypeError):
        proto.OperationContext()
    op = proto.OperationRequest(g, Concat(""), 5)
    assert (op.group, op.data) == (g, 5) and op.id is not None
    assert dataclasses.replace(op, data=6).data == 6
    assert [e.name for e in proto.ReduceOperation][:3] == ["MAX", "MIN", "SUM"]


@pytest.mark.skipif(sys.version_info < (3, 10), reason="dataclass slots= is 3.10+")
def test_slotted_frozen_subclass():
    cls = dataclasses.make_dataclass("Slotted", [("k", int)], bases=(proto.OperationContext,),
                                     frozen=True, slots=True,
                                     namespace={"group": lambda self, size: None,
                                                "apply": lambda self, src, dst: {}})
    obj = cls(3)
    assert obj.k == 3 and not hasattr(obj, "__dict__")


def test_ready_made_contexts():
    src = {0: 3, 1: 1, 2: 1}
    dst = proto.RankSet([0, 1, 2])
    assert proto.AllReduceContext(proto.ReduceOperation.MINLOC).apply(src, dst)[0] == (1, 1)
    assert proto.AllReduceContext().apply(src, dst)[2] == 5
    assert proto.AllGatherContext().apply(src, dst)[1] == [3, 1, 1]
    assert proto.ScatterContext().apply({0: "abc"}, dst) == {0: "a", 1: "b", 2: "c"}
    assert proto.AllToAllContext().apply({0: [1, 2], 1: [3, 4]}, proto.RankSet([0, 1])) == \
        {0: [1, 3], 1: [2, 4]}
    assert proto.SendRecvContext().group(src=1, dst=0) == proto.CommunicationGroup([1], [0])
    assert proto.ReduceContext().group(root=1, size=3).dst == {1}
    assert proto.BroadcastContext().apply({2: "x"}, dst) == {0: "x", 1: "x", 2: "x"}
