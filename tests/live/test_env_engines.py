"""`foehn env --json` on every rank under each real engine: every rank must know its
rank, size, local rank, node index and the job's hosts, as the launcher placed it."""
from __future__ import annotations

import json
import socket

import pytest

from tests.engines.base import foehn_program


def records(result) -> list[dict]:
    """One JSON record per rank from the launch's output, sorted by rank."""
    result.check()
    recs = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return sorted(recs, key=lambda r: (r["rank"] is None, r["rank"]))


def assert_one_host(recs, n, launcher):
    host = socket.gethostname()
    assert [r["rank"] for r in recs] == list(range(n))
    for r in recs:
        assert r["launcher"] == launcher
        assert r["size"] == n
        assert r["local_rank"] == r["rank"]
        assert r["local_size"] == n
        assert r["node_index"] == 0
        assert r["num_nodes"] == 1
        assert r["hosts"] == [host]
        assert r["ranks_per_host"] == [n]
        assert r["hostname"] == host


def test_openmpi_mpirun(openmpi):
    recs = records(openmpi.launch(4, [foehn_program(), "env", "--json"]))
    assert_one_host(recs, 4, "openmpi")
    # Open MPI's ranks share one job id, its PMIx namespace.
    assert len({r["job_id"] for r in recs}) == 1 and recs[0]["job_id"]


def test_mpich_hydra(hydra):
    assert_one_host(records(hydra.launch(4, [foehn_program(), "env", "--json"])), 4, "hydra")


def test_torchrun(torchrun):
    assert_one_host(records(torchrun.launch(4, [foehn_program(), "env", "--json"])), 4,
                    "torchrun")


def test_prterun_tells_rank_and_leaves_the_rest_to_pmix(prterun):
    """prterun exports only PMIX_RANK and PMIX_NAMESPACE: discovery says what it knows
    and leaves size and local rank unknown (the pmix provider fills them)."""
    recs = records(prterun.launch(4, [foehn_program(), "env", "--json"]))
    assert [r["rank"] for r in recs] == [0, 1, 2, 3]
    for r in recs:
        assert r["launcher"] == "pmix"
        assert r["size"] is None and r["local_rank"] is None
        assert r["job_id"] == recs[0]["job_id"]


@pytest.mark.parametrize("mpi", ["none", "pmix", "pmi2"])
def test_srun_one_node(slurm, mpi):
    recs = records(slurm.srun([foehn_program(), "env", "--json"], nodes=1, ntasks=4, mpi=mpi))
    assert [r["rank"] for r in recs] == [0, 1, 2, 3]
    for r in recs:
        assert (r["launcher"], r["scheduler"]) == ("slurm", "slurm")
        assert r["size"] == 4 and r["local_rank"] == r["rank"] and r["local_size"] == 4
        assert r["node_index"] == 0 and r["num_nodes"] == 1
        assert r["hosts"] == ["n1"] and r["hostname"] == "n1"
        assert r["ranks_per_host"] == [4]
        assert r["job_id"] == recs[0]["job_id"]


@pytest.mark.parametrize("mpi", ["none", "pmix", "pmi2"])
def test_srun_two_nodes(slurm, mpi):
    recs = records(slurm.srun([foehn_program(), "env", "--json"], nodes=2, ntasks=4, mpi=mpi))
    assert [r["rank"] for r in recs] == [0, 1, 2, 3]
    for r in recs:
        assert r["size"] == 4 and r["num_nodes"] == 2
        assert r["hosts"] == ["n1", "n2"] and r["ranks_per_host"] == [2, 2]
        assert r["node_index"] == r["rank"] // 2
        assert r["local_rank"] == r["rank"] % 2 and r["local_size"] == 2
        # Each rank's node index points at the host it really runs on.
        assert r["hosts"][r["node_index"]] == r["hostname"]
        assert r["allocation_hosts"] == ["n1", "n2"]


def test_srun_two_nodes_uneven(slurm):
    recs = records(slurm.srun([foehn_program(), "env", "--json"], nodes=2, ntasks=3))
    assert [(r["rank"], r["local_rank"], r["local_size"], r["node_index"], r["hostname"])
            for r in recs] == [(0, 0, 2, 0, "n1"), (1, 1, 2, 0, "n1"), (2, 0, 1, 1, "n2")]
    assert all(r["ranks_per_host"] == [2, 1] for r in recs)


def test_sbatch_script_and_its_steps(slurm):
    """The batch script is a job of one inside a two-node allocation; srun inside it
    starts ranks that know their place (SLURM_PROCID=0 of the script does not leak)."""
    foehn = foehn_program()
    out = slurm.sbatch_wait(f"{foehn} env --json\nsrun {foehn} env --json\n", nodes=2, ntasks=4)
    recs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    batch = [r for r in recs if r["launcher"] == "none"]
    steps = sorted((r for r in recs if r["launcher"] == "slurm"), key=lambda r: r["rank"])
    assert len(batch) == 1
    assert batch[0]["scheduler"] == "slurm"
    assert batch[0]["allocation_hosts"] == ["n1", "n2"]
    assert batch[0]["allocation_slots"] == [2, 2]
    assert (batch[0]["rank"], batch[0]["size"]) == (0, 1)
    assert [r["rank"] for r in steps] == [0, 1, 2, 3]
    assert all(r["hosts"][r["node_index"]] == r["hostname"] for r in steps)
    assert {r["job_id"] for r in recs} == {batch[0]["job_id"]}


def test_shell_output_inside_an_allocation(slurm):
    """What a job script gets from eval "$(foehn env --shell)"."""
    foehn = foehn_program()
    out = slurm.sbatch_wait(
        f'eval "$({foehn} env --shell)"\n'
        'echo "nhosts=$FOEHN_NHOSTS hosts=$FOEHN_HOSTS list=$FOEHN_HOSTLIST '
        'sched=$FOEHN_SCHEDULER ngpus=$FOEHN_NGPUS"\n', nodes=2, ntasks=2)
    assert "nhosts=2 hosts=n1 n2 list=n[1-2] sched=slurm ngpus=0" in out


def assert_two_nodes(recs, launcher):
    """Four ranks, two per node, each knowing the node it really runs on."""
    assert [r["rank"] for r in recs] == [0, 1, 2, 3], recs
    for r in recs:
        assert r["launcher"] == launcher and r["scheduler"] == "slurm"
        assert r["size"] == 4 and r["local_size"] == 2 and r["num_nodes"] == 2
        assert r["hosts"] == ["n1", "n2"]
        assert r["hostname"] == ["n1", "n2"][r["rank"] // 2]
        assert r["node_index"] == r["rank"] // 2
        assert r["local_rank"] == r["rank"] % 2


def sbatch_records(slurm, line):
    out = slurm.sbatch_wait(line + "\n", nodes=2, ntasks=4, timeout=120)
    recs = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    return sorted(recs, key=lambda r: r["rank"])


def test_mpirun_inside_sbatch_two_nodes(slurm, openmpi):
    """The design brief's trap: ranks of mpirun in a batch script inherit SLURM_PROCID=0
    (and those on the second node see the one-task step srun made for mpirun's daemon).
    The innermost launcher's variables must win."""
    recs = sbatch_records(slurm, f"{openmpi.program} --allow-run-as-root --oversubscribe "
                                 f"-n 4 {foehn_program()} env --json")
    assert_two_nodes(recs, "openmpi")


def test_mpich_hydra_inside_sbatch_two_nodes(slurm, hydra):
    """Hydra forwards the batch script's whole environment (SLURMD_NODENAME=n1,
    SLURM_NODEID=0) to ranks on every node: the host name must decide the node.
    -iface eth0: the test nodes' names do not resolve, their addresses do."""
    recs = sbatch_records(slurm, f"{hydra.program} -iface eth0 -n 4 {foehn_program()} env --json")
    assert_two_nodes(recs, "hydra")
