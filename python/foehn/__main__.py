"""`python -m foehn ARGS` runs the foehn program installed with this package.

`python -m foehn -np 4 script.py [args]` is `foehn run -np 4 <this python> script.py
[args]`: the form pympi users know.
"""
import os
import shutil
import sys
from pathlib import Path

RANK_OPTIONS = ("-n", "-np", "--np", "--n")


def program() -> str:
    beside = Path(sys.executable).with_name("foehn")
    if beside.exists():
        return str(beside)
    found = shutil.which("foehn")
    if not found:
        sys.exit("foehn: the foehn program is not installed next to this Python nor on PATH")
    return found


def arguments(args: list) -> list:
    """`-np N script.py ...` becomes `run -np N python script.py ...`."""
    if not args or args[0] not in RANK_OPTIONS:
        return args
    out = ["run"]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            out += args[i:i + 1]
            i += 1
            break
        if not a.startswith("-"):
            break
        out.append(a)
        if a in RANK_OPTIONS + ("--grace",) and i + 1 < len(args):
            out.append(args[i + 1])
            i += 1
        i += 1
    rest = args[i:]
    if rest and rest[0].endswith(".py"):
        rest = [sys.executable] + rest
    return out + rest


if __name__ == "__main__":
    exe = program()
    os.execv(exe, [exe, *arguments(sys.argv[1:])])
