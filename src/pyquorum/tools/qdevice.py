"""``pyquorum-qdevice``: the node-side quorum device agent (corosync-qdevice, model net).

It registers a quorum device with the local ``pyquorumd`` (``votequorum_qdevice_register``),
follows the node's rings through votequorum's nodelist callback, reports each ring to
``pyquorum-witness`` and polls the daemon (``votequorum_qdevice_poll``) with the ring id
and ``cast_vote`` set from the witness's answer for that ring.

Theory of operation
-------------------
``AgentState`` (pure, time as an argument) decides what to poll; ``Agent`` is the
asyncio shell with two loops sharing it:

* the **daemon loop** connects to votequorum (``run_dir``), reads the node id
  (``getinfo``), the cluster name and the device timeouts (cmap), registers the device,
  starts tracking (the snapshot's nodelist event gives the current ring) and polls.
  Events are dispatched in the loop thread (``add_reader`` on the event fd); requests
  run in one worker thread, because a request may wait while a view change is agreed.
  The daemon going away ends the loop; it reconnects with a capped exponential backoff.
* the **witness loop** connects to the witness (after the node id and cluster name are
  known), answers the challenge, reports the ring, sends a heartbeat every
  ``heartbeat_ms`` (from the witness's ``Welcome``), applies ``VoteInfo`` messages and
  reconnects with backoff when the connection fails or the lease runs out.

What is polled (``AgentState.plan``)::

    no ring, or the daemon called our ring stale (CS_ERR_MESSAGE_ERROR),
    or the first connection attempt to the witness has not ended yet     -> no poll
    a decision for the current ring        -> poll, cast_vote = ACK and the lease runs
    no decision yet, the witness is up     -> no poll for at most the device's
                                              sync_timeout: the daemon's sync waits for
                                              a poll with the new ring, so the new ring
                                              starts with the witness's answer
    otherwise (no witness)                 -> poll with cast_vote = 0

The **lease**: the agent casts the vote only until ``timeout_ms`` (from ``Welcome``)
after sending the last heartbeat the witness answered; the witness drops a node it has
not heard from for the same time.  When the witness is lost the polls go on with
``cast_vote = 0`` rather than stopping: the vote is withdrawn at once instead of after
the daemon's device timeout, the device stays ALIVE (so quorumtool shows a live device
that does not vote), and later ring changes are not held up waiting for a poll.

After a poll applied a ``VoteInfo`` (cast_vote 0 for a NACK, 1 for an ACK), the agent
sends ``VoteApplied``: for a NACK this is what lets the witness give the vote to
another partition.  A ``VoteInfo`` for a ring other than the current one is stale and
ignored.  A stale-ring answer of the daemon (22) means a new nodelist event is on its
way: the agent waits for it.  SIGTERM / SIGINT: unregister the device, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from pyquorum.client import cmap
from pyquorum.client import votequorum as vq
from pyquorum.errors import CsErr, CsError
from pyquorum.tools.witness import parse_hostport, wait_event
from pyquorum.tools.witness_proto import (
    NONCE_BYTES,
    ClientSession,
    Error,
    ErrorCode,
    Heartbeat,
    HeartbeatReply,
    MembershipReport,
    ProtocolError,
    Vote,
    VoteApplied,
    VoteInfo,
    Welcome,
    load_key,
)
from pyquorum.types import RingId

__all__ = ["Agent", "AgentState", "Backoff", "PollPlan", "build_parser", "main"]

T = TypeVar("T")

LOG: Final = logging.getLogger("pyquorum.qdevice")
DEFAULT_NAME: Final = "Qdevice"
DEFAULT_DEVICE_TIMEOUT_MS: Final = vq.VOTEQUORUM_QDEVICE_DEFAULT_TIMEOUT
DEFAULT_SYNC_TIMEOUT_MS: Final = vq.VOTEQUORUM_QDEVICE_DEFAULT_SYNC_TIMEOUT
CONNECT_TIMEOUT_S: Final = 5.0
HANDSHAKE_TIMEOUT_S: Final = 5.0
UNREGISTER_TIMEOUT_S: Final = 5.0
BACKOFF_MIN_S: Final = 0.1
BACKOFF_MAX_S: Final = 5.0
MAX_PENDING_HEARTBEATS: Final = 64
RETRY_S: Final = 0.2


@dataclass(frozen=True, slots=True)
class PollPlan:
    """What to poll now: ``poll`` False means do not poll; ``ack`` is the
    ``VoteInfo`` a successful poll applies (to be answered with ``VoteApplied``)."""

    poll: bool
    cast_vote: int
    ring: RingId | None
    ack: VoteInfo | None


class AgentState:
    """The agent's decisions, sans I/O (see the module docstring)."""

    def __init__(self, now_ms: int, *, pause_limit_ms: int = DEFAULT_SYNC_TIMEOUT_MS) -> None:
        self.pause_limit_ms = pause_limit_ms
        self.ring: RingId | None = None
        self.members: tuple[int, ...] = ()
        self.quorate = False
        self.ring_since_ms = now_ms
        self.stale_ring: RingId | None = None
        self.witness_up = False
        self.witness_attempted = False
        self.timeout_ms = 0
        self.lease_until_ms: int | None = None
        self.decision: VoteInfo | None = None
        self.applied_seq: int | None = None
        self.report_seq = 0

    # ------------------------------------------------------------ daemon side
    def nodelist(self, ring: RingId, members: Sequence[int], now_ms: int) -> bool:
        """A nodelist event; True if the ring changed."""
        members_t = tuple(sorted(set(members)))
        if ring == self.ring and members_t == self.members:
            return False
        self.ring, self.members, self.ring_since_ms = ring, members_t, now_ms
        self.stale_ring = None
        return True

    def daemon_lost(self, now_ms: int) -> None:
        """The daemon connection is gone: no ring until the next nodelist event."""
        self.ring, self.members, self.ring_since_ms = None, (), now_ms
        self.stale_ring = None
        self.quorate = False

    def poll_stale(self, ring: RingId) -> None:
        """The daemon answered 22 for ``ring``: wait for the next nodelist event."""
        self.stale_ring = ring

    def report(self) -> MembershipReport:
        """The next ``MembershipReport`` of the current ring."""
        self.report_seq = (self.report_seq + 1) & 0xFFFFFFFF
        return MembershipReport(self.report_seq, self.ring, self.members, self.quorate)

    # ------------------------------------------------------------ witness side
    def witness_connected(self, timeout_ms: int, hello_sent_ms: int) -> None:
        """The witness welcomed us; the hello we sent at ``hello_sent_ms`` starts the
        lease."""
        self.witness_up = True
        self.witness_attempted = True
        self.timeout_ms = timeout_ms
        self.lease_until_ms = hello_sent_ms + timeout_ms
        self.decision = None
        self.applied_seq = None

    def heartbeat_answered(self, sent_ms: int) -> None:
        """The witness answered the heartbeat we sent at ``sent_ms``."""
        if self.witness_up:
            until = sent_ms + self.timeout_ms
            if self.lease_until_ms is None or until > self.lease_until_ms:
                self.lease_until_ms = until

    def witness_lost(self) -> None:
        """The witness connection ended (or could not be made): every decision of that
        session is void."""
        self.witness_up = False
        self.witness_attempted = True
        self.lease_until_ms = None
        self.decision = None
        self.applied_seq = None

    def vote_info(self, info: VoteInfo) -> bool:
        """A ``VoteInfo``; True if it is for the current ring (else it is ignored)."""
        if not self.witness_up or info.ring is None or info.ring != self.ring:
            return False
        self.decision = info
        return True

    def lease_valid(self, now_ms: int) -> bool:
        """The witness may still count on us (and we on its answer)."""
        return (self.witness_up and self.lease_until_ms is not None
                and now_ms < self.lease_until_ms)

    # ------------------------------------------------------------ decisions
    def plan(self, now_ms: int) -> PollPlan:
        """What to poll at ``now_ms``."""
        ring = self.ring
        if ring is None or ring == self.stale_ring or not self.witness_attempted:
            return PollPlan(False, 0, ring, None)
        d = self.decision if self.decision is not None and self.decision.ring == ring else None
        if d is not None and self.lease_valid(now_ms):
            cast = 1 if d.vote == Vote.ACK else 0
            ack = d if d.seq != self.applied_seq else None
            return PollPlan(True, cast, ring, ack)
        if (d is None and self.lease_valid(now_ms)
                and now_ms < self.ring_since_ms + self.pause_limit_ms):
            return PollPlan(False, 0, ring, None)
        return PollPlan(True, 0, ring, None)

    def polled(self, plan: PollPlan) -> None:
        """A poll of ``plan`` succeeded."""
        if plan.ack is not None:
            self.applied_seq = plan.ack.seq

    def next_deadline(self, now_ms: int) -> int | None:
        """When ``plan`` may change without any input (lease end, pause limit)."""
        times = []
        if self.lease_valid(now_ms) and self.lease_until_ms is not None:
            times.append(self.lease_until_ms)
        pause_end = self.ring_since_ms + self.pause_limit_ms
        if self.ring is not None and pause_end > now_ms:
            times.append(pause_end)
        return min(times) if times else None


class Backoff:
    """Capped exponential backoff with jitter (``rng`` injected)."""

    def __init__(self, rng: random.Random, low_s: float = BACKOFF_MIN_S,
                 high_s: float = BACKOFF_MAX_S) -> None:
        self._rng = rng
        self.low_s = low_s
        self.high_s = high_s
        self._next = low_s

    def reset(self) -> None:
        """A connection succeeded."""
        self._next = self.low_s

    def delay(self) -> float:
        """The next delay (seconds); doubles up to the cap."""
        d = self._next * (0.5 + self._rng.random() / 2)
        self._next = min(self.high_s, self._next * 2)
        return d


class _DaemonLost(Exception):
    """The daemon connection failed."""


class _WitnessLost(Exception):
    """The witness connection failed or its lease ran out."""


class Agent:
    """The asyncio agent; ``await run(stop)`` until ``stop`` is set, then returns the
    exit status."""

    def __init__(self, *, witness: tuple[str, int], key: bytes, name: str = DEFAULT_NAME,
                 run_dir: str | None = None, interval_ms: int | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        vq_name_ok = 0 < len(name.encode()) < vq.VOTEQUORUM_QDEVICE_MAX_NAME_LEN
        if not vq_name_ok:
            raise ValueError("the device name must be 1..254 bytes")
        if interval_ms is not None and interval_ms <= 0:
            raise ValueError("the poll interval must be positive")
        self.witness = witness
        self.key = load_key(key)
        self.name = name
        self.run_dir = run_dir
        self.interval_ms = interval_ms
        self._clock = clock
        self._rng = rng or random.Random()
        self.state = AgentState(self._now_ms())
        self.node_id: int | None = None
        self.cluster_name: str | None = None
        self._identity = asyncio.Event()
        self._wake = asyncio.Event()
        self._daemon_gone = asyncio.Event()
        self._stop = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="qdevice-ipc")
        self._session: ClientSession | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._handle: int | None = None
        self._poll_interval_ms = interval_ms or DEFAULT_DEVICE_TIMEOUT_MS // 2
        self._last_cast: int | None = None

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def _call(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor,
                                          functools.partial(fn, *args, **kwargs))

    async def run(self, stop: asyncio.Event) -> int:
        """Run both loops until ``stop`` is set; unregister and return 0."""
        self._stop = stop
        tasks = [asyncio.create_task(self._daemon_loop(), name="daemon"),
                 asyncio.create_task(self._witness_loop(), name="witness")]
        try:
            await stop.wait()
        finally:
            self._wake.set()
            self._identity.set()
            for t in tasks:
                if t.get_name() == "witness":
                    t.cancel()
            done, pending = await asyncio.wait(tasks, timeout=UNREGISTER_TIMEOUT_S + 5)
            for t in pending:
                t.cancel()
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    LOG.error("%s loop failed: %r", t.get_name(), t.exception())
            self._executor.shutdown(wait=False, cancel_futures=True)
        return 0

    # ------------------------------------------------------------ daemon
    def _on_quorum(self, handle: int, context: int, quorate: int,
                   nodes: list[vq.VotequorumNode]) -> None:
        self.state.quorate = bool(quorate)

    def _on_nodelist(self, handle: int, context: int, ring_id: vq.VotequorumRingId,
                     nodeids: list[int]) -> None:
        ring = RingId(ring_id.nodeid, ring_id.seq)
        if self.state.nodelist(ring, nodeids, self._now_ms()):
            LOG.info("ring %s members %s", ring, list(self.state.members))
            self._send_report()
            self._wake.set()

    def _on_events(self, handle: int) -> None:
        try:
            vq.votequorum_dispatch(handle, vq.CS_DISPATCH_ALL)
        except CsError as e:
            if e.code != CsErr.CS_ERR_TRY_AGAIN:
                LOG.warning("votequorum dispatch failed: %s", e)
                self._daemon_gone.set()
                self._wake.set()

    async def _daemon_loop(self) -> None:
        backoff = Backoff(self._rng)
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            handle: int | None = None
            fd: int | None = None
            try:
                self._daemon_gone.clear()
                callbacks = vq.VotequorumCallbacks(quorum_notify_fn=self._on_quorum,
                                                   nodelist_notify_fn=self._on_nodelist)
                handle = await self._call(vq.votequorum_initialize, callbacks,
                                          run_dir=self.run_dir)
                await self._learn_identity(handle)
                await self._call(vq.votequorum_qdevice_register, handle, self.name)
                LOG.info("registered quorum device %r as node %s of cluster %s",
                         self.name, self.node_id, self.cluster_name)
                fd = vq.votequorum_fd_get(handle)
                loop.add_reader(fd, self._on_events, handle)
                await self._call(vq.votequorum_trackstart, handle, 0,
                                 vq.CS_TRACK_CURRENT | vq.CS_TRACK_CHANGES)
                self._handle = handle
                backoff.reset()
                await self._poll_loop(handle)
                if self._stop.is_set():
                    await self._unregister(handle)
            except (CsError, _DaemonLost) as e:
                LOG.warning("daemon connection: %s", e)
            finally:
                self._handle = None
                if fd is not None:
                    loop.remove_reader(fd)
                if handle is not None:
                    with contextlib.suppress(CsError):
                        vq.votequorum_finalize(handle)
                if self.state.ring is not None:
                    self.state.daemon_lost(self._now_ms())
                    self._send_report()
                self._last_cast = None
            if not self._stop.is_set():
                await wait_event(self._stop, backoff.delay())

    async def _learn_identity(self, handle: int) -> None:
        info = await self._call(vq.votequorum_getinfo, handle, 0)
        keys = await self._call(cmap.cmap_get_prefix, "", run_dir=self.run_dir)
        name = keys.get("totem.cluster_name", "")
        if not name:
            raise _DaemonLost("the daemon has no totem.cluster_name")
        device_timeout = _int(keys.get("quorum.device.timeout"), DEFAULT_DEVICE_TIMEOUT_MS)
        sync_timeout = _int(keys.get("quorum.device.sync_timeout"), DEFAULT_SYNC_TIMEOUT_MS)
        self._poll_interval_ms = self.interval_ms or max(1, device_timeout // 2)
        if self._poll_interval_ms >= device_timeout:
            LOG.warning("poll interval %d ms is not below quorum.device.timeout %d ms: the "
                        "daemon will withdraw the vote between polls",
                        self._poll_interval_ms, device_timeout)
        self.state.pause_limit_ms = sync_timeout
        if self.node_id is not None and (self.node_id, self.cluster_name) != (info.node_id, name):
            LOG.warning("the daemon is now node %d of %s (was %s of %s)", info.node_id, name,
                        self.node_id, self.cluster_name)
            self._drop_witness()
        self.node_id, self.cluster_name = info.node_id, name
        self._identity.set()

    async def _poll_loop(self, handle: int) -> None:
        last_poll_ms: int | None = None
        while not self._stop.is_set():
            if self._daemon_gone.is_set():
                raise _DaemonLost("the daemon closed the connection")
            now = self._now_ms()
            plan = self.state.plan(now)
            due = (last_poll_ms is None or plan.ack is not None or plan.cast_vote != self._last_cast
                   or now >= last_poll_ms + self._poll_interval_ms)
            if plan.poll and due and plan.ring is not None:
                ok = await self._poll(handle, plan)
                last_poll_ms = self._now_ms()
                if not ok:  # rate-limit retries after a refused poll
                    await wait_event(self._stop, RETRY_S)
                continue
            wake_at = [] if last_poll_ms is None else [last_poll_ms + self._poll_interval_ms]
            deadline = self.state.next_deadline(now)
            if deadline is not None:
                wake_at.append(deadline)
            delay = max(0.0, (min(wake_at) - now) / 1000) if wake_at else None
            await wait_event(self._wake, delay)
            self._wake.clear()

    async def _poll(self, handle: int, plan: PollPlan) -> bool:
        """Poll as ``plan`` says; False if the daemon refused in a way worth a retry."""
        assert plan.ring is not None
        ring = vq.VotequorumRingId(plan.ring.rep, plan.ring.seq)
        try:
            await self._call(vq.votequorum_qdevice_poll, handle, self.name, plan.cast_vote, ring)
        except CsError as e:
            if e.code == CsErr.CS_ERR_MESSAGE_ERROR:
                LOG.info("ring %s is stale for the daemon; waiting for the new one", plan.ring)
                self.state.poll_stale(plan.ring)
                return True
            if e.code == CsErr.CS_ERR_NOT_EXIST:
                LOG.warning("the device is not registered any more; registering again")
                await self._call(vq.votequorum_qdevice_register, handle, self.name)
                return False
            if e.code == CsErr.CS_ERR_TRY_AGAIN:
                return False
            raise
        self.state.polled(plan)
        if plan.cast_vote != self._last_cast:
            LOG.info("%s the vote in ring %s", "casting" if plan.cast_vote else "not casting",
                     plan.ring)
        self._last_cast = plan.cast_vote
        if plan.ack is not None:
            self._send(VoteApplied(plan.ack.seq, plan.ack.ring, plan.ack.vote))
        return True

    async def _unregister(self, handle: int) -> None:
        try:
            async with asyncio.timeout(UNREGISTER_TIMEOUT_S):
                await self._call(vq.votequorum_qdevice_unregister, handle, self.name)
            LOG.info("unregistered quorum device %r", self.name)
        except (CsError, TimeoutError) as e:
            LOG.warning("could not unregister the device: %r", e)

    # ------------------------------------------------------------ witness
    def _send(self, msg: Heartbeat | MembershipReport | VoteApplied | Error) -> None:
        session, writer = self._session, self._writer
        if session is None or writer is None or writer.is_closing():
            return
        session.send(msg)
        writer.write(session.take_output())

    def _send_report(self) -> None:
        if self._session is not None and self._session.welcome is not None:
            self._send(self.state.report())

    def _drop_witness(self) -> None:
        if self._writer is not None:
            self._writer.close()

    async def _witness_loop(self) -> None:
        backoff = Backoff(self._rng)
        host, port = self.witness
        while not self._stop.is_set():
            await self._identity.wait()
            if self._stop.is_set():
                break
            writer: asyncio.StreamWriter | None = None
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    reader, stream = await asyncio.open_connection(host, port)
                writer = stream
                await self._witness_session(reader, stream, backoff)
            except (OSError, TimeoutError, ProtocolError, _WitnessLost) as e:
                LOG.warning("witness %s:%d: %s", host, port, e or type(e).__name__)
            finally:
                was_up = self.state.witness_up
                self.state.witness_lost()
                self._session = self._writer = None
                if writer is not None:
                    writer.close()
                if was_up:
                    LOG.warning("lost the witness; not casting the vote")
                self._wake.set()
            if not self._stop.is_set():
                await wait_event(self._stop, backoff.delay())

    async def _witness_session(self, reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter, backoff: Backoff) -> None:
        assert self.node_id is not None and self.cluster_name is not None
        session = ClientSession(self.key, cluster_name=self.cluster_name,
                                node_id=self.node_id, nonce=os.urandom(NONCE_BYTES))
        hello_sent_ms = 0
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            while session.welcome is None:
                data = await reader.read(65536)
                if not data:
                    session.eof()
                    raise _WitnessLost("the witness closed the connection")
                msgs = session.feed(data)
                out = session.take_output()
                if out:
                    hello_sent_ms = self._now_ms()
                    writer.write(out)
                for msg in msgs:
                    if isinstance(msg, Error):
                        raise _WitnessLost(f"refused: {_error_text(msg)}")
        welcome = session.welcome
        assert isinstance(welcome, Welcome)
        if not 0 < welcome.heartbeat_ms < welcome.timeout_ms:
            raise _WitnessLost(f"bad timing from the witness: {welcome}")
        self._session, self._writer = session, writer
        self.state.witness_connected(welcome.timeout_ms, hello_sent_ms)
        LOG.info("connected to the witness %s:%d (heartbeat %d ms, timeout %d ms)",
                 *self.witness, welcome.heartbeat_ms, welcome.timeout_ms)
        backoff.reset()
        if self.state.ring is not None:  # else the first nodelist event will report
            self._send_report()
        self._wake.set()
        pending: dict[int, int] = {}
        beat = asyncio.create_task(self._heartbeats(welcome.heartbeat_ms, pending))
        try:
            while True:
                read = asyncio.ensure_future(reader.read(65536))
                await asyncio.wait([read, beat], return_when=asyncio.FIRST_COMPLETED)
                if beat.done():
                    read.cancel()
                    beat.result()  # raises _WitnessLost
                    return
                data = read.result()
                if not data:
                    session.eof()
                    raise _WitnessLost("the witness closed the connection")
                for msg in session.feed(data):
                    self._on_witness_message(msg, pending)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, _WitnessLost):
                await beat

    async def _heartbeats(self, interval_ms: int, pending: dict[int, int]) -> None:
        seq = 0
        while True:
            now = self._now_ms()
            if not self.state.lease_valid(now):
                raise _WitnessLost("no answer from the witness within its timeout")
            seq += 1
            pending[seq] = now
            while len(pending) > MAX_PENDING_HEARTBEATS:
                del pending[min(pending)]
            self._send(Heartbeat(seq))
            await asyncio.sleep(interval_ms / 1000)

    def _on_witness_message(self, msg: object, pending: dict[int, int]) -> None:
        if isinstance(msg, HeartbeatReply):
            sent = pending.pop(msg.seq, None)
            if sent is not None:
                self.state.heartbeat_answered(sent)
        elif isinstance(msg, VoteInfo):
            if self.state.vote_info(msg):
                LOG.info("witness: %s for ring %s", msg.vote.name, msg.ring)
                self._wake.set()
            else:
                LOG.debug("witness: ignoring %s for ring %s (current %s)", msg.vote.name,
                          msg.ring, self.state.ring)
        elif isinstance(msg, Error):
            raise _WitnessLost(f"closed by the witness: {_error_text(msg)}")


def _error_text(msg: Error) -> str:
    try:
        name = ErrorCode(msg.code).name
    except ValueError:
        name = str(msg.code)
    return f"{name} {msg.text}"


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


# ====================================================================== command line
def build_parser() -> argparse.ArgumentParser:
    """The command line of ``pyquorum-qdevice``."""
    p = argparse.ArgumentParser(
        prog="pyquorum-qdevice",
        description="Quorum device agent: registers a quorum device with the local "
                    "pyquorumd and casts its vote as pyquorum-witness decides (like "
                    "corosync-qdevice with model net).")
    p.add_argument("--run-dir", default=None, metavar="DIR",
                   help="the daemon's run directory (default $PYQUORUM_RUN_DIR or "
                        "/run/pyquorum)")
    p.add_argument("--witness", required=True, metavar="HOST:PORT",
                   help="address of pyquorum-witness")
    p.add_argument("--key", required=True, metavar="FILE",
                   help="the witness's shared key file")
    p.add_argument("--name", default=DEFAULT_NAME, help=f"device name (default {DEFAULT_NAME})")
    p.add_argument("--interval-ms", type=int, default=None, metavar="N",
                   help="poll interval (default half the cluster's quorum.device.timeout)")
    p.add_argument("--debug", action="store_true", help="log debug messages")
    return p


async def _run(agent: Agent) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await agent.run(stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pyquorum-qdevice``; returns the exit status."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s pyquorum-qdevice %(levelname)s %(message)s",
                        stream=sys.stderr)
    try:
        witness = parse_hostport(args.witness)
        with open(args.key, "rb") as f:
            key = load_key(f.read())
        agent = Agent(witness=witness, key=key, name=args.name, run_dir=args.run_dir,
                      interval_ms=args.interval_ms)
    except (ValueError, OSError) as e:
        print(f"pyquorum-qdevice: {e}", file=sys.stderr)
        return 1
    return asyncio.run(_run(agent))


if __name__ == "__main__":
    sys.exit(main())
