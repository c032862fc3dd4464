"""Bootstrap benchmark: Foehn side by side with its peers, in one run.

1. A whole 4-rank job to a finished init_process_group (bench/init_pg.py): under
   `foehn run`, under `torchrun` (torch's own env:// rendezvous: the peer), and under
   Open MPI's `mpirun` with Foehn's pmix provider.
2. The pure C bootstrap (init + an allgather of every rank's endpoint,
   bench/bootstrap_c.c) for 64, 256 and 1,024 ranks under `foehn run` and under
   `mpirun` (PMIx). Rank 0 reports the bootstrap itself (from the last rank's start
   to having every endpoint); the launch's wall time is measured here.

    .venv/bin/python bench/bootstrap.py [--out bench/results] [--repeat 3]

Writes bootstrap.json, bootstrap.md (with ratios: peer time / Foehn time) and
bootstrap.png. A launch that fails is reported as failed, with its reason.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.engines.mpi import OpenMPI  # noqa: E402
from tests.engines.torchrun import Torchrun  # noqa: E402

PY = sys.executable
FOEHN = str(Path(PY).with_name("foehn"))
BOOTSTRAP_C = REPO / "build" / "c" / "tests" / "bootstrap_c"


def timed(cmd: list[str], env: dict, timeout: float) -> tuple[float | None, str, str]:
    """Wall time of a launch, or None and why when it fails."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "", f"did not finish within {timeout:.0f} s"
    took = time.perf_counter() - t0
    if p.returncode != 0:
        # The first line that says something (launchers frame messages in dashes).
        said = next((line.strip() for line in p.stderr.splitlines()
                     if sum(c.isalpha() for c in line) >= 3), "?")
        return None, p.stdout, f"exited {p.returncode}: {said[:200]}"
    return took, p.stdout, ""


def median_of(runs: list[float | None]) -> float | None:
    ok = [r for r in runs if r is not None]
    return statistics.median(ok) if ok else None


def launchers(n: int, argv: list[str]):
    """(name, command, environment) for each launcher of the comparison."""
    import os
    env = dict(os.environ)
    ompi_cmd, ompi_env = OpenMPI().command(n, argv)
    yield "foehn run", [FOEHN, "run", "-n", str(n), *argv], env
    yield "mpirun (pmix)", ompi_cmd, {**env, **ompi_env}


def whole_job(repeat: int) -> list[dict]:
    import os
    argv = [PY, str(REPO / "bench" / "init_pg.py")]
    rows = []
    tr_cmd, tr_env = Torchrun().command(4, argv)
    cases = list(launchers(4, argv)) + [("torchrun", tr_cmd, {**os.environ, **tr_env})]
    for name, cmd, env in cases:
        runs, why = [], ""
        for _ in range(repeat):
            took, _, err = timed(cmd, env, 180)
            runs.append(took)
            why = why or err
        rows.append({"launcher": name, "ranks": 4, "wall_s": median_of(runs), "error": why,
                     "runs": runs})
    return rows


def c_bootstrap(sizes: list[int], repeat: int) -> list[dict]:
    rows = []
    for n in sizes:
        for name, cmd, env in launchers(n, [str(BOOTSTRAP_C)]):
            walls, boots, why = [], [], ""
            for _ in range(repeat):
                # mpirun may not manage 1,024 ranks on a small machine: give up in time.
                took, out, err = timed(cmd, env, 240)
                walls.append(took)
                rec = next((json.loads(x) for x in out.splitlines() if x.startswith("{")), None)
                boots.append(rec["bootstrap_s"] if rec and took is not None else None)
                why = why or err
                if took is None:
                    break  # one failure says enough; repeating it costs minutes
            rows.append({"launcher": name, "ranks": n, "wall_s": median_of(walls),
                         "bootstrap_s": median_of(boots), "error": why})
    return rows


def ratio(peer: float | None, ours: float | None) -> str:
    if peer is None or ours is None or ours == 0:
        return "–"
    return f"{peer / ours:.1f}×"


def seconds(v: float | None) -> str:
    return "failed" if v is None else (f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s")


def markdown(meta: dict, job: list[dict], boot: list[dict]) -> str:
    ours = next(r["wall_s"] for r in job if r["launcher"] == "foehn run")
    lines = [f"Bootstrap benchmark — {meta['machine']}, {meta['cpus']} CPUs, Python "
             f"{meta['python']}, median of {meta['repeat']}.", "",
             "**Whole 4-rank job to a finished `init_process_group`** (ratio: that "
             "launcher's time / `foehn run`'s)", "",
             "| launcher | wall time | ratio |", "|---|---:|---:|"]
    for r in job:
        note = f" ({r['error']})" if r["error"] and r["wall_s"] is None else ""
        lines.append(f"| {r['launcher']} | {seconds(r['wall_s'])}{note} | "
                     f"{ratio(r['wall_s'], ours)} |")
    lines += ["", "**Pure C bootstrap: init + allgather of every rank's endpoint** (bootstrap: "
              "from the last rank's start to having every endpoint; ratio: mpirun / foehn run)",
              "", "| ranks | foehn run: bootstrap | wall | mpirun (pmix): bootstrap | wall | "
              "ratio bootstrap | ratio wall |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for n in sorted({r["ranks"] for r in boot}):
        f = next(r for r in boot if r["ranks"] == n and r["launcher"] == "foehn run")
        m = next(r for r in boot if r["ranks"] == n and r["launcher"] == "mpirun (pmix)")
        mwall = seconds(m["wall_s"]) + (f" ({m['error']})" if m["wall_s"] is None else "")
        lines.append(f"| {n:,} | {seconds(f['bootstrap_s'])} | {seconds(f['wall_s'])} | "
                     f"{seconds(m['bootstrap_s'])} | {mwall} | "
                     f"{ratio(m['bootstrap_s'], f['bootstrap_s'])} | "
                     f"{ratio(m['wall_s'], f['wall_s'])} |")
    return "\n".join(lines) + "\n"


def plot(job: list[dict], boot: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = [r["launcher"] for r in job]
    a.bar(names, [r["wall_s"] or 0 for r in job], color=["#2a7", "#888", "#c73"][:len(job)])
    a.set_ylabel("seconds")
    a.set_title("4-rank job to a finished init_process_group")
    for launcher, color in (("foehn run", "#2a7"), ("mpirun (pmix)", "#888")):
        pts = [(r["ranks"], r["wall_s"]) for r in boot
               if r["launcher"] == launcher and r["wall_s"] is not None]
        if pts:
            b.plot(*zip(*pts), "o-", color=color, label=f"{launcher}: wall")
        pts = [(r["ranks"], r["bootstrap_s"]) for r in boot
               if r["launcher"] == launcher and r["bootstrap_s"] is not None]
        if pts:
            b.plot(*zip(*pts), "s--", color=color, label=f"{launcher}: bootstrap")
    b.set_xscale("log", base=2)
    b.set_yscale("log")
    b.set_xlabel("ranks on one machine")
    b.set_ylabel("seconds")
    b.set_title("C bootstrap: init + endpoint allgather")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    import os
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="64,256,1024")
    args = ap.parse_args()
    if not BOOTSTRAP_C.exists():
        sys.exit(f"{BOOTSTRAP_C} is missing: meson setup build/c && meson compile -C build/c")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "repeat": args.repeat}
    job = whole_job(args.repeat)
    boot = c_bootstrap([int(s) for s in args.sizes.split(",")], args.repeat)
    (out / "bootstrap.json").write_text(json.dumps({"meta": meta, "whole_job": job,
                                                    "c_bootstrap": boot}, indent=2))
    table = markdown(meta, job, boot)
    (out / "bootstrap.md").write_text(table)
    plot(job, boot, out / "bootstrap.png")
    print(table)


if __name__ == "__main__":
    main()
