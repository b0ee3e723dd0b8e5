"""Membership: agreed views identified by ring ids (sans-IO).

Theory of operation
-------------------
Every node sends a small HEARTBEAT to every configured node each
``heartbeat_interval`` (effective token / 4, Corosync's knet ping interval),
carrying its ring id, its state, how many ordered messages it has delivered and
``heard``, the nodes it received anything from within the last token.

Links work both ways or not at all, as knet's ping/pong makes them: a node whose
newest heartbeat does not list us cannot hear us, so everything else it sends is
dropped (counted ``unreachable``) and it falls silent for us; a one-way block is thus
a partition of its two ends.  First contact, and a heartbeat that does not list us,
are answered at once with a heartbeat to the sender (knet's pong), so a link comes
up within a round trip.  Heartbeats carry the sender's clock (``beat``): one overtaken
by a newer one changes nothing.  A link that was up and is lost (``_link_lost``) fails
the peer at once in GATHER.  Anything else accepted from a node counts as hearing it.

States and transitions (the whole machine; ``_enter_gather`` is the only way into
GATHER and ``_install`` the only way out)::

    state        input                                        action
    -----------  -------------------------------------------  ------------------------------
    (boot)       constructor                                  persist seq+5, install [self]
    OPERATIONAL  member silent for token ms                   GATHER, fail={member}
    OPERATIONAL  LEAVE from a member                          GATHER, fail={sender}
    OPERATIONAL  heartbeat/JOIN from a node in another ring   GATHER (merge)
    OPERATIONAL  JOIN from a member of our ring               GATHER, merge its sets
    OPERATIONAL  JOIN/heartbeat of a member lagging in GATHER rep re-sends its INSTALL (a JOIN
                                                              that gives up on one of our
                                                              members: GATHER instead)
    OPERATIONAL  JOIN from another ring giving up on one of   ignored (we would not drop our
                 our members                                  member on its word)
    GATHER       JOIN                                         merge proc (and fail: see below),
                                                              re-send JOIN
    GATHER       JOIN whose fail set holds us, from a member  fail the sender (Corosync)
                 of our last ring
    GATHER       JOIN whose fail set holds us, from another   forget its JOIN (the consensus
                 ring                                         timeout decides)
    any          membership message within 2 x join after a   dropped (Corosync's pause_flush)
                 stall of more than token / 2
    GATHER       every ``join`` ms                            re-send JOIN
    GATHER       silent node / consensus timeout              move it to the fail set
    GATHER       consensus, we are the lowest id              persist seq, send INSTALL, install
    any          INSTALL naming us, from our current ring     persist seq, install

GATHER: a node's JOIN carries its candidate set ``proc`` and failed set ``fail``;
receivers take the union of ``proc``, and of ``fail`` as Corosync's memb_join_process
does: a member of our last ring speaks for any failure, a node from another ring only
for the failure of nodes outside our last ring (so the two ends of a broken link
cannot take turns in the ring).  A node that finds itself in a member's fail set fails
that member (each side forms a ring without the other; they merge later if they can);
in the JOIN of a node from another ring it only forgets that JOIN.  Consensus is
reached when every node of ``proc - fail`` has sent a JOIN with exactly our sets.
Nodes that do not agree within ``consensus`` ms, or that fall silent for a token,
move to ``fail``.

COMMIT: the lowest node id of ``proc - fail`` (the representative) proposes ring
``(rep, max(seq seen by any member) + 4)``, persists that seq, and sends INSTALL
with the member list, each member's previous ring and each member's votequorum
NODEINFO taken from its JOIN. A member installs it only if it names the ring the
member was in when it sent that JOIN, so a restarted node never installs a view
that its previous incarnation agreed to.

Inside a view, ordered messages (votequorum RECONFIGURE, NODEINFO) go to the
representative, which numbers and broadcasts them; gaps are repaired by NACK, and
the tail by the ``seqno`` in heartbeats. A view change ends the sequence: members
of the same old ring hand each other the messages some of them missed (JOIN
``log`` -> INSTALL ``catchup``) before the new view is installed, so survivors that
move together delivered the same messages (virtual synchrony).

Bounded buffers (issue 5, hardening; none of these changes what a correct peer sees)::

    structure            bound                          when reached
    -------------------  -----------------------------  -----------------------------------
    ``_log``             last ``LOG_TAIL`` delivered    older entries are forgotten (only
                         messages + a count             the tail is ever sent, in JOINs)
    ``_buffer`` (ahead   seqnos up to ``_delivered +    the message is dropped and counted
    of delivery)         ORDERED_WINDOW``               (``ordered_dropped``); a NACK asks
                                                        for it again once the gap is filled
    ``_sequenced`` (rep: at most ``ORDERED_WINDOW``     messages every member acknowledged
    repair + dedup)      messages of the ring           (heartbeat count, NACK) are trimmed;
                                                        if still full, new requests wait
                                                        (``ordered_deferred``): their
                                                        senders re-send them, as for loss
    JOIN sets            ``proc | fail`` at most        the JOIN is ignored (counted
                         ``MAX_NODES`` ids, ``log`` at  ``oversized_joins``): merging it
                         most ``LOG_TAIL``, ``infos``   would make our own JOIN / INSTALL
                         at most ``MAX_JOIN_INFOS``     unencodable
    ``_pending``         not bounded here: local requests of local clients (the IPC server
                         bounds each client's requests in flight); they leave when delivered

A correct representative never numbers a message more than ``ORDERED_WINDOW`` past the
delivered count of any member (it stops at ``ORDERED_WINDOW`` messages that some member
has not acknowledged), so the window never drops a message of a correct peer.  A trimmed
request that arrives again (a datagram delayed past ``ORDERED_WINDOW`` later messages of
the ring that every member delivered) would be numbered again: the price of the bound.

Requirements (architecture section 4) and why they hold: see docs/architecture.md.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from pyquorum.config.model import TotemTiming
from pyquorum.types import NULL_RING, RingId
from pyquorum.wire.codec import MAX_ITEMS
from pyquorum.wire.messages import (
    CatchUp,
    ClusterMessage,
    Heartbeat,
    Install,
    Join,
    Leave,
    MemberState,
    NodeInfo,
    Ordered,
    OrderedNack,
    OrderedPayload,
    OrderedRequest,
)

LOG_TAIL = 32
"""How many delivered ordered messages a JOIN carries for catch-up."""
ORDERED_WINDOW = 1024
"""Ordered messages buffered ahead of delivery (members) and retained for repair and
request de-duplication (representative), per ring."""
MAX_NODES = MAX_ITEMS
"""Node ids in a JOIN's ``proc | fail`` (Corosync's PROCESSOR_COUNT_MAX, the codec limit)."""
MAX_JOIN_INFOS = 2
"""NODEINFOs in a JOIN: the node's own and its quorum device's (``NodeEngine._infos``)."""


class State(Enum):
    """Membership state."""

    OPERATIONAL = "operational"
    GATHER = "gather"


# ---------------------------------------------------------------- outputs
@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to send to ``destinations`` (node ids)."""

    message: ClusterMessage
    destinations: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SeqPersisted:
    """The highest ring seq seen must be made durable before what follows goes out."""

    max_seq: int


@dataclass(frozen=True, slots=True)
class ViewInstalled:
    """A new view: ``transitional`` are the members that come from our previous ring."""

    ring: RingId
    members: tuple[int, ...]
    transitional: tuple[int, ...]
    previous_ring: RingId
    infos: tuple[NodeInfo, ...]


@dataclass(frozen=True, slots=True)
class OrderedDelivered:
    """An ordered message, delivered in the same order on every member of ``ring``."""

    ring: RingId
    seqno: int
    origin: int
    request_id: int
    payload: OrderedPayload


@dataclass(frozen=True, slots=True)
class GatherEntered:
    """We left OPERATIONAL (for the log and the quorum service's sync flag)."""

    reason: str


MembershipEvent = SeqPersisted | ViewInstalled | OrderedDelivered | GatherEntered


@dataclass(slots=True)
class _Pending:
    request_id: int
    payload: OrderedPayload
    resend_at: int


class Membership:
    """One node's membership protocol instance. Drive it with ``now_ms`` that never decreases."""

    def __init__(
        self,
        node_id: int,
        configured: Iterable[int],
        timing: TotemTiming,
        stored_max_seq: int,
        infos: Sequence[NodeInfo],
        now_ms: int,
    ) -> None:
        self.node_id = node_id
        self.configured = tuple(sorted(set(configured) | {node_id}))
        self.timing = timing
        self.state = State.OPERATIONAL
        self.ring = NULL_RING
        self.members: tuple[int, ...] = ()
        self._member_set: frozenset[int] = frozenset()  # ``members``, for lookups
        self.max_seq = stored_max_seq + 1
        self._infos: tuple[NodeInfo, ...] = tuple(infos)
        self._events: list[MembershipEvent] = []
        self._out: list[Outgoing] = []
        self._last_heard: dict[int, int] = {}
        """When each node's last accepted message came (failure detection)."""
        self._seen: dict[int, int] = {}
        """When anything last came from each node (our heartbeats' ``heard``)."""
        self._hears_us: dict[int, bool | None] = {}
        """Whether each node's latest heartbeat listed us (the link works both ways);
        None: not known (not heard for a token, or we were stalled)."""
        self._link_lost: set[int] = set()
        """Nodes we kept hearing that heard us, then sent a heartbeat without us (not
        a link coming up, as at boot or after a partition)."""
        self._pong_at: dict[int, int] = {}
        self._flush_until = 0
        self._beat: dict[int, int] = {}
        """The ``beat`` of each node's newest heartbeat."""
        self._now = now_ms
        # gather
        self._proc: set[int] = set()
        self._fail: set[int] = set()
        self._joins: dict[int, Join] = {}
        self._join_sets: dict[int, tuple[frozenset[int], frozenset[int]]] = {}
        """Each ``_joins`` entry's proc and fail sets (``_agrees`` runs for every member
        on every JOIN: with N nodes, building them each time costs O(N^3) a round)."""
        self._consensus_at = 0
        self._next_join_at = 0
        self._settle_until = 0
        self._gather_start = 0
        self._last_install: Install | None = None
        self._member_prev: dict[int, RingId] = {}
        # ordered messages of the current ring
        self._log: deque[CatchUp] = deque(maxlen=LOG_TAIL)
        self._delivered = 0
        """Ordered messages of the current ring delivered (``_log`` keeps only the tail)."""
        self._buffer: dict[int, Ordered] = {}
        self._sequenced: dict[tuple[int, int], Ordered] = {}
        self._sequenced_order: deque[tuple[int, int]] = deque()
        self._acked: dict[int, int] = {}
        """Representative: each member's delivered count (heartbeats, NACKs) in this ring."""
        self._rep_seqno = 0
        self._nack_at = 0
        self._pending: dict[int, _Pending] = {}
        self._next_request_id = 1
        self._next_heartbeat_at = now_ms
        self.stats: dict[str, int] = {"views": 0, "ignored": 0, "gathers": 0,
                                      "ordered_dropped": 0, "ordered_deferred": 0,
                                      "oversized_joins": 0, "unreachable": 0,
                                      "flushed": 0}
        # boot: a singleton ring, as Corosync forms first
        self._new_ring_as_rep(now_ms, {node_id: self._make_join()})

    # ------------------------------------------------------------ public API
    def next_event(self) -> MembershipEvent | None:
        """Pop the oldest pending event."""
        return self._events.pop(0) if self._events else None

    def take_outgoing(self) -> list[Outgoing]:
        """Take every message queued for sending."""
        out, self._out = self._out, []
        return out

    def set_infos(self, infos: Sequence[NodeInfo]) -> None:
        """Update the votequorum NODEINFO this node reports in its JOINs."""
        self._infos = tuple(infos)

    def set_configured(self, configured: Iterable[int], now_ms: int) -> None:
        """A configuration reload changed the nodelist.

        New nodes are heartbeated from now on and may join; messages from removed
        nodes are ignored from now on, and a removed node that is a member is failed
        at once (a new view without it is formed).
        """
        self._tick(now_ms)
        new = tuple(sorted(set(configured) | {self.node_id}))
        removed = set(self.configured) - set(new)
        self.configured = new
        for n in removed:
            for d in (self._last_heard, self._seen, self._hears_us, self._pong_at,
                      self._beat):
                d.pop(n, None)
            self._link_lost.discard(n)
        gone = removed & set(self.members if self.state is State.OPERATIONAL
                             else self._active())
        if not gone:
            return
        if self.state is State.OPERATIONAL:
            self._enter_gather(now_ms, f"{_ids(gone)} removed from the nodelist", fail=gone)
        elif self._fail_nodes(gone):
            self._broadcast_join(now_ms)
            self._check_consensus(now_ms)

    def get_timer(self) -> int:
        """The earliest deadline (ms) at which ``handle_timer`` must run."""
        deadlines = [self._next_heartbeat_at]
        token = self.timing.token_ms
        watched = self.members if self.state is State.OPERATIONAL else tuple(self._active())
        for m in watched:
            if m != self.node_id and (h := self._heard(m)) is not None:
                deadlines.append(h + token + 1)
        if self.state is State.GATHER:
            deadlines += [self._next_join_at, self._consensus_at]
        if self._pending:
            deadlines.append(min(p.resend_at for p in self._pending.values()))
        return min(deadlines)

    def handle_timer(self, now_ms: int) -> None:
        """Run every timer that is due at ``now_ms``."""
        self._tick(now_ms)
        if now_ms >= self._next_heartbeat_at:
            self._send_heartbeat()
            self._next_heartbeat_at = now_ms + self.timing.heartbeat_interval_ms
        if self.state is State.OPERATIONAL:
            silent = self._silent(self.members, now_ms)
            if silent:
                self._enter_gather(now_ms, f"no heartbeat from {_ids(silent)}", fail=silent)
        else:
            silent = self._silent(self._active(), now_ms)
            changed = self._fail_nodes(silent)
            if now_ms >= self._consensus_at:
                active = self._active()
                laggards = {n for n in active if n != self.node_id and not self._agrees(n)}
                if not laggards and active[0] != self.node_id:
                    # everyone agrees but the representative's INSTALL has not come
                    # for a whole consensus period: it cannot reach us, fail it
                    laggards = {active[0]}
                changed |= self._fail_nodes(laggards)
                self._consensus_at = now_ms + self.timing.consensus_ms
            if changed or now_ms >= self._next_join_at:
                self._broadcast_join(now_ms)
            self._check_consensus(now_ms)
        for p in list(self._pending.values()):
            if now_ms >= p.resend_at and p.request_id in self._pending:
                self._send_request(p, now_ms)

    def receive(self, msg: ClusterMessage, now_ms: int) -> None:
        """Process one authenticated, decoded message from a peer."""
        self._tick(now_ms)
        sender = msg.sender
        if sender == self.node_id or sender not in self.configured:
            self.stats["ignored"] += 1
            return
        seen = self._seen.get(sender)
        newly = seen is None or now_ms - seen > self.timing.token_ms
        self._seen[sender] = now_ms
        if now_ms < self._flush_until and isinstance(msg, Heartbeat | Join | Install | Leave):
            self.stats["flushed"] += 1
            return
        if newly:
            # a link coming up (boot, end of a partition): what we knew is stale
            self._hears_us[sender] = None
            self._link_lost.discard(sender)
        hears = True
        if isinstance(msg, Heartbeat):
            hears = self.node_id in msg.heard
            beat = self._beat.get(sender, -1)
            # A heartbeat overtaken by a newer one says nothing new; of two sent in
            # the same millisecond, the one that lists us was sent last.
            if newly or msg.beat > beat or (msg.beat == beat and hears):
                self._beat[sender] = msg.beat
                if hears:
                    self._link_lost.discard(sender)
                elif self._hears_us.get(sender, False):
                    self._link_lost.add(sender)  # it heard us, now it does not: lost
                self._hears_us[sender] = hears
        if (newly or not hears) and now_ms >= self._pong_at.get(sender, 0):
            # knet's pong: tell the sender at once that we hear it, so a link comes
            # up in one round trip instead of one heartbeat interval
            self._pong_at[sender] = now_ms + self.timing.join_ms
            self._out.append(Outgoing(self._heartbeat(), (sender,)))
        if self._hears_us.get(sender) is False:
            # Our traffic does not reach the sender: the link is down both ways, as
            # knet marks it (a host without a working link is unreachable).  A
            # one-way block thus acts as a partition of the two nodes.
            self.stats["unreachable"] += 1
            return
        self._last_heard[sender] = now_ms
        if isinstance(msg, Heartbeat):
            self._on_heartbeat(msg, now_ms)
        elif isinstance(msg, Join):
            self._on_join(msg, now_ms)
        elif isinstance(msg, Install):
            self._on_install(msg, now_ms)
        elif isinstance(msg, Leave):
            self._on_leave(msg, now_ms)
        elif isinstance(msg, OrderedRequest):
            self._on_request(msg)
        elif isinstance(msg, Ordered):
            self._on_ordered(msg, now_ms)
        elif isinstance(msg, OrderedNack):
            self._on_nack(msg)

    def submit(self, payload: OrderedPayload, now_ms: int) -> int:
        """Ask for ``payload`` to be delivered in order to every member; returns its request id.

        The request is retried until delivered, across view changes (it is re-sent
        in the next view).
        """
        self._tick(now_ms)
        rid = self._next_request_id
        self._next_request_id += 1
        p = _Pending(rid, payload, now_ms)
        self._pending[rid] = p
        if self.state is State.OPERATIONAL:
            self._send_request(p, now_ms)
        return rid

    def leave(self, now_ms: int) -> None:
        """Clean shutdown: tell every other configured node that we leave now."""
        self._tick(now_ms)
        others = tuple(n for n in self.configured if n != self.node_id)
        self._out.append(Outgoing(Leave(self.node_id, self.ring), others))

    # ------------------------------------------------------------ receive handlers
    def _on_heartbeat(self, hb: Heartbeat, now_ms: int) -> None:
        x = hb.sender
        if self.state is State.GATHER:
            if x not in self._fail and x not in self._proc:
                self._proc.add(x)
                self._broadcast_join(now_ms)
            return
        if x in self.members and hb.ring == self.ring:
            if hb.seqno > self._delivered and x == self.ring.rep:
                self._nack(now_ms)
            elif self.ring.rep == self.node_id:
                self._ack(x, hb.seqno)
            return
        if x in self.members and hb.ring == self._member_prev.get(x):
            # x has not installed our ring yet (or this heartbeat is older than it)
            if hb.state == MemberState.GATHER:
                self._resend_install(x, hb.ring)
            return
        self._enter_gather(now_ms, f"node {x} is in ring {hb.ring}", extra={x})

    def _on_join(self, j: Join, now_ms: int) -> None:
        x = j.sender
        if self.state is State.OPERATIONAL:
            gave_up = set(j.fail) & set(self.members)
            if x in self.members and j.ring == self._member_prev.get(x) and not gave_up:
                self._resend_install(x, j.ring)  # x only missed our INSTALL
                return
            if x not in self.members and gave_up:
                # x wants a ring without some of our members; we would not drop them
                # on an outsider's word (below), so a merge cannot succeed until x
                # gives up its gather: do not re-form our ring for it
                self.stats["ignored"] += 1
                return
            self._enter_gather(now_ms, f"join from node {x}", extra={x})
        if x in self._fail:
            return
        if self.node_id in j.fail:
            # x has given up on us: it forms a ring without us.  Its older JOIN no
            # longer speaks for it (kept, a one-way link x <- us left us in GATHER
            # for good).  A member of our last ring that gave up on us is given up
            # on at once (Corosync's memb_join_process), so we do not sit in GATHER,
            # still quorate in the old ring, while x's side installs a ring without
            # us.  A node from another ring is only forgotten: the consensus timeout
            # decides, and the two rings merge later.
            self._joins.pop(x, None)
            self._join_sets.pop(x, None)
            if x in self.members and self._fail_nodes({x}):
                self._consensus_at = now_ms + self.timing.consensus_ms
                self._broadcast_join(now_ms)
            self._check_consensus(now_ms)
            return
        if (len(j.log) > LOG_TAIL or len(j.infos) > MAX_JOIN_INFOS
                or len(self._proc | self._fail | set(j.proc) | set(j.fail) | {x}) > MAX_NODES):
            self.stats["oversized_joins"] += 1  # bounds: see the module docstring
            return
        before = (len(self._proc), len(self._fail))
        self._proc |= set(j.proc) | {x}
        self._fail |= self._deaf(self._proc)
        # Only a member of our last ring speaks for the failure of a member (as
        # Corosync's my_memb_list rule in memb_join_process).  A node from another
        # ring, e.g. one whose link to a member is down, cannot make us drop a member
        # we hear: otherwise the two ends of a broken link take turns in the ring,
        # each quorate in a ring the other just left.  Its word on other outsiders
        # is taken, so merging rings agree on their fail sets.
        self._fail |= set(j.fail) if x in self.members else set(j.fail) - set(self.members)
        self._joins[x] = j
        self._join_sets[x] = (frozenset(j.proc), frozenset(j.fail))
        changed = before != (len(self._proc), len(self._fail))
        if changed:
            self._consensus_at = now_ms + self.timing.consensus_ms
            self._broadcast_join(now_ms)
        self._check_consensus(now_ms)

    def _on_install(self, ins: Install, now_ms: int) -> None:
        if self.node_id not in ins.members or ins.ring <= self.ring:
            self.stats["ignored"] += 1
            return
        if self.state is State.GATHER and ins.sender in self._fail:
            self.stats["ignored"] += 1
            return
        idx = ins.members.index(self.node_id)
        if idx >= len(ins.prev_rings) or ins.prev_rings[idx] != self.ring:
            self.stats["ignored"] += 1
            return
        if ins.ring.seq > self.max_seq:
            self.max_seq = ins.ring.seq
            self._events.append(SeqPersisted(self.max_seq))
        self._install(ins, now_ms)

    def _on_leave(self, lv: Leave, now_ms: int) -> None:
        x = lv.sender
        if self.state is State.OPERATIONAL and x in self.members and lv.ring == self.ring:
            self._enter_gather(now_ms, f"node {x} left", fail={x})
        elif self.state is State.GATHER and self._fail_nodes({x}):
            self._broadcast_join(now_ms)
            self._check_consensus(now_ms)
        self._last_heard.pop(x, None)
        self._seen.pop(x, None)

    def _on_request(self, req: OrderedRequest) -> None:
        if (
            self.state is not State.OPERATIONAL
            or req.ring != self.ring
            or self.ring.rep != self.node_id
            or req.sender not in self.members
        ):
            return
        key = (req.sender, req.request_id)
        done = self._sequenced.get(key)
        if done is not None:
            self._out.append(Outgoing(done, (req.sender,)))
            return
        if not self._room_to_sequence():
            self.stats["ordered_deferred"] += 1  # its sender re-sends it
            return
        self._rep_seqno += 1
        msg = Ordered(self.node_id, self.ring, self._rep_seqno, req.sender, req.request_id,
                      req.payload)
        self._sequenced[key] = msg
        self._sequenced_order.append(key)
        self._out.append(Outgoing(msg, self._others()))
        self._accept_ordered(msg)

    def _on_ordered(self, msg: Ordered, now_ms: int) -> None:
        if self.state is not State.OPERATIONAL or msg.ring != self.ring:
            return
        if msg.seqno <= self._delivered:
            return
        if msg.seqno > self._delivered + ORDERED_WINDOW:
            self.stats["ordered_dropped"] += 1  # bounds: see the module docstring
            self._nack(now_ms)
            return
        self._buffer[msg.seqno] = msg
        self._drain_buffer()
        if self._buffer:
            self._nack(now_ms)

    def _on_nack(self, nack: OrderedNack) -> None:
        if nack.ring != self.ring or self.ring.rep != self.node_id:
            return
        if nack.sender in self.members:
            self._ack(nack.sender, nack.from_seqno - 1)
        for msg in sorted(self._sequenced.values(), key=lambda m: m.seqno):
            if msg.seqno >= nack.from_seqno:
                self._out.append(Outgoing(msg, (nack.sender,)))

    # ------------------------------------------------------------ gather and commit
    def _enter_gather(
        self,
        now_ms: int,
        reason: str,
        *,
        fail: Iterable[int] = (),
        extra: Iterable[int] = (),
    ) -> None:
        self.state = State.GATHER
        self.stats["gathers"] += 1
        self._proc = set(self.members) | set(extra) | {self.node_id}
        self._fail = (set(fail) | self._deaf(self._proc)) - {self.node_id}
        self._joins, self._join_sets = {}, {}
        self._consensus_at = now_ms + self.timing.consensus_ms
        # A merge waits one join interval for the other rings' nodes to show up, so
        # nodes that boot together form one ring; a failure is handled at once.
        self._settle_until = now_ms + (self.timing.join_ms if extra else 0)
        self._gather_start = now_ms
        self._events.append(GatherEntered(reason))
        self._broadcast_join(now_ms)
        self._check_consensus(now_ms)  # alone in proc - fail: install at once

    def _make_join(self) -> Join:
        return Join(
            sender=self.node_id,
            ring=self.ring,
            max_seq=self.max_seq,
            proc=tuple(sorted(self._proc)),
            fail=tuple(sorted(self._fail)),
            infos=self._infos,
            delivered=self._delivered,
            log=tuple(self._log),
        )

    def _broadcast_join(self, now_ms: int) -> None:
        self._out.append(Outgoing(self._make_join(), self._others_configured()))
        self._next_join_at = now_ms + self.timing.join_ms

    def _active(self) -> list[int]:
        return sorted(self._proc - self._fail)

    def _agrees(self, node: int) -> bool:
        sets = self._join_sets.get(node)
        return sets is not None and sets[0] == self._proc and sets[1] == self._fail

    def _fail_nodes(self, nodes: Iterable[int]) -> bool:
        new = set(nodes) - self._fail - {self.node_id}
        self._fail |= new
        self._proc |= new
        return bool(new)

    def _check_consensus(self, now_ms: int) -> None:
        if self.state is not State.GATHER:
            return
        active = self._active()
        if now_ms < self._settle_until:
            return
        if not all(n == self.node_id or self._agrees(n) for n in active):
            return
        if active[0] != self.node_id:
            return  # the representative sends INSTALL
        joins = {n: self._joins[n] for n in active if n != self.node_id}
        joins[self.node_id] = self._make_join()
        self._new_ring_as_rep(now_ms, joins)

    def _new_ring_as_rep(self, now_ms: int, joins: dict[int, Join]) -> None:
        members = tuple(sorted(joins))
        seq = max([self.max_seq] + [j.max_seq for j in joins.values()]) + 4
        self.max_seq = seq
        self._events.append(SeqPersisted(seq))
        ring = RingId(self.node_id, seq)
        ins = Install(
            sender=self.node_id,
            ring=ring,
            members=members,
            prev_rings=tuple(joins[m].ring for m in members),
            infos=tuple(i for m in members for i in joins[m].infos),
            catchup=_catchup(joins),
        )
        self._last_install = ins
        others = tuple(m for m in members if m != self.node_id)
        if others:
            self._out.append(Outgoing(ins, others))
        self._install(ins, now_ms)

    def _resend_install(self, node: int, their_ring: RingId) -> None:
        ins = self._last_install
        if ins is None or ins.ring != self.ring or node not in ins.members:
            return
        if ins.prev_rings[ins.members.index(node)] == their_ring:
            self._out.append(Outgoing(ins, (node,)))

    def _install(self, ins: Install, now_ms: int) -> None:
        previous = self.ring
        for c in ins.catchup:
            if c.ring == previous and c.seqno == self._delivered + 1:
                self._deliver(c.seqno, c.origin, c.request_id, c.payload, previous)
        transitional = tuple(
            m for m, pr in zip(ins.members, ins.prev_rings, strict=False) if pr == previous
        )
        self.ring = ins.ring
        self.members = ins.members
        self._member_set = frozenset(ins.members)
        self._member_prev = dict(zip(ins.members, ins.prev_rings, strict=False))
        self.state = State.OPERATIONAL
        self._proc, self._fail, self._joins, self._join_sets = set(), set(), {}, {}
        self._log.clear()
        self._delivered = 0
        self._buffer, self._sequenced, self._acked = {}, {}, {}
        self._sequenced_order.clear()
        self._rep_seqno = 0
        for m in self.members:
            if m != self.node_id:
                self._last_heard[m] = now_ms
        self.stats["views"] += 1
        self._events.append(ViewInstalled(ins.ring, ins.members, transitional, previous, ins.infos))
        self._send_heartbeat()
        self._next_heartbeat_at = now_ms + self.timing.heartbeat_interval_ms
        # as representative, a re-sent request is delivered (and leaves _pending) at once
        for p in list(self._pending.values()):
            if p.request_id in self._pending:
                self._send_request(p, now_ms)

    # ------------------------------------------------------------ ordered messages
    def _send_request(self, p: _Pending, now_ms: int) -> None:
        p.resend_at = now_ms + max(self.timing.join_ms * 4, 200)
        if self.state is not State.OPERATIONAL:
            return
        req = OrderedRequest(self.node_id, self.ring, p.request_id, p.payload)
        if self.ring.rep == self.node_id:
            self._on_request(req)
        else:
            self._out.append(Outgoing(req, (self.ring.rep,)))

    def _accept_ordered(self, msg: Ordered) -> None:
        self._buffer[msg.seqno] = msg
        self._drain_buffer()

    def _drain_buffer(self) -> None:
        while (nxt := self._buffer.pop(self._delivered + 1, None)) is not None:
            self._deliver(nxt.seqno, nxt.origin, nxt.request_id, nxt.payload, nxt.ring)

    def _deliver(
        self, seqno: int, origin: int, request_id: int, payload: OrderedPayload, ring: RingId
    ) -> None:
        self._log.append(CatchUp(ring, seqno, origin, request_id, payload))
        self._delivered += 1
        if origin == self.node_id and ring == self.ring:
            self._pending.pop(request_id, None)
        self._events.append(OrderedDelivered(ring, seqno, origin, request_id, payload))

    def _nack(self, now_ms: int) -> None:
        if now_ms < self._nack_at or self.ring.rep == self.node_id:
            return
        self._nack_at = now_ms + self.timing.join_ms
        nack = OrderedNack(self.node_id, self.ring, self._delivered + 1)
        self._out.append(Outgoing(nack, (self.ring.rep,)))

    def _ack(self, member: int, delivered: int) -> None:
        """Representative: ``member`` has delivered the ring's first ``delivered``."""
        if delivered > self._acked.get(member, 0):
            self._acked[member] = min(delivered, self._rep_seqno)

    def _room_to_sequence(self) -> bool:
        """Representative: whether one more message may be numbered.  At most
        ``ORDERED_WINDOW`` are retained; those every member acknowledged go first."""
        if len(self._sequenced) < ORDERED_WINDOW:
            return True
        acked = min((self._acked.get(m, 0) for m in self._others()), default=self._rep_seqno)
        order = self._sequenced_order
        while order and self._sequenced[order[0]].seqno <= acked:
            del self._sequenced[order.popleft()]
        return len(self._sequenced) < ORDERED_WINDOW

    # ------------------------------------------------------------ helpers
    def _tick(self, now_ms: int) -> None:
        if now_ms < self._now:
            raise ValueError(f"now_ms went backwards: {now_ms} < {self._now}")
        if now_ms - self._now > self.timing.token_ms // 2:
            # We were stalled (a paused process): do not blame peers for our own
            # silence; give every peer a fresh token from now (Corosync flushes
            # its membership messages after a detected pause for the same reason).
            for n in self._last_heard:
                self._last_heard[n] = now_ms
            for n in self._seen:
                self._seen[n] = now_ms
            # ... and, like Corosync's pause_flush, drop the membership messages
            # queued while we were stalled (a JOIN that failed us during the pause
            # must not make us fail its sender now); links come up again from
            # heartbeats sent after the flush
            self._flush_until = now_ms + 2 * self.timing.join_ms
            for n in self._hears_us:
                self._hears_us[n] = None
            self._link_lost.clear()
        self._now = now_ms

    def _heard(self, node: int) -> int | None:
        """When ``node`` was last heard.  In GATHER, a node from outside our last ring
        is not measured from before the gather began (one we had not heard for a while,
        e.g. across a partition, gets a token); a member of our last ring, watched all
        along, keeps its real silence (a gather must not restart the clock of members
        that a partition has just cut off, or an isolated node stays in GATHER, quorate
        in its old ring, for up to a token longer)."""
        last = self._last_heard.get(node)
        if self.state is State.GATHER and (last is None or node not in self._member_set):
            return max(last if last is not None else 0, self._gather_start)
        return last

    def _deaf(self, nodes: Iterable[int]) -> set[int]:
        """Nodes that heard us and whose latest heartbeat says they no longer do."""
        return set(nodes) & self._link_lost

    def _silent(self, nodes: Iterable[int], now_ms: int) -> set[int]:
        """Nodes to fail: nothing accepted from them for a token, or, in GATHER, a link
        that was up and is lost (``_link_lost``: they cannot agree with us)."""
        token = self.timing.token_ms
        gather = self.state is State.GATHER
        return {
            n for n in nodes
            if n != self.node_id and (
                ((h := self._heard(n)) is not None and now_ms - h > token)
                or (gather and n in self._link_lost))
        }

    def _heartbeat(self) -> Heartbeat:
        state = MemberState.OPERATIONAL if self.state is State.OPERATIONAL else MemberState.GATHER
        seqno = self._rep_seqno if self.ring.rep == self.node_id else self._delivered
        token = self.timing.token_ms
        heard = tuple(sorted(n for n, t in self._seen.items() if self._now - t <= token))
        return Heartbeat(self.node_id, self.ring, state, seqno, self._now, heard)

    def _send_heartbeat(self) -> None:
        self._out.append(Outgoing(self._heartbeat(), self._others_configured()))

    def _others(self) -> tuple[int, ...]:
        return tuple(m for m in self.members if m != self.node_id)

    def _others_configured(self) -> tuple[int, ...]:
        return tuple(n for n in self.configured if n != self.node_id)


def _catchup(joins: dict[int, Join]) -> tuple[CatchUp, ...]:
    """Ordered messages of each old ring that some of its members missed."""
    out: list[CatchUp] = []
    groups: dict[RingId, list[Join]] = {}
    for j in joins.values():
        groups.setdefault(j.ring, []).append(j)
    for ring in sorted(groups):
        js = groups[ring]
        best = max(js, key=lambda j: (j.delivered, -j.sender))
        lowest = min(j.delivered for j in js)
        out.extend(c for c in best.log if c.seqno > lowest)
    return tuple(out)


def _ids(nodes: Iterable[int]) -> str:
    return ",".join(str(n) for n in sorted(nodes))
