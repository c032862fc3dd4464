"""The Slurm harness itself, exercised for real: a cluster of two slurmd "nodes"."""
from __future__ import annotations

import sys
import textwrap

import pytest

pytestmark = pytest.mark.usefixtures("slurm")

SHOW = ["/bin/sh", "-c", 'echo "$SLURM_PROCID $(hostname) ${PMIX_RANK-none} ${PMI_FD-none}"']


def _rows(result):
    """One (procid, host, pmix_rank, pmi_fd) per task, sorted by procid."""
    rows = [line.split() for line in result.check().stdout.splitlines() if line.strip()]
    return sorted(((int(r[0]), r[1], r[2], r[3]) for r in rows), key=lambda r: r[0])


def test_start_is_fast(slurm):
    assert slurm.start_seconds is not None and slurm.start_seconds < 15


def test_srun_four_tasks_one_node(slurm):
    rows = _rows(slurm.srun(SHOW, nodes=1, ntasks=4))
    assert [r[0] for r in rows] == [0, 1, 2, 3]
    assert {r[1] for r in rows} == {"n1"}


def test_srun_two_nodes_two_tasks_each(slurm):
    rows = _rows(slurm.srun(SHOW, nodes=2, ntasks=4))
    assert [r[0] for r in rows] == [0, 1, 2, 3]
    hosts = [r[1] for r in rows]
    assert hosts.count("n1") == 2 and hosts.count("n2") == 2, hosts


def test_srun_two_nodes_uneven(slurm):
    rows = _rows(slurm.srun(SHOW, nodes=2, ntasks=3))
    assert [r[1] for r in rows] == ["n1", "n1", "n2"]


def test_srun_sees_the_test_python(slurm):
    out = slurm.srun(["python3", "-c", "import sys; print(sys.executable)"]).check().stdout
    assert out.strip() == sys.executable or out.strip().startswith(sys.prefix), out


def test_srun_pmix_gives_pmix_rank(slurm):
    rows = _rows(slurm.srun(SHOW, nodes=1, ntasks=4, mpi="pmix"))
    assert [r[2] for r in rows] == ["0", "1", "2", "3"]


def test_srun_pmi2_gives_pmi_fd(slurm):
    rows = _rows(slurm.srun(SHOW, nodes=1, ntasks=2, mpi="pmi2"))
    assert all(r[3].isdigit() for r in rows), rows


# A PMIx client through ctypes: Put the host name, Commit, Fence, Get every peer's.
PMIX_CLIENT = textwrap.dedent("""
    import ctypes, socket, sys
    lib = ctypes.CDLL("libpmix.so.2")
    class Proc(ctypes.Structure):
        _fields_ = [("nspace", ctypes.c_char * 256), ("rank", ctypes.c_uint32)]
    class Value(ctypes.Structure):
        _fields_ = [("type", ctypes.c_uint16), ("data", ctypes.c_uint64 * 4)]
    me = Proc()
    assert lib.PMIx_Init(ctypes.byref(me), None, 0) == 0, "PMIx_Init"
    host = socket.gethostname().encode()
    v = Value(); v.type = 3  # PMIX_STRING
    buf = ctypes.create_string_buffer(host)
    v.data[0] = ctypes.cast(buf, ctypes.c_void_p).value
    assert lib.PMIx_Put(3, b"foehn.host", ctypes.byref(v)) == 0, "PMIx_Put"  # PMIX_GLOBAL
    assert lib.PMIx_Commit() == 0, "PMIx_Commit"
    assert lib.PMIx_Fence(None, 0, None, 0) == 0, "PMIx_Fence"
    wild = Proc(); wild.nspace = me.nspace; wild.rank = 0xFFFFFFFE
    pv = ctypes.POINTER(Value)()
    assert lib.PMIx_Get(ctypes.byref(wild), b"pmix.job.size", None, 0, ctypes.byref(pv)) == 0
    size = pv.contents.data[0] & 0xFFFFFFFF
    hosts = []
    for r in range(size):
        peer = Proc(); peer.nspace = me.nspace; peer.rank = r
        assert lib.PMIx_Get(ctypes.byref(peer), b"foehn.host", None, 0, ctypes.byref(pv)) == 0
        hosts.append(ctypes.cast(pv.contents.data[0], ctypes.c_char_p).value.decode())
    lib.PMIx_Fence(None, 0, None, 0)
    lib.PMIx_Finalize(None, 0)
    print(me.rank, size, ",".join(hosts))
""")


def test_srun_pmix_exchange_across_nodes(slurm):
    r = slurm.srun([sys.executable, "-c", PMIX_CLIENT], nodes=2, ntasks=4, mpi="pmix")
    lines = sorted(r.check().stdout.split("\n"))
    lines = [l.split() for l in lines if l.strip()]
    assert [int(l[0]) for l in lines] == [0, 1, 2, 3], r.stdout
    assert {l[1] for l in lines} == {"4"}
    assert {l[2] for l in lines} == {"n1,n1,n2,n2"}, r.stdout


def test_sbatch_wait(slurm):
    out = slurm.sbatch_wait('echo "batch on $(hostname) job $SLURM_JOB_ID"\n'
                            'srun -n4 /bin/sh -c \'echo "task $SLURM_PROCID $(hostname)"\'\n',
                            nodes=2, ntasks=4)
    lines = out.splitlines()
    assert lines[0].startswith("batch on n1 job "), out
    tasks = sorted(l for l in lines if l.startswith("task "))
    assert tasks == ["task 0 n1", "task 1 n1", "task 2 n2", "task 3 n2"], out


def test_salloc_runs_here_with_an_allocation(slurm):
    r = slurm.salloc(["/bin/sh", "-c", 'echo "$SLURM_JOB_NUM_NODES $SLURM_JOB_NODELIST"'],
                     nodes=2, ntasks=2).check()
    assert r.stdout.split()[-2:] == ["2", "n[1-2]"], r.stdout
