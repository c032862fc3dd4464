"""foehn.job() and the hostlist helpers from Python (runs on 3.11 and 3.13 with the
same stable-ABI build)."""
import dataclasses
import sys

import pytest

import foehn


def test_plain_process():
    j = foehn.job({}, hostname="h1", cwd="/work", sysroot="/nonexistent")
    assert (j.launcher, j.scheduler) == ("none", "none")
    assert (j.rank, j.size, j.local_rank, j.local_size, j.node_index, j.num_nodes) == (0, 1, 0, 1, 0, 1)
    assert j.hosts == ("h1",) and j.ranks_per_host == (1,)
    assert j.gpus == () and j.gpu_vendor is None
    assert j.workdir == "/work"


def test_job_is_immutable():
    j = foehn.job({}, hostname="h1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        j.rank = 3


def test_slurm_step():
    env = {"SLURM_JOB_ID": "42", "SLURM_STEP_ID": "0", "SLURM_PROCID": "3",
           "SLURM_STEP_NUM_TASKS": "4", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
           "SLURM_STEP_NODELIST": "n[01-02]", "SLURM_STEP_TASKS_PER_NODE": "2(x2)",
           "SLURM_JOB_NODELIST": "n[01-02]", "SLURM_TASKS_PER_NODE": "2(x2)",
           "CUDA_VISIBLE_DEVICES": "1"}
    j = foehn.job(env, hostname="n02")
    assert (j.launcher, j.scheduler, j.job_id) == ("slurm", "slurm", "42")
    assert (j.rank, j.size, j.local_rank, j.local_size, j.node_index) == (3, 4, 1, 2, 1)
    assert j.hosts == ("n01", "n02") and j.ranks_per_host == (2, 2)
    assert j.gpu_vendor == "nvidia" and j.gpus == ("1",)
    assert j.gpu_mask_variable == "CUDA_VISIBLE_DEVICES"
    assert j.to_dict()["schema"] == "foehn.job/1"


def test_default_environment_is_this_process():
    j = foehn.job()
    assert j.hostname and j.workdir


@pytest.mark.parametrize("env,needle", [
    ({"OMPI_COMM_WORLD_RANK": "x", "OMPI_COMM_WORLD_SIZE": "2"}, 'OMPI_COMM_WORLD_RANK="x"'),
    ({"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "n[1-"}, "SLURM_JOB_NODELIST"),
    ({"CUDA_VISIBLE_DEVICES": "zero"}, 'CUDA_VISIBLE_DEVICES="zero"'),
])
def test_malformed_environment_names_the_variable(env, needle):
    with pytest.raises(ValueError) as e:
        foehn.job(env, hostname="h1")
    assert needle in str(e.value)


def test_missing_node_file_is_an_oserror():
    with pytest.raises(OSError, match="PBS_NODEFILE"):
        foehn.job({"PBS_JOBID": "1", "PBS_NODEFILE": "/nonexistent/nodes"}, hostname="h1")


def test_environment_must_be_strings():
    with pytest.raises(TypeError):
        foehn.job({"RANK": 1})


def test_hostlist_expand_and_compress():
    hosts = foehn.hostlist_expand("n[001-003,010],gpu[1-2]-ib")
    assert hosts == ["n001", "n002", "n003", "n010", "gpu1-ib", "gpu2-ib"]
    assert foehn.hostlist_expand(foehn.hostlist_compress(hosts)) == hosts
    with pytest.raises(ValueError, match=r"n\[1-"):
        foehn.hostlist_expand("n[1-")


def test_extension_is_stable_abi():
    """One build serves every interpreter: the extension carries the abi3 tag."""
    from foehn import _foehn
    assert ".abi3." in _foehn.__file__, _foehn.__file__
    assert foehn.__version__ == _foehn.version
    assert sys.version_info >= (3, 9)
