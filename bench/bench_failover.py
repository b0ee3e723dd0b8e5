"""Failover: SIGKILL of one node -> quorum callback on every survivor, pyquorum vs Corosync.

What it measures
    For every cell (cluster size N from ``--nodes``, totem token from ``--tokens``) and
    every system from ``--systems`` (``pyquorum``: real ``pyquorumd`` processes;
    ``corosync``: the real Corosync 3.1.7), one N-node cluster is built: one daemon per
    network namespace, all namespaces on one bridge, and one tracking client per node
    (quorum model V1, ``CS_TRACK_CURRENT | CS_TRACK_CHANGES``, reconnecting after the
    daemon dies) writing one JSON line per callback stamped with ``time.monotonic()``
    (CLOCK_MONOTONIC is shared by all namespaces, so client and driver times compare
    directly).  pyquorum runs under ``tests/chaos/chaosnet.py`` (``ChaosCluster``, clients
    ``chaos_client.py``), Corosync under ``../shared/oracle`` (``harness.Cluster`` around
    ``cluster.sh``, clients ``qclient.py``), the way ``measure.py kill_run`` does.

    One repetition: t0 = ``time.monotonic()`` immediately before ``os.kill(pid, SIGKILL)``
    of the victim's daemon (node N, the highest id, as in ``measure.py``; ``--victim
    lowest`` kills node 1, the ring representative).  A survivor's sample is the time of
    its first quorum callback after t0 whose member list no longer contains the victim,
    minus t0.  Then the victim is restarted and the repetition ends once every node's
    latest quorum callback (after the restart) lists all N nodes, quorate; a settle pause
    (``--settle``, pacing only) separates repetitions.

    Per cell and system: median / p90 / max / spread (max - min) in ms over all survivors
    of all repetitions, and over the first and the last survivor of each repetition; per
    cell the pyquorum / Corosync ratio of the all-survivors medians (target: <= 0.5).

Identical settings
    Both systems' configurations say ``token: T`` and ``token_coefficient: 650`` (T = 3000
    for ``default``, Corosync's defaults; T = 1000 for ``1000``, Corosync's coefficient
    still applying) and leave ``consensus`` and ``join`` unset (derived: consensus = 1.2 x
    effective token, join 50 ms).  The effective token is T + (N - 2) x 650.  The values
    each running cluster really uses are read back (``corosync-cmapctl
    runtime.config.totem`` and pyquorumd's cmap ``runtime.config.totem.*``), stored in the
    JSON per row, and compared (token, consensus, join); a mismatch is printed and
    recorded.  What the two harnesses fix differently: Corosync runs knet with crypto
    off (``cluster.sh``), pyquorum UDP unicast with aes256 + sha256 (``chaosnet.py``), so
    pyquorum pays for crypto and Corosync does not.  Both clients retry initialize every
    20 ms after a disconnect.

How to run (root; ``ip netns``, ``nft``; Corosync side also needs ``corosync`` and
``../shared/oracle``, else it is skipped with the reason printed)::

    python bench/bench_failover.py                    # 3,5 nodes x default,1000, 10 reps
    python bench/bench_failover.py --quick            # smoke test: 1 rep, 3 nodes, token 1000
    python bench/bench_failover.py --systems pyquorum --nodes 5 --tokens 1000 --reps 20
    python bench/bench_failover.py --json /tmp/failover.json --keep /tmp/failover-artifacts

Prints a markdown table and writes ``bench/results/failover.json`` (``--quick``:
``failover-quick.json``; ``--json PATH`` overrides).  Namespaces: Corosync ``bnf-*``
on 10.213.93.0/24 (``--cs-prefix``, ``--cs-net``), pyquorum ``bnfp<pid>x<k>-*`` on
10.213.95.0/24; everything started is stopped, by PID, and the namespaces deleted, also
on failure.  Exit status: 0 all cells measured, 1 some cell failed, 2 nothing could run.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchcommon

sys.path.insert(0, str(benchcommon.CHAOS_DIR))
from chaosnet import ChaosCluster, effective_timing, environment_problem

from pyquorum.client.cmap import cmap_get_prefix

SYSTEMS = ("pyquorum", "corosync")
COROSYNC_DEFAULT_TOKEN_MS = 3000
COROSYNC_DEFAULT_COEFFICIENT_MS = 650
CLIENT_RETRY_S = 0.02
"""qclient.py's retry interval, equal to chaos_client.py's fixed ``RETRY_S``."""
POLL_S = 0.02
EXIT_TIMEOUT_S = 15.0
CLIENTS_TIMEOUT_S = 30.0
FAILOVER_TARGET_RATIO = 0.5
COMPARED_KEYS = ("token", "consensus", "join")
_cluster_counter = 0


class BenchError(RuntimeError):
    """A repetition could not be completed (a timeout or a harness failure)."""


install_sigterm = benchcommon.install_sigterm


def token_ms_of(spec: str) -> int:
    """``default`` -> Corosync's default token (3000), else the number of ms."""
    return COROSYNC_DEFAULT_TOKEN_MS if spec == "default" else int(spec)


def proc_start_mono(pid: int | None) -> float | None:
    """A process's start time as CLOCK_MONOTONIC seconds (10 ms resolution)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        start_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None
    return start_boot - (time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic())


def parse_cmapctl(text: str, strip: str = "") -> dict[str, str]:
    """``corosync-cmapctl`` output (``key (type) = value``) as a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if " = " not in line:
            continue
        key, value = line.split(" = ", 1)
        key = key.split(" (")[0].strip()
        out[key.removeprefix(strip)] = value.strip()
    return out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Whole JSON lines of ``path`` (a line being written is skipped)."""
    out: list[dict[str, Any]] = []
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            rec = json.loads(line)
            if isinstance(rec, dict):
                out.append(rec)
    return out


def namespaces_with_prefix(prefix: str) -> list[str]:
    """Network namespaces whose name starts with ``prefix-``."""
    try:
        res = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                             timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    names = [line.split()[0] for line in res.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(f"{prefix}-")]


# ====================================================================== callbacks
@dataclass(frozen=True)
class Callback:
    """One quorum or nodelist callback, normalised over both clients' trace formats."""

    t: float
    kind: str
    ring: str
    members: tuple[int, ...]
    quorate: bool
    left: tuple[int, ...]


def first_after(cbs: Iterable[Callback], t0: float,
                pred: Callable[[Callback], bool]) -> Callback | None:
    """The first callback after ``t0`` satisfying ``pred``."""
    return next((cb for cb in cbs if cb.t > t0 and pred(cb)), None)


def ms(t: float | None, t0: float) -> float | None:
    """``t - t0`` in ms (None stays None)."""
    return None if t is None else round((t - t0) * 1000.0, 3)


# ====================================================================== the two systems
class System:
    """An N-node cluster of one system plus one tracking client per node."""

    name = ""

    def __init__(self, n: int, token_ms: int, coefficient_ms: int, work_dir: Path) -> None:
        self.n = n
        self.nodes = list(range(1, n + 1))
        self.token_ms = token_ms
        self.coefficient_ms = coefficient_ms
        self.work_dir = work_dir
        self.effective_token_ms, self.consensus_ms = effective_timing(
            token_ms, coefficient_ms, n)
        self.exit_info: dict[int, dict[str, Any]] = {}

    # -- per system
    def prepare(self) -> None:
        """Namespaces and configurations; nothing started."""
        raise NotImplementedError

    def start_clients(self) -> None:
        """Start every node's tracking client (they retry until their daemon answers)."""
        raise NotImplementedError

    def start_daemons(self, nodes: Sequence[int]) -> float:
        """Start the daemons of ``nodes``; the monotonic time just before."""
        raise NotImplementedError

    def signal_daemon(self, node: int, sig: int) -> float:
        """Send ``sig`` to ``node``'s daemon; the monotonic time just before ``os.kill``."""
        raise NotImplementedError

    def wait_daemon_exit(self, node: int, timeout: float) -> None:
        """Wait until ``node``'s daemon is gone (SIGKILL after ``timeout``); fills
        ``exit_info[node]``."""
        raise NotImplementedError

    def callbacks(self, node: int) -> list[Callback]:
        """``node``'s client's quorum and nodelist callbacks so far."""
        raise NotImplementedError

    def connect_times(self, node: int) -> list[float]:
        """When ``node``'s client's initialize succeeded."""
        raise NotImplementedError

    def init_failures(self, node: int) -> int:
        """How many failed-initialize series ``node``'s client reported."""
        raise NotImplementedError

    def daemon_pid(self, node: int) -> int | None:
        """``node``'s daemon's PID (None: not running)."""
        raise NotImplementedError

    def runtime_totem(self) -> dict[str, str]:
        """The effective ``runtime.config.totem.*`` of node 1 (keys without the prefix)."""
        raise NotImplementedError

    def configured_totem(self) -> dict[str, str]:
        """The configured ``totem.*`` keys of node 1."""
        raise NotImplementedError

    def close(self) -> list[str]:
        """Stop everything, delete the namespaces; what is left over."""
        raise NotImplementedError

    # -- common
    def poll_until(self, pred: Callable[[], bool], timeout: float) -> bool:
        """Poll the traces until ``pred`` holds; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if pred():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(POLL_S, left))

    def quorum_cbs(self, node: int) -> list[Callback]:
        """``node``'s quorum callbacks."""
        return [cb for cb in self.callbacks(node) if cb.kind == "quorum"]

    def view_is(self, nodes: Sequence[int], members: Sequence[int], quorate: bool,
                after: float | None) -> bool:
        """Every node's latest quorum callback (after ``after``) has exactly ``members``
        and the given quorate flag."""
        want = tuple(sorted(members))
        for i in nodes:
            q = self.quorum_cbs(i)
            if not q:
                return False
            last = q[-1]
            if last.members != want or last.quorate != quorate:
                return False
            if after is not None and last.t <= after:
                return False
        return True

    def wait_view(self, members: Sequence[int], after: float | None, timeout: float,
                  what: str) -> None:
        """Wait until every node in ``members`` reports ``members`` quorate."""
        if not self.poll_until(lambda: self.view_is(members, members, True, after), timeout):
            raise BenchError(f"{self.name}: timed out after {timeout:.0f} s waiting for {what}")

    def up(self, timeout: float) -> None:
        """Prepare, start daemons and clients, wait until all nodes are quorate together."""
        self.prepare()
        self.start_daemons(self.nodes)
        self.start_clients()
        self.wait_view(self.nodes, None, timeout, "the cluster to form")

    def timing_bound_s(self) -> float:
        """Effective token + consensus, in seconds (for timeouts)."""
        return (self.effective_token_ms + self.consensus_ms) / 1000.0


class PyquorumSystem(System):
    """Real ``pyquorumd`` processes under ``ChaosCluster``."""

    name = "pyquorum"

    def __init__(self, n: int, token_ms: int, coefficient_ms: int, work_dir: Path,
                 prefix_base: str, subnet: str) -> None:
        super().__init__(n, token_ms, coefficient_ms, work_dir)
        global _cluster_counter
        _cluster_counter += 1
        self.c = ChaosCluster(n, token_ms=token_ms, token_coefficient_ms=coefficient_ms,
                              work_dir=work_dir)
        # set before setup(): names and addresses of this benchmark's namespaces
        self.c.prefix = f"{prefix_base}p{os.getpid()}x{_cluster_counter}"
        self.c.subnet = subnet
        self._cache: dict[int, tuple[int, list[Callback]]] = {}

    def prepare(self) -> None:
        self.c.setup()

    def start_clients(self) -> None:
        for i in self.nodes:
            self.c.start_client(i)

    def start_daemons(self, nodes: Sequence[int]) -> float:
        t0 = time.monotonic()
        self.c.start_daemons(nodes)
        return t0

    def signal_daemon(self, node: int, sig: int) -> float:
        t0 = time.monotonic()
        if sig == signal.SIGKILL:
            self.c.kill(node)  # os.kill(pid, SIGKILL) first, then reaps
            self.exit_info[node] = {"exit_ms": ms(time.monotonic(), t0), "code": -9}
        elif sig == signal.SIGTERM:
            code = self.c.stop(node)  # os.kill(pid, SIGTERM) first, then waits (bounded)
            self.exit_info[node] = {"exit_ms": ms(time.monotonic(), t0), "code": code,
                                    "forced": code == -signal.SIGKILL}
        else:
            raise ValueError(f"unsupported signal {sig}")
        return t0

    def wait_daemon_exit(self, node: int, timeout: float) -> None:
        if self.c.running(node):  # kill()/stop() reap the daemon already
            raise BenchError(f"pyquorum node {node} still running after the signal")

    def _records(self, node: int) -> list[dict[str, Any]]:
        self.c.follower.poll()
        return self.c.follower.records[node]

    def callbacks(self, node: int) -> list[Callback]:
        recs = self._records(node)
        done, cbs = self._cache.get(node, (0, []))
        for r in recs[done:]:
            kind = r.get("kind")
            if kind not in ("quorum", "nodelist"):
                continue
            ring = r.get("ring") or [0, 0]
            cbs.append(Callback(t=float(r["t"]), kind=str(kind),
                                ring=f"{int(ring[0])}.{int(ring[1]):x}",
                                members=tuple(sorted(int(m) for m in r.get("members", []))),
                                quorate=bool(r.get("quorate", 0)),
                                left=tuple(sorted(int(m) for m in r.get("left", [])))))
        self._cache[node] = (len(recs), cbs)
        return cbs

    def connect_times(self, node: int) -> list[float]:
        return [float(r["t"]) for r in self._records(node) if r.get("kind") == "connect"]

    def init_failures(self, node: int) -> int:
        return sum(1 for r in self._records(node) if r.get("kind") == "init_failed")

    def daemon_pid(self, node: int) -> int | None:
        return self.c.daemons[node].pid if self.c.running(node) else None

    def _cmap(self, prefix: str) -> dict[str, str]:
        keys = cmap_get_prefix(prefix, run_dir=str(self.c.node_dir(1) / "run"))
        return dict(sorted(keys.items()))

    def runtime_totem(self) -> dict[str, str]:
        prefix = "runtime.config.totem."
        return {k.removeprefix(prefix): v for k, v in self._cmap(prefix).items()}

    def configured_totem(self) -> dict[str, str]:
        return {k: v for k, v in self._cmap("totem.").items() if "key" not in k}

    def close(self) -> list[str]:
        return self.c.close()


def oracle_harness() -> Any:
    """``../shared/oracle/harness.py`` (imported from ORACLE put on sys.path)."""
    oracle = str(benchcommon.ORACLE)
    if oracle not in sys.path:
        sys.path.insert(0, oracle)
    return importlib.import_module("harness")


class CorosyncSystem(System):
    """The real Corosync under the oracle harness (``harness.Cluster`` / ``cluster.sh``)."""

    name = "corosync"

    def __init__(self, n: int, token_ms: int, coefficient_ms: int, work_dir: Path,
                 prefix: str, net: str) -> None:
        super().__init__(n, token_ms, coefficient_ms, work_dir)
        harness = oracle_harness()
        self.harness = harness
        self.prefix = prefix
        self.c: Any = harness.Cluster(workdir=str(work_dir), log=str(work_dir / "driver.jsonl"))
        self.c.env["CS_PREFIX"] = prefix
        self.c.env["CS_NET"] = net
        self.prepared = False
        self._t_signal: dict[int, float] = {}

    def trace_path(self, node: int) -> Path:
        """Node ``node``'s client trace."""
        return self.work_dir / f"trace-{node}.jsonl"

    def prepare(self) -> None:
        self.prepared = True  # before up(): close() must run down even if up fails midway
        self.c.up(self.n, "--no-start", "--token", str(self.token_ms),
                  "--token-coefficient", str(self.coefficient_ms))

    def start_clients(self) -> None:
        for i in self.nodes:
            self.c.client(i, str(self.trace_path(i)), "--reconnect", "--retry-interval",
                          str(CLIENT_RETRY_S), key=i)

    def start_daemons(self, nodes: Sequence[int]) -> float:
        spec = "all" if list(nodes) == self.nodes else ",".join(str(i) for i in nodes)
        t0 = time.monotonic()
        self.c.start(spec)
        return t0

    def signal_daemon(self, node: int, sig: int) -> float:
        ev = self.c.kill(node, sig)  # os.kill on the recorded PID, t_signal just before
        self._t_signal[node] = float(ev["t_signal"])
        return self._t_signal[node]

    def wait_daemon_exit(self, node: int, timeout: float) -> None:
        t_sig = self._t_signal.get(node, time.monotonic())
        gone = self.poll_until(lambda: self.c.pid(node) is None, timeout)
        info: dict[str, Any] = {"seen_gone_ms": ms(time.monotonic(), t_sig) if gone else None}
        if not gone:
            self.c.kill(node, signal.SIGKILL)
            info["forced"] = True
            if not self.poll_until(lambda: self.c.pid(node) is None, EXIT_TIMEOUT_S):
                raise BenchError(f"corosync node {node} survives SIGKILL")
        self.exit_info[node] = info

    def callbacks(self, node: int) -> list[Callback]:
        out: list[Callback] = []
        for r in read_jsonl(self.trace_path(node)):
            kind = r.get("kind")
            if kind not in ("quorum", "nodelist"):
                continue
            ring = r.get("ring_id") or {}
            out.append(Callback(t=float(r["t"]), kind=str(kind),
                                ring=f"{int(ring.get('nodeid', 0))}.{int(ring.get('seq', 0)):x}",
                                members=tuple(sorted(int(m) for m in r.get("members", []))),
                                quorate=bool(r.get("quorate", False)),
                                left=tuple(sorted(int(m) for m in r.get("left", [])))))
        return out

    def connect_times(self, node: int) -> list[float]:
        return [float(r["t"]) for r in read_jsonl(self.trace_path(node))
                if r.get("kind") == "init" and r.get("rc") == 1]

    def init_failures(self, node: int) -> int:
        return sum(1 for r in read_jsonl(self.trace_path(node))
                   if r.get("kind") == "init_failed")

    def daemon_pid(self, node: int) -> int | None:
        pid = self.c.pid(node)
        return int(pid) if pid is not None else None

    def runtime_totem(self) -> dict[str, str]:
        return dict(sorted(parse_cmapctl(self.c.cmap(1, "runtime.config.totem"),
                                         "runtime.config.totem.").items()))

    def configured_totem(self) -> dict[str, str]:
        return dict(sorted(parse_cmapctl(self.c.cmap(1, "totem.")).items()))

    def close(self) -> list[str]:
        if self.prepared:
            self.c.down()
        return [f"namespace {ns} still exists" for ns in namespaces_with_prefix(self.prefix)]


# ====================================================================== environment
def corosync_problem() -> str | None:
    """Why the Corosync side cannot run here (None: it can)."""
    if os.geteuid() != 0:
        return "not root (cluster.sh needs root for network namespaces)"
    oracle = benchcommon.ORACLE
    for f in ("harness.py", "cluster.sh", "qclient.py"):
        if not (oracle / f).exists():
            return f"the oracle harness is missing ({oracle / f} not found)"
    for tool in ("corosync", "corosync-cmapctl", "ip", "nft", "unshare", "setsid", "python3"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (see {oracle / 'install-deps.sh'})"
    return None


def pyquorum_problem() -> str | None:
    """Why the pyquorum side cannot run here (None: it can)."""
    return environment_problem()


def check_systems(wanted: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The systems that can run, and why the others are skipped (printed)."""
    runnable: list[str] = []
    skipped: dict[str, str] = {}
    for s in wanted:
        problem = pyquorum_problem() if s == "pyquorum" else corosync_problem()
        if problem:
            skipped[s] = problem
            print(f"SKIP {s}: {problem}", flush=True)
        else:
            runnable.append(s)
    return runnable, skipped


@dataclass
class Places:
    """Where a script's clusters live (names, subnets, files)."""

    cs_prefix: str
    cs_net: str
    pq_prefix: str
    pq_subnet: str
    root: Path
    keep: bool

    def new_dir(self, label: str) -> Path:
        """A fresh work directory for one cluster."""
        d = self.root / label
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        d.chmod(0o755)
        return d

    def done(self, d: Path) -> None:
        """Remove a cluster's work directory (unless kept)."""
        if not self.keep:
            shutil.rmtree(d, ignore_errors=True)


def make_system(system: str, n: int, token_ms: int, places: Places, label: str) -> System:
    """A not yet prepared cluster of ``system`` (Corosync's coefficient 650 for both)."""
    d = places.new_dir(f"{system}-{label}")
    if system == "pyquorum":
        return PyquorumSystem(n, token_ms, COROSYNC_DEFAULT_COEFFICIENT_MS, d,
                              places.pq_prefix, places.pq_subnet)
    return CorosyncSystem(n, token_ms, COROSYNC_DEFAULT_COEFFICIENT_MS, d,
                          places.cs_prefix, places.cs_net)


def places_from_args(args: argparse.Namespace, pq_prefix: str, pq_subnet: str) -> Places:
    """Work root (``--keep`` or a temporary directory) and namespace names."""
    if args.keep:
        root = Path(args.keep).resolve()
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix=f"pyquorum-{pq_prefix}-"))
    root.chmod(0o755)
    return Places(args.cs_prefix, args.cs_net, pq_prefix, pq_subnet, root, bool(args.keep))


# ====================================================================== signal cells
def survivor_samples(s: System, victim: int, t0: float) -> dict[int, dict[str, Any]]:
    """Per survivor: the first quorum callback after ``t0`` without the victim, and the
    first nodelist callback after ``t0`` naming it as left (ms after t0)."""
    per: dict[int, dict[str, Any]] = {}
    for i in s.nodes:
        if i == victim:
            continue
        cbs = s.callbacks(i)
        q = first_after(cbs, t0, lambda cb: cb.kind == "quorum" and victim not in cb.members)
        nl = first_after(cbs, t0, lambda cb: cb.kind == "nodelist" and victim in cb.left)
        per[i] = {"quorum_ms": ms(q.t, t0) if q else None,
                  "nodelist_ms": ms(nl.t, t0) if nl else None,
                  "quorate_after": q.quorate if q else None,
                  "members_after": list(q.members) if q else None,
                  "ring_after": q.ring if q else None}
    return per


def survivors_reported(s: System, victim: int, t0: float) -> bool:
    """Every survivor had a quorum callback after ``t0`` without the victim."""
    return all(first_after(s.quorum_cbs(i), t0, lambda cb: victim not in cb.members)
               is not None for i in s.nodes if i != victim)


def run_signal_cell(system: str, n: int, token_spec: str, sig: int, reps: int,
                    settle: float, victim_mode: str, deadline: float, places: Places,
                    label: str) -> dict[str, Any]:
    """One system, one cell: ``reps`` times signal the victim, measure the survivors'
    callbacks, restart it and wait for the rejoin.  The row of results."""
    token_ms = token_ms_of(token_spec)
    s = make_system(system, n, token_ms, places, label)
    victim = n if victim_mode == "highest" else 1
    row: dict[str, Any] = {
        "system": system, "nodes": n, "token_option": token_spec, "token_ms": token_ms,
        "token_coefficient_ms": COROSYNC_DEFAULT_COEFFICIENT_MS,
        "signal": signal.Signals(sig).name, "victim": victim, "samples": [],
        "derived_timing_ms": {"token": s.effective_token_ms, "consensus": s.consensus_ms},
        "work_dir": str(s.work_dir) if places.keep else None}
    bound = s.timing_bound_s()
    t_start = time.monotonic()
    try:
        s.up(timeout=60.0 + 2 * bound)
        row["runtime_totem"] = s.runtime_totem()
        row["configured_totem"] = s.configured_totem()
        row["formed_s"] = round(time.monotonic() - t_start, 3)
        time.sleep(settle)  # pacing: let the fresh ring settle before the first fault
        for rep in range(1, reps + 1):
            if time.monotonic() > deadline:
                row["truncated"] = f"--max-wall reached before repetition {rep}"
                print(f"   {system}: {row['truncated']}", flush=True)
                break
            surv = [i for i in s.nodes if i != victim]
            t0 = s.signal_daemon(victim, sig)
            done = s.poll_until(functools.partial(survivors_reported, s, victim, t0),
                                3 * bound + 15.0)
            per = survivor_samples(s, victim, t0)
            qs = [v["quorum_ms"] for v in per.values() if v["quorum_ms"] is not None]
            s.wait_daemon_exit(victim, EXIT_TIMEOUT_S)
            sample = {"rep": rep, "t0": round(t0, 6), "per_survivor": per,
                      "first_survivor_ms": min(qs) if qs else None,
                      "last_survivor_ms": max(qs) if len(qs) == len(surv) else None,
                      "victim_exit": s.exit_info.get(victim)}
            row["samples"].append(sample)
            shown = ", ".join(f"{i}: {v['quorum_ms']}" for i, v in per.items())
            print(f"   {system} n={n} token={token_spec} {signal.Signals(sig).name} rep "
                  f"{rep}/{reps} victim {victim}: quorum cb after [{shown}] ms", flush=True)
            if not done:
                raise BenchError(f"{system}: not every survivor reported a view without "
                                 f"node {victim} within {3 * bound + 15.0:.0f} s")
            t_re = s.start_daemons([victim])
            s.wait_view(s.nodes, t_re, 60.0 + 3 * bound, f"node {victim} to rejoin")
            time.sleep(settle)  # pacing between repetitions
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
        print(f"   ERROR {system} n={n} token={token_spec}: {row['error']}", flush=True)
    finally:
        row["leftovers"] = s.close()
        places.done(s.work_dir)
        if row["leftovers"]:
            print(f"   LEFTOVERS {system}: {row['leftovers']}", flush=True)
    summarise_signal_row(row)
    return row


def summarise_signal_row(row: dict[str, Any]) -> None:
    """Add the statistics of a signal row's samples (ms)."""
    samples = row["samples"]
    row["reps_done"] = len(samples)
    row["quorum_cb_all_survivors_ms"] = benchcommon.stats(
        [v["quorum_ms"] for smp in samples for v in smp["per_survivor"].values()])
    row["quorum_cb_first_survivor_ms"] = benchcommon.stats(
        [smp["first_survivor_ms"] for smp in samples])
    row["quorum_cb_last_survivor_ms"] = benchcommon.stats(
        [smp["last_survivor_ms"] for smp in samples])
    row["nodelist_cb_all_survivors_ms"] = benchcommon.stats(
        [v["nodelist_ms"] for smp in samples for v in smp["per_survivor"].values()])


def compare_settings(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The effective token/consensus/join of each system of one cell, and whether equal."""
    got = {r["system"]: {k: r.get("runtime_totem", {}).get(k) for k in COMPARED_KEYS}
           for r in rows}
    values = list(got.values())
    identical: bool | None = None  # one system only: nothing to compare
    if len(values) > 1:
        identical = all(v == values[0] for v in values) \
            and all(x is not None for x in values[0].values())
    return {"runtime": got, "identical": identical}


def ratio(pq: dict[str, Any] | None, cs: dict[str, Any] | None, key: str) -> float | None:
    """pyquorum median / Corosync median of ``key`` (None if either is missing)."""
    if pq is None or cs is None:
        return None
    a = pq.get(key, {}).get("median")
    b = cs.get(key, {}).get("median")
    if a is None or not b:
        return None
    return round(float(a) / float(b), 4)


def timing_text(row: dict[str, Any]) -> str:
    """``token / consensus / join`` as the running daemon reported them."""
    t = row.get("runtime_totem") or {}
    return f"{t.get('token', '?')} / {t.get('consensus', '?')} / {t.get('join', '?')}"


def stat(row: dict[str, Any], key: str, what: str) -> float | None:
    """One statistic of a row (None when missing)."""
    v = row.get(key, {}).get(what)
    return None if v is None else float(v)


# ====================================================================== main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(
        description="SIGKILL of one node -> quorum callback on every survivor, pyquorum vs "
                    "Corosync 3.1.7 with identical totem settings (see the module docstring).")
    p.add_argument("--systems", default="pyquorum,corosync",
                   help="comma list of pyquorum,corosync (default both)")
    p.add_argument("--nodes", default="3,5", help="cluster sizes (default 3,5)")
    p.add_argument("--tokens", default="default,1000",
                   help="totem token per cell: 'default' (3000) or ms (default: default,1000)")
    p.add_argument("--reps", type=int, default=10, help="kills per cell and system (10)")
    p.add_argument("--settle", type=float, default=3.0,
                   help="pause after the rejoin before the next kill, s (pacing; 3.0)")
    p.add_argument("--victim", choices=("highest", "lowest"), default="highest",
                   help="kill node N (highest, default) or node 1")
    p.add_argument("--json", metavar="PATH", help="JSON output (default "
                   "bench/results/failover.json; --quick: failover-quick.json)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 rep, 3 nodes, token 1000 only")
    p.add_argument("--max-wall", type=float, default=4 * 3600.0,
                   help="start no repetition after this many seconds (default 4 h)")
    p.add_argument("--keep", metavar="DIR",
                   help="keep configs, traces and daemon logs under DIR")
    p.add_argument("--cs-prefix", default="bnf", help="Corosync namespace prefix (bnf)")
    p.add_argument("--cs-net", default="10.213.93", help="Corosync subnet /24 (10.213.93)")
    args = p.parse_args(argv)
    if args.quick:
        args.reps, args.nodes, args.tokens = 1, "3", "1000"
    args.system_list = [s.strip() for s in args.systems.split(",") if s.strip()]
    bad = [s for s in args.system_list if s not in SYSTEMS]
    if bad or not args.system_list:
        p.error(f"--systems: unknown {bad}; choose from {', '.join(SYSTEMS)}")
    try:
        args.node_list = [int(x) for x in args.nodes.split(",") if x.strip()]
        args.token_list = [x.strip() for x in args.tokens.split(",") if x.strip()]
        for t in args.token_list:
            token_ms_of(t)
    except ValueError as exc:
        p.error(f"--nodes/--tokens: {exc}")
    if any(n < 3 or n > 16 for n in args.node_list):
        p.error("--nodes: sizes from 3 to 16")
    if args.reps < 1 or args.reps > 1000:
        p.error("--reps: 1..1000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status."""
    args = parse_args(argv)
    install_sigterm()
    benchcommon.precompile_pyquorum()
    out = args.json or str(benchcommon.RESULTS_DIR
                           / ("failover-quick.json" if args.quick else "failover.json"))
    systems, skipped = check_systems(args.system_list)
    params: dict[str, Any] = {
        "argv": sys.argv[1:], "systems": args.system_list, "skipped": skipped,
        "nodes": args.node_list, "tokens": args.token_list, "reps": args.reps,
        "settle_s": args.settle, "victim": args.victim, "quick": args.quick,
        "token_coefficient_ms": COROSYNC_DEFAULT_COEFFICIENT_MS,
        "consensus_join": "unset in both configurations (derived: 1.2 x token, 50 ms)",
        "sample": "t of the first quorum callback on a survivor whose members lack the "
                  "victim, minus t0 = monotonic() just before os.kill(pid, SIGKILL)",
        "clients": {"pyquorum": "tests/chaos/chaos_client.py (retry 20 ms)",
                    "corosync": f"oracle qclient.py --reconnect --retry-interval "
                                f"{CLIENT_RETRY_S}"},
        "transport": {"pyquorum": "udpu, crypto aes256/sha256 (chaosnet.py)",
                      "corosync": "knet, crypto none (cluster.sh)"},
        "target_ratio_of_medians": FAILOVER_TARGET_RATIO}
    if not systems:
        print("nothing to run", flush=True)
        benchcommon.write_json("failover", params, [], out)
        return 2
    places = places_from_args(args, "bnf", "10.213.95")
    deadline = time.monotonic() + args.max_wall
    results: list[dict[str, Any]] = []
    failed = False
    try:
        for n in args.node_list:
            for token in args.token_list:
                cell: list[dict[str, Any]] = []
                for system in systems:
                    print(f"== {system}: {n} nodes, token {token}, {args.reps} reps", flush=True)
                    row = run_signal_cell(system, n, token, signal.SIGKILL, args.reps,
                                          args.settle, args.victim, deadline, places,
                                          f"n{n}-t{token}")
                    row["row"] = "measurement"
                    failed = failed or "error" in row or bool(row["leftovers"])
                    cell.append(row)
                    results.append(row)
                    benchcommon.write_json("failover", params, results, out)
                results.append(comparison_row(n, token, cell))
                benchcommon.write_json("failover", params, results, out)
    finally:
        if not places.keep:
            shutil.rmtree(places.root, ignore_errors=True)
    print()
    print(render_table(results))
    path = benchcommon.write_json("failover", params, results, out)
    print(f"\nJSON: {path}")
    return 1 if failed else 0


def comparison_row(n: int, token: str, cell: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The pyquorum / Corosync comparison of one cell."""
    by = {r["system"]: r for r in cell}
    pq, cs = by.get("pyquorum"), by.get("corosync")
    key = "quorum_cb_all_survivors_ms"
    r = ratio(pq, cs, key)
    cmp: dict[str, Any] = {
        "row": "comparison", "nodes": n, "token_option": token,
        "ratio_median_all_survivors": r,
        "ratio_median_first_survivor": ratio(pq, cs, "quorum_cb_first_survivor_ms"),
        "ratio_median_last_survivor": ratio(pq, cs, "quorum_cb_last_survivor_ms"),
        "target_ratio": FAILOVER_TARGET_RATIO,
        "meets_target": None if r is None else r <= FAILOVER_TARGET_RATIO,
        "settings": compare_settings(cell)}
    if cmp["settings"]["identical"] is False:
        print(f"WARNING n={n} token={token}: effective totem settings differ: "
              f"{cmp['settings']['runtime']}", flush=True)
    return cmp


def render_table(results: Sequence[dict[str, Any]]) -> str:
    """The markdown table of the measurement rows (ms)."""
    ratios = {(r["nodes"], r["token_option"]): r for r in results if r["row"] == "comparison"}
    rows: list[list[Any]] = []
    for r in results:
        if r["row"] != "measurement":
            continue
        key = "quorum_cb_all_survivors_ms"
        cmp = ratios.get((r["nodes"], r["token_option"]))
        rat = cmp["ratio_median_all_survivors"] if cmp and r["system"] == "pyquorum" else None
        rows.append([r["nodes"], r["token_option"], r["system"], timing_text(r),
                     r["reps_done"], stat(r, key, "median"), stat(r, key, "p90"),
                     stat(r, key, "max"), stat(r, key, "spread"),
                     stat(r, "quorum_cb_first_survivor_ms", "median"),
                     stat(r, "quorum_cb_last_survivor_ms", "median"),
                     rat, "error" if "error" in r else "ok"])
    return benchcommon.table(
        ["nodes", "token", "system", "runtime token / consensus / join (ms)", "reps",
         "median ms", "p90 ms", "max ms", "spread ms", "first surv. median",
         "last surv. median", "pq/cs median", "status"], rows)


if __name__ == "__main__":
    sys.exit(main())
