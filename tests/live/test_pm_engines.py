"""The process-management layer in C (tests/c/pm_exchange.c): put, commit, fence and get
through each provider, under the engine that serves it."""
from __future__ import annotations

import json

import pytest

from tests.engines.base import foehn_program


def exchanged(result, n: int, provider: str) -> list[dict]:
    result.check()
    recs = sorted((json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")),
                  key=lambda r: r["rank"])
    assert [r["rank"] for r in recs] == list(range(n)), result.stdout + result.stderr
    for r in recs:
        assert r["ok"] and r["size"] == n and r["provider"] == provider
    return recs


def one_host(recs):
    n = len(recs)
    for r in recs:
        assert (r["local_rank"], r["local_size"], r["node_index"], r["num_nodes"]) == \
            (r["rank"], n, 0, 1)


@pytest.mark.parametrize("n", [1, 4])
def test_foehn_run(pm_exchange, n):
    from tests.engines.base import run
    one_host(exchanged(run([foehn_program(), "run", "-n", str(n), pm_exchange], timeout=60),
                       n, "foehn"))


def test_single_process(pm_exchange):
    from tests.engines.base import run
    one_host(exchanged(run([pm_exchange], timeout=30), 1, "single"))


def test_openmpi_pmix_4(openmpi, pm_exchange):
    one_host(exchanged(openmpi.launch(4, [pm_exchange]), 4, "pmix"))


def test_prterun_pmix_5(prterun, pm_exchange):
    recs = exchanged(prterun.launch(4, [pm_exchange]), 4, "pmix")
    # PRRTE numbers ranks on a node in its own mapping order (0,2,1,3 here): the
    # local ranks are whatever PMIx says, but each exactly once.
    assert sorted(r["local_rank"] for r in recs) == [0, 1, 2, 3]
    assert all((r["local_size"], r["node_index"], r["num_nodes"]) == (4, 0, 1) for r in recs)


def test_pmix_second_initialisation_under_mpirun(openmpi, pm_exchange):
    one_host(exchanged(openmpi.launch(4, [pm_exchange, "--nested"]), 4, "pmix"))


def test_pmix_second_initialisation_under_srun(slurm, pm_exchange):
    exchanged(slurm.srun([pm_exchange, "--nested"], nodes=2, ntasks=4, mpi="pmix"), 4, "pmix")


def test_hydra_pmi1(hydra, pm_exchange):
    one_host(exchanged(hydra.launch(4, [pm_exchange]), 4, "pmi"))


@pytest.mark.parametrize("mpi,provider", [("pmix", "pmix"), ("pmi2", "pmi")])
def test_srun_one_node(slurm, pm_exchange, mpi, provider):
    one_host(exchanged(slurm.srun([pm_exchange], nodes=1, ntasks=4, mpi=mpi), 4, provider))


@pytest.mark.parametrize("mpi,provider", [("pmix", "pmix"), ("pmi2", "pmi")])
def test_srun_two_nodes(slurm, pm_exchange, mpi, provider):
    recs = exchanged(slurm.srun([pm_exchange], nodes=2, ntasks=4, mpi=mpi), 4, provider)
    for r in recs:
        assert (r["local_rank"], r["local_size"], r["node_index"], r["num_nodes"]) == \
            (r["rank"] % 2, 2, r["rank"] // 2, 2)


def test_srun_without_pmi_says_what_to_do(slurm, pm_exchange):
    r = slurm.srun([pm_exchange], nodes=1, ntasks=2, mpi="none")
    assert r.returncode != 0
    assert "srun started these 2 ranks without a process-management service (--mpi=none)" \
        in r.stderr and "--mpi=pmix" in r.stderr, r.stderr


def test_missing_libpmix_under_mpirun(openmpi, pm_exchange):
    r = openmpi.launch(2, [pm_exchange], env={"FOEHN_LIBPMIX": "/nonexistent/libpmix.so.2"})
    assert r.returncode != 0
    assert "could not load a PMIx library; tried /nonexistent/libpmix.so.2" in r.stderr
    assert "FOEHN_LIBPMIX" in r.stderr and "libpmix2" in r.stderr


def test_a_library_that_is_not_pmix(openmpi, pm_exchange):
    r = openmpi.launch(2, [pm_exchange], env={"FOEHN_LIBPMIX": "libc.so.6"})
    assert r.returncode != 0
    assert "libc.so.6 has no PMIx_Init, so it is not a PMIx client library" in r.stderr, r.stderr
