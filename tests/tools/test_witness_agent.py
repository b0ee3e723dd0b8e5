"""pyquorum-qdevice: ``AgentState`` (pure) and the real ``Agent`` against the real
witness over TCP on 127.0.0.1, with an in-process fake of the votequorum library.

The fake (``FakeDaemon``) stands in for ``pyquorum.client.votequorum`` and
``cmap_get_prefix``, keyed by ``run_dir``: it keeps a ring, delivers nodelist events
through a pipe (the event fd), checks polls like the daemon (stale ring: 22, not
registered: 12) and logs every poll with a global sequence number, so the tests can
check the order in which nodes started and stopped casting.  The witness and the
agents share one event loop in a background thread; the test thread changes the fake
daemons and waits on their logs with bounded waits (no sleeps to synchronise).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pyquorum.client import cmap as cmap_mod
from pyquorum.client import votequorum as vq
from pyquorum.errors import CsErr, CsError
from pyquorum.tools.qdevice import Agent, AgentState, Backoff
from pyquorum.tools.witness import WitnessServer
from pyquorum.tools.witness_proto import Vote, VoteInfo
from pyquorum.types import RingId

KEY = os.urandom(48)
WAIT_S = 15.0
R12 = RingId(1, 8)


# ====================================================================== AgentState
def test_state_pauses_on_a_new_ring_until_the_witness_decides() -> None:
    s = AgentState(0, pause_limit_ms=5000)
    s.nodelist(R12, [2, 1], 0)
    assert s.members == (1, 2)
    assert not s.plan(0).poll  # the witness was not tried yet
    s.witness_lost()
    assert s.plan(0).poll  # no witness: poll, not casting
    assert s.plan(0).cast_vote == 0
    s.witness_connected(1000, hello_sent_ms=10)
    assert not s.plan(20).poll  # witness up, no decision: wait for it
    assert s.next_deadline(20) == 1010
    assert s.vote_info(VoteInfo(1, R12, Vote.ACK))
    p = s.plan(30)
    assert (p.poll, p.cast_vote, p.ack) == (True, 1, VoteInfo(1, R12, Vote.ACK))
    s.polled(p)
    assert s.plan(40).ack is None and s.plan(40).cast_vote == 1
    # the lease runs out without heartbeat answers: stop casting
    assert s.plan(1010).cast_vote == 0
    s.heartbeat_answered(900)
    assert s.plan(1500).cast_vote == 1
    assert s.plan(1900).cast_vote == 0


def test_state_ignores_votes_for_other_rings_and_waits_on_stale_rings() -> None:
    s = AgentState(0)
    s.nodelist(R12, [1, 2], 0)
    s.witness_connected(1000, 0)
    assert not s.vote_info(VoteInfo(1, RingId(1, 4), Vote.ACK))
    s.poll_stale(R12)
    assert not s.plan(1).poll
    s.nodelist(RingId(1, 12), [1], 2)
    assert not s.plan(3).poll  # new ring, witness up: waits for a decision
    assert s.vote_info(VoteInfo(2, RingId(1, 12), Vote.NACK))
    p = s.plan(4)
    assert (p.poll, p.cast_vote, p.ack) == (True, 0, VoteInfo(2, RingId(1, 12), Vote.NACK))


def test_state_pause_is_bounded_and_witness_loss_voids_decisions() -> None:
    s = AgentState(0, pause_limit_ms=300)
    s.witness_connected(10_000, 0)
    s.nodelist(R12, [1, 2], 100)
    assert not s.plan(399).poll
    assert s.plan(400).poll and s.plan(400).cast_vote == 0
    s.vote_info(VoteInfo(1, R12, Vote.ACK))
    assert s.plan(500).cast_vote == 1
    s.witness_lost()
    assert s.plan(501).poll and s.plan(501).cast_vote == 0
    s.daemon_lost(600)
    assert not s.plan(601).poll
    assert s.report().ring is None


def test_backoff_is_capped() -> None:
    import random
    b = Backoff(random.Random(1), 0.1, 1.0)
    delays = [b.delay() for _ in range(10)]
    assert all(0.05 <= d <= 1.0 for d in delays) and delays[-1] >= 0.5
    b.reset()
    assert b.delay() <= 0.1


# ====================================================================== fake daemon
SEQ = itertools.count(1)


@dataclass
class FakeDaemon:
    """One node's votequorum, as the agent sees it through the client library."""

    node_id: int
    ring: RingId
    members: tuple[int, ...]
    cluster: str = "c1"
    device_timeout_ms: int = 1000
    alive: bool = True
    registered: str | None = None
    unregistered: int = 0
    registrations: int = 0
    polls: list[tuple[int, int, RingId]] = field(default_factory=list)  # (seq, cast, ring)
    refused: list[int] = field(default_factory=list)  # error codes of refused polls
    lock: threading.Lock = field(default_factory=threading.Lock)
    handles: dict[int, tuple[vq.VotequorumCallbacks, int, int, list[Callable[[], None]]]] = \
        field(default_factory=dict)

    def notify(self, handle: int, fn: Callable[[], None]) -> None:
        _, _, w, queue = self.handles[handle]
        queue.append(fn)
        os.write(w, b"x")

    def set_ring(self, ring: RingId, members: tuple[int, ...], deliver: bool = True) -> None:
        with self.lock:
            self.ring, self.members = ring, members
            if deliver:
                self._deliver_nodelist()

    def deliver(self) -> None:
        with self.lock:
            self._deliver_nodelist()

    def _deliver_nodelist(self) -> None:
        for h, (cbs, _, _, _) in list(self.handles.items()):
            fn = cbs.nodelist_notify_fn
            if fn is not None:
                self.notify(h, functools.partial(
                    fn, h, 0, vq.VotequorumRingId(self.ring.rep, self.ring.seq),
                    list(self.members)))

    def crash(self) -> None:
        with self.lock:
            self.alive = False
            self.registered = None
            for h in list(self.handles):
                self.notify(h, _raise_library)

    def revive(self) -> None:
        with self.lock:
            self.alive = True

    def cast_polls(self, ring: RingId | None = None) -> list[tuple[int, int, RingId]]:
        with self.lock:
            return [p for p in self.polls if ring is None or p[2] == ring]

    def last_cast(self) -> tuple[int, RingId] | None:
        with self.lock:
            return (self.polls[-1][1], self.polls[-1][2]) if self.polls else None


def _raise_library() -> None:
    raise CsError(CsErr.CS_ERR_LIBRARY, "the daemon went away")


class FakeVotequorum:
    """The patched library: daemons by run_dir, handles across them."""

    def __init__(self) -> None:
        self.daemons: dict[str, FakeDaemon] = {}
        self.by_handle: dict[int, FakeDaemon] = {}
        self.next_handle = itertools.count(0x100000001)
        self.lock = threading.Lock()

    def _d(self, handle: int) -> FakeDaemon:
        d = self.by_handle.get(handle)
        if d is None:
            raise CsError(CsErr.CS_ERR_BAD_HANDLE)
        if not d.alive:
            raise CsError(CsErr.CS_ERR_LIBRARY, "the connection to the daemon is lost")
        return d

    def initialize(self, callbacks: vq.VotequorumCallbacks | None, *,
                   run_dir: str | None = None) -> int:
        d = self.daemons[str(run_dir)]
        if not d.alive:
            raise CsError(CsErr.CS_ERR_LIBRARY, "no daemon")
        with self.lock:
            h = next(self.next_handle)
            self.by_handle[h] = d
        r, w = os.pipe()
        with d.lock:
            d.handles[h] = (callbacks or vq.VotequorumCallbacks(), r, w, [])
        return h

    def finalize(self, handle: int) -> None:
        d = self.by_handle.pop(handle, None)
        if d is None:
            raise CsError(CsErr.CS_ERR_BAD_HANDLE)
        with d.lock:
            _, r, w, _ = d.handles.pop(handle)
        os.close(r)
        os.close(w)

    def fd_get(self, handle: int) -> int:
        d = self.by_handle[handle]
        return d.handles[handle][1]

    def dispatch(self, handle: int, flags: int) -> None:
        d = self.by_handle[handle]
        with d.lock:
            _, r, _, queue = d.handles[handle]
            todo = list(queue)
            queue.clear()
        while select.select([r], [], [], 0)[0]:
            os.read(r, 4096)
        for fn in todo:
            fn()

    def getinfo(self, handle: int, nodeid: int) -> Any:
        d = self._d(handle)
        return type("Info", (), {"node_id": d.node_id})()

    def register(self, handle: int, name: str) -> None:
        d = self._d(handle)
        with d.lock:
            d.registered = name
            d.registrations += 1

    def unregister(self, handle: int, name: str) -> None:
        d = self._d(handle)
        with d.lock:
            if d.registered != name:
                raise CsError(CsErr.CS_ERR_NOT_EXIST)
            d.registered = None
            d.unregistered += 1

    def trackstart(self, handle: int, context: int, flags: int) -> None:
        d = self._d(handle)
        with d.lock:
            cbs = d.handles[handle][0]
            fn = cbs.nodelist_notify_fn
            ring, members = d.ring, list(d.members)
            if fn is not None:
                d.notify(handle, lambda: fn(handle, context,
                                            vq.VotequorumRingId(ring.rep, ring.seq), members))

    def poll(self, handle: int, name: str, cast_vote: int,
             ring_id: vq.VotequorumRingId) -> None:
        d = self._d(handle)
        with d.lock:
            if d.registered is None:
                d.refused.append(12)
                raise CsError(CsErr.CS_ERR_NOT_EXIST)
            if RingId(ring_id.nodeid, ring_id.seq) != d.ring:
                d.refused.append(22)
                raise CsError(CsErr.CS_ERR_MESSAGE_ERROR)
            d.polls.append((next(SEQ), cast_vote, d.ring))

    def cmap_get_prefix(self, prefix: str = "", *, run_dir: str | None = None) -> dict[str, str]:
        d = self.daemons[str(run_dir)]
        if not d.alive:
            raise CsError(CsErr.CS_ERR_LIBRARY)
        return {"totem.cluster_name": d.cluster,
                "quorum.device.timeout": str(d.device_timeout_ms),
                "quorum.device.sync_timeout": "30000"}


@pytest.fixture
def fake_vq(monkeypatch: pytest.MonkeyPatch) -> FakeVotequorum:
    f = FakeVotequorum()
    for name, fn in (("votequorum_initialize", f.initialize),
                     ("votequorum_finalize", f.finalize),
                     ("votequorum_fd_get", f.fd_get),
                     ("votequorum_dispatch", f.dispatch),
                     ("votequorum_getinfo", f.getinfo),
                     ("votequorum_qdevice_register", f.register),
                     ("votequorum_qdevice_unregister", f.unregister),
                     ("votequorum_trackstart", f.trackstart),
                     ("votequorum_qdevice_poll", f.poll)):
        monkeypatch.setattr(vq, name, fn)
    monkeypatch.setattr(cmap_mod, "cmap_get_prefix", f.cmap_get_prefix)
    return f


# ====================================================================== the rig
class Rig:
    """A witness and agents in one event loop in a background thread."""

    def __init__(self, fake: FakeVotequorum, **witness_kwargs: Any) -> None:
        self.fake = fake
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        witness_kwargs.setdefault("timeout_ms", 800)
        witness_kwargs.setdefault("release_grace_ms", 400)
        witness_kwargs.setdefault("startup_quiet_ms", 0)
        self.witness: WitnessServer | None = None
        self.witness_kwargs = witness_kwargs
        self.port = 0
        self.start_witness()
        self.agents: dict[int, tuple[Agent, asyncio.Event, Any]] = {}

    def run(self, coro: Any, timeout: float = WAIT_S) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start_witness(self) -> None:
        async def start() -> None:
            self.witness = WitnessServer(KEY, **self.witness_kwargs)
            _, self.port = await self.witness.start("127.0.0.1", self.port)
        self.run(start())

    def stop_witness(self) -> None:
        assert self.witness is not None
        self.run(self.witness.close())
        self.witness = None

    def add_node(self, d: FakeDaemon, interval_ms: int = 100) -> Agent:
        run_dir = f"/fake/run{d.node_id}"
        self.fake.daemons[run_dir] = d

        async def start() -> tuple[Agent, asyncio.Event, Any]:
            agent = Agent(witness=("127.0.0.1", self.port), key=KEY, run_dir=run_dir,
                          interval_ms=interval_ms)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            return agent, stop, task
        self.agents[d.node_id] = self.run(start())
        return self.agents[d.node_id][0]

    def stop_agent(self, node_id: int) -> int:
        _, stop, task = self.agents.pop(node_id)

        async def stop_it() -> int:
            stop.set()
            return await task  # type: ignore[no-any-return]
        return self.run(stop_it())  # type: ignore[no-any-return]

    def close(self) -> None:
        try:
            for n in list(self.agents):
                self.stop_agent(n)
            if self.witness is not None:
                self.stop_witness()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(WAIT_S)
            self.loop.close()


@pytest.fixture
def rig(fake_vq: FakeVotequorum) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(**kwargs: Any) -> Rig:
        r = Rig(fake_vq, **kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def wait_until(pred: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        select.select([], [], [], 0.02)


def casting(d: FakeDaemon, ring: RingId, cast: int = 1) -> Callable[[], bool]:
    return lambda: d.last_cast() == (cast, ring)


# ====================================================================== scenarios
def test_two_nodes_both_cast(rig: Callable[..., Rig]) -> None:
    r = rig()
    d1, d2 = FakeDaemon(1, R12, (1, 2)), FakeDaemon(2, R12, (1, 2))
    r.add_node(d1)
    r.add_node(d2)
    wait_until(casting(d1, R12), "node 1 casting")
    wait_until(casting(d2, R12), "node 2 casting")
    assert d1.registered == "Qdevice"
    # before the decision nothing was polled for the ring (the agent waits for it)
    assert d1.cast_polls(R12)[0][1] == 1


def test_split_only_one_side_casts_and_the_loser_stops_first(rig: Callable[..., Rig]) -> None:
    r = rig()
    d1, d2 = FakeDaemon(1, R12, (1, 2)), FakeDaemon(2, R12, (1, 2))
    r.add_node(d1)
    r.add_node(d2)
    wait_until(casting(d1, R12), "node 1 casting")
    wait_until(casting(d2, R12), "node 2 casting")
    r1, r2 = RingId(1, 12), RingId(2, 12)
    d2.set_ring(r2, (2,))
    d1.set_ring(r1, (1,))
    wait_until(casting(d1, r1), "node 1 casting in its own ring")
    wait_until(casting(d2, r2, 0), "node 2 not casting")
    first_ack = d1.cast_polls(r1)[0]
    first_nack = d2.cast_polls(r2)[0]
    assert first_ack[1] == 1, "node 1 polled its new ring only once it had the ACK"
    assert first_nack[1] == 0
    assert first_nack[0] < first_ack[0], "node 2 released before node 1 cast"
    assert all(cast == 0 for _, cast, _ in d2.cast_polls(r2))


def test_losing_the_witness_stops_casting_but_polls_go_on(rig: Callable[..., Rig]) -> None:
    r = rig(timeout_ms=600)
    d1 = FakeDaemon(1, R12, (1, 2))
    r.add_node(d1)
    wait_until(casting(d1, R12), "node 1 casting")
    r.stop_witness()
    wait_until(casting(d1, R12, 0), "node 1 not casting without the witness", timeout=3.0)
    n = len(d1.cast_polls())
    wait_until(lambda: len(d1.cast_polls()) > n + 2, "polls going on with cast_vote 0")
    assert all(c == 0 for _, c, _ in d1.cast_polls()[n:])
    r.start_witness()  # same port: the agent reconnects with backoff and casts again
    wait_until(casting(d1, R12), "node 1 casting after the witness came back")


def test_daemon_restart_reregisters_and_reports(rig: Callable[..., Rig]) -> None:
    r = rig()
    d1, d2 = FakeDaemon(1, R12, (1, 2)), FakeDaemon(2, R12, (1, 2))
    r.add_node(d1)
    r.add_node(d2)
    wait_until(casting(d1, R12), "node 1 casting")
    d2.crash()
    d1.set_ring(RingId(1, 12), (1,))
    # node 2's agent reported "no daemon": node 1 gets the vote after the grace period
    wait_until(casting(d1, RingId(1, 12)), "node 1 casting alone")
    d2.revive()
    d2.set_ring(RingId(1, 16), (1, 2), deliver=False)
    d1.set_ring(RingId(1, 16), (1, 2))
    wait_until(casting(d2, RingId(1, 16)), "node 2 casting after its daemon came back")
    wait_until(casting(d1, RingId(1, 16)), "node 1 casting in the merged ring")
    assert d2.registrations == 2


def test_stale_ring_waits_for_the_nodelist_event(rig: Callable[..., Rig]) -> None:
    r = rig()
    d1 = FakeDaemon(1, R12, (1,))
    r.add_node(d1)
    wait_until(casting(d1, R12), "node 1 casting")
    d1.set_ring(RingId(1, 20), (1,), deliver=False)
    wait_until(lambda: 22 in d1.refused, "a poll refused as stale")
    refused = len(d1.refused)
    d1.deliver()
    wait_until(casting(d1, RingId(1, 20)), "node 1 casting in the new ring")
    assert len(d1.refused) <= refused + 1  # it did not keep polling the stale ring


def test_stop_unregisters_and_returns_zero(rig: Callable[..., Rig]) -> None:
    r = rig()
    d1 = FakeDaemon(1, R12, (1,))
    r.add_node(d1)
    wait_until(casting(d1, R12), "node 1 casting")
    assert r.stop_agent(1) == 0
    assert d1.unregistered == 1 and d1.registered is None


def test_command_line_exits_zero_on_sigterm_without_a_daemon(tmp_path: Path) -> None:
    keyfile = tmp_path / "key"
    keyfile.write_bytes(KEY)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyquorum.tools.qdevice", "--run-dir", str(tmp_path / "run"),
         "--witness", "127.0.0.1:9", "--key", str(keyfile), "--interval-ms", "100"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        buf = b""
        deadline = time.monotonic() + WAIT_S
        while b"daemon connection" not in buf:  # it is up and retrying
            left = deadline - time.monotonic()
            assert left > 0, buf
            if select.select([proc.stderr], [], [], left)[0]:
                chunk = os.read(proc.stderr.fileno(), 4096)
                assert chunk, buf
                buf += chunk
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(WAIT_S) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(WAIT_S)
        if proc.stderr is not None:
            proc.stderr.close()


def test_command_line_errors(tmp_path: Path) -> None:
    keyfile = tmp_path / "key"
    keyfile.write_bytes(b"short")
    r = subprocess.run([sys.executable, "-m", "pyquorum.tools.qdevice", "--witness",
                        "127.0.0.1:9", "--key", str(keyfile)], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 1 and "key must be" in r.stderr
