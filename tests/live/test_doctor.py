"""foehn doctor under the real engines: both nodes of a two-node Slurm allocation reach
rank 0; an address the other node cannot reach, and a PMIx launcher without a loadable
libpmix, are named, with what to do, and fail the run."""
from __future__ import annotations

import json

from tests.engines.base import foehn_program


# srun forwards a task's long lines in pieces of 1 KiB, between which its own messages
# ("srun: error: ... Exited with exit code 1") may land: the reports go through a file.
SAVED = "/tmp/foehn-doctor-$SLURM_JOB_ID.json"


def through_file(line: str) -> str:
    return f"{line} > {SAVED}\necho status=$?\ncat {SAVED}\nrm -f {SAVED}\n"


def reports(out: str) -> list[dict]:
    return [json.loads(x) for x in out.splitlines() if x.startswith('{"schema":"foehn.doctor')]


def by_name(report: dict) -> dict:
    return {c["name"]: c for c in report["checks"]}


def test_two_node_allocation_reaches_rank0(slurm):
    foehn = foehn_program()
    out = slurm.sbatch_wait(through_file(f"{foehn} launch -- {foehn} doctor --json"), nodes=2,
                            ntasks=2, timeout=180)
    assert "status=0" in out, out
    (r,) = reports(out)
    assert r["ok"] is True, out
    assert (r["rank"], r["size"], r["host"]) == (0, 2, "n1")
    assert [(x["rank"], x["host"], x["reaches_rank0"]) for x in r["ranks"]] == [
        (0, "n1", True), (1, "n2", True)]
    checks = by_name(r)
    assert checks["job"]["found"].startswith("launcher slurm")
    assert not checks["address"]["found"].startswith("127.")  # the route to n2, not loopback


def test_unreachable_rank0_is_named(slurm):
    foehn = foehn_program()
    out = slurm.sbatch_wait(through_file(f"FOEHN_IFACE=lo {foehn} launch -- {foehn} doctor "
                                         "--json"), nodes=2, ntasks=2, timeout=180, check=False)
    assert "status=1" in out, out
    (r,) = reports(out)
    assert r["ok"] is False
    reach = by_name(r)["reach"]
    assert reach["level"] == "fail"
    assert "1 of 2 ranks cannot reach rank 0 at 127.0.0.1:" in reach["found"], reach
    assert "rank 1 (host n2)" in reach["found"]
    assert "FOEHN_IFACE" in reach["advice"]
    assert [x["reaches_rank0"] for x in r["ranks"]] == [True, False]


def test_missing_libpmix_under_a_pmix_launcher(openmpi):
    result = openmpi.launch(2, [foehn_program(), "doctor"],
                            env={"FOEHN_LIBPMIX": "/nonexistent/libpmix.so.2"}, timeout=120)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert "FAIL  libpmix" in text, text
    assert ("started by a PMIx launcher (PMIX_RANK is set) but cannot load libpmix: install "
            "the PMIx library of that launcher (Debian: libpmix2) or set FOEHN_LIBPMIX") in text
