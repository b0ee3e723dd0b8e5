"""The votequorum library: ``corosync/votequorum.h`` (libvotequorum) in Python.

Handles, finalize, fd_get, context and dispatch behave exactly as in
``pyquorum.client.quorum`` (spec section 4.8).  ``votequorum_initialize`` sends no
request after the connection is set up.  The callbacks receive the ``context`` given to
``votequorum_trackstart`` (carried by every event), not the handle's context.  Failures
raise ``CsError``; values are returned.

Backends: ``votequorum_initialize(..., backend="corosync")`` (or
``PYQUORUM_BACKEND=corosync``) drives a real Corosync daemon through its
``libvotequorum.so.8`` (``pyquorum.client._corosync``); the other functions follow the
handle they are given.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, NamedTuple, TypeAlias

from pyquorum.client import _corosync as _cs
from pyquorum.client._common import (
    CS_DISPATCH_ALL,
    CS_DISPATCH_BLOCKING,
    CS_DISPATCH_ONE,
    CS_DISPATCH_ONE_NONBLOCKING,
    CS_TRACK_CHANGES,
    CS_TRACK_CHANGES_ONLY,
    CS_TRACK_CURRENT,
    ClientInstance,
    check_error,
    check_uint,
    context_get,
    context_set,
    dispatch,
    fd_get,
    finalize,
    request,
    wait_readable,
)
from pyquorum.client._conn import Connection
from pyquorum.client._handles import HANDLES
from pyquorum.errors import CsErr, CsError
from pyquorum.types import RingId
from pyquorum.wire.ipc import (
    SERVICE_VOTEQUORUM,
    VqExpectedVotesEvent,
    VqGetInfoReq,
    VqGetInfoRes,
    VqNodelistEvent,
    VqQdeviceMasterWinsReq,
    VqQdevicePollReq,
    VqQdeviceRegisterReq,
    VqQdeviceUnregisterReq,
    VqQdeviceUpdateReq,
    VqQuorumEvent,
    VqSetExpectedReq,
    VqSetVotesReq,
    VqStatusRes,
    VqTrackStartReq,
    VqTrackStopReq,
)

__all__ = [
    "CS_DISPATCH_ALL",
    "CS_DISPATCH_BLOCKING",
    "CS_DISPATCH_ONE",
    "CS_DISPATCH_ONE_NONBLOCKING",
    "CS_TRACK_CHANGES",
    "CS_TRACK_CHANGES_ONLY",
    "CS_TRACK_CURRENT",
    "VOTEQUORUM_INFO_ALLOW_DOWNSCALE",
    "VOTEQUORUM_INFO_AUTO_TIE_BREAKER",
    "VOTEQUORUM_INFO_LAST_MAN_STANDING",
    "VOTEQUORUM_INFO_QDEVICE_ALIVE",
    "VOTEQUORUM_INFO_QDEVICE_CAST_VOTE",
    "VOTEQUORUM_INFO_QDEVICE_MASTER_WINS",
    "VOTEQUORUM_INFO_QDEVICE_REGISTERED",
    "VOTEQUORUM_INFO_QUORATE",
    "VOTEQUORUM_INFO_TWONODE",
    "VOTEQUORUM_INFO_WAIT_FOR_ALL",
    "VOTEQUORUM_NODESTATE_DEAD",
    "VOTEQUORUM_NODESTATE_LEAVING",
    "VOTEQUORUM_NODESTATE_MEMBER",
    "VOTEQUORUM_QDEVICE_DEFAULT_SYNC_TIMEOUT",
    "VOTEQUORUM_QDEVICE_DEFAULT_TIMEOUT",
    "VOTEQUORUM_QDEVICE_MAX_NAME_LEN",
    "VOTEQUORUM_QDEVICE_NODEID",
    "ExpectedVotesNotify",
    "VotequorumCallbacks",
    "VotequorumInfo",
    "VotequorumNode",
    "VotequorumNodelistNotify",
    "VotequorumNotify",
    "VotequorumRingId",
    "votequorum_context_get",
    "votequorum_context_set",
    "votequorum_dispatch",
    "votequorum_fd_get",
    "votequorum_finalize",
    "votequorum_getinfo",
    "votequorum_initialize",
    "votequorum_qdevice_master_wins",
    "votequorum_qdevice_poll",
    "votequorum_qdevice_register",
    "votequorum_qdevice_unregister",
    "votequorum_qdevice_update",
    "votequorum_setexpected",
    "votequorum_setvotes",
    "votequorum_trackstart",
    "votequorum_trackstop",
]

VOTEQUORUM_INFO_TWONODE: Final = 1
VOTEQUORUM_INFO_QUORATE: Final = 2
VOTEQUORUM_INFO_WAIT_FOR_ALL: Final = 4
VOTEQUORUM_INFO_LAST_MAN_STANDING: Final = 8
VOTEQUORUM_INFO_AUTO_TIE_BREAKER: Final = 16
VOTEQUORUM_INFO_ALLOW_DOWNSCALE: Final = 32
VOTEQUORUM_INFO_QDEVICE_REGISTERED: Final = 64
VOTEQUORUM_INFO_QDEVICE_ALIVE: Final = 128
VOTEQUORUM_INFO_QDEVICE_CAST_VOTE: Final = 256
VOTEQUORUM_INFO_QDEVICE_MASTER_WINS: Final = 512

VOTEQUORUM_NODESTATE_MEMBER: Final = 1
VOTEQUORUM_NODESTATE_DEAD: Final = 2
VOTEQUORUM_NODESTATE_LEAVING: Final = 3

VOTEQUORUM_QDEVICE_NODEID: Final = 0
VOTEQUORUM_QDEVICE_MAX_NAME_LEN: Final = 255
"""Qdevice names are 1..254 bytes."""
VOTEQUORUM_QDEVICE_DEFAULT_TIMEOUT: Final = 10000
VOTEQUORUM_QDEVICE_DEFAULT_SYNC_TIMEOUT: Final = 30000


class VotequorumRingId(NamedTuple):
    """``votequorum_ring_id_t``: ring representative and sequence number."""

    nodeid: int
    seq: int


class VotequorumNode(NamedTuple):
    """``votequorum_node_t``: a node id (0: the qdevice) and its NODESTATE."""

    nodeid: int
    state: int


@dataclass(frozen=True)
class VotequorumInfo:
    """``struct votequorum_info``: the answer of ``votequorum_getinfo``."""

    node_id: int
    node_state: int
    node_votes: int
    node_expected_votes: int
    highest_expected: int
    total_votes: int
    quorum: int
    flags: int
    qdevice_votes: int
    qdevice_name: str


VotequorumNotify: TypeAlias = Callable[[int, int, int, list[VotequorumNode]], None]
"""``(handle, context, quorate, nodes)``."""
VotequorumNodelistNotify: TypeAlias = Callable[[int, int, VotequorumRingId, list[int]], None]
"""``(handle, context, ring_id, nodeids)``."""
ExpectedVotesNotify: TypeAlias = Callable[[int, int, int], None]
"""``(handle, context, expected_votes)``."""


@dataclass
class VotequorumCallbacks:
    """``votequorum_callbacks_t``; any callback may be None (its events are consumed)."""

    quorum_notify_fn: VotequorumNotify | None = None
    nodelist_notify_fn: VotequorumNodelistNotify | None = None
    expectedvotes_notify_fn: ExpectedVotesNotify | None = None


class _VotequorumInstance(ClientInstance):
    """A votequorum handle: connection, a copy of the callbacks, context."""

    def __init__(self, conn: Connection, callbacks: VotequorumCallbacks) -> None:
        super().__init__(conn, None)
        self.callbacks = callbacks

    def deliver(self, handle: int, event: object) -> None:
        """Run the callback for one votequorum event."""
        cbs = self.callbacks
        if isinstance(event, VqQuorumEvent):
            fn = cbs.quorum_notify_fn
            if fn is not None:
                fn(handle, event.context, event.quorate,
                   [VotequorumNode(n.nodeid, n.state) for n in event.nodes])
        elif isinstance(event, VqNodelistEvent):
            fn_nl = cbs.nodelist_notify_fn
            if fn_nl is not None:
                fn_nl(handle, event.context, VotequorumRingId(event.ring.rep, event.ring.seq),
                      list(event.members))
        elif isinstance(event, VqExpectedVotesEvent):
            fn_ev = cbs.expectedvotes_notify_fn
            if fn_ev is not None:
                fn_ev(handle, event.context, event.expected_votes)
        else:
            raise CsError(CsErr.CS_ERR_LIBRARY, f"unexpected event {type(event).__name__}")


def _check_name(name: object) -> str:
    """A qdevice name of 1..254 bytes (as C's strlen sees it), else INVALID_PARAM."""
    if not isinstance(name, str):
        raise CsError(CsErr.CS_ERR_INVALID_PARAM, f"qdevice name {name!r} is not a str")
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        raise CsError(CsErr.CS_ERR_INVALID_PARAM, "qdevice name is not valid text") from None
    if size == 0 or size >= VOTEQUORUM_QDEVICE_MAX_NAME_LEN or "\0" in name:
        raise CsError(CsErr.CS_ERR_INVALID_PARAM, f"bad qdevice name length {size}")
    return name


def _status(handle: int, msg: object) -> None:
    res = request(handle, _VotequorumInstance, msg, VqStatusRes)
    check_error(res.error)


def votequorum_initialize(callbacks: VotequorumCallbacks | None, *,
                          run_dir: str | os.PathLike[str] | None = None,
                          backend: str | None = None) -> int:
    """Connect to the votequorum service and return a handle (no request is sent).

    No daemon (or no votequorum provider): LIBRARY; refused: ACCESS; not ready: TRY_AGAIN.
    ``backend``: ``"pyquorum"`` (default) or ``"corosync"`` (``$PYQUORUM_BACKEND`` when
    None; ``run_dir`` is then unused).
    """
    copied = (VotequorumCallbacks(callbacks.quorum_notify_fn, callbacks.nodelist_notify_fn,
                                  callbacks.expectedvotes_notify_fn)
              if callbacks is not None else VotequorumCallbacks())
    if _cs.select_backend(backend) == _cs.BACKEND_COROSYNC:
        return _cs.votequorum_initialize(copied.quorum_notify_fn, copied.nodelist_notify_fn,
                                         copied.expectedvotes_notify_fn, VotequorumRingId,
                                         VotequorumNode)
    conn = Connection.open(SERVICE_VOTEQUORUM, run_dir)
    return HANDLES.create(_VotequorumInstance(conn, copied))


def votequorum_finalize(handle: int) -> None:
    """Close the handle (see ``quorum_finalize``)."""
    if _cs.holds(handle, _cs.CorosyncVotequorum):
        return _cs.finalize(handle, _cs.CorosyncVotequorum)
    finalize(handle, _VotequorumInstance)


def votequorum_fd_get(handle: int) -> int:
    """The fd to poll for events (see ``quorum_fd_get``)."""
    if _cs.holds(handle, _cs.CorosyncVotequorum):
        return _cs.fd_get(handle, _cs.CorosyncVotequorum)
    return fd_get(handle, _VotequorumInstance)


def votequorum_dispatch(handle: int, flags: int) -> None:
    """Run callbacks for queued events (see ``quorum_dispatch``)."""
    if _cs.holds(handle, _cs.CorosyncVotequorum):
        return _cs.dispatch(handle, flags, _cs.CorosyncVotequorum)
    dispatch(handle, flags, _VotequorumInstance)


def votequorum_context_get(handle: int) -> object:
    """The handle's opaque context (None until set; no IPC)."""
    if _cs.holds(handle, _cs.CorosyncVotequorum):
        return _cs.context_get(handle, _cs.CorosyncVotequorum)
    return context_get(handle, _VotequorumInstance)


def votequorum_context_set(handle: int, context: object) -> None:
    """Store an opaque context on the handle (no IPC)."""
    if _cs.holds(handle, _cs.CorosyncVotequorum):
        return _cs.context_set(handle, _cs.CorosyncVotequorum, context)
    context_set(handle, _VotequorumInstance, context)


def votequorum_getinfo(handle: int, nodeid: int) -> VotequorumInfo:
    """Votes and flags of a node (0: the local node); unknown node: NOT_EXIST."""
    if _cs.holds(handle, _cs.CorosyncVotequorum):
        return VotequorumInfo(*_cs.votequorum_getinfo(handle, nodeid))
    with HANDLES.acquire(handle, _VotequorumInstance):
        msg = VqGetInfoReq(check_uint(nodeid))
        res = request(handle, _VotequorumInstance, msg, VqGetInfoRes)
    check_error(res.error)
    return VotequorumInfo(
        node_id=res.node_id, node_state=res.node_state, node_votes=res.node_votes,
        node_expected_votes=res.node_expected_votes, highest_expected=res.highest_expected,
        total_votes=res.total_votes, quorum=res.quorum, flags=res.flags,
        qdevice_votes=res.qdevice_votes, qdevice_name=res.qdevice_name)


def votequorum_setexpected(handle: int, expected_votes: int) -> None:
    """Set the cluster's expected votes (INVALID_PARAM if it would drop below the votes
    present or make a quorate cluster inquorate)."""
    if _cs.holds(handle, _cs.CorosyncVotequorum):
        return _cs.votequorum_setexpected(handle, expected_votes)
    with HANDLES.acquire(handle, _VotequorumInstance):
        msg = VqSetExpectedReq(check_uint(expected_votes))
        _status(handle, msg)


def votequorum_setvotes(handle: int, nodeid: int, votes: int) -> None:
    """Set a node's votes (unknown node: NAME_NOT_FOUND; nodeid 0: the qdevice)."""
    if _cs.holds(handle, _cs.CorosyncVotequorum):
        return _cs.votequorum_setvotes(handle, nodeid, votes)
    with HANDLES.acquire(handle, _VotequorumInstance):
        msg = VqSetVotesReq(check_uint(nodeid), check_uint(votes))
        _status(handle, msg)


def votequorum_trackstart(handle: int, context: int, flags: int) -> None:
    """Start tracking with ``flags`` (the quorum library's decision table); every event
    to this connection carries ``context`` (a u64).  Already tracking: ``CsError(EXIST)``
    after the snapshot was queued."""
    if _cs.holds(handle, _cs.CorosyncVotequorum):
        return _cs.votequorum_trackstart(handle, context, flags)
    with HANDLES.acquire(handle, _VotequorumInstance):
        msg = VqTrackStartReq(check_uint(context, 64), check_uint(flags))
        _status(handle, msg)


def votequorum_trackstop(handle: int) -> None:
    """Stop tracking; not tracking: ``CsError(NOT_EXIST)``."""
    if _cs.holds(handle, _cs.CorosyncVotequorum):
        return _cs.votequorum_trackstop(handle)
    _status(handle, VqTrackStopReq())


def votequorum_qdevice_register(handle: int, name: str) -> None:
    """Register the local quorum device ``name`` (1..254 bytes, else INVALID_PARAM
    before any IPC)."""
    msg = VqQdeviceRegisterReq(_check_name(name))
    if _cs.holds(handle, _cs.CorosyncVotequorum):
        return _cs.votequorum_qdevice_register(handle, name)
    _status(handle, msg)


def votequorum_qdevice_unregister(handle: int, name: str) -> None:
    """Unregister the local quorum device."""
    msg = VqQdeviceUnregisterReq(_check_name(name))
    if _cs.holds(handle, _cs.CorosyncVotequorum):
        return _cs.votequorum_qdevice_unregister(handle, name)
    _status(handle, msg)


def votequorum_qdevice_update(handle: int, old: str, new: str) -> None:
    """Rename the registered quorum device from ``old`` to ``new`` (both names are
    validated before any IPC)."""
    msg = VqQdeviceUpdateReq(_check_name(old), _check_name(new))
    if _cs.holds(handle, _cs.CorosyncVotequorum):
        return _cs.votequorum_qdevice_update(handle, old, new)
    _status(handle, msg)


def votequorum_qdevice_poll(handle: int, name: str, cast_vote: int,
                            ring_id: VotequorumRingId) -> None:
    """The device is alive and does (``cast_vote`` 1) or does not cast its votes; a
    stale ``ring_id`` gives MESSAGE_ERROR."""
    _check_name(name)
    if _cs.holds(handle, _cs.CorosyncVotequorum):
        return _cs.votequorum_qdevice_poll(handle, name, cast_vote, ring_id)
    with HANDLES.acquire(handle, _VotequorumInstance):
        if not isinstance(ring_id, tuple) or len(ring_id) != 2:
            raise CsError(CsErr.CS_ERR_INVALID_PARAM, f"bad ring id {ring_id!r}")
        ring = RingId(check_uint(ring_id[0]), check_uint(ring_id[1], 64))
        msg = VqQdevicePollReq(name, check_uint(cast_vote), ring)
        _status(handle, msg)


def votequorum_qdevice_master_wins(handle: int, name: str, allow: int) -> None:
    """Set or clear the device's master-wins flag."""
    _check_name(name)
    if _cs.holds(handle, _cs.CorosyncVotequorum):
        return _cs.votequorum_qdevice_master_wins(handle, name, allow)
    with HANDLES.acquire(handle, _VotequorumInstance):
        msg = VqQdeviceMasterWinsReq(name, check_uint(allow))
        _status(handle, msg)


def _votequorum_wait_readable(handle: int, timeout_ms: int) -> bool:
    """For the Pythonic clients: wait until the event fd is readable (not in
    ``votequorum.h``)."""
    if _cs.holds(handle, _cs.CorosyncVotequorum):
        return _cs.wait_readable(handle, _cs.CorosyncVotequorum, timeout_ms)
    return wait_readable(handle, _VotequorumInstance, timeout_ms)
