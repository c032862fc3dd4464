"""foehn.job(): the C discovery layer's record as an immutable Python object."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

from . import _foehn

SCHEMA = "foehn.job/1"


@dataclass(frozen=True)
class Job:
    """Where this process is. Fields follow schema foehn.job/1 (docs/job-schema.md);
    a number the environment does not tell is None."""
    launcher: str
    launcher_variable: Optional[str]
    scheduler: str
    scheduler_variable: Optional[str]
    job_id: Optional[str]
    rank: Optional[int]
    size: Optional[int]
    local_rank: Optional[int]
    local_size: Optional[int]
    node_index: Optional[int]
    num_nodes: Optional[int]
    hostname: str
    hosts: Optional[Tuple[str, ...]]
    ranks_per_host: Optional[Tuple[int, ...]]
    allocation_hosts: Optional[Tuple[str, ...]]
    allocation_slots: Optional[Tuple[int, ...]]
    gpu_vendor: Optional[str]
    gpus: Tuple[str, ...]
    gpu_mask_variable: Optional[str]
    node_gpus: Optional[int]
    workdir: str

    @classmethod
    def from_json(cls, text: str) -> "Job":
        record = json.loads(text)
        schema = record.pop("schema")
        if schema != SCHEMA:
            raise ValueError(f"unexpected job schema {schema!r}, expected {SCHEMA!r}")
        frozen = {k: tuple(v) if isinstance(v, list) else v for k, v in record.items()}
        return cls(**frozen)

    def to_dict(self) -> dict:
        """The record as foehn env --json prints it."""
        out = {"schema": SCHEMA}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        return out


def job(environ: Optional[Mapping[str, str]] = None, *, sysroot: Optional[str] = None,
        hostname: Optional[str] = None, cwd: Optional[str] = None) -> Job:
    """Discover the job from `environ` (default: this process's environment).

    Raises ValueError naming the variable and its value when the environment is
    malformed (a broken hostlist, a non-numeric rank, counts that disagree).
    """
    return Job.from_json(_foehn.job_json(environ, sysroot=sysroot, hostname=hostname, cwd=cwd))
