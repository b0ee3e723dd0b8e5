"""A small stand-in for pyquorumd speaking ``pyquorum.wire.ipc`` over real sockets.

It listens on ``<run_dir>/pyquorum.sock``, answers ``Hello`` (OK with one end of a fresh
socketpair passed by SCM_RIGHTS, or the error in ``hello_error``), and answers requests
with a tiny model of the quorum and votequorum services (the snapshot/EXIST rules of
spec 3.9), the cfg reload (``reload_error``) and the one writable cmap key
(``quorum.cancel_wait_for_all``, counted in ``cancel_wfa``), which a test can override
per request type through ``script``.  A test can
push events on a connection's event channel (``FakeConn.push``) and make the daemon die
(``die``: every socket closed).  One thread accepts, one thread serves each connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pyquorum.errors import CsErr
from pyquorum.types import RingId
from pyquorum.wire.ipc import (
    IPC_TYPES,
    SOCKET_NAME,
    CfgReloadReq,
    CfgReloadRes,
    CmapGetPrefixReq,
    CmapGetPrefixRes,
    CmapSetReq,
    CmapSetRes,
    ErrorReply,
    FrameReader,
    Hello,
    HelloReply,
    KeyValue,
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
    Sync,
    SyncReply,
    TestBlockReq,
    VqExpectedVotesEvent,
    VqGetInfoReq,
    VqGetInfoRes,
    VqNode,
    VqNodelistEvent,
    VqQuorumEvent,
    VqSetExpectedReq,
    VqStatusRes,
    VqTrackStartReq,
    VqTrackStopReq,
    encode_frame,
)

OK = int(CsErr.CS_OK)
WAIT_S = 5.0
"""Bound of every wait in the client tests."""

Reply = object | None
Script = Callable[["FakeConn", object], Reply]


@dataclass
class FakeConn:
    """The daemon's side of one client connection."""

    daemon: FakeDaemon
    sock: socket.socket
    service: int = -1
    events: socket.socket | None = None
    model: int = 0
    tracking: bool = False
    context: int = 0
    requests: list[object] = field(default_factory=list)
    peer_closed: threading.Event = field(default_factory=threading.Event)

    def push(self, *msgs: object) -> None:
        """Queue events on the client's event channel (in the client's socket buffer
        when this returns)."""
        assert self.events is not None
        for msg in msgs:
            self.events.sendall(encode_frame(msg))

    def push_raw(self, data: bytes) -> None:
        """Write raw bytes to the event channel."""
        assert self.events is not None
        self.events.sendall(data)

    def close(self) -> None:
        """Drop this connection (both sockets)."""
        for s in (self.sock, self.events):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    # ------------------------------------------------------------------ default model
    def snapshot(self, flags: int) -> None:
        d = self.daemon
        if not flags & 0x03:
            return
        if self.service == 3:
            if self.model == 1:
                self.push(NodelistV1Event(d.ring, d.members, (), ()),
                          QuorumV1Event(d.quorate, d.ring, d.members))
            else:
                self.push(QuorumV0Event(d.quorate, d.ring.seq, d.members))
        else:
            self.push(VqNodelistEvent(self.context, d.ring, d.members),
                      VqQuorumEvent(self.context, d.quorate,
                                    tuple(VqNode(n, 1) for n in d.members)))

    def answer(self, msg: object) -> Reply:
        """The default model's response to a request."""
        d = self.daemon
        if isinstance(msg, QuorumGetTypeReq):
            self.model = 0
            return QuorumGetTypeRes(OK, d.quorum_type)
        if isinstance(msg, QuorumModelGetTypeReq):
            self.model = msg.model
            return QuorumGetTypeRes(OK, d.quorum_type)
        if isinstance(msg, QuorumGetQuorateReq):
            return QuorumGetQuorateRes(OK, d.quorate)
        if isinstance(msg, QuorumTrackStartReq | VqTrackStartReq):
            if isinstance(msg, VqTrackStartReq):
                self.context = msg.context
            self.snapshot(msg.flags)
            if self.tracking:
                err = int(CsErr.CS_ERR_EXIST)
            else:
                err = OK
                self.tracking = bool(msg.flags & 0x06)
            return QuorumStatusRes(err) if self.service == 3 else VqStatusRes(err)
        if isinstance(msg, QuorumTrackStopReq):
            self.tracking = False
            return QuorumStatusRes(OK)
        if isinstance(msg, VqTrackStopReq):
            err = OK if self.tracking else int(CsErr.CS_ERR_NOT_EXIST)
            self.tracking = False
            return VqStatusRes(err)
        if isinstance(msg, VqGetInfoReq):
            nodeid = msg.nodeid or d.local_nodeid
            if nodeid not in d.members:
                return VqGetInfoRes(int(CsErr.CS_ERR_NOT_EXIST), 0, 0, 0, 0, 0, 0, 0, 0, 0, "")
            return VqGetInfoRes(OK, nodeid, 1, 1, len(d.members), len(d.members),
                                len(d.members), len(d.members) // 2 + 1, 2 if d.quorate else 0,
                                0, "")
        if isinstance(msg, VqSetExpectedReq):
            for conn in d.connections():
                if conn.service == 5 and conn.tracking:
                    conn.push(VqExpectedVotesEvent(conn.context, msg.expected_votes))
            return VqStatusRes(OK)
        if isinstance(msg, CmapGetPrefixReq):
            return CmapGetPrefixRes(OK, tuple(KeyValue(k, v) for k, v in sorted(d.cmap.items())
                                              if k.startswith(msg.prefix)))
        if isinstance(msg, CmapSetReq):
            if msg.key != "quorum.cancel_wait_for_all":
                return CmapSetRes(int(CsErr.CS_ERR_ACCESS))
            if not (msg.value.isascii() and msg.value.isdigit()) or int(msg.value) > 255:
                return CmapSetRes(int(CsErr.CS_ERR_INVALID_PARAM))
            d.cancel_wfa += int(msg.value) > 0
            return CmapSetRes(OK)
        if isinstance(msg, CfgReloadReq):
            if d.reload_error == OK:
                d.reloads += 1
            return CfgReloadRes(d.reload_error)
        if isinstance(msg, TestBlockReq):
            return VqStatusRes(OK)
        if type(msg).__name__.startswith("Vq"):
            return VqStatusRes(OK)
        return ErrorReply(int(CsErr.CS_ERR_LIBRARY), IPC_TYPES.get(type(msg), 0))


class FakeDaemon:
    """The fake daemon (see the module docstring)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / SOCKET_NAME
        self.hello_error = OK
        self.send_event_fd = True
        self.event_type = socket.SOCK_STREAM
        self.quorum_type = 1
        self.quorate = 1
        self.local_nodeid = 1
        self.ring = RingId(1, 9)
        self.members: tuple[int, ...] = (1, 2, 3)
        self.cmap: dict[str, str] = {"totem.token": "3000", "quorum.provider":
                                     "corosync_votequorum", "runtime.votequorum.quorum": "2"}
        self.script: dict[type, Script] = {}
        self.reload_error = OK
        self.reloads = 0
        self.cancel_wfa = 0
        self._cond = threading.Condition()
        self._conns: list[FakeConn] = []
        self._accepted: list[FakeConn] = []
        self._threads: list[threading.Thread] = []
        self._dead = False
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(64)
        self._spawn(self._accept_loop)

    # ------------------------------------------------------------------ threads
    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            conn = FakeConn(self, sock)
            with self._cond:
                self._accepted.append(conn)
            self._spawn(self._serve, conn)

    def _serve(self, conn: FakeConn) -> None:
        reader = FrameReader()
        greeted = False
        try:
            while True:
                data = conn.sock.recv(65536)
                if not data:
                    conn.peer_closed.set()
                    return
                for msg in reader.feed(data):
                    if not greeted:
                        greeted = True
                        if not self._hello(conn, msg):
                            conn.close()
                            return
                        continue
                    with self._cond:
                        conn.requests.append(msg)
                        self._cond.notify_all()
                    if isinstance(msg, Sync):
                        conn.sock.sendall(encode_frame(SyncReply(msg.token)))
                        continue
                    handler = self.script.get(type(msg))
                    reply = handler(conn, msg) if handler is not None else conn.answer(msg)
                    if reply is not None:
                        conn.sock.sendall(encode_frame(reply))
        except OSError:
            return
        finally:
            with self._cond:
                self._cond.notify_all()

    def _hello(self, conn: FakeConn, msg: object) -> bool:
        assert isinstance(msg, Hello), msg
        conn.service = msg.service
        if self.hello_error != OK:
            conn.sock.sendall(encode_frame(HelloReply(self.hello_error, 0)))
            return False
        ours, theirs = socket.socketpair(socket.AF_UNIX, self.event_type)
        conn.events = ours
        with self._cond:
            self._conns.append(conn)
            conn_id = len(self._conns)
        frame = encode_frame(HelloReply(OK, conn_id))
        if self.send_event_fd:
            socket.send_fds(conn.sock, [frame], [theirs.fileno()])
        else:
            conn.sock.sendall(frame)
        theirs.close()
        with self._cond:
            self._cond.notify_all()
        return True

    # ------------------------------------------------------------------ test API
    def connections(self) -> list[FakeConn]:
        """The greeted connections so far."""
        with self._cond:
            return list(self._conns)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
        """Wait (bounded) until ``predicate`` holds; it is re-checked on every change."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                assert remaining > 0, "timed out waiting for the fake daemon"
                self._cond.wait(remaining)

    def conn(self, index: int = -1, count: int = 1) -> FakeConn:
        """Wait for ``count`` greeted connections and return one of them."""
        self.wait_for(lambda: len(self._conns) >= count)
        with self._cond:
            return self._conns[index]

    def wait_requests(self, conn: FakeConn, count: int) -> list[object]:
        """Wait until ``conn`` has sent ``count`` requests (after Hello)."""
        self.wait_for(lambda: len(conn.requests) >= count)
        with self._cond:
            return list(conn.requests)

    def broadcast(self, *msgs: object, service: int = 3) -> None:
        """Push events to every tracking connection of a service."""
        for conn in self.connections():
            if conn.service == service and conn.tracking:
                conn.push(*msgs)

    def die(self) -> None:
        """Close every socket, as a SIGKILLed daemon would."""
        with self._cond:
            self._dead = True
            conns = list(self._accepted)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        for conn in conns:
            conn.close()

    def stop(self) -> None:
        """``die`` and join the threads (test teardown)."""
        self.die()
        for t in self._threads:
            t.join(WAIT_S)
