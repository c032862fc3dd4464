"""The engine harness itself, on the real launchers: ranks start, know who they are, get
the environment the test gives them, and a failing rank fails the launch."""
from __future__ import annotations

import re
import sys

import pytest

from .base import rank_environments, venv_bin
from .fixtures_mpi import hydra, openmpi, prterun, torchrun  # noqa: F401  (fixtures)

N = 4


def marked(stdout: str) -> list[str]:
    """What ranks printed as @@...@@ (ranks' output may interleave without newlines)."""
    return re.findall(r"@@(.*?)@@", stdout)
ENGINES = ["openmpi", "prterun", "hydra", "torchrun"]


@pytest.fixture(params=ENGINES)
def engine(request):
    return request.getfixturevalue(request.param)


def test_ranks_know_who_they_are(engine, tmp_path):
    recs = rank_environments(engine, N, tmp_path)
    assert len(recs) == N, recs
    assert len({r["pid"] for r in recs}) == N
    ranks = sorted(engine.rank_of(r["env"]) for r in recs)
    assert ranks == list(range(N))
    for key, want in (("size", {str(N)}), ("local_size", {str(N)}), ("node", {"0"})):
        var = engine.vars.get(key)
        if var:
            assert {r["env"].get(var) for r in recs} == want, (key, var)
    var = engine.vars.get("local_rank")
    if var:
        assert sorted(int(r["env"][var]) for r in recs) == list(range(N))


def test_env_reaches_ranks(engine, tmp_path):
    value = "a b=c,d;e"
    recs = rank_environments(engine, N, tmp_path,
                             env={"FOEHN_HARNESS_PROBE": value, "FOEHN_HARNESS_EMPTY": ""})
    assert [r["env"].get("FOEHN_HARNESS_PROBE") for r in recs] == [value] * N
    assert [r["env"].get("FOEHN_HARNESS_EMPTY") for r in recs] == [""] * N


def test_ranks_run_programs_of_the_test_environment(engine):
    r = engine.launch(N, ["python", "-c", "import sys; print(f'@@{sys.prefix}@@')"]).check()
    assert marked(r.stdout) == [sys.prefix] * N, (r.stdout, r.stderr, venv_bin())


def test_failing_rank_fails_the_launch(engine):
    var = engine.vars["rank"]
    code = f"import os, sys; sys.exit(3 if os.environ[{var!r}] == '1' else 0)"
    r = engine.launch(N, [sys.executable, "-c", code])
    assert r.returncode != 0, (r.stdout, r.stderr)


_PMIX_PROBE = r"""
import ctypes, os, sys
lib = ctypes.CDLL("libpmix.so.2", mode=ctypes.RTLD_GLOBAL)
lib.PMIx_Get_version.restype = ctypes.c_char_p
class Proc(ctypes.Structure):
    _fields_ = [("nspace", ctypes.c_char * 256), ("rank", ctypes.c_uint32)]
me = Proc()
rc = lib.PMIx_Init(ctypes.byref(me), None, ctypes.c_size_t(0))
assert rc == 0, rc
assert me.rank == int(os.environ["PMIX_RANK"]), (me.rank, os.environ["PMIX_RANK"])
assert lib.PMIx_Fence(None, ctypes.c_size_t(0), None, ctypes.c_size_t(0)) == 0
print("@@" + lib.PMIx_Get_version().decode() + "@@", flush=True)
lib.PMIx_Finalize(None, ctypes.c_size_t(0))
"""


@pytest.mark.parametrize("name,version", [("openmpi", "OpenPMIx 4."), ("prterun", "OpenPMIx 5.")])
def test_ranks_reach_the_pmix_server(request, name, version):
    """dlopen("libpmix.so.2") in a rank finds a client that talks to the launcher's server:
    the Debian PMIx 4.2 under mpirun, the wheel's PMIx 5 under prterun."""
    engine = request.getfixturevalue(name)
    r = engine.launch(N, [sys.executable, "-c", _PMIX_PROBE]).check()
    got = marked(r.stdout)
    assert len(got) == N and all(x.startswith(version) for x in got), r.stdout
    assert "PMIX ERROR" not in r.stderr, r.stderr
