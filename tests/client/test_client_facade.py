"""The Pythonic clients (facade) and the asyncio clients against the fake daemon."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from client_fakedaemon import WAIT_S, FakeDaemon

from pyquorum.client import (
    AsyncQuorumClient,
    AsyncVotequorumClient,
    Disconnected,
    Event,
    ExpectedVotesEvent,
    NodelistEvent,
    QuorumClient,
    QuorumEvent,
    VotequorumClient,
    VotequorumEvent,
    VotequorumNodelistEvent,
)
from pyquorum.client.quorum import (
    CS_DISPATCH_BLOCKING,
    CS_DISPATCH_ONE_NONBLOCKING,
    CS_TRACK_CHANGES_ONLY,
    quorum_getquorate,
)
from pyquorum.errors import CsErr, CsError
from pyquorum.types import RingId
from pyquorum.wire.ipc import NodelistV1Event, QuorumModelGetTypeReq, QuorumV1Event

R9 = RingId(1, 9)
R13 = RingId(1, 13)
SNAPSHOT: list[Event] = [NodelistEvent(R9, (1, 2, 3), (), ()), QuorumEvent(True, R9, (1, 2, 3))]
CHANGE: list[Event] = [NodelistEvent(R13, (1, 2), (), (3,)), QuorumEvent(False, R13, (1, 2))]


def push_change(daemon: FakeDaemon) -> None:
    daemon.broadcast(NodelistV1Event(R13, (1, 2), (), (3,)), QuorumV1Event(0, R13, (1, 2)))


def test_events_are_frozen_and_slotted() -> None:
    event = QuorumEvent(True, R9, (1,))
    with pytest.raises(AttributeError):
        event.quorate = False  # type: ignore[misc]
    assert not hasattr(event, "__dict__")
    assert Disconnected() == Disconnected()


def test_quorum_client(daemon: FakeDaemon, run_dir: Path) -> None:
    with QuorumClient(run_dir=run_dir) as client:
        assert daemon.wait_requests(daemon.conn(), 1) == [QuorumModelGetTypeReq(1)]
        assert client.quorum_type == 1
        assert client.getquorate() is True
        assert client.handle != 0 and client.fileno() >= 0
        assert client.dispatch() == []
        assert client.wait_event(0.0) is None
        client.track()
        assert client.dispatch() == SNAPSHOT
        push_change(daemon)
        assert [client.wait_event(WAIT_S), client.wait_event(WAIT_S)] == CHANGE
        with pytest.raises(CsError) as info:
            client.track()
        assert info.value.code == CsErr.CS_ERR_EXIST
        assert client.dispatch(CS_DISPATCH_ONE_NONBLOCKING) == SNAPSHOT[:1]
        assert client.dispatch() == SNAPSHOT[1:]
        assert client.dispatch(CS_DISPATCH_ONE_NONBLOCKING) == []
        client.untrack()
        handle = client.handle
    assert client.closed
    client.close()  # idempotent
    with pytest.raises(CsError) as info:
        quorum_getquorate(handle)
    assert info.value.code == CsErr.CS_ERR_BAD_HANDLE


def test_quorum_client_disconnected_ends_the_stream(daemon: FakeDaemon, run_dir: Path) -> None:
    with QuorumClient(run_dir=run_dir) as client:
        client.track()
        push_change(daemon)
        daemon.die()
        events = []
        while (event := client.wait_event(WAIT_S)) is not None:
            events.append(event)
        # Corosync reports the loss at once: events still queued are not delivered.
        assert events[-1] == Disconnected()
        assert events.count(Disconnected()) == 1
        assert client.disconnected
        assert client.dispatch() == []
        assert client.wait_event(WAIT_S) is None  # no wait once the stream has ended
        with pytest.raises(CsError) as info:
            client.getquorate()
        assert info.value.code == CsErr.CS_ERR_LIBRARY


def test_quorum_client_blocking_dispatch_thread(daemon: FakeDaemon, run_dir: Path) -> None:
    client = QuorumClient(run_dir=run_dir)
    client.track(CS_TRACK_CHANGES_ONLY)
    out: list[Event] = []
    thread = threading.Thread(target=lambda: out.extend(client.dispatch(CS_DISPATCH_BLOCKING)))
    thread.start()
    push_change(daemon)
    assert client.getquorate()
    daemon.die()
    thread.join(WAIT_S)
    assert not thread.is_alive()
    assert out[-1] == Disconnected()
    client.close()


def test_close_from_another_thread_ends_wait_event(daemon: FakeDaemon, run_dir: Path) -> None:
    client = QuorumClient(run_dir=run_dir)
    result: list[Event | None] = []
    started = threading.Event()

    def waiter() -> None:
        started.set()
        result.append(client.wait_event(60.0))

    thread = threading.Thread(target=waiter)
    thread.start()
    assert started.wait(WAIT_S)
    client.close()
    thread.join(WAIT_S)
    assert not thread.is_alive()
    assert result == [None]


def test_no_daemon(run_dir: Path) -> None:
    with pytest.raises(CsError) as info:
        QuorumClient(run_dir=run_dir)
    assert info.value.code == CsErr.CS_ERR_LIBRARY
    with pytest.raises(CsError) as info:
        VotequorumClient(run_dir=run_dir)
    assert info.value.code == CsErr.CS_ERR_LIBRARY


def test_votequorum_client(daemon: FakeDaemon, run_dir: Path) -> None:
    with VotequorumClient(run_dir=run_dir) as client:
        assert client.getinfo().quorum == 2
        client.track(context=7)
        client.setexpected(4)
        client.setvotes(1, 1)
        nodes = ((1, 1), (2, 1), (3, 1))
        assert client.dispatch() == [VotequorumNodelistEvent(R9, (1, 2, 3), 7),
                                     VotequorumEvent(True, nodes, 7),
                                     ExpectedVotesEvent(4, 7)]
        client.untrack()
        with pytest.raises(CsError) as info:
            client.untrack()
        assert info.value.code == CsErr.CS_ERR_NOT_EXIST
        daemon.die()
        assert client.wait_event(WAIT_S) == Disconnected()


def test_async_quorum_client(daemon: FakeDaemon, run_dir: Path) -> None:
    async def main() -> list[Event]:
        async with AsyncQuorumClient(run_dir=run_dir) as client:
            assert client.quorum_type == 1
            assert await client.getquorate() is True
            await client.track()
            seen: list[Event] = []
            async for event in client.events():
                seen.append(event)
                if len(seen) == 2:
                    await asyncio.to_thread(push_change, daemon)
                if len(seen) == 4:
                    await asyncio.to_thread(daemon.die)
            return seen

    events = asyncio.run(asyncio.wait_for(main(), WAIT_S))
    assert events == [*SNAPSHOT, *CHANGE, Disconnected()]


def test_async_client_close_ends_the_stream(daemon: FakeDaemon, run_dir: Path) -> None:
    async def main() -> list[Event]:
        client = await AsyncQuorumClient(run_dir=run_dir).connect()
        seen: list[Event] = []
        got_two = asyncio.Event()

        async def consume() -> None:
            async for event in client.events():
                seen.append(event)
                if len(seen) == 2:
                    got_two.set()

        task = asyncio.create_task(consume())
        await client.track()
        await got_two.wait()
        await client.aclose()
        await task
        with pytest.raises(CsError):
            await client.getquorate()
        return seen

    assert asyncio.run(asyncio.wait_for(main(), WAIT_S)) == SNAPSHOT


def test_async_votequorum_client(daemon: FakeDaemon, run_dir: Path) -> None:
    async def main() -> list[Event]:
        async with AsyncVotequorumClient(run_dir=run_dir) as client:
            info = await client.getinfo(0)
            assert info.node_id == 1
            await client.track(context=5)
            await client.setexpected(4)
            await client.setvotes(2, 1)
            seen: list[Event] = []
            async for event in client.events():
                seen.append(event)
                if len(seen) == 3:
                    await asyncio.to_thread(daemon.die)
            return seen

    events = asyncio.run(asyncio.wait_for(main(), WAIT_S))
    assert events == [VotequorumNodelistEvent(R9, (1, 2, 3), 5),
                      VotequorumEvent(True, ((1, 1), (2, 1), (3, 1)), 5),
                      ExpectedVotesEvent(4, 5), Disconnected()]


def test_async_no_daemon(run_dir: Path) -> None:
    async def main() -> None:
        async with AsyncQuorumClient(run_dir=run_dir):
            pass  # pragma: no cover

    with pytest.raises(CsError) as info:
        asyncio.run(main())
    assert info.value.code == CsErr.CS_ERR_LIBRARY
