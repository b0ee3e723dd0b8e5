"""Client <-> daemon IPC messages and their framing.

Theory of operation
-------------------
A client talks to ``pyquorumd`` over a Unix stream socket, ``<run_dir>/pyquorum.sock``
(see ``docs/ipc.md``).  Every message is one *frame*::

    u32 length (big-endian, of what follows)  |  u8 IPC_VERSION  |  u8 type  |  fields

The fields use the same annotation-driven layout as the cluster messages
(``pyquorum.wire.codec``).  The type byte is unique over all services; the Corosync
request/response/event ids of each message are kept as the class attribute ``CS_ID``
for reference.  Responses carry the ``cs_error_t`` number in ``error``.

Connection set-up: the client sends ``Hello(service)``; the daemon answers
``HelloReply(error, conn_id)``.  On CS_OK the reply carries, as SCM_RIGHTS ancillary
data, one end of a fresh socketpair: the *event channel*.  Responses come back on the
request socket in request order; events (callbacks) only on the event channel, so the
event fd is readable exactly when an event is queued (``quorum_fd_get``) and hangs up
when the daemon goes away.

Services (Corosync's ids): CMAP 0 (the key view, read-only but for the one trigger key
``quorum.cancel_wait_for_all``), CFG 1 (the cluster-wide configuration reload), QUORUM 3,
VOTEQUORUM 5, and TESTHOOK 99 (only when the daemon runs with ``PYQUORUM_TEST_HOOKS=1``).

Type bytes::

    1-5    connection set-up, ErrorReply, Sync/SyncReply (any service)
    10-32  quorum: requests 10-14, responses 20-22, events 30-32
    40-62  votequorum: requests 40-49, responses 50-51, events 60-62
    70-73  cmap: CmapGetPrefixReq/Res 70/71, CmapSetReq/Res 72/73
    80-81  cfg: CfgReloadReq/Res
    90     testhook: TestBlockReq (answered with VqStatusRes)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final

from pyquorum.types import RingId
from pyquorum.wire.codec import Malformed, MalformedReason, MessageCodec
from pyquorum.wire.messages import U8, U32, U64, Str

IPC_VERSION: Final = 1
MAX_FRAME_BYTES: Final = 1 << 20
"""The largest frame body (Corosync's client buffer is 1 MiB)."""
SOCKET_NAME: Final = "pyquorum.sock"

SERVICE_CMAP: Final = 0
SERVICE_CFG: Final = 1
SERVICE_QUORUM: Final = 3
SERVICE_VOTEQUORUM: Final = 5
SERVICE_TESTHOOK: Final = 99
SERVICES: Final = frozenset({SERVICE_CMAP, SERVICE_CFG, SERVICE_QUORUM, SERVICE_VOTEQUORUM,
                             SERVICE_TESTHOOK})

_LENGTH: Final = struct.Struct(">I")


# ------------------------------------------------------------------ connection set-up
@dataclass(frozen=True, slots=True)
class Hello:
    """First frame of a connection: which service the client wants."""

    service: U8


@dataclass(frozen=True, slots=True)
class HelloReply:
    """CS_OK (with the event channel fd attached) or why the connection is refused."""

    error: U32
    conn_id: U32


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """The answer to a request the service does not know (the connection stays open)."""

    error: U32
    request_type: U8


@dataclass(frozen=True, slots=True)
class Sync:
    """Any service: answer ``SyncReply(token)`` in request order.

    A client whose request was cut short by an exception (a signal handler raising)
    cannot know whether its answer is still coming; before its next request it sends
    ``Sync`` and skips every answer up to the matching ``SyncReply``.
    """

    token: U32


@dataclass(frozen=True, slots=True)
class SyncReply:
    """The answer to ``Sync``."""

    token: U32


# ------------------------------------------------------------------ quorum service (3)
@dataclass(frozen=True, slots=True)
class QuorumGetQuorateReq:
    """MESSAGE_REQ_QUORUM_GETQUORATE."""

    CS_ID: ClassVar[int] = 0


@dataclass(frozen=True, slots=True)
class QuorumTrackStartReq:
    """MESSAGE_REQ_QUORUM_TRACKSTART."""

    CS_ID: ClassVar[int] = 1
    flags: U32


@dataclass(frozen=True, slots=True)
class QuorumTrackStopReq:
    """MESSAGE_REQ_QUORUM_TRACKSTOP."""

    CS_ID: ClassVar[int] = 2


@dataclass(frozen=True, slots=True)
class QuorumGetTypeReq:
    """MESSAGE_REQ_QUORUM_GETTYPE (a V0 client)."""

    CS_ID: ClassVar[int] = 3


@dataclass(frozen=True, slots=True)
class QuorumModelGetTypeReq:
    """MESSAGE_REQ_QUORUM_MODEL_GETTYPE (records the model on the connection)."""

    CS_ID: ClassVar[int] = 4
    model: U32


@dataclass(frozen=True, slots=True)
class QuorumGetQuorateRes:
    """MESSAGE_RES_QUORUM_GETQUORATE."""

    CS_ID: ClassVar[int] = 0
    error: U32
    quorate: U32


@dataclass(frozen=True, slots=True)
class QuorumStatusRes:
    """MESSAGE_RES_QUORUM_TRACKSTART / TRACKSTOP: just the error."""

    CS_ID: ClassVar[int] = 1
    error: U32


@dataclass(frozen=True, slots=True)
class QuorumGetTypeRes:
    """MESSAGE_RES_QUORUM_GETTYPE / MODEL_GETTYPE."""

    CS_ID: ClassVar[int] = 4
    error: U32
    quorum_type: U32


@dataclass(frozen=True, slots=True)
class QuorumV0Event:
    """MESSAGE_RES_QUORUM_NOTIFICATION (V0 callback)."""

    CS_ID: ClassVar[int] = 3
    quorate: U32
    ring_seq: U64
    members: tuple[U32, ...]


@dataclass(frozen=True, slots=True)
class QuorumV1Event:
    """MESSAGE_RES_QUORUM_V1_QUORUM_NOTIFICATION."""

    CS_ID: ClassVar[int] = 6
    quorate: U32
    ring: RingId
    members: tuple[U32, ...]


@dataclass(frozen=True, slots=True)
class NodelistV1Event:
    """MESSAGE_RES_QUORUM_V1_NODELIST_NOTIFICATION."""

    CS_ID: ClassVar[int] = 7
    ring: RingId
    members: tuple[U32, ...]
    joined: tuple[U32, ...]
    left: tuple[U32, ...]


# ------------------------------------------------------------------ votequorum service (5)
@dataclass(frozen=True, slots=True)
class VqGetInfoReq:
    """MESSAGE_REQ_VOTEQUORUM_GETINFO (nodeid 0: the local node)."""

    CS_ID: ClassVar[int] = 0
    nodeid: U32


@dataclass(frozen=True, slots=True)
class VqSetExpectedReq:
    """MESSAGE_REQ_VOTEQUORUM_SETEXPECTED."""

    CS_ID: ClassVar[int] = 1
    expected_votes: U32


@dataclass(frozen=True, slots=True)
class VqSetVotesReq:
    """MESSAGE_REQ_VOTEQUORUM_SETVOTES."""

    CS_ID: ClassVar[int] = 2
    nodeid: U32
    votes: U32


@dataclass(frozen=True, slots=True)
class VqTrackStartReq:
    """MESSAGE_REQ_VOTEQUORUM_TRACKSTART."""

    CS_ID: ClassVar[int] = 3
    context: U64
    flags: U32


@dataclass(frozen=True, slots=True)
class VqTrackStopReq:
    """MESSAGE_REQ_VOTEQUORUM_TRACKSTOP."""

    CS_ID: ClassVar[int] = 4


@dataclass(frozen=True, slots=True)
class VqQdeviceRegisterReq:
    """MESSAGE_REQ_VOTEQUORUM_QDEVICE_REGISTER."""

    CS_ID: ClassVar[int] = 5
    name: Str


@dataclass(frozen=True, slots=True)
class VqQdeviceUnregisterReq:
    """MESSAGE_REQ_VOTEQUORUM_QDEVICE_UNREGISTER."""

    CS_ID: ClassVar[int] = 6
    name: Str


@dataclass(frozen=True, slots=True)
class VqQdeviceUpdateReq:
    """MESSAGE_REQ_VOTEQUORUM_QDEVICE_UPDATE (rename)."""

    CS_ID: ClassVar[int] = 7
    old_name: Str
    new_name: Str


@dataclass(frozen=True, slots=True)
class VqQdevicePollReq:
    """MESSAGE_REQ_VOTEQUORUM_QDEVICE_POLL."""

    CS_ID: ClassVar[int] = 8
    name: Str
    cast_vote: U32
    ring: RingId


@dataclass(frozen=True, slots=True)
class VqQdeviceMasterWinsReq:
    """MESSAGE_REQ_VOTEQUORUM_QDEVICE_MASTER_WINS."""

    CS_ID: ClassVar[int] = 9
    name: Str
    allow: U32


@dataclass(frozen=True, slots=True)
class VqStatusRes:
    """MESSAGE_RES_VOTEQUORUM_STATUS: the answer to every request but GETINFO."""

    CS_ID: ClassVar[int] = 0
    error: U32


@dataclass(frozen=True, slots=True)
class VqGetInfoRes:
    """MESSAGE_RES_VOTEQUORUM_GETINFO (fields are garbage-free zeros on error)."""

    CS_ID: ClassVar[int] = 1
    error: U32
    node_id: U32
    node_state: U32
    node_votes: U32
    node_expected_votes: U32
    highest_expected: U32
    total_votes: U32
    quorum: U32
    flags: U32
    qdevice_votes: U32
    qdevice_name: Str


@dataclass(frozen=True, slots=True)
class VqNode:
    """One ``votequorum_node_t`` of a quorum event (nodeid 0: the qdevice)."""

    nodeid: U32
    state: U32


@dataclass(frozen=True, slots=True)
class VqQuorumEvent:
    """MESSAGE_RES_VOTEQUORUM_QUORUM_NOTIFICATION."""

    CS_ID: ClassVar[int] = 2
    context: U64
    quorate: U32
    nodes: tuple[VqNode, ...]


@dataclass(frozen=True, slots=True)
class VqExpectedVotesEvent:
    """MESSAGE_RES_VOTEQUORUM_EXPECTEDVOTES_NOTIFICATION."""

    CS_ID: ClassVar[int] = 3
    context: U64
    expected_votes: U32


@dataclass(frozen=True, slots=True)
class VqNodelistEvent:
    """MESSAGE_RES_VOTEQUORUM_NODELIST_NOTIFICATION."""

    CS_ID: ClassVar[int] = 4
    context: U64
    ring: RingId
    members: tuple[U32, ...]


# ------------------------------------------------------------------ cmap (0)
@dataclass(frozen=True, slots=True)
class KeyValue:
    """One cmap key and its value as text."""

    key: Str
    value: Str


@dataclass(frozen=True, slots=True)
class CmapGetPrefixReq:
    """All keys starting with ``prefix`` (``""``: every key)."""

    prefix: Str


@dataclass(frozen=True, slots=True)
class CmapGetPrefixRes:
    """The keys, sorted."""

    error: U32
    items: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True)
class CmapSetReq:
    """MESSAGE_REQ_CMAP_SET with the value as text.

    Only ``quorum.cancel_wait_for_all`` is writable (a u8: 1..255 cancels wait_for_all
    on every node, 0 does nothing); any other key is refused with CS_ERR_ACCESS.
    """

    CS_ID: ClassVar[int] = 0
    key: Str
    value: Str


@dataclass(frozen=True, slots=True)
class CmapSetRes:
    """MESSAGE_RES_CMAP_SET."""

    CS_ID: ClassVar[int] = 0
    error: U32


# ------------------------------------------------------------------ cfg (1)
@dataclass(frozen=True, slots=True)
class CfgReloadReq:
    """MESSAGE_REQ_CFG_RELOAD_CONFIG: every node re-reads its configuration file."""

    CS_ID: ClassVar[int] = 7


@dataclass(frozen=True, slots=True)
class CfgReloadRes:
    """MESSAGE_RES_CFG_RELOAD_CONFIG: sent once the local node has reloaded
    (CS_ERR_LIBRARY: its configuration file is unusable)."""

    CS_ID: ClassVar[int] = 15
    error: U32


# ------------------------------------------------------------------ test hook (99)
@dataclass(frozen=True, slots=True)
class TestBlockReq:
    """Drop all cluster traffic to and from these node ids (empty: heal); answer VqStatusRes."""

    __test__: ClassVar[bool] = False
    nodeids: tuple[U32, ...]


IPC_TYPES: Final[dict[type, int]] = {
    Hello: 1, HelloReply: 2, ErrorReply: 3, Sync: 4, SyncReply: 5,
    QuorumGetQuorateReq: 10, QuorumTrackStartReq: 11, QuorumTrackStopReq: 12,
    QuorumGetTypeReq: 13, QuorumModelGetTypeReq: 14,
    QuorumGetQuorateRes: 20, QuorumStatusRes: 21, QuorumGetTypeRes: 22,
    QuorumV0Event: 30, QuorumV1Event: 31, NodelistV1Event: 32,
    VqGetInfoReq: 40, VqSetExpectedReq: 41, VqSetVotesReq: 42, VqTrackStartReq: 43,
    VqTrackStopReq: 44, VqQdeviceRegisterReq: 45, VqQdeviceUnregisterReq: 46,
    VqQdeviceUpdateReq: 47, VqQdevicePollReq: 48, VqQdeviceMasterWinsReq: 49,
    VqStatusRes: 50, VqGetInfoRes: 51,
    VqQuorumEvent: 60, VqExpectedVotesEvent: 61, VqNodelistEvent: 62,
    CmapGetPrefixReq: 70, CmapGetPrefixRes: 71, CmapSetReq: 72, CmapSetRes: 73,
    CfgReloadReq: 80, CfgReloadRes: 81,
    TestBlockReq: 90,
}

QUORUM_REQUESTS: Final = (QuorumGetQuorateReq, QuorumTrackStartReq, QuorumTrackStopReq,
                          QuorumGetTypeReq, QuorumModelGetTypeReq)
VOTEQUORUM_REQUESTS: Final = (VqGetInfoReq, VqSetExpectedReq, VqSetVotesReq, VqTrackStartReq,
                              VqTrackStopReq, VqQdeviceRegisterReq, VqQdeviceUnregisterReq,
                              VqQdeviceUpdateReq, VqQdevicePollReq, VqQdeviceMasterWinsReq)
CMAP_REQUESTS: Final = (CmapGetPrefixReq, CmapSetReq)
CFG_REQUESTS: Final = (CfgReloadReq,)
TESTHOOK_REQUESTS: Final = (TestBlockReq,)
REQUESTS_BY_SERVICE: Final[dict[int, tuple[type, ...]]] = {
    SERVICE_QUORUM: QUORUM_REQUESTS,
    SERVICE_VOTEQUORUM: VOTEQUORUM_REQUESTS,
    SERVICE_CMAP: CMAP_REQUESTS,
    SERVICE_CFG: CFG_REQUESTS,
    SERVICE_TESTHOOK: TESTHOOK_REQUESTS,
}

_CODEC: Final = MessageCodec(IPC_TYPES, IPC_VERSION, MAX_FRAME_BYTES)


def encode_frame(msg: object) -> bytes:
    """One frame: u32 length, then the encoded message.  Raises ``EncodeError`` on misuse."""
    body = _CODEC.encode(msg)
    return _LENGTH.pack(len(body)) + body


def decode_body(body: bytes) -> object:
    """Decode a frame body (without the length); never raises: bad bytes give ``Malformed``."""
    return _CODEC.decode(body)


class FrameReader:
    """Accumulates stream bytes and cuts them into decoded messages.

    ``feed`` returns the complete messages so far.  A length over ``MAX_FRAME_BYTES``
    or a body that does not decode yields a ``Malformed`` item; the caller must then
    close the connection, since the stream can no longer be trusted.  The reader then
    drops what it holds and ignores further bytes, so it never holds more than one
    frame (``MAX_FRAME_BYTES`` + 4 bytes) after ``feed`` returns (a fuzzing finding:
    ``tests/fuzz/test_fuzz_regressions.py``).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.broken = False

    def feed(self, data: bytes) -> list[object]:
        """Add bytes; return every complete message (or a final ``Malformed``)."""
        if self.broken:
            return []
        self._buf += data
        out: list[object] = []
        while len(self._buf) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buf)
            if length > MAX_FRAME_BYTES or length < 2:
                self.broken = True
                self._buf.clear()
                out.append(Malformed(MalformedReason.TOO_LARGE if length > MAX_FRAME_BYTES
                                     else MalformedReason.TRUNCATED, f"frame length {length}"))
                return out
            end = _LENGTH.size + length
            if len(self._buf) < end:
                break
            msg = _CODEC.decode(bytes(self._buf[_LENGTH.size:end]))
            del self._buf[:end]
            out.append(msg)
            if isinstance(msg, Malformed):
                self.broken = True
                self._buf.clear()
                return out
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buf)
