"""The real pyquorum-witness server over real TCP on 127.0.0.1, with fake agents.

The server runs in a background thread with its own event loop; each fake agent is a
blocking socket speaking ``witness_proto`` (``ClientSession``).  Every wait is bounded
(``select`` with a deadline); nothing sleeps to synchronise.  Server state is read in
the server's own thread (``ServerThread.call``).
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pyquorum.tools.witness import WitnessServer, parse_hostport
from pyquorum.tools.witness_proto import (
    ClientSession,
    Error,
    ErrorCode,
    Heartbeat,
    HeartbeatReply,
    Hello,
    MembershipReport,
    Message,
    ProtocolError,
    Vote,
    VoteApplied,
    VoteInfo,
    Welcome,
)
from pyquorum.types import RingId

T = TypeVar("T")
KEY = os.urandom(64)
WAIT_S = 10.0


# ====================================================================== server thread
class ServerThread:
    """A ``WitnessServer`` on 127.0.0.1:<free port> in its own thread and loop."""

    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = WitnessServer(KEY, **kwargs)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        _, self.port = self.run(self.server.start("127.0.0.1", 0))

    def run(self, coro: Any, timeout: float = WAIT_S) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the server's thread and return its result."""
        async def wrapper() -> T:
            return fn()
        return self.run(wrapper())  # type: ignore[no-any-return]

    def stats(self) -> dict[str, int]:
        return self.call(lambda: dict(self.server.stats))

    def wait_stat(self, name: str, value: int, timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while self.stats().get(name, 0) < value:
            if time.monotonic() > deadline:
                raise TimeoutError(f"stat {name} < {value}: {self.stats()}")
            select.select([], [], [], 0.02)

    def close(self) -> None:
        try:
            self.run(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(WAIT_S)
            self.loop.close()


@pytest.fixture
def witness() -> Iterator[Callable[..., ServerThread]]:
    made: list[ServerThread] = []

    def make(**kwargs: Any) -> ServerThread:
        kwargs.setdefault("timeout_ms", 3000)
        kwargs.setdefault("release_grace_ms", 500)
        kwargs.setdefault("startup_quiet_ms", 0)
        s = ServerThread(**kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


# ====================================================================== fake agent
class FakeAgent:
    """One agent connection: handshake, reports, heartbeats, votes (blocking socket)."""

    def __init__(self, port: int, node_id: int, cluster: str = "c1", key: bytes = KEY,
                 handshake: bool = True) -> None:
        self.node_id = node_id
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
        self.session = ClientSession(key, cluster_name=cluster, node_id=node_id,
                                     nonce=os.urandom(16))
        self.inbox: list[Message] = []
        self.sent_raw = b""
        self.hb_seq = 0
        self.report_seq = 0
        self.closed = False
        if handshake:
            self.welcome = self.expect(Welcome)

    def _flush(self) -> None:
        out = self.session.take_output()
        if out:
            self.sent_raw += out
            self.sock.sendall(out)

    def _read(self, timeout: float) -> bool:
        """Read what arrives within ``timeout``; False on EOF."""
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return True
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.inbox += self.session.feed(data)
        self._flush()  # the hello, after the challenge
        return True

    def next(self, timeout: float = WAIT_S) -> Message | None:
        """The next message within ``timeout`` (None on timeout or EOF)."""
        deadline = time.monotonic() + timeout
        while not self.inbox:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                break
        return self.inbox.pop(0) if self.inbox else None

    def expect(self, kind: type[T], timeout: float = WAIT_S) -> T:
        """Skip other messages until one of ``kind`` arrives (answering nothing)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.next(max(0.0, deadline - time.monotonic()))
            if msg is None:
                raise TimeoutError(f"node {self.node_id}: no {kind.__name__} "
                                   f"(closed={self.closed})")
            if isinstance(msg, kind):
                return msg

    def vote(self, ring: RingId, vote: Vote, timeout: float = WAIT_S) -> VoteInfo:
        """Wait for a VoteInfo for ``ring`` with ``vote`` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.expect(VoteInfo, max(0.0, deadline - time.monotonic()))
            if info.ring == ring and info.vote == vote:
                return info

    def send(self, msg: MembershipReport | Heartbeat | VoteApplied | Error) -> None:
        self.session.send(msg)
        self._flush()

    def report(self, ring: RingId | None, members: tuple[int, ...]) -> None:
        self.report_seq += 1
        self.send(MembershipReport(self.report_seq, ring, members if ring else (), False))

    def heartbeat(self) -> None:
        self.hb_seq += 1
        self.send(Heartbeat(self.hb_seq))

    def apply(self, info: VoteInfo) -> None:
        self.send(VoteApplied(info.seq, info.ring, info.vote))

    def wait_closed(self, timeout: float = WAIT_S) -> list[Message]:
        """Read until the server closes the connection; the messages seen."""
        deadline = time.monotonic() + timeout
        seen = []
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"node {self.node_id}: the server did not close")
            try:
                self._read(left)
            except ProtocolError:
                break
            seen += self.inbox
            self.inbox.clear()
        return seen

    def close(self) -> None:
        self.sock.close()


def raw_connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    return s


def closed_by_server(s: socket.socket, timeout: float = WAIT_S) -> bool:
    """True once the server closed ``s`` (EOF or reset) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([s], [], [], left)
        if not r:
            return False
        try:
            if not s.recv(65536):
                return True
        except ConnectionResetError:
            return True


R12 = RingId(1, 8)


# ====================================================================== votes
def test_whole_cluster_gets_ack(witness: Callable[..., ServerThread]) -> None:
    w = witness()
    a, b = FakeAgent(w.port, 1), FakeAgent(w.port, 2)
    assert a.welcome == Welcome(750, 3000)
    a.report(R12, (1, 2))
    b.report(R12, (1, 2))
    a.vote(R12, Vote.ACK)
    b.vote(R12, Vote.ACK)
    a.heartbeat()
    assert a.expect(HeartbeatReply) == HeartbeatReply(1)


def test_three_vs_one(witness: Callable[..., ServerThread]) -> None:
    w = witness()
    agents = {n: FakeAgent(w.port, n) for n in (1, 2, 3, 4)}
    r1, r234 = RingId(1, 12), RingId(2, 12)
    agents[1].report(r1, (1,))
    agents[1].vote(r1, Vote.ACK)  # alone so far: the only partition
    for n in (2, 3, 4):
        agents[n].report(r234, (2, 3, 4))
    # {2,3,4} is bigger, but node 1 must apply its NACK before they get ACK
    nack = agents[1].vote(r1, Vote.NACK)
    agents[2].heartbeat()
    agents[2].expect(HeartbeatReply)
    assert w.call(lambda: w.server.engine.last_vote("c1", 2)) is None
    agents[1].apply(nack)
    for n in (2, 3, 4):
        agents[n].vote(r234, Vote.ACK)


def test_split_two_two_lowest_id_after_release(witness: Callable[..., ServerThread]) -> None:
    w = witness()
    ag = {n: FakeAgent(w.port, n) for n in (1, 2, 3, 4)}
    r_all, r12, r34 = RingId(1, 4), RingId(1, 8), RingId(3, 8)
    for a in ag.values():
        a.report(r_all, (1, 2, 3, 4))
    for a in ag.values():
        a.vote(r_all, Vote.ACK)
    for n in (3, 4):
        ag[n].report(r34, (3, 4))
    for n in (1, 2):
        ag[n].report(r12, (1, 2))
    nacks = {n: ag[n].vote(r34, Vote.NACK) for n in (3, 4)}
    # no ACK for {1,2} while 3 and 4 hold ACK(r_all) and have not applied the NACK
    assert w.call(lambda: w.server.engine.last_vote("c1", 1)) == VoteInfo(
        1, r_all, Vote.ACK)
    ag[3].apply(nacks[3])
    ag[3].heartbeat()
    ag[3].expect(HeartbeatReply)  # the server has processed the VoteApplied
    assert w.call(lambda: w.server.engine.last_vote("c1", 1)).ring == r_all  # type: ignore[union-attr]
    ag[4].apply(nacks[4])
    ag[1].vote(r12, Vote.ACK)
    ag[2].vote(r12, Vote.ACK)


def test_tie_keeps_previous_winner(witness: Callable[..., ServerThread]) -> None:
    w = witness()
    r34, r12 = RingId(3, 8), RingId(1, 8)
    a3, a4 = FakeAgent(w.port, 3), FakeAgent(w.port, 4)
    a3.report(r34, (3, 4))
    a4.report(r34, (3, 4))
    a3.vote(r34, Vote.ACK)
    a1, a2 = FakeAgent(w.port, 1), FakeAgent(w.port, 2)
    a1.report(r12, (1, 2))
    a2.report(r12, (1, 2))
    a1.vote(r12, Vote.NACK)
    a2.vote(r12, Vote.NACK)


def test_clusters_do_not_mix(witness: Callable[..., ServerThread]) -> None:
    w = witness()
    r = RingId(1, 8)
    x1, y1 = FakeAgent(w.port, 1, cluster="x"), FakeAgent(w.port, 1, cluster="y")
    x1.report(r, (1,))
    y1.report(r, (1,))
    x1.vote(r, Vote.ACK)
    y1.vote(r, Vote.ACK)


def test_silent_winner_times_out_then_the_other_side_gets_ack(
        witness: Callable[..., ServerThread]) -> None:
    """Node 1 alone held the vote and goes silent; {2,3} form a ring.  Node 1 is
    dropped after the timeout and its hold released timeout + grace after it was last
    heard; only then {2,3} get ACK."""
    w = witness(timeout_ms=600, release_grace_ms=400)
    r1, r23 = RingId(1, 8), RingId(2, 12)
    a1 = FakeAgent(w.port, 1)
    before_last_frame = time.monotonic()  # the witness hears node 1 last after this
    a1.report(r1, (1,))
    a1.vote(r1, Vote.ACK)
    a2, a3 = FakeAgent(w.port, 2), FakeAgent(w.port, 3)
    a2.report(r23, (2, 3))
    a3.report(r23, (2, 3))
    a1.vote(r1, Vote.NACK)  # node 1 is told, but never applies it and stops talking

    def keep_alive_until_ack(agent: FakeAgent, other: FakeAgent) -> float:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            agent.heartbeat()
            other.heartbeat()
            msg = agent.next(0.1)
            if isinstance(msg, VoteInfo) and msg.vote == Vote.ACK and msg.ring == r23:
                return time.monotonic()
        raise TimeoutError("no ACK for {2,3}")

    acked_at = keep_alive_until_ack(a2, a3)
    assert acked_at - before_last_frame >= (600 + 400) / 1000 - 0.002  # ms rounding
    seen = a1.wait_closed()
    assert Error(int(ErrorCode.TIMED_OUT), "silent for the timeout") in seen
    assert w.stats()["timed_out"] == 1


def test_disconnected_winner_releases_after_timeout_plus_grace(
        witness: Callable[..., ServerThread]) -> None:
    w = witness(timeout_ms=500, release_grace_ms=300)
    r1, r2 = RingId(1, 8), RingId(2, 12)
    a1 = FakeAgent(w.port, 1)
    t0 = time.monotonic()  # the witness hears node 1 last after this
    a1.report(r1, (1,))
    a1.vote(r1, Vote.ACK)
    a1.close()
    a2 = FakeAgent(w.port, 2)
    a2.report(r2, (2,))
    deadline = time.monotonic() + WAIT_S
    while True:
        a2.heartbeat()
        msg = a2.next(0.1)
        if isinstance(msg, VoteInfo):
            break
        assert time.monotonic() < deadline
    assert msg == VoteInfo(msg.seq, r2, Vote.ACK)
    assert time.monotonic() - t0 >= 0.8 - 0.002  # ms rounding


def test_reconnection_replaces_the_old_connection(witness: Callable[..., ServerThread]) -> None:
    w = witness()
    r = RingId(1, 8)
    old = FakeAgent(w.port, 1)
    old.report(r, (1,))
    old.vote(r, Vote.ACK)
    new = FakeAgent(w.port, 1)
    seen = old.wait_closed()
    assert any(isinstance(m, Error) and m.code == ErrorCode.REPLACED for m in seen)
    new.report(r, (1,))
    new.vote(r, Vote.ACK)


def test_bad_report_closes_only_that_connection(witness: Callable[..., ServerThread]) -> None:
    w = witness()
    good, bad = FakeAgent(w.port, 1), FakeAgent(w.port, 2)
    bad.report(RingId(1, 8), (1, 3))  # node 2 is not in its own membership
    seen = bad.wait_closed()
    assert any(isinstance(m, Error) and m.code == ErrorCode.BAD_REPORT for m in seen)
    good.report(RingId(1, 4), (1,))
    good.vote(RingId(1, 4), Vote.ACK)
    assert w.stats()["bad_reports"] == 1


def test_startup_quiet_period(witness: Callable[..., ServerThread]) -> None:
    started = time.monotonic()  # the quiet period starts after this
    w = witness(startup_quiet_ms=400, timeout_ms=3000)
    a = FakeAgent(w.port, 1)
    a.report(RingId(1, 4), (1,))
    a.vote(RingId(1, 4), Vote.ACK)
    assert time.monotonic() - started >= 0.4 - 0.002  # ms rounding


# ====================================================================== hostile peers
def test_wrong_key_is_refused_and_counted(witness: Callable[..., ServerThread]) -> None:
    w = witness()
    good = FakeAgent(w.port, 1)
    bad = FakeAgent(w.port, 2, key=os.urandom(64), handshake=False)
    with pytest.raises(ProtocolError):  # the agent refuses the server's challenge
        bad.next(WAIT_S)
    # a client that ignores that and sends a hello under its own key
    s = raw_connect(w.port)
    fake = ClientSession(os.urandom(32), cluster_name="c1", node_id=5, nonce=os.urandom(16))
    fake._recv_key = fake._send_key = os.urandom(32)
    fake.send(Heartbeat(1))  # any frame under a wrong key
    s.sendall(fake.take_output())
    assert closed_by_server(s)
    w.wait_stat("rejected_unexpected", 1)
    s2 = raw_connect(w.port)
    hello = ClientSession(os.urandom(32), cluster_name="c1", node_id=5, nonce=os.urandom(16))
    hello._recv_key = hello._send_key = os.urandom(32)
    hello._send_with(hello._send_key, Hello(1, "c1", 5, hello.nonce))
    s2.sendall(hello.take_output())
    assert closed_by_server(s2)
    w.wait_stat("rejected_bad_mac", 1)
    good.report(RingId(1, 4), (1,))
    good.vote(RingId(1, 4), Vote.ACK)
    bad.close()
    s.close()
    s2.close()


def test_replayed_session_is_refused(witness: Callable[..., ServerThread]) -> None:
    w = witness()
    a = FakeAgent(w.port, 1)
    a.report(RingId(1, 4), (1,))
    a.vote(RingId(1, 4), Vote.ACK)
    recorded = a.sent_raw
    s = raw_connect(w.port)
    s.sendall(recorded)
    assert closed_by_server(s)
    w.wait_stat("rejected_bad_mac", 1)
    a.heartbeat()  # the original session is unaffected
    assert a.expect(HeartbeatReply).seq == 1
    s.close()


def test_tampered_frame_closes_the_connection(witness: Callable[..., ServerThread]) -> None:
    w = witness()
    a = FakeAgent(w.port, 1)
    a.session.send(Heartbeat(1))
    frame = bytearray(a.session.take_output())
    frame[7] ^= 0x10
    a.sock.sendall(bytes(frame))
    a.wait_closed()
    w.wait_stat("rejected_bad_mac", 1)


@pytest.mark.parametrize("junk, reason", [
    (b"GET / HTTP/1.1\r\n\r\n", "rejected_too_large"),
    (struct.pack(">I", 2) + b"xx", "rejected_malformed"),
    (struct.pack(">I", 1 << 20), "rejected_too_large"),
])
def test_garbage_closes_only_that_connection(witness: Callable[..., ServerThread],
                                             junk: bytes, reason: str) -> None:
    w = witness()
    good = FakeAgent(w.port, 1)
    s = raw_connect(w.port)
    s.sendall(junk)
    assert closed_by_server(s)
    w.wait_stat(reason, 1)
    good.report(RingId(1, 4), (1,))
    good.vote(RingId(1, 4), Vote.ACK)
    s.close()


def test_truncated_frame_at_close_is_counted(witness: Callable[..., ServerThread]) -> None:
    w = witness()
    a = FakeAgent(w.port, 1)
    a.session.send(MembershipReport(1, RingId(1, 4), (1,), False))
    data = a.session.take_output()
    a.sock.sendall(data[:-3])
    a.sock.shutdown(socket.SHUT_WR)
    a.wait_closed()
    w.wait_stat("rejected_truncated", 1)


def test_hello_timeout(witness: Callable[..., ServerThread]) -> None:
    w = witness(hello_timeout_ms=300)
    s = raw_connect(w.port)
    assert closed_by_server(s, 5.0)
    w.wait_stat("hello_timeouts", 1)
    s.close()


def test_max_connections(witness: Callable[..., ServerThread]) -> None:
    w = witness(max_connections=2)
    a, b = FakeAgent(w.port, 1), FakeAgent(w.port, 2)
    s = raw_connect(w.port)
    assert closed_by_server(s)
    w.wait_stat("refused_max_connections", 1)
    a.report(RingId(1, 4), (1, 2))
    b.report(RingId(1, 4), (1, 2))
    a.vote(RingId(1, 4), Vote.ACK)
    s.close()


def test_bad_version_is_refused(witness: Callable[..., ServerThread]) -> None:
    w = witness()
    s = raw_connect(w.port)
    client = ClientSession(KEY, cluster_name="c1", node_id=1, nonce=os.urandom(16))
    data = s.recv(65536)
    client.feed(data)
    client.take_output()
    assert client._send_key is not None
    client._send_seq = 0
    client._send_with(client._send_key, Hello(99, "c1", 1, client.nonce))
    s.sendall(client.take_output())
    assert closed_by_server(s)
    w.wait_stat("rejected_bad_version", 1)
    s.close()


# ====================================================================== the command
def test_command_line_server_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    keyfile = tmp_path / "key"
    keyfile.write_bytes(KEY)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyquorum.tools.witness", "--listen", "127.0.0.1:0",
         "--key", str(keyfile), "--timeout-ms", "2000", "--startup-quiet-ms", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        port = None
        buf = b""
        deadline = time.monotonic() + WAIT_S
        while port is None:
            left = deadline - time.monotonic()
            assert left > 0, buf
            r, _, _ = select.select([proc.stderr], [], [], left)
            if r:
                chunk = os.read(proc.stderr.fileno(), 4096)
                assert chunk, buf
                buf += chunk
                m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", buf)
                if m:
                    port = int(m.group(1))
        a = FakeAgent(port, 1)
        assert a.welcome == Welcome(500, 2000)
        a.report(RingId(1, 4), (1,))
        a.vote(RingId(1, 4), Vote.ACK)
        os.kill(proc.pid, signal.SIGTERM)
        seen = a.wait_closed()
        assert any(isinstance(m, Error) and m.code == ErrorCode.SHUTTING_DOWN for m in seen)
        assert proc.wait(WAIT_S) == 0
        a.close()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(WAIT_S)
        if proc.stderr is not None:
            proc.stderr.close()


def test_command_line_errors(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"x")
    r = subprocess.run([sys.executable, "-m", "pyquorum.tools.witness", "--listen",
                        "127.0.0.1:0", "--key", str(short)], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 1 and "key must be" in r.stderr
    r = subprocess.run([sys.executable, "-m", "pyquorum.tools.witness", "--listen",
                        "nowhere", "--key", str(short)], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 1 and "HOST:PORT" in r.stderr


@pytest.mark.parametrize("text, want", [
    ("127.0.0.1:5403", ("127.0.0.1", 5403)), ("[::1]:80", ("::1", 80)),
    ("localhost:0", ("localhost", 0)),
])
def test_parse_hostport(text: str, want: tuple[str, int]) -> None:
    assert parse_hostport(text) == want


@pytest.mark.parametrize("text", ["", "host", ":80", "h:99999", "h:x"])
def test_parse_hostport_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_hostport(text)
