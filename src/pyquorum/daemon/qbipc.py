"""The libqb-compatible IPC endpoint: Corosync's C client libraries talk to pyquorumd.

Enabled with ``system { libqb_ipc: yes }``.  Programs linked against Corosync 3's
libquorum, libvotequorum, libcmap and libcfg (corosync-quorumtool, pacemaker, ...)
connect unchanged; the byte layouts are ``pyquorum.wire.qbmsg``.

Theory of operation
-------------------
libqb 2.0 (``lib/ipc_setup.c``, ``lib/ipc_socket.c``, ``lib/ipcc.c``) on Linux, as the
client expects it, with the *socket* transport (the client follows the transport the
server names in its connection response)::

    client                                         pyquorumd
    ---------------------------------------------  -------------------------------------
    connect(SOCK_STREAM, abstract "\\0<service>",   listener per service: cmap, cfg,
            the full 108-byte sun_path)            quorum, votequorum (only with the
                                                   votequorum provider: without it the
                                                   client gets ECONNREFUSED, i.e.
                                                   CS_ERR_LIBRARY, as with Corosync)
    send qb_ipc_connection_request (24 B,          SO_PEERCRED of the stream; admission
         id QB_IPC_MSG_AUTHENTICATE)               in Corosync's order: not ready yet ->
                                                   -EAGAIN, credentials refused -> -EACCES
                                                   (counted, logged, connection closed)
                                                   accepted: mkdtemp /dev/shm/qb-<our pid>-
                                                   <client pid>-<fd>-XXXXXXXX (owned by
                                                   the client, 0770), the 24-byte control
                                                   file "<dir>/qb-control-<service>",
                                                   datagram sockets bound to abstract
                                                   "<dir>/qb-<service>-request" and
                                                   "...-event-tx"
    recv qb_ipc_connection_response (12328 B:      error 0, connection_type SOCKET,
         error, type, max_msg_size, paths)         max_msg_size, control file, base name
    bind "<base>-response" -> connect "-request",
    bind "<base>-event" -> connect "-event-tx"
    request datagram                               one request per datagram; answers in
                                                   request order from "-request",
                                                   connected to "<base>-response" on
                                                   first use; events from "-event-tx",
                                                   connected to "<base>-event"
    close (the stream's EOF/HUP)                   disconnect: sockets closed, control
                                                   file and directory removed, engine
                                                   ``connection_closed``

After the handshake the stream only signals liveness (bytes a client writes there are
read and discarded, as libqb does); nothing is ever written to it again (a libqb client
would take that as a hang-up).  The control file's flow-control words stay 0: instead of
libqb's flag, a client is throttled by not reading its request socket (its sends then
fail with EAGAIN, i.e. CS_ERR_TRY_AGAIN).

Requests go through the same engine commands and ``ipcproto`` helpers as the native
IPC (``ipcserver``): quorum and votequorum requests, the cfg reload and the cmap
trigger key become engine commands answered when the engine's ``Replied`` comes; cmap
reads, iterators and the cfg address/local-node queries are answered at once from the
daemon's cmap view.  Answers leave in request order (a FIFO of slots, as in
``ipcserver``).  Writes never close a connection inside the driver's pump: a failed
send marks the connection dead and the close runs from the loop.

Bounds, and what happens at each (counted in ``stats``, shown in cmap as
``runtime.pyquorum.stats.qb_*``)::

    MAX_CLIENTS               256      closed at accept (qb_refused_limit); lowered if
                                       RLIMIT_NOFILE cannot cover 3 fds per client
    MAX_UNPRIVILEGED_PENDING  16       peers the access rule refuses, awaiting their
                                       connection request: more closed at accept
    HANDSHAKE_TIMEOUT_S       10 s     no connection request: closed
                                       (qb_handshake_timeouts)
    bad connection request             closed without answer (qb_malformed)
    MAX_REQUEST_BYTES         64 KiB   larger datagram: answered INVALID_PARAM
                                       (qb_malformed)
    bad request (short, size           answered with a bare header, id 0,
    mismatch, unknown id)              CS_ERR_INVALID_PARAM (qb_invalid_requests)
    MAX_INFLIGHT              32       the request socket is not read meanwhile
    MAX_OUTPUT_BYTES          2 MiB    likewise, until the client reads its answers
    MAX_EVENT_BACKLOG         4 MiB    disconnected (qb_evicted_backlog)
    MAX_ITERATORS             64       cmap_iter_init answers CS_ERR_NO_RESOURCES
    MAX_CMAP_GET_BYTES        256 KiB  a cmap_get buffer larger than this: INVALID_PARAM
    DATAGRAMS_PER_TURN        16       per readable callback and connection
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import resource
import secrets
import socket
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from pyquorum.config.model import UidGidConfig
from pyquorum.core.engine import Command, Replied
from pyquorum.daemon import ipcproto as proto
from pyquorum.daemon.errors import StartupError
from pyquorum.daemon.ipcserver import IpcBackend, LogFn, LogGate, peer_cred
from pyquorum.errors import CsErr
from pyquorum.wire import ipc
from pyquorum.wire import qbmsg as qb

SERVICES: Final = ("cmap", "cfg", "quorum", "votequorum")
"""libqb endpoint names (Corosync's ``cs_ipcs_serv_short_name``)."""
ENGINE_BACKED: Final = frozenset({"quorum", "votequorum"})
SUN_PATH_MAX: Final = 108
MAX_CLIENTS: Final = 256
MAX_UNPRIVILEGED_PENDING: Final = 16
HANDSHAKE_TIMEOUT_S: Final = 10.0
MAX_REQUEST_BYTES: Final = 64 * 1024
MAX_INFLIGHT: Final = 32
MAX_OUTPUT_BYTES: Final = 2 * 1024 * 1024
MAX_EVENT_BACKLOG: Final = 4 * 1024 * 1024
MAX_ITERATORS: Final = 64
MAX_CMAP_GET_BYTES: Final = 256 * 1024
DATAGRAMS_PER_TURN: Final = 16
ACCEPTS_PER_WAKEUP: Final = 64
ACCEPT_BACKOFF_S: Final = 1.0
DEFAULT_MAX_MSG: Final = 1024 * 1024
"""The ``max_msg_size`` answered at least (Corosync's libraries ask for 1 MiB)."""
MAX_MSG_CAP: Final = 16 * 1024 * 1024
SEND_BUFFER: Final = 1024 * 1024
FDS_PER_CLIENT: Final = 3
FD_RESERVE: Final = 64 + 2 * 256
"""Descriptors kept for the rest of the daemon, the native IPC's clients included."""
SHM_DIR: Final = "/dev/shm"
CONTROL_SIZE: Final = 24
"""libqb's ``SHM_CONTROL_SIZE``: three ``{int32 sent; int32 flow_control}``."""


def abstract_address(name: str) -> bytes:
    """libqb's abstract address of ``name``: NUL, the name, NUL padding to 108 bytes
    (libqb binds and connects with ``sizeof(struct sockaddr_un)``, so the padding is part
    of the name)."""
    raw = os.fsencode(name)
    if len(raw) > SUN_PATH_MAX - 1:
        raise ValueError(f"abstract socket name too long: {name!r}")
    return b"\0" + raw + b"\0" * (SUN_PATH_MAX - 1 - len(raw))


@dataclass(slots=True)
class _Slot:
    req: object
    command: Command | None
    frame: bytes | None = None


@dataclass(slots=True)
class _Iterator:
    items: list[tuple[str, qb.CmapValue]]
    pos: int = 0


@dataclass(slots=True, eq=False)
class _Conn:
    conn_id: int
    service: str
    sock: socket.socket
    cred: proto.PeerCred
    privileged: bool
    inbuf: bytearray = field(default_factory=bytearray)
    timer: asyncio.TimerHandle | None = None
    open: bool = False
    req_sock: socket.socket | None = None
    ev_sock: socket.socket | None = None
    base: str = ""
    shm_dir: str | None = None
    control: str | None = None
    resp_connected: bool = False
    ev_connected: bool = False
    slots: deque[_Slot] = field(default_factory=deque)
    out: deque[bytes] = field(default_factory=deque)
    out_bytes: int = 0
    ev_out: deque[bytes] = field(default_factory=deque)
    ev_bytes: int = 0
    reading_req: bool = False
    writing_req: bool = False
    writing_ev: bool = False
    setup_out: bytes = b""
    iterators: dict[int, _Iterator] = field(default_factory=dict)
    announced: bool = False
    """``ipc_opened`` was called (quorum and votequorum connections)."""
    dead: bool = False


class QbIpcServer:
    """The libqb endpoints of one daemon (see the module's theory of operation)."""

    def __init__(self, backend: IpcBackend, log: LogFn, *, uidgid: UidGidConfig,
                 run_dir: str | Path, conn_in_use: Callable[[int], bool] | None = None,
                 shm_dir: str = SHM_DIR) -> None:
        self._backend = backend
        self._log = log
        self._uidgid = uidgid
        self._run_dir = Path(run_dir)
        self._conn_in_use = conn_in_use
        self._shm_dir = shm_dir
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: dict[str, socket.socket] = {}
        self._conns: dict[int, _Conn] = {}
        self._next_conn = 0x8000_0000
        self._unprivileged_pending = 0
        self._log_limited = LogGate(log, self._loop_time)
        self.max_clients = MAX_CLIENTS
        self._counters: dict[str, int] = {
            "qb_connections": 0, "qb_refused_access": 0, "qb_refused_try_again": 0,
            "qb_refused_limit": 0, "qb_refused_resources": 0, "qb_malformed": 0,
            "qb_invalid_requests": 0, "qb_handshake_timeouts": 0, "qb_evicted_backlog": 0,
        }

    # ------------------------------------------------------------ life cycle
    @property
    def services(self) -> tuple[str, ...]:
        """The endpoints served (votequorum only with its provider)."""
        return tuple(s for s in SERVICES
                     if s != "votequorum" or self._backend.has_votequorum)

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind and listen on every endpoint; ``StartupError`` if one is taken."""
        self._loop = loop
        for name in self.services:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(abstract_address(name))
                sock.listen(128)
                sock.setblocking(False)
            except OSError as exc:
                sock.close()
                self.close()
                raise StartupError(
                    f"libqb IPC: cannot listen on the abstract socket @{name}: "
                    f"{exc.strerror} (is Corosync running in this network namespace?)"
                ) from None
            self._listeners[name] = sock
            loop.add_reader(sock.fileno(), self._on_accept, name)
        self.max_clients = self._client_budget()
        self._log("info", "MAIN", f"libqb IPC listening on @{', @'.join(self.services)} "
                                  f"(at most {self.max_clients} clients)")

    def _client_budget(self) -> int:
        needed = MAX_CLIENTS * FDS_PER_CLIENT + FD_RESERVE
        try:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        except (OSError, ValueError):
            return MAX_CLIENTS
        infinity = resource.RLIM_INFINITY
        if soft != infinity and soft < needed:
            target = needed if hard == infinity else min(needed, hard)
            with contextlib.suppress(OSError, ValueError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
        if soft == infinity or soft >= needed:
            return MAX_CLIENTS
        allowed = max(1, (soft - FD_RESERVE) // FDS_PER_CLIENT)
        self._log("warning", "MAIN", f"the open-file limit (RLIMIT_NOFILE {soft}) allows "
                                     f"only {allowed} libqb IPC clients")
        return allowed

    def close(self) -> None:
        """Close every connection (without engine notifications) and the listeners."""
        for conn in list(self._conns.values()):
            self._close(conn, notify=False)
        for sock in self._listeners.values():
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._listeners.clear()

    def set_uidgid(self, uidgid: UidGidConfig) -> None:
        """A reloaded ``uidgid``: decides admissions from now on."""
        self._uidgid = uidgid

    def owns(self, conn: int) -> bool:
        """Whether ``conn`` is one of this server's connection ids."""
        return conn in self._conns

    @property
    def client_count(self) -> int:
        """Connections open now (handshakes included)."""
        return len(self._conns)

    @property
    def stats(self) -> dict[str, int]:
        """Counters, then gauges: handshakes pending, open connections per service."""
        gauges = {f"qb_open_{s}": 0 for s in SERVICES}
        pending = 0
        for conn in self._conns.values():
            if conn.open:
                gauges[f"qb_open_{conn.service}"] += 1
            else:
                pending += 1
        return {**self._counters, "qb_open_awaiting_handshake": pending, **gauges}

    # ------------------------------------------------------------ accept and handshake
    def _on_accept(self, service: str) -> None:
        listener = self._listeners.get(service)
        if listener is None or self._loop is None:
            return
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._log("error", "MAIN", f"libqb IPC accept failed: {exc}; pausing "
                                           f"accepts for {ACCEPT_BACKOFF_S:.0f} s")
                self._loop.remove_reader(listener.fileno())
                self._loop.call_later(ACCEPT_BACKOFF_S, self._resume, service)
                return
            sock.setblocking(False)
            self._accepted(service, sock)

    def _resume(self, service: str) -> None:
        listener = self._listeners.get(service)
        if listener is not None and self._loop is not None:
            self._loop.add_reader(listener.fileno(), self._on_accept, service)

    def _accepted(self, service: str, sock: socket.socket) -> None:
        assert self._loop is not None
        if len(self._conns) >= self.max_clients:
            self._counters["qb_refused_limit"] += 1
            self._log_limited("warning", "limit", f"libqb IPC connection refused: "
                              f"{self.max_clients} clients already connected")
            sock.close()
            return
        try:
            cred = peer_cred(sock)
        except OSError:
            sock.close()
            return
        privileged = proto.allowed(cred, self._uidgid)
        if not privileged:
            if self._unprivileged_pending >= MAX_UNPRIVILEGED_PENDING:
                self._counters["qb_refused_limit"] += 1
                self._log_limited("warning", "unprivileged",
                                  f"libqb IPC connection refused: {self._unprivileged_pending}"
                                  f" connections of peers without access are pending (pid "
                                  f"{cred.pid} uid {cred.uid} gid {cred.gid})")
                sock.close()
                return
            self._unprivileged_pending += 1
        conn = _Conn(self._new_conn_id(), service, sock, cred, privileged)
        self._conns[conn.conn_id] = conn
        self._counters["qb_connections"] += 1
        conn.timer = self._loop.call_later(HANDSHAKE_TIMEOUT_S, self._handshake_timeout, conn)
        self._loop.add_reader(sock.fileno(), self._on_setup_readable, conn)

    def _new_conn_id(self) -> int:
        """An engine connection id in 2**31 .. 2**32 - 1, not in use here nor (through
        ``conn_in_use``) by the native IPC server."""
        while True:
            conn = self._next_conn
            self._next_conn = 0x8000_0000 if conn >= 0xFFFF_FFFF else conn + 1
            if conn not in self._conns and not (self._conn_in_use and self._conn_in_use(conn)):
                return conn

    def _handshake_timeout(self, conn: _Conn) -> None:
        conn.timer = None
        if not conn.open and self._conns.get(conn.conn_id) is conn:
            self._counters["qb_handshake_timeouts"] += 1
            self._log_limited("info", "handshake_timeout",
                              f"libqb IPC: no connection request within "
                              f"{HANDSHAKE_TIMEOUT_S:g} s (pid {conn.cred.pid}); closing")
            self._close(conn)

    def _handshake_done(self, conn: _Conn) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        if not conn.privileged:
            conn.privileged = True  # counted once
            self._unprivileged_pending -= 1

    def _on_setup_readable(self, conn: _Conn) -> None:
        if conn.dead:
            return
        want = 4096 if conn.open else qb.CONNECTION_REQUEST_SIZE - len(conn.inbuf)
        try:
            data = conn.sock.recv(want)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:  # the client went away
            self._close(conn)
            return
        if conn.open:
            return  # libqb ignores bytes on the setup socket after the handshake
        conn.inbuf += data
        if len(conn.inbuf) == qb.CONNECTION_REQUEST_SIZE:
            self._handshake(conn, bytes(conn.inbuf))

    def _handshake(self, conn: _Conn, data: bytes) -> None:
        self._handshake_done(conn)
        req = qb.decode_connection_request(data)
        if isinstance(req, qb.BadHandshake):
            self._counters["qb_malformed"] += 1
            self._log_limited("warning", "malformed", f"libqb IPC @{conn.service}: bad "
                              f"connection request from pid {conn.cred.pid} ({req.reason}); "
                              "closing")
            self._close(conn)
            return
        error = self._admission(conn)
        if error:
            self._refuse(conn, error)
            return
        try:
            self._setup_channels(conn)
        except (OSError, ValueError) as exc:
            errno = getattr(exc, "errno", None) or 12  # ENOMEM when unknown
            self._counters["qb_refused_resources"] += 1
            self._log_limited("error", "resources", f"libqb IPC @{conn.service}: cannot "
                              f"set up the connection of pid {conn.cred.pid}: {exc}")
            self._refuse(conn, -errno)
            return
        max_msg = min(max(req.max_msg_size, DEFAULT_MAX_MSG), MAX_MSG_CAP)
        assert conn.control is not None
        frame = qb.encode_connection_response(0, max_msg_size=max_msg,
                                              connection=conn.conn_id,
                                              request=conn.control, response=conn.base)
        conn.open = True
        if not self._send_setup(conn, frame):
            return
        self._log("debug", "MAIN", f"libqb IPC conn {conn.conn_id} open: @{conn.service}, "
                                   f"pid {conn.cred.pid} uid {conn.cred.uid}")
        if conn.service in ENGINE_BACKED:
            conn.announced = True
            self._backend.ipc_opened(conn.conn_id)
        self._start_reading(conn)

    def _admission(self, conn: _Conn) -> int:
        """0, or the negative errno Corosync's ``cs_ipcs_connection_accept`` returns."""
        if not self._backend.ready:
            self._counters["qb_refused_try_again"] += 1
            return -11  # EAGAIN: CS_ERR_TRY_AGAIN
        if conn.service == "votequorum" and not self._backend.has_votequorum:
            return -38  # ENOSYS: CS_ERR_NOT_SUPPORTED (the endpoint is not bound anyway)
        if not proto.allowed(conn.cred, self._uidgid):
            self._counters["qb_refused_access"] += 1
            self._log_limited("warning", "access",
                              f"libqb IPC @{conn.service}: denied connection attempt from "
                              f"{conn.cred.uid}:{conn.cred.gid} (pid {conn.cred.pid})")
            return -13  # EACCES: CS_ERR_ACCESS
        return 0

    def _refuse(self, conn: _Conn, error: int) -> None:
        """The libqb refusal: a connection response carrying ``error``, then close."""
        with contextlib.suppress(OSError):
            conn.sock.send(qb.encode_connection_response(error))
        self._close(conn)

    def _setup_channels(self, conn: _Conn) -> None:
        """The control file and the two datagram sockets (libqb's ``qb_ipcs_us_connect``)."""
        root = self._shm_dir if os.path.isdir(self._shm_dir) else str(self._run_dir)
        cred = conn.cred
        conn.shm_dir = tempfile.mkdtemp(
            prefix=f"qb-{os.getpid()}-{cred.pid}-{conn.sock.fileno()}-", dir=root)
        with contextlib.suppress(OSError):  # fails when we are not root, as in libqb
            os.chown(conn.shm_dir, cred.uid, cred.gid)
        os.chmod(conn.shm_dir, 0o770)
        description = f"{conn.shm_dir}/qb"
        conn.control = f"{description}-control-{conn.service}"
        conn.base = f"{description}-{conn.service}"
        fd = os.open(conn.control, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, CONTROL_SIZE)
            with contextlib.suppress(OSError):
                os.fchown(fd, cred.uid, cred.gid)
        finally:
            os.close(fd)
        conn.req_sock = self._dgram(conn.base + "-request")
        conn.ev_sock = self._dgram(conn.base + "-event-tx")

    @staticmethod
    def _dgram(name: str) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(abstract_address(name))
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except (OSError, ValueError):
            sock.close()
            raise
        return sock

    def _send_setup(self, conn: _Conn, frame: bytes) -> bool:
        """Send the connection response (the rest later if the socket is full)."""
        try:
            sent = conn.sock.send(frame)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return False
        if sent < len(frame):
            conn.setup_out = frame[sent:]
            assert self._loop is not None
            self._loop.add_writer(conn.sock.fileno(), self._on_setup_writable, conn)
        return True

    def _on_setup_writable(self, conn: _Conn) -> None:
        if conn.dead:
            return
        try:
            sent = conn.sock.send(conn.setup_out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.setup_out = conn.setup_out[sent:]
        if not conn.setup_out and self._loop is not None:
            self._loop.remove_writer(conn.sock.fileno())

    # ------------------------------------------------------------ requests
    def _throttled(self, conn: _Conn) -> bool:
        return len(conn.slots) >= MAX_INFLIGHT or conn.out_bytes >= MAX_OUTPUT_BYTES

    def _start_reading(self, conn: _Conn) -> None:
        if (not conn.reading_req and not conn.dead and conn.req_sock is not None
                and self._loop is not None):
            self._loop.add_reader(conn.req_sock.fileno(), self._on_request_readable, conn)
            conn.reading_req = True

    def _stop_reading(self, conn: _Conn) -> None:
        if conn.reading_req and conn.req_sock is not None and self._loop is not None:
            self._loop.remove_reader(conn.req_sock.fileno())
            conn.reading_req = False

    def _on_request_readable(self, conn: _Conn) -> None:
        for _ in range(DATAGRAMS_PER_TURN):
            if conn.dead or conn.req_sock is None:
                return
            if self._throttled(conn):
                self._stop_reading(conn)  # resumed by _flush when answers leave
                return
            try:
                data, _, flags, _ = conn.req_sock.recvmsg(MAX_REQUEST_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close(conn)
                return
            if flags & socket.MSG_TRUNC:
                self._counters["qb_malformed"] += 1
                self._log_limited("warning", "oversize", f"libqb IPC conn {conn.conn_id}: "
                                  f"request larger than {MAX_REQUEST_BYTES} bytes dropped")
                self._answer(conn, None, qb.bad_request_response())
                continue
            self._on_request(conn, data)

    def _on_request(self, conn: _Conn, data: bytes) -> None:
        req = qb.decode_request(conn.service, data)
        if isinstance(req, qb.Disconnect):
            self._close(conn)
            return
        if isinstance(req, qb.BadRequest):
            self._counters["qb_invalid_requests"] += 1
            self._log("debug", "MAIN", f"libqb IPC conn {conn.conn_id}: {req.reason}")
            self._answer(conn, req, qb.bad_request_response(req.error))
            return
        if isinstance(req, qb.Unsupported):
            self._reply(conn, req, qb.StatusRes(int(CsErr.CS_ERR_NOT_SUPPORTED)))
            return
        if conn.service == "cmap":
            self._on_cmap(conn, req)
        elif conn.service == "cfg" and not isinstance(req, ipc.CfgReloadReq):
            self._on_cfg(conn, req)
        elif proto.invalid_model(req):
            self._reply(conn, req, proto.error_response(req, CsErr.CS_ERR_INVALID_PARAM))
        else:
            command = proto.to_command(req)
            if command is None:
                self._reply(conn, req, qb.StatusRes(int(CsErr.CS_ERR_NOT_SUPPORTED)))
            else:
                self._send_command(conn, req, command)

    def _send_command(self, conn: _Conn, req: object, command: Command) -> None:
        """Take the request's FIFO slot, then feed the engine (its ``Replied`` fills it)."""
        conn.slots.append(_Slot(req, command))
        self._backend.ipc_command(conn.conn_id, command)

    def _reply(self, conn: _Conn, req: object, res: object) -> None:
        self._answer(conn, req, qb.encode_response(conn.service, req, res))

    def _answer(self, conn: _Conn, req: object, frame: bytes) -> None:
        conn.slots.append(_Slot(req, None, frame))
        self._flush(conn)

    # ------------------------------------------------------------ cmap and cfg
    def _view(self, prefix: str) -> list[tuple[str, str]]:
        return self._backend.cmap_items(prefix)

    def _on_cmap(self, conn: _Conn, req: object) -> None:
        ok = int(CsErr.CS_OK)
        if isinstance(req, ipc.CmapSetReq):
            action = proto.cmap_set_action(req, has_votequorum=self._backend.has_votequorum)
            if isinstance(action, CsErr):
                self._reply(conn, req, qb.StatusRes(int(action)))
            else:
                self._send_command(conn, req, action)
        elif isinstance(req, qb.CmapGetReq):
            self._reply(conn, req, self._cmap_get(req))
        elif isinstance(req, qb.CmapIterInitReq):
            if len(conn.iterators) >= MAX_ITERATORS:
                self._reply(conn, req, qb.CmapIterInitRes(int(CsErr.CS_ERR_NO_RESOURCES)))
                return
            handle = self._iter_handle(conn)
            items = [(k, qb.cmap_typed_value(k, v)) for k, v in self._view(req.prefix)]
            conn.iterators[handle] = _Iterator(items)
            self._reply(conn, req, qb.CmapIterInitRes(ok, handle))
        elif isinstance(req, qb.CmapIterNextReq):
            it = conn.iterators.get(req.handle)
            if it is None:
                self._reply(conn, req, qb.CmapIterNextRes(int(CsErr.CS_ERR_BAD_HANDLE)))
            elif it.pos >= len(it.items):
                self._reply(conn, req, qb.CmapIterNextRes(int(CsErr.CS_ERR_NO_SECTIONS)))
            else:
                key, value = it.items[it.pos]
                it.pos += 1
                self._reply(conn, req, qb.CmapIterNextRes(ok, key, value))
        elif isinstance(req, qb.CmapIterFinalizeReq):
            found = conn.iterators.pop(req.handle, None) is not None
            self._reply(conn, req, qb.StatusRes(ok if found else int(CsErr.CS_ERR_BAD_HANDLE)))
        elif isinstance(req, qb.CmapSetCurrentMapReq):
            # one map: the stats map (1) is not separate here
            error = ok if req.map == 0 else int(CsErr.CS_ERR_NOT_SUPPORTED)
            self._reply(conn, req, qb.StatusRes(error))
        else:
            self._reply(conn, req, qb.StatusRes(int(CsErr.CS_ERR_NOT_SUPPORTED)))

    def _cmap_get(self, req: qb.CmapGetReq) -> qb.CmapGetRes:
        """Corosync's ``icmap_get``: NOT_EXIST, INVALID_PARAM when the caller's buffer is
        too small, else the typed value (only its length when ``value_len`` is 0)."""
        if req.value_len > MAX_CMAP_GET_BYTES:
            return qb.CmapGetRes(int(CsErr.CS_ERR_INVALID_PARAM))
        text = next((v for k, v in self._view(req.key) if k == req.key), None)
        if text is None:
            return qb.CmapGetRes(int(CsErr.CS_ERR_NOT_EXIST))
        value = qb.cmap_typed_value(req.key, text)
        if req.value_len and req.value_len < len(value.data):
            return qb.CmapGetRes(int(CsErr.CS_ERR_INVALID_PARAM))
        return qb.CmapGetRes(int(CsErr.CS_OK), value)

    @staticmethod
    def _iter_handle(conn: _Conn) -> int:
        while True:
            handle = (secrets.randbits(31) + 1) << 32 | secrets.randbits(32)
            if handle not in conn.iterators:
                return handle

    def _on_cfg(self, conn: _Conn, req: object) -> None:
        if isinstance(req, qb.CfgLocalGetReq):
            self._reply(conn, req, qb.CfgLocalGetRes(int(CsErr.CS_OK), self._local_nodeid()))
        elif isinstance(req, qb.CfgGetNodeAddrsReq):
            self._reply(conn, req, self._node_addrs(req.nodeid or self._local_nodeid()))
        else:
            self._reply(conn, req, qb.StatusRes(int(CsErr.CS_ERR_NOT_SUPPORTED)))

    def _local_nodeid(self) -> int:
        text = dict(self._view("runtime.pyquorum.node_id")).get("runtime.pyquorum.node_id")
        return int(text) if text and text.isdigit() else 0

    def _node_addrs(self, nodeid: int) -> qb.CfgGetNodeAddrsRes:
        """The node's ``ringN_addr`` that are IP addresses (Corosync: its link addresses)."""
        view = dict(self._view("nodelist.node."))
        index = next((k.split(".")[2] for k, v in view.items()
                      if k.endswith(".nodeid") and v == str(nodeid)), None)
        addrs: list[bytes] = []
        family = 0
        if index is not None:
            for link in range(8):
                text = view.get(f"nodelist.node.{index}.ring{link}_addr")
                if text is None:
                    continue
                try:
                    ip = ipaddress.ip_address(text)
                except ValueError:
                    continue
                if not addrs:
                    family = qb.AF_INET if ip.version == 4 else qb.AF_INET6
                addrs.append(ip.packed)
        if not addrs:
            return qb.CfgGetNodeAddrsRes(int(CsErr.CS_ERR_NOT_EXIST))
        return qb.CfgGetNodeAddrsRes(int(CsErr.CS_OK), family, tuple(addrs))

    # ------------------------------------------------------------ engine outputs
    def on_replied(self, ev: Replied) -> None:
        """An engine answer for one of our connections: fill its slot, send in order."""
        conn = self._conns.get(ev.conn)
        if conn is None or conn.dead:
            return
        slot = next((s for s in conn.slots if s.frame is None and s.command is ev.command),
                    None)
        if slot is None:
            slot = next((s for s in conn.slots
                         if s.frame is None and s.command == ev.command), None)
        if slot is None:
            return
        slot.frame = qb.encode_response(conn.service, slot.req, proto.response_for(ev))
        self._flush(conn)

    def on_notified(self, conn_id: int, note: proto.Notification) -> None:
        """A callback for one of our connections: one datagram on its event socket."""
        conn = self._conns.get(conn_id)
        if conn is None or conn.dead or not conn.open:
            return
        frame = qb.encode_event(proto.event_for(note))
        if frame is None:
            return
        conn.ev_out.append(frame)
        conn.ev_bytes += len(frame)
        if conn.ev_bytes > MAX_EVENT_BACKLOG:
            self._counters["qb_evicted_backlog"] += 1
            self._log_limited("warning", "evicted",
                              f"libqb IPC conn {conn_id} (pid {conn.cred.pid}) does not read "
                              f"its events: {conn.ev_bytes} bytes queued; disconnecting it")
            self._kill(conn)
            return
        if not conn.writing_ev:
            self._write_events(conn)

    # ------------------------------------------------------------ writing
    def _flush(self, conn: _Conn) -> None:
        while conn.slots and conn.slots[0].frame is not None:
            frame = conn.slots.popleft().frame
            assert frame is not None
            conn.out.append(frame)
            conn.out_bytes += len(frame)
        if not conn.writing_req:
            self._write(conn)
        if not conn.dead and not conn.reading_req and not self._throttled(conn):
            self._start_reading(conn)

    def _connect(self, conn: _Conn, sock: socket.socket, suffix: str) -> bool:
        try:
            sock.connect(abstract_address(conn.base + suffix))
        except (OSError, ValueError) as exc:
            self._log("debug", "MAIN", f"libqb IPC conn {conn.conn_id}: cannot reach the "
                                       f"client's {suffix[1:]} socket: {exc}")
            self._kill(conn)
            return False
        return True

    def _write(self, conn: _Conn) -> None:
        sock = conn.req_sock
        if conn.dead or sock is None or not conn.out:
            return
        if not conn.resp_connected:
            if not self._connect(conn, sock, "-response"):
                return
            conn.resp_connected = True
        if not self._send_queue(conn, sock, conn.out, "out_bytes"):
            return
        assert self._loop is not None
        if conn.out and not conn.writing_req:
            self._loop.add_writer(sock.fileno(), self._on_writable, conn)
            conn.writing_req = True
        elif not conn.out and conn.writing_req:
            self._loop.remove_writer(sock.fileno())
            conn.writing_req = False

    def _on_writable(self, conn: _Conn) -> None:
        self._write(conn)
        if not conn.dead and not conn.reading_req and not self._throttled(conn):
            self._start_reading(conn)

    def _write_events(self, conn: _Conn) -> None:
        sock = conn.ev_sock
        if conn.dead or sock is None or not conn.ev_out:
            return
        if not conn.ev_connected:
            if not self._connect(conn, sock, "-event"):
                return
            conn.ev_connected = True
        if not self._send_queue(conn, sock, conn.ev_out, "ev_bytes"):
            return
        assert self._loop is not None
        if conn.ev_out and not conn.writing_ev:
            self._loop.add_writer(sock.fileno(), self._write_events, conn)
            conn.writing_ev = True
        elif not conn.ev_out and conn.writing_ev:
            self._loop.remove_writer(sock.fileno())
            conn.writing_ev = False

    def _send_queue(self, conn: _Conn, sock: socket.socket, queue: deque[bytes],
                    counter: str) -> bool:
        """Send queued datagrams until the socket is full; False if the connection died."""
        while queue:
            frame = queue[0]
            try:
                sock.send(frame)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError as exc:
                self._log("debug", "MAIN", f"libqb IPC conn {conn.conn_id}: send: {exc}")
                self._kill(conn)
                return False
            queue.popleft()
            setattr(conn, counter, getattr(conn, counter) - len(frame))
        return True

    # ------------------------------------------------------------ closing
    def _kill(self, conn: _Conn) -> None:
        """Close from inside the pump: mark dead now, close from the loop."""
        if conn.dead:
            return
        conn.dead = True
        assert self._loop is not None
        self._loop.call_soon(self._close, conn)

    def _close(self, conn: _Conn, *, notify: bool = True) -> None:
        if self._conns.get(conn.conn_id) is not conn:
            return
        del self._conns[conn.conn_id]
        conn.dead = True
        self._handshake_done(conn)
        for sock in (conn.sock, conn.req_sock, conn.ev_sock):
            if sock is None:
                continue
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
                self._loop.remove_writer(sock.fileno())
            sock.close()
        conn.iterators.clear()
        if conn.control is not None:
            with contextlib.suppress(OSError):
                os.unlink(conn.control)
        if conn.shm_dir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(conn.shm_dir)
        if notify and conn.announced:
            self._backend.ipc_closed(conn.conn_id)

    def _loop_time(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0
