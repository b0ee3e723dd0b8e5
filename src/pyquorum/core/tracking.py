"""The quorum service: which events each client connection gets (spec 3.9-3.12).

Theory of operation
-------------------
The service keeps Corosync's tiny state: the quorate bit (``primary_designated``),
the last quorum view (ring id and members, set only by the provider), the ring and
members of the last sync that started, the member list of the last completed
activation (for joined/left), and per connection its model (V0/V1) and whether it
tracks.

    input                          effect
    -----------------------------  ------------------------------------------------
    sync_started(ring, members)    remember them (the snapshot's nodelist uses them)
    nodelist_activated(trans, ..)  V1 trackers get nodelist(ring, members, joined, left)
    quorum_changed(quorate, ..)    set the bit and view; every tracker gets quorum(...)
    trackstart(flags)              CURRENT|CHANGES: queue snapshot (V1: nodelist with
                                   empty joined/left, then quorum); tracking already on:
                                   EXIST (after the snapshot); CHANGES|CHANGES_ONLY:
                                   register; reply OK
    trackstop                      unregister; always OK (Corosync's bug, reproduced)

Without a provider the bit is always 1, the view stays ``{0,0}`` with no members,
nodelist events still flow, and no change-driven quorum event is ever sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pyquorum.errors import CsErr
from pyquorum.types import NULL_RING, RingId

CS_TRACK_CURRENT = 0x01
CS_TRACK_CHANGES = 0x02
CS_TRACK_CHANGES_ONLY = 0x04
QUORUM_MODEL_V0 = 0
QUORUM_MODEL_V1 = 1
QUORUM_FREE = 0
QUORUM_SET = 1


@dataclass(frozen=True, slots=True)
class QuorumNotification:
    """A quorum callback for one connection (V0 clients use ``ring.seq`` only)."""

    model: int
    quorate: bool
    ring: RingId
    members: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class NodelistNotification:
    """A V1 nodelist callback."""

    ring: RingId
    members: tuple[int, ...]
    joined: tuple[int, ...]
    left: tuple[int, ...]


QuorumServiceNotification = QuorumNotification | NodelistNotification


@dataclass(slots=True)
class _Conn:
    model: int = QUORUM_MODEL_V0
    tracking: bool = False
    flags: int = 0


@dataclass(slots=True)
class QuorumService:
    """Corosync's quorum service state (``vsf_quorum.c``) for one node."""

    provider: bool
    quorate: bool = field(init=False)
    view_ring: RingId = NULL_RING
    view_members: tuple[int, ...] = ()
    sync_ring: RingId = NULL_RING
    sync_members: tuple[int, ...] = ()
    activated_members: tuple[int, ...] = ()
    _conns: dict[int, _Conn] = field(default_factory=dict)
    _out: list[tuple[int, QuorumServiceNotification]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.quorate = not self.provider

    # ------------------------------------------------------------ cluster side
    def sync_started(self, ring: RingId, members: Sequence[int]) -> None:
        """A sync began for ``ring`` (the snapshot nodelist reports it from now on)."""
        self.sync_ring = ring
        self.sync_members = tuple(sorted(members))

    def nodelist_activated(self, transitional: Sequence[int]) -> None:
        """The service's sync step activated: send nodelist events with joined/left."""
        old = set(self.activated_members)
        trans = set(transitional)
        new = set(self.sync_members)
        left = (old - trans) | ((old & trans) - new)
        joined = (new - old) | (new & old & left)  # a quick restart is in both lists
        note = NodelistNotification(
            self.sync_ring, self.sync_members, tuple(sorted(joined)), tuple(sorted(left))
        )
        for conn, c in sorted(self._conns.items()):
            if c.tracking and c.model == QUORUM_MODEL_V1:
                self._out.append((conn, note))
        self.activated_members = self.sync_members

    def quorum_changed(self, quorate: bool, ring: RingId, members: Sequence[int]) -> None:
        """The provider reports quorum (every activation, and flips outside sync)."""
        if not self.provider:
            return
        self.quorate = quorate
        self.view_ring = ring
        self.view_members = tuple(sorted(members))
        for conn, c in sorted(self._conns.items()):
            if c.tracking:
                self._out.append((conn, self._quorum_note(c)))

    # ------------------------------------------------------------ client side
    def connect(self, conn: int) -> None:
        """A client connection was admitted (model V0 until MODEL_GETTYPE says otherwise)."""
        self._conns[conn] = _Conn()

    def disconnect(self, conn: int) -> None:
        """The connection closed: its tracking ends."""
        self._conns.pop(conn, None)

    def gettype(self, conn: int, model: int | None) -> int:
        """GETTYPE (model None) or MODEL_GETTYPE: record the model, return the quorum type."""
        c = self._conns.setdefault(conn, _Conn())
        if model is not None:
            c.model = model
        return QUORUM_SET if self.provider else QUORUM_FREE

    def trackstart(self, conn: int, flags: int) -> CsErr:
        """TRACKSTART with Corosync's exact order: snapshot, then EXIST, then register."""
        c = self._conns.setdefault(conn, _Conn())
        if flags & (CS_TRACK_CURRENT | CS_TRACK_CHANGES):
            if c.model == QUORUM_MODEL_V1:
                self._out.append((conn, NodelistNotification(
                    self.sync_ring, self.sync_members, (), ())))
            self._out.append((conn, self._quorum_note(c)))
        if c.tracking:
            return CsErr.CS_ERR_EXIST
        if flags & (CS_TRACK_CHANGES | CS_TRACK_CHANGES_ONLY):
            c.tracking = True
            c.flags = flags
        return CsErr.CS_OK

    def trackstop(self, conn: int) -> CsErr:
        """TRACKSTOP: always CS_OK, as in Corosync."""
        c = self._conns.get(conn)
        if c is not None:
            c.tracking = False
        return CsErr.CS_OK

    def take_notifications(self) -> list[tuple[int, QuorumServiceNotification]]:
        """Take the queued (connection, notification) pairs in order."""
        out, self._out = self._out, []
        return out

    def _quorum_note(self, c: _Conn) -> QuorumNotification:
        return QuorumNotification(c.model, self.quorate, self.view_ring, self.view_members)


# ---------------------------------------------------------------- votequorum trackers
@dataclass(frozen=True, slots=True)
class VqQuorumNotification:
    """votequorum quorum callback: quorate and every known node as (nodeid, state)."""

    context: int
    quorate: bool
    nodes: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class VqNodelistNotification:
    """votequorum nodelist callback: the ring of the sync and its members."""

    context: int
    ring: RingId
    members: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class VqExpectedVotesNotification:
    """votequorum expected-votes callback."""

    context: int
    expected_votes: int


VqServiceNotification = VqQuorumNotification | VqNodelistNotification | VqExpectedVotesNotification


@dataclass(slots=True)
class VoteQuorumTracking:
    """Which votequorum connections track, with the context echoed in their events (4.8).

    ``trackstart`` follows the quorum service's decision table (snapshot first, then
    EXIST, then register); ``trackstop`` answers NOT_EXIST when not tracking.
    """

    _tracking: dict[int, int] = field(default_factory=dict)
    """conn -> context of its registration."""
    _out: list[tuple[int, VqServiceNotification]] = field(default_factory=list)

    def disconnect(self, conn: int) -> None:
        """The connection closed: its tracking ends."""
        self._tracking.pop(conn, None)

    def trackstart(
        self, conn: int, context: int, flags: int, *, ring: RingId,
        members: Sequence[int], quorate: bool, nodes: Sequence[tuple[int, int]],
    ) -> CsErr:
        """TRACKSTART: snapshot (nodelist, quorum) with this call's context, EXIST, register."""
        if flags & (CS_TRACK_CURRENT | CS_TRACK_CHANGES):
            self._out.append((conn, VqNodelistNotification(context, ring, tuple(members))))
            self._out.append((conn, VqQuorumNotification(context, quorate, tuple(nodes))))
        if conn in self._tracking:
            return CsErr.CS_ERR_EXIST
        if flags & (CS_TRACK_CHANGES | CS_TRACK_CHANGES_ONLY):
            self._tracking[conn] = context
        return CsErr.CS_OK

    def trackstop(self, conn: int) -> CsErr:
        """TRACKSTOP: CS_OK if tracking, else CS_ERR_NOT_EXIST (votequorum reports it)."""
        if self._tracking.pop(conn, None) is None:
            return CsErr.CS_ERR_NOT_EXIST
        return CsErr.CS_OK

    def nodelist(self, ring: RingId, members: Sequence[int]) -> None:
        """A sync began: every tracker gets the ring and members."""
        for conn, ctx in sorted(self._tracking.items()):
            self._out.append((conn, VqNodelistNotification(ctx, ring, tuple(members))))

    def quorum(self, quorate: bool, nodes: Sequence[tuple[int, int]]) -> None:
        """Quorum reported (every activation, flips outside sync)."""
        for conn, ctx in sorted(self._tracking.items()):
            self._out.append((conn, VqQuorumNotification(ctx, quorate, tuple(nodes))))

    def expected_votes(self, expected: int) -> None:
        """Expected votes changed (automatic raise or RECONFIGURE)."""
        for conn, ctx in sorted(self._tracking.items()):
            self._out.append((conn, VqExpectedVotesNotification(ctx, expected)))

    def take_notifications(self) -> list[tuple[int, VqServiceNotification]]:
        """Take the queued (connection, notification) pairs in order."""
        out, self._out = self._out, []
        return out
