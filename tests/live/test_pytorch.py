"""foehn.pytorch.init_process_group beyond the DDP example: arguments passed through,
the address it publishes, the variables it exports, and its errors."""
from __future__ import annotations

import json
import sys

from tests.engines.base import foehn_program, run

PY = sys.executable

REPORT = """
import json, os, torch.distributed as dist, foehn.pytorch
foehn.pytorch.init_process_group({args})
print(json.dumps({{k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK",
    "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GLOO_SOCKET_IFNAME")}}
    | {{"backend": str(dist.get_backend()), "rank": dist.get_rank(),
        "world": dist.get_world_size()}}) + "\\n", end="", flush=True)
dist.barrier()
dist.destroy_process_group()
"""


def reports(result) -> list[dict]:
    result.check()
    return sorted((json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")),
                  key=lambda r: r["rank"])


def test_exports_and_default_backend_under_foehn_run():
    recs = reports(run([foehn_program(), "run", "-n", "2", PY, "-c", REPORT.format(args="")],
                       env={"MASTER_ADDR": "", "MASTER_PORT": ""}, timeout=120))
    assert [r["rank"] for r in recs] == [0, 1]
    port = recs[0]["MASTER_PORT"]
    for r in recs:
        assert r["backend"] == "gloo"  # no CUDA here
        assert (r["RANK"], r["WORLD_SIZE"], r["LOCAL_RANK"], r["LOCAL_WORLD_SIZE"]) == \
            (str(r["rank"]), "2", str(r["rank"]), "2")
        assert r["MASTER_ADDR"] == "127.0.0.1" and r["MASTER_PORT"] == port and int(port) > 0
        assert r["GLOO_SOCKET_IFNAME"] == "lo"


def test_two_nodes_publish_a_routable_address(slurm):
    """Never loopback across nodes: rank 0's address on the nodes' network, and gloo
    steered to the interface that holds it."""
    recs = reports(slurm.srun([PY, "-c", REPORT.format(args="backend='gloo'")], nodes=2,
                              ntasks=2, mpi="pmix", timeout=120))
    addr = recs[0]["MASTER_ADDR"]
    assert addr.startswith("10.213.77."), addr
    assert all(r["MASTER_ADDR"] == addr and r["GLOO_SOCKET_IFNAME"] == "eth0" for r in recs)


def test_foehn_iface_is_followed(tmp_path):
    recs = reports(run([foehn_program(), "run", "-n", "2", PY, "-c",
                        REPORT.format(args="backend='gloo'")],
                       env={"FOEHN_IFACE": "lo", "GLOO_SOCKET_IFNAME": ""}, timeout=120))
    assert all(r["MASTER_ADDR"] == "127.0.0.1" and r["GLOO_SOCKET_IFNAME"] == "lo"
               for r in recs)


def test_unknown_foehn_iface_is_a_clear_error():
    r = run([foehn_program(), "run", "-n", "2", PY, "-c", REPORT.format(args="")],
            env={"FOEHN_IFACE": "nosuch0"}, timeout=120)
    assert r.returncode != 0
    assert 'FOEHN_IFACE="nosuch0": no such network interface here' in r.stderr


def test_explicit_init_method_is_untouched(tmp_path):
    """file:// with rank and world size given: torch's own rendezvous, no Foehn pm
    (FOEHN_PM=nonsense would fail if Foehn's were used)."""
    args = f"backend='gloo', init_method='file://{tmp_path}/rdv', rank=0, world_size=1"
    recs = reports(run([PY, "-c", REPORT.format(args=args)], env={"FOEHN_PM": "nonsense"},
                       timeout=60))
    assert recs[0]["world"] == 1 and recs[0]["MASTER_PORT"] in (None, "")


def test_explicit_store_is_untouched():
    code = REPORT.format(args="backend='gloo', store=store, rank=0, world_size=1").replace(
        "foehn.pytorch.init_process_group(",
        "store = dist.HashStore()\nfoehn.pytorch.init_process_group(")
    recs = reports(run([PY, "-c", code], env={"FOEHN_PM": "nonsense"}, timeout=60))
    assert recs[0]["world"] == 1


def test_a_wrong_rank_argument_is_refused():
    r = run([foehn_program(), "run", "-n", "2", PY, "-c", REPORT.format(args="rank=5")],
            timeout=120)
    assert r.returncode != 0
    assert "rank=5 was given, but foehn says this rank's rank is" in r.stderr


def test_arguments_torch_does_not_take_are_refused():
    r = run([PY, "-c", REPORT.format(args="backend='gloo', bogus=1")], timeout=60)
    assert r.returncode != 0
    assert "foehn.pytorch.init_process_group: got an unexpected keyword argument 'bogus'" \
        in r.stderr


INIT = """
import foehn
ctx = foehn.init()
ctx.put("who", f"rank {ctx.rank} on {ctx.hostname}")
ctx.commit()
ctx.fence()
seen = [ctx.get(r, "who").decode() for r in range(ctx.size)]
assert seen == [f"rank {r} on {ctx.hostname}" for r in range(ctx.size)], seen
try:
    ctx.get(0, "nobody-put-this")
    raise SystemExit("a missing key must raise KeyError")
except KeyError:
    pass
ctx.barrier()
print(f"ok {ctx.rank} {ctx.size} {ctx.local_rank} {ctx.local_size} {ctx.provider}\\n",
      end="", flush=True)
"""


def python_exchange(result, n, provider):
    result.check()
    lines = sorted(x for x in result.stdout.splitlines() if x.startswith("ok "))
    assert lines == [f"ok {r} {n} {r} {n} {provider}" for r in range(n)], result.stdout


def test_foehn_init_under_foehn_run():
    python_exchange(run([foehn_program(), "run", "-n", "3", PY, "-c", INIT], timeout=60), 3,
                    "foehn")


def test_foehn_init_under_mpirun(openmpi):
    python_exchange(openmpi.launch(3, [PY, "-c", INIT]), 3, "pmix")


def test_foehn_init_under_hydra(hydra):
    python_exchange(hydra.launch(3, [PY, "-c", INIT]), 3, "pmi")


def test_foehn_debug_times_each_bootstrap_phase():
    r = run([foehn_program(), "run", "-n", "2", PY, "-c", REPORT.format(args="backend='gloo'")],
            env={"FOEHN_DEBUG": "1"}, timeout=120)
    r.check()
    for phase in ("foehn.init (foehn provider under foehn)", "address 127.0.0.1 (lo:",
                  "TCPStore on 127.0.0.1:", "fence: rank 0's address learnt",
                  "connected to the TCPStore at 127.0.0.1:",
                  "torch.distributed.init_process_group (gloo)"):
        assert phase in r.stderr, phase
    assert "foehn[rank 1 of 2]: torch.distributed.init_process_group (gloo)" in r.stderr
