"""foehn.pytorch.init_process_group: a torch.distributed process group under any
launcher, with no MASTER_ADDR and no MASTER_PORT.

Rank 0 starts torch's TCPStore on a port the kernel picks, publishes address:port
through the launcher's process-management service, and after a fence every rank
connects. Every argument is torch's own and passes through.
"""
from __future__ import annotations

import datetime
import inspect
import os
import sys
import time
from typing import Any, NamedTuple

from . import _foehn
from ._job import job as _discover
from ._pm import init as _pm_init

STORE_KEY = "torch.store"
WATCHDOG_KEY = "foehn.watchdog"
# torch's own default for init_process_group's timeout (30 minutes for gloo, 10 for nccl
# in recent versions); used for the bootstrap when the caller gives none.
_DEFAULT_BOOTSTRAP_TIMEOUT = datetime.timedelta(minutes=5)


def _torch_signature():
    import torch.distributed as dist
    return dist, inspect.signature(dist.init_process_group)


def _default_backend(torch) -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def _bind_device(torch, local_rank: int, kwargs: dict) -> None:
    """NCCL wants one device per rank: the local rank's, unless the caller chose."""
    if kwargs.get("device_id") is not None:
        return
    if torch.cuda.is_initialized() and torch.cuda.current_device() != 0:
        return  # the caller already set a device
    count = torch.cuda.device_count()
    if count:
        torch.cuda.set_device(local_rank % count)


def _steer(iface: str, env=os.environ) -> None:
    """Points gloo and NCCL at iface, unless they were told otherwise (an empty
    variable counts as not told)."""
    for name in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"):
        if iface and not env.get(name):
            env[name] = iface


def _export(rank: int, size: int, local_rank: int, local_size: int, addr: str, port: int):
    """For libraries that read the usual variables (Lightning, Accelerate, DeepSpeed)."""
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(size),
                       "LOCAL_RANK": str(local_rank), "LOCAL_WORLD_SIZE": str(local_size),
                       "MASTER_ADDR": addr, "MASTER_PORT": str(port)})


class _Phases:
    """FOEHN_DEBUG: how long each step of the bootstrap took, on stderr."""

    def __init__(self):
        self.on = os.environ.get("FOEHN_DEBUG", "") not in ("", "0")
        self.last = time.perf_counter()
        self.who = ""

    def done(self, phase: str) -> None:
        now = time.perf_counter()
        if self.on:
            sys.stderr.write(f"foehn[{self.who}]: {phase} {(now - self.last) * 1e3:.3f} ms\n")
            sys.stderr.flush()
        self.last = now


def _seconds(timeout) -> float:
    if timeout is None:
        return _DEFAULT_BOOTSTRAP_TIMEOUT.total_seconds()
    if isinstance(timeout, datetime.timedelta):
        return timeout.total_seconds()
    return float(timeout)


def _rendezvous(pm, job, timeout: float, phases: _Phases):
    """Rank 0's TCPStore, created on a free port and published; every rank connects."""
    import torch.distributed as dist
    peers = [h for h in (job.hosts or ()) if h != job.hostname]
    ip, iface, why = _foehn.choose_address(peers, pm.num_nodes == 1)
    phases.done(f"address {ip} ({iface or '?'}: {why})")
    # The interface that reaches the other ranks (FOEHN_IFACE's when set) is the one
    # gloo and NCCL need too; without this gloo resolves the host name, which may
    # point elsewhere.
    _steer(iface)
    store_timeout = datetime.timedelta(seconds=timeout)
    # The watchdog (a star of connections to rank 0) makes every rank stop, naming the
    # dead one, when a rank dies after the bootstrap; its address rides this fence.
    watchdog = pm._pm.watchdog_listen(ip)
    if pm.rank == 0:
        store = dist.TCPStore(ip, 0, pm.size, True, store_timeout, wait_for_workers=False)
        pm.put(STORE_KEY, f"{ip}:{store.port}")
        if watchdog:
            pm.put(WATCHDOG_KEY, watchdog)
        phases.done(f"TCPStore on {ip}:{store.port}")
    pm.commit()
    try:
        pm.fence(timeout=timeout)
        where = pm.get(0, STORE_KEY, timeout=timeout).decode()
    except _foehn.Error as e:
        raise type(e)(f"foehn.pytorch: rank {pm.rank} of {pm.size} could not learn rank 0's "
                      f"TCPStore address: {e}") from None
    try:
        rank0_watchdog = pm.get(0, WATCHDOG_KEY, timeout=timeout).decode()
    except KeyError:
        rank0_watchdog = ""  # rank 0 runs without one (FOEHN_WATCHDOG=0, or a job of one)
    phases.done("fence: rank 0's address learnt")
    if rank0_watchdog:
        pm._pm.watchdog_start(rank0_watchdog, timeout=timeout)
        phases.done("watchdog joined")
    addr, _, port_text = where.rpartition(":")
    port = int(port_text)
    if pm.rank != 0:
        store = dist.TCPStore(addr, port, pm.size, False, store_timeout)
        phases.done(f"connected to the TCPStore at {where}")
    return store, addr, port


def init_process_group(*args: Any, **kwargs: Any):
    """torch.distributed.init_process_group, wired through the launcher.

    Takes exactly torch's arguments. An explicit init_method or store is used
    untouched; under torchrun torch's own env:// is used. Otherwise the bootstrap
    goes through foehn.init() and honours `timeout`. With no backend: NCCL when CUDA
    is available (the device bound to the local rank), gloo otherwise.
    """
    dist, sig = _torch_signature()
    import torch
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"foehn.pytorch.init_process_group: {e}") from None
    given = dict(bound.arguments)
    if given.get("init_method") is not None or given.get("store") is not None:
        return dist.init_process_group(*args, **kwargs)

    _steer(os.environ.get("FOEHN_IFACE", ""))  # also under torchrun
    job = _discover()
    if given.get("backend") is None:
        given["backend"] = _default_backend(torch)
    uses_nccl = "nccl" in str(given["backend"])
    if job.launcher == "torchrun":
        if uses_nccl:
            _bind_device(torch, job.local_rank or 0, given)
        return dist.init_process_group(**given)

    phases = _Phases()
    pm = _pm_init()
    phases.who = f"rank {pm.rank} of {pm.size}"
    phases.done(f"foehn.init ({pm.provider} provider under {pm.launcher})")
    for name, mine in (("rank", pm.rank), ("world_size", pm.size)):
        theirs = given.get(name)
        if theirs is not None and theirs != -1 and theirs != mine:
            raise ValueError(f"foehn.pytorch.init_process_group: {name}={theirs} was given, "
                             f"but {pm.launcher} says this rank's {name} is {mine}")
    store, addr, port = _rendezvous(pm, job, _seconds(given.get("timeout")), phases)
    _export(pm.rank, pm.size, pm.local_rank, pm.local_size, addr, port)
    if uses_nccl:
        _bind_device(torch, pm.local_rank, given)
    given.update(store=store, rank=pm.rank, world_size=pm.size)
    given.pop("init_method", None)
    group = dist.init_process_group(**given)
    phases.done(f"torch.distributed.init_process_group ({given['backend']})")
    return group


class Setup(NamedTuple):
    """What setup() gives a training script."""
    rank: int
    world_size: int
    local_rank: int
    device: Any  # a torch.device


_DEVICE_KINDS = ("cuda", "xpu", "mps", "cpu")
_BACKEND_OF = {"cuda": "nccl", "xpu": "xccl", "mps": "gloo", "cpu": "gloo"}


def _device_kind(torch) -> str:
    """The first accelerator torch can use here: cuda (NVIDIA and AMD's ROCm builds),
    xpu (Intel), mps (Apple), else cpu. FOEHN_DEVICE overrides."""
    chosen = os.environ.get("FOEHN_DEVICE", "")
    if chosen:
        if chosen not in _DEVICE_KINDS:
            raise ValueError(f"foehn.pytorch.setup: FOEHN_DEVICE={chosen!r} is not one of "
                             f"{', '.join(_DEVICE_KINDS)}")
        return chosen
    if torch.cuda.is_available():
        return "cuda"
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        return "xpu"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _bound_device(torch, kind: str, local_rank: int):
    """The local rank's device of that kind, made current."""
    if kind in ("cuda", "xpu"):
        module = getattr(torch, kind)
        count = module.device_count()
        if count == 0:
            raise RuntimeError(f"foehn.pytorch.setup: device {kind} chosen, but torch sees "
                               f"no {kind} device on this node")
        index = local_rank % count
        module.set_device(index)
        return torch.device(kind, index)
    return torch.device(kind)


def _seed_everything(torch, seed: int) -> None:
    import random
    random.seed(seed)
    try:
        import numpy
        numpy.random.seed(seed % 2**32)
    except ImportError:
        pass
    torch.manual_seed(seed)  # every device's generator too (CUDA, XPU, MPS)


def setup(seed: int | None = None, *, backend: str | None = None, timeout=None,
          **kwargs: Any) -> Setup:
    """The one call a training script needs: discovers the job, picks the device
    (cuda, xpu, mps or cpu, the first available; FOEHN_DEVICE overrides) and binds it
    to the local rank, picks the backend (nccl, xccl, gloo; `backend` overrides),
    initialises the process group through init_process_group (not for a job of one,
    nor when one exists), seeds Python's, NumPy's and torch's generators with `seed`
    (the same on every rank) when given, and returns (rank, world_size, local_rank,
    device). Other keyword arguments go to torch.distributed.init_process_group."""
    import torch
    import torch.distributed as dist
    job = _discover()
    if job.launcher == "torchrun" or job.launcher == "none":
        rank, size = job.rank or 0, job.size or 1
        local_rank = job.local_rank or 0
    else:
        pm = _pm_init()
        rank, size, local_rank = pm.rank, pm.size, pm.local_rank
    kind = _device_kind(torch)
    device = _bound_device(torch, kind, local_rank)
    if size > 1 and not dist.is_initialized():
        if timeout is not None:
            kwargs["timeout"] = timeout
        if kind == "cuda":
            kwargs.setdefault("device_id", device)
        init_process_group(backend=backend or _BACKEND_OF[kind], **kwargs)
    if seed is not None:
        _seed_everything(torch, int(seed))
    return Setup(rank, size, local_rank, device)
