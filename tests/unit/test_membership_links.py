"""Links and failure claims in membership (the fix for one-way blocks, issue 5).

* A heartbeat lists the nodes its sender heard within the last token.  A node drops
  (and counts) the traffic of a peer whose newest heartbeat does not list it: as with
  knet, a link is up only both ways, so a one-way block acts as a partition of the two
  nodes.  First contact is answered at once (knet's pong); an overtaken heartbeat does
  not take a link down; a link that was up and is lost fails the peer at once in GATHER.
* A member of our last ring that lists us as failed is given up on (Corosync's
  memb_join_process); a node from another ring can fail outsiders but not our members.
* After a stall (a SIGSTOPped process), membership messages queued meanwhile are
  flushed, as Corosync's pause_flush does.

``Membership`` instances are driven directly: a tiny router delivers every message at
once, except on blocked directed pairs; time is an argument.
"""

from __future__ import annotations

from pyquorum.core import membership as mb
from pyquorum.sim.scenario import cluster_config
from pyquorum.types import RingId
from pyquorum.wire.messages import Heartbeat, Join, MemberState

TIMING = cluster_config(["3", "token", "1000"]).timing()
MAX_STEPS = 10_000


class Net:
    """Nodes ``ids`` with every message delivered at once, except ``blocked`` pairs."""

    def __init__(self, ids: tuple[int, ...]) -> None:
        self.now = 0
        self.nodes = {n: mb.Membership(n, ids, TIMING, 0, (), 0) for n in ids}
        self.blocked: set[tuple[int, int]] = set()

    def settle(self) -> None:
        for _ in range(MAX_STEPS):
            moved = False
            for n, m in list(self.nodes.items()):
                for out in m.take_outgoing():
                    for dest in out.destinations:
                        if dest in self.nodes and (n, dest) not in self.blocked:
                            moved = True
                            self.nodes[dest].receive(out.message, self.now)
            if not moved:
                return
        raise AssertionError("messages kept flowing")

    def run(self, ms: int, step: int = 10) -> None:
        end = self.now + ms
        while self.now < end:
            self.now = min(end, self.now + step)
            for m in self.nodes.values():
                if self.now >= m.get_timer():
                    m.handle_timer(self.now)
            self.settle()

    def form(self) -> None:
        self.settle()
        for _ in range(1000):
            rings = {m.ring for m in self.nodes.values()}
            if len(rings) == 1 and all(m.state is mb.State.OPERATIONAL
                                       and m.members == tuple(sorted(self.nodes))
                                       for m in self.nodes.values()):
                return
            self.run(10)
        raise AssertionError("no common ring")


def hb(sender: int, ring: RingId, beat: int, heard: tuple[int, ...]) -> Heartbeat:
    return Heartbeat(sender, ring, MemberState.OPERATIONAL, 0, beat, heard)


def sent_heartbeats(m: mb.Membership) -> list[tuple[Heartbeat, tuple[int, ...]]]:
    return [(o.message, o.destinations) for o in m.take_outgoing()
            if isinstance(o.message, Heartbeat)]


def test_a_heartbeat_lists_the_nodes_heard_within_the_last_token() -> None:
    net = Net((1, 2, 3))
    net.form()
    m1 = net.nodes[1]
    m1._send_heartbeat()
    [(beat, _)] = sent_heartbeats(m1)
    assert beat.heard == (2, 3) and beat.beat == net.now
    net.blocked = {(3, 1)}
    net.run(TIMING.token_ms + TIMING.heartbeat_interval_ms)
    m1._send_heartbeat()
    assert [b.heard for b, _ in sent_heartbeats(m1)] == [(2,)]


def test_first_contact_is_answered_at_once_and_only_once_per_join_interval() -> None:
    m1 = mb.Membership(1, (1, 2), TIMING, 0, (), 0)
    m1.take_outgoing()
    m1.receive(hb(2, RingId(2, 5), 10, ()), 10)
    [(pong, dest)] = sent_heartbeats(m1)
    assert dest == (2,) and 2 in pong.heard
    m1.receive(hb(2, RingId(2, 5), 11, ()), 11)  # still not listed: no second pong yet
    assert sent_heartbeats(m1) == []
    m1.receive(hb(2, RingId(2, 5), 12 + TIMING.join_ms, ()), 12 + TIMING.join_ms)
    assert [d for _, d in sent_heartbeats(m1)] == [(2,)]


def test_the_traffic_of_a_peer_that_does_not_hear_us_is_dropped_and_counted() -> None:
    net = Net((1, 2, 3))
    net.form()
    m1 = net.nodes[1]
    ring = m1.ring
    future = net.now + 10_000  # newer than anything node 2 really sent
    m1.receive(hb(2, ring, future, (3,)), net.now)  # node 2 no longer hears node 1
    assert m1._link_lost == {2}
    before = m1.stats["unreachable"]
    join = Join(2, ring, m1.max_seq, (1, 2, 3), (3,), (), 0, ())
    m1.receive(join, net.now)
    assert m1.stats["unreachable"] == before + 1
    assert m1.state is mb.State.OPERATIONAL and m1.ring == ring  # nothing acted on
    m1.receive(hb(2, ring, future + 1, (1, 3)), net.now + 1)  # it hears us again
    assert m1._link_lost == set()
    m1.receive(join, net.now + 1)
    assert m1.state is mb.State.GATHER


def test_an_overtaken_heartbeat_does_not_take_the_link_down() -> None:
    net = Net((1, 2))
    net.form()
    m1 = net.nodes[1]
    t = net.now
    m1.receive(hb(2, m1.ring, t + 5, (1,)), t + 5)
    m1.receive(hb(2, m1.ring, t + 3, ()), t + 6)  # older, delivered late
    assert m1._hears_us[2] is True and m1._link_lost == set()
    m1.receive(hb(2, m1.ring, t + 7, ()), t + 7)  # two sent in the same ms:
    m1.receive(hb(2, m1.ring, t + 7, (1,)), t + 7)  # the one listing us came last
    assert m1._hears_us[2] is True and m1._link_lost == set()
    m1.receive(hb(2, m1.ring, t + 8, ()), t + 8)  # a newer one without us: lost
    assert m1._hears_us[2] is False and m1._link_lost == {2}


def test_a_lost_link_fails_the_peer_at_once_in_gather() -> None:
    net = Net((1, 2, 3))
    net.form()
    m1 = net.nodes[1]
    m1.receive(hb(2, m1.ring, net.now + 10_000, (3,)), net.now)  # newer than node 2's own
    net.nodes[3]._enter_gather(net.now, "test")  # any gather
    net.settle()
    assert m1.state is mb.State.GATHER
    assert 2 in m1._fail  # not after a token of silence: at once


def test_a_one_way_block_ends_with_one_end_out_and_never_both_in_different_rings() -> None:
    net = Net((1, 2, 3))
    net.form()
    net.blocked = {(3, 1)}
    apart = longest = 0  # both ends in different rings of a majority (2 of 3)
    for _ in range(600):  # 6 s, about 6 tokens
        net.run(10)
        m1, m3 = net.nodes[1], net.nodes[3]
        both = m1.ring != m3.ring and len(m1.members) >= 2 and len(m3.members) >= 2
        apart = apart + 10 if both else 0
        longest = max(longest, apart)
    m1, m3 = net.nodes[1], net.nodes[3]
    assert longest < TIMING.join_ms * 4  # a view replaced by its successor, nothing more
    assert {len(m1.members), len(m3.members)} == {1, 2}  # one end out, the other with 2
    net.blocked = set()
    net.run(4 * (TIMING.token_ms + TIMING.consensus_ms))
    assert all(m.members == (1, 2, 3) for m in net.nodes.values())


def test_a_member_that_gives_up_on_us_is_given_up_on() -> None:
    net = Net((1, 2, 3))
    net.form()
    m1 = net.nodes[1]
    ring = m1.ring
    m1.receive(Join(3, ring, m1.max_seq, (1, 2, 3), (1,), (), 0, ()), net.now)
    assert m1.state is mb.State.GATHER
    assert m1._fail == {3} and 3 not in m1._joins


def test_an_outsider_can_fail_outsiders_but_not_our_members() -> None:
    net = Net((1, 2))
    net.form()
    m1 = mb.Membership(1, (1, 2, 3, 4), TIMING, 0, (), net.now)
    # node 1 in ring [1, 2] (a real one, formed with a peer that knows 4 nodes)
    m2 = mb.Membership(2, (1, 2, 3, 4), TIMING, 0, (), net.now)
    net.nodes = {1: m1, 2: m2}
    net.form()
    assert m1.members == (1, 2)
    outsider = Join(3, RingId(3, 5), 5, (1, 2, 3, 4), (2, 4), (), 0, ())
    m1.receive(hb(3, RingId(3, 5), net.now, (1,)), net.now)
    m1.receive(outsider, net.now)
    assert m1.state is mb.State.GATHER
    assert 4 in m1._fail and 2 not in m1._fail  # node 2 is ours: only we or 2 decide
    member = Join(2, m1.ring, m1.max_seq, (1, 2, 3, 4), (3,), (), 0, ())
    m1.receive(member, net.now)
    assert 3 in m1._fail  # a member's word on a failure is taken


def test_membership_messages_queued_during_a_stall_are_flushed() -> None:
    net = Net((1, 2, 3))
    net.form()
    m1 = net.nodes[1]
    ring = m1.ring
    resumed = net.now + TIMING.token_ms  # m1 was stopped for a token
    stale = Join(2, ring, m1.max_seq, (1, 2, 3), (1,), (), 0, ())  # "node 1 failed"
    m1.receive(hb(2, ring, resumed - 1, (3,)), resumed)
    m1.receive(stale, resumed)
    assert m1.stats["flushed"] == 2
    assert m1.state is mb.State.OPERATIONAL and m1._fail == set()
    assert m1._link_lost == set()
    after = resumed + 2 * TIMING.join_ms
    m1.receive(hb(2, ring, after, (1, 3)), after)  # after the flush: taken
    assert m1._hears_us[2] is True and m1.stats["flushed"] == 2


def test_a_member_that_missed_our_install_gets_it_again_unless_it_gave_up_on_us() -> None:
    net = Net((1, 2, 3))
    net.form()
    m1 = net.nodes[1]
    ring, prev = m1.ring, m1._member_prev[2]
    lagging = Join(2, prev, m1.max_seq, (1, 2, 3), (), (), 0, ())
    m1.receive(lagging, net.now)  # node 2 only lost the INSTALL: no new gather
    assert m1.state is mb.State.OPERATIONAL and m1.ring == ring
    gave_up = Join(2, prev, m1.max_seq, (1, 2, 3), (3,), (), 0, ())
    m1.receive(gave_up, net.now)  # node 2 will refuse our ring: gather again
    assert m1.state is mb.State.GATHER
    assert 3 in m1._fail  # node 2 is a member: its word on node 3 counts


def test_an_outsider_that_wants_one_of_our_members_out_does_not_make_us_regroup() -> None:
    m1 = mb.Membership(1, (1, 2, 3, 4), TIMING, 0, (), 0)
    m2 = mb.Membership(2, (1, 2, 3, 4), TIMING, 0, (), 0)
    net = Net((1, 2))
    net.nodes = {1: m1, 2: m2}
    net.form()
    ring, ignored = m1.ring, m1.stats["ignored"]
    m1.receive(Join(3, RingId(3, 5), 5, (1, 2, 3), (2,), (), 0, ()), net.now)
    assert m1.state is mb.State.OPERATIONAL and m1.ring == ring  # no churn for nothing
    assert m1.stats["ignored"] == ignored + 1
    m1.receive(Join(3, RingId(3, 5), 5, (1, 2, 3, 4), (4,), (), 0, ()), net.now)
    assert m1.state is mb.State.GATHER  # control: a merge that can succeed
