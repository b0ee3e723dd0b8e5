"""The Unix-socket IPC server (``<run_dir>/pyquorum.sock``) on an asyncio loop.

Theory of operation
-------------------
Every socket is non-blocking and watched with ``loop.add_reader`` / ``add_writer``.
Per connection:

    state          input                          action
    -------------  -----------------------------  -----------------------------------------
    (accept)       SO_PEERCRED read               wait for Hello (``HELLO_TIMEOUT_S``)
    await hello    Hello(service)                 ``ipcproto.admit``: refused -> HelloReply
                                                  (error), close; CS_OK -> socketpair, reply
                                                  with the client's end (SCM_RIGHTS)
    await hello    any other frame / garbage      count malformed, close
    open           request of our service         quorum/votequorum (qdevice included),
                                                  cfg reload: engine command (answer when
                                                  ``Replied`` comes); cmap set of
                                                  quorum.cancel_wait_for_all to 1..255:
                                                  engine ``VqCancelWaitForAll`` (likewise);
                                                  other cmap requests, testhook: answered
                                                  at once
    open           other service's request or     ErrorReply(INVALID_PARAM, type), keep open
                   unknown type
    open           malformed frame                count, log, close this connection only
    open           EOF/error on either socket     close (engine ``connection_closed``)

Responses leave in request order: each request takes a slot in a FIFO, engine
answers fill their slot, and the filled head of the FIFO is written (a cmap set that
goes to the engine waits in its slot like any engine-backed request).  Reading stops
while ``MAX_INFLIGHT`` requests are unanswered or ``MAX_OUTPUT_BYTES`` of responses
are unread (the client's own flow control), so nothing a client does grows without
bound.  Events go to the connection's event channel; when more than
``MAX_EVENT_BACKLOG`` bytes of events pile up unread, the client is logged and
disconnected (Corosync's policy for a client whose event queue overflows).

Fairness: a readable socket is read once (``RECV_BYTES``) and, if that completed a
frame, the connection stops being read and joins a run queue.  One callback per loop
iteration handles at most ``FRAMES_PER_ITERATION`` frames, at most
``FRAMES_PER_TURN`` of one connection before the next queued one; a connection with
frames left goes to the back of the queue.  So a client pipelining thousands of
requests costs the loop a few milliseconds per iteration, and timers, cluster
datagrams and the other clients run in between (without this, one 64 KiB read of
small requests held the loop for more than a second).

Every limit, and what happens when it is reached (see also docs/architecture.md,
"Limits")::

    limit                      value        reached
    -------------------------  -----------  ------------------------------------------
    MAX_CLIENTS                256          new connections are closed at accept
                                            (``ipc_refused_limit``), lowered to what
                                            RLIMIT_NOFILE allows (2 fds per client)
    MAX_UNPRIVILEGED_PENDING   16           connections whose credentials will be
                                            refused, not yet past their hello: more are
                                            closed at accept (``ipc_refused_limit``), so
                                            unprivileged users cannot fill MAX_CLIENTS
    HELLO_TIMEOUT_S            10 s         no hello: closed (``ipc_hello_timeouts``)
    FRAME_TIMEOUT_S            10 s         part of a request frame held that long with
                                            no frame completed: closed
                                            (``ipc_frame_timeouts``)
    MAX_HELLO_BYTES /          64 B /       a length header over the limit closes the
    MAX_REQUEST_BYTES          64 KiB       connection before the body is read
                                            (``ipc_malformed``)
    MAX_INFLIGHT               32           reading pauses until answers are written
    MAX_OUTPUT_BYTES           2 MiB        reading pauses until the client reads
    MAX_EVENT_BACKLOG          4 MiB        disconnected (``ipc_evicted_backlog``)

Refusals and evictions are logged at most once per ``LOG_INTERVAL_S`` per kind (the
next line says how many were not logged), so a connection loop cannot flood the log.
With ``PYQUORUM_TEST_HOOKS=1`` the limits can be lowered for tests through
``PYQUORUM_TEST_IPC_LIMITS`` (``name=value,...``, names of ``IpcLimits``).

Only quorum and votequorum connections are announced to the engine (``ipc_opened`` /
``ipc_closed``): cfg and cmap connections send engine commands that need no per-connection
state, and an answer for a connection that has gone is dropped.

pyquorum's cmap is read-only except for the trigger key ``quorum.cancel_wait_for_all``
(``ipcproto.cmap_set_action``): any other key answers CS_ERR_ACCESS; configuration
changes go through the configuration file and a cfg reload.

Output is coalesced: answers and events are appended to per-connection buffers and
one ``call_soon`` flush per loop iteration sends them, events first (a batch of
pipelined requests or all the callbacks of a view change leave in one send per
socket, and the callbacks a request queued are readable before its answer arrives).  Writes never
close a connection in place (answers are produced inside the driver's pump): a
failed write marks the connection dead and the close runs from the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import resource
import socket
import stat
import struct
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from pyquorum.config.model import UidGidConfig
from pyquorum.core.engine import Command, Replied
from pyquorum.daemon import ipcproto as proto
from pyquorum.daemon.errors import StartupError
from pyquorum.errors import CsErr
from pyquorum.wire import ipc
from pyquorum.wire.codec import EncodeError, Malformed

MAX_CLIENTS: Final = 256
"""Open connections, in any state (lowered to what RLIMIT_NOFILE allows)."""
MAX_UNPRIVILEGED_PENDING: Final = 16
"""Connections awaiting their hello from peers whose credentials will be refused."""
MAX_INFLIGHT: Final = 32
MAX_OUTPUT_BYTES: Final = 2 * 1024 * 1024
MAX_EVENT_BACKLOG: Final = 4 * 1024 * 1024
HELLO_TIMEOUT_S: Final = 10.0
FRAME_TIMEOUT_S: Final = 10.0
RECV_BYTES: Final = 65536
FRAMES_PER_TURN: Final = 16
FRAMES_PER_ITERATION: Final = 64
ACCEPTS_PER_WAKEUP: Final = 64
ACCEPT_BACKOFF_S: Final = 1.0
FDS_PER_CLIENT: Final = 2
"""The request socket and our end of the event channel."""
FD_RESERVE: Final = 64
"""Descriptors kept for everything else (UDP, listener, log, state files, loop)."""
LOG_INTERVAL_S: Final = 1.0
LIMITS_ENV: Final = "PYQUORUM_TEST_IPC_LIMITS"
_UCRED: Final = struct.Struct("3i")


@dataclass(frozen=True, slots=True)
class IpcLimits:
    """The server's limits (the module constants; tests may lower them)."""

    max_clients: int = MAX_CLIENTS
    max_unprivileged_pending: int = MAX_UNPRIVILEGED_PENDING
    max_inflight: int = MAX_INFLIGHT
    max_output_bytes: int = MAX_OUTPUT_BYTES
    max_event_backlog: int = MAX_EVENT_BACKLOG
    hello_timeout_s: float = HELLO_TIMEOUT_S
    frame_timeout_s: float = FRAME_TIMEOUT_S

    @classmethod
    def parse(cls, text: str) -> IpcLimits:
        """``name=value,...`` over the defaults; ValueError names what is wrong."""
        values: dict[str, int | float] = {}
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in kinds:
                raise ValueError(f"{LIMITS_ENV}: unknown limit {item!r}")
            number = float(value) if kinds[name] in (float, "float") else int(value)
            if number <= 0:
                raise ValueError(f"{LIMITS_ENV}: {name} must be positive")
            values[name] = number
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def for_server(cls, hooks: bool, environ: Mapping[str, str]) -> IpcLimits:
        """The defaults, or (test hooks only) the values of ``PYQUORUM_TEST_IPC_LIMITS``."""
        text = environ.get(LIMITS_ENV, "") if hooks else ""
        return cls.parse(text) if text else cls()


def fd_client_budget(wanted: int, log: LogFn | None = None) -> int:
    """How many clients the descriptor limit allows (``wanted`` at most).

    Raises the soft RLIMIT_NOFILE towards the hard one when it is too low for
    ``wanted`` clients (``FDS_PER_CLIENT`` each, plus ``FD_RESERVE``).
    """
    needed = wanted * FDS_PER_CLIENT + FD_RESERVE
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return wanted
    infinity = resource.RLIM_INFINITY
    if soft != infinity and soft < needed:
        target = needed if hard == infinity else min(needed, hard)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            except (OSError, ValueError):
                pass
            else:
                if log is not None:
                    log("info", "MAIN", f"raised the open-file limit (RLIMIT_NOFILE) from "
                                        f"{soft} to {target} for {wanted} IPC clients")
                soft = target
    if soft == infinity or soft >= needed:
        return wanted
    allowed = max(1, (soft - FD_RESERVE) // FDS_PER_CLIENT)
    if log is not None:
        log("warning", "MAIN", f"the open-file limit (RLIMIT_NOFILE {soft}, hard {hard}) "
                               f"allows only {allowed} IPC clients instead of {wanted}")
    return allowed

LogFn = Callable[[str, str, str], None]


class LogGate:
    """Logs each kind of message at most once per ``LOG_INTERVAL_S`` (of ``clock``) and
    says how many of that kind were left out (both IPC servers: refusals, evictions)."""

    def __init__(self, log: LogFn, clock: Callable[[], float]) -> None:
        self._log = log
        self._clock = clock
        self._last: dict[str, tuple[float, int]] = {}

    def __call__(self, level: str, kind: str, text: str) -> None:
        """Log ``text`` unless a message of ``kind`` went out within the interval."""
        now = self._clock()
        last, suppressed = self._last.get(kind, (-LOG_INTERVAL_S, 0))
        if now - last < LOG_INTERVAL_S:
            self._last[kind] = (last, suppressed + 1)
            return
        self._last[kind] = (now, 0)
        if suppressed:
            text += f" ({suppressed} more like this were not logged)"
        self._log(level, "MAIN", text)


class IpcBackend(Protocol):
    """What the server needs from the driver."""

    @property
    def ready(self) -> bool:
        """The first view is installed."""

    @property
    def has_votequorum(self) -> bool:
        """votequorum is the quorum provider."""

    def ipc_opened(self, conn: int) -> None:
        """A quorum/votequorum connection was admitted."""

    def ipc_command(self, conn: int, command: Command) -> None:
        """Feed an engine command (and pump); from any connection, cfg and cmap included."""

    def ipc_closed(self, conn: int) -> None:
        """A quorum/votequorum connection closed (engine ``connection_closed``, pump)."""

    def cmap_items(self, prefix: str) -> list[tuple[str, str]]:
        """The cmap view: sorted (key, value) starting with ``prefix``."""

    def test_block(self, nodeids: tuple[int, ...]) -> None:
        """Test hook: drop cluster traffic to and from ``nodeids``."""


@dataclass(slots=True)
class _Slot:
    command: Command | None
    frame: bytes | None = None


@dataclass(slots=True, eq=False)
class _Client:
    conn_id: int
    sock: socket.socket
    cred: proto.PeerCred
    framer: proto.RequestFramer = field(default_factory=proto.RequestFramer)
    service: int | None = None
    engine_backed: bool = False
    ev_sock: socket.socket | None = None
    out: bytearray = field(default_factory=bytearray)
    ev_out: bytearray = field(default_factory=bytearray)
    slots: deque[_Slot] = field(default_factory=deque)
    privileged: bool = True
    """Its credentials pass the access rule (decided at accept, for the pending pool)."""
    reading: bool = False
    writing: bool = False
    ev_writing: bool = False
    dead: bool = False
    queued: bool = False
    hello_timer: asyncio.TimerHandle | None = None
    frame_timer: asyncio.TimerHandle | None = None


def peer_cred(sock: socket.socket) -> proto.PeerCred:
    """SO_PEERCRED of a connected Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return proto.PeerCred(pid, uid, gid)


class IpcServer:
    """Listens on ``<run_dir>/pyquorum.sock`` and serves admitted clients."""

    def __init__(self, run_dir: str | Path, backend: IpcBackend, log: LogFn, *,
                 hooks: bool, uidgid: UidGidConfig, limits: IpcLimits | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / ipc.SOCKET_NAME
        self._backend = backend
        self._log = log
        self._hooks = hooks
        self._uidgid = uidgid
        self._given_limits = limits
        self.limits = limits if limits is not None else IpcLimits()
        """The limits; without ``limits``, ``open`` reads them from the environment when
        test hooks are on (``PYQUORUM_TEST_IPC_LIMITS``)."""
        self.max_clients = self.limits.max_clients
        """``limits.max_clients``, lowered at ``open`` if RLIMIT_NOFILE is too low."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._clients: dict[int, _Client] = {}
        self._dirty: dict[int, _Client] = {}
        self._flush_scheduled = False
        self._event_frames: dict[proto.Notification, bytes | None] = {}
        """Encoded event frames of this loop iteration's notifications: a change goes
        to every tracker as equal notifications, encoded once (cleared at each flush)."""
        self._runq: deque[_Client] = deque()
        self._run_scheduled = False
        self._next_conn = 1
        self.conn_in_use: Callable[[int], bool] | None = None
        """Connection ids another server (the libqb endpoint) holds: never handed out."""
        self._unprivileged_pending = 0
        self._log_limited = LogGate(log, self._loop_time)
        self._counters: dict[str, int] = {
            "ipc_connections": 0, "ipc_malformed": 0, "ipc_refused_access": 0,
            "ipc_refused_try_again": 0, "ipc_refused_library": 0, "ipc_refused_limit": 0,
            "ipc_refused_resources": 0, "ipc_invalid_requests": 0, "ipc_evicted_backlog": 0,
            "ipc_hello_timeouts": 0, "ipc_frame_timeouts": 0,
        }

    @property
    def stats(self) -> dict[str, int]:
        """Counters, then gauges of the connections open now: awaiting their hello, and
        admitted per service (``ipc_open_<service>``)."""
        open_by = dict.fromkeys(("cmap", "cfg", "quorum", "votequorum", "testhook"), 0)
        names = {ipc.SERVICE_CMAP: "cmap", ipc.SERVICE_CFG: "cfg",
                 ipc.SERVICE_QUORUM: "quorum", ipc.SERVICE_VOTEQUORUM: "votequorum",
                 ipc.SERVICE_TESTHOOK: "testhook"}
        awaiting = 0
        for client in self._clients.values():
            if client.service is None:
                awaiting += 1
            elif client.service in names:
                open_by[names[client.service]] += 1
        gauges = {f"ipc_open_{name}": n for name, n in open_by.items()}
        return {**self._counters, "ipc_open_awaiting_hello": awaiting, **gauges}

    # ------------------------------------------------------------ life cycle
    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Create the socket (mode 0666, replacing a stale one) and start accepting.

        The caller holds the run directory's pid-file lock, so a socket file already
        there belongs to a dead daemon.  Raises ``StartupError``.
        """
        self._loop = loop
        if self._given_limits is None:
            try:
                self.limits = IpcLimits.for_server(self._hooks, os.environ)
            except ValueError as exc:
                raise StartupError(str(exc)) from None
        if len(os.fsencode(self.path)) >= 108:
            raise StartupError(f"{self.path}: the IPC socket path is too long (max 107 bytes)")
        try:
            st = self.path.lstat()
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise StartupError(f"{self.path}: {exc.strerror}") from None
        if st is not None:
            if not stat.S_ISSOCK(st.st_mode):
                raise StartupError(f"{self.path}: exists and is not a socket; remove it")
            self._log("info", "MAIN", f"removing the stale IPC socket {self.path}")
        tmp = self.run_dir / f".{ipc.SOCKET_NAME}.{os.getpid()}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            sock.bind(os.fsencode(tmp))
            os.chmod(tmp, 0o666)
            sock.listen(128)
            sock.setblocking(False)
            os.replace(tmp, self.path)  # publish atomically, already mode 0666
            st = self.path.lstat()
        except OSError as exc:
            sock.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StartupError(f"{self.path}: cannot create the IPC socket: {exc}") from None
        self._inode = (st.st_dev, st.st_ino)
        self._listener = sock
        self.max_clients = fd_client_budget(self.limits.max_clients, self._log)
        loop.add_reader(sock.fileno(), self._on_accept)
        self._log("info", "MAIN", f"IPC server listening on {self.path} (at most "
                                  f"{self.max_clients} clients)")
        if self.limits != IpcLimits():
            self._log("notice", "MAIN", f"test hooks: IPC limits lowered: {self.limits}")

    def close(self) -> None:
        """Close every client and the listener; remove the socket file if it is ours."""
        for client in list(self._clients.values()):
            self._close(client, None, notify=False)
        if self._listener is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
            try:
                st = self.path.lstat()
                if (st.st_dev, st.st_ino) == self._inode:
                    self.path.unlink()
            except OSError:
                pass

    def set_uidgid(self, uidgid: UidGidConfig) -> None:
        """A reloaded ``uidgid`` configuration: it decides the admission of connections
        from now on; connections already admitted stay open (as in Corosync)."""
        self._uidgid = uidgid

    @property
    def client_count(self) -> int:
        """Connections currently open."""
        return len(self._clients)

    # ------------------------------------------------------------ engine outputs
    def on_replied(self, ev: Replied) -> None:
        """An engine answer: fill its slot and write what is now in order."""
        client = self._clients.get(ev.conn)
        if client is None or client.dead:
            return
        slot = next((s for s in client.slots if s.frame is None and s.command is ev.command),
                    None)
        if slot is None:
            slot = next((s for s in client.slots if s.frame is None and s.command == ev.command),
                        None)
        if slot is None:
            self._log("debug", "MAIN", f"conn {ev.conn}: an answer nobody asked for: {ev}")
            return
        slot.frame = self._encode(proto.response_for(ev), client)
        self._flush_slots(client)

    def on_notified(self, conn: int, note: proto.Notification) -> None:
        """A callback for ``conn``: queue it on the event channel."""
        client = self._clients.get(conn)
        if client is None or client.dead or client.ev_sock is None:
            return
        try:
            frame = self._event_frames[note]
        except KeyError:
            frame = self._event_frames[note] = self._encode(proto.event_for(note), client)
        except TypeError:  # an unhashable field (a list): encode it on its own
            frame = self._encode(proto.event_for(note), client)
        if frame is None:
            return
        client.ev_out += frame
        limit = self.limits.max_event_backlog
        if len(client.ev_out) > limit:
            self._counters["ipc_evicted_backlog"] += 1
            self._log_limited("warning", "evicted",
                              f"conn {conn} (pid {client.cred.pid}) does not read its events: "
                              f"{len(client.ev_out)} bytes queued (limit {limit}); "
                              "disconnecting it")
            self._kill(client)
            return
        if not client.ev_writing and self._loop is not None:
            # Written at once, not coalesced: a change goes to many trackers, and the
            # first ones should not wait until the last one's event is queued.
            self._write_events(client)
        else:
            self._mark_dirty(client)

    # ------------------------------------------------------------ accept / hello
    def _on_accept(self) -> None:
        assert self._listener is not None and self._loop is not None
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: back off instead of spinning
                self._log("error", "MAIN", f"IPC accept failed: {exc}; pausing accepts for "
                                           f"{ACCEPT_BACKOFF_S:.0f} s")
                self._loop.remove_reader(self._listener.fileno())
                self._loop.call_later(ACCEPT_BACKOFF_S, self._resume_accepting)
                return
            sock.setblocking(False)
            if len(self._clients) >= self.max_clients:
                self._counters["ipc_refused_limit"] += 1
                self._log_limited("warning", "limit", f"IPC connection refused: "
                                  f"{self.max_clients} clients already connected")
                sock.close()
                continue
            try:
                cred = peer_cred(sock)
            except OSError:
                sock.close()
                continue
            privileged = proto.allowed(cred, self._uidgid)
            if not privileged:
                if self._unprivileged_pending >= self.limits.max_unprivileged_pending:
                    self._counters["ipc_refused_limit"] += 1
                    self._log_limited(
                        "warning", "unprivileged",
                        f"IPC connection refused: {self._unprivileged_pending} connections "
                        f"of peers without access await their hello (pid {cred.pid} "
                        f"uid {cred.uid} gid {cred.gid})")
                    sock.close()
                    continue
                self._unprivileged_pending += 1
            client = _Client(self._new_conn_id(), sock, cred, privileged=privileged)
            self._clients[client.conn_id] = client
            self._counters["ipc_connections"] += 1
            client.hello_timer = self._loop.call_later(self.limits.hello_timeout_s,
                                                       self._hello_timeout, client)
            self._start_reading(client)

    def _resume_accepting(self) -> None:
        if self._listener is not None and self._loop is not None:
            self._loop.add_reader(self._listener.fileno(), self._on_accept)

    def _new_conn_id(self) -> int:
        """A connection id: never 0, never one in use here or by the libqb endpoint
        (``conn_in_use``; ids wrap after 2**32 - 1)."""
        while True:
            conn = self._next_conn
            self._next_conn = self._next_conn % 0xFFFF_FFFF + 1
            if conn not in self._clients and not (self.conn_in_use and self.conn_in_use(conn)):
                return conn

    def owns(self, conn: int) -> bool:
        """Whether ``conn`` is one of this server's connection ids."""
        return conn in self._clients

    def _hello_timeout(self, client: _Client) -> None:
        client.hello_timer = None
        if client.service is None and self._clients.get(client.conn_id) is client:
            self._counters["ipc_hello_timeouts"] += 1
            self._close(client, "no hello within the timeout")

    def _hello_done(self, client: _Client) -> None:
        """The connection is past the hello stage (answered, or closing)."""
        if client.hello_timer is not None:
            client.hello_timer.cancel()
            client.hello_timer = None
        if not client.privileged:
            client.privileged = True  # counted once
            self._unprivileged_pending -= 1

    def _on_hello(self, client: _Client, msg: object) -> None:
        self._hello_done(client)
        if not isinstance(msg, ipc.Hello):
            self._malformed(client, f"expected Hello, got {type(msg).__name__}")
            return
        err = proto.admit(msg.service, client.cred, ready=self._backend.ready,
                          has_votequorum=self._backend.has_votequorum, hooks=self._hooks,
                          uidgid=self._uidgid)
        if err != CsErr.CS_OK:
            key = {CsErr.CS_ERR_ACCESS: "ipc_refused_access",
                   CsErr.CS_ERR_TRY_AGAIN: "ipc_refused_try_again"}.get(err, "ipc_refused_library")
            self._counters[key] += 1
            level = "warning" if err == CsErr.CS_ERR_ACCESS else "info"
            self._log_limited(level, key,
                              f"IPC connection refused ({err.name}): service {msg.service}, "
                              f"pid {client.cred.pid} uid {client.cred.uid} "
                              f"gid {client.cred.gid}")
            self._refuse(client, err)
            return
        try:
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as exc:  # EMFILE/ENFILE/ENOMEM: refuse this one, keep serving
            self._counters["ipc_refused_resources"] += 1
            self._log_limited("error", "resources",
                              f"IPC connection refused (CS_ERR_NO_RESOURCES): cannot create "
                              f"its event channel: {exc}")
            self._refuse(client, CsErr.CS_ERR_NO_RESOURCES)
            return
        try:
            frame = ipc.encode_frame(ipc.HelloReply(int(CsErr.CS_OK), client.conn_id))
            sent = socket.send_fds(client.sock, [frame], [theirs.fileno()])
        except OSError as exc:
            mine.close()
            self._close(client, f"cannot send the hello reply: {exc}")
            return
        finally:
            theirs.close()
        if sent < len(frame):
            client.out += frame[sent:]
        mine.setblocking(False)
        client.ev_sock = mine
        client.service = msg.service
        client.framer.max_body = proto.MAX_REQUEST_BYTES
        client.engine_backed = msg.service in (ipc.SERVICE_QUORUM, ipc.SERVICE_VOTEQUORUM)
        assert self._loop is not None
        self._loop.add_reader(mine.fileno(), self._on_event_channel, client)
        if client.out:
            self._write(client)
        self._log("debug", "MAIN", f"IPC conn {client.conn_id} open: service {msg.service}, "
                                   f"pid {client.cred.pid} uid {client.cred.uid}")
        if client.engine_backed:
            self._backend.ipc_opened(client.conn_id)

    def _refuse(self, client: _Client, err: CsErr) -> None:
        with contextlib.suppress(OSError):
            client.sock.send(ipc.encode_frame(ipc.HelloReply(int(err), 0)))
        self._close(client, None)

    def _loop_time(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    # ------------------------------------------------------------ reading
    def _start_reading(self, client: _Client) -> None:
        if not client.reading and not client.dead and self._loop is not None:
            self._loop.add_reader(client.sock.fileno(), self._on_readable, client)
            client.reading = True

    def _stop_reading(self, client: _Client) -> None:
        if client.reading and self._loop is not None:
            self._loop.remove_reader(client.sock.fileno())
            client.reading = False

    def _throttled(self, client: _Client) -> bool:
        return (len(client.slots) >= self.limits.max_inflight
                or len(client.out) >= self.limits.max_output_bytes)

    def _on_readable(self, client: _Client) -> None:
        if client.dead:
            return
        try:
            data = client.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(client, None)
            return
        if not data:
            self._close(client, None)
            return
        client.framer.feed(data)
        if client.framer.ready:
            # stop reading until the run queue has handled what is buffered: the framer
            # never holds more than one recv plus one incomplete frame
            self._stop_reading(client)
            self._enqueue(client)
        else:
            self._watch_partial(client, progressed=False)

    def _enqueue(self, client: _Client) -> None:
        """Give the connection a turn in the run queue (see "Fairness")."""
        if client.dead or client.queued or self._loop is None:
            return
        client.queued = True
        self._runq.append(client)
        if not self._run_scheduled:
            self._run_scheduled = True
            self._loop.call_soon(self._run_queue)

    def _run_queue(self) -> None:
        """At most ``FRAMES_PER_ITERATION`` frames, ``FRAMES_PER_TURN`` per connection."""
        self._run_scheduled = False
        budget = FRAMES_PER_ITERATION
        while budget > 0 and self._runq:
            client = self._runq.popleft()
            client.queued = False
            if not client.dead:
                budget -= max(1, self._process(client, min(FRAMES_PER_TURN, budget)))
        if self._runq and not self._run_scheduled and self._loop is not None:
            self._run_scheduled = True
            self._loop.call_soon(self._run_queue)

    def _process(self, client: _Client, limit: int) -> int:
        """Handle at most ``limit`` buffered frames; how many were handled."""
        handled = 0
        while handled < limit and not client.dead and not self._throttled(client):
            item = client.framer.next_item()
            if item is None:
                break
            handled += 1
            if isinstance(item, Malformed):
                self._malformed(client, f"{item.reason.value}: {item.detail}")
                return handled
            if client.service is None:
                self._on_hello(client, item)
            else:
                self._on_request(client, item)
        if client.dead:
            return handled
        if self._throttled(client):
            self._stop_reading(client)  # _unthrottle_later resumes it
        elif client.framer.ready:
            self._stop_reading(client)
            self._enqueue(client)  # the rest on its next turn
        else:
            self._start_reading(client)
        self._watch_partial(client, progressed=handled > 0)
        return handled

    def _watch_partial(self, client: _Client, *, progressed: bool) -> None:
        """Time an incomplete request frame (``frame_timeout_s`` since the last frame
        completed); before the hello, the hello timer does that."""
        partial = client.framer.pending > 0 and not client.framer.ready
        timer = client.frame_timer
        if timer is not None and (progressed or not partial):
            timer.cancel()
            client.frame_timer = timer = None
        if (partial and timer is None and client.service is not None and not client.dead
                and self._loop is not None):
            client.frame_timer = self._loop.call_later(self.limits.frame_timeout_s,
                                                       self._frame_timeout, client)

    def _frame_timeout(self, client: _Client) -> None:
        client.frame_timer = None
        if client.dead or self._clients.get(client.conn_id) is not client:
            return
        if client.framer.pending == 0 or client.framer.ready:
            return
        if client.queued or self._throttled(client):  # we are the ones not reading
            self._watch_partial(client, progressed=False)
            return
        self._counters["ipc_frame_timeouts"] += 1
        self._log_limited("warning", "frame_timeout",
                          f"IPC conn {client.conn_id} (pid {client.cred.pid}) left a request "
                          f"frame incomplete ({client.framer.pending} bytes) for "
                          f"{self.limits.frame_timeout_s:g} s; closing that connection")
        self._close(client, None)

    def _unthrottle_later(self, client: _Client) -> None:
        """Resume a throttled client from the loop (never from inside the pump)."""
        if (not client.dead and not client.reading and not client.queued
                and not self._throttled(client)):
            self._enqueue(client)

    def _on_request(self, client: _Client, msg: object) -> None:
        service = client.service
        assert service is not None
        if isinstance(msg, ipc.Sync):  # any service: answered in request order
            self._answer(client, ipc.SyncReply(msg.token))
            return
        if isinstance(msg, proto.UnknownRequest) or not isinstance(
                msg, ipc.REQUESTS_BY_SERVICE.get(service, ())):
            tb = msg.type_byte if isinstance(msg, proto.UnknownRequest) else proto.type_byte(msg)
            self._counters["ipc_invalid_requests"] += 1
            self._log("debug", "MAIN", f"IPC conn {client.conn_id}: request type {tb} is not "
                                       f"one of service {service}")
            self._answer(client, ipc.ErrorReply(int(CsErr.CS_ERR_INVALID_PARAM), tb))
            return
        if isinstance(msg, ipc.CmapGetPrefixReq):
            items = tuple(ipc.KeyValue(k, v) for k, v in self._backend.cmap_items(msg.prefix))
            self._answer(client, ipc.CmapGetPrefixRes(int(CsErr.CS_OK), items))
            return
        if isinstance(msg, ipc.CmapSetReq):
            action = proto.cmap_set_action(msg, has_votequorum=self._backend.has_votequorum)
            if isinstance(action, CsErr):
                self._answer(client, ipc.CmapSetRes(int(action)))
            else:
                self._send_command(client, action)
            return
        if isinstance(msg, ipc.TestBlockReq):
            self._backend.test_block(tuple(msg.nodeids))
            self._answer(client, ipc.VqStatusRes(int(CsErr.CS_OK)))
            return
        if proto.invalid_model(msg):
            self._answer(client, proto.error_response(msg, CsErr.CS_ERR_INVALID_PARAM))
            return
        command = proto.to_command(msg)
        if command is None:  # a request type of this service we do not implement
            self._answer(client, proto.error_response(msg, CsErr.CS_ERR_NOT_SUPPORTED))
            return
        self._send_command(client, command)

    def _send_command(self, client: _Client, command: Command) -> None:
        """Take the request's FIFO slot, then feed the engine (its ``Replied`` fills it)."""
        client.slots.append(_Slot(command))
        self._backend.ipc_command(client.conn_id, command)

    def _answer(self, client: _Client, msg: object) -> None:
        client.slots.append(_Slot(None, self._encode(msg, client) or b""))  # never b""
        self._flush_slots(client)

    def _encode(self, msg: object, client: _Client) -> bytes | None:
        """The frame of ``msg``; if it cannot be encoded (too big), a response becomes
        an error of the same class (or ErrorReply), an event is dropped (None)."""
        try:
            return ipc.encode_frame(msg)
        except EncodeError as exc:
            self._log("error", "MAIN", f"IPC conn {client.conn_id}: cannot encode "
                                       f"{type(msg).__name__}: {exc}")
        if isinstance(msg, ipc.CmapGetPrefixRes):
            return ipc.encode_frame(ipc.CmapGetPrefixRes(int(CsErr.CS_ERR_TOO_BIG), ()))
        if isinstance(msg, ipc.QuorumV0Event | ipc.QuorumV1Event | ipc.NodelistV1Event
                      | ipc.VqQuorumEvent | ipc.VqNodelistEvent | ipc.VqExpectedVotesEvent):
            return None
        return ipc.encode_frame(ipc.ErrorReply(int(CsErr.CS_ERR_TOO_BIG), proto.type_byte(msg)))

    def _on_event_channel(self, client: _Client) -> None:
        if client.dead or client.ev_sock is None:
            return
        try:
            data = client.ev_sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(client, None)
            return
        if not data:  # the client closed its event channel: the connection is over
            self._close(client, None)

    def _malformed(self, client: _Client, detail: str) -> None:
        self._counters["ipc_malformed"] += 1
        self._log_limited("warning", "malformed",
                          f"IPC conn {client.conn_id} (pid {client.cred.pid} uid "
                          f"{client.cred.uid}) sent a malformed frame ({detail}); closing "
                          "that connection")
        self._close(client, None)

    # ------------------------------------------------------------ writing
    def _flush_slots(self, client: _Client) -> None:
        while client.slots and client.slots[0].frame is not None:
            frame = client.slots.popleft().frame
            assert frame is not None
            client.out += frame
        self._mark_dirty(client)
        self._unthrottle_later(client)

    def _mark_dirty(self, client: _Client) -> None:
        """Coalesce writes: everything queued during this loop iteration (the answers to
        a whole batch of pipelined requests) leaves in one send.  Events are written at
        once by ``on_notified`` unless the event channel is already backed up."""
        if client.dead:
            return
        self._dirty[client.conn_id] = client
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_dirty)

    def _flush_dirty(self) -> None:
        self._flush_scheduled = False
        self._event_frames.clear()
        dirty, self._dirty = self._dirty, {}
        for client in dirty.values():
            if client.dead:
                continue
            # events first: when an answer arrives, the callbacks its request queued
            # (a trackstart snapshot) are already readable on the event channel
            if not client.ev_writing:
                self._write_events(client)
            if not client.writing:
                self._write(client)
            self._unthrottle_later(client)

    def _write(self, client: _Client) -> None:
        if client.dead or not client.out:
            return
        try:
            sent = client.sock.send(client.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._kill(client)
            return
        del client.out[:sent]
        assert self._loop is not None
        if client.out and not client.writing:
            self._loop.add_writer(client.sock.fileno(), self._on_writable, client)
            client.writing = True
        elif not client.out and client.writing:
            self._loop.remove_writer(client.sock.fileno())
            client.writing = False

    def _on_writable(self, client: _Client) -> None:
        self._write(client)
        self._unthrottle_later(client)

    def _write_events(self, client: _Client) -> None:
        if client.dead or client.ev_sock is None or not client.ev_out:
            return
        try:
            sent = client.ev_sock.send(client.ev_out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._kill(client)
            return
        del client.ev_out[:sent]
        assert self._loop is not None
        fd = client.ev_sock.fileno()
        if client.ev_out and not client.ev_writing:
            self._loop.add_writer(fd, self._write_events, client)
            client.ev_writing = True
        elif not client.ev_out and client.ev_writing:
            self._loop.remove_writer(fd)
            client.ev_writing = False

    # ------------------------------------------------------------ closing
    def _kill(self, client: _Client) -> None:
        """Close from inside the pump: mark dead now, close from the loop."""
        if client.dead:
            return
        client.dead = True
        assert self._loop is not None
        self._loop.call_soon(self._close, client, None)

    def _close(self, client: _Client, reason: str | None, *, notify: bool = True) -> None:
        if self._clients.get(client.conn_id) is not client:
            return
        del self._clients[client.conn_id]
        client.dead = True
        self._hello_done(client)
        if client.frame_timer is not None:
            client.frame_timer.cancel()
            client.frame_timer = None
        self._dirty.pop(client.conn_id, None)
        client.reading = client.writing = client.ev_writing = False
        for sock in (client.sock, client.ev_sock):
            if sock is None:
                continue
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
                self._loop.remove_writer(sock.fileno())
            sock.close()
        if reason is not None:
            self._log("info", "MAIN", f"IPC conn {client.conn_id} closed: {reason}")
        if notify and client.engine_backed:
            self._backend.ipc_closed(client.conn_id)
