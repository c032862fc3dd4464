"""foehn launch inside a real two-node Slurm allocation (sbatch on the test cluster):
the plan it makes there, the placement of the ranks it starts, and the main job (the
DDP example) run through it."""
from __future__ import annotations

import json
import re

from tests.engines.base import Result, foehn_program
from tests.live.test_ddp import DDP, assert_trained


def batch(slurm, lines: list[str]) -> str:
    return slurm.sbatch_wait("\n".join(lines) + "\n", nodes=2, ntasks=4, timeout=240)


def test_launch_fills_a_two_node_allocation(slurm):
    foehn = foehn_program()
    out = batch(slurm, [f"{foehn} launch --dry-run --json -- true",
                        f"{foehn} launch --ppn 2 -- {foehn} env --json"])
    recs = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    plan = next(r for r in recs if r.get("schema") == "foehn.launch/1")
    # no accelerators: one rank per host of the allocation
    assert plan["launcher"] == "srun" and plan["hosts"] == ["n1", "n2"], plan
    assert (plan["n"], plan["ppn"], plan["nhosts"]) == (2, 1, 2)
    assert plan["argv"][:5] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1",
                                "--mpi=pmix"]
    ranks = sorted((r for r in recs if r.get("schema") == "foehn.job/1"),
                   key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1, 2, 3], out
    for r in ranks:
        assert r["launcher"] == "slurm" and r["size"] == 4 and r["local_size"] == 2
        assert r["hostname"] == ["n1", "n2"][r["rank"] // 2], r
        assert r["node_index"] == r["rank"] // 2 and r["local_rank"] == r["rank"] % 2


def test_launch_runs_the_ddp_example_on_two_nodes(slurm):
    foehn = foehn_program()
    out = batch(slurm, [f"{foehn} launch --ppn 2 -- {' '.join(DDP)}"])
    assert_trained(Result(["foehn", "launch"], 0, out, ""), 4)


def test_a_failing_line_is_named_and_its_status_kept(slurm):
    foehn = foehn_program()
    out = slurm.sbatch_wait(f"{foehn} launch -- sh -c 'exit 3'\necho status=$?\n", nodes=2,
                            ntasks=2, timeout=120, check=False)
    assert "status=3" in out, out
    assert re.search(r"foehn launch: srun .* exited with status 3", out), out
