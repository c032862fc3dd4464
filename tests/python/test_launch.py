"""foehn launch --dry-run --json against recorded environments, written from each
scheduler's documentation (Slurm, PBS with a node file, Flux, LSF, none), on GPU and
CPU-only nodes, with and without overrides; and foehn run --bind-gpus.

Which MPI `mpiexec` is comes from the program itself: the real MPICH (Hydra) and Open
MPI programs are put on PATH as `mpiexec`; Cray's PALS, which does not run here, is
recognised by its install tree (/opt/cray/pals/<version>/bin), so a stand-in in such a
tree is enough for a dry run, which never starts it."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FOEHN = str(Path(sys.executable).with_name("foehn"))
PROGRAM = ["python", "train.py", "--lr", "0.1"]


def bin_dir(tmp_path, **programs):
    """A PATH directory with `name -> target` links (or scripts for text targets)."""
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    for name, target in programs.items():
        p = d / name
        if target.startswith("#!"):
            p.write_text(target)
            p.chmod(0o755)
        else:
            p.symlink_to(target)
    return str(d)


def launch(env, *args, path="/usr/bin:/bin", check=True):
    """foehn launch under exactly `env` (plus PATH and HOSTNAME), as a batch script
    on the allocation's first node would see it."""
    full = {"PATH": path, "HOSTNAME": "n1", **env}
    p = subprocess.run([FOEHN, "launch", *args, "--dry-run", "--json", "--", *PROGRAM],
                       env=full, capture_output=True, text=True, timeout=60)
    if not check:
        return p
    assert p.returncode == 0, p.stderr
    plan = json.loads(p.stdout)
    assert plan["schema"] == "foehn.launch/1"
    assert plan["argv"][-len(PROGRAM):] == PROGRAM
    plan["line"] = plan["argv"][:-len(PROGRAM)]
    return plan


SLURM_GPU = {  # sbatch -N2 --gpus-per-node=4: what the batch script sees
    "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu[01-02]", "SLURM_JOB_NUM_NODES": "2",
    "SLURM_TASKS_PER_NODE": "1(x2)", "SLURM_JOB_CPUS_PER_NODE": "64(x2)",
    "SLURM_NODEID": "0", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
    "CUDA_VISIBLE_DEVICES": "0,1,2,3", "SLURM_SUBMIT_DIR": "/home/me"}
SLURM_CPU = {k: v for k, v in SLURM_GPU.items() if k != "CUDA_VISIBLE_DEVICES"}


def test_slurm_gpu_nodes_one_rank_per_gpu():
    plan = launch(SLURM_GPU)
    assert plan["line"] == ["srun", "--nodes=2", "--ntasks=8", "--ntasks-per-node=4",
                            "--gpus-per-task=1", "--mpi=pmix"]
    assert (plan["n"], plan["ppn"], plan["nhosts"]) == (8, 4, 2)
    assert plan["hosts"] == ["gpu01", "gpu02"]
    assert plan["gpus_per_host"] == 4 and plan["gpus_per_rank"] == 1
    why = "\n".join(plan["why"])
    assert "SLURM_JOB_ID" in why and "CUDA_VISIBLE_DEVICES" in why


def test_slurm_cpu_nodes_one_rank_per_host():
    plan = launch(SLURM_CPU)
    assert plan["line"] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1",
                            "--mpi=pmix"]
    assert plan["gpus_per_host"] == 0


@pytest.mark.parametrize("args, line", [
    (["-n", "6", "--ppn", "3"], ["srun", "--nodes=2", "--ntasks=6", "--ntasks-per-node=3",
                                 "--gpus-per-task=1"]),
    (["--ppn", "2"], ["srun", "--nodes=2", "--ntasks=4", "--ntasks-per-node=2",
                      "--gpus-per-task=2"]),
    (["--nhosts", "1"], ["srun", "--nodes=1", "--ntasks=4", "--ntasks-per-node=4",
                         "--gpus-per-task=1", "--nodelist=gpu01"]),
    (["-n", "3"], ["srun", "--nodes=2", "--ntasks=3", "--ntasks-per-node=2",
                   "--gpus-per-task=2"]),
    (["--cpu-bind", "cores"], ["srun", "--nodes=2", "--ntasks=8", "--ntasks-per-node=4",
                               "--gpus-per-task=1", "--cpu-bind=cores"]),
])
def test_slurm_overrides(args, line):
    plan = launch(SLURM_GPU, *args)
    assert plan["line"] == line + ["--mpi=pmix"]


def test_slurm_mpi_type_of_the_user_wins():
    plan = launch({**SLURM_CPU, "SLURM_MPI_TYPE": "pmi2"})
    assert "--mpi=pmix" not in plan["line"]
    assert any("SLURM_MPI_TYPE=pmi2" in w for w in plan["why"])


def test_slurm_hostfile_names_the_nodes(tmp_path):
    hf = tmp_path / "hosts"
    hf.write_text("# two of the allocation\ngpu02 slots=4\ngpu01:4\n")
    plan = launch(SLURM_CPU, "--hostfile", str(hf))
    assert plan["hosts"] == ["gpu02", "gpu01"]
    assert "--nodelist=gpu02,gpu01" in plan["line"] or "--nodelist=gpu[02,01]" in plan["line"]


def test_bind_gpus_runs_each_rank_through_bind_gpus():
    plan = launch(SLURM_GPU, "--bind-gpus")
    assert plan["line"][-3:] == [FOEHN_REAL, "bind-gpus", "--"]


FOEHN_REAL = os.path.realpath(FOEHN)

PBS_ENV = {"PBS_JOBID": "8120.polaris-pbs-01", "PBS_O_WORKDIR": "/home/me/run"}


@pytest.fixture
def nodefile(tmp_path):
    f = tmp_path / "nodefile"  # PBS: one line per slot (select=2:ncpus=4)
    f.write_text("x3001c0s1b0n0\n" * 4 + "x3001c0s1b1n0\n" * 4)
    return str(f)


def test_pbs_pals_gpu(tmp_path, nodefile):
    pals = tmp_path / "opt" / "cray" / "pals" / "1.2" / "bin"
    pals.mkdir(parents=True)
    (pals / "mpiexec").write_text("#!/bin/sh\necho 'mpiexec version 1.2.12'\n")
    (pals / "mpiexec").chmod(0o755)
    plan = launch({**PBS_ENV, "PBS_NODEFILE": nodefile, "CUDA_VISIBLE_DEVICES": "0,1,2,3"},
                  path=f"{pals}:/usr/bin:/bin")
    assert plan["line"] == ["mpiexec", "--np", "8", "--ppn", "4", "--hostfile", nodefile,
                            "--envall"]
    assert plan["hosts"] == ["x3001c0s1b0n0", "x3001c0s1b1n0"]
    assert any("PALS" in w for w in plan["why"])
    plan = launch({**PBS_ENV, "PBS_NODEFILE": nodefile}, "--nhosts", "1", "--cpu-bind",
                  "depth", path=f"{pals}:/usr/bin:/bin")
    assert plan["line"] == ["mpiexec", "--np", "1", "--ppn", "1", "--hosts", "x3001c0s1b0n0",
                            "--envall", "--cpu-bind", "depth"]


def test_pbs_hydra_cpu(tmp_path, nodefile):
    path = bin_dir(tmp_path, mpiexec="/usr/bin/mpiexec.mpich") + ":/usr/bin:/bin"
    plan = launch({**PBS_ENV, "PBS_NODEFILE": nodefile}, "--ppn", "4", path=path)
    assert plan["line"] == ["mpiexec", "-n", "8", "-ppn", "4", "-f", nodefile, "-envall"]
    assert any("Hydra" in w for w in plan["why"])


def test_pbs_open_mpi(tmp_path, nodefile):
    path = bin_dir(tmp_path, mpiexec="/usr/bin/mpiexec.openmpi") + ":/usr/bin:/bin"
    plan = launch({**PBS_ENV, "PBS_NODEFILE": nodefile}, path=path)
    assert plan["line"][:6] == ["mpiexec", "-n", "2", "--map-by", "ppr:1:node", "--hostfile"]


def test_pbs_without_mpiexec_says_so(nodefile, tmp_path):
    p = launch({**PBS_ENV, "PBS_NODEFILE": nodefile}, path=bin_dir(tmp_path), check=False)
    assert p.returncode == 1 and "no mpiexec on PATH" in p.stderr


FLUX_ENV = {"FLUX_JOB_ID": "f2d7JtGCwGm", "FLUX_URI": "local:///run/flux/local",
            "FLUX_JOB_NNODES": "2", "FLUX_JOB_NODELIST": "tioga[11-12]"}


def test_flux():
    plan = launch({**FLUX_ENV, "ROCR_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"})
    assert plan["line"] == ["flux", "run", "-N", "2", "-n", "16", "--tasks-per-node=8",
                            "-g", "1"]
    plan = launch(FLUX_ENV, "-n", "4")
    assert plan["line"] == ["flux", "run", "-N", "2", "-n", "4", "--tasks-per-node=2"]


LSF_ENV = {"LSB_JOBID": "314159", "LSB_MCPU_HOSTS": "batch3 1 a01n02 42 a01n03 42"}


def test_lsf_jsrun():
    plan = launch({**LSF_ENV, "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5"})
    assert plan["hosts"] == ["a01n02", "a01n03"]  # the launch node dropped
    assert plan["line"] == ["jsrun", "--nrs", "12", "--tasks_per_rs", "1", "--rs_per_host",
                            "6", "--gpu_per_rs", "1"]
    plan = launch(LSF_ENV, "--ppn", "42", "--cpu-bind", "packed:1")
    assert plan["line"] == ["jsrun", "--nrs", "84", "--tasks_per_rs", "1", "--rs_per_host",
                            "42", "--bind", "packed:1"]


def test_no_scheduler_foehn_run(tmp_path):
    plan = launch({"CUDA_VISIBLE_DEVICES": "0,1"}, path=bin_dir(tmp_path))
    assert plan["launcher"] == "foehn run"
    assert plan["line"] == [FOEHN_REAL, "run", "-n", "2", "--"]
    plan = launch({}, "-n", "4", "--bind-gpus", path=bin_dir(tmp_path), check=False)
    assert plan.returncode == 1 and "no accelerators" in plan.stderr


def test_no_scheduler_open_mpi_and_prterun(tmp_path):
    path = bin_dir(tmp_path, mpirun="/usr/bin/mpirun.openmpi") + ":/usr/bin:/bin"
    plan = launch({}, "-n", "4", path=path)
    assert plan["line"][:5] == ["mpirun", "-n", "4", "--map-by", "ppr:4:node"]
    hf = tmp_path / "hosts"
    hf.write_text("a slots=2\nb slots=2\n")
    plan = launch({}, "--hostfile", str(hf), "--ppn", "2", path=path)
    assert plan["line"][:7] == ["mpirun", "-n", "4", "--map-by", "ppr:2:node", "--host",
                                "a,b"] or plan["line"][:7] == [
        "mpirun", "-n", "4", "--map-by", "ppr:2:node", "--hostfile", str(hf)]
    prte = Path(__file__).resolve().parents[2] / ".engines" / "openmpi5" / "bin"
    if (prte / "prterun").exists():
        plan = launch({}, "-n", "2", path=f"{prte}:{path}")
        assert plan["line"][:5] == ["prterun", "-n", "2", "--map-by", "ppr:2:node"]


@pytest.mark.parametrize("args, needle", [
    (["--nhosts", "3"], "--nhosts 3: only 2 hosts"),
    (["-n", "9", "--ppn", "4"], "needs 3 hosts; only 2"),
    (["-n", "9", "--nhosts", "2", "--ppn", "4"], "-n 9 does not fit 2 hosts at 4 ranks"),
    (["--hostfile", "/nonexistent/hosts"], "cannot read the host file /nonexistent/hosts"),
])
def test_impossible_requests_are_refused(args, needle):
    p = launch(SLURM_GPU, *args, check=False)
    assert p.returncode == 1 and needle in p.stderr, p.stderr


@pytest.mark.parametrize("args", [["-n", "0"], ["--ppn", "x"], ["--frobnicate"], ["--json"],
                                  ["--dry-run"]])
def test_usage_errors(args):
    p = subprocess.run([FOEHN, "launch", *args], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "usage: foehn launch" in p.stderr


def test_the_launchers_status_is_ours(tmp_path):
    env = {"PATH": bin_dir(tmp_path, sh="/bin/sh")}  # no MPI launcher: foehn run
    p = subprocess.run([FOEHN, "launch", "-n", "2", "--", "sh", "-c", "exit 3"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 3
    assert "foehn launch:" in p.stderr and "run -n 2 -- sh -c 'exit 3' exited with status 3" \
        in p.stderr


# ---- foehn run --bind-gpus -----------------------------------------------------------

def rank_masks(n, env, *extra):
    code = ("import os; print(os.environ['RANK'], os.environ.get('CUDA_VISIBLE_DEVICES'), "
            "os.environ.get('ROCR_VISIBLE_DEVICES'), os.environ.get('HIP_VISIBLE_DEVICES'), "
            "os.environ.get('ZE_AFFINITY_MASK'))")
    full = {k: v for k, v in os.environ.items() if "VISIBLE_DEVICES" not in k
            and k != "ZE_AFFINITY_MASK"} | env
    p = subprocess.run([FOEHN, "run", "-n", str(n), "--bind-gpus", *extra, sys.executable, "-c",
                        code], env=full, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = {}
    for line in p.stdout.splitlines():
        r, *masks = line.split()
        out[int(r)] = [None if m == "None" else m for m in masks]
    return out


def test_run_bind_gpus_splits_the_mask():
    got = rank_masks(4, {"CUDA_VISIBLE_DEVICES": "4,5,6,7,GPU-1,GPU-2,GPU-3,GPU-4"})
    assert {r: m[0] for r, m in got.items()} == {0: "4,5", 1: "6,7", 2: "GPU-1,GPU-2",
                                                  3: "GPU-3,GPU-4"}


def test_run_bind_gpus_shares_when_fewer_devices_than_ranks():
    got = rank_masks(3, {"CUDA_VISIBLE_DEVICES": "2,3"})
    assert {r: m[0] for r, m in got.items()} == {0: "2", 1: "3", 2: "2"}


def test_run_bind_gpus_amd_and_intel():
    got = rank_masks(2, {"ROCR_VISIBLE_DEVICES": "1,3,5,7", "HIP_VISIBLE_DEVICES": "0,1,3"})
    # HIP picks 1,3,7 out of ROCR's list; rank 0 of 2 gets one of those three
    assert got[0][1:3] == ["1", "0"] and got[1][1:3] == ["3", "0"]
    got = rank_masks(2, {"ZE_AFFINITY_MASK": "0.0,0.1,1.0,1.1"})
    assert got[0][3] == "0.0,0.1" and got[1][3] == "1.0,1.1"


def test_bind_gpus_in_a_rank_uses_its_local_rank():
    env = {k: v for k, v in os.environ.items() if "VISIBLE_DEVICES" not in k}
    env |= {"CUDA_VISIBLE_DEVICES": "0,1,2,3", "OMPI_COMM_WORLD_RANK": "5",
            "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
            "OMPI_COMM_WORLD_LOCAL_SIZE": "4"}
    p = subprocess.run([FOEHN, "bind-gpus", "--", "sh", "-c", "echo $CUDA_VISIBLE_DEVICES"],
                       env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "1"
