"""pyquorum.client.votequorum, cmap and testhook against the fake daemon (spec 4.8-4.9)."""

from __future__ import annotations

import select
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from client_fakedaemon import FakeDaemon

from pyquorum.client import cmap, testhook
from pyquorum.client.quorum import quorum_finalize, quorum_getquorate, quorum_initialize
from pyquorum.client.votequorum import (
    CS_DISPATCH_ALL,
    CS_DISPATCH_BLOCKING,
    CS_DISPATCH_ONE,
    CS_DISPATCH_ONE_NONBLOCKING,
    CS_TRACK_CHANGES,
    CS_TRACK_CURRENT,
    VOTEQUORUM_INFO_QUORATE,
    VotequorumCallbacks,
    VotequorumInfo,
    VotequorumNode,
    VotequorumRingId,
    votequorum_context_get,
    votequorum_context_set,
    votequorum_dispatch,
    votequorum_fd_get,
    votequorum_finalize,
    votequorum_getinfo,
    votequorum_initialize,
    votequorum_qdevice_master_wins,
    votequorum_qdevice_poll,
    votequorum_qdevice_register,
    votequorum_qdevice_unregister,
    votequorum_qdevice_update,
    votequorum_setexpected,
    votequorum_setvotes,
    votequorum_trackstart,
    votequorum_trackstop,
)
from pyquorum.errors import CsErr, CsError
from pyquorum.types import RingId
from pyquorum.wire.ipc import (
    CmapGetPrefixReq,
    QuorumV1Event,
    TestBlockReq,
    VqExpectedVotesEvent,
    VqGetInfoReq,
    VqNodelistEvent,
    VqQdeviceMasterWinsReq,
    VqQdevicePollReq,
    VqQdeviceRegisterReq,
    VqQdeviceUnregisterReq,
    VqQdeviceUpdateReq,
    VqSetExpectedReq,
    VqSetVotesReq,
    VqTrackStartReq,
)


def code_of(fn: Callable[..., object], *args: Any) -> CsErr:
    with pytest.raises(CsError) as info:
        fn(*args)
    return info.value.code


class VqRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.callbacks = VotequorumCallbacks(
            quorum_notify_fn=lambda *a: self.calls.append(("quorum", a)),
            nodelist_notify_fn=lambda *a: self.calls.append(("nodelist", a)),
            expectedvotes_notify_fn=lambda *a: self.calls.append(("expected", a)))


@pytest.fixture
def vrec() -> VqRecorder:
    return VqRecorder()


@pytest.fixture
def vh(daemon: FakeDaemon, run_dir: Path, vrec: VqRecorder) -> Iterator[int]:
    handle = votequorum_initialize(vrec.callbacks, run_dir=run_dir)
    yield handle
    try:
        votequorum_finalize(handle)
    except CsError as exc:
        assert exc.code == CsErr.CS_ERR_BAD_HANDLE


def test_initialize_sends_no_request(daemon: FakeDaemon, vh: int) -> None:
    conn = daemon.conn()
    assert conn.service == 5
    assert vh != 0
    info = votequorum_getinfo(vh, 0)
    assert daemon.wait_requests(conn, 1) == [VqGetInfoReq(0)]
    assert info == VotequorumInfo(node_id=1, node_state=1, node_votes=1, node_expected_votes=3,
                                  highest_expected=3, total_votes=3, quorum=2,
                                  flags=VOTEQUORUM_INFO_QUORATE, qdevice_votes=0,
                                  qdevice_name="")
    assert code_of(votequorum_getinfo, vh, 9) == CsErr.CS_ERR_NOT_EXIST
    assert code_of(votequorum_getinfo, vh, -1) == CsErr.CS_ERR_INVALID_PARAM


def test_no_daemon_is_library(run_dir: Path) -> None:
    assert code_of(lambda: votequorum_initialize(None, run_dir=run_dir)) == CsErr.CS_ERR_LIBRARY


def test_context(vh: int) -> None:
    assert votequorum_context_get(vh) is None
    votequorum_context_set(vh, "ctx")
    assert votequorum_context_get(vh) == "ctx"


def test_tracking_callbacks_carry_the_trackstart_context(daemon: FakeDaemon, vh: int,
                                                         vrec: VqRecorder) -> None:
    votequorum_context_set(vh, "not this one")
    votequorum_trackstart(vh, 0xDEADBEEF12, CS_TRACK_CURRENT | CS_TRACK_CHANGES)
    conn = daemon.conn()
    assert conn.requests[-1] == VqTrackStartReq(0xDEADBEEF12, 3)
    votequorum_setexpected(vh, 5)
    votequorum_dispatch(vh, CS_DISPATCH_ALL)
    ctx = 0xDEADBEEF12
    assert vrec.calls == [
        ("nodelist", (vh, ctx, VotequorumRingId(1, 9), [1, 2, 3])),
        ("quorum", (vh, ctx, 1, [VotequorumNode(1, 1), VotequorumNode(2, 1),
                                  VotequorumNode(3, 1)])),
        ("expected", (vh, ctx, 5)),
    ]
    assert code_of(votequorum_trackstart, vh, 1, CS_TRACK_CHANGES) == CsErr.CS_ERR_EXIST
    votequorum_dispatch(vh, CS_DISPATCH_ALL)
    assert [k for k, _ in vrec.calls[3:]] == ["nodelist", "quorum"]
    assert vrec.calls[3][1][1] == 1  # the snapshot carries the context of this call
    votequorum_trackstop(vh)
    assert code_of(votequorum_trackstop, vh) == CsErr.CS_ERR_NOT_EXIST
    assert code_of(votequorum_trackstart, vh, 2**64, 1) == CsErr.CS_ERR_INVALID_PARAM


def test_setexpected_setvotes_requests(daemon: FakeDaemon, vh: int) -> None:
    votequorum_setexpected(vh, 4)
    votequorum_setvotes(vh, 2, 3)
    conn = daemon.conn()
    assert daemon.wait_requests(conn, 2) == [VqSetExpectedReq(4), VqSetVotesReq(2, 3)]


def test_dispatch_flags_and_none_callbacks(daemon: FakeDaemon, run_dir: Path) -> None:
    handle = votequorum_initialize(None, run_dir=run_dir)
    fd = votequorum_fd_get(handle)
    assert code_of(votequorum_dispatch, handle, 0) == CsErr.CS_ERR_INVALID_PARAM
    assert code_of(votequorum_dispatch, 0, 5) == CsErr.CS_ERR_INVALID_PARAM
    assert code_of(votequorum_dispatch, handle, CS_DISPATCH_ONE_NONBLOCKING) \
        == CsErr.CS_ERR_TRY_AGAIN
    votequorum_dispatch(handle, CS_DISPATCH_ALL)
    daemon.conn().push(VqExpectedVotesEvent(1, 4), VqNodelistEvent(1, RingId(1, 9), (1,)))
    votequorum_dispatch(handle, CS_DISPATCH_ONE)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    assert poller.poll(0) == [(fd, select.POLLIN)]
    votequorum_dispatch(handle, CS_DISPATCH_ONE_NONBLOCKING)
    assert poller.poll(0) == []
    daemon.conn().push(QuorumV1Event(1, RingId(1, 9), (1,)))  # not a votequorum event
    assert code_of(votequorum_dispatch, handle, CS_DISPATCH_ALL) == CsErr.CS_ERR_LIBRARY
    votequorum_finalize(handle)


def test_daemon_death_and_finalize(daemon: FakeDaemon, vh: int) -> None:
    daemon.die()
    fd = votequorum_fd_get(vh)
    for flag in (CS_DISPATCH_ALL, CS_DISPATCH_ONE, CS_DISPATCH_BLOCKING,
                 CS_DISPATCH_ONE_NONBLOCKING):
        assert code_of(votequorum_dispatch, vh, flag) == CsErr.CS_ERR_LIBRARY
    assert code_of(votequorum_getinfo, vh, 0) == CsErr.CS_ERR_LIBRARY
    assert votequorum_fd_get(vh) == fd
    votequorum_finalize(vh)
    for fn, args in ((votequorum_finalize, ()), (votequorum_fd_get, ()),
                     (votequorum_getinfo, (0,)), (votequorum_setexpected, (3,)),
                     (votequorum_setvotes, (1, 1)), (votequorum_trackstart, (0, 1)),
                     (votequorum_trackstop, ()), (votequorum_context_get, ()),
                     (votequorum_context_set, (1,)), (votequorum_dispatch, (CS_DISPATCH_ALL,)),
                     (votequorum_qdevice_register, ("q",))):
        assert code_of(fn, vh, *args) == CsErr.CS_ERR_BAD_HANDLE, fn


def test_finalize_in_callback(daemon: FakeDaemon, run_dir: Path) -> None:
    handle = 0
    calls: list[str] = []

    def on_nodelist(*args: object) -> None:
        calls.append("nodelist")
        votequorum_finalize(handle)

    handle = votequorum_initialize(VotequorumCallbacks(nodelist_notify_fn=on_nodelist),
                                   run_dir=run_dir)
    votequorum_trackstart(handle, 0, CS_TRACK_CURRENT)
    assert code_of(votequorum_dispatch, handle, CS_DISPATCH_ALL) == CsErr.CS_ERR_BAD_HANDLE
    assert calls == ["nodelist"]


def test_quorum_handle_is_bad_for_votequorum(daemon: FakeDaemon, run_dir: Path) -> None:
    handle, _ = quorum_initialize(None, run_dir=run_dir)
    assert code_of(votequorum_getinfo, handle, 0) == CsErr.CS_ERR_BAD_HANDLE
    assert quorum_getquorate(handle) == 1
    quorum_finalize(handle)


@pytest.mark.parametrize("name", ["", "x" * 255, "é" * 128, "a\0b", None])
def test_qdevice_bad_names_before_any_ipc(daemon: FakeDaemon, vh: int, name: Any) -> None:
    """4.9: names of length 0 or >= 255 -> INVALID_PARAM before IPC (and before the
    handle check)."""
    conn = daemon.conn()
    ring = VotequorumRingId(1, 9)
    for handle in (vh, 0):
        assert code_of(votequorum_qdevice_register, handle, name) == CsErr.CS_ERR_INVALID_PARAM
        assert code_of(votequorum_qdevice_unregister, handle, name) \
            == CsErr.CS_ERR_INVALID_PARAM
        assert code_of(votequorum_qdevice_update, handle, name, "ok") \
            == CsErr.CS_ERR_INVALID_PARAM
        assert code_of(votequorum_qdevice_update, handle, "ok", name) \
            == CsErr.CS_ERR_INVALID_PARAM
        assert code_of(votequorum_qdevice_poll, handle, name, 1, ring) \
            == CsErr.CS_ERR_INVALID_PARAM
        assert code_of(votequorum_qdevice_master_wins, handle, name, 1) \
            == CsErr.CS_ERR_INVALID_PARAM
    votequorum_setexpected(vh, 3)  # a request round trip: nothing else was sent before
    assert daemon.wait_requests(conn, 1) == [VqSetExpectedReq(3)]


def test_qdevice_requests(daemon: FakeDaemon, vh: int) -> None:
    name = "q" * 254
    votequorum_qdevice_register(vh, name)
    votequorum_qdevice_poll(vh, name, 1, VotequorumRingId(1, 9))
    votequorum_qdevice_master_wins(vh, name, 1)
    votequorum_qdevice_update(vh, name, "Qdevice")
    votequorum_qdevice_unregister(vh, "Qdevice")
    assert daemon.wait_requests(daemon.conn(), 5) == [
        VqQdeviceRegisterReq(name), VqQdevicePollReq(name, 1, RingId(1, 9)),
        VqQdeviceMasterWinsReq(name, 1), VqQdeviceUpdateReq(name, "Qdevice"),
        VqQdeviceUnregisterReq("Qdevice")]
    assert code_of(votequorum_qdevice_poll, 0, "q", 1, VotequorumRingId(1, 9)) \
        == CsErr.CS_ERR_BAD_HANDLE
    assert code_of(votequorum_qdevice_register, 0, "q") == CsErr.CS_ERR_BAD_HANDLE


def test_cmap_get_prefix(daemon: FakeDaemon, run_dir: Path) -> None:
    assert cmap.cmap_get_prefix("totem.", run_dir=run_dir) == {"totem.token": "3000"}
    assert len(cmap.cmap_get_prefix(run_dir=run_dir)) == 3
    daemon.send_event_fd = False  # the short-lived services need no event channel
    assert cmap.cmap_get_prefix("quorum.", run_dir=run_dir) == {
        "quorum.provider": "corosync_votequorum"}
    conns = daemon.connections()
    assert [c.service for c in conns] == [0, 0, 0]
    assert conns[0].requests == [CmapGetPrefixReq("totem.")]
    assert conns[0].peer_closed.wait(5)
    daemon.die()
    assert code_of(lambda: cmap.cmap_get_prefix(run_dir=run_dir)) == CsErr.CS_ERR_LIBRARY


def test_testhook_block(daemon: FakeDaemon, run_dir: Path) -> None:
    testhook.block([2, 3], run_dir=run_dir)
    testhook.block((), run_dir=run_dir)
    conns = daemon.connections()
    assert [c.service for c in conns] == [99, 99]
    assert [c.requests for c in conns] == [[TestBlockReq((2, 3))], [TestBlockReq(())]]
    daemon.hello_error = int(CsErr.CS_ERR_NOT_SUPPORTED)
    assert code_of(lambda: testhook.block([1], run_dir=run_dir)) == CsErr.CS_ERR_NOT_SUPPORTED
    assert code_of(lambda: testhook.block([-1], run_dir=run_dir)) == CsErr.CS_ERR_INVALID_PARAM
