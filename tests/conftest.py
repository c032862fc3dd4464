"""Fixtures shared by every test: the real engines (see tests/engines/)."""
from tests.engines.fixtures_mpi import *  # noqa: F401,F403
from tests.engines.fixtures_slurm import *  # noqa: F401,F403

import pytest  # noqa: E402

from tests.engines.base import REPO  # noqa: E402


def c_test_program(name: str) -> str:
    """A C test program from the plain C build that scripts/test.sh makes before the
    Python tests."""
    exe = REPO / "build" / "c" / "tests" / name
    if not exe.exists():
        pytest.fail(f"{exe} is missing: build it with `meson setup build/c && meson compile "
                    f"-C build/c` (scripts/test.sh does)", pytrace=False)
    return str(exe)


@pytest.fixture(scope="session")
def pm_exchange() -> str:
    """Exchanges keys through the pm layer (tests/c/pm_exchange.c)."""
    return c_test_program("pm_exchange")


@pytest.fixture(scope="session")
def test_p2p() -> str:
    """The communicator's point-to-point checks in C (tests/c/test_p2p.c)."""
    return c_test_program("test_p2p")
