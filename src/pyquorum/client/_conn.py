"""One client connection to ``pyquorumd``: the request socket and the event channel.

Theory of operation
-------------------
``Connection.open(service, run_dir)`` connects a Unix stream socket to
``<run_dir>/pyquorum.sock``, sends ``Hello(service)`` and reads ``HelloReply`` with
``socket.recv_fds``: on CS_OK the reply carries the *event channel*, one end of a
socketpair, by SCM_RIGHTS.  Connect failures map at once: ENOENT and ECONNREFUSED (no
daemon) give CS_ERR_LIBRARY, EACCES gives CS_ERR_ACCESS; a refused Hello raises the
daemon's error (TRY_AGAIN while it is not ready, ACCESS for a peer it does not allow).

Requests go one at a time (a per-connection lock) on the request socket and their
response is read from the same socket.  Events are read only from the event channel,
one frame per ``read_event``, never more, so the event fd stays readable exactly while
an event is queued: that fd is what ``quorum_fd_get`` returns.

States::

    state    request                       read_event                   on
    ALIVE    send, read the response       poll, read one frame         -
    DEAD     CS_ERR_LIBRARY (no I/O)       DISCONNECTED (POLLHUP)       EOF, ECONNRESET, EPIPE,
                                                                        POLLHUP/POLLERR, a frame
                                                                        that does not decode

A connection turns DEAD when the daemon is lost on either socket and never comes back
(there is no reconnect).  Turning DEAD (and ``shutdown``, used by finalize) shuts both
sockets down without closing them: the event fd keeps its number and polls as
POLLIN|POLLHUP, and any thread blocked in a request or in a dispatch wakes up at once.
The descriptors are closed only by ``close``, when the handle's last reference goes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import threading
from collections import deque
from enum import Enum
from pathlib import Path
from typing import Final, TypeVar

from pyquorum.errors import CsErr, CsError
from pyquorum.wire.codec import EncodeError, Malformed
from pyquorum.wire.ipc import (
    MAX_FRAME_BYTES,
    SOCKET_NAME,
    ErrorReply,
    FrameReader,
    Hello,
    HelloReply,
    Sync,
    SyncReply,
    decode_body,
    encode_frame,
)

__all__ = [
    "DEFAULT_RUN_DIR",
    "RUN_DIR_ENV",
    "Connection",
    "EventStatus",
    "cs_code",
    "socket_path",
]

DEFAULT_RUN_DIR: Final = "/run/pyquorum"
RUN_DIR_ENV: Final = "PYQUORUM_RUN_DIR"

_RECV_BYTES: Final = 65536
_LENGTH_BYTES: Final = 4
_POLL_IN: Final = select.POLLIN
_POLL_DEAD: Final = select.POLLHUP | select.POLLERR

# qb_to_cs_error for the errors a connect can give; ENOENT is "no daemon" here.
_CONNECT_ERRNO: Final[dict[int, CsErr]] = {
    errno.EACCES: CsErr.CS_ERR_ACCESS,
    errno.EPERM: CsErr.CS_ERR_ACCESS,
    errno.EAGAIN: CsErr.CS_ERR_TRY_AGAIN,
    errno.ETIMEDOUT: CsErr.CS_ERR_TRY_AGAIN,
    errno.ENOBUFS: CsErr.CS_ERR_TRY_AGAIN,
    errno.ENOMEM: CsErr.CS_ERR_NO_MEMORY,
    errno.EMFILE: CsErr.CS_ERR_NO_RESOURCES,
    errno.ENFILE: CsErr.CS_ERR_NO_RESOURCES,
    errno.EINTR: CsErr.CS_ERR_INTERRUPT,
}

T = TypeVar("T")


class EventStatus(Enum):
    """What ``read_event`` gives when there is no event to deliver."""

    NOTHING = "nothing queued (non-blocking read)"
    CLOSED_FD = "the event fd was closed under us (EBADF)"
    DISCONNECTED = "the daemon is gone"


def cs_code(code: int) -> CsErr:
    """A daemon's error number as ``CsErr`` (an unknown number is CS_ERR_LIBRARY)."""
    try:
        return CsErr(code)
    except ValueError:
        return CsErr.CS_ERR_LIBRARY


def socket_path(run_dir: str | os.PathLike[str] | None) -> str:
    """``<run_dir>/pyquorum.sock``: the keyword, else ``$PYQUORUM_RUN_DIR``, else
    ``/run/pyquorum``."""
    if run_dir is None:
        run_dir = os.environ.get(RUN_DIR_ENV) or DEFAULT_RUN_DIR
    return str(Path(run_dir) / SOCKET_NAME)


def _library(detail: str = "") -> CsError:
    return CsError(CsErr.CS_ERR_LIBRARY, detail)


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class Connection:
    """A connected, greeted client connection (see the module docstring)."""

    def __init__(self, service: int, sock: socket.socket, events: socket.socket | None,
                 conn_id: int, reader: FrameReader, pending: list[object]) -> None:
        self.service = service
        self.conn_id = conn_id
        self._sock = sock
        self._events = events
        self._event_fd = events.fileno() if events is not None else -1
        self._stream_events = events is not None and events.type == socket.SOCK_STREAM
        self._reader = reader
        self._pending: deque[object] = deque(pending)
        self._request_lock = threading.Lock()
        self._event_lock = threading.Lock()
        self._locked_poller: select.poll | None = None
        self._state_lock = threading.Lock()
        self._dead = False
        self._closed = False
        self._resync = False
        self._sync_token = 0

    # ------------------------------------------------------------------ set-up
    @classmethod
    def open(cls, service: int, run_dir: str | os.PathLike[str] | None = None, *,
             need_events: bool = True) -> Connection:
        """Connect and greet; raise ``CsError`` (LIBRARY, ACCESS, TRY_AGAIN, ...)."""
        path = socket_path(run_dir)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            code = _CONNECT_ERRNO.get(exc.errno or 0, CsErr.CS_ERR_LIBRARY)
            raise CsError(code, f"cannot connect to {path}: {exc}") from None
        fds: list[int] = []
        try:
            sock.sendall(encode_frame(Hello(service)), socket.MSG_NOSIGNAL)
            reader = FrameReader()
            msgs: list[object] = []
            while not msgs:
                data, got, _flags, _addr = socket.recv_fds(
                    sock, _RECV_BYTES, 4, socket.MSG_CMSG_CLOEXEC)
                fds.extend(got)
                if not data:
                    raise _library("the daemon closed the connection during set-up")
                msgs = reader.feed(data)
        except CsError:
            sock.close()
            _close_fds(fds)
            raise
        except OSError as exc:
            sock.close()
            _close_fds(fds)
            raise _library(f"connection set-up failed: {exc}") from None
        reply = msgs[0]
        if not isinstance(reply, HelloReply):
            sock.close()
            _close_fds(fds)
            raise _library(f"unexpected set-up reply {reply!r}")
        if reply.error != CsErr.CS_OK:
            sock.close()
            _close_fds(fds)
            raise CsError(cs_code(reply.error))
        events: socket.socket | None = None
        if fds:
            _close_fds(fds[1:])
            try:
                events = socket.socket(fileno=fds[0])
            except OSError:
                _close_fds(fds[:1])
                sock.close()
                raise _library("the event channel is not a socket") from None
        elif need_events:
            sock.close()
            raise _library("the daemon sent no event channel")
        return cls(service, sock, events, reply.conn_id, reader, msgs[1:])

    # ------------------------------------------------------------------ state
    @property
    def dead(self) -> bool:
        """True once the daemon was lost (or the connection was shut down)."""
        return self._dead

    def fileno(self) -> int:
        """The event channel's fd (readable when an event is queued; -1 if none)."""
        return self._event_fd

    def _shutdown_sockets(self) -> None:
        for s in (self._sock, self._events):
            if s is None:
                continue
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def mark_dead(self) -> None:
        """The daemon is lost: every later request fails, the event fd polls POLLHUP,
        and threads blocked on either socket wake up."""
        with self._state_lock:
            if self._dead or self._closed:
                self._dead = True
                return
            self._dead = True
            self._shutdown_sockets()

    def shutdown(self) -> None:
        """Finalize: like ``mark_dead`` (wakes blocked threads); the fds stay open."""
        self.mark_dead()

    def close(self) -> None:
        """Close both sockets (when the handle's last reference goes)."""
        with self._state_lock:
            if self._closed:
                return
            self._dead = True
            self._closed = True
            for s in (self._sock, self._events):
                if s is None:
                    continue
                with contextlib.suppress(OSError):  # EBADF: the fd was closed under us
                    s.close()

    # ------------------------------------------------------------------ requests
    def request(self, msg: object, response_type: type[T]) -> T:
        """Send one request and return its response.

        Raises ``CsError``: LIBRARY when the daemon is (or turns) lost or answers with
        something else, the daemon's code for an ``ErrorReply``, INVALID_PARAM when the
        message cannot be encoded (a value out of range).
        """
        try:
            frame = encode_frame(msg)
        except EncodeError as exc:
            raise CsError(CsErr.CS_ERR_INVALID_PARAM, str(exc)) from None
        with self._request_lock:
            if self._dead:
                raise _library("the connection to the daemon is lost")
            try:
                if self._resync:
                    self._sync()
                self._send_frame(frame)
                reply = self._next_message()
            except CsError:
                raise
            except BaseException:
                # KeyboardInterrupt and the like: the answer may still be on its way;
                # the next request first re-synchronises the stream (Sync/SyncReply).
                self._resync = True
                raise
        if isinstance(reply, ErrorReply):
            raise CsError(cs_code(reply.error), f"the daemon refused {type(msg).__name__}")
        if not isinstance(reply, response_type):
            self.mark_dead()
            raise _library(f"unexpected response {reply!r} to {type(msg).__name__}")
        return reply

    def _send_frame(self, frame: bytes) -> None:
        """Send a whole frame (request lock held); a send error loses the connection."""
        try:
            self._sock.sendall(frame, socket.MSG_NOSIGNAL)
        except OSError as exc:
            self.mark_dead()
            raise _library(f"request failed: {exc}") from None

    def _sync(self) -> None:
        """Skip the answers of interrupted requests: send ``Sync`` and read up to its reply.

        Requests are small frames on a blocking stream socket, so an interrupted send
        went out whole or not at all; either way the stream is back in step afterwards.
        """
        self._sync_token = (self._sync_token + 1) & 0xFFFFFFFF
        token = self._sync_token
        self._send_frame(encode_frame(Sync(token)))
        while True:
            msg = self._next_message()
            if isinstance(msg, SyncReply) and msg.token == token:
                self._resync = False
                return

    def _next_message(self) -> object:
        """The next message of the request socket (request lock held)."""
        while not self._pending:
            try:
                data = self._sock.recv(_RECV_BYTES)
            except OSError as exc:
                self.mark_dead()
                raise _library(f"response lost: {exc}") from None
            if not data:
                self.mark_dead()
                raise _library("the daemon closed the connection")
            self._pending.extend(self._reader.feed(data))
        msg = self._pending.popleft()
        if isinstance(msg, Malformed):
            self.mark_dead()
            raise _library(f"malformed response: {msg}")
        return msg

    # ------------------------------------------------------------------ events
    def wait_readable(self, timeout_ms: int) -> bool:
        """Wait up to ``timeout_ms`` (-1: forever) until the event fd is readable or
        hung up; False on timeout."""
        if self._events is None:
            return True
        poller = select.poll()
        poller.register(self._event_fd, _POLL_IN)
        try:
            return bool(poller.poll(timeout_ms))
        except OSError:
            return True

    def read_event(self, block: bool) -> object:
        """Wait (forever if ``block``, else not at all) and read one event.

        Returns the decoded event message or an ``EventStatus``.  A signal does not end
        a blocking wait.  POLLHUP/POLLERR, EOF, a reset or a frame that does not decode
        give DISCONNECTED (and the connection turns dead); POLLNVAL or EBADF (the fd was
        closed under us) give CLOSED_FD.
        """
        if self._events is None:
            return EventStatus.DISCONNECTED
        poller: select.poll | None = None
        while True:
            if block:  # wait outside the lock, with a poller of this call's own
                if poller is None:
                    poller = select.poll()
                    poller.register(self._event_fd, _POLL_IN)
                status = self._wait(poller, -1)
                if status is EventStatus.NOTHING:
                    continue
                if status is not None:
                    return status
            with self._event_lock:
                # Another dispatcher may have taken the event meanwhile: look again
                # (with the connection's poller, only ever used under this lock).
                locked = self._locked_poller
                if locked is None:
                    locked = self._locked_poller = select.poll()
                    locked.register(self._event_fd, _POLL_IN)
                status = self._wait(locked, 0)
                if status is None:
                    return self._read_frame()
            if status is EventStatus.NOTHING and block:
                continue
            return status

    def _wait(self, poller: select.poll, timeout_ms: int) -> EventStatus | None:
        """None when an event is readable, else why not."""
        try:
            ready = poller.poll(timeout_ms)  # EINTR is retried by Python (PEP 475)
        except OSError as exc:
            if exc.errno == errno.EBADF:
                return EventStatus.CLOSED_FD
            self.mark_dead()
            return EventStatus.DISCONNECTED
        if not ready:
            return EventStatus.NOTHING
        revents = ready[0][1]
        if revents & select.POLLNVAL:
            return EventStatus.CLOSED_FD
        if revents & _POLL_DEAD:
            self.mark_dead()
            return EventStatus.DISCONNECTED
        return None

    def _read_frame(self) -> object:
        """Exactly one frame from the event channel (event lock held)."""
        assert self._events is not None
        if self._stream_events:
            header = self._recv_exact(_LENGTH_BYTES)
            if isinstance(header, EventStatus):
                return header
            length = int.from_bytes(header, "big")
            if not 2 <= length <= MAX_FRAME_BYTES:
                self.mark_dead()
                return EventStatus.DISCONNECTED
            body = self._recv_exact(length)
            if isinstance(body, EventStatus):
                return body
        else:  # SOCK_SEQPACKET / SOCK_DGRAM: one record is one frame
            try:
                data = self._events.recv(MAX_FRAME_BYTES + _LENGTH_BYTES)
            except OSError as exc:
                return self._recv_failed(exc)
            if len(data) < _LENGTH_BYTES + 2 or int.from_bytes(
                    data[:_LENGTH_BYTES], "big") != len(data) - _LENGTH_BYTES:
                self.mark_dead()
                return EventStatus.DISCONNECTED
            body = data[_LENGTH_BYTES:]
        msg = decode_body(bytes(body))
        if isinstance(msg, Malformed):
            self.mark_dead()
            return EventStatus.DISCONNECTED
        return msg

    def _recv_exact(self, n: int) -> bytes | EventStatus:
        assert self._events is not None
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self._events.recv(n - len(buf), socket.MSG_WAITALL)
            except OSError as exc:
                return self._recv_failed(exc)
            if not chunk:
                self.mark_dead()
                return EventStatus.DISCONNECTED
            buf += chunk
        return bytes(buf)

    def _recv_failed(self, exc: OSError) -> EventStatus:
        if exc.errno == errno.EBADF:
            return EventStatus.CLOSED_FD
        self.mark_dead()
        return EventStatus.DISCONNECTED
