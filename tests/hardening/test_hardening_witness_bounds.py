"""The witness's per-connection bounds not covered in tests/tools: unread output and a
frame left half-sent after the hello.

The real ``WitnessServer`` runs on its own loop in a thread, on 127.0.0.1; agents are
blocking sockets speaking ``witness_proto`` (``ClientSession``).  (Frames too large,
the hello timeout and ``max_connections`` are tested in tests/tools/test_witness_server.py.)

* An agent that sends heartbeats and never reads the replies is closed once more than
  ``max_write_buffer`` bytes wait for it (``closed_slow_reader``); another agent is
  answered throughout.
* An agent that stops inside a frame is a silent node: dropped after ``timeout_ms``
  (``timed_out``), so a partial frame is held at most that long.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pyquorum.tools.witness import WitnessServer
from pyquorum.tools.witness_proto import (
    Challenge,
    ClientSession,
    Heartbeat,
    HeartbeatReply,
    Message,
    Welcome,
)

KEY = os.urandom(64)
WAIT_S = 10.0


class Server:
    """A ``WitnessServer`` on 127.0.0.1:<free port> in its own thread and loop."""

    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = WitnessServer(KEY, **kwargs)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        _, self.port = self.run(self.server.start("127.0.0.1", 0))

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT_S)

    def stats(self) -> dict[str, int]:
        async def read() -> dict[str, int]:
            return dict(self.server.stats)
        return self.run(read())  # type: ignore[no-any-return]

    def close(self) -> None:
        try:
            self.run(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(WAIT_S)
            self.loop.close()


@pytest.fixture
def witness() -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def make(**kwargs: Any) -> Server:
        kwargs.setdefault("startup_quiet_ms", 0)
        s = Server(**kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


class Agent:
    """One agent connection, handshake done (``Welcome`` received)."""

    def __init__(self, port: int, node_id: int, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(WAIT_S)
        self.sock.connect(("127.0.0.1", port))
        self.session = ClientSession(KEY, cluster_name="c1", node_id=node_id,
                                     nonce=os.urandom(16))
        self.inbox: list[Message] = []
        self.seq = 0
        assert isinstance(self.expect(), Challenge)
        assert isinstance(self.expect(), Welcome)

    def expect(self) -> Message:
        deadline = time.monotonic() + WAIT_S
        while not self.inbox:
            r, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            assert r, "nothing from the witness"
            data = self.sock.recv(65536)
            assert data, "closed by the witness"
            self.inbox += self.session.feed(data)
            out = self.session.take_output()  # the hello, after the challenge
            if out:
                self.sock.sendall(out)
        return self.inbox.pop(0)

    def heartbeat_frame(self) -> bytes:
        self.seq += 1
        self.session.send(Heartbeat(self.seq))
        return self.session.take_output()

    def closed(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return False
            try:
                if not self.sock.recv(65536):
                    return True
            except ConnectionResetError:
                return True

    def close(self) -> None:
        self.sock.close()


def test_agent_that_never_reads_is_closed_at_the_write_buffer_limit(
        witness: Callable[..., Server]) -> None:
    w = witness(max_write_buffer=16 * 1024, timeout_ms=10_000)
    good = Agent(w.port, 1)
    lazy = Agent(w.port, 2, rcvbuf=4096)
    lazy.sock.setblocking(False)
    sent = 0
    closed = False
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline and not closed:
        frames = b"".join(lazy.heartbeat_frame() for _ in range(200))
        view = memoryview(frames)
        while view and time.monotonic() < deadline:
            try:
                n = lazy.sock.send(view)
            except BlockingIOError:
                select.select([], [lazy.sock], [], 0.05)
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            view = view[n:]
        sent += 200
        if sent % 2000 == 0:  # the other agent is answered meanwhile
            good.sock.sendall(good.heartbeat_frame())
            assert isinstance(good.expect(), HeartbeatReply)
        closed = closed or w.stats().get("closed_slow_reader", 0) == 1
    assert closed, f"still open after {sent} heartbeats"
    deadline = time.monotonic() + WAIT_S
    while w.stats().get("closed_slow_reader", 0) < 1:
        assert time.monotonic() < deadline
        select.select([], [], [], 0.02)
    good.sock.sendall(good.heartbeat_frame())
    assert isinstance(good.expect(), HeartbeatReply)
    good.close()
    lazy.close()


def test_agent_that_stalls_inside_a_frame_is_dropped_as_silent(
        witness: Callable[..., Server]) -> None:
    w = witness(timeout_ms=600)
    a = Agent(w.port, 1)
    frame = a.heartbeat_frame()
    a.sock.sendall(frame[: len(frame) // 2])  # half a frame, then nothing
    start = time.monotonic()
    assert a.closed(WAIT_S)
    assert time.monotonic() - start >= 0.4
    assert w.stats().get("timed_out", 0) == 1
    a.close()
