"""foehn.MPI when things go wrong (tests/comm/fail_prog.py): a rank killed mid-job, ranks
calling different collectives, buffers of the wrong size. Nobody may hang; errors name
what went wrong."""
from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.engines.base import REPO, foehn_program, missing_engine, run

PY = sys.executable
PROG = str(REPO / "tests" / "comm" / "fail_prog.py")
TIMEOUT = 90


def results(r) -> dict:
    """{rank: [records...]}: from the files of --out where the launch had one (stdout
    lines of several ranks may interleave), else from the RESULT lines."""
    out = {}
    argv = list(r.argv)
    if "--out" in argv:
        folder = Path(argv[argv.index("--out") + 1])
        files = sorted(folder.glob("*.json"), key=lambda f: [int(x) for x in f.stem.split(".")])
        for f in files:
            rec = json.loads(f.read_text())
            out.setdefault(rec["rank"], []).append(rec)
        return out
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            rec = json.loads(line[len("RESULT "):])
            out.setdefault(rec["rank"], []).append(rec)
    return out


def explain(r) -> str:
    return (f"{' '.join(r.argv)} exited {r.returncode}\n--- stdout\n{r.stdout[-4000:]}\n"
            f"--- stderr\n{r.stderr[-4000:]}")


_OUT_BASE: list[Path] = []


@pytest.fixture(autouse=True)
def _out_base(tmp_path):
    """Where each launch's ranks write their records: under the test's tmp_path."""
    _OUT_BASE[:] = [tmp_path]
    yield
    _OUT_BASE.clear()


def _out():
    return ["--out", tempfile.mkdtemp(prefix="records-", dir=_OUT_BASE[0])]


def foehn_launch(n, args, grace=None):
    g = ["--grace", str(grace)] if grace is not None else []
    return run([foehn_program(), "run", *g, "-n", str(n), PY, PROG, *args, *_out()],
               timeout=TIMEOUT)


def mpirun_launch(openmpi, n, args, extra=()):
    return openmpi.launch(n, [PY, PROG, *args, *_out()], timeout=TIMEOUT, extra=extra)


@pytest.fixture(scope="session")
def mpi4py_ok():
    r = run([PY, "-c", "import mpi4py.MPI"], timeout=60)
    if r.returncode != 0:
        missing_engine("mpi4py", r.stderr[-500:])


# ---------------------------------------------------------------- (a) a rank is killed

def check_killed(r, death, launcher_fails=True):
    assert death.exists(), "rank 2 never got to die:\n" + explain(r)
    died = float(death.read_text())
    got = results(r)
    for rank in (0, 1, 3):
        recs = got.get(rank)
        assert recs, f"rank {rank} reported nothing (stopped before it raised?)\n" + explain(r)
        rec = recs[0]
        assert rec["event"] == "raised", f"rank {rank}: {rec}\n" + explain(r)
        took = rec["t"] - died
        assert took < 10, f"rank {rank} raised {took:.1f} s after rank 2 died: {rec}"
        assert "rank 2" in rec["msg"], f"rank {rank}'s error does not name rank 2: {rec}"
        assert rec["mpi_exception"], f"rank {rank}'s error is no MPI.Exception: {rec}"
    assert 2 not in got
    if launcher_fails:  # mpirun --enable-recovery exits 0 whatever its ranks did
        assert r.returncode != 0, explain(r)


@pytest.mark.parametrize("where", ["recv", "coll", "ialltoall"])
def test_killed_rank_foehn_run(tmp_path, where):
    death = tmp_path / "death"
    # a long grace: the others must notice themselves, not be stopped by foehn run
    r = foehn_launch(4, [f"killed-{where}", "--death", str(death)], grace=12)
    check_killed(r, death)


@pytest.mark.parametrize("where", ["recv", "coll"])
def test_killed_rank_mpirun(openmpi, tmp_path, where):
    death = tmp_path / "death"
    # --enable-recovery: mpirun leaves the others running, so that what they see is
    # foehn.MPI's own news of the death (without it mpirun kills them at once)
    r = mpirun_launch(openmpi, 4, [f"killed-{where}", "--death", str(death)],
                      extra=("--enable-recovery",))
    check_killed(r, death, launcher_fails=False)


# ---------------------------------------------------------------- (b) mismatched collectives

def check_mismatch(r, n, took):
    """Rank 0 broadcast, the others reduced. The root of a broadcast may be done before
    anyone can tell it (it only sends: it goes on to a barrier); no other rank may
    complete its call, and at least those that got the root's message must say that the
    collectives do not match. A rank that reports nothing was stopped by the launcher
    once another failed, which is fine: what matters is that nobody waits for ever
    (run() fails a launch that outlives TIMEOUT)."""
    assert took < TIMEOUT, explain(r)
    got = results(r)
    for rank in range(1, n):
        recs = got.get(rank, [])
        assert not recs or recs[0]["event"] == "raised", \
            f"rank {rank} completed a collective its peers did not call: {recs}\n" + explain(r)
    says = [k for k, recs in got.items()
            if any(re.search(r"mismatch", x.get("msg", ""), re.I) for x in recs)]
    assert says, "no rank raised an error that mentions the mismatch\n" + explain(r)
    for k in says:
        assert all(x["mpi_exception"] for x in got[k] if x["event"] == "raised"), got[k]
    assert r.returncode != 0, explain(r)


@pytest.mark.parametrize("form", ["upper", "lower"])
def test_mismatched_collectives_foehn_run(form):
    t0 = time.monotonic()
    r = foehn_launch(4, [f"mismatch-{form}"])
    check_mismatch(r, 4, time.monotonic() - t0)


def test_mismatched_collectives_mpirun(openmpi):
    t0 = time.monotonic()
    r = mpirun_launch(openmpi, 3, ["mismatch-upper"])
    check_mismatch(r, 3, time.monotonic() - t0)


# ---------------------------------------------------------------- (c) wrong buffer sizes

def test_allreduce_different_counts_raises():
    r = foehn_launch(3, ["allreduce-counts"])
    got = results(r)
    completed = {k: recs[0] for k, recs in got.items() if recs[0]["event"] == "completed"}
    raised = {k: recs[0] for k, recs in got.items() if recs[0]["event"] == "raised"}
    assert raised, "no rank raised\n" + explain(r)
    assert not completed, f"ranks completed with counts that differ: {completed}\n" + explain(r)
    assert r.returncode != 0


def _rec(got, rank, event, r):
    recs = [x for x in got.get(rank, []) if x["event"] == event]
    assert recs, f"rank {rank} has no {event!r} record\n" + explain(r)
    return recs[0]


@pytest.mark.parametrize("impl", ["foehn", "mpi4py"])
def test_recv_too_small_raises_truncation(impl, request):
    if impl == "mpi4py":
        request.getfixturevalue("mpi4py_ok")
        openmpi = request.getfixturevalue("openmpi")
        r = mpirun_launch(openmpi, 2, ["recv-truncate", "--impl", impl])
    else:
        r = foehn_launch(2, ["recv-truncate", "--impl", impl])
    got = results(r)
    rec = _rec(got, 1, "raised", r)
    assert re.search(r"truncat", rec["msg"], re.I), rec
    # the communicator goes on: the next message arrives whole
    assert _rec(got, 1, "after", r)["got"] == [0.0, 1.0, 2.0]
    r.check()


@pytest.mark.parametrize("impl", ["foehn", "mpi4py"])
def test_scatter_indivisible_raises_clearly(impl, request):
    if impl == "mpi4py":
        request.getfixturevalue("mpi4py_ok")
        openmpi = request.getfixturevalue("openmpi")
        r = mpirun_launch(openmpi, 2, ["scatter-indivisible", "--impl", impl])
    else:
        r = foehn_launch(2, ["scatter-indivisible", "--impl", impl])
    got = results(r)
    rec = _rec(got, 0, "raised", r)
    assert re.search(r"multiple|divisib", rec["msg"], re.I), rec
    assert "5" in rec["msg"], f"the message should say how many elements it got: {rec}"
    assert _rec(got, 1, "after", r)["got"] == [2.0, 3.0]
    r.check()


def test_spec_count_larger_than_buffer_raises():
    """[buf, count, type] with a count beyond buf: mpi4py reads (or writes) past the
    buffer without a word; foehn.MPI must refuse, sending and receiving."""
    r = foehn_launch(2, ["spec-mismatch"])
    got = results(r)
    send = _rec(got, 0, "raised", r)
    recv = _rec(got, 1, "raised", r)
    assert send["what"] == "send" and recv["what"] == "recv"
    assert _rec(got, 1, "after", r)["got"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    r.check()
