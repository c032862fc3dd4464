"""foehn.MPI under every launcher: pympi's README example (examples/pair_reduce.py,
changed only in its import) runs under `python -m foehn -np 2`, `foehn run -n 4`,
Open MPI's mpirun, prterun, MPICH's mpiexec.hydra and srun on one and two nodes.

The example needs Python 3.12 or newer (itertools.batched), as pympi itself needs
3.13: it runs on the project's .venv-3.13, which has the same wheel installed."""
from __future__ import annotations

import re

import pytest

from tests.engines.base import REPO, missing_engine, run

PY313 = REPO / ".venv-3.13" / "bin" / "python"
EXAMPLE = str(REPO / "examples" / "pair_reduce.py")
# The example prints as it is; unbuffered (PYTHONUNBUFFERED, set on some machines) a
# print() writes its text and its newline apart, and launchers that forward output as it
# comes (mpirun) interleave ranks between the two. Buffered, each rank writes whole lines.
# `foehn run` keeps lines whole itself: its cases run as the environment has it.
BUFFERED = {"PYTHONUNBUFFERED": ""}


@pytest.fixture(scope="module")
def py313() -> str:
    if not PY313.exists():
        missing_engine("python3.13", f"{PY313} is missing (scripts/setup.sh makes it)")
    return str(PY313)


def expected(n: int) -> dict[int, str]:
    """pympi's PairReduce: pairs of ranks summed, the sum kept by the even rank."""
    values = list(range(n))
    sums = [sum(values[i:i + 2]) for i in range(0, n, 2)]
    out = {r: "None" for r in range(n)}
    out.update({2 * i: str(s) for i, s in enumerate(sums)})
    return out


def assert_pair_reduce(result, n: int) -> None:
    result.check()
    lines = re.findall(r"^R(\d+): (\S+)$", result.stdout, re.M)
    inputs = {}
    outputs = {}
    for r, v in lines:
        (outputs if int(r) in inputs else inputs)[int(r)] = v
    assert inputs == {r: str(r) for r in range(n)}, result.stdout + result.stderr
    assert outputs == expected(n), result.stdout + result.stderr


def test_python_m_foehn_np_2(py313):
    assert_pair_reduce(run([py313, "-m", "foehn", "-np", "2", EXAMPLE], timeout=120), 2)


@pytest.mark.parametrize("n", [3, 4])
def test_foehn_run(py313, n):
    foehn = str(PY313.with_name("foehn"))
    assert_pair_reduce(run([foehn, "run", "-n", str(n), py313, EXAMPLE], timeout=120), n)


def test_openmpi_mpirun(openmpi, py313):
    assert_pair_reduce(openmpi.launch(4, [py313, EXAMPLE], env=BUFFERED, timeout=120), 4)


def test_prterun(prterun, py313):
    assert_pair_reduce(prterun.launch(4, [py313, EXAMPLE], env=BUFFERED, timeout=120), 4)


def test_mpich_hydra(hydra, py313):
    assert_pair_reduce(hydra.launch(4, [py313, EXAMPLE], env=BUFFERED, timeout=120), 4)


@pytest.mark.parametrize("nodes", [1, 2])
@pytest.mark.parametrize("mpi", ["pmix", "pmi2"])
def test_srun(slurm, py313, nodes, mpi):
    assert_pair_reduce(slurm.srun([py313, EXAMPLE], nodes=nodes, ntasks=4, mpi=mpi,
                                  env=BUFFERED, timeout=120), 4)
