"""Every votequorum policy step by step on REAL pyquorumd daemons.

The policy scripts ``tests/sim/scenarios/policy_*.scn`` (checked in the simulator by
``tests/sim/test_policy_scenarios.py``) are executed here against a ``LocalCluster``
(token 1000, LMS window 2000 ms) by ``LiveScript``, a small interpreter of the
scenario language for real processes:

    up/start N        start daemons (each waits for READY)     kill/down N   SIGKILL
    stop/leave N      SIGTERM (clean leave)                    heal          unblock all
    split A|B         test-hook ``block`` on every node (unnamed nodes are isolated)
    wait-view N = M   a bounded wait for a quorum callback with members M on each of N,
                      after the last action
    set-expected N V  ``votequorum_setexpected`` on node N (return codes are recorded)
    wait MS           nothing by itself: the next snapshot's bounded wait is stretched
                      by MS (the LMS window is waited on as a change of getinfo values)
    snapshot LABEL    for every ``#=`` line under it: bounded poll until the node's values
                      match (they already do, except after a timer), then compare
    assert ...        quorate / inquorate / view / expected, checked at once
    #! ...            a directive the daemons cannot do (cancel-wait-for-all has no IPC
                      request): the script stops there and the test says so

A node's values are ``votequorum_getinfo(0)`` (votes, expected, highest expected, total
votes, quorum, flags words), its quorate bit and members
(``runtime.pyquorum.quorate``/``members`` from cmap), the last quorum callback of its
V1 tracking client (``QClient``, reconnecting after restarts), ``flips`` (quorum
callbacks outside sync since the previous snapshot), and on request the
``runtime.votequorum`` keys.  Each policy has a class; the script runs once per class.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from harness import LocalCluster
from test_oracle_live import FLAG_WORDS, QClient, getinfo, out_of_sync_quorum_events

from pyquorum.client import votequorum as vq
from pyquorum.config.generate import LocalNode, render_local_config
from pyquorum.config.model import QuorumConfig
from pyquorum.errors import CsErr, CsError
from pyquorum.sim.expectations import RUNTIME_KEYS, Expectation, parse_expectations
from pyquorum.sim.scenario import cluster_config

SCENARIOS = Path(__file__).resolve().parents[1] / "sim" / "scenarios"
VIEW_WAIT_S = 40.0
SNAPSHOT_WAIT_S = 5.0
"""Bound of a snapshot's poll; values are normally right at once after wait-view."""
OK, INVALID_PARAM = CsErr.CS_OK, CsErr.CS_ERR_INVALID_PARAM

KNOWN_BUGS: dict[str, dict[str, tuple[str, ...]]] = {}
"""Spec deviations, {script: {snapshot label: fields}}, as in
tests/sim/test_policy_scenarios.py; empty since the allow_downscale LEAVING fix."""


# ====================================================================== script parsing
def quorum_options(q: QuorumConfig) -> dict[str, str | int]:
    """The corosync.conf ``quorum`` keys of a scenario ``cluster`` line."""
    opts: dict[str, str | int] = {}
    if q.expected_votes:
        opts["expected_votes"] = q.expected_votes
    if q.two_node:
        opts["two_node"] = 1
    if q.wait_for_all is not None:
        opts["wait_for_all"] = int(q.wait_for_all)
    if q.last_man_standing:
        opts["last_man_standing"] = 1
        opts["last_man_standing_window"] = q.last_man_standing_window_ms
    if q.auto_tie_breaker:
        opts["auto_tie_breaker"] = 1
        opts["auto_tie_breaker_node"] = q.auto_tie_breaker_node
    if q.allow_downscale:
        opts["allow_downscale"] = 1
    if q.expected_votes_tracking:
        opts["expected_votes_tracking"] = 1
    return opts


class VotesCluster(LocalCluster):
    """A ``LocalCluster`` whose nodelist carries per-node ``quorum_votes``."""

    def __init__(self, base_dir: Path, n: int, *, votes: dict[int, int],
                 quorum: dict[str, str | int], token_ms: int) -> None:
        self.votes = votes
        super().__init__(base_dir, n, quorum=quorum, token_ms=token_ms)

    def write_config(self, nodeid: int, extra: str | None = None) -> Path:
        """As ``LocalCluster.write_config``, with each node's votes."""
        if extra is not None:
            self._extra[nodeid] = extra
        nodes = [LocalNode(i, p, votes=self.votes.get(i, 1))
                 for i, p in sorted(self.ports.items())]
        text = render_local_config(
            nodes, state_dir=str(self.state_dir(nodeid)), run_dir=str(self.run_dir(nodeid)),
            keyfile=str(self.keyfile) if self.crypto else None, token_ms=self.token_ms,
            quorum_options=self.quorum, logfile=str(self.log_path(nodeid)), to_stderr=False)
        path = self.config_path(nodeid)
        path.write_text(text + self._extra.get(nodeid, ""))
        return path


# ====================================================================== the interpreter
@dataclass
class LiveScript:
    """One policy script on real daemons."""

    name: str
    base: Path
    cluster: VotesCluster | None = None
    clients: dict[int, QClient] = field(default_factory=dict)
    expectations: list[Expectation] = field(default_factory=list)
    observed: dict[str, dict[int, dict[str, str]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    setexpected: list[tuple[int, int, CsErr]] = field(default_factory=list)
    stopped_at: str | None = None
    skip: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _action_marks: dict[int, int] = field(default_factory=dict)
    _snapshot_marks: dict[int, int] = field(default_factory=dict)
    _extra_wait_s: float = 0.0

    @property
    def c(self) -> VotesCluster:
        assert self.cluster is not None
        return self.cluster

    def run(self) -> LiveScript:
        text = (SCENARIOS / f"policy_{self.name}.scn").read_text()
        self.expectations = parse_expectations(text)
        self.skip = KNOWN_BUGS.get(self.name, {})
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if line.startswith("#!"):
                self.stopped_at = line[2:].strip()
                break
            if not line or line.startswith("#"):
                continue
            cmd, *args = line.split()
            self._line(cmd, args, lineno)
        return self

    # ------------------------------------------------------------ commands
    def _nodes(self, text: str) -> list[int]:
        return sorted(self.c.ports) if text == "all" else [int(x) for x in text.split(",")]

    def _action(self) -> None:
        self._action_marks = {n: cl.mark() for n, cl in self.clients.items()}
        self._extra_wait_s = 0.0

    def _line(self, cmd: str, args: list[str], lineno: int) -> None:
        if cmd == "cluster":
            config = cluster_config(args, lineno)
            votes = {n.nodeid: n.quorum_votes for n in config.nodes}
            self.cluster = VotesCluster(self.base, len(config.nodes), votes=votes,
                                        quorum=quorum_options(config.quorum),
                                        token_ms=config.totem.token_ms)
            for n in sorted(self.c.ports):
                self.clients[n] = QClient(n, self.c.run_dir(n)).start()
        elif cmd in ("up", "start"):
            self._action()
            for n in self._nodes(args[0]):
                self.c.start(n)
        elif cmd in ("kill", "down"):
            self._action()
            for n in self._nodes(args[0]):
                self.c.kill(n)
        elif cmd in ("stop", "leave"):
            self._action()
            for n in self._nodes(args[0]):
                assert self.c.stop(n) == 0, f"node {n} did not exit 0 on SIGTERM"
        elif cmd == "split":
            self._action()
            groups = [self._nodes(g) for g in args[0].split("|")]
            for n in self._running():
                mine = next((g for g in groups if n in g), [n])
                self.c.block(n, [m for m in self.c.ports if m not in mine])
        elif cmd == "heal":
            self._action()
            for n in self._running():
                self.c.block(n, [])
        elif cmd == "wait":
            self._extra_wait_s += int(args[0]) / 1000
        elif cmd == "wait-view":
            members = self._nodes(args[2])
            for n in self._nodes(args[0]):
                self.clients[n].wait_quorum(members, since=self._action_marks.get(n, 0),
                                            timeout=VIEW_WAIT_S)
        elif cmd == "set-expected":
            self._action()
            node, value = int(args[0]), int(args[1])
            h = vq.votequorum_initialize(None, run_dir=str(self.c.run_dir(node)))
            try:
                vq.votequorum_setexpected(h, value)
                err = OK
            except CsError as e:
                err = e.code
            finally:
                vq.votequorum_finalize(h)
            self.setexpected.append((node, value, err))
        elif cmd == "snapshot":
            self._snapshot(" ".join(args))
        elif cmd == "assert":
            self._assert(args, lineno)
        else:
            raise AssertionError(f"line {lineno}: {cmd!r} is not supported live")

    def _running(self) -> list[int]:
        return [n for n in sorted(self.c.ports) if self.c.running(n)]

    # ------------------------------------------------------------ observing
    def observe(self, node: int, keys: bool) -> dict[str, str]:
        info = getinfo(self.c, node)
        cmap = self.c.cmap(node, "runtime.")
        client = self.clients[node]
        last = client.last_quorum()
        with client.cond:
            lines = list(client.lines)
        flips = out_of_sync_quorum_events(lines, self._snapshot_marks.get(node, 0))
        obs = {
            "state": "quorate" if cmap["runtime.pyquorum.quorate"] == "1" else "inquorate",
            "view": ",".join(cmap["runtime.pyquorum.members"].split()),
            "votes": str(info.node_votes),
            "expected": str(info.node_expected_votes),
            "highest": str(info.highest_expected),
            "total": str(info.total_votes),
            "quorum": str(info.quorum),
            "flags": ",".join(w for w, bit in FLAG_WORDS.items() if info.flags & bit) or "-",
            "flips": str(len(flips)),
            "callback": "none" if last is None else
            f"{'quorate' if last['quorate'] else 'inquorate'} "
            f"view={','.join(str(m) for m in last['members'])}",
        }
        if keys:
            for short, key in RUNTIME_KEYS.items():
                obs[short] = cmap.get(f"runtime.votequorum.{key}", "None")
        return obs

    def _snapshot(self, label: str) -> None:
        skip = self.skip.get(label, ())
        bound = SNAPSHOT_WAIT_S + self._extra_wait_s * 2
        seen: dict[int, dict[str, str]] = {}
        for exp in (e for e in self.expectations if e.label == label):
            want = {k: v for k, v in exp.fields.items() if k not in skip}
            keys = any(k in RUNTIME_KEYS for k in want)
            for n in exp.nodes:
                deadline = time.monotonic() + bound
                while True:  # bounded poll: only timers (LMS) change values after a view
                    got = self.observe(n, keys)
                    if all(got.get(k) == v for k, v in want.items()):
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    select.select([], [], [], min(0.05, left))
                seen[n] = got
        self.observed[label] = seen
        self._snapshot_marks = {n: cl.mark() for n, cl in self.clients.items()}
        self._extra_wait_s = 0.0

    def _assert(self, args: list[str], lineno: int) -> None:
        what = args[0]
        if what in ("quorate", "inquorate"):
            for n in self._nodes(args[1]):
                if self.observe(n, False)["state"] != what:
                    self.failures.append(f"line {lineno}: node {n} is not {what}")
        elif what == "view":
            want = ",".join(str(m) for m in self._nodes(args[3]))
            for n in self._nodes(args[1]):
                if self.observe(n, False)["view"] != want:
                    self.failures.append(f"line {lineno}: node {n}: view is not {want}")
        elif what == "expected":
            got = getinfo(self.c, int(args[1])).node_expected_votes
            if got != int(args[3]):
                self.failures.append(f"line {lineno}: node {args[1]} expected votes {got}, "
                                     f"not {args[3]}")
        else:
            raise AssertionError(f"line {lineno}: unknown assertion {what!r}")

    # ------------------------------------------------------------ results
    def mismatches(self, only: dict[str, tuple[str, ...]] | None = None,
                   skip: dict[str, tuple[str, ...]] | None = None) -> list[str]:
        out = []
        for exp in self.expectations:
            seen = self.observed.get(exp.label)
            if seen is None:
                out.append(f"line {exp.lineno}: snapshot {exp.label!r} was not reached")
                continue
            for node in exp.nodes:
                got = seen.get(node, {})
                for k, want in exp.fields.items():
                    if only is not None and k not in only.get(exp.label, ()):
                        continue
                    if skip is not None and k in skip.get(exp.label, ()):
                        continue
                    if got.get(k) != want:
                        out.append(f"line {exp.lineno} [{exp.label}] node {node}: {k} is "
                                   f"{got.get(k)}, the spec says {want}")
        return out

    def reached(self) -> LiveScript:
        """A copy that expects only the snapshots that were reached (a stopped script)."""
        return replace(self, expectations=[e for e in self.expectations
                                           if e.label in self.observed])

    def close(self) -> None:
        for cl in self.clients.values():
            with contextlib.suppress(AssertionError):
                cl.stop()
        if self.cluster is not None:
            self.cluster.close()


@pytest.fixture(scope="class")
def script(request: pytest.FixtureRequest) -> Iterator[LiveScript]:
    """The class's policy script (``POLICY``), run once on a fresh cluster."""
    name = request.cls.POLICY
    base = Path(tempfile.mkdtemp(prefix=f"pyquorum-policy-{name}-"))
    base.chmod(0o755)
    s = LiveScript(name, base)
    try:
        yield s.run()
    finally:
        s.close()
        if os.environ.get("PYQUORUM_KEEP_LOGS") != "1":
            shutil.rmtree(base, ignore_errors=True)


def assert_steps(s: LiveScript) -> None:
    """Every ``#=`` value (except KNOWN_BUGS fields) and every script assertion."""
    bad = s.mismatches(skip=s.skip) + s.failures
    assert bad == [], "\n".join(bad) + "\n" + json.dumps(s.observed, indent=1)[:6000]


# ====================================================================== the policies
class TestQuorumVotes:
    """Per-node quorum_votes: node 1 has 3 of 5 votes and is quorate alone."""

    POLICY = "quorum_votes"

    def test_steps(self, script: LiveScript) -> None:
        assert script.stopped_at is None
        assert_steps(script)

    def test_getinfo_of_other_nodes_reports_their_votes(self, script: LiveScript) -> None:
        assert {n: getinfo(script.c, 2, n).node_votes for n in (1, 2, 3)} == {1: 3, 2: 1, 3: 1}
        assert script.c.cmap(1, "nodelist.node.0.quorum_votes") == \
            {"nodelist.node.0.quorum_votes": "3"}


class TestExpectedVotes:
    """quorum.expected_votes 5 on 3 nodes; setexpected lowers it (and is refused below
    the votes present)."""

    POLICY = "expected_votes"

    def test_steps(self, script: LiveScript) -> None:
        assert script.stopped_at is None
        assert_steps(script)

    def test_setexpected_return_codes(self, script: LiveScript) -> None:
        assert script.setexpected == [(1, 3, OK), (2, 2, INVALID_PARAM)]


class TestTwoNode:
    """two_node (wait_for_all implied): cold start waits, survivor keeps quorum, a
    split leaves both halves quorate."""

    POLICY = "two_node"

    def test_steps(self, script: LiveScript) -> None:
        assert script.stopped_at is None
        assert_steps(script)


class TestTwoNodeNoWaitForAll:
    """two_node with wait_for_all: 0: a single cold-started node is quorate."""

    POLICY = "two_node_no_wait_for_all"

    def test_steps(self, script: LiveScript) -> None:
        assert script.stopped_at is None
        assert_steps(script)


class TestWaitForAll:
    """wait_for_all: waits at startup, clears on all votes or on joining a quorate
    cluster, re-arms when inquorate.  The cancel is simulator-only: pyquorumd has no
    IPC request (and no writable cmap key quorum.cancel_wait_for_all) that reaches the
    engine's VqCancelWaitForAll, so the script stops there and the live run ends with
    the other way out: all votes seen again."""

    POLICY = "wait_for_all"

    def test_steps_up_to_the_cancel(self, script: LiveScript) -> None:
        assert script.stopped_at == "cancel-wait-for-all 2"
        assert "cancelled" not in script.observed
        assert_steps(script.reached())

    def test_all_votes_clear_the_rearmed_wait(self, script: LiveScript) -> None:
        c, clients = script.c, script.clients
        marks = {n: cl.mark() for n, cl in clients.items()}
        c.start(3)
        for n in (1, 2, 3):
            clients[n].wait_quorum([1, 2, 3], True, since=marks[n], timeout=VIEW_WAIT_S)
        for n in (1, 2, 3):
            info = getinfo(c, n)
            assert (info.total_votes, info.node_expected_votes, info.quorum) == (3, 3, 2)
            assert info.flags == vq.VOTEQUORUM_INFO_QUORATE | vq.VOTEQUORUM_INFO_WAIT_FOR_ALL
            assert c.cmap(n, "runtime.votequorum.wait_for_all_status") == \
                {"runtime.votequorum.wait_for_all_status": "0"}


class TestLastManStanding:
    """last_man_standing, window 2000 ms: 5 -> 4 -> 3 -> 2 nodes stay quorate and each
    window lowers expected votes (no callback); 1 node is inquorate."""

    POLICY = "last_man_standing"

    def test_steps(self, script: LiveScript) -> None:
        assert script.stopped_at is None
        assert_steps(script)


class TestLastManStandingWithAutoTieBreaker:
    """LMS + ATB: the last node keeps quorum (ATB) and its window lowers expected votes
    and quorum to 1."""

    POLICY = "last_man_standing_atb"

    def test_steps(self, script: LiveScript) -> None:
        assert script.stopped_at is None
        assert_steps(script)


class TestLastManStandingWeighted:
    """LMS is switched off as soon as a node reports more than 1 vote."""

    POLICY = "last_man_standing_weighted"

    def test_steps(self, script: LiveScript) -> None:
        assert script.stopped_at is None
        assert_steps(script)

    def test_lms_disabled_is_logged(self, script: LiveScript) -> None:
        assert "Disabling LMS" in script.c.log(2)


class TestAutoTieBreakerLowest:
    POLICY = "atb_lowest"

    def test_steps(self, script: LiveScript) -> None:
        assert script.stopped_at is None
        assert_steps(script)

    def test_atb_type(self, script: LiveScript) -> None:
        assert script.c.cmap(2, "runtime.votequorum.atb_type") == \
            {"runtime.votequorum.atb_type": "1"}


class TestAutoTieBreakerHighest:
    POLICY = "atb_highest"

    def test_steps(self, script: LiveScript) -> None:
        assert script.stopped_at is None
        assert_steps(script)

    def test_atb_type(self, script: LiveScript) -> None:
        assert script.c.cmap(2, "runtime.votequorum.atb_type") == \
            {"runtime.votequorum.atb_type": "2"}


class TestAutoTieBreakerList:
    POLICY = "atb_list"

    def test_steps(self, script: LiveScript) -> None:
        assert script.stopped_at is None
        assert_steps(script)

    def test_atb_type_and_list(self, script: LiveScript) -> None:
        assert script.c.cmap(1, "runtime.votequorum.atb_type") == \
            {"runtime.votequorum.atb_type": "3"}
        assert script.c.cmap(1, "quorum.auto_tie_breaker_node") == \
            {"quorum.auto_tie_breaker_node": "3 1"}


class TestAllowDownscale:
    """allow_downscale: a clean stop (SIGTERM) sends LEAVING; a kill does not."""

    POLICY = "allow_downscale"

    def test_every_step(self, script: LiveScript) -> None:
        assert script.stopped_at is None
        assert_steps(script)

    def test_clean_stop_follows_the_member_count(self, script: LiveScript) -> None:
        """SIGTERM multicasts NODEINFO with LEAVING before the LEAVE: the survivors'
        expected votes follow the member count; a kill leaves them at 3."""
        assert script.mismatches(only={"node3-stopped": ("expected", "highest"),
                                       "node2-stopped": ("expected", "highest", "flips"),
                                       "node3-killed": ("expected",)}) == []
        assert script.observed["node3-stopped"][1]["expected"] == "2"


class TestExpectedVotesTracking:
    """expected_votes_tracking: the barrier raised by setexpected 4 survives a restart
    of the whole cluster (pyquorum persists it in the node's state file)."""

    POLICY = "expected_votes_tracking"

    def test_steps(self, script: LiveScript) -> None:
        assert script.stopped_at is None
        assert_steps(script)

    def test_setexpected_and_stored_barrier(self, script: LiveScript) -> None:
        assert script.setexpected == [(1, 4, OK)]
        for n in (1, 2, 3):
            state = json.loads((script.c.state_dir(n) / f"pyquorum-node{n}.state").read_text())
            assert state["ev_barrier"] == 4, state
