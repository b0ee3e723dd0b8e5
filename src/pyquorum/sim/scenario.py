"""A small scenario language for hand-written regressions (in the spirit of vqsim).

One command a line; ``#`` starts a comment line. Node lists are ``1,2,3`` or ``all``.

    cluster N [two_node] [wait_for_all] [last_man_standing] [lms_window MS]
              [auto_tie_breaker] [atb_node lowest|highest|1,3] [allow_downscale]
              [expected_votes N] [votes 1=2,3=1] [token MS] [consensus MS]
    clients                 start the tracking clients now (before the daemons: they
                            log init_failed until their node is up)
    up NODES | start NODES  boot (or restart) nodes
    down NODES | kill NODES SIGKILL
    leave NODES | stop NODES clean shutdown
    pause NODES / resume NODES
    split 1,2|3             symmetric partition (unnamed nodes are isolated)
    block A B               one-way: drop everything from A to B
    heal
    wait MS
    wait-quorate NODES [TIMEOUT_MS]      wait until all NODES are quorate
    wait-view NODES = MEMBERS [TIMEOUT]  wait until all NODES have that view
    set-expected NODE VALUE
    cancel-wfa NODE         quorum.cancel_wait_for_all on NODE (every node clears WFA)
    reload NODE N OPTIONS   cluster-wide config reload asked by NODE: every node
                            re-reads the configuration of a ``cluster N OPTIONS``
                            line (the nodelist may grow or shrink)
    sighup NODE N OPTIONS   the same configuration, reloaded by NODE alone
    snapshot LABEL          a driver line (no effect)
    assert quorate NODES | assert inquorate NODES
    assert view NODES = MEMBERS
    assert expected NODE = VALUE         votequorum expected votes of NODE
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pyquorum.config.model import ClusterConfig, NodeConfig, QuorumConfig, TotemConfig
from pyquorum.sim.network import NetworkFaults
from pyquorum.sim.world import Simulator

DEFAULT_WAIT_MS = 60_000


class ScenarioError(Exception):
    """A scenario line is malformed."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass(slots=True)
class ScenarioResult:
    """The simulator after the run and every failed assertion (with its line)."""

    sim: Simulator
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No failed assertion and no safety violation."""
        return not self.failures and not self.sim.checker.violations


def cluster_config(words: list[str], lineno: int = 0) -> ClusterConfig:
    """Build the configuration of a ``cluster`` line (words after ``cluster``)."""
    if not words or not words[0].isdigit():
        raise ScenarioError(lineno, "cluster needs a node count")
    n = int(words[0])
    q = QuorumConfig(provider="corosync_votequorum")
    totem = TotemConfig(crypto_cipher="aes256", crypto_hash="sha256")
    votes: dict[int, int] = {}
    i = 1
    while i < len(words):
        w = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else None
        if w in ("two_node", "wait_for_all", "last_man_standing", "allow_downscale",
                 "expected_votes_tracking"):
            q = _set_flag(q, w)
        elif w == "no_wait_for_all":
            q = replace(q, wait_for_all=False)
        elif w == "auto_tie_breaker":
            q = replace(q, auto_tie_breaker=True)
        elif nxt is None:
            raise ScenarioError(lineno, f"{w} needs a value")
        elif w == "atb_node":
            q = replace(q, auto_tie_breaker_node=nxt.replace(",", " "))
            i += 1
        elif w == "lms_window":
            q = replace(q, last_man_standing_window_ms=int(nxt))
            i += 1
        elif w == "expected_votes":
            q = replace(q, expected_votes=int(nxt))
            i += 1
        elif w == "votes":
            for part in nxt.split(","):
                node, v = part.split("=")
                votes[int(node)] = int(v)
            i += 1
        elif w == "token":
            totem = replace(totem, token_ms=int(nxt))
            i += 1
        elif w == "consensus":
            totem = replace(totem, consensus_ms=int(nxt))
            i += 1
        else:
            raise ScenarioError(lineno, f"unknown cluster option {w!r}")
        i += 1
    nodes = tuple(
        NodeConfig(k, f"node{k}", (f"127.0.0.{k}",), votes.get(k, 1)) for k in range(1, n + 1)
    )
    return ClusterConfig(totem=totem, nodes=nodes, quorum=q, source="<scenario>")


def _set_flag(q: QuorumConfig, name: str) -> QuorumConfig:
    if name == "two_node":
        return replace(q, two_node=True)
    if name == "wait_for_all":
        return replace(q, wait_for_all=True)
    if name == "last_man_standing":
        return replace(q, last_man_standing=True)
    if name == "allow_downscale":
        return replace(q, allow_downscale=True)
    return replace(q, expected_votes_tracking=True)


def _nodes(text: str, sim: Simulator | None, lineno: int) -> list[int]:
    if text == "all":
        if sim is None:
            raise ScenarioError(lineno, "'all' before cluster")
        return sorted(sim.nodes)
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError:
        raise ScenarioError(lineno, f"bad node list {text!r}") from None


def run_script(text: str, seed: int = 1, faults: NetworkFaults | None = None) -> ScenarioResult:
    """Run a scenario; assertions that fail are collected, malformed lines raise."""
    sim: Simulator | None = None
    result: ScenarioResult | None = None
    clients_started = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        cmd, args = words[0], words[1:]
        if cmd == "cluster":
            sim = Simulator(cluster_config(args, lineno), seed, faults)
            result = ScenarioResult(sim)
            continue
        if sim is None or result is None:
            raise ScenarioError(lineno, "the first command must be 'cluster'")
        _run_line(sim, result, cmd, args, lineno, clients_started)
        if cmd == "clients":
            clients_started = True
    if result is None:
        raise ScenarioError(0, "empty scenario")
    return result


def _run_line(sim: Simulator, result: ScenarioResult, cmd: str, args: list[str], lineno: int,
              clients_started: bool) -> None:
    def need(k: int) -> None:
        if len(args) < k:
            raise ScenarioError(lineno, f"{cmd} needs {k} argument(s)")

    if cmd == "clients":
        sim.driver("clients")
        for node in sim.nodes.values():
            if node.engine is None:
                node.client.connect_failed(sim.now_ms)
    elif cmd in ("up", "start"):
        need(1)
        sim.driver("start", nodes=args[0])
        for n in _nodes(args[0], sim, lineno):
            sim.start(n)
    elif cmd in ("down", "kill"):
        need(1)
        for n in _nodes(args[0], sim, lineno):
            sim.driver("kill", node=n)
            sim.kill(n)
    elif cmd in ("leave", "stop"):
        need(1)
        for n in _nodes(args[0], sim, lineno):
            sim.driver("stop", node=n)
            sim.stop(n)
    elif cmd in ("pause", "resume"):
        need(1)
        for n in _nodes(args[0], sim, lineno):
            sim.driver(cmd, node=n)
            (sim.pause if cmd == "pause" else sim.resume)(n)
    elif cmd == "split":
        need(1)
        groups = [_nodes(g, sim, lineno) for g in args[0].split("|")]
        sim.driver("partition", spec=args[0])
        sim.network.split(groups, sorted(sim.nodes))
    elif cmd == "block":
        need(2)
        sim.driver("block", src=int(args[0]), dst=int(args[1]))
        sim.network.block(int(args[0]), int(args[1]))
    elif cmd == "heal":
        sim.driver("heal")
        sim.network.heal()
    elif cmd == "wait":
        need(1)
        sim.run_for(int(args[0]))
    elif cmd == "wait-quorate":
        need(1)
        nodes = _nodes(args[0], sim, lineno)
        timeout = int(args[1]) if len(args) > 1 else DEFAULT_WAIT_MS
        if not sim.run_until_true(lambda: all(sim.quorate(n) for n in nodes), timeout):
            result.failures.append(f"line {lineno}: nodes {nodes} not quorate after {timeout} ms")
    elif cmd == "wait-view":
        nodes, members, rest = _view_args(args, sim, lineno)
        timeout = int(rest[0]) if rest else DEFAULT_WAIT_MS
        if not sim.run_until_true(lambda: all(sim.view(n) == members for n in nodes), timeout):
            result.failures.append(
                f"line {lineno}: view of {nodes} is not {list(members)} after {timeout} ms: "
                + ", ".join(f"{n}:{list(sim.view(n))}" for n in nodes))
    elif cmd == "set-expected":
        need(2)
        sim.driver("set-expected", node=int(args[0]), value=int(args[1]))
        sim.set_expected(int(args[0]), int(args[1]))
    elif cmd == "cancel-wfa":
        need(1)
        sim.driver("cancel-wfa", node=int(args[0]))
        sim.cancel_wait_for_all(int(args[0]))
    elif cmd in ("reload", "sighup"):
        need(2)
        config = cluster_config(args[1:], lineno)
        sim.driver(cmd, node=int(args[0]), config=" ".join(args[1:]))
        if cmd == "reload":
            sim.reload(int(args[0]), config)
        else:
            sim.reload_local(int(args[0]), config)
    elif cmd == "snapshot":
        sim.driver("snapshot", label=" ".join(args))
    elif cmd == "assert":
        _assert(sim, result, args, lineno)
    else:
        raise ScenarioError(lineno, f"unknown command {cmd!r}")


def _view_args(args: list[str], sim: Simulator, lineno: int
               ) -> tuple[list[int], tuple[int, ...], list[str]]:
    if len(args) < 3 or args[1] != "=":
        raise ScenarioError(lineno, "expected: NODES = MEMBERS")
    return _nodes(args[0], sim, lineno), tuple(_nodes(args[2], sim, lineno)), args[3:]


def _assert(sim: Simulator, result: ScenarioResult, args: list[str], lineno: int) -> None:
    if not args:
        raise ScenarioError(lineno, "assert what?")
    what = args[0]
    if what in ("quorate", "inquorate"):
        want = what == "quorate"
        for n in _nodes(args[1], sim, lineno):
            if sim.quorate(n) != want:
                result.failures.append(f"line {lineno}: node {n} is not {what}")
    elif what == "view":
        nodes, members, _ = _view_args(args[1:], sim, lineno)
        for n in nodes:
            if sim.view(n) != members:
                result.failures.append(
                    f"line {lineno}: node {n} has view {list(sim.view(n))}, not {list(members)}")
    elif what == "expected":
        if len(args) < 4 or args[2] != "=":
            raise ScenarioError(lineno, "expected: assert expected NODE = VALUE")
        engine = sim.nodes[int(args[1])].engine
        got = engine.vq.expected_votes if engine is not None and engine.vq is not None else None
        if got != int(args[3]):
            result.failures.append(f"line {lineno}: node {args[1]} expected votes {got}, "
                                   f"not {args[3]}")
    else:
        raise ScenarioError(lineno, f"unknown assertion {what!r}")
