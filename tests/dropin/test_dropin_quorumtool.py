"""Debian's unmodified ``corosync-quorumtool`` against pyquorumd and against real Corosync
3.1.7, in identical clusters: the same commands in the same states must print the same
output (after the normalizations below) and exit with the same code.

Clusters: the default 3-node votequorum one (``twin_clusters``, shared by the module), and
fresh pairs (``fresh_twins``) for ``two_node: 1`` (2 nodes: both up, node 2 killed),
``wait_for_all: 1`` (3 nodes: 1 and 2 started, then 3, then 3 killed) and no quorum provider.

States of the default cluster: all three nodes up; node 3 killed (SIGKILL: two left,
quorate), then ``-e 2``; node 2 killed too (one left, inquorate), then ``-e 1`` (quorate
again).  ``-m`` runs on a survivor and on the victim across the first kill, and on the
survivor across the second kill and ``-e 1``.  Commands run on node 1 unless they name another node.

Normalizations (``normalize``), each for a value that legitimately differs:

* ``Date:`` lines: the wall clock when the tool printed the block.
* the sequence part of ``Ring ID: <rep>.<seq>``: Corosync's ring sequence starts at 4 on a
  fresh state_dir and grows by 4 per membership change, with totem's own intermediate
  rings (gather/commit); pyquorum's membership protocol numbers its rings its own way.
  The representative (ring id's node) is kept and compared.
* the first three octets of node addresses (``-i``): each cluster has its own subnet.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from dropcluster import (
    ORACLE_DIR,
    Monitor,
    Side,
    Twins,
    identical_config,
    wait_until,
    wait_views,
)

pytestmark = pytest.mark.dropin

MakeTwins = Callable[..., Twins]

_DATE = re.compile(r"^Date:( +).*$", re.M)
_RING = re.compile(r"^Ring ID:( +)([0-9a-fA-Fx]+)\.[0-9a-f]+$", re.M)


def normalize(text: str, subnet: str) -> str:
    """``text`` without what legitimately differs between the clusters (module doc)."""
    text = _DATE.sub(r"Date:\1<date>", text)
    text = _RING.sub(r"Ring ID:\1\2.<seq>", text)
    return text.replace(f"{subnet}.", "<net>.")


@dataclass(frozen=True)
class Outcome:
    """What one command did: exit code, normalized stdout and stderr."""

    rc: int
    out: str
    err: str


def outcome(side: Side, res: subprocess.CompletedProcess[str]) -> Outcome:
    return Outcome(res.returncode, normalize(res.stdout, side.subnet),
                   normalize(res.stderr, side.subnet))


class Comparison:
    """Runs each command on both clusters, the same node, one after the other; keeps the
    differences (all of them, reported together)."""

    def __init__(self, corosync: Side, pyquorum: Side) -> None:
        self.corosync = corosync
        self.pyquorum = pyquorum
        self.compared: list[str] = []
        self.differences: list[str] = []

    def check(self, label: str, want: Outcome, got: Outcome) -> None:
        self.compared.append(label)
        if want != got:
            self.differences.append(
                f"--- {label}\n  corosync rc={want.rc}\n{want.out}{want.err}"
                f"\n  pyquorum rc={got.rc}\n{got.out}{got.err}")

    def tool(self, state: str, node: int, *args: str) -> Outcome:
        """``corosync-quorumtool args`` on ``node`` of both clusters; Corosync's outcome."""
        want = outcome(self.corosync, self.corosync.tool(node, *args))
        got = outcome(self.pyquorum, self.pyquorum.tool(node, *args))
        self.check(f"{state}: node {node}: corosync-quorumtool {' '.join(args)}", want, got)
        return want

    def monitors(self, state: str, node: int, monitors: tuple[Monitor, Monitor], *,
                 signal_it: bool) -> None:
        """Compare two ``-m`` runs: exit code, output, stderr.  The test signals them
        (``signal_it``) only when no change is pending, with the tool idle in dispatch,
        so no block is ever cut."""
        outcomes = []
        for side, mon in zip((self.corosync, self.pyquorum), monitors, strict=True):
            rc, out, err = mon.finish(signal_it=signal_it)
            outcomes.append(Outcome(rc, normalize(out, side.subnet), normalize(err, side.subnet)))
        self.check(f"{state}: node {node}: corosync-quorumtool -m", *outcomes)

    def assert_equal(self) -> None:
        assert not self.differences, (
            f"{len(self.differences)} of {len(self.compared)} outcomes differ:\n"
            + "\n".join(self.differences))


STATUS_VIEWS = (("-s",), ("-l",), ("-p",), ("-s", "-p"), ("-l", "-p"), ("-s", "-H"),
                ("-l", "-H"), ("-l", "-i"), ("-l", "-a"))


def test_normalize_masks_only_what_is_documented() -> None:
    block = ("Date:             Sun Nov 22 01:00:25 2026\nNode ID:          1\n"
             "Ring ID:          1.d\nQuorate:          Yes\n"
             "         1          1 10.213.64.1 (local)\n")
    assert normalize(block, "10.213.64") == (
        "Date:             <date>\nNode ID:          1\nRing ID:          1.<seq>\n"
        "Quorate:          Yes\n         1          1 <net>.1 (local)\n")


def test_pyquorum_nodes_run_corosyncs_configuration() -> None:
    corosync = (ORACLE_DIR / "traces" / "b_kill3" / "corosync.conf").read_text()
    ours = identical_config(corosync, corosync_net="10.213.77", net="10.213.65",
                            node_dir=Path("/x/n1"))
    removed = set(corosync.splitlines()) - set(ours.splitlines())
    added = set(ours.splitlines()) - set(corosync.splitlines())
    assert {line.split(":")[0].strip() for line in removed} == {
        "ring0_addr", "logfile", "state_dir"}
    assert sorted(added) == sorted([
        "        ring0_addr: 10.213.65.1", "        ring0_addr: 10.213.65.2",
        "        ring0_addr: 10.213.65.3", "    logfile: /x/n1/pyquorumd.log",
        "    state_dir: /x/n1/state", "    run_dir: /x/n1/run", "    libqb_ipc: yes"])


def test_quorumtool_matches_corosync_through_kills(twin_clusters: Twins) -> None:
    corosync, pyquorum, _, _ = twin_clusters
    both = (corosync, pyquorum)
    c = Comparison(corosync, pyquorum)

    # ---- all three up
    state = "3 up"
    for args in STATUS_VIEWS:
        c.tool(state, 1, *args)
    c.tool(state, 2, "-s")
    c.tool(state, 3, "-l")
    assert c.tool(state, 1, "-e", "3").rc == 0          # accepted: no change
    assert c.tool(state, 1, "-e", "10").rc != 0         # refused: would lose quorum
    assert c.tool(state, 2, "-v", "1", "-n", "2").rc == 0   # accepted: no change
    assert c.tool(state, 2, "-v", "1", "-n", "4242").rc != 0  # refused: no such node
    assert c.tool(state, 3, "-v", "1").rc == 0          # accepted: the local node
    assert c.tool(state, 1, "-f").rc == 0               # no quorum device: nothing to do
    assert c.tool(state, 1, "-s").rc == 0               # nothing changed

    # ---- kill node 3, with monitors on a survivor and on the victim
    survivor = (corosync.monitor(1), pyquorum.monitor(1))
    victim = (corosync.monitor(3), pyquorum.monitor(3))
    for mon in survivor + victim:  # -m prints the current state first
        wait_until(lambda: len(mon.blocks()) >= 1, "a monitor's first block")  # noqa: B023
    for side in both:
        side.kill(3)
    wait_views(both, (1, 2), quorate=True)
    for mon in survivor:
        wait_until(lambda: len(mon.blocks()) >= 2, "the monitor's block for 2 nodes")  # noqa: B023
    for mon in victim:
        wait_until(lambda: mon.proc.poll() is not None, "the victim's monitor to end")  # noqa: B023
    c.monitors("kill 3", 3, victim, signal_it=False)
    c.monitors("kill 3", 1, survivor, signal_it=True)

    state = "3 killed"
    for args in STATUS_VIEWS:
        c.tool(state, 1, *args)
    c.tool(state, 2, "-s")
    c.tool(state, 2, "-v", "1", "-n", "3")   # a configured node that is down
    assert c.tool(state, 3, "-s").rc == 1    # no daemon in node 3's namespace
    assert c.tool(state, 2, "-e", "2").rc == 0  # accepted: expected votes down to 2
    wait_views(both, (1, 2), quorate=True)
    c.tool(state + ", expected 2", 1, "-s")

    # ---- kill node 2: node 1 alone, inquorate; -e 1 makes it quorate; monitored
    survivor = (corosync.monitor(1), pyquorum.monitor(1))
    for mon in survivor:
        wait_until(lambda: len(mon.blocks()) >= 1, "a monitor's first block")  # noqa: B023
    for side in both:
        side.kill(2)
    wait_views(both, (1,), quorate=False)
    for mon in survivor:
        wait_until(lambda: len(mon.blocks()) >= 2, "the monitor's block for 1 node")  # noqa: B023
    state = "2, 3 killed (expected 2)"
    assert c.tool(state, 1, "-s").rc == 2
    for args in STATUS_VIEWS[1:]:
        c.tool(state, 1, *args)
    assert c.tool(state, 1, "-e", "1").rc == 0
    wait_views(both, (1,), quorate=True)
    # Corosync's -m prints no block for this change: after the quorum callback it waits
    # for a votequorum nodelist callback, which a change of expected votes does not send.
    c.monitors("kill 2, -e 1", 1, survivor, signal_it=True)
    state = "2, 3 killed, expected 1"
    assert c.tool(state, 1, "-s").rc == 0
    assert c.tool(state, 1, "-e", "10").rc == 1
    c.tool(state, 1, "-l", "-p")

    c.assert_equal()


def test_quorumtool_matches_corosync_two_node(fresh_twins: MakeTwins) -> None:
    """``two_node: 1`` (2 nodes; votequorum turns wait_for_all on with it): both up, then
    node 2 killed, node 1 stays quorate."""
    corosync, pyquorum, _, _ = fresh_twins(2, "k", two_node=True)
    both = (corosync, pyquorum)
    c = Comparison(corosync, pyquorum)
    wait_views(both, (1, 2), quorate=True)
    state = "two_node, 2 up"
    assert "Flags:            2Node Quorate WaitForAll \n" in c.tool(state, 1, "-s").out
    for args in STATUS_VIEWS[1:]:
        c.tool(state, 1, *args)
    c.tool(state, 2, "-s")
    for side in both:
        side.kill(2)
    wait_views(both, (1,), quorate=True)
    state = "two_node, 2 killed"
    want = c.tool(state, 1, "-s")
    assert want.rc == 0 and "Flags:            2Node Quorate WaitForAll \n" in want.out
    for args in STATUS_VIEWS[1:]:
        c.tool(state, 1, *args)
    c.assert_equal()


def test_quorumtool_matches_corosync_wait_for_all(fresh_twins: MakeTwins) -> None:
    """``wait_for_all: 1``, 3 nodes, fresh: only nodes 1 and 2 started (a majority, yet
    inquorate until every node was seen), then node 3 (quorate), then node 3 killed
    (quorate: all were seen)."""
    corosync, pyquorum, _, _ = fresh_twins(3, "w", wait_for_all=True, start=(1, 2))
    both = (corosync, pyquorum)
    c = Comparison(corosync, pyquorum)
    wait_views(both, (1, 2), quorate=False)
    state = "wait_for_all, 1 and 2 started"
    want = c.tool(state, 1, "-s")
    assert want.rc == 2 and "Flags:            WaitForAll \n" in want.out
    c.tool(state, 2, "-s")
    c.tool(state, 1, "-l")
    for side in both:
        side.start(3)
    wait_views(both, (1, 2, 3), quorate=True)
    state = "wait_for_all, 3 started"
    assert c.tool(state, 1, "-s").rc == 0
    c.tool(state, 3, "-s")
    for side in both:
        side.kill(3)
    wait_views(both, (1, 2), quorate=True)
    state = "wait_for_all, 3 killed after all were seen"
    assert c.tool(state, 1, "-s").rc == 0
    c.assert_equal()


def _without_provider(conf: str) -> str:
    assert "    provider: corosync_votequorum\n" in conf, conf
    return conf.replace("    provider: corosync_votequorum\n", "")


def test_quorumtool_matches_corosync_without_provider(fresh_twins: MakeTwins) -> None:
    """No ``quorum.provider`` (an empty ``quorum`` section): no votequorum service, so
    ``-s`` fails (its votequorum calls fail) and ``-l`` lists nobody, on both."""
    corosync, pyquorum, _, _ = fresh_twins(3, "n", edit=_without_provider)
    both = (corosync, pyquorum)
    c = Comparison(corosync, pyquorum)
    for side in both:  # the tool shows no membership here: wait for every daemon's IPC
        for node in (1, 2, 3):
            wait_until(lambda: side.tool(node, "-l").returncode == 0,  # noqa: B023
                       f"{side.name} node {node}'s IPC")
    state = "no quorum provider"
    assert c.tool(state, 1, "-s").rc == 1
    c.tool(state, 1, "-l")
    c.tool(state, 2, "-s", "-p")
    c.tool(state, 3, "-e", "2")
    c.assert_equal()
