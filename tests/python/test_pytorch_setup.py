"""foehn.pytorch.setup() under foehn run and as a job of one (needs torch: the 3.11
run only)."""
import sys

import pytest

from tests.engines.base import again_if_torch_aborted_at_exit
from tests.python.test_tooling import FOEHN, env_here, run

# ---- foehn.pytorch.setup() ----------------------------------------------------------

SETUP = ("import torch, torch.distributed as dist, foehn.pytorch as fp\n"
         "s = fp.setup(seed=7)\n"
         "print('@', s.rank, s.world_size, s.local_rank, s.device, "
         "dist.get_backend() if dist.is_initialized() else None, torch.rand(1).item(), "
         "flush=True)\n")


def setup_lines(stdout):
    return sorted(line.split()[1:] for line in stdout.splitlines() if line.startswith("@"))


def test_setup_under_foehn_run():
    p = again_if_torch_aborted_at_exit(
        lambda: run(FOEHN, "run", "-n", "2", sys.executable, "-c", SETUP),
        lambda p: len(setup_lines(p.stdout)) == 2, "test_setup_under_foehn_run")
    assert p.returncode == 0, p.stderr
    lines = setup_lines(p.stdout)
    assert [x[:5] for x in lines] == [["0", "2", "0", "cpu", "gloo"],
                                      ["1", "2", "1", "cpu", "gloo"]]
    assert lines[0][5] == lines[1][5]  # seeded alike on every rank


def test_setup_job_of_one_has_no_process_group():
    p = run(sys.executable, "-c", SETUP)
    assert p.returncode == 0, p.stderr
    assert setup_lines(p.stdout)[0][:5] == ["0", "1", "0", "cpu", "None"]


@pytest.mark.parametrize("device, needle", [("tpu", "FOEHN_DEVICE='tpu' is not one of"),
                                            ("cuda", "no cuda device")])
def test_setup_device_override(device, needle):
    p = run(sys.executable, "-c", SETUP, env=env_here(FOEHN_DEVICE=device))
    assert p.returncode != 0 and needle in p.stderr, p.stderr
