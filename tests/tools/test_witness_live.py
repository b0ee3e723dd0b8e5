"""pyquorum-witness and pyquorum-qdevice with real pyquorumd clusters on 127.0.0.1.

Each test starts a ``LocalCluster`` (tests/integration/harness.py) whose configuration
has ``quorum { device { model: net  votes: 1 ... } }`` (no two_node), a real
``pyquorum-witness`` process and one ``pyquorum-qdevice`` process per node, then:

* 2 nodes: kill either node (daemon and agent, SIGKILL): the survivor never reports an
  inquorate view and ends quorate alone;
* 2 nodes split with the harness ``block`` hook: exactly one side is quorate, and the
  other never reported its own ring quorate;
* 4 nodes split 2/2: exactly one half (the one holding node 1) is quorate;
* stopping the witness does not drop a healthy cluster's quorum (the agents go on
  polling with cast_vote 0), and SIGTERM makes an agent unregister and exit 0.

Before starting the agents, each test checks that the daemon's quorum device API
works (``votequorum_qdevice_register`` and ``_unregister`` answer CS_OK); if not, the
test is skipped and the reason names what failed.  Every process is signalled by PID;
every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyquorum.daemon.main", reason="pyquorum.daemon.main not written yet")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from harness import LocalCluster, RawIpcClient, v1_tracker, wait_until

from pyquorum.client import votequorum as vq
from pyquorum.errors import CsError, cs_strerror
from pyquorum.wire import ipc

WAIT_S = 60.0
TOKEN_MS = 1000
DEVICE_TIMEOUT_MS = 2000
POLL_MS = 500
WITNESS_TIMEOUT_MS = 1500
RELEASE_GRACE_MS = 2500  # >= the device timeout, as the witness requires
DEVICE_BLOCK = (f"    device {{\n        model: net\n        votes: 1\n"
                f"        timeout: {DEVICE_TIMEOUT_MS}\n    }}\n")


class DeviceCluster(LocalCluster):
    """A LocalCluster whose quorum section configures a quorum device."""

    def write_config(self, nodeid: int, extra: str | None = None) -> Path:
        path = super().write_config(nodeid, extra)
        text = path.read_text()
        assert "quorum {\n" in text
        path.write_text(text.replace("quorum {\n", "quorum {\n" + DEVICE_BLOCK, 1))
        return path


class Procs:
    """The witness and agent processes of one test (signalled by PID only)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.keyfile = base / "witness.key"
        self.keyfile.write_bytes(os.urandom(64))
        self.keyfile.chmod(0o400)
        self.witness: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.agents: dict[int, subprocess.Popen[bytes]] = {}

    def log(self, name: str) -> str:
        try:
            return (self.base / f"{name}.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start_witness(self) -> None:
        out = open(self.base / "witness.log", "ab")  # noqa: SIM115
        try:
            self.witness = subprocess.Popen(
                [sys.executable, "-m", "pyquorum.tools.witness", "--listen",
                 f"127.0.0.1:{self.port}", "--key", str(self.keyfile),
                 "--timeout-ms", str(WITNESS_TIMEOUT_MS),
                 "--release-grace-ms", str(RELEASE_GRACE_MS), "--startup-quiet-ms", "0"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        finally:
            out.close()
        found: list[int] = []

        def listening() -> bool:
            assert self.witness is not None and self.witness.poll() is None, self.log("witness")
            m = re.findall(r"listening on 127\.0\.0\.1:(\d+)", self.log("witness"))
            if m:
                found.append(int(m[-1]))
            return bool(m)
        wait_until(listening, 20.0, "the witness to listen")
        self.port = found[-1]

    def stop_witness(self) -> int:
        assert self.witness is not None
        os.kill(self.witness.pid, signal.SIGTERM)
        return self.witness.wait(20)

    def start_agent(self, cluster: LocalCluster, nodeid: int) -> None:
        out = open(self.base / f"agent{nodeid}.log", "ab")  # noqa: SIM115
        try:
            self.agents[nodeid] = subprocess.Popen(
                [sys.executable, "-m", "pyquorum.tools.qdevice", "--run-dir",
                 str(cluster.run_dir(nodeid)), "--witness", f"127.0.0.1:{self.port}",
                 "--key", str(self.keyfile), "--interval-ms", str(POLL_MS)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        finally:
            out.close()

    def stop_agent(self, nodeid: int) -> int:
        """SIGTERM one agent; its exit status."""
        proc = self.agents[nodeid]
        os.kill(proc.pid, signal.SIGTERM)
        return proc.wait(20)

    def kill_agent(self, nodeid: int) -> None:
        proc = self.agents[nodeid]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(20)

    def close(self) -> None:
        procs = list(self.agents.values()) + ([self.witness] if self.witness else [])
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)


@pytest.fixture
def setup() -> Iterator[Callable[[int], tuple[DeviceCluster, Procs]]]:
    made: list[tuple[DeviceCluster, Procs, Path]] = []

    def make(n: int) -> tuple[DeviceCluster, Procs]:
        base = Path(tempfile.mkdtemp(prefix="pqwl-", dir="/tmp"))
        base.chmod(0o755)
        cluster = DeviceCluster(base, n, token_ms=TOKEN_MS)
        procs = Procs(base)
        made.append((cluster, procs, base))
        return cluster, procs

    yield make
    for cluster, procs, base in made:
        procs.close()
        cluster.close()
        if os.environ.get("PYQUORUM_KEEP_LOGS") != "1":
            shutil.rmtree(base, ignore_errors=True)


# ====================================================================== helpers
def info(cluster: LocalCluster, nodeid: int) -> vq.VotequorumInfo:
    h = vq.votequorum_initialize(None, run_dir=str(cluster.run_dir(nodeid)))
    try:
        return vq.votequorum_getinfo(h, 0)
    finally:
        vq.votequorum_finalize(h)


def quorate(cluster: LocalCluster, nodeid: int) -> bool:
    return bool(info(cluster, nodeid).flags & vq.VOTEQUORUM_INFO_QUORATE)


def casting(cluster: LocalCluster, nodeid: int) -> bool:
    return bool(info(cluster, nodeid).flags & vq.VOTEQUORUM_INFO_QDEVICE_CAST_VOTE)


def require_qdevice_api(cluster: LocalCluster, nodeid: int = 1) -> None:
    """Skip the test unless register and unregister work against this daemon."""
    what = "votequorum_qdevice_register"
    try:
        h = vq.votequorum_initialize(None, run_dir=str(cluster.run_dir(nodeid)))
    except CsError as e:
        pytest.fail(f"cannot connect to the daemon: {e}")
    try:
        vq.votequorum_qdevice_register(h, "Qdevice")
        what = "votequorum_qdevice_unregister"
        vq.votequorum_qdevice_unregister(h, "Qdevice")
    except CsError as e:
        crashed = "" if cluster.running(nodeid) else " (the daemon exited; see its log)"
        pytest.skip(f"the daemon's quorum device API is not ready: {what} -> "
                    f"{cs_strerror(e.code)} ({int(e.code)}){crashed}; "
                    "needs register/poll/unregister of spec 4.9 in pyquorumd")
    finally:
        with contextlib.suppress(CsError):
            vq.votequorum_finalize(h)


def start_all(cluster: DeviceCluster, procs: Procs, nodes: list[int]) -> None:
    for n in nodes:
        cluster.start(n)
    wait_until(lambda: all(cluster.cmap(n, "runtime.pyquorum.members")
                           ["runtime.pyquorum.members"] == " ".join(map(str, nodes))
                           for n in nodes), WAIT_S, f"one view of {nodes}")
    require_qdevice_api(cluster)
    procs.start_witness()
    for n in nodes:
        procs.start_agent(cluster, n)
    wait_until(lambda: all(casting(cluster, n) and quorate(cluster, n) for n in nodes),
               WAIT_S, f"nodes {nodes} casting the device vote\n"
                       + "".join(procs.log(f"agent{n}")[-2000:] for n in nodes)
                       + procs.log("witness")[-3000:])


def quorum_events(client: RawIpcClient, seconds: float) -> list[ipc.QuorumV1Event]:
    """Every quorum event within ``seconds`` (bounded)."""
    out: list[ipc.QuorumV1Event] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ev = client.next_event(left)
        if ev is None:
            break
        if isinstance(ev, ipc.QuorumV1Event):
            out.append(ev)
    return out


def until_view(client: RawIpcClient, members: tuple[int, ...], quorate_: int,
               timeout: float = WAIT_S) -> list[ipc.QuorumV1Event]:
    """Quorum events until one with ``members`` and ``quorate_`` (returned too)."""
    out: list[ipc.QuorumV1Event] = []
    deadline = time.monotonic() + timeout
    while True:
        ev = client.next_event(max(0.0, deadline - time.monotonic()))
        if ev is None:
            raise TimeoutError(f"no quorum event {members} quorate={quorate_}: {out}")
        if isinstance(ev, ipc.QuorumV1Event):
            out.append(ev)
            if ev.members == members and ev.quorate == quorate_:
                return out


SETTLE_S = (DEVICE_TIMEOUT_MS + RELEASE_GRACE_MS + WITNESS_TIMEOUT_MS) / 1000


# ====================================================================== tests
@pytest.mark.parametrize("victim", [1, 2])
def test_two_nodes_kill_either_node_survivor_stays_quorate(
        setup: Callable[[int], tuple[DeviceCluster, Procs]], victim: int) -> None:
    cluster, procs = setup(2)
    start_all(cluster, procs, [1, 2])
    survivor = 3 - victim
    with v1_tracker(cluster.run_dir(survivor)) as tracker:
        tracker.drain_events()
        cluster.kill(victim)
        procs.kill_agent(victim)
        events = until_view(tracker, (survivor,), 1)
        events += quorum_events(tracker, SETTLE_S)  # and it stays so
    assert all(ev.quorate == 1 for ev in events), (
        events, procs.log(f"agent{survivor}")[-3000:], procs.log("witness")[-3000:])
    assert quorate(cluster, survivor) and casting(cluster, survivor)


def test_two_nodes_split_exactly_one_side_is_quorate(
        setup: Callable[[int], tuple[DeviceCluster, Procs]]) -> None:
    cluster, procs = setup(2)
    start_all(cluster, procs, [1, 2])
    with v1_tracker(cluster.run_dir(1)) as t1, v1_tracker(cluster.run_dir(2)) as t2:
        t1.drain_events()
        t2.drain_events()
        cluster.block(1, [2])
        cluster.block(2, [1])
        e1 = until_view(t1, (1,), 1)        # the lowest node id wins the tie
        e2 = until_view(t2, (2,), 0)
        e1 += quorum_events(t1, SETTLE_S)
        e2 += quorum_events(t2, 0.1)
    assert not [ev for ev in e2 if ev.members == (2,) and ev.quorate], e2
    assert all(ev.quorate for ev in e1), e1
    assert quorate(cluster, 1) and not quorate(cluster, 2)
    assert casting(cluster, 1) and not casting(cluster, 2)


def test_four_nodes_split_two_two_exactly_one_half_is_quorate(
        setup: Callable[[int], tuple[DeviceCluster, Procs]]) -> None:
    cluster, procs = setup(4)
    start_all(cluster, procs, [1, 2, 3, 4])
    trackers = {n: v1_tracker(cluster.run_dir(n)) for n in (1, 2, 3, 4)}
    try:
        for t in trackers.values():
            t.drain_events()
        for n in (1, 2):
            cluster.block(n, [3, 4])
        for n in (3, 4):
            cluster.block(n, [1, 2])
        got: dict[int, list[Any]] = {}
        for n in (1, 2):
            got[n] = until_view(trackers[n], (1, 2), 1)
        for n in (3, 4):
            got[n] = until_view(trackers[n], (3, 4), 0)
        for n in (1, 2, 3, 4):
            got[n] += quorum_events(trackers[n], SETTLE_S if n == 1 else 0.1)
    finally:
        for t in trackers.values():
            t.close()
    for n in (3, 4):
        assert not [ev for ev in got[n] if ev.members == (3, 4) and ev.quorate], got[n]
    assert quorate(cluster, 1) and quorate(cluster, 2)
    assert not any(quorate(cluster, n) for n in (3, 4))


def test_stopping_the_witness_keeps_a_healthy_cluster_quorate(
        setup: Callable[[int], tuple[DeviceCluster, Procs]]) -> None:
    cluster, procs = setup(2)
    start_all(cluster, procs, [1, 2])
    with v1_tracker(cluster.run_dir(1)) as tracker:
        tracker.drain_events()
        assert procs.stop_witness() == 0
        wait_until(lambda: not casting(cluster, 1) and not casting(cluster, 2),
                   WITNESS_TIMEOUT_MS / 1000 + 10, "the agents to stop casting")
        events = quorum_events(tracker, DEVICE_TIMEOUT_MS / 1000 + 1)
    assert all(ev.quorate for ev in events), events
    assert quorate(cluster, 1) and quorate(cluster, 2)
    # and the agents keep polling: the device stays alive, not voting
    assert info(cluster, 1).flags & vq.VOTEQUORUM_INFO_QDEVICE_ALIVE
    # SIGTERM: the agent unregisters its device and exits 0
    assert procs.stop_agent(1) == 0, procs.log("agent1")
    assert not info(cluster, 1).flags & vq.VOTEQUORUM_INFO_QDEVICE_REGISTERED
    assert "unregistered quorum device 'Qdevice'" in procs.log("agent1")
