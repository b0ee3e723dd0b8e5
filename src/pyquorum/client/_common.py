"""The machinery shared by ``quorum`` and ``votequorum``: per-handle state, finalize,
fd_get, context, requests and the dispatch loop (spec section 3.5-3.7 and 4.8).

Theory of operation
-------------------
Every public call looks its handle up in ``HANDLES`` and holds a reference for its
duration.  ``finalize`` sets the instance's ``finalized`` flag (a second finalize, from
any thread, gets BAD_HANDLE), shuts the sockets down so that a dispatch blocked in
another thread wakes up, and destroys the handle: new lookups fail at once and the
sockets are closed when the last reference goes.

``dispatch(handle, flags)``::

    1. flags not in {ONE, ALL, BLOCKING, ONE_NONBLOCKING}   -> INVALID_PARAM (before 2)
    2. bad handle                                             -> BAD_HANDLE
    3. loop: read one event (waiting forever for ONE/BLOCKING, not at all otherwise)
         nothing queued   ONE_NONBLOCKING -> TRY_AGAIN;  ALL -> OK;  ONE/BLOCKING: wait on
         fd closed (EBADF)                -> OK, quietly
         daemon gone                      -> BAD_HANDLE if finalized meanwhile, else LIBRARY
         an event         run its callback (a None callback just consumes it);
                          an event the handle's model does not expect -> LIBRARY
         finalized (in the callback or by another thread)             -> BAD_HANDLE
         ONE, ONE_NONBLOCKING -> OK after this first event; ALL and BLOCKING: go on
"""

from __future__ import annotations

import threading
from typing import Final, TypeVar

from pyquorum.client._conn import Connection, EventStatus, cs_code
from pyquorum.client._handles import HANDLES
from pyquorum.errors import CsErr, CsError

__all__ = [
    "CS_DISPATCH_ALL",
    "CS_DISPATCH_BLOCKING",
    "CS_DISPATCH_ONE",
    "CS_DISPATCH_ONE_NONBLOCKING",
    "CS_TRACK_CHANGES",
    "CS_TRACK_CHANGES_ONLY",
    "CS_TRACK_CURRENT",
    "ClientInstance",
    "check_error",
    "check_uint",
    "context_get",
    "context_set",
    "dispatch",
    "fd_get",
    "finalize",
    "request",
    "wait_readable",
]

CS_DISPATCH_ONE: Final = 1
CS_DISPATCH_ALL: Final = 2
CS_DISPATCH_BLOCKING: Final = 3
CS_DISPATCH_ONE_NONBLOCKING: Final = 4

CS_TRACK_CURRENT: Final = 0x01
CS_TRACK_CHANGES: Final = 0x02
CS_TRACK_CHANGES_ONLY: Final = 0x04

_DISPATCH_FLAGS: Final = (CS_DISPATCH_ONE, CS_DISPATCH_ALL, CS_DISPATCH_BLOCKING,
                          CS_DISPATCH_ONE_NONBLOCKING)


class ClientInstance:
    """What a quorum or votequorum handle refers to."""

    def __init__(self, conn: Connection, context: object) -> None:
        self.conn = conn
        self.context = context
        self.finalized = False
        self._lock = threading.Lock()

    def release(self) -> None:
        """The last reference is gone: close the sockets."""
        self.conn.close()

    def claim_finalize(self) -> bool:
        """Set ``finalized``; False if another thread got there first."""
        with self._lock:
            if self.finalized:
                return False
            self.finalized = True
            return True

    def deliver(self, handle: int, event: object) -> None:
        """Run the callback of one event; raise ``CsError(LIBRARY)`` for an event this
        handle does not expect."""
        raise NotImplementedError

    def run_dispatch(self, handle: int, flags: int) -> None:
        """The dispatch loop (module docstring, step 3); the caller holds a reference."""
        block = flags in (CS_DISPATCH_ONE, CS_DISPATCH_BLOCKING)
        while True:
            event = self.conn.read_event(block)
            if event is EventStatus.NOTHING:
                if flags == CS_DISPATCH_ONE_NONBLOCKING:
                    raise CsError(CsErr.CS_ERR_TRY_AGAIN)
                if flags == CS_DISPATCH_ALL:
                    return
                continue
            if event is EventStatus.CLOSED_FD:
                return
            if event is EventStatus.DISCONNECTED:
                if self.finalized:
                    raise CsError(CsErr.CS_ERR_BAD_HANDLE)
                raise CsError(CsErr.CS_ERR_LIBRARY, "the connection to the daemon is lost")
            self.deliver(handle, event)
            if self.finalized:
                raise CsError(CsErr.CS_ERR_BAD_HANDLE)
            if flags in (CS_DISPATCH_ONE, CS_DISPATCH_ONE_NONBLOCKING):
                return


T = TypeVar("T")


def check_error(error: int) -> None:
    """Raise ``CsError`` unless a response's ``error`` is CS_OK."""
    if error != CsErr.CS_OK:
        raise CsError(cs_code(error))


def check_uint(value: object, bits: int = 32) -> int:
    """An unsigned C integer argument; anything else is INVALID_PARAM."""
    if not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise CsError(CsErr.CS_ERR_INVALID_PARAM, f"not a u{bits}: {value!r}")
    return int(value)


def finalize(handle: int, kind: type[ClientInstance]) -> None:
    """quorum_finalize / votequorum_finalize."""
    with HANDLES.acquire(handle, kind) as inst:
        if not inst.claim_finalize():
            raise CsError(CsErr.CS_ERR_BAD_HANDLE)
        inst.conn.shutdown()
        HANDLES.destroy(handle)


def fd_get(handle: int, kind: type[ClientInstance]) -> int:
    """The event fd (no IPC; it works after the daemon died)."""
    with HANDLES.acquire(handle, kind) as inst:
        return inst.conn.fileno()


def wait_readable(handle: int, kind: type[ClientInstance], timeout_ms: int) -> bool:
    """Wait (holding a reference, so the fd stays open) until the event fd is readable
    or hung up; False on timeout.  A finalize from another thread wakes it."""
    with HANDLES.acquire(handle, kind) as inst:
        return inst.conn.wait_readable(timeout_ms)


def context_get(handle: int, kind: type[ClientInstance]) -> object:
    """The opaque context of the handle (no IPC)."""
    with HANDLES.acquire(handle, kind) as inst:
        return inst.context


def context_set(handle: int, kind: type[ClientInstance], context: object) -> None:
    """Store the opaque context of the handle (no IPC)."""
    with HANDLES.acquire(handle, kind) as inst:
        inst.context = context


def request(handle: int, kind: type[ClientInstance], msg: object, response_type: type[T]) -> T:
    """One request on the handle's connection; BAD_HANDLE if it was finalized meanwhile."""
    with HANDLES.acquire(handle, kind) as inst:
        try:
            return inst.conn.request(msg, response_type)
        except CsError as exc:
            if inst.finalized and exc.code == CsErr.CS_ERR_LIBRARY:
                raise CsError(CsErr.CS_ERR_BAD_HANDLE) from None
            raise


def dispatch(handle: int, flags: int, kind: type[ClientInstance]) -> None:
    """quorum_dispatch / votequorum_dispatch (module docstring)."""
    if not isinstance(flags, int) or flags not in _DISPATCH_FLAGS:
        raise CsError(CsErr.CS_ERR_INVALID_PARAM, f"bad dispatch flags {flags!r}")
    with HANDLES.acquire(handle, kind) as inst:
        inst.run_dispatch(handle, flags)
