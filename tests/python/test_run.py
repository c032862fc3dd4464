"""foehn run, the embedded launcher: what ranks get, their output and stdin, signals,
failures, and bad arguments."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

FOEHN = str(Path(sys.executable).with_name("foehn"))
PY = sys.executable


def run(*args, input=None, timeout=60, env=None):
    full = {**os.environ, **(env or {})}
    return subprocess.run([FOEHN, "run", *args], input=input, capture_output=True, text=True,
                          timeout=timeout, env=full)


def test_ranks_get_their_variables():
    code = ("import os; print(' '.join(os.environ[k] for k in ('FOEHN_RANK','FOEHN_SIZE',"
            "'FOEHN_LOCAL_RANK','FOEHN_LOCAL_SIZE','RANK','WORLD_SIZE','LOCAL_RANK',"
            "'LOCAL_WORLD_SIZE')))")
    p = run("-n", "3", PY, "-c", code)
    assert p.returncode == 0, p.stderr
    assert sorted(p.stdout.splitlines()) == [f"{r} 3 {r} 3 {r} 3 {r} 3" for r in range(3)]


def test_each_job_has_its_own_token_and_job_id():
    code = "import os; print(os.environ['FOEHN_RDV_TOKEN'], os.environ['FOEHN_JOB_ID'])"
    a, b = run("-n", "2", PY, "-c", code), run("-n", "2", PY, "-c", code)
    tokens_a = {line.split()[0] for line in a.stdout.splitlines()}
    tokens_b = {line.split()[0] for line in b.stdout.splitlines()}
    assert len(tokens_a) == 1 and len(tokens_b) == 1 and tokens_a != tokens_b
    assert len(next(iter(tokens_a))) == 64


def test_foehn_env_sees_foehn_run():
    import json
    p = run("-n", "2", FOEHN, "env", "--json")
    recs = sorted((json.loads(x) for x in p.stdout.splitlines()), key=lambda r: r["rank"])
    assert [(r["launcher"], r["rank"], r["size"], r["local_size"], r["num_nodes"]) for r in recs] \
        == [("foehn", 0, 2, 2, 1), ("foehn", 1, 2, 2, 1)]


def test_stdin_goes_to_rank_0_only():
    code = "import os,sys; print(os.environ['FOEHN_RANK'], repr(sys.stdin.read()))"
    p = run("-n", "3", PY, "-c", code, input="hello\nworld\n")
    assert sorted(p.stdout.splitlines()) == ["0 'hello\\nworld\\n'", "1 ''", "2 ''"]


def test_lines_stay_whole_and_tagged():
    # Every rank writes long lines in many small pieces; no line may mix ranks.
    code = ("import os,sys\nr=os.environ['FOEHN_RANK']\n"
            "for i in range(200):\n"
            "    for c in ('x'*300):\n        sys.stdout.write(r); sys.stdout.flush()\n"
            "    sys.stdout.write('\\n'); sys.stdout.flush()\n"
            "sys.stdout.write('tail-without-newline-'+r)\n")
    p = run("--tag-output", "-n", "3", PY, "-c", code, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 3 * 201
    for line in lines:
        tag, _, body = line.partition("] ")
        r = tag.lstrip("[")
        assert body == r * 300 or body == f"tail-without-newline-{r}", line[:80]


def test_failed_rank_stops_the_others_and_sets_the_status():
    code = ("import os,sys,time\n"
            "if os.environ['FOEHN_RANK']=='2': sys.exit(7)\n"
            "time.sleep(60)\n")
    t0 = time.monotonic()
    p = run("--grace", "1", "-n", "4", PY, "-c", code)
    assert time.monotonic() - t0 < 10
    assert p.returncode == 7
    assert "rank 2 exited with status 7; stopping the other 3 ranks" in p.stderr


def test_killed_rank_is_reported_by_signal():
    code = ("import os,signal,time\n"
            "if os.environ['FOEHN_RANK']=='1': os.kill(os.getpid(), signal.SIGKILL)\n"
            "time.sleep(60)\n")
    p = run("--grace", "0.5", "-n", "2", PY, "-c", code)
    assert p.returncode == 128 + signal.SIGKILL
    assert "rank 1 was killed by signal 9" in p.stderr


def test_sigint_is_forwarded_to_every_rank(tmp_path):
    code = ("import os,signal,sys,time\n"
            "def h(s,f):\n"
            "    open(os.path.join(sys.argv[1], os.environ['FOEHN_RANK']),'w').write('int')\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGINT, h)\n"
            "open(os.path.join(sys.argv[1], 'ready'+os.environ['FOEHN_RANK']),'w').close()\n"
            "time.sleep(60)\n")
    p = subprocess.Popen([FOEHN, "run", "-n", "3", PY, "-c", code, str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("ready*"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert sorted(f.name for f in tmp_path.iterdir() if not f.name.startswith("ready")) == \
        ["0", "1", "2"]
    assert p.returncode == 128 + signal.SIGINT, err


def test_ranks_that_ignore_sigterm_are_killed():
    code = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    p = subprocess.Popen([FOEHN, "run", "--grace", "0.5", "-n", "2", PY, "-c", code],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=20)
    assert time.monotonic() - t0 < 10
    assert p.returncode == 128 + signal.SIGTERM


@pytest.mark.parametrize("args,needle", [
    (["-n", "0", "true"], "-n takes a whole number"),
    (["-n", "x", "true"], "-n takes a whole number"),
    (["-n", "2"], "no program to run"),
    (["true"], "give -n N"),
    (["-n"], "needs a number"),
    (["--bogus", "-n", "2", "true"], "unknown option '--bogus'"),
])
def test_bad_arguments(args, needle):
    p = run(*args)
    assert p.returncode == 2
    assert needle in p.stderr and "usage: foehn run" in p.stderr


def test_missing_program():
    p = run("-n", "2", "/nonexistent/program")
    assert p.returncode == 127
    assert "cannot run '/nonexistent/program'" in p.stderr


def test_double_dash_and_program_options():
    p = run("-n", "1", "--", PY, "-c", "import sys; print(sys.argv[1:])", "-n", "5")
    assert p.stdout.strip() == "['-n', '5']"


def test_python_dash_m_foehn_np(tmp_path):
    script = tmp_path / "hello.py"
    script.write_text("import os, sys; print('hello', os.environ['FOEHN_RANK'], sys.argv[1])\n")
    p = subprocess.run([PY, "-m", "foehn", "-np", "2", str(script), "arg"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert sorted(p.stdout.splitlines()) == ["hello 0 arg", "hello 1 arg"]


def test_a_rank_that_leaves_early_does_not_leave_the_others_waiting():
    """Rank 1 exits 0 without ever joining the bootstrap: rank 0's fence fails at once
    (naming rank 1) instead of waiting out the timeout."""
    code = ("import os, sys, foehn\n"
            "if os.environ['FOEHN_RANK'] == '1': sys.exit(0)\n"
            "foehn.init().barrier()\n")
    t0 = time.monotonic()
    p = run("-n", "2", PY, "-c", code)
    assert time.monotonic() - t0 < 10
    assert p.returncode == 1
    assert "rank 1 died (exited with status 0 without finalizing) before the fence" in p.stderr


def test_finalized_ranks_may_exit_in_any_order():
    code = ("import os, time, foehn\n"
            "ctx = foehn.init(); ctx.barrier()\n"
            "if ctx.rank == 0: time.sleep(0.5)\n"
            "ctx.finalize()\n")
    p = run("-n", "3", PY, "-c", code)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""


def test_foehn_debug_prints_phase_timings():
    code = "import foehn; foehn.init().barrier()"
    p = run("-n", "2", PY, "-c", code, env={"FOEHN_DEBUG": "1"})
    assert p.returncode == 0, p.stderr
    for r in (0, 1):
        assert f"foehn[rank {r} of 2]: pm init " in p.stderr
        assert f"foehn[rank {r} of 2]: fence 1 " in p.stderr
    assert "(foehn provider under foehn)" in p.stderr
    quiet = run("-n", "2", PY, "-c", code)
    assert quiet.stderr == ""
