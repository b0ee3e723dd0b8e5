"""Slow, stuck and half-speaking clients never block a real daemon or its other clients.

A 3-node cluster of real ``pyquorumd`` processes; the misbehaving clients talk to
node 1, and so does a well-behaved ``probe`` (a V1 tracker) that, every ~50 ms, asks
getquorate and a trackstart snapshot (two callbacks on its event channel) and measures
how long the whole round takes.  Throughout, and checked at the end:

* every probe round completes within ``PROMPT_S`` (0.8 s: the daemon's own stall
  threshold for a 1 s token; before the run queue, one 64 KiB read of pipelined
  requests held the loop for 1.2-1.8 s and the daemon logged that it was not scheduled);
* no node logs "not scheduled", and every node keeps the ring it had (no membership
  change);
* each misbehaving client ends as its policy says: a stuck client (never reads, keeps
  sending) is disconnected when its unread events pass ``MAX_EVENT_BACKLOG`` (lowered
  to 1 MiB here through the test hooks; the 4 MiB default is covered in-process and
  in tests/integration/test_daemon_ipc.py); a client that sends no hello and one that
  stalls inside a frame are closed by their timeouts (lowered to 2 s here); a slow
  reader (one byte per second) stays connected, holds up nobody, and gets every
  answer, in order, once it reads again.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import LocalCluster, RawIpcClient, v1_tracker, view_reached

from pyquorum.daemon import ipcserver
from pyquorum.errors import CsErr
from pyquorum.wire import ipc

WAIT_S = 20.0
PROMPT_S = 0.8
PROBE_EVERY_S = 0.05
OK = int(CsErr.CS_OK)
BACKLOG = 1 << 20


class Probe:
    """A well-behaved tracker; ``round()`` is one answer plus two callbacks, timed."""

    def __init__(self, run_dir: Path) -> None:
        self.client = v1_tracker(run_dir)
        self.client.collect_events(view_reached((1, 2, 3), quorate=1), WAIT_S)
        self.latencies: list[float] = []
        self._next = 0.0

    def round(self) -> None:
        c = self.client
        start = time.monotonic()
        assert c.request(ipc.QuorumGetQuorateReq(), 5.0) == ipc.QuorumGetQuorateRes(OK, 1)
        assert c.request(ipc.QuorumTrackStartReq(1), 5.0) == ipc.QuorumStatusRes(
            int(CsErr.CS_ERR_EXIST))  # already tracking: a snapshot, then EXIST
        first, second = c.next_event(5.0), c.next_event(5.0)
        assert isinstance(first, ipc.NodelistV1Event) and first.members == (1, 2, 3), first
        assert isinstance(second, ipc.QuorumV1Event) and second.quorate == 1, second
        self.latencies.append(time.monotonic() - start)
        self._next = time.monotonic() + PROBE_EVERY_S

    def due(self) -> None:
        """A round if the last one is ``PROBE_EVERY_S`` old."""
        if time.monotonic() >= self._next:
            self.round()

    def check(self) -> None:
        assert len(self.latencies) >= 10, self.latencies
        worst = max(self.latencies)
        ordered = sorted(self.latencies)
        print(f"probe rounds: {len(ordered)}, median {ordered[len(ordered) // 2] * 1000:.1f} ms, "
              f"worst {worst * 1000:.1f} ms")
        assert worst < PROMPT_S, f"slowest probe round {worst:.3f} s of {len(self.latencies)}"


def rings(c: LocalCluster) -> dict[int, str]:
    return {n: c.cmap(n, "runtime.pyquorum.ring_id")["runtime.pyquorum.ring_id"]
            for n in (1, 2, 3)}


def stat(c: LocalCluster, name: str) -> int:
    key = f"runtime.pyquorum.stats.{name}"
    return int(c.cmap(1, key)[key])


def assert_cluster_undisturbed(c: LocalCluster, before: dict[int, str]) -> None:
    assert rings(c) == before
    for n in (1, 2, 3):
        assert "not scheduled" not in c.log(n), f"node {n} stalled:\n{c.log(n)[-2000:]}"


def start_three(make: Callable[..., LocalCluster]) -> LocalCluster:
    c = make(3)
    for n in (1, 2, 3):
        c.start(n)
    return c


def test_stuck_client_is_evicted_while_others_are_served(
        hardening_cluster: Callable[..., LocalCluster],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # 1 MiB instead of 4 (the real value is covered in-process and by test_daemon_ipc):
    # the same policy, reached in a quarter of the time
    monkeypatch.setenv(ipcserver.LIMITS_ENV, f"max_event_backlog={BACKLOG}")
    c = start_three(hardening_cluster)
    probe = Probe(c.run_dir(1))
    before = rings(c)
    stuck = RawIpcClient(c.run_dir(1), ipc.SERVICE_QUORUM)
    try:
        assert stuck.request(ipc.QuorumModelGetTypeReq(1)).error == OK
        # never reads again: each trackstart(CURRENT) queues an answer and two events
        stuck.sock.setblocking(False)
        batch = ipc.encode_frame(ipc.QuorumTrackStartReq(1)) * 1024
        pending = b""
        sent = 0
        evicted = False
        deadline = time.monotonic() + 90.0
        while time.monotonic() < deadline:
            data = pending or batch
            try:
                n = stuck.sock.send(data)
            except BlockingIOError:
                select.select([], [stuck.sock], [], PROBE_EVERY_S)
                n = 0
            except (BrokenPipeError, ConnectionResetError):
                evicted = True
                break
            sent += n
            pending = data[n:]
            probe.due()
        assert evicted, f"still connected after {sent} bytes of requests"
        assert stat(c, "ipc_evicted_backlog") == 1
        assert "does not read its events" in c.log(1)
        assert stuck.events_sock is not None  # its event channel hangs up too
        stuck.events_sock.settimeout(WAIT_S)
        got = 0
        for _ in range(100_000):
            chunk = stuck.events_sock.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        assert got < BACKLOG + (1 << 20)  # what the queue and the kernel held
        probe.round()
        probe.check()
        assert_cluster_undisturbed(c, before)
    finally:
        stuck.close()
        probe.client.close()


def test_slow_silent_and_partial_clients_do_not_block_others(
        hardening_cluster: Callable[..., LocalCluster],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ipcserver.LIMITS_ENV, "hello_timeout_s=2,frame_timeout_s=2")
    c = start_three(hardening_cluster)
    assert "test hooks: IPC limits lowered" in c.log(1)
    probe = Probe(c.run_dir(1))
    before = rings(c)
    path = str(c.run_dir(1) / ipc.SOCKET_NAME)
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # never says hello
    silent.connect(path)
    partial = RawIpcClient(c.run_dir(1), ipc.SERVICE_QUORUM)
    partial.send_raw(struct.pack(">I", 20) + b"\x01\x0a\x00")  # 3 of 20 bytes, then stalls
    slow = v1_tracker(c.run_dir(1))  # reads one byte per second from each socket
    n_requests = 200
    slow.send_raw(ipc.encode_frame(ipc.QuorumGetQuorateReq()) * n_requests)
    assert slow.events_sock is not None
    slow_bytes = b""
    slow_events = b""
    try:
        start = time.monotonic()
        next_byte = start
        silent_closed = partial_closed = None
        while time.monotonic() - start < 5.0:
            probe.due()
            now = time.monotonic()
            if now >= next_byte:  # the slow reader's pace
                slow_bytes += slow.sock.recv(1)
                slow_events += slow.events_sock.recv(1)
                next_byte += 1.0
            ready, _, _ = select.select([silent, partial.sock], [], [], PROBE_EVERY_S)
            if silent in ready and silent_closed is None and not silent.recv(64):
                silent_closed = now - start
            if partial.sock in ready and partial_closed is None and not partial.sock.recv(64):
                partial_closed = now - start
        assert silent_closed is not None and 1.5 <= silent_closed <= 4.0, silent_closed
        assert partial_closed is not None and 1.5 <= partial_closed <= 4.0, partial_closed
        assert stat(c, "ipc_hello_timeouts") == 1
        assert stat(c, "ipc_frame_timeouts") == 1
        assert 4 <= len(slow_bytes) <= 6
        # the slow reader is still connected and gets everything, in order
        slow.sock.settimeout(WAIT_S)
        reader = ipc.FrameReader()
        answers = reader.feed(slow_bytes)
        while len(answers) < n_requests:
            data = slow.sock.recv(65536)
            assert data, "the slow reader was disconnected"
            answers += reader.feed(data)
        assert answers == [ipc.QuorumGetQuorateRes(OK, 1)] * n_requests
        events = ipc.FrameReader().feed(slow_events + slow.events_sock.recv(65536))
        assert [type(e) for e in events] == [ipc.NodelistV1Event, ipc.QuorumV1Event]
        probe.round()
        probe.check()
        assert_cluster_undisturbed(c, before)
        assert stat(c, "ipc_open_awaiting_hello") == 0
    finally:
        silent.close()
        partial.close()
        slow.close()
        probe.client.close()
