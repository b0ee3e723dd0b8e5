"""A one-way block X -> Y (X's traffic to Y dropped) must not leave X in GATHER.

Y stops hearing X and forms a ring without it; X still hears Y, enters GATHER on Y's
JOIN and, before the fix, kept Y's older, agreeing JOIN and waited for ever for an
INSTALL from Y (the representative), reporting quorate in its old ring for as long as
the block lasted (found by the chaos tier, docs/results/chaos-500.md).  Now X forgets
the JOIN of a node that gave up on it, and fails a representative whose INSTALL does
not come within a consensus period, so X's gather ends and it installs a view.
"""

from __future__ import annotations

import pytest

from pyquorum.sim.scenario import cluster_config
from pyquorum.sim.world import Simulator


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_blocked_sender_leaves_its_old_ring_within_a_bounded_time(seed: int) -> None:
    sim = Simulator(cluster_config(["5", "token", "1000"]), seed=seed)
    for n in range(1, 6):
        sim.start(n)
    assert sim.run_until_true(lambda: sim.converged(), 30_000)
    sim.run_for(2000)
    old = sim.ring(4)
    timing = sim.config.timing()
    sim.network.block(4, 1)
    bound = timing.token_ms + 4 * timing.consensus_ms
    assert sim.run_until_true(lambda: sim.ring(4) != old, bound), (
        f"node 4 still in ring {old} after {bound} ms")
    sim.network.heal()
    assert sim.run_until_true(lambda: sim.converged([1, 2, 3, 4, 5]), 30_000)
    assert sim.checker.violations == []
