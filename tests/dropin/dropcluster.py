"""The drop-in tier's clusters: real Corosync 3.1.7 and pyquorumd side by side, driven by
Debian's unmodified ``corosync-quorumtool`` and the tier's C client (``qtrack.c``).

Nothing here is new machinery: a Corosync cluster is ``tests/corosync/cscluster.py``'s
``CorosyncCluster`` (``../shared/oracle/cluster.sh``), a pyquorumd cluster is
``tests/chaos/chaosnet.py``'s ``ChaosCluster`` (daemons in namespaces behind a bridge),
each under this tier's own namespace prefix (``pqdi<pid>...``) and subnet
(``10.213.64-66``; every pair of twins, ``twin_pair``, has its own prefix and switch, so
pairs reuse the two subnets).  ``cluster.sh up``'s quorum options give both twins the same
``quorum`` section.  The pyquorumd nodes run the very ``corosync.conf`` that
``cluster.sh`` generated for the Corosync node of the same number (``identical_config``
lists the only lines that change, and why), so the two clusters have the same nodelist
(names, ids), totem (knet, token 1000, crypto none) and quorum section.

libqb's endpoints are abstract Unix sockets, per network namespace: every client runs in
its node's namespace through ``ip netns exec`` (which execs, so a Popen's PID is the
client's own, or ``timeout``'s for the monitors, and only those PIDs are signalled).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_TESTS = Path(__file__).resolve().parent.parent
for _tier in ("corosync", "chaos"):
    if str(_TESTS / _tier) not in sys.path:
        sys.path.insert(0, str(_TESTS / _tier))

from chaosnet import ChaosCluster  # noqa: E402
from cscluster import INSTALL_DEPS, INSTALL_TIMEOUT_S  # noqa: E402
from cscluster import ORACLE_DIR as ORACLE_DIR  # noqa: E402
from cscluster import CorosyncCluster as CorosyncCluster  # noqa: E402
from cscluster import environment_problem as corosync_problem  # noqa: E402

QUORUMTOOL = "/usr/sbin/corosync-quorumtool"
QTRACK_SOURCE = Path(__file__).resolve().parent / "qtrack.c"
HEADERS = ("/usr/include/corosync/quorum.h", "/usr/include/corosync/corotypes.h")
TOKEN_MS = 1000
CMD_TIMEOUT_S = 30.0
CONVERGE_TIMEOUT_S = 45.0
POLL_S = 0.1
MONITOR_LIMIT_S = 90
"""Upper bound of a ``corosync-quorumtool -m`` (``timeout``); the tests end it sooner."""


# ====================================================================== environment
def _dev_problem() -> str | None:
    missing = [h for h in HEADERS if not os.path.isfile(h)]
    if shutil.which("gcc") is None:
        missing.append("gcc")
    if shutil.which("stdbuf") is None:
        missing.append("stdbuf")
    for lib in ("libquorum.so", "libcorosync_common.so"):
        try:
            ctypes.CDLL(lib)  # the unversioned names come with the -dev packages
        except OSError:
            missing.append(lib)
    return f"missing {', '.join(missing)}" if missing else None


def environment_problem() -> str | None:
    """Why the tier cannot run here (None: it can).  Installs what is missing with the
    oracle's ``install-deps.sh`` (``WITH_DEV=1``: corosync, libquorum-dev,
    libvotequorum-dev, ...) and gcc, through apt-get, only when something is missing."""
    problem = corosync_problem()  # root, ip netns, the oracle harness, corosync itself
    if problem:  # worded for the Corosync tier, whose check this is
        return "the drop-in tier needs what the Corosync tier needs: " + problem
    if _dev_problem() is None:
        return None
    if shutil.which("apt-get") is None:
        return f"C client build tools: {_dev_problem()}, and there is no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "WITH_DEV": "1"}
    for argv in (["bash", str(INSTALL_DEPS)],
                 ["apt-get", "install", "-y", "--no-install-recommends", "gcc", "libc6-dev"]):
        try:
            res = subprocess.run(argv, capture_output=True, text=True, env=env,
                                 timeout=INSTALL_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"installing the -dev packages failed: {exc}"
        if res.returncode != 0:
            tail = (res.stdout + res.stderr).strip().splitlines()[-3:]
            return f"{' '.join(argv[:2])} failed: " + " | ".join(tail)
    problem = _dev_problem()
    return f"still {problem} after installing" if problem else None


def compile_qtrack(out_dir: Path) -> Path:
    """Build ``qtrack.c`` against libquorum; the binary (AssertionError with gcc's output
    if it does not build cleanly)."""
    binary = out_dir / "qtrack"
    res = subprocess.run(["gcc", "-std=gnu11", "-O1", "-Wall", "-Wextra", "-Werror", "-o",
                          str(binary), str(QTRACK_SOURCE), "-lquorum", "-lcorosync_common"],
                         capture_output=True, text=True, timeout=CMD_TIMEOUT_S)
    assert res.returncode == 0, res.stderr
    return binary


# ====================================================================== configuration
def identical_config(corosync_conf: str, *, corosync_net: str, net: str,
                     node_dir: Path) -> str:
    """Corosync's ``corosync.conf`` of a node, for the pyquorumd node of the same number.

    Only these lines change: ``ring0_addr`` (this cluster's subnet: the two clusters
    must not share addresses), ``logfile`` and ``state_dir`` (this node's files), and the
    ``system`` section gains ``run_dir`` (pyquorumd's native socket; Corosync has no such
    key) and ``libqb_ipc: yes`` (the endpoint under test).  Everything else (cluster
    name, knet, crypto none, token, nodelist names and ids, quorum) is Corosync's text.
    """
    out = []
    for line in corosync_conf.splitlines():
        key = line.strip().split(":", 1)[0]
        if key == "ring0_addr":
            line = line.replace(f" {corosync_net}.", f" {net}.")
        elif key == "logfile":
            line = f"    logfile: {node_dir / 'pyquorumd.log'}"
        elif key == "state_dir":
            line = (f"    state_dir: {node_dir / 'state'}\n    run_dir: {node_dir / 'run'}\n"
                    "    libqb_ipc: yes")
        out.append(line)
    return "\n".join(out) + "\n"


def enable_libqb(conf: str) -> str:
    """``conf`` with ``libqb_ipc: yes`` in its ``system`` section."""
    assert "\nsystem {\n" in conf, conf
    return conf.replace("\nsystem {\n", "\nsystem {\n    libqb_ipc: yes\n", 1)


class PyquorumCluster(ChaosCluster):
    """A ``ChaosCluster`` under this tier's prefix and subnet, libqb IPC on every node."""

    def __init__(self, n: int, tag: str, subnet: str) -> None:
        super().__init__(n, token_ms=TOKEN_MS)
        self.prefix = f"pqdi{os.getpid()}{tag}"
        self.subnet = subnet

    def setup(self, configs: Callable[[int], str] | None = None) -> None:
        """Namespaces, bridge and files; node ``i`` runs ``configs(i)`` if given, else
        the chaos tier's configuration with ``libqb_ipc: yes``."""
        super().setup()
        for i in self.nodes:
            path = self.node_dir(i) / "corosync.conf"
            path.write_text(configs(i) if configs else enable_libqb(path.read_text()))


# ====================================================================== the two sides
@dataclass
class Side:
    """One cluster as corosync-quorumtool sees it: a namespace per node, and a kill."""

    name: str
    netns: Callable[[int], str]
    kill: Callable[[int], None]
    start: Callable[[int], None]
    subnet: str
    monitors: list[Monitor] = field(default_factory=list)

    def run(self, node: int, *argv: str) -> subprocess.CompletedProcess[str]:
        """``argv`` in ``node``'s namespace, bounded, C locale (stable messages)."""
        return subprocess.run(["ip", "netns", "exec", self.netns(node), *argv],
                              capture_output=True, text=True, timeout=CMD_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C"})

    def tool(self, node: int, *args: str) -> subprocess.CompletedProcess[str]:
        """``corosync-quorumtool args`` on ``node``."""
        return self.run(node, QUORUMTOOL, *args)

    def monitor(self, node: int) -> Monitor:
        """``corosync-quorumtool -m`` on ``node`` in the background."""
        self.monitors.append(Monitor(self, node))
        return self.monitors[-1]

    def close(self) -> None:
        """End the monitors still running and remove their files."""
        for mon in self.monitors:
            if mon.proc.returncode is None:
                mon.finish(signal_it=True)


def corosync_side(cs: CorosyncCluster) -> Side:
    def kill(node: int) -> None:
        cs.sh("kill", str(node))

    def start(node: int) -> None:
        cs.sh("start", str(node))

    return Side("corosync", cs.netns, kill, start, cs.net)


def pyquorum_side(pq: PyquorumCluster) -> Side:
    return Side("pyquorum", pq.ns, pq.kill, lambda node: pq.start_daemons([node]),
                pq.subnet)


Twins = tuple[Side, Side, CorosyncCluster, PyquorumCluster]


@contextlib.contextmanager
def twin_pair(n: int, tag: str, *, corosync_net: str, net: str,
                  start: Sequence[int] | None = None, two_node: bool = False,
                  wait_for_all: bool = False,
                  edit: Callable[[str], str] | None = None) -> Iterator[Twins]:
    """Two identical ``n``-node clusters, real Corosync (``pqdi<pid><tag>c``, subnet
    ``corosync_net``) and pyquorumd with libqb IPC (``pqdi<pid><tag>p``, ``net``), with
    ``cluster.sh up``'s quorum options ``two_node`` / ``wait_for_all``; ``edit`` rewrites
    every Corosync node's ``corosync.conf`` before anything starts (the pyquorumd nodes
    then run the result, see ``identical_config``).  Only the nodes of ``start`` (default:
    all) are started, Corosync's and pyquorumd's together; nothing is awaited.  Both are
    torn down whatever happens."""
    cs = CorosyncCluster(f"pqdi{os.getpid()}{tag}c", corosync_net)
    pq = PyquorumCluster(n, f"{tag}p", net)
    sides: tuple[Side, ...] = ()
    nodes = list(range(1, n + 1) if start is None else start)
    try:
        cs.up(n, token_ms=TOKEN_MS, two_node=two_node, wait_for_all=wait_for_all,
              start=False)
        if edit is not None:
            for i in range(1, n + 1):
                path = cs.workdir / f"n{i}" / "corosync.conf"
                path.write_text(edit(path.read_text()))
        pq.setup(lambda i: identical_config(
            (cs.workdir / f"n{i}" / "corosync.conf").read_text(), corosync_net=corosync_net,
            net=net, node_dir=pq.node_dir(i)))
        cs.sh("start", ",".join(map(str, nodes)))
        pq.start_daemons(nodes)
        sides = (corosync_side(cs), pyquorum_side(pq))
        yield sides[0], sides[1], cs, pq
    finally:
        try:
            for side in sides:
                side.close()
            cs.clean()
        finally:
            assert pq.close() == []


class Monitor:
    """``timeout LIMIT stdbuf -oL corosync-quorumtool -m`` in a node's namespace, its
    stdout in a file (line buffered: the tool's stdio would otherwise hold whole blocks
    until it exits, and a signalled tool never flushes)."""

    def __init__(self, side: Side, node: int) -> None:
        self.out_path = Path(os.environ.get("TMPDIR", "/tmp")) / (
            f"pqdi-{os.getpid()}-{side.name}-{node}-{time.monotonic_ns()}.monitor")
        self.side = side
        with open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", side.netns(node), "timeout", str(MONITOR_LIMIT_S),
                 "stdbuf", "-oL", QUORUMTOOL, "-m"],
                stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                env={**os.environ, "LC_ALL": "C"}, start_new_session=True)

    def text(self) -> str:
        return self.out_path.read_text(errors="replace")

    def blocks(self) -> list[str]:
        """The complete status blocks printed so far."""
        return complete_blocks(self.text())

    def finish(self, *, signal_it: bool) -> tuple[int, str, str]:
        """Stop it (SIGTERM to ``timeout``, which passes it on) if ``signal_it`` and it
        still runs; (exit code, stdout, stderr)."""
        if signal_it and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=CMD_TIMEOUT_S)
        finally:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=CMD_TIMEOUT_S)
        text = self.text()
        self.out_path.unlink()
        return self.proc.returncode, text, err.decode(errors="replace")


def complete_blocks(text: str) -> list[str]:
    """The complete status blocks of ``corosync-quorumtool -m`` output: the tool ends each
    with an empty line and writes whole lines (each of its printf calls that holds a
    newline ends with it), so only a block's end leaves the text ending in two newlines."""
    parts = text.split("Quorum information\n")[1:]
    done = parts[:-1] + [p for p in parts[-1:] if p.endswith("\n\n")]
    return ["Quorum information\n" + p for p in done]


# ====================================================================== waiting
_MEMBER = re.compile(r"^\s+(\d+)\s+\d+\s+\S+")


def view(res: subprocess.CompletedProcess[str]) -> tuple[bool, tuple[int, ...]] | None:
    """(quorate, members) from ``corosync-quorumtool -s`` output (None: no answer)."""
    if res.returncode not in (0, 2) or "Membership information" not in res.stdout:
        return None
    quorate = "Quorate:          Yes" in res.stdout.splitlines()
    members = sorted(int(m.group(1)) for m in map(_MEMBER.match, res.stdout.split(
        "Membership information", 1)[1].splitlines()) if m)
    return quorate, tuple(members)


def wait_views(sides: Iterable[Side], alive: Iterable[int], quorate: bool,
               timeout: float = CONVERGE_TIMEOUT_S) -> None:
    """Until every ``alive`` node of every side reports exactly ``alive`` as members and
    ``quorate`` (bounded: AssertionError with the last views)."""
    want = (quorate, tuple(sorted(alive)))
    deadline = time.monotonic() + timeout
    last: dict[tuple[str, int], object] = {}
    pending = [(s, n) for s in sides for n in want[1]]
    while pending:
        side, node = pending[0]
        got = view(side.tool(node, "-s"))
        last[(side.name, node)] = got
        if got == want:
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise AssertionError(f"no convergence to {want} within {timeout} s: {last}")
        time.sleep(POLL_S)  # polling interval of a bounded wait on a condition


def wait_until(predicate: Callable[[], bool], what: str,
               timeout: float = CONVERGE_TIMEOUT_S) -> None:
    """Poll ``predicate`` until true (AssertionError naming ``what`` after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL_S)  # polling interval of a bounded wait on a condition
