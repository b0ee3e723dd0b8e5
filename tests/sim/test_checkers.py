"""The safety checkers catch what they claim to catch (a checker that never fires is useless)."""

from __future__ import annotations

from pyquorum.sim.checkers import SafetyChecker
from pyquorum.sim.scenario import cluster_config
from pyquorum.types import RingId
from pyquorum.wire.messages import NodeInfo

INFOS = (NodeInfo(1, 1, 3, 0),)


def _checker() -> SafetyChecker:
    return SafetyChecker(cluster_config(["3"]))


def test_r1_same_ring_different_members_is_caught() -> None:
    c = _checker()
    c.on_view(0, 1, RingId(1, 9), (1, 2, 3), True, INFOS)
    c.on_view(0, 2, RingId(1, 9), (1, 2), True, INFOS)
    assert any(v.split(" ", 1)[1].startswith("R1") for v in c.violations)


def test_r2_ring_seq_going_backwards_is_caught() -> None:
    c = _checker()
    c.on_view(0, 1, RingId(1, 13), (1, 2, 3), True, INFOS)
    c.on_view(5, 1, RingId(1, 9), (1, 2, 3), True, INFOS)
    assert any("R2" in v for v in c.violations)


def test_r3_different_inputs_for_one_ring_are_caught() -> None:
    c = _checker()
    c.on_view(0, 1, RingId(1, 9), (1, 2, 3), True, INFOS)
    c.on_view(0, 2, RingId(1, 9), (1, 2, 3), True, (NodeInfo(1, 2, 3, 0),))
    assert any("R3" in v for v in c.violations)


def test_minority_quorate_and_majority_inquorate_are_caught() -> None:
    c = _checker()
    c.on_view(0, 3, RingId(3, 13), (3,), True, INFOS)
    c.on_view(0, 1, RingId(1, 13), (1, 2), False, INFOS)
    assert sum("R7" in v for v in c.violations) == 1
    assert sum("R3" in v for v in c.violations) == 1


def test_split_brain_is_caught_and_overlap_is_not() -> None:
    c = _checker()
    c.check_split_brain(0, {1: (RingId(1, 9), (1, 2)), 3: (RingId(3, 9), (2, 3))})
    assert not c.violations
    c.check_split_brain(1, {1: (RingId(1, 9), (1, 2)), 3: (RingId(3, 9), (3,))})
    assert any("split brain" in v for v in c.violations)


def test_two_node_config_allows_both_halves_quorate() -> None:
    c = SafetyChecker(cluster_config(["2", "two_node"]))
    c.check_split_brain(0, {1: (RingId(1, 9), (1,)), 2: (RingId(2, 9), (2,))})
    assert not c.violations


def test_separated_pair_quorate_in_different_rings_past_the_grace_is_caught() -> None:
    c = _checker()
    a, b = RingId(1, 9), RingId(2, 13)
    views = {1: (a, True), 2: (b, True), 3: (b, True)}
    c.check_separated(0, views, {(1, 2)}, 1000)
    c.check_separated(1000, views, {(1, 2)}, 1000)
    assert c.violations == []  # within the grace: normal succession of views
    c.check_separated(1001, views, {(1, 2)}, 1000)
    assert len(c.violations) == 1 and "nodes 1 and 2 cannot talk" in c.violations[0]
    c.check_separated(5000, views, {(1, 2)}, 1000)
    assert len(c.violations) == 1  # one finding per episode


def test_separated_rule_needs_a_cut_different_rings_and_both_quorate() -> None:
    c = _checker()
    a, b = RingId(1, 9), RingId(2, 13)
    for t in (0, 5000):
        c.check_separated(t, {1: (a, True), 2: (b, True)}, set(), 1000)  # they can talk
        c.check_separated(t, {1: (a, True), 2: (a, True)}, {(2, 1)}, 1000)  # same ring
        c.check_separated(t, {1: (a, True), 2: (b, False)}, {(2, 1)}, 1000)  # one inquorate
    assert c.violations == []
    # the clock restarts when the condition breaks
    c.check_separated(6000, {1: (a, True), 2: (b, True)}, {(2, 1)}, 1000)
    c.check_separated(6900, {1: (a, True), 2: (b, True)}, {(2, 1)}, 1000)
    assert c.violations == []
