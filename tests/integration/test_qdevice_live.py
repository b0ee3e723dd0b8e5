"""The quorum-device API (spec 4.9) end to end: real daemons, Python quorum devices.

Two nodes (no two_node) with ``quorum { device { model: net } }``: the device votes are
derived (N - 1 = 1), expected votes 3, quorum 2.  On each node a ``QdeviceAgent`` does
what corosync-qdevice does through ``pyquorum.client.votequorum``: it tracks votequorum
to learn the ring id from the nodelist callback, registers "Qdevice" and polls with
``cast_vote=1`` every ``POLL_S``.  Every wait is bounded and waits for an event or a
state; the agents' poll period is the device's behaviour, not a synchronisation.
"""

from __future__ import annotations

import contextlib
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from harness import LocalCluster, RawIpcClient, v1_tracker, view_reached, wait_until

from pyquorum.client import votequorum as vq
from pyquorum.errors import CsErr, CsError
from pyquorum.types import RingId
from pyquorum.wire import ipc

WAIT_S = 20.0
POLL_S = 0.2
TIMEOUT_MS = 1500
SYNC_TIMEOUT_MS = 5000
DEVICE = (
    "quorum {\n"
    "    device {\n"
    "        model: net\n"
    f"        timeout: {TIMEOUT_MS}\n"
    f"        sync_timeout: {SYNC_TIMEOUT_MS}\n"
    "    }\n"
    "}\n"
)
DEVICE_FLAGS = (vq.VOTEQUORUM_INFO_QDEVICE_REGISTERED | vq.VOTEQUORUM_INFO_QDEVICE_ALIVE
                | vq.VOTEQUORUM_INFO_QDEVICE_CAST_VOTE)


class QdeviceAgent:
    """A minimal quorum device on one node (a thread; ``polling`` pauses its polls)."""

    def __init__(self, run_dir: Path, name: str = "Qdevice") -> None:
        self.name = name
        self.ring: vq.VotequorumRingId | None = None
        self.results: list[CsErr] = []
        self.polling = threading.Event()
        self.polling.set()
        self._stop = threading.Event()
        self.handle = vq.votequorum_initialize(
            vq.VotequorumCallbacks(nodelist_notify_fn=self._nodelist), run_dir=str(run_dir))
        vq.votequorum_trackstart(self.handle, 0, vq.CS_TRACK_CURRENT | vq.CS_TRACK_CHANGES)
        vq.votequorum_dispatch(self.handle, vq.CS_DISPATCH_ALL)  # the snapshot: our ring
        assert self.ring is not None
        vq.votequorum_qdevice_register(self.handle, name)
        self._thread = threading.Thread(target=self._run, name=f"qdevice-{run_dir}",
                                        daemon=True)
        self._thread.start()

    def _nodelist(self, handle: int, context: int, ring: vq.VotequorumRingId,
                  nodeids: list[int]) -> None:
        self.ring = ring

    def _run(self) -> None:
        fd = vq.votequorum_fd_get(self.handle)
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([fd], [], [], POLL_S)
                if readable:
                    vq.votequorum_dispatch(self.handle, vq.CS_DISPATCH_ALL)
                if self.polling.is_set() and self.ring is not None:
                    try:
                        vq.votequorum_qdevice_poll(self.handle, self.name, 1, self.ring)
                        self.results.append(CsErr.CS_OK)
                    except CsError as e:
                        self.results.append(CsErr(e.code))
        except CsError as e:  # the daemon went away
            self.results.append(CsErr(e.code))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=WAIT_S)
        with contextlib.suppress(CsError):
            vq.votequorum_finalize(self.handle)


def info(run_dir: Path, nodeid: int = 0) -> vq.VotequorumInfo:
    handle = vq.votequorum_initialize(None, run_dir=str(run_dir))
    try:
        return vq.votequorum_getinfo(handle, nodeid)
    finally:
        vq.votequorum_finalize(handle)


def voting(run_dir: Path) -> bool:
    i = info(run_dir)
    return i.flags & DEVICE_FLAGS == DEVICE_FLAGS and i.total_votes == 3


def quorumtool(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyquorum.tools.quorumtool",
                           "--run-dir", str(run_dir), *args],
                          capture_output=True, text=True, timeout=WAIT_S, check=False)


def membership_block(text: str) -> str:
    return text[text.index("Membership information"):]


def quorum_events(events: list[object]) -> list[ipc.QuorumV1Event]:
    return [ev for ev in events if isinstance(ev, ipc.QuorumV1Event)]


def test_two_nodes_with_a_quorum_device(local_cluster: Callable[..., LocalCluster]) -> None:
    c = local_cluster(2)
    for n in (1, 2):
        c.write_config(n, extra=DEVICE)
        c.start(n)
    tracker = v1_tracker(c.run_dir(1))
    agents: list[QdeviceAgent] = []
    try:
        tracker.collect_events(view_reached([1, 2], quorate=1), WAIT_S)
        assert (info(c.run_dir(1)).qdevice_votes, info(c.run_dir(1)).node_expected_votes) == (1, 3)
        agents = [QdeviceAgent(c.run_dir(n)) for n in (1, 2)]
        for n in (1, 2):
            wait_until(lambda n=n: voting(c.run_dir(n)), WAIT_S, f"node {n}'s device vote")
        i = info(c.run_dir(2), 1)
        assert (i.qdevice_name, i.qdevice_votes, i.quorum) == ("Qdevice", 1, 2)
        assert i.flags & DEVICE_FLAGS == DEVICE_FLAGS
        assert c.cmap(1, "runtime.votequorum.qdevice") == {
            "runtime.votequorum.qdevice_can_operate": "1",
            "runtime.votequorum.qdevice_master_wins": "0",
        }

        # the return codes of a second device and a stale ring, over the real IPC
        with RawIpcClient(c.run_dir(1), ipc.SERVICE_VOTEQUORUM) as raw:
            assert raw.request(ipc.VqQdeviceRegisterReq("Other")) == ipc.VqStatusRes(
                CsErr.CS_ERR_EXIST)
            assert raw.request(ipc.VqQdeviceRegisterReq("Qdevice")) == ipc.VqStatusRes(
                CsErr.CS_OK)
            stale = ipc.VqQdevicePollReq("Qdevice", 1, RingId(1, 1))
            assert raw.request(stale) == ipc.VqStatusRes(CsErr.CS_ERR_MESSAGE_ERROR)
            assert raw.request(ipc.VqQdeviceMasterWinsReq("Wrong", 1)) == ipc.VqStatusRes(
                CsErr.CS_ERR_INVALID_PARAM)

        # pyquorumtool -s: the Qdevice column and the nodeid 0 row (spec 7.2)
        r = quorumtool(c.run_dir(1), "-s")
        assert (r.returncode, r.stderr) == (0, ""), r.stdout + r.stderr
        assert "Total votes:      3\n" in r.stdout
        assert re.search(r"^Flags:            Quorate Qdevice $", r.stdout, re.M), r.stdout
        assert membership_block(r.stdout) == (
            "Membership information\n"
            "----------------------\n"
            "    Nodeid      Votes    Qdevice Name\n"
            "         1          1    A,V,NMW node1 (local)\n"
            "         2          1    A,V,NMW node2\n"
            "         0          1            Qdevice\n"
        )

        # node 2 dies: node 1 keeps quorum thanks to its device's vote (1 + 1 of 3)
        tracker.drain_events()
        c.kill(2)
        events = tracker.collect_events(view_reached([1], quorate=1), WAIT_S)
        assert all(ev.quorate for ev in quorum_events(events)), events
        assert info(c.run_dir(1)).total_votes == 2

        # the device stops polling: after quorum.device.timeout its vote is withdrawn
        agents[0].polling.clear()
        stopped = time.monotonic()
        events = tracker.collect_events(
            lambda evs: any(not ev.quorate for ev in quorum_events(evs)), WAIT_S)
        elapsed = time.monotonic() - stopped
        assert elapsed >= TIMEOUT_MS / 1000 - POLL_S - 0.1, elapsed
        i = info(c.run_dir(1))
        flags = i.flags & DEVICE_FLAGS
        assert (flags, i.total_votes, i.quorum) == (vq.VOTEQUORUM_INFO_QDEVICE_REGISTERED, 1, 2)
        r = quorumtool(c.run_dir(1), "-s")
        assert r.returncode == 2, r.stdout + r.stderr
        assert membership_block(r.stdout) == (
            "Membership information\n"
            "----------------------\n"
            "    Nodeid      Votes    Qdevice Name\n"
            "         1          1   NA,NV,NM node1 (local)\n"
            "         0          0            Qdevice (votes 1)\n"
        )

        # pyquorumtool -f force-unregisters the local device; with none it still exits 0
        r = quorumtool(c.run_dir(1), "-f")
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
        i = info(c.run_dir(1))
        assert not i.flags & vq.VOTEQUORUM_INFO_QDEVICE_REGISTERED
        assert i.qdevice_name == ""  # no member has a registered device any more
        r = quorumtool(c.run_dir(1), "-f")
        assert (r.returncode, r.stderr) == (0, "")
        r = quorumtool(c.run_dir(1), "-s")
        assert "Qdevice" not in membership_block(r.stdout)
        agents[0].polling.set()  # a poll of an unregistered device: NOT_EXIST
        wait_until(lambda: CsErr.CS_ERR_NOT_EXIST in agents[0].results, WAIT_S,
                   "a refused poll")
    finally:
        for agent in agents:
            agent.close()
        tracker.close()
