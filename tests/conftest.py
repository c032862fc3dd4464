"""Fixtures shared by every test: the real engines (see tests/engines/)."""
from tests.engines.fixtures_mpi import *  # noqa: F401,F403
from tests.engines.fixtures_slurm import *  # noqa: F401,F403
