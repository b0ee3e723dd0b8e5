"""Failure detection in simulated time at Corosync's default totem settings.

Issue requirement: a crashed member of a 3-node cluster is out of the survivors'
view, and their trackers have the new quorum event, within effective token + 100 ms
(Corosync needs token + consensus, about 8 s); a clean leave within 100 ms.
These are virtual-time protocol bounds, not wall-clock benchmarks.
"""

from __future__ import annotations

import pytest

from pyquorum.sim.scenario import cluster_config
from pyquorum.sim.world import Simulator


def _formed(seed: int, nodes: int = 3) -> Simulator:
    sim = Simulator(cluster_config([str(nodes)]), seed)
    for n in sim.nodes:
        sim.start(n)
    assert sim.run_until_true(lambda: sim.converged() and sim.quorate(1), 10_000)
    sim.run_for(1000 + seed * 37 % 900)  # vary the heartbeat phase at the crash
    return sim


def _tracker_saw_view_without(sim: Simulator, node: int, victim: int) -> bool:
    lines = sim.nodes[node].client.lines
    return bool(lines) and lines[-1]["kind"] == "quorum" and victim not in lines[-1]["members"]


@pytest.mark.parametrize("victim", [3, 1])
@pytest.mark.parametrize("seed", range(10))
def test_crash_reported_within_effective_token_plus_100ms(victim: int, seed: int) -> None:
    sim = _formed(seed)
    token = sim.config.timing().token_ms
    assert token == 3650
    survivors = [n for n in (1, 2, 3) if n != victim]
    t0 = sim.now_ms
    sim.kill(victim)
    done = sim.run_until_true(
        lambda: all(_tracker_saw_view_without(sim, n, victim) for n in survivors), 20_000)
    elapsed = sim.now_ms - t0
    assert done, f"seed {seed}: survivors never reported the crash"
    assert elapsed <= token + 100, f"seed {seed}: {elapsed} ms > {token + 100} ms"
    for n in survivors:
        last = sim.nodes[n].client.lines[-1]
        assert last["quorate"] is True and last["members"] == survivors


@pytest.mark.parametrize("seed", range(10))
def test_clean_leave_reported_within_100ms(seed: int) -> None:
    sim = _formed(seed)
    t0 = sim.now_ms
    sim.stop(2)
    done = sim.run_until_true(
        lambda: all(_tracker_saw_view_without(sim, n, 2) for n in (1, 3)), 5_000)
    assert done and sim.now_ms - t0 <= 100, f"seed {seed}: {sim.now_ms - t0} ms"


def test_crash_of_one_of_five_within_effective_token_plus_100ms() -> None:
    sim = _formed(3, nodes=5)
    token = sim.config.timing().token_ms
    t0 = sim.now_ms
    sim.kill(5)
    assert sim.run_until_true(
        lambda: all(_tracker_saw_view_without(sim, n, 5) for n in (1, 2, 3, 4)), 20_000)
    assert sim.now_ms - t0 <= token + 100
