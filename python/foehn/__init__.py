"""Foehn: distributed Python jobs on HPC machines with zero configuration.

    >>> import foehn
    >>> foehn.job().launcher      # 'slurm', 'openmpi', 'hydra', 'torchrun', 'none', ...
"""
from ._foehn import hostlist_compress, hostlist_expand, version as __version__
from ._job import Job, job

__all__ = ["Job", "job", "hostlist_expand", "hostlist_compress", "__version__"]
