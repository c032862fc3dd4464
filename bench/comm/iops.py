"""pympi's own "iops" workload (its test/iops.py), re-implemented here from its
definition, to run under pympi, foehn.MPI or mpi4py alike:

    foehn run -n N .venv/bin/python bench/comm/iops.py --impl foehn sync --step-size 0 --max-size 21 --reps 500
    pympi-run -np N .venv-pympi/bin/python bench/comm/iops.py --impl pympi async --step-size 0 --max-size 21 --reps 500
    ... iops.py --impl foehn async --min-size 8 --step-size 2 --step-expo 0.5 --max-size 28   (mixed)

The messages: one buffer numpy.arange(2**max_size, dtype=uint8); for every exponent e
in range(min_size, max_size, step_size) round((2**max_size / 2**e) ** step_expo) views
of its first 2**e bytes, then the whole buffer; that list repeated reps times and
shuffled after random.seed(0). Each message is split with numpy.array_split into one
part per rank (copies). The timed part, after a barrier: sync, one lowercase
comm.alltoall(parts) per message; async, comm.ialltoall(parts) for every message at
once, then MPI.Request.Waitsome on what is left until nothing is. Rank 0 prints one
line "@@ {json}" with the time, the message count and their bytes (the workload's own
"transfer" figure counts them twice: out and back in).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time

import numpy as np


def messages(min_size: int, step_size: int, max_size: int, step_expo: float,
             reps: int) -> list[np.ndarray]:
    full = np.arange(2 ** max_size, dtype=np.uint8)
    out: list[np.ndarray] = []
    if step_size:
        for e in range(min_size, max_size, step_size):
            count = round((2 ** max_size / 2 ** e) ** step_expo)
            out.extend([full[:2 ** e]] * count)
    out.append(full)
    out = out * reps
    random.shuffle(out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impl", required=True, choices=["foehn", "mpi4py", "pympi"])
    ap.add_argument("mode", choices=["sync", "async"])
    ap.add_argument("--min-size", type=int, default=8)
    ap.add_argument("--step-size", type=int, default=2)
    ap.add_argument("--max-size", type=int, default=32)
    ap.add_argument("--step-expo", type=float, default=0.5)
    ap.add_argument("--reps", type=int, default=1)
    args = ap.parse_args()

    random.seed(0)
    msgs = messages(args.min_size, args.step_size, args.max_size, args.step_expo, args.reps)
    sizes = [len(m) for m in msgs]

    if args.impl == "foehn":
        from foehn import MPI
    elif args.impl == "mpi4py":
        from mpi4py import MPI
    else:
        from pympi import MPI
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    # Connect now: pympi's rank 0 starts its server on first use and the others give it
    # 0.5 s; ranks that come to their first call far apart (copying the parts below
    # takes seconds) would otherwise find no server (ConnectionRefusedError).
    comm.barrier()

    def say(**rec):
        if rank == 0:
            print("@@ " + json.dumps(rec), flush=True)

    if args.mode == "async" and not hasattr(comm, "ialltoall"):
        say(event="result", error=f"{args.impl}: Comm has no lowercase ialltoall")
        return 0

    parts = [[p.copy() for p in np.array_split(m, size)] for m in msgs]

    comm.barrier()
    t0 = time.perf_counter()
    if args.mode == "sync":
        for ps in parts:
            comm.alltoall(ps)
    else:
        reqs = [comm.ialltoall(ps) for ps in parts]
        while reqs:
            done = set(MPI.Request.Waitsome(reqs) or ())
            reqs = [q for i, q in enumerate(reqs) if i not in done]
    took = time.perf_counter() - t0

    # untimed: one more alltoall of the biggest message, checked (every rank holds the
    # same messages, so each part that comes back is this rank's own part)
    big = max(range(len(parts)), key=lambda i: sizes[i])
    got = comm.alltoall(parts[big])
    mine = parts[big][rank]
    wrong = None
    if len(got) != size or not all(np.array_equal(np.asarray(g), mine) for g in got):
        wrong = "alltoall returned wrong data"
    bad = comm.allreduce(rank + 1 if wrong else 0, op=MPI.MAX)
    if bad and not wrong:
        wrong = f"alltoall returned wrong data on rank {bad - 1}"
    say(event="result", time_s=took, messages=len(sizes), bytes=sum(sizes),
        mean_bytes=sum(sizes) / len(sizes), iops=len(sizes) / took,
        Bps=sum(sizes) / took, wrong=wrong, ranks=size)
    if args.impl == "pympi":
        MPI.Finalize()
    return 0


if __name__ == "__main__":
    sys.exit(main())
