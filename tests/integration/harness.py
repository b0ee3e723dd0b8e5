"""Real ``pyquorumd`` processes on loopback, and a raw IPC client, for integration tests.

``LocalCluster`` writes one configuration per node (``pyquorum.config.generate``: every
node on 127.0.0.1 with its own UDP port, state and run directories), starts daemons
with ``--ready-fd`` and waits for ``READY`` on the pipe (bounded), and signals only the
processes it started, by PID.  ``RawIpcClient`` speaks the IPC of
``pyquorum.wire.ipc`` directly (hello, event fd by SCM_RIGHTS, requests, events with
a select timeout) so that these tests do not depend on ``pyquorum.client``.

Every wait is bounded; nothing sleeps to synchronise.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pyquorum.config.generate import LocalNode, render_local_config
from pyquorum.errors import CsErr
from pyquorum.wire import ipc
from pyquorum.wire.codec import Malformed

DEFAULT_TIMEOUT_S = 20.0


def free_udp_ports(n: int) -> list[int]:
    """``n`` distinct UDP ports of 127.0.0.1 that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               poll: Callable[[float], None] | None = None) -> None:
    """Re-check ``predicate`` until it holds; ``poll(left)`` blocks between checks
    (default: a short select on nothing, i.e. a bounded pause between polls)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")
        if poll is not None:
            poll(left)
        else:
            select.select([], [], [], min(0.05, left))


class DaemonFailed(RuntimeError):
    """A daemon exited (or did not get ready) when it should be running."""


# ====================================================================== raw IPC client
class RawIpcClient:
    """One IPC connection: ``Hello(service)``, then requests and events."""

    def __init__(self, run_dir: Path | str, service: int, *,
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(Path(run_dir) / ipc.SOCKET_NAME))
        self.events_sock: socket.socket | None = None
        self._responses = ipc.FrameReader()
        self._events = ipc.FrameReader()
        self._queued: list[object] = []
        self._queued_events: list[object] = []
        self.sock.sendall(ipc.encode_frame(ipc.Hello(service)))
        reply, fds = self._read_hello()
        self.hello_error = CsErr(reply.error)
        self.conn_id = reply.conn_id
        if fds:
            self.events_sock = socket.socket(fileno=fds[0])
            for extra in fds[1:]:
                os.close(extra)

    @property
    def ok(self) -> bool:
        """The daemon admitted the connection."""
        return self.hello_error == CsErr.CS_OK

    def _read_hello(self) -> tuple[ipc.HelloReply, list[int]]:
        fds: list[int] = []
        while True:
            data, got, _, _ = socket.recv_fds(self.sock, 4096, 4)
            fds += got
            if not data:
                raise ConnectionError("the daemon closed the connection before HelloReply")
            msgs = self._responses.feed(data)
            if msgs:
                first, rest = msgs[0], msgs[1:]
                self._queued += rest
                if not isinstance(first, ipc.HelloReply):
                    raise AssertionError(f"expected HelloReply, got {first!r}")
                return first, fds

    # ------------------------------------------------------------ requests
    def send(self, msg: object) -> None:
        """Send one request frame."""
        self.sock.sendall(ipc.encode_frame(msg))

    def send_raw(self, data: bytes) -> None:
        """Send arbitrary bytes (malformed-frame tests)."""
        self.sock.sendall(data)

    def recv(self, timeout: float | None = None) -> object:
        """The next response frame (raises TimeoutError, ConnectionError on EOF)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._queued:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no response from the daemon")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError("no response from the daemon") from None
            if not data:
                raise ConnectionError("the daemon closed the connection")
            self._queued += self._responses.feed(data)
        return self._queued.pop(0)

    def request(self, msg: object, timeout: float | None = None) -> Any:
        """Send ``msg`` and return its response."""
        self.send(msg)
        return self.recv(timeout)

    def closed_by_daemon(self, timeout: float) -> bool:
        """True once the daemon has closed the request socket (EOF within ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return False
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return True
            if not data:
                return True

    # ------------------------------------------------------------ events
    def next_event(self, timeout: float) -> object | None:
        """The next event within ``timeout`` seconds, or None."""
        assert self.events_sock is not None, "no event channel (connection refused?)"
        deadline = time.monotonic() + timeout
        while not self._queued_events:  # timeout 0 still polls once
            left = max(0.0, deadline - time.monotonic())
            r, _, _ = select.select([self.events_sock], [], [], left)
            if not r:
                return None
            data = self.events_sock.recv(65536)
            if not data:
                raise ConnectionError("the daemon closed the event channel")
            for msg in self._events.feed(data):
                if isinstance(msg, Malformed):
                    raise AssertionError(f"malformed event from the daemon: {msg}")
                self._queued_events.append(msg)
        return self._queued_events.pop(0)

    def collect_events(self, until: Callable[[list[object]], bool],
                       timeout: float = DEFAULT_TIMEOUT_S) -> list[object]:
        """Read events until ``until(events)`` holds; TimeoutError with the events if not."""
        events: list[object] = []
        deadline = time.monotonic() + timeout
        while not until(events):
            ev = self.next_event(max(0.0, deadline - time.monotonic()))
            if ev is None:
                raise TimeoutError(f"timed out after {timeout:.1f} s; events: {events}")
            events.append(ev)
        return events

    def drain_events(self, quiet: float = 0.0) -> list[object]:
        """Every event already queued (waiting at most ``quiet`` s for each next one)."""
        out = []
        while (ev := self.next_event(quiet)) is not None:
            out.append(ev)
        return out

    def close(self) -> None:
        """Close both sockets."""
        if self.events_sock is not None:
            self.events_sock.close()
            self.events_sock = None
        self.sock.close()

    def __enter__(self) -> RawIpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def v1_tracker(run_dir: Path | str, flags: int = 0x03) -> RawIpcClient:
    """A quorum connection with model V1 that tracks (default CURRENT|CHANGES)."""
    c = RawIpcClient(run_dir, ipc.SERVICE_QUORUM)
    assert c.ok, f"quorum connection refused: {c.hello_error!r}"
    res = c.request(ipc.QuorumModelGetTypeReq(1))
    assert isinstance(res, ipc.QuorumGetTypeRes) and res.error == CsErr.CS_OK, res
    res = c.request(ipc.QuorumTrackStartReq(flags))
    assert isinstance(res, ipc.QuorumStatusRes) and res.error == CsErr.CS_OK, res
    return c


def cmap_get(run_dir: Path | str, prefix: str = "") -> dict[str, str]:
    """The daemon's cmap keys under ``prefix``."""
    with RawIpcClient(run_dir, ipc.SERVICE_CMAP) as c:
        assert c.ok, f"cmap connection refused: {c.hello_error!r}"
        res = c.request(ipc.CmapGetPrefixReq(prefix))
        assert isinstance(res, ipc.CmapGetPrefixRes) and res.error == CsErr.CS_OK, res
        return {kv.key: kv.value for kv in res.items}


def view_reached(members: Sequence[int], *, quorate: int | None = None,
                 joined: Sequence[int] | None = None, left: Sequence[int] | None = None
                 ) -> Callable[[list[object]], bool]:
    """Predicate: a nodelist with ``members`` (and joined/left if given) was followed by
    a quorum event of the same ring with the same members (and ``quorate`` if given)."""
    want = tuple(members)

    def pred(events: list[object]) -> bool:
        return find_view(events, want, quorate=quorate, joined=joined, left=left) is not None

    return pred


def find_view(events: list[object], members: tuple[int, ...], *, quorate: int | None = None,
              joined: Sequence[int] | None = None, left: Sequence[int] | None = None
              ) -> tuple[ipc.NodelistV1Event, ipc.QuorumV1Event] | None:
    """The first (nodelist, quorum) pair matching, with the quorum right after the nodelist
    of the same ring (another nodelist may only come between after an aborted sync)."""
    for i, ev in enumerate(events):
        if not (isinstance(ev, ipc.NodelistV1Event) and ev.members == members):
            continue
        if joined is not None and ev.joined != tuple(joined):
            continue
        if left is not None and ev.left != tuple(left):
            continue
        for later in events[i + 1:]:
            if isinstance(later, ipc.QuorumV1Event):
                if (later.ring == ev.ring and later.members == members
                        and (quorate is None or later.quorate == quorate)):
                    return ev, later
                break
    return None


def connect_as(uid: int, gid: int, run_dir: Path | str, service: int = ipc.SERVICE_QUORUM,
               timeout: float = DEFAULT_TIMEOUT_S) -> tuple[int, int | None]:
    """Connect from a forked child running as ``uid``/``gid``: (HelloReply error, and the
    getquorate answer's error when admitted to the quorum service, else None)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        result = b"\xfe\xfe"
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            with RawIpcClient(run_dir, service, timeout=timeout) as c:
                answer = 0
                if c.ok and service == ipc.SERVICE_QUORUM:
                    res = c.request(ipc.QuorumGetQuorateReq())
                    answer = res.error if isinstance(res, ipc.QuorumGetQuorateRes) else 0xfd
                result = bytes([int(c.hello_error), answer])
        except BaseException:  # anything: report 0xff and leave the child
            result = b"\xff\xff"
        finally:
            with contextlib.suppress(OSError):
                os.write(w, result)
            os._exit(0)
    os.close(w)
    try:
        deadline = time.monotonic() + timeout + 5
        data = b""
        while len(data) < 2:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the unprivileged child did not report")
            ready, _, _ = select.select([r], [], [], left)
            if ready:
                chunk = os.read(r, 2)
                if not chunk:
                    break
                data += chunk
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    assert len(data) == 2 and data[0] not in (0xfe, 0xff), f"child failed: {data!r}"
    return data[0], (data[1] or None)


# ====================================================================== the cluster
class LocalCluster:
    """``n`` pyquorumd nodes on 127.0.0.1 under ``base_dir`` (which must be mode 0755)."""

    def __init__(self, base_dir: Path, n: int, *,
                 quorum: Mapping[str, str | int] | None = None, crypto: bool = True,
                 token_ms: int | None = 1000, hooks: bool = True) -> None:
        self.base = Path(base_dir)
        self.n = n
        self.quorum = dict(quorum or {})
        self.crypto = crypto
        self.token_ms = token_ms
        self.hooks = hooks
        self.ports = dict(zip(range(1, n + 1), free_udp_ports(n), strict=True))
        self.keyfile = self.base / "authkey"
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._extra: dict[int, str] = {}
        self._created: list[Path] = []
        if crypto:
            self.keyfile.write_bytes(os.urandom(128))
            self.keyfile.chmod(0o400)
            self._created.append(self.keyfile)
        for nodeid in self.ports:
            d = self.node_dir(nodeid)
            d.mkdir(mode=0o755, exist_ok=True)
            d.chmod(0o755)
            self._created.append(d)
            self.write_config(nodeid)

    # ------------------------------------------------------------ paths
    def node_dir(self, nodeid: int) -> Path:
        """The directory of one node's files."""
        return self.base / f"node{nodeid}"

    def config_path(self, nodeid: int) -> Path:
        """The node's configuration file."""
        return self.node_dir(nodeid) / "corosync.conf"

    def run_dir(self, nodeid: int) -> Path:
        """The node's run directory (IPC socket, pid file)."""
        return self.node_dir(nodeid) / "run"

    def state_dir(self, nodeid: int) -> Path:
        """The node's state directory."""
        return self.node_dir(nodeid) / "state"

    def log_path(self, nodeid: int) -> Path:
        """The node's log file."""
        return self.node_dir(nodeid) / "pyquorumd.log"

    def log(self, nodeid: int) -> str:
        """The daemon's log file so far ("" before the first start)."""
        try:
            return self.log_path(nodeid).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr(self, nodeid: int) -> str:
        """What the daemon wrote on stdout/stderr (start-up errors)."""
        try:
            return (self.node_dir(nodeid) / "stderr.txt").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def port(self, nodeid: int) -> int:
        """The node's UDP port."""
        return self.ports[nodeid]

    def pid(self, nodeid: int) -> int:
        """The PID of the node's running daemon."""
        return self._procs[nodeid].pid

    # ------------------------------------------------------------ configuration
    def write_config(self, nodeid: int, extra: str | None = None,
                     members: Iterable[int] | None = None) -> Path:
        """(Re)write the node's configuration; ``extra`` text is appended (kept for later
        rewrites), e.g. ``"uidgid {\\n    uid: 65534\\n}\\n"``.  ``members``: the
        nodelist (default every node of the cluster)."""
        if extra is not None:
            self._extra[nodeid] = extra
        listed = set(self.ports if members is None else members)
        nodes = [LocalNode(i, p) for i, p in sorted(self.ports.items()) if i in listed]
        text = render_local_config(
            nodes,
            state_dir=str(self.state_dir(nodeid)),
            run_dir=str(self.run_dir(nodeid)),
            keyfile=str(self.keyfile) if self.crypto else None,
            token_ms=self.token_ms,
            quorum_options=self.quorum,
            logfile=str(self.log_path(nodeid)),
            to_stderr=False,
        )
        path = self.config_path(nodeid)
        path.write_text(text + self._extra.get(nodeid, ""))
        return path

    # ------------------------------------------------------------ processes
    def running(self, nodeid: int) -> bool:
        """The node's daemon was started and has not exited."""
        p = self._procs.get(nodeid)
        return p is not None and p.poll() is None

    def start(self, nodeid: int, wait_ready: bool = True,
              timeout: float = DEFAULT_TIMEOUT_S) -> subprocess.Popen[bytes]:
        """Start the node's daemon (foreground, ``--ready-fd``); wait for READY if asked."""
        if self.running(nodeid):
            raise RuntimeError(f"node {nodeid} is already running")
        env = dict(os.environ)
        if self.hooks:
            env["PYQUORUM_TEST_HOOKS"] = "1"
        else:
            env.pop("PYQUORUM_TEST_HOOKS", None)
        r, w = os.pipe()
        out = open(self.node_dir(nodeid) / "stderr.txt", "ab")  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pyquorum.daemon", "-c", str(self.config_path(nodeid)),
                 "-f", "--nodeid", str(nodeid), "--ready-fd", str(w)],
                pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
            )
        finally:
            os.close(w)
            out.close()
        self._procs[nodeid] = proc
        try:
            if wait_ready:
                self._wait_ready(nodeid, r, timeout)
        finally:
            os.close(r)
        return proc

    def _wait_ready(self, nodeid: int, fd: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        data = b""
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DaemonFailed(f"node {nodeid} not ready within {timeout} s\n"
                                   f"{self.stderr(nodeid)}{self.log(nodeid)[-3000:]}")
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 64)
            if not chunk:
                code = self._procs[nodeid].wait(timeout=max(left, 1.0))
                raise DaemonFailed(f"node {nodeid} exited ({code}) before READY\n"
                                   f"{self.stderr(nodeid)}{self.log(nodeid)[-3000:]}")
            data += chunk
        assert data == b"READY\n", data

    def wait_exit(self, nodeid: int, timeout: float = DEFAULT_TIMEOUT_S) -> int:
        """Wait for the node's daemon to exit on its own; its exit code."""
        return self._procs[nodeid].wait(timeout=timeout)

    def kill(self, nodeid: int) -> None:
        """SIGKILL the node's daemon and reap it."""
        proc = self._procs[nodeid]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=DEFAULT_TIMEOUT_S)

    def stop(self, nodeid: int, timeout: float = 10.0) -> int:
        """SIGTERM the node's daemon; its exit code."""
        proc = self._procs[nodeid]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        return proc.wait(timeout=timeout)

    def pause(self, nodeid: int) -> None:
        """SIGSTOP the node's daemon."""
        os.kill(self._procs[nodeid].pid, signal.SIGSTOP)

    def resume(self, nodeid: int) -> None:
        """SIGCONT the node's daemon."""
        os.kill(self._procs[nodeid].pid, signal.SIGCONT)

    def block(self, nodeid: int, peers: Iterable[int]) -> None:
        """Test hook: node ``nodeid`` drops all traffic with ``peers`` (empty: heal)."""
        with RawIpcClient(self.run_dir(nodeid), ipc.SERVICE_TESTHOOK) as c:
            assert c.ok, f"test hook refused: {c.hello_error!r}"
            res = c.request(ipc.TestBlockReq(tuple(sorted(peers))))
            assert isinstance(res, ipc.VqStatusRes) and res.error == CsErr.CS_OK, res

    def cmap(self, nodeid: int, prefix: str = "") -> dict[str, str]:
        """The node's cmap view under ``prefix``."""
        return cmap_get(self.run_dir(nodeid), prefix)

    def close(self) -> None:
        """SIGKILL every daemon still running (by PID) and remove the files."""
        for proc in self._procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=DEFAULT_TIMEOUT_S)
        self._procs.clear()
        if os.environ.get("PYQUORUM_KEEP_LOGS") == "1":
            return
        for path in self._created:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()
        self._created.clear()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
