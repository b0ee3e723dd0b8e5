"""Real daemons on loopback: formation, kill, restart, pause, clean stop, partitions.

Each test tracks with V1 quorum connections (MODEL_GETTYPE 1 + TRACKSTART
CURRENT|CHANGES) over the raw IPC client and waits, bounded, for the callbacks the
oracle traces show (nodelist(R) then quorum(R)).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from harness import LocalCluster, RawIpcClient, find_view, v1_tracker, view_reached

from pyquorum.wire import ipc

WAIT_S = 25.0


def start_all(c: LocalCluster, nodes: Sequence[int]) -> dict[int, RawIpcClient]:
    """Start ``nodes`` and wait until every one reports the merged quorate view."""
    for n in nodes:
        c.start(n)
    trackers = {n: v1_tracker(c.run_dir(n)) for n in nodes}
    for t in trackers.values():
        t.collect_events(view_reached(nodes, quorate=1), WAIT_S)
    return trackers


def close_all(trackers: dict[int, RawIpcClient]) -> None:
    for t in trackers.values():
        t.close()


def test_three_nodes_form_one_quorate_ring(local_cluster: Callable[..., LocalCluster]) -> None:
    c = local_cluster(3)
    for n in (1, 2, 3):
        c.start(n)
    trackers = {n: v1_tracker(c.run_dir(n)) for n in (1, 2, 3)}
    try:
        rings = set()
        for t in trackers.values():
            events = t.collect_events(view_reached((1, 2, 3), quorate=1), WAIT_S)
            found = find_view(events, (1, 2, 3), quorate=1)
            assert found is not None
            nodelist, quorum = found
            assert quorum.quorate == 1 and quorum.members == (1, 2, 3)
            assert nodelist.ring == quorum.ring
            rings.add(quorum.ring)
        assert len(rings) == 1, f"the nodes report different rings: {rings}"
        ring = rings.pop()
        assert ring.rep == 1
        for n in (1, 2, 3):
            assert "Members[3]: 1 2 3" in c.log(n)
            assert "This node is within the primary component" in c.log(n)
            keys = c.cmap(n, "runtime.pyquorum.")
            assert keys["runtime.pyquorum.members"] == "1 2 3"
            assert keys["runtime.pyquorum.quorate"] == "1"
    finally:
        close_all(trackers)


def test_kill_and_restart_of_node3(local_cluster: Callable[..., LocalCluster]) -> None:
    c = local_cluster(3)
    trackers = start_all(c, (1, 2, 3))
    try:
        for n in (1, 2):
            trackers[n].drain_events()
        trackers[3].close()
        del trackers[3]
        c.kill(3)
        for n in (1, 2):
            events = trackers[n].collect_events(
                view_reached((1, 2), quorate=1, joined=(), left=(3,)), WAIT_S)
            first = events[0]
            assert isinstance(first, ipc.NodelistV1Event) and first.left == (3,), events
        c.start(3)
        for n in (1, 2):
            events = trackers[n].collect_events(
                view_reached((1, 2, 3), quorate=1, joined=(3,), left=()), WAIT_S)
            assert isinstance(events[0], ipc.NodelistV1Event), events
    finally:
        close_all(trackers)


def test_pause_past_token_then_resume(local_cluster: Callable[..., LocalCluster]) -> None:
    """Oracle i_pause_resume / api-edge-cases 7: the survivors see left=[3] then
    joined=[3]; node 3 never reports a singleton or inquorate view."""
    c = local_cluster(3)
    trackers = start_all(c, (1, 2, 3))
    try:
        for t in trackers.values():
            t.drain_events()
        c.pause(3)
        try:
            for n in (1, 2):
                trackers[n].collect_events(view_reached((1, 2), quorate=1, left=(3,)), WAIT_S)
        finally:
            c.resume(3)
        for n in (1, 2):
            trackers[n].collect_events(view_reached((1, 2, 3), quorate=1, joined=(3,)), WAIT_S)
        events = trackers[3].collect_events(view_reached((1, 2, 3), quorate=1), WAIT_S)
        for ev in events:
            if isinstance(ev, ipc.NodelistV1Event | ipc.QuorumV1Event):
                assert ev.members == (1, 2, 3), f"node 3 reported another view: {events}"
            if isinstance(ev, ipc.QuorumV1Event):
                assert ev.quorate == 1, events
        assert "Corosync main process was not scheduled" in c.log(3)
    finally:
        close_all(trackers)


def test_clean_stop_is_seen_quickly_and_exits_0(local_cluster: Callable[..., LocalCluster]
                                                ) -> None:
    c = local_cluster(3)
    trackers = start_all(c, (1, 2, 3))
    try:
        for n in (1, 2):
            trackers[n].drain_events()
        trackers[3].close()
        del trackers[3]
        t0 = time.monotonic()
        assert c.stop(3) == 0
        for n in (1, 2):
            trackers[n].collect_events(view_reached((1, 2), quorate=1, left=(3,)), WAIT_S)
        elapsed = time.monotonic() - t0
        token_s = int(c.cmap(1, "runtime.config.totem.token")["runtime.config.totem.token"]) / 1e3
        assert elapsed < token_s, f"LEAVE took {elapsed:.2f} s (token {token_s} s)"
        log = c.log(3)
        assert "Node was shut down by a signal" in log
        assert "pyquorumd exiting normally" in log
        assert not (c.run_dir(3) / ipc.SOCKET_NAME).exists()
        assert not (c.run_dir(3) / "pyquorumd.pid").exists()
    finally:
        close_all(trackers)


def test_partition_2_of_5_and_heal(local_cluster: Callable[..., LocalCluster]) -> None:
    c = local_cluster(5)
    nodes = (1, 2, 3, 4, 5)
    trackers = start_all(c, nodes)
    minority, majority = (1, 2), (3, 4, 5)
    try:
        for t in trackers.values():
            t.drain_events()
        for n in minority:
            c.block(n, majority)
        for n in majority:
            c.block(n, minority)
        for n in minority:
            trackers[n].collect_events(view_reached(minority, quorate=0, left=majority), WAIT_S)
        for n in majority:
            trackers[n].collect_events(view_reached(majority, quorate=1, left=minority), WAIT_S)
        for n in nodes:
            c.block(n, ())
        for n in nodes:
            trackers[n].collect_events(view_reached(nodes, quorate=1), WAIT_S)
        keys = c.cmap(1, "runtime.pyquorum.stats.blocked_")
        assert int(keys["runtime.pyquorum.stats.blocked_out"]) > 0
    finally:
        close_all(trackers)
