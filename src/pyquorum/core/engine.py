"""NodeEngine: one node's whole protocol state, driven by inputs with ``now_ms``.

Theory of operation
-------------------
The engine composes membership (views), votequorum (votes) and the quorum service
(client events). Drivers (the asyncio daemon, the simulator, tests) all run the same
pump::

    engine.receive_datagram(data, source, now_ms) | handle_timer(now_ms)
        | handle_command(conn, command, now_ms) | connection_closed(conn)
    while (ev := engine.next_event()): act on it     # PersistState first: make it durable
    for data, dest in engine.datagrams_to_send(now_ms): send it
    arm one timer at engine.get_timer()

A new view is processed exactly like Corosync's sync: the quorum service records the
sync and sends V1 nodelist events, votequorum gets ``sync_init``, every member's
NODEINFO (taken from the INSTALL, identical on every member), and ``sync_activate``,
which always reports quorum; the quorum service then sends the quorum event to every
tracker. Quorum requests from clients wait while membership is in GATHER.

Quorum device sync wait (spec 4.7).  Corosync's votequorum holds the sync of a new
ring while a registered, alive device has not polled with the new ring id (at most
``quorum.device.sync_timeout``), and its sync barrier makes every member wait for the
slowest.  Here a view is installed atomically, so the wait and the barrier are done
in the engine, in this order::

    view installed    quorum service nodelist; vq sync_init; votequorum nodelist event
                      (the device learns the ring); every member's NODEINFO
    W = members whose INSTALL NODEINFO has QDEVICE_REGISTERED and QDEVICE_ALIVE,
        plus us if our votequorum waits for its device
    W empty           sync_activate at once (the only path without a quorum device)
    else              activation waits; quorum-service requests keep waiting
    our wait ends     (poll with the new ring, sync_timeout, unregister; or at once if
                      we are in W without waiting) -> multicast QdeviceSynced(ring,
                      our NODEINFO); its delivery applies that NODEINFO everywhere
    every member of W delivered its QdeviceSynced for the ring -> sync_activate
    a newer view      abandons the waiting one (Corosync aborts the sync the same way)

votequorum's own state messages (NODEINFO, QDEVICE_REG, QDEVICE_RECONFIGURE,
QdeviceSynced) leave one at a time (``_multicast``), which gives them the per-sender
FIFO order totem guarantees.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from pyquorum.config.model import ClusterConfig
from pyquorum.core import membership as mb
from pyquorum.core.tracking import (
    NodelistNotification,
    QuorumNotification,
    QuorumService,
    VoteQuorumTracking,
    VqServiceNotification,
)
from pyquorum.core.votequorum import (
    BarrierPersisted,
    ExpectedVotesNotified,
    Logged,
    NodeinfoBroadcastRequested,
    QdeviceBroadcastRequested,
    QuorumNotified,
    ReconfigureRequested,
    SyncWaitEnded,
    VoteQuorum,
    VoteQuorumInfo,
)
from pyquorum.errors import CsErr, CsError
from pyquorum.types import RingId
from pyquorum.wire.codec import Malformed, decode, encode
from pyquorum.wire.crypto import Opened, SecureChannel
from pyquorum.wire.messages import (
    KeyReady,
    NodeFlag,
    NodeInfo,
    OrderedPayload,
    QdeviceOperation,
    QdeviceReg,
    QdeviceRename,
    QdeviceSynced,
    Reconfigure,
    ReconfigureParam,
    ReloadConfig,
)

VOTEQUORUM = "corosync_votequorum"


# ---------------------------------------------------------------- persisted state
@dataclass(frozen=True, slots=True)
class StoredState:
    """What must survive a restart: ring seq, EVT barrier, crypto incarnation."""

    max_seq: int = 0
    ev_barrier: int | None = None
    incarnation: int = 0


# ---------------------------------------------------------------- commands (client requests)
@dataclass(frozen=True, slots=True)
class QuorumGetType:
    """GETTYPE (``model`` None) or MODEL_GETTYPE."""

    model: int | None = None


@dataclass(frozen=True, slots=True)
class QuorumGetQuorate:
    """GETQUORATE."""


@dataclass(frozen=True, slots=True)
class QuorumTrackStart:
    """TRACKSTART with CS_TRACK_* flags."""

    flags: int


@dataclass(frozen=True, slots=True)
class QuorumTrackStop:
    """TRACKSTOP."""


@dataclass(frozen=True, slots=True)
class VqGetInfo:
    """votequorum_getinfo (nodeid 0: the local node)."""

    nodeid: int


@dataclass(frozen=True, slots=True)
class VqSetExpected:
    """votequorum_setexpected."""

    expected_votes: int


@dataclass(frozen=True, slots=True)
class VqSetVotes:
    """votequorum_setvotes."""

    nodeid: int
    votes: int


@dataclass(frozen=True, slots=True)
class VqCancelWaitForAll:
    """quorum.cancel_wait_for_all: clear WFA on every node."""


@dataclass(frozen=True, slots=True)
class VqTrackStart:
    """votequorum_trackstart: ``context`` is echoed in every event to this connection."""

    context: int
    flags: int


@dataclass(frozen=True, slots=True)
class VqTrackStop:
    """votequorum_trackstop."""


@dataclass(frozen=True, slots=True)
class VqQdeviceRegister:
    """votequorum_qdevice_register (answered once the registration comes back in order)."""

    name: str


@dataclass(frozen=True, slots=True)
class VqQdeviceUnregister:
    """votequorum_qdevice_unregister."""

    name: str


@dataclass(frozen=True, slots=True)
class VqQdeviceUpdate:
    """votequorum_qdevice_update: rename the registered device."""

    old_name: str
    new_name: str


@dataclass(frozen=True, slots=True)
class VqQdevicePoll:
    """votequorum_qdevice_poll: ``ring`` must be the ring of votequorum's last sync."""

    name: str
    cast_vote: int
    ring: RingId


@dataclass(frozen=True, slots=True)
class VqQdeviceMasterWins:
    """votequorum_qdevice_master_wins."""

    name: str
    allow: int


@dataclass(frozen=True, slots=True)
class CfgReload:
    """corosync_cfg_reload_config: every member re-reads its configuration file when
    the request is delivered in agreed order; answered once this node has reloaded."""


Command = (
    QuorumGetType | QuorumGetQuorate | QuorumTrackStart | QuorumTrackStop
    | VqGetInfo | VqSetExpected | VqSetVotes | VqCancelWaitForAll | VqTrackStart | VqTrackStop
    | VqQdeviceRegister | VqQdeviceUnregister | VqQdeviceUpdate | VqQdevicePoll
    | VqQdeviceMasterWins | CfgReload
)

_QUORUM_COMMANDS = (QuorumGetType, QuorumGetQuorate, QuorumTrackStart, QuorumTrackStop)
_QDEVICE_WAITING = NodeFlag.QDEVICE_REGISTERED | NodeFlag.QDEVICE_ALIVE


# ---------------------------------------------------------------- engine events
@dataclass(frozen=True, slots=True)
class PersistState:
    """Make ``state`` durable (write, fsync, rename) before sending further datagrams."""

    state: StoredState


@dataclass(frozen=True, slots=True)
class ViewInstalled:
    """A new membership view (after its quorum was computed)."""

    ring: RingId
    members: tuple[int, ...]
    quorate: bool
    infos: tuple[NodeInfo, ...]
    """The NODEINFO inputs every member used for this view's quorum (R3)."""


@dataclass(frozen=True, slots=True)
class QuorumChanged:
    """The quorate bit flipped outside a view change (a view reports it in ViewInstalled)."""

    quorate: bool
    ring: RingId
    members: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Replied:
    """The answer to a client command; ``value`` depends on the command."""

    conn: int
    command: Command
    error: CsErr
    value: int | VoteQuorumInfo | None = None


@dataclass(frozen=True, slots=True)
class Notified:
    """A callback for one client connection."""

    conn: int
    notification: QuorumNotification | NodelistNotification | VqServiceNotification


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A log line for the driver (subsys QUORUM, VOTEQ or TOTEM)."""

    level: str
    subsys: str
    message: str


@dataclass(frozen=True, slots=True)
class ReloadRequested:
    """A cluster-wide reload (``CfgReload`` from node ``requester``) was delivered.

    The driver re-reads its configuration file and calls ``finish_reload`` with the
    new configuration (or None when the file is unusable); ``waiter`` is the client
    to answer, on the requesting node only.
    """

    requester: int
    waiter: tuple[int, CfgReload] | None


EngineEvent = (PersistState | ViewInstalled | QuorumChanged | Replied | Notified | LogRecord
               | ReloadRequested)


@dataclass(slots=True)
class _SyncWait:
    """A view whose votequorum activation waits for quorum devices (spec 4.7)."""

    view: mb.ViewInstalled
    was_quorate: bool
    waiting_for: frozenset[int]
    """Members whose ``QdeviceSynced`` for this ring must be delivered first."""
    done: set[int]


class NodeEngine:
    """One node of the cluster, sans-IO."""

    def __init__(
        self,
        node_id: int,
        config: ClusterConfig,
        rng: random.Random,
        stored_state: StoredState,
        now_ms: int,
        authkey: bytes | None = None,
    ) -> None:
        self.node_id = node_id
        self.config = config
        self._now = now_ms
        self._events: list[EngineEvent] = []
        self._datagrams: list[tuple[bytes, int]] = []
        self.stats: dict[str, int] = {"malformed": 0, "rejected": 0, "received": 0, "sent": 0}
        incarnation = stored_state.incarnation + 1
        self._stored = replace(stored_state, incarnation=incarnation)
        t = config.totem
        configured = config.node_ids or (node_id,)
        self._channel = SecureChannel(
            authkey, t.crypto_cipher, t.crypto_hash, node_id, incarnation,
            rng.getrandbits(64).to_bytes(8, "big"), allowed_senders=frozenset(configured),
        )
        self.vq: VoteQuorum | None = None
        if config.quorum.provider == VOTEQUORUM:
            self.vq = VoteQuorum(config, node_id, stored_state.ev_barrier, now_ms)
        self.quorum = QuorumService(provider=self.vq is not None)
        self.vq_tracking = VoteQuorumTracking()
        self._waiting: list[tuple[int, Command]] = []
        self._vq_requests: dict[int, tuple[int, Command]] = {}
        self._fifo: list[tuple[OrderedPayload, tuple[int, Command] | None]] = []
        self._fifo_in_flight: int | None = None
        """Request id of the votequorum state message in flight (see ``_multicast``)."""
        self._members: tuple[int, ...] = ()
        self._view_ring = RingId(0, 0)
        """The view clients were last told about: ordered messages of an old ring that
        are caught up at a view change still belong to the old view."""
        self._in_sync = False
        self._sync_wait: _SyncWait | None = None
        self.ready = False
        """True once the first view is installed: clients are admitted from then on."""
        self._rotation: int | None = None
        """Fingerprint of the authkey we rotate to (added, not yet sealing with it)."""
        self._key_ready: dict[int, set[int]] = {}
        """Per key fingerprint, the nodes whose KeyReady was delivered."""
        self._key_drop_at: int | None = None
        """When the previous key is forgotten after a switch."""
        self._leaving = False
        self.left = False
        """True once the membership LEAVE went out (see ``leave``)."""
        self._persist()
        self.membership = mb.Membership(
            node_id, configured, config.timing(), stored_state.max_seq, self._infos(), now_ms
        )
        self._pump()

    # ------------------------------------------------------------ inputs
    def receive_datagram(self, data: bytes, source: object, now_ms: int) -> None:
        """A datagram arrived from the network; garbage is counted, never raised."""
        self._tick(now_ms)
        opened = self._channel.open(data)
        if not isinstance(opened, Opened):
            self.stats["rejected"] += 1
            return
        msg = decode(opened.plaintext)
        if isinstance(msg, Malformed) or msg.sender != opened.sender:
            self.stats["malformed"] += 1
            return
        self.stats["received"] += 1
        self.membership.receive(msg, now_ms)
        self._pump()

    def handle_timer(self, now_ms: int) -> None:
        """Run whatever is due at ``now_ms``."""
        self._tick(now_ms)
        if self._key_drop_at is not None and now_ms >= self._key_drop_at:
            self._key_drop_at = None
            self._channel.drop_keys()
            self._events.append(LogRecord("notice", "TOTEM", "The previous authkey is no "
                                          "longer accepted"))
        self.membership.handle_timer(now_ms)
        if self.vq is not None:
            self.vq.handle_timer(now_ms)
        self._pump()

    def handle_command(self, conn: int, command: Command, now_ms: int) -> None:
        """A client request; the answer comes out as a ``Replied`` event."""
        self._tick(now_ms)
        if self._must_wait(command):
            self._waiting.append((conn, command))  # quorum requests wait during sync
            return
        self._execute(conn, command, now_ms)
        self._pump()

    def connection_closed(self, conn: int) -> None:
        """A client went away."""
        self.quorum.disconnect(conn)
        self.vq_tracking.disconnect(conn)
        self._waiting = [(c, cmd) for c, cmd in self._waiting if c != conn]

    def connection_opened(self, conn: int) -> None:
        """A client was admitted (only once ``ready``)."""
        self.quorum.connect(conn)

    def leave(self, now_ms: int) -> None:
        """Start a clean shutdown; the node has left once ``left`` is True.

        With allow_downscale, Corosync's votequorum exit hook multicasts our NODEINFO
        with LEAVING in agreed order, so every member marks us LEAVING and lowers its
        expected votes before the membership sees us go (spec 4.5.5, 4.6).  We do the
        same: the LEAVE goes out once that NODEINFO has been delivered back to us.
        Without allow_downscale, or alone in our view, the LEAVE goes out at once.  The
        driver bounds the wait and calls ``finish_leave`` when it runs out.
        """
        self._tick(now_ms)
        if self._leaving:
            return
        self._leaving = True
        info = self.vq.leaving_nodeinfo() if self.vq is not None else None
        if info is None or len(self._members) <= 1:
            self.finish_leave(now_ms)
            return
        self._multicast(info)
        self._pump()

    def finish_leave(self, now_ms: int) -> None:
        """Send the membership LEAVE now (also when a LEAVING NODEINFO is still in flight)."""
        self._tick(now_ms)
        self._leaving = True
        self._send_leave()
        self._pump()

    def apply_config(self, config: ClusterConfig, now_ms: int) -> None:
        """Apply a reloaded configuration on this node (SIGHUP, or ``finish_reload``).

        The nodelist goes to membership (new nodes may join, removed members are
        failed) and the quorum section to votequorum's runtime re-read (spec 4.10),
        whose NODEINFO / RECONFIGURE messages are multicast in order.  The driver has
        already kept the keys that cannot change at run time (``config.reload``).
        """
        self._tick(now_ms)
        self.config = config
        if self.vq is not None:
            self.vq.reload(config, now_ms)
            self._drain_vq()  # its messages are submitted before a view change begins
        self.membership.set_infos(self._infos())  # JOINs from now on carry the new values
        configured = config.node_ids or (self.node_id,)
        self._channel.set_allowed_senders(frozenset(configured))
        self.membership.set_configured(configured, now_ms)
        self._pump()

    def finish_reload(self, request: ReloadRequested, config: ClusterConfig | None,
                      now_ms: int) -> None:
        """The driver's answer to ``ReloadRequested``: apply ``config`` (None: the file
        could not be used, nothing changes) and answer the requesting client, CS_OK or
        CS_ERR_LIBRARY as Corosync's cfg service does."""
        if config is not None:
            self.apply_config(config, now_ms)
        else:
            self._tick(now_ms)
        if request.waiter is not None:
            conn, cmd = request.waiter
            self._reply(conn, cmd, CsErr.CS_OK if config is not None else CsErr.CS_ERR_LIBRARY)
        self._pump()

    def rotate_key(self, authkey: bytes, now_ms: int) -> bool:
        """Start rotating the cluster authkey to ``authkey`` (a reload found a new key).

        The new key is accepted at once, and ``KeyReady`` is multicast in agreed
        order; datagrams keep being sealed with the old key until KeyReady of this key
        was delivered from every member of the view, when every member switches at the
        same point of the order.  The old key is still accepted for two token timeouts
        after that, then forgotten.  A member without the new key keeps everyone on the
        old one (nothing breaks; the log says who is missing).  Returns False when
        ``authkey`` is the key in use already.
        """
        self._tick(now_ms)
        channel = self._channel
        fp = channel.key_fingerprint(authkey)
        if fp == channel.send_key:
            return False
        if fp not in channel.keys:
            channel.drop_keys()  # an unfinished earlier rotation is abandoned
            channel.add_key(authkey)
        self._rotation = fp
        self._key_drop_at = None
        self._events.append(LogRecord("notice", "TOTEM", f"New authkey {fp:016x} accepted; "
                                      "sealing with it once every member has it"))
        self.membership.submit(KeyReady(self.node_id, fp), now_ms)
        self._pump()
        return True

    @property
    def key_fingerprint(self) -> int:
        """The fingerprint of the authkey datagrams are sealed with."""
        return self._channel.send_key

    def _check_key_switch(self) -> None:
        fp = self._rotation
        if fp is None:
            return
        ready = self._key_ready.get(fp, set())
        if not set(self._members) <= ready:
            return
        self._channel.use_key(fp)
        self._rotation = None
        self._key_ready.clear()  # done with this rotation; a later one starts afresh
        self._key_drop_at = self._now + 2 * self.membership.timing.token_ms
        self._events.append(LogRecord("notice", "TOTEM", f"Sealing with authkey {fp:016x} "
                                      "now: every member has it"))

    def _send_leave(self) -> None:
        if self.left:
            return
        self.left = True
        self.membership.leave(self._now)

    # ------------------------------------------------------------ outputs
    def next_event(self) -> EngineEvent | None:
        """Pop the oldest event."""
        return self._events.pop(0) if self._events else None

    def datagrams_to_send(self, now_ms: int) -> list[tuple[bytes, int]]:
        """Take the datagrams to send, as (bytes, destination node id)."""
        out, self._datagrams = self._datagrams, []
        return out

    def get_timer(self) -> int | None:
        """The earliest deadline in ms at which ``handle_timer`` must be called."""
        deadlines = [self.membership.get_timer()]
        if self.vq is not None and (t := self.vq.get_timer()) is not None:
            deadlines.append(t)
        if self._key_drop_at is not None:
            deadlines.append(self._key_drop_at)
        return min(deadlines)

    # ------------------------------------------------------------ introspection
    @property
    def ring(self) -> RingId:
        """The current ring id."""
        return self.membership.ring

    @property
    def members(self) -> tuple[int, ...]:
        """The members of the current view."""
        return self.membership.members

    @property
    def quorate(self) -> bool:
        """The quorate bit clients see."""
        return self.quorum.quorate

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        """Datagrams the secure channel dropped, per reason (``auth_failed``, ``replayed``...)."""
        return {r.name.lower(): n for r, n in self._channel.stats.items()}

    @property
    def stored_state(self) -> StoredState:
        """The state last handed out for persisting."""
        return self._stored

    # ------------------------------------------------------------ internals
    def _tick(self, now_ms: int) -> None:
        if now_ms < self._now:
            raise ValueError(f"now_ms went backwards: {now_ms} < {self._now}")
        self._now = now_ms

    def _must_wait(self, command: Command) -> bool:
        """Quorum-service requests wait while a view is being agreed or synced."""
        return isinstance(command, _QUORUM_COMMANDS) and (
            self.membership.state is mb.State.GATHER or self._sync_wait is not None)

    def _infos(self) -> tuple[NodeInfo, ...]:
        if self.vq is None:
            return ()
        return (self.vq.local_nodeinfo(), self.vq.qdevice_nodeinfo())

    def _persist(self) -> None:
        self._events.append(PersistState(self._stored))

    def _pump(self) -> None:
        """Move membership and votequorum outputs into engine events and datagrams."""
        while True:
            ev = self.membership.next_event()
            if ev is None:
                # votequorum may have asked for multicasts (delivered at once when we
                # are the representative): handle those deliveries in this pump too
                self._drain_vq()
                ev = self.membership.next_event()
                if ev is None:
                    break
            if isinstance(ev, mb.SeqPersisted):
                self._stored = replace(self._stored, max_seq=ev.max_seq)
                self._persist()
            elif isinstance(ev, mb.ViewInstalled):
                self._on_view(ev)
            elif isinstance(ev, mb.OrderedDelivered):
                self._on_ordered(ev)
            elif isinstance(ev, mb.GatherEntered):
                self._events.append(LogRecord("debug", "TOTEM", f"gather: {ev.reason}"))
        self.membership.set_infos(self._infos())
        for out in self.membership.take_outgoing():
            data = self._channel.seal(encode(out.message))
            for dest in out.destinations:
                self._datagrams.append((data, dest))
                self.stats["sent"] += 1

    def _on_view(self, ev: mb.ViewInstalled) -> None:
        self._view_ring = ev.ring
        self._members = ev.members
        self._check_key_switch()  # a member without the new key may have left
        self._sync_wait = None  # a newer view ends (aborts) a sync still waiting
        self.quorum.sync_started(ev.ring, ev.members)
        self.quorum.nodelist_activated(ev.transitional)
        self._flush_notifications()
        was_quorate = self.quorum.quorate
        if self.vq is None:
            self._finish_view(ev, was_quorate)
            return
        vq = self.vq
        self._in_sync = True
        vq.sync_init(ev.transitional, ev.members, ev.ring, self._now)
        self.vq_tracking.nodelist(ev.ring, ev.members)
        sender = 0
        for info in ev.infos:
            # each member's NODEINFO is followed by its qdevice's (nodeid 0)
            sender = info.nodeid or sender
            if len(ev.members) > 1 and info.flags & NodeFlag.FIRST:
                # Corosync sends NODEINFO after sync_init cleared FIRST
                info = replace(info, flags=info.flags & ~NodeFlag.FIRST)
            vq.deliver_nodeinfo(info, self._now, sender=sender)
        # Members whose device was alive (by the INSTALL, the same on every member) end
        # their sync step with QdeviceSynced once their device polled with this ring;
        # we activate after all of them (Corosync's sync barrier waits the same way).
        waiting_for = {i.nodeid for i in ev.infos
                       if i.nodeid and i.flags & _QDEVICE_WAITING == _QDEVICE_WAITING}
        if vq.sync_waiting:
            waiting_for.add(self.node_id)
        elif self.node_id in waiting_for:  # our device's timer expired since our JOIN
            self._multicast(QdeviceSynced(ev.ring, vq.local_nodeinfo()))
        if vq.qdevice_name:  # Corosync re-sends the registration in every sync
            self._multicast(QdeviceReg(QdeviceOperation.REGISTER, vq.qdevice_name))
        if waiting_for:
            self._sync_wait = _SyncWait(ev, was_quorate, frozenset(waiting_for), set())
            self._drain_vq()
            self._flush_notifications()  # the device learns the ring it must poll with
            return
        self._activate(ev, was_quorate)

    def _activate(self, ev: mb.ViewInstalled, was_quorate: bool) -> None:
        """votequorum's sync_activate for view ``ev``, then the view is complete."""
        assert self.vq is not None
        self.vq.sync_activate(self._now)
        self._drain_vq()
        self._in_sync = False
        self._finish_view(ev, was_quorate)

    def _maybe_activate(self) -> None:
        """Activate a waiting view once our device and every waited-for member are done."""
        sync = self._sync_wait
        if (sync is None or self.vq is None or self.vq.sync_waiting
                or not sync.waiting_for <= sync.done):
            return
        self._sync_wait = None
        self._activate(sync.view, sync.was_quorate)

    def _finish_view(self, ev: mb.ViewInstalled, was_quorate: bool) -> None:
        members = " ".join(str(m) for m in ev.members)
        self._events.append(LogRecord("notice", "QUORUM", f"Members[{len(ev.members)}]: {members}"))
        if self.quorum.quorate != was_quorate:
            self._log_primary(in_view=True)
        self._events.append(ViewInstalled(ev.ring, ev.members, self.quorum.quorate, ev.infos))
        self.ready = True
        waiting, self._waiting = self._waiting, []
        for conn, cmd in waiting:
            if self._must_wait(cmd):
                self._waiting.append((conn, cmd))
            else:
                self._execute(conn, cmd, self._now)

    def _log_primary(self, *, in_view: bool) -> None:
        text = ("This node is within the primary component and will provide service."
                if self.quorum.quorate else
                "This node is within the non-primary component and will NOT provide any "
                "services.")
        self._events.append(LogRecord("notice", "QUORUM", text))
        if not in_view:  # a view change reports quorate in its ViewInstalled
            self._events.append(
                QuorumChanged(self.quorum.quorate, self._view_ring, self._members))

    def _on_ordered(self, ev: mb.OrderedDelivered) -> None:
        vq = self.vq
        pending = self._vq_requests.pop(ev.request_id, None) if ev.origin == self.node_id else None
        if isinstance(ev.payload, KeyReady):
            self._key_ready.setdefault(ev.payload.fingerprint, set()).add(ev.origin)
            self._check_key_switch()
            return
        if isinstance(ev.payload, ReloadConfig):
            self._events.append(LogRecord(
                "notice", "CFG", f"Config reload requested by node {ev.payload.nodeid}"))
            waiter = None
            if pending is not None and isinstance(pending[1], CfgReload):
                waiter = (pending[0], pending[1])
            self._events.append(ReloadRequested(ev.payload.nodeid, waiter))
            return
        if vq is None:
            return
        error = CsErr.CS_OK
        payload = ev.payload
        own_leaving = False
        if isinstance(payload, Reconfigure):
            vq.deliver_reconfigure(payload, self._now)
        elif isinstance(payload, NodeInfo):
            if payload.nodeid not in (ev.origin, 0):
                # Corosync's members only send their own NODEINFO and their device's
                # (nodeid 0): anything else would grow the node table for nothing
                self.stats["rejected"] += 1
                return
            vq.deliver_nodeinfo(payload, self._now, sender=ev.origin)
            own_leaving = (ev.origin == self.node_id and self._leaving
                           and payload.nodeid == self.node_id
                           and bool(payload.flags & NodeFlag.LEAVING))
        elif isinstance(payload, QdeviceReg):
            own = pending is not None and isinstance(pending[1], VqQdeviceRegister)
            answer = vq.deliver_qdevice_reg(payload, self._now, origin=ev.origin,
                                            own_request=own)
            error = answer if answer is not None else error
        elif isinstance(payload, QdeviceRename):
            vq.deliver_qdevice_rename(payload, self._now)
        elif isinstance(payload, QdeviceSynced) and payload.info.nodeid == ev.origin:
            if payload.ring == vq.ring:  # older rings' states came in a newer INSTALL
                vq.deliver_nodeinfo(payload.info, self._now, sender=ev.origin)
            if self._sync_wait is not None and payload.ring == self._sync_wait.view.ring:
                self._sync_wait.done.add(ev.origin)
        self._drain_vq()
        if pending is not None:
            self._events.append(Replied(pending[0], pending[1], error))
        if ev.origin == self.node_id and ev.request_id == self._fifo_in_flight:
            self._fifo_in_flight = None
            self._multicast_next()
        self._maybe_activate()
        if own_leaving:
            self._send_leave()

    def _multicast(self, payload: OrderedPayload,
                   waiter: tuple[int, Command] | None = None) -> None:
        """Multicast one of votequorum's state messages (NODEINFO, QDEVICE_REG,
        QDEVICE_RECONFIGURE, QdeviceSynced) in agreed order, one at a time.

        Totem delivers each sender's messages in the order it sent them; our sequencer
        orders requests as they reach the representative, so two NODEINFOs sent in a
        row could swap and leave our older flags everywhere.  These messages therefore
        go out one after the other: the next is submitted when the previous one came
        back.  ``waiter`` (connection, command) is answered when it is delivered.
        (RECONFIGURE requests keep their direct path; only a quorum device produces
        messages here.)
        """
        self._fifo.append((payload, waiter))
        self._multicast_next()

    def _multicast_next(self) -> None:
        if self._fifo_in_flight is not None or not self._fifo:
            return
        payload, waiter = self._fifo.pop(0)
        rid = self.membership.submit(payload, self._now)
        self._fifo_in_flight = rid
        if waiter is not None:
            self._vq_requests[rid] = waiter

    def _drain_vq(self) -> None:
        if self.vq is None:
            return
        while (vev := self.vq.next_event()) is not None:
            if isinstance(vev, QuorumNotified):
                before = self.quorum.quorate
                self.quorum.quorum_changed(vev.quorate, self._view_ring, self._members)
                self.vq_tracking.quorum(vev.quorate, vev.nodes)
                self._flush_notifications()
                if before != vev.quorate and not self._in_sync and self.ready:
                    self._log_primary(in_view=False)
            elif isinstance(vev, BarrierPersisted):
                self._stored = replace(self._stored, ev_barrier=vev.value)
                self._persist()
            elif isinstance(vev, NodeinfoBroadcastRequested):
                self._multicast(vev.info)
            elif isinstance(vev, QdeviceBroadcastRequested | ReconfigureRequested):
                self._multicast(vev.payload)
            elif isinstance(vev, SyncWaitEnded):
                self._multicast(QdeviceSynced(self.vq.ring, vev.info))
            elif isinstance(vev, Logged):
                self._events.append(LogRecord(vev.level, "VOTEQ", vev.message))
            elif isinstance(vev, ExpectedVotesNotified):
                self.vq_tracking.expected_votes(vev.expected_votes)
                self._flush_notifications()

    def _flush_notifications(self) -> None:
        for conn, note in self.quorum.take_notifications():
            self._events.append(Notified(conn, note))
        for conn, vnote in self.vq_tracking.take_notifications():
            self._events.append(Notified(conn, vnote))

    def _execute(self, conn: int, cmd: Command, now_ms: int) -> None:
        if isinstance(cmd, QuorumGetType):
            self._reply(conn, cmd, CsErr.CS_OK, self.quorum.gettype(conn, cmd.model))
        elif isinstance(cmd, QuorumGetQuorate):
            self._reply(conn, cmd, CsErr.CS_OK, int(self.quorum.quorate))
        elif isinstance(cmd, QuorumTrackStart):
            err = self.quorum.trackstart(conn, cmd.flags)
            self._flush_notifications()
            self._reply(conn, cmd, err)
        elif isinstance(cmd, QuorumTrackStop):
            self._reply(conn, cmd, self.quorum.trackstop(conn))
        elif isinstance(cmd, CfgReload):
            rid = self.membership.submit(ReloadConfig(self.node_id), now_ms)
            self._vq_requests[rid] = (conn, cmd)
        else:
            self._execute_vq(conn, cmd, now_ms)

    def _execute_vq(self, conn: int, cmd: Command, now_ms: int) -> None:
        vq = self.vq
        if vq is None:
            self._reply(conn, cmd, CsErr.CS_ERR_LIBRARY)
            return
        if isinstance(cmd, VqGetInfo):
            try:
                info = vq.getinfo(cmd.nodeid)
            except CsError as e:
                self._reply(conn, cmd, e.code)
                return
            self._reply(conn, cmd, CsErr.CS_OK, info)
            return
        if isinstance(cmd, VqTrackStart):
            err = self.vq_tracking.trackstart(
                conn, cmd.context, cmd.flags, ring=vq.ring, members=vq.members,
                quorate=vq.quorate, nodes=vq.nodes())
            self._flush_notifications()
            self._reply(conn, cmd, err)
            return
        if isinstance(cmd, VqTrackStop):
            self._reply(conn, cmd, self.vq_tracking.trackstop(conn))
            return
        if isinstance(cmd, VqQdeviceRegister):
            answer = vq.qdevice_register(cmd.name)
            if answer is not None:
                self._reply(conn, cmd, answer)
                return
            self._multicast(QdeviceReg(QdeviceOperation.REGISTER, cmd.name), (conn, cmd))
            return
        if isinstance(cmd, VqQdevicePoll):
            self._reply(conn, cmd, vq.qdevice_poll(cmd.name, cmd.cast_vote, cmd.ring, now_ms))
            return
        if isinstance(cmd, VqQdeviceMasterWins):
            self._reply(conn, cmd, vq.qdevice_master_wins(cmd.name, cmd.allow))
            return
        if isinstance(cmd, VqQdeviceUnregister):
            self._reply(conn, cmd, vq.qdevice_unregister(cmd.name))
            return
        if isinstance(cmd, VqQdeviceUpdate):
            self._reply(conn, cmd, vq.qdevice_update(cmd.old_name, cmd.new_name))
            return
        if isinstance(cmd, VqSetExpected):
            err = vq.check_setexpected(cmd.expected_votes)
            payload = Reconfigure(self.node_id, cmd.expected_votes, ReconfigureParam.EXPECTED_VOTES)
        elif isinstance(cmd, VqSetVotes):
            # nodeid 0 is the qdevice entry server-side (quorumtool defaults to the local id)
            err = vq.check_setvotes(cmd.nodeid, cmd.votes)
            payload = Reconfigure(cmd.nodeid, cmd.votes, ReconfigureParam.NODE_VOTES)
        else:
            err = CsErr.CS_OK
            payload = Reconfigure(self.node_id, 0, ReconfigureParam.CANCEL_WFA)
        if err != CsErr.CS_OK:
            self._reply(conn, cmd, err)
            return
        rid = self.membership.submit(payload, now_ms)
        self._vq_requests[rid] = (conn, cmd)

    def _reply(self, conn: int, cmd: Command, err: CsErr, value: int | VoteQuorumInfo | None = None,
               ) -> None:
        self._events.append(Replied(conn, cmd, err, value))

