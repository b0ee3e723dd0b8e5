"""Hand-written regressions in the scenario language, and its error handling."""

from __future__ import annotations

import pytest

from pyquorum.sim.network import NetworkFaults
from pyquorum.sim.scenario import ScenarioError, run_script


def _ok(script: str, seed: int = 1, faults: NetworkFaults | None = None) -> None:
    res = run_script(script, seed=seed, faults=faults)
    assert res.ok, (res.failures, res.sim.checker.violations)


def test_set_expected_is_applied_in_order_on_every_member() -> None:
    _ok("""
cluster 5
up all
wait-quorate all
kill 4,5
wait-view 1,2,3 = 1,2,3
assert quorate 1,2,3
set-expected 2 3
wait 100
assert expected 1 = 3
assert expected 2 = 3
assert expected 3 = 3
kill 3
wait-view 1,2 = 1,2
assert quorate 1,2
""")


def test_set_expected_below_total_votes_is_refused() -> None:
    _ok("""
cluster 3
up all
wait-quorate all
set-expected 1 2
wait 100
assert expected 1 = 3
assert expected 3 = 3
""")


def test_one_way_partition_is_safe_and_heals() -> None:
    for seed in range(5):
        _ok("""
cluster 3
up all
wait-quorate all
block 3 1
wait 12000
heal
wait-view all = 1,2,3
assert quorate all
""", seed=seed)


def test_lossy_reordering_network_still_reproduces_a_kill() -> None:
    faults = NetworkFaults(loss=0.1, duplicate=0.1, spike=0.1, spike_ms=300)
    for seed in range(5):
        _ok("""
cluster 3
up all
wait-quorate all
kill 3
wait-view 1,2 = 1,2
assert quorate 1,2
start 3
wait-view all = 1,2,3
assert quorate all
""", seed=seed, faults=faults)


def test_failed_assertion_is_reported_with_its_line() -> None:
    res = run_script("cluster 3\nup all\nwait-quorate all\nassert inquorate 1\n")
    assert res.failures == ["line 4: node 1 is not inquorate"]
    assert not res.ok


@pytest.mark.parametrize("script, line", [
    ("up all\n", 1),
    ("cluster 3\nfrobnicate 1\n", 2),
    ("cluster 3\nup\n", 2),
    ("cluster 3\n# comment\nassert view 1 1\n", 3),
    ("cluster three\n", 1),
    ("cluster 3 warp_drive\n", 1),
])
def test_malformed_script_lines_name_their_line(script: str, line: int) -> None:
    with pytest.raises(ScenarioError) as err:
        run_script(script)
    assert err.value.line == line
