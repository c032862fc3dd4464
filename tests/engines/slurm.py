"""A real Slurm 22.05 cluster for the tests: munged, slurmctld and two slurmds.

Layout (everything the harness makes carries its own name prefix, so that a later run
can find and remove what a crashed run left behind, and nothing else):

* one temporary directory per cluster, ``/tmp/foehn-slurm-XXXXXXXX``: slurm.conf, the
  munge key and socket, state, spool, logs, pid files, job scripts and outputs;
* a bridge ``fslurm-br0`` holding ``10.213.77.1/24`` in the root network namespace,
  where ``munged`` and ``slurmctld`` run (``SlurmctldHost=<hostname>(10.213.77.1)``);
* per node ``nK`` (n1, n2) a network namespace ``foehn-slurm-nK`` (``/var/run/netns``)
  with a veth (host side ``fslurm-nK`` on the bridge, ``eth0`` inside) holding
  ``10.213.77.1K/24``; its ``slurmd -N nK`` is started as
  ``nsenter --net=/var/run/netns/foehn-slurm-nK unshare --uts sh -c 'hostname nK; exec
  slurmd ...'``, so the ranks of a node see its own address and its own host name;
* ports: slurmctld 46817, slurmd 46818 (on each node address), srun ports 46900-46999.

``srun``/``sbatch``/``salloc`` run in the root namespace: they reach slurmctld on
10.213.77.1 and the slurmds on their node addresses through the bridge, and the slurmds
connect back to srun at the bridge address (the source address of srun's request).

``stop()`` kills only the processes the harness started (by process id) plus every
process still living in its own network namespaces (slurmstepd and tasks), then deletes
the namespaces, veths and bridge. It runs from the fixture's finalizer, from ``atexit``
and from a SIGTERM/SIGHUP handler.

Run ``python3 -m tests.engines.slurm record tests/data/recorded`` (as root, from the
repository root) to record the environments that ranks see; see the README there.
"""
from __future__ import annotations

import atexit
import fcntl
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.engines.base import Result, find_program, missing_engine, run

DIR_PREFIX = "foehn-slurm-"        # temporary directories, in the system temp dir
NETNS_PREFIX = "foehn-slurm-"      # network namespaces
LINK_PREFIX = "fslurm-"            # bridge and veths (interface names: 15 bytes at most)
BRIDGE = LINK_PREFIX + "br0"
SUBNET = "10.213.77"
CONTROLLER_ADDR = SUBNET + ".1"
NODES = {"n1": SUBNET + ".11", "n2": SUBNET + ".12"}
CPUS_PER_NODE = 4
SLURMCTLD_PORT = 46817
SLURMD_PORT = 46818
SRUN_PORT_RANGE = "46900-46999"
LOCK_FILE = Path(tempfile.gettempdir()) / "foehn-slurm.lock"
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")

# Prefixes of the variables kept by the environment recordings.
RECORD_PREFIXES = ("SLURM_", "PMI", "PMIX_", "OMPI_", "MPI_", "PRTE_", "HYDRA", "CUDA_")


class EngineUnavailable(Exception):
    """Something the cluster needs is not there (a program, root, namespaces)."""


class ClusterError(AssertionError):
    """The cluster could not be started or used, although everything was there."""


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(text[-lines:]) if text else "(empty)"


def _sh(argv: list[str], *, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    """A plumbing command (ip, ...). Failures raise ClusterError with its output."""
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()}")
    return p


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _kill_pids(pids, *, grace: float = 3.0) -> None:
    """SIGTERM the given process ids, then SIGKILL whatever is left after `grace` s."""
    pids = [p for p in set(pids) if p > 1 and p != os.getpid()]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for p in pids:
        if _alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _netns_pids(ns: str) -> list[int]:
    p = _sh(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in p.stdout.split() if x.isdigit()]


def _our_netns() -> list[str]:
    p = _sh(["ip", "netns", "list"], check=False)
    names = [line.split()[0] for line in p.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(NETNS_PREFIX)]


def _our_links() -> list[str]:
    p = _sh(["ip", "-o", "link", "show"], check=False)
    out = []
    for line in p.stdout.splitlines():
        m = re.match(r"\d+:\s+([^:@\s]+)", line)
        if m and m.group(1).startswith(LINK_PREFIX):
            out.append(m.group(1))
    return out


def _clients_of_old_clusters() -> list[int]:
    """Processes whose SLURM_CONF is the slurm.conf of a harness directory."""
    marker = re.compile(rb"(?:^|\0)SLURM_CONF=" + re.escape(
        os.path.join(tempfile.gettempdir(), DIR_PREFIX).encode()) + rb"[^/\0]+/slurm\.conf(?:\0|$)")
    mine = set()
    pid = os.getpid()
    while pid > 1:       # never this process or its ancestors
        mine.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker.search(f.read()):
                    found.append(int(entry))
        except OSError:
            pass
    return found


def cleanup_leftovers() -> None:
    """Remove what a previous (crashed) run of this harness left: its processes, its
    network namespaces, veths and bridge, its temporary directories. Only things carrying
    the harness's own prefixes are touched; call it only while holding LOCK_FILE."""
    # Processes still inside our namespaces (slurmd, slurmstepd, tasks).
    for ns in _our_netns():
        _kill_pids(_netns_pids(ns), grace=1.0)
        _sh(["ip", "netns", "delete", ns], check=False)
    # Daemons in the root namespace recorded by a previous run; a pid is only killed if
    # its command line still names that run's directory (so a reused pid is left alone).
    tmp = Path(tempfile.gettempdir())
    for d in tmp.glob(DIR_PREFIX + "*"):
        if not d.is_dir():
            continue
        pidfile = d / "harness.pids"
        victims = []
        if pidfile.exists():
            for line in pidfile.read_text().split():
                if line.isdigit() and str(d) in _cmdline(int(line)):
                    victims.append(int(line))
        _kill_pids(victims, grace=1.0)
        if os.environ.get("FOEHN_KEEP_SLURM", "") in ("", "0"):
            shutil.rmtree(d, ignore_errors=True)
    # Slurm clients of a previous run (an srun whose test process was killed waits for
    # its dead controller, ignoring SIGTERM): their SLURM_CONF names a harness directory.
    _kill_pids(_clients_of_old_clusters(), grace=1.0)
    for link in _our_links():
        if link != BRIDGE:
            _sh(["ip", "link", "delete", link], check=False)
    if BRIDGE in _our_links():
        _sh(["ip", "link", "delete", BRIDGE], check=False)


_LIVE: list["SlurmCluster"] = []
_HANDLERS_INSTALLED = False


def _stop_all_live() -> None:
    for c in list(_LIVE):
        try:
            c.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def _on_signal(signum, frame):  # noqa: ARG001
    _stop_all_live()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_exit_handlers() -> None:
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    _HANDLERS_INSTALLED = True
    atexit.register(_stop_all_live)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_signal)
        except ValueError:  # not the main thread
            pass


class SlurmCluster:
    """munged + slurmctld + slurmd n1, n2 (each in its own network namespace)."""

    def __init__(self, *, cpus_per_node: int = CPUS_PER_NODE, startup_timeout: float = 30):
        self.cpus_per_node = cpus_per_node
        self.startup_timeout = startup_timeout
        self.nodes = dict(NODES)
        self.hostname = socket.gethostname().split(".")[0]
        self.dir: Path | None = None
        self.conf: Path | None = None
        self.munge_socket: Path | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.netns_made: list[str] = []
        self.links_made: list[str] = []
        self.start_seconds: float | None = None
        self._lock_fd: int | None = None
        self._jobs = 0
        self._keep_dir = False
        self.programs: dict[str, str] = {}

    # ------------------------------------------------------------------ discovery
    @staticmethod
    def unavailable_reason() -> str | None:
        """Why this machine cannot run the cluster, or None."""
        for name in ("slurmctld", "slurmd", "munged", "srun", "sbatch", "sinfo", "scontrol",
                     "ip", "nsenter", "unshare", "setpriv"):
            if not find_program(name, *(f"{d}/{name}" for d in SBIN)):
                return f"{name} not found"
        if os.geteuid() != 0:
            return "the Slurm cluster harness needs root (network namespaces, slurmd)"
        try:
            import pwd
            pwd.getpwnam("munge")
        except KeyError:
            return "there is no munge user"
        return None

    def _prog(self, name: str) -> str:
        if name not in self.programs:
            p = find_program(name, *(f"{d}/{name}" for d in SBIN))
            if not p:
                raise EngineUnavailable(f"{name} not found")
            self.programs[name] = p
        return self.programs[name]

    # ------------------------------------------------------------------ start
    def start(self) -> "SlurmCluster":
        why = self.unavailable_reason()
        if why:
            raise EngineUnavailable(why)
        t0 = time.monotonic()
        _install_exit_handlers()
        _LIVE.append(self)
        self._take_lock()
        cleanup_leftovers()
        self.dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
        os.chmod(self.dir, 0o755)      # munged (user munge) must traverse it
        (self.dir / "harness.pids").write_text("")
        try:
            self._make_network()
            self._start_munged()
            self._write_conf()
            self._start_slurmctld()
            for node in self.nodes:
                self._start_slurmd(node)
            self._wait_nodes_idle()
        except BaseException:
            # Keep the logs the error message points at; the next start() removes them.
            self._keep_dir = True
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def _take_lock(self) -> None:
        fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + 120
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise ClusterError(
                        f"another Slurm test cluster held {LOCK_FILE} for 120 s "
                        f"(one cluster per machine: the network names are fixed)") from None
                time.sleep(0.2)
        self._lock_fd = fd

    def _make_network(self) -> None:
        try:
            _sh(["ip", "link", "add", BRIDGE, "type", "bridge"])
        except ClusterError as e:
            raise EngineUnavailable(f"cannot create a bridge: {e}") from None
        self.links_made.append(BRIDGE)
        _sh(["ip", "addr", "add", f"{CONTROLLER_ADDR}/24", "dev", BRIDGE])
        _sh(["ip", "link", "set", BRIDGE, "up"])
        for node, addr in self.nodes.items():
            ns = NETNS_PREFIX + node
            veth = LINK_PREFIX + node
            try:
                _sh(["ip", "netns", "add", ns])
            except ClusterError as e:
                raise EngineUnavailable(f"cannot create a network namespace: {e}") from None
            self.netns_made.append(ns)
            _sh(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                 "netns", ns])
            self.links_made.append(veth)
            _sh(["ip", "link", "set", veth, "master", BRIDGE])
            _sh(["ip", "link", "set", veth, "up"])
            _sh(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0"])
            _sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
            _sh(["ip", "-n", ns, "link", "set", "lo", "up"])

    def _spawn(self, name: str, argv: list[str], log: Path) -> subprocess.Popen:
        """Start a daemon in the foreground (its pid is the Popen's pid), own session."""
        out = open(self.dir / f"{name}.stdout", "wb")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True,
                             env=self._daemon_env())
        out.close()
        self.procs[name] = p
        self.logs[name] = log
        with open(self.dir / "harness.pids", "a") as f:
            f.write(f"{p.pid}\n")
        return p

    def _daemon_env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PMI"))}
        env["SLURM_CONF"] = str(self.dir / "slurm.conf")
        return env

    def _fail(self, message: str, name: str) -> ClusterError:
        log = self.logs.get(name)
        parts = [message]
        if log is not None:
            parts.append(f"--- tail of {log}\n{_tail(log)}")
        so = self.dir / f"{name}.stdout" if self.dir else None
        if so is not None and so.exists() and so.stat().st_size:
            parts.append(f"--- tail of {so}\n{_tail(so)}")
        return ClusterError("\n".join(parts))

    def _wait(self, what: str, name: str, cond, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        p = self.procs.get(name)
        while True:
            if cond():
                return
            if p is not None and p.poll() is not None:
                raise self._fail(f"{what}: {name} exited with status {p.returncode}; "
                                 f"see {self.logs.get(name)}", name)
            if time.monotonic() > deadline:
                raise self._fail(f"{what} within {timeout:g} s; see {self.logs.get(name)}",
                                 name)
            time.sleep(0.1)

    def _start_munged(self) -> None:
        import pwd
        mu = pwd.getpwnam("munge")
        mdir = self.dir / "munge"
        mdir.mkdir(mode=0o700)
        key = mdir / "munge.key"
        system_key = Path("/etc/munge/munge.key")
        if system_key.exists():
            shutil.copyfile(system_key, key)
        else:
            key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)
        for path in (mdir, key):
            os.chown(path, mu.pw_uid, mu.pw_gid)
        self.munge_socket = mdir / "munge.socket"
        log = mdir / "munged.log"
        argv = [self._prog("setpriv"), f"--reuid={mu.pw_uid}", f"--regid={mu.pw_gid}",
                "--clear-groups", self._prog("munged"), "--foreground", "--force",
                f"--socket={self.munge_socket}", f"--key-file={key}", f"--log-file={log}",
                f"--pid-file={mdir / 'munged.pid'}", f"--seed-file={mdir / 'munged.seed'}",
                "--num-threads=4"]
        self._spawn("munged", argv, log)
        try:
            self._wait("munged did not open its socket " + str(self.munge_socket), "munged",
                       self.munge_socket.exists, 15)
        except ClusterError as e:
            raise EngineUnavailable(str(e)) from None

    def _write_conf(self) -> None:
        d = self.dir
        for sub in ("state", "jobs"):
            (d / sub).mkdir()
        for node in self.nodes:
            for sub in ("spool", "tmpfs"):
                (d / f"{sub}-{node}").mkdir()
        node_lines = "\n".join(
            f"NodeName={n} NodeAddr={a} NodeHostname={n} CPUs={self.cpus_per_node} "
            f"RealMemory=1024 State=UNKNOWN" for n, a in self.nodes.items())
        conf = f"""\
# Written by tests/engines/slurm.py: a throw-away test cluster.
ClusterName=foehn
SlurmctldHost={self.hostname}({CONTROLLER_ADDR})
SlurmctldPort={SLURMCTLD_PORT}
SlurmdPort={SLURMD_PORT}
SrunPortRange={SRUN_PORT_RANGE}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={d}/state
SlurmctldPidFile={d}/slurmctld.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdSpoolDir={d}/spool-%n
SlurmdPidFile={d}/slurmd-%n.pid
SlurmdLogFile={d}/slurmd-%n.log
TmpFS={d}/tmpfs-%n
SlurmdParameters=config_overrides
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
MpiDefault=none
PropagateResourceLimits=NONE
ReturnToService=2
MailProg=/bin/true
InactiveLimit=0
KillWait=2
MinJobAge=300
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=60
TCPTimeout=5
{node_lines}
PartitionName=all Nodes={",".join(self.nodes)} Default=YES MaxTime=INFINITE State=UP OverSubscribe=EXCLUSIVE
"""
        self.conf = d / "slurm.conf"
        self.conf.write_text(conf)

    def _client_ok(self, argv: list[str]) -> bool:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                               env=self.client_env(), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return False
        return p.returncode == 0

    def _start_slurmctld(self) -> None:
        log = self.dir / "slurmctld.log"
        argv = [self._prog("slurmctld"), "-D", "-i", "-f", str(self.conf)]
        self._spawn("slurmctld", argv, log)
        self._wait(f"slurmctld did not answer on {CONTROLLER_ADDR}:{SLURMCTLD_PORT}",
                   "slurmctld", lambda: self._client_ok([self._prog("scontrol"), "ping"]),
                   self.startup_timeout)

    def _start_slurmd(self, node: str) -> None:
        ns = NETNS_PREFIX + node
        log = self.dir / f"slurmd-{node}.log"
        inner = (f"{shlex.quote(self._prog('hostname'))} {node} && exec "
                 f"{shlex.quote(self._prog('slurmd'))} -D -N {node} "
                 f"-f {shlex.quote(str(self.conf))}")
        argv = [self._prog("nsenter"), f"--net=/var/run/netns/{ns}",
                self._prog("unshare"), "--uts", "/bin/sh", "-c", inner]
        self._spawn(f"slurmd-{node}", argv, log)

    def _node_states(self) -> dict[str, str]:
        try:
            p = subprocess.run([self._prog("sinfo"), "-h", "-N", "-o", "%N %T"],
                               capture_output=True, text=True, timeout=10,
                               env=self.client_env(), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return {}
        states = {}
        for line in p.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2:
                states[parts[0]] = parts[1]
        return states

    def _wait_nodes_idle(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            states = self._node_states()
            if all(states.get(n) == "idle" for n in self.nodes):
                return
            for n in self.nodes:
                p = self.procs[f"slurmd-{n}"]
                if p.poll() is not None:
                    raise self._fail(f"slurmd {n} exited with status {p.returncode}; see "
                                     f"{self.logs[f'slurmd-{n}']}", f"slurmd-{n}")
            if self.procs["slurmctld"].poll() is not None:
                raise self._fail("slurmctld exited while the nodes registered",
                                 "slurmctld")
            if time.monotonic() > deadline:
                late = [n for n in self.nodes if states.get(n) != "idle"][0]
                err = self._fail(
                    f"slurmd {late} did not register with slurmctld within "
                    f"{self.startup_timeout:g} s (node states: {states}); see "
                    f"{self.logs[f'slurmd-{late}']}", f"slurmd-{late}")
                raise ClusterError(f"{err}\n--- tail of {self.logs['slurmctld']}\n"
                                   f"{_tail(self.logs['slurmctld'], 20)}")
            time.sleep(0.1)

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        """Stop what this cluster started and delete its network; safe to call twice."""
        try:
            # Everything living in our namespaces (slurmd, slurmstepd, ranks).
            in_ns = []
            for ns in self.netns_made:
                in_ns += _netns_pids(ns)
            in_ns += [p.pid for name, p in self.procs.items() if name.startswith("slurmd")]
            _kill_pids(in_ns, grace=3.0)
            for name in ("slurmctld", "munged"):
                if name in self.procs:
                    _kill_pids([self.procs[name].pid], grace=3.0)
            for p in self.procs.values():
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            self.procs.clear()
            for ns in self.netns_made:
                _kill_pids(_netns_pids(ns), grace=1.0)
                _sh(["ip", "netns", "delete", ns], check=False)
            self.netns_made.clear()
            for link in reversed(self.links_made):
                if link in _our_links():
                    _sh(["ip", "link", "delete", link], check=False)
            self.links_made.clear()
            if (self.dir is not None and not self._keep_dir
                    and os.environ.get("FOEHN_KEEP_SLURM", "") in ("", "0")):
                shutil.rmtree(self.dir, ignore_errors=True)
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            if self in _LIVE:
                _LIVE.remove(self)

    # ------------------------------------------------------------------ using it
    def client_env(self, env: dict | None = None) -> dict:
        """Environment for Slurm client commands: SLURM_CONF, and a PATH that starts
        with the test virtualenv's bin directory (so ranks find its python and foehn)."""
        out = {"SLURM_CONF": str(self.conf)}
        path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        venv_bin = str(Path(sys.executable).parent)
        if venv_bin not in path.split(os.pathsep):
            path = venv_bin + os.pathsep + path
        out["PATH"] = path
        if env:
            out.update(env)
        return out

    def _launch(self, argv: list[str], env: dict | None, timeout: float) -> Result:
        """Run a Slurm client through base.run, removing SLURM_* and PMI* variables of an
        outer job (if the tests themselves run inside Slurm) so they cannot leak in."""
        full = self.client_env(env)
        stale = sorted(k for k in os.environ
                       if k.startswith(("SLURM_", "PMI")) and k not in full)
        if stale:
            argv = ["env"] + [f"-u{k}" for k in stale] + argv
        return run(argv, env=full, timeout=timeout, cwd=self.dir)

    def _shape(self, nodes: int, ntasks: int | None) -> list[str]:
        if nodes == 1:
            args = ["-N1", "-w", next(iter(self.nodes))]
        else:
            args = [f"-N{nodes}"]
        args.append(f"-n{ntasks if ntasks is not None else nodes}")
        return args

    def srun(self, argv: list[str], *, nodes: int = 1, ntasks: int | None = None,
             mpi: str = "none", env: dict | None = None, timeout: float = 60,
             extra=()) -> Result:
        """`srun -N<nodes> -n<ntasks> --mpi=<mpi> <extra> argv` (one node means n1)."""
        cmd = [self._prog("srun"), *self._shape(nodes, ntasks), f"--mpi={mpi}",
               "--kill-on-bad-exit=1", *extra, *argv]
        return self._launch(cmd, env, timeout)

    def salloc(self, argv: list[str], *, nodes: int = 1, ntasks: int | None = None,
               env: dict | None = None, timeout: float = 60, extra=()) -> Result:
        """`salloc -N<nodes> -n<ntasks> <extra> argv`: argv runs here, in the root namespace,
        with the allocation's environment; an `srun` inside it uses the allocation."""
        cmd = [self._prog("salloc"), *self._shape(nodes, ntasks), *extra, *argv]
        return self._launch(cmd, env, timeout)

    def sbatch_wait(self, script_text: str, *, nodes: int = 1, ntasks: int | None = None,
                    env: dict | None = None, timeout: float = 120, extra=(),
                    check: bool = True) -> str:
        """Submit `script_text` with `sbatch --wait` and return what the job printed
        (stdout and stderr, one file). With check, a failing job raises with its output."""
        self._jobs += 1
        script = self.dir / "jobs" / f"job{self._jobs}.sh"
        output = self.dir / "jobs" / f"job{self._jobs}.out"
        if not script_text.startswith("#!"):
            script_text = "#!/bin/sh\n" + script_text
        script.write_text(script_text)
        script.chmod(0o755)
        cmd = [self._prog("sbatch"), "--wait", *self._shape(nodes, ntasks),
               f"--output={output}", f"--chdir={self.dir / 'jobs'}", *extra, str(script)]
        r = self._launch(cmd, env, timeout)
        text = output.read_text(errors="replace") if output.exists() else ""
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}\n--- stdout\n"
                                 f"{r.stdout}\n--- stderr\n{r.stderr}\n--- job output "
                                 f"({output})\n{text}")
        return text

    def log_tails(self, lines: int = 30) -> str:
        """The end of every daemon log, for failure messages."""
        return "\n".join(f"--- {name}: {log}\n{_tail(log, lines)}"
                         for name, log in self.logs.items())


def slurm_cluster():
    """Generator for a session-scoped pytest fixture: yields a started SlurmCluster and
    stops it afterwards. A machine without Slurm (or without root) skips the tests, or
    fails them under FOEHN_REQUIRE_ENGINES=1."""
    why = SlurmCluster.unavailable_reason()
    if why:
        missing_engine("slurm", why)
    cluster = SlurmCluster()
    try:
        cluster.start()
    except EngineUnavailable as e:
        cluster.stop()
        missing_engine("slurm", str(e))
    except BaseException:
        cluster.stop()
        raise
    try:
        yield cluster
    finally:
        cluster.stop()


# ---------------------------------------------------------------------- recordings
_RECORD_TASK = 'hostname > "$D/rank$SLURM_PROCID.host"; env -0 > "$D/rank$SLURM_PROCID.env0"'


def _record_filter(env0: bytes) -> list[str]:
    lines = []
    for item in env0.split(b"\0"):
        if not item or b"=" not in item:
            continue
        k, v = item.decode(errors="replace").split("=", 1)
        if "\n" in v:
            continue
        if k.startswith(RECORD_PREFIXES) or k == "HOSTNAME":
            lines.append(f"{k}={v}")
    return sorted(lines)


def _write_recordings(src: Path, case: str, outdir: Path) -> list[Path]:
    written = []
    for env0 in sorted(src.glob("rank*.env0")):
        rank = env0.stem[len("rank"):]
        host = (src / f"rank{rank}.host").read_text().strip()
        target = outdir / f"slurm-{case}-rank{rank}.env"
        target.write_text(f"# host: {host}\n" + "\n".join(_record_filter(env0.read_bytes()))
                          + "\n")
        written.append(target)
    if not written:
        raise AssertionError(f"case {case}: no rank wrote its environment into {src}")
    return written


def record_environments(cluster: SlurmCluster, outdir: Path) -> list[Path]:
    """Record what ranks see under each launch case into outdir (see its README)."""
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    cases = [("srun-none-1node", 1, 4, "none"), ("srun-pmix-1node", 1, 4, "pmix"),
             ("srun-pmi2-1node", 1, 2, "pmi2"), ("srun-none-2node", 2, 4, "none"),
             ("srun-pmix-2node", 2, 3, "pmix")]
    for case, nodes, ntasks, mpi in cases:
        d = cluster.dir / "record" / case
        d.mkdir(parents=True)
        cluster.srun(["/bin/sh", "-c", _RECORD_TASK], nodes=nodes, ntasks=ntasks, mpi=mpi,
                     env={"D": str(d)}).check()
        written += _write_recordings(d, case, outdir)
    batch = cluster.dir / "record" / "sbatch-batch"
    inner = cluster.dir / "record" / "sbatch-srun"
    batch.mkdir(parents=True)
    inner.mkdir(parents=True)
    script = f"""#!/bin/sh
hostname > {batch}/rank0.host
env -0 > {batch}/rank0.env0
D={inner} srun -n4 /bin/sh -c '{_RECORD_TASK}'
"""
    cluster.sbatch_wait(script, nodes=2, ntasks=4)
    written += _write_recordings(batch, "sbatch-batch", outdir)
    written += _write_recordings(inner, "sbatch-srun", outdir)
    return written


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "record":
        print("usage: python3 -m tests.engines.slurm record OUTDIR", file=sys.stderr)
        return 2
    why = SlurmCluster.unavailable_reason()
    if why:
        print(f"cannot start the Slurm cluster: {why}", file=sys.stderr)
        return 1
    cluster = SlurmCluster()
    try:
        cluster.start()
        print(f"cluster started in {cluster.start_seconds:.1f} s ({cluster.dir})")
        for path in record_environments(cluster, Path(argv[1])):
            print(path)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
