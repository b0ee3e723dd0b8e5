"""votequorum: the vote arithmetic and state of Corosync's provider (spec section 4).

Theory of operation
-------------------
One ``VoteQuorum`` object holds everything Corosync's ``exec/votequorum.c`` keeps in
file-level statics, for one node.  It is sans-IO: it reads no clock and touches no file.
Time arrives as ``now_ms``; durable state (the expected-votes tracking barrier) leaves
as a ``BarrierPersisted`` event that the driver must make durable.

State
    * the node table: one ``_Node`` {id, state, votes, expected_votes, flags} for every
      node that ever sent a NODEINFO, keyed by nodeid.  Entries are never removed; a node
      that leaves the membership becomes DEAD.  ``us`` (our own entry) lives in the same
      table and is always MEMBER.
    * the qdevice pseudo-entry (nodeid 0): only its votes are used; its state stays 0.
    * the globals: ``quorum``, ``cluster_is_quorate``, ``wait_for_all_status``, the
      tie-breaker ids of the last vote-quorate view, the current and previous totem member
      lists (for ATB and LMS), the ring id, ``ev_barrier`` and the EVT barrier.

How the engine drives it (exactly as Corosync's sync drives votequorum, spec 4.7)::

    vq.sync_init(transitional, members, ring, now_ms)     # a new view, before nodeinfo
    for info in infos_of_all_members_in_install_order:
        vq.deliver_nodeinfo(info, now_ms, sender=...)     # NODEINFO in total order
    vq.sync_activate(now_ms)                              # always emits QuorumNotified

Outside a sync, ordered messages arrive through ``deliver_nodeinfo`` and
``deliver_reconfigure``; ``handle_timer`` runs the last_man_standing window.  Outputs are
pulled with ``next_event()`` (FIFO).

The routines are named after Corosync's:

    ===============================  ============================================
    ``_readconfig``                  ``votequorum_readconfig`` (startup mode, 4.2)
    ``_recalculate_quorum``          ``recalculate_quorum`` (4.4 recalc)
    ``_get_total_votes``             ``get_total_votes`` (4.4 recalc steps 1-2)
    ``_calculate_quorum``            ``calculate_quorum`` (4.4 calc; pure)
    ``_are_we_quorate``              ``are_we_quorate`` (4.4)
    ``_check_auto_tie_breaker``      ``check_auto_tie_breaker`` (4.5.4)
    ``_update_node_expected_votes``  ``update_node_expected_votes``
    ``_update_wait_for_all_status``  ``update_wait_for_all_status``
    ``_update_ev_tracking_barrier``  ``update_ev_tracking_barrier`` (persist)
    ``deliver_nodeinfo``             ``message_handler_req_exec_votequorum_nodeinfo``
    ``deliver_reconfigure``          ``message_handler_req_exec_votequorum_reconfigure``
    ``sync_init``/``sync_activate``  ``votequorum_sync_init``/``votequorum_sync_activate``
    ``handle_timer``                 ``votequorum_last_man_standing_timer_fn``,
                                     ``qdevice_timer_fn``
    ``qdevice_register`` ...         ``message_handler_req_lib_votequorum_qdevice_*``
    ``deliver_qdevice_reg``          ``message_handler_req_exec_votequorum_qdevice_reg``
    ``deliver_qdevice_rename``       ``..._exec_votequorum_qdevice_reconfigure``
    ===============================  ============================================

Quorum device (spec 4.9).  The local device's state lives in our own node flags
(REGISTERED, ALIVE, CAST_VOTE, MASTER_WINS), which every member learns from our
NODEINFO; the name is recorded cluster-wide.  One timer serves the device: the poll
timeout (``quorum.device.timeout``) or, during a sync, ``sync_timeout``::

    state / input                          effect
    -------------------------------------  -------------------------------------------
    register, disabled by config           ACCESS
    register, registered                   same name: OK; other name: EXIST
    register, one in flight                TRY_AGAIN
    register                               None: the caller multicasts QDEVICE_REG and
                                           answers with ``deliver_qdevice_reg``
    own QDEVICE_REG delivered              adopt name if none; match: REGISTERED,
                                           NODEINFO(qdevice) + NODEINFO(us), OK; else EXIST
    poll                                   ACCESS / NOT_EXIST / MESSAGE_ERROR (ring is
                                           not the last sync_init's) / INVALID_PARAM, in
                                           that order; else ALIVE, CAST_VOTE = cast_vote,
                                           timer = timeout, NODEINFO if flags changed
    timer expires, ALIVE                   clear ALIVE and CAST_VOTE, NODEINFO
    sync_init, REGISTERED and ALIVE        sync wait: timer = sync_timeout
    poll / timer / unregister in the wait  wait over: ``SyncWaitEnded(our NODEINFO)``
                                           instead of the NODEINFO
    master_wins                            ACCESS / NOT_EXIST / INVALID_PARAM; set flag
                                           (NODEINFO if changed) and the 4.4 override
    unregister                             NOT_EXIST / INVALID_PARAM; stop timer, clear
                                           the four flags, NODEINFO, QDEVICE_REG(0)
    update                                 NOT_EXIST / INVALID_PARAM; QDEVICE_RECONFIGURE

The device's votes come only from the configuration (4.2 #13) and count in the quorum
of the node whose device casts them (``_calculate_quorum``).

Notification rule (spec 3.12, 4.4 step 7): ``QuorumNotified`` is emitted at every
``sync_activate`` and, outside a sync, only when the quorate bit flips.  Between
``sync_init`` and ``sync_activate`` it is never emitted.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Final

from pyquorum.config.model import ClusterConfig, QuorumConfig
from pyquorum.errors import CsErr, CsError
from pyquorum.types import NULL_RING, RingId
from pyquorum.wire.messages import (
    NodeFlag,
    NodeInfo,
    QdeviceOperation,
    QdeviceReg,
    QdeviceRename,
    Reconfigure,
    ReconfigureParam,
)

__all__ = [
    "VOTEQUORUM_INFO_ALLOW_DOWNSCALE",
    "VOTEQUORUM_INFO_AUTO_TIE_BREAKER",
    "VOTEQUORUM_INFO_LAST_MAN_STANDING",
    "VOTEQUORUM_INFO_QDEVICE_ALIVE",
    "VOTEQUORUM_INFO_QDEVICE_CAST_VOTE",
    "VOTEQUORUM_INFO_QDEVICE_MASTER_WINS",
    "VOTEQUORUM_INFO_QDEVICE_REGISTERED",
    "VOTEQUORUM_INFO_QUORATE",
    "VOTEQUORUM_INFO_TWONODE",
    "VOTEQUORUM_INFO_WAIT_FOR_ALL",
    "VOTEQUORUM_NODESTATE_DEAD",
    "VOTEQUORUM_NODESTATE_LEAVING",
    "VOTEQUORUM_NODESTATE_MEMBER",
    "VOTEQUORUM_QDEVICE_NODEID",
    "AtbMode",
    "BarrierPersisted",
    "ExpectedVotesNotified",
    "Logged",
    "NodeState",
    "NodeinfoBroadcastRequested",
    "QdeviceBroadcastRequested",
    "QuorumNotified",
    "SyncWaitEnded",
    "VoteQuorum",
    "VoteQuorumInfo",
    "VoteQuorumInfoFlag",
    "VqEvent",
    "parse_atb_string",
]


# ---------------------------------------------------------------- constants (spec 1.3)
class NodeState(IntEnum):
    """``VOTEQUORUM_NODESTATE_*``.  The qdevice pseudo-entry reports state 0."""

    MEMBER = 1
    DEAD = 2
    LEAVING = 3


class VoteQuorumInfoFlag(IntFlag):
    """``VOTEQUORUM_INFO_*``: the ``flags`` field of ``votequorum_getinfo``."""

    TWONODE = 1
    QUORATE = 2
    WAIT_FOR_ALL = 4
    LAST_MAN_STANDING = 8
    AUTO_TIE_BREAKER = 16
    ALLOW_DOWNSCALE = 32
    QDEVICE_REGISTERED = 64
    QDEVICE_ALIVE = 128
    QDEVICE_CAST_VOTE = 256
    QDEVICE_MASTER_WINS = 512


class AtbMode(IntEnum):
    """auto_tie_breaker mode (``runtime.votequorum.atb_type``)."""

    NONE = 0
    LOWEST = 1
    HIGHEST = 2
    LIST = 3


VOTEQUORUM_INFO_TWONODE: Final = VoteQuorumInfoFlag.TWONODE
VOTEQUORUM_INFO_QUORATE: Final = VoteQuorumInfoFlag.QUORATE
VOTEQUORUM_INFO_WAIT_FOR_ALL: Final = VoteQuorumInfoFlag.WAIT_FOR_ALL
VOTEQUORUM_INFO_LAST_MAN_STANDING: Final = VoteQuorumInfoFlag.LAST_MAN_STANDING
VOTEQUORUM_INFO_AUTO_TIE_BREAKER: Final = VoteQuorumInfoFlag.AUTO_TIE_BREAKER
VOTEQUORUM_INFO_ALLOW_DOWNSCALE: Final = VoteQuorumInfoFlag.ALLOW_DOWNSCALE
VOTEQUORUM_INFO_QDEVICE_REGISTERED: Final = VoteQuorumInfoFlag.QDEVICE_REGISTERED
VOTEQUORUM_INFO_QDEVICE_ALIVE: Final = VoteQuorumInfoFlag.QDEVICE_ALIVE
VOTEQUORUM_INFO_QDEVICE_CAST_VOTE: Final = VoteQuorumInfoFlag.QDEVICE_CAST_VOTE
VOTEQUORUM_INFO_QDEVICE_MASTER_WINS: Final = VoteQuorumInfoFlag.QDEVICE_MASTER_WINS

VOTEQUORUM_NODESTATE_MEMBER: Final = NodeState.MEMBER
VOTEQUORUM_NODESTATE_DEAD: Final = NodeState.DEAD
VOTEQUORUM_NODESTATE_LEAVING: Final = NodeState.LEAVING

VOTEQUORUM_QDEVICE_NODEID: Final = 0

_U32_MASK: Final = 0xFFFFFFFF

# Node-info flags of the qdevice that getinfo mirrors into VOTEQUORUM_INFO_* flags.
_QDEVICE_INFO_FLAGS: Final = (
    (NodeFlag.QDEVICE_REGISTERED, VoteQuorumInfoFlag.QDEVICE_REGISTERED),
    (NodeFlag.QDEVICE_ALIVE, VoteQuorumInfoFlag.QDEVICE_ALIVE),
    (NodeFlag.QDEVICE_CAST_VOTE, VoteQuorumInfoFlag.QDEVICE_CAST_VOTE),
    (NodeFlag.QDEVICE_MASTER_WINS, VoteQuorumInfoFlag.QDEVICE_MASTER_WINS),
)


# ---------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class QuorumNotified:
    """Tell the quorum service (3.12-A.2/B) and votequorum trackers the quorate state.

    ``nodes`` is every known node entry as (nodeid, state), ascending nodeid, with the
    qdevice entry ``(0, 0)`` appended when our device is registered.
    """

    quorate: bool
    quorum: int
    nodes: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class ExpectedVotesNotified:
    """The votequorum expected-votes event (automatic raise or RECONFIGURE)."""

    expected_votes: int


@dataclass(frozen=True, slots=True)
class BarrierPersisted:
    """EVT: write ``value`` (native u32) to ``<state_dir>/ev_tracking`` and fsync it."""

    value: int


@dataclass(frozen=True, slots=True)
class NodeinfoBroadcastRequested:
    """votequorum wants ``info`` multicast (in agreed order) outside a sync."""

    info: NodeInfo


@dataclass(frozen=True, slots=True)
class Logged:
    """A log line for the VOTEQ subsystem (level: debug/info/notice/warning/crit)."""

    level: str
    message: str


@dataclass(frozen=True, slots=True)
class QdeviceBroadcastRequested:
    """votequorum wants a QDEVICE_REG (unregister) or QDEVICE_RECONFIGURE multicast.

    Emitted after the NODEINFO that precedes it, so the driver multicasts them in order.
    """

    payload: QdeviceReg | QdeviceRename


@dataclass(frozen=True, slots=True)
class SyncWaitEnded:
    """The sync wait for our quorum device is over (spec 4.7): it polled with the new
    ring, ``sync_timeout`` expired or it was unregistered.  ``info`` is our NODEINFO
    now; the engine multicasts it as this node's end of votequorum's sync step (in
    place of the NODEINFO Corosync would send for a flag change at that moment)."""

    info: NodeInfo


@dataclass(frozen=True, slots=True)
class ReconfigureRequested:
    """A configuration reload changed our votes or expected votes: multicast ``payload``
    (RECONFIGURE NODE_VOTES / EXPECTED_VOTES) after the NODEINFOs emitted before it."""

    payload: Reconfigure


VqEvent = (
    QuorumNotified | ExpectedVotesNotified | BarrierPersisted | NodeinfoBroadcastRequested
    | QdeviceBroadcastRequested | SyncWaitEnded | ReconfigureRequested | Logged
)


@dataclass(frozen=True, slots=True)
class VoteQuorumInfo:
    """The reply of ``votequorum_getinfo`` (spec 4.8)."""

    node_id: int
    node_state: int
    node_votes: int
    node_expected_votes: int
    highest_expected: int
    total_votes: int
    quorum: int
    flags: VoteQuorumInfoFlag
    qdevice_votes: int
    qdevice_name: str


# ---------------------------------------------------------------- helpers
@dataclass(slots=True)
class _Node:
    """One entry of the node table (``struct cluster_node``)."""

    node_id: int
    state: int
    votes: int
    expected_votes: int
    flags: int


_INT_PREFIX = re.compile(r"\s*[+-]?\d+")


def _strtol(text: str, pos: int) -> tuple[int, int]:
    """C ``strtol(text+pos, &end, 10)``: (value, end); (0, pos) when no number is there."""
    match = _INT_PREFIX.match(text, pos)
    if match is None:
        return 0, pos
    return int(match.group()), match.end()


def parse_atb_string(text: str) -> tuple[AtbMode, tuple[int, ...]]:
    """Parse ``auto_tie_breaker_node`` as Corosync's ``parse_atb_string`` does (spec 4.5.4).

    Returns (mode, list); mode NONE means the value is invalid (ATB gets disabled).
    """
    mode = AtbMode.NONE
    nodes: list[int] = []
    if text == "lowest":
        mode = AtbMode.LOWEST
    if text == "highest":
        mode = AtbMode.HIGHEST
    if _strtol(text, 0)[0] != 0:  # atoi(text) != 0
        pos = 0
        while True:
            num, pos = _strtol(text, pos)
            if num == 0:
                break
            nodes.append(num & _U32_MASK)
        if nodes:
            mode = AtbMode.LIST
    return mode, tuple(nodes)


def _has(flags: int, flag: NodeFlag) -> bool:
    return bool(flags & flag)


# ---------------------------------------------------------------- the state machine
class VoteQuorum:
    """votequorum for one node: node table, quorum arithmetic, features, sync hooks."""

    def __init__(
        self, config: ClusterConfig, node_id: int, ev_barrier: int | None, now_ms: int
    ) -> None:
        """Start up as ``votequorum_exec_init_fn`` + ``votequorum_readconfig`` (spec 4.2).

        ``ev_barrier`` is the stored expected-votes-tracking barrier (the ``ev_tracking``
        file), or None when the file does not exist; with EVT on, None makes us emit
        ``BarrierPersisted(0)`` so the driver creates the file.  It is ignored without EVT.
        The fatal combinations of 4.2 are expected to be rejected by the configuration
        layer; here they get Corosync's runtime fallback and a ``crit`` log line.
        """
        self._events: deque[VqEvent] = deque()
        self._now_ms = now_ms
        self._node_id = node_id
        self._us = _Node(node_id, NodeState.MEMBER, 1, 0, NodeFlag.FIRST)
        self._nodes: dict[int, _Node] = {node_id: self._us}
        self._qdevice = _Node(VOTEQUORUM_QDEVICE_NODEID, 0, 0, 0, 0)
        self._qdevice_name = ""
        self._qdevice_can_operate = True
        self._qdevice_master_wins = False
        self._qdevice_timeout_ms = 10000
        self._qdevice_sync_timeout_ms = 30000
        self._qdevice_deadline_ms: int | None = None
        """The device timer (``qdevice_timer``): poll timeout, or sync_timeout in a sync."""
        self._qdevice_reg_pending = False
        """A registration is in flight (Corosync's ``qdevice_reg_conn != NULL``)."""
        self._sync_wait = False
        """``sync_wait_for_poll_or_timeout``: the sync waits for our device's poll."""

        self._quorum = 0
        self._cluster_is_quorate = False
        self._sync_in_progress = False
        self._quorum_members: tuple[int, ...] = ()
        self._previous_quorum_members: tuple[int, ...] = ()
        self._ring: RingId = NULL_RING
        self._lowest_node_id = -1
        self._highest_node_id = -1
        self._lms_deadline_ms: int | None = None

        # configuration-derived (set by _readconfig)
        self._two_node = False
        self._wait_for_all = False
        self._wait_for_all_status = False
        self._auto_tie_breaker = AtbMode.NONE
        self._atb_nodelist: tuple[int, ...] = ()
        self._last_man_standing = False
        self._last_man_standing_window_ms = 10000
        self._allow_downscale = False
        self._ev_tracking = False
        self._ev_tracking_barrier = 0
        self._ev_barrier = 0
        self._wait_for_all_configured = False
        """``quorum.wait_for_all`` was given explicitly (else it follows two_node)."""
        self._initial_atb = AtbMode.NONE
        self._initial_atb_nodelist: tuple[int, ...] = ()

        self._readconfig(config, ev_barrier)
        self._recalculate_quorum(allow_decrease=False, by_current_nodes=False)

    # ------------------------------------------------------------ read-only state
    @property
    def node_id(self) -> int:
        """Our node id."""
        return self._node_id

    @property
    def quorate(self) -> bool:
        """``cluster_is_quorate``."""
        return self._cluster_is_quorate

    @property
    def quorum(self) -> int:
        """The current quorum (votes needed)."""
        return self._quorum

    @property
    def expected_votes(self) -> int:
        """Our own expected votes (``us->expected_votes``)."""
        return self._us.expected_votes

    @property
    def total_votes(self) -> int:
        """Votes of MEMBER entries, plus the qdevice's when our device casts a vote."""
        return self._calculate_quorum(True, 0)[1]

    @property
    def votes(self) -> int:
        """Our own votes."""
        return self._us.votes

    @property
    def wait_for_all(self) -> bool:
        """wait_for_all as configured (or derived from two_node)."""
        return self._wait_for_all

    @property
    def wait_for_all_status(self) -> bool:
        """True while we wait for all votes (WFA gate armed)."""
        return self._wait_for_all_status

    @property
    def two_node(self) -> bool:
        """two_node as currently in effect."""
        return self._two_node

    @property
    def lms_enabled(self) -> bool:
        """last_man_standing currently enabled."""
        return self._last_man_standing

    @property
    def atb_mode(self) -> AtbMode:
        """The auto_tie_breaker mode in effect (NONE when disabled)."""
        return self._auto_tie_breaker

    @property
    def atb_nodes(self) -> tuple[int, ...]:
        """The tie-breaker list of LIST mode."""
        return self._atb_nodelist

    @property
    def allow_downscale(self) -> bool:
        """allow_downscale configured."""
        return self._allow_downscale

    @property
    def ev_tracking(self) -> bool:
        """expected_votes_tracking in effect (forced on by allow_downscale)."""
        return self._ev_tracking

    @property
    def ev_barrier(self) -> int:
        """Corosync's ``ev_barrier``: configured expected votes or the last setexpected."""
        return self._ev_barrier

    @property
    def ev_tracking_barrier(self) -> int:
        """The persisted EVT barrier (highest expected votes ever seen, with EVT)."""
        return self._ev_tracking_barrier

    @property
    def lowest_node_id(self) -> int:
        """Lowest member id of the last vote-quorate view (-1 before any)."""
        return self._lowest_node_id

    @property
    def highest_node_id(self) -> int:
        """Highest member id of the last vote-quorate view (-1 before any)."""
        return self._highest_node_id

    @property
    def qdevice_votes(self) -> int:
        """The quorum device's votes (0 without a device)."""
        return self._qdevice.votes

    @property
    def qdevice_name(self) -> str:
        """The cluster-wide recorded qdevice name ("" if none)."""
        return self._qdevice_name

    @property
    def qdevice_registered(self) -> bool:
        """Our quorum device is registered (QDEVICE_REGISTERED on ``us``)."""
        return _has(self._us.flags, NodeFlag.QDEVICE_REGISTERED)

    @property
    def qdevice_can_operate(self) -> bool:
        """False when the configuration disabled the quorum device (spec 4.2)."""
        return self._qdevice_can_operate

    @property
    def master_wins(self) -> bool:
        """master_wins as last set through ``qdevice_master_wins``."""
        return self._qdevice_master_wins

    @property
    def sync_waiting(self) -> bool:
        """The current sync waits for our device to poll with the new ring (spec 4.7)."""
        return self._sync_wait

    @property
    def ring(self) -> RingId:
        """The ring id recorded at the last ``sync_init``."""
        return self._ring

    @property
    def members(self) -> tuple[int, ...]:
        """The member list recorded at the last ``sync_init``."""
        return self._quorum_members

    @property
    def sync_in_progress(self) -> bool:
        """True between ``sync_init`` and ``sync_activate``."""
        return self._sync_in_progress

    def nodes(self) -> tuple[tuple[int, int], ...]:
        """(nodeid, state) of every known entry, ascending; qdevice (0, 0) last if registered."""
        entries = tuple((nid, int(self._nodes[nid].state)) for nid in sorted(self._nodes))
        if _has(self._us.flags, NodeFlag.QDEVICE_REGISTERED):
            entries += ((VOTEQUORUM_QDEVICE_NODEID, int(self._qdevice.state)),)
        return entries

    def runtime_keys(self) -> dict[str, int]:
        """The ``runtime.votequorum.*`` keys of spec 4.11 (without the prefix).

        ``lowest_node_id``/``highest_node_id`` appear once computed (as in Corosync);
        ``ev_tracking_barrier`` only with EVT.
        """
        keys = {
            "this_node_id": self._node_id,
            "atb_type": int(self._auto_tie_breaker),
            "wait_for_all_status": int(self._wait_for_all_status),
            "two_node": int(self._two_node),
            "ev_barrier": self._ev_barrier,
            "qdevice_can_operate": int(self._qdevice_can_operate),
            "qdevice_master_wins": int(self._qdevice_master_wins),
        }
        if self._lowest_node_id >= 0:
            keys["lowest_node_id"] = self._lowest_node_id
        if self._highest_node_id >= 0:
            keys["highest_node_id"] = self._highest_node_id
        if self._ev_tracking:
            keys["ev_tracking_barrier"] = self._ev_tracking_barrier
        return keys

    # ------------------------------------------------------------ messages we send
    def local_nodeinfo(self) -> NodeInfo:
        """Our NODEINFO: votes, expected votes and flags (QUORATE, WFASTATUS, FIRST, ...)."""
        us = self._us
        return NodeInfo(us.node_id, us.votes, us.expected_votes, us.flags)

    def qdevice_nodeinfo(self) -> NodeInfo:
        """The NODEINFO for the qdevice pseudo-node: (0, votes, 0, 0)."""
        q = self._qdevice
        return NodeInfo(VOTEQUORUM_QDEVICE_NODEID, q.votes, q.expected_votes, q.flags)

    def leaving_nodeinfo(self) -> NodeInfo | None:
        """With allow_downscale, the NODEINFO to send on clean exit (LEAVING set); else None."""
        if not self._allow_downscale:
            return None
        us = self._us
        return NodeInfo(us.node_id, us.votes, us.expected_votes, us.flags | NodeFlag.LEAVING)

    # ------------------------------------------------------------ events and timers
    def next_event(self) -> VqEvent | None:
        """Pop the oldest pending event, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> int | None:
        """The earliest deadline (ms) of our timers (LMS window, quorum device), or None."""
        deadlines = [t for t in (self._lms_deadline_ms, self._qdevice_deadline_ms)
                     if t is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now_ms: int) -> None:
        """Run every timer whose deadline is <= ``now_ms``."""
        self._now_ms = now_ms
        if self._lms_deadline_ms is not None and self._lms_deadline_ms <= now_ms:
            self._last_man_standing_timer_fn()
        if self._qdevice_deadline_ms is not None and self._qdevice_deadline_ms <= now_ms:
            self._qdevice_timer_fn()

    def _last_man_standing_timer_fn(self) -> None:
        """LMS window expired: if quorate, let expected votes follow the current members."""
        self._lms_deadline_ms = None
        if self._cluster_is_quorate:
            self._recalculate_quorum(allow_decrease=True, by_current_nodes=True)

    # ------------------------------------------------------------ sync (spec 4.7)
    def sync_init(
        self, transitional: Sequence[int], members: Sequence[int], ring: RingId, now_ms: int
    ) -> None:
        """A new ring: clear FIRST, mark departed nodes DEAD, evaluate the LMS timer.

        ``transitional`` is accepted for symmetry with Corosync's sync API; votequorum
        does not use it.
        """
        del transitional
        self._now_ms = now_ms
        self._sync_in_progress = True
        new_members = tuple(members)
        if len(new_members) > 1:
            self._us.flags &= ~NodeFlag.FIRST

        left_nodes = False
        for nodeid in self._quorum_members:
            if nodeid not in new_members:
                left_nodes = True
                node = self._find_node(nodeid)
                if node is not None:
                    node.state = NodeState.DEAD

        if self._last_man_standing and (
            (len(new_members) >= self._quorum and left_nodes)
            or (
                len(new_members) <= self._quorum
                and self._auto_tie_breaker != AtbMode.NONE
                and self._check_low_node_id_partition()
            )
        ):
            self._lms_deadline_ms = now_ms + self._last_man_standing_window_ms

        self._previous_quorum_members = self._quorum_members
        self._quorum_members = new_members
        self._ring = ring

        # wait for the device to poll with the new ring (or sync_timeout); this
        # replaces the poll timer, as Corosync's sync_init does
        self._sync_wait = False
        if _has(self._us.flags, NodeFlag.QDEVICE_REGISTERED) and _has(
            self._us.flags, NodeFlag.QDEVICE_ALIVE
        ):
            self._qdevice_deadline_ms = now_ms + self._qdevice_sync_timeout_ms
            self._sync_wait = True
            self._log(
                "info",
                f"waiting for quorum device {self._qdevice_name} poll (but maximum for "
                f"{self._qdevice_sync_timeout_ms} ms)",
            )

    def sync_activate(self, now_ms: int) -> None:
        """End of sync: ``recalc(0, 0)``, always notify, leave the sync state."""
        self._now_ms = now_ms
        self._recalculate_quorum(allow_decrease=False, by_current_nodes=False)
        self._notify_quorum()
        self._sync_in_progress = False

    # ------------------------------------------------------------ ordered messages
    def deliver_nodeinfo(self, info: NodeInfo, now_ms: int, *, sender: int | None = None) -> None:
        """A NODEINFO delivered in agreed order (spec 4.6).

        ``sender`` is the node that multicast the message.  It matters only for the
        qdevice entry (nodeid 0): when we are inquorate and the sender is QUORATE its
        value is taken as is, otherwise the larger of ours and the message's.  Without a
        sender (or an unknown one) the larger value is taken.
        """
        self._now_ms = now_ms
        nodeid = info.nodeid
        node = self._find_node(nodeid)
        new_node = node is None
        if node is None:
            node = _Node(nodeid, NodeState.DEAD, 0, 0, 0)
            self._nodes[nodeid] = node
        old = (node.votes, node.expected_votes, node.flags, node.state)
        allow_decrease = False
        by_node = False

        if nodeid == VOTEQUORUM_QDEVICE_NODEID:
            sender_node = self._find_node(sender) if sender is not None else None
            if (
                not self._cluster_is_quorate
                and sender_node is not None
                and _has(sender_node.flags, NodeFlag.QUORATE)
            ):
                node.votes = info.votes
            else:
                node.votes = max(node.votes, info.votes)
        else:
            node.flags = info.flags
            node.votes = info.votes
            node.state = NodeState.MEMBER
            if _has(node.flags, NodeFlag.LEAVING):
                if node is not self._us:
                    node.state = NodeState.LEAVING
                allow_decrease = True
                by_node = True

            if not self._cluster_is_quorate and _has(node.flags, NodeFlag.QUORATE):
                allow_decrease = True
                self._us.expected_votes = info.expected_votes

            if _has(node.flags, NodeFlag.QUORATE) or self._ev_tracking:
                node.expected_votes = info.expected_votes
            else:
                node.expected_votes = self._us.expected_votes

            if self._last_man_standing and node.votes > 1:
                self._log(
                    "warning",
                    "Last Man Standing feature is supported only when all cluster nodes "
                    "votes are set to 1. Disabling LMS.",
                )
                self._last_man_standing = False
                self._lms_deadline_ms = None

        if (
            new_node
            or nodeid == self._node_id
            or _has(node.flags, NodeFlag.FIRST)
            or old != (node.votes, node.expected_votes, node.flags, node.state)
        ):
            self._recalculate_quorum(allow_decrease, by_node)

        if (
            self._wait_for_all
            and not _has(node.flags, NodeFlag.WFASTATUS)
            and _has(node.flags, NodeFlag.QUORATE)
        ):
            self._update_wait_for_all_status(False)

    def reload(self, config: ClusterConfig, now_ms: int) -> None:
        """A configuration reload (spec 4.10, Corosync's ``votequorum_refresh_config``).

        Re-reads the keys of 4.1 marked "yes" with the startup rules of 4.2, where a
        fatal combination gets its runtime fallback instead; two_node and expected
        votes start from their defaults, auto_tie_breaker from its startup mode, and
        wait_for_all follows two_node unless it was configured explicitly (Corosync
        PR #521).  wait_for_all_status is not re-armed (PR #542).  Then our NODEINFO
        and the qdevice's are multicast, plus RECONFIGURE NODE_VOTES / EXPECTED_VOTES
        for what changed.  setexpected's safety check is not applied: a reload can
        make the cluster inquorate.
        """
        self._now_ms = now_ms
        old_votes, old_expected = self._us.votes, self._us.expected_votes
        if not self._readconfig(config, None, runtime=True):
            return
        self._emit(NodeinfoBroadcastRequested(self.local_nodeinfo()))
        self._emit(NodeinfoBroadcastRequested(self.qdevice_nodeinfo()))
        if self._us.votes != old_votes:
            self._emit(ReconfigureRequested(Reconfigure(
                self._node_id, self._us.votes, ReconfigureParam.NODE_VOTES)))
        if self._us.expected_votes != old_expected:
            self._emit(ReconfigureRequested(Reconfigure(
                self._node_id, self._us.expected_votes, ReconfigureParam.EXPECTED_VOTES)))

    def deliver_reconfigure(self, msg: Reconfigure, now_ms: int) -> None:
        """A RECONFIGURE delivered in agreed order: EXPECTED_VOTES, NODE_VOTES, CANCEL_WFA."""
        self._now_ms = now_ms
        if msg.param == ReconfigureParam.EXPECTED_VOTES:
            self._update_node_expected_votes(msg.value)
            self._emit(ExpectedVotesNotified(self._us.expected_votes))
            self._ev_barrier = msg.value
            if self._ev_tracking:
                self._us.expected_votes = max(self._us.expected_votes, self._ev_tracking_barrier)
            self._recalculate_quorum(allow_decrease=True, by_current_nodes=False)
        elif msg.param == ReconfigureParam.NODE_VOTES:
            node = self._find_node(msg.nodeid)
            if node is None:
                return
            node.votes = msg.value
            self._recalculate_quorum(allow_decrease=True, by_current_nodes=False)
        elif msg.param == ReconfigureParam.CANCEL_WFA:
            self._update_wait_for_all_status(False)
            self._log("info", f"wait_for_all_status reset by user on node {msg.nodeid}.")
            self._recalculate_quorum(allow_decrease=False, by_current_nodes=False)
        else:
            self._log("warning", f"Unknown RECONFIGURE parameter {msg.param} ignored")

    def deliver_qdevice_reg(
        self, msg: QdeviceReg, now_ms: int, *, origin: int, own_request: bool
    ) -> CsErr | None:
        """A QDEVICE_REG delivered in agreed order (``origin`` multicast it).

        REGISTER from another node only records the name when none is recorded.
        ``own_request`` marks the message our pending ``qdevice_register`` sent: the
        name is adopted if none is recorded; if it matches the recorded name we get
        QDEVICE_REGISTERED and multicast NODEINFO for the qdevice and for us, and the
        answer is CS_OK, else CS_ERR_EXIST (another node's device registered first).
        Our own REGISTER that is not that request (the re-send of a sync) changes
        nothing.  UNREGISTER wipes the recorded name unless some MEMBER entry still has
        QDEVICE_REGISTERED.  Returns the answer for the pending registration, else None.
        """
        self._now_ms = now_ms
        self._log("debug", f"Received qdevice op {msg.operation} req from node {origin} "
                           f"[{msg.name}]")
        if msg.operation == QdeviceOperation.REGISTER:
            if not own_request:
                if origin != self._node_id and not self._qdevice_name:
                    self._log("debug", "Remote qdevice name recorded")
                    self._qdevice_name = msg.name
                return None
            self._qdevice_reg_pending = False
            if not self._qdevice_name:
                self._qdevice_name = msg.name
            if msg.name != self._qdevice_name:
                self._log(
                    "warning",
                    f"A new qdevice with different name (new: {msg.name} old: "
                    f"{self._qdevice_name}) is trying to register!",
                )
                return CsErr.CS_ERR_EXIST
            self._us.flags |= NodeFlag.QDEVICE_REGISTERED
            self._emit(NodeinfoBroadcastRequested(self.qdevice_nodeinfo()))
            self._emit(NodeinfoBroadcastRequested(self.local_nodeinfo()))
            return CsErr.CS_OK
        if msg.operation == QdeviceOperation.UNREGISTER and not any(
            _has(n.flags, NodeFlag.QDEVICE_REGISTERED) for n in self._members()
        ):
            self._qdevice_name = ""
        return None

    def deliver_qdevice_rename(self, msg: QdeviceRename, now_ms: int) -> None:
        """A QDEVICE_RECONFIGURE: rename the recorded device if its name is ``oldname``."""
        self._now_ms = now_ms
        self._log("debug", f"Received qdevice name change req [from: {msg.oldname} to: "
                           f"{msg.newname}]")
        if msg.oldname == self._qdevice_name:
            self._log("debug", "Allowing qdevice rename")
            self._qdevice_name = msg.newname

    # ------------------------------------------------------------ quorum device (spec 4.9)
    def qdevice_register(self, name: str) -> CsErr | None:
        """``votequorum_qdevice_register``: an error, CS_OK, or None (deferred).

        None means a registration is now in flight: the caller multicasts
        ``QdeviceReg(REGISTER, name)`` and answers with what ``deliver_qdevice_reg``
        returns when that message comes back in agreed order.
        """
        if not self._qdevice_can_operate:
            self._log("info", "Registration of quorum device is disabled by incorrect "
                              "corosync.conf. See logs for more information")
            return CsErr.CS_ERR_ACCESS
        if _has(self._us.flags, NodeFlag.QDEVICE_REGISTERED):
            if name == self._qdevice_name:
                return CsErr.CS_OK
            self._log(
                "warning",
                f"A new qdevice with different name (new: {name} old: {self._qdevice_name}) "
                "is trying to re-register!",
            )
            return CsErr.CS_ERR_EXIST
        if self._qdevice_reg_pending:
            self._log("warning", "Registration request already in progress")
            return CsErr.CS_ERR_TRY_AGAIN
        self._qdevice_reg_pending = True
        return None

    def qdevice_poll(self, name: str, cast_vote: int, ring: RingId, now_ms: int) -> CsErr:
        """``votequorum_qdevice_poll``: checks in the order disabled (ACCESS), not
        registered (NOT_EXIST), ring id other than the last sync's (MESSAGE_ERROR, the
        poll is ignored), name mismatch (INVALID_PARAM).  Then ALIVE is set, CAST_VOTE
        set or cleared, NODEINFO multicast if our flags changed, the device timer
        re-armed for ``quorum.device.timeout`` and a sync wait released."""
        self._now_ms = now_ms
        if not self._qdevice_can_operate:
            return CsErr.CS_ERR_ACCESS
        if not _has(self._us.flags, NodeFlag.QDEVICE_REGISTERED):
            return CsErr.CS_ERR_NOT_EXIST
        if ring != self._ring:
            self._log("debug", f"Received poll ring id ({ring}) != last sync ring id "
                               f"({self._ring}). Ignoring poll call.")
            return CsErr.CS_ERR_MESSAGE_ERROR
        if name != self._qdevice_name:
            return CsErr.CS_ERR_INVALID_PARAM
        old_flags = self._us.flags
        self._us.flags |= NodeFlag.QDEVICE_ALIVE
        if cast_vote:
            self._us.flags |= NodeFlag.QDEVICE_CAST_VOTE
        else:
            self._us.flags &= ~NodeFlag.QDEVICE_CAST_VOTE
        self._qdevice_deadline_ms = now_ms + self._qdevice_timeout_ms
        if self._sync_wait:
            self._end_sync_wait()
        elif self._us.flags != old_flags:
            self._emit(NodeinfoBroadcastRequested(self.local_nodeinfo()))
        return CsErr.CS_OK

    def qdevice_master_wins(self, name: str, allow: int) -> CsErr:
        """``votequorum_qdevice_master_wins``: disabled (ACCESS), not registered
        (NOT_EXIST), name mismatch (INVALID_PARAM); else set or clear MASTER_WINS
        (NODEINFO multicast if it changed) and the master_wins override of 4.4."""
        if not self._qdevice_can_operate:
            return CsErr.CS_ERR_ACCESS
        if not _has(self._us.flags, NodeFlag.QDEVICE_REGISTERED):
            return CsErr.CS_ERR_NOT_EXIST
        if name != self._qdevice_name:
            return CsErr.CS_ERR_INVALID_PARAM
        old_flags = self._us.flags
        if allow:
            self._us.flags |= NodeFlag.QDEVICE_MASTER_WINS
        else:
            self._us.flags &= ~NodeFlag.QDEVICE_MASTER_WINS
        if self._us.flags != old_flags:
            self._emit(NodeinfoBroadcastRequested(self.local_nodeinfo()))
        self._qdevice_master_wins = bool(allow)
        return CsErr.CS_OK

    def qdevice_unregister(self, name: str) -> CsErr:
        """``votequorum_qdevice_unregister``: not registered (NOT_EXIST), name mismatch
        (INVALID_PARAM); else stop the device timer (releasing a sync wait), clear
        REGISTERED, ALIVE, CAST_VOTE and MASTER_WINS, multicast our NODEINFO, then the
        unregister message.  Needs no ``qdevice_can_operate``, as in Corosync."""
        if not _has(self._us.flags, NodeFlag.QDEVICE_REGISTERED):
            return CsErr.CS_ERR_NOT_EXIST
        if name != self._qdevice_name:
            return CsErr.CS_ERR_INVALID_PARAM
        self._qdevice_deadline_ms = None
        self._us.flags &= ~(
            NodeFlag.QDEVICE_REGISTERED | NodeFlag.QDEVICE_ALIVE | NodeFlag.QDEVICE_CAST_VOTE
            | NodeFlag.QDEVICE_MASTER_WINS
        )
        if self._sync_wait:
            self._end_sync_wait()
        else:
            self._emit(NodeinfoBroadcastRequested(self.local_nodeinfo()))
        self._emit(QdeviceBroadcastRequested(QdeviceReg(QdeviceOperation.UNREGISTER, name)))
        return CsErr.CS_OK

    def qdevice_update(self, old_name: str, new_name: str) -> CsErr:
        """``votequorum_qdevice_update``: not registered (NOT_EXIST), ``old_name`` not
        the recorded name (INVALID_PARAM); else multicast the rename."""
        if not _has(self._us.flags, NodeFlag.QDEVICE_REGISTERED):
            return CsErr.CS_ERR_NOT_EXIST
        if old_name != self._qdevice_name:
            return CsErr.CS_ERR_INVALID_PARAM
        self._emit(QdeviceBroadcastRequested(QdeviceRename(old_name, new_name)))
        return CsErr.CS_OK

    def _qdevice_timer_fn(self) -> None:
        """The device did not poll in time: withdraw its vote, stay registered."""
        self._qdevice_deadline_ms = None
        if not _has(self._us.flags, NodeFlag.QDEVICE_ALIVE):
            # Corosync returns here; a sync wait cannot outlive its timer in pyquorum
            if self._sync_wait:
                self._end_sync_wait()
            return
        self._us.flags &= ~(NodeFlag.QDEVICE_ALIVE | NodeFlag.QDEVICE_CAST_VOTE)
        self._log("info", f"lost contact with quorum device {self._qdevice_name}")
        if self._sync_wait:
            self._end_sync_wait()
        else:
            self._emit(NodeinfoBroadcastRequested(self.local_nodeinfo()))

    def _end_sync_wait(self) -> None:
        self._sync_wait = False
        self._emit(SyncWaitEnded(self.local_nodeinfo()))

    # ------------------------------------------------------------ client requests
    def check_setexpected(self, expected: int) -> CsErr:
        """Validate ``votequorum_setexpected`` (spec 4.8); no state changes.

        ``q = calc(allow_decrease=1, expected)`` without downscale; refused with
        INVALID_PARAM if ``expected`` < total votes, or if we are quorate and ``q`` >
        total votes.  On CS_OK the engine multicasts RECONFIGURE EXPECTED_VOTES.
        """
        newquorum, total_votes = self._calculate_quorum(True, expected, allow_downscale=False)
        if expected < total_votes or (self._cluster_is_quorate and newquorum > total_votes):
            return CsErr.CS_ERR_INVALID_PARAM
        return CsErr.CS_OK

    def check_setvotes(self, nodeid: int, votes: int) -> CsErr:
        """Validate ``votequorum_setvotes`` (spec 4.8); no state change is left behind.

        Unknown node: NAME_NOT_FOUND (nodeid 0 is the qdevice entry).  The value is
        applied tentatively and ``q = calc(1, 0)`` checked: ``q < total/2`` or ``q > total``
        gives INVALID_PARAM.  On CS_OK the engine multicasts RECONFIGURE NODE_VOTES.
        """
        node = self._find_node(nodeid)
        if node is None:
            return CsErr.CS_ERR_NAME_NOT_FOUND
        saved_votes = node.votes
        node.votes = votes
        try:
            newquorum, total_votes = self._calculate_quorum(True, 0)
        finally:
            node.votes = saved_votes
        if newquorum < total_votes // 2 or newquorum > total_votes:
            return CsErr.CS_ERR_INVALID_PARAM
        return CsErr.CS_OK

    def getinfo(self, nodeid: int) -> VoteQuorumInfo:
        """``votequorum_getinfo``: nodeid 0 is us; unknown ids raise CsError(NOT_EXIST)."""
        if nodeid == VOTEQUORUM_QDEVICE_NODEID:
            nodeid = self._node_id
        node = self._nodes.get(nodeid)
        if node is None:
            raise CsError(CsErr.CS_ERR_NOT_EXIST)
        highest_expected = 0
        total_votes = 0
        for entry in self._members():
            highest_expected = max(highest_expected, entry.expected_votes)
            total_votes += entry.votes
        if _has(node.flags, NodeFlag.QDEVICE_CAST_VOTE):
            total_votes += self._qdevice.votes

        flags = VoteQuorumInfoFlag(0)
        if self._two_node:
            flags |= VoteQuorumInfoFlag.TWONODE
        if self._cluster_is_quorate:
            flags |= VoteQuorumInfoFlag.QUORATE
        if self._wait_for_all:
            flags |= VoteQuorumInfoFlag.WAIT_FOR_ALL
        if self._last_man_standing:
            flags |= VoteQuorumInfoFlag.LAST_MAN_STANDING
        if self._auto_tie_breaker != AtbMode.NONE:
            flags |= VoteQuorumInfoFlag.AUTO_TIE_BREAKER
        if self._allow_downscale:
            flags |= VoteQuorumInfoFlag.ALLOW_DOWNSCALE
        for node_flag, info_flag in _QDEVICE_INFO_FLAGS:
            if _has(node.flags, node_flag):
                flags |= info_flag

        return VoteQuorumInfo(
            node_id=node.node_id,
            node_state=int(node.state),
            node_votes=node.votes,
            node_expected_votes=node.expected_votes,
            highest_expected=highest_expected,
            total_votes=total_votes,
            quorum=self._quorum,
            flags=flags,
            qdevice_votes=self._qdevice.votes,
            qdevice_name=self._qdevice_name,
        )

    # ------------------------------------------------------------ startup (spec 4.2)
    def _readconfig(self, config: ClusterConfig, stored_barrier: int | None, *,
                    runtime: bool = False) -> bool:
        """``votequorum_readconfig``, then the "Then:" settings of 4.2.

        Startup mode reads every key; runtime mode (a reload) only those 4.1 marks as
        read at runtime, and a fatal combination gets its runtime fallback.  Returns
        False when a runtime re-read keeps the current data (4.2 #1).
        """
        qc = config.quorum
        if runtime:
            self._two_node = False
            self._auto_tie_breaker = self._initial_atb
            self._atb_nodelist = self._initial_atb_nodelist
        local = config.node(self._node_id)
        have_nodelist = local is not None
        node_count = len(config.nodes) if have_nodelist else 0
        node_expected_votes = sum(n.quorum_votes for n in config.nodes) if have_nodelist else 0
        node_votes = local.quorum_votes if local is not None else 0
        expected_votes = qc.expected_votes
        device = qc.device if qc.device is not None and qc.device.model else None
        have_qdevice = device is not None
        qdevice_votes = device.votes if device is not None else None
        self._two_node = qc.two_node

        if not have_nodelist and not expected_votes:  # 4.2 #1
            self._crit("configuration error: nodelist or quorum.expected_votes must be configured!")
            if runtime:
                self._crit("will continue with current runtime data")
                return False

        if have_qdevice:  # votequorum_qdevice_is_configured re-enables the device
            self._qdevice_can_operate = True

        if self._two_node and have_qdevice:  # 4.2 #2
            self._crit(
                "configuration error: two_node and quorum device cannot be configured "
                "at the same time!"
            )
            if runtime and _has(self._us.flags, NodeFlag.QDEVICE_REGISTERED):
                self._crit("quorum device is registered, disabling two_node")
                self._two_node = False
            else:
                if runtime:
                    self._crit("quorum device is not registered, allowing two_node")
                self._qdevice_can_operate = False

        # 4.2 #3: wait_for_all follows two_node unless set explicitly (also on reload)
        if runtime:
            if not self._wait_for_all_configured:
                self._wait_for_all = self._two_node
        else:
            self._wait_for_all_configured = qc.wait_for_all is not None
            self._wait_for_all = qc.two_node if qc.wait_for_all is None else qc.wait_for_all
            self._allow_downscale = qc.allow_downscale
            self._last_man_standing = qc.last_man_standing
            self._last_man_standing_window_ms = qc.last_man_standing_window_ms
            self._ev_tracking = qc.expected_votes_tracking
            self._readconfig_features(qc, stored_barrier)

        if self._two_node and self._auto_tie_breaker != AtbMode.NONE:  # 4.2 #7
            self._crit("two_node and auto_tie_breaker are both specified but are not compatible.")
            self._crit("two_node has been disabled, please fix your corosync.conf")
            self._two_node = False

        # 4.2 #8 (with LMS this is fatal; the fallback here is the non-LMS one)
        if (
            self._auto_tie_breaker != AtbMode.NONE
            and node_expected_votes % 2
            and not self._wait_for_all
        ):
            if runtime and self._last_man_standing:
                self._crit("configuration error: auto_tie_breaker & last_man_standing not "
                           "available in odd sized cluster; the reload is not applied")
                return False
            self._crit("auto_tie_breaker is set and the cluster has an odd number of nodes.")
            self._crit("wait_for_all needs to be set for this configuration but it is missing")
            self._crit(
                "Therefore auto_tie_breaker has been disabled. Please fix your corosync.conf"
            )
            self._auto_tie_breaker = AtbMode.NONE

        # 4.2 #9-#12: fatal at startup; runtime fallback disables the device
        if have_qdevice:
            problems: list[str] = []
            if self._last_man_standing:
                problems.append("quorum.device is not compatible with last_man_standing")
            if self._auto_tie_breaker != AtbMode.NONE:
                problems.append("quorum.device is not compatible with auto_tie_breaker")
            if self._allow_downscale:
                problems.append("quorum.device is not compatible with allow_downscale")
            if expected_votes and qdevice_votes is None:
                problems.append(
                    "quorum.device.votes must be specified when quorum.expected_votes is set"
                )
            if qdevice_votes is None and have_nodelist and node_count != node_expected_votes:
                problems.append("quorum.device.votes must be specified when not all nodes votes 1")
            if qdevice_votes and expected_votes and expected_votes - qdevice_votes < 2:
                problems.append("quorum.device.votes is too high or expected_votes is too low")
            for problem in problems:
                self._crit(f"configuration error: {problem}")
            if problems:
                self._crit("disabling quorum device operations")
                self._qdevice_can_operate = False

        # 4.2 #13: automatic qdevice votes
        if (
            have_qdevice
            and qdevice_votes is None
            and not expected_votes
            and have_nodelist
            and node_count == node_expected_votes
        ):
            qdevice_votes = node_expected_votes - 1
            node_expected_votes += qdevice_votes

        if self._ev_tracking:  # 4.2 #14: the stored barrier replaces expected_votes
            expected_votes = self._ev_tracking_barrier

        # "Then:"
        if have_nodelist:
            self._us.votes = node_votes
            self._us.expected_votes = node_expected_votes
        else:
            self._us.votes = qc.votes
        if expected_votes:
            self._us.expected_votes = expected_votes
        if not have_qdevice:
            self._qdevice.votes = 0
        if qdevice_votes is not None:  # unset and not derived: a reload keeps the old value
            self._qdevice.votes = qdevice_votes
        if device is not None:
            self._qdevice_timeout_ms = device.timeout_ms
            self._qdevice_sync_timeout_ms = device.sync_timeout_ms
        self._ev_barrier = self._us.expected_votes
        if self._wait_for_all and not runtime:  # startup only (Corosync PR #542)
            self._update_wait_for_all_status(True)
        return True

    def _readconfig_features(self, qc: QuorumConfig, stored_barrier: int | None) -> None:
        """The startup-only part of 4.2: #4 (ATB mode), #5 and #6 (EVT barrier)."""
        if qc.auto_tie_breaker:  # 4.2 #4: auto_tie_breaker mode
            self._auto_tie_breaker, self._atb_nodelist = parse_atb_string(qc.auto_tie_breaker_node)
            if self._auto_tie_breaker == AtbMode.NONE:
                self._log(
                    "warning",
                    "auto_tie_breaker_nodes is not valid. It must be 'lowest', 'highest' or "
                    "a space-separated list of node IDs. auto_tie_breaker is disabled",
                )
        elif qc.auto_tie_breaker_node != "lowest":
            self._log(
                "warning", "auto_tie_breaker_node: is meaningless if auto_tie_breaker is set to 0"
            )

        if self._allow_downscale:  # 4.2 #5
            self._ev_tracking = True

        if self._ev_tracking:  # 4.2 #6: the driver loaded (or must create) the file
            if stored_barrier is None:
                self._update_ev_tracking_barrier(0)
            else:
                self._ev_tracking_barrier = stored_barrier
        self._initial_atb, self._initial_atb_nodelist = self._auto_tie_breaker, self._atb_nodelist

    # ------------------------------------------------------------ arithmetic (spec 4.4)
    def _get_total_votes(self) -> tuple[int, int]:
        """(potential_total, member_count): MEMBER votes/count, plus the qdevice if it has votes."""
        total_votes = 0
        cluster_members = 0
        for node in self._members():
            total_votes += node.votes
            cluster_members += 1
        if self._qdevice.votes:
            total_votes += self._qdevice.votes
            cluster_members += 1
        return total_votes, cluster_members

    def _recalculate_quorum(self, allow_decrease: bool, by_current_nodes: bool) -> None:
        """``recalc``: raise expected votes, persist the EVT barrier, compute quorum, decide."""
        total_votes, cluster_members = self._get_total_votes()
        if not by_current_nodes:
            cluster_members = 0

        if total_votes > self._us.expected_votes:  # expected votes only rise automatically
            self._us.expected_votes = total_votes
            self._emit(ExpectedVotesNotified(self._us.expected_votes))

        if self._ev_tracking and self._us.expected_votes > self._ev_tracking_barrier:
            self._update_ev_tracking_barrier(self._us.expected_votes)

        self._quorum, total_votes = self._calculate_quorum(allow_decrease, cluster_members)
        self._update_node_expected_votes(cluster_members)
        self._are_we_quorate(total_votes)

    def _calculate_quorum(
        self, allow_decrease: bool, max_expected: int, *, allow_downscale: bool | None = None
    ) -> tuple[int, int]:
        """``calculate_quorum`` (pure): return (new quorum, total_votes).

        ``allow_downscale`` overrides the configured value (setexpected validates without it).
        """
        downscale = self._allow_downscale if allow_downscale is None else allow_downscale
        if downscale and allow_decrease and max_expected:
            max_expected = max(self._ev_barrier, max_expected)

        highest_expected = 0
        total_votes = 0
        total_nodes = 0
        for node in self._members():
            highest_expected = max(highest_expected, node.expected_votes)
            total_votes += node.votes
            total_nodes += 1
        if _has(self._us.flags, NodeFlag.QDEVICE_CAST_VOTE):
            total_votes += self._qdevice.votes
            total_nodes += 1

        if max_expected > 0:
            highest_expected = max_expected

        newquorum = max(highest_expected // 2 + 1, total_votes // 2 + 1)
        if not allow_decrease:  # quorum never goes down on its own
            newquorum = max(self._quorum, newquorum)
        if self._two_node and total_nodes <= 2:  # applied after the no-decrease clamp
            newquorum = 1
        return newquorum, total_votes

    def _update_node_expected_votes(self, new_expected_votes: int) -> None:
        """Set ``expected_votes`` on every MEMBER entry (including us), if nonzero."""
        if new_expected_votes:
            for node in self._members():
                node.expected_votes = new_expected_votes

    def _are_we_quorate(self, total_votes: int) -> None:
        """``are_we_quorate``: WFA gate, votes, ATB, master_wins, flags, WFA re-arm, notify."""
        if self._wait_for_all and self._wait_for_all_status:
            if total_votes != self._us.expected_votes:
                self._log(
                    "notice",
                    "Waiting for all cluster members. Current votes: "
                    f"{total_votes} expected_votes: {self._us.expected_votes}",
                )
                self._cluster_is_quorate = False
                return
            self._update_wait_for_all_status(False)

        quorate = self._quorum <= total_votes
        if quorate:
            self._get_lowest_node_id()
            self._get_highest_node_id()

        if (
            self._auto_tie_breaker != AtbMode.NONE
            # must be a half (or half-1) split
            and total_votes == self._us.expected_votes // 2
            # if the other partition might have quorum, ATB cannot be used
            and len(self._previous_quorum_members) - len(self._quorum_members) < self._quorum
            and self._check_auto_tie_breaker()
        ):
            quorate = True

        if self._qdevice_master_wins and not quorate and self._check_qdevice_master():
            self._log("debug", "node is quorate as part of master_wins partition")
            quorate = True

        quorum_change = quorate != self._cluster_is_quorate
        if quorum_change:
            self._log(
                "debug",
                "quorum regained, resuming activity"
                if quorate
                else "quorum lost, blocking activity",
            )
        self._cluster_is_quorate = quorate
        if quorate:
            self._us.flags |= NodeFlag.QUORATE
        else:
            self._us.flags &= ~NodeFlag.QUORATE

        if self._wait_for_all:  # WFA re-arms whenever we are inquorate
            self._update_wait_for_all_status(not quorate)

        if quorum_change and not self._sync_in_progress:
            self._notify_quorum()

    def _get_lowest_node_id(self) -> None:
        # ``us`` is always a MEMBER entry, so the list is never empty
        self._lowest_node_id = min(n.node_id for n in self._members())

    def _get_highest_node_id(self) -> None:
        self._highest_node_id = max(n.node_id for n in self._members())

    def _check_low_node_id_partition(self) -> bool:
        return any(n.node_id == self._lowest_node_id for n in self._members())

    def _check_high_node_id_partition(self) -> bool:
        return any(n.node_id == self._highest_node_id for n in self._members())

    def _check_auto_tie_breaker(self) -> bool:
        """The tie-breaker check of the ATB mode (spec 4.5.4)."""
        if self._auto_tie_breaker == AtbMode.LOWEST:
            return self._check_low_node_id_partition()
        if self._auto_tie_breaker == AtbMode.HIGHEST:
            return self._check_high_node_id_partition()
        # LIST: the first listed node present now wins, unless an earlier listed node
        # was in the previous membership (it may be in the other half).
        for i, nodeid in enumerate(self._atb_nodelist):
            if nodeid in self._quorum_members:
                return not any(
                    earlier in self._previous_quorum_members for earlier in self._atb_nodelist[:i]
                )
        return False

    def _check_qdevice_master(self) -> bool:
        wanted = NodeFlag.QDEVICE_MASTER_WINS | NodeFlag.QDEVICE_CAST_VOTE
        return any(n.flags & wanted == wanted for n in self._members())

    # ------------------------------------------------------------ small state updates
    def _update_wait_for_all_status(self, status: bool) -> None:
        self._wait_for_all_status = status
        if status:
            self._us.flags |= NodeFlag.WFASTATUS
        else:
            self._us.flags &= ~NodeFlag.WFASTATUS

    def _update_ev_tracking_barrier(self, value: int) -> None:
        self._ev_tracking_barrier = value
        self._emit(BarrierPersisted(value))

    def _notify_quorum(self) -> None:
        self._emit(QuorumNotified(self._cluster_is_quorate, self._quorum, self.nodes()))

    def _find_node(self, nodeid: int) -> _Node | None:
        if nodeid == VOTEQUORUM_QDEVICE_NODEID:
            return self._qdevice
        return self._nodes.get(nodeid)

    def _members(self) -> list[_Node]:
        """MEMBER entries of the table (us included), ascending nodeid."""
        table = self._nodes
        return [table[nid] for nid in sorted(table) if table[nid].state == NodeState.MEMBER]

    def _emit(self, event: VqEvent) -> None:
        self._events.append(event)

    def _log(self, level: str, message: str) -> None:
        self._emit(Logged(level, message))

    def _crit(self, message: str) -> None:
        self._log("crit", message)
