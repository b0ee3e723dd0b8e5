"""Every bound of the IPC server, with the server in-process and a scripted backend.

The real ``IpcServer`` runs on a private event loop (``Harness.spin`` turns it); the
backend answers engine commands at once (``auto``) or never.  Each test drives one
limit to its edge: the request frame refused by its length header, requests in
flight, unread responses, unread events (disconnect), the hello and partial-frame
timeouts, the fairness of the run queue, the pool of connections from peers without
access, a failing socketpair, RLIMIT_NOFILE, and rate-limited refusal logs.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import shutil
import socket
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyquorum.config.model import UidGidConfig
from pyquorum.core.engine import Command, Replied
from pyquorum.core.tracking import QuorumNotification
from pyquorum.daemon import ipcproto, ipcserver
from pyquorum.daemon.ipcserver import IpcLimits, IpcServer
from pyquorum.errors import CsErr
from pyquorum.types import RingId
from pyquorum.wire import ipc
from pyquorum.wire.codec import Malformed, MalformedReason

OK = int(CsErr.CS_OK)
SPIN_S = 10.0


class Backend:
    """``IpcBackend``: records commands; answers getquorate at once when ``auto``."""

    def __init__(self) -> None:
        self.ready = True
        self.has_votequorum = True
        self.auto = True
        self.server: IpcServer | None = None
        self.commands: list[tuple[int, Command]] = []
        self.opened: list[int] = []
        self.closed: list[int] = []
        self.cmap: list[tuple[str, str]] = []

    def ipc_opened(self, conn: int) -> None:
        self.opened.append(conn)

    def ipc_command(self, conn: int, command: Command) -> None:
        self.commands.append((conn, command))
        if self.auto and self.server is not None:
            self.server.on_replied(Replied(conn, command, CsErr.CS_OK, 1))

    def ipc_closed(self, conn: int) -> None:
        self.closed.append(conn)

    def cmap_items(self, prefix: str) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.cmap if k.startswith(prefix)]

    def test_block(self, nodeids: tuple[int, ...]) -> None:
        raise AssertionError("not used")


class Harness:
    def __init__(self, run_dir: Path, limits: IpcLimits | None = None) -> None:
        self.run_dir = run_dir
        self.loop = asyncio.new_event_loop()
        self.backend = Backend()
        self.logs: list[str] = []
        self.server = IpcServer(run_dir, self.backend,
                                lambda lvl, sub, text: self.logs.append(text),
                                hooks=False, uidgid=UidGidConfig(), limits=limits)
        self.backend.server = self.server
        self.server.open(self.loop)

    def spin(self, until: Callable[[], bool], timeout: float = SPIN_S) -> None:
        """Run the loop until ``until()`` holds (bounded)."""
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, "timed out"
            self.loop.run_until_complete(asyncio.sleep(0.002))

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        self.spin(lambda: time.monotonic() >= end, seconds + 5)

    def client_state(self, conn: int) -> Any:
        return self.server._clients.get(conn)  # the bound is internal state

    def close(self) -> None:
        self.server.close()
        self.loop.close()


class Client:
    """A raw client socket: optional hello, then raw bytes or frames."""

    def __init__(self, h: Harness, service: int | None = ipc.SERVICE_QUORUM) -> None:
        self.h = h
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(h.server.path))
        self.sock.setblocking(False)
        self.reader = ipc.FrameReader()
        self.msgs: list[object] = []
        self.events: socket.socket | None = None
        self.conn_id = 0
        if service is not None:
            self.sock.sendall(ipc.encode_frame(ipc.Hello(service)))
            h.spin(self._got(1))
            hello = self.msgs.pop(0)
            assert isinstance(hello, ipc.HelloReply) and hello.error == OK, hello
            self.conn_id = hello.conn_id

    def _got(self, n: int) -> Callable[[], bool]:
        def check() -> bool:
            try:
                data, fds, _f, _a = socket.recv_fds(self.sock, 65536, 4)
            except BlockingIOError:
                return len(self.msgs) >= n
            for fd in fds:
                if self.events is None:
                    self.events = socket.socket(fileno=fd)
                else:
                    os.close(fd)
            self.msgs += self.reader.feed(data)
            return len(self.msgs) >= n
        return check

    def send(self, *msgs: object) -> None:
        self.sock.sendall(b"".join(ipc.encode_frame(m) for m in msgs))

    def wait(self, n: int) -> list[object]:
        self.h.spin(self._got(n))
        out, self.msgs = self.msgs[:n], self.msgs[n:]
        return out

    def closed_by_server(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return False
        except ConnectionResetError:
            return True
        if data:
            self.msgs += self.reader.feed(data)
            return False
        return True

    def close(self) -> None:
        self.sock.close()
        if self.events is not None:
            self.events.close()


@pytest.fixture
def make_harness() -> Iterator[Callable[..., Harness]]:
    made: list[tuple[Harness, Path]] = []

    def make(limits: IpcLimits | None = None) -> Harness:
        path = Path(tempfile.mkdtemp(prefix="pqh", dir="/tmp"))
        h = Harness(path, limits)
        made.append((h, path))
        return h

    yield make
    for h, path in made:
        h.close()
        shutil.rmtree(path, ignore_errors=True)


# ====================================================================== framing
def test_length_header_is_refused_before_the_body() -> None:
    f = ipcproto.RequestFramer()  # before the hello: MAX_HELLO_BYTES
    f.feed(struct.pack(">I", ipcproto.MAX_HELLO_BYTES + 1))
    assert f.ready
    item = f.next_item()
    assert isinstance(item, Malformed) and item.reason is MalformedReason.TOO_LARGE
    assert f.broken and f.pending == 0
    f.feed(b"x" * 1000)  # nothing more is held once broken
    assert f.pending == 0
    f = ipcproto.RequestFramer(ipcproto.MAX_REQUEST_BYTES)
    f.feed(struct.pack(">I", 0x7FFF_FFFF))  # 2 GiB announced: refused on the header alone
    assert isinstance(f.next_item(), Malformed)
    f = ipcproto.RequestFramer(ipcproto.MAX_REQUEST_BYTES)
    f.feed(struct.pack(">I", ipcproto.MAX_REQUEST_BYTES) + b"\x01")
    assert not f.ready and f.next_item() is None  # the largest allowed body is awaited


def test_absurd_length_closes_the_connection_at_once(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness()
    good = Client(h)
    bad = Client(h)
    bad.sock.sendall(struct.pack(">I", 0x4000_0000))  # 1 GiB announced, no body
    h.spin(bad.closed_by_server)
    assert h.server.stats["ipc_malformed"] == 1
    good.send(ipc.QuorumGetQuorateReq())
    assert good.wait(1) == [ipc.QuorumGetQuorateRes(OK, 1)]
    good.close()
    bad.close()


# ====================================================================== flow control
def test_requests_in_flight_are_bounded(make_harness: Callable[..., Harness]) -> None:
    h = make_harness()
    h.backend.auto = False  # the engine answers nothing for now
    c = Client(h)
    c.send(*[ipc.QuorumGetQuorateReq()] * 100)
    h.spin(lambda: len(h.backend.commands) == ipcserver.MAX_INFLIGHT)
    h.spin_for(0.1)
    assert len(h.backend.commands) == ipcserver.MAX_INFLIGHT  # reading paused
    state = h.client_state(c.conn_id)
    assert not state.reading and len(state.slots) == ipcserver.MAX_INFLIGHT
    for _ in range(100):  # answer as they come: all 100, in order, none lost
        if len(c.msgs) >= 100:
            break
        pending = [cmd for cmd in h.backend.commands]
        h.backend.commands.clear()
        for conn, cmd in pending:
            h.server.on_replied(Replied(conn, cmd, CsErr.CS_OK, 1))
        h.spin(lambda: bool(h.backend.commands) or len(c.msgs) >= 100 or c._got(100)())
    assert c.wait(100) == [ipc.QuorumGetQuorateRes(OK, 1)] * 100
    c.close()


def test_unread_responses_are_bounded(make_harness: Callable[..., Harness]) -> None:
    h = make_harness()
    h.backend.cmap = [(f"key.{i:05d}", "v" * 40) for i in range(200)]  # ~11 KiB answers
    c = Client(h, ipc.SERVICE_CMAP)
    answer = len(ipc.encode_frame(ipc.CmapGetPrefixRes(OK, tuple(
        ipc.KeyValue(k, v) for k, v in h.backend.cmap))))
    sent = 2 * ipcserver.MAX_OUTPUT_BYTES // answer + 2 * ipcserver.MAX_INFLIGHT
    c.send(*[ipc.CmapGetPrefixReq("")] * sent)  # a few KiB: all in the socket buffer

    def paused() -> bool:
        state = h.client_state(c.conn_id)
        return not state.reading and len(state.out) >= ipcserver.MAX_OUTPUT_BYTES

    h.spin(paused)
    h.spin_for(0.1)  # and it stays paused
    state = h.client_state(c.conn_id)
    assert not state.reading
    bound = ipcserver.MAX_OUTPUT_BYTES + ipcserver.MAX_INFLIGHT * answer
    assert ipcserver.MAX_OUTPUT_BYTES <= len(state.out) <= bound
    assert state.framer.pending <= ipcserver.RECV_BYTES + ipcproto.MAX_REQUEST_BYTES + 4
    # the client reads again: every answer arrives, in order
    c.sock.setblocking(True)
    c.sock.settimeout(SPIN_S)
    got = 0
    while got < sent:
        h.loop.run_until_complete(asyncio.sleep(0))
        try:
            data = c.sock.recv(1 << 20)
        except TimeoutError:
            raise AssertionError(f"only {got} of {sent} answers") from None
        for msg in c.reader.feed(data):
            assert isinstance(msg, ipc.CmapGetPrefixRes) and len(msg.items) == 200
            got += 1
    c.close()


def test_unread_events_disconnect_only_that_client(
        make_harness: Callable[..., Harness]) -> None:
    """Corosync's policy: a client whose event queue overflows is disconnected."""
    h = make_harness()
    lazy, other = Client(h), Client(h)
    note = QuorumNotification(1, True, RingId(1, 8), tuple(range(1, 33)))
    frame = len(ipc.encode_frame(ipcproto.event_for(note)))
    pushed = 0
    for _ in range(10 * ipcserver.MAX_EVENT_BACKLOG // frame):
        state = h.client_state(lazy.conn_id)
        if state is None or state.dead:
            break
        h.server.on_notified(lazy.conn_id, note)
        pushed += 1
        assert len(state.ev_out) <= ipcserver.MAX_EVENT_BACKLOG + frame
        if pushed % 1000 == 0:
            h.loop.run_until_complete(asyncio.sleep(0))  # let the kernel take its share
    else:
        raise AssertionError("never disconnected")
    h.spin(lazy.closed_by_server)
    assert h.server.stats["ipc_evicted_backlog"] == 1
    assert any("does not read its events" in line for line in h.logs)
    assert pushed * frame > ipcserver.MAX_EVENT_BACKLOG
    assert h.backend.closed == [lazy.conn_id]
    h.server.on_notified(other.conn_id, note)  # the other client is served as before
    assert other.events is not None
    other.events.settimeout(SPIN_S)
    h.spin(lambda: bool(other.events and _readable(other.events)))
    assert ipc.FrameReader().feed(other.events.recv(65536)) == [ipcproto.event_for(note)]
    lazy.close()
    other.close()


def _readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


# ====================================================================== fairness
def test_a_flooding_client_does_not_starve_another(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness()
    flood, polite = Client(h), Client(h)
    flood.sock.sendall(ipc.encode_frame(ipc.QuorumGetQuorateReq()) * 7000)  # ~63 KiB
    polite.send(ipc.QuorumGetQuorateReq())
    assert polite.wait(1) == [ipc.QuorumGetQuorateRes(OK, 1)]
    conns = [conn for conn, _ in h.backend.commands]
    first = conns.index(polite.conn_id)
    # before the fix the whole 64 KiB read (7000 requests) was handled first
    assert first <= 2 * ipcserver.FRAMES_PER_TURN, first
    h.spin(lambda: len(h.backend.commands) == 7001)
    flood.close()
    polite.close()


def test_one_loop_iteration_handles_a_bounded_number_of_frames(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness()
    clients = [Client(h) for _ in range(8)]
    for c in clients:
        c.sock.sendall(ipc.encode_frame(ipc.QuorumGetQuorateReq()) * 500)
    h.spin(lambda: len(h.server._runq) == 8)  # all read once, queued
    before = len(h.backend.commands)
    h.server._run_queue()  # one iteration's worth
    assert len(h.backend.commands) - before == ipcserver.FRAMES_PER_ITERATION
    h.spin(lambda: len(h.backend.commands) == 4000)
    for c in clients:
        c.close()


# ====================================================================== timeouts
def test_no_hello_is_closed_after_the_hello_timeout(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness(IpcLimits(hello_timeout_s=0.3))
    silent = Client(h, service=None)
    start = time.monotonic()
    h.spin(silent.closed_by_server)
    assert time.monotonic() - start >= 0.25
    assert h.server.stats["ipc_hello_timeouts"] == 1
    assert h.server.client_count == 0
    silent.close()


def test_a_stalled_partial_frame_is_closed(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(IpcLimits(frame_timeout_s=0.3))
    c = Client(h)
    c.sock.sendall(struct.pack(">I", 100) + b"\x01\x0a")  # 2 of 100 bytes, then nothing
    start = time.monotonic()
    h.spin(c.closed_by_server)
    assert time.monotonic() - start >= 0.25
    assert h.server.stats["ipc_frame_timeouts"] == 1
    assert h.backend.closed == [c.conn_id]
    c.close()


def test_frames_that_keep_completing_are_never_timed_out(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness(IpcLimits(frame_timeout_s=0.3))
    c = Client(h)
    frame = ipc.encode_frame(ipc.QuorumGetQuorateReq())
    stream = frame * 40
    cut = len(frame) // 2
    # every send ends inside a frame; each completes the previous one: always progress
    end = time.monotonic() + 1.2
    sent = 0
    pos = 0
    while time.monotonic() < end:
        step = stream[pos:pos + len(frame)] if pos else stream[:cut]
        c.sock.sendall(step)
        pos = (pos + len(step)) % len(stream)
        sent += len(step)
        h.spin_for(0.1)
        assert not c.closed_by_server()
    assert h.server.stats["ipc_frame_timeouts"] == 0
    c.close()


# ====================================================================== admission
def test_peers_without_access_cannot_fill_the_server(
        make_harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch) -> None:
    h = make_harness()
    privileged = {"now": False}
    monkeypatch.setattr(ipcproto, "allowed", lambda cred, uidgid: privileged["now"])
    pool = ipcserver.MAX_UNPRIVILEGED_PENDING
    pending = [Client(h, service=None) for _ in range(pool)]
    h.spin(lambda: h.server.client_count == pool)
    extra = Client(h, service=None)
    h.spin(extra.closed_by_server)  # closed at accept
    assert h.server.stats["ipc_refused_limit"] == 1
    privileged["now"] = True  # a peer with access still gets in
    root = Client(h)
    root.send(ipc.QuorumGetQuorateReq())
    assert root.wait(1) == [ipc.QuorumGetQuorateRes(OK, 1)]
    privileged["now"] = False
    pending[0].send(ipc.Hello(ipc.SERVICE_QUORUM))  # refused (ACCESS): a place frees up
    assert pending[0].wait(1) == [ipc.HelloReply(int(CsErr.CS_ERR_ACCESS), 0)]
    h.spin(lambda: h.server.client_count == pool)
    again = Client(h, service=None)
    h.spin(lambda: h.server.client_count == pool + 1)
    assert not again.closed_by_server()
    for c in [*pending, extra, root, again]:
        c.close()


def test_max_clients_refuses_at_accept_and_logs_once_per_interval(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness(IpcLimits(max_clients=3))
    held = [Client(h) for _ in range(3)]
    refused = []
    for _ in range(50):
        c = Client(h, service=None)
        refused.append(c)
        h.spin(c.closed_by_server)
    assert h.server.stats["ipc_refused_limit"] == 50
    lines = [line for line in h.logs if "clients already connected" in line]
    assert len(lines) == 1, lines  # a connection loop cannot flood the log
    for c in held + refused:
        c.close()


def test_socketpair_failure_refuses_with_no_resources(
        make_harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch) -> None:
    h = make_harness()
    real = socket.socketpair
    calls = {"n": 0}

    def failing(*args: Any, **kwargs: Any) -> tuple[socket.socket, socket.socket]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.EMFILE, "Too many open files")
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "socketpair", failing)
    refused = Client(h, service=None)
    refused.send(ipc.Hello(ipc.SERVICE_QUORUM))
    assert refused.wait(1) == [ipc.HelloReply(int(CsErr.CS_ERR_NO_RESOURCES), 0)]
    h.spin(refused.closed_by_server)
    assert h.server.stats["ipc_refused_resources"] == 1
    ok = Client(h)  # the server goes on (before: an exception that stopped the daemon)
    ok.send(ipc.QuorumGetQuorateReq())
    assert ok.wait(1) == [ipc.QuorumGetQuorateRes(OK, 1)]
    refused.close()
    ok.close()


# ====================================================================== descriptors
def test_client_budget_follows_rlimit_nofile(monkeypatch: pytest.MonkeyPatch) -> None:
    res = ipcserver.resource
    state: dict[str, Any] = {"limits": (300, 300), "set": []}

    def getrlimit(which: int) -> tuple[int, int]:
        assert which == res.RLIMIT_NOFILE
        return state["limits"]  # type: ignore[no-any-return]

    def setrlimit(which: int, limits: tuple[int, int]) -> None:
        if limits[0] > state["limits"][1]:
            raise ValueError("not allowed")
        state["set"].append(limits)
        state["limits"] = limits

    monkeypatch.setattr(res, "getrlimit", getrlimit)
    monkeypatch.setattr(res, "setrlimit", setrlimit)
    logs: list[str] = []

    def log(level: str, subsys: str, text: str) -> None:
        logs.append(text)

    need = 256 * ipcserver.FDS_PER_CLIENT + ipcserver.FD_RESERVE
    # hard limit too low: the number of clients is lowered, and that is logged
    assert ipcserver.fd_client_budget(256, log) == (300 - ipcserver.FD_RESERVE) // 2
    assert "allows only 118 IPC clients" in logs[-1]
    # soft limit low, hard limit high: the soft limit is raised to what is needed
    state.update(limits=(256, 100_000), set=[])
    assert ipcserver.fd_client_budget(256, log) == 256
    assert state["set"] == [(need, 100_000)]
    # enough already (or unlimited): nothing changes
    state.update(limits=(20_000, 20_000), set=[])
    assert ipcserver.fd_client_budget(256, log) == 256 and state["set"] == []
    state.update(limits=(res.RLIM_INFINITY, res.RLIM_INFINITY))
    assert ipcserver.fd_client_budget(256, log) == 256


def test_limits_from_the_environment_only_with_test_hooks() -> None:
    env = {ipcserver.LIMITS_ENV: "hello_timeout_s=0.5, max_event_backlog=65536"}
    assert IpcLimits.for_server(False, env) == IpcLimits()
    assert IpcLimits.for_server(True, env) == IpcLimits(hello_timeout_s=0.5,
                                                        max_event_backlog=65536)
    for bad in ("nope=1", "max_clients", "max_clients=0", "hello_timeout_s=x"):
        with pytest.raises(ValueError):
            IpcLimits.parse(bad)


def test_gauges_count_open_connections(make_harness: Callable[..., Harness]) -> None:
    h = make_harness()
    q, v, pending = Client(h), Client(h, ipc.SERVICE_VOTEQUORUM), Client(h, service=None)
    h.spin(lambda: h.server.client_count == 3)
    stats = h.server.stats
    assert (stats["ipc_open_quorum"], stats["ipc_open_votequorum"],
            stats["ipc_open_awaiting_hello"]) == (1, 1, 1)
    for c in (q, v, pending):
        c.close()
    h.spin(lambda: h.server.client_count == 0)
    stats = h.server.stats
    assert (stats["ipc_open_quorum"], stats["ipc_open_votequorum"],
            stats["ipc_open_awaiting_hello"]) == (0, 0, 0)
    assert sorted(h.backend.closed) == sorted(h.backend.opened)
