"""Real Corosync 3.1.7 clusters for the Corosync tier, through ``../shared/oracle/cluster.sh``.

Each ``CorosyncCluster`` is one ``cluster.sh`` instance with its own ``CS_PREFIX``,
``CS_WORKDIR`` and ``CS_NET``: one Corosync daemon per network namespace, all plugged into
a bridge in a private switch namespace, nothing in the root namespace; ``clean`` stops
every process it started (by recorded PID) and deletes the namespaces and the work dir.

libqb's IPC uses abstract Unix sockets, which belong to a network namespace, so a client
reaches node N's daemon only from N's namespace.  ``CorosyncTarget.in_node(N)`` moves the
calling thread into that namespace (``setns(CLONE_NEWNET)``, per thread) just for the
initialize call and back: the sockets keep their namespace after that, so the test process
itself, in the root namespace, holds handles on every node's daemon at once.

``environment_problem()`` says why the tier cannot run here (not root, no ``ip netns``,
Corosync not installable); it installs the missing Debian packages with the oracle's
``install-deps.sh`` (``apt-get``, only when something is missing).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from pyquorum.client import _corosync
from pyquorum.client import quorum as q
from pyquorum.client import votequorum as vq
from pyquorum.errors import CsErr, CsError

ORACLE_DIR = Path(os.environ.get("PYQUORUM_ORACLE_DIR")
                  or Path(__file__).resolve().parents[3] / "shared" / "oracle")
CLUSTER_SH = ORACLE_DIR / "cluster.sh"
INSTALL_DEPS = ORACLE_DIR / "install-deps.sh"
CMD_TIMEOUT_S = 120.0
INSTALL_TIMEOUT_S = 900.0
IPC_READY_TIMEOUT_S = 20.0
_CLONE_NEWNET = 0x40000000
_TOOLS = ("corosync", "nft", "ip", "unshare", "setsid", "python3")


# ====================================================================== environment
def _missing_tools() -> list[str]:
    return [t for t in _TOOLS if shutil.which(t) is None]


def _libraries_problem() -> str | None:
    for name in (_corosync.LIBQUORUM, _corosync.LIBVOTEQUORUM):
        try:
            ctypes.CDLL(name)
        except OSError as exc:
            return f"{name} cannot be loaded: {exc}"
    return None


def environment_problem() -> str | None:
    """Why the Corosync tier cannot run here (None: it can).  Installs Corosync first
    when it is missing and this is a Debian system with apt-get."""
    if os.geteuid() != 0:
        return "the Corosync tier needs root (network namespaces, corosync daemons)"
    if not CLUSTER_SH.is_file():
        return f"the oracle harness is missing ({CLUSTER_SH}; set PYQUORUM_ORACLE_DIR)"
    if shutil.which("ip") is None:
        return "the Corosync tier needs 'ip' with netns support (apt-get install -y iproute2)"
    if _missing_tools() or _libraries_problem():
        if shutil.which("apt-get") is None:
            return (f"Corosync is not installed ({', '.join(_missing_tools()) or 'libraries'}"
                    " missing) and there is no apt-get to install it")
        try:
            res = subprocess.run(["bash", str(INSTALL_DEPS)], capture_output=True, text=True,
                                 timeout=INSTALL_TIMEOUT_S,
                                 env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        except (OSError, subprocess.SubprocessError) as exc:
            return f"installing corosync failed: {exc}"
        if res.returncode != 0:
            tail = (res.stdout + res.stderr).strip().splitlines()[-5:]
            return "installing corosync failed (apt-get): " + " | ".join(tail)
        if _missing_tools():
            return f"still missing after install-deps.sh: {', '.join(_missing_tools())}"
        problem = _libraries_problem()
        if problem:
            return problem
    name = f"pqcsprobe{os.getpid()}"
    try:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True,
                       timeout=CMD_TIMEOUT_S)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"'ip netns add' does not work here: {exc}"
    try:
        with in_netns(name):
            pass
    except OSError as exc:
        return f"setns into a network namespace does not work here: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=CMD_TIMEOUT_S)
    return None


# ====================================================================== namespaces
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body with the calling thread in network namespace ``name``."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)  # cannot fail for a namespace we came from; if it did, stop here
    finally:
        os.close(home)


# ====================================================================== clusters
class CorosyncCluster:
    """One ``cluster.sh`` instance (its own prefix, work dir and subnet)."""

    def __init__(self, prefix: str, net: str) -> None:
        self.prefix = prefix
        self.net = net
        self.workdir = Path(tempfile.mkdtemp(prefix=f"pyquorum-cs-{prefix}-"))
        self.n = 0
        self.env = {**os.environ, "CS_PREFIX": prefix, "CS_WORKDIR": str(self.workdir),
                    "CS_NET": net}

    def sh(self, *args: str, timeout: float = CMD_TIMEOUT_S) -> str:
        """Run ``cluster.sh args...``; its stdout.  A failure raises with its stderr."""
        res = subprocess.run([str(CLUSTER_SH), *args], env=self.env, capture_output=True,
                             text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            raise RuntimeError(f"cluster.sh {' '.join(args)} failed ({res.returncode}): "
                               f"{res.stderr.strip()}{self.logs()}")
        return res.stdout

    def logs(self) -> str:
        """The tails of the daemons' logs (for failure messages)."""
        out = []
        for d in sorted(self.workdir.glob("n[0-9]*")):
            for f in ("stdout.log", "corosync.log"):
                p = d / f
                if p.is_file():
                    out.append(f"\n--- {p}\n" + "\n".join(
                        p.read_text(errors="replace").splitlines()[-15:]))
        return "".join(out)

    def up(self, n: int, *, two_node: bool = False, wait_for_all: bool = False,
           token_ms: int = 1000, start: bool = True) -> None:
        """Create the namespaces and configs of ``n`` nodes (start them if ``start``)."""
        args = ["up", str(n), "--token", str(token_ms)]
        if two_node:
            args.append("--two-node")
        if wait_for_all:
            args.append("--wait-for-all")
        if not start:
            args.append("--no-start")
        self.n = n
        self.sh(*args)

    def netns(self, node: int) -> str:
        return f"{self.prefix}-n{node}"

    def clean(self) -> None:
        """Stop everything this instance started and remove namespaces and files."""
        try:
            self.sh("clean")
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)


class CorosyncTarget:
    """``api_conformance_checks.Target`` over a ``CorosyncCluster``, through the Corosync
    backend of the client API."""

    backend = _corosync.BACKEND_COROSYNC

    def __init__(self, cluster: CorosyncCluster) -> None:
        self.cluster = cluster

    @contextlib.contextmanager
    def in_node(self, node: int) -> Iterator[None]:
        """The calling thread in ``node``'s network namespace for the body."""
        with in_netns(self.cluster.netns(node)):
            yield

    def initialize(self, node: int, model: int,
                   data: q.QuorumModelV0Data | q.QuorumModelV1Data | None,
                   context: object = None) -> tuple[int, int]:
        with self.in_node(node):
            return q.quorum_model_initialize(model, data, context, backend=self.backend)

    def v0_initialize(self, node: int,
                      callbacks: q.QuorumCallbacks | None) -> tuple[int, int]:
        with self.in_node(node):
            return q.quorum_initialize(callbacks, backend=self.backend)

    def vq_initialize(self, node: int, callbacks: vq.VotequorumCallbacks | None) -> int:
        with self.in_node(node):
            return vq.votequorum_initialize(callbacks, backend=self.backend)

    def wait_ipc(self, node: int, timeout: float = IPC_READY_TIMEOUT_S) -> None:
        """Return once ``node``'s daemon accepts a quorum connection (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                h, _ = self.v0_initialize(node, None)
            except CsError as exc:
                if exc.code not in (CsErr.CS_ERR_LIBRARY, CsErr.CS_ERR_TRY_AGAIN):
                    raise
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node {node}: no Corosync IPC after {timeout} s"
                                       f"{self.cluster.logs()}") from None
                time.sleep(0.05)
                continue
            q.quorum_finalize(h)
            return

    def start(self, node: int) -> None:
        self.cluster.sh("start", str(node))
        self.wait_ipc(node)

    def kill(self, node: int) -> None:
        self.cluster.sh("kill", str(node))

    def stop(self, node: int) -> None:
        self.cluster.sh("stop", str(node))

    def partition(self, groups: Sequence[Sequence[int]]) -> None:
        self.cluster.sh("partition", "|".join(",".join(map(str, g)) for g in groups))

    def heal(self) -> None:
        self.cluster.sh("heal")
