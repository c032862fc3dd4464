"""`torchrun` from the torch wheel of the environment running the tests."""
from __future__ import annotations

import importlib.util
import os
import shutil

from .base import Engine, venv_bin, with_venv_path


class Torchrun(Engine):
    """torchrun --standalone --nproc-per-node N --no-python ARGV...

    `--no-python` makes it start ARGV as given (like mpirun) instead of `python ARGV`.
    Ranks inherit torchrun's environment, so `env` reaches them without flags. A failing
    rank makes torchrun exit 1 (not the rank's status) after a ChildFailedError report."""
    name = "torchrun"
    vars = {"rank": "RANK", "size": "WORLD_SIZE", "local_rank": "LOCAL_RANK",
            "local_size": "LOCAL_WORLD_SIZE", "node": "GROUP_RANK"}

    def __init__(self, program: str | None = None):
        here = venv_bin() / "torchrun"
        self.program = program or (str(here) if os.access(here, os.X_OK) else None)

    def available(self) -> str | None:
        if not self.program:
            return (f"no torchrun next to the python running the tests ({venv_bin()}): "
                    f"pip install torch==2.13.0")
        if importlib.util.find_spec("torch") is None:
            return "torch is not importable by the python running the tests"
        return None

    def command(self, n, argv, *, env=None, extra=()):
        full = with_venv_path(env)
        cmd = [self.program, "--standalone", "--nproc-per-node", str(n), "--no-python",
               *extra, *argv]
        return cmd, full


def find_torchrun() -> str | None:
    """torchrun next to the running python, else on PATH."""
    return Torchrun().program or shutil.which("torchrun")
