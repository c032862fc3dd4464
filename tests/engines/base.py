"""What every engine shares: finding programs, the missing-engine policy, running ranks."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def engines_required() -> bool:
    """CI sets FOEHN_REQUIRE_ENGINES=1: then a missing engine fails instead of skipping."""
    return os.environ.get("FOEHN_REQUIRE_ENGINES", "") not in ("", "0")


def missing_engine(name: str, why: str):
    """Skip (or fail under FOEHN_REQUIRE_ENGINES=1) because engine `name` is not usable."""
    message = f"engine {name} unavailable: {why}"
    if engines_required():
        pytest.fail(message + " (FOEHN_REQUIRE_ENGINES=1 turns a missing engine into a failure)",
                    pytrace=False)
    pytest.skip(message)


def find_program(name: str, *candidates: str) -> str | None:
    """First existing executable among absolute `candidates`, then `name` on PATH."""
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    return shutil.which(name)


def foehn_program() -> str:
    """The `foehn` command of the environment running the tests."""
    here = Path(sys.executable).parent / "foehn"
    if here.exists():
        return str(here)
    found = shutil.which("foehn")
    if not found:
        pytest.fail("the foehn program is not installed in this environment", pytrace=False)
    return found


@dataclass
class Result:
    """A finished launch: its exit status and what it printed."""
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> "Result":
        if self.returncode != 0:
            raise AssertionError(
                f"{' '.join(self.argv)} exited {self.returncode}\n"
                f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}")
        return self


# torch 2.13's gloo now and then aborts a rank at process exit, after the job did all
# its work ("terminate called without an active exception", SIGABRT in torch's own
# teardown; seen under torchrun too, where Foehn only hands over to env://).
TORCH_TEARDOWN_ABORT = "terminate called without an active exception"


def again_if_torch_aborted_at_exit(launch, finished, what: str):
    """Runs launch(); when the job finished its work (finished(result)) and then a rank
    aborted in torch's teardown, runs it once more and says so. Such a run is never
    passed as it is."""
    result = launch()
    if result.returncode != 0 and TORCH_TEARDOWN_ABORT in result.stderr and finished(result):
        sys.stderr.write(f"{what}: torch aborted in its teardown after the job finished; "
                         "running it once more\n" + result.stderr[-2000:])
        result = launch()
    return result


def run(argv: list[str], *, env: dict | None = None, timeout: float = 120,
        cwd: str | os.PathLike | None = None) -> Result:
    """Run a launcher command to completion, never longer than `timeout` seconds.

    The launcher gets a session (process group) of its own, so that on a timeout the whole
    group -- launcher and every rank it started -- is killed, and no orphaned rank keeps the
    output pipes open (which would otherwise hang the test forever)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    p = subprocess.Popen(argv, env=full_env, cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(p)
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            out, err = "", "(output lost: pipes still open after the kill)"
        raise AssertionError(f"{' '.join(argv)} did not finish within {timeout} s\n"
                             f"--- stdout\n{out}\n--- stderr\n{err}") from None
    finally:
        if p.poll() is None:
            _kill_group(p)
    return Result(argv, p.returncode, out, err)


def _kill_group(p: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, the process group that `p` leads (it was started in its own):
    the launcher and whatever ranks it left behind."""
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(timeout=3)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    p.wait()


# --- what engines share -----------------------------------------------------------------

def venv_bin() -> Path:
    """The bin folder of the environment running the tests (not resolved: a venv's python
    is a symlink to the base interpreter, and its folder is what matters)."""
    return Path(sys.executable).parent


def with_venv_path(env: dict | None = None) -> dict:
    """`env` plus PATH with the test environment's bin folder first, so that ranks find
    `python`, `foehn` and friends of the environment running the tests."""
    out = dict(env or {})
    path = out.get("PATH", os.environ.get("PATH", ""))
    first = str(venv_bin())
    parts = [p for p in path.split(os.pathsep) if p and p != first]
    out["PATH"] = os.pathsep.join([first] + parts)
    return out


class Engine:
    """A launcher the tests start for real. Subclasses fill in the names below.

    `vars` maps what a rank wants to know to the variable the launcher sets for it
    ("rank", "size", "local_rank", "local_size", "node"); None where the launcher sets
    no variable for it (the rank must then ask the launcher's PMI/PMIx server)."""
    name = "engine"
    vars: dict[str, str | None] = {}

    def available(self) -> str | None:
        raise NotImplementedError

    def command(self, n: int, argv: list[str], *, env: dict | None = None,
                extra=()) -> tuple[list[str], dict]:
        """The launch line and the environment to start it with."""
        raise NotImplementedError

    def launch(self, n: int, argv: list[str], *, env: dict | None = None,
               timeout: float = 120, extra=(), cwd=None) -> Result:
        """Start `argv` as `n` ranks; `env` reaches every rank."""
        cmd, full_env = self.command(n, list(argv), env=env, extra=extra)
        return run(cmd, env=full_env, timeout=timeout, cwd=cwd)

    def rank_of(self, environ: dict) -> int | None:
        v = environ.get(self.vars.get("rank") or "")
        return int(v) if v not in (None, "") else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} engine>"


# Variables a recording keeps (prefixes): what launchers and schedulers set for ranks.
RECORDED_PREFIXES = ("OMPI_", "PMIX_", "PMI_", "PMI", "MPI_", "PRTE_", "HYDRA", "HYDI",
                     "MPICH", "I_MPI", "TORCHELASTIC", "GROUP_", "ROLE_", "LOCAL_", "RANK",
                     "WORLD_SIZE", "MASTER_", "SLURM_", "OMP_")

_DUMP_ENV = r"""
import json, os, socket, sys
d = sys.argv[1]
rec = {"host": socket.gethostname(), "pid": os.getpid(), "env": dict(os.environ)}
tmp = os.path.join(d, f".{os.getpid()}.tmp")
with open(tmp, "w") as f:
    json.dump(rec, f)
os.rename(tmp, os.path.join(d, f"{os.getpid()}.json"))
"""


def rank_environments(engine: Engine, n: int, workdir: str | os.PathLike, *,
                      env: dict | None = None, timeout: float = 120) -> list[dict]:
    """Start `n` ranks under `engine`; return what each saw: {"host", "pid", "env"}.

    Each rank writes its own file (stdout of several ranks may interleave)."""
    import json
    d = Path(workdir)
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("*.json"):
        old.unlink()
    engine.launch(n, [sys.executable, "-c", _DUMP_ENV, str(d)], env=env,
                  timeout=timeout).check()
    return [json.loads(f.read_text()) for f in sorted(d.glob("*.json"))]


def recording_text(rec: dict) -> str:
    """A rank's environment as a recording: `# host: H`, then sorted KEY=VALUE lines."""
    lines = [f"# host: {rec['host']}"]
    for k in sorted(rec["env"]):
        v = rec["env"][k]
        if k.startswith(RECORDED_PREFIXES) and "\n" not in v:
            lines.append(f"{k}={v}")
    return "\n".join(lines) + "\n"
