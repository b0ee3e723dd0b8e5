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
