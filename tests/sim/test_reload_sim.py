"""Configuration reload and wait_for_all cancel in the simulator (spec 4.10).

``reload N ...`` is ``pyquorumtool --reload`` asked on node N: the request is
delivered in agreed order and every member re-reads the configuration (here all read
the same ``cluster`` line).  ``sighup N ...`` reloads node N alone; its RECONFIGURE
messages still reach every member, as in Corosync.
"""

from __future__ import annotations

from pyquorum.sim.scenario import run_script


def ok(script: str, seed: int = 1) -> None:
    res = run_script(script, seed=seed)
    assert res.ok, (res.failures, res.sim.checker.violations)


def test_a_growing_nodelist_raises_expected_votes_everywhere_and_the_new_node_joins() -> None:
    for seed in (1, 2, 3):
        ok("""
cluster 3 token 1000
up all
wait-view all = 1,2,3
assert expected 1 = 3
reload 2 4 token 1000
wait 500
assert expected 1 = 4
assert expected 2 = 4
assert expected 3 = 4
assert quorate 1,2,3
up 4
wait-view all = 1,2,3,4
assert quorate all
assert expected 4 = 4
kill 3,4
wait-view 1,2 = 1,2
assert inquorate 1,2
""", seed=seed)


def test_a_removed_member_is_dropped_from_the_view() -> None:
    ok("""
cluster 4 token 1000
up all
wait-view all = 1,2,3,4
reload 1 3 token 1000
wait-view 1,2,3 = 1,2,3
assert quorate 1,2,3
assert expected 1 = 3
assert expected 3 = 3
""")


def test_turning_two_node_off_by_reload_can_drop_quorum() -> None:
    """The reload path has no safety check (unlike setexpected)."""
    ok("""
cluster 2 two_node token 1000
up all
wait-view all = 1,2
kill 2
wait-view 1 = 1
assert quorate 1
reload 1 2 token 1000
wait 500
assert inquorate 1
reload 1 2 two_node token 1000
wait 500
assert quorate 1
""")


def test_a_local_reload_of_votes_reaches_every_member() -> None:
    """SIGHUP on node 1 with votes 1=3: node 1 multicasts NODEINFO and RECONFIGURE
    NODE_VOTES/EXPECTED_VOTES, which every member applies."""
    ok("""
cluster 3 token 1000
up all
wait-view all = 1,2,3
sighup 1 3 votes 1=3 token 1000
wait 500
assert expected 1 = 5
assert expected 2 = 5
assert expected 3 = 5
kill 2,3
wait-view 1 = 1
assert quorate 1
""")


def test_cancel_wait_for_all_lets_a_partial_cluster_become_quorate() -> None:
    ok("""
cluster 3 wait_for_all token 1000
up 1,2
wait-view 1,2 = 1,2
wait 2000
assert inquorate 1,2
cancel-wfa 2
wait 500
assert quorate 1,2
""")


def test_a_nodeinfo_for_another_node_id_is_refused_everywhere() -> None:
    """A member (a key holder) multicasting NODEINFO for a node id other than its own or
    its device's cannot grow anyone's votequorum node table."""
    from pyquorum.sim.scenario import cluster_config
    from pyquorum.sim.world import Simulator
    from pyquorum.wire.messages import NodeInfo

    sim = Simulator(cluster_config(["3", "token", "1000"]), seed=3)
    for n in (1, 2, 3):
        sim.start(n)
    assert sim.run_until_true(lambda: sim.converged([1, 2, 3]), 30_000)
    engine = sim.nodes[2].engine
    assert engine is not None
    engine.membership.submit(NodeInfo(77, 5, 9, 0), sim.now_ms)
    sim._pump(sim.nodes[2])
    sim.run_for(500)
    for n in (1, 2, 3):
        e = sim.nodes[n].engine
        assert e is not None and e.vq is not None and e.stats["rejected"] >= 1
        assert 77 not in dict(e.vq.nodes())
        assert e.vq.expected_votes == 3
