"""`python -m foehn ARGS` runs the foehn program installed with this package."""
import os
import shutil
import sys
from pathlib import Path


def program() -> str:
    beside = Path(sys.executable).with_name("foehn")
    if beside.exists():
        return str(beside)
    found = shutil.which("foehn")
    if not found:
        sys.exit("foehn: the foehn program is not installed next to this Python nor on PATH")
    return found


if __name__ == "__main__":
    exe = program()
    os.execv(exe, [exe, *sys.argv[1:]])
