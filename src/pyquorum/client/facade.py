"""Pythonic clients: context managers that turn callbacks into typed events.

``QuorumClient`` (a V1 quorum handle) and ``VotequorumClient`` wrap the
Corosync-shaped functions of ``pyquorum.client.quorum`` / ``votequorum``; their
callbacks append ``pyquorum.client.events`` objects to a queue that ``dispatch`` and
``wait_event`` hand out in order.  When the daemon goes away a single ``Disconnected``
ends the stream; requests then raise ``CsError(CS_ERR_LIBRARY)``.  Other failures raise
``CsError`` (for example ``track`` while already tracking raises EXIST; the snapshot
is still delivered)::

    with QuorumClient() as client:
        client.track()
        while not isinstance(event := client.wait_event(10.0), Disconnected | None):
            print(event)

A client may be used from several threads: requests and event dispatch use different
sockets.
"""

from __future__ import annotations

import math
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Self

from pyquorum.client import quorum as q
from pyquorum.client import votequorum as vq
from pyquorum.client.events import (
    Disconnected,
    Event,
    ExpectedVotesEvent,
    NodelistEvent,
    QuorumEvent,
    VotequorumEvent,
    VotequorumNodelistEvent,
)
from pyquorum.errors import CsErr, CsError
from pyquorum.types import RingId

__all__ = ["QuorumClient", "VotequorumClient"]

_DEFAULT_TRACK = q.CS_TRACK_CURRENT | q.CS_TRACK_CHANGES


class _EventClient:
    """The event queue, dispatch and wait shared by both clients."""

    def __init__(self, dispatch_fn: Callable[[int, int], None],
                 fd_get_fn: Callable[[int], int],
                 finalize_fn: Callable[[int], None],
                 wait_fn: Callable[[int, int], bool]) -> None:
        self._dispatch_fn = dispatch_fn
        self._wait_fn = wait_fn
        self._fd_get_fn = fd_get_fn
        self._finalize_fn = finalize_fn
        self._handle = 0
        self._fd = -1
        self._queue: deque[Event] = deque()
        self._lock = threading.Lock()
        self._disconnected = False
        self._closed = False

    def _opened(self, handle: int) -> None:
        self._handle = handle
        self._fd = self._fd_get_fn(handle)

    # ------------------------------------------------------------------ properties
    @property
    def handle(self) -> int:
        """The Corosync-shaped handle (usable with the module's functions)."""
        return self._handle

    @property
    def disconnected(self) -> bool:
        """True once ``Disconnected`` was queued."""
        return self._disconnected

    @property
    def closed(self) -> bool:
        """True after ``close``."""
        return self._closed

    def fileno(self) -> int:
        """The event fd: readable when events are queued or the daemon is gone."""
        return self._fd

    # ------------------------------------------------------------------ events
    def _emit(self, event: Event) -> None:
        self._queue.append(event)

    def _hung_up(self) -> bool:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        ready = poller.poll(0)
        return bool(ready) and bool(ready[0][1] & (select.POLLHUP | select.POLLERR))

    def _pump(self, flags: int) -> None:
        """Run one dispatch call, turning a lost daemon into ``Disconnected``."""
        if self._disconnected:
            return
        try:
            self._dispatch_fn(self._handle, flags)
        except CsError as exc:
            if exc.code == CsErr.CS_ERR_TRY_AGAIN:
                return
            if exc.code == CsErr.CS_ERR_BAD_HANDLE and self._closed:
                return  # closed by another thread meanwhile: the stream just ends
            if exc.code == CsErr.CS_ERR_LIBRARY and self._hung_up():
                with self._lock:
                    if not self._disconnected:
                        self._disconnected = True
                        self._queue.append(Disconnected())
                return
            raise

    def _take(self) -> list[Event]:
        out: list[Event] = []
        while self._queue:
            out.append(self._queue.popleft())
        return out

    def dispatch(self, flags: int = q.CS_DISPATCH_ALL) -> list[Event]:
        """Dispatch with ``flags`` (default: everything queued, without waiting) and
        return the events, ``Disconnected`` last if the daemon went away.  With
        ``CS_DISPATCH_BLOCKING`` this returns only when the stream ends (disconnect, or
        ``close`` from another thread)."""
        self._pump(flags)
        return self._take()

    def wait_event(self, timeout: float) -> Event | None:
        """The next event, waiting up to ``timeout`` seconds; None on timeout or when
        the stream has ended (after ``Disconnected``)."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            if self._queue:
                return self._queue.popleft()
            if self._disconnected or self._closed:
                return None
            remaining = deadline - time.monotonic()
            ms = max(0, math.ceil(remaining * 1000))
            try:
                ready = self._wait_fn(self._handle, ms)
            except CsError as exc:
                if exc.code == CsErr.CS_ERR_BAD_HANDLE and self._closed:
                    return None
                raise
            if ready:
                self._pump(q.CS_DISPATCH_ALL)
            elif remaining <= 0:
                return None

    # ------------------------------------------------------------------ life cycle
    def close(self) -> None:
        """Finalize the handle (idempotent); a dispatch blocked elsewhere returns."""
        if self._closed:
            return
        self._closed = True
        try:
            self._finalize_fn(self._handle)
        except CsError as exc:
            if exc.code != CsErr.CS_ERR_BAD_HANDLE:
                raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class QuorumClient(_EventClient):
    """A V1 quorum client: ``QuorumEvent`` and ``NodelistEvent`` events.

    ``quorum_type`` is ``QUORUM_SET`` (1) when a quorum provider is configured, else
    ``QUORUM_FREE`` (0).
    """

    def __init__(self, *, run_dir: str | os.PathLike[str] | None = None) -> None:
        """Connect; raises ``CsError`` (LIBRARY when no daemon runs)."""
        super().__init__(q.quorum_dispatch, q.quorum_fd_get, q.quorum_finalize,
                         q._quorum_wait_readable)
        data = q.QuorumModelV1Data(quorum_notify_fn=self._on_quorum,
                                   nodelist_notify_fn=self._on_nodelist)
        handle, self.quorum_type = q.quorum_model_initialize(q.QUORUM_MODEL_V1, data, None,
                                                             run_dir=run_dir)
        self._opened(handle)

    def _on_quorum(self, handle: int, quorate: int, ring: q.QuorumRingId,
                   members: list[int]) -> None:
        self._emit(QuorumEvent(bool(quorate), RingId(ring.nodeid, ring.seq), tuple(members)))

    def _on_nodelist(self, handle: int, ring: q.QuorumRingId, members: list[int],
                     joined: list[int], left: list[int]) -> None:
        self._emit(NodelistEvent(RingId(ring.nodeid, ring.seq), tuple(members),
                                 tuple(joined), tuple(left)))

    def getquorate(self) -> bool:
        """Whether the cluster is quorate (a request)."""
        return bool(q.quorum_getquorate(self._handle))

    def track(self, flags: int = _DEFAULT_TRACK) -> None:
        """``quorum_trackstart(flags)`` (default CURRENT|CHANGES: a snapshot, then every
        change).  Already tracking: ``CsError(EXIST)``, after the snapshot was queued."""
        q.quorum_trackstart(self._handle, flags)

    def untrack(self) -> None:
        """``quorum_trackstop``."""
        q.quorum_trackstop(self._handle)


class VotequorumClient(_EventClient):
    """A votequorum client: ``VotequorumEvent``, ``VotequorumNodelistEvent`` and
    ``ExpectedVotesEvent`` events."""

    def __init__(self, *, run_dir: str | os.PathLike[str] | None = None) -> None:
        """Connect; raises ``CsError`` (LIBRARY when no daemon runs)."""
        super().__init__(vq.votequorum_dispatch, vq.votequorum_fd_get, vq.votequorum_finalize,
                         vq._votequorum_wait_readable)
        callbacks = vq.VotequorumCallbacks(quorum_notify_fn=self._on_quorum,
                                           nodelist_notify_fn=self._on_nodelist,
                                           expectedvotes_notify_fn=self._on_expected)
        self._opened(vq.votequorum_initialize(callbacks, run_dir=run_dir))

    def _on_quorum(self, handle: int, context: int, quorate: int,
                   nodes: list[vq.VotequorumNode]) -> None:
        self._emit(VotequorumEvent(bool(quorate), tuple((n.nodeid, n.state) for n in nodes),
                                   context))

    def _on_nodelist(self, handle: int, context: int, ring: vq.VotequorumRingId,
                     nodeids: list[int]) -> None:
        self._emit(VotequorumNodelistEvent(RingId(ring.nodeid, ring.seq), tuple(nodeids),
                                           context))

    def _on_expected(self, handle: int, context: int, expected_votes: int) -> None:
        self._emit(ExpectedVotesEvent(expected_votes, context))

    def getinfo(self, nodeid: int = 0) -> vq.VotequorumInfo:
        """Votes and flags of a node (0: the local node)."""
        return vq.votequorum_getinfo(self._handle, nodeid)

    def setexpected(self, expected_votes: int) -> None:
        """Set the cluster's expected votes."""
        vq.votequorum_setexpected(self._handle, expected_votes)

    def setvotes(self, nodeid: int, votes: int) -> None:
        """Set a node's votes."""
        vq.votequorum_setvotes(self._handle, nodeid, votes)

    def track(self, flags: int = _DEFAULT_TRACK, context: int = 0) -> None:
        """``votequorum_trackstart(context, flags)``; events carry ``context``."""
        vq.votequorum_trackstart(self._handle, context, flags)

    def untrack(self) -> None:
        """``votequorum_trackstop`` (not tracking: ``CsError(NOT_EXIST)``)."""
        vq.votequorum_trackstop(self._handle)
