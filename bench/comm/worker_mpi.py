"""One rank of the bench/comm measurements for an MPI-style module.

    foehn run -n N .venv/bin/python bench/comm/worker_mpi.py --impl foehn
    mpirun -n N .venv/bin/python bench/comm/worker_mpi.py --impl mpi4py
    pympi-run -np N .venv-pympi/bin/python bench/comm/worker_mpi.py --impl pympi --plan slow

foehn.MPI and mpi4py run the very same code: the buffer (uppercase) calls on numpy
arrays, Allreduce (float32 sum), Bcast, Allgather, Alltoall (uint8) and a Send/Recv
ping-pong between ranks 0 and 1. pympi offers only some of them: Allreduce, Bcast and
Send are its own uppercase calls; it has no Allgather, Alltoall or Recv, so it runs
its lowercase allgather and alltoall (lists of numpy arrays, results left as lists)
and its recv(buf=...) into a buffer. Every operation is checked once after its timing.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _measure import common_args, parse_sizes, run_all  # noqa: E402

TAG = 7


def pattern(n: int, seed: int) -> np.ndarray:
    """n bytes that are not all alike (a 251-byte cycle): cheap for 64 MiB too."""
    base = ((np.arange(251, dtype=np.uint32) * 7 + seed) % 251).astype(np.uint8)
    return np.tile(base, n // 251 + 1)[:n].copy()


class Adapter:
    def __init__(self, impl: str):
        if impl == "foehn":
            from foehn import MPI
        elif impl == "mpi4py":
            from mpi4py import MPI
        elif impl == "pympi":
            from pympi import MPI
        else:
            raise SystemExit(f"unknown --impl {impl}")
        self.MPI, self.name, self.lower = MPI, impl, impl == "pympi"
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.bufs = None

    def info(self) -> str:
        M = self.MPI
        for f in ("Get_library_version",):
            if hasattr(M, f):
                try:
                    return " ".join(str(getattr(M, f)()).replace("\0", "").split())[:120]
                except Exception as e:  # noqa: BLE001
                    return f"{f}: {e}"
        import importlib.metadata as md
        try:
            return f"{self.name} {md.version(self.name)}"
        except Exception:  # noqa: BLE001
            return self.name

    # -- small collectives the timing loop needs --
    def barrier(self) -> None:
        self.comm.Barrier()

    def bcast_int(self, v: int) -> int:
        if self.lower:
            return int(self.comm.bcast(v, root=0))
        b = np.array([v], dtype=np.int64)
        self.comm.Bcast(b, root=0)
        return int(b[0])

    def bcast_float(self, v: float) -> float:
        if self.lower:
            return float(self.comm.bcast(v, root=0))
        b = np.array([v], dtype=np.float64)
        self.comm.Bcast(b, root=0)
        return float(b[0])

    def max_float(self, v: float) -> float:
        if self.lower:
            return float(self.comm.allreduce(v, op=self.MPI.MAX))
        s, r = np.array([v], dtype=np.float64), np.zeros(1, dtype=np.float64)
        self.comm.Allreduce(s, r, op=self.MPI.MAX)
        return float(r[0])

    def release(self) -> None:
        self.bufs = None

    # -- the operations: (run once, check once) --
    def prepare(self, op: str, size: int):
        c, p, r, M = self.comm, self.size, self.rank, self.MPI
        if op == "allreduce":
            send = np.full(size // 4, r + 1, dtype=np.float32)
            recv = np.zeros_like(send)
            if self.lower:
                def once():
                    c.Allreduce(send, recv)
            else:
                def once():
                    c.Allreduce(send, recv, op=M.SUM)

            def check():
                recv[:] = 0
                once()
                return None if np.all(recv == p * (p + 1) / 2) else "allreduce: wrong sum"
            self.bufs = (send, recv)
            return once, check

        if op == "bcast":
            want = pattern(size, 3)
            buf = want.copy() if r == 0 else np.zeros(size, dtype=np.uint8)

            def once():
                c.Bcast(buf, root=0)

            def check():
                if r:
                    buf[:] = 0
                once()
                return None if np.array_equal(buf, want) else "bcast: wrong data"
            self.bufs = (want, buf)
            return once, check

        if op == "allgather":
            send = np.full(size // p, r, dtype=np.uint8)
            want = np.repeat(np.arange(p, dtype=np.uint8), size // p)
            if self.lower:
                got = [None]

                def once():
                    got[0] = c.allgather(send)

                def check():
                    got[0] = None
                    once()
                    return (None if np.array_equal(np.concatenate(got[0]), want)
                            else "allgather: wrong data")
            else:
                recv = np.zeros(size, dtype=np.uint8)

                def once():
                    c.Allgather(send, recv)

                def check():
                    recv[:] = 255
                    once()
                    return None if np.array_equal(recv, want) else "allgather: wrong data"
            self.bufs = (send, want)
            return once, check

        if op == "alltoall":
            blk = size // p
            send = np.repeat(((r * p + np.arange(p)) % 256).astype(np.uint8), blk)
            want = np.repeat(((np.arange(p) * p + r) % 256).astype(np.uint8), blk)
            if self.lower:
                parts = np.split(send, p)
                got = [None]

                def once():
                    got[0] = c.alltoall(parts)

                def check():
                    got[0] = None
                    once()
                    return (None if np.array_equal(np.concatenate(got[0]), want)
                            else "alltoall: wrong data")
            else:
                recv = np.zeros(size, dtype=np.uint8)

                def once():
                    c.Alltoall(send, recv)

                def check():
                    recv[:] = 255
                    once()
                    return None if np.array_equal(recv, want) else "alltoall: wrong data"
            self.bufs = (send, want)
            return once, check

        if op == "pingpong":
            sbuf = pattern(size, 5)
            rbuf = np.zeros(size, dtype=np.uint8)
            if self.lower:  # pympi: no tags, no uppercase Recv
                def send(b, peer):
                    c.Send(b, dest=peer)

                def recv(b, peer):
                    c.recv(buf=b, source=peer)
            else:
                def send(b, peer):
                    c.Send(b, dest=peer, tag=TAG)

                def recv(b, peer):
                    c.Recv(b, source=peer, tag=TAG)
            if r == 0:
                def once():
                    send(sbuf, 1)
                    recv(rbuf, 1)
            elif r == 1:
                def once():
                    recv(rbuf, 0)
                    send(rbuf, 0)
            else:
                def once():
                    pass

            def check():
                if r == 0:
                    rbuf[:] = 0
                once()
                return (None if r != 0 or np.array_equal(rbuf, sbuf)
                        else "pingpong: wrong data")
            self.bufs = (sbuf, rbuf)
            return once, check
        raise SystemExit(f"unknown op {op}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impl", required=True, choices=["foehn", "mpi4py", "pympi"])
    common_args(ap)
    args = ap.parse_args()
    a = Adapter(args.impl)
    run_all(a, [o for o in args.ops.split(",") if o], parse_sizes(args.sizes), args.plan,
            latency=not args.no_latency)
    if args.impl == "pympi":
        a.MPI.Finalize()


if __name__ == "__main__":
    main()
