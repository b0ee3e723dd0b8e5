"""``pyquorum-witness``: the quorum arbitrator of ``pyquorum-qdevice`` agents.

It plays the role of corosync-qnetd with the ffsplit algorithm for any number of
clusters (told apart by cluster name): each node's agent connects over TCP, reports
its ring, and the witness gives the vote (ACK) to one partition per cluster and NACK
to the others.  The protocol, the decision and the rule that only one partition holds
the vote at a time are in ``pyquorum.tools.witness_proto``; this module is the asyncio
shell around its ``WitnessEngine``.

Theory of operation
-------------------
* One task per connection: it queues the ``Challenge``, waits at most
  ``hello_timeout_ms`` for a valid ``Hello``, tells the engine, answers ``Welcome``
  and then feeds every verified frame to the engine (heartbeats are answered here).
* One timer task calls ``engine.tick`` at ``engine.next_deadline()`` (silent nodes,
  expiring holds, the end of the startup quiet period); it is woken whenever an input
  may have moved the deadline.
* After every input the engine's outputs are drained in order: votes are sent,
  connections the engine gave up are closed with an ``Error`` frame, decisions are
  logged.  Time comes from ``time.monotonic`` in milliseconds.
* Bounded resources: at most ``max_connections`` connections (more are closed at
  once), frames of at most ``max_frame_bytes``, a connection whose unsent output
  exceeds ``max_write_buffer`` bytes is closed.  A malformed or unauthenticated frame
  closes only its connection; each kind is counted in ``stats``.
* SIGTERM / SIGINT: every connection gets ``Error(SHUTTING_DOWN)`` and is closed; exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from pyquorum.tools.witness_proto import (
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_RELEASE_GRACE_MS,
    DEFAULT_TIMEOUT_MS,
    NONCE_BYTES,
    PROTOCOL_VERSION,
    ConnectionReplaced,
    ConnectionTimedOut,
    Error,
    ErrorCode,
    Heartbeat,
    HeartbeatReply,
    Hello,
    HoldReleased,
    MembershipReport,
    PartitionChosen,
    PeerMisbehaved,
    ProtocolError,
    ReleaseAwaited,
    ServerSession,
    VoteApplied,
    VoteDecided,
    Welcome,
    WitnessEngine,
    load_key,
)

__all__ = ["WitnessServer", "build_parser", "main", "parse_hostport", "wait_event"]

LOG: Final = logging.getLogger("pyquorum.witness")
DEFAULT_MAX_CONNECTIONS: Final = 1024
DEFAULT_HELLO_TIMEOUT_MS: Final = 5000
DEFAULT_MAX_WRITE_BUFFER: Final = 1 << 20
READ_CHUNK: Final = 65536


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6ADDR]:PORT`` -> (host, port); ValueError if invalid."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT, not {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return host, port


@dataclass
class _Conn:
    """One accepted connection."""

    conn_id: int
    peer: str
    writer: asyncio.StreamWriter
    session: ServerSession
    node: str = ""
    closing: bool = False


class WitnessServer:
    """The asyncio witness.  ``await start(host, port)``, then ``await close()``."""

    def __init__(self, key: bytes, *, timeout_ms: int = DEFAULT_TIMEOUT_MS,
                 heartbeat_ms: int | None = None,
                 release_grace_ms: int = DEFAULT_RELEASE_GRACE_MS,
                 startup_quiet_ms: int | None = None,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 hello_timeout_ms: int = DEFAULT_HELLO_TIMEOUT_MS,
                 max_write_buffer: int = DEFAULT_MAX_WRITE_BUFFER,
                 clock: Callable[[], float] = time.monotonic,
                 nonce_source: Callable[[int], bytes] = os.urandom) -> None:
        self._key = load_key(key)
        if heartbeat_ms is None:
            heartbeat_ms = max(1, timeout_ms // 4)
        if not 0 < heartbeat_ms < timeout_ms:
            raise ValueError("the heartbeat interval must be below the timeout")
        if max_connections < 1 or hello_timeout_ms < 1:
            raise ValueError("max_connections and hello_timeout_ms must be positive")
        self.timeout_ms = timeout_ms
        self.heartbeat_ms = heartbeat_ms
        self.max_connections = max_connections
        self.max_frame_bytes = max_frame_bytes
        self.hello_timeout_ms = hello_timeout_ms
        self.max_write_buffer = max_write_buffer
        self._clock = clock
        self._nonce = nonce_source
        self.engine = WitnessEngine(self._now_ms(), timeout_ms=timeout_ms,
                                    release_grace_ms=release_grace_ms,
                                    startup_quiet_ms=startup_quiet_ms)
        self.stats: Counter[str] = Counter()
        self._conns: dict[int, _Conn] = {}
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._timer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    # ------------------------------------------------------------ life cycle
    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` (port 0: any); the address actually bound."""
        self._server = await asyncio.start_server(self._accept, host, port,
                                                  limit=self.max_frame_bytes)
        self._timer = asyncio.create_task(self._timer_loop())
        sock = self._server.sockets[0]
        bound = sock.getsockname()
        LOG.info("listening on %s:%d (timeout %d ms, heartbeat %d ms, protocol %d)",
                 bound[0], bound[1], self.timeout_ms, self.heartbeat_ms, PROTOCOL_VERSION)
        return str(bound[0]), int(bound[1])

    async def close(self) -> None:
        """Stop listening, tell every peer we are going and close every connection."""
        self._closing = True
        self._wake.set()
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns.values()):
            self._close(conn, ErrorCode.SHUTTING_DOWN, "the witness is shutting down")
        if self._timer is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await self._timer
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await self._server.wait_closed()

    def connection_count(self) -> int:
        """Open connections (with or without a hello)."""
        return len(self._conns)

    # ------------------------------------------------------------ connections
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve_connection(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _serve_connection(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        peer = _peer_name(writer)
        if len(self._conns) >= self.max_connections:
            self.stats["refused_max_connections"] += 1
            LOG.warning("refusing %s: %d connections already", peer, len(self._conns))
            writer.close()
            return
        self.stats["accepted"] += 1
        conn_id = next(self._ids)
        session = ServerSession(self._key, self._nonce(NONCE_BYTES),
                                max_frame_bytes=self.max_frame_bytes)
        conn = _Conn(conn_id, peer, writer, session)
        self._conns[conn_id] = conn
        hello_done = False
        try:
            self._flush(conn)
            async with asyncio.timeout(self.hello_timeout_ms / 1000):
                hello = await self._read_hello(reader, conn)
            if hello is None:
                return
            hello_done = True
            self._welcome(conn, hello)
            while not conn.closing:
                data = await reader.read(READ_CHUNK)
                if not data:
                    session.eof()
                    LOG.info("%s closed the connection", conn.node or peer)
                    break
                for msg in session.feed(data):
                    self._on_message(conn, msg)
                    if conn.closing:
                        break
                self._pump()
        except TimeoutError:
            if not hello_done:
                self.stats["hello_timeouts"] += 1
                LOG.warning("%s: no valid hello within %d ms", peer, self.hello_timeout_ms)
        except ProtocolError as e:
            self.stats[f"rejected_{e.reason}"] += 1
            LOG.warning("%s: closing after a bad frame (%s)", conn.node or peer, e)
        except (ConnectionError, OSError) as e:
            LOG.info("%s: connection lost (%s)", conn.node or peer, e)
        finally:
            self._conns.pop(conn_id, None)
            self.engine.disconnected(conn_id, self._now_ms())
            self._pump()
            if not writer.is_closing():
                writer.close()
            with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def _read_hello(self, reader: asyncio.StreamReader, conn: _Conn) -> Hello | None:
        while True:
            data = await reader.read(READ_CHUNK)
            if not data:
                conn.session.eof()
                self.stats["closed_before_hello"] += 1
                return None
            msgs = conn.session.feed(data)
            if not msgs:
                continue
            hello = msgs[0]
            assert isinstance(hello, Hello)
            if len(msgs) > 1:  # nothing may follow the hello before our welcome
                raise ProtocolError("unexpected", "frames after the hello before Welcome")
            if hello.version != PROTOCOL_VERSION:
                self.stats["rejected_bad_version"] += 1
                LOG.warning("%s: protocol version %d, expected %d", conn.peer,
                            hello.version, PROTOCOL_VERSION)
                self._close(conn, ErrorCode.BAD_VERSION,
                            f"protocol version {PROTOCOL_VERSION} expected")
                return None
            return hello

    def _welcome(self, conn: _Conn, hello: Hello) -> None:
        conn.node = f"{hello.cluster_name}/{hello.node_id} ({conn.peer})"
        LOG.info("node %s connected", conn.node)
        self.stats["hellos"] += 1
        self.engine.connected(conn.conn_id, hello.cluster_name, hello.node_id, self._now_ms())
        conn.session.send(Welcome(self.heartbeat_ms, self.timeout_ms))
        self._flush(conn)
        self._pump()

    def _on_message(self, conn: _Conn, msg: object) -> None:
        now = self._now_ms()
        if isinstance(msg, Heartbeat):
            self.engine.heard(conn.conn_id, now)
            conn.session.send(HeartbeatReply(msg.seq))
            self._flush(conn)
        elif isinstance(msg, MembershipReport):
            LOG.info("node %s reports ring %s members %s%s", conn.node,
                     msg.ring if msg.ring is not None else "none (no daemon connection)",
                     list(msg.members), " (quorate)" if msg.quorate else "")
            self.engine.reported(conn.conn_id, msg, now)
        elif isinstance(msg, VoteApplied):
            LOG.info("node %s applied %s for ring %s (vote %d)", conn.node, msg.vote.name,
                     msg.ring, msg.seq)
            self.engine.vote_applied(conn.conn_id, msg, now)
        elif isinstance(msg, Error):
            LOG.warning("node %s reports error %d: %s", conn.node, msg.code, msg.text)
            conn.closing = True
            conn.writer.close()

    # ------------------------------------------------------------ engine outputs
    def _pump(self) -> None:
        while (out := self.engine.next_output()) is not None:
            if isinstance(out, VoteDecided):
                conn = self._conns.get(out.conn)
                if conn is None or conn.closing:
                    continue
                self.stats["votes_sent"] += 1
                LOG.info("cluster %s: %s to node %d for ring %s (vote %d)", out.cluster,
                         out.info.vote.name, out.node_id, out.info.ring, out.info.seq)
                conn.session.send(out.info)
                self._flush(conn)
            elif isinstance(out, ConnectionTimedOut | ConnectionReplaced | PeerMisbehaved):
                self._engine_closed(out)
            elif isinstance(out, PartitionChosen):
                if out.partition is None:
                    LOG.info("cluster %s: no partition (%s)", out.cluster, out.reason)
                else:
                    p = out.partition
                    LOG.info("cluster %s: partition ring %s members %s (reporting %s) gets "
                             "the vote: %s", out.cluster, p.ring, list(p.members),
                             list(p.reporting), out.reason)
            elif isinstance(out, ReleaseAwaited):
                LOG.info("cluster %s: ACK for ring %s waits until %s release the vote",
                         out.cluster, out.partition.ring,
                         ", ".join("nodes held before a restart" if n == 0 else f"node {n}"
                                   for n in out.holders))
            elif isinstance(out, HoldReleased):
                LOG.info("cluster %s: node %d released the vote (%s)", out.cluster,
                         out.node_id, out.how)
        self._wake.set()

    def _engine_closed(self, out: ConnectionTimedOut | ConnectionReplaced
                       | PeerMisbehaved) -> None:
        conn = self._conns.get(out.conn)
        if isinstance(out, ConnectionTimedOut):
            self.stats["timed_out"] += 1
            LOG.warning("cluster %s: node %d silent for %d ms, dropping it", out.cluster,
                        out.node_id, self.timeout_ms)
            code, text = ErrorCode.TIMED_OUT, "silent for the timeout"
        elif isinstance(out, ConnectionReplaced):
            self.stats["replaced"] += 1
            LOG.info("cluster %s: node %d reconnected, closing its older connection",
                     out.cluster, out.node_id)
            code, text = ErrorCode.REPLACED, "replaced by a newer connection"
        else:
            self.stats["bad_reports"] += 1
            LOG.warning("cluster %s: node %d sent a bad report (%s)", out.cluster,
                        out.node_id, out.reason)
            code, text = ErrorCode.BAD_REPORT, out.reason
        if conn is not None:
            self._close(conn, code, text)

    def _close(self, conn: _Conn, code: ErrorCode, text: str) -> None:
        if conn.closing:
            return
        conn.closing = True
        with contextlib.suppress(RuntimeError, ValueError):
            conn.session.send(Error(int(code), text))
            self._flush(conn)
        conn.writer.close()

    def _flush(self, conn: _Conn) -> None:
        data = conn.session.take_output()
        if not data or conn.writer.is_closing():
            return
        conn.writer.write(data)
        if conn.writer.transport.get_write_buffer_size() > self.max_write_buffer:
            self.stats["closed_slow_reader"] += 1
            LOG.warning("%s: not reading, closing", conn.node or conn.peer)
            conn.closing = True
            conn.writer.transport.abort()

    async def _timer_loop(self) -> None:
        while not self._closing:
            deadline = self.engine.next_deadline()
            self._wake.clear()
            delay = None if deadline is None else max(0.0, (deadline - self._now_ms()) / 1000)
            if delay is None or delay > 0:
                await wait_event(self._wake, delay)
            self.engine.tick(self._now_ms())
            self._pump()
            self._wake.clear()


async def wait_event(event: asyncio.Event, timeout_s: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout_s`` passed (None: no limit); True if
    set.  (``asyncio.timeout`` rather than ``wait_for``: on Python 3.11 ``wait_for``
    can swallow a cancellation that races with the inner wait.)"""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


# ====================================================================== command line
def build_parser() -> argparse.ArgumentParser:
    """The command line of ``pyquorum-witness``."""
    p = argparse.ArgumentParser(
        prog="pyquorum-witness",
        description="Quorum witness (arbitrator) for pyquorum clusters, like corosync-qnetd "
                    "with the ffsplit algorithm: of a split cluster, one partition gets the "
                    "vote of the quorum device.  Nodes connect with pyquorum-qdevice.")
    p.add_argument("--listen", required=True, metavar="HOST:PORT",
                   help="address to listen on (port 0: any free port, logged)")
    p.add_argument("--key", required=True, metavar="FILE",
                   help="shared key file (16..65536 bytes, e.g. from pyquorum-keygen); "
                        "the same file is given to every pyquorum-qdevice")
    p.add_argument("--timeout-ms", type=int, default=DEFAULT_TIMEOUT_MS, metavar="N",
                   help="a node silent this long is dropped; agents stop casting their vote "
                        f"when the witness is silent this long (default {DEFAULT_TIMEOUT_MS})")
    p.add_argument("--heartbeat-ms", type=int, default=None, metavar="N",
                   help="heartbeat interval the agents use (default timeout/4)")
    p.add_argument("--release-grace-ms", type=int, default=DEFAULT_RELEASE_GRACE_MS,
                   metavar="N",
                   help="extra wait before a vanished node that held the vote counts as "
                        "released; at least the clusters' quorum.device.timeout "
                        f"(default {DEFAULT_RELEASE_GRACE_MS})")
    p.add_argument("--startup-quiet-ms", type=int, default=None, metavar="N",
                   help="no ACK is given this long after start, since holders from before "
                        "a restart are unknown (default timeout + release grace)")
    p.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                   metavar="N", help=f"default {DEFAULT_MAX_CONNECTIONS}")
    p.add_argument("--max-frame-bytes", type=int, default=DEFAULT_MAX_FRAME_BYTES,
                   metavar="N", help=f"default {DEFAULT_MAX_FRAME_BYTES}")
    p.add_argument("--hello-timeout-ms", type=int, default=DEFAULT_HELLO_TIMEOUT_MS,
                   metavar="N", help=f"default {DEFAULT_HELLO_TIMEOUT_MS}")
    p.add_argument("--debug", action="store_true", help="log debug messages")
    return p


async def _serve(server: WitnessServer, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start(host, port)
    try:
        await stop.wait()
        LOG.info("shutting down")
    finally:
        await server.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pyquorum-witness``; returns the exit status."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s pyquorum-witness %(levelname)s %(message)s",
                        stream=sys.stderr)
    try:
        host, port = parse_hostport(args.listen)
        with open(args.key, "rb") as f:
            key = load_key(f.read())
        server = WitnessServer(key, timeout_ms=args.timeout_ms, heartbeat_ms=args.heartbeat_ms,
                               release_grace_ms=args.release_grace_ms,
                               startup_quiet_ms=args.startup_quiet_ms,
                               max_connections=args.max_connections,
                               max_frame_bytes=args.max_frame_bytes,
                               hello_timeout_ms=args.hello_timeout_ms)
    except (ValueError, OSError) as e:
        print(f"pyquorum-witness: {e}", file=sys.stderr)
        return 1
    try:
        asyncio.run(_serve(server, host, port))
    except OSError as e:
        print(f"pyquorum-witness: cannot listen on {args.listen}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
