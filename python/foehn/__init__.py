"""Foehn: distributed Python jobs on HPC machines with zero configuration.

    >>> import foehn
    >>> foehn.job().launcher            # 'slurm', 'openmpi', 'hydra', 'torchrun', 'none', ...
    >>> ctx = foehn.init()              # rank, size, ... and put/commit/fence/get
    >>> foehn.pytorch.init_process_group(backend="gloo")
"""
from ._foehn import Error, PeerError, TimeoutError, hostlist_compress, hostlist_expand
from ._foehn import version as __version__
from ._job import Job, job
from ._pm import ProcessGroupInfo, init

__all__ = ["Job", "job", "init", "ProcessGroupInfo", "Error", "TimeoutError", "PeerError",
           "hostlist_expand", "hostlist_compress", "pytorch", "__version__"]


def __getattr__(name):
    # foehn.pytorch imports torch: load it only when asked for.
    if name == "pytorch":
        import importlib
        return importlib.import_module(".pytorch", __name__)
    raise AttributeError(f"module 'foehn' has no attribute {name!r}")
