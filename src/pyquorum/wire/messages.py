"""Node-to-node (cluster) messages: frozen, slotted dataclasses.

Field types are declared with ``Annotated`` width markers; the codec in
``pyquorum.wire.codec`` derives the binary layout from these annotations, so a
message is defined in exactly one place.

Allowed field types:
  ``U8``, ``U16``, ``U32``, ``U64``   unsigned big-endian integers
  ``RingId``                        u32 rep + u64 seq
  ``NodeInfo``                      nested struct (below)
  ``tuple[T, ...]``                 u16 count, then the items (T any of the above)
  ``OrderedPayload``                u8 tag (PAYLOAD_TAGS) + the payload struct
  ``Str``                           u16 length + UTF-8 bytes (at most 1024 bytes)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Final

from pyquorum.types import RingId

U8 = Annotated[int, "u8"]
U16 = Annotated[int, "u16"]
U32 = Annotated[int, "u32"]
U64 = Annotated[int, "u64"]
Str = Annotated[str, "str"]

WIRE_VERSION: Final = 1


class MemberState(IntEnum):
    """A node's membership state, carried in heartbeats."""

    OPERATIONAL = 0
    GATHER = 1


class NodeFlag(IntEnum):
    """votequorum node flags carried in NODEINFO (spec 1.3)."""

    QUORATE = 1
    LEAVING = 2
    WFASTATUS = 4
    FIRST = 8
    QDEVICE_REGISTERED = 16
    QDEVICE_ALIVE = 32
    QDEVICE_CAST_VOTE = 64
    QDEVICE_MASTER_WINS = 128


class ReconfigureParam(IntEnum):
    """RECONFIGURE parameters (spec 4.6)."""

    EXPECTED_VOTES = 1
    NODE_VOTES = 2
    CANCEL_WFA = 3


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """votequorum NODEINFO: one node's votes, expected votes and flags (nodeid 0: qdevice)."""

    nodeid: U32
    votes: U32
    expected_votes: U32
    flags: U32


@dataclass(frozen=True, slots=True)
class Reconfigure:
    """votequorum RECONFIGURE (setexpected, setvotes, cancel wait_for_all)."""

    nodeid: U32
    value: U32
    param: U8


class QdeviceOperation(IntEnum):
    """The ``operation`` of a QDEVICE_REG message (spec 4.6)."""

    UNREGISTER = 0
    REGISTER = 1


@dataclass(frozen=True, slots=True)
class QdeviceReg:
    """votequorum QDEVICE_REG: operation 1 = register, 0 = unregister."""

    operation: U8
    name: Str


@dataclass(frozen=True, slots=True)
class QdeviceRename:
    """votequorum QDEVICE_RECONFIGURE: rename a registered device."""

    oldname: Str
    newname: Str


@dataclass(frozen=True, slots=True)
class QdeviceSynced:
    """pyquorum only: the sender finished votequorum's sync step for ``ring``.

    Corosync stalls its sync barrier while a member waits for its quorum device to
    poll with the new ring id (spec 4.7).  pyquorum installs views atomically, so a
    member whose device was alive in the view's INSTALL (or that waits for it)
    multicasts this once its device polled with ``ring``, ``sync_timeout`` expired or
    the device was unregistered; ``info`` is its NODEINFO at that moment.  Every member
    activates ``ring`` only after it has delivered this message from each of them.
    """

    ring: RingId
    info: NodeInfo


@dataclass(frozen=True, slots=True)
class ReloadConfig:
    """Every member re-reads its configuration file when this is delivered.

    Corosync's cfg service multicasts the same request for ``corosync-cfgtool -R``
    (``message_handler_req_exec_cfg_reload_config``); ``nodeid`` asked for it.
    """

    nodeid: U32


@dataclass(frozen=True, slots=True)
class KeyReady:
    """pyquorum only: ``nodeid`` now accepts datagrams sealed with the key ``fingerprint``.

    Once a member has delivered this from every member of its view it seals with that
    key; every member switches at the same point of the agreed order, after all of
    them could already open it (authkey rotation by reload).
    """

    nodeid: U32
    fingerprint: U64


OrderedPayload = (NodeInfo | Reconfigure | QdeviceReg | QdeviceRename | QdeviceSynced
                  | ReloadConfig | KeyReady)

PAYLOAD_TAGS: Final[dict[type, int]] = {
    NodeInfo: 0,
    Reconfigure: 1,
    QdeviceReg: 2,
    QdeviceRename: 3,
    QdeviceSynced: 16,  # pyquorum only (Corosync's own ids end at 4)
    ReloadConfig: 17,  # Corosync's cfg service, not votequorum
    KeyReady: 18,  # pyquorum only
}


# ---------------------------------------------------------------- membership messages
@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Sent every heartbeat interval to every configured node.

    Carries the sender's ring, its membership state and ``seqno``, the number of
    ordered messages it has delivered (the representative: sequenced) in that ring,
    so a member that lost the tail of the sequence notices and asks again.
    ``heard`` lists the nodes the sender received anything from within the last
    token: a receiver not in it knows that its traffic does not reach the sender
    (knet's ping/pong link state: a link is up only both ways).  ``beat`` is the
    sender's monotonic clock (ms), so a heartbeat overtaken by a newer one is known.
    """

    sender: U32
    ring: RingId
    state: U8
    seqno: U32
    beat: U64 = 0
    heard: tuple[U32, ...] = ()


@dataclass(frozen=True, slots=True)
class Join:
    """GATHER: the sender's candidate (proc) and failed sets, for consensus.

    ``ring`` is the sender's last installed ring, ``max_seq`` the highest ring seq it
    has seen or proposed, ``infos`` its own votequorum NODEINFO (and its qdevice's,
    nodeid 0), ``delivered`` how many ordered messages of ``ring`` it has delivered
    and ``log`` the most recent of them, so the new representative can hand them to
    members of the same old ring that missed them (virtual synchrony).
    """

    sender: U32
    ring: RingId
    max_seq: U64
    proc: tuple[U32, ...]
    fail: tuple[U32, ...]
    infos: tuple[NodeInfo, ...]
    delivered: U32
    log: tuple[CatchUp, ...]


@dataclass(frozen=True, slots=True)
class Install:
    """COMMIT: the representative installs ``ring`` with ``members``.

    ``prev_rings[i]`` is the ring ``members[i]`` came from (for the transitional
    membership); ``infos`` holds every member's NODEINFO as it sent it in its JOIN,
    in member order, so every member computes quorum from the same inputs (R3).
    ``catchup`` carries ordered messages of old rings that some members missed.
    """

    sender: U32
    ring: RingId
    members: tuple[U32, ...]
    prev_rings: tuple[RingId, ...]
    infos: tuple[NodeInfo, ...]
    catchup: tuple[CatchUp, ...]


@dataclass(frozen=True, slots=True)
class CatchUp:
    """One ordered message of ``ring`` (number ``seqno``) for the members that missed it."""

    ring: RingId
    seqno: U32
    origin: U32
    request_id: U32
    payload: OrderedPayload


@dataclass(frozen=True, slots=True)
class Leave:
    """A clean shutdown: the sender leaves ``ring`` now.

    (Under allow_downscale its LEAVING NODEINFO was delivered in agreed order before.)
    """

    sender: U32
    ring: RingId


@dataclass(frozen=True, slots=True)
class OrderedRequest:
    """A member asks the ring representative to sequence ``payload`` in ``ring``."""

    sender: U32
    ring: RingId
    request_id: U32
    payload: OrderedPayload


@dataclass(frozen=True, slots=True)
class Ordered:
    """The representative's numbered broadcast of an ordered payload in ``ring``."""

    sender: U32
    ring: RingId
    seqno: U32
    origin: U32
    request_id: U32
    payload: OrderedPayload


@dataclass(frozen=True, slots=True)
class OrderedNack:
    """A member missed ordered messages from ``from_seqno`` on: please retransmit."""

    sender: U32
    ring: RingId
    from_seqno: U32


ClusterMessage = Heartbeat | Join | Install | Leave | OrderedRequest | Ordered | OrderedNack


class MsgType(IntEnum):
    """The one-byte message type that follows the wire version."""

    HEARTBEAT = 1
    JOIN = 2
    INSTALL = 3
    LEAVE = 4
    ORDERED_REQUEST = 5
    ORDERED = 6
    ORDERED_NACK = 7


MESSAGE_TYPES: Final[dict[type, MsgType]] = {
    Heartbeat: MsgType.HEARTBEAT,
    Join: MsgType.JOIN,
    Install: MsgType.INSTALL,
    Leave: MsgType.LEAVE,
    OrderedRequest: MsgType.ORDERED_REQUEST,
    Ordered: MsgType.ORDERED,
    OrderedNack: MsgType.ORDERED_NACK,
}
