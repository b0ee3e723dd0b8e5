"""``pyquorumd -c CONFIG [-f] [--nodeid N] [--ready-fd FD]``: start-up and daemonizing.

Start-up checks run in the foreground, in this order, and any failure prints one
line naming the file at fault on stderr and exits 1: configuration (file:line),
logging targets, the local node, the authkey, the node addresses, the run
directory and its pid-file lock (one daemon per run_dir), the state directory and
file, the UDP bind.  Then, without ``-f``, the daemon double-forks (setsid, stdio
to /dev/null); the original process waits until the daemon serves (or fails) and
exits 0 (or 1 with the daemon's message).  ``--ready-fd FD`` gets ``READY\\n`` once
the IPC socket is published and the first view is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import select
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, NoReturn

from pyquorum import __version__
from pyquorum.config import load_config
from pyquorum.config.model import ClusterConfig
from pyquorum.daemon.authkey import load_authkey
from pyquorum.daemon.cmap import read_configured_keys
from pyquorum.daemon.driver import Daemon, DaemonSetup
from pyquorum.daemon.errors import StartupError
from pyquorum.daemon.localnode import find_local_node, resolve_endpoints
from pyquorum.daemon.logsys import DaemonLog
from pyquorum.daemon.storage import StateStore
from pyquorum.daemon.transport import UdpTransport
from pyquorum.errors import ConfigError

PROG: Final = "pyquorumd"
PID_FILE: Final = "pyquorumd.pid"
HOOKS_ENV: Final = "PYQUORUM_TEST_HOOKS"
START_TIMEOUT_S: Final = 60.0
"""How long the foreground parent waits for the daemonized child to report."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    p = _Parser(prog=PROG, description="pyquorum cluster quorum daemon (Corosync compatible)")
    p.add_argument("-c", "--config", required=True, help="corosync.conf-style configuration")
    p.add_argument("-f", "--foreground", action="store_true",
                   help="stay in the foreground (do not daemonize)")
    p.add_argument("--nodeid", type=int, default=None,
                   help="this node's id (default: found from the host name or addresses)")
    p.add_argument("--ready-fd", type=int, default=None, metavar="FD",
                   help="write READY to this inherited fd once serving, then close it")
    p.add_argument("-v", "--version", action="version", version=f"{PROG} {__version__}")
    return p


class PidLock:
    """``<run_dir>/pyquorumd.pid``, flock-ed for the daemon's lifetime."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / PID_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Lock the pid file; ``StartupError`` if another daemon holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StartupError(f"{self.path}: cannot open the pid file: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StartupError(
                f"{self.path}: another pyquorumd (pid {other}) is running with this run_dir"
            ) from None
        self._fd = fd

    def write_pid(self) -> None:
        """Record the current pid (after daemonizing)."""
        if self._fd is not None:
            data = f"{os.getpid()}\n".encode()
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Remove the pid file and drop the lock."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = None


def prepare_run_dir(config: ClusterConfig) -> Path:
    """Create ``system.run_dir`` (0755) if needed."""
    run_dir = Path(config.system.run_dir).absolute()  # daemonizing changes to /
    if not run_dir.is_dir():
        try:
            run_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            os.chmod(run_dir, 0o755)
        except OSError as exc:
            raise StartupError(f"{run_dir}: cannot create the run directory: {exc.strerror}"
                               ) from None
    return run_dir


def _check_ready_fd(fd: int | None) -> None:
    if fd is None:
        return
    if fd < 0:
        raise StartupError(f"--ready-fd {fd}: not a file descriptor")
    try:
        os.fstat(fd)
    except OSError:
        raise StartupError(f"--ready-fd {fd}: not an open file descriptor") from None


def _daemonize(lock: PidLock, log: DaemonLog, ready_fd: int | None
               ) -> tuple[int, int | None, int | None]:
    """Double fork.  Returns (0, status_fd, ready_fd) in the daemon; in the original
    process waits for the daemon's report and returns (exit_code, None, None)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(w)
        os.waitpid(pid, 0)
        return _wait_for_daemon(r), None, None
    os.close(r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    if ready_fd is not None and ready_fd <= 2:  # keep it apart from the stdio we replace
        moved = os.dup(ready_fd)
        os.close(ready_fd)
        ready_fd = moved
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if devnull > 2:
        os.close(devnull)
    log.detach_stderr()
    log.refresh_pid()
    lock.write_pid()
    return 0, w, ready_fd


def _wait_for_daemon(fd: int) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    data = b""
    try:
        while len(data) < 4096:
            left = deadline - time.monotonic()
            if left <= 0:
                print(f"{PROG}: the daemon did not report within {START_TIMEOUT_S:.0f} s",
                      file=sys.stderr)
                return 1
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    text = data.decode(errors="replace").strip()
    if text == "OK":
        return 0
    print(f"{PROG}: {text or 'the daemon exited during start-up'}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pyquorumd``; returns the exit code."""
    args = build_parser().parse_args(argv)
    log: DaemonLog | None = None
    lock: PidLock | None = None
    transport: UdpTransport | None = None
    try:
        _check_ready_fd(args.ready_fd)
        config = load_config(args.config)
        log = DaemonLog(config.logging, source=config.source)
        node = find_local_node(config, args.nodeid)
        authkey, key_warnings = load_authkey(config)
        local, peers = resolve_endpoints(config, node)
        run_dir = prepare_run_dir(config)
        lock = PidLock(run_dir)
        lock.acquire()
        store = StateStore(Path(config.system.state_dir).absolute(), node.nodeid)
        store.prepare()
        stored = store.load()
        transport = UdpTransport(local, peers)
        transport.open()
        configured_keys = read_configured_keys(args.config)
    except (ConfigError, StartupError) as exc:
        if log is not None:
            log.detach_stderr()
            log.log("error", "MAIN", str(exc))
            log.close()
        if transport is not None:
            transport.close()
        if lock is not None:
            lock.release()
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    log.log("notice", "MAIN", f"pyquorumd {__version__} starting up")
    for warning in key_warnings:
        log.log("warning" if authkey is not None else "crit", "TOTEM", warning)
    host, port = local.address[:2]
    log.log("info", "TOTEM", f"Configured link number 0: local addr: {host}, port={port}")
    log.log("notice", "MAIN", f"This node is node {node.nodeid}"
                              + (f" ({node.name})" if node.name else ""))
    if config.quorum.provider:
        log.log("notice", "QUORUM", f"Using quorum provider {config.quorum.provider}")
    status_fd: int | None = None
    ready_fd: int | None = args.ready_fd
    if not args.foreground:
        code, status_fd, ready_fd = _daemonize(lock, log, ready_fd)
        if status_fd is None:  # the original process: report for the daemon
            log.close()
            return code
    else:
        lock.write_pid()
    setup = DaemonSetup(
        config=config, config_path=args.config, configured_keys=configured_keys, node=node,
        authkey=authkey, store=store, stored=stored, transport=transport, run_dir=run_dir,
        hooks=os.environ.get(HOOKS_ENV) == "1", ready_fd=ready_fd,
    )
    if setup.hooks:
        log.log("warning", "MAIN", f"{HOOKS_ENV}=1: the test hook service is enabled")

    reported = False

    def started(error: str | None) -> None:
        nonlocal reported
        if reported:
            return
        reported = True
        if status_fd is None:  # foreground: the one-line message goes to stderr
            if error is not None:
                with contextlib.suppress(OSError, ValueError):
                    print(f"{PROG}: {error}", file=sys.stderr)
            return
        with contextlib.suppress(OSError):
            os.write(status_fd, b"OK\n" if error is None
                     else error.encode(errors="replace")[:4000])
        with contextlib.suppress(OSError):
            os.close(status_fd)

    try:
        code = Daemon(setup, log, started).run()
    finally:
        started("the daemon stopped during start-up")
        lock.release()
        log.close()
    return code
