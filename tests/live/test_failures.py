"""A rank that dies must never leave the others hanging; bad input to the rendezvous
changes nothing; a bootstrap with no rank 0 ends with a clear error."""
from __future__ import annotations

import socket
import sys
import time

from tests.engines.base import again_if_torch_aborted_at_exit, foehn_program, run

PY = sys.executable

# Rank 1 dies where the others enter the bootstrap (torch imported, no fence yet),
# writing the moment into the file named by argv[1] so the test can time the others.
KILLED_DURING = """
import os, signal, sys, time, torch, foehn.pytorch
if os.environ.get("FOEHN_RANK", os.environ.get("SLURM_PROCID")) == "1":
    open(sys.argv[1], "w").write(repr(time.time()))
    os.kill(os.getpid(), signal.SIGKILL)
foehn.pytorch.init_process_group(backend="gloo")
"""

KILLED_AFTER = """
import os, signal, sys, time, torch, torch.distributed as dist, foehn.pytorch
foehn.pytorch.init_process_group(backend="gloo")
if dist.get_rank() == 1:
    time.sleep(1)
    open(sys.argv[1], "w").write(repr(time.time()))
    os.kill(os.getpid(), signal.SIGKILL)
t = torch.ones(1)
while True:
    dist.all_reduce(t)
"""


def seconds_since(death_file) -> float:
    return time.time() - float(open(death_file).read())


def test_foehn_run_rank_killed_during_bootstrap(tmp_path):
    death = tmp_path / "death"
    r = run([foehn_program(), "run", "--grace", "6", "-n", "4", PY, "-c", KILLED_DURING,
             str(death)], timeout=60)
    assert seconds_since(death) < 10, r.stderr
    assert r.returncode == 128 + 9
    assert "rank 1 was killed by signal 9 (Killed)" in r.stderr
    # Each of the others said itself which rank it lost, without waiting for the grace.
    assert r.stderr.count("foehn.PeerError:") == 3, r.stderr
    assert r.stderr.count("rank 1 died (was killed by signal 9 (Killed)) before the fence") == 3


def test_foehn_run_rank_killed_after_bootstrap(tmp_path):
    death = tmp_path / "death"
    r = run([foehn_program(), "run", "-n", "4", PY, "-c", KILLED_AFTER, str(death)], timeout=60)
    assert seconds_since(death) < 10, r.stderr
    assert r.returncode == 128 + 9
    assert "rank 1 was killed by signal 9 (Killed); stopping the other 3 ranks" in r.stderr
    # The watchdog stopped the others at once, each naming the dead rank.
    for other in (0, 2, 3):
        assert f"died without finishing; stopping rank {other}" in r.stderr, r.stderr
    assert "foehn: rank 1 (host " in r.stderr


def test_no_rank_0_times_out_with_a_clear_error():
    code = ("import os, time, datetime, foehn.pytorch\n"
            "if os.environ['RANK'] == '0': time.sleep(30)\n"
            "foehn.pytorch.init_process_group(backend='gloo', "
            "timeout=datetime.timedelta(seconds=3))\n")
    t0 = time.monotonic()
    r = run([foehn_program(), "run", "--grace", "0.5", "-n", "3", PY, "-c", code], timeout=60)
    took = time.monotonic() - t0
    assert took < 15
    assert r.returncode == 1
    err = r.stderr
    assert "foehn.TimeoutError" in err
    assert "could not learn rank 0's TCPStore address" in err
    assert "foehn" in err and "provider" in err


def test_wrong_token_and_random_bytes_change_nothing():
    """A rank opens connections to the rendezvous port with a wrong token and with
    random bytes, then the job bootstraps and trains as if nothing happened."""
    code = r"""
import os, socket, foehn.pytorch, torch, torch.distributed as dist
host, port = os.environ["FOEHN_RDV_ADDR"].rsplit(":", 1)
if os.environ["RANK"] == "0":
    for payload in (os.urandom(4096), b"\x00" * 64, b"FOEHN" + b"f" * 64,
                    os.environ["FOEHN_RDV_TOKEN"][::-1].encode() * 4):
        s = socket.create_connection((host, int(port)))
        s.sendall(payload)
        s.close()
    half = socket.create_connection((host, int(port)))
    half.sendall(b"\x00\x00\x10\x00")  # half a frame, then silence
foehn.pytorch.init_process_group(backend="gloo")
t = torch.ones(1) * (dist.get_rank() + 1)
dist.all_reduce(t)
print("sum", int(t.item()))
"""
    r = again_if_torch_aborted_at_exit(
        lambda: run([foehn_program(), "run", "-n", "3", PY, "-c", code], timeout=90),
        lambda r: r.stdout.count("sum 6") == 3, "test_wrong_token_and_random_bytes")
    r.check()
    assert r.stdout.split() == ["sum", "6"] * 3


def test_srun_rank_killed_during_bootstrap(slurm, tmp_path):
    """srun with --kill-on-bad-exit (how HPC jobs run) stops the step; ranks on the
    dead rank's node also learn it from PMIx at once."""
    death = tmp_path / "death"
    r = slurm.srun([PY, "-c", KILLED_DURING, str(death)], nodes=2, ntasks=4, mpi="pmix",
                   timeout=90)
    assert seconds_since(death) < 10, r.stderr
    assert r.returncode != 0
    assert "task 1: Killed" in r.stderr, r.stderr


def test_srun_rank_killed_after_bootstrap_without_kill_on_bad_exit(slurm, tmp_path):
    """Slurm's default (no --kill-on-bad-exit) leaves the others in gloo's all_reduce;
    Foehn's watchdog stops each of them, naming the dead rank and its host."""
    death = tmp_path / "death"
    r = slurm.srun([PY, "-c", KILLED_AFTER, str(death)], nodes=2, ntasks=4, mpi="pmix",
                   extra=("--kill-on-bad-exit=0",), timeout=90)
    assert seconds_since(death) < 10, r.stderr
    assert r.returncode != 0
    for other in (0, 2, 3):
        assert f"foehn: rank 1 (host n1) died without finishing; stopping rank {other}" \
            in r.stderr, r.stderr
