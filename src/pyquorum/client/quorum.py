"""The quorum library: ``corosync/quorum.h`` (libquorum) in Python.

Same names, constants and semantics as the C library (spec section 3 and the oracle's
``api-edge-cases.md``), with two differences forced by Python: a failure raises
``pyquorum.errors.CsError`` whose ``.code`` is the ``cs_error_t`` number, and values
come back as return values instead of out-parameters.

Typical use::

    handle, quorum_type = quorum_model_initialize(
        QUORUM_MODEL_V1, QuorumModelV1Data(quorum_notify_fn=on_quorum,
                                           nodelist_notify_fn=on_nodelist))
    quorum_trackstart(handle, CS_TRACK_CURRENT | CS_TRACK_CHANGES)
    poll quorum_fd_get(handle), then quorum_dispatch(handle, CS_DISPATCH_ALL)
    quorum_finalize(handle)

A callback that raises lets the exception out of ``quorum_dispatch`` (the event it was
given is consumed).

Backends: ``backend="corosync"`` on the initialize functions (or ``PYQUORUM_BACKEND=corosync``
in the environment) makes the handle drive a real Corosync daemon through its
``libquorum.so.5`` (``pyquorum.client._corosync``); every other function follows the
handle it is given.  The default, ``"pyquorum"``, talks to ``pyquorumd``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, NamedTuple, TypeAlias, cast

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
from pyquorum.wire.ipc import (
    SERVICE_QUORUM,
    NodelistV1Event,
    QuorumGetQuorateReq,
    QuorumGetQuorateRes,
    QuorumGetTypeReq,
    QuorumGetTypeRes,
    QuorumModelGetTypeReq,
    QuorumStatusRes,
    QuorumTrackStartReq,
    QuorumTrackStopReq,
    QuorumV0Event,
    QuorumV1Event,
)

__all__ = [
    "CS_DISPATCH_ALL",
    "CS_DISPATCH_BLOCKING",
    "CS_DISPATCH_ONE",
    "CS_DISPATCH_ONE_NONBLOCKING",
    "CS_TRACK_CHANGES",
    "CS_TRACK_CHANGES_ONLY",
    "CS_TRACK_CURRENT",
    "QUORUM_FREE",
    "QUORUM_MODEL_V0",
    "QUORUM_MODEL_V1",
    "QUORUM_SET",
    "NodelistNotify",
    "QuorumCallbacks",
    "QuorumModelV0Data",
    "QuorumModelV1Data",
    "QuorumNotifyV0",
    "QuorumNotifyV1",
    "QuorumRingId",
    "quorum_context_get",
    "quorum_context_set",
    "quorum_dispatch",
    "quorum_fd_get",
    "quorum_finalize",
    "quorum_getquorate",
    "quorum_initialize",
    "quorum_model_initialize",
    "quorum_trackstart",
    "quorum_trackstop",
]

QUORUM_MODEL_V0: Final = 0
QUORUM_MODEL_V1: Final = 1
QUORUM_FREE: Final = 0
"""No quorum provider is configured (the node always counts as quorate)."""
QUORUM_SET: Final = 1
"""A quorum provider (votequorum) is configured."""

class QuorumRingId(NamedTuple):
    """``struct quorum_ring_id``: the ring representative and sequence number."""

    nodeid: int
    seq: int


QuorumNotifyV0: TypeAlias = Callable[[int, int, int, list[int]], None]
"""V0 quorum callback: ``(handle, quorate, ring_seq, view_list)``."""
QuorumNotifyV1: TypeAlias = Callable[[int, int, QuorumRingId, list[int]], None]
"""V1 quorum callback: ``(handle, quorate, ring_id, members)``."""
NodelistNotify: TypeAlias = Callable[[int, QuorumRingId, list[int], list[int], list[int]], None]
"""V1 nodelist callback: ``(handle, ring_id, members, joined, left)``."""


@dataclass
class QuorumCallbacks:
    """``quorum_callbacks_t`` (V0): for ``quorum_initialize``."""

    quorum_notify_fn: QuorumNotifyV0 | None = None


@dataclass
class QuorumModelV0Data:
    """``quorum_model_v0_data_t``."""

    quorum_notify_fn: QuorumNotifyV0 | None = None


@dataclass
class QuorumModelV1Data:
    """``quorum_model_v1_data_t``: the quorum and nodelist callbacks of a V1 handle."""

    quorum_notify_fn: QuorumNotifyV1 | None = None
    nodelist_notify_fn: NodelistNotify | None = None


class _QuorumInstance(ClientInstance):
    """A quorum handle: connection, model, a copy of the callbacks, context."""

    def __init__(self, conn: Connection, model: int, notify: object,
                 nodelist: NodelistNotify | None, context: object) -> None:
        super().__init__(conn, context)
        self.model = model
        self.notify = notify
        self.nodelist = nodelist

    def deliver(self, handle: int, event: object) -> None:
        """Run the callback for one event of this handle's model."""
        if self.model == QUORUM_MODEL_V0 and isinstance(event, QuorumV0Event):
            fn0 = cast("QuorumNotifyV0 | None", self.notify)
            if fn0 is not None:
                fn0(handle, event.quorate, event.ring_seq, list(event.members))
        elif self.model == QUORUM_MODEL_V1 and isinstance(event, QuorumV1Event):
            fn1 = cast("QuorumNotifyV1 | None", self.notify)
            if fn1 is not None:
                fn1(handle, event.quorate, QuorumRingId(event.ring.rep, event.ring.seq),
                    list(event.members))
        elif self.model == QUORUM_MODEL_V1 and isinstance(event, NodelistV1Event):
            fn = self.nodelist
            if fn is not None:
                fn(handle, QuorumRingId(event.ring.rep, event.ring.seq), list(event.members),
                   list(event.joined), list(event.left))
        else:
            raise CsError(CsErr.CS_ERR_LIBRARY, f"unexpected event {type(event).__name__}")


def quorum_initialize(callbacks: QuorumCallbacks | None, *,
                      run_dir: str | os.PathLike[str] | None = None,
                      backend: str | None = None) -> tuple[int, int]:
    """Connect as a V0 client; return ``(handle, quorum_type)``.

    Exactly ``quorum_model_initialize(QUORUM_MODEL_V0, callbacks, None)`` (the Corosync
    backend calls C ``quorum_initialize``).
    """
    notify = callbacks.quorum_notify_fn if callbacks is not None else None
    if _cs.select_backend(backend) == _cs.BACKEND_COROSYNC:
        return _cs.quorum_initialize(notify, QuorumRingId)
    data = QuorumModelV0Data(notify) if callbacks is not None else None
    return quorum_model_initialize(QUORUM_MODEL_V0, data, None, run_dir=run_dir,
                                   backend=_cs.BACKEND_PYQUORUM)


def quorum_model_initialize(model: int, model_data: QuorumModelV0Data | QuorumModelV1Data | None,
                            context: object = None, *,
                            run_dir: str | os.PathLike[str] | None = None,
                            backend: str | None = None) -> tuple[int, int]:
    """Connect with the given model; return ``(handle, quorum_type)``.

    A model other than V0/V1 raises INVALID_PARAM before anything else.  V0 sends
    GETTYPE, V1 sends MODEL_GETTYPE(1) (which enables nodelist events and the V1 quorum
    format).  No daemon: LIBRARY; refused: ACCESS; not ready yet: TRY_AGAIN.  The
    callbacks are copied from ``model_data`` (None: a silent handle); ``context`` is the
    initial value of ``quorum_context_get``.  ``backend``: ``"pyquorum"`` (default) or
    ``"corosync"`` (``$PYQUORUM_BACKEND`` when None; ``run_dir`` is then unused).
    """
    if not isinstance(model, int) or model not in (QUORUM_MODEL_V0, QUORUM_MODEL_V1):
        raise CsError(CsErr.CS_ERR_INVALID_PARAM, f"bad quorum model {model!r}")
    notify = getattr(model_data, "quorum_notify_fn", None)
    nodelist = getattr(model_data, "nodelist_notify_fn", None)
    if _cs.select_backend(backend) == _cs.BACKEND_COROSYNC:
        return _cs.quorum_model_initialize(model, notify, nodelist, context, QuorumRingId)
    conn = Connection.open(SERVICE_QUORUM, run_dir)
    try:
        if model == QUORUM_MODEL_V0:
            res = conn.request(QuorumGetTypeReq(), QuorumGetTypeRes)
        else:
            res = conn.request(QuorumModelGetTypeReq(model), QuorumGetTypeRes)
        check_error(res.error)
    except BaseException:
        conn.close()
        raise
    handle = HANDLES.create(_QuorumInstance(conn, model, notify, nodelist, context))
    return handle, res.quorum_type


def quorum_finalize(handle: int) -> None:
    """Close the handle; every later call with it raises BAD_HANDLE (a second finalize
    too).  A dispatch running in another thread, or whose callback called this, returns
    BAD_HANDLE."""
    if _cs.holds(handle, _cs.CorosyncQuorum):
        return _cs.finalize(handle, _cs.CorosyncQuorum)
    finalize(handle, _QuorumInstance)


def quorum_fd_get(handle: int) -> int:
    """The fd to poll: readable when an event is queued, POLLIN|POLLHUP once the daemon
    is gone.  The same fd for the life of the handle; no IPC."""
    if _cs.holds(handle, _cs.CorosyncQuorum):
        return _cs.fd_get(handle, _cs.CorosyncQuorum)
    return fd_get(handle, _QuorumInstance)


def quorum_dispatch(handle: int, flags: int) -> None:
    """Run callbacks for queued events: ``CS_DISPATCH_ONE`` (exactly one, waiting for
    it), ``ALL`` (all queued, never waits), ``BLOCKING`` (forever; returns only on error,
    finalize or disconnect), ``ONE_NONBLOCKING`` (one, or TRY_AGAIN if none is queued).
    Bad flags: INVALID_PARAM (checked before the handle); daemon gone: LIBRARY."""
    if _cs.holds(handle, _cs.CorosyncQuorum):
        return _cs.dispatch(handle, flags, _cs.CorosyncQuorum)
    dispatch(handle, flags, _QuorumInstance)


def quorum_getquorate(handle: int) -> int:
    """1 if the cluster is quorate, else 0 (a request: waits while a view is agreed)."""
    if _cs.holds(handle, _cs.CorosyncQuorum):
        return _cs.quorum_getquorate(handle)
    res = request(handle, _QuorumInstance, QuorumGetQuorateReq(), QuorumGetQuorateRes)
    check_error(res.error)
    return res.quorate


def quorum_trackstart(handle: int, flags: int) -> None:
    """Start tracking: CURRENT or CHANGES queue a snapshot (V1: nodelist then quorum),
    CHANGES or CHANGES_ONLY enable change events.  Already tracking: ``CsError(EXIST)``,
    raised after the snapshot was queued."""
    if _cs.holds(handle, _cs.CorosyncQuorum):
        return _cs.quorum_trackstart(handle, flags)
    with HANDLES.acquire(handle, _QuorumInstance):
        msg = QuorumTrackStartReq(check_uint(flags))
        res = request(handle, _QuorumInstance, msg, QuorumStatusRes)
    check_error(res.error)


def quorum_trackstop(handle: int) -> None:
    """Stop change tracking (succeeds even when not tracking, as Corosync does); events
    already queued stay dispatchable."""
    if _cs.holds(handle, _cs.CorosyncQuorum):
        return _cs.quorum_trackstop(handle)
    res = request(handle, _QuorumInstance, QuorumTrackStopReq(), QuorumStatusRes)
    check_error(res.error)


def quorum_context_set(handle: int, context: object) -> None:
    """Store an opaque context on the handle (no IPC)."""
    if _cs.holds(handle, _cs.CorosyncQuorum):
        return _cs.context_set(handle, _cs.CorosyncQuorum, context)
    context_set(handle, _QuorumInstance, context)


def quorum_context_get(handle: int) -> object:
    """The handle's context: the init-time one until ``quorum_context_set`` (no IPC)."""
    if _cs.holds(handle, _cs.CorosyncQuorum):
        return _cs.context_get(handle, _cs.CorosyncQuorum)
    return context_get(handle, _QuorumInstance)


def _quorum_wait_readable(handle: int, timeout_ms: int) -> bool:
    """For the Pythonic clients: wait until the event fd is readable (not in
    ``quorum.h``)."""
    if _cs.holds(handle, _cs.CorosyncQuorum):
        return _cs.wait_readable(handle, _cs.CorosyncQuorum, timeout_ms)
    return wait_readable(handle, _QuorumInstance, timeout_ms)
