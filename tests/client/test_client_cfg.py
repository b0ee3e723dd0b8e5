"""pyquorum.client.cfg (the libcfg subset) and cmap_set against the fake daemon."""

from __future__ import annotations

import select
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from client_fakedaemon import FakeConn, FakeDaemon

from pyquorum.client import cmap
from pyquorum.client.cfg import (
    CS_DISPATCH_ALL,
    CS_DISPATCH_ONE_NONBLOCKING,
    corosync_cfg_dispatch,
    corosync_cfg_fd_get,
    corosync_cfg_finalize,
    corosync_cfg_initialize,
    corosync_cfg_reload_config,
)
from pyquorum.client.quorum import quorum_finalize, quorum_initialize
from pyquorum.errors import CsErr, CsError
from pyquorum.wire.ipc import (
    SERVICE_CFG,
    SERVICE_CMAP,
    CfgReloadReq,
    CfgReloadRes,
    CmapSetReq,
    VqStatusRes,
    encode_frame,
)


def code_of(fn: Callable[..., object], *args: Any) -> CsErr:
    with pytest.raises(CsError) as info:
        fn(*args)
    return info.value.code


@pytest.fixture
def ch(daemon: FakeDaemon, run_dir: Path) -> Iterator[int]:
    handle = corosync_cfg_initialize(run_dir=run_dir)
    yield handle
    try:
        corosync_cfg_finalize(handle)
    except CsError as exc:
        assert exc.code == CsErr.CS_ERR_BAD_HANDLE


# ------------------------------------------------------------------ cfg
def test_reload_ok(daemon: FakeDaemon, ch: int) -> None:
    conn = daemon.conn()
    assert conn.service == SERVICE_CFG and ch != 0
    assert conn.requests == []  # initialize sends no request
    corosync_cfg_reload_config(ch)
    corosync_cfg_reload_config(ch)
    assert daemon.wait_requests(conn, 2) == [CfgReloadReq(), CfgReloadReq()]
    assert daemon.reloads == 2


def test_reload_library_error(daemon: FakeDaemon, ch: int) -> None:
    daemon.reload_error = int(CsErr.CS_ERR_LIBRARY)
    assert code_of(corosync_cfg_reload_config, ch) == CsErr.CS_ERR_LIBRARY
    daemon.reload_error = int(CsErr.CS_OK)
    corosync_cfg_reload_config(ch)  # the handle is still good
    assert daemon.reloads == 1


def test_callbacks_are_accepted_and_ignored(daemon: FakeDaemon, run_dir: Path) -> None:
    handle = corosync_cfg_initialize(object(), run_dir=run_dir)
    corosync_cfg_reload_config(handle)
    corosync_cfg_finalize(handle)


def test_every_call_after_finalize_is_bad_handle(daemon: FakeDaemon, ch: int) -> None:
    conn = daemon.conn()
    corosync_cfg_finalize(ch)
    assert conn.peer_closed.wait(5)
    for fn, args in ((corosync_cfg_reload_config, ()), (corosync_cfg_finalize, ()),
                     (corosync_cfg_fd_get, ()), (corosync_cfg_dispatch, (CS_DISPATCH_ALL,))):
        assert code_of(fn, ch, *args) == CsErr.CS_ERR_BAD_HANDLE, fn
    assert conn.requests == []


def test_bad_and_foreign_handles(daemon: FakeDaemon, run_dir: Path) -> None:
    assert code_of(corosync_cfg_reload_config, 0) == CsErr.CS_ERR_BAD_HANDLE
    assert code_of(corosync_cfg_reload_config, (5 << 32) | 77) == CsErr.CS_ERR_BAD_HANDLE
    qh, _ = quorum_initialize(None, run_dir=run_dir)
    try:  # a quorum handle is not a cfg handle (libqb's separate handle databases)
        assert code_of(corosync_cfg_reload_config, qh) == CsErr.CS_ERR_BAD_HANDLE
        assert code_of(corosync_cfg_finalize, qh) == CsErr.CS_ERR_BAD_HANDLE
    finally:
        quorum_finalize(qh)


def test_initialize_errors(daemon: FakeDaemon, run_dir: Path) -> None:
    daemon.hello_error = int(CsErr.CS_ERR_ACCESS)
    assert code_of(lambda: corosync_cfg_initialize(run_dir=run_dir)) == CsErr.CS_ERR_ACCESS
    daemon.hello_error = int(CsErr.CS_ERR_LIBRARY)  # no cfg service offered
    assert code_of(lambda: corosync_cfg_initialize(run_dir=run_dir)) == CsErr.CS_ERR_LIBRARY
    daemon.die()
    assert code_of(lambda: corosync_cfg_initialize(run_dir=run_dir)) == CsErr.CS_ERR_LIBRARY


def test_fd_and_dispatch_without_events(daemon: FakeDaemon, ch: int) -> None:
    fd = corosync_cfg_fd_get(ch)
    assert fd >= 0
    assert select.select([fd], [], [], 0)[0] == []
    assert code_of(corosync_cfg_dispatch, ch, CS_DISPATCH_ONE_NONBLOCKING) \
        == CsErr.CS_ERR_TRY_AGAIN
    corosync_cfg_dispatch(ch, CS_DISPATCH_ALL)  # nothing queued: returns
    assert code_of(corosync_cfg_dispatch, ch, 99) == CsErr.CS_ERR_INVALID_PARAM
    daemon.conn().push(VqStatusRes(0))  # cfg has no events: anything is a protocol error
    assert code_of(corosync_cfg_dispatch, ch, CS_DISPATCH_ALL) == CsErr.CS_ERR_LIBRARY


def test_daemon_death(daemon: FakeDaemon, ch: int) -> None:
    fd = corosync_cfg_fd_get(ch)
    daemon.die()
    assert select.select([fd], [], [], 5)[0] == [fd]  # the event fd hangs up
    assert code_of(corosync_cfg_reload_config, ch) == CsErr.CS_ERR_LIBRARY
    assert code_of(corosync_cfg_dispatch, ch, CS_DISPATCH_ALL) == CsErr.CS_ERR_LIBRARY


def test_reload_answer_waits_for_the_daemon(daemon: FakeDaemon, ch: int) -> None:
    """The call returns only with the daemon's answer (a reload completes later)."""
    held: list[FakeConn] = []

    def hold(conn: FakeConn, _msg: object) -> None:
        held.append(conn)
        return None

    daemon.script[CfgReloadReq] = hold
    result: list[CsErr] = []

    def call() -> None:
        try:
            corosync_cfg_reload_config(ch)
            result.append(CsErr.CS_OK)
        except CsError as exc:
            result.append(exc.code)

    t = threading.Thread(target=call)
    t.start()
    daemon.wait_for(lambda: bool(held))
    t.join(0.2)
    assert t.is_alive() and result == []
    held[0].sock.sendall(encode_frame(CfgReloadRes(int(CsErr.CS_ERR_LIBRARY))))
    t.join(5)
    assert result == [CsErr.CS_ERR_LIBRARY]


# ------------------------------------------------------------------ cmap set
def test_cmap_set_trigger_key(daemon: FakeDaemon, run_dir: Path) -> None:
    cmap.cmap_set_uint8(cmap.CMAP_CANCEL_WAIT_FOR_ALL, 1, run_dir=run_dir)
    cmap.cmap_set("quorum.cancel_wait_for_all", "0", run_dir=run_dir)
    daemon.send_event_fd = False  # a short-lived cmap connection needs no event channel
    cmap.cmap_set_uint8("quorum.cancel_wait_for_all", 255, run_dir=run_dir)
    conns = daemon.connections()
    assert [c.service for c in conns] == [SERVICE_CMAP] * 3
    assert [c.requests for c in conns] == [
        [CmapSetReq("quorum.cancel_wait_for_all", "1")],
        [CmapSetReq("quorum.cancel_wait_for_all", "0")],
        [CmapSetReq("quorum.cancel_wait_for_all", "255")]]
    assert daemon.cancel_wfa == 2
    assert all(c.peer_closed.wait(5) for c in conns)  # each call closes its connection


def test_cmap_set_errors(daemon: FakeDaemon, run_dir: Path) -> None:
    assert code_of(lambda: cmap.cmap_set("totem.token", "1", run_dir=run_dir)) \
        == CsErr.CS_ERR_ACCESS
    assert code_of(lambda: cmap.cmap_set("quorum.cancel_wait_for_all", "x",
                                         run_dir=run_dir)) == CsErr.CS_ERR_INVALID_PARAM
    sent = len(daemon.connections())
    for bad in (256, -1, "1", None):  # checked before any IPC
        assert code_of(lambda v=bad: cmap.cmap_set_uint8(  # type: ignore[misc]
            "quorum.cancel_wait_for_all", v, run_dir=run_dir)) == CsErr.CS_ERR_INVALID_PARAM
    assert code_of(lambda: cmap.cmap_set("quorum.cancel_wait_for_all", 1,  # type: ignore[arg-type]
                                         run_dir=run_dir)) == CsErr.CS_ERR_INVALID_PARAM
    assert len(daemon.connections()) == sent
    daemon.script[CmapSetReq] = lambda _c, _m: VqStatusRes(0)  # a wrong answer type
    assert code_of(lambda: cmap.cmap_set("quorum.cancel_wait_for_all", "1",
                                         run_dir=run_dir)) == CsErr.CS_ERR_LIBRARY
    daemon.die()
    assert code_of(lambda: cmap.cmap_set_uint8("quorum.cancel_wait_for_all", 1,
                                               run_dir=run_dir)) == CsErr.CS_ERR_LIBRARY
