"""Real ``pyquorumd`` processes in network namespaces, with network and process faults.

Layout (as ``../shared/oracle/cluster.sh``): one network namespace per node and a private
"switch" namespace holding a Linux bridge; node ``i`` has ``eth0`` (a veth whose peer
``p<i>`` is a bridge port) with address ``10.213.<x>.<i>/24``.  No interface or packet
ever touches the root namespace.  Network faults are nftables rules in the switch
namespace (table ``bridge chaos``, chain ``faults`` on the bridge forward hook), rewritten
atomically (one ``nft -f`` transaction) from a ``NetFaults`` value at every change:

* a cut ordered pair ``(a, b)`` is ``iifname "p<a>" oifname "p<b>" drop``: symmetric
  partitions cut both directions between groups, a one-way block one direction, a
  flapping link is a pair cut and restored repeatedly;
* random loss is ``numgen random mod 100 < P drop`` on every bridged frame.

Neighbours are static (fixed MAC addresses, permanent ARP entries), so a cut never leaves
ARP state behind that would delay the return of a link.

Names carry a per-cluster prefix ``pqc<pid>x<k>`` so parallel runs never collide; the
subnet's third octet is ``100 + pid % 100`` (never the oracle's 77).  Every process is
started by this module (``ip netns exec`` execs, so the Popen PID is the daemon's or
client's own PID) and is signalled only by that PID; children get ``PR_SET_PDEATHSIG`` so
that they die with the harness.  ``close()`` (also run by ``atexit``) stops them, deletes
the nft table and the namespaces, removes the work directory, and returns what is left
over (an empty list when the cleanup is complete).

The driver log (``driver.jsonl``) has one JSON object per action: ``t0`` (monotonic
seconds just before the action), ``t`` (just after), ``step``, ``kind``, ``args``, and the
fault state after it: ``down`` (daemons not running), ``paused``, ``cut`` (ordered pairs
whose traffic is dropped entirely), ``loss`` (percent).  The tracking clients' traces
(``trace-<i>.jsonl``, see ``chaos_client.py``) use the same clock.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import pyquorum
from pyquorum.config.model import TotemConfig

HERE = Path(__file__).resolve().parent
CLIENT_SCRIPT = HERE / "chaos_client.py"
NFT_TABLE = "chaos"
NFT_CHAIN = "faults"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
CMD_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1
_counter = 0


class ChaosError(RuntimeError):
    """The harness could not do what it was asked (not a finding about pyquorum)."""


def environment_problem() -> str | None:
    """Why real-process chaos tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "the chaos tier needs root (network namespaces, nftables)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"the chaos tier needs '{tool}' (apt-get install -y iproute2 nftables)"
    name = f"pqcprobe{os.getpid()}"
    try:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True,
                       timeout=CMD_TIMEOUT_S)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"'ip netns add' does not work here: {exc}"
    try:
        res = subprocess.run(["ip", "netns", "exec", name, "nft", "list", "ruleset"],
                             capture_output=True, timeout=CMD_TIMEOUT_S)
        if res.returncode != 0:
            return f"nft does not work in a network namespace: {res.stderr.decode().strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True,
                       timeout=CMD_TIMEOUT_S)
    return None


def snapshot_package(dest: Path) -> str:
    """Copy the ``pyquorum`` package being tested to ``dest/pyquorum``; the sha256 of its
    ``.py`` files (relative path and content, in path order)."""
    src = Path(pyquorum.__file__).resolve().parent
    target = dest / "pyquorum"
    shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    digest = hashlib.sha256()
    for f in sorted(target.rglob("*.py")):
        digest.update(str(f.relative_to(target)).encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


def _sigterm_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"terminated by signal {signum}")


def _pdeathsig(sig: int) -> Callable[[], None]:
    def pre() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    return pre


def _run(args: Sequence[str], stdin: str | None = None) -> str:
    try:
        res = subprocess.run(list(args), input=stdin, capture_output=True, text=True,
                             timeout=CMD_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ChaosError(f"{' '.join(args)}: timed out") from exc
    if res.returncode != 0:
        raise ChaosError(f"{' '.join(args)}: exit {res.returncode}: {res.stderr.strip()}")
    return res.stdout


def effective_timing(token_ms: int, token_coefficient_ms: int, n_nodes: int
                     ) -> tuple[int, int]:
    """(effective token, consensus) in ms as the daemon derives them (Corosync's rules:
    token + (n - 2) x token_coefficient for n > 2, consensus = 1.2 x that token)."""
    timing = TotemConfig(token_ms=token_ms,
                         token_coefficient_ms=token_coefficient_ms).timing(n_nodes)
    return timing.token_ms, timing.consensus_ms


# ====================================================================== network faults
@dataclass
class NetFaults:
    """The network faults in force (all nodes numbered 1..n)."""

    groups: list[list[int]] | None = None
    """A symmetric partition: traffic only inside each group (None: no partition)."""
    blocks: set[tuple[int, int]] = field(default_factory=set)
    """One-way blocks: traffic from a to b dropped."""
    cuts: set[tuple[int, int]] = field(default_factory=set)
    """Links cut in both directions (flapping), as (low, high)."""
    loss: int = 0
    """Random loss on every frame, percent."""

    def copy(self) -> NetFaults:
        """An independent copy."""
        return NetFaults([list(g) for g in self.groups] if self.groups else None,
                         set(self.blocks), set(self.cuts), self.loss)

    def dropped(self, nodes: Iterable[int]) -> set[tuple[int, int]]:
        """Ordered pairs (a, b) whose traffic a -> b is dropped entirely."""
        ns = sorted(nodes)
        group_of: dict[int, int] = {}
        if self.groups is not None:
            for k, g in enumerate(self.groups):
                for i in g:
                    group_of[i] = k
            for i in ns:  # a node not named is alone
                group_of.setdefault(i, -i)
        out: set[tuple[int, int]] = set()
        for a in ns:
            for b in ns:
                if a == b:
                    continue
                if (self.groups is not None and group_of[a] != group_of[b]) \
                        or (a, b) in self.blocks or (min(a, b), max(a, b)) in self.cuts:
                    out.add((a, b))
        return out

    def clear(self) -> None:
        """No fault at all."""
        self.groups = None
        self.blocks.clear()
        self.cuts.clear()
        self.loss = 0

    @property
    def empty(self) -> bool:
        """No fault in force."""
        return self.groups is None and not self.blocks and not self.cuts and self.loss == 0


# ====================================================================== configuration
def render_node_config(nodes: Sequence[int], subnet: str, *, state_dir: str, run_dir: str,
                       keyfile: str, logfile: str, token_ms: int, token_coefficient_ms: int,
                       cluster_name: str = "pyquorum-chaos", debug: bool = False,
                       quorum_options: Mapping[str, str | int] | None = None) -> str:
    """One node's corosync.conf: every node at ``<subnet>.<id>`` on the default port,
    crypto on (aes256 + sha256), votequorum; ``quorum_options`` are extra ``quorum`` keys
    (none: a plain strict majority of the nodelist, what the checker assumes)."""
    out = ["totem {", "    version: 2", f"    cluster_name: {cluster_name}",
           "    transport: udpu", f"    token: {token_ms}",
           f"    token_coefficient: {token_coefficient_ms}", "    crypto_cipher: aes256",
           "    crypto_hash: sha256", f"    keyfile: {keyfile}", "}", "", "nodelist {"]
    for i in nodes:
        out += ["    node {", f"        nodeid: {i}", f"        name: node{i}",
                f"        ring0_addr: {subnet}.{i}", "    }"]
    extra = [f"    {k}: {v}" for k, v in (quorum_options or {}).items()]
    out += ["}", "", "quorum {", "    provider: corosync_votequorum", *extra, "}", "",
            "logging {", "    timestamp: hires", "    to_stderr: no", "    to_syslog: no",
            "    to_logfile: yes", f"    logfile: {logfile}"]
    if debug:
        out.append("    debug: on")
    out += ["}", "", "system {", f"    state_dir: {state_dir}", f"    run_dir: {run_dir}",
            "}", ""]
    return "\n".join(out)


# ====================================================================== trace following
@dataclass
class NodeView:
    """What one node's tracking client reported last (since its last connect)."""

    connected: bool = False
    ring: tuple[int, int] | None = None
    members: tuple[int, ...] = ()
    quorate: int = 0


class TraceFollower:
    """Reads the clients' trace files incrementally (whole lines only)."""

    def __init__(self, paths: dict[int, Path]) -> None:
        self.paths = paths
        self._offsets = dict.fromkeys(paths, 0)
        self._partial = dict.fromkeys(paths, b"")
        self.views = {i: NodeView() for i in paths}
        self.records: dict[int, list[dict[str, Any]]] = {i: [] for i in paths}

    def poll(self) -> int:
        """Read what was appended; the number of new records."""
        new = 0
        for i, path in self.paths.items():
            try:
                with open(path, "rb") as f:
                    f.seek(self._offsets[i])
                    data = f.read()
            except FileNotFoundError:
                continue
            if not data:
                continue
            self._offsets[i] += len(data)
            data = self._partial[i] + data
            lines = data.split(b"\n")
            self._partial[i] = lines.pop()
            for line in lines:
                if not line.strip():
                    continue
                rec = json.loads(line)
                self.records[i].append(rec)
                self._apply(i, rec)
                new += 1
        return new

    def _apply(self, i: int, rec: dict[str, Any]) -> None:
        v = self.views[i]
        kind = rec.get("kind")
        if kind == "connect":
            self.views[i] = NodeView(connected=True)
        elif kind in ("disconnect", "exit", "giveup"):
            self.views[i] = NodeView()
        elif kind == "quorum":
            v.ring = (int(rec["ring"][0]), int(rec["ring"][1]))
            v.members = tuple(rec["members"])
            v.quorate = int(rec["quorate"])

    def count(self, i: int, kind: str) -> int:
        """How many records of ``kind`` node ``i`` wrote so far."""
        return sum(1 for r in self.records[i] if r.get("kind") == kind)


# ====================================================================== the cluster
class ChaosCluster:
    """``n`` daemons, each in its own namespace, with a tracking client each."""

    def __init__(self, n: int, *, token_ms: int = 1000, token_coefficient_ms: int = 0,
                 work_dir: Path | None = None, keep: bool = False,
                 debug_logs: bool = False, snapshot: bool = True,
                 quorum_options: Mapping[str, str | int] | None = None) -> None:
        global _counter
        _counter += 1
        pid = os.getpid()
        self.n = n
        self.nodes = list(range(1, n + 1))
        self.token_ms = token_ms
        self.token_coefficient_ms = token_coefficient_ms
        self.effective_token_ms, self.consensus_ms = effective_timing(
            token_ms, token_coefficient_ms, n)
        self.prefix = f"pqc{pid}x{_counter}"
        self.subnet = f"10.213.{100 + pid % 100}"
        self.keep = keep
        self.debug_logs = debug_logs
        self._own_dir = work_dir is None
        self.dir = Path(tempfile.mkdtemp(prefix="pyquorum-chaos-")) if work_dir is None \
            else Path(work_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        self.keyfile = self.dir / "authkey"
        self.driver_log = self.dir / "driver.jsonl"
        self.net = NetFaults()
        self.daemons: dict[int, subprocess.Popen[bytes]] = {}
        self.clients: dict[int, subprocess.Popen[bytes]] = {}
        self.all_procs: list[subprocess.Popen[bytes]] = []
        self.paused: set[int] = set()
        self.namespaces: list[str] = []
        self.step = 0
        self.closed = False
        self.follower = TraceFollower({i: self.trace_path(i) for i in self.nodes})
        self.snapshot = snapshot
        self.quorum_options = dict(quorum_options or {})
        self._sigterm_installed = False
        self.src_sha256 = ""
        self.env = dict(os.environ)
        self.env.pop("PYQUORUM_TEST_HOOKS", None)
        atexit.register(self.close)

    # ------------------------------------------------------------------ names and paths
    @property
    def switch_ns(self) -> str:
        """The switch namespace."""
        return f"{self.prefix}-sw"

    def ns(self, i: int) -> str:
        """Node ``i``'s namespace."""
        return f"{self.prefix}-n{i}"

    def node_dir(self, i: int) -> Path:
        """Node ``i``'s files."""
        return self.dir / f"n{i}"

    def trace_path(self, i: int) -> Path:
        """Node ``i``'s client trace."""
        return self.dir / f"trace-{i}.jsonl"

    def log_path(self, i: int) -> Path:
        """Node ``i``'s daemon log."""
        return self.node_dir(i) / "pyquorumd.log"

    def addr(self, i: int) -> str:
        """Node ``i``'s address."""
        return f"{self.subnet}.{i}"

    @staticmethod
    def mac(i: int) -> str:
        """Node ``i``'s fixed MAC address (locally administered)."""
        return f"02:71:c4:00:00:{i:02x}"

    # ------------------------------------------------------------------ set-up
    def _install_sigterm(self) -> None:
        """SIGTERM with the default action would skip ``finally`` and ``atexit``: turn it
        into SystemExit while this cluster lives (restored by ``close``)."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _sigterm_exit)
            self._sigterm_installed = True

    def setup(self) -> None:
        """Namespaces, bridge, nft table, key and configurations."""
        self._install_sigterm()
        sw = self.switch_ns
        _run(["ip", "netns", "add", sw])
        self.namespaces.append(sw)
        _run(["ip", "-n", sw, "-batch", "-"],
             "link set lo up\nlink add br0 type bridge stp_state 0 forward_delay 0\n"
             "link set br0 up\n")
        _run(["ip", "netns", "exec", sw, "nft", "-f", "-"],
             f"table bridge {NFT_TABLE} {{\n  chain {NFT_CHAIN} {{\n"
             "    type filter hook forward priority 0; policy accept;\n  }\n}\n")
        for i in self.nodes:
            ns = self.ns(i)
            _run(["ip", "netns", "add", ns])
            self.namespaces.append(ns)
            _run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                  "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
            _run(["ip", "link", "add", "eth0", "netns", ns, "address", self.mac(i),
                  "type", "veth", "peer", "name", f"p{i}", "netns", sw])
            _run(["ip", "-n", sw, "-batch", "-"],
                 f"link set p{i} master br0\nlink set p{i} up\n")
            neigh = "".join(f"neigh add {self.addr(j)} lladdr {self.mac(j)} dev eth0 "
                            "nud permanent\n" for j in self.nodes if j != i)
            _run(["ip", "-n", ns, "-batch", "-"],
                 f"link set lo up\naddr add {self.addr(i)}/24 dev eth0\n"
                 f"link set eth0 up\n{neigh}")
        if self.snapshot:
            # Every daemon of the run (restarts included) runs the same code, even if the
            # working tree changes meanwhile.
            self.src_sha256 = snapshot_package(self.dir / "src")
            self.env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(self.dir / "src"), self.env.get("PYTHONPATH")) if p)
        key = os.urandom(256)
        self.keyfile.write_bytes(key)
        self.keyfile.chmod(0o400)
        for i in self.nodes:
            d = self.node_dir(i)
            (d / "state").mkdir(parents=True, exist_ok=True)
            (d / "run").mkdir(parents=True, exist_ok=True)
            (d / "corosync.conf").write_text(render_node_config(
                self.nodes, self.subnet, state_dir=str(d / "state"), run_dir=str(d / "run"),
                keyfile=str(self.keyfile), logfile=str(self.log_path(i)),
                token_ms=self.token_ms, token_coefficient_ms=self.token_coefficient_ms,
                debug=self.debug_logs, quorum_options=self.quorum_options))
        self.record("setup", src_sha256=self.src_sha256,
                    src=str(Path(pyquorum.__file__).resolve().parent), prefix=self.prefix,
                    subnet=self.subnet, nodes=self.nodes,
                    token_ms=self.token_ms, token_coefficient_ms=self.token_coefficient_ms,
                    effective_token_ms=self.effective_token_ms,
                    consensus_ms=self.consensus_ms, quorum_options=self.quorum_options)

    def start(self, timeout: float = 60.0) -> None:
        """Start every daemon and client; wait until every client reported a view."""
        self.start_daemons(self.nodes)
        for i in self.nodes:
            self.start_client(i)
        self.wait_for(lambda: all(self.follower.count(i, "quorum") > 0 for i in self.nodes),
                      timeout, "every tracking client's first quorum event")

    # ------------------------------------------------------------------ driver log
    def state(self) -> dict[str, Any]:
        """The fault state, as the driver log records it."""
        return {"down": [i for i in self.nodes if not self.running(i)],
                "paused": sorted(self.paused),
                "cut": sorted([a, b] for a, b in self.net.dropped(self.nodes)),
                "loss": self.net.loss}

    def record(self, kind: str, t0: float | None = None, **args: Any) -> dict[str, Any]:
        """Append one action to the driver log (with the fault state after it)."""
        t = time.monotonic()
        rec = {"t0": t if t0 is None else t0, "t": t, "step": self.step, "kind": kind,
               "args": args, **self.state()}
        with open(self.driver_log, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        return rec

    # ------------------------------------------------------------------ processes
    def running(self, i: int) -> bool:
        """Node ``i``'s daemon is started and has not exited (it may be paused)."""
        p = self.daemons.get(i)
        return p is not None and p.poll() is None

    def active(self) -> list[int]:
        """Nodes whose daemon runs and is not paused."""
        return [i for i in self.nodes if self.running(i) and i not in self.paused]

    def _spawn_daemon(self, i: int) -> int:
        if self.running(i):
            raise ChaosError(f"node {i} is already running")
        r, w = os.pipe()
        out = open(self.node_dir(i) / "stderr.txt", "ab")  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(i), sys.executable, "-m", "pyquorum.daemon",
                 "-c", str(self.node_dir(i) / "corosync.conf"), "-f", "--nodeid", str(i),
                 "--ready-fd", str(w)],
                pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                env=self.env, start_new_session=True, preexec_fn=_pdeathsig(signal.SIGKILL))
        finally:
            os.close(w)
            out.close()
        self.daemons[i] = proc
        self.all_procs.append(proc)
        self.paused.discard(i)
        return r

    def _wait_ready(self, fds: dict[int, int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        data = dict.fromkeys(fds, b"")
        pending = dict(fds)
        try:
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChaosError(f"nodes {sorted(pending)} not ready within {timeout} s: "
                                     + "; ".join(self.stderr_tail(i) for i in pending))
                ready, _, _ = select.select(list(pending.values()), [], [], left)
                for i, fd in list(pending.items()):
                    if fd not in ready:
                        continue
                    chunk = os.read(fd, 64)
                    if not chunk:
                        raise ChaosError(f"node {i} exited before READY: "
                                         f"{self.stderr_tail(i)}")
                    data[i] += chunk
                    if b"\n" in data[i]:
                        if data[i] != b"READY\n":
                            raise ChaosError(f"node {i}: unexpected ready data {data[i]!r}")
                        del pending[i]
        finally:
            for fd in fds.values():
                os.close(fd)

    def stderr_tail(self, i: int) -> str:
        """The end of node ``i``'s stderr and log (for error messages)."""
        parts = []
        for path in (self.node_dir(i) / "stderr.txt", self.log_path(i)):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace")[-1500:])
        return f"node {i}: " + "\n".join(parts)

    def start_daemons(self, nodes: Iterable[int], timeout: float = READY_TIMEOUT_S) -> None:
        """Start the daemons of ``nodes`` together and wait until each is READY."""
        t0 = time.monotonic()
        nodes = list(nodes)
        fds: dict[int, int] = {}
        try:
            for i in nodes:
                fds[i] = self._spawn_daemon(i)
        except BaseException:
            for fd in fds.values():
                os.close(fd)
            raise
        self._wait_ready(fds, timeout)
        for i in nodes:
            self.record("start", t0=t0, node=i, pid=self.daemons[i].pid)

    def start_client(self, i: int) -> None:
        """Start node ``i``'s tracking client in its namespace."""
        old = self.clients.get(i)
        if old is not None and old.poll() is None:
            raise ChaosError(f"client {i} is already running")
        err = open(self.node_dir(i) / "client.err", "ab")  # noqa: SIM115
        env = dict(self.env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(HERE))
                                            if p)
        try:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(i), sys.executable, str(CLIENT_SCRIPT),
                 "--node", str(i), "--run-dir", str(self.node_dir(i) / "run"),
                 "--out", str(self.trace_path(i))],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env,
                start_new_session=True, preexec_fn=_pdeathsig(signal.SIGTERM))
        finally:
            err.close()
        self.clients[i] = proc
        self.all_procs.append(proc)
        self.record("client_start", node=i, pid=proc.pid)

    def kill(self, i: int) -> None:
        """SIGKILL node ``i``'s daemon (paused or not) and reap it."""
        proc = self.daemons[i]
        t0 = time.monotonic()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)
        self.paused.discard(i)
        self.record("kill", t0=t0, node=i)

    def stop(self, i: int) -> int:
        """SIGTERM node ``i``'s daemon (clean leave); its exit code (SIGKILL after
        ``STOP_TIMEOUT_S``, recorded as ``stop_timeout``)."""
        proc = self.daemons[i]
        t0 = time.monotonic()
        if i in self.paused:
            raise ChaosError(f"node {i} is paused; resume it before a clean stop")
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            code = proc.wait(timeout=STOP_TIMEOUT_S)
            self.record("stop_timeout", t0=t0, node=i)
        self.record("stop", t0=t0, node=i, code=code)
        return code

    def pause(self, i: int) -> None:
        """SIGSTOP node ``i``'s daemon."""
        t0 = time.monotonic()
        os.kill(self.daemons[i].pid, signal.SIGSTOP)
        self.paused.add(i)
        self.record("pause", t0=t0, node=i)

    def resume(self, i: int) -> None:
        """SIGCONT node ``i``'s daemon."""
        t0 = time.monotonic()
        os.kill(self.daemons[i].pid, signal.SIGCONT)
        self.paused.discard(i)
        self.record("resume", t0=t0, node=i)

    # ------------------------------------------------------------------ network
    def apply_net(self, kind: str, **args: Any) -> None:
        """Install ``self.net`` as the switch's rules (one transaction) and log it."""
        t0 = time.monotonic()
        lines = [f"flush chain bridge {NFT_TABLE} {NFT_CHAIN}"]
        for a, b in sorted(self.net.dropped(self.nodes)):
            lines.append(f'add rule bridge {NFT_TABLE} {NFT_CHAIN} iifname "p{a}" '
                         f'oifname "p{b}" drop')
        if self.net.loss > 0:
            lines.append(f"add rule bridge {NFT_TABLE} {NFT_CHAIN} "
                         f"numgen random mod 100 < {self.net.loss} drop")
        _run(["ip", "netns", "exec", self.switch_ns, "nft", "-f", "-"], "\n".join(lines) + "\n")
        self.record(kind, t0=t0, **args)

    def nft_rules(self) -> str:
        """The switch's chain as nft lists it."""
        return _run(["ip", "netns", "exec", self.switch_ns, "nft", "list", "chain", "bridge",
                     NFT_TABLE, NFT_CHAIN])

    # ------------------------------------------------------------------ waiting
    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll the traces until ``predicate`` holds (ChaosError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            self.follower.poll()
            if predicate():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChaosError(f"timed out after {timeout:.1f} s waiting for {what}")
            select.select([], [], [], min(0.02, left))

    def converged(self) -> bool:
        """Every active node's client reports the same ring, made of exactly the active
        nodes, quorate exactly when they are a strict majority."""
        active = self.active()
        if not active:
            return True
        want_quorate = int(2 * len(active) > self.n)
        views = [self.follower.views[i] for i in active]
        first = views[0]
        return all(v.connected and v.ring is not None and v.ring == first.ring
                   and v.members == tuple(active) and v.quorate == want_quorate
                   for v in views)

    def wait_converged(self, timeout: float) -> float | None:
        """Seconds until ``converged()`` (None: not within ``timeout``)."""
        t0 = time.monotonic()
        try:
            self.wait_for(self.converged, timeout, "convergence")
        except ChaosError:
            return None
        return time.monotonic() - t0

    # ------------------------------------------------------------------ teardown
    def close(self) -> list[str]:
        """Stop everything this cluster started, delete its namespaces and files; what is
        left over (empty when the cleanup is complete)."""
        if self.closed:
            return []
        self.closed = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        if self._sigterm_installed and signal.getsignal(signal.SIGTERM) is _sigterm_exit:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for proc in self.clients.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        for proc in self.clients.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
        for proc in self.all_procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                    os.kill(proc.pid, signal.SIGCONT)
        for proc in self.all_procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_TIMEOUT_S)
        if self.switch_ns in self.namespaces:
            with contextlib.suppress(ChaosError):
                _run(["ip", "netns", "exec", self.switch_ns, "nft", "delete", "table", "bridge",
                      NFT_TABLE])
        for ns in reversed(self.namespaces):
            with contextlib.suppress(ChaosError):
                _run(["ip", "netns", "del", ns])
        if self._own_dir and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        return self.leftovers()

    def leftovers(self) -> list[str]:
        """Processes, namespaces and files of this cluster that still exist."""
        left = [f"process {p.pid} ({p.args!r}) still running"
                for p in self.all_procs if p.poll() is None]
        try:
            names = _run(["ip", "netns", "list"]).split()
        except ChaosError as exc:
            names = []
            left.append(str(exc))
        left += [f"namespace {n} still exists" for n in names
                 if n == self.switch_ns or n.startswith(f"{self.prefix}-")]
        if self._own_dir and not self.keep and self.dir.exists():
            left.append(f"work directory {self.dir} still exists")
        return left
