"""The process-wide handle table, after libqb's ``hdb``.

Theory of operation
-------------------
A handle is the int ``(check << 32) | index``: ``index`` is a slot of the table and
``check`` a random value in ``1 .. 2**31 - 1`` drawn when the slot is filled, so a valid
handle is never 0 (Pacemaker relies on 0 meaning "no handle") and never carries libqb's
``0xFFFFFFFF`` "no check" upper half (such handles are simply rejected here).

Every slot moves through this table of states::

    state             create     get (lookup)        put (drop a ref)         destroy (finalize)
    EMPTY             ACTIVE,    BAD_HANDLE          -                        BAD_HANDLE
                      refs=1
    ACTIVE            -          refs += 1           refs -= 1; at 0: release  PENDING_REMOVAL,
                                                     and EMPTY                 refs -= 1
    PENDING_REMOVAL   -          BAD_HANDLE          refs -= 1; at 0: release  BAD_HANDLE
                                                     and EMPTY

``create`` holds the creator's reference, which ``destroy`` drops.  An API call takes a
reference for its duration (``acquire``), so the resource (a connection) is released
exactly when the last reference goes: at the end of a finalize, or at the end of a
dispatch still running in another thread or inside whose callback the handle was
finalized.  Slots are reused once EMPTY.

The table (``HANDLES``) is the only mutable module-level state of the client library:
like libqb's ``hdb`` it is process-wide, and every operation holds its lock.  The
resource's ``release`` runs outside the lock.  One table serves both the quorum and
the votequorum library, and both client backends (``pyquorum``, ``corosync``: the
handles of the Corosync backend are entries of this table too, so public handle values
never collide); a lookup names the instance class it expects, so a handle of one library
is a bad handle for the other (as with libqb's separate databases).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Final, Protocol, TypeVar

from pyquorum.errors import CsErr, CsError

__all__ = ["HANDLES", "HandleResource", "HandleTable"]

_CHECK_MAX: Final = 0x7FFFFFFF
_HANDLE_MAX: Final = 0xFFFFFFFFFFFFFFFF


class HandleResource(Protocol):
    """What the table holds: something to release when the last reference goes."""

    def release(self) -> None:
        """Free the resource (close sockets); called once, outside the table lock."""


R = TypeVar("R", bound=HandleResource)


class _State(Enum):
    EMPTY = 0
    ACTIVE = 1
    PENDING_REMOVAL = 2


@dataclass(slots=True)
class _Slot:
    state: _State = _State.EMPTY
    check: int = 0
    refs: int = 0
    resource: HandleResource | None = None


def _bad_handle() -> CsError:
    return CsError(CsErr.CS_ERR_BAD_HANDLE)


class HandleTable:
    """A thread-safe table of reference-counted resources addressed by 64-bit handles."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: list[_Slot] = []

    def create(self, resource: HandleResource) -> int:
        """Store ``resource`` in a free slot (reusing EMPTY ones) and return its handle."""
        check = secrets.randbelow(_CHECK_MAX) + 1
        with self._lock:
            index = next((i for i, s in enumerate(self._slots) if s.state is _State.EMPTY),
                         len(self._slots))
            if index == len(self._slots):
                self._slots.append(_Slot())
            slot = self._slots[index]
            slot.state = _State.ACTIVE
            slot.check = check
            slot.refs = 1
            slot.resource = resource
        return (check << 32) | index

    def _slot_of(self, handle: object) -> _Slot:
        """The slot a handle names if it is ACTIVE (lock held); raise BAD_HANDLE otherwise."""
        if not isinstance(handle, int) or not 0 < handle <= _HANDLE_MAX:
            raise _bad_handle()
        index = handle & 0xFFFFFFFF
        check = handle >> 32
        if index >= len(self._slots):
            raise _bad_handle()
        slot = self._slots[index]
        if slot.state is not _State.ACTIVE or slot.check != check:
            raise _bad_handle()
        return slot

    def get(self, handle: object, kind: type[R]) -> R:
        """Take a reference; raise ``CsError(BAD_HANDLE)`` for a stale, finalized or
        foreign handle, or one whose resource is not a ``kind``."""
        with self._lock:
            slot = self._slot_of(handle)
            resource = slot.resource
            if not isinstance(resource, kind):
                raise _bad_handle()
            slot.refs += 1
            return resource

    def holds(self, handle: object, kind: type[HandleResource]) -> bool:
        """True if ``handle`` is ACTIVE and its resource is a ``kind`` (no reference is
        taken: the answer only routes a call, which then takes its own)."""
        with self._lock:
            try:
                slot = self._slot_of(handle)
            except CsError:
                return False
            return isinstance(slot.resource, kind)

    def put(self, handle: int) -> None:
        """Drop a reference taken by ``get``; the last one releases the resource."""
        released: HandleResource | None = None
        with self._lock:
            index = handle & 0xFFFFFFFF
            slot = self._slots[index]
            assert slot.refs > 0 and slot.check == handle >> 32, "put without a reference"
            slot.refs -= 1
            if slot.refs == 0:
                released = slot.resource
                self._slots[index] = _Slot()
        if released is not None:
            released.release()

    def destroy(self, handle: int) -> None:
        """Mark the handle pending removal (new lookups fail) and drop the creator's
        reference.  Raise ``CsError(BAD_HANDLE)`` if it is not ACTIVE."""
        with self._lock:
            slot = self._slot_of(handle)
            slot.state = _State.PENDING_REMOVAL
        self.put(handle)

    @contextmanager
    def acquire(self, handle: object, kind: type[R]) -> Iterator[R]:
        """``get`` for the duration of a ``with`` block, then ``put``."""
        resource = self.get(handle, kind)
        assert isinstance(handle, int)
        try:
            yield resource
        finally:
            self.put(handle)

    def __len__(self) -> int:
        """The number of slots not EMPTY (for tests and diagnostics)."""
        with self._lock:
            return sum(1 for s in self._slots if s.state is not _State.EMPTY)


HANDLES: Final = HandleTable()
"""The process-wide table (libqb's ``hdb``): shared by every thread, lock-protected."""
