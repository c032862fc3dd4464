"""foehn doctor and foehn venv on this machine: a plain process and jobs under foehn
run. Under the real launchers: tests/live/test_doctor.py; foehn.pytorch.setup():
tests/python/test_pytorch_setup.py."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
FOEHN = str(BIN / "foehn")


def env_here(**extra):
    """This environment with the venv's bin first (its python3 has torch) and no
    launcher's variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "PMI", "OMPI_", "FLUX_", "PBS_", "LSB_", "FOEHN_"))}
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    env.update(extra)
    return env


def run(*argv, env=None, timeout=180, cwd=None):
    return subprocess.run(list(argv), env=env or env_here(), capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


# ---- foehn doctor -------------------------------------------------------------------

def checks(report):
    return {c["name"]: c for c in report["checks"]}


def test_doctor_plain_process():
    p = run(FOEHN, "doctor", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    report = json.loads(p.stdout)
    assert report["schema"] == "foehn.doctor/1" and report["ok"] is True
    got = checks(report)
    assert set(got) == {"job", "libpmix", "interfaces", "address", "reach", "gpus", "torch",
                        "limits"}
    assert got["libpmix"]["found"].startswith("libpmix.so.2 loads: OpenPMIx 4.")
    assert got["address"]["found"].startswith("127.0.0.1 on lo")
    if importlib.util.find_spec("torch"):  # this interpreter is the job's python3
        assert "torch 2.13.0" in got["torch"]["found"], got["torch"]
    else:
        assert got["torch"]["level"] == "warn" and "cannot import torch" in got["torch"]["found"]
    assert {"name": "lo", "address": "127.0.0.1"} in report["interfaces"]


def test_doctor_human_output_says_what_to_do():
    p = run(FOEHN, "doctor", env=env_here(PATH="/usr/bin:/bin"))
    assert p.returncode == 0, p.stdout + p.stderr  # no torch: a warning, not a failure
    assert "warn  torch" in p.stdout and "-> pip install torch" in p.stdout
    assert p.stdout.rstrip().endswith("nothing stops a distributed job here")


def test_doctor_across_foehn_run_ranks():
    p = run(FOEHN, "run", "-n", "3", FOEHN, "doctor", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    reports = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    assert len(reports) == 1  # rank 0 speaks for the job
    r = reports[0]
    assert (r["rank"], r["size"]) == (0, 3)
    assert [(x["rank"], x["reaches_rank0"]) for x in r["ranks"]] == [(0, True), (1, True),
                                                                   (2, True)]
    assert checks(r)["reach"]["found"].startswith("all 3 ranks reach rank 0 at 127.0.0.1:")


def test_doctor_refuses_a_broken_environment():
    p = run(FOEHN, "doctor", env=env_here(SLURM_JOB_ID="1", SLURM_JOB_NODELIST="n[1-"))
    assert p.returncode == 1
    assert "FAIL  job" in p.stdout and "SLURM_JOB_NODELIST" in p.stdout


# ---- foehn venv ---------------------------------------------------------------------

def test_venv_creates_reuses_and_activates(tmp_path):
    env = env_here(SLURM_SUBMIT_DIR=str(tmp_path / "submit"))  # the job's working dir
    (tmp_path / "submit").mkdir()
    p = run(FOEHN, "venv", "train", "--python", sys.executable, env=env)
    assert p.returncode == 0, p.stderr
    where = tmp_path / "submit" / "venvs" / "train"
    assert p.stdout.startswith(f"created {where}\n")
    assert f"source '{where}/bin/activate'" in p.stdout
    assert "include-system-site-packages = true" in (where / "pyvenv.cfg").read_text()
    p = run(FOEHN, "venv", "train", "--python", sys.executable, env=env)
    assert p.returncode == 0 and p.stdout.startswith(f"reusing {where}\n"), p.stdout
    # the --shell line, evaluated: the venv is active, and the site-packages of the
    # Python it was made on (the base of this test's venv) are on its path
    script = (f'eval "$({FOEHN} venv --shell --python {sys.executable} train)" && '
              'python -c "import sys; print(sys.prefix); print(*sys.path)"')
    p = run("bash", "-c", script, env=env)
    assert p.returncode == 0, p.stderr
    prefix, path = p.stdout.splitlines()
    assert prefix == str(where)
    assert any(x.endswith("site-packages") and not x.startswith(str(where))
               for x in path.split()), path


def test_venv_is_named_after_the_conda_environment(tmp_path):
    env = env_here(CONDA_DEFAULT_ENV="site-2026", PBS_O_WORKDIR=str(tmp_path))
    p = run(FOEHN, "venv", "--shell", "--python", sys.executable, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"source '{tmp_path}/venvs/site-2026/bin/activate'"


@pytest.mark.parametrize("argv, needle", [(["a/b"], "cannot name a folder"),
                                          (["--python", "/nonexistent/python3"], "no Python"),
                                          (["x", "y"], "unexpected argument")])
def test_venv_bad_input(tmp_path, argv, needle):
    p = run(FOEHN, "venv", *argv, cwd=tmp_path)
    assert p.returncode != 0 and needle in p.stderr
    assert not (tmp_path / "venvs").exists() or needle == "unexpected argument"
