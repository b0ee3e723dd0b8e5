"""Start-up: refusals (exit 1, one line naming the file), state across restarts,
daemonizing, one daemon per run directory."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from harness import LocalCluster, RawIpcClient, v1_tracker, view_reached, wait_until

from pyquorum.errors import CsErr
from pyquorum.wire import ipc

WAIT_S = 20.0


def start_fails(c: LocalCluster, nodeid: int) -> str:
    """Start the node, expect exit 1 and exactly one line on stderr; return it."""
    c.start(nodeid, wait_ready=False)
    assert c.wait_exit(nodeid, WAIT_S) == 1
    lines = c.stderr(nodeid).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("pyquorumd: "), lines
    return lines[0]


def first_ring_seq(run_dir: Path) -> int:
    """The ring seq of the trackstart snapshot on a node."""
    with v1_tracker(run_dir, flags=0x01) as t:
        ev = t.next_event(WAIT_S)
        assert isinstance(ev, ipc.NodelistV1Event), ev
        return ev.ring.seq


def process_gone(pid: int) -> bool:
    """The process no longer runs (gone, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_missing_key_refuses_to_start(local_cluster: Callable[..., LocalCluster]) -> None:
    c = local_cluster(1)
    c.keyfile.unlink()
    line = start_fails(c, 1)
    assert f"Could not open {c.keyfile}" in line
    assert not (c.run_dir(1) / ipc.SOCKET_NAME).exists()


def test_short_key_refuses_to_start(local_cluster: Callable[..., LocalCluster]) -> None:
    c = local_cluster(1)
    c.keyfile.chmod(0o600)
    c.keyfile.write_bytes(b"12345678")
    line = start_fails(c, 1)
    assert line.endswith(f"Could only read 64 bits of minimum 128 bits from {c.keyfile}.")


def test_no_crypto_starts_with_a_loud_warning(local_cluster: Callable[..., LocalCluster]
                                              ) -> None:
    c = local_cluster(1, crypto=False)
    c.start(1)
    assert "NEITHER AUTHENTICATED NOR ENCRYPTED" in c.log(1)
    assert c.stop(1) == 0


def test_config_error_names_file_and_line(local_cluster: Callable[..., LocalCluster]) -> None:
    c = local_cluster(1)
    path = c.config_path(1)
    text = path.read_text().replace("    token: 1000", "    token: 1000ms")
    path.write_text(text)
    line_no = text.splitlines().index("    token: 1000ms") + 1
    line = start_fails(c, 1)
    assert f"{path}:{line_no}: totem.token" in line


def test_ambiguous_local_node_asks_for_nodeid(local_cluster: Callable[..., LocalCluster]) -> None:
    c = local_cluster(2)
    proc = subprocess.run(
        [sys.executable, "-m", "pyquorum.daemon", "-c", str(c.config_path(1)), "-f"],
        capture_output=True, text=True, timeout=WAIT_S, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert str(c.config_path(1)) in proc.stderr and "--nodeid" in proc.stderr


def test_state_survives_restart_and_ring_seq_keeps_rising(
        local_cluster: Callable[..., LocalCluster]) -> None:
    c = local_cluster(3)
    c.start(1)
    seq1 = first_ring_seq(c.run_dir(1))
    state = c.state_dir(1) / "pyquorum-node1.state"
    assert state.exists()
    assert state.stat().st_mode & 0o777 == 0o600
    assert c.state_dir(1).stat().st_mode & 0o777 == 0o700
    assert c.stop(1) == 0
    c.start(1)
    seq2 = first_ring_seq(c.run_dir(1))
    assert seq2 > seq1
    c.kill(1)  # no clean exit: the state written before the datagrams still counts
    c.start(1)
    assert first_ring_seq(c.run_dir(1)) > seq2


def test_corrupt_state_file_is_a_startup_error(local_cluster: Callable[..., LocalCluster]
                                               ) -> None:
    c = local_cluster(1)
    state = c.state_dir(1) / "pyquorum-node1.state"
    c.state_dir(1).mkdir(mode=0o700)
    state.write_text('{"format": 1, "node_id": 1, "max_seq": "x"')
    line = start_fails(c, 1)
    assert str(state) in line and "corrupt" in line


def test_one_daemon_per_run_dir(local_cluster: Callable[..., LocalCluster]) -> None:
    c = local_cluster(2)
    c.start(1)
    # node 2's configuration with node 1's run_dir: refused by the pid-file lock
    text = c.config_path(2).read_text().replace(str(c.run_dir(2)), str(c.run_dir(1)))
    c.config_path(2).write_text(text)
    line = start_fails(c, 2)
    assert "another pyquorumd" in line and str(c.run_dir(1) / "pyquorumd.pid") in line
    with RawIpcClient(c.run_dir(1), ipc.SERVICE_QUORUM) as q:  # node 1 unharmed
        assert q.request(ipc.QuorumGetQuorateReq()).error == CsErr.CS_OK


def test_daemonizes_without_f(local_cluster: Callable[..., LocalCluster]) -> None:
    c = local_cluster(1)
    r, w = os.pipe()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pyquorum.daemon", "-c", str(c.config_path(1)),
             "--nodeid", "1", "--ready-fd", str(w)],
            pass_fds=(w,), capture_output=True, text=True, timeout=WAIT_S,
            stdin=subprocess.DEVNULL)
        os.close(w)
        w = -1
        assert proc.returncode == 0, proc.stderr
        ready, _, _ = select.select([r], [], [], WAIT_S)
        assert ready and os.read(r, 16) == b"READY\n"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    pidfile = c.run_dir(1) / "pyquorumd.pid"
    pid = int(pidfile.read_text())
    try:
        assert pid != proc.returncode and not process_gone(pid)
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        session = int(fields[3])  # setsid() in the first child, then a second fork:
        assert session not in (os.getsid(0), pid)  # a new session, and not its leader
        with RawIpcClient(c.run_dir(1), ipc.SERVICE_QUORUM) as q:
            assert q.request(ipc.QuorumGetQuorateReq()) == ipc.QuorumGetQuorateRes(CsErr.CS_OK, 1)
        with v1_tracker(c.run_dir(1)) as t:
            t.collect_events(view_reached((1,), quorate=1), WAIT_S)
    finally:
        os.kill(pid, signal.SIGTERM)  # the daemon we started, by its pid file
    wait_until(lambda: process_gone(pid), WAIT_S, "the daemon to exit")
    assert not pidfile.exists()
    assert "pyquorumd exiting normally" in c.log(1)


def test_second_signal_during_shutdown_still_exits_0(
        local_cluster: Callable[..., LocalCluster]) -> None:
    c = local_cluster(1)
    c.start(1)
    pid = c.pid(1)
    # stopped, the process gets both signals pending at once: no race with a fast shutdown
    os.kill(pid, signal.SIGSTOP)
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + WAIT_S
    assert c.wait_exit(1, WAIT_S) == 0
    assert time.monotonic() < deadline
    log = c.log(1)
    assert "Node was shut down by a signal" in log  # SIGINT is delivered first when both wait
    assert "while shutdown is already in progress" in log
    assert log.rstrip().endswith("pyquorumd exiting normally")
