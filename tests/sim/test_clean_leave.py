"""A clean stop (SIGTERM) in the simulator: the node runs until its engine sent the LEAVE.

With allow_downscale the engine first gets its LEAVING NODEINFO delivered in agreed
order (spec 4.5.5, 4.6), bounded by one token timeout; without it the LEAVE goes out
at once.  ``Simulator.stop`` drives the same ``NodeEngine.leave``/``finish_leave`` as
the daemon's shutdown.
"""

from __future__ import annotations

from pyquorum.sim.scenario import cluster_config
from pyquorum.sim.world import DOWN, Simulator

TOKEN_MS = 1000


def formed(*words: str) -> Simulator:
    sim = Simulator(cluster_config(["3", *words, "token", str(TOKEN_MS)]), seed=7)
    for n in (1, 2, 3):
        sim.start(n)
    assert sim.run_until_true(lambda: sim.converged([1, 2, 3]) and sim.quorate(1), 30_000)
    return sim


def expected(sim: Simulator, node: int) -> int:
    engine = sim.nodes[node].engine
    assert engine is not None and engine.vq is not None
    return engine.vq.getinfo(node).node_expected_votes


def test_allow_downscale_stop_waits_for_the_leaving_nodeinfo_then_goes_down() -> None:
    sim = formed("allow_downscale")
    engine = sim.nodes[3].engine
    assert engine is not None
    t0 = sim.now_ms
    sim.stop(3)
    assert sim.nodes[3].status != DOWN, "down before its LEAVING NODEINFO was delivered"
    assert not engine.left
    assert sim.run_until_true(lambda: sim.nodes[3].status == DOWN, TOKEN_MS)
    assert engine.left
    assert sim.now_ms - t0 < TOKEN_MS  # delivered, not timed out
    assert sim.run_until_true(lambda: sim.converged([1, 2]), 10_000)
    assert (expected(sim, 1), expected(sim, 2)) == (2, 2)


def test_allow_downscale_stop_gives_up_after_one_token_when_cut_off() -> None:
    """Node 3 cannot reach the others: its LEAVING NODEINFO is never sequenced, so it
    leaves anyway after one token, and the survivors treat it like a kill."""
    sim = formed("allow_downscale")
    sim.network.split([[1, 2], [3]], [1, 2, 3])
    t0 = sim.now_ms
    sim.stop(3)
    assert sim.run_until_true(lambda: sim.nodes[3].status == DOWN, 2 * TOKEN_MS)
    assert sim.now_ms - t0 == TOKEN_MS
    sim.network.heal()
    assert sim.run_until_true(lambda: sim.converged([1, 2]), 10_000)
    assert (expected(sim, 1), expected(sim, 2)) == (3, 3)


def test_stop_without_allow_downscale_is_immediate() -> None:
    sim = formed()
    sim.stop(3)
    assert sim.nodes[3].status == DOWN
    assert sim.run_until_true(lambda: sim.converged([1, 2]), 10_000)
    assert expected(sim, 1) == 3


def test_start_right_after_stop_completes_the_leave_first() -> None:
    sim = formed("allow_downscale")
    old = sim.nodes[3].engine
    sim.stop(3)
    sim.start(3)
    assert old is not None and old.left
    assert sim.nodes[3].engine is not old
    assert sim.run_until_true(lambda: sim.converged([1, 2, 3]) and sim.quorate(3), 30_000)
