"""The chaos checker on synthetic traces: what it must find and what it must not flag."""

from __future__ import annotations

from typing import Any

import pytest
from chaoscheck import check, held_views, separated

pytestmark = pytest.mark.chaos

NODES = [1, 2, 3, 4, 5]
ALL = [1, 2, 3, 4, 5]
TOKEN, CONSENSUS = 1000, 1200  # grace 2.7 s, convergence bound 4.4 s


def drv(kind: str, t: float, *, node: int | None = None, cut: list[list[int]] | None = None,
        down: list[int] | None = None, paused: list[int] | None = None, t0: float | None = None,
        step: int = 0) -> dict[str, Any]:
    args = {} if node is None else {"node": node}
    return {"t0": t if t0 is None else t0, "t": t, "step": step, "kind": kind, "args": args,
            "down": down or [], "paused": paused or [], "cut": cut or [], "loss": 0}


def quorum(node: int, t: float, ring: tuple[int, int], members: list[int],
           quorate: int) -> dict[str, Any]:
    return {"t": t, "node": node, "kind": "quorum", "ring": list(ring), "quorate": quorate,
            "members": members}


def nodelist(node: int, t: float, ring: tuple[int, int], members: list[int]
             ) -> dict[str, Any]:
    return {"t": t, "node": node, "kind": "nodelist", "ring": list(ring), "members": members,
            "joined": [], "left": []}


def view(node: int, t: float, ring: tuple[int, int], members: list[int]
         ) -> list[dict[str, Any]]:
    """A nodelist then a quorum event (quorate by strict majority), 1 ms apart."""
    return [nodelist(node, t, ring, members),
            quorum(node, t + 0.001, ring, members, int(2 * len(members) > len(NODES)))]


def connect(node: int, t: float) -> dict[str, Any]:
    return {"t": t, "node": node, "kind": "connect", "quorum_type": 1}


def partition_cut(*groups: list[int]) -> list[list[int]]:
    where = {n: k for k, g in enumerate(groups) for n in g}
    return [[a, b] for a in NODES for b in NODES if a != b and where[a] != where[b]]


def base() -> tuple[dict[int, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Five nodes started at t=0, all in ring 1.5 (quorate) from t=1."""
    driver = [drv("start", 0.5, node=i, t0=0.0) for i in NODES]
    traces = {i: [connect(i, 0.6), *view(i, 1.0 + i / 1000, (1, 5), ALL)] for i in NODES}
    return traces, driver


def run(traces: dict[int, list[dict[str, Any]]], driver: list[dict[str, Any]]
        ) -> dict[str, Any]:
    driver = sorted(driver, key=lambda r: r["t"])
    driver.append(drv("end", max([r["t"] for tr in traces.values() for r in tr]) + 1))
    return check(traces, driver, NODES, TOKEN, CONSENSUS)


def test_clean_history_has_no_findings() -> None:
    traces, driver = base()
    rep = run(traces, driver)
    assert rep["violations"] == []
    assert rep["quorate_views_checked"] == 5
    assert rep["grace_ms"] == 2700 and rep["convergence_bound_ms"] == 4400


def test_split_brain_during_a_partition_is_detected() -> None:
    """{1,2,3}|{4,5}: 1-3 form a quorate ring, but 4 and 5 keep calling the old ring
    quorate for 10 s although they cannot reach 1-3."""
    traces, driver = base()
    driver.append(drv("partition", 10.0, cut=partition_cut([1, 2, 3], [4, 5])))
    for i in (1, 2, 3):
        traces[i] += view(i, 12.2, (1, 9), [1, 2, 3])
    for i in (4, 5):
        traces[i] += view(i, 22.2, (4, 9), [4, 5])  # far too late
    rep = run(traces, driver)
    assert len(rep["split_brains"]) == 1, rep["split_brains"]
    sb = rep["split_brains"][0]
    assert sb["nodes"] == [1, 2, 3, 4, 5]
    assert sorted(map(sorted, sb["pairs"])) == [[1, 4], [1, 5], [2, 4], [2, 5], [3, 4], [3, 5]]
    assert {tuple(sorted(r)) for r in sb["rings"]} == {("1.5", "1.9")}
    assert sb["overlap_ms"] == pytest.approx(10000, abs=5)
    assert any(v.startswith("split brain") for v in rep["violations"])


def test_split_brain_counts_from_the_separation() -> None:
    """Node 5 keeps a stale quorate view while still connected (a warning at most), then
    a partition separates it from the others for 10 s (until the heal): a split brain of
    10 s."""
    traces, driver = base()
    for i in (1, 2, 3, 4):
        traces[i] += view(i, 10.0, (1, 9), [1, 2, 3, 4])
    driver.append(drv("partition", 15.0, cut=partition_cut([1, 2, 3, 4], [5])))
    driver.append(drv("heal", 25.0))
    for i in NODES:
        traces[i] += view(i, 25.2, (1, 13), ALL)
    rep = run(traces, driver)
    (sb,) = rep["split_brains"]
    assert sb["since"] == pytest.approx(15.0)
    assert sb["overlap_ms"] == pytest.approx(10000, abs=2)
    assert rep["max_separated_quorate_ms"] == pytest.approx(10000, abs=2)
    assert rep["max_concurrent_quorate_ms"] == pytest.approx(15199, abs=2)
    assert rep["prolonged_divergence"] == []  # the stretch is reported once, as split brain


def test_split_brain_survives_ring_churn_on_the_other_side() -> None:
    """Node 3 cannot send to 2 and 4 (one-way blocks) and keeps its old quorate view,
    while 2, 4, 5 re-form a new quorate ring every second: the clock is per node pair,
    not per ring pair, so the churn does not hide the 6 s split brain."""
    traces, driver = base()
    blocked = [[3, 2], [3, 4]]  # every driver record carries the whole fault state
    driver.append(drv("block", 10.0, cut=blocked))
    driver.append(drv("kill", 10.5, node=1, down=[1], cut=blocked))
    for k in range(7):
        for i in (2, 4, 5):
            traces[i] += view(i, 12.0 + k, (2, 0x10 + 4 * k), [2, 4, 5])
    driver.append(drv("start", 18.0, node=1, cut=blocked))
    driver.append(drv("heal", 18.3))
    traces[1].append(connect(1, 18.4))
    for i in NODES:
        traces[i] += view(i, 18.5, (1, 0x40), ALL)
    rep = run(traces, driver)
    (sb,) = rep["split_brains"]
    assert sorted(map(sorted, sb["pairs"])) == [[2, 3], [3, 4]]
    assert sb["overlap_ms"] == pytest.approx(6299, abs=2)
    assert len(sb["rings"]) == 7
    (warn,) = rep["prolonged_divergence"]  # 3 and 5 could talk: only a warning
    assert warn["pairs"] == [[3, 5]]
    (stale,) = rep["stale_quorate"]
    assert stale["node"] == 3 and stale["ring"] == "1.5"


def test_flapping_faster_than_the_grace_is_no_split_brain() -> None:
    """The link between node 5 and the rest is cut and restored every second: no
    separated stretch reaches the grace; the long divergence is only a warning."""
    traces, driver = base()
    for i in (1, 2, 3, 4):
        traces[i] += view(i, 10.0, (1, 9), [1, 2, 3, 4])
    for k in range(5):
        driver.append(drv("flap_cut", 10.5 + 2 * k, cut=partition_cut([1, 2, 3, 4], [5])))
        driver.append(drv("flap_restore", 11.5 + 2 * k))
    for i in NODES:
        traces[i] += view(i, 20.0, (1, 13), ALL)
    rep = run(traces, driver)
    assert rep["split_brains"] == [] and rep["violations"] == []
    assert len(rep["prolonged_divergence"]) == 1
    assert rep["max_separated_quorate_ms"] == pytest.approx(1000, abs=5)


def test_two_quorate_sides_of_a_partition_are_a_split_brain() -> None:
    """The other shape: a minority side that installs a quorate ring of its own (bad
    arithmetic) while the majority is quorate too: disjoint member sets at once, and the
    arithmetic check fires as well."""
    traces, driver = base()
    driver.append(drv("partition", 10.0, cut=partition_cut([1, 2, 3], [4, 5])))
    for i in (1, 2, 3):
        traces[i] += view(i, 12.2, (1, 9), [1, 2, 3])
    for i in (4, 5):
        traces[i] += [nodelist(i, 12.3, (4, 9), [4, 5]),
                      quorum(i, 12.301, (4, 9), [4, 5], 1)]
    driver.append(drv("heal", 20.0))
    for i in NODES:
        traces[i] += view(i, 20.5, (1, 13), ALL)
    rep = run(traces, driver)
    kinds = sorted(bool(s.get("disjoint")) for s in rep["split_brains"])
    assert kinds == [False, True], rep["split_brains"]
    assert len(rep["quorum_mismatches"]) == 2


def test_normal_view_succession_is_not_flagged() -> None:
    """A partition handled as Corosync does: the majority's new ring comes ~2.2 s after
    the cut, the minority drops to an inquorate ring a few ms later; after the heal the
    nodes move to the merged ring one by one, 30 ms apart."""
    traces, driver = base()
    driver.append(drv("partition", 10.0, cut=partition_cut([1, 2, 3], [4, 5])))
    for i in (1, 2, 3):
        traces[i] += view(i, 12.2 + i / 100, (1, 9), [1, 2, 3])
    for i in (4, 5):
        traces[i] += view(i, 12.25 + i / 100, (4, 9), [4, 5])
    driver.append(drv("heal", 20.0))
    for i in NODES:
        traces[i] += view(i, 20.9 + 0.03 * i, (1, 13), ALL)
    rep = run(traces, driver)
    assert rep["violations"] == [], rep["violations"]
    assert rep["prolonged_divergence"] == []
    (heal,) = rep["heals"]
    assert heal["converged"] and not heal["flagged"]
    assert heal["converge_ms"] == pytest.approx(1051, abs=1)


def test_stale_view_shorter_than_the_grace_is_not_flagged() -> None:
    """Node 5 is cut off and notices after token + consensus, while 1-4 already moved on
    (overlap 2.3 s < grace 2.7 s)."""
    traces, driver = base()
    driver.append(drv("partition", 10.0, cut=partition_cut([1, 2, 3, 4], [5])))
    for i in (1, 2, 3, 4):
        traces[i] += view(i, 10.1, (1, 9), [1, 2, 3, 4])
    traces[5] += view(5, 12.4, (5, 9), [5])
    assert run(traces, driver)["violations"] == []


def test_paused_node_does_not_hold_its_view() -> None:
    """A SIGSTOPped node keeps its last (quorate) callback while frozen: not a split
    brain; once resumed it must catch up within the grace."""
    traces, driver = base()
    driver += [drv("pause", 10.0, node=5, paused=[5]), drv("resume", 20.0, node=5)]
    for i in (1, 2, 3, 4):
        traces[i] += view(i, 12.2, (1, 9), [1, 2, 3, 4])
    traces[5] += view(5, 20.5, (1, 13), ALL)
    for i in (1, 2, 3, 4):
        traces[i] += view(i, 20.5, (1, 13), ALL)
    assert run(traces, driver)["violations"] == []


def test_prolonged_divergence_without_separation_is_only_a_warning() -> None:
    traces, driver = base()
    for i in (1, 2, 3, 4):
        traces[i] += view(i, 10.0, (1, 9), [1, 2, 3, 4])
    traces[5] += view(5, 16.0, (1, 13), ALL)
    for i in (1, 2, 3, 4):
        traces[i] += view(i, 16.0, (1, 13), ALL)
    rep = run(traces, driver)
    assert rep["violations"] == []
    assert len(rep["prolonged_divergence"]) == 1
    assert rep["prolonged_divergence"][0]["nodes"] == [1, 2, 3, 4, 5]
    assert rep["prolonged_divergence"][0]["overlap_ms"] == pytest.approx(5999, abs=2)


def test_ring_member_disagreement_is_detected() -> None:
    traces, driver = base()
    traces[1] += view(1, 10.0, (1, 9), [1, 2, 3, 4])
    traces[2] += view(2, 10.0, (1, 9), [1, 2, 3, 4, 5])
    rep = run(traces, driver)
    (d,) = [d for d in rep["ring_disagreements"] if "other_members" in d]
    assert d["ring"] == "1.9" and d["node"] == 2 and d["other_node"] == 1
    assert any(v.startswith("ring disagreement") for v in rep["violations"])


def test_ring_without_the_reporting_node_is_detected() -> None:
    traces, driver = base()
    traces[5] += view(5, 10.0, (1, 9), [1, 2, 3, 4])
    rep = run(traces, driver)
    assert any(d.get("self_missing") for d in rep["ring_disagreements"])


def test_quorate_disagreement_on_one_ring_is_detected() -> None:
    traces, driver = base()
    traces[1] += [nodelist(1, 10.0, (1, 9), [1, 2, 3]), quorum(1, 10.0, (1, 9), [1, 2, 3], 1)]
    traces[2] += [nodelist(2, 10.0, (1, 9), [1, 2, 3]), quorum(2, 10.0, (1, 9), [1, 2, 3], 0)]
    rep = run(traces, driver)
    assert any("other_quorate" in d for d in rep["ring_disagreements"])


def test_seq_regression_is_detected_across_a_restart() -> None:
    traces, driver = base()
    traces[3] += view(3, 10.0, (1, 0x11), ALL)
    driver += [drv("kill", 12.0, node=3, down=[3]), drv("start", 14.0, node=3, t0=13.5)]
    traces[3] += [{"t": 12.01, "node": 3, "kind": "disconnect", "error": "CS_ERR_LIBRARY"},
                  connect(3, 14.1), *view(3, 14.1, (3, 0x0e), [3])]
    rep = run(traces, driver)
    (r,) = rep["seq_regressions"]
    assert r["node"] == 3 and r["ring"] == "3.e" and r["max_seq_before"] == "11"


def test_seq_equal_with_another_representative_is_a_regression() -> None:
    traces, driver = base()
    traces[2] += view(2, 10.0, (1, 9), [1, 2, 3]) + view(2, 11.0, (2, 9), [2, 3])
    assert len(run(traces, driver)["seq_regressions"]) == 1


def test_rising_seqs_across_restart_are_fine() -> None:
    traces, driver = base()
    driver += [drv("kill", 12.0, node=3, down=[3]), drv("start", 14.0, node=3, t0=13.5)]
    traces[3] += [connect(3, 14.1), *view(3, 14.1, (3, 0x0e), [3])]
    assert run(traces, driver)["seq_regressions"] == []


def test_events_of_a_killed_daemon_are_not_held() -> None:
    """Events a dead daemon queued before SIGKILL that the client reads after it are
    checked for agreement but not held as views."""
    traces, driver = base()
    driver.append(drv("kill", 10.0, node=5, down=[5]))
    traces[5] += view(5, 10.01, (5, 9), [5])
    held = held_views(5, traces[5], sorted(driver, key=lambda r: r["t"]), 30.0)
    assert [h.ring for h in held] == [(1, 5)]
    assert held[0].end == pytest.approx(10.0)


def test_slow_and_missing_convergence_are_violations() -> None:
    traces, driver = base()
    driver.append(drv("partition", 10.0, cut=partition_cut([1, 2, 3], [4, 5])))
    for i in (1, 2, 3):
        traces[i] += view(i, 12.2, (1, 9), [1, 2, 3])
    for i in (4, 5):
        traces[i] += view(i, 12.2, (4, 9), [4, 5])
    driver.append(drv("heal", 20.0, step=7))
    for i in NODES:
        traces[i] += view(i, 26.0, (1, 13), ALL)  # 6 s > 4.4 s
    driver.append(drv("partition", 30.0, cut=partition_cut([1, 2, 3], [4, 5])))
    for i in (1, 2, 3):
        traces[i] += view(i, 32.2, (1, 17), [1, 2, 3])
    for i in (4, 5):
        traces[i] += view(i, 32.2, (4, 17), [4, 5])
    driver.append(drv("heal", 40.0, step=9))  # and nobody merges
    rep = run(traces, driver)
    slow, missing = rep["heals"]
    assert slow["converged"] and slow["flagged"] and slow["converge_ms"] == pytest.approx(6001)
    assert not missing["converged"]
    assert any("slow convergence after the heal of step 7" in v for v in rep["violations"])
    assert any("no convergence after the heal of step 9" in v for v in rep["violations"])


def test_convergence_counts_only_the_final_agreement() -> None:
    """Agreement right after the heal that breaks again (a late detection) does not count:
    convergence is the start of the agreement that lasts."""
    traces, driver = base()
    driver.append(drv("heal", 10.0))
    traces[5] += view(5, 11.0, (5, 9), [5])
    for i in (1, 2, 3, 4):
        traces[i] += view(i, 11.0, (1, 9), [1, 2, 3, 4])
    for i in NODES:
        traces[i] += view(i, 12.5, (1, 13), ALL)
    (heal,) = run(traces, driver)["heals"]
    assert heal["converge_ms"] == pytest.approx(2501)


def test_separated_needs_every_pair_cut() -> None:
    cut = frozenset({(1, 4), (4, 1), (2, 4)})
    assert separated(cut, [1, 2], [4])
    assert not separated(cut, [1, 2, 3], [4])
    assert not separated(frozenset(), [1], [2])
