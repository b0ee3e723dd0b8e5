"""Every votequorum policy step by step in the simulator: ``scenarios/policy_*.scn``.

Each policy file is a script of the scenario language (``pyquorum.sim.scenario``) whose
``snapshot LABEL`` lines are followed by ``#= NODES ...`` expectation lines (comments
to the scenario language): the exact values spec section 4 gives for each listed node
at that step.  This module runs the script line by line with the scenario language's
own command runner, and at every snapshot reads, for each running node:

* ``votequorum_getinfo(0)`` from its engine: node votes, expected votes, highest
  expected, total votes, quorum, flags;
* its quorate bit and view, and the last quorum callback of its tracking client (which
  must show the same quorate bit and members);
* ``flips``: quorum callbacks its client got since the previous snapshot *outside* a
  membership sync (same ring as the callback before; spec 3.12-B: only quorate flips
  produce those).  Unless a ``#=`` line says ``flips=N`` it must be 0;
* on request, the ``runtime.votequorum`` keys ``wait_for_all_status`` (``wfa=``),
  ``lowest_node_id`` (``lowest=``), ``highest_node_id`` (``highest_id=``),
  ``ev_barrier`` and ``ev_tracking_barrier`` (``evt_barrier=``).

``#! cancel-wait-for-all N`` lines run the engine command ``VqCancelWaitForAll`` on
node N (the scenario language has no command for it; no IPC request reaches it either,
so the live test stops there).

The same files drive ``tests/integration/test_policies_live.py`` on real daemons.
Spec deviations found are listed in ``KNOWN_BUGS`` and checked by strict xfail tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pyquorum.core.engine import VqCancelWaitForAll
from pyquorum.core.votequorum import VoteQuorumInfoFlag as F
from pyquorum.sim.expectations import RUNTIME_KEYS, Expectation, parse_expectations
from pyquorum.sim.scenario import (
    ScenarioError,
    ScenarioResult,
    _run_line,
    cluster_config,
    run_script,
)
from pyquorum.sim.world import Simulator

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
"""Not imported from conftest: tests/integration has a conftest too, and which one
``import conftest`` finds depends on collection order."""

POLICIES = sorted(p.stem.removeprefix("policy_") for p in SCENARIOS.glob("policy_*.scn"))

FLAG_WORDS = (("2Node", F.TWONODE), ("Quorate", F.QUORATE), ("WaitForAll", F.WAIT_FOR_ALL),
              ("LastManStanding", F.LAST_MAN_STANDING), ("AutoTieBreaker", F.AUTO_TIE_BREAKER),
              ("AllowDownscale", F.ALLOW_DOWNSCALE))
"""corosync-quorumtool's words for the getinfo flags, in its order (spec 7.2)."""

KNOWN_BUGS: dict[str, dict[str, tuple[str, ...]]] = {}
"""Spec deviations, {scenario: {snapshot label: fields}}: skipped by the all-steps test
and checked by a strict xfail test each.  Empty: the last one (allow_downscale's
LEAVING NODEINFO on a clean stop) is fixed."""


def flag_words(flags: int) -> str:
    return ",".join(w for w, bit in FLAG_WORDS if flags & bit) or "-"


def out_of_sync_quorum_events(lines: list[dict[str, Any]], since: int = 0) -> int:
    """Quorum callbacks at index >= ``since`` with the same ring as the callback before
    them on the same connection (outside sync: spec 3.12-B)."""
    n = 0
    prev: tuple[int, int] | None = None
    for i, line in enumerate(lines):
        if line["kind"] == "init":
            prev = None
        elif line["kind"] == "quorum":
            ring = (line["ring_id"]["nodeid"], line["ring_id"]["seq"])
            n += ring == prev and i >= since
            prev = ring
    return n


# ====================================================================== running
@dataclass
class PolicyRun:
    """A policy script's run: the scenario result and what each snapshot observed."""

    result: ScenarioResult
    observed: dict[str, dict[int, dict[str, str]]] = field(default_factory=dict)
    expectations: list[Expectation] = field(default_factory=list)

    def mismatches(self, only: dict[str, tuple[str, ...]] | None = None,
                   skip: dict[str, tuple[str, ...]] | None = None) -> list[str]:
        """Every expected field that differs; ``only``/``skip``: {label: fields}."""
        out = []
        for exp in self.expectations:
            seen = self.observed.get(exp.label)
            if seen is None:
                out.append(f"line {exp.lineno}: snapshot {exp.label!r} was not reached")
                continue
            for node in exp.nodes:
                got = seen.get(node)
                for k, want in exp.fields.items():
                    if only is not None and k not in only.get(exp.label, ()):
                        continue
                    if skip is not None and k in skip.get(exp.label, ()):
                        continue
                    value = None if got is None else got.get(k)
                    if value != want:
                        out.append(f"line {exp.lineno} [{exp.label}] node {node}: {k} is "
                                   f"{value}, the spec says {want}")
        return out


def observe(sim: Simulator, node: int, since: int) -> dict[str, str]:
    """What ``node`` reports now; ``since`` is the index of its client's first line
    after the previous snapshot."""
    engine = sim.nodes[node].engine
    assert engine is not None and engine.vq is not None
    info = engine.vq.getinfo(0)
    lines = sim.nodes[node].client.lines
    last = next((x for x in reversed(lines) if x["kind"] == "quorum"), None)
    obs = {
        "state": "quorate" if engine.quorate else "inquorate",
        "view": ",".join(str(m) for m in engine.members),
        "votes": str(info.node_votes),
        "expected": str(info.node_expected_votes),
        "highest": str(info.highest_expected),
        "total": str(info.total_votes),
        "quorum": str(info.quorum),
        "flags": flag_words(info.flags),
        "flips": str(out_of_sync_quorum_events(lines, since)),
        "callback": "none" if last is None else
        f"{'quorate' if last['quorate'] else 'inquorate'} "
        f"view={','.join(str(m) for m in last['members'])}",
    }
    keys = engine.vq.runtime_keys()
    for short, key in RUNTIME_KEYS.items():
        obs[short] = str(keys.get(key))
    return obs


def _directive(sim: Simulator, words: list[str], lineno: int) -> None:
    if len(words) == 2 and words[0] == "cancel-wait-for-all":
        node = sim.nodes[int(words[1])]
        assert node.engine is not None
        sim.driver("cancel-wait-for-all", node=node.node_id)
        node.engine.handle_command(0, VqCancelWaitForAll(), sim.now_ms)
        sim._pump(node)  # what Simulator.set_expected does after its command
        return
    raise ScenarioError(lineno, f"unknown directive {' '.join(words)!r}")


def run_policy(name: str, seed: int = 1) -> PolicyRun:
    """Run ``policy_<name>.scn`` and observe every snapshot."""
    text = (SCENARIOS / f"policy_{name}.scn").read_text()
    sim: Simulator | None = None
    run: PolicyRun | None = None
    marks: dict[int, int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("#!"):
            if sim is None:
                raise ScenarioError(lineno, "a directive before cluster")
            _directive(sim, line[2:].split(), lineno)
            continue
        if not line or line.startswith("#"):
            continue
        cmd, *args = line.split()
        if cmd == "cluster":
            sim = Simulator(cluster_config(args, lineno), seed)
            run = PolicyRun(ScenarioResult(sim), expectations=parse_expectations(text))
            continue
        if sim is None or run is None:
            raise ScenarioError(lineno, "the first command must be 'cluster'")
        _run_line(sim, run.result, cmd, args, lineno, False)
        if cmd == "snapshot":
            run.observed[" ".join(args)] = {
                n: observe(sim, n, marks.get(n, 0)) for n in sim.up_nodes()}
            marks = {n: len(s.client.lines) for n, s in sim.nodes.items()}
    assert run is not None, f"policy_{name}.scn has no cluster line"
    return run


# ====================================================================== the tests
def test_every_policy_has_a_scenario() -> None:
    assert sorted([
        "allow_downscale", "atb_highest", "atb_list", "atb_lowest", "expected_votes",
        "expected_votes_tracking", "last_man_standing", "last_man_standing_atb",
        "last_man_standing_weighted", "quorum_votes", "two_node",
        "two_node_no_wait_for_all", "wait_for_all"]) == POLICIES


@pytest.mark.parametrize("name", POLICIES)
def test_every_snapshot_states_every_running_node(name: str) -> None:
    """Each snapshot has ``#=`` lines for exactly the nodes running at that step, with
    all the getinfo values (so nothing is silently unchecked)."""
    run = run_policy(name)
    assert run.observed, "no snapshot"
    by_label: dict[str, list[int]] = {}
    for exp in run.expectations:
        by_label.setdefault(exp.label, []).extend(exp.nodes)
        missing = {"state", "view", "expected", "highest", "total", "quorum",
                   "flags"} - set(exp.fields)
        assert not missing, f"line {exp.lineno}: no {sorted(missing)}"
    for label, seen in run.observed.items():
        assert sorted(by_label.get(label, [])) == sorted(seen), \
            f"snapshot {label}: '#=' lines for {by_label.get(label)}, running {sorted(seen)}"


@pytest.mark.parametrize("name", POLICIES)
def test_script_language_alone_passes(name: str) -> None:
    """Run as a plain scenario (``python -m pyquorum.sim --script``): its own assertions
    and waits hold and the safety checker is silent."""
    res = run_script((SCENARIOS / f"policy_{name}.scn").read_text())
    assert res.ok, (res.failures, res.sim.checker.violations)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("name", POLICIES)
def test_policy_step_by_step(name: str, seed: int) -> None:
    """Every ``#=`` value at every snapshot (except the fields in KNOWN_BUGS), the
    script's own assertions and waits, and the simulator's safety checker."""
    run = run_policy(name, seed)
    assert run.result.failures == [], run.result.failures
    assert run.result.sim.checker.violations == [], run.result.sim.checker.violations
    bad = run.mismatches(skip=KNOWN_BUGS.get(name))
    assert bad == [], "\n".join(bad)


def test_allow_downscale_clean_stop_follows_the_member_count() -> None:
    """A clean stop under allow_downscale multicasts NODEINFO with LEAVING before the
    node leaves: the survivors' expected votes follow the member count (spec 4.5.5), and
    the last survivor's quorate flip comes in the old ring, outside sync (3.12-B)."""
    run = run_policy("allow_downscale")
    assert run.mismatches() == []
    for node in (1, 2):
        assert run.observed["node3-stopped"][node]["expected"] == "2"
    assert run.observed["node2-stopped"][1]["expected"] == "1"
    assert run.observed["node2-stopped"][1]["flips"] == "1"
    assert run.observed["node3-killed"][1]["expected"] == "3"  # a kill sends no LEAVING


def test_wait_for_all_cancel_is_one_flip_callback_on_every_node() -> None:
    """The cancel (RECONFIGURE CANCEL_WFA, spec 4.6) reaches every member: each reports
    quorate through exactly one quorum callback outside sync, in the same ring."""
    run = run_policy("wait_for_all")
    assert run.mismatches() == []
    for node in (1, 2):
        assert run.observed["cancelled"][node]["flips"] == "1"
        lines = run.result.sim.nodes[node].client.lines
        assert [x["quorate"] for x in lines if x["kind"] == "quorum"][-2:] == [False, True]
