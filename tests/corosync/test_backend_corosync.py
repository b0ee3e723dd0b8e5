"""The Corosync backend itself on real Corosync: selection, handles, the Pythonic and
asyncio layers (unchanged, on top of the module functions), daemon loss."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from cscluster import CorosyncTarget

from pyquorum.client import (
    AsyncQuorumClient,
    AsyncVotequorumClient,
    Disconnected,
    NodelistEvent,
    QuorumClient,
    QuorumEvent,
    VotequorumClient,
    VotequorumEvent,
    VotequorumNodelistEvent,
    _corosync,
)
from pyquorum.client import quorum as q
from pyquorum.client import votequorum as vq
from pyquorum.client._handles import HANDLES
from pyquorum.errors import CsErr, CsError
from pyquorum.types import RingId

pytestmark = pytest.mark.corosync

WAIT_S = 30.0


def test_handles_are_corosync_handles_selected_by_env_or_keyword(
        cluster: CorosyncTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    with cluster.in_node(1):
        by_env, _ = q.quorum_model_initialize(q.QUORUM_MODEL_V1, None)  # PYQUORUM_BACKEND
        monkeypatch.delenv(_corosync.BACKEND_ENV)
        by_kw, _ = q.quorum_model_initialize(q.QUORUM_MODEL_V1, None, backend="corosync")
        vh = vq.votequorum_initialize(None, backend="corosync")
    try:
        for h in (by_env, by_kw):
            assert HANDLES.holds(h, _corosync.CorosyncQuorum)
        assert HANDLES.holds(vh, _corosync.CorosyncVotequorum)
        assert len({by_env, by_kw, vh}) == 3
        # the public handle is ours, never the C library's
        assert all(HANDLES.holds(h, _corosync.CorosyncInstance) for h in (by_env, by_kw, vh))
    finally:
        q.quorum_finalize(by_env)
        q.quorum_finalize(by_kw)
        vq.votequorum_finalize(vh)


def test_facade_on_corosync(cluster: CorosyncTarget) -> None:
    with cluster.in_node(2):
        client = QuorumClient()
        vclient = VotequorumClient()
    with client, vclient:
        assert client.quorum_type == q.QUORUM_SET
        assert client.getquorate() is True
        client.track()
        first = client.wait_event(WAIT_S)
        second = client.wait_event(WAIT_S)
        assert isinstance(first, NodelistEvent) and isinstance(second, QuorumEvent)
        assert first.members == second.members == (1, 2, 3)
        assert isinstance(second.ring, RingId) and second.ring == first.ring
        assert second.quorate is True
        with pytest.raises(CsError) as e:
            client.track()
        assert e.value.code == CsErr.CS_ERR_EXIST
        assert vclient.getinfo().node_id == 2
        vclient.track(context=42)
        events = [vclient.wait_event(WAIT_S), vclient.wait_event(WAIT_S)]
        assert isinstance(events[0], VotequorumNodelistEvent)
        assert isinstance(events[1], VotequorumEvent)
        assert events[0].context == events[1].context == 42
        assert sorted(events[1].nodes) == [(1, 1), (2, 1), (3, 1)]


def test_asyncio_clients_on_corosync(cluster: CorosyncTarget) -> None:
    async def run() -> tuple[bool, list[object], int]:
        async with AsyncQuorumClient() as client, AsyncVotequorumClient() as vclient:
            quorate = await client.getquorate()
            await client.track()
            got: list[object] = []
            async with asyncio.timeout(WAIT_S):
                async for event in client.events():
                    got.append(event)
                    if len(got) == 2:
                        break
            info = await vclient.getinfo()
            return quorate, got, info.node_id

    # the worker threads asyncio starts for the requests inherit node 3's namespace
    with cluster.in_node(3):
        quorate, got, node_id = asyncio.run(run())
    assert quorate is True and node_id == 3
    assert [type(e) for e in got] == [NodelistEvent, QuorumEvent]


def test_facade_reports_disconnected_when_corosync_dies(
        fresh_cluster: Callable[..., CorosyncTarget]) -> None:
    c = fresh_cluster(1)
    c.start(1)
    with c.in_node(1):
        client = QuorumClient()
    with client:
        client.track()
        assert isinstance(client.wait_event(WAIT_S), NodelistEvent)
        assert isinstance(client.wait_event(WAIT_S), QuorumEvent)
        c.kill(1)
        assert isinstance(client.wait_event(WAIT_S), Disconnected)
        assert client.wait_event(0.1) is None
        with pytest.raises(CsError) as e:
            client.getquorate()
        assert e.value.code == CsErr.CS_ERR_LIBRARY
