#!/usr/bin/env python3
"""One rank of the failure tests of foehn.MPI (tests/live/test_comm_failures.py).

    foehn run -n N python tests/comm/fail_prog.py SCENARIO [--impl foehn|mpi4py] [--death F]

Every rank prints what happened to it as one line `RESULT {json}` on stdout (and with
--out DIR, into a file DIR/<rank>.<n>.json of its own):
{"rank", "event": "raised"|"completed", "type", "msg", "t": time.time()}; a rank that
raised exits 3 (a program that fails), unless the scenario recovers and goes on.

Scenarios:
  killed-recv   rank 2 dies (SIGKILL) after a barrier; the others sit in recv(source=2)
  killed-coll   the same, the others sit in an Allreduce
  killed-ialltoall  the same, the others wait (Waitsome) for 200 lowercase ialltoalls
                in flight, rank 2 having taken part in the first 20
  mismatch-upper   rank 0 calls Bcast, the others Allreduce; then all a Barrier
  mismatch-lower   rank 0 calls bcast, the others allreduce; then all a barrier
  allreduce-counts Allreduce of 4 elements on even ranks, 5 on odd ones
  recv-truncate    rank 1 receives 10 doubles into room for 4, then goes on
  scatter-indivisible  the root scatters 2*size+1 elements, then a valid scatter
  spec-mismatch    [buf, count, type] with count larger than buf, sending and receiving
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

import numpy as np


OUT = None  # --out: each record also goes to a file of its own there
MPI_EXCEPTION = ()  # MPI.Exception of the implementation in use
_seq = 0


def report(rank, event, exc=None, **extra):
    global _seq
    rec = {"rank": rank, "event": event, "t": time.time(), **extra}
    if exc is not None:
        rec["type"] = type(exc).__name__
        rec["msg"] = str(exc)
        rec["mpi_exception"] = isinstance(exc, MPI_EXCEPTION)  # `except MPI.Exception` catches it
    if OUT:
        _seq += 1
        tmp = os.path.join(OUT, f".{rank}.{_seq}.tmp")
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.rename(tmp, os.path.join(OUT, f"{rank}.{_seq}.json"))
    print("RESULT " + json.dumps(rec), flush=True)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("scenario")
    p.add_argument("--impl", default="foehn", choices=["foehn", "mpi4py"])
    p.add_argument("--death", help="file the dying rank writes its time into")
    p.add_argument("--out", help="folder for one file per record (stdout lines of several "
                   "ranks may interleave)")
    a = p.parse_args()
    global OUT
    OUT = a.out
    if a.impl == "mpi4py":
        from mpi4py import MPI
    else:
        from foehn import MPI
    global MPI_EXCEPTION
    MPI_EXCEPTION = MPI.Exception
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    sc = a.scenario

    if sc.startswith("killed-"):
        comm.Barrier()
        parts = [[np.full(8 + 5000 * (i % 7 == 6), i, dtype="u1") for _ in range(size)]
                 for i in range(200)]
        reqs = [comm.ialltoall(p) for p in parts[:20 if rank == 2 else 200]] \
            if sc == "killed-ialltoall" else []
        if rank == 2:
            MPI.Request.Waitall(reqs)
            time.sleep(1.0)  # the others are inside their calls by now
            with open(a.death, "w") as f:
                f.write(repr(time.time()))
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            if sc == "killed-recv":
                comm.recv(source=2, tag=5)
            elif sc == "killed-ialltoall":
                while reqs:
                    done = set(MPI.Request.Waitsome(reqs) or ())
                    reqs = [q for i, q in enumerate(reqs) if i not in done]
            else:
                buf = np.zeros(1000)
                comm.Allreduce(np.ones(1000), buf, op=MPI.SUM)
        except Exception as e:  # noqa: BLE001
            report(rank, "raised", e)
            # stay a moment: a survivor that leaves at once could reach a slower one as
            # news of its own departure before the news of rank 2's death does
            time.sleep(1.5)
            return 3
        report(rank, "completed")
        return 0

    if sc.startswith("mismatch-"):
        try:
            if sc == "mismatch-upper":
                if rank == 0:
                    comm.Bcast(np.arange(8, dtype="f8"), root=0)
                else:
                    comm.Allreduce(np.ones(8), np.zeros(8), op=MPI.SUM)
            else:
                if rank == 0:
                    comm.bcast({"x": 1}, root=0)
                else:
                    comm.allreduce(rank)
        except Exception as e:  # noqa: BLE001
            report(rank, "raised", e)
            return 3
        report(rank, "completed")
        # a program goes on: the next collective must not leave anyone waiting forever
        try:
            comm.Barrier() if sc == "mismatch-upper" else comm.barrier()
        except Exception as e:  # noqa: BLE001
            report(rank, "raised", e, where="barrier")
            return 3
        report(rank, "completed", where="barrier")
        return 0

    if sc == "allreduce-counts":
        n = 4 if rank % 2 == 0 else 5
        try:
            out = np.zeros(n)
            comm.Allreduce(np.ones(n), out, op=MPI.SUM)
        except Exception as e:  # noqa: BLE001
            report(rank, "raised", e)
            return 3
        report(rank, "completed", result=out.tolist())
        return 0

    if sc == "recv-truncate":
        if rank == 0:
            comm.Send(np.arange(10, dtype="f8"), dest=1, tag=1)
            comm.Send(np.arange(3, dtype="f8"), dest=1, tag=2)
        elif rank == 1:
            try:
                comm.Recv(np.zeros(4), source=0, tag=1)
                report(rank, "completed")
            except Exception as e:  # noqa: BLE001
                report(rank, "raised", e)
            ok = np.zeros(3)
            comm.Recv(ok, source=0, tag=2)
            report(rank, "after", got=ok.tolist())
        comm.Barrier()
        return 0

    if sc == "scatter-indivisible":
        recv = np.zeros(2)
        if rank == 0:
            try:
                comm.Scatter(np.arange(2 * size + 1, dtype="f8"), recv, root=0)
                report(rank, "completed")
            except Exception as e:  # noqa: BLE001
                report(rank, "raised", e)
            comm.Scatter(np.arange(2 * size, dtype="f8"), recv, root=0)
        else:
            comm.Scatter(None, recv, root=0)
        report(rank, "after", got=recv.tolist())
        return 0

    if sc == "spec-mismatch":
        if rank == 0:
            try:
                comm.Send([np.ones(5), 10, MPI.DOUBLE], dest=1, tag=1)
                report(rank, "completed", what="send")
            except Exception as e:  # noqa: BLE001
                report(rank, "raised", e, what="send")
            comm.Send([np.arange(5, dtype="f8"), 5, MPI.DOUBLE], dest=1, tag=1)
        elif rank == 1:
            small = np.zeros(2)
            try:
                comm.Recv([small, 10, MPI.DOUBLE], source=0, tag=1)
                report(rank, "completed", what="recv")
            except Exception as e:  # noqa: BLE001
                report(rank, "raised", e, what="recv")
            got = np.zeros(5)
            comm.Recv([got, 5, MPI.DOUBLE], source=0, tag=1)
            report(rank, "after", got=got.tolist())
        comm.Barrier()
        return 0

    p.error(f"unknown scenario {sc}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
