"""Notification fan-out: one quorum change delivered to 1, 10 and 100 tracking clients.

What it measures
    The latency from a quorum change in the daemon, caused on demand, to the quorum
    callback of each of N clients of ONE daemon that track quorum
    (``quorum_model_initialize`` V1 + ``quorum_trackstart(CURRENT|CHANGES)``), for
    N = 1, 10, 100, over ``--changes``
    changes (default 20) per N after ``--warmup`` unmeasured ones.  Reported per N: the
    median and p99 of every (client, change) latency (targets: median < 1 ms, p99 <
    5 ms), the same split by direction, the first callback of each change, the spread of
    one change (last callback - first callback: the fan-out itself), the time the
    triggering request took, callbacks that were not expected (should be 0), and the
    daemon's CPU per change (``/proc/<pid>/stat`` utime+stime over the measured changes,
    divided by their number; it includes the trigger's own work and the 1-node
    cluster's idle timers).

How the change is caused
    One real ``pyquorumd`` (a 1-node ``LabCluster`` on 127.0.0.1 with an encrypted
    transport) whose configuration says ``quorum.expected_votes: 2``, so it starts
    inquorate with its single vote.  A quorum callback goes to trackers only when the
    quorate bit flips (or at a view change; ``core/votequorum.py`` ``_are_we_quorate``
    notifies only on ``quorum_change``), and an administrative call can only make a
    cluster quorate (``setexpected`` and ``setvotes`` refuse a value that would leave it
    inquorate), so the two directions use two calls:

    * up (inquorate -> quorate): ``votequorum_setexpected(1)``: RECONFIGURE
      EXPECTED_VOTES in agreed order, quorum 1 <= 1 vote;
    * down (quorate -> inquorate): ``corosync_cfg_reload_config`` (``corosync-cfgtool
      -R``): the daemon re-reads its file, expected votes go back to 2 (a reload is not
      held to setexpected's safety check), quorum 2 > 1 vote.

    The two alternate.  The latency is measured from the daemon's change:
    ``runtime.pyquorum.quorate_changed_ns`` (cmap), the daemon's CLOCK_MONOTONIC when it
    starts delivering the events of the input that flipped its quorate bit, before any
    callback is written; each client takes ``time.monotonic()`` (the same clock, one for
    every process on the machine) first thing in its callback.  The triggering request
    is reported apart: ``t0`` is taken in this process just before the request is sent,
    "request to change" is what the daemon took to act on it (IPC, agreed order, and in
    the down direction reading and parsing the configuration file), and "from request"
    is the whole chain.  The spread column (last callback - first callback) isolates the
    fan-out itself.  The next change is triggered only once every client reported the
    previous one (no sleeps; every wait is bounded).

Client processes (the choice, and its effect)
    Clients live in separate worker processes (this script with ``--worker``), at most
    ``--procs`` (default 10) of them, the N clients dealt out evenly: N=1 is one process,
    N=10 one process per client, N=100 ten processes of ten clients, each waiting on its
    clients' event fds with one selector and dispatching whatever is readable.  One
    process for all 100 clients would serialise 100 Python dispatches (tens of
    microseconds each) into one loop, so the last callback would measure the client
    library rather than the daemon; one process per client would put 100 runnable
    processes on this machine's cores at every change.  With 10 processes on 2 cores the
    last callbacks of a change still wait for a core: p99 at N=100 includes scheduling
    delay of the client side, which is part of what a real host with 100 tracking
    processes would see.  Callback times are written to the parent over a pipe after
    the selector round, not inside the callback.  ``--procs 1`` or ``--procs 100``
    shows the two extremes.

Run
    python bench/bench_fanout.py                   # N = 1, 10, 100; 20 changes each
    python bench/bench_fanout.py --quick           # 6 changes each
    python bench/bench_fanout.py --clients 1,10,100 --changes 40 --procs 20 --json OUT

Prints a markdown table and writes ``bench/results/bench_fanout.json`` (or ``--json``).
Everything started here (the daemon, the worker processes, the temporary directory)
is stopped by PID and removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchcommon

from pyquorum.client import cfg, cmap
from pyquorum.client import quorum as q
from pyquorum.client import votequorum as vq
from pyquorum.tools.labcluster import LabCluster

NAME = "bench_fanout"
DEFAULT_CLIENTS = (1, 10, 100)
DEFAULT_CHANGES = 20
QUICK_CHANGES = 6
TARGET_MEDIAN_MS = 1.0
TARGET_P99_MS = 5.0
REQUEST_TIMEOUT_S = 30.0
"""Bound on one blocking client call (trigger request)."""
CALLBACK_TIMEOUT_S = 15.0
"""Bound on waiting for every client's callback of one change."""
WORKER_READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


# ---------------------------------------------------------------------------- helpers
class Timeout(Exception):
    """A bounded wait ran out."""


class BenchError(Exception):
    """The benchmark could not run (not a measurement)."""


@contextlib.contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Raise ``Timeout`` in the main thread if the block runs longer than ``seconds``
    (a blocking client request has no timeout of its own; the library skips the late
    answer of an interrupted request)."""
    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise Timeout(f"{what}: no answer within {seconds:g} s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------------------- worker
def worker_main(run_dir: str, count: int, base: int, max_s: float) -> int:
    """A client process: ``count`` tracking clients; writes ``ready`` once every
    snapshot arrived, then ``cb <index> <quorate> <monotonic>`` per callback; exits on
    ``quit``, EOF on stdin, a lost daemon or after ``max_s`` seconds."""
    deadline = time.monotonic() + max_s
    records: list[tuple[int, int, float]] = []

    def make_callback(idx: int) -> q.QuorumNotifyV1:
        def on_quorum(handle: int, quorate: int, ring: q.QuorumRingId,
                      members: list[int]) -> None:
            records.append((idx, quorate, time.monotonic()))
        return on_quorum

    def emit(line: str) -> None:
        data = (line + "\n").encode()
        while data:
            data = data[os.write(1, data):]

    handles: list[int] = []
    sel = selectors.DefaultSelector()
    try:
        for i in range(count):
            handle, _ = q.quorum_model_initialize(
                q.QUORUM_MODEL_V1, q.QuorumModelV1Data(quorum_notify_fn=make_callback(base + i)),
                None, run_dir=run_dir)
            handles.append(handle)
            q.quorum_trackstart(handle, q.CS_TRACK_CURRENT | q.CS_TRACK_CHANGES)
            sel.register(q.quorum_fd_get(handle), selectors.EVENT_READ, i)
        pending = set(range(base, base + count))  # snapshots not yet seen
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                emit(f"error no snapshot for clients {sorted(pending)}")
                return 2
            for key, _ in sel.select(remaining):
                q.quorum_dispatch(handles[key.data], q.CS_DISPATCH_ALL)
            pending -= {idx for idx, _, _ in records}
            records.clear()
        sel.register(0, selectors.EVENT_READ, -1)
        emit("ready")
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                emit("error worker lifetime exceeded")
                return 2
            for key, _ in sel.select(remaining):
                if key.data == -1:
                    data = os.read(0, 4096)
                    if not data or b"quit" in data:
                        return 0
                    continue
                q.quorum_dispatch(handles[key.data], q.CS_DISPATCH_ALL)
            if records:
                for idx, quorate, t in records:
                    emit(f"cb {idx} {quorate} {t:.9f}")
                records.clear()
    except Exception as exc:  # reported to the parent, which fails the run
        emit(f"error {type(exc).__name__}: {exc}".replace("\n", " "))
        return 2
    finally:
        for handle in handles:
            with contextlib.suppress(Exception):
                q.quorum_finalize(handle)
        sel.close()


@dataclass(slots=True)
class Worker:
    """One worker process as seen from the parent."""

    proc: subprocess.Popen[bytes]
    base: int
    count: int
    buf: bytes = b""
    ready: bool = False
    eof: bool = False


@dataclass(slots=True)
class WorkerPool:
    """The worker processes holding the N tracking clients."""

    run_dir: str
    clients: int
    procs: int
    max_s: float
    workers: list[Worker] = field(default_factory=list)
    _sel: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    _lines: list[str] = field(default_factory=list)

    def start(self) -> None:
        """Start the workers and wait (bounded) until every client got its snapshot."""
        n_procs = max(1, min(self.clients, self.procs))
        base = 0
        for i in range(n_procs):
            count = self.clients // n_procs + (1 if i < self.clients % n_procs else 0)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", self.run_dir,
                   "--worker-clients", str(count), "--worker-base", str(base),
                   "--worker-max-s", str(self.max_s)]
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            w = Worker(proc, base, count)
            self.workers.append(w)
            assert proc.stdout is not None
            os.set_blocking(proc.stdout.fileno(), False)
            self._sel.register(proc.stdout.fileno(), selectors.EVENT_READ, w)
            base += count
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
        while not all(w.ready for w in self.workers):
            self._read(deadline, "worker start-up")
            for line in self._take():
                raise BenchError(f"unexpected worker output before ready: {line!r}")

    def _read(self, deadline: float, what: str) -> None:
        """Read whatever the workers wrote (waiting until something arrives)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Timeout(f"{what}: timed out")
        for key, _ in self._sel.select(remaining):
            w: Worker = key.data
            assert w.proc.stdout is not None
            try:
                chunk = os.read(w.proc.stdout.fileno(), 65536)
            except BlockingIOError:
                continue
            if not chunk:
                w.eof = True
                self._sel.unregister(key.fileobj)
                raise BenchError(f"worker {w.proc.pid} exited (status {w.proc.poll()})")
            w.buf += chunk
            *lines, w.buf = w.buf.split(b"\n")
            for raw in lines:
                line = raw.decode()
                if line == "ready":
                    w.ready = True
                elif line.startswith("error"):
                    raise BenchError(f"worker {w.proc.pid}: {line}")
                else:
                    self._lines.append(line)

    def _take(self) -> list[str]:
        out, self._lines = self._lines, []
        return out

    def collect(self, quorate: bool, timeout_s: float) -> tuple[dict[int, float], int]:
        """Wait until every client reported a callback with ``quorate``; returns
        {client: callback time} and the number of other callbacks seen meanwhile."""
        got: dict[int, float] = {}
        extra = 0
        deadline = time.monotonic() + timeout_s
        while len(got) < self.clients:
            for line in self._take():
                _, idx_s, q_s, t_s = line.split()
                idx = int(idx_s)
                if bool(int(q_s)) != quorate or idx in got:
                    extra += 1
                else:
                    got[idx] = float(t_s)
            if len(got) < self.clients:
                self._read(deadline, f"callbacks ({len(got)}/{self.clients} arrived)")
        return got, extra

    def close(self) -> None:
        """Ask every worker to quit, wait bounded, then SIGKILL (by PID) what is left."""
        for w in self.workers:
            if w.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    w.proc.stdin.write(b"quit\n")
                    w.proc.stdin.close()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for w in self.workers:
            try:
                w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait(timeout=STOP_TIMEOUT_S)
            if w.proc.stdout is not None:
                w.proc.stdout.close()
        self._sel.close()


# ---------------------------------------------------------------------------- parent
@dataclass(slots=True)
class Trigger:
    """The connections that cause quorum changes on the daemon."""

    run_dir: str
    vq_handle: int = 0
    cfg_handle: int = 0

    def open(self) -> None:
        """Connect to votequorum and cfg."""
        with time_limit(REQUEST_TIMEOUT_S, "connect"):
            self.vq_handle = vq.votequorum_initialize(None, run_dir=self.run_dir)
            self.cfg_handle = cfg.corosync_cfg_initialize(run_dir=self.run_dir)

    def quorate(self) -> bool:
        """The daemon's quorate flag (votequorum_getinfo)."""
        with time_limit(REQUEST_TIMEOUT_S, "getinfo"):
            info = vq.votequorum_getinfo(self.vq_handle, 0)
        return bool(info.flags & vq.VOTEQUORUM_INFO_QUORATE)

    def flip(self, to_quorate: bool) -> None:
        """Make the daemon quorate (setexpected 1) or inquorate (reload: expected 2)."""
        with time_limit(REQUEST_TIMEOUT_S, "trigger"):
            if to_quorate:
                vq.votequorum_setexpected(self.vq_handle, 1)
            else:
                cfg.corosync_cfg_reload_config(self.cfg_handle)

    def changed_at(self) -> float:
        """When the daemon's quorate bit last changed (CLOCK_MONOTONIC seconds; cmap
        ``runtime.pyquorum.quorate_changed_ns``, stamped before any callback is written)."""
        key = "runtime.pyquorum.quorate_changed_ns"
        with time_limit(REQUEST_TIMEOUT_S, "cmap read"):
            value = cmap.cmap_get_prefix(key, run_dir=self.run_dir).get(key)
        if value is None or int(value) == 0:
            raise BenchError(f"the daemon does not report {key}")
        return int(value) / 1e9

    def close(self) -> None:
        """Finalize both handles (idempotent)."""
        closers: list[tuple[int, Callable[[int], None]]] = [
            (self.vq_handle, vq.votequorum_finalize),
            (self.cfg_handle, cfg.corosync_cfg_finalize)]
        for handle, fin in closers:
            if handle:
                with contextlib.suppress(Exception):
                    fin(handle)
        self.vq_handle = self.cfg_handle = 0


@dataclass(slots=True)
class Change:
    """One measured quorum change."""

    to_quorate: bool
    latencies_ms: list[float]
    """From the daemon's change (``Trigger.changed_at``) to each callback."""
    request_ms: list[float]
    """From just before the triggering request to each callback."""
    reply_ms: float
    daemon_ms: float
    """From the request to the daemon's change (IPC, agreed order, the reload's parse)."""
    extra: int

    @property
    def first_ms(self) -> float:
        """The earliest callback."""
        return min(self.latencies_ms)

    @property
    def spread_ms(self) -> float:
        """Last callback - first callback."""
        return max(self.latencies_ms) - min(self.latencies_ms)


def measure(trigger: Trigger, daemon_pid: int, run_dir: str, clients: int, procs: int,
            changes: int, warmup: int, quorate: bool) -> tuple[dict[str, Any], bool]:
    """Measure ``changes`` changes with ``clients`` tracking clients; returns the result
    row and the daemon's quorate state afterwards."""
    max_s = WORKER_READY_TIMEOUT_S + (warmup + changes) * (CALLBACK_TIMEOUT_S
                                                         + REQUEST_TIMEOUT_S) + 60.0
    pool = WorkerPool(run_dir, clients, procs, max_s)
    measured: list[Change] = []
    cpu0: int | None = None
    try:
        pool.start()
        for i in range(warmup + changes):
            if i == warmup:
                cpu0 = benchcommon.cpu_ticks(daemon_pid)
            target = not quorate
            t0 = time.monotonic()
            trigger.flip(target)
            t_reply = time.monotonic()
            got, extra = pool.collect(target, CALLBACK_TIMEOUT_S)
            quorate = target
            if i >= warmup:
                t_change = trigger.changed_at()
                if not t0 <= t_change <= min(got.values()):
                    raise BenchError(f"the daemon's change time {t_change:.6f} is not "
                                     f"between the request {t0:.6f} and the first callback")
                measured.append(Change(target,
                                       [(t - t_change) * 1000.0 for t in got.values()],
                                       [(t - t0) * 1000.0 for t in got.values()],
                                       (t_reply - t0) * 1000.0, (t_change - t0) * 1000.0,
                                       extra))
        cpu1 = benchcommon.cpu_ticks(daemon_pid)
    finally:
        pool.close()
    cpu_ms = None
    if cpu0 is not None and cpu1 is not None and measured:
        cpu_ms = (cpu1 - cpu0) / os.sysconf("SC_CLK_TCK") * 1000.0 / len(measured)
    lat = [x for c in measured for x in c.latencies_ms]
    from_request = [x for c in measured for x in c.request_ms]
    up = [x for c in measured if c.to_quorate for x in c.latencies_ms]
    down = [x for c in measured if not c.to_quorate for x in c.latencies_ms]
    all_stats = benchcommon.stats(lat)
    row: dict[str, Any] = {
        "clients": clients,
        "client_processes": len(pool.workers),
        "changes": len(measured),
        "latency_ms": all_stats,
        "latency_up_ms": benchcommon.stats(up),
        "latency_down_ms": benchcommon.stats(down),
        "first_callback_ms": benchcommon.stats([c.first_ms for c in measured]),
        "spread_ms": benchcommon.stats([c.spread_ms for c in measured]),
        "reply_ms": benchcommon.stats([c.reply_ms for c in measured]),
        "from_request_ms": benchcommon.stats(from_request),
        "request_to_change_ms": benchcommon.stats([c.daemon_ms for c in measured]),
        "extra_callbacks": sum(c.extra for c in measured),
        "daemon_cpu_ms_per_change": round(cpu_ms, 3) if cpu_ms is not None else None,
        "meets_median_target": bool(lat) and all_stats["median"] < TARGET_MEDIAN_MS,
        "meets_p99_target": bool(lat) and all_stats["p99"] < TARGET_P99_MS,
        "samples": [{"to_quorate": c.to_quorate, "reply_ms": round(c.reply_ms, 4),
                     "request_to_change_ms": round(c.daemon_ms, 4),
                     "latencies_ms": [round(x, 4) for x in sorted(c.latencies_ms)]}
                    for c in measured],
    }
    return row, quorate


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Start the daemon, measure every client count, stop everything."""
    lab = LabCluster(n_nodes=1, token_ms=args.token, quorum_options={"expected_votes": 2},
                     keep=args.keep)
    trigger: Trigger | None = None
    rows: list[dict[str, Any]] = []
    try:
        lab.setup()
        pid = lab.start(1)
        run_dir = lab.run_dir(1)
        trigger = Trigger(run_dir)
        trigger.open()
        quorate = trigger.quorate()
        if quorate:
            raise BenchError("the daemon is quorate at start (expected_votes 2, one vote)")
        for n in args.clients:
            row, quorate = measure(trigger, pid, run_dir, n, args.procs, args.changes,
                                   args.warmup, quorate)
            rows.append(row)
            if not lab.is_running(1):
                raise BenchError(f"the daemon exited; log tail:\n{lab.log_tail(1)}")
        if args.keep:
            print(f"kept {lab.directory}", file=sys.stderr)
    finally:
        if trigger is not None:
            trigger.close()
        lab.close()
    return rows


def parse_counts(text: str) -> list[int]:
    """``"1,10,100"`` -> ``[1, 10, 100]`` (each 1..250: the daemon serves 256 clients)."""
    return benchcommon.int_list(text, 1, 250, "client counts")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: exit 0 if it ran (targets missed are reported, not failures)."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=parse_counts, default=list(DEFAULT_CLIENTS),
                   help="tracking client counts, comma separated (default 1,10,100)")
    p.add_argument("--changes", type=int, default=None,
                   help=f"measured changes per client count (default {DEFAULT_CHANGES}; "
                        f"--quick: {QUICK_CHANGES})")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured changes first")
    p.add_argument("--procs", type=int, default=10,
                   help="at most this many client processes (default 10)")
    p.add_argument("--token", type=int, default=None, help="totem token ms (daemon default)")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_CHANGES} changes per count")
    p.add_argument("--keep", action="store_true", help="keep the daemon's directory and log")
    p.add_argument("--json", metavar="OUT", help=f"default bench/results/{NAME}.json")
    p.add_argument("--worker", metavar="RUN_DIR", help=argparse.SUPPRESS)
    p.add_argument("--worker-clients", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--worker-base", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--worker-max-s", type=float, default=600.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.worker_clients, args.worker_base,
                           args.worker_max_s)
    if args.changes is None:
        args.changes = QUICK_CHANGES if args.quick else DEFAULT_CHANGES
    if args.changes < 1 or args.warmup < 0 or args.procs < 1:
        p.error("--changes and --procs must be positive, --warmup not negative")
    benchcommon.install_sigterm()
    benchcommon.precompile_pyquorum()

    rows = run(args)
    print(benchcommon.table(
        ["clients", "procs", "changes", "median ms", "p99 ms", "max ms", "up median ms",
         "down median ms", "first median ms", "spread median ms", "spread p99 ms",
         "request to change median ms", "from request median / p99 ms",
         "extra cb", "daemon CPU ms/change", "targets (med<1, p99<5)"],
        [[r["clients"], r["client_processes"], r["changes"], r["latency_ms"].get("median"),
          r["latency_ms"].get("p99"), r["latency_ms"].get("max"),
          r["latency_up_ms"].get("median"), r["latency_down_ms"].get("median"),
          r["first_callback_ms"].get("median"), r["spread_ms"].get("median"),
          r["spread_ms"].get("p99"), r["request_to_change_ms"].get("median"),
          f"{r['from_request_ms'].get('median')} / {r['from_request_ms'].get('p99')}",
          r["extra_callbacks"], r["daemon_cpu_ms_per_change"],
          ("met" if r["meets_median_target"] and r["meets_p99_target"] else
           f"median {'ok' if r['meets_median_target'] else 'MISSED'}, "
           f"p99 {'ok' if r['meets_p99_target'] else 'MISSED'}")]
         for r in rows]))
    params = {
        "clients": args.clients, "changes": args.changes, "warmup": args.warmup,
        "max_client_processes": args.procs, "token_ms": args.token, "quick": args.quick,
        "cluster": "1 node on 127.0.0.1, aes256/sha256, quorum.expected_votes 2",
        "up": "votequorum_setexpected(1)", "down": "corosync_cfg_reload_config (expected 2)",
        "clock": "CLOCK_MONOTONIC: the daemon's runtime.pyquorum.quorate_changed_ns to "
                 "time.monotonic() in the callback; t0 before the request for from_request",
        "targets_ms": {"median": TARGET_MEDIAN_MS, "p99": TARGET_P99_MS},
    }
    path = benchcommon.write_json(NAME, params, rows, args.json)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
