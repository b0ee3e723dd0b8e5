"""Scale: 8, 16 and 32 real daemons on this machine: formation, idle stability, CPU, RSS.

What it measures (per cluster size N)
    * time to form: from just before the first daemon is started (all N are started at
      once, without waiting for each other) until every node's latest quorum callback
      says quorate, with all N nodes as members, in the same ring; ``--reps`` fresh
      clusters (default 3), each in a new directory with fresh state.  Target: 8/16/32
      nodes in <= 2/3/5 s.  The time until the last daemon signalled READY (its IPC
      socket is up and its first, singleton, view installed) is reported apart: it is
      mostly Python start-up, which N processes share the machine's cores for;
    * spurious view changes while idle: after formation nothing is done for ``--idle``
      seconds (default 60); every ring id reported by a quorum or nodelist callback after
      formation that is not the formed ring counts, as does every quorum callback
      (target: 0 and 0; the goal behind it is zero in 10 idle minutes:
      ``--idle 600``).  The daemons' "not scheduled" warnings are counted from their logs;
    * CPU per daemon while idle: ``/proc/<pid>/stat`` utime + stime over the idle
      period, as % of one core (target <= 1 %);
    * RSS per daemon at the end of the idle period: ``/proc/<pid>/status`` VmRSS in MiB
      (target <= 40), with VmHWM (peak) as well.
    The idle part is measured on the last repetition of each size.

How
    Real ``pyquorumd`` processes on 127.0.0.1, one UDP port each, with the files of
    ``pyquorum.tools.labcluster.LabCluster`` (generated authkey: aes256/sha256; per node
    ``corosync.conf``, state and run directory, ``daemon.log``), the daemon's default
    totem timing unless ``--token`` (Corosync's defaults: token 3000 ms plus
    token_coefficient 650 ms per node above 2, so 6900 / 12100 / 22500 ms at 8 / 16 / 32
    nodes).  Each node is followed by one thread of this process that
    waits for the daemon's READY line and then tracks quorum with the client library
    (``QuorumClient``, CURRENT|CHANGES); callback times are ``time.monotonic()``.  The
    monitor itself costs this process a little CPU during formation, on the same cores
    as the daemons.  Every wait is bounded; the idle period is the measurement itself.
    Daemons are started and signalled only through their ``Popen`` objects (by PID):
    SIGTERM to all, then SIGKILL after a timeout; the directory is removed at the end,
    also on failure or Ctrl-C.

Run
    python bench/bench_scale.py                       # 8,16,32 nodes, 3 reps, 60 s idle
    python bench/bench_scale.py --quick               # 8 nodes, 1 rep, 10 s idle
    python bench/bench_scale.py --sizes 32 --idle 600 --reps 1 --json OUT

Prints a markdown table and writes ``bench/results/bench_scale.json`` (or ``--json``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchcommon

from pyquorum.client.events import Disconnected, NodelistEvent, QuorumEvent
from pyquorum.client.facade import QuorumClient
from pyquorum.errors import CsError
from pyquorum.tools.labcluster import LabCluster, wait_ready
from pyquorum.types import RingId

NAME = "bench_scale"
DEFAULT_SIZES = (8, 16, 32)
FORM_TARGET_S = {8: 2.0, 16: 3.0, 32: 5.0}
CPU_TARGET_PCT = 1.0
RSS_TARGET_MIB = 40.0
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
JOIN_TIMEOUT_S = 10.0
POLL_S = 1.0
"""How often a monitor thread looks at the stop flag (it wakes at once on an event)."""


class BenchError(Exception):
    """The benchmark could not run (a daemon died, no formation within the bound...)."""


# ---------------------------------------------------------------------------- /proc
def memory_mib(pid: int) -> tuple[float | None, float | None]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    rss = hwm = None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024.0
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return rss, hwm


# ---------------------------------------------------------------------------- monitors
@dataclass(slots=True)
class Seen:
    """One callback a monitor received: when, and what."""

    t: float
    event: QuorumEvent | NodelistEvent


@dataclass(slots=True)
class NodeMonitor:
    """A thread that waits for one daemon's READY and then tracks its quorum."""

    nodeid: int
    run_dir: str
    ready_fd: int
    cond: threading.Condition
    stop: threading.Event
    t_ready: float | None = None
    seen: list[Seen] = field(default_factory=list)
    error: str | None = None
    client: QuorumClient | None = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread."""
        self.thread = threading.Thread(target=self._run, name=f"monitor-{self.nodeid}",
                                       daemon=True)
        self.thread.start()

    def _fail(self, message: str) -> None:
        with self.cond:
            if not self.stop.is_set() and self.error is None:
                self.error = message
            self.cond.notify_all()

    def _run(self) -> None:
        try:
            ok = wait_ready(self.ready_fd, READY_TIMEOUT_S)
        finally:
            os.close(self.ready_fd)
        if not ok:
            self._fail(f"node {self.nodeid}: no READY within {READY_TIMEOUT_S:g} s")
            return
        with self.cond:
            self.t_ready = time.monotonic()
            self.cond.notify_all()
        client: QuorumClient | None = None
        try:
            client = QuorumClient(run_dir=self.run_dir)
            with self.cond:
                self.client = client
                if self.stop.is_set():
                    return
            client.track()
            while not self.stop.is_set():
                event = client.wait_event(POLL_S)
                t = time.monotonic()
                if isinstance(event, Disconnected):
                    self._fail(f"node {self.nodeid}: the daemon went away")
                    return
                if isinstance(event, QuorumEvent | NodelistEvent):
                    with self.cond:
                        self.seen.append(Seen(t, event))
                        self.cond.notify_all()
        except CsError as exc:
            self._fail(f"node {self.nodeid}: {exc}")
        finally:
            if client is not None:
                with contextlib.suppress(CsError):
                    client.close()

    def latest_quorum(self) -> Seen | None:
        """The newest quorum callback (call with ``cond`` held)."""
        for s in reversed(self.seen):
            if isinstance(s.event, QuorumEvent):
                return s
        return None


# ---------------------------------------------------------------------------- one cluster
@dataclass(slots=True)
class ClusterRun:
    """One cluster of N daemons started at once, followed by monitor threads."""

    n: int
    token_ms: int | None
    form_timeout_s: float
    lab: LabCluster = field(init=False)
    cond: threading.Condition = field(default_factory=threading.Condition)
    stop: threading.Event = field(default_factory=threading.Event)
    monitors: list[NodeMonitor] = field(default_factory=list)
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    t_start: float = 0.0

    def __post_init__(self) -> None:
        self.lab = LabCluster(n_nodes=self.n, token_ms=self.token_ms,
                              ready_timeout_s=READY_TIMEOUT_S, stop_timeout_s=STOP_TIMEOUT_S)

    def start_all(self) -> None:
        """Create the files, then start every daemon without waiting in between."""
        self.lab.setup()
        self.t_start = time.monotonic()
        for nodeid in sorted(self.lab.nodes):
            node = self.lab.node(nodeid)
            read_fd, write_fd = os.pipe()
            try:
                log: IO[bytes] = open(node.log_path, "ab")  # noqa: SIM115 - closed below
                try:
                    proc = subprocess.Popen(
                        self.lab.command(nodeid, write_fd), pass_fds=(write_fd,),
                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True, cwd=node.directory)
                finally:
                    log.close()
            except BaseException:
                os.close(read_fd)
                raise
            finally:
                os.close(write_fd)
            # hand the process to the lab too, so that its close() stops it by PID
            node.proc = proc
            node.returncode = None
            node.state = "running"
            self.procs[nodeid] = proc
            mon = NodeMonitor(nodeid, node.run_dir, read_fd, self.cond, self.stop)
            self.monitors.append(mon)
            mon.start()

    def _check(self) -> None:
        """Raise if a monitor failed or a daemon exited (call with ``cond`` held)."""
        for mon in self.monitors:
            if mon.error is not None:
                raise BenchError(f"{mon.error}; log tail:\n{self.lab.log_tail(mon.nodeid)}")
        for nodeid, proc in self.procs.items():
            rc = proc.poll()
            if rc is not None:
                raise BenchError(f"node {nodeid} exited with status {rc}; log tail:\n"
                                 f"{self.lab.log_tail(nodeid)}")

    def _formed(self) -> tuple[float, RingId] | None:
        """(time, ring) once every node reports quorate with all N in one ring."""
        everyone = tuple(range(1, self.n + 1))
        times: list[float] = []
        rings: set[RingId] = set()
        for mon in self.monitors:
            s = mon.latest_quorum()
            if s is None:
                return None
            assert isinstance(s.event, QuorumEvent)
            if not s.event.quorate or tuple(sorted(s.event.members)) != everyone:
                return None
            times.append(s.t)
            rings.add(s.event.ring)
        if len(rings) != 1 or len(times) != self.n:
            return None
        return max(times), rings.pop()

    def wait_formed(self) -> tuple[float, float, RingId, list[int]]:
        """Wait (bounded) for formation; returns (form s, all-ready s, ring, the number
        of callbacks each monitor had seen at that point)."""
        deadline = self.t_start + self.form_timeout_s
        with self.cond:
            while True:
                self._check()
                formed = self._formed()
                if formed is not None:
                    t_formed, ring = formed
                    t_ready = max(m.t_ready or t_formed for m in self.monitors)
                    marks = [len(m.seen) for m in self.monitors]
                    return t_formed - self.t_start, t_ready - self.t_start, ring, marks
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    views = "; ".join(
                        f"{m.nodeid}:" + (f"q={int(s.event.quorate)} {s.event.ring} "
                                          f"{len(s.event.members)} members"
                                          if (s := m.latest_quorum()) is not None
                                          and isinstance(s.event, QuorumEvent) else "-")
                        for m in self.monitors)
                    raise BenchError(f"{self.n} nodes did not form one quorate ring within "
                                     f"{self.form_timeout_s:g} s: {views}")
                self.cond.wait(min(remaining, POLL_S))

    def idle(self, seconds: float, ring: RingId, marks: list[int]) -> dict[str, Any]:
        """Do nothing for ``seconds``; the idle measurements."""
        pids = {n: p.pid for n, p in self.procs.items()}
        c0 = {n: benchcommon.cpu_ticks(pid) for n, pid in pids.items()}
        t0 = time.monotonic()
        deadline = t0 + seconds
        with self.cond:
            while (remaining := deadline - time.monotonic()) > 0:
                self._check()
                self.cond.wait(remaining)  # woken by callbacks: they are only counted
            self._check()
        t1 = time.monotonic()
        c1 = {n: benchcommon.cpu_ticks(pid) for n, pid in pids.items()}
        mem = {n: memory_mib(pid) for n, pid in pids.items()}
        tck = os.sysconf("SC_CLK_TCK")
        cpu_pct: list[float | None] = []
        for n in pids:
            a, b = c0[n], c1[n]
            cpu_pct.append(None if a is None or b is None else (b - a) / tck / (t1 - t0) * 100)
        with self.cond:
            after = [s for m, mark in zip(self.monitors, marks, strict=True)
                     for s in m.seen[mark:]]
        new_rings = sorted({str(s.event.ring) for s in after if s.event.ring != ring})
        quorum_cbs = sum(isinstance(s.event, QuorumEvent) for s in after)
        rss = [m[0] for m in mem.values()]
        hwm = [m[1] for m in mem.values()]
        return {
            "idle_s": round(t1 - t0, 3),
            "spurious_views": len(new_rings),
            "spurious_rings": new_rings,
            "idle_quorum_callbacks": quorum_cbs,
            "idle_callbacks": len(after),
            "cpu_pct": benchcommon.stats(cpu_pct),
            "rss_mib": benchcommon.stats(rss),
            "hwm_mib": benchcommon.stats(hwm),
            "samples_cpu_pct": [None if x is None else round(x, 4) for x in cpu_pct],
            "samples_rss_mib": [None if x is None else round(x, 2) for x in rss],
        }

    def not_scheduled_warnings(self) -> int:
        """"not scheduled" warnings in every daemon's log so far."""
        count = 0
        for nodeid in self.lab.nodes:
            try:
                with open(self.lab.node(nodeid).log_path, "rb") as f:
                    count += f.read().count(b"was not scheduled")
            except OSError:
                pass
        return count

    def close(self) -> None:
        """Stop monitors and daemons (SIGTERM to all by PID, then SIGKILL), remove files."""
        with self.cond:
            self.stop.set()
            clients = [m.client for m in self.monitors if m.client is not None]
        for client in clients:
            with contextlib.suppress(CsError):
                client.close()
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for nodeid, proc in self.procs.items():
            try:
                rc: int | None = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait(timeout=STOP_TIMEOUT_S)
            node = self.lab.node(nodeid)
            node.returncode = rc
            node.state = "stopped"
        for mon in self.monitors:
            if mon.thread is not None:
                mon.thread.join(JOIN_TIMEOUT_S)
        self.lab.close()


def run_size(n: int, reps: int, idle_s: float, token_ms: int | None,
             form_timeout_s: float) -> dict[str, Any]:
    """``reps`` formations of ``n`` nodes; the idle period on the last one."""
    form: list[float] = []
    ready: list[float] = []
    rings: list[str] = []
    idle: dict[str, Any] = {}
    warnings = 0
    for rep in range(reps):
        cluster = ClusterRun(n, token_ms, form_timeout_s)
        try:
            cluster.start_all()
            form_s, ready_s, ring, marks = cluster.wait_formed()
            form.append(form_s)
            ready.append(ready_s)
            rings.append(str(ring))
            print(f"  {n} nodes, rep {rep + 1}/{reps}: formed in {form_s:.3f} s "
                  f"(last READY {ready_s:.3f} s), ring {ring}", file=sys.stderr)
            if rep == reps - 1 and idle_s > 0:
                idle = cluster.idle(idle_s, ring, marks)
            warnings += cluster.not_scheduled_warnings()
        finally:
            cluster.close()
    target = FORM_TARGET_S.get(n)
    form_stats = benchcommon.stats(form)
    row: dict[str, Any] = {
        "nodes": n, "reps": reps, "form_s": form_stats, "all_ready_s": benchcommon.stats(ready),
        "rings": rings, "not_scheduled_warnings": warnings, "form_target_s": target,
        "samples_form_s": [round(x, 4) for x in form],
        "samples_all_ready_s": [round(x, 4) for x in ready],
    }
    row.update(idle)
    row["meets"] = {
        "form": None if target is None else form_stats["max"] <= target,
        "spurious": None if not idle else (idle["spurious_views"] == 0
                                           and idle["idle_quorum_callbacks"] == 0),
        "cpu": None if not idle or "max" not in idle["cpu_pct"]
        else idle["cpu_pct"]["max"] <= CPU_TARGET_PCT,
        "rss": None if not idle or "max" not in idle["rss_mib"]
        else idle["rss_mib"]["max"] <= RSS_TARGET_MIB,
    }
    return row


def parse_sizes(text: str) -> list[int]:
    """``"8,16,32"`` -> ``[8, 16, 32]`` (each 2..64)."""
    return benchcommon.int_list(text, 2, 64, "--sizes")


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("ok" if ok else "MISSED")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: exit 0 if it ran (missed targets are reported, not failures)."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=parse_sizes, default=None,
                   help="cluster sizes, comma separated (default 8,16,32; --quick: 8)")
    p.add_argument("--idle", type=float, default=None,
                   help="idle period in seconds (default 60; --quick: 10; 0: none)")
    p.add_argument("--reps", type=int, default=None,
                   help="formations per size (default 3; --quick: 1)")
    p.add_argument("--token", type=int, default=None,
                   help="totem token ms (default: the daemon's, 3000 + 650 per node above 2)")
    p.add_argument("--form-timeout", type=float, default=180.0,
                   help="give up on one formation after this many seconds")
    p.add_argument("--quick", action="store_true", help="8 nodes, 1 rep, 10 s idle")
    p.add_argument("--json", metavar="OUT", help=f"default bench/results/{NAME}.json")
    args = p.parse_args(argv)
    sizes = args.sizes or ([8] if args.quick else list(DEFAULT_SIZES))
    idle = args.idle if args.idle is not None else (10.0 if args.quick else 60.0)
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    if reps < 1 or idle < 0 or args.form_timeout <= 0:
        p.error("--reps must be >= 1, --idle >= 0, --form-timeout > 0")
    benchcommon.install_sigterm()
    benchcommon.precompile_pyquorum()

    rows = [run_size(n, reps, idle, args.token, args.form_timeout) for n in sizes]

    def g(r: dict[str, Any], key: str, stat: str) -> Any:
        return r.get(key, {}).get(stat)

    print(benchcommon.table(
        ["nodes", "reps", "form s median", "form s max", "target s", "last READY s median",
         "idle s", "spurious views", "idle quorum cbs", "CPU % median", "CPU % max",
         "RSS MiB median", "RSS MiB max", "not-scheduled warnings", "form / views / CPU / RSS"],
        [[r["nodes"], r["reps"], g(r, "form_s", "median"), g(r, "form_s", "max"),
          r["form_target_s"], g(r, "all_ready_s", "median"), r.get("idle_s"),
          r.get("spurious_views"), r.get("idle_quorum_callbacks"), g(r, "cpu_pct", "median"),
          g(r, "cpu_pct", "max"), g(r, "rss_mib", "median"), g(r, "rss_mib", "max"),
          r["not_scheduled_warnings"],
          " / ".join(_verdict(r["meets"][k]) for k in ("form", "spurious", "cpu", "rss"))]
         for r in rows]))
    params = {
        "sizes": sizes, "idle_s": idle, "reps": reps, "token_ms": args.token,
        "quick": args.quick, "form_timeout_s": args.form_timeout,
        "cluster": "LabCluster files on 127.0.0.1 (one UDP port per node), aes256/sha256, "
                   "all daemons started at once",
        "targets": {"form_s": FORM_TARGET_S, "spurious_views": 0,
                    "cpu_pct_of_one_core": CPU_TARGET_PCT, "rss_mib": RSS_TARGET_MIB},
    }
    path = benchcommon.write_json(NAME, params, rows, args.json)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
