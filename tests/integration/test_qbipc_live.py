"""pyquorumd's libqb endpoint (``system { libqb_ipc: yes }``) driven by Corosync's real C
clients: corosync-quorumtool, and libquorum / libvotequorum through the ctypes backend.

libqb's endpoints are abstract Unix sockets, which belong to a network namespace: the
daemon runs in a private namespace (never the root one, where a real Corosync may own
"quorum", "cmap", ...), and every client runs there too (``ip netns exec`` for
subprocesses, ``setns`` of the calling thread for the raw-socket checks).  Skipped, with
the reason, without root, ``ip netns``, corosync-quorumtool or Corosync's libraries.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyquorum.client import cmap
from pyquorum.tools.labcluster import LabCluster
from pyquorum.wire import qbmsg as qb

_COROSYNC_TIER = str(Path(__file__).resolve().parents[1] / "corosync")
if _COROSYNC_TIER not in sys.path:
    sys.path.insert(0, _COROSYNC_TIER)
from cscluster import in_netns  # noqa: E402  (the Corosync tier's namespace switch)

QUORUMTOOL = "/usr/sbin/corosync-quorumtool"
LIBS = ("libquorum.so.5", "libvotequorum.so.8", "libcmap.so.4", "libcfg.so.7")
CLIENT_SCRIPT = Path(__file__).resolve().parent / "qbipc_libclient.py"
SRC = Path(__file__).resolve().parents[2] / "src"
CMD_TIMEOUT_S = 30.0
SOCK_TIMEOUT_S = 5.0
_NAMES = itertools.count(1)


def _environment_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs 'ip' (iproute2) with netns support"
    if not os.access(QUORUMTOOL, os.X_OK):
        return f"{QUORUMTOOL} is missing (apt-get install corosync)"
    for lib in LIBS:
        try:
            ctypes.CDLL(lib)
        except OSError as exc:
            return f"{lib} cannot be loaded: {exc}"
    return None


@dataclass(slots=True)
class _NetnsLab(LabCluster):
    """A LabCluster whose daemons run in network namespace ``netns`` with libqb IPC on."""

    netns: str = ""

    def command(self, nodeid: int, ready_fd: int) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *LabCluster.command(self, nodeid, ready_fd)]


@dataclass
class Node:
    """The running daemon: its namespace, lab and run directory."""

    netns: str
    lab: _NetnsLab

    @property
    def run_dir(self) -> str:
        return self.lab.run_dir(1)

    def run(self, *argv: str, uid: int | None = None) -> subprocess.CompletedProcess[str]:
        """``argv`` inside the namespace (as ``uid`` if given), bounded."""
        prefix = ["ip", "netns", "exec", self.netns]
        if uid is not None:
            prefix += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        return subprocess.run([*prefix, *argv], capture_output=True, text=True, env=env,
                              timeout=CMD_TIMEOUT_S, stdin=subprocess.DEVNULL)

    def stats(self) -> dict[str, int]:
        """``runtime.pyquorum.stats.qb_*`` through the native IPC (a filesystem socket,
        reachable from any namespace)."""
        items = cmap.cmap_get_prefix("runtime.pyquorum.stats.qb_", run_dir=self.run_dir)
        return {k.rsplit(".", 1)[1]: int(v) for k, v in items.items()}


def _start(*, libqb: str | None = "yes", provider: bool = True) -> Node:
    problem = _environment_problem()
    if problem:
        pytest.skip(f"libqb IPC live tests: {problem}")
    name = f"pqqb{os.getpid()}x{next(_NAMES)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True,
                   timeout=CMD_TIMEOUT_S)
    lab = _NetnsLab(n_nodes=1, encrypted=False, token_ms=1000, netns=name,
                    quorum_options={} if provider else {"provider": ""})
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True, capture_output=True, timeout=CMD_TIMEOUT_S)
        lab.setup()
        os.chmod(lab.directory, 0o755)
        if libqb is not None:
            conf = Path(lab.node(1).config_path)
            conf.write_text(conf.read_text().replace(
                "system {\n", f"system {{\n    libqb_ipc: {libqb}\n"))
        lab.start(1)
    except BaseException:
        lab.close()
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=CMD_TIMEOUT_S)
        raise
    return Node(name, lab)


def _stop(node: Node) -> None:
    try:
        node.lab.close()
    finally:
        subprocess.run(["ip", "netns", "del", node.netns], capture_output=True,
                       timeout=CMD_TIMEOUT_S)


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    """One quorate single-node pyquorumd with libqb IPC, in its own network namespace."""
    started = _start()
    try:
        yield started
    finally:
        _stop(started)


# ------------------------------------------------------------------ corosync-quorumtool
def test_quorumtool_status(node: Node) -> None:
    res = node.run(QUORUMTOOL, "-s")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for line in ("Quorum provider:  corosync_votequorum", "Nodes:            1",
                 "Node ID:          1", "Quorate:          Yes", "Expected votes:   1",
                 "Highest expected: 1", "Total votes:      1", "Flags:            Quorate "):
        assert line in out.splitlines(), (line, out)
    assert any(line.startswith("Ring ID:          1.") for line in out.splitlines()), out
    assert "         1          1 node1 (local)" in out.splitlines(), out


def test_quorumtool_list_parsable_and_addresses(node: Node) -> None:
    listed = node.run(QUORUMTOOL, "-l")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1:] == [
        "Membership information", "----------------------",
        "    Nodeid      Votes Name", "         1          1 node1 (local)"]
    parsable = node.run(QUORUMTOOL, "-p")
    assert parsable.returncode == 0, parsable.stderr
    assert "    Nodeid      Votes    Qdevice Name" in parsable.stdout.splitlines()
    assert "         1          1         NR node1 (local)" in parsable.stdout.splitlines()
    by_ip = node.run(QUORUMTOOL, "-l", "-i")  # names from cfg get_node_addrs
    assert by_ip.returncode == 0, by_ip.stderr
    assert "         1          1 127.0.0.1 (local)" in by_ip.stdout.splitlines()
    hexa = node.run(QUORUMTOOL, "-s", "-H")
    assert "Node ID:          0x00000001" in hexa.stdout.splitlines(), hexa.stdout


def test_quorumtool_votequorum_errors(node: Node) -> None:
    too_high = node.run(QUORUMTOOL, "-e", "5")  # would make a quorate cluster inquorate
    assert too_high.returncode != 0
    assert "Unable to set expected votes: CS_ERR_INVALID_PARAM" in too_high.stderr
    unknown = node.run(QUORUMTOOL, "-v", "1", "-n", "4242")
    assert unknown.returncode != 0
    assert "CS_ERR_NAME_NOT_FOUND" in unknown.stderr
    assert node.run(QUORUMTOOL, "-f").returncode == 0  # no qdevice: nothing to do


# ------------------------------------------------------------------ libquorum / libvotequorum
def test_corosync_libraries_through_the_ctypes_backend(node: Node) -> None:
    res = node.run(sys.executable, str(CLIENT_SCRIPT))
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert (got["quorum_type"], got["quorum_type_v0"], got["quorate"]) == (1, 1, 1)
    assert got["trackstop"] == 0
    assert got["trackstart_again"] == 14  # CS_ERR_EXIST, after the snapshot
    assert got["getinfo"] == [1, 1, 1, 1, 1, 1, 1, 2, 0, ""]
    assert got["getinfo_unknown"] == 12  # CS_ERR_NOT_EXIST
    assert got["vq_trackstop_not_tracking"] == 12
    assert got["setexpected_too_high"] == 7
    assert got["setvotes_unknown_node"] == 17
    assert got["qdevice_unregister_none"] == 12
    events = got["events"]
    kinds = [e[0] for e in events]
    assert kinds == ["v1_nodelist", "v1_quorum"] * 3 + ["v0_quorum", "vq_nodelist", "vq_quorum"]
    ring = events[0][1]
    assert ring[0] == 1
    assert events[0] == ["v1_nodelist", ring, [1], [], []]
    assert events[1] == ["v1_quorum", 1, ring, [1]]
    assert events[6] == ["v0_quorum", 1, ring[1], [1]]
    assert events[7] == ["vq_nodelist", 0x1122334455667788, ring, [1]]
    assert events[8] == ["vq_quorum", 0x1122334455667788, 1, [[1, 1]]]


# ------------------------------------------------------------------ refusals and bad input
def test_unprivileged_client_gets_the_libqb_refusal(node: Node) -> None:
    before = node.stats()["qb_refused_access"]
    res = node.run(QUORUMTOOL, "-s", uid=65534)
    assert res.returncode == 1
    assert "Cannot initialize CMAP service" in res.stderr
    assert node.stats()["qb_refused_access"] == before + 1
    assert node.run(QUORUMTOOL, "-s").returncode == 0


class RawClient:
    """A minimal libqb socket-transport client, for what the C libraries never send."""

    def __init__(self, service: str) -> None:
        self.setup = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.setup.settimeout(SOCK_TIMEOUT_S)
        self.setup.connect(qb_address(service))
        self.resp: socket.socket | None = None
        self.ev: socket.socket | None = None
        self.control = ""

    def handshake(self, request: bytes | None = None) -> bytes:
        """Send a connection request; the response bytes (b"" if the daemon closed)."""
        self.setup.sendall(request if request is not None else
                           qb.REQ_HDR.pack(qb.QB_IPC_MSG_AUTHENTICATE, 24)
                           + struct.pack("=I4x", 1 << 20))
        data = b""
        while len(data) < qb.CONNECTION_RESPONSE_SIZE:
            chunk = self.setup.recv(qb.CONNECTION_RESPONSE_SIZE - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def open_channels(self, response: bytes) -> None:
        """Bind and connect the response and event sockets (as ``qb_ipcc_us_connect``)."""
        self.control = response[40:40 + qb.PATH_MAX].split(b"\0", 1)[0].decode()
        base = response[4136:4136 + qb.PATH_MAX].split(b"\0", 1)[0].decode()
        self.resp = self._dgram(base, "-response", "-request")
        self.ev = self._dgram(base, "-event", "-event-tx")

    @staticmethod
    def _dgram(base: str, local: str, remote: str) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.settimeout(SOCK_TIMEOUT_S)
        s.bind(qb_address(base + local))
        s.connect(qb_address(base + remote))
        return s

    def call(self, datagram: bytes) -> bytes:
        """Send one request datagram; the response datagram."""
        assert self.resp is not None
        self.resp.send(datagram)
        return self.resp.recv(1 << 20)

    def closed_by_daemon(self) -> bool:
        """Whether the daemon closed the setup stream (waits at most SOCK_TIMEOUT_S)."""
        try:
            return self.setup.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            return False

    def close(self) -> None:
        for s in (self.setup, self.resp, self.ev):
            if s is not None:
                s.close()


def qb_address(name: str) -> bytes:
    raw = name.encode()
    return b"\0" + raw + b"\0" * (107 - len(raw))


def _wait_gone(path: str) -> bool:
    deadline = time.monotonic() + SOCK_TIMEOUT_S
    while os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_malformed_input_is_counted_and_answered(node: Node) -> None:
    before = node.stats()
    with in_netns(node.netns):
        bad = RawClient("quorum")  # a connection request that is not one
        assert bad.handshake(qb.REQ_HDR.pack(0, 24) + bytes(8)) == b""
        bad.close()
        client = RawClient("quorum")
        response = client.handshake()
        assert qb.RES_HDR.unpack_from(response) == (qb.QB_IPC_MSG_AUTHENTICATE, 12328, 0)
        assert struct.unpack_from("=i", response, 24)[0] == qb.QB_IPC_SOCKET
        client.open_channels(response)
        invalid = qb.RES_HDR.pack(0, 24, 7)
        assert client.call(b"\1\2\3") == invalid                     # shorter than a header
        assert client.call(qb.REQ_HDR.pack(0, 99)) == invalid        # size mismatch
        assert client.call(qb.REQ_HDR.pack(77, 16)) == invalid       # unknown request id
        assert client.call(qb.REQ_HDR.pack(1, 16)) == invalid        # trackstart, no flags
        huge = qb.REQ_HDR.pack(0, 70000) + bytes(70000 - 16)
        assert client.call(huge) == invalid                          # over 64 KiB
        quorate = client.call(qb.REQ_HDR.pack(0, 16))                 # still served
        assert quorate == qb.RES_HDR.pack(0, 32, 1) + struct.pack("=I4x", 1)
        started = client.call(qb.REQ_HDR.pack(1, 24) + struct.pack("=I4x", 1))
        assert started == qb.RES_HDR.pack(1, 24, 1)
        assert client.ev is not None
        event = client.ev.recv(1 << 16)                              # the V0 snapshot
        assert qb.RES_HDR.unpack_from(event) == (3, 52, 1)
        assert os.path.exists(client.control)
        assert client.resp is not None
        client.resp.send(qb.REQ_HDR.pack(qb.QB_IPC_MSG_DISCONNECT, 16))
        assert client.closed_by_daemon()
        client.close()
    assert _wait_gone(client.control), "the control file outlived the connection"
    after = node.stats()
    assert after["qb_malformed"] == before["qb_malformed"] + 2
    assert after["qb_invalid_requests"] == before["qb_invalid_requests"] + 4
    assert after["qb_open_quorum"] == 0
    assert node.run(QUORUMTOOL, "-l").returncode == 0


def test_silent_and_vanishing_clients_do_not_hurt(node: Node) -> None:
    with in_netns(node.netns):
        half = RawClient("cmap")
        half.setup.sendall(b"\xff" * 10)  # part of a connection request, then gone
        half.close()
        client = RawClient("votequorum")
        response = client.handshake()
        client.open_channels(response)
        control = client.control
        client.close()  # gone without a word, mid-connection
    assert _wait_gone(control)
    assert node.run(QUORUMTOOL, "-s").returncode == 0


def _abstract_listeners(node: Node) -> set[str]:
    """The abstract stream sockets listening in the node's namespace (/proc/net/unix)."""
    res = node.run("cat", "/proc/net/unix")
    names = set()
    for line in res.stdout.splitlines()[1:]:
        parts = line.split()
        # Num RefCount Protocol Flags Type St Inode Path; listening: flags 00010000
        if len(parts) >= 8 and parts[3] == "00010000" and parts[7].startswith("@"):
            names.add(parts[7].rstrip("@")[1:])
    return names


@pytest.mark.parametrize(("libqb", "provider", "expected"), [
    (None, True, set()),                                   # off by default
    ("no", True, set()),
    ("yes", False, {"cmap", "cfg", "quorum"}),             # votequorum needs its provider
], ids=["default", "no", "no-provider"])
def test_endpoints_follow_the_configuration(libqb: str | None, provider: bool,
                                            expected: set[str]) -> None:
    node = _start(libqb=libqb, provider=provider)
    try:
        assert _abstract_listeners(node) == expected
        if not provider:
            status = node.run(QUORUMTOOL, "-l")
            assert status.returncode == 0, status.stderr
            assert "Membership information" in status.stdout
    finally:
        _stop(node)
