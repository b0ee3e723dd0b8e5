"""A local cluster of real ``pyquorumd`` processes on 127.0.0.1 (for pyquorum-lab and tests).

Theory of operation
-------------------
``LabCluster.setup`` makes one temporary directory holding a generated authkey and, per
node, ``n<i>/corosync.conf`` (rendered by ``pyquorum.config.generate``), ``n<i>/state``,
``n<i>/run`` (the node's run dir: clients connect to ``n<i>/run/pyquorum.sock``) and
``n<i>/daemon.log`` (the daemon's stdout and stderr).  Every node listens on its own free
UDP port of 127.0.0.1.

``start(n)`` runs ``sys.executable -m pyquorum.daemon -c CONF -f --nodeid n --ready-fd W``
in its own session (a terminal's Ctrl-C reaches only the lab, which then stops the
daemons cleanly) and waits, bounded, until the daemon writes ``READY`` on the pipe or
the pipe closes.  Processes are only ever signalled through their ``Popen`` object,
i.e. by PID, and only while not yet reaped.  ``close()`` resumes paused daemons, stops
every daemon (SIGTERM, then SIGKILL after a timeout), and removes the directory unless
``keep``; it is idempotent and safe to call from another thread or a ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final, Literal

from pyquorum.config.generate import LocalNode, render_local_config
from pyquorum.tools.keygen import write_key

NodeState = Literal["new", "running", "paused", "stopping", "killed", "stopped", "exited"]

DEFAULT_READY_TIMEOUT_S: Final = 30.0
DEFAULT_STOP_TIMEOUT_S: Final = 15.0
_LOG_TAIL_BYTES: Final = 2000


class LabError(Exception):
    """A lab operation failed (bad node number, daemon did not start, ...)."""


@dataclass(slots=True)
class LabNode:
    """One node of the lab cluster and its files."""

    nodeid: int
    port: int
    directory: str
    state: NodeState = "new"
    proc: subprocess.Popen[bytes] | None = None
    returncode: int | None = None

    @property
    def config_path(self) -> str:
        """The node's corosync.conf."""
        return os.path.join(self.directory, "corosync.conf")

    @property
    def run_dir(self) -> str:
        """The node's run directory (its IPC socket lives here)."""
        return os.path.join(self.directory, "run")

    @property
    def state_dir(self) -> str:
        """The node's state directory (persisted ring sequence)."""
        return os.path.join(self.directory, "state")

    @property
    def log_path(self) -> str:
        """The daemon's stdout/stderr."""
        return os.path.join(self.directory, "daemon.log")

    @property
    def pid(self) -> int | None:
        """The daemon's PID while it runs (or is paused)."""
        return self.proc.pid if self.proc is not None and self.returncode is None else None


def free_udp_ports(count: int, address: str = "127.0.0.1") -> list[int]:
    """``count`` distinct UDP ports that are free on ``address`` right now."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((address, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_ready(fd: int, timeout_s: float) -> bool:
    """Read ``fd`` until a ``READY`` line (True) or EOF/timeout (False); bounded.

    EOF means the daemon exited (the lab closed its own copy of the write end).
    """
    deadline = time.monotonic() + timeout_s
    buf = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            return False
        buf += chunk
        if b"READY\n" in buf:
            return True


@dataclass(slots=True)
class LabCluster:
    """N real daemons on 127.0.0.1 with their files in one temporary directory."""

    n_nodes: int = 3
    token_ms: int | None = None
    quorum_options: Mapping[str, str | int] = field(default_factory=dict)
    keep: bool = False
    parent_dir: str | None = None
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S
    stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S
    debug: bool = False
    encrypted: bool = True
    env: Mapping[str, str] | None = None
    directory: str = ""
    keyfile: str = ""
    nodes: dict[int, LabNode] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _closed: bool = False

    # ------------------------------------------------------------ set-up
    def setup(self) -> str:
        """Create the directory, key and configs; returns the directory."""
        if self.n_nodes < 1:
            raise LabError("a lab cluster needs at least one node")
        with self._lock:
            if self.directory:
                return self.directory
            self.directory = tempfile.mkdtemp(prefix="pyqlab-", dir=self.parent_dir)
        self.keyfile = os.path.join(self.directory, "authkey")
        if self.encrypted:
            write_key(self.keyfile)
        ports = free_udp_ports(self.n_nodes)
        local = [LocalNode(nodeid=i, port=p) for i, p in enumerate(ports, start=1)]
        for ln in local:
            node = LabNode(ln.nodeid, ln.port, os.path.join(self.directory, f"n{ln.nodeid}"))
            for d in (node.directory, node.run_dir, node.state_dir):
                os.makedirs(d, mode=0o700, exist_ok=True)
            text = render_local_config(
                local,
                state_dir=node.state_dir,
                run_dir=node.run_dir,
                keyfile=self.keyfile if self.encrypted else None,
                token_ms=self.token_ms,
                quorum_options=dict(self.quorum_options),
                debug=self.debug,
                to_stderr=True,
            )
            with open(node.config_path, "w", encoding="utf-8") as f:
                f.write(text)
            self.nodes[ln.nodeid] = node
        return self.directory

    def node(self, nodeid: int) -> LabNode:
        """The node ``nodeid`` (LabError if there is none)."""
        try:
            return self.nodes[nodeid]
        except KeyError:
            raise LabError(f"no node {nodeid} (nodes are 1..{self.n_nodes})") from None

    def run_dir(self, nodeid: int) -> str:
        """The run directory clients use to reach node ``nodeid``."""
        return self.node(nodeid).run_dir

    def command(self, nodeid: int, ready_fd: int) -> list[str]:
        """The daemon command line of node ``nodeid``."""
        node = self.node(nodeid)
        return [sys.executable, "-m", "pyquorum.daemon", "-c", node.config_path, "-f",
                "--nodeid", str(nodeid), "--ready-fd", str(ready_fd)]

    # ------------------------------------------------------------ state
    def refresh(self) -> list[LabNode]:
        """Reap daemons that exited on their own; returns the nodes that just did."""
        exited: list[LabNode] = []
        with self._lock:
            for node in self.nodes.values():
                if (node.proc is not None and node.returncode is None
                        and node.state in ("running", "paused")):
                    rc = node.proc.poll()
                    if rc is not None:
                        node.returncode = rc
                        node.state = "exited"
                        exited.append(node)
        return exited

    def is_running(self, nodeid: int) -> bool:
        """True while node ``nodeid``'s daemon process exists (paused included)."""
        self.refresh()
        return self.node(nodeid).state in ("running", "paused")

    def running_nodes(self) -> list[int]:
        """Node ids whose daemon process exists (paused included), ascending."""
        self.refresh()
        return sorted(n for n, node in self.nodes.items() if node.state in ("running", "paused"))

    # ------------------------------------------------------------ operations
    def start(self, nodeid: int) -> int:
        """Start node ``nodeid`` and wait for READY; returns the PID."""
        node = self.node(nodeid)
        if self.is_running(nodeid):
            raise LabError(f"node {nodeid} is already running")
        read_fd, write_fd = os.pipe()
        try:
            with self._lock:
                if self._closed:
                    raise LabError("the lab is shutting down")
                env = dict(os.environ if self.env is None else self.env)
                log: IO[bytes] = open(node.log_path, "ab")  # noqa: SIM115 - closed below
                try:
                    proc = subprocess.Popen(
                        self.command(nodeid, write_fd), pass_fds=(write_fd,),
                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True, env=env, cwd=node.directory,
                    )
                finally:
                    log.close()
                node.proc = proc
                node.returncode = None
                node.state = "running"
            os.close(write_fd)
            write_fd = -1
            ready = wait_ready(read_fd, self.ready_timeout_s)
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
        if not ready:
            self._terminate(node, signal.SIGKILL, "exited")
            raise LabError(f"node {nodeid} did not become ready within "
                           f"{self.ready_timeout_s:g} s (exit status {node.returncode}); "
                           f"log tail:\n{self.log_tail(nodeid)}")
        return proc.pid

    def stop(self, nodeid: int) -> int | None:
        """Stop node ``nodeid`` cleanly (SIGTERM; SIGKILL after the timeout); its status."""
        node = self.node(nodeid)
        if not self.is_running(nodeid):
            raise LabError(f"node {nodeid} is not running")
        return self._terminate(node, signal.SIGTERM, "stopped")

    def kill(self, nodeid: int) -> int | None:
        """SIGKILL node ``nodeid`` and reap it; its exit status."""
        node = self.node(nodeid)
        if not self.is_running(nodeid):
            raise LabError(f"node {nodeid} is not running")
        return self._terminate(node, signal.SIGKILL, "killed")

    def pause(self, nodeid: int) -> None:
        """SIGSTOP node ``nodeid``."""
        node = self.node(nodeid)
        if not self.is_running(nodeid) or node.proc is None:
            raise LabError(f"node {nodeid} is not running")
        if node.state == "paused":
            raise LabError(f"node {nodeid} is already paused")
        node.proc.send_signal(signal.SIGSTOP)
        node.state = "paused"

    def resume(self, nodeid: int) -> None:
        """SIGCONT node ``nodeid``."""
        node = self.node(nodeid)
        if node.state != "paused" or node.proc is None:
            raise LabError(f"node {nodeid} is not paused")
        node.proc.send_signal(signal.SIGCONT)
        node.state = "running"

    def _terminate(self, node: LabNode, sig: signal.Signals, final: NodeState) -> int | None:
        """Signal the node's process (by PID through Popen), wait bounded, reap.

        The node is ``stopping`` meanwhile, so ``refresh`` does not report the exit as
        unexpected; it ends in state ``final``.
        """
        with self._lock:
            proc = node.proc
            if proc is None or node.returncode is not None:
                if node.state in ("running", "paused"):
                    node.state = final
                return node.returncode
            was_paused = node.state == "paused"
            node.state = "stopping"
            if proc.poll() is None:
                proc.send_signal(sig)
                if was_paused and sig != signal.SIGKILL:
                    proc.send_signal(signal.SIGCONT)
        try:
            rc: int | None = proc.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait(timeout=self.stop_timeout_s)
        with self._lock:
            node.returncode = rc
            node.state = final
        return rc

    def log_tail(self, nodeid: int, max_bytes: int = _LOG_TAIL_BYTES) -> str:
        """The end of node ``nodeid``'s daemon log."""
        try:
            with open(self.node(nodeid).log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - max_bytes))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # ------------------------------------------------------------ client helpers
    def wait_quorum(
        self,
        nodeid: int,
        predicate: Callable[[bool, Sequence[int]], bool],
        timeout_s: float,
    ) -> tuple[bool, tuple[int, ...]]:
        """Track node ``nodeid``'s quorum events until ``predicate(quorate, members)``.

        Returns the matching (quorate, members); raises LabError on timeout or
        disconnect.  Bounded: waits on the client's event fd, never sleeps.
        """
        from pyquorum.client.events import Disconnected, QuorumEvent
        from pyquorum.client.facade import QuorumClient

        deadline = time.monotonic() + timeout_s
        last: Any = None
        with QuorumClient(run_dir=self.run_dir(nodeid)) as client:
            client.track()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LabError(f"node {nodeid}: no matching quorum event within "
                                   f"{timeout_s:g} s (last: {last})")
                event = client.wait_event(remaining)
                if event is None:
                    continue
                if isinstance(event, Disconnected):
                    raise LabError(f"node {nodeid}: daemon went away")
                if isinstance(event, QuorumEvent):
                    last = event
                    members = tuple(event.members)
                    if predicate(bool(event.quorate), members):
                        return bool(event.quorate), members

    # ------------------------------------------------------------ teardown
    def close(self) -> None:
        """Stop every daemon (by PID) and remove the directory unless ``keep``."""
        with self._lock:
            self._closed = True
            nodes = list(self.nodes.values())
        for node in nodes:
            if node.proc is not None and node.returncode is None:
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    self._terminate(node, signal.SIGTERM, "stopped")
        if self.directory and not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LabCluster:
        self.setup()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
