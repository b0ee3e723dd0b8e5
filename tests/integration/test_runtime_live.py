"""Runtime changes on a live 3-node cluster of real daemons: setexpected / setvotes with
their refusals (spec 4.8), the cluster-wide reload of ``pyquorumtool --reload``, a
SIGHUP reload of one node (spec 4.10), and ``pyquorumtool --cancel-wait-for-all``.

Every value is read with ``votequorum_getinfo`` over the daemon's IPC and waited for
with a bounded poll; changes travel as RECONFIGURE messages in agreed order, so every
member must end with the same values.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable

from harness import LocalCluster, RawIpcClient, wait_until

from pyquorum.errors import CsErr
from pyquorum.wire import ipc

WAIT_S = 30.0
QUORATE = 2  # VOTEQUORUM_INFO_QUORATE


def tool(c: LocalCluster, node: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyquorum.tools.quorumtool",
                           "--run-dir", str(c.run_dir(node)), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def info(c: LocalCluster, node: int, of: int = 0) -> ipc.VqGetInfoRes:
    with RawIpcClient(c.run_dir(node), ipc.SERVICE_VOTEQUORUM) as vq:
        res = vq.request(ipc.VqGetInfoReq(of))
    assert isinstance(res, ipc.VqGetInfoRes) and res.error == CsErr.CS_OK, res
    return res


def values(c: LocalCluster, node: int) -> tuple[int, int, int, bool]:
    """(expected votes, total votes, quorum, quorate) of ``node``."""
    i = info(c, node)
    return i.node_expected_votes, i.total_votes, i.quorum, bool(i.flags & QUORATE)


def wait_values(c: LocalCluster, nodes: Iterable[int], want: tuple[int, int, int, bool]) -> None:
    nodes = tuple(nodes)
    wait_until(lambda: all(values(c, n) == want for n in nodes), WAIT_S,
               f"(expected, total, quorum, quorate) = {want} on nodes {nodes}: "
               + ", ".join(f"{n}: {values(c, n)}" for n in nodes))


def started(local_cluster: Callable[..., LocalCluster], n: int = 3, **kw: object
            ) -> LocalCluster:
    c = local_cluster(n, **kw)
    for node in range(1, n + 1):
        c.start(node)
    wait_values(c, range(1, n + 1), (n, n, n // 2 + 1, True))
    return c


def test_setexpected_and_setvotes_with_corosyncs_refusals(
        local_cluster: Callable[..., LocalCluster]) -> None:
    c = started(local_cluster)
    r = tool(c, 1, "-e", "2")  # below the 3 votes present
    assert (r.returncode, r.stderr) == (1, "Unable to set expected votes: CS_ERR_INVALID_PARAM\n")
    wait_values(c, (1, 2, 3), (3, 3, 2, True))

    r = tool(c, 2, "-e", "5")
    assert r.returncode == 0, r.stderr
    wait_values(c, (1, 2, 3), (5, 3, 3, True))
    assert tool(c, 3, "-e", "3").returncode == 0
    wait_values(c, (1, 2, 3), (3, 3, 2, True))

    assert tool(c, 1, "-v", "0", "-n", "1").returncode == 0
    wait_values(c, (1, 2, 3), (3, 2, 2, True))
    assert info(c, 3, of=1).node_votes == 0
    r = tool(c, 1, "-v", "0", "-n", "2")  # total 1 < quorum 2: quorum impossible
    assert r.returncode == 1
    assert r.stderr == "Unable to set votes 0 for nodeid: 2: CS_ERR_INVALID_PARAM\n"
    r = tool(c, 1, "-v", "1", "-n", "99")
    assert r.returncode == 1
    assert r.stderr == "Unable to set votes 1 for nodeid: 99: CS_ERR_NAME_NOT_FOUND\n"
    assert tool(c, 2, "-v", "1", "-n", "1").returncode == 0
    wait_values(c, (1, 2, 3), (3, 3, 2, True))


def test_cluster_wide_reload_applies_every_nodes_file(
        local_cluster: Callable[..., LocalCluster]) -> None:
    c = started(local_cluster)
    c.quorum = {"expected_votes": 5}
    for n in (1, 2, 3):
        c.write_config(n)
    r = tool(c, 2, "--reload")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_values(c, (1, 2, 3), (5, 3, 3, True))
    for n in (1, 2, 3):
        assert "Config reload requested by node 2" in c.log(n)

    # the reload path has no safety check: expected 7 makes quorum 4 > 3 votes
    c.quorum = {"expected_votes": 7}
    for n in (1, 2, 3):
        c.write_config(n)
    assert tool(c, 1, "--reload").returncode == 0
    wait_values(c, (1, 2, 3), (7, 3, 4, False))


def test_a_broken_file_is_refused_on_its_node_only(
        local_cluster: Callable[..., LocalCluster]) -> None:
    c = started(local_cluster)
    path = c.config_path(3)
    path.write_text(path.read_text() + "quorum {\n    expected_votes: 4\n")  # unclosed
    c.quorum = {"expected_votes": 4}
    for n in (1, 2):
        c.write_config(n)
    r = tool(c, 3, "--reload")
    assert r.returncode == 1
    assert "Could not reload configuration. Error CS_ERR_LIBRARY" in r.stdout + r.stderr
    wait_until(lambda: "Unable to reload config file: " in c.log(3), WAIT_S, "the error log")
    assert f"{path}:" in c.log(3)  # the error names the file (and line)
    # nodes 1 and 2 applied expected 4 and told everyone (RECONFIGURE reaches node 3 too)
    wait_values(c, (1, 2, 3), (4, 3, 3, True))
    assert c.running(3)


def test_sighup_reloads_one_node_whose_change_reaches_every_member(
        local_cluster: Callable[..., LocalCluster]) -> None:
    c = started(local_cluster)
    c.quorum = {"expected_votes": 4}
    c.write_config(1)
    os.kill(c.pid(1), signal.SIGHUP)
    wait_values(c, (1, 2, 3), (4, 3, 3, True))
    assert "Config reload requested by SIGHUP" in c.log(1)
    assert "Config reload requested" not in c.log(2) + c.log(3)


def test_reload_adds_a_node_that_then_joins(
        local_cluster: Callable[..., LocalCluster]) -> None:
    c = local_cluster(4)
    for n in (1, 2, 3):
        c.write_config(n, members=(1, 2, 3))
        c.start(n)
    wait_values(c, (1, 2, 3), (3, 3, 2, True))
    for n in (1, 2, 3):
        c.write_config(n)  # all four nodes
    assert tool(c, 1, "--reload").returncode == 0
    wait_values(c, (1, 2, 3), (4, 3, 3, True))
    c.start(4)
    wait_values(c, (1, 2, 3, 4), (4, 4, 3, True))
    assert c.cmap(4, "runtime.pyquorum.members") == {"runtime.pyquorum.members": "1 2 3 4"}


def test_cancel_wait_for_all_makes_a_partial_cluster_quorate(
        local_cluster: Callable[..., LocalCluster]) -> None:
    c = local_cluster(3, quorum={"wait_for_all": 1})
    c.start(1)
    c.start(2)
    wait_until(lambda: info(c, 1).total_votes == 2 and info(c, 2).total_votes == 2, WAIT_S,
               "nodes 1 and 2 together")
    assert values(c, 1) == (3, 2, 2, False)  # waiting for all
    r = tool(c, 2, "--cancel-wait-for-all")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_values(c, (1, 2), (3, 2, 2, True))
    assert "wait_for_all_status reset by user on node 2." in c.log(1) + c.log(2)


def test_a_reload_gets_the_runtime_fallback_where_startup_would_refuse(
        local_cluster: Callable[..., LocalCluster]) -> None:
    """A quorum device next to last_man_standing is fatal at start-up (spec 4.2 #9); on a
    reload votequorum disables device operations instead and the cluster stays quorate."""
    c = started(local_cluster, quorum={"last_man_standing": 1})
    device = "quorum {\n    device {\n        model: net\n    }\n}\n"
    c.write_config(2, extra=device)
    os.kill(c.pid(2), signal.SIGHUP)
    wait_until(lambda: "disabling quorum device operations" in c.log(2), WAIT_S,
               "the runtime fallback")
    assert "configuration error: quorum.device is not compatible with last_man_standing" \
        in c.log(2)
    assert c.cmap(2, "runtime.votequorum.qdevice_can_operate") == {
        "runtime.votequorum.qdevice_can_operate": "0"}
    # As in Corosync, the derived device votes (N - 1 = 2, 4.2 #13) still count in the
    # expected votes although the device may not operate: 5 expected, quorum 3.
    wait_values(c, (1, 2, 3), (5, 3, 3, True))
    c.stop(2)
    r = c.start(2, wait_ready=False)
    assert r.wait(timeout=WAIT_S) == 1  # the same file is refused at start-up
    assert "last_man_standing" in c.stderr(2)


def test_cmap_stamps_when_the_quorate_bit_last_changed(
        local_cluster: Callable[..., LocalCluster]) -> None:
    """``runtime.pyquorum.quorate_changed_ns`` (CLOCK_MONOTONIC, the fan-out benchmark's
    origin): set when the cluster became quorate, moved when it loses quorum, and not
    moved by a change that leaves the bit alone."""
    key = "runtime.pyquorum.quorate_changed_ns"
    c = started(local_cluster)

    def stamp() -> int:
        return int(c.cmap(1, key)[key])

    formed = stamp()
    assert 0 < formed < time.monotonic_ns()
    c.kill(3)  # 2 of 3 votes: still quorate, the bit does not change
    wait_values(c, [1, 2], (3, 2, 2, True))
    assert stamp() == formed
    before = time.monotonic_ns()
    c.kill(2)
    wait_values(c, [1], (3, 1, 2, False))
    assert before < stamp() < time.monotonic_ns()
