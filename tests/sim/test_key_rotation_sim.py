"""Authkey rotation by reload in the simulator (``NodeEngine.rotate_key``).

Every member accepts the new key as soon as its reload found it and seals with it only
once KeyReady from every member of the view was delivered, so the cluster never loses
a datagram to the rotation: no view change happens.
"""

from __future__ import annotations

import pytest

from pyquorum.sim.scenario import cluster_config
from pyquorum.sim.world import Simulator

TOKEN_MS = 1000
NEW_KEY = bytes(range(32, 96))


def formed(n: int, seed: int) -> Simulator:
    sim = Simulator(cluster_config([str(n), "token", str(TOKEN_MS)]), seed=seed)
    for i in range(1, n + 1):
        sim.start(i)
    assert sim.run_until_true(lambda: sim.converged() and sim.quorate(1), 30_000)
    sim.run_for(3 * TOKEN_MS)
    return sim


def fingerprints(sim: Simulator) -> set[int]:
    return {s.engine.key_fingerprint for s in sim.nodes.values() if s.engine is not None}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rotation_on_every_node_switches_without_a_view_change(seed: int) -> None:
    sim = formed(5, seed)
    views = {n: s.views for n, s in sim.nodes.items()}
    (old,) = fingerprints(sim)
    for n in (3, 1, 5, 2, 4):  # reloads land at different moments
        sim.rotate_key(n, NEW_KEY)
        sim.run_for(37)
        assert fingerprints(sim) == {old} or n == 4
    assert sim.run_until_true(lambda: old not in fingerprints(sim), 2 * TOKEN_MS)
    (new,) = fingerprints(sim)
    token = sim.config.timing().token_ms  # with the token coefficient
    sim.run_for(2 * token + 100)  # the old key is forgotten; the cluster goes on
    assert {n: s.views for n, s in sim.nodes.items()} == views
    assert sim.converged([1, 2, 3, 4, 5]) and all(sim.quorate(n) for n in range(1, 6))
    for s in sim.nodes.values():
        assert s.engine is not None and s.engine._channel.keys == (new,)


def test_a_member_without_the_new_key_holds_the_switch_until_it_leaves() -> None:
    sim = formed(3, 4)
    (old,) = fingerprints(sim)
    sim.rotate_key(1, NEW_KEY)
    sim.rotate_key(2, NEW_KEY)
    sim.run_for(3 * TOKEN_MS)
    assert fingerprints(sim) == {old}  # node 3 has not reloaded the key
    assert sim.converged([1, 2, 3])
    sim.kill(3)
    assert sim.run_until_true(lambda: sim.converged([1, 2]), 10_000)
    sim.run_for(100)
    assert old not in fingerprints(sim)
    sim.start(3)  # it boots with the new key (the file was updated) and joins
    assert sim.run_until_true(lambda: sim.converged([1, 2, 3]) and sim.quorate(3), 30_000)


def test_a_node_with_the_old_key_cannot_join_after_the_switch() -> None:
    sim = formed(3, 5)
    old_key = sim.authkey
    sim.kill(3)
    assert sim.run_until_true(lambda: sim.converged([1, 2]), 10_000)
    sim.rotate_key(1, NEW_KEY)
    sim.rotate_key(2, NEW_KEY)
    sim.run_for(5 * TOKEN_MS)
    sim.authkey = old_key  # node 3's file was not updated
    sim.start(3)
    sim.run_for(10_000)
    assert sim.view(3) == (3,) and sim.view(1) == (1, 2)
    assert sim.nodes[1].engine is not None
    assert sim.nodes[1].engine.rejected_by_reason["auth_failed"] > 0
