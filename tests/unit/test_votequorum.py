"""votequorum arithmetic and state (spec 4.2-4.8): scenarios with exact values, plus a
Hypothesis comparison against the independent reference in ``vq_reference.py``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pytest
import vq_reference as ref
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pyquorum.config.model import ClusterConfig, DeviceConfig, NodeConfig, QuorumConfig
from pyquorum.core.votequorum import (
    AtbMode,
    BarrierPersisted,
    ExpectedVotesNotified,
    Logged,
    NodeState,
    QuorumNotified,
    VoteQuorum,
    VoteQuorumInfoFlag,
    VqEvent,
    parse_atb_string,
)
from pyquorum.errors import CsErr, CsError
from pyquorum.types import RingId
from pyquorum.wire.messages import NodeFlag, NodeInfo, Reconfigure, ReconfigureParam

LMS_WINDOW = 10000


# ====================================================================== helpers
def make_config(
    votes: Sequence[int] | int = 3, *, ids: Sequence[int] | None = None, **quorum: object
) -> ClusterConfig:
    """A nodelist config: ``votes`` is a node count or per-node votes (ids 1..n)."""
    vote_list = [1] * votes if isinstance(votes, int) else list(votes)
    node_ids = list(ids) if ids is not None else list(range(1, len(vote_list) + 1))
    nodes = tuple(NodeConfig(i, quorum_votes=v) for i, v in zip(node_ids, vote_list, strict=True))
    quorum.setdefault("provider", "corosync_votequorum")
    return ClusterConfig(nodes=nodes, quorum=QuorumConfig(**quorum))  # type: ignore[arg-type]


def drain(vq: VoteQuorum) -> list[VqEvent]:
    events = []
    while (ev := vq.next_event()) is not None:
        events.append(ev)
    return events


def quorum_events(events: Iterable[VqEvent]) -> list[tuple[bool, int]]:
    return [(e.quorate, e.quorum) for e in events if isinstance(e, QuorumNotified)]


def peer(nodeid: int, votes: int = 1, expected: int = 3, flags: int = 0) -> NodeInfo:
    return NodeInfo(nodeid, votes, expected, flags)


def single_view(
    vq: VoteQuorum,
    members: Sequence[int],
    others: dict[int, NodeInfo] | None = None,
    *,
    seq: int = 4,
    t: int = 0,
) -> list[VqEvent]:
    """Drive one node through a view; ``others`` holds the NodeInfo of the other members."""
    others = others or {}
    members = sorted(members)
    vq.sync_init(members, members, RingId(min(members), seq), t)
    for m in members:
        info = vq.local_nodeinfo() if m == vq.node_id else others[m]
        vq.deliver_nodeinfo(info, t, sender=m)
        if m == vq.node_id:
            vq.deliver_nodeinfo(vq.qdevice_nodeinfo(), t, sender=m)
    vq.sync_activate(t)
    return drain(vq)


@dataclass
class Cluster:
    """A handful of VoteQuorum objects exchanging their real NODEINFOs per view."""

    config: ClusterConfig
    t: int = 0
    seq: int = 0
    vq: dict[int, VoteQuorum] = field(default_factory=dict)
    barriers: dict[int, int | None] = field(default_factory=dict)
    groups: list[list[int]] = field(default_factory=list)
    events: dict[int, list[VqEvent]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for n in self.config.nodes:
            self.start(n.nodeid)

    def start(self, nodeid: int) -> VoteQuorum:
        vq = VoteQuorum(self.config, nodeid, self.barriers.get(nodeid), self.t)
        self.vq[nodeid] = vq
        self.events[nodeid] = []
        self._drain(nodeid)
        return vq

    def _drain(self, nodeid: int) -> None:
        for ev in drain(self.vq[nodeid]):
            if isinstance(ev, BarrierPersisted):
                self.barriers[nodeid] = ev.value
            self.events[nodeid].append(ev)

    def take(self, nodeid: int) -> list[VqEvent]:
        evs, self.events[nodeid] = self.events[nodeid], []
        return evs

    def __getitem__(self, nodeid: int) -> VoteQuorum:
        return self.vq[nodeid]

    def view(self, *groups: Sequence[int], restarted: Iterable[int] = ()) -> None:
        for nodeid in restarted:
            self.start(nodeid)
        self.seq += 4
        self.groups = [sorted(g) for g in groups]
        for members in self.groups:
            ring = RingId(members[0], self.seq)
            for m in members:
                self.vq[m].sync_init(members, members, ring, self.t)
            infos = [
                (m, self.vq[m].local_nodeinfo(), self.vq[m].qdevice_nodeinfo()) for m in members
            ]
            for m in members:
                for sender, info, qinfo in infos:
                    self.vq[m].deliver_nodeinfo(info, self.t, sender=sender)
                    self.vq[m].deliver_nodeinfo(qinfo, self.t, sender=sender)
            for m in members:
                self.vq[m].sync_activate(self.t)
                self._drain(m)

    def group_of(self, nodeid: int) -> list[int]:
        return next(g for g in self.groups if nodeid in g)

    def reconfigure(self, origin: int, param: ReconfigureParam, nodeid: int, value: int) -> None:
        msg = Reconfigure(nodeid, value, int(param))
        for m in self.group_of(origin):
            self.vq[m].deliver_reconfigure(msg, self.t)
            self._drain(m)

    def leave(self, nodeid: int) -> None:
        """Clean shutdown with allow_downscale: LEAVING NODEINFO to the others."""
        info = self.vq[nodeid].leaving_nodeinfo()
        assert info is not None
        for m in self.group_of(nodeid):
            if m != nodeid:
                self.vq[m].deliver_nodeinfo(info, self.t, sender=nodeid)
                self._drain(m)
        self.groups = [[m for m in g if m != nodeid] for g in self.groups]
        self.groups = [g for g in self.groups if g]

    def advance(self, ms: int) -> None:
        self.t += ms
        for nodeid, vq in self.vq.items():
            deadline = vq.get_timer()
            if deadline is not None and deadline <= self.t:
                vq.handle_timer(self.t)
                self._drain(nodeid)

    def eq(self, nodeid: int) -> tuple[int, int]:
        """(expected votes, quorum) of a node."""
        return self.vq[nodeid].expected_votes, self.vq[nodeid].quorum


# ====================================================================== arithmetic
MAJORITY = {1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4, 8: 5}


@pytest.mark.parametrize(("expected", "quorum"), sorted(MAJORITY.items()))
def test_majority_table(expected: int, quorum: int) -> None:
    vq = VoteQuorum(make_config(1, expected_votes=expected), 1, None, 0)
    assert vq.quorum == quorum
    assert ref.majority(expected) == quorum
    assert vq.quorate is (expected <= 2 and quorum <= 1)


@pytest.mark.parametrize(("expected", "quorum"), sorted(MAJORITY.items()))
def test_majority_table_without_nodelist(expected: int, quorum: int) -> None:
    config = ClusterConfig(
        quorum=QuorumConfig(provider="corosync_votequorum", expected_votes=expected, votes=1)
    )
    vq = VoteQuorum(config, 7, None, 0)
    assert (vq.expected_votes, vq.quorum, vq.votes) == (expected, quorum, 1)


def test_total_votes_majority_wins_over_expected() -> None:
    # 3 nodes with 3 votes each, expected 3: quorum follows the votes present (9 -> 5)
    c = Cluster(make_config([3, 3, 3], expected_votes=3))
    c.view([1, 2, 3])
    assert c.eq(1) == (9, 5)
    assert c[1].quorate


def test_no_decrease_clamp_and_expected_only_rises() -> None:
    c = Cluster(make_config(5))
    c.view([1, 2, 3, 4, 5])
    assert c.eq(1) == (5, 3)
    c.view([1, 2, 3])
    assert c.eq(1) == (5, 3)
    assert c[1].quorate
    c.view([1, 2])
    assert c.eq(1) == (5, 3)
    assert not c[1].quorate
    # the node table keeps the dead entries
    assert c[1].nodes() == ((1, 1), (2, 1), (3, 2), (4, 2), (5, 2))


def test_expected_auto_raise_emits_event() -> None:
    config = ClusterConfig(quorum=QuorumConfig(provider="corosync_votequorum", expected_votes=2))
    vq = VoteQuorum(config, 1, None, 0)
    drain(vq)
    events = single_view(vq, [1, 2, 3], {2: peer(2, expected=2), 3: peer(3, expected=2)})
    assert vq.expected_votes == 3
    assert vq.quorum == 2
    assert ExpectedVotesNotified(3) in events
    # a view with fewer nodes never lowers it
    single_view(vq, [1], seq=8)
    assert vq.expected_votes == 3


def test_two_node_override_after_clamp() -> None:
    c = Cluster(make_config(2, two_node=True))
    c.view([1, 2])
    assert c.eq(1) == (2, 1)
    assert c[1].quorate and c[2].quorate
    c.view([1], [2])  # split: both halves stay quorate
    assert c.eq(1) == (2, 1)
    assert c[1].quorate and c[2].quorate


def test_two_node_with_three_members_uses_normal_arithmetic() -> None:
    vq = VoteQuorum(make_config(2, two_node=True, wait_for_all=False), 1, None, 0)
    single_view(vq, [1, 2, 3], {2: peer(2, expected=2), 3: peer(3, expected=2)})
    assert (vq.expected_votes, vq.quorum) == (3, 2)
    assert vq.getinfo(0).flags & VoteQuorumInfoFlag.TWONODE
    single_view(vq, [1, 2], {2: peer(2, expected=3, flags=NodeFlag.QUORATE)}, seq=8)
    assert vq.quorum == 1


# ====================================================================== stories
def test_three_nodes_kill_one_stays_quorate() -> None:
    c = Cluster(make_config(3))
    c.view([1, 2, 3])
    assert [c[i].quorate for i in (1, 2, 3)] == [True] * 3
    assert c.eq(1) == (3, 2)
    c.view([1, 2])
    assert c[1].quorate and c[2].quorate
    assert c.eq(1) == (3, 2)
    assert c[1].total_votes == 2
    assert quorum_events(c.take(1))[-1] == (True, 2)


def test_five_nodes_split_two_three() -> None:
    c = Cluster(make_config(5))
    c.view([1, 2, 3, 4, 5])
    c.view([1, 2, 3], [4, 5])
    assert all(c[i].quorate for i in (1, 2, 3))
    assert not any(c[i].quorate for i in (4, 5))
    assert c.eq(4) == (5, 3)
    assert quorum_events(c.take(4))[-1] == (False, 3)


def test_two_node_cold_start_waits_for_peer() -> None:
    c = Cluster(make_config(2, two_node=True))
    assert c[1].wait_for_all and c[1].wait_for_all_status
    c.view([1])
    assert not c[1].quorate
    assert c[1].quorum == 1
    assert any(
        isinstance(e, Logged) and "Waiting for all cluster members" in e.message for e in c.take(1)
    )
    c.view([1, 2])
    assert c[1].quorate and not c[1].wait_for_all_status
    c.view([1])  # the survivor keeps quorum
    assert c[1].quorate
    assert c.eq(1) == (2, 1)


def test_two_node_without_wfa_single_node_is_quorate() -> None:
    vq = VoteQuorum(make_config(2, two_node=True, wait_for_all=False), 1, None, 0)
    assert vq.quorate and vq.quorum == 1
    # the flip at startup is notified (outside sync)
    assert quorum_events(drain(vq)) == [(True, 1)]


def test_wait_for_all_three_nodes() -> None:
    c = Cluster(make_config(3, wait_for_all=True))
    c.view([1, 2], [3])
    assert not c[1].quorate and not c[2].quorate
    assert c[1].quorum == 2 and c[1].total_votes == 2
    c.view([1, 2, 3])
    assert all(c[i].quorate for i in (1, 2, 3))
    c.view([1, 2], [3])  # survives losing one
    assert c[1].quorate and c[2].quorate
    assert not c[3].quorate and c[3].wait_for_all_status  # WFA re-armed when inquorate
    c.view([1], [2], [3])
    assert not c[1].quorate and c[1].wait_for_all_status
    c.view([1, 2], [3])  # needs all 3 again
    assert not c[1].quorate and not c[2].quorate
    c.view([1, 2, 3])
    assert c[1].quorate


def test_wfa_cleared_by_quorate_non_waiting_node() -> None:
    c = Cluster(make_config(3, wait_for_all=True))
    c.view([1, 2, 3])
    c.view([1, 2])
    node3 = c.start(3)  # restarts cold: waiting
    assert node3.wait_for_all_status
    c.view([1, 2, 3])
    assert node3.quorate and not node3.wait_for_all_status
    # Order matters inside a sync: every NODEINFO triggers a recalculation.  In
    # [1,2],[3] -> [2,3],[1], node 2 first sees only its own NODEINFO (3 is still DEAD
    # in its table), drops to 1 vote, goes inquorate and re-arms WFA; node 3 sees the
    # quorate, non-waiting node 2 first, which clears its WFA, and ends up quorate.
    c.view([1, 2], [3])
    assert c[3].wait_for_all_status
    c.view([2, 3], [1])
    assert c[3].quorate and not c[3].wait_for_all_status
    assert not c[2].quorate and c[2].wait_for_all_status


def test_cancel_wait_for_all() -> None:
    c = Cluster(make_config(3, wait_for_all=True))
    c.view([1, 2], [3])
    assert not c[1].quorate
    c.take(1)
    c.reconfigure(1, ReconfigureParam.CANCEL_WFA, 1, 0)
    assert c[1].quorate and c[2].quorate
    events = c.take(1)
    assert quorum_events(events) == [(True, 2)]  # outside sync: the flip is notified
    assert Logged("info", "wait_for_all_status reset by user on node 1.") in events


def test_last_man_standing_five_to_two() -> None:
    c = Cluster(make_config(5, last_man_standing=True, last_man_standing_window_ms=LMS_WINDOW))
    c.view([1, 2, 3, 4, 5])
    assert c.eq(1) == (5, 3)
    steps = [([1, 2, 3, 4], (4, 3)), ([1, 2, 3], (3, 2)), ([1, 2], (2, 2))]
    for members, after in steps:
        c.view(members)
        assert c[1].get_timer() == c.t + LMS_WINDOW
        assert c[1].quorate
        c.advance(LMS_WINDOW - 1)
        assert c[1].get_timer() is not None
        c.advance(1)
        assert c[1].get_timer() is None
        assert c.eq(1) == after
        assert all(c.eq(m) == after for m in members)
    c.view([1])  # one node left alone without ATB: inquorate
    assert not c[1].quorate


def test_last_man_standing_eight_five_three_two() -> None:
    c = Cluster(make_config(8, last_man_standing=True))
    c.view(range(1, 9))
    assert c.eq(1) == (8, 5)
    for members, after in [(range(1, 6), (5, 3)), (range(1, 4), (3, 2)), (range(1, 3), (2, 2))]:
        c.view(members)
        assert c[1].quorate
        c.advance(LMS_WINDOW)
        assert c.eq(1) == after


def test_last_man_standing_down_to_one_with_atb() -> None:
    c = Cluster(make_config(2, last_man_standing=True, auto_tie_breaker=True))
    c.view([1, 2])
    assert c.eq(1) == (2, 2)
    c.view([1], [2])
    assert c[1].quorate and not c[2].quorate  # ATB lowest
    assert c[1].get_timer() is not None
    c.advance(LMS_WINDOW)
    assert c.eq(1) == (1, 1)


def test_last_man_standing_no_expiry_when_inquorate() -> None:
    c = Cluster(make_config(5, last_man_standing=True))
    c.view([1, 2, 3, 4, 5])
    c.view([1, 2, 3], [4, 5])
    assert c[4].get_timer() is None  # 2 members < quorum 3
    assert c[1].get_timer() is not None
    c.advance(LMS_WINDOW)
    assert c.eq(1) == (3, 2)
    assert c.eq(4) == (5, 3)


def test_last_man_standing_disabled_by_heavy_node() -> None:
    c = Cluster(make_config([1, 1, 2], last_man_standing=True))
    assert c[1].lms_enabled
    c.view([1, 2, 3])
    assert not c[1].lms_enabled
    assert not c[1].getinfo(0).flags & VoteQuorumInfoFlag.LAST_MAN_STANDING
    assert any(
        isinstance(e, Logged) and e.level == "warning" and "Disabling LMS" in e.message
        for e in c.take(1)
    )
    c.view([1, 3])
    assert c[1].get_timer() is None


def test_lms_disable_cancels_armed_timer() -> None:
    vq = VoteQuorum(make_config(5, last_man_standing=True), 1, None, 0)
    single_view(vq, [1, 2, 3, 4, 5], {i: peer(i, expected=5) for i in (2, 3, 4, 5)})
    vq.sync_init([1, 2, 3, 4], [1, 2, 3, 4], RingId(1, 8), 100)
    assert vq.get_timer() == 100 + LMS_WINDOW
    vq.deliver_nodeinfo(peer(2, votes=2, expected=5, flags=NodeFlag.QUORATE), 100, sender=2)
    assert vq.get_timer() is None and not vq.lms_enabled


@pytest.mark.parametrize(
    ("atb_node", "winner"),
    [("lowest", {1, 2}), ("highest", {3, 4}), ("3 1", {3, 4}), ("2 4", {1, 2}), ("4", {3, 4})],
)
def test_auto_tie_breaker_even_split(atb_node: str, winner: set[int]) -> None:
    c = Cluster(make_config(4, auto_tie_breaker=True, auto_tie_breaker_node=atb_node))
    c.view([1, 2, 3, 4])
    assert c[1].quorum == 3
    c.view([1, 2], [3, 4])
    assert {i for i in (1, 2, 3, 4) if c[i].quorate} == winner
    assert c[1].lowest_node_id == 1 and c[1].highest_node_id == 4


def test_auto_tie_breaker_list_first_present_after_absent_previous() -> None:
    # list "5 1": 5 was never a member, so the side holding 1 wins
    c = Cluster(make_config(4, auto_tie_breaker=True, auto_tie_breaker_node="5 1"))
    c.view([1, 2, 3, 4])
    c.view([1, 2], [3, 4])
    assert c[1].quorate and not c[3].quorate


def test_auto_tie_breaker_needs_exact_half() -> None:
    c = Cluster(make_config(6, auto_tie_breaker=True))
    c.view(range(1, 7))
    c.view([1, 2], [3, 4, 5, 6])
    assert not c[1].quorate  # 2 != 6 // 2
    assert c[3].quorate


def test_auto_tie_breaker_too_many_vanished() -> None:
    # 4 nodes -> [1] alone: previous 4 - current 1 = 3 >= quorum 3 -> ATB not applied
    c = Cluster(make_config(4, auto_tie_breaker=True))
    c.view([1, 2, 3, 4])
    c.view([1], [2, 3, 4])
    assert not c[1].quorate


def test_atb_startup_derivations() -> None:
    vq = VoteQuorum(make_config(3, auto_tie_breaker=True), 1, None, 0)
    assert vq.atb_mode is AtbMode.NONE  # odd NEV without WFA
    assert any(isinstance(e, Logged) and e.level == "crit" for e in drain(vq))
    vq = VoteQuorum(make_config(3, auto_tie_breaker=True, wait_for_all=True), 1, None, 0)
    assert vq.atb_mode is AtbMode.LOWEST
    vq = VoteQuorum(make_config(2, two_node=True, auto_tie_breaker=True), 1, None, 0)
    assert not vq.two_node and vq.atb_mode is AtbMode.LOWEST
    assert vq.wait_for_all  # WFA followed the configured two_node before it was turned off
    vq = VoteQuorum(make_config(4, auto_tie_breaker=True, auto_tie_breaker_node="x"), 1, None, 0)
    assert vq.atb_mode is AtbMode.NONE
    assert any(
        "auto_tie_breaker is disabled" in e.message for e in drain(vq) if isinstance(e, Logged)
    )
    vq = VoteQuorum(make_config(4, auto_tie_breaker_node="highest"), 1, None, 0)
    assert vq.atb_mode is AtbMode.NONE
    assert any("meaningless" in e.message for e in drain(vq) if isinstance(e, Logged))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lowest", (AtbMode.LOWEST, ())),
        ("highest", (AtbMode.HIGHEST, ())),
        ("3 1 2", (AtbMode.LIST, (3, 1, 2))),
        ("3 0 2", (AtbMode.LIST, (3,))),
        ("4 x 5", (AtbMode.LIST, (4,))),
        ("0 1", (AtbMode.NONE, ())),
        ("Lowest", (AtbMode.NONE, ())),
        ("", (AtbMode.NONE, ())),
    ],
)
def test_parse_atb_string(text: str, expected: tuple[AtbMode, tuple[int, ...]]) -> None:
    assert parse_atb_string(text) == expected


def test_allow_downscale_leaving_not_below_barrier() -> None:
    # no nodelist, stored barrier 3; 5 nodes join -> expected raised to 5
    config = ClusterConfig(
        quorum=QuorumConfig(provider="corosync_votequorum", expected_votes=3, allow_downscale=True)
    )
    # allow_downscale forces EVT, and EVT replaces expected_votes by the stored barrier
    fresh = VoteQuorum(config, 1, None, 0)
    assert fresh.ev_tracking and fresh.ev_barrier == 0  # 4.2 #14: fresh file, no nodelist
    assert fresh.expected_votes == 1  # raised to the votes present by the first recalc
    vq = VoteQuorum(config, 1, 3, 0)
    assert vq.ev_barrier == 3
    assert quorum_events(drain(vq)) == []
    single_view(vq, [1, 2, 3, 4, 5], {i: peer(i, expected=3) for i in (2, 3, 4, 5)})
    assert (vq.expected_votes, vq.quorum) == (5, 3)
    assert vq.ev_tracking_barrier == 5
    leaving = NodeFlag.LEAVING | NodeFlag.QUORATE
    vq.deliver_nodeinfo(peer(5, expected=5, flags=leaving), 0, sender=5)
    assert vq.getinfo(5).node_state == NodeState.LEAVING
    assert (vq.expected_votes, vq.quorum) == (4, 3)
    vq.deliver_nodeinfo(peer(4, expected=4, flags=leaving), 0, sender=4)
    assert (vq.expected_votes, vq.quorum) == (3, 2)
    vq.deliver_nodeinfo(peer(3, expected=3, flags=leaving), 0, sender=3)
    # expected follows the node count, but quorum is computed from max(ev_barrier, 2) = 3
    assert (vq.expected_votes, vq.quorum) == (2, 2)
    assert vq.quorate
    assert vq.nodes() == ((1, 1), (2, 1), (3, 3), (4, 3), (5, 3))


def test_leaving_nodeinfo_only_with_allow_downscale() -> None:
    assert VoteQuorum(make_config(3), 1, None, 0).leaving_nodeinfo() is None
    vq = VoteQuorum(make_config(3, allow_downscale=True), 1, None, 0)
    info = vq.leaving_nodeinfo()
    assert info is not None and info.flags & NodeFlag.LEAVING
    assert not vq.local_nodeinfo().flags & NodeFlag.LEAVING


def test_cluster_leave_with_allow_downscale() -> None:
    c = Cluster(make_config(5, allow_downscale=True))
    c.view([1, 2, 3, 4, 5])
    c.leave(5)
    assert c.eq(1) == (4, 3)
    c.view([1, 2, 3, 4])
    assert c.eq(1) == (4, 3) and c[1].quorate


def test_evt_barrier_created_and_persisted() -> None:
    c = Cluster(make_config(3, expected_votes_tracking=True))
    assert [e for e in c.take(1) if isinstance(e, BarrierPersisted)] == [
        BarrierPersisted(0),
        BarrierPersisted(3),
    ]
    assert c.barriers[1] == 3
    config = ClusterConfig(
        nodes=c.config.nodes,
        quorum=QuorumConfig(provider="corosync_votequorum", expected_votes_tracking=True),
    )
    vq = VoteQuorum(config, 1, 3, 0)  # existing file, nothing to write
    assert not [e for e in drain(vq) if isinstance(e, BarrierPersisted)]


def test_evt_barrier_used_at_startup_and_raised() -> None:
    # stored 5 replaces the nodelist's 3 (and any configured expected_votes)
    vq = VoteQuorum(make_config(3, expected_votes_tracking=True, expected_votes=2), 1, 5, 0)
    assert (vq.expected_votes, vq.quorum) == (5, 3)
    assert vq.runtime_keys()["ev_tracking_barrier"] == 5
    single_view(vq, [1, 2, 3], {2: peer(2, expected=5), 3: peer(3, expected=5)})
    assert (vq.expected_votes, vq.quorum, vq.total_votes) == (5, 3, 3)
    assert vq.quorate
    single_view(vq, [1, 2], {2: peer(2, expected=5, flags=NodeFlag.QUORATE)}, seq=8)
    assert not vq.quorate  # 2 of a tracked 5


def test_evt_barrier_grows_with_votes() -> None:
    vq = VoteQuorum(make_config(3, expected_votes_tracking=True), 1, 3, 0)
    assert drain(vq) == []
    events = single_view(vq, [1, 2, 3, 4], {2: peer(2), 3: peer(3), 4: peer(4, votes=2)})
    assert vq.expected_votes == 5
    assert BarrierPersisted(5) in events
    assert vq.ev_tracking_barrier == 5


def test_evt_uses_message_expected_even_when_inquorate() -> None:
    vq = VoteQuorum(make_config(3, expected_votes_tracking=True), 1, 3, 0)
    single_view(vq, [1, 2], {2: peer(2, expected=7)})
    assert vq.getinfo(2).node_expected_votes == 7
    plain = VoteQuorum(make_config(3), 1, None, 0)
    single_view(plain, [1, 2], {2: peer(2, expected=7)})
    assert plain.getinfo(2).node_expected_votes == 3


def test_inquorate_node_adopts_expected_of_quorate_node() -> None:
    vq = VoteQuorum(make_config(5), 1, None, 0)
    assert vq.expected_votes == 5
    single_view(
        vq,
        [1, 2, 3],
        {
            2: peer(2, expected=3, flags=NodeFlag.QUORATE),
            3: peer(3, expected=3, flags=NodeFlag.QUORATE),
        },
    )
    assert (vq.expected_votes, vq.quorum) == (3, 2)
    assert vq.quorate


# ====================================================================== client requests
def test_setexpected_validation() -> None:
    c = Cluster(make_config(5))
    c.view([1, 2, 3, 4, 5])
    c.view([1, 2, 3])
    vq = c[1]
    assert (vq.expected_votes, vq.quorum, vq.total_votes) == (5, 3, 3)
    assert vq.check_setexpected(2) == CsErr.CS_ERR_INVALID_PARAM  # below total votes
    assert vq.check_setexpected(6) == CsErr.CS_ERR_INVALID_PARAM  # quorum 4 > 3 votes
    assert vq.check_setexpected(5) == CsErr.CS_OK
    assert vq.check_setexpected(3) == CsErr.CS_OK
    assert (vq.expected_votes, vq.quorum) == (5, 3)  # validation changes nothing
    c.take(1)
    c.reconfigure(1, ReconfigureParam.EXPECTED_VOTES, 1, 3)
    assert all(c.eq(i) == (3, 2) for i in (1, 2, 3))
    assert c[1].ev_barrier == 3
    assert ExpectedVotesNotified(3) in c.take(1)
    assert c[1].getinfo(4).node_expected_votes == 5  # DEAD entries keep theirs


def test_setexpected_inquorate_may_raise() -> None:
    c = Cluster(make_config(5))
    c.view([1, 2, 3, 4, 5])
    c.view([1, 2], [3, 4, 5])
    assert not c[1].quorate
    assert c[1].check_setexpected(8) == CsErr.CS_OK
    c.reconfigure(1, ReconfigureParam.EXPECTED_VOTES, 1, 2)  # lowering regains quorum
    assert c[1].quorate and c.eq(1) == (2, 2)


def test_setvotes_validation() -> None:
    c = Cluster(make_config(3))
    c.view([1, 2, 3])
    c.view([1, 2])
    vq = c[1]
    assert vq.check_setvotes(9, 1) == CsErr.CS_ERR_NAME_NOT_FOUND
    assert vq.check_setvotes(2, 0) == CsErr.CS_ERR_INVALID_PARAM  # 1 vote < quorum 2
    assert vq.getinfo(2).node_votes == 1  # restored
    assert vq.check_setvotes(2, 3) == CsErr.CS_OK
    assert vq.check_setvotes(3, 5) == CsErr.CS_OK  # a DEAD node's votes don't count
    assert vq.check_setvotes(0, 1) == CsErr.CS_OK  # the qdevice entry always exists
    c.reconfigure(1, ReconfigureParam.NODE_VOTES, 2, 3)
    assert c[1].getinfo(2).node_votes == 3
    assert c[2].votes == 3  # our own votes change too
    assert c.eq(1) == (4, 3)  # expected auto-raised to the 4 votes present


def test_reconfigure_node_votes_unknown_node_ignored() -> None:
    c = Cluster(make_config(3))
    c.view([1, 2, 3])
    c.take(1)
    c.reconfigure(1, ReconfigureParam.NODE_VOTES, 42, 5)
    assert c.take(1) == []


# ====================================================================== getinfo, keys, events
def test_getinfo_fields_and_flags() -> None:
    c = Cluster(make_config(2, two_node=True))
    c.view([1, 2])
    info = c[1].getinfo(0)
    assert (info.node_id, info.node_state, info.node_votes, info.node_expected_votes) == (
        1,
        1,
        1,
        2,
    )
    assert (info.highest_expected, info.total_votes, info.quorum) == (2, 2, 1)
    assert info.flags == (
        VoteQuorumInfoFlag.TWONODE | VoteQuorumInfoFlag.QUORATE | VoteQuorumInfoFlag.WAIT_FOR_ALL
    )
    assert (info.qdevice_votes, info.qdevice_name) == (0, "")
    assert c[1].getinfo(2).node_id == 2
    c.view([1])
    assert c[1].getinfo(2).node_state == NodeState.DEAD
    assert c[1].getinfo(2).flags & VoteQuorumInfoFlag.QUORATE  # the LOCAL quorate state
    with pytest.raises(CsError) as err:
        c[1].getinfo(3)
    assert err.value.code == CsErr.CS_ERR_NOT_EXIST


def test_getinfo_flags_lms_atb_downscale() -> None:
    vq = VoteQuorum(
        make_config(4, last_man_standing=True, auto_tie_breaker=True, allow_downscale=True),
        1,
        None,
        0,
    )
    assert vq.getinfo(1).flags == (
        VoteQuorumInfoFlag.LAST_MAN_STANDING
        | VoteQuorumInfoFlag.AUTO_TIE_BREAKER
        | VoteQuorumInfoFlag.ALLOW_DOWNSCALE
    )


def test_getinfo_unknown_configured_node_is_not_exist() -> None:
    vq = VoteQuorum(make_config(3), 1, None, 0)
    with pytest.raises(CsError):
        vq.getinfo(2)


def test_quorum_notified_every_activate_and_only_flips_outside_sync() -> None:
    c = Cluster(make_config(3))
    assert quorum_events(c.take(1)) == []
    c.view([1, 2, 3])
    assert quorum_events(c.take(1)) == [(True, 2)]
    c.view([1, 2, 3])  # no change: still notified
    assert quorum_events(c.take(1)) == [(True, 2)]
    assert c[1].nodes() == ((1, 1), (2, 1), (3, 1))
    # outside sync: a vote change that keeps quorate sends nothing ...
    c.reconfigure(1, ReconfigureParam.NODE_VOTES, 3, 2)
    assert quorum_events(c.take(1)) == []
    # ... one that flips it does
    c.reconfigure(1, ReconfigureParam.EXPECTED_VOTES, 1, 9)
    assert quorum_events(c.take(1)) == [(False, 5)]


def test_no_quorum_notified_during_sync() -> None:
    c = Cluster(make_config(3))
    c.view([1, 2])
    c.take(1)
    vq = c[1]
    vq.sync_init([1, 2, 3], [1, 2, 3], RingId(1, 100), 0)
    vq.deliver_nodeinfo(peer(3, expected=3), 0, sender=3)
    assert vq.quorate
    vq.deliver_reconfigure(Reconfigure(1, 9, ReconfigureParam.EXPECTED_VOTES), 0)
    assert not vq.quorate  # flipped inside the sync: not reported yet
    assert quorum_events(drain(vq)) == []
    vq.sync_activate(0)
    assert quorum_events(drain(vq)) == [(False, 5)]


def test_first_flag_and_local_nodeinfo() -> None:
    c = Cluster(make_config(3))
    info = c[1].local_nodeinfo()
    assert info == NodeInfo(1, 1, 3, NodeFlag.FIRST)
    c.view([1])
    assert c[1].local_nodeinfo().flags & NodeFlag.FIRST
    c.view([1, 2, 3])
    assert c[1].local_nodeinfo() == NodeInfo(1, 1, 3, NodeFlag.QUORATE)
    assert c[1].qdevice_nodeinfo() == NodeInfo(0, 0, 0, 0)
    wfa = VoteQuorum(make_config(3, wait_for_all=True), 1, None, 0)
    assert wfa.local_nodeinfo().flags == NodeFlag.FIRST | NodeFlag.WFASTATUS


def test_runtime_keys() -> None:
    c = Cluster(make_config(4, auto_tie_breaker=True, auto_tie_breaker_node="highest"))
    keys = c[2].runtime_keys()
    assert "lowest_node_id" not in keys
    c.view([2, 3, 4])
    keys = c[2].runtime_keys()
    assert keys == {
        "this_node_id": 2,
        "atb_type": 2,
        "wait_for_all_status": 0,
        "two_node": 0,
        "ev_barrier": 4,
        "qdevice_can_operate": 1,
        "qdevice_master_wins": 0,
        "lowest_node_id": 2,
        "highest_node_id": 4,
    }


def test_qdevice_votes_derivation_and_counting() -> None:
    config = make_config(3, device=DeviceConfig(model="net"))
    vq = VoteQuorum(config, 1, None, 0)
    assert vq.qdevice_votes == 2
    assert vq.expected_votes == 5
    assert vq.qdevice_nodeinfo() == NodeInfo(0, 2, 0, 0)
    single_view(vq, [1, 2], {2: peer(2, expected=5)})
    # potential_total counts the device (1+1+2 = 4 < 5), total_votes does not (not casting)
    assert vq.total_votes == 2 and not vq.quorate
    assert vq.quorum == 3
    # a device that casts a vote (flag on our entry) counts
    flags = vq.local_nodeinfo().flags | NodeFlag.QDEVICE_CAST_VOTE | NodeFlag.QDEVICE_REGISTERED
    vq.deliver_nodeinfo(NodeInfo(1, 1, 5, flags), 0, sender=1)
    assert vq.total_votes == 4 and vq.quorate
    assert vq.nodes()[-1] == (0, 0)
    assert vq.getinfo(0).flags & VoteQuorumInfoFlag.QDEVICE_CAST_VOTE
    assert vq.getinfo(2).total_votes == 2  # node 2's device does not cast


def test_qdevice_nodeinfo_receive_rules() -> None:
    config = make_config(3, device=DeviceConfig(model="net", votes=1))
    vq2 = VoteQuorum(config, 1, None, 0)
    vq2.sync_init([1, 2], [1, 2], RingId(1, 4), 0)
    vq2.deliver_nodeinfo(peer(2, expected=4), 0, sender=2)
    vq2.deliver_nodeinfo(NodeInfo(0, 3, 0, 0), 0, sender=2)
    assert vq2.qdevice_votes == 3  # max(ours, message)
    vq2.deliver_nodeinfo(NodeInfo(0, 2, 0, 0), 0, sender=2)
    assert vq2.qdevice_votes == 3
    vq2.deliver_nodeinfo(peer(2, expected=4, flags=NodeFlag.QUORATE), 0, sender=2)
    assert not vq2.quorate
    vq2.deliver_nodeinfo(NodeInfo(0, 1, 0, 0), 0, sender=2)
    assert vq2.qdevice_votes == 1  # inquorate and the sender is quorate: taken as is


def test_master_wins_flag_plumbing() -> None:
    vq = VoteQuorum(make_config(4, device=DeviceConfig(model="net", votes=1)), 1, None, 0)
    single_view(vq, [1, 2], {2: peer(2, expected=5)})
    assert not vq.quorate
    vq._qdevice_master_wins = True  # the qdevice API (later) sets this
    flags = NodeFlag.QDEVICE_MASTER_WINS | NodeFlag.QDEVICE_CAST_VOTE
    vq.deliver_nodeinfo(peer(2, expected=5, flags=flags), 0, sender=2)
    assert vq.quorate


# ====================================================================== Hypothesis
@dataclass(frozen=True)
class Features:
    votes: tuple[int, ...]
    expected_votes: int
    two_node: bool
    wait_for_all: bool | None
    lms: bool
    atb: str | None
    allow_downscale: bool
    evt: bool

    def cluster_config(self) -> ClusterConfig:
        return make_config(
            list(self.votes),
            expected_votes=self.expected_votes,
            two_node=self.two_node,
            wait_for_all=self.wait_for_all,
            last_man_standing=self.lms,
            last_man_standing_window_ms=LMS_WINDOW,
            auto_tie_breaker=self.atb is not None,
            auto_tie_breaker_node=self.atb if self.atb is not None else "lowest",
            allow_downscale=self.allow_downscale,
            expected_votes_tracking=self.evt,
        )

    def ref_config(self) -> ref.RefConfig:
        return ref.RefConfig(
            nodes={i + 1: v for i, v in enumerate(self.votes)},
            expected_votes=self.expected_votes,
            two_node=self.two_node,
            wait_for_all=self.wait_for_all,
            last_man_standing=self.lms,
            lms_window_ms=LMS_WINDOW,
            atb=self.atb,
            allow_downscale=self.allow_downscale,
            ev_tracking=self.evt,
        )


@st.composite
def features(draw: st.DrawFn, plain: bool = False, lms: bool | None = None) -> Features:
    n = draw(st.integers(1, 6))
    heavy = lms is None and draw(st.integers(0, 2)) == 0
    votes = tuple(draw(st.integers(1, 3)) if heavy else 1 for _ in range(n))
    expected = draw(st.sampled_from([0, 0, 0, sum(votes), sum(votes) + 2, max(1, n - 1)]))
    if plain:
        return Features(votes, expected, False, None, False, None, False, False)
    atb = draw(
        st.one_of(
            st.none(),
            st.sampled_from(["lowest", "highest"]),
            st.permutations(range(1, n + 1)).map(lambda p: " ".join(map(str, p[: max(1, n // 2)]))),
        )
    )
    f = Features(
        votes=votes,
        expected_votes=expected,
        two_node=draw(st.booleans()),
        wait_for_all=draw(st.sampled_from([None, True, False])),
        lms=draw(st.booleans()) if lms is None else lms,
        atb=atb,
        allow_downscale=draw(st.booleans()),
        evt=draw(st.booleans()),
    )
    wfa = f.two_node if f.wait_for_all is None else f.wait_for_all
    # ATB + odd NEV + no WFA + LMS is a fatal configuration error
    assume(not (f.atb is not None and sum(votes) % 2 and not wfa and f.lms))
    return f


@st.composite
def operations(draw: st.DrawFn, n: int) -> list[tuple[object, ...]]:
    ops: list[tuple[object, ...]] = []
    for _ in range(draw(st.integers(1, 16))):
        kind = draw(
            st.sampled_from(
                ["view"] * 4 + ["advance"] * 2 + ["setexpected", "setvotes", "cancel", "leave"]
            )
        )
        if kind == "view":
            labels = draw(st.lists(st.integers(-1, 2), min_size=n, max_size=n))
            quick = draw(st.lists(st.integers(1, n), max_size=2))
            ops.append(("view", tuple(labels), tuple(quick)))
        elif kind == "setexpected":
            ops.append(("setexpected", draw(st.integers(1, n)), draw(st.integers(0, 3 * n + 2))))
        elif kind == "setvotes":
            ops.append(
                (
                    "setvotes",
                    draw(st.integers(1, n)),
                    draw(st.integers(1, n + 1)),
                    draw(st.integers(0, 3)),
                )
            )
        elif kind == "cancel":
            ops.append(("cancel", draw(st.integers(1, n))))
        elif kind == "advance":
            ops.append(("advance", draw(st.sampled_from([1, LMS_WINDOW - 1, LMS_WINDOW]))))
        else:
            ops.append(("leave", draw(st.integers(1, n))))
    return ops


class RefCluster:
    """The same driver as ``Cluster``, over reference nodes."""

    def __init__(self, cfg: ref.RefConfig) -> None:
        self.cfg = cfg
        self.t = 0
        self.barriers: dict[int, int | None] = {}
        self.nodes: dict[int, ref.RefNode] = {}
        self.groups: list[list[int]] = []
        for nodeid in cfg.nodes:
            self.start(nodeid)

    def start(self, nodeid: int) -> None:
        node = ref.RefNode(self.cfg, nodeid, self.barriers.get(nodeid), self.t)
        self.nodes[nodeid] = node
        self._barrier(nodeid)

    def _barrier(self, nodeid: int) -> None:
        for item in self.nodes[nodeid].out:
            if item[0] == "barrier":
                self.barriers[nodeid] = int(item[1])

    def take(self, nodeid: int) -> list[tuple[int | bool | str, ...]]:
        self._barrier(nodeid)
        out, self.nodes[nodeid].out = self.nodes[nodeid].out, []
        return out

    def view(self, *groups: Sequence[int], restarted: Iterable[int] = ()) -> None:
        for nodeid in restarted:
            self.start(nodeid)
        self.groups = [sorted(g) for g in groups]
        for members in self.groups:
            for m in members:
                self.nodes[m].sync_init(members, self.t)
            infos = [self.nodes[m].info() for m in members]
            for m in members:
                for info in infos:
                    self.nodes[m].nodeinfo(*info)
            for m in members:
                self.nodes[m].activate()

    def group_of(self, nodeid: int) -> list[int]:
        return next(g for g in self.groups if nodeid in g)

    def reconfigure(self, origin: int, param: int, nodeid: int, value: int) -> None:
        for m in self.group_of(origin):
            self.nodes[m].reconfigure(param, nodeid, value)

    def leave(self, nodeid: int) -> None:
        me = self.nodes[nodeid]
        info = (nodeid, me.us.votes, me.us.expected, me.us.flags | ref.LEAVING_FLAG)
        for m in self.group_of(nodeid):
            if m != nodeid:
                self.nodes[m].nodeinfo(*info)
        self.groups = [g for g in ([m for m in g if m != nodeid] for g in self.groups) if g]

    def advance(self, ms: int) -> None:
        self.t += ms
        for node in self.nodes.values():
            node.fire_timer(self.t)


def observe_impl(c: Cluster, nodeid: int) -> tuple[object, ...]:
    vq = c[nodeid]
    return (
        vq.quorate,
        vq.quorum,
        vq.expected_votes,
        vq.total_votes,
        vq.wait_for_all_status,
        vq.lms_enabled,
        vq.two_node,
        vq.nodes(),
        vq.get_timer(),
        vq.local_nodeinfo().flags,
        vq.ev_barrier,
    )


def observe_ref(r: RefCluster, nodeid: int) -> tuple[object, ...]:
    n = r.nodes[nodeid]
    total = sum(e.votes for e in n.member_entries().values())
    return (
        n.quorate,
        n.quorum,
        n.us.expected,
        total,
        n.waiting,
        n.lms,
        n.two_node,
        tuple(n.node_states()),
        n.timer,
        n.us.flags,
        n.ev_barrier,
    )


def impl_outputs(events: list[VqEvent]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for e in events:
        if isinstance(e, QuorumNotified):
            out.append(("quorum", e.quorate, e.quorum))
        elif isinstance(e, ExpectedVotesNotified):
            out.append(("expected", e.expected_votes))
        elif isinstance(e, BarrierPersisted):
            out.append(("barrier", e.value))
    return out


def run_against_reference(f: Features, ops: list[tuple[object, ...]]) -> None:
    n = len(f.votes)
    impl = Cluster(f.cluster_config())
    model = RefCluster(f.ref_config())
    alive = set(range(1, n + 1))
    in_view: set[int] = set()

    def compare(step: object) -> None:
        for nodeid in sorted(alive):
            assert observe_impl(impl, nodeid) == observe_ref(model, nodeid), (step, nodeid)
            assert impl_outputs(impl.take(nodeid)) == list(model.take(nodeid)), (step, nodeid)

    compare("start")
    for op in ops:
        kind = op[0]
        if kind == "view":
            labels, quick = op[1], op[2]
            assert isinstance(labels, tuple) and isinstance(quick, tuple)
            groups: dict[int, list[int]] = {}
            for nodeid, label in enumerate(labels, start=1):
                if label >= 0:
                    groups.setdefault(label, []).append(nodeid)
            participants = {i for i, label in enumerate(labels, start=1) if label >= 0}
            # crashed or departed nodes come back cold; ``quick`` ones restart quickly
            restarted = sorted((participants - alive) | (set(quick) & participants))
            alive = in_view = participants
            ordered = [groups[k] for k in sorted(groups)]
            impl.view(*ordered, restarted=restarted)
            model.view(*ordered, restarted=restarted)
        elif kind in ("setexpected", "setvotes", "cancel", "leave"):
            origin = op[1]
            assert isinstance(origin, int)
            if origin not in in_view:
                continue
            if kind == "setexpected":
                value = op[2]
                assert isinstance(value, int)
                ok = impl[origin].check_setexpected(value) == CsErr.CS_OK
                assert ok == model.nodes[origin].setexpected_ok(value), op
                if ok:
                    impl.reconfigure(origin, ReconfigureParam.EXPECTED_VOTES, origin, value)
                    model.reconfigure(origin, ref.EXPECTED_VOTES, origin, value)
            elif kind == "setvotes":
                target, value = op[2], op[3]
                assert isinstance(target, int) and isinstance(value, int)
                res = impl[origin].check_setvotes(target, value)
                expect = model.nodes[origin].setvotes_result(target, value)
                assert {
                    CsErr.CS_OK: "ok",
                    CsErr.CS_ERR_NAME_NOT_FOUND: "unknown",
                    CsErr.CS_ERR_INVALID_PARAM: "invalid",
                }[res] == expect, op
                if res == CsErr.CS_OK:
                    impl.reconfigure(origin, ReconfigureParam.NODE_VOTES, target, value)
                    model.reconfigure(origin, ref.NODE_VOTES, target, value)
            elif kind == "cancel":
                impl.reconfigure(origin, ReconfigureParam.CANCEL_WFA, origin, 0)
                model.reconfigure(origin, ref.CANCEL_WFA, origin, 0)
            else:
                if not f.allow_downscale:
                    continue
                impl.leave(origin)
                model.leave(origin)
                alive.discard(origin)
                in_view.discard(origin)
        else:
            ms = op[1]
            assert isinstance(ms, int)
            impl.advance(ms)
            model.advance(ms)
        compare(op)


_HYP = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@_HYP
@given(data=st.data())
def test_matches_reference_plain(data: st.DataObject) -> None:
    f = data.draw(features(plain=True))
    run_against_reference(f, data.draw(operations(len(f.votes))))


@_HYP
@given(data=st.data())
def test_matches_reference_all_features(data: st.DataObject) -> None:
    f = data.draw(features())
    run_against_reference(f, data.draw(operations(len(f.votes))))


@_HYP
@given(data=st.data())
def test_matches_reference_last_man_standing(data: st.DataObject) -> None:
    f = data.draw(features(lms=True))
    run_against_reference(f, data.draw(operations(len(f.votes))))


@_HYP
@given(data=st.data())
def test_matches_reference_two_node_wfa(data: st.DataObject) -> None:
    wfa = data.draw(st.sampled_from([None, True, False]))
    f = Features((1, 1), data.draw(st.sampled_from([0, 2])), True, wfa, False, None, False, False)
    run_against_reference(f, data.draw(operations(2)))


@settings(max_examples=200, deadline=None)
@given(votes=st.lists(st.integers(0, 5), min_size=1, max_size=8), expected=st.integers(0, 40))
def test_calc_properties(votes: list[int], expected: int) -> None:
    """Quorum is a strict majority of max(expected, votes present); never decreases alone."""
    assume(sum(votes) > 0)
    config = ClusterConfig(
        quorum=QuorumConfig(provider="corosync_votequorum", expected_votes=max(expected, 1))
    )
    vq = VoteQuorum(config, 1, None, 0)
    members = list(range(1, len(votes) + 1))
    others = {
        i: peer(i, votes=v, expected=max(expected, 1)) for i, v in zip(members, votes, strict=True)
    }
    before = vq.quorum
    vq.sync_init(members, members, RingId(1, 4), 0)
    for m in members:
        info = vq.local_nodeinfo() if m == 1 else others[m]
        vq.deliver_nodeinfo(info, 0, sender=m)
    vq.sync_activate(0)
    present = 1 + sum(votes[1:])
    assert vq.quorum >= before
    assert vq.expected_votes == max(max(expected, 1), present)
    assert vq.quorum == max(before, vq.expected_votes // 2 + 1, present // 2 + 1)
    assert vq.quorate == (vq.quorum <= present)
