"""The deterministic simulator: many real NodeEngines over a simulated network.

A discrete-event loop: it jumps to the next datagram arrival, timer or scheduled
action; ties are broken by an insertion counter, never by hash order. Every random
stream is derived from one root seed (string seeding, so PYTHONHASHSEED does not
matter). Engines exchange the real encoded, encrypted datagrams.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyquorum.config.model import ClusterConfig
from pyquorum.core.engine import (
    CfgReload,
    LogRecord,
    NodeEngine,
    Notified,
    PersistState,
    QuorumChanged,
    ReloadRequested,
    Replied,
    StoredState,
    ViewInstalled,
    VqCancelWaitForAll,
    VqSetExpected,
)
from pyquorum.sim.checkers import SafetyChecker
from pyquorum.sim.client import SimClient
from pyquorum.sim.network import Network, NetworkFaults
from pyquorum.types import RingId

DOWN, UP, PAUSED = "down", "up", "paused"
SEPARATION_CHECK_MS = 20
"""How often (virtual ms) the per-pair split-brain rule is evaluated."""


@dataclass(slots=True)
class SimNode:
    """One simulated host: its engine (None while down), durable storage, client."""

    node_id: int
    client: SimClient
    status: str = DOWN
    engine: NodeEngine | None = None
    storage: StoredState = field(default_factory=StoredState)
    inbox: list[tuple[int, bytes]] = field(default_factory=list)
    timer_gen: int = 0
    boots: int = 0
    next_conn: int = 1
    quorum_log: list[tuple[RingId, bool, tuple[int, ...]]] = field(default_factory=list)
    client_mark: int = 0
    views: int = 0
    leaving: bool = False
    """A clean stop is in progress (the engine runs until its LEAVE is out)."""


class Simulator:
    """Runs a cluster of engines in virtual time; see ``pyquorum.sim.scenario`` for scripts."""

    def __init__(
        self,
        config: ClusterConfig,
        seed: int,
        faults: NetworkFaults | None = None,
        *,
        start_ms: int = 0,
        keep_logs: bool = False,
    ) -> None:
        self.config = config
        self.seed = seed
        self.now_ms = start_ms
        self.network = Network(random.Random(f"{seed}:net"), faults or NetworkFaults())
        self.authkey = random.Random(f"{seed}:key").randbytes(32)
        self.nodes = {n: SimNode(n, SimClient(n)) for n in config.node_ids}
        self.checker = SafetyChecker(config)
        self.keep_logs = keep_logs
        self.logs: list[str] = []
        self.events_processed = 0
        self._heap: list[tuple[int, int, str, Any]] = []
        self._counter = 0
        self._next_separation_check = start_ms
        timing = config.timing()
        self._separation_grace_ms = timing.token_ms + timing.consensus_ms
        self._driver: list[dict[str, Any]] = []
        self.driver("up", n=len(self.nodes))

    # ------------------------------------------------------------ actions
    def driver(self, action: str, **fields: Any) -> None:
        """Record a driver line (the oracle's driver.jsonl)."""
        self._driver.append({"t": self.now_ms / 1000.0, "driver": action, **fields})

    def start(self, node_id: int) -> None:
        """Boot (or restart) a node from its durable storage."""
        node = self.nodes[node_id]
        if node.leaving and node.engine is not None:
            self._finish_stop(node, node.engine)  # a start right after a stop
        if node.status != DOWN:
            return
        node.boots += 1
        rng = random.Random(f"{self.seed}:{node_id}:{node.boots}")
        node.status = UP
        node.inbox = []
        node.engine = NodeEngine(node_id, self.config, rng, node.storage, self.now_ms,
                                 self.authkey)
        self._pump(node)

    def kill(self, node_id: int) -> None:
        """SIGKILL: the engine vanishes; only durable storage survives."""
        node = self.nodes[node_id]
        if node.status == DOWN:
            return
        node.status = DOWN
        node.leaving = False
        node.engine = None
        node.inbox = []
        node.timer_gen += 1
        node.client.disconnected(self.now_ms)
        node.client.connect_failed(self.now_ms)

    def stop(self, node_id: int) -> None:
        """SIGTERM: leave the cluster cleanly, then exit.

        Like the daemon, the node keeps running until its engine has sent the LEAVE
        (with allow_downscale that waits for the LEAVING NODEINFO to be delivered), at
        most one token timeout; then it is down.
        """
        node = self.nodes[node_id]
        if node.status == UP and node.engine is not None and not node.leaving:
            node.leaving = True
            node.engine.leave(self.now_ms)
            self._pump(node)
            if node.status != DOWN:
                engine = node.engine
                self.schedule(self.now_ms + self.config.totem.token_ms,
                              lambda: self._finish_stop(node, engine))
            return
        self.kill(node_id)

    def _finish_stop(self, node: SimNode, engine: NodeEngine) -> None:
        if node.engine is not engine or node.status == DOWN:
            return  # already down (the leave completed, or a kill came first)
        engine.finish_leave(self.now_ms)
        self._pump(node)
        self.kill(node.node_id)

    def pause(self, node_id: int) -> None:
        """SIGSTOP: the node processes nothing; datagrams queue in its socket buffer."""
        node = self.nodes[node_id]
        if node.status == UP:
            node.status = PAUSED

    def resume(self, node_id: int) -> None:
        """SIGCONT: the queued datagrams are read first, then the overdue timers fire."""
        node = self.nodes[node_id]
        if node.status != PAUSED or node.engine is None:
            return
        node.status = UP
        inbox, node.inbox = node.inbox, []
        for src, data in inbox:
            node.engine.receive_datagram(data, src, self.now_ms)
        node.engine.handle_timer(self.now_ms)
        self._pump(node)

    def set_expected(self, node_id: int, expected: int) -> None:
        """votequorum_setexpected on a node (through the engine's command path)."""
        node = self.nodes[node_id]
        if node.engine is None:
            return
        self.checker.runtime_changes = True
        node.engine.handle_command(0, VqSetExpected(expected), self.now_ms)
        self._pump(node)

    def cancel_wait_for_all(self, node_id: int) -> None:
        """quorum.cancel_wait_for_all on a node (RECONFIGURE CANCEL_WFA to every node)."""
        node = self.nodes[node_id]
        if node.engine is None:
            return
        self.checker.runtime_changes = True
        node.engine.handle_command(0, VqCancelWaitForAll(), self.now_ms)
        self._pump(node)

    def reload(self, node_id: int, config: ClusterConfig) -> None:
        """``pyquorumtool --reload`` on a node: every member re-reads its configuration
        (all of them read ``config``) when the request is delivered in agreed order.
        Nodes new in the nodelist are added to the world, down; start them to join."""
        self._set_config(config)
        node = self.nodes[node_id]
        if node.engine is None:
            return
        node.engine.handle_command(0, CfgReload(), self.now_ms)
        self._pump(node)

    def reload_local(self, node_id: int, config: ClusterConfig) -> None:
        """SIGHUP on one node: only that node applies ``config``."""
        self._set_config(config)
        node = self.nodes[node_id]
        if node.engine is None:
            return
        node.engine.apply_config(config, self.now_ms)
        self._pump(node)

    def rotate_key(self, node_id: int, authkey: bytes) -> None:
        """A reload on ``node_id`` found a new authkey (``NodeEngine.rotate_key``); nodes
        started from now on boot with it."""
        self.authkey = authkey
        node = self.nodes[node_id]
        if node.engine is None:
            return
        node.engine.rotate_key(authkey, self.now_ms)
        self._pump(node)

    def _set_config(self, config: ClusterConfig) -> None:
        self.checker.runtime_changes = True
        self.config = config
        for n in config.node_ids:
            if n not in self.nodes:
                self.nodes[n] = SimNode(n, SimClient(n))

    def schedule(self, at_ms: int, action: Callable[[], None]) -> None:
        """Run ``action`` at virtual time ``at_ms``."""
        self._push(at_ms, "action", action)

    # ------------------------------------------------------------ running
    def run_until(self, t_ms: int) -> None:
        """Process every event up to and including ``t_ms``; then the clock reads ``t_ms``."""
        while self._heap and self._heap[0][0] <= t_ms:
            self.step()
        self.now_ms = max(self.now_ms, t_ms)

    def run_for(self, ms: int) -> None:
        """Advance virtual time by ``ms``."""
        self.run_until(self.now_ms + ms)

    def run_until_true(self, predicate: Callable[[], bool], timeout_ms: int) -> bool:
        """Run until ``predicate()`` holds (checked after each event) or ``timeout_ms`` passes."""
        deadline = self.now_ms + timeout_ms
        while not predicate():
            if not self._heap or self._heap[0][0] > deadline:
                self.now_ms = max(self.now_ms, deadline)
                return predicate()
            self.step()
        return True

    def step(self) -> None:
        """Process the next event."""
        t, _, kind, data = heapq.heappop(self._heap)
        if t >= self._next_separation_check:
            self._check_separated()  # the state up to t (nothing changed since)
            self._next_separation_check = t + SEPARATION_CHECK_MS
        self.now_ms = max(self.now_ms, t)
        self.events_processed += 1
        if kind == "deliver":
            src, dst, payload = data
            node = self.nodes[dst]
            if node.status == PAUSED:
                node.inbox.append((src, payload))
            elif node.status == UP and node.engine is not None:
                node.engine.receive_datagram(payload, src, self.now_ms)
                self._pump(node)
        elif kind == "timer":
            node_id, gen = data
            node = self.nodes[node_id]
            if node.status == UP and node.engine is not None and gen == node.timer_gen:
                node.engine.handle_timer(self.now_ms)
                self._pump(node)
        else:
            data()

    # ------------------------------------------------------------ state
    def up_nodes(self) -> list[int]:
        """Nodes running and not paused."""
        return [n for n, s in sorted(self.nodes.items()) if s.status == UP]

    def view(self, node_id: int) -> tuple[int, ...]:
        """The members of a node's current view (empty when down)."""
        e = self.nodes[node_id].engine
        return e.members if e is not None else ()

    def ring(self, node_id: int) -> RingId | None:
        """A node's current ring id."""
        e = self.nodes[node_id].engine
        return e.ring if e is not None else None

    def quorate(self, node_id: int) -> bool:
        """A node's quorate bit (False when down)."""
        e = self.nodes[node_id].engine
        return e is not None and e.quorate

    def converged(self, nodes: list[int] | None = None) -> bool:
        """All given (default: up) nodes share one ring whose members are exactly them."""
        nodes = self.up_nodes() if nodes is None else nodes
        if not nodes:
            return True
        rings = {self.ring(n) for n in nodes}
        return len(rings) == 1 and all(self.view(n) == tuple(nodes) for n in nodes)

    def client_traces(self) -> dict[int, list[dict[str, Any]]]:
        """The qclient-format trace lines of every node's client."""
        return {n: node.client.lines for n, node in sorted(self.nodes.items())}

    def driver_lines(self) -> list[dict[str, Any]]:
        """The driver.jsonl lines."""
        return list(self._driver)

    def check_clients(self) -> list[str]:
        """Client fidelity: each client saw every quorum change of its node, in order."""
        problems = []
        for n, node in sorted(self.nodes.items()):
            c = node.client
            if c.conn is None:
                continue
            expected = node.quorum_log[node.client_mark:]
            got = c.quorum_events[1:]  # the first is the trackstart snapshot
            if got != expected:
                problems.append(f"client of node {n} saw {got[-3:]} but the node had "
                                f"{expected[-3:]} (lengths {len(got)}/{len(expected)})")
        return problems

    # ------------------------------------------------------------ internals
    def _push(self, t: int, kind: str, data: Any) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (t, self._counter, kind, data))

    def _pump(self, node: SimNode) -> None:
        engine = node.engine
        if engine is None:
            return
        while True:
            changed_view = False
            while (ev := engine.next_event()) is not None:
                if isinstance(ev, PersistState):
                    node.storage = ev.state
                elif isinstance(ev, ViewInstalled):
                    changed_view = True
                    node.views += 1
                    node.quorum_log.append((ev.ring, ev.quorate, ev.members))
                    self.checker.on_view(self.now_ms, node.node_id, ev.ring, ev.members,
                                         ev.quorate, ev.infos)
                elif isinstance(ev, QuorumChanged):
                    changed_view = True
                    node.quorum_log.append((ev.ring, ev.quorate, ev.members))
                elif isinstance(ev, Replied | Notified):
                    if ev.conn == node.client.conn and ev.conn:
                        node.client.on_event(ev, self.now_ms)
                elif isinstance(ev, ReloadRequested):
                    engine.finish_reload(ev, self.config, self.now_ms)
                elif isinstance(ev, LogRecord) and self.keep_logs:
                    self.logs.append(f"{self.now_ms} n{node.node_id} {ev.subsys} {ev.message}")
            for data, dest in engine.datagrams_to_send(self.now_ms):
                if dest in self.nodes:
                    for at in self.network.arrivals(node.node_id, dest, self.now_ms):
                        self._push(at, "deliver", (node.node_id, dest, data))
            if changed_view:
                self._check_split_brain()
            if engine.ready and node.client.conn is None and node.status == UP:
                conn = node.next_conn
                node.next_conn += 1
                node.client_mark = len(node.quorum_log)
                node.client.connect(engine, conn, self.now_ms)
                continue
            break
        if node.leaving and engine.left:
            self.kill(node.node_id)  # the LEAVE datagrams above are on the network
            return
        node.timer_gen += 1
        deadline = engine.get_timer()
        if deadline is not None:
            self._push(max(deadline, self.now_ms), "timer", (node.node_id, node.timer_gen))

    def _check_separated(self) -> None:
        views = {
            n: (e.ring, e.quorate)
            for n, s in self.nodes.items()
            if (e := s.engine) is not None and s.status == UP
        }
        self.checker.check_separated(self.now_ms, views, self.network.blocked,
                                     self._separation_grace_ms)

    def _check_split_brain(self) -> None:
        views = {
            n: (e.ring, e.members)
            for n, s in self.nodes.items()
            if (e := s.engine) is not None and s.status != DOWN and e.quorate
        }
        self.checker.check_split_brain(self.now_ms, views)
