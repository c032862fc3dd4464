"""One rank of the bench/comm measurements for torch.distributed with gloo (CPU tensors).

    foehn run -n N .venv/bin/python bench/comm/worker_gloo.py

The process group comes from foehn.pytorch.init_process_group(backend="gloo") (torch's
TCPStore rendezvous, published through foehn run); the operations are torch's own:
all_reduce (float32 sum), broadcast, all_gather_into_tensor, all_to_all_single (uint8)
and a send/recv ping-pong between ranks 0 and 1. Every operation is checked once after
its timing.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _measure import common_args, parse_sizes, run_all  # noqa: E402

import foehn.pytorch  # noqa: E402


def pattern(n: int, seed: int) -> torch.Tensor:
    base = ((torch.arange(251, dtype=torch.int32) * 7 + seed) % 251).to(torch.uint8)
    return base.repeat(n // 251 + 1)[:n].clone()


class Adapter:
    name = "gloo"

    def __init__(self):
        foehn.pytorch.init_process_group(backend="gloo")
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.bufs = None

    def info(self) -> str:
        return f"torch {torch.__version__} gloo"

    def barrier(self) -> None:
        dist.barrier()

    def bcast_int(self, v: int) -> int:
        t = torch.tensor([v], dtype=torch.int64)
        dist.broadcast(t, 0)
        return int(t[0])

    def bcast_float(self, v: float) -> float:
        t = torch.tensor([v], dtype=torch.float64)
        dist.broadcast(t, 0)
        return float(t[0])

    def max_float(self, v: float) -> float:
        t = torch.tensor([v], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t[0])

    def release(self) -> None:
        self.bufs = None

    def prepare(self, op: str, size: int):
        p, r = self.size, self.rank
        if op == "allreduce":
            src = torch.full((size // 4,), float(r + 1), dtype=torch.float32)
            t = src.clone()

            # all_reduce works in place: the input is restored only for the check (in
            # the timed runs the sum grows, which costs nothing more)
            def once():
                dist.all_reduce(t)

            def check():
                t.copy_(src)
                once()
                return None if bool((t == p * (p + 1) / 2).all()) else "allreduce: wrong sum"
            self.bufs = (src, t)
            return once, check

        if op == "bcast":
            want = pattern(size, 3)
            buf = want.clone() if r == 0 else torch.zeros(size, dtype=torch.uint8)

            def once():
                dist.broadcast(buf, 0)

            def check():
                if r:
                    buf.zero_()
                once()
                return None if torch.equal(buf, want) else "bcast: wrong data"
            self.bufs = (want, buf)
            return once, check

        if op == "allgather":
            send = torch.full((size // p,), r, dtype=torch.uint8)
            recv = torch.zeros(size, dtype=torch.uint8)
            want = torch.arange(p, dtype=torch.uint8).repeat_interleave(size // p)

            def once():
                dist.all_gather_into_tensor(recv, send)

            def check():
                recv.fill_(255)
                once()
                return None if torch.equal(recv, want) else "allgather: wrong data"
            self.bufs = (send, recv, want)
            return once, check

        if op == "alltoall":
            blk = size // p
            send = ((r * p + torch.arange(p)) % 256).to(torch.uint8).repeat_interleave(blk)
            want = ((torch.arange(p) * p + r) % 256).to(torch.uint8).repeat_interleave(blk)
            recv = torch.zeros(size, dtype=torch.uint8)

            def once():
                dist.all_to_all_single(recv, send)

            def check():
                recv.fill_(255)
                once()
                return None if torch.equal(recv, want) else "alltoall: wrong data"
            self.bufs = (send, recv, want)
            return once, check

        if op == "pingpong":
            sbuf = pattern(size, 5)
            rbuf = torch.zeros(size, dtype=torch.uint8)
            if r == 0:
                def once():
                    dist.send(sbuf, 1)
                    dist.recv(rbuf, 1)
            elif r == 1:
                def once():
                    dist.recv(rbuf, 0)
                    dist.send(rbuf, 0)
            else:
                def once():
                    pass

            def check():
                if r == 0:
                    rbuf.zero_()
                once()
                return (None if r != 0 or torch.equal(rbuf, sbuf)
                        else "pingpong: wrong data")
            self.bufs = (sbuf, rbuf)
            return once, check
        raise SystemExit(f"unknown op {op}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(ap)
    args = ap.parse_args()
    torch.set_num_threads(1)
    # all_gather_into_tensor is "deprecated" in favour of all_gather_single: same call
    warnings.filterwarnings("ignore", category=FutureWarning)
    a = Adapter()
    run_all(a, [o for o in args.ops.split(",") if o], parse_sizes(args.sizes), args.plan,
            latency=not args.no_latency)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
