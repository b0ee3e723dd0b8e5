"""A one-way block X -> Y (X's traffic to Y dropped) on one link of a 5-node cluster.

Found by the chaos tier (docs/results/chaos-500.md): the nodes that heard both X and Y
took turns putting one of them in the ring, so X and Y each stayed quorate in a ring the
other had just left, for as long as the block lasted (a split brain by the checker's
per-pair rule).  Now, as with knet, a link is up only both ways (a heartbeat lists the
nodes its sender hears; a node drops the traffic of a peer that does not hear it), a
member that gives up on us is given up on at once, and only members of our last ring
can make us fail one of its members.  One end of the broken link is left out; the others
stay quorate.  Real Corosync 3.1.7 does the same for a block between nodes adjacent on
its token ring (docs/results/oracle-one-way/).
"""

from __future__ import annotations

import pytest

from pyquorum.sim.scenario import cluster_config
from pyquorum.sim.world import Simulator

BLOCK_MS = 30_000
SAMPLE_MS = 20


def _cluster(seed: int) -> Simulator:
    sim = Simulator(cluster_config(["5", "token", "1000"]), seed=seed)
    for n in range(1, 6):
        sim.start(n)
    assert sim.run_until_true(lambda: sim.converged(), 30_000)
    sim.run_for(2000)
    return sim


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_blocked_sender_leaves_its_old_ring_within_a_bounded_time(seed: int) -> None:
    sim = _cluster(seed)
    old = sim.ring(4)
    timing = sim.config.timing()
    sim.network.block(4, 1)
    bound = timing.token_ms + timing.consensus_ms
    assert sim.run_until_true(lambda: sim.ring(4) != old, bound), (
        f"node 4 still in ring {old} after {bound} ms")
    sim.network.heal()
    assert sim.run_until_true(lambda: sim.converged([1, 2, 3, 4, 5]), 30_000)
    assert sim.checker.violations == []


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("x, y", [(4, 1), (1, 4), (2, 5), (5, 3)])
def test_a_persistent_one_way_block_leaves_one_end_out_and_the_rest_quorate(
        seed: int, x: int, y: int) -> None:
    sim = _cluster(seed)
    timing = sim.config.timing()
    settle = timing.token_ms + timing.consensus_ms
    others = [n for n in range(1, 6) if n not in (x, y)]
    sim.network.block(x, y)
    t0 = sim.now_ms
    both, samples, others_quorate = 0, 0, 0
    while sim.now_ms < t0 + BLOCK_MS:
        sim.run_for(SAMPLE_MS)
        if sim.now_ms - t0 < settle:
            continue
        samples += 1
        both += sim.quorate(x) and sim.quorate(y) and sim.ring(x) != sim.ring(y)
        others_quorate += all(sim.quorate(n) for n in others)
    # the checker's per-pair rule ran all along: X and Y never both quorate apart
    assert sim.checker.violations == []
    assert both == 0
    assert others_quorate == samples  # the nodes that hear both sides keep quorum
    sim.network.heal()
    bound = 2 * (timing.token_ms + timing.consensus_ms)
    assert sim.run_until_true(lambda: sim.converged([1, 2, 3, 4, 5]), bound)
    assert all(sim.quorate(n) for n in range(1, 6))
    assert sim.checker.violations == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_node_cut_off_during_a_gather_goes_alone_as_soon_as_the_others_regroup(
        seed: int) -> None:
    """Found by the coef-650 campaign (docs/results/chaos-500.md): the majority had just
    entered a merge gather when node 3 was cut off; node 3 entered GATHER (on the silence
    of the first member) and restarted the silence clock of the other members, so it
    stayed in GATHER, quorate in its old ring, a token longer than the others took to
    form their ring, and after the heal two consensus timeouts more."""
    sim = Simulator(cluster_config(["5", "token", "1000"]), seed=seed)
    nodes = [1, 2, 3, 4, 5]
    for n in nodes:
        sim.start(n)
    assert sim.run_until_true(lambda: sim.converged(), 30_000)
    sim.network.split([[5], [1, 2, 3, 4]], nodes)
    assert sim.run_until_true(lambda: sim.view(3) == (1, 2, 3, 4), 30_000)
    sim.run_for(2000)
    sim.network.split([[1, 2, 4, 5], [3]], nodes)  # 5 comes back as 3 goes
    timing = sim.config.timing()
    t0 = sim.now_ms
    assert sim.run_until_true(lambda: sim.view(1) == (1, 2, 4, 5), 30_000)
    formed = sim.now_ms - t0
    assert sim.run_until_true(lambda: not sim.quorate(3), timing.token_ms)
    assert sim.now_ms - t0 <= formed + timing.join_ms  # not a token later
    sim.network.heal()
    assert sim.run_until_true(lambda: sim.converged(nodes), 2 * timing.token_ms)
    assert sim.checker.violations == []
