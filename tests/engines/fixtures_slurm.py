"""The `slurm` fixture: one real Slurm cluster (munged, slurmctld, slurmd n1 and n2) for
the whole test session. ``tests/conftest.py`` imports it with
``from tests.engines.fixtures_slurm import *``."""
from __future__ import annotations

import pytest

from tests.engines.slurm import SlurmCluster, slurm_cluster

__all__ = ["slurm"]


@pytest.fixture(scope="session")
def slurm() -> SlurmCluster:
    """A started SlurmCluster; stopped (processes, namespaces, bridge) at session end.
    Skips where Slurm, munge or root is missing (fails under FOEHN_REQUIRE_ENGINES=1)."""
    yield from slurm_cluster()
