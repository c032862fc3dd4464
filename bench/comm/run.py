"""Communication benchmark: foehn.MPI side by side with mpi4py (Open MPI), torch gloo and
pympi, in one run, on 2 and 4 ranks.

    .venv/bin/python bench/comm/run.py [--out bench/results] [--ranks 2,4] [--impls ...]

1. Latency (8 bytes) and bandwidth (1 KiB .. 64 MiB, powers of 4) of allreduce, bcast,
   allgather, alltoall and a ping-pong, per implementation and rank count (one job
   each: worker_mpi.py for foehn.MPI, mpi4py and pympi, worker_gloo.py for gloo).
2. pympi's own iops workload (iops.py, its definition re-implemented): lowercase
   alltoall of 500 messages of 2 MiB, synchronous and asynchronous, and its mixed-size
   asynchronous run, for pympi and foehn.MPI.

Writes comm.json, comm.md (tables with ratios: peer time / foehn time, above 1 means
foehn is faster), comm_latency.png and comm_bandwidth.png into --out. Every job runs
under a time limit and an idle limit (no line for that long: hung); an implementation
or measurement that fails is reported as failed, with its reason, and the job goes on
with what is left. pympi runs in its own Python 3.13 venv (.venv-pympi, made here when
missing).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from _measure import BANDWIDTH_SIZES, LATENCY_SIZE, OPS  # noqa: E402
from tests.engines.mpi import OpenMPI  # noqa: E402

PY = sys.executable
FOEHN = str(Path(PY).with_name("foehn"))
PYMPI_VERSION = "1.4.11"
PYMPI_VENV = REPO / ".venv-pympi"

LABELS = {
    "foehn": "foehn.MPI",
    "mpi4py": "mpi4py + Open MPI",
    "mpi4py-tcp": "mpi4py + Open MPI (btl tcp)",
    "gloo": "torch gloo",
    "pympi": "pympi",
}
NOTES = {
    "foehn": "uppercase buffer calls on numpy arrays; TCP between the ranks",
    "mpi4py": "the same code as foehn.MPI; Open MPI's defaults on one machine (shared "
              "memory: btl vader)",
    "mpi4py-tcp": "the same, with Open MPI held to TCP (--mca btl tcp,self on lo): the "
                  "transport foehn.MPI uses",
    "gloo": "torch.distributed on CPU tensors, process group from "
            "foehn.pytorch.init_process_group(backend=\"gloo\")",
    "pympi": f"pympi {PYMPI_VERSION} (Python 3.13): Allreduce, Bcast, Send are its own "
             "uppercase calls; allgather, alltoall and recv(buf=) are lowercase (it has no "
             "Allgather, Alltoall or Recv); every call goes through rank 0's server",
}
COLORS = {"foehn": "#2a7", "mpi4py": "#555", "mpi4py-tcp": "#999", "gloo": "#c73",
          "pympi": "#57c"}

# pympi's iops workloads: name -> iops.py arguments ({mixed}: --mixed-max-size)
IOPS = {
    "sync 500 x 2 MiB": ["sync", "--step-size", "0", "--max-size", "21", "--reps", "500"],
    "async 500 x 2 MiB": ["async", "--step-size", "0", "--max-size", "21", "--reps", "500"],
    "mixed (async)": ["async", "--min-size", "8", "--step-size", "2", "--step-expo", "0.5",
                      "--max-size", "{mixed}"],
}


# ----------------------------------------------------------------------------- setup

def find_python313() -> str | None:
    import glob
    import shutil
    for c in [shutil.which("python3.13"),
              *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3.13"))),
              "/usr/bin/python3.13"]:
        # a pyenv shim is on PATH even where that version is not active: try it
        if c and os.access(c, os.X_OK) and subprocess.run(
                [c, "-c", "import sys"], capture_output=True, timeout=60).returncode == 0:
            return c
    return None


def pympi_python() -> tuple[str | None, str]:
    """The pympi venv's python (made when missing), or None and why not."""
    py = PYMPI_VENV / "bin" / "python"
    probe = [str(py), "-c", "import pympi.MPI, numpy, importlib.metadata as m; "
             "print(m.version('pympi'))"]
    if py.exists():
        r = subprocess.run(probe, capture_output=True, text=True, timeout=120)
        if r.returncode == 0 and r.stdout.strip() == PYMPI_VERSION:
            return str(py), ""
    base = find_python313()
    if not base:
        return None, "no Python 3.13 (pyenv install 3.13.0)"
    try:
        if not py.exists():
            subprocess.run([base, "-m", "venv", str(PYMPI_VENV)], check=True, timeout=300)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        f"pympi=={PYMPI_VERSION}", "numpy"], check=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as e:
        return None, f"could not make {PYMPI_VENV.name}: {e}"
    r = subprocess.run(probe, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return None, f"{PYMPI_VENV.name}: pympi does not import: {r.stderr.strip()[-200:]}"
    return str(py), ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- jobs

def reason(stderr: str, rc: int | None) -> str:
    """What went wrong, in one line: a Python exception's last line if there is one."""
    lines = [x.strip() for x in stderr.splitlines() if sum(c.isalpha() for c in x) >= 3]
    exc = [x for x in lines if ("Error" in x.split(":")[0] or "Exception" in x.split(":")[0])
           and not x.startswith("File ")]
    said = (exc or lines or ["?"])[-1]
    return f"exited {rc}: {said[:240]}" if rc is not None else said[:240]


def run_job(cmd: list[str], env: dict, limit: float, idle: float, on_line=None):
    """Runs a launcher; returns (records from "@@ " lines, error or "", stderr tail).
    Stopped (its process group: SIGTERM, then SIGKILL) when it runs past `limit`
    seconds or prints nothing for `idle` seconds."""
    errf = tempfile.TemporaryFile(mode="w+")
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=errf, text=True,
                         stdin=subprocess.DEVNULL, start_new_session=True, cwd=REPO)
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in p.stdout:
            lines.put(line)
        lines.put(None)
    threading.Thread(target=pump, daemon=True).start()
    recs, error = [], ""
    t0 = last = time.monotonic()
    while True:
        now = time.monotonic()
        wait = min(limit - (now - t0), idle - (now - last))
        if wait <= 0:
            error = (f"stopped after {limit:.0f} s" if now - t0 >= limit
                     else f"hung: nothing for {idle:.0f} s")
            break
        try:
            line = lines.get(timeout=wait)
        except queue.Empty:
            continue
        if line is None:
            break
        last = time.monotonic()
        if line.startswith("@@ "):
            try:
                rec = json.loads(line[3:])
            except ValueError:
                continue
            recs.append(rec)
            if on_line:
                on_line(rec)
    if error:
        for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                break
            try:
                p.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                pass
    try:
        rc = p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        rc = p.wait()
    errf.seek(0)
    stderr = errf.read()
    errf.close()
    if not error and rc != 0:
        error = reason(stderr, rc)
    elif error:
        tail = reason(stderr, None)
        if tail != "?":
            error += f" ({tail})"
    return recs, error, stderr[-4000:]


class Launch:
    """The command that starts `impl` on n ranks, running `argv` (a worker and its
    arguments, without the python)."""

    def __init__(self, args):
        self.args = args
        self.probed: dict[str, str | None] = {}
        self.pympi_py, self.pympi_why = (None, "not asked for")
        if "pympi" in args.impls.split(",") + args.iops_impls.split(","):
            self.pympi_py, self.pympi_why = pympi_python()

    def settle(self) -> None:
        """A pause before each timed job. A job started right after one that freed
        gigabytes (pympi's iops runs) ran up to 1.8x slower on a virtual machine
        while its host took the freed memory back; the pause keeps one job's
        aftermath out of the next one's times, whoever comes next."""
        if self.args.settle > 0:
            time.sleep(self.args.settle)

    def unavailable(self, impl: str) -> str | None:
        if impl == "pympi" and not self.pympi_py:
            return self.pympi_why
        if impl in self.probed:
            return self.probed[impl]
        self.probed[impl] = self.probe(impl)
        return self.probed[impl]

    def probe(self, impl: str) -> str | None:
        if impl in ("foehn", "gloo"):
            # find_spec, not import: importing an MPI module may start its bootstrap
            mod = ("import importlib.util as u, sys, foehn; sys.exit(0 if "
                   "u.find_spec('foehn.MPI') else 'ImportError: this foehn ('"
                   " + foehn.__file__ + ') has no foehn.MPI')") if impl == "foehn" else \
                "import torch.distributed as d, foehn.pytorch; assert d.is_gloo_available()"
            r = subprocess.run([PY, "-c", mod], capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                return reason(r.stderr, None)
        if impl in ("mpi4py", "mpi4py-tcp"):
            r = subprocess.run([self.args.mpi4py_python, "-c", "import mpi4py.MPI as M; "
                                "print(M.Get_library_version())"],
                               capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                return f"mpi4py does not import in {self.args.mpi4py_python}: " + \
                    reason(r.stderr, None)
            if "Open MPI" not in r.stdout:
                return f"mpi4py is not built against Open MPI: {r.stdout.strip()[:100]}"
        return None

    def __call__(self, impl: str, n: int, argv: list[str]) -> tuple[list[str], dict]:
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        if impl in ("foehn", "gloo"):
            return [FOEHN, "run", "-n", str(n), PY, *argv], env
        if impl in ("mpi4py", "mpi4py-tcp"):
            extra = (["--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", "lo"]
                     if impl == "mpi4py-tcp" else [])
            return OpenMPI().command(n, [self.args.mpi4py_python, *argv], env=env,
                                     extra=extra)
        if impl == "pympi":
            env["PYMPI_PORT"] = str(free_port())
            run = str(Path(self.pympi_py).with_name("pympi-run"))
            return [run, "-np", str(n), self.pympi_py, *argv], env
        raise ValueError(impl)


def worker_argv(impl: str, ops: list[str], sizes: list[int]) -> list[str]:
    if impl == "gloo":
        argv = [str(HERE / "worker_gloo.py")]
    else:
        argv = [str(HERE / "worker_mpi.py"), "--impl", "mpi4py" if impl.startswith("mpi4py")
                else impl]
    argv += ["--ops", ",".join(ops), "--sizes", ",".join(map(str, sizes))]
    if impl == "pympi":
        argv += ["--plan", "slow"]
    return argv


def log(msg: str) -> None:
    sys.stderr.write(f"[comm {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def measure_impl(launch: Launch, impl: str, n: int, ops: list[str], sizes: list[int],
                 limit: float, idle: float) -> dict:
    """Every op and size for one implementation on n ranks. A job that fails is started
    again for the operations it did not reach (at most 3 times)."""
    run = {"impl": impl, "ranks": n, "label": LABELS[impl], "info": "", "error": "",
           "results": []}
    why = launch.unavailable(impl)
    if why:
        run["error"] = why
        log(f"{impl} x{n}: unavailable: {why}")
        return run
    todo = list(ops)
    t_all = time.monotonic()
    for attempt in range(3):
        if not todo:
            break
        current = {}

        def seen(rec):
            if rec.get("event") == "start":
                current.update(op=rec["op"], size=rec["size"])
            elif rec.get("event") == "result":
                current.clear()
                r = rec
                log(f"{impl} x{n}: {r['op']:9s} {r['size']:>9,} B  {r['time_s'] * 1e6:12.1f} us"
                    f"  x{r['iters']}" + (f"  WRONG: {r['wrong']}" if r.get("wrong") else ""))
        cmd, env = launch(impl, n, worker_argv(impl, todo, sizes))
        launch.settle()
        recs, error, _ = run_job(cmd, env, limit, idle, seen)
        ready = [r for r in recs if r.get("event") == "ready"]
        if ready:
            run["info"] = ready[0].get("info", "")
        for r in recs:
            if r.get("event") == "result":
                run["results"].append({k: v for k, v in r.items() if k != "event"})
        if not error and any(r.get("event") == "done" for r in recs):
            todo = []
            break
        error = error or "ended without finishing"
        if not ready:
            run["error"] = error
            log(f"{impl} x{n}: failed: {error}")
            break
        # the measurement under way failed; the rest of its op is skipped, later ops rerun
        if current:
            run["results"].append({"op": current["op"], "size": current["size"],
                                   "error": error})
            failed_op = current["op"]
        else:
            failed_op = None
        log(f"{impl} x{n}: {failed_op or '?'} {current.get('size', '')}: failed: {error}")
        done_ops = {r["op"] for r in run["results"]}
        todo = [o for o in todo if o not in done_ops and o != failed_op]
    if todo:
        run["error"] = run["error"] or f"not reached: {','.join(todo)}"
    run["wall_s"] = time.monotonic() - t_all
    return run


def run_iops(launch: Launch, impl: str, n: int, name: str, argv: list[str],
             limit: float, idle: float) -> dict:
    row = {"impl": impl, "ranks": n, "workload": name, "argv": argv}
    why = launch.unavailable(impl)
    if why:
        row["error"] = why
        return row
    cmd, env = launch(impl, n, [str(HERE / "iops.py"), "--impl",
                                "mpi4py" if impl.startswith("mpi4py") else impl, *argv])
    launch.settle()
    t0 = time.monotonic()
    recs, error, _ = run_job(cmd, env, limit, idle)
    row["wall_s"] = time.monotonic() - t0
    res = next((r for r in recs if r.get("event") == "result"), None)
    if res:
        row.update({k: v for k, v in res.items() if k != "event"})
    if not res or "time_s" not in res:
        row["error"] = (res or {}).get("error") or error or "no result"
    elif error:
        row["note"] = error
    log(f"iops {impl} x{n} {name}: " + (f"{row['time_s']:.2f} s" if "time_s" in row
                                        else f"failed: {row['error']}"))
    return row


# ----------------------------------------------------------------------------- rounds

def in_round(impls: list[str], r: int) -> list[str]:
    """The order of the implementations in round r: reversed every other round, so
    that none always runs right after the same one."""
    return list(impls) if r % 2 == 0 else list(reversed(impls))


def median_record(recs: list[dict]) -> dict:
    """Of one cell's records over the rounds: the one with the median time (the lower
    middle one for an even count), with every round's time in rounds_time_s; marked
    wrong if any round was wrong; an error only if no round measured it."""
    good = sorted((r for r in recs if "time_s" in r and not r.get("error")),
                  key=lambda r: r["time_s"])
    if not good:
        return dict(recs[0])
    out = dict(good[(len(good) - 1) // 2])
    out["rounds_time_s"] = [r.get("time_s") for r in recs]
    wrong = next((r["wrong"] for r in recs if r.get("wrong")), None)
    if wrong:
        out["wrong"] = wrong
    return out


def merge_runs(rounds: list[dict]) -> list[dict]:
    """One run per (implementation, ranks) from every round's: each (op, size) its
    median record; a round's error is kept, naming the round."""
    merged: dict = {}
    for run in rounds:
        key = (run["impl"], run["ranks"])
        m = merged.setdefault(key, {"impl": run["impl"], "ranks": run["ranks"],
                                    "label": run["label"], "info": "", "errors": [],
                                    "cells": {}, "wall_s": 0.0})
        m["info"] = m["info"] or run["info"]
        m["wall_s"] += run.get("wall_s", 0.0)
        if run["error"]:
            m["errors"].append(f"round {run['round'] + 1}: {run['error']}")
        for r in run["results"]:
            m["cells"].setdefault((r["op"], r["size"]), []).append(r)
    out = []
    for m in merged.values():
        cells = m.pop("cells")
        m["error"] = "; ".join(m.pop("errors"))
        m["results"] = [median_record(recs) for recs in cells.values()]
        out.append(m)
    return out


def merge_iops(rounds: list[dict]) -> list[dict]:
    """One row per (implementation, ranks, workload): its median round."""
    groups: dict = {}
    for row in rounds:
        groups.setdefault((row["impl"], row["ranks"], row["workload"]), []).append(row)
    return [median_record(rows) for rows in groups.values()]


# ----------------------------------------------------------------------------- report

def fmt_time(s: float | None) -> str:
    if s is None:
        return "failed"
    if s < 1e-3:
        return f"{s * 1e6:,.1f} µs"
    if s < 1:
        return f"{s * 1e3:,.2f} ms"
    return f"{s:,.2f} s"


def fmt_bw(bps: float | None) -> str:
    if bps is None:
        return "failed"
    if bps >= 1e8:
        return f"{bps / 1e9:.2f} GB/s"
    return f"{bps / 1e6:.1f} MB/s" if bps >= 1e6 else f"{bps / 1e3:.1f} kB/s"


def fmt_size(n: int) -> str:
    for unit, k in (("MiB", 20), ("KiB", 10)):
        if n >= 1 << k:
            return f"{n >> k} {unit}"
    return f"{n} B"


def ratio(peer: float | None, ours: float | None) -> str:
    if peer is None or ours is None or ours <= 0:
        return "–"
    r = peer / ours
    return f"{r:,.0f}×" if r >= 100 else (f"{r:.1f}×" if r >= 1 else f"{r:.2f}×")


def lookup(runs: list[dict]) -> dict:
    """(impl, ranks, op, size) -> result, and (impl, ranks) -> run."""
    out = {}
    for run in runs:
        out[(run["impl"], run["ranks"])] = run
        for r in run["results"]:
            out[(run["impl"], run["ranks"], r["op"], r["size"])] = r
    return out


def cell_time(idx, impl, n, op, size) -> tuple[str, float | None]:
    r = idx.get((impl, n, op, size))
    if r is None:
        run = idx.get((impl, n))
        return ("failed" if run and run["error"] else "–"), None
    if "error" in r:
        return "failed", None
    mark = " ⚠wrong" if r.get("wrong") else ""
    return fmt_time(r["time_s"]) + mark, r["time_s"]


def rounds_sentence(meta: dict) -> str:
    rounds = meta.get("rounds", 1)
    if rounds == 1:
        return "Every job ran once."
    return (f"Every job ran {rounds} times, the implementations taking turns (in reverse "
            f"order every other round), after a pause of {meta.get('settle_s', 0):g} s "
            "each; a cell shows its median round (comm.json has every round's).")


def markdown(meta: dict, runs: list[dict], iops: list[dict]) -> str:
    idx = lookup(runs)
    impls = meta["impls"]
    peers = [i for i in impls if i != "foehn"]
    have_foehn = "foehn" in impls
    L = [f"Communication benchmark — {meta['machine']}, {meta['cpus']} CPUs, Python "
         f"{meta['python']}, {meta['started']} (load average {meta['load_before']} before, "
         f"{meta['load_after']} after: other work on the machine shows in the numbers).", ""]
    L.append("Ratios are peer time / foehn time: above 1 means foehn.MPI is faster.")
    L.append("")
    for i in impls:
        run_info = next((r["info"] for r in runs if r["impl"] == i and r["info"]), "")
        L.append(f"- **{LABELS[i]}**: {NOTES[i]}" + (f" ({run_info})" if run_info else ""))
    L += ["", "Sizes follow nccl-tests: allreduce (float32 sum), bcast and ping-pong: the "
          "buffer; allgather: the receive buffer (size/p from each rank); alltoall: the "
          "send buffer (size/p to each rank). Time: the median of the timed runs on each "
          "rank after warm-up, the slowest rank's (ping-pong: half of rank 0's round trip "
          "between ranks 0 and 1); bcast has an untimed barrier after each run (OSU). "
          "Bandwidth: size / time. " + rounds_sentence(meta), ""]

    # failures first, so they are seen
    fails = [r for r in runs if r["error"]]
    iops_fails = [r for r in iops if r.get("error") or r.get("wrong")]
    if fails or iops_fails or any("error" in x or x.get("wrong")
                                  for r in runs for x in r["results"]):
        L.append("**Failures**")
        L.append("")
        for r in fails:
            L.append(f"- {LABELS[r['impl']]} on {r['ranks']} ranks: {r['error']}")
        for r in runs:
            for x in r["results"]:
                if "error" in x:
                    L.append(f"- {LABELS[r['impl']]} on {r['ranks']} ranks, {x['op']} "
                             f"{fmt_size(x['size'])}: {x['error']}")
                elif x.get("wrong"):
                    L.append(f"- {LABELS[r['impl']]} on {r['ranks']} ranks, {x['op']} "
                             f"{fmt_size(x['size'])}: {x['wrong']}")
        for r in iops_fails:
            L.append(f"- iops {r['workload']}, {LABELS[r['impl']]} on {r['ranks']} ranks: "
                     f"{r.get('error') or r.get('wrong')}")
        L.append("")

    head = "| op | ranks | " + " | ".join(
        [LABELS[i] for i in impls] if not have_foehn else
        [LABELS["foehn"]] + [f"{LABELS[p]} | ratio" for p in peers]) + " |"
    ncols = len(impls) + (len(peers) if have_foehn else 0)
    if not impls:
        L.append("(no latency or bandwidth runs: --impls was empty)")
    for_runs = OPS if impls else ()
    sep = "|---|---:|" + "---:|" * ncols
    if impls:
        L += [f"**Latency, {LATENCY_SIZE} bytes**", "", head, sep]
    for op in for_runs:
        for n in meta["ranks"]:
            cells = []
            ft = cell_time(idx, "foehn", n, op, LATENCY_SIZE) if have_foehn else ("", None)
            if have_foehn:
                cells.append(ft[0])
            for p in peers:
                txt, t = cell_time(idx, p, n, op, LATENCY_SIZE)
                cells.append(txt)
                if have_foehn:
                    cells.append(ratio(t, ft[1]))
            L.append(f"| {op} | {n} | " + " | ".join(cells) + " |")

    if impls:
        L += ["", "**Bandwidth** (size / time; ratio: peer time / foehn time)", "",
              head.replace("| op | ranks |", "| op | ranks | size |"),
              sep.replace("|---|---:|", "|---|---:|---:|")]
    for op in for_runs:
        for n in meta["ranks"]:
            for size in meta["sizes"]:
                if size % n:
                    continue
                cells = []

                def bw(impl):
                    r = idx.get((impl, n, op, size))
                    if r is None or "error" in r:
                        run = idx.get((impl, n))
                        return ("failed" if (r is not None or (run and run["error"]))
                                else "–"), None
                    mark = " ⚠wrong" if r.get("wrong") else ""
                    return fmt_bw(r["bw_Bps"]) + mark, r["time_s"]
                fb = bw("foehn") if have_foehn else ("", None)
                if have_foehn:
                    cells.append(fb[0])
                for p in peers:
                    txt, t = bw(p)
                    cells.append(txt)
                    if have_foehn:
                        cells.append(ratio(t, fb[1]))
                L.append(f"| {op} | {n} | {fmt_size(size)} | " + " | ".join(cells) + " |")

    if iops:
        iops_impls = [i for i in meta["iops_impls"]]
        L += ["", f"**pympi's iops workload** (lowercase alltoall of numpy parts; mixed: "
              f"`--min-size 8 --step-size 2 --step-expo 0.5 --max-size {meta['mixed_max']}`"
              + (" — scaled down from pympi's 28 to keep the bench short"
                 if meta["mixed_max"] != 28 else "") + "; time of the timed loop, the median round; ratio: "
              "peer time / foehn time)", "",
              "| workload | ranks | messages | data | " + " | ".join(
                  f"{LABELS[i]} | IOPS" for i in iops_impls) +
              (" | " + " | ".join(f"ratio {LABELS[i]}" for i in iops_impls if i != "foehn")
               if "foehn" in iops_impls else "") + " |"]
        L.append("|---|---:|---:|---:|" + "---:|---:|" * len(iops_impls) +
                 ("---:|" * (len(iops_impls) - 1) if "foehn" in iops_impls else ""))
        for name in IOPS:
            for n in meta["iops_ranks"]:
                rows = {r["impl"]: r for r in iops if r["workload"] == name and r["ranks"] == n}
                if not rows:
                    continue
                any_ok = next((r for r in rows.values() if "messages" in r), {})
                cells = [str(any_ok.get("messages", "–")),
                         fmt_size(any_ok["bytes"]) if "bytes" in any_ok else "–"]
                for i in iops_impls:
                    r = rows.get(i, {})
                    if "time_s" in r and not r.get("error"):
                        cells += [fmt_time(r["time_s"]) + (" ⚠wrong" if r.get("wrong") else ""),
                                  f"{r['iops']:,.0f}"]
                    else:
                        cells += ["failed" if r else "–", "–"]
                if "foehn" in iops_impls:
                    f = rows.get("foehn", {}).get("time_s")
                    for i in iops_impls:
                        if i != "foehn":
                            cells.append(ratio(rows.get(i, {}).get("time_s"), f))
                L.append(f"| {name} | {n} | " + " | ".join(cells) + " |")

    if have_foehn or "foehn" in meta["iops_impls"]:
        L += ["", "**Targets** (reported, not asserted)", ""]
        L += targets(meta, idx, iops)
    return "\n".join(L) + "\n"


def targets(meta, idx, iops) -> list[str]:
    out = []
    # 1. small-message latency vs pympi: at least 100x
    rs = []
    for op in OPS:
        for n in meta["ranks"]:
            f = idx.get(("foehn", n, op, LATENCY_SIZE))
            p = idx.get(("pympi", n, op, LATENCY_SIZE))
            if f and p and "time_s" in f and "time_s" in p:
                rs.append((p["time_s"] / f["time_s"], op, n))
    if rs:
        worst = min(rs)
        out.append(f"- 8-byte latency, pympi / foehn: at least 100× → worst {worst[0]:,.0f}× "
                   f"({worst[1]}, {worst[2]} ranks), geometric mean "
                   f"{statistics.geometric_mean([r[0] for r in rs]):,.0f}× over {len(rs)}: "
                   f"**{'met' if worst[0] >= 100 else 'not met'}**")
    else:
        out.append("- 8-byte latency vs pympi: no pair of results")
    # 2. iops vs pympi: at least 10x
    rs = []
    for name in IOPS:
        for n in meta["iops_ranks"]:
            f = next((r for r in iops if r["impl"] == "foehn" and r["workload"] == name
                      and r["ranks"] == n and "time_s" in r), None)
            p = next((r for r in iops if r["impl"] == "pympi" and r["workload"] == name
                      and r["ranks"] == n and "time_s" in r), None)
            if f and p:
                rs.append((p["time_s"] / f["time_s"], name, n))
    if rs:
        worst = min(rs)
        out.append(f"- iops workload, pympi / foehn: at least 10× → worst {worst[0]:,.1f}× "
                   f"({worst[1]}, {worst[2]} ranks); "
                   + ", ".join(f"{name} ×{n}: {r:,.1f}×" for r, name, n in rs)
                   + f": **{'met' if worst[0] >= 10 else 'not met'}**")
    else:
        out.append("- iops workload vs pympi: no pair of results")
    # 3. within 2x of mpi4py (Open MPI) for 1 MiB and more
    for peer in ("mpi4py", "mpi4py-tcp"):
        rs = []
        for op in OPS:
            for n in meta["ranks"]:
                for size in meta["sizes"]:
                    if size < (1 << 20):
                        continue
                    f = idx.get(("foehn", n, op, size))
                    p = idx.get((peer, n, op, size))
                    if f and p and "time_s" in f and "time_s" in p:
                        rs.append((f["time_s"] / p["time_s"], op, n, size))
        if not rs:
            if peer == "mpi4py":
                out.append(f"- ≥ 1 MiB vs {LABELS[peer]}: no pair of results")
            continue
        worst = max(rs)
        within = sum(r[0] <= 2 for r in rs)
        out.append(f"- ≥ 1 MiB, foehn time / {LABELS[peer]} time: at most 2 → "
                   f"{within} of {len(rs)} within; worst {worst[0]:.1f} ({worst[1]}, "
                   f"{worst[2]} ranks, {fmt_size(worst[3])}), geometric mean "
                   f"{statistics.geometric_mean([r[0] for r in rs]):.2f}"
                   + (f": **{'met' if within == len(rs) else 'not met'}**"
                      if peer == "mpi4py" else " (reference: the same transport)"))
    return out


def plot(meta: dict, runs: list[dict], out: Path) -> None:
    if not meta["impls"]:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    idx = lookup(runs)
    impls = meta["impls"]
    ranks = meta["ranks"]

    fig, axes = plt.subplots(1, len(ranks), figsize=(6 * len(ranks), 4.2), squeeze=False)
    width = 0.8 / max(1, len(impls))
    for ax, n in zip(axes[0], ranks):
        for k, impl in enumerate(impls):
            xs, ys = [], []
            for j, op in enumerate(OPS):
                r = idx.get((impl, n, op, LATENCY_SIZE))
                if r and "time_s" in r:
                    xs.append(j + (k - (len(impls) - 1) / 2) * width)
                    ys.append(r["time_s"] * 1e6)
            ax.bar(xs, ys, width, label=LABELS[impl], color=COLORS.get(impl))
        ax.set_xticks(range(len(OPS)), OPS)
        ax.set_yscale("log")
        ax.set_ylabel("µs (log)")
        ax.set_title(f"{LATENCY_SIZE}-byte latency, {n} ranks")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "comm_latency.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(len(ranks), len(OPS), figsize=(4 * len(OPS), 3.4 * len(ranks)),
                             squeeze=False, sharey=True)
    for row, n in zip(axes, ranks):
        for ax, op in zip(row, OPS):
            for impl in impls:
                pts = [(s, idx[(impl, n, op, s)]["bw_Bps"] / 1e9) for s in meta["sizes"]
                       if (impl, n, op, s) in idx and idx[(impl, n, op, s)].get("bw_Bps")]
                if pts:
                    ax.plot(*zip(*pts), "o-", ms=3, label=LABELS[impl], color=COLORS.get(impl))
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{op}, {n} ranks", fontsize=10)
            ax.set_xticks([1 << 10, 1 << 16, 1 << 20, 1 << 26], ["1K", "64K", "1M", "64M"])
            ax.grid(alpha=0.3)
        row[0].set_ylabel("GB/s (size / time)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "comm_bandwidth.png", dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--ranks", default="2,4")
    ap.add_argument("--impls", default="foehn,mpi4py,mpi4py-tcp,gloo,pympi")
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--sizes", default=",".join(map(str, BANDWIDTH_SIZES)),
                    help="bandwidth sizes in bytes (the 8-byte latency always runs)")
    ap.add_argument("--iops-impls", default="foehn,pympi",
                    help="who runs pympi's iops workload ('' for nobody)")
    ap.add_argument("--iops-ranks", default="2,4")
    ap.add_argument("--mixed-max-size", type=int, default=28,
                    help="max-size exponent of the mixed iops run (pympi's: 28, ~0.5 GB)")
    ap.add_argument("--mpi4py-python", default=PY,
                    help="the python whose mpi4py (built against Open MPI) runs")
    ap.add_argument("--limit", type=float, default=240, help="seconds per job (pympi: 2x)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="times every job runs, implementations alternating; a cell "
                         "reports its median round")
    ap.add_argument("--settle", type=float, default=3,
                    help="seconds of pause before each job")
    ap.add_argument("--idle", type=float, default=60,
                    help="seconds without a line before a job counts as hung (pympi: 2x)")
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    impls = [i for i in args.impls.split(",") if i]
    for i in impls:
        if i not in LABELS:
            sys.exit(f"unknown implementation {i!r}: one of {', '.join(LABELS)}")
    ranks = [int(n) for n in args.ranks.split(",")]
    if args.rounds < 1:
        sys.exit(f"--rounds must be at least 1, not {args.rounds}")
    ops = [o for o in args.ops.split(",") if o]
    sizes = [int(s) for s in args.sizes.split(",") if s]
    iops_impls = [i for i in args.iops_impls.split(",") if i]
    iops_ranks = [int(n) for n in args.iops_ranks.split(",") if n]
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "started": time.strftime("%Y-%m-%d %H:%M UTC",
                                                              time.gmtime()),
            "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "impls": impls, "ranks": ranks, "ops": ops, "sizes": sizes,
            "latency_size": LATENCY_SIZE, "iops_impls": iops_impls,
            "iops_ranks": iops_ranks, "mixed_max": args.mixed_max_size,
            "mpi4py_python": args.mpi4py_python}
    meta.update(rounds=args.rounds, settle_s=args.settle)
    launch = Launch(args)
    t0 = time.monotonic()
    run_rounds = []
    for n in ranks:
        for r in range(args.rounds):
            for impl in in_round(impls, r):
                slow = impl == "pympi"
                log(f"{impl} on {n} ranks (round {r + 1} of {args.rounds})")
                run = measure_impl(launch, impl, n, ops, sizes,
                                   args.limit * (2 if slow else 1),
                                   args.idle * (2 if slow else 1))
                run["round"] = r
                run_rounds.append(run)
    iops_rounds = []
    for n in iops_ranks:
        for name, argv in IOPS.items():
            argv = [a.format(mixed=args.mixed_max_size) for a in argv]
            for r in range(args.rounds):
                for impl in in_round(iops_impls, r):
                    slow = impl == "pympi"
                    row = run_iops(launch, impl, n, name, argv,
                                   args.limit * (2 if slow else 1),
                                   args.idle * (2 if slow else 1))
                    row["round"] = r
                    iops_rounds.append(row)
    runs, iops = merge_runs(run_rounds), merge_iops(iops_rounds)
    meta["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    meta["wall_s"] = time.monotonic() - t0
    (out / "comm.json").write_text(json.dumps(
        {"meta": meta, "runs": runs, "iops": iops, "run_rounds": run_rounds,
         "iops_rounds": iops_rounds}, indent=2))
    table = markdown(meta, runs, iops)
    (out / "comm.md").write_text(table)
    try:
        plot(meta, runs, out)
    except Exception as e:  # noqa: BLE001 - plots are a bonus; the table is written
        log(f"plots failed: {e}")
    print(table)
    log(f"done in {meta['wall_s']:.0f} s: {out}/comm.{{json,md}}, comm_latency.png, "
        f"comm_bandwidth.png")


if __name__ == "__main__":
    main()
