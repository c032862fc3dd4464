"""A small but real data-parallel training: DDP over gloo on CPU.

Every rank trains the same tiny model on its own shard of a generated regression
problem; DDP averages the gradients, so all ranks end with identical parameters.
Run it under any launcher — no MASTER_ADDR, no MASTER_PORT:

    foehn run -n 4 python examples/ddp.py
    srun -N2 -n4 --mpi=pmix python examples/ddp.py
    mpirun -n 4 python examples/ddp.py
    torchrun --standalone --nproc-per-node 4 examples/ddp.py
    python examples/ddp.py
"""
import argparse
import hashlib

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

import foehn


def make_data(rank: int, world: int, n: int = 2048, dim: int = 16):
    """y = x·w* + noise, the same problem everywhere, each rank its own shard."""
    g = torch.Generator().manual_seed(1234)
    w_true = torch.randn(dim, 1, generator=g)
    x = torch.randn(n, dim, generator=g)
    y = x @ w_true + 0.01 * torch.randn(n, 1, generator=g)
    return x[rank::world], y[rank::world]


def digest(model: nn.Module) -> str:
    """A fingerprint of every parameter, to check that all ranks agree."""
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def say(line: str) -> None:
    """One write per line: ranks share the launcher's pipe, and with unbuffered output
    (PYTHONUNBUFFERED) print() writes the text and its newline separately."""
    print(line + "\n", end="", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()

    foehn.pytorch.init_process_group(backend="gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts them)
    model = DDP(nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 1)))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = make_data(rank, world)
    for step in range(args.steps):
        i = (step * args.batch) % len(x)
        xb, yb = x[i:i + args.batch], y[i:i + args.batch]
        loss = nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == args.steps - 1:
            total = loss.detach().clone()
            dist.all_reduce(total)
            if rank == 0:
                say(f"step {step:3d}  loss {total.item() / world:.4f}")
    say(f"rank {rank} of {world} parameters {digest(model.module)}")
    # Everyone done with gloo before anyone tears it down: a rank whose peers have
    # already closed their connections can abort inside gloo's teardown.
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
