"""Backend selection and the Corosync backend's own logic, without Corosync.

The real libraries are exercised by tests/corosync (real Corosync 3.1.7); here a fake
``libquorum`` stands in for them, so the selection rules, the lazy loading, the missing
library error and the dispatch / finalize logic of ``_corosync`` are checked everywhere.
"""

from __future__ import annotations

import ctypes
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyquorum.client import _corosync
from pyquorum.client import quorum as q
from pyquorum.client import votequorum as vq
from pyquorum.client._handles import HANDLES
from pyquorum.errors import CsErr, CsError

OK, TRY_AGAIN = CsErr.CS_OK, CsErr.CS_ERR_TRY_AGAIN


def code_of(fn: Callable[[], object]) -> CsErr:
    try:
        fn()
    except CsError as exc:
        return exc.code
    return OK


# ====================================================================== selection
def test_select_backend_default_env_and_keyword(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYQUORUM_BACKEND", raising=False)
    assert _corosync.select_backend(None) == "pyquorum"
    monkeypatch.setenv("PYQUORUM_BACKEND", "")
    assert _corosync.select_backend(None) == "pyquorum"
    monkeypatch.setenv("PYQUORUM_BACKEND", "corosync")
    assert _corosync.select_backend(None) == "corosync"
    assert _corosync.select_backend("pyquorum") == "pyquorum"  # the keyword wins
    with pytest.raises(CsError) as e:
        _corosync.select_backend("corosnyc")
    assert e.value.code == CsErr.CS_ERR_INVALID_PARAM and "backend=" in str(e.value)
    monkeypatch.setenv("PYQUORUM_BACKEND", "nope")
    with pytest.raises(CsError) as e:
        q.quorum_model_initialize(q.QUORUM_MODEL_V1, None)
    assert e.value.code == CsErr.CS_ERR_INVALID_PARAM and "PYQUORUM_BACKEND" in str(e.value)


def test_explicit_pyquorum_backend_ignores_the_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PYQUORUM_BACKEND", "corosync")
    # no pyquorumd in tmp_path: the native backend's answer, LIBRARY, without loading C
    monkeypatch.setattr(_corosync, "_libs", {})
    assert code_of(lambda: q.quorum_model_initialize(
        q.QUORUM_MODEL_V1, None, run_dir=tmp_path, backend="pyquorum")) == CsErr.CS_ERR_LIBRARY
    assert code_of(lambda: vq.votequorum_initialize(
        None, run_dir=tmp_path, backend="pyquorum")) == CsErr.CS_ERR_LIBRARY
    assert _corosync._libs == {}


def test_importing_the_client_loads_no_corosync_library() -> None:
    code = ("import pyquorum.client, pyquorum.client.quorum, pyquorum.client.votequorum\n"
            "from pyquorum.client import _corosync\n"
            "assert _corosync._libs == {}\n"
            "maps = open('/proc/self/maps').read()\n"
            "assert 'libquorum' not in maps and 'libvotequorum' not in maps\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_missing_library_is_cs_err_library_naming_the_package(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_library(name: str, *args: Any, **kwargs: Any) -> ctypes.CDLL:
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(_corosync, "_libs", {})
    monkeypatch.setattr(_corosync.ctypes, "CDLL", no_such_library)
    for call, lib, package in [
        (lambda: q.quorum_model_initialize(q.QUORUM_MODEL_V1, None, backend="corosync"),
         "libquorum.so.5", "libquorum5"),
        (lambda: q.quorum_initialize(None, backend="corosync"), "libquorum.so.5", "libquorum5"),
        (lambda: vq.votequorum_initialize(None, backend="corosync"),
         "libvotequorum.so.8", "libvotequorum8"),
    ]:
        with pytest.raises(CsError) as e:
            call()
        assert e.value.code == CsErr.CS_ERR_LIBRARY
        assert lib in str(e.value) and package in str(e.value)
    # an invalid model is still INVALID_PARAM, before any library is needed
    assert code_of(lambda: q.quorum_model_initialize(7, None, backend="corosync")) \
        == CsErr.CS_ERR_INVALID_PARAM


# ====================================================================== a fake libquorum
class FakeLibquorum:
    """The libquorum calls ``_corosync`` makes, in Python; events are queued by hand."""

    C_HANDLE = 0x4242_0000_0000

    def __init__(self) -> None:
        self.sock, self.peer = socket.socketpair()
        self.data: Any = None
        self.queue: list[str] = []
        self.finalized: list[int] = []
        self.empty_ok = False  # dispatch returns CS_OK without an event (EBADF in libqb)

    def quorum_model_initialize(self, h_ref: Any, model: int, data_ref: Any, qt_ref: Any,
                                context: object) -> int:
        assert context is None  # the context stays on the Python side
        h_ref._obj.value = self.C_HANDLE
        qt_ref._obj.value = 1
        self.data = data_ref._obj
        return 1

    def quorum_fd_get(self, h: int, fd_ref: Any) -> int:
        assert h == self.C_HANDLE
        fd_ref._obj.value = self.sock.fileno()
        return 1

    def quorum_trackstart(self, h: int, flags: int) -> int:
        self.queue += ["nodelist", "quorum"]
        return 1

    def quorum_getquorate(self, h: int, q_ref: Any) -> int:
        q_ref._obj.value = 1
        return 1

    def quorum_dispatch(self, h: int, flags: int) -> int:
        assert flags in (1, 4)  # ALL and BLOCKING are loops of ONE_NONBLOCKING / ONE
        if not self.queue:
            return 1 if self.empty_ok else 6
        kind = self.queue.pop(0)
        members = (ctypes.c_uint32 * 3)(1, 2, 3)
        ptr = ctypes.cast(members, ctypes.POINTER(ctypes.c_uint32))
        ring = _corosync._RingId(1, 9)
        if kind == "nodelist":
            self.data.nodelist_notify_fn(h, ring, 3, ptr, 0, None, 0, None)
        else:
            self.data.quorum_notify_fn(h, 1, ring, 3, ptr)
        return 1

    def quorum_finalize(self, h: int) -> int:
        self.finalized.append(h)  # the socket is closed by the fixture
        return 1


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLibquorum]:
    lib = FakeLibquorum()
    monkeypatch.setattr(_corosync, "_libs", {_corosync.LIBQUORUM: lib})
    yield lib
    lib.peer.close()
    lib.sock.close()


def test_fake_handle_routing_values_and_callback_types(fake: FakeLibquorum) -> None:
    seen: list[tuple[Any, ...]] = []
    data = q.QuorumModelV1Data(lambda *a: seen.append(("quorum", *a)),
                               lambda *a: seen.append(("nodelist", *a)))
    h, quorum_type = q.quorum_model_initialize(q.QUORUM_MODEL_V1, data, {"ctx": 1},
                                               backend="corosync")
    try:
        assert h != fake.C_HANDLE and quorum_type == 1
        assert HANDLES.holds(h, _corosync.CorosyncQuorum)
        assert q.quorum_context_get(h) == {"ctx": 1}
        assert q.quorum_fd_get(h) == fake.sock.fileno()
        assert q.quorum_getquorate(h) == 1
        assert code_of(lambda: vq.votequorum_getinfo(h, 0)) == CsErr.CS_ERR_BAD_HANDLE
        q.quorum_trackstart(h, q.CS_TRACK_CURRENT)
        q.quorum_dispatch(h, q.CS_DISPATCH_ALL)
        ring = q.QuorumRingId(1, 9)
        assert seen == [("nodelist", h, ring, [1, 2, 3], [], []),
                        ("quorum", h, 1, ring, [1, 2, 3])]
        assert isinstance(seen[0][2], q.QuorumRingId)
        assert code_of(lambda: q.quorum_dispatch(h, q.CS_DISPATCH_ONE_NONBLOCKING)) \
            == TRY_AGAIN
    finally:
        q.quorum_finalize(h)
    assert fake.finalized == [fake.C_HANDLE]


def test_fake_a_callback_exception_leaves_the_rest_queued(fake: FakeLibquorum) -> None:
    seen: list[str] = []

    def boom(*_: Any) -> None:
        seen.append("nodelist")
        raise KeyError("boom")

    h, _ = q.quorum_model_initialize(q.QUORUM_MODEL_V1, q.QuorumModelV1Data(
        lambda *_: seen.append("quorum"), boom), backend="corosync")
    try:
        q.quorum_trackstart(h, q.CS_TRACK_CURRENT)
        with pytest.raises(KeyError):
            q.quorum_dispatch(h, q.CS_DISPATCH_BLOCKING)
        assert seen == ["nodelist"] and fake.queue == ["quorum"]
        q.quorum_dispatch(h, q.CS_DISPATCH_ALL)
        assert seen == ["nodelist", "quorum"]
    finally:
        q.quorum_finalize(h)


def test_fake_ok_without_an_event_ends_all_and_blocking(fake: FakeLibquorum) -> None:
    h, _ = q.quorum_model_initialize(q.QUORUM_MODEL_V1, None, backend="corosync")
    try:
        fake.empty_ok = True  # libqb: EBADF is a quiet CS_OK; no endless loop
        q.quorum_dispatch(h, q.CS_DISPATCH_ALL)
        q.quorum_dispatch(h, q.CS_DISPATCH_BLOCKING)
    finally:
        q.quorum_finalize(h)


def test_fake_finalize_in_a_callback(fake: FakeLibquorum) -> None:
    def on_nodelist(h: int, *_: Any) -> None:
        q.quorum_finalize(h)
        assert fake.finalized == []  # C finalize waits for the dispatch to return

    h, _ = q.quorum_model_initialize(q.QUORUM_MODEL_V1,
                                     q.QuorumModelV1Data(None, on_nodelist),
                                     backend="corosync")
    q.quorum_trackstart(h, q.CS_TRACK_CURRENT)
    assert code_of(lambda: q.quorum_dispatch(h, q.CS_DISPATCH_ALL)) == CsErr.CS_ERR_BAD_HANDLE
    assert fake.finalized == [fake.C_HANDLE]
    assert fake.queue == ["quorum"]  # not consumed after the finalize
    assert code_of(lambda: q.quorum_getquorate(h)) == CsErr.CS_ERR_BAD_HANDLE
    assert code_of(lambda: q.quorum_finalize(h)) == CsErr.CS_ERR_BAD_HANDLE


def test_fake_finalize_shuts_the_library_socket_down(fake: FakeLibquorum) -> None:
    h, _ = q.quorum_model_initialize(q.QUORUM_MODEL_V1, None, backend="corosync")
    q.quorum_finalize(h)
    fake.peer.settimeout(5.0)
    assert fake.peer.recv(1) == b""  # the peer sees the shutdown (wakes blocked readers)
    assert fake.finalized == [fake.C_HANDLE]


def test_fake_argument_checks_match_the_native_backend(fake: FakeLibquorum) -> None:
    h, _ = q.quorum_model_initialize(q.QUORUM_MODEL_V1, None, backend="corosync")
    try:
        assert code_of(lambda: q.quorum_trackstart(h, -1)) == CsErr.CS_ERR_INVALID_PARAM
        assert code_of(lambda: q.quorum_trackstart(h, 1 << 32)) == CsErr.CS_ERR_INVALID_PARAM
        assert code_of(lambda: q.quorum_dispatch(h, 0)) == CsErr.CS_ERR_INVALID_PARAM
        assert code_of(lambda: q.quorum_dispatch(h, "1")) == CsErr.CS_ERR_INVALID_PARAM  # type: ignore[arg-type]
    finally:
        q.quorum_finalize(h)
