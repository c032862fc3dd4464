"""The main job: examples/ddp.py, a DDP training over gloo, under every launcher. It
must finish with identical parameters on every rank, with no MASTER_ADDR/MASTER_PORT."""
from __future__ import annotations

import re
import sys

import pytest

from tests.engines.base import REPO, again_if_torch_aborted_at_exit, foehn_program, run

DDP = [sys.executable, str(REPO / "examples" / "ddp.py"), "--steps", "30"]
# Nothing of the caller's may help the bootstrap: these must come from Foehn.
CLEAN = {"MASTER_ADDR": "", "MASTER_PORT": ""}


def fully_trained(result, world: int) -> bool:
    """Every rank printed its digest, and all are equal."""
    digests = re.findall(r"^rank (\d+) of \d+ parameters ([0-9a-f]{16})$", result.stdout, re.M)
    return (sorted(int(r) for r, _ in digests) == list(range(world))
            and len({d for _, d in digests}) == 1)


def trained(launch, world: int) -> None:
    """Runs launch() and checks the training (once more if torch aborted in its
    teardown after a complete training)."""
    result = again_if_torch_aborted_at_exit(launch, lambda r: fully_trained(r, world),
                                            "test_ddp")
    assert_trained(result, world)


def assert_trained(result, world: int):
    result.check()
    out = result.stdout
    digests = re.findall(r"^rank (\d+) of (\d+) parameters ([0-9a-f]{16})$", out, re.M)
    assert sorted(int(r) for r, _, _ in digests) == list(range(world)), out + result.stderr
    assert {int(w) for _, w, _ in digests} == {world}
    assert len({d for _, _, d in digests}) == 1, f"ranks disagree: {digests}"
    losses = [float(x) for x in re.findall(r"^step +\d+ +loss ([0-9.]+)$", out, re.M)]
    assert len(losses) >= 2 and losses[-1] < losses[0], out


def test_foehn_run():
    trained(lambda: run([foehn_program(), "run", "-n", "4", *DDP], timeout=180), 4)


def test_plain_python_is_a_job_of_one():
    assert_trained(run(DDP, timeout=120, env=CLEAN), 1)


def test_openmpi_mpirun(openmpi):
    trained(lambda: openmpi.launch(4, DDP, timeout=180), 4)


def test_prterun_pmix5(prterun):
    trained(lambda: prterun.launch(4, DDP, timeout=180), 4)


def test_mpich_hydra(hydra):
    trained(lambda: hydra.launch(4, DDP, timeout=180), 4)


def test_torchrun(torchrun):
    trained(lambda: torchrun.launch(4, DDP, timeout=180), 4)


@pytest.mark.parametrize("nodes", [1, 2])
@pytest.mark.parametrize("mpi", ["pmix", "pmi2"])
def test_srun(slurm, nodes, mpi):
    trained(lambda: slurm.srun(DDP, nodes=nodes, ntasks=4, mpi=mpi, timeout=180), 4)
