"""``pyquorum-lab``: a local cluster of real pyquorumd processes to play with or script.

Theory of operation
-------------------
``LabCluster`` (``pyquorum.tools.labcluster``) owns the processes and files; this module
is the asyncio controller on top of it:

* two *follower* tasks per running node: one tracks that node's quorum service through
  ``AsyncQuorumClient(run_dir=...)`` (``CS_TRACK_CURRENT | CS_TRACK_CHANGES``), records
  the node's last view in a ``NodeReport`` and emits every quorum and nodelist event;
  the other tracks votequorum (``AsyncVotequorumClient``) and after each of its events
  (membership, quorate flips, expected-votes changes) reads the local ``getinfo`` for
  the votes column.  Followers end when their daemon goes away and are started again
  with it;
* commands (stdin, or ``--script FILE``) run one at a time; blocking process
  operations (start = wait for READY, stop = wait for exit) and client requests run in
  daemon threads, so the event loop keeps following every node meanwhile;
* ``wait-quorate`` waits on a "reports changed" event, bounded by its timeout;
* SIGINT and SIGTERM stop the controller, then every daemon the lab started is
  stopped by PID and the temporary directory is removed (also after errors).

Output is either a human log (event lines plus a table re-printed after changes) or,
with ``--json``, one JSON object per line for every event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TextIO, TypeVar

from pyquorum.errors import CsError
from pyquorum.tools.labcluster import LabCluster, LabError

T = TypeVar("T")

DEFAULT_WAIT_TIMEOUT_S: Final = 60.0
REQUEST_TIMEOUT_S: Final = 10.0
CONNECT_ATTEMPTS: Final = 50
CONNECT_RETRY_S: Final = 0.1
TABLE_DELAY_S: Final = 0.3

NODE_VERBS: Final = frozenset({"start", "stop", "kill", "pause", "resume"})
ALL_VERBS: Final = NODE_VERBS | {"setexpected", "status", "help", "quit", "wait-quorate",
                                 "sleep"}

COMMANDS_HELP: Final = """\
commands (typed on stdin, or one per line in --script FILE; '#' starts a comment):
  start N          start node N's daemon and wait until it is READY
  stop N           stop node N cleanly (SIGTERM: it leaves the cluster at once)
  kill N           SIGKILL node N (the others notice after the token timeout)
  pause N          SIGSTOP node N          resume N   SIGCONT node N
  setexpected V    set expected votes through node 1 (or the first running node)
  wait-quorate [N...] [TIMEOUT]
                   wait until nodes N (default: every running, unpaused node) report
                   quorate with a view holding all of them and no stopped, killed
                   or paused node.
                   TIMEOUT: 30s, 30.0 or timeout=30; a last bare number that is not
                   a node id is a timeout too (default 60 s). Fails on timeout.
  sleep MS         wait MS milliseconds
  status           print the table           help   this text
  quit             stop every daemon, remove the files and exit
"""


# ====================================================================== commands
class CommandError(ValueError):
    """A command line of the lab is malformed."""


@dataclass(frozen=True, slots=True)
class LabCommand:
    """One parsed lab command."""

    verb: str
    nodes: tuple[int, ...] = ()
    value: int | None = None
    timeout_s: float | None = None
    line: int = 0
    text: str = ""


def _node_arg(token: str, n_nodes: int) -> int:
    if not token.isdigit() or not 1 <= int(token) <= n_nodes:
        raise CommandError(f"bad node {token!r} (nodes are 1..{n_nodes})")
    return int(token)


def _timeout_arg(token: str) -> float | None:
    """A timeout token (``30s``, ``30.0``, ``timeout=30``), else None."""
    text = token.removeprefix("timeout=")
    explicit = text != token
    if text.endswith("s"):
        text, explicit = text[:-1], True
    if "." in text:
        explicit = True
    if not explicit:
        return None
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"bad timeout {token!r}") from None
    if not value > 0:
        raise CommandError(f"bad timeout {token!r}")
    return value


def parse_command(text: str, n_nodes: int, *, line: int = 0) -> LabCommand | None:
    """Parse one command line; None for a blank line or a comment."""
    body = text.split("#", 1)[0].strip()
    if not body:
        return None
    verb, *args = body.split()
    verb = verb.lower()
    if verb not in ALL_VERBS:
        raise CommandError(f"unknown command {verb!r} (try 'help')")
    if verb in NODE_VERBS:
        if len(args) != 1:
            raise CommandError(f"usage: {verb} N")
        return LabCommand(verb, nodes=(_node_arg(args[0], n_nodes),), line=line, text=body)
    if verb in ("setexpected", "sleep"):
        if len(args) != 1 or not args[0].isdigit():
            raise CommandError(f"usage: {verb} {'V' if verb == 'setexpected' else 'MS'}")
        value = int(args[0])
        if verb == "setexpected" and value < 1:
            raise CommandError("expected votes must be at least 1")
        return LabCommand(verb, value=value, line=line, text=body)
    if verb == "wait-quorate":
        nodes: list[int] = []
        timeout: float | None = None
        for i, token in enumerate(args):
            t = _timeout_arg(token)
            if t is not None:
                if timeout is not None:
                    raise CommandError("wait-quorate takes one timeout")
                timeout = t
            elif token.isdigit() and 1 <= int(token) <= n_nodes:
                nodes.append(int(token))
            elif token.isdigit() and i == len(args) - 1 and timeout is None:
                timeout = float(token)
            else:
                raise CommandError(f"bad wait-quorate argument {token!r}")
        return LabCommand(verb, nodes=tuple(nodes), timeout_s=timeout, line=line, text=body)
    if args:
        raise CommandError(f"{verb} takes no arguments")
    return LabCommand(verb, line=line, text=body)


def parse_script(text: str, n_nodes: int) -> list[LabCommand]:
    """Parse a whole script; CommandError names the first bad line."""
    out: list[LabCommand] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        try:
            cmd = parse_command(raw, n_nodes, line=lineno)
        except CommandError as e:
            raise CommandError(f"line {lineno}: {e}") from None
        if cmd is not None:
            out.append(cmd)
    return out


# ====================================================================== node reports
@dataclass(frozen=True, slots=True)
class VotesInfo:
    """The votequorum numbers shown in the table."""

    node_votes: int
    total_votes: int
    expected_votes: int
    quorum: int


@dataclass(slots=True)
class NodeReport:
    """What a node's daemon last told its follower."""

    connected: bool = False
    ring: str = ""
    members: tuple[int, ...] = ()
    quorate: bool | None = None
    votes: VotesInfo | None = None


def quorate_reached(
    targets: Sequence[int], reports: Mapping[int, NodeReport], down: Sequence[int]
) -> bool:
    """True when every target reports quorate, sees every target and no ``down`` node."""
    want = set(targets)
    for t in targets:
        r = reports.get(t)
        if r is None or not r.connected or not r.quorate:
            return False
        members = set(r.members)
        if not want <= members or members & set(down):
            return False
    return bool(targets)


@dataclass(frozen=True, slots=True)
class TableRow:
    """One node's line of the status table."""

    nodeid: int
    state: str
    pid: int | None
    report: NodeReport


def format_table(rows: Sequence[TableRow]) -> str:
    """The human status table (one line per node, fixed columns)."""
    lines = [f"{'node':>4}  {'state':<8} {'pid':>7}  {'ring':<10} {'quorate':<8} "
             f"{'votes':<14} members"]
    for row in rows:
        r = row.report
        live = r.connected
        quorate = "-" if not live or r.quorate is None else "yes" if r.quorate else "NO"
        votes = "-"
        if live and r.votes is not None:
            v = r.votes
            votes = f"{v.total_votes}/{v.expected_votes} q={v.quorum}"
        members = " ".join(str(m) for m in r.members) if live else "-"
        lines.append(f"{row.nodeid:>4}  {row.state:<8} {row.pid or '-':>7}  "
                     f"{(r.ring if live else '') or '-':<10} {quorate:<8} {votes:<14} {members}")
    return "\n".join(lines) + "\n"


# ====================================================================== output
def describe(event: str, fields: Mapping[str, Any]) -> str | None:
    """The human log line of one event (None: not shown in the human log)."""
    node = fields.get("node")
    if event == "lab_started":
        ports = ", ".join(f"{n}:{p}" for n, p in sorted(fields["ports"].items()))
        return (f"lab: {fields['nodes']} nodes in {fields['dir']} (UDP ports {ports}); "
                f"daemon logs in n<i>/daemon.log")
    if event in ("node_started", "node_stopped", "node_killed", "node_paused",
                 "node_resumed", "node_exited"):
        what = event.removeprefix("node_")
        extra = f" (pid {fields['pid']})" if "pid" in fields else ""
        if fields.get("exit_status") is not None:
            extra += f" (exit status {fields['exit_status']})"
        return f"node {node} {what}{extra}"
    if event == "quorum":
        q = "quorate" if fields["quorate"] else "NOT quorate"
        return f"node {node}: quorum   ring {fields['ring']} members {fields['members']} {q}"
    if event == "nodelist":
        return (f"node {node}: nodelist ring {fields['ring']} members {fields['members']} "
                f"joined {fields['joined']} left {fields['left']}")
    if event == "disconnected":
        return f"node {node}: client disconnected"
    if event == "command":
        return f"> {fields['command']}"
    if event == "result":
        ok = "ok" if fields["ok"] else f"FAILED: {fields.get('error', '')}"
        return f"  {fields['command']}: {ok}"
    if event == "error":
        return f"error: {fields['message']}"
    if event == "signal":
        return f"lab: caught {fields['signal']}, cleaning up"
    if event == "lab_stopped":
        return "lab: every daemon stopped"
    if event == "lab_finished":
        where = "kept" if fields.get("kept") else "removed"
        return f"lab: {where} {fields['dir']}; exit status {fields['exit_code']}"
    return None


class LabOutput:
    """Writes events: JSON lines (``--json``) or the human log."""

    def __init__(self, stream: TextIO, *, json_mode: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.json_mode = json_mode
        self.clock = clock
        self.t0 = clock()

    def emit(self, event: str, **fields: Any) -> None:
        """Write one event."""
        t = round(self.clock() - self.t0, 3)
        if self.json_mode:
            text = json.dumps({"t": t, "event": event, **fields}, sort_keys=False)
        elif event in ("status", "help"):
            text = str(fields["table" if event == "status" else "text"]).rstrip("\n")
        else:
            line = describe(event, fields)
            if line is None:
                return
            text = "\n".join(f"[{t:8.3f}] {part}" if i == 0 else part
                             for i, part in enumerate(line.split("\n")))
        self.write(text + "\n")

    def write(self, text: str) -> None:
        """Write raw text (ignores a closed pipe)."""
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.stream.write(text)
            self.stream.flush()


async def in_daemon_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking call in a daemon thread (it can never hold the process open)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def worker() -> None:
        value: Any
        try:
            result = fn(*args)
        except BaseException as e:
            ok, value = False, e
        else:
            ok, value = True, result
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, ok, value)

    threading.Thread(target=worker, name=f"lab-{getattr(fn, '__name__', 'call')}",
                     daemon=True).start()
    return await fut


def _setexpected(run_dir: str, expected: int) -> None:
    from pyquorum.client.facade import VotequorumClient

    client = VotequorumClient(run_dir=run_dir)
    try:
        client.setexpected(expected)
    finally:
        client.close()


def _ring_text(ring: Any) -> str:
    return f"{int(ring.rep):x}.{int(ring.seq):x}"


def _ring_json(ring: Any) -> dict[str, int]:
    return {"rep": int(ring.rep), "seq": int(ring.seq)}


# ====================================================================== controller
class Lab:
    """The asyncio controller: followers, commands, wait-quorate, shutdown."""

    def __init__(self, cluster: LabCluster, out: LabOutput) -> None:
        self.cluster = cluster
        self.out = out
        self.reports: dict[int, NodeReport] = {}
        self.followers: dict[int, asyncio.Task[None]] = {}
        self.side_tasks: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Event()
        self.closing = False
        self._table_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ reports
    def _report(self, nodeid: int) -> NodeReport:
        return self.reports.setdefault(nodeid, NodeReport())

    def _touch(self) -> None:
        self.changed.set()
        if self.out.json_mode or self.closing:
            return
        if self._table_timer is not None:
            self._table_timer.cancel()
        loop = asyncio.get_running_loop()
        self._table_timer = loop.call_later(TABLE_DELAY_S, self.print_table)

    def table(self) -> str:
        """The current status table."""
        self.cluster.refresh()
        rows = [TableRow(n, node.state, node.pid, self._report(n))
                for n, node in sorted(self.cluster.nodes.items())]
        return format_table(rows)

    def print_table(self) -> None:
        """Write the table (human mode)."""
        self._table_timer = None
        if not self.closing:
            self.out.write(self.table())

    def status_json(self) -> list[dict[str, Any]]:
        """The table as JSON values."""
        self.cluster.refresh()
        rows: list[dict[str, Any]] = []
        for n, node in sorted(self.cluster.nodes.items()):
            r = self._report(n)
            rows.append({
                "node": n, "state": node.state, "pid": node.pid, "connected": r.connected,
                "ring": r.ring or None, "members": list(r.members), "quorate": r.quorate,
                "votes": None if r.votes is None else {
                    "node_votes": r.votes.node_votes, "total_votes": r.votes.total_votes,
                    "expected_votes": r.votes.expected_votes, "quorum": r.votes.quorum},
            })
        return rows

    # ------------------------------------------------------------ followers
    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.side_tasks.add(task)
        task.add_done_callback(self.side_tasks.discard)

    def _set_votes(self, nodeid: int, votes: VotesInfo) -> None:
        report = self._report(nodeid)
        if report.votes == votes:
            return
        report.votes = votes
        self.out.emit("votes", node=nodeid, node_votes=votes.node_votes,
                      total_votes=votes.total_votes, expected_votes=votes.expected_votes,
                      quorum=votes.quorum)
        self._touch()

    async def _follow_votes(self, nodeid: int) -> None:
        """Track votequorum; after each of its events read the local getinfo."""
        from pyquorum.client.aio import AsyncVotequorumClient
        from pyquorum.client.events import Disconnected

        run_dir = self.cluster.run_dir(nodeid)
        connected = False
        for _attempt in range(CONNECT_ATTEMPTS):
            try:
                async with AsyncVotequorumClient(run_dir=run_dir) as client:
                    await client.track()
                    connected = True
                    async for event in client.events():
                        if isinstance(event, Disconnected):
                            break
                        info = await asyncio.wait_for(client.getinfo(0), REQUEST_TIMEOUT_S)
                        self._set_votes(nodeid, VotesInfo(
                            node_votes=info.node_votes, total_votes=info.total_votes,
                            expected_votes=info.node_expected_votes, quorum=info.quorum))
                return
            except (CsError, TimeoutError):
                if connected or not self.cluster.is_running(nodeid):
                    return
                await asyncio.sleep(CONNECT_RETRY_S)

    async def _follow(self, nodeid: int) -> None:
        from pyquorum.client.aio import AsyncQuorumClient
        from pyquorum.client.events import Disconnected, NodelistEvent, QuorumEvent

        run_dir = self.cluster.run_dir(nodeid)
        report = self._report(nodeid)
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                async with AsyncQuorumClient(run_dir=run_dir) as client:
                    await client.track()
                    report.connected = True
                    async for event in client.events():
                        if isinstance(event, QuorumEvent):
                            report.ring = _ring_text(event.ring)
                            report.members = tuple(event.members)
                            report.quorate = bool(event.quorate)
                            self.out.emit("quorum", node=nodeid, ring=report.ring,
                                          ring_id=_ring_json(event.ring),
                                          members=list(event.members),
                                          quorate=bool(event.quorate))
                            self._touch()
                        elif isinstance(event, NodelistEvent):
                            self.out.emit("nodelist", node=nodeid, ring=_ring_text(event.ring),
                                          ring_id=_ring_json(event.ring),
                                          members=list(event.members),
                                          joined=list(event.joined), left=list(event.left))
                        elif isinstance(event, Disconnected):
                            break
                break
            except CsError as e:
                if report.connected or not self.cluster.is_running(nodeid):
                    break
                if attempt == CONNECT_ATTEMPTS - 1:
                    self.out.emit("error", node=nodeid,
                                  message=f"node {nodeid}: cannot follow the daemon: {e}")
                    break
                await asyncio.sleep(CONNECT_RETRY_S)
        if self.followers.get(nodeid) is not asyncio.current_task():
            return
        self.reports[nodeid] = NodeReport()
        if not self.closing:
            self.out.emit("disconnected", node=nodeid)
            for node in self.cluster.refresh():
                self.out.emit("node_exited", node=node.nodeid, exit_status=node.returncode)
            self._touch()

    def _start_follower(self, nodeid: int) -> None:
        old = self.followers.pop(nodeid, None)
        if old is not None:
            old.cancel()
        self.reports[nodeid] = NodeReport()
        self.followers[nodeid] = asyncio.ensure_future(self._follow(nodeid))
        self._spawn(self._follow_votes(nodeid))

    # ------------------------------------------------------------ operations
    async def start_node(self, nodeid: int) -> None:
        """Start a daemon, wait READY, follow it."""
        pid = await in_daemon_thread(self.cluster.start, nodeid)
        self.out.emit("node_started", node=nodeid, pid=pid)
        self._start_follower(nodeid)
        self._touch()

    async def _end_node(self, nodeid: int, how: str) -> None:
        pid = self.cluster.node(nodeid).pid
        op = self.cluster.kill if how == "killed" else self.cluster.stop
        rc = await in_daemon_thread(op, nodeid)
        self.out.emit(f"node_{how}", node=nodeid, pid=pid, exit_status=rc)
        self._touch()

    async def setexpected(self, expected: int) -> int:
        """Set expected votes through node 1 or the first running, unpaused node."""
        self.cluster.refresh()
        candidates = [n for n, node in sorted(self.cluster.nodes.items())
                      if node.state == "running"]
        if not candidates:
            raise LabError("no running node to send setexpected through")
        via = candidates[0]
        await asyncio.wait_for(
            in_daemon_thread(_setexpected, self.cluster.run_dir(via), expected),
            REQUEST_TIMEOUT_S)
        return via

    async def wait_quorate(self, nodes: Sequence[int], timeout_s: float) -> None:
        """Wait until ``nodes`` (default: running, unpaused) are quorate together.

        Every target must report quorate with a view that holds all targets and no
        node that is stopped, killed or paused.
        """
        self.cluster.refresh()
        targets = list(nodes) or [n for n, node in sorted(self.cluster.nodes.items())
                                  if node.state == "running"]
        if not targets:
            raise LabError("no running node to wait for")
        deadline = time.monotonic() + timeout_s
        while True:
            self.cluster.refresh()
            not_running = [t for t in targets if self.cluster.node(t).state != "running"]
            if not_running:
                raise LabError(f"node(s) {not_running} not running")
            down = [n for n, node in self.cluster.nodes.items() if node.state != "running"]
            if quorate_reached(targets, self.reports, down):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                views = {t: (self._report(t).members, self._report(t).quorate) for t in targets}
                raise LabError(f"timeout after {timeout_s:g} s waiting for {targets} to be "
                               f"quorate (views: {views})")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    async def execute(self, cmd: LabCommand) -> bool:
        """Run one command; emits ``command`` and ``result``; returns success."""
        if cmd.verb not in ("help", "status"):
            self.out.emit("command", command=cmd.text, line=cmd.line or None)
        extra: dict[str, Any] = {}
        try:
            node = cmd.nodes[0] if cmd.nodes else 0
            if cmd.verb == "start":
                await self.start_node(node)
            elif cmd.verb == "stop":
                await self._end_node(node, "stopped")
            elif cmd.verb == "kill":
                await self._end_node(node, "killed")
            elif cmd.verb == "pause":
                self.cluster.pause(node)
                self.out.emit("node_paused", node=node)
                self._touch()
            elif cmd.verb == "resume":
                self.cluster.resume(node)
                self.out.emit("node_resumed", node=node)
                self._touch()
            elif cmd.verb == "setexpected":
                assert cmd.value is not None
                extra["via"] = await self.setexpected(cmd.value)
            elif cmd.verb == "wait-quorate":
                timeout = cmd.timeout_s if cmd.timeout_s is not None else DEFAULT_WAIT_TIMEOUT_S
                await self.wait_quorate(cmd.nodes, timeout)
            elif cmd.verb == "sleep":
                await asyncio.sleep((cmd.value or 0) / 1000)
            elif cmd.verb == "status":
                self.out.emit("status", nodes=self.status_json(), table=self.table())
                return True
            elif cmd.verb == "help":
                self.out.emit("help", text=COMMANDS_HELP)
                return True
        except (LabError, CsError, OSError, TimeoutError) as e:
            message = str(e) or type(e).__name__
            self.out.emit("result", command=cmd.text, line=cmd.line or None, ok=False,
                          error=message)
            return False
        self.out.emit("result", command=cmd.text, line=cmd.line or None, ok=True, **extra)
        return True

    async def start_all(self) -> None:
        """Start every node at once; LabError if one does not become ready."""
        results = await asyncio.gather(*(self.start_node(n) for n in sorted(self.cluster.nodes)),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise LabError("; ".join(str(e) for e in errors))

    async def run_script(self, commands: Sequence[LabCommand]) -> int:
        """Run a script: stops at the first failing command (exit 1) or ``quit``."""
        for cmd in commands:
            if cmd.verb == "quit":
                self.out.emit("command", command=cmd.text, line=cmd.line or None)
                break
            if not await self.execute(cmd):
                return 1
        return 0

    async def interactive(self, lines: asyncio.Queue[str | None]) -> int:
        """Read commands from ``lines`` until ``quit`` or end of input."""
        self.out.write("Type 'help' for the commands.\n" if not self.out.json_mode else "")
        n_nodes = len(self.cluster.nodes)
        while True:
            text = await lines.get()
            if text is None:
                return 0
            try:
                cmd = parse_command(text, n_nodes)
            except CommandError as e:
                self.out.emit("error", message=str(e))
                continue
            if cmd is None:
                continue
            if cmd.verb == "quit":
                return 0
            await self.execute(cmd)

    async def run(self, script: Sequence[LabCommand] | None,
                  lines: asyncio.Queue[str | None] | None) -> int:
        """Start the cluster, then run the script or the interactive loop."""
        ports = {n: node.port for n, node in sorted(self.cluster.nodes.items())}
        self.out.emit("lab_started", dir=self.cluster.directory, nodes=len(ports), ports=ports,
                      token_ms=self.cluster.token_ms)
        try:
            await self.start_all()
        except LabError as e:
            self.out.emit("error", message=str(e))
            return 1
        if script is not None:
            return await self.run_script(script)
        assert lines is not None
        return await self.interactive(lines)

    async def shutdown(self) -> None:
        """Stop every daemon (by PID, concurrently), then the followers."""
        self.closing = True
        if self._table_timer is not None:
            self._table_timer.cancel()

        async def stop(nodeid: int) -> None:
            pid = self.cluster.node(nodeid).pid
            try:
                rc = await in_daemon_thread(self.cluster.stop, nodeid)
            except LabError:
                return
            self.out.emit("node_stopped", node=nodeid, pid=pid, exit_status=rc)

        await asyncio.gather(*(stop(n) for n in self.cluster.running_nodes()),
                             return_exceptions=True)
        tasks = [*self.followers.values(), *self.side_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.followers.clear()
        self.out.emit("lab_stopped")


def _stdin_reader(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None],
                  stream: TextIO) -> None:
    def put(item: str | None) -> None:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, item)

    try:
        for line in stream:
            put(line)
    except (OSError, ValueError):
        pass
    put(None)


async def lab_main(cluster: LabCluster, out: LabOutput, script: Sequence[LabCommand] | None,
                   stdin: TextIO | None = None) -> int:
    """Run the lab until the script ends, ``quit``, or SIGINT/SIGTERM; then shut down."""
    loop = asyncio.get_running_loop()
    lab = Lab(cluster, out)
    stop: asyncio.Future[int] = loop.create_future()

    def on_signal(sig: int) -> None:
        if not stop.done():
            stop.set_result(sig)

    handled = (signal.SIGINT, signal.SIGTERM)
    for sig in handled:
        loop.add_signal_handler(sig, on_signal, sig)
    lines: asyncio.Queue[str | None] | None = None
    if script is None:
        lines = asyncio.Queue()
        threading.Thread(target=_stdin_reader, args=(loop, lines, stdin or sys.stdin),
                         name="lab-stdin", daemon=True).start()
    controller = asyncio.ensure_future(lab.run(script, lines))
    rc = 1
    try:
        done, _ = await asyncio.wait({controller, stop}, return_when=asyncio.FIRST_COMPLETED)
        if controller in done:
            rc = controller.result()
        else:
            signum = stop.result()
            out.emit("signal", signal=signal.Signals(signum).name)
            controller.cancel()
            await asyncio.gather(controller, return_exceptions=True)
            rc = 128 + signum
    except (LabError, CsError, OSError) as e:
        out.emit("error", message=str(e))
        rc = 1
    finally:
        await lab.shutdown()
        for sig in handled:
            loop.remove_signal_handler(sig)
    return rc


def _quorum_option(text: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    return key.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``pyquorum-lab``."""
    p = argparse.ArgumentParser(
        prog="pyquorum-lab",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run a local pyquorum cluster of real pyquorumd processes on 127.0.0.1\n"
            "(free UDP ports, a generated config and authkey, per-node state and run\n"
            "directories in one temporary directory), follow every node's quorum view\n"
            "through the client library, and drive it with commands: kill, restart,\n"
            "stop, pause and resume nodes, change expected votes, wait for quorum.\n"
            "Shows a table (members, ring id, votes, quorate) and a log of quorum events,\n"
            "or with --json one JSON object per line for every event. On quit, end of\n"
            "script, Ctrl-C or SIGTERM every daemon it started is stopped and the\n"
            "temporary directory removed (unless --keep).\n"
            "\n"
            "Clients can reach node N with: pyquorumtool --run-dir DIR/nN/run -s"
        ),
        epilog=COMMANDS_HELP + (
            "\nexit status: 0 when every script command succeeded (or on quit),\n"
            "1 when one failed (the script stops there), 128+signal on SIGINT/SIGTERM.\n"
        ),
    )
    p.add_argument("--nodes", type=int, default=3, metavar="N", help="cluster size (default 3)")
    p.add_argument("--script", metavar="FILE",
                   help="run the commands of FILE instead of reading stdin")
    p.add_argument("--json", action="store_true",
                   help="machine output: one JSON object per line per event")
    p.add_argument("--token", type=int, default=None, metavar="MS",
                   help="totem token timeout (default: Corosync's 3000 ms)")
    p.add_argument("--quorum", type=_quorum_option, action="append", default=[],
                   metavar="KEY=VALUE",
                   help="extra quorum{} option, e.g. two_node=1 or wait_for_all=1")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary directory (configs, logs) afterwards")
    p.add_argument("--ready-timeout", type=float, default=30.0, metavar="S",
                   help="how long to wait for a daemon's READY (default 30 s)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pyquorum-lab``; returns the exit status."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    if not 1 <= args.nodes <= 64:
        print("pyquorum-lab: --nodes must be 1..64", file=sys.stderr)
        return 1
    if args.token is not None and args.token <= 0:
        print("pyquorum-lab: --token must be positive", file=sys.stderr)
        return 1
    script: list[LabCommand] | None = None
    if args.script is not None:
        try:
            with open(args.script, encoding="utf-8") as f:
                script = parse_script(f.read(), args.nodes)
        except OSError as e:
            print(f"pyquorum-lab: cannot read {args.script}: {e.strerror}", file=sys.stderr)
            return 1
        except CommandError as e:
            print(f"pyquorum-lab: {args.script}: {e}", file=sys.stderr)
            return 1
    out = LabOutput(sys.stdout, json_mode=args.json)
    cluster = LabCluster(n_nodes=args.nodes, token_ms=args.token,
                         quorum_options=dict(args.quorum), keep=args.keep,
                         ready_timeout_s=args.ready_timeout)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)
                if main_thread}
    # Until the event loop installs its own handlers (and after it removed them),
    # SIGTERM unwinds like Ctrl-C so that the finally below still cleans up.
    if main_thread:
        signal.signal(signal.SIGTERM, _raise_terminated)
    rc = 1
    try:
        cluster.setup()
        rc = asyncio.run(lab_main(cluster, out, script))
    except KeyboardInterrupt:
        rc = 128 + signal.SIGINT
    except _Terminated:
        rc = 128 + signal.SIGTERM
    except (LabError, OSError) as e:
        out.emit("error", message=str(e))
        rc = 1
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # the clean-up is bounded: let it finish
        cluster.close()
        if cluster.directory:
            out.emit("lab_finished", dir=cluster.directory, kept=cluster.keep,
                     removed=not os.path.exists(cluster.directory), exit_code=rc)
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
    return rc


class _Terminated(Exception):
    """SIGTERM arrived outside the event loop."""


def _raise_terminated(signum: int, _frame: object) -> None:
    raise _Terminated(signum)


if __name__ == "__main__":
    sys.exit(main())
