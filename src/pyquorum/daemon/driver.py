"""The asyncio driver of ``NodeEngine``: one pump, one timer, signals, stall warnings.

Theory of operation
-------------------
Every input is fed to the engine and followed by the same pump (the simulator's
discipline, ``pyquorum.sim.world``)::

    input: datagram | timer | IPC request | IPC connection closed | leave (shutdown)
    pump:  drain engine events in order
               PersistState  -> StateStore.save (write tmp, fsync, rename, fsync dir)
               Replied       -> IPC response (in request order)
               Notified      -> IPC event channel
               LogRecord     -> the log;  ViewInstalled -> membership log lines
           send the datagrams (only now: the state they rely on is durable)
           re-arm the single timer (loop.call_at at engine.get_timer())

``now_ms`` is ``int(time.monotonic() * 1000)``, clamped so it never decreases.  A
failure to persist is fatal (exit 1) and nothing more is sent.  SIGTERM/SIGINT: the
engine leaves (under allow_downscale after its LEAVING NODEINFO was delivered, at
most one token later; datagrams and timers keep flowing until then), the IPC
closes, exit 0; a second signal while stopping is logged.  A watchdog timer runs
every token/3 and warns, in Corosync's words, when the loop was not scheduled for
more than 0.8 x token.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pyquorum.config import load_config
from pyquorum.config.model import ClusterConfig, NodeConfig
from pyquorum.config.reload import plan_reload
from pyquorum.core.engine import (
    Command,
    EngineEvent,
    LogRecord,
    NodeEngine,
    Notified,
    PersistState,
    ReloadRequested,
    Replied,
    StoredState,
    ViewInstalled,
)
from pyquorum.daemon.authkey import load_authkey
from pyquorum.daemon.cmap import cmap_view, read_configured_keys, reloaded_keys, select
from pyquorum.daemon.errors import StartupError, StorageError
from pyquorum.daemon.ipcserver import IpcServer
from pyquorum.daemon.localnode import resolve_endpoints
from pyquorum.daemon.logsys import DaemonLog
from pyquorum.daemon.storage import StateStore
from pyquorum.daemon.transport import UdpTransport
from pyquorum.errors import ConfigError

if TYPE_CHECKING:  # imported when system.libqb_ipc asks for it (start-up time)
    from pyquorum.daemon.qbipc import QbIpcServer

DATAGRAMS_PER_WAKEUP: Final = 256
"""Datagrams handled per readiness callback before timers and IPC get a turn."""
STALL_FACTOR: Final = 0.8


@dataclass(frozen=True, slots=True)
class DaemonSetup:
    """Everything prepared (and checked) before the loop starts."""

    config: ClusterConfig
    config_path: str
    configured_keys: tuple[tuple[str, str], ...]
    node: NodeConfig
    authkey: bytes | None
    store: StateStore
    stored: StoredState
    transport: UdpTransport
    run_dir: Path
    hooks: bool
    ready_fd: int | None


StartedFn = Callable[[str | None], None]
"""Called once: None when serving, or the error message if start-up failed."""


class Daemon:
    """Runs one node: ``Daemon(setup, log).run()`` returns the exit code."""

    def __init__(self, setup: DaemonSetup, log: DaemonLog,
                 on_started: StartedFn | None = None) -> None:
        self.setup = setup
        self.config = setup.config
        self.log = log
        self._on_started = on_started
        self._transport = setup.transport
        self._store = setup.store
        self._ready_fd = setup.ready_fd
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine: NodeEngine | None = None
        self._ipc: IpcServer | None = None
        self._qb: QbIpcServer | None = None
        """The libqb endpoint for Corosync's C clients (``system.libqb_ipc``)."""
        self._clock_ms = 0
        self._timer: asyncio.TimerHandle | None = None
        self._armed: int | None = None
        self._stall: asyncio.TimerHandle | None = None
        self._stall_prev = 0.0
        self._stop: asyncio.Event | None = None
        self._stopping = False
        self._halted = False
        """No more network or timer input: the leave is done (or a fatal error)."""
        self._left: asyncio.Event | None = None
        self._failed = False
        self._exit_code = 0
        self._published = False
        self._last_members: tuple[int, ...] = ()
        self._loop_done = False
        self._late_signals: list[int] = []
        self._configured_keys = setup.configured_keys
        self.stats: dict[str, int] = {"stalls": 0, "state_writes": 0, "signals": 0,
                                      "reloads": 0, "reload_errors": 0}
        self._quorate_seen: bool | None = None
        self.quorate_changed_ns = 0
        """CLOCK_MONOTONIC (ns) when this node's quorate bit last changed, taken as the
        daemon starts delivering the events of the input that changed it, before any
        callback is written (cmap ``runtime.pyquorum.quorate_changed_ns``; 0: never)."""

    # ------------------------------------------------------------ running
    def run(self) -> int:
        """Run the loop until a signal or a fatal error; return the exit code.

        SIGTERM/SIGINT get a Python handler for the whole run (installed before the
        loop and never reset to the default), so a signal that arrives while the
        loop shuts down is noted instead of killing the process mid-exit.
        """
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._signal_handler)
        signal.signal(signal.SIGHUP, self._sighup_handler)
        try:
            return asyncio.run(self._main())
        except Exception as exc:  # a bug: log it where the operator looks, exit 1
            for line in traceback.format_exception(type(exc), exc, exc.__traceback__):
                for part in line.rstrip().splitlines():
                    self.log.log("crit", "MAIN", part)
            self._started(f"internal error: {exc!r}")
            return 1
        finally:
            self._loop_done = True
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)  # exiting anyway

    def _signal_handler(self, signum: int, frame: object) -> None:
        """Runs in the main thread between bytecodes: hand the signal to the loop, or
        note it when shutdown already runs (it is logged by ``_shutdown``)."""
        loop = self._loop
        if self._stopping or self._loop_done or loop is None or loop.is_closed():
            self._late_signals.append(signum)
            return
        loop.call_soon_threadsafe(self._on_signal, signum)

    def _sighup_handler(self, signum: int, frame: object) -> None:
        """SIGHUP: reload the configuration file of this node (in the loop)."""
        loop = self._loop
        if self._stopping or self._loop_done or loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._on_sighup)

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        loop.set_exception_handler(self._on_loop_error)
        rng = random.Random(int.from_bytes(os.urandom(32), "big"))
        s = self.setup
        self._engine = NodeEngine(s.node.nodeid, self.config, rng, s.stored, self._now(),
                                  s.authkey)
        self._ipc = IpcServer(s.run_dir, self, self.log.log, hooks=s.hooks,
                              uidgid=self.config.uidgid)
        if self.config.system.libqb_ipc:
            from pyquorum.daemon.qbipc import QbIpcServer
            self._qb = QbIpcServer(self, self.log.log, uidgid=self.config.uidgid,
                                   run_dir=s.run_dir, conn_in_use=self._ipc.owns)
            self._ipc.conn_in_use = self._qb.owns
        try:
            self._ipc.open(loop)
            if self._qb is not None:
                self._qb.open(loop)
        except StartupError as exc:
            self.log.log("error", "MAIN", str(exc))
            self._started(str(exc))
            self._ipc.close()
            self._transport.close()
            return 1
        self._published = True
        # What start-up allocated (modules, configuration, engine: ~30k objects) stays
        # for the life of the process: move it out of the collector's reach, so that a
        # full collection scans only what the running daemon allocates (one pass over
        # the start-up heap takes ~15 ms, a pause every client callback would wait for).
        gc.freeze()
        loop.add_reader(self._transport.fileno(), self._on_udp)
        if self._late_signals:  # a signal came before the loop ran
            loop.call_soon(self._on_signal, self._late_signals.pop(0))
        self._stall_prev = time.monotonic()
        self._stall = loop.call_later(self._stall_interval_s(), self._stall_tick)
        self._pump()
        if self._failed:
            self._started("fatal error during start-up (see the log)")
        await self._stop.wait()
        if not self._failed:
            await self._leave()
        return self._shutdown()

    async def _leave(self) -> None:
        """Leave the cluster cleanly.  Under allow_downscale the engine first gets its
        LEAVING NODEINFO delivered in agreed order (the network and timers keep running
        meanwhile); that wait is bounded by one token timeout."""
        engine = self.engine
        self._left = asyncio.Event()
        engine.leave(self._now())
        self._pump()
        if not engine.left:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._left.wait(), self._token_ms() / 1000.0)
            if not engine.left:
                self.log.log("warning", "VOTEQ", "the LEAVING notice was not delivered "
                             f"within {self._token_ms()} ms; leaving anyway")
                engine.finish_leave(self._now())
                self._pump()
        self._halted = True

    def _shutdown(self) -> int:
        loop = self._loop
        assert loop is not None and self._engine is not None and self._ipc is not None
        for handle in (self._timer, self._stall):
            if handle is not None:
                handle.cancel()
        self._timer = self._stall = None
        self._halted = True
        loop.remove_reader(self._transport.fileno())
        self._ipc.close()
        if self._qb is not None:
            self._qb.close()
        self._transport.close()
        self._close_ready_fd()
        for sig in self._late_signals:
            self._log_second_signal(sig)
        self._late_signals.clear()
        if self._exit_code == 0:
            self.log.log("notice", "MAIN", "pyquorumd exiting normally")
        else:
            self.log.log("error", "MAIN", f"pyquorumd exiting with status {self._exit_code}")
        return self._exit_code

    # ------------------------------------------------------------ clock and pump
    def _now(self) -> int:
        ms = int(time.monotonic() * 1000)
        if ms < self._clock_ms:
            ms = self._clock_ms
        self._clock_ms = ms
        return ms

    @property
    def engine(self) -> NodeEngine:
        """The engine (exists once the loop runs)."""
        assert self._engine is not None
        return self._engine

    def _pump(self) -> None:
        """Drain events (persisting first), send datagrams, re-arm the timer."""
        if self._failed or self._engine is None:
            return
        engine = self._engine
        self._note_quorate()
        try:
            while (ev := engine.next_event()) is not None:
                self._on_engine_event(ev)
        except StorageError as exc:
            self._fatal(f"{exc}; refusing to go on without durable state")
            return
        for data, dest in engine.datagrams_to_send(self._now()):
            self._transport.send(data, dest)
        if self._left is not None and engine.left:
            self._left.set()
        self._arm()
        self._signal_ready()

    def _note_quorate(self) -> None:
        """Stamp ``quorate_changed_ns`` if the quorate bit changed since last seen: at the
        start of every pump, and after a reload handled while events are drained (the only
        engine input taken inside the drain)."""
        quorate = self.engine.quorate
        if quorate != self._quorate_seen:
            if self._quorate_seen is not None:
                self.quorate_changed_ns = time.monotonic_ns()
            self._quorate_seen = quorate

    def _on_engine_event(self, ev: EngineEvent) -> None:
        if isinstance(ev, PersistState):
            self._store.save(ev.state)
            self.stats["state_writes"] += 1
        elif isinstance(ev, Replied):
            assert self._ipc is not None
            self._ipc.on_replied(ev)
            if self._qb is not None:
                self._qb.on_replied(ev)
        elif isinstance(ev, Notified):
            assert self._ipc is not None
            self._ipc.on_notified(ev.conn, ev.notification)
            if self._qb is not None:
                self._qb.on_notified(ev.conn, ev.notification)
        elif isinstance(ev, LogRecord):
            self.log.log(ev.level, ev.subsys, ev.message)
        elif isinstance(ev, ViewInstalled):
            self._log_view(ev)
        elif isinstance(ev, ReloadRequested):
            config, key = self._reload_file()
            self.engine.finish_reload(ev, config, self._now())
            self._note_quorate()  # before the reload's callbacks, still queued
            if key is not None:
                self.engine.rotate_key(key, self._now())

    # ------------------------------------------------------------ configuration reload
    def _on_sighup(self) -> None:
        """SIGHUP reloads this node only (``pyquorumtool --reload`` reloads every node)."""
        if self._stopping or self._engine is None:
            return
        self.log.log("notice", "CFG", "Config reload requested by SIGHUP")
        config, key = self._reload_file()
        if config is not None:
            self.engine.apply_config(config, self._now())
        if key is not None:
            self.engine.rotate_key(key, self._now())
        self._pump()

    def _reload_file(self) -> tuple[ClusterConfig | None, bytes | None]:
        """Re-read the configuration file and keep what cannot change at run time
        (``pyquorum.config.reload``); also re-read the authkey (a new one is rotated
        in by the caller).  (None, None), logged, when the file or key is unusable."""
        path = self.setup.config_path
        nodeid = self.setup.node.nodeid
        try:
            plan = plan_reload(self.config, load_config(path, runtime=True), nodeid)
            local = plan.config.node(nodeid)
            peers = resolve_endpoints(plan.config, local)[1] if local is not None else {}
            key, _ = load_authkey(plan.config)
        except (ConfigError, StartupError) as exc:
            self.stats["reload_errors"] += 1
            self.log.log("error", "CFG", f"Unable to reload config file: {exc}")
            return None, None
        for notice in plan.notices:
            self.log.log("notice", "CFG", notice)
        self.stats["reloads"] += 1
        self._transport.set_peers(peers)
        if self._ipc is not None:
            self._ipc.set_uidgid(plan.config.uidgid)
        if self._qb is not None:
            self._qb.set_uidgid(plan.config.uidgid)
        self._configured_keys = reloaded_keys(self._configured_keys, read_configured_keys(path))
        self.config = plan.config
        self.log.log("notice", "CFG", f"Configuration reloaded from {path}")
        return plan.config, key

    def _log_view(self, ev: ViewInstalled) -> None:
        old, new = set(self._last_members), set(ev.members)
        joined = " ".join(str(n) for n in sorted(new - old))
        left = " ".join(str(n) for n in sorted(old - new))
        text = f"A new membership ({ev.ring}) was formed."
        if joined or left:
            text += " Members"
            text += f" joined: {joined}" if joined else ""
            text += f" left: {left}" if left else ""
        self.log.log("notice", "TOTEM", text)
        self.log.log("notice", "MAIN",
                     "Completed service synchronization, ready to provide service.")
        self._last_members = ev.members

    def _arm(self) -> None:
        if self._halted:  # no more timer inputs once the node has left
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        deadline = self.engine.get_timer()
        if deadline == self._armed and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed = deadline
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_at(deadline / 1000.0, self._on_timer, deadline)

    def _signal_ready(self) -> None:
        if not self._published or not self.engine.ready:
            return
        if self._on_started is not None:
            started, self._on_started = self._on_started, None
            started(None)
        if self._ready_fd is not None:
            fd, self._ready_fd = self._ready_fd, None
            try:
                os.write(fd, b"READY\n")
            except OSError as exc:
                self.log.log("warning", "MAIN", f"cannot write READY to fd {fd}: {exc}")
            finally:
                os.close(fd)

    def _close_ready_fd(self) -> None:
        if self._ready_fd is not None:
            fd, self._ready_fd = self._ready_fd, None
            with contextlib.suppress(OSError):
                os.close(fd)

    def _started(self, error: str | None) -> None:
        if self._on_started is not None:
            started, self._on_started = self._on_started, None
            started(error)

    # ------------------------------------------------------------ inputs
    def _on_timer(self, deadline: int) -> None:
        self._timer = None
        self._armed = None
        if self._halted:
            return
        now = self._now()
        if now < deadline:  # call_at may fire a hair early; the engine must see its deadline
            self._clock_ms = now = deadline
        self.engine.handle_timer(now)
        self._pump()

    def _on_udp(self) -> None:
        for _ in range(DATAGRAMS_PER_WAKEUP):
            if self._halted:
                return
            item = self._transport.receive()
            if item is None:
                return
            data, source = item
            self.engine.receive_datagram(data, source, self._now())
            self._pump()

    # IpcBackend ------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Clients are admitted once the first view is installed."""
        return self._engine is not None and self._engine.ready and not self._stopping

    @property
    def has_votequorum(self) -> bool:
        """votequorum is the provider."""
        return self._engine is not None and self._engine.vq is not None

    def ipc_opened(self, conn: int) -> None:
        """A quorum/votequorum client was admitted."""
        self.engine.connection_opened(conn)

    def ipc_command(self, conn: int, command: Command) -> None:
        """A client request: feed it and pump."""
        if self._stopping:
            return
        self.engine.handle_command(conn, command, self._now())
        self._pump()

    def ipc_closed(self, conn: int) -> None:
        """A client went away."""
        if self._engine is None:
            return
        self._engine.connection_closed(conn)
        self._pump()

    def cmap_items(self, prefix: str) -> list[tuple[str, str]]:
        """The cmap view under ``prefix``, sorted."""
        assert self._ipc is not None
        qb_stats = self._qb.stats if self._qb is not None else {}
        view = cmap_view(self.config, self._configured_keys, self.engine,
                         (self._transport.stats, self._ipc.stats, qb_stats,
                          {**self.stats, "ipc_clients": self._ipc.client_count}))
        view["runtime.pyquorum.quorate_changed_ns"] = str(self.quorate_changed_ns)
        return select(view, prefix)

    def test_block(self, nodeids: tuple[int, ...]) -> None:
        """Test hook: drop cluster traffic to and from ``nodeids`` (empty heals)."""
        self._transport.blocked = frozenset(nodeids)
        what = " ".join(str(n) for n in sorted(set(nodeids))) or "none (healed)"
        self.log.log("notice", "MAIN", f"test hook: blocking traffic with nodes: {what}")

    # ------------------------------------------------------------ signals, stalls, errors
    def _on_signal(self, sig: int) -> None:
        self.stats["signals"] += 1
        name = signal.Signals(sig).name
        assert self._stop is not None
        if self._stopping:
            self._log_second_signal(sig)
            self._stop.set()
            return
        self._stopping = True
        self.log.log("notice", "MAIN", f"Node was shut down by a signal ({name})")
        self._stop.set()

    def _log_second_signal(self, sig: int) -> None:
        self.log.log("notice", "MAIN",
                     f"Received {signal.Signals(sig).name} while shutdown is already in "
                     "progress; exiting as soon as possible")

    def _token_ms(self) -> int:
        return self.config.timing().token_ms

    def _stall_interval_s(self) -> float:
        return max(self._token_ms() / 3.0, 1.0) / 1000.0

    def _stall_tick(self) -> None:
        now = time.monotonic()
        diff_ms = (now - self._stall_prev) * 1000.0
        self._stall_prev = now
        threshold_ms = self._token_ms() * STALL_FACTOR
        if diff_ms > threshold_ms:
            self.stats["stalls"] += 1
            self.log.log(
                "warning", "MAIN",
                f"Corosync main process was not scheduled (@{int(time.time() * 1000)}) for "
                f"{diff_ms:0.4f} ms (threshold is {threshold_ms:0.4f} ms). "
                "Consider token timeout increase.")
        if not self._stopping and self._loop is not None:
            self._stall = self._loop.call_later(self._stall_interval_s(), self._stall_tick)

    def _fatal(self, message: str) -> None:
        self.log.log("crit", "MAIN", message)
        self._failed = True
        self._stopping = True
        self._halted = True
        self._exit_code = 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._started(message)
        if self._stop is not None:
            self._stop.set()

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        text = str(context.get("message", "unhandled error"))
        if isinstance(exc, BaseException):
            lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
            for line in "".join(lines).splitlines():
                self.log.log("error", "MAIN", line)
            text = f"{text}: {exc!r}"
        self._fatal(f"internal error: {text}")
