"""pyquorum.client.quorum against the fake daemon (real sockets, SCM_RIGHTS, threads).

Each test mirrors rows of ../shared/oracle/api-edge-cases.md (section numbers in the
docstrings) or spec section 3.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from client_fakedaemon import WAIT_S, FakeConn, FakeDaemon

from pyquorum.client import _conn
from pyquorum.client.quorum import (
    CS_DISPATCH_ALL,
    CS_DISPATCH_BLOCKING,
    CS_DISPATCH_ONE,
    CS_DISPATCH_ONE_NONBLOCKING,
    CS_TRACK_CHANGES,
    CS_TRACK_CHANGES_ONLY,
    CS_TRACK_CURRENT,
    QUORUM_FREE,
    QUORUM_MODEL_V0,
    QUORUM_MODEL_V1,
    QUORUM_SET,
    QuorumCallbacks,
    QuorumModelV0Data,
    QuorumModelV1Data,
    QuorumRingId,
    quorum_context_get,
    quorum_context_set,
    quorum_dispatch,
    quorum_fd_get,
    quorum_finalize,
    quorum_getquorate,
    quorum_initialize,
    quorum_model_initialize,
    quorum_trackstart,
    quorum_trackstop,
)
from pyquorum.client.votequorum import votequorum_finalize, votequorum_initialize
from pyquorum.errors import CsErr, CsError
from pyquorum.types import RingId
from pyquorum.wire.ipc import (
    ErrorReply,
    NodelistV1Event,
    QuorumGetQuorateReq,
    QuorumGetQuorateRes,
    QuorumGetTypeReq,
    QuorumModelGetTypeReq,
    QuorumStatusRes,
    QuorumTrackStartReq,
    QuorumV0Event,
    QuorumV1Event,
    VqQuorumEvent,
)

ALL_FLAGS = (CS_DISPATCH_ONE, CS_DISPATCH_ALL, CS_DISPATCH_BLOCKING, CS_DISPATCH_ONE_NONBLOCKING)
POLLIN_POLLHUP = select.POLLIN | select.POLLHUP


def code_of(fn: Callable[..., object], *args: Any) -> CsErr:
    """The CsErr a call raises (fails the test if it returns)."""
    with pytest.raises(CsError) as info:
        fn(*args)
    return info.value.code


class Recorder:
    """V1 callbacks that record (kind, args) and can run a hook."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.hook: Callable[[], None] | None = None
        self.cond = threading.Condition()

    def _add(self, kind: str, args: tuple[Any, ...]) -> None:
        with self.cond:
            self.calls.append((kind, args))
            self.cond.notify_all()
        if self.hook is not None:
            self.hook()

    def quorum(self, handle: int, quorate: int, ring: QuorumRingId, members: list[int]) -> None:
        self._add("quorum", (handle, quorate, ring, members))

    def nodelist(self, handle: int, ring: QuorumRingId, members: list[int], joined: list[int],
                 left: list[int]) -> None:
        self._add("nodelist", (handle, ring, members, joined, left))

    def v0(self, handle: int, quorate: int, ring_seq: int, view: list[int]) -> None:
        self._add("v0", (handle, quorate, ring_seq, view))

    def kinds(self) -> list[str]:
        with self.cond:
            return [k for k, _ in self.calls]

    def wait_count(self, n: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.calls) >= n, WAIT_S), self.calls

    def data(self) -> QuorumModelV1Data:
        return QuorumModelV1Data(quorum_notify_fn=self.quorum, nodelist_notify_fn=self.nodelist)


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def v1(daemon: FakeDaemon, run_dir: Path, rec: Recorder) -> Iterator[int]:
    """A V1 handle with recording callbacks, finalized at the end if still valid."""
    handle, _ = quorum_model_initialize(QUORUM_MODEL_V1, rec.data(), 0x1234, run_dir=run_dir)
    yield handle
    try:
        quorum_finalize(handle)
    except CsError as exc:
        assert exc.code == CsErr.CS_ERR_BAD_HANDLE


def readable(fd: int, timeout: float = 0.0) -> int:
    """poll() revents of ``fd`` (0: not readable within ``timeout`` seconds)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    ready = poller.poll(int(timeout * 1000))
    return ready[0][1] if ready else 0


class Runner:
    """Run a call in a thread; remember its result or CsError code."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self.started = threading.Event()
        self.result: object = None
        self.code: CsErr | None = None
        self.error: BaseException | None = None

        def body() -> None:
            self.started.set()
            try:
                self.result = fn()
            except CsError as exc:
                self.code = exc.code
            except BaseException as exc:  # pragma: no cover - reported by the test
                self.error = exc

        self.thread = threading.Thread(target=body, daemon=True)
        self.thread.start()
        assert self.started.wait(WAIT_S)

    def join(self) -> CsErr | None:
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "the call did not return"
        assert self.error is None, self.error
        return self.code

    def still_running(self) -> bool:
        """A short negative check: the call has not returned (it is blocked)."""
        self.thread.join(0.05)
        return self.thread.is_alive()


# ------------------------------------------------------------------ 1. initialization
def test_v1_initialize(daemon: FakeDaemon, run_dir: Path, v1: int) -> None:
    """1: CS_OK, quorum_type 1, handle non-zero, the context is the init-time one; V1
    sends MODEL_GETTYPE(1)."""
    assert v1 != 0
    conn = daemon.conn()
    assert conn.service == 3
    assert daemon.wait_requests(conn, 1) == [QuorumModelGetTypeReq(1)]
    assert quorum_context_get(v1) == 0x1234
    assert quorum_getquorate(v1) == 1


def test_v0_initialize_sends_plain_gettype(daemon: FakeDaemon, run_dir: Path,
                                           rec: Recorder) -> None:
    handle, qtype = quorum_initialize(QuorumCallbacks(rec.v0), run_dir=run_dir)
    assert handle != 0 and qtype == QUORUM_SET
    assert daemon.wait_requests(daemon.conn(), 1) == [QuorumGetTypeReq()]
    assert quorum_context_get(handle) is None
    handle2, _ = quorum_model_initialize(QUORUM_MODEL_V0, None, run_dir=run_dir)
    assert daemon.wait_requests(daemon.conn(count=2), 1) == [QuorumGetTypeReq()]
    assert handle2 != handle
    quorum_finalize(handle)
    quorum_finalize(handle2)


def test_quorum_type_free(daemon: FakeDaemon, run_dir: Path) -> None:
    daemon.quorum_type = QUORUM_FREE
    handle, qtype = quorum_initialize(None, run_dir=run_dir)
    assert qtype == QUORUM_FREE
    quorum_finalize(handle)


@pytest.mark.parametrize("model", [7, -1, 2, None, "1"])
def test_invalid_model_before_anything(daemon: FakeDaemon, run_dir: Path, model: Any) -> None:
    """1: an invalid model is INVALID_PARAM, no connection is made (even without a daemon)."""
    assert code_of(quorum_model_initialize, model, None) == CsErr.CS_ERR_INVALID_PARAM
    assert daemon.connections() == []
    daemon.die()
    assert code_of(quorum_model_initialize, model, None) == CsErr.CS_ERR_INVALID_PARAM


def test_no_daemon_is_library(run_dir: Path) -> None:
    """1, 6: no daemon (no socket file: ENOENT) -> LIBRARY immediately."""
    assert code_of(lambda: quorum_initialize(None, run_dir=run_dir)) == CsErr.CS_ERR_LIBRARY


def test_refused_connect_is_library(run_dir: Path) -> None:
    """A stale socket file nobody listens on (ECONNREFUSED) -> LIBRARY."""
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(run_dir / "pyquorum.sock"))
    stale.close()
    assert code_of(lambda: quorum_model_initialize(QUORUM_MODEL_V1, None, run_dir=run_dir)) \
        == CsErr.CS_ERR_LIBRARY


def test_connect_eacces_is_access(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EACCES on connect -> ACCESS (patched: the tests may run as root)."""
    def refuse(self: socket.socket, address: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert code_of(lambda: quorum_initialize(None, run_dir=run_dir)) == CsErr.CS_ERR_ACCESS


@pytest.mark.parametrize("error", [CsErr.CS_ERR_TRY_AGAIN, CsErr.CS_ERR_ACCESS])
def test_hello_refused(daemon: FakeDaemon, run_dir: Path, error: CsErr) -> None:
    daemon.hello_error = int(error)
    assert code_of(lambda: quorum_initialize(None, run_dir=run_dir)) == error


def test_hello_without_event_channel_is_library(daemon: FakeDaemon, run_dir: Path) -> None:
    daemon.send_event_fd = False
    assert code_of(lambda: quorum_initialize(None, run_dir=run_dir)) == CsErr.CS_ERR_LIBRARY


def test_run_dir_from_environment(daemon: FakeDaemon, run_dir: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYQUORUM_RUN_DIR", str(run_dir))
    handle, _ = quorum_initialize(None)
    quorum_finalize(handle)
    monkeypatch.delenv("PYQUORUM_RUN_DIR")
    assert _conn.socket_path(None) == "/run/pyquorum/pyquorum.sock"
    assert _conn.socket_path("/x") == "/x/pyquorum.sock"


def test_fd_not_readable_before_trackstart(v1: int) -> None:
    """1: nothing is queued until trackstart; getquorate works before it."""
    fd = quorum_fd_get(v1)
    assert fd == quorum_fd_get(v1)
    assert readable(fd) == 0
    assert quorum_getquorate(v1) == 1
    assert readable(fd) == 0


# ------------------------------------------------------------------ 5. handles
def test_every_call_after_finalize_is_bad_handle(daemon: FakeDaemon, v1: int) -> None:
    """5: finalize OK, then every call gives BAD_HANDLE (dispatch never blocks)."""
    conn = daemon.conn()
    quorum_finalize(v1)
    assert conn.peer_closed.wait(WAIT_S)  # the connection is closed
    calls: list[tuple[Callable[..., object], tuple[Any, ...]]] = [
        (quorum_finalize, ()), (quorum_fd_get, ()), (quorum_getquorate, ()),
        (quorum_trackstart, (CS_TRACK_CURRENT,)), (quorum_trackstop, ()),
        (quorum_context_set, (1,)), (quorum_context_get, ()),
        *((quorum_dispatch, (flag,)) for flag in ALL_FLAGS),
    ]
    for fn, args in calls:
        assert code_of(fn, v1, *args) == CsErr.CS_ERR_BAD_HANDLE, fn


@pytest.mark.parametrize("handle", [0, 0x123456789, -1, 2**64, 2**64 - 1])
def test_garbage_handles(handle: int) -> None:
    """5: never-issued handles and 0 give BAD_HANDLE."""
    for fn, args in ((quorum_getquorate, ()), (quorum_finalize, ()),
                     (quorum_dispatch, (CS_DISPATCH_ALL,)), (quorum_fd_get, ())):
        assert code_of(fn, handle, *args) == CsErr.CS_ERR_BAD_HANDLE


def test_votequorum_handle_is_bad_for_quorum(daemon: FakeDaemon, run_dir: Path) -> None:
    handle = votequorum_initialize(None, run_dir=run_dir)
    assert code_of(quorum_getquorate, handle) == CsErr.CS_ERR_BAD_HANDLE
    assert code_of(quorum_finalize, handle) == CsErr.CS_ERR_BAD_HANDLE
    votequorum_finalize(handle)


@pytest.mark.parametrize("flags", [0, 5, 99, -1, None])
def test_bad_dispatch_flag_checked_before_handle(v1: int, flags: Any) -> None:
    """2, 3.7: invalid flags -> INVALID_PARAM, even with a bad handle."""
    assert code_of(quorum_dispatch, v1, flags) == CsErr.CS_ERR_INVALID_PARAM
    assert code_of(quorum_dispatch, 0, flags) == CsErr.CS_ERR_INVALID_PARAM


def test_trackstart_bad_flags_after_handle_check(v1: int) -> None:
    assert code_of(quorum_trackstart, 0, -1) == CsErr.CS_ERR_BAD_HANDLE
    assert code_of(quorum_trackstart, v1, -1) == CsErr.CS_ERR_INVALID_PARAM
    assert code_of(quorum_trackstart, v1, 2**32) == CsErr.CS_ERR_INVALID_PARAM


# ------------------------------------------------------------------ 4. context
def test_context(v1: int) -> None:
    quorum_context_set(v1, 0xABCDEF)
    assert quorum_context_get(v1) == 0xABCDEF
    obj = object()
    quorum_context_set(v1, obj)
    assert quorum_context_get(v1) is obj
    quorum_context_set(v1, None)
    assert quorum_context_get(v1) is None


# ------------------------------------------------------------------ 2. dispatch flags
def test_dispatch_with_nothing_queued(v1: int, rec: Recorder) -> None:
    """2: ALL returns at once with 0 callbacks; ONE_NONBLOCKING is TRY_AGAIN; ONE and
    BLOCKING block."""
    quorum_dispatch(v1, CS_DISPATCH_ALL)
    assert code_of(quorum_dispatch, v1, CS_DISPATCH_ONE_NONBLOCKING) == CsErr.CS_ERR_TRY_AGAIN
    assert rec.calls == []
    one = Runner(lambda: quorum_dispatch(v1, CS_DISPATCH_ONE))
    assert one.still_running()
    quorum_finalize(v1)  # wakes it
    assert one.join() == CsErr.CS_ERR_BAD_HANDLE


@pytest.mark.parametrize(("flag", "first", "rest"), [
    (CS_DISPATCH_ONE, ["nodelist"], ["quorum"]),
    (CS_DISPATCH_ALL, ["nodelist", "quorum"], []),
    (CS_DISPATCH_ONE_NONBLOCKING, ["nodelist"], ["quorum"]),
])
def test_dispatch_with_two_queued(v1: int, rec: Recorder, flag: int, first: list[str],
                                  rest: list[str]) -> None:
    """2: with the trackstart(CURRENT) pair queued, each flag delivers 1 or 2, and a
    following ALL delivers the rest."""
    fd = quorum_fd_get(v1)
    quorum_trackstart(v1, CS_TRACK_CURRENT)
    assert readable(fd) == select.POLLIN
    quorum_dispatch(v1, flag)
    assert rec.kinds() == first
    assert bool(readable(fd)) == bool(rest)
    quorum_dispatch(v1, CS_DISPATCH_ALL)
    assert rec.kinds() == first + rest
    assert readable(fd) == 0
    assert code_of(quorum_dispatch, v1, CS_DISPATCH_ONE_NONBLOCKING) == CsErr.CS_ERR_TRY_AGAIN


@pytest.mark.parametrize("flag", [CS_DISPATCH_ONE, CS_DISPATCH_ALL, CS_DISPATCH_ONE_NONBLOCKING])
def test_dispatch_with_one_queued(daemon: FakeDaemon, v1: int, rec: Recorder, flag: int) -> None:
    daemon.conn().push(QuorumV1Event(0, RingId(1, 13), (1, 2)))
    quorum_dispatch(v1, flag)
    assert rec.kinds() == ["quorum"]
    quorum_dispatch(v1, CS_DISPATCH_ALL)
    assert rec.kinds() == ["quorum"]


def test_dispatch_one_waits_for_the_next_event(daemon: FakeDaemon, v1: int,
                                               rec: Recorder) -> None:
    """2: ONE blocks, and returns after exactly the first callback of the next change."""
    one = Runner(lambda: quorum_dispatch(v1, CS_DISPATCH_ONE))
    assert one.still_running()
    daemon.conn().push(NodelistV1Event(RingId(1, 13), (1, 2), (), (3,)),
                       QuorumV1Event(1, RingId(1, 13), (1, 2)))
    assert one.join() is None
    assert rec.kinds() == ["nodelist"]
    quorum_dispatch(v1, CS_DISPATCH_ONE)
    assert rec.kinds() == ["nodelist", "quorum"]


def test_blocking_delivers_as_events_arrive_until_the_daemon_dies(
        daemon: FakeDaemon, v1: int, rec: Recorder) -> None:
    """2, 6: BLOCKING delivers the pair, keeps blocking, delivers later events, and
    returns LIBRARY promptly when the daemon dies."""
    quorum_trackstart(v1, CS_TRACK_CURRENT | CS_TRACK_CHANGES)
    blocking = Runner(lambda: quorum_dispatch(v1, CS_DISPATCH_BLOCKING))
    rec.wait_count(2)
    assert blocking.still_running()
    daemon.broadcast(NodelistV1Event(RingId(1, 13), (1, 2), (), (3,)),
                     QuorumV1Event(1, RingId(1, 13), (1, 2)))
    rec.wait_count(4)
    assert blocking.still_running()
    daemon.die()
    assert blocking.join() == CsErr.CS_ERR_LIBRARY
    assert rec.kinds() == ["nodelist", "quorum"] * 2


def test_blocked_one_returns_library_when_the_daemon_dies(daemon: FakeDaemon, v1: int,
                                                          rec: Recorder) -> None:
    """6: a dispatch blocked in ONE returns LIBRARY (0 callbacks) when the daemon dies."""
    one = Runner(lambda: quorum_dispatch(v1, CS_DISPATCH_ONE))
    assert one.still_running()
    daemon.die()
    assert one.join() == CsErr.CS_ERR_LIBRARY
    assert rec.calls == []


def test_signal_does_not_end_a_blocking_dispatch(daemon: FakeDaemon, v1: int,
                                                 rec: Recorder) -> None:
    """3.7: EINTR keeps a ONE dispatch waiting (it returns only after an event)."""
    conn = daemon.conn()
    signals = threading.Event()
    count = [0]

    def on_alarm(signum: int, frame: object) -> None:
        count[0] += 1
        if count[0] >= 3:
            signals.set()

    def pusher() -> None:
        assert signals.wait(WAIT_S)
        conn.push(QuorumV1Event(1, RingId(1, 9), (1, 2, 3)))

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)
    try:
        thread = threading.Thread(target=pusher, daemon=True)
        thread.start()
        quorum_dispatch(v1, CS_DISPATCH_ONE)  # the main thread receives the signals
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
    thread.join(WAIT_S)
    assert count[0] >= 3
    assert rec.kinds() == ["quorum"]


def test_none_callbacks_consume_and_count(daemon: FakeDaemon, run_dir: Path) -> None:
    """3.1: a None callback consumes the event and it still counts as one."""
    handle, _ = quorum_model_initialize(QUORUM_MODEL_V1, None, run_dir=run_dir)
    fd = quorum_fd_get(handle)
    quorum_trackstart(handle, CS_TRACK_CURRENT)
    quorum_dispatch(handle, CS_DISPATCH_ONE)
    assert readable(fd) == select.POLLIN
    quorum_dispatch(handle, CS_DISPATCH_ONE_NONBLOCKING)
    assert readable(fd) == 0
    quorum_finalize(handle)

    seen: list[str] = []
    data = QuorumModelV1Data(nodelist_notify_fn=lambda *a: seen.append("nodelist"))
    handle, _ = quorum_model_initialize(QUORUM_MODEL_V1, data, run_dir=run_dir)
    quorum_trackstart(handle, CS_TRACK_CURRENT)
    quorum_dispatch(handle, CS_DISPATCH_ALL)
    assert seen == ["nodelist"]
    quorum_finalize(handle)


def test_callbacks_are_copied(daemon: FakeDaemon, run_dir: Path, rec: Recorder) -> None:
    data = rec.data()
    handle, _ = quorum_model_initialize(QUORUM_MODEL_V1, data, run_dir=run_dir)
    data.quorum_notify_fn = None
    data.nodelist_notify_fn = None
    quorum_trackstart(handle, CS_TRACK_CURRENT)
    quorum_dispatch(handle, CS_DISPATCH_ALL)
    assert rec.kinds() == ["nodelist", "quorum"]
    quorum_finalize(handle)


def test_unexpected_event_is_library(daemon: FakeDaemon, run_dir: Path, rec: Recorder) -> None:
    """3.7: an event the model does not expect -> LIBRARY (the connection stays usable)."""
    handle, _ = quorum_initialize(QuorumCallbacks(rec.v0), run_dir=run_dir)
    conn = daemon.conn()
    conn.push(QuorumV1Event(1, RingId(1, 9), (1,)))
    assert code_of(quorum_dispatch, handle, CS_DISPATCH_ALL) == CsErr.CS_ERR_LIBRARY
    conn.push(VqQuorumEvent(0, 1, ()))
    assert code_of(quorum_dispatch, handle, CS_DISPATCH_ONE) == CsErr.CS_ERR_LIBRARY
    assert quorum_getquorate(handle) == 1
    conn.push(QuorumV0Event(1, 9, (1,)))
    quorum_dispatch(handle, CS_DISPATCH_ALL)
    assert rec.kinds() == ["v0"]
    quorum_finalize(handle)


def test_malformed_event_stream_is_a_lost_connection(daemon: FakeDaemon, v1: int) -> None:
    daemon.conn().push_raw(b"\x00\x00\x00\x03\x09\x09\x09")
    assert code_of(quorum_dispatch, v1, CS_DISPATCH_ALL) == CsErr.CS_ERR_LIBRARY
    assert code_of(quorum_getquorate, v1) == CsErr.CS_ERR_LIBRARY
    assert readable(quorum_fd_get(v1)) == POLLIN_POLLHUP


def test_fd_closed_under_us_is_a_quiet_return(v1: int) -> None:
    """3.7: EBADF (the fd was closed under us) ends a dispatch quietly, even ONE."""
    os.close(quorum_fd_get(v1))
    quorum_dispatch(v1, CS_DISPATCH_ONE)
    quorum_dispatch(v1, CS_DISPATCH_BLOCKING)
    quorum_finalize(v1)


def test_seqpacket_event_channel(daemon: FakeDaemon, run_dir: Path, rec: Recorder) -> None:
    """The event channel may also be a SOCK_SEQPACKET pair (one record per frame)."""
    daemon.event_type = socket.SOCK_SEQPACKET
    handle, _ = quorum_model_initialize(QUORUM_MODEL_V1, rec.data(), run_dir=run_dir)
    quorum_trackstart(handle, CS_TRACK_CURRENT)
    quorum_dispatch(handle, CS_DISPATCH_ONE)
    assert readable(quorum_fd_get(handle)) == select.POLLIN
    quorum_dispatch(handle, CS_DISPATCH_ALL)
    assert rec.kinds() == ["nodelist", "quorum"]
    quorum_finalize(handle)


# ------------------------------------------------------------------ callback arguments
def test_v0_callback_arguments(daemon: FakeDaemon, run_dir: Path, rec: Recorder) -> None:
    """3: with V0 the snapshot is one V0 quorum callback (quorate, ring_seq, view)."""
    handle, _ = quorum_initialize(QuorumCallbacks(rec.v0), run_dir=run_dir)
    quorum_trackstart(handle, CS_TRACK_CURRENT)
    quorum_dispatch(handle, CS_DISPATCH_ALL)
    assert rec.calls == [("v0", (handle, 1, 9, [1, 2, 3]))]
    handle2, _ = quorum_model_initialize(QUORUM_MODEL_V0, QuorumModelV0Data(rec.v0),
                                         run_dir=run_dir)
    daemon.conn().push(QuorumV0Event(0, 13, (1,)))
    quorum_dispatch(handle2, CS_DISPATCH_ALL)
    assert rec.calls[-1] == ("v0", (handle2, 0, 13, [1]))
    quorum_finalize(handle)
    quorum_finalize(handle2)


def test_v1_callback_arguments(daemon: FakeDaemon, v1: int, rec: Recorder) -> None:
    """3: nodelist first, then quorum, same ring; empty joined/left in the snapshot."""
    quorum_trackstart(v1, CS_TRACK_CURRENT | CS_TRACK_CHANGES)
    daemon.broadcast(NodelistV1Event(RingId(1, 13), (1, 2), (1,), (1, 3)),
                     QuorumV1Event(0, RingId(1, 13), (1, 2)))
    quorum_dispatch(v1, CS_DISPATCH_ALL)
    ring9, ring13 = QuorumRingId(1, 9), QuorumRingId(1, 13)
    assert rec.calls == [
        ("nodelist", (v1, ring9, [1, 2, 3], [], [])),
        ("quorum", (v1, 1, ring9, [1, 2, 3])),
        ("nodelist", (v1, ring13, [1, 2], [1], [1, 3])),
        ("quorum", (v1, 0, ring13, [1, 2])),
    ]
    assert rec.calls[0][1][1].nodeid == 1 and rec.calls[0][1][1].seq == 9


# ------------------------------------------------------------------ 3. trackstart
def test_trackstart_exist_still_delivers_the_snapshot(v1: int, rec: Recorder) -> None:
    """3: trackstart(CURRENT|CHANGES) twice: OK then EXIST, a pair queued by each;
    then CHANGES_ONLY: EXIST and nothing queued."""
    quorum_trackstart(v1, CS_TRACK_CURRENT | CS_TRACK_CHANGES)
    assert code_of(quorum_trackstart, v1, CS_TRACK_CURRENT | CS_TRACK_CHANGES) \
        == CsErr.CS_ERR_EXIST
    quorum_dispatch(v1, CS_DISPATCH_ALL)
    assert rec.kinds() == ["nodelist", "quorum"] * 2
    assert code_of(quorum_trackstart, v1, CS_TRACK_CHANGES_ONLY) == CsErr.CS_ERR_EXIST
    assert readable(quorum_fd_get(v1)) == 0
    quorum_trackstop(v1)
    quorum_trackstop(v1)
    quorum_trackstart(v1, CS_TRACK_CHANGES)


def test_request_errors_from_the_daemon(daemon: FakeDaemon, v1: int) -> None:
    daemon.script[QuorumGetQuorateReq] = lambda conn, msg: ErrorReply(
        int(CsErr.CS_ERR_NOT_SUPPORTED), 10)
    assert code_of(quorum_getquorate, v1) == CsErr.CS_ERR_NOT_SUPPORTED
    daemon.script[QuorumTrackStartReq] = lambda conn, msg: QuorumStatusRes(
        int(CsErr.CS_ERR_TRY_AGAIN))
    assert code_of(quorum_trackstart, v1, 1) == CsErr.CS_ERR_TRY_AGAIN
    del daemon.script[QuorumGetQuorateReq]
    assert quorum_getquorate(v1) == 1
    # A response of the wrong type: the stream cannot be trusted any more.
    daemon.script[QuorumGetQuorateReq] = lambda conn, msg: QuorumStatusRes(1)
    assert code_of(quorum_getquorate, v1) == CsErr.CS_ERR_LIBRARY
    assert code_of(quorum_trackstop, v1) == CsErr.CS_ERR_LIBRARY


# ------------------------------------------------------------------ 6. daemon death
def test_after_the_daemon_died(daemon: FakeDaemon, run_dir: Path, v1: int) -> None:
    """6: POLLIN|POLLHUP; dispatch LIBRARY for every flag (repeatedly, immediately);
    requests LIBRARY; fd_get and context_get OK; finalize OK then BAD_HANDLE;
    initialize LIBRARY."""
    fd = quorum_fd_get(v1)
    quorum_trackstart(v1, CS_TRACK_CURRENT)  # queued events do not delay the error
    daemon.die()
    assert readable(fd, WAIT_S) == POLLIN_POLLHUP
    for flag in (CS_DISPATCH_ALL, CS_DISPATCH_ALL, CS_DISPATCH_ONE_NONBLOCKING,
                 CS_DISPATCH_ONE, CS_DISPATCH_BLOCKING):
        assert code_of(quorum_dispatch, v1, flag) == CsErr.CS_ERR_LIBRARY
    assert code_of(quorum_getquorate, v1) == CsErr.CS_ERR_LIBRARY
    assert code_of(quorum_trackstart, v1, CS_TRACK_CURRENT) == CsErr.CS_ERR_LIBRARY
    assert code_of(quorum_trackstop, v1) == CsErr.CS_ERR_LIBRARY
    assert quorum_fd_get(v1) == fd
    assert quorum_context_get(v1) == 0x1234
    assert readable(fd) == POLLIN_POLLHUP
    quorum_finalize(v1)
    assert code_of(quorum_finalize, v1) == CsErr.CS_ERR_BAD_HANDLE
    assert code_of(lambda: quorum_model_initialize(QUORUM_MODEL_V1, None, run_dir=run_dir)) \
        == CsErr.CS_ERR_LIBRARY


def test_request_first_notices_the_death(daemon: FakeDaemon, v1: int) -> None:
    """A request that finds the daemon gone marks the connection dead: later requests
    and dispatch are LIBRARY and the fd polls POLLIN|POLLHUP."""
    for conn in daemon.connections():
        conn.sock.shutdown(socket.SHUT_RDWR)  # only the request socket goes
    assert code_of(quorum_getquorate, v1) == CsErr.CS_ERR_LIBRARY
    assert readable(quorum_fd_get(v1)) == POLLIN_POLLHUP
    assert code_of(quorum_dispatch, v1, CS_DISPATCH_ONE) == CsErr.CS_ERR_LIBRARY
    assert code_of(quorum_trackstop, v1) == CsErr.CS_ERR_LIBRARY


# ------------------------------------------------------------------ finalize vs dispatch
def test_finalize_inside_a_callback(daemon: FakeDaemon, v1: int, rec: Recorder) -> None:
    """3.5: finalize from a callback -> the dispatch returns BAD_HANDLE after it; no
    further callback runs; the connection closes when the dispatch ends."""
    conn = daemon.conn()
    rec.hook = lambda: quorum_finalize(v1)
    quorum_trackstart(v1, CS_TRACK_CURRENT)
    assert code_of(quorum_dispatch, v1, CS_DISPATCH_ALL) == CsErr.CS_ERR_BAD_HANDLE
    assert rec.kinds() == ["nodelist"]
    assert conn.peer_closed.wait(WAIT_S)
    assert code_of(quorum_getquorate, v1) == CsErr.CS_ERR_BAD_HANDLE


@pytest.mark.parametrize("flag", [CS_DISPATCH_BLOCKING, CS_DISPATCH_ONE])
def test_finalize_from_another_thread_wakes_a_blocked_dispatch(v1: int, flag: int) -> None:
    blocked = Runner(lambda: quorum_dispatch(v1, flag))
    assert blocked.still_running()
    quorum_finalize(v1)
    assert blocked.join() == CsErr.CS_ERR_BAD_HANDLE


def test_finalize_wakes_a_blocked_request(daemon: FakeDaemon, v1: int) -> None:
    """A request waiting for its answer when another thread finalizes: BAD_HANDLE."""
    received = threading.Event()

    def never(conn: FakeConn, msg: object) -> None:
        received.set()
        return None

    daemon.script[QuorumGetQuorateReq] = never
    request = Runner(lambda: quorum_getquorate(v1))
    assert received.wait(WAIT_S)
    quorum_finalize(v1)
    assert request.join() == CsErr.CS_ERR_BAD_HANDLE


class Interrupted(Exception):
    pass


def test_interrupted_request_keeps_the_stream_in_step(daemon: FakeDaemon, v1: int) -> None:
    """A request left by an exception (a signal handler raising) does not hand its late
    answer to the next request."""
    received = threading.Event()
    release = threading.Event()

    def slow(conn: FakeConn, msg: object) -> object:
        received.set()
        assert release.wait(WAIT_S)
        return QuorumGetQuorateRes(1, 0)

    def on_signal(signum: int, frame: object) -> None:
        raise Interrupted

    def interrupter() -> None:
        assert received.wait(WAIT_S)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)

    daemon.script[QuorumGetQuorateReq] = slow
    old = signal.signal(signal.SIGUSR1, on_signal)
    try:
        threading.Thread(target=interrupter, daemon=True).start()
        with pytest.raises(Interrupted):
            quorum_getquorate(v1)
    finally:
        signal.signal(signal.SIGUSR1, old)
    release.set()
    del daemon.script[QuorumGetQuorateReq]
    quorum_trackstop(v1)  # would be LIBRARY if it received the late GETQUORATE answer
    assert quorum_getquorate(v1) == 1


def test_concurrent_requests_beside_a_blocking_dispatch(daemon: FakeDaemon, v1: int,
                                                        rec: Recorder) -> None:
    """Thread safety: one BLOCKING dispatch thread, several request threads."""
    quorum_trackstart(v1, CS_TRACK_CHANGES_ONLY)
    dispatcher = Runner(lambda: quorum_dispatch(v1, CS_DISPATCH_BLOCKING))
    results: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def asker() -> None:
        barrier.wait(WAIT_S)
        for _ in range(30):
            value = quorum_getquorate(v1)
            with lock:
                results.append(value)
        try:
            quorum_trackstart(v1, CS_TRACK_CURRENT)
        except CsError as exc:
            assert exc.code == CsErr.CS_ERR_EXIST

    askers = [Runner(asker) for _ in range(6)]
    for asker_run in askers:
        assert asker_run.join() is None
    assert results == [1] * 180
    rec.wait_count(12)  # 6 snapshots (each with EXIST: already tracking)
    assert dispatcher.still_running()
    quorum_finalize(v1)
    assert dispatcher.join() == CsErr.CS_ERR_BAD_HANDLE
    assert rec.kinds() == ["nodelist", "quorum"] * 6


def test_fd_is_pollable_with_asyncio(daemon: FakeDaemon, v1: int, rec: Recorder) -> None:
    fd = quorum_fd_get(v1)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(fd, ready.set)
        try:
            await asyncio.sleep(0)
            assert not ready.is_set()  # nothing queued: not readable
            await asyncio.to_thread(quorum_trackstart, v1, CS_TRACK_CURRENT)
            await asyncio.wait_for(ready.wait(), WAIT_S)
        finally:
            loop.remove_reader(fd)
        quorum_dispatch(v1, CS_DISPATCH_ALL)

    asyncio.run(main())
    assert rec.kinds() == ["nodelist", "quorum"]
