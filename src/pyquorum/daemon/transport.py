"""UDP transport: one socket bound to the local node's ring0 address and port.

Every datagram goes to the destination node's (ring0_addr, port).  Nothing here
raises to the loop: a send that fails (buffer full, oversized, unreachable) or a
receive error is counted.  The test hook ``blocked`` drops all traffic to and from
some node ids; the sender of an incoming datagram is its source address (from the
nodelist) or the node id in the datagram's clear crypto header.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import Final

from pyquorum.daemon.errors import StartupError
from pyquorum.daemon.localnode import Endpoint
from pyquorum.wire.codec import MAX_DATAGRAM_BYTES

RECV_BYTES: Final = 65536
RCVBUF_BYTES: Final = 4 * 1024 * 1024
MAX_SKIPPED: Final = 256
"""Errors or blocked datagrams skipped per ``receive`` call before yielding to the loop."""
_SENDER: Final = struct.Struct(">I")
_SENDER_OFFSET: Final = 2
"""The clear header of a sealed datagram: u8 version, u8 mode, u32 sender, ..."""


class UdpTransport:
    """The node's UDP socket and its counters."""

    def __init__(self, local: Endpoint, peers: dict[int, Endpoint]) -> None:
        self.local = local
        self.peers = dict(peers)
        self._by_addr = {ep.address[:2]: nodeid for nodeid, ep in peers.items()}
        self.blocked: frozenset[int] = frozenset()
        self._sock: socket.socket | None = None
        self.stats: dict[str, int] = {
            "udp_received": 0, "udp_sent": 0, "udp_send_errors": 0, "udp_send_dropped": 0,
            "udp_oversized": 0, "udp_recv_errors": 0, "udp_unknown_destination": 0,
            "blocked_in": 0, "blocked_out": 0,
        }

    def set_peers(self, peers: dict[int, Endpoint]) -> None:
        """A reload changed the other nodes' endpoints (the local one stays bound)."""
        self.peers = dict(peers)
        self._by_addr = {ep.address[:2]: nodeid for nodeid, ep in peers.items()}

    def open(self) -> None:
        """Create and bind the socket (non-blocking); ``StartupError`` if it cannot bind."""
        sock = socket.socket(self.local.family, socket.SOCK_DGRAM)
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
            sock.bind(self.local.address)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            host, port = self.local.address[:2]
            raise StartupError(f"cannot bind UDP {host}:{port}: {exc.strerror}") from None
        self._sock = sock

    def fileno(self) -> int:
        """The socket's fd (for ``loop.add_reader``)."""
        assert self._sock is not None
        return self._sock.fileno()

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def receive(self) -> tuple[bytes, object] | None:
        """One waiting datagram as (data, source), or None when nothing waits.

        The source is the sender's node id when its address is in the nodelist, else
        the address.  Datagrams from blocked nodes are dropped (and counted) here.
        """
        sock = self._sock
        for _ in range(MAX_SKIPPED):
            if sock is None:
                return None
            try:
                data, addr = sock.recvfrom(RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                return None
            except OSError:  # an ICMP error surfaced on the socket, and the like
                self.stats["udp_recv_errors"] += 1
                continue
            self.stats["udp_received"] += 1
            source: object = self._by_addr.get(addr[:2], addr)
            if self.blocked and self._is_blocked(data, source):
                self.stats["blocked_in"] += 1
                continue
            return data, source
        return None

    def _is_blocked(self, data: bytes, source: object) -> bool:
        if source in self.blocked:
            return True
        if len(data) >= _SENDER_OFFSET + _SENDER.size:
            (sender,) = _SENDER.unpack_from(data, _SENDER_OFFSET)
            return sender in self.blocked
        return False

    def send(self, data: bytes, dest: int) -> None:
        """Send one datagram to node ``dest``; failures are counted, never raised."""
        if dest in self.blocked:
            self.stats["blocked_out"] += 1
            return
        ep = self.peers.get(dest)
        if ep is None or self._sock is None:
            self.stats["udp_unknown_destination"] += 1
            return
        if len(data) > MAX_DATAGRAM_BYTES:
            self.stats["udp_oversized"] += 1
            return
        try:
            self._sock.sendto(data, ep.address)
        except (BlockingIOError, InterruptedError):
            self.stats["udp_send_dropped"] += 1
            return
        except OSError:
            self.stats["udp_send_errors"] += 1
            return
        self.stats["udp_sent"] += 1
