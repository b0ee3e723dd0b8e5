"""The Corosync backend: the client API on top of the real libquorum / libvotequorum.

``pyquorum.client.quorum`` and ``pyquorum.client.votequorum`` normally talk to
``pyquorumd``.  With the backend ``"corosync"`` (the ``backend=`` keyword of the
initialize functions, else ``$PYQUORUM_BACKEND``, else ``"pyquorum"``) they call
Corosync's own C libraries instead, through ctypes: ``libquorum.so.5`` and
``libvotequorum.so.8`` of Corosync 3 (Debian packages ``libquorum5``,
``libvotequorum8``; struct layouts from ``corosync/quorum.h``, ``votequorum.h`` and
``corotypes.h`` of 3.1.7).  The Python signatures, return values, callback arguments
and ``CsError`` codes are those of the native backend.

Theory of operation
-------------------
The libraries are loaded on first use, not at import: importing ``pyquorum.client``
never needs them.  A library that cannot be loaded makes the initialize call raise
``CsError(CS_ERR_LIBRARY)`` whose message names the file and the Debian package.

A handle of this backend is a ``CorosyncQuorum`` / ``CorosyncVotequorum`` resource in
the same process-wide table as the native handles (``_handles.HANDLES``), so public
handle values never collide between backends, stale or foreign handles give BAD_HANDLE
before any C call, and the public modules route a call to this module when the handle
they are given is one of ours (``HANDLES.holds``).  The resource holds the C handle,
the C callback trampolines (``CFUNCTYPE`` objects, kept alive as long as the C handle),
and the context: contexts are Python objects kept on the Python side, never given to C.

Every call takes a table reference for its duration and maps to the C call of the same
name.  Finalize follows the native design (``_common``): it marks the resource
finalized, shuts the library's socket (the fd of ``*_fd_get``) down so that a dispatch
or request blocked in the C library in another thread returns at once, and destroys our
handle; the C ``*_finalize`` runs when the last reference goes.  No C call is ever made
on a C handle that is being finalized (libqb frees the connection in finalize, so the C
library alone would not survive a finalize racing a blocked dispatch).  An error of the C
library after our finalize is reported as BAD_HANDLE, as the native backend does.

Dispatch: ``CS_DISPATCH_ONE`` and ``ONE_NONBLOCKING`` are the C calls.  ``ALL`` runs C
``ONE_NONBLOCKING`` until nothing is queued and ``BLOCKING`` runs C ``ONE`` until an
error, so that an exception raised by a callback leaves ``dispatch`` at once with the
other events still queued (the native contract; a ctypes callback cannot raise into C).
The trampolines are always installed, a Python callback of None just consumes the event.
A dispatch blocked in the C library holds no Python lock but does not run Python signal
handlers until it returns (as in C, a signal does not end a blocking dispatch).

``run_dir`` means nothing here: libqb finds the daemon through abstract Unix sockets of
the caller's network namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import socket
import threading
from collections.abc import Callable
from typing import Any, Final

from pyquorum.client._common import (
    CS_DISPATCH_ALL,
    CS_DISPATCH_BLOCKING,
    CS_DISPATCH_ONE,
    CS_DISPATCH_ONE_NONBLOCKING,
    check_uint,
)
from pyquorum.client._handles import HANDLES
from pyquorum.errors import CsErr, CsError

__all__ = [
    "BACKENDS",
    "BACKEND_COROSYNC",
    "BACKEND_ENV",
    "BACKEND_PYQUORUM",
    "LIBQUORUM",
    "LIBVOTEQUORUM",
    "CorosyncInstance",
    "CorosyncQuorum",
    "CorosyncVotequorum",
    "context_get",
    "context_set",
    "dispatch",
    "fd_get",
    "finalize",
    "holds",
    "quorum_getquorate",
    "quorum_initialize",
    "quorum_model_initialize",
    "quorum_trackstart",
    "quorum_trackstop",
    "select_backend",
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
    "wait_readable",
]

BACKEND_ENV: Final = "PYQUORUM_BACKEND"
BACKEND_PYQUORUM: Final = "pyquorum"
BACKEND_COROSYNC: Final = "corosync"
BACKENDS: Final = (BACKEND_PYQUORUM, BACKEND_COROSYNC)

LIBQUORUM: Final = "libquorum.so.5"
LIBVOTEQUORUM: Final = "libvotequorum.so.8"
_PACKAGES: Final = {LIBQUORUM: "libquorum5", LIBVOTEQUORUM: "libvotequorum8"}

_QUORUM_MODEL_V0: Final = 0
_QUORUM_MODEL_V1: Final = 1
_DISPATCH_FLAGS: Final = (CS_DISPATCH_ONE, CS_DISPATCH_ALL, CS_DISPATCH_BLOCKING,
                          CS_DISPATCH_ONE_NONBLOCKING)


def select_backend(backend: str | None) -> str:
    """The backend to use: ``backend`` if given, else ``$PYQUORUM_BACKEND``, else
    ``"pyquorum"``; anything but ``"pyquorum"``/``"corosync"`` is INVALID_PARAM."""
    name = backend if backend is not None else (os.environ.get(BACKEND_ENV) or
                                                BACKEND_PYQUORUM)
    if name not in BACKENDS:
        where = "backend=" if backend is not None else f"${BACKEND_ENV}"
        raise CsError(CsErr.CS_ERR_INVALID_PARAM,
                      f"unknown client backend {name!r} ({where}): use 'pyquorum' or 'corosync'")
    return name


# ====================================================================== C types
_Handle = ctypes.c_uint64
_U32P = ctypes.POINTER(ctypes.c_uint32)


class _RingId(ctypes.Structure):
    """``struct quorum_ring_id`` and ``votequorum_ring_id_t`` (the same layout)."""

    _fields_ = [("nodeid", ctypes.c_uint32), ("seq", ctypes.c_uint64)]


class _VqNode(ctypes.Structure):
    """``votequorum_node_t``."""

    _fields_ = [("nodeid", ctypes.c_uint32), ("state", ctypes.c_uint32)]


_VQ_NAME_LEN: Final = 255  # VOTEQUORUM_QDEVICE_MAX_NAME_LEN


class _VqInfo(ctypes.Structure):
    """``struct votequorum_info``."""

    _fields_ = [("node_id", ctypes.c_uint), ("node_state", ctypes.c_uint),
                ("node_votes", ctypes.c_uint), ("node_expected_votes", ctypes.c_uint),
                ("highest_expected", ctypes.c_uint), ("total_votes", ctypes.c_uint),
                ("quorum", ctypes.c_uint), ("flags", ctypes.c_uint),
                ("qdevice_votes", ctypes.c_uint),
                ("qdevice_name", ctypes.c_char * _VQ_NAME_LEN)]


# quorum_notification_fn_t (V0): (handle, quorate, ring_seq, n, view_list)
_QUORUM_V0_FN = ctypes.CFUNCTYPE(None, _Handle, ctypes.c_uint32, ctypes.c_uint64,
                                 ctypes.c_uint32, _U32P)
# quorum_v1_quorum_notification_fn_t: (handle, quorate, ring_id, n, member_list)
_QUORUM_V1_FN = ctypes.CFUNCTYPE(None, _Handle, ctypes.c_uint32, _RingId, ctypes.c_uint32,
                                 _U32P)
# quorum_v1_nodelist_notification_fn_t: (handle, ring_id, n, members, n, joined, n, left)
_NODELIST_V1_FN = ctypes.CFUNCTYPE(None, _Handle, _RingId, ctypes.c_uint32, _U32P,
                                   ctypes.c_uint32, _U32P, ctypes.c_uint32, _U32P)
# votequorum_quorum_notification_fn_t: (handle, context, quorate, n, node_list)
_VQ_QUORUM_FN = ctypes.CFUNCTYPE(None, _Handle, ctypes.c_uint64, ctypes.c_uint32,
                                 ctypes.c_uint32, ctypes.POINTER(_VqNode))
# votequorum_nodelist_notification_fn_t: (handle, context, ring_id, n, node_list)
_VQ_NODELIST_FN = ctypes.CFUNCTYPE(None, _Handle, ctypes.c_uint64, _RingId, ctypes.c_uint32,
                                   _U32P)
# votequorum_expectedvotes_notification_fn_t: (handle, context, expected_votes)
_VQ_EXPECTED_FN = ctypes.CFUNCTYPE(None, _Handle, ctypes.c_uint64, ctypes.c_uint32)


class _QuorumCallbacks(ctypes.Structure):
    """``quorum_callbacks_t`` (for ``quorum_initialize``)."""

    _fields_ = [("quorum_notify_fn", _QUORUM_V0_FN)]


class _QuorumModelV0Data(ctypes.Structure):
    """``quorum_model_v0_data_t``."""

    _fields_ = [("model", ctypes.c_int), ("quorum_notify_fn", _QUORUM_V0_FN)]


class _QuorumModelV1Data(ctypes.Structure):
    """``quorum_model_v1_data_t``."""

    _fields_ = [("model", ctypes.c_int), ("quorum_notify_fn", _QUORUM_V1_FN),
                ("nodelist_notify_fn", _NODELIST_V1_FN)]


class _VqCallbacks(ctypes.Structure):
    """``votequorum_callbacks_t`` (note the C order: quorum, expected votes, nodelist)."""

    _fields_ = [("votequorum_quorum_notify_fn", _VQ_QUORUM_FN),
                ("votequorum_expectedvotes_notify_fn", _VQ_EXPECTED_FN),
                ("votequorum_nodelist_notify_fn", _VQ_NODELIST_FN)]


_H = _Handle
_HP = ctypes.POINTER(_Handle)
_INTP = ctypes.POINTER(ctypes.c_int)
_U32PTR = ctypes.POINTER(ctypes.c_uint32)
_STR = ctypes.c_char_p
_UINT = ctypes.c_uint

# name -> (argtypes); every function returns cs_error_t (an int)
_QUORUM_PROTOTYPES: Final[dict[str, list[Any]]] = {
    "quorum_initialize": [_HP, ctypes.POINTER(_QuorumCallbacks), _U32PTR],
    "quorum_model_initialize": [_HP, ctypes.c_int, ctypes.c_void_p, _U32PTR, ctypes.c_void_p],
    "quorum_finalize": [_H],
    "quorum_fd_get": [_H, _INTP],
    "quorum_dispatch": [_H, ctypes.c_int],
    "quorum_getquorate": [_H, _INTP],
    "quorum_trackstart": [_H, _UINT],
    "quorum_trackstop": [_H],
}
_VOTEQUORUM_PROTOTYPES: Final[dict[str, list[Any]]] = {
    "votequorum_initialize": [_HP, ctypes.POINTER(_VqCallbacks)],
    "votequorum_finalize": [_H],
    "votequorum_fd_get": [_H, _INTP],
    "votequorum_dispatch": [_H, ctypes.c_int],
    "votequorum_getinfo": [_H, _UINT, ctypes.POINTER(_VqInfo)],
    "votequorum_setexpected": [_H, _UINT],
    "votequorum_setvotes": [_H, _UINT, _UINT],
    "votequorum_trackstart": [_H, ctypes.c_uint64, _UINT],
    "votequorum_trackstop": [_H],
    "votequorum_qdevice_register": [_H, _STR],
    "votequorum_qdevice_unregister": [_H, _STR],
    "votequorum_qdevice_update": [_H, _STR, _STR],
    "votequorum_qdevice_poll": [_H, _STR, _UINT, _RingId],
    "votequorum_qdevice_master_wins": [_H, _STR, _UINT],
}

_libs: dict[str, ctypes.CDLL] = {}
_libs_lock = threading.Lock()


def _library(name: str, prototypes: dict[str, list[Any]]) -> ctypes.CDLL:
    """Load ``name`` once (thread-safe) and declare its prototypes; LIBRARY if absent."""
    with _libs_lock:
        lib = _libs.get(name)
        if lib is not None:
            return lib
        try:
            lib = ctypes.CDLL(name, use_errno=True)
            for fn_name, argtypes in prototypes.items():
                fn = getattr(lib, fn_name)
                fn.argtypes = argtypes
                fn.restype = ctypes.c_int
        except (OSError, AttributeError) as exc:
            raise CsError(CsErr.CS_ERR_LIBRARY,
                          f"the corosync client backend cannot load {name} (Debian package "
                          f"{_PACKAGES[name]}, pulled in by 'corosync'): {exc}") from None
        _libs[name] = lib
        return lib


def _cs_code(rc: int) -> CsErr:
    try:
        return CsErr(rc)
    except ValueError:
        return CsErr.CS_ERR_LIBRARY


def _u32_list(n: int, ptr: Any) -> list[int]:
    return [int(ptr[i]) for i in range(n)] if n and ptr else []


class _DispatchState(threading.local):
    """Per thread: what the callbacks of the current C dispatch call did."""

    delivered: int = 0
    raised: BaseException | None = None


# ====================================================================== handles
class CorosyncInstance:
    """What a handle of the Corosync backend refers to (a ``HandleResource``)."""

    _prefix = ""

    def __init__(self, lib: ctypes.CDLL, context: object) -> None:
        self.lib = lib
        self.c_handle = 0
        self.handle = 0
        self.context = context
        self.finalized = False
        self.keepalive: list[object] = []
        self._lock = threading.Lock()
        self._state = _DispatchState()

    def fn(self, name: str) -> Any:
        """The C function ``<prefix>_<name>``."""
        return getattr(self.lib, f"{self._prefix}_{name}")

    # ------------------------------------------------------------------ life cycle
    def release(self) -> None:
        """The last reference is gone: finalize the C handle (its result is moot)."""
        if self.c_handle:
            self.fn("finalize")(self.c_handle)
        self.keepalive.clear()

    def claim_finalize(self) -> bool:
        """Set ``finalized``; False if another thread got there first."""
        with self._lock:
            if self.finalized:
                return False
            self.finalized = True
            return True

    def shutdown(self) -> None:
        """Shut the library's socket down: threads blocked in the C library wake up."""
        fd = ctypes.c_int(-1)
        if self.fn("fd_get")(self.c_handle, ctypes.byref(fd)) != CsErr.CS_OK or fd.value < 0:
            return
        with contextlib.suppress(OSError):
            sock = socket.socket(fileno=os.dup(fd.value))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()

    # ------------------------------------------------------------------ calls
    def check(self, rc: int) -> None:
        """Raise ``CsError`` unless ``rc`` is CS_OK (LIBRARY after finalize: BAD_HANDLE)."""
        if rc == CsErr.CS_OK:
            return
        code = _cs_code(rc)
        if self.finalized and code == CsErr.CS_ERR_LIBRARY:
            code = CsErr.CS_ERR_BAD_HANDLE
        raise CsError(code)

    def call(self, name: str, *args: Any) -> None:
        """``<prefix>_<name>(c_handle, *args)``, checked."""
        self.check(int(self.fn(name)(self.c_handle, *args)))

    def fileno(self) -> int:
        """``<prefix>_fd_get``."""
        fd = ctypes.c_int(-1)
        self.call("fd_get", ctypes.byref(fd))
        return int(fd.value)

    def wait_readable(self, timeout_ms: int) -> bool:
        """Wait until the library's fd is readable or hung up; False on timeout."""
        poller = select.poll()
        poller.register(self.fileno(), select.POLLIN)
        try:
            return bool(poller.poll(timeout_ms))
        except OSError:
            return True

    # ------------------------------------------------------------------ dispatch
    def deliver(self, fn: Callable[..., None] | None, *args: Any) -> None:
        """Run a Python callback from a C trampoline; an exception is kept for
        ``dispatch`` to raise when the C call returns."""
        state = self._state
        state.delivered += 1
        if fn is None or self.finalized or state.raised is not None:
            return
        try:
            fn(self.handle, *args)
        except BaseException as exc:  # re-raised by _dispatch_once, after the C call
            state.raised = exc

    def _dispatch_once(self, flags: int) -> int:
        """One C dispatch call; returns how many events it consumed."""
        state = self._state
        state.delivered = 0
        state.raised = None
        rc = int(self.fn("dispatch")(self.c_handle, flags))
        delivered, raised = state.delivered, state.raised
        state.raised = None
        if raised is not None:
            raise raised
        if self.finalized:
            raise CsError(CsErr.CS_ERR_BAD_HANDLE)
        self.check(rc)
        return delivered

    def run_dispatch(self, flags: int) -> None:
        """``<prefix>_dispatch`` (see the module docstring for ALL and BLOCKING)."""
        if flags in (CS_DISPATCH_ONE, CS_DISPATCH_ONE_NONBLOCKING):
            self._dispatch_once(flags)
            return
        one = CS_DISPATCH_ONE if flags == CS_DISPATCH_BLOCKING else CS_DISPATCH_ONE_NONBLOCKING
        while True:
            try:
                delivered = self._dispatch_once(one)
            except CsError as exc:
                if exc.code == CsErr.CS_ERR_TRY_AGAIN and one == CS_DISPATCH_ONE_NONBLOCKING:
                    return  # ALL: the queue is empty
                raise
            if delivered == 0:
                return  # CS_OK without an event: the fd was closed under us (EBADF)


class CorosyncQuorum(CorosyncInstance):
    """A libquorum handle."""

    _prefix = "quorum"


class CorosyncVotequorum(CorosyncInstance):
    """A libvotequorum handle."""

    _prefix = "votequorum"


def holds(handle: object, kind: type[CorosyncInstance]) -> bool:
    """True if ``handle`` is a live handle of this backend of the given kind."""
    return HANDLES.holds(handle, kind)


def _register(inst: CorosyncInstance, rc: int, c_handle: int) -> int:
    """Check the C initialize result and enter the resource in the handle table."""
    if rc != CsErr.CS_OK:
        raise CsError(_cs_code(rc))
    inst.c_handle = c_handle
    try:
        inst.handle = HANDLES.create(inst)
    except BaseException:
        inst.release()
        raise
    return inst.handle


# ====================================================================== quorum
RingFactory = Callable[[int, int], object]
"""Builds the ring id type of the public module from ``(nodeid, seq)``."""


def _quorum_trampolines(inst: CorosyncQuorum, notify: Callable[..., None] | None,
                        nodelist: Callable[..., None] | None,
                        ring: RingFactory) -> tuple[Any, Any, Any]:
    def on_v0(_h: int, quorate: int, ring_seq: int, n: int, view: Any) -> None:
        inst.deliver(notify, int(quorate), int(ring_seq), _u32_list(n, view))

    def on_v1(_h: int, quorate: int, ring_id: _RingId, n: int, members: Any) -> None:
        inst.deliver(notify, int(quorate), ring(int(ring_id.nodeid), int(ring_id.seq)),
                     _u32_list(n, members))

    def on_nodelist(_h: int, ring_id: _RingId, nm: int, members: Any, nj: int, joined: Any,
                    nl: int, left: Any) -> None:
        inst.deliver(nodelist, ring(int(ring_id.nodeid), int(ring_id.seq)),
                     _u32_list(nm, members), _u32_list(nj, joined), _u32_list(nl, left))

    cbs = (_QUORUM_V0_FN(on_v0), _QUORUM_V1_FN(on_v1), _NODELIST_V1_FN(on_nodelist))
    inst.keepalive.extend(cbs)
    return cbs


def quorum_initialize(notify: Callable[..., None] | None, ring: RingFactory) -> tuple[int, int]:
    """C ``quorum_initialize`` (V0); ``(handle, quorum_type)``."""
    lib = _library(LIBQUORUM, _QUORUM_PROTOTYPES)
    inst = CorosyncQuorum(lib, None)
    on_v0, _, _ = _quorum_trampolines(inst, notify, None, ring)
    callbacks = _QuorumCallbacks(on_v0)
    c_handle, quorum_type = _Handle(0), ctypes.c_uint32(0)
    rc = lib.quorum_initialize(ctypes.byref(c_handle), ctypes.byref(callbacks),
                               ctypes.byref(quorum_type))
    return _register(inst, int(rc), int(c_handle.value)), int(quorum_type.value)


def quorum_model_initialize(model: int, notify: Callable[..., None] | None,
                            nodelist: Callable[..., None] | None, context: object,
                            ring: RingFactory) -> tuple[int, int]:
    """C ``quorum_model_initialize``; ``(handle, quorum_type)``.  The context stays on
    the Python side (C gets NULL)."""
    lib = _library(LIBQUORUM, _QUORUM_PROTOTYPES)
    inst = CorosyncQuorum(lib, context)
    on_v0, on_v1, on_nodelist = _quorum_trampolines(inst, notify, nodelist, ring)
    data: ctypes.Structure
    if model == _QUORUM_MODEL_V0:
        data = _QuorumModelV0Data(_QUORUM_MODEL_V0, on_v0)
    else:
        data = _QuorumModelV1Data(_QUORUM_MODEL_V1, on_v1, on_nodelist)
    c_handle, quorum_type = _Handle(0), ctypes.c_uint32(0)
    rc = lib.quorum_model_initialize(ctypes.byref(c_handle), model, ctypes.byref(data),
                                     ctypes.byref(quorum_type), None)
    return _register(inst, int(rc), int(c_handle.value)), int(quorum_type.value)


def quorum_getquorate(handle: int) -> int:
    """C ``quorum_getquorate``."""
    with HANDLES.acquire(handle, CorosyncQuorum) as inst:
        quorate = ctypes.c_int(-1)
        inst.call("getquorate", ctypes.byref(quorate))
        return int(quorate.value)


def quorum_trackstart(handle: int, flags: int) -> None:
    """C ``quorum_trackstart``."""
    with HANDLES.acquire(handle, CorosyncQuorum) as inst:
        inst.call("trackstart", check_uint(flags))


def quorum_trackstop(handle: int) -> None:
    """C ``quorum_trackstop``."""
    with HANDLES.acquire(handle, CorosyncQuorum) as inst:
        inst.call("trackstop")


# ====================================================================== shared calls
def finalize(handle: int, kind: type[CorosyncInstance]) -> None:
    """``*_finalize``: see the module docstring."""
    with HANDLES.acquire(handle, kind) as inst:
        if not inst.claim_finalize():
            raise CsError(CsErr.CS_ERR_BAD_HANDLE)
        inst.shutdown()
        HANDLES.destroy(handle)


def fd_get(handle: int, kind: type[CorosyncInstance]) -> int:
    """C ``*_fd_get``."""
    with HANDLES.acquire(handle, kind) as inst:
        return inst.fileno()


def dispatch(handle: int, flags: int, kind: type[CorosyncInstance]) -> None:
    """C ``*_dispatch``: bad flags are INVALID_PARAM before the handle is looked at."""
    if not isinstance(flags, int) or flags not in _DISPATCH_FLAGS:
        raise CsError(CsErr.CS_ERR_INVALID_PARAM, f"bad dispatch flags {flags!r}")
    with HANDLES.acquire(handle, kind) as inst:
        inst.run_dispatch(flags)


def context_get(handle: int, kind: type[CorosyncInstance]) -> object:
    """The handle's context (kept on the Python side)."""
    with HANDLES.acquire(handle, kind) as inst:
        return inst.context


def context_set(handle: int, kind: type[CorosyncInstance], context: object) -> None:
    """Store the handle's context (kept on the Python side)."""
    with HANDLES.acquire(handle, kind) as inst:
        inst.context = context


def wait_readable(handle: int, kind: type[CorosyncInstance], timeout_ms: int) -> bool:
    """Wait until the handle's fd is readable or hung up; False on timeout."""
    with HANDLES.acquire(handle, kind) as inst:
        return inst.wait_readable(timeout_ms)


# ====================================================================== votequorum
NodeFactory = Callable[[int, int], object]
"""Builds the public ``VotequorumNode`` from ``(nodeid, state)``."""


def votequorum_initialize(quorum_fn: Callable[..., None] | None,
                          nodelist_fn: Callable[..., None] | None,
                          expected_fn: Callable[..., None] | None,
                          ring: RingFactory, node: NodeFactory) -> int:
    """C ``votequorum_initialize``; the handle."""
    lib = _library(LIBVOTEQUORUM, _VOTEQUORUM_PROTOTYPES)
    inst = CorosyncVotequorum(lib, None)

    def on_quorum(_h: int, context: int, quorate: int, n: int, nodes: Any) -> None:
        listed = [node(int(nodes[i].nodeid), int(nodes[i].state)) for i in range(n)] \
            if n and nodes else []
        inst.deliver(quorum_fn, int(context), int(quorate), listed)

    def on_nodelist(_h: int, context: int, ring_id: _RingId, n: int, nodeids: Any) -> None:
        inst.deliver(nodelist_fn, int(context), ring(int(ring_id.nodeid), int(ring_id.seq)),
                     _u32_list(n, nodeids))

    def on_expected(_h: int, context: int, expected_votes: int) -> None:
        inst.deliver(expected_fn, int(context), int(expected_votes))

    cbs = (_VQ_QUORUM_FN(on_quorum), _VQ_EXPECTED_FN(on_expected),
           _VQ_NODELIST_FN(on_nodelist))
    inst.keepalive.extend(cbs)
    callbacks = _VqCallbacks(*cbs)
    c_handle = _Handle(0)
    rc = lib.votequorum_initialize(ctypes.byref(c_handle), ctypes.byref(callbacks))
    return _register(inst, int(rc), int(c_handle.value))


def votequorum_getinfo(handle: int, nodeid: int) -> tuple[int, int, int, int, int, int, int,
                                                          int, int, str]:
    """C ``votequorum_getinfo``: the fields of ``struct votequorum_info`` in order."""
    with HANDLES.acquire(handle, CorosyncVotequorum) as inst:
        node = check_uint(nodeid)
        info = _VqInfo()
        inst.call("getinfo", node, ctypes.byref(info))
        name = bytes(info.qdevice_name).split(b"\0", 1)[0].decode("utf-8", "replace")
        return (int(info.node_id), int(info.node_state), int(info.node_votes),
                int(info.node_expected_votes), int(info.highest_expected),
                int(info.total_votes), int(info.quorum), int(info.flags),
                int(info.qdevice_votes), name)


def votequorum_setexpected(handle: int, expected_votes: int) -> None:
    """C ``votequorum_setexpected``."""
    with HANDLES.acquire(handle, CorosyncVotequorum) as inst:
        inst.call("setexpected", check_uint(expected_votes))


def votequorum_setvotes(handle: int, nodeid: int, votes: int) -> None:
    """C ``votequorum_setvotes``."""
    with HANDLES.acquire(handle, CorosyncVotequorum) as inst:
        inst.call("setvotes", check_uint(nodeid), check_uint(votes))


def votequorum_trackstart(handle: int, context: int, flags: int) -> None:
    """C ``votequorum_trackstart`` (``context`` is the u64 echoed by every event)."""
    with HANDLES.acquire(handle, CorosyncVotequorum) as inst:
        inst.call("trackstart", check_uint(context, 64), check_uint(flags))


def votequorum_trackstop(handle: int) -> None:
    """C ``votequorum_trackstop``."""
    with HANDLES.acquire(handle, CorosyncVotequorum) as inst:
        inst.call("trackstop")


def votequorum_qdevice_register(handle: int, name: str) -> None:
    """C ``votequorum_qdevice_register`` (``name`` already validated)."""
    with HANDLES.acquire(handle, CorosyncVotequorum) as inst:
        inst.call("qdevice_register", name.encode())


def votequorum_qdevice_unregister(handle: int, name: str) -> None:
    """C ``votequorum_qdevice_unregister``."""
    with HANDLES.acquire(handle, CorosyncVotequorum) as inst:
        inst.call("qdevice_unregister", name.encode())


def votequorum_qdevice_update(handle: int, old: str, new: str) -> None:
    """C ``votequorum_qdevice_update``."""
    with HANDLES.acquire(handle, CorosyncVotequorum) as inst:
        inst.call("qdevice_update", old.encode(), new.encode())


def votequorum_qdevice_poll(handle: int, name: str, cast_vote: int,
                            ring_id: tuple[int, int]) -> None:
    """C ``votequorum_qdevice_poll`` (the ring id is passed by value)."""
    with HANDLES.acquire(handle, CorosyncVotequorum) as inst:
        if not isinstance(ring_id, tuple) or len(ring_id) != 2:
            raise CsError(CsErr.CS_ERR_INVALID_PARAM, f"bad ring id {ring_id!r}")
        ring = _RingId(check_uint(ring_id[0]), check_uint(ring_id[1], 64))
        inst.call("qdevice_poll", name.encode(), check_uint(cast_vote), ring)


def votequorum_qdevice_master_wins(handle: int, name: str, allow: int) -> None:
    """C ``votequorum_qdevice_master_wins``."""
    with HANDLES.acquire(handle, CorosyncVotequorum) as inst:
        inst.call("qdevice_master_wins", name.encode(), check_uint(allow))
