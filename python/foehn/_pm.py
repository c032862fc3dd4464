"""foehn.init(): this rank's place in the job and a key-value exchange between ranks,
through the launcher's own process-management service (PMIx, PMI-1/2, or foehn run's
rendezvous), chosen automatically (FOEHN_PM forces one)."""
from __future__ import annotations

import atexit
import threading
from typing import Optional, Union

from . import _foehn

_lock = threading.Lock()
_current: Optional["ProcessGroupInfo"] = None


class ProcessGroupInfo:
    """This rank's handle: rank, size, local_rank, local_size, node_index, num_nodes,
    provider and launcher, plus put/commit/fence/get/barrier for any library."""

    def __init__(self, pm: "_foehn.PM"):
        self._pm = pm
        info = pm.info()
        self.rank: int = info["rank"]
        self.size: int = info["size"]
        self.local_rank: int = info["local_rank"]
        self.local_size: int = info["local_size"]
        self.node_index: int = info["node_index"]
        self.num_nodes: int = info["num_nodes"]
        self.provider: str = info["provider"]
        self.launcher: str = info["launcher"]
        self.hostname: str = info["hostname"]
        self.timeout: float = info["timeout"]

    def put(self, key: str, value: Union[str, bytes]) -> None:
        """Share `value` under `key`; others see it after commit() and fence()."""
        self._pm.put(key, value)

    def commit(self) -> None:
        self._pm.commit()

    def fence(self, timeout: Optional[float] = None) -> None:
        """Wait until every rank's committed values are visible (collective)."""
        self._pm.fence(timeout=timeout)

    def get(self, rank: int, key: str, timeout: Optional[float] = None) -> bytes:
        """`rank`'s value for `key` (after a fence). KeyError if it never put it."""
        return self._pm.get(rank, key, timeout=timeout)

    def barrier(self, timeout: Optional[float] = None) -> None:
        self._pm.barrier(timeout=timeout)

    def abort(self, status: int = 1, message: str = "") -> None:
        """Ask the launcher to stop the whole job."""
        self._pm.abort(status, message)

    def finalize(self, _at_exit: bool = False) -> None:
        """Leave the job: release the launcher's service (and say goodbye to the
        watchdog, so that this rank's end is not taken for a death)."""
        global _current
        with _lock:
            self._pm.finalize(at_exit=_at_exit)
            if _current is self:
                _current = None

    def __repr__(self) -> str:
        return (f"<foehn rank {self.rank} of {self.size} (local {self.local_rank} of "
                f"{self.local_size}, node {self.node_index} of {self.num_nodes}) "
                f"via {self.provider} under {self.launcher}>")


def init() -> ProcessGroupInfo:
    """Join the job (once per process; later calls return the same handle). Finalized
    at exit. Raises foehn.Error with a sentence saying what is missing when the
    launcher offers no service Foehn can use."""
    global _current
    with _lock:
        if _current is None:
            _current = ProcessGroupInfo(_foehn.PM())
            atexit.register(_finalize_at_exit)
        return _current


def _finalize_at_exit() -> None:
    current = _current
    if current is not None:
        # The exit status is not known yet: the watchdog's own exit hook says
        # goodbye for a clean exit and stays silent for a failing one.
        current.finalize(_at_exit=True)
