"""The communicator from C (tests/c/test_p2p.c, no Python in the ranks) under every
engine that can start it: the full mesh comes up through each pm provider, also
across the two Slurm nodes, and a rank that dies mid-job makes the others fail fast,
naming it."""
from __future__ import annotations

import re

import pytest

from tests.engines.base import foehn_program, run


def all_passed(result, n: int) -> None:
    result.check()
    summaries = re.findall(r"^p2p \(rank (\d+) of (\d+)\): (\d+) passed, (\d+) failed$",
                           result.stdout, re.M)
    assert sorted(int(r) for r, _, _, _ in summaries) == list(range(n)), \
        result.stdout + result.stderr
    assert all(int(w) == n and int(f) == 0 and int(p) > 0 for _, w, p, f in summaries), \
        result.stdout + result.stderr


@pytest.mark.parametrize("n", [1, 2, 5])
def test_foehn_run(test_p2p, n):
    all_passed(run([foehn_program(), "run", "-n", str(n), test_p2p], timeout=120), n)


def test_foehn_run_sockets_only(test_p2p):
    # Large messages between ranks of one host go by single copy; this keeps the socket
    # path for them tested on one host too (across Slurm nodes it is the only path).
    all_passed(run([foehn_program(), "run", "-n", "3", test_p2p], timeout=120,
                   env={"FOEHN_SINGLE_COPY": "0"}), 3)


def test_openmpi_mpirun(openmpi, test_p2p):
    all_passed(openmpi.launch(4, [test_p2p], timeout=120), 4)


def test_prterun(prterun, test_p2p):
    all_passed(prterun.launch(4, [test_p2p], timeout=120), 4)


def test_mpich_hydra(hydra, test_p2p):
    all_passed(hydra.launch(4, [test_p2p], timeout=120), 4)


@pytest.mark.parametrize("mpi", ["pmix", "pmi2"])
def test_srun_two_nodes(slurm, test_p2p, mpi):
    all_passed(slurm.srun([test_p2p], nodes=2, ntasks=4, mpi=mpi, timeout=120), 4)


def survivors_saw_the_death(result, n: int, dead: int) -> None:
    summaries = re.findall(r"^p2p death \(rank (\d+)\): (\d+) passed, (\d+) failed$",
                           result.stdout, re.M)
    assert sorted(int(r) for r, _, _ in summaries) == [r for r in range(n) if r != dead], \
        result.stdout + result.stderr
    assert all(int(f) == 0 for _, _, f in summaries), result.stdout + result.stderr
    assert result.returncode != 0  # the dead rank's own status


def test_a_dead_rank_is_named_under_foehn_run(test_p2p):
    # --grace: foehn run would stop the survivors itself; here they must notice alone.
    r = run([foehn_program(), "run", "-n", "4", "--grace", "30", "--", test_p2p, "--die", "2"],
            timeout=60)
    survivors_saw_the_death(r, 4, 2)


def test_a_dead_rank_is_named_across_slurm_nodes(slurm, test_p2p):
    # Without --kill-on-bad-exit=0 srun would stop the others first; the harness adds
    # =1, so later flags win: srun lets them run on.
    r = slurm.srun([test_p2p, "--die", "1"], nodes=2, ntasks=4, mpi="pmix", timeout=60,
                   extra=["--kill-on-bad-exit=0"])
    survivors_saw_the_death(r, 4, 1)
