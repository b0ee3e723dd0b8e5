"""The pyquorum-witness protocol and arbitration logic, sans I/O.

``pyquorum-witness`` plays the role of corosync-qnetd (the "ffsplit" algorithm) and
``pyquorum-qdevice`` the role of corosync-qdevice's ``net`` model.  This module holds
everything both need that does not touch a socket or a clock: the frame codec with its
authentication (``ServerSession``, ``ClientSession``), the messages, the partition
decision (``decide``) and the witness state machine (``WitnessEngine``), which takes
the time as an argument.

Theory of operation
-------------------
**Frames.**  A TCP stream carries frames ``u32 length | u8 type | body | mac[32]``
(big endian; ``length`` counts type, body and mac and is at most ``max_frame_bytes``).
``mac`` is HMAC-SHA256 over ``direction | u64 sequence | type | body`` where the
direction is ``b"C2S"`` or ``b"S2C"`` and the sequence counts the frames sent in that
direction on this connection (from 0, never transmitted).  Keys come from the shared
key file (``--key FILE``; any length from 16 bytes, e.g. a ``pyquorum-keygen`` key)::

    challenge key = HMAC(key, "pyquorum-witness/1 challenge")
    session key   = HMAC(key, "pyquorum-witness/1 session" | server nonce | client nonce)

The server speaks first: ``Challenge(version, server nonce)`` (16 random bytes, MAC
under the challenge key).  The client answers ``Hello(version, cluster name, node id,
client nonce)``, already under the session key; every later frame in both directions
is under the session key.  A frame recorded on another connection therefore fails
(other nonces, so another key), and so does a frame dropped, repeated, reordered or
reflected within a connection (sequence and direction).  Any bad frame (wrong MAC,
unknown type, malformed body, over-long, or the stream ending inside a frame) raises
``ProtocolError`` and the session is dead: the peer closes only that connection.

Messages (client = agent, server = witness)::

    S->C  Challenge        first frame of the server
    C->S  Hello            first frame of the client
    S->C  Welcome          heartbeat interval and timeout the agent must use
    C->S  MembershipReport ring id and members from the node's nodelist callback
                           (ring None: the agent has no daemon connection)
    C->S  Heartbeat(seq)   every heartbeat_ms;  S->C HeartbeatReply(seq)
    S->C  VoteInfo         ACK (cast the vote) / NACK for one ring, with a sequence
    C->S  VoteApplied      the agent has polled its daemon with that cast_vote
    both  Error            code and text, then the sender closes

**Leases.**  The witness drops a node it has not heard for ``timeout_ms``.  The agent
casts its vote only while a lease runs: ``timeout_ms`` from the *sending* time of the
last heartbeat the witness answered.  The witness heard that heartbeat after it was
sent, so when the witness gives a node up, the node's agent has stopped casting.

**Decision** (``decide``, per cluster; corosync-qnetd's ffsplit).  Only nodes that
reported a ring take part.  The membership is *stable* when every reporting node
listed in a report reports the same ring and member list; otherwise nothing changes
until it is.  Reports are grouped into partitions by (ring, members), and the best
partition gets the vote, by in turn:

1. more members (every member counts, reporting or not);
2. more members reporting to the witness (qnetd's "active clients", which decides
   50:50 splits where a node of one half is not connected);
3. more members shared with the partition chosen before (the partition that had the
   vote keeps it on a tie);
4. the partition holding the lowest node id;
5. (determinism only) the larger ring id.

Unlike qnetd, a partition smaller than half the configured nodes is not refused: the
witness does not know the nodelist, and the votequorum arithmetic of the nodes decides
whether the device's vote makes such a partition quorate.  Safety does not depend on
this: the vote is held by one partition at a time, so two disjoint partitions can
never both reach a majority of expected votes that includes the device's votes.

**At most one partition holds the vote** (``WitnessEngine``).  A *hold* records, per
node id, that the node may be casting the vote: it is set when an ACK is sent and
survives disconnection.  Every reporting node outside the chosen partition gets a
NACK for its ring at once; ACKs go to the chosen partition only once no hold is in the
way.  A hold is out of the way when its ring is the chosen ring, or the node now
reports the chosen ring (a vote counts only on the node that casts it, and a daemon
accepts polls only for its current ring), or it was released:

* the node answered a NACK with ``VoteApplied`` (its daemon was polled with
  cast_vote=0), or
* it expired: ``timeout_ms + release_grace_ms`` after the node was last heard, once it
  disconnected or timed out (the agent stopped casting when its lease ran out; a frozen
  agent's daemon withdraws the vote ``quorum.device.timeout`` after its last poll, so
  ``release_grace_ms`` must be at least that timeout), or ``release_grace_ms`` after
  the node reported that it has no daemon connection (it stopped polling before it
  said so).

After a restart the witness knows no holds, so it sends no ACK during
``startup_quiet_ms`` (default ``timeout_ms + release_grace_ms``).

The hold of node N (per cluster; it survives N's disconnection)::

    event                                         hold of N
    ACK(ring R) sent to N                         (R, open-ended)
    N applies the NACK last sent to it            removed
    N disconnects or is silent for timeout_ms     expires at last heard + timeout + grace
    N reports "no daemon connection"              expires at now + grace (if sooner)
    the expiry time is reached                    removed

Agents learn the decision only for the ring they reported; an ACK or NACK for another
ring is stale and ignored by the agent (it reports its new ring and gets a new one).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final, NoReturn, TypeAlias

from pyquorum.types import NODEID_MAX, RingId

__all__ = [
    "DEFAULT_HEARTBEAT_MS",
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_RELEASE_GRACE_MS",
    "DEFAULT_TIMEOUT_MS",
    "MAC_BYTES",
    "MAX_MEMBERS",
    "MAX_NAME_BYTES",
    "MIN_KEY_BYTES",
    "NONCE_BYTES",
    "PROTOCOL_VERSION",
    "Challenge",
    "ClientSession",
    "ConnectionReplaced",
    "ConnectionTimedOut",
    "Decision",
    "Error",
    "ErrorCode",
    "Heartbeat",
    "HeartbeatReply",
    "Hello",
    "HoldReleased",
    "MembershipReport",
    "Message",
    "NodeReport",
    "Partition",
    "PartitionChosen",
    "PeerMisbehaved",
    "ProtocolError",
    "ReleaseAwaited",
    "ServerSession",
    "Vote",
    "VoteApplied",
    "VoteDecided",
    "VoteInfo",
    "Welcome",
    "WitnessEngine",
    "WitnessOutput",
    "decide",
    "decode_message",
    "encode_message",
    "frame_length",
    "load_key",
    "rank",
]

PROTOCOL_VERSION: Final = 1
NONCE_BYTES: Final = 16
MAC_BYTES: Final = 32
MIN_KEY_BYTES: Final = 16
MAX_KEY_BYTES: Final = 65536
MAX_NAME_BYTES: Final = 255
MAX_TEXT_BYTES: Final = 1024
MAX_MEMBERS: Final = 4096
DEFAULT_MAX_FRAME_BYTES: Final = 65536
MIN_FRAME_BYTES: Final = 1 + MAC_BYTES
DEFAULT_TIMEOUT_MS: Final = 10000
DEFAULT_HEARTBEAT_MS: Final = DEFAULT_TIMEOUT_MS // 4
DEFAULT_RELEASE_GRACE_MS: Final = 10000
"""Corosync's default ``quorum.device.timeout``."""

_LEN: Final = struct.Struct(">I")
_C2S: Final = b"C2S"
_S2C: Final = b"S2C"
_LABEL_CHALLENGE: Final = b"pyquorum-witness/1 challenge"
_LABEL_SESSION: Final = b"pyquorum-witness/1 session"


class ProtocolError(Exception):
    """The peer sent something invalid; ``reason`` is a short counter name
    (``bad_mac``, ``malformed``, ``too_large``, ``truncated``, ``unexpected``)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


class Vote(IntEnum):
    """The witness's answer for one ring."""

    ACK = 1
    NACK = 2


class ErrorCode(IntEnum):
    """Why a peer is closing the connection (``Error.code``)."""

    BAD_VERSION = 1
    BAD_HELLO = 2
    BAD_REPORT = 3
    UNEXPECTED_MESSAGE = 4
    TOO_MANY_CONNECTIONS = 5
    REPLACED = 6
    TIMED_OUT = 7
    SHUTTING_DOWN = 8
    SLOW_READER = 9


# ====================================================================== messages
@dataclass(frozen=True, slots=True)
class Challenge:
    """Server -> client, first frame: protocol version and the server's nonce."""

    version: int
    nonce: bytes


@dataclass(frozen=True, slots=True)
class Hello:
    """Client -> server, first frame: who the agent is, and the client's nonce."""

    version: int
    cluster_name: str
    node_id: int
    nonce: bytes


@dataclass(frozen=True, slots=True)
class Welcome:
    """Server -> client: the hello was accepted; the timing the agent must use."""

    heartbeat_ms: int
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class MembershipReport:
    """Client -> server: the node's current ring (None: no daemon connection), its
    members (ascending; empty without a ring) and, informational, whether the node
    was quorate at its last quorum event."""

    seq: int
    ring: RingId | None
    members: tuple[int, ...]
    quorate: bool


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Client -> server keep-alive."""

    seq: int


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    """Server -> client: answers ``Heartbeat(seq)``."""

    seq: int


@dataclass(frozen=True, slots=True)
class VoteInfo:
    """Server -> client: cast (ACK) or do not cast (NACK) the vote in ``ring``."""

    seq: int
    ring: RingId | None
    vote: Vote


@dataclass(frozen=True, slots=True)
class VoteApplied:
    """Client -> server: the daemon was polled with ``cast_vote`` as ``VoteInfo(seq)``
    asked, in ``ring``."""

    seq: int
    ring: RingId | None
    vote: Vote


@dataclass(frozen=True, slots=True)
class Error:
    """Either direction: the sender closes the connection after this frame."""

    code: int
    text: str


Message: TypeAlias = (Challenge | Hello | Welcome | MembershipReport | Heartbeat
                      | HeartbeatReply | VoteInfo | VoteApplied | Error)

_TYPE_OF: Final[dict[type, int]] = {
    Challenge: 1, Hello: 2, Welcome: 3, MembershipReport: 4, Heartbeat: 5,
    HeartbeatReply: 6, VoteInfo: 7, VoteApplied: 8, Error: 9,
}
_FROM_CLIENT: Final = frozenset({MembershipReport, Heartbeat, VoteApplied, Error})
_FROM_SERVER: Final = frozenset({HeartbeatReply, VoteInfo, Error})


# ====================================================================== body codec
class _Reader:
    """Reads big-endian fields from one body; any shortfall is ``malformed``."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise ProtocolError("malformed", "body too short")
        chunk = self._data[self._pos:end]
        self._pos = end
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def text(self, limit: int) -> str:
        raw = self.take(self.uint(2))
        if len(raw) > limit:
            raise ProtocolError("malformed", "text too long")
        try:
            value = raw.decode()
        except UnicodeDecodeError:
            raise ProtocolError("malformed", "text is not UTF-8") from None
        if "\0" in value:
            raise ProtocolError("malformed", "NUL in text")
        return value

    def ring(self) -> RingId | None:
        present = self.uint(1)
        rep, seq = self.uint(4), self.uint(8)
        if present == 0:
            if rep or seq:
                raise ProtocolError("malformed", "absent ring with a value")
            return None
        if present != 1:
            raise ProtocolError("malformed", "bad ring flag")
        return RingId(rep, seq)

    def vote(self) -> Vote:
        try:
            return Vote(self.uint(1))
        except ValueError:
            raise ProtocolError("malformed", "bad vote") from None

    def end(self) -> None:
        if self._pos != len(self._data):
            raise ProtocolError("malformed", "trailing bytes")


def _text(value: str, limit: int) -> bytes:
    raw = value.encode()
    if len(raw) > limit:
        raise ValueError(f"text longer than {limit} bytes")
    return len(raw).to_bytes(2, "big") + raw


def _ring(ring: RingId | None) -> bytes:
    if ring is None:
        return bytes(13)
    return b"\x01" + ring.rep.to_bytes(4, "big") + ring.seq.to_bytes(8, "big")


def _check_name(name: str) -> None:
    raw = name.encode()
    if not 1 <= len(raw) <= MAX_NAME_BYTES or "\0" in name:
        raise ProtocolError("malformed", "cluster name must be 1..255 bytes without NUL")


def _check_members(ring: RingId | None, members: tuple[int, ...]) -> None:
    if ring is None:
        if members:
            raise ProtocolError("malformed", "members without a ring")
        return
    if not 1 <= len(members) <= MAX_MEMBERS:
        raise ProtocolError("malformed", "a ring needs 1..4096 members")
    if any(not 1 <= m <= NODEID_MAX for m in members) or any(
            a >= b for a, b in itertools.pairwise(members)):
        raise ProtocolError("malformed", "members must be ascending node ids")


def encode_message(msg: Message) -> tuple[int, bytes]:
    """The (type, body) of ``msg``; raises ValueError for values out of range."""
    try:
        body = _encode_body(msg)
    except (OverflowError, ProtocolError) as e:
        raise ValueError(f"cannot encode {msg!r}: {e}") from None
    return _TYPE_OF[type(msg)], body


def _encode_body(msg: Message) -> bytes:
    if isinstance(msg, Challenge):
        if len(msg.nonce) != NONCE_BYTES:
            raise ValueError("nonce must be 16 bytes")
        return msg.version.to_bytes(2, "big") + msg.nonce
    if isinstance(msg, Hello):
        if len(msg.nonce) != NONCE_BYTES:
            raise ValueError("nonce must be 16 bytes")
        _check_name(msg.cluster_name)
        if not 1 <= msg.node_id <= NODEID_MAX:
            raise ValueError("node id must be 1..2^32-1")
        return (msg.version.to_bytes(2, "big") + msg.node_id.to_bytes(4, "big")
                + _text(msg.cluster_name, MAX_NAME_BYTES) + msg.nonce)
    if isinstance(msg, Welcome):
        return msg.heartbeat_ms.to_bytes(4, "big") + msg.timeout_ms.to_bytes(4, "big")
    if isinstance(msg, MembershipReport):
        _check_members(msg.ring, msg.members)
        return (msg.seq.to_bytes(4, "big") + _ring(msg.ring) + bytes([int(msg.quorate)])
                + len(msg.members).to_bytes(4, "big")
                + b"".join(m.to_bytes(4, "big") for m in msg.members))
    if isinstance(msg, Heartbeat | HeartbeatReply):
        return msg.seq.to_bytes(8, "big")
    if isinstance(msg, VoteInfo | VoteApplied):
        return msg.seq.to_bytes(4, "big") + _ring(msg.ring) + bytes([Vote(msg.vote)])
    if isinstance(msg, Error):
        return msg.code.to_bytes(2, "big") + _text(msg.text, MAX_TEXT_BYTES)
    raise TypeError(f"not a witness message: {msg!r}")


def decode_message(msg_type: int, body: bytes) -> Message:
    """The message of one frame's type and body; ``ProtocolError`` if invalid."""
    r = _Reader(body)
    msg: Message
    if msg_type == 1:
        msg = Challenge(r.uint(2), r.take(NONCE_BYTES))
    elif msg_type == 2:
        version, node_id = r.uint(2), r.uint(4)
        name = r.text(MAX_NAME_BYTES)
        msg = Hello(version, name, node_id, r.take(NONCE_BYTES))
        _check_name(name)
        if node_id == 0:
            raise ProtocolError("malformed", "node id 0")
    elif msg_type == 3:
        msg = Welcome(r.uint(4), r.uint(4))
    elif msg_type == 4:
        seq, ring, quorate = r.uint(4), r.ring(), r.uint(1)
        if quorate > 1:
            raise ProtocolError("malformed", "bad quorate flag")
        count = r.uint(4)
        if count > MAX_MEMBERS:
            raise ProtocolError("malformed", "too many members")
        members = tuple(r.uint(4) for _ in range(count))
        _check_members(ring, members)
        msg = MembershipReport(seq, ring, members, bool(quorate))
    elif msg_type == 5:
        msg = Heartbeat(r.uint(8))
    elif msg_type == 6:
        msg = HeartbeatReply(r.uint(8))
    elif msg_type == 7:
        msg = VoteInfo(r.uint(4), r.ring(), r.vote())
    elif msg_type == 8:
        msg = VoteApplied(r.uint(4), r.ring(), r.vote())
    elif msg_type == 9:
        msg = Error(r.uint(2), r.text(MAX_TEXT_BYTES))
    else:
        raise ProtocolError("malformed", f"unknown message type {msg_type}")
    r.end()
    return msg


# ====================================================================== keys and MACs
def load_key(data: bytes) -> bytes:
    """Validate the contents of a key file (16..65536 bytes) and return it."""
    if not MIN_KEY_BYTES <= len(data) <= MAX_KEY_BYTES:
        raise ValueError(f"the key must be {MIN_KEY_BYTES}..{MAX_KEY_BYTES} bytes, "
                         f"not {len(data)}")
    return bytes(data)


def _challenge_key(key: bytes) -> bytes:
    return hmac.new(key, _LABEL_CHALLENGE, hashlib.sha256).digest()


def _session_key(key: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return hmac.new(key, _LABEL_SESSION + server_nonce + client_nonce, hashlib.sha256).digest()


def _mac(key: bytes, direction: bytes, seq: int, payload: bytes) -> bytes:
    return hmac.new(key, direction + seq.to_bytes(8, "big") + payload, hashlib.sha256).digest()


def frame_length(header: bytes) -> int:
    """The length field of a frame header (4 bytes)."""
    return int(_LEN.unpack(header)[0])


# ====================================================================== sessions
class _Session:
    """Framing, sequence numbers and MACs of one connection (one side)."""

    _out_dir: bytes
    _in_dir: bytes

    def __init__(self, max_frame_bytes: int) -> None:
        if max_frame_bytes < 256:
            raise ValueError("max_frame_bytes must be at least 256")
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._out = bytearray()
        self._send_seq = 0
        self._recv_seq = 0
        self._send_key: bytes | None = None
        self._recv_key: bytes | None = None
        self._failed: ProtocolError | None = None

    def _frame(self, key: bytes, msg: Message) -> bytes:
        msg_type, body = encode_message(msg)
        payload = bytes([msg_type]) + body
        if len(payload) + MAC_BYTES > self.max_frame_bytes:
            raise ValueError(f"{type(msg).__name__} does not fit in a frame")
        mac = _mac(key, self._out_dir, self._send_seq, payload)
        self._send_seq += 1
        return _LEN.pack(len(payload) + MAC_BYTES) + payload + mac

    def _send_with(self, key: bytes, msg: Message) -> None:
        self._out += self._frame(key, msg)

    def take_output(self) -> bytes:
        """The bytes to write to the peer (and forget them)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def _raw_frames(self, data: bytes) -> list[tuple[int, bytes, bytes]]:
        """Append ``data`` and cut every complete frame: (type, body, mac)."""
        if self._failed is not None:
            raise self._failed
        self._buf += data
        frames = []
        while len(self._buf) >= _LEN.size:
            length = frame_length(bytes(self._buf[:_LEN.size]))
            if not MIN_FRAME_BYTES <= length <= self.max_frame_bytes:
                self._fail(ProtocolError("too_large" if length > self.max_frame_bytes
                                         else "malformed", f"frame length {length}"))
            if len(self._buf) < _LEN.size + length:
                break
            frame = bytes(self._buf[_LEN.size:_LEN.size + length])
            del self._buf[:_LEN.size + length]
            frames.append((frame[0], frame[1:-MAC_BYTES], frame[-MAC_BYTES:]))
        return frames

    def _verify(self, key: bytes, msg_type: int, body: bytes, mac: bytes) -> None:
        want = _mac(key, self._in_dir, self._recv_seq, bytes([msg_type]) + body)
        if not hmac.compare_digest(want, mac):
            self._fail(ProtocolError("bad_mac", "frame authentication failed"))
        self._recv_seq += 1

    def _decode(self, msg_type: int, body: bytes) -> Message:
        try:
            return decode_message(msg_type, body)
        except ProtocolError as e:
            self._fail(e)

    def _fail(self, err: ProtocolError) -> NoReturn:
        self._failed = err
        self._buf.clear()
        raise err

    def eof(self) -> None:
        """The peer closed the stream: ``ProtocolError('truncated')`` if it stopped
        inside a frame."""
        if self._buf and self._failed is None:
            self._fail(ProtocolError("truncated", f"{len(self._buf)} bytes of a frame"))

    @property
    def failed(self) -> bool:
        """A protocol error was raised; the session accepts nothing more."""
        return self._failed is not None


class ServerSession(_Session):
    """The witness's side of one connection.

    Construction queues the ``Challenge`` (``take_output``).  ``feed`` returns the
    verified messages: first a ``Hello`` (anything else, or a wrong MAC, is a
    ``ProtocolError``), then ``MembershipReport``, ``Heartbeat``, ``VoteApplied`` and
    ``Error``.  ``send`` queues a ``Welcome``, ``HeartbeatReply``, ``VoteInfo`` or
    ``Error``.
    """

    _out_dir = _S2C
    _in_dir = _C2S

    def __init__(self, key: bytes, nonce: bytes, *,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        super().__init__(max_frame_bytes)
        if len(nonce) != NONCE_BYTES:
            raise ValueError("the nonce must be 16 bytes")
        self._key = load_key(key)
        self.nonce = bytes(nonce)
        self.hello: Hello | None = None
        self._send_with(_challenge_key(self._key), Challenge(PROTOCOL_VERSION, self.nonce))

    def feed(self, data: bytes) -> list[Message]:
        """Verified messages from the bytes received so far."""
        out: list[Message] = []
        for msg_type, body, mac in self._raw_frames(data):
            if self._recv_key is None:
                if msg_type != _TYPE_OF[Hello]:
                    self._fail(ProtocolError("unexpected", "the first frame must be Hello"))
                hello = self._decode(msg_type, body)
                assert isinstance(hello, Hello)
                key = _session_key(self._key, self.nonce, hello.nonce)
                self._verify(key, msg_type, body, mac)
                self._recv_key = self._send_key = key
                self.hello = hello
                out.append(hello)
                continue
            self._verify(self._recv_key, msg_type, body, mac)
            msg = self._decode(msg_type, body)
            if type(msg) not in _FROM_CLIENT:
                self._fail(ProtocolError("unexpected", f"{type(msg).__name__} from a client"))
            out.append(msg)
        return out

    def send(self, msg: Message) -> None:
        """Queue one message (after the hello)."""
        if self._send_key is None:
            raise RuntimeError("no session key before the hello")
        if not isinstance(msg, Welcome | HeartbeatReply | VoteInfo | Error):
            raise TypeError(f"a server does not send {type(msg).__name__}")
        self._send_with(self._send_key, msg)


class ClientSession(_Session):
    """The agent's side of one connection.

    ``feed`` first expects the server's ``Challenge`` (verified with the challenge
    key); it then queues the ``Hello`` (``take_output``) and returns the challenge.
    Then come ``Welcome`` (exactly once, second) and ``HeartbeatReply``, ``VoteInfo``,
    ``Error``.  ``send`` queues ``MembershipReport``, ``Heartbeat``, ``VoteApplied``,
    ``Error``.
    """

    _out_dir = _C2S
    _in_dir = _S2C

    def __init__(self, key: bytes, *, cluster_name: str, node_id: int, nonce: bytes,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        super().__init__(max_frame_bytes)
        if len(nonce) != NONCE_BYTES:
            raise ValueError("the nonce must be 16 bytes")
        self._key = load_key(key)
        self.nonce = bytes(nonce)
        self.cluster_name = cluster_name
        self.node_id = node_id
        self.welcome: Welcome | None = None

    def feed(self, data: bytes) -> list[Message]:
        """Verified messages from the bytes received so far."""
        out: list[Message] = []
        for msg_type, body, mac in self._raw_frames(data):
            if self._recv_key is None:
                if msg_type != _TYPE_OF[Challenge]:
                    self._fail(ProtocolError("unexpected", "the first frame must be Challenge"))
                self._verify(_challenge_key(self._key), msg_type, body, mac)
                challenge = self._decode(msg_type, body)
                assert isinstance(challenge, Challenge)
                self._recv_key = self._send_key = _session_key(
                    self._key, challenge.nonce, self.nonce)
                self._send_with(self._send_key, Hello(
                    PROTOCOL_VERSION, self.cluster_name, self.node_id, self.nonce))
                out.append(challenge)
                continue
            self._verify(self._recv_key, msg_type, body, mac)
            msg = self._decode(msg_type, body)
            if self.welcome is None and not isinstance(msg, Welcome | Error):
                self._fail(ProtocolError("unexpected", "expected Welcome"))
            if isinstance(msg, Welcome):
                if self.welcome is not None:
                    self._fail(ProtocolError("unexpected", "a second Welcome"))
                self.welcome = msg
            elif type(msg) not in _FROM_SERVER:
                self._fail(ProtocolError("unexpected", f"{type(msg).__name__} from a server"))
            out.append(msg)
        return out

    def send(self, msg: Message) -> None:
        """Queue one message (after the challenge was received)."""
        if self._send_key is None:
            raise RuntimeError("no session key before the challenge")
        if not isinstance(msg, MembershipReport | Heartbeat | VoteApplied | Error):
            raise TypeError(f"a client does not send {type(msg).__name__}")
        self._send_with(self._send_key, msg)


# ====================================================================== the decision
@dataclass(frozen=True, slots=True)
class NodeReport:
    """The last ring a connected node reported."""

    node_id: int
    ring: RingId
    members: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Partition:
    """Nodes that report the same ring and member list; ``reporting`` are the members
    connected to the witness (ascending)."""

    ring: RingId
    members: tuple[int, ...]
    reporting: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of ``decide``: ``stable`` False means "wait, change nothing";
    ``winner`` None with ``stable`` means nobody reports a ring."""

    stable: bool
    winner: Partition | None
    partitions: tuple[Partition, ...]
    reason: str


def rank(p: Partition, previous: frozenset[int]) -> tuple[int, int, int, int, tuple[int, int]]:
    """The ordering key of partitions (the largest wins); see the module docstring."""
    return (len(p.members), len(p.reporting), len(previous.intersection(p.members)),
            -p.members[0], p.ring.sort_key())


def decide(reports: Mapping[int, NodeReport], previous: Iterable[int] = ()) -> Decision:
    """The partition that should hold the vote, given every reporting node's last
    report and the members of the partition chosen before."""
    for r in sorted(reports.values(), key=lambda r: r.node_id):
        for m in r.members:
            other = reports.get(m)
            if other is not None and (other.ring != r.ring or other.members != r.members):
                return Decision(False, None, (), f"node {r.node_id} reports ring {r.ring} "
                                f"but member {m} reports ring {other.ring}")
    groups: dict[tuple[RingId, tuple[int, ...]], list[int]] = {}
    for r in reports.values():
        groups.setdefault((r.ring, r.members), []).append(r.node_id)
    parts = tuple(sorted((Partition(ring, members, tuple(sorted(nodes)))
                          for (ring, members), nodes in groups.items()),
                         key=lambda p: (p.members, p.ring.sort_key())))
    if not parts:
        return Decision(True, None, (), "no node reports a ring")
    prev = frozenset(previous)
    best = max(parts, key=lambda p: rank(p, prev))
    if len(parts) == 1:
        reason = "the only partition"
    else:
        second = max((p for p in parts if p is not best), key=lambda p: rank(p, prev))
        a, b = rank(best, prev), rank(second, prev)
        reason = ("more members" if a[0] != b[0] else
                  "more members connected to the witness" if a[1] != b[1] else
                  "it had the vote before" if a[2] != b[2] else
                  "it holds the lowest node id" if a[3] != b[3] else "the larger ring id")
    return Decision(True, best, parts, reason)


# ====================================================================== engine outputs
@dataclass(frozen=True, slots=True)
class VoteDecided:
    """Send ``info`` on connection ``conn`` (node ``node_id`` of ``cluster``)."""

    conn: int
    cluster: str
    node_id: int
    info: VoteInfo


@dataclass(frozen=True, slots=True)
class ConnectionTimedOut:
    """Nothing heard on ``conn`` for the timeout: close it."""

    conn: int
    cluster: str
    node_id: int


@dataclass(frozen=True, slots=True)
class ConnectionReplaced:
    """A newer connection of the same node arrived: close ``conn``."""

    conn: int
    cluster: str
    node_id: int


@dataclass(frozen=True, slots=True)
class PeerMisbehaved:
    """The node on ``conn`` sent an invalid report: close ``conn``."""

    conn: int
    cluster: str
    node_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class PartitionChosen:
    """The partition that gets the vote changed (for the log)."""

    cluster: str
    partition: Partition | None
    reason: str


@dataclass(frozen=True, slots=True)
class ReleaseAwaited:
    """ACKs for ``partition`` wait until ``holders`` release the vote (for the log)."""

    cluster: str
    partition: Partition
    holders: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class HoldReleased:
    """Node ``node_id`` no longer holds the vote: ``how`` is ``nack-applied`` or
    ``expired`` (for the log)."""

    cluster: str
    node_id: int
    how: str


WitnessOutput: TypeAlias = (VoteDecided | ConnectionTimedOut | ConnectionReplaced
                            | PeerMisbehaved | PartitionChosen | ReleaseAwaited
                            | HoldReleased)


# ====================================================================== engine
@dataclass
class _Node:
    conn: int
    node_id: int
    last_heard_ms: int
    report: MembershipReport | None = None
    sent: VoteInfo | None = None


@dataclass
class _Hold:
    ring: RingId | None
    expires_ms: int | None  # None: open-ended (the node is connected)


@dataclass
class _Cluster:
    name: str
    nodes: dict[int, _Node] = field(default_factory=dict)
    holds: dict[int, _Hold] = field(default_factory=dict)
    previous: frozenset[int] = frozenset()
    chosen: Partition | None = None
    awaiting: tuple[int, ...] = ()
    vote_seq: int = 0


class WitnessEngine:
    """The witness's state for every cluster; time is an argument (``now_ms`` never
    decreases).  Feed it the connection events, then drain ``next_output`` and call
    ``tick`` at ``next_deadline``."""

    def __init__(self, now_ms: int, *, timeout_ms: int = DEFAULT_TIMEOUT_MS,
                 release_grace_ms: int = DEFAULT_RELEASE_GRACE_MS,
                 startup_quiet_ms: int | None = None) -> None:
        if timeout_ms <= 0 or release_grace_ms < 0:
            raise ValueError("timeout_ms must be positive and release_grace_ms >= 0")
        self.timeout_ms = timeout_ms
        self.release_grace_ms = release_grace_ms
        quiet = timeout_ms + release_grace_ms if startup_quiet_ms is None else startup_quiet_ms
        self.quiet_until_ms = now_ms + quiet
        self._now_ms = now_ms
        self._clusters: dict[str, _Cluster] = {}
        self._conns: dict[int, tuple[str, int]] = {}
        self._outputs: list[WitnessOutput] = []

    # ------------------------------------------------------------ inputs
    def connected(self, conn: int, cluster: str, node_id: int, now_ms: int) -> None:
        """Connection ``conn`` said hello as ``node_id`` of ``cluster``; an older
        connection of the same node is replaced (``ConnectionReplaced``)."""
        self._advance(now_ms)
        if conn in self._conns:
            raise ValueError(f"connection {conn} is already known")
        c = self._clusters.setdefault(cluster, _Cluster(cluster))
        old = c.nodes.get(node_id)
        if old is not None:
            self._outputs.append(ConnectionReplaced(old.conn, cluster, node_id))
            self._drop(c, old, now_ms)
        c.nodes[node_id] = _Node(conn, node_id, now_ms)
        self._conns[conn] = (cluster, node_id)
        self._reconcile(c, now_ms)

    def heard(self, conn: int, now_ms: int) -> None:
        """Any valid frame arrived on ``conn``."""
        self._advance(now_ms)
        node = self._node(conn)
        if node is not None:
            node[1].last_heard_ms = now_ms

    def reported(self, conn: int, report: MembershipReport, now_ms: int) -> None:
        """``conn`` reported its ring (``heard`` is implied)."""
        self._advance(now_ms)
        found = self._node(conn)
        if found is None:
            return
        c, node = found
        node.last_heard_ms = now_ms
        if report.ring is not None and node.node_id not in report.members:
            self._outputs.append(PeerMisbehaved(conn, c.name, node.node_id,
                                                "the node is not in its own membership"))
            self.disconnected(conn, now_ms)
            return
        node.report = report
        hold = c.holds.get(node.node_id)
        if report.ring is None and hold is not None:
            expires = now_ms + self.release_grace_ms
            if hold.expires_ms is None or expires < hold.expires_ms:
                hold.expires_ms = expires
        self._reconcile(c, now_ms)

    def vote_applied(self, conn: int, msg: VoteApplied, now_ms: int) -> None:
        """``conn`` applied a vote (``heard`` is implied); a NACK applied for the
        latest ``VoteInfo`` releases the node's hold."""
        self._advance(now_ms)
        found = self._node(conn)
        if found is None:
            return
        c, node = found
        node.last_heard_ms = now_ms
        sent = node.sent
        if (sent is not None and msg.seq == sent.seq and msg.vote == sent.vote
                and msg.ring == sent.ring and sent.vote == Vote.NACK
                and c.holds.pop(node.node_id, None) is not None):
            self._outputs.append(HoldReleased(c.name, node.node_id, "nack-applied"))
        self._reconcile(c, now_ms)

    def disconnected(self, conn: int, now_ms: int) -> None:
        """``conn`` is gone (closed by either side, or after an error)."""
        self._advance(now_ms)
        found = self._node(conn)
        if found is None:
            return
        c, node = found
        self._drop(c, node, now_ms)
        self._reconcile(c, now_ms)

    def tick(self, now_ms: int) -> None:
        """Time passed: time out silent nodes, expire holds, end the startup quiet."""
        self._advance(now_ms)
        for name in sorted(self._clusters):
            c = self._clusters[name]
            for node in sorted(c.nodes.values(), key=lambda n: n.node_id):
                if node.last_heard_ms + self.timeout_ms <= now_ms:
                    self._outputs.append(ConnectionTimedOut(node.conn, name, node.node_id))
                    self._drop(c, node, now_ms)
            self._reconcile(c, now_ms)

    # ------------------------------------------------------------ outputs
    def next_output(self) -> WitnessOutput | None:
        """The next thing for the driver to do or log, or None."""
        return self._outputs.pop(0) if self._outputs else None

    def next_deadline(self) -> int | None:
        """When ``tick`` must run next (ms), or None."""
        times: list[int] = []
        if self._now_ms < self.quiet_until_ms and self._clusters:
            times.append(self.quiet_until_ms)
        for c in self._clusters.values():
            times += [n.last_heard_ms + self.timeout_ms for n in c.nodes.values()]
            times += [h.expires_ms for h in c.holds.values() if h.expires_ms is not None]
        return min(times) if times else None

    # ------------------------------------------------------------ inspection
    def clusters(self) -> list[str]:
        """Names of the clusters with connected nodes or holds."""
        return sorted(self._clusters)

    def connection_count(self) -> int:
        """Connections that said hello and are still known."""
        return len(self._conns)

    def holders(self, cluster: str) -> dict[int, RingId | None]:
        """Node id -> ring of every hold in ``cluster``."""
        c = self._clusters.get(cluster)
        return {} if c is None else {n: h.ring for n, h in sorted(c.holds.items())}

    def chosen(self, cluster: str) -> Partition | None:
        """The partition chosen last in ``cluster``."""
        c = self._clusters.get(cluster)
        return None if c is None else c.chosen

    def last_vote(self, cluster: str, node_id: int) -> VoteInfo | None:
        """The last ``VoteInfo`` sent to a connected node."""
        c = self._clusters.get(cluster)
        node = None if c is None else c.nodes.get(node_id)
        return None if node is None else node.sent

    # ------------------------------------------------------------ internals
    def _advance(self, now_ms: int) -> None:
        assert now_ms >= self._now_ms, f"time went backwards: {now_ms} < {self._now_ms}"
        self._now_ms = now_ms

    def _node(self, conn: int) -> tuple[_Cluster, _Node] | None:
        key = self._conns.get(conn)
        if key is None:
            return None
        c = self._clusters[key[0]]
        return c, c.nodes[key[1]]

    def _drop(self, c: _Cluster, node: _Node, now_ms: int) -> None:
        del self._conns[node.conn]
        del c.nodes[node.node_id]
        hold = c.holds.get(node.node_id)
        if hold is not None:
            expires = node.last_heard_ms + self.timeout_ms + self.release_grace_ms
            if hold.expires_ms is None or expires < hold.expires_ms:
                hold.expires_ms = max(expires, now_ms)

    def _send(self, c: _Cluster, node: _Node, ring: RingId, vote: Vote) -> None:
        if node.sent is not None and node.sent.ring == ring and node.sent.vote == vote:
            return
        c.vote_seq = (c.vote_seq + 1) & 0xFFFFFFFF
        node.sent = VoteInfo(c.vote_seq, ring, vote)
        self._outputs.append(VoteDecided(node.conn, c.name, node.node_id, node.sent))

    def _reconcile(self, c: _Cluster, now_ms: int) -> None:
        for node_id in sorted(c.holds):
            expires = c.holds[node_id].expires_ms
            if expires is not None and expires <= now_ms:
                del c.holds[node_id]
                self._outputs.append(HoldReleased(c.name, node_id, "expired"))
        reports = {n.node_id: NodeReport(n.node_id, n.report.ring, n.report.members)
                   for n in c.nodes.values()
                   if n.report is not None and n.report.ring is not None}
        decision = decide(reports, c.previous)
        if decision.stable:
            self._apply(c, decision, now_ms)
        if not c.nodes and not c.holds:
            del self._clusters[c.name]

    def _apply(self, c: _Cluster, decision: Decision, now_ms: int) -> None:
        winner = decision.winner
        before = c.chosen
        c.chosen = winner
        if (winner is None) != (before is None) or (
                winner is not None and before is not None
                and (winner.ring, winner.members) != (before.ring, before.members)):
            c.awaiting = ()
            self._outputs.append(PartitionChosen(c.name, winner, decision.reason))
            if winner is not None:
                c.previous = frozenset(winner.members)
        if winner is None:
            return
        for node_id in sorted(c.nodes):
            node = c.nodes[node_id]
            report = node.report
            if report is None or report.ring is None or node_id in winner.reporting:
                continue
            self._send(c, node, report.ring, Vote.NACK)
        in_the_way = tuple(
            node_id for node_id, hold in sorted(c.holds.items())
            if hold.ring != winner.ring and node_id not in winner.reporting)
        if now_ms < self.quiet_until_ms:
            in_the_way = in_the_way or (0,)  # 0: "whoever held it before a restart"
        if in_the_way:
            if in_the_way != c.awaiting:
                c.awaiting = in_the_way
                self._outputs.append(ReleaseAwaited(c.name, winner, in_the_way))
            return
        c.awaiting = ()
        for node_id in winner.reporting:
            self._send(c, c.nodes[node_id], winner.ring, Vote.ACK)
            c.holds[node_id] = _Hold(winner.ring, None)
