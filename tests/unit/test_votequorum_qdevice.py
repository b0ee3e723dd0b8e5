"""votequorum's quorum-device API (spec 4.9, 4.7, 4.4 step 4), on VoteQuorum objects.

A small in-memory ``Bus`` stands in for the engine: every multicast a node asks for
(NODEINFO, QDEVICE_REG, QDEVICE_RECONFIGURE, the end of a sync wait) is delivered to
every member in one agreed order, so the tests see exactly what Corosync's total order
would produce.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pytest

from pyquorum.config.model import ClusterConfig, DeviceConfig, NodeConfig, QuorumConfig
from pyquorum.core.votequorum import (
    Logged,
    NodeinfoBroadcastRequested,
    QdeviceBroadcastRequested,
    QuorumNotified,
    SyncWaitEnded,
    VoteQuorum,
    VoteQuorumInfoFlag,
    VqEvent,
)
from pyquorum.errors import CsErr
from pyquorum.types import RingId
from pyquorum.wire.messages import (
    NodeFlag,
    NodeInfo,
    OrderedPayload,
    QdeviceOperation,
    QdeviceReg,
    QdeviceRename,
    QdeviceSynced,
)

OK = CsErr.CS_OK
ACCESS = CsErr.CS_ERR_ACCESS
NOT_EXIST = CsErr.CS_ERR_NOT_EXIST
MESSAGE_ERROR = CsErr.CS_ERR_MESSAGE_ERROR
INVALID_PARAM = CsErr.CS_ERR_INVALID_PARAM
EXIST = CsErr.CS_ERR_EXIST
TRY_AGAIN = CsErr.CS_ERR_TRY_AGAIN
REG, ALIVE, VOTE, MW = (NodeFlag.QDEVICE_REGISTERED, NodeFlag.QDEVICE_ALIVE,
                        NodeFlag.QDEVICE_CAST_VOTE, NodeFlag.QDEVICE_MASTER_WINS)
TIMEOUT, SYNC_TIMEOUT = 1000, 5000


def config(n: int = 2, *, device: DeviceConfig | None = None, **quorum: object) -> ClusterConfig:
    """``n`` nodes of 1 vote with a ``net`` quorum device (derived votes unless given)."""
    nodes = tuple(NodeConfig(i) for i in range(1, n + 1))
    dev = device if device is not None else DeviceConfig(
        "net", timeout_ms=TIMEOUT, sync_timeout_ms=SYNC_TIMEOUT)
    q = QuorumConfig(provider="corosync_votequorum", device=dev, **quorum)  # type: ignore[arg-type]
    return ClusterConfig(nodes=nodes, quorum=q)


@dataclass
class Bus:
    """VoteQuorum objects of one cluster with an agreed-order multicast between members."""

    cfg: ClusterConfig
    ids: Sequence[int]
    t: int = 0
    seq: int = 4
    members: tuple[int, ...] = ()
    vq: dict[int, VoteQuorum] = field(default_factory=dict)
    events: dict[int, list[VqEvent]] = field(default_factory=dict)
    queue: list[tuple[int, OrderedPayload, bool]] = field(default_factory=list)
    answers: dict[int, CsErr] = field(default_factory=dict)
    delivered: list[tuple[int, OrderedPayload]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for n in self.ids:
            self.vq[n] = VoteQuorum(self.cfg, n, None, self.t)
            self.events[n] = []
        self.view(*self.ids)

    def __getitem__(self, n: int) -> VoteQuorum:
        return self.vq[n]

    @property
    def ring(self) -> RingId:
        return RingId(min(self.members), self.seq)

    def view(self, *members: int) -> None:
        """A new ring of ``members``: sync_init, everyone's NODEINFO, then activation once
        no member waits for its device (a waiting member's end is a QdeviceSynced)."""
        self.seq += 4
        self.members = tuple(sorted(members))
        self.queue.clear()
        for m in self.members:
            self.vq[m].sync_init(self.members, self.members, self.ring, self.t)
        infos = [(m, i) for m in self.members
                 for i in (self.vq[m].local_nodeinfo(), self.vq[m].qdevice_nodeinfo())]
        for m in self.members:
            for sender, info in infos:
                self.vq[m].deliver_nodeinfo(info, self.t, sender=sender)
        self.pump()
        if not any(self.vq[m].sync_waiting for m in self.members):
            self.activate()

    def activate(self) -> None:
        for m in self.members:
            self.vq[m].sync_activate(self.t)
        self.pump()

    def register(self, n: int, name: str = "Qdevice") -> CsErr | None:
        """qdevice_register; a deferred one is multicast and answered by ``pump``."""
        answer = self.vq[n].qdevice_register(name)
        if answer is None:
            self.queue.append((n, QdeviceReg(QdeviceOperation.REGISTER, name), True))
        return answer

    def pump(self) -> None:
        """Collect every node's multicast requests and deliver them in one order."""
        while True:
            for n in self.members:
                for ev in self._drain(n):
                    if isinstance(ev, NodeinfoBroadcastRequested):
                        self.queue.append((n, ev.info, False))
                    elif isinstance(ev, QdeviceBroadcastRequested):
                        self.queue.append((n, ev.payload, False))
                    elif isinstance(ev, SyncWaitEnded):
                        self.queue.append((n, QdeviceSynced(self.vq[n].ring, ev.info), False))
            if not self.queue:
                return
            origin, payload, request = self.queue.pop(0)
            self.delivered.append((origin, payload))
            for m in self.members:
                self._deliver(m, origin, payload, own_request=request and m == origin)

    def _deliver(self, m: int, origin: int, payload: OrderedPayload, *, own_request: bool) -> None:
        vq = self.vq[m]
        if isinstance(payload, NodeInfo):
            vq.deliver_nodeinfo(payload, self.t, sender=origin)
        elif isinstance(payload, QdeviceSynced):
            vq.deliver_nodeinfo(payload.info, self.t, sender=origin)
        elif isinstance(payload, QdeviceReg):
            answer = vq.deliver_qdevice_reg(payload, self.t, origin=origin,
                                            own_request=own_request)
            if answer is not None:
                self.answers[m] = answer
        elif isinstance(payload, QdeviceRename):
            vq.deliver_qdevice_rename(payload, self.t)

    def _drain(self, n: int) -> list[VqEvent]:
        out = []
        while (ev := self.vq[n].next_event()) is not None:
            out.append(ev)
        self.events[n] += out
        return [ev for ev in out if not isinstance(ev, Logged)]

    def take(self, n: int) -> list[VqEvent]:
        self.pump()
        evs, self.events[n] = self.events[n], []
        return [ev for ev in evs if not isinstance(ev, Logged)]

    def poll(self, n: int, cast_vote: int = 1, name: str = "Qdevice",
             ring: RingId | None = None) -> CsErr:
        answer = self.vq[n].qdevice_poll(name, cast_vote, ring or self.ring, self.t)
        self.pump()
        return answer

    def advance(self, ms: int) -> None:
        """Run every node's timers up to ``t + ms`` (each at its deadline)."""
        end = self.t + ms
        while True:
            due = [(d, n) for n in self.members
                   if (d := self.vq[n].get_timer()) is not None and d <= end]
            if not due:
                break
            self.t, n = min(due)
            self.vq[n].handle_timer(self.t)
            self.pump()
        self.t = end

    def flags(self, n: int) -> int:
        return self.vq[n].local_nodeinfo().flags


def registered_bus(n: int = 2, **kwargs: object) -> Bus:
    bus = Bus(config(n, **kwargs), list(range(1, n + 1)))  # type: ignore[arg-type]
    for node in bus.members:
        assert bus.register(node) is None
        bus.pump()
        assert bus.answers.pop(node) == OK
    return bus


def quorum_flips(events: list[VqEvent]) -> list[bool]:
    return [ev.quorate for ev in events if isinstance(ev, QuorumNotified)]


# ====================================================================== votes (4.2 #13)
@pytest.mark.parametrize(("n", "device", "want_votes", "want_expected"), [
    (2, DeviceConfig("net"), 1, 3),
    (3, DeviceConfig("net"), 2, 5),
    (3, DeviceConfig("net", votes=1), 1, 4),
])
def test_device_votes_come_from_config_or_derivation(
        n: int, device: DeviceConfig, want_votes: int, want_expected: int) -> None:
    bus = Bus(config(n, device=device), list(range(1, n + 1)))
    for node in bus.members:
        assert bus[node].qdevice_votes == want_votes
        assert bus[node].expected_votes == want_expected
        info = bus[node].getinfo(0)
        assert (info.qdevice_votes, info.qdevice_name) == (want_votes, "")
        assert not info.flags & VoteQuorumInfoFlag.QDEVICE_REGISTERED


def test_no_device_configured_registers_with_zero_votes() -> None:
    cfg = replace(config(2), quorum=replace(config(2).quorum, device=None))
    bus = Bus(cfg, [1, 2])
    assert bus.register(1) is None
    bus.pump()
    assert bus.answers[1] == OK
    assert bus[1].qdevice_votes == 0 and bus[1].qdevice_registered


# ====================================================================== register
def test_register_return_codes_in_order() -> None:
    bus = Bus(config(2), [1, 2])
    assert bus.register(1, "Qdevice") is None  # deferred: multicast, answered on delivery
    assert bus.vq[1].qdevice_register("Qdevice") == TRY_AGAIN  # one in flight
    assert bus.vq[1].qdevice_register("Other") == TRY_AGAIN
    assert not bus[1].qdevice_registered
    bus.pump()
    assert bus.answers.pop(1) == OK
    assert bus[1].qdevice_registered and bus.flags(1) & REG
    assert bus.vq[1].qdevice_register("Qdevice") == OK  # same name: a no-op
    assert bus.vq[1].qdevice_register("Other") == EXIST
    assert not bus.queue
    # every node recorded the name; node 2's device is not registered
    assert [bus[n].qdevice_name for n in (1, 2)] == ["Qdevice", "Qdevice"]
    assert not bus[2].qdevice_registered
    assert bus[2].getinfo(1).flags & VoteQuorumInfoFlag.QDEVICE_REGISTERED


def test_register_multicasts_qdevice_then_our_nodeinfo_and_does_not_vote() -> None:
    bus = Bus(config(2), [1, 2])
    bus.register(1)
    bus.pump()
    infos = [p for o, p in bus.delivered if o == 1 and isinstance(p, NodeInfo)]
    assert infos[-2:] == [NodeInfo(0, 1, 0, 0), bus[1].local_nodeinfo()]
    assert bus[1].total_votes == 2  # a registered device does not vote until it polls
    assert bus[1].nodes() == ((1, 1), (2, 1), (0, 0))  # the qdevice entry, state 0
    assert bus[2].nodes() == ((1, 1), (2, 1))


def test_register_when_disabled_by_config_is_access() -> None:
    # two_node with a device: the runtime fallback disables the device (4.2 #2)
    bus = Bus(config(2, two_node=True), [1, 2])
    assert bus.register(1) == ACCESS
    assert bus[1].runtime_keys()["qdevice_can_operate"] == 0
    assert bus[1].qdevice_poll("Qdevice", 1, bus.ring, 0) == ACCESS
    assert bus[1].qdevice_master_wins("Qdevice", 1) == ACCESS
    assert bus[1].qdevice_unregister("Qdevice") == NOT_EXIST  # no ACCESS check
    assert bus[1].qdevice_update("Qdevice", "x") == NOT_EXIST


def test_name_clash_second_node_gets_exist() -> None:
    bus = Bus(config(3), [1, 2, 3])
    bus.register(2, "A")
    bus.register(3, "B")  # both in flight: A is delivered first
    bus.pump()
    assert bus.answers == {2: OK, 3: EXIST}
    assert [bus[n].qdevice_name for n in (1, 2, 3)] == ["A", "A", "A"]
    assert bus[2].qdevice_registered and not bus[3].qdevice_registered
    bus.answers.clear()
    assert bus.register(3, "A") is None  # the cluster-wide name registers fine
    bus.pump()
    assert bus.answers == {3: OK}


def test_remote_registration_only_records_the_name() -> None:
    bus = Bus(config(2), [1, 2])
    bus.queue.append((2, QdeviceReg(QdeviceOperation.REGISTER, "X"), False))  # a sync re-send
    bus.pump()
    assert bus[1].qdevice_name == "X" and not bus[1].qdevice_registered
    bus.queue.append((2, QdeviceReg(QdeviceOperation.REGISTER, "Y"), False))
    bus.pump()
    assert bus[1].qdevice_name == "X"  # only recorded when none is
    assert bus[2].qdevice_name == "" and bus.answers == {}  # own message without a request


# ====================================================================== poll
def test_poll_return_codes_in_the_specified_order() -> None:
    bus = Bus(config(2), [1, 2])
    stale = RingId(1, 1)
    # not registered beats a stale ring and a wrong name
    assert bus.poll(1, 1, "Wrong", stale) == NOT_EXIST
    bus.register(1)
    bus.pump()
    # a stale ring beats a wrong name; the poll is ignored
    assert bus.poll(1, 1, "Wrong", stale) == MESSAGE_ERROR
    assert int(MESSAGE_ERROR) == 22
    assert not bus.flags(1) & ALIVE and bus[1].get_timer() is None
    assert bus.poll(1, 1, "Wrong") == INVALID_PARAM
    assert not bus.flags(1) & ALIVE
    assert bus.poll(1, 1) == OK
    assert bus.flags(1) & (ALIVE | VOTE) == ALIVE | VOTE


def test_poll_when_disabled_is_access_first() -> None:
    bus = Bus(config(2, last_man_standing=True), [1, 2])  # 4.2 #9 runtime fallback
    assert bus[1].qdevice_poll("", 1, RingId(9, 9), 0) == ACCESS


def test_poll_sets_flags_multicasts_on_change_and_rearms_the_timer() -> None:
    bus = registered_bus()
    bus.take(1)
    bus.t = 100
    assert bus.poll(1, cast_vote=1) == OK
    assert bus[1].get_timer() == 100 + TIMEOUT
    sent = [ev for ev in bus.take(1) if isinstance(ev, NodeinfoBroadcastRequested)]
    assert [ev.info.flags & (ALIVE | VOTE) for ev in sent] == [ALIVE | VOTE]
    bus.t = 400
    assert bus.poll(1, cast_vote=1) == OK  # no flag change: no multicast, timer re-armed
    assert not [ev for ev in bus.take(1) if isinstance(ev, NodeinfoBroadcastRequested)]
    assert bus[1].get_timer() == 400 + TIMEOUT
    assert bus.poll(1, cast_vote=0) == OK  # vote withdrawn: ALIVE stays
    assert bus.flags(1) & (ALIVE | VOTE) == ALIVE
    assert [ev.info.flags & (ALIVE | VOTE) for ev in bus.take(1)
            if isinstance(ev, NodeinfoBroadcastRequested)] == [ALIVE]


def test_cast_vote_counts_only_on_the_casting_node() -> None:
    bus = registered_bus(3)  # device votes 2, expected 5, quorum 3
    assert bus.poll(1, cast_vote=1) == OK
    assert bus.poll(2, cast_vote=0) == OK
    assert bus[1].total_votes == 5
    assert bus[2].total_votes == 3 and bus[3].total_votes == 3
    # getinfo: total_votes adds the device votes when *that* node casts them
    assert bus[2].getinfo(1).total_votes == 5
    assert bus[2].getinfo(0).total_votes == 3
    assert bus[3].getinfo(1).flags & VoteQuorumInfoFlag.QDEVICE_CAST_VOTE
    assert not bus[3].getinfo(2).flags & VoteQuorumInfoFlag.QDEVICE_CAST_VOTE
    assert bus[3].getinfo(2).flags & VoteQuorumInfoFlag.QDEVICE_ALIVE
    assert [bus[n].quorum for n in (1, 2, 3)] == [3, 3, 3]


def test_device_vote_keeps_the_survivor_quorate() -> None:
    bus = registered_bus(2)  # 1 + 1 + device 1, quorum 2
    bus.poll(1)
    bus.poll(2)
    assert all(bus[n].quorate for n in (1, 2))
    bus.take(1)
    bus.view(1)  # node 2 died; node 1 waits for its device's poll with the new ring
    assert bus[1].sync_waiting
    assert bus.poll(1) == OK
    assert not bus[1].sync_waiting
    bus.activate()
    assert bus[1].quorate and bus[1].total_votes == 2
    assert quorum_flips(bus.take(1)) == [True]  # the activation's event


def test_timeout_clears_alive_and_cast_vote_and_stays_registered() -> None:
    bus = registered_bus(2)
    bus.view(1)
    bus.activate()
    assert not bus[1].quorate  # alone, no device vote
    bus.t = 50
    bus.poll(1)
    assert bus[1].quorate
    bus.take(1)
    bus.advance(TIMEOUT - 1)
    assert bus.flags(1) & VOTE and bus[1].quorate
    bus.advance(1)  # t = 50 + TIMEOUT
    assert bus.flags(1) & (REG | ALIVE | VOTE) == REG
    assert bus[1].get_timer() is None
    events = bus.take(1)
    sent = [ev.info for ev in events if isinstance(ev, NodeinfoBroadcastRequested)]
    assert [i.flags & (REG | ALIVE | VOTE) for i in sent] == [REG]
    assert quorum_flips(events) == [False]  # recomputed when the NODEINFO came back
    assert bus[1].qdevice_registered and bus[1].qdevice_name == "Qdevice"
    assert bus.poll(1) == OK and bus[1].quorate  # a later poll brings the vote back


# ====================================================================== sync wait (4.7)
def test_sync_waits_for_a_poll_with_the_new_ring() -> None:
    bus = registered_bus(2)
    bus.poll(1)
    bus.poll(2)
    old_ring = bus.ring
    bus.t = 1000
    bus.view(1, 2)
    assert bus[1].sync_waiting and bus[2].sync_waiting
    assert bus[1].get_timer() == 1000 + SYNC_TIMEOUT  # the poll timer became sync_timeout
    assert bus.poll(1, ring=old_ring) == MESSAGE_ERROR and bus[1].sync_waiting
    bus.take(1)
    bus.t = 1200
    assert bus.poll(1) == OK
    assert not bus[1].sync_waiting
    ended = [ev for ev in bus.take(1) if isinstance(ev, SyncWaitEnded | NodeinfoBroadcastRequested)]
    assert ended == [SyncWaitEnded(bus[1].local_nodeinfo())]  # instead of a NODEINFO
    assert bus[1].get_timer() == 1200 + TIMEOUT


def test_sync_timeout_withdraws_the_vote_and_ends_the_wait() -> None:
    bus = registered_bus(2)
    bus.poll(1)
    bus.t = 100
    bus.view(1)
    assert bus[1].sync_waiting
    bus.advance(SYNC_TIMEOUT - 1)
    assert bus[1].sync_waiting
    bus.take(1)
    bus.advance(1)
    assert not bus[1].sync_waiting
    ended = [ev for ev in bus.take(1) if isinstance(ev, SyncWaitEnded)]
    assert len(ended) == 1 and ended[0].info.flags & (REG | ALIVE | VOTE) == REG
    bus.activate()
    assert not bus[1].quorate


def test_no_sync_wait_without_an_alive_registered_device() -> None:
    bus = registered_bus(2)  # registered, never polled
    bus.view(1, 2)
    assert not bus[1].sync_waiting
    bus2 = Bus(config(2), [1, 2])
    bus2.view(1)
    assert not bus2[1].sync_waiting and bus2[1].get_timer() is None


def test_unregister_during_the_sync_wait_ends_it() -> None:
    bus = registered_bus(2)
    bus.poll(1)
    bus.view(1, 2)
    bus.take(1)
    assert bus[1].qdevice_unregister("Qdevice") == OK
    assert not bus[1].sync_waiting and bus[1].get_timer() is None
    events = [ev for ev in bus.take(1)
              if isinstance(ev, SyncWaitEnded | NodeinfoBroadcastRequested
                            | QdeviceBroadcastRequested)]
    assert [type(ev) for ev in events] == [SyncWaitEnded, QdeviceBroadcastRequested]


# ====================================================================== master_wins (4.4 step 4)
def test_master_wins_return_codes_and_flag() -> None:
    bus = Bus(config(2), [1, 2])
    assert bus[1].qdevice_master_wins("Qdevice", 1) == NOT_EXIST
    bus.register(1)
    bus.pump()
    assert bus[1].qdevice_master_wins("Wrong", 1) == INVALID_PARAM
    bus.take(1)
    assert bus[1].qdevice_master_wins("Qdevice", 1) == OK
    assert bus.flags(1) & MW and bus[1].master_wins
    assert bus[1].runtime_keys()["qdevice_master_wins"] == 1
    assert len([ev for ev in bus.take(1) if isinstance(ev, NodeinfoBroadcastRequested)]) == 1
    assert bus[1].qdevice_master_wins("Qdevice", 1) == OK  # unchanged: no multicast
    assert not [ev for ev in bus.take(1) if isinstance(ev, NodeinfoBroadcastRequested)]
    assert bus[2].getinfo(1).flags & VoteQuorumInfoFlag.QDEVICE_MASTER_WINS
    assert bus[1].qdevice_master_wins("Qdevice", 0) == OK
    assert not bus.flags(1) & MW and bus[1].runtime_keys()["qdevice_master_wins"] == 0


def test_master_wins_makes_the_casting_partition_quorate() -> None:
    # 4 nodes, device votes 1: expected 5, quorum 3; node 1 alone with the vote has 2
    bus = registered_bus(4, device=DeviceConfig("net", votes=1, timeout_ms=TIMEOUT,
                                                sync_timeout_ms=SYNC_TIMEOUT))
    bus.view(1)
    bus.activate()
    bus.poll(1)
    assert bus[1].total_votes == 2 and bus[1].quorum == 3 and not bus[1].quorate
    bus.take(1)
    assert bus[1].qdevice_master_wins("Qdevice", 1) == OK
    bus.pump()
    assert bus[1].quorate
    assert quorum_flips(bus.take(1)) == [True]
    bus.poll(1, cast_vote=0)  # master_wins needs MASTER_WINS *and* CAST_VOTE
    assert not bus[1].quorate


def test_master_wins_counts_another_members_flags() -> None:
    bus = registered_bus(4, device=DeviceConfig("net", votes=1, timeout_ms=TIMEOUT,
                                                sync_timeout_ms=SYNC_TIMEOUT))
    bus.view(1, 2)
    bus.activate()
    assert not bus[1].quorate  # 2 votes of quorum 3
    bus[1].qdevice_master_wins("Qdevice", 1)  # the override is enabled on node 1 ...
    bus.pump()
    assert not bus[1].quorate
    bus.poll(2)  # ... and node 2 casts its vote with MASTER_WINS set
    bus[2].qdevice_master_wins("Qdevice", 1)
    bus.pump()
    assert bus[2].quorate  # 3 votes (its own device)
    assert bus[1].quorate  # 2 votes, but a member is the master


# ====================================================================== unregister / update
def test_unregister_return_codes_and_effect() -> None:
    bus = registered_bus(2)
    bus.poll(1)
    bus[1].qdevice_master_wins("Qdevice", 1)
    bus.pump()
    assert bus[1].qdevice_unregister("Wrong") == INVALID_PARAM
    bus.take(1)
    assert bus[1].qdevice_unregister("Qdevice") == OK
    assert bus.flags(1) & (REG | ALIVE | VOTE | MW) == 0
    assert bus[1].get_timer() is None
    events = [ev for ev in bus.take(1)
              if isinstance(ev, NodeinfoBroadcastRequested | QdeviceBroadcastRequested)]
    assert [type(ev) for ev in events] == [NodeinfoBroadcastRequested, QdeviceBroadcastRequested]
    assert events[1] == QdeviceBroadcastRequested(
        QdeviceReg(QdeviceOperation.UNREGISTER, "Qdevice"))
    assert bus[1].qdevice_unregister("Qdevice") == NOT_EXIST
    # node 2's device is still registered: the name stays recorded everywhere
    assert [bus[n].qdevice_name for n in (1, 2)] == ["Qdevice", "Qdevice"]
    assert bus[2].nodes()[-1] == (0, 0) and bus[1].nodes()[-1] != (0, 0)
    assert bus[2].qdevice_unregister("Qdevice") == OK
    bus.pump()
    assert [bus[n].qdevice_name for n in (1, 2)] == ["", ""]  # the last one wipes it


def test_update_renames_on_every_node_when_old_name_matches() -> None:
    bus = registered_bus(2)
    assert bus[1].qdevice_update("Qdevice", "New") == OK
    bus.pump()
    assert [bus[n].qdevice_name for n in (1, 2)] == ["New", "New"]
    assert bus.poll(1, name="Qdevice") == INVALID_PARAM
    assert bus.poll(1, name="New") == OK
    assert bus[1].qdevice_update("Qdevice", "X") == INVALID_PARAM
    bus.queue.append((2, QdeviceRename("Other", "Y"), False))  # a rename of another name
    bus.pump()
    assert bus[1].qdevice_name == "New"
    assert bus[1].qdevice_unregister("New") == OK
    assert bus[1].qdevice_update("New", "Z") == NOT_EXIST
