"""pyquorumtool against a real 3-node cluster (LabCluster of pyquorum-lab).

Quorate: exit 0 and the real tool's layout; after killing two nodes (waited for through
node 1's quorum events, bounded): exit 2 and ``Activity blocked``.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("pyquorum.daemon.main", reason="pyquorum.daemon.main not written yet")
pytest.importorskip("pyquorum.client.facade", reason="pyquorum.client.facade not written yet")

from pyquorum.tools.labcluster import LabCluster

WAIT_S = 60.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[LabCluster]:
    parent = tempfile.mkdtemp(prefix="pqqt-", dir="/tmp")
    lab = LabCluster(n_nodes=3, token_ms=1000, parent_dir=parent)
    try:
        lab.setup()
        for n in (1, 2, 3):
            lab.start(n)
        lab.wait_quorum(1, lambda q, m: q and sorted(m) == [1, 2, 3], WAIT_S)
        yield lab
    finally:
        pids = [node.proc.pid for node in lab.nodes.values() if node.proc is not None]
        lab.close()
        assert not [p for p in pids if Path(f"/proc/{p}").exists()
                    and b"pyquorum.daemon" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert os.listdir(parent) == []
        shutil.rmtree(parent, ignore_errors=True)


def tool(lab: LabCluster, node: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyquorum.tools.quorumtool",
                           "--run-dir", lab.run_dir(node), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def _ring(text: str) -> str:
    m = re.search(r"^Ring ID:          ([0-9a-f]+\.[0-9a-f]+)$", text, re.M)
    assert m, text
    return m.group(1)


def test_status_quorate(cluster: LabCluster) -> None:
    r = tool(cluster, 1, "-s")
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    text = re.sub(r"^Date:             .*$", "Date:             X", r.stdout, flags=re.M)
    assert text == (
        "Quorum information\n"
        "------------------\n"
        "Date:             X\n"
        "Quorum provider:  corosync_votequorum\n"
        "Nodes:            3\n"
        "Node ID:          1\n"
        f"Ring ID:          {_ring(r.stdout)}\n"
        "Quorate:          Yes\n"
        "\n"
        "Votequorum information\n"
        "----------------------\n"
        "Expected votes:   3\n"
        "Highest expected: 3\n"
        "Total votes:      3\n"
        "Quorum:           2  \n"
        "Flags:            Quorate \n"
        "\n"
        "Membership information\n"
        "----------------------\n"
        "    Nodeid      Votes Name\n"
        "         1          1 node1 (local)\n"
        "         2          1 node2\n"
        "         3          1 node3\n")
    assert _ring(r.stdout).startswith("1.")
    date = re.search(r"^Date:             (.*)$", r.stdout, re.M)
    assert date and re.fullmatch(r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}", date.group(1))


def test_other_views_of_the_quorate_cluster(cluster: LabCluster) -> None:
    r = tool(cluster, 2, "-l", "-H", "-i")
    assert r.returncode == 0 and r.stdout == (
        "\nMembership information\n----------------------\n"
        "    Nodeid      Votes Name\n"
        "0x00000001          1 127.0.0.1\n"
        "0x00000002          1 127.0.0.1 (local)\n"
        "0x00000003          1 127.0.0.1\n")
    r = tool(cluster, 3, "--json")
    obj = json.loads(r.stdout)
    assert r.returncode == 0 and obj["quorate"] is True and obj["node_id"] == 3
    assert [m["name"] for m in obj["members"]] == ["node1", "node2", "node3"]
    assert obj["votequorum"]["quorum"] == 2 and obj["ring"] == _ring(tool(cluster, 3).stdout)
    r = tool(cluster, 1, "-p", "-o", "n")
    assert r.returncode == 0 and "         3          1         NR node3\n" in r.stdout


def test_setexpected_rejects_a_value_below_the_votes(cluster: LabCluster) -> None:
    r = tool(cluster, 1, "-e", "1")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr.startswith("Unable to set expected votes: CS_ERR_")


def test_no_daemon(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pyquorum.tools.quorumtool", "--run-dir",
                        str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "Cannot initialize QUORUM service\n")


def _sigint_default() -> None:
    # A job started in the background by a non-interactive shell (nohup ... &, as a CI
    # runner may do) inherits SIGINT ignored, and Python then installs no Ctrl-C handler:
    # the test's SIGINT would be lost.  Give the monitor the terminal's default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _monitor(lab: LabCluster, node: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-X", "faulthandler", "-m",
                             "pyquorum.tools.quorumtool", "-m", "--run-dir", lab.run_dir(node)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_sigint_default)


def _communicate(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """``communicate`` bounded by WAIT_S; a monitor that does not end fails the test with
    its stacks (SIGABRT + -X faulthandler), or says that it exited but its pipes stay open."""
    try:
        return proc.communicate(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        pass
    if proc.poll() is not None:
        pytest.fail(f"the monitor exited {proc.returncode} but its stdout/stderr stay open")
    state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    proc.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack on stderr
    _, err = proc.communicate(timeout=WAIT_S)
    pytest.fail(f"the monitor did not exit (state {state}):\n{err.decode()[-4000:]}")


def _read_until(proc: subprocess.Popen[bytes], want: str, seen: bytearray) -> str:
    """Append proc's stdout to ``seen`` until regex ``want`` matches (bounded by select)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + WAIT_S
    while not re.search(want, seen.decode()):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{want!r} not in {seen.decode()[-2000:]!r}"
        if select.select([fd], [], [], remaining)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"monitor ended before {want!r}: {seen.decode()[-2000:]!r}"
            seen += chunk
    return seen.decode()


def test_monitor_and_status_after_losing_two_nodes(cluster: LabCluster) -> None:
    mon1, mon2 = _monitor(cluster, 1), _monitor(cluster, 2)
    out1, out2 = bytearray(), bytearray()
    try:
        _read_until(mon1, r"node3\n\n", out1)  # the first block, right away
        _read_until(mon2, r"node3\n\n", out2)
        cluster.kill(2)  # the daemon mon2 watches dies: -m ends with 1
        _, err2 = _communicate(mon2)
        assert mon2.returncode == 1
        # usually "Unable to dispatch (vote)quorum status: ..."; if the daemon dies while
        # a block is being collected, the block's getinfo reports it instead
        assert re.fullmatch(r"Unable to (dispatch (vote)?quorum status|get node info): "
                            r"CS_ERR_LIBRARY\n", err2.decode()), err2
        cluster.kill(3)
        cluster.wait_quorum(1, lambda q, m: not q and list(m) == [1], WAIT_S)
        _read_until(mon1, r"Activity blocked\n[^Q]*node1 \(local\)\n\n", out1)
        mon1.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop
        rest, err1 = _communicate(mon1)
        assert (mon1.returncode, err1) == (0, b"")
    finally:
        for p in (mon1, mon2):
            if p.poll() is None:
                p.kill()
                p.wait()
    blocks = (bytes(out1) + rest).decode().split("Quorum information\n")[1:]
    assert len(blocks) >= 2 and all(b.endswith("\n\n") for b in blocks)
    assert "Nodes:            3\n" in blocks[0] and "Quorate:          Yes\n" in blocks[0]
    assert "Nodes:            1\n" in blocks[-1] and "Quorate:          No\n" in blocks[-1]

    r = tool(cluster, 1, "-s")
    assert r.returncode == 2, r.stderr
    assert "Quorate:          No\n" in r.stdout and "Nodes:            1\n" in r.stdout
    assert "Quorum:           2 Activity blocked\nFlags:            \n" in r.stdout
    assert r.stdout.endswith("    Nodeid      Votes Name\n         1          1 node1 (local)\n")
    assert "Total votes:      1\n" in r.stdout
