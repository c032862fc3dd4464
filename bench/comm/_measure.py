"""What every worker of bench/comm shares: the sizes, the timing loop, the report lines.

Standard library only (the workers run under Python 3.11 and 3.13 alike). A worker
wraps its implementation in an adapter (barrier, bcast_int, max_float and one callable
per operation) and calls run_all(); rank 0 prints one line per measurement,
"@@ {json}", which bench/comm/run.py reads as they come (a job that dies or hangs keeps
what it measured so far).

Sizes follow nccl-tests: the size of an operation is the largest buffer a rank passes
(allreduce, bcast, ping-pong: the buffer; allgather: the receive buffer, size/p bytes
from each rank; alltoall: the send buffer, size/p bytes to each rank). Bandwidth is
that size over the time of one operation (ping-pong: over the one-way time, half a
round trip).
"""
from __future__ import annotations

import json
import statistics
import sys
import time

OPS = ("allreduce", "bcast", "allgather", "alltoall", "pingpong")
LATENCY_SIZE = 8
# 1 KiB .. 64 MiB in powers of 4
BANDWIDTH_SIZES = tuple(1 << e for e in range(10, 27, 2))

# (warm-up iterations, seconds to spend, fewest and most timed iterations); the
# calibration runs (3; 2 for 1 MiB and more) come on top and warm up as well
PLANS = {
    "fast": {"latency": (20, 0.6, 50, 5000), "small": (3, 0.25, 5, 1000),
             "large": (0, 0.4, 5, 200)},
    # pympi: ~25 ms per small operation, and big buffers take seconds
    "slow": {"latency": (3, 0.8, 10, 200), "small": (1, 0.3, 3, 50),
             "large": (0, 0.5, 2, 20)},
}


def say(rank: int, **rec) -> None:
    if rank == 0:
        sys.stdout.write("@@ " + json.dumps(rec) + "\n")
        sys.stdout.flush()


def parse_sizes(text: str | None) -> list[int]:
    """None: every bandwidth size; "": none."""
    if text is None:
        return list(BANDWIDTH_SIZES)
    return [int(s) for s in text.split(",") if s]


def measure(a, op: str, size: int, plan: dict) -> dict:
    """Times `op` at `size` bytes with adapter `a`; every rank takes part, the return
    value is for rank 0. Per-rank median of the timed iterations, then the slowest
    rank's (ping-pong: rank 0's round trip, halved)."""
    once, check = a.prepare(op, size)
    kind = "latency" if size == LATENCY_SIZE else ("small" if size < (1 << 20) else "large")
    warm, budget, least, most = plan[kind]
    sync_each = op == "bcast"  # OSU style: a barrier (not timed) after each broadcast
    for _ in range(warm):
        once()
        if sync_each:
            a.barrier()
    # a few timed calibration runs on every rank; from the slowest rank's median, rank 0
    # decides how many runs to time, for all
    cal = []
    for _ in range(2 if kind == "large" else 3):
        a.barrier()
        t0 = time.perf_counter()
        once()
        if sync_each:  # what an iteration costs here includes its barrier
            a.barrier()
        cal.append(time.perf_counter() - t0)
    took = a.max_float(statistics.median(cal))
    iters = a.bcast_int(max(least, min(most, int(budget / max(took, 1e-7)))))
    times = []
    a.barrier()
    for _ in range(iters):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
        if sync_each:
            a.barrier()
    med = statistics.median(times)
    if op == "pingpong":
        med = a.bcast_float(med / 2)  # rank 0's timing of the round trip
    else:
        med = a.max_float(med)
    wrong = check()  # one more run on fresh buffers, checked: None or what is wrong
    bad = a.max_float(float(a.rank + 1) if wrong else 0.0)
    if bad and not wrong:
        wrong = f"wrong result on rank {int(bad) - 1}"
    return {"op": op, "size": size, "iters": iters, "time_s": med,
            "bw_Bps": size / med if med > 0 else None, "wrong": wrong}


def run_all(a, ops: list[str], sizes: list[int], plan_name: str, latency: bool = True) -> None:
    plan = PLANS[plan_name]
    say(a.rank, event="ready", impl=a.name, ranks=a.size, info=a.info())
    for op in ops:
        for size in ([LATENCY_SIZE] if latency else []) + list(sizes):
            if size % a.size:
                continue
            say(a.rank, event="start", op=op, size=size)
            t0 = time.perf_counter()
            rec = measure(a, op, size, plan)
            rec["wall_s"] = time.perf_counter() - t0
            say(a.rank, event="result", **rec)
            a.release()
    say(a.rank, event="done")


def common_args(ap) -> None:
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--sizes", default=None, help="comma-separated bandwidth sizes in bytes")
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--plan", default="fast", choices=sorted(PLANS))
