"""The foehn program's env command: human, JSON and shell output, and bad input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FOEHN = str(Path(sys.executable).with_name("foehn"))


def foehn(*args, env=None, check=True):
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("SLURM_", "PMI", "OMPI_", "FLUX_", "PBS_", "LSB_", "COBALT_"))}
    full.update(env or {})
    p = subprocess.run([FOEHN, *args], env=full, capture_output=True, text=True, timeout=30)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def test_json_schema():
    rec = json.loads(foehn("env", "--json").stdout)
    assert rec["schema"] == "foehn.job/1"
    assert set(rec) == {
        "schema", "launcher", "launcher_variable", "scheduler", "scheduler_variable", "job_id",
        "rank", "size", "local_rank", "local_size", "node_index", "num_nodes", "hostname",
        "hosts", "ranks_per_host", "allocation_hosts", "allocation_slots", "gpu_vendor",
        "gpus", "gpu_mask_variable", "node_gpus", "workdir"}


def test_json_matches_python_face():
    import foehn as f
    rec = json.loads(foehn("env", "--json", env={"CUDA_VISIBLE_DEVICES": "0,1"}).stdout)
    assert rec == f.job({**os.environ, "CUDA_VISIBLE_DEVICES": "0,1"}).to_dict() | {
        "workdir": rec["workdir"]}


def test_human_summary_under_a_launcher():
    out = foehn("env", env={"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1",
                            "MPI_LOCALNRANKS": "2", "CUDA_VISIBLE_DEVICES": "3"}).stdout
    assert "launcher    hydra  (from PMI_RANK)" in out
    assert "rank        1 of 2" in out
    assert "nvidia [3]  (from CUDA_VISIBLE_DEVICES)" in out


def test_shell_lines_evaluate(tmp_path):
    nodefile = tmp_path / "nodes"
    nodefile.write_text("x1001\nx1001\nx1002\nx1002\n")
    env = {"PBS_JOBID": "9.pbs", "PBS_NODEFILE": str(nodefile), "PBS_O_WORKDIR": str(tmp_path),
           "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    script = (f'eval "$({FOEHN} env --shell)"; '
              'echo "$FOEHN_NHOSTS|$FOEHN_HOSTS|$FOEHN_HOSTLIST|$FOEHN_NGPU_PER_HOST|'
              '$FOEHN_NGPUS|$FOEHN_JOBID|$FOEHN_WORKDIR|$FOEHN_SCHEDULER"')
    full = {**os.environ, **env}
    out = subprocess.run(["sh", "-c", script], env=full, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == f"2|x1001 x1002|x[1001-1002]|4|8|9.pbs|{tmp_path}|pbs"


def test_shell_quotes_hostile_values(tmp_path):
    weird = tmp_path / "it's $(here)"
    weird.mkdir()
    out = subprocess.run(["sh", "-c", f'eval "$({FOEHN} env --shell)"; printf %s "$FOEHN_WORKDIR"'],
                         env={**os.environ, "SLURM_JOB_ID": "1", "SLURM_SUBMIT_DIR": str(weird)},
                         capture_output=True, text=True, check=True).stdout
    assert out == str(weird)


@pytest.mark.parametrize("env,needle", [
    ({"SLURM_JOB_ID": "5", "SLURM_STEP_ID": "0", "SLURM_PROCID": "one"}, 'SLURM_PROCID="one"'),
    ({"SLURM_JOB_ID": "5", "SLURM_JOB_NODELIST": "n[3-1]"}, "n[3-1]"),
    ({"LSB_JOBID": "5", "LSB_MCPU_HOSTS": "h1"}, "LSB_MCPU_HOSTS"),
])
def test_bad_environment_is_refused_with_its_name(env, needle):
    p = foehn("env", "--json", env=env, check=False)
    assert p.returncode == 1
    assert p.stdout == ""
    assert needle in p.stderr and p.stderr.startswith("foehn env: ")


def test_usage_errors():
    assert foehn("env", "--bogus", check=False).returncode == 2
    assert foehn("frobnicate", check=False).returncode == 2
    assert "env" in foehn("--help").stdout
    assert foehn("--version").stdout.startswith("foehn ")


def test_python_dash_m():
    p = subprocess.run([sys.executable, "-m", "foehn", "env", "--json"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0 and json.loads(p.stdout)["schema"] == "foehn.job/1"
