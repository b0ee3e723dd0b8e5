"""Swarm testing: seeded random fault schedules, safety after every step, then liveness.

One run: boot N nodes, apply ``steps`` random faults (kill, restart, clean stop,
pause/resume, symmetric and one-way partitions, heal) on top of the network faults
(loss, duplication, delay spikes that reorder), then a liveness phase: heal, resume,
restart everything, make the network clean and require every node to converge to one
quorate view within ``2 x (token + consensus)``; finally check that every tracking
client saw each quorum change of its node, in order.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field

from pyquorum.sim.network import NetworkFaults
from pyquorum.sim.scenario import cluster_config
from pyquorum.sim.world import DOWN, PAUSED, UP, Simulator


@dataclass(frozen=True, slots=True)
class SwarmOptions:
    """What a swarm run varies."""

    nodes: int = 3
    steps: int = 12
    loss: float = 0.02
    duplicate: float = 0.01
    spike: float = 0.01
    token_ms: int | None = None
    """None: pick 1000 or 3000 per seed."""


@dataclass(slots=True)
class RunResult:
    """The outcome of one seed."""

    seed: int
    violations: list[str] = field(default_factory=list)
    liveness_failure: str | None = None
    sim_ms: int = 0
    converge_ms: int = 0
    views: int = 0
    actions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No safety violation and no liveness failure."""
        return not self.violations and self.liveness_failure is None


def run_seed(seed: int, opts: SwarmOptions) -> RunResult:
    """Run one seeded random schedule."""
    rng = random.Random(f"{seed}:swarm")
    token = opts.token_ms or rng.choice((1000, 3000))
    config = cluster_config([str(opts.nodes), "token", str(token)])
    timing = config.timing()
    faults = NetworkFaults(loss=opts.loss, duplicate=opts.duplicate, spike=opts.spike)
    sim = Simulator(config, seed, faults)
    res = RunResult(seed)
    ids = sorted(sim.nodes)
    for n in ids:
        sim.schedule(rng.randint(0, 300), functools.partial(sim.start, n))
    sim.run_for(400)
    for _ in range(opts.steps):
        sim.run_for(rng.randint(0, 2 * timing.token_ms))
        res.actions.append(f"t={sim.now_ms} " + _random_action(sim, rng, ids))
        if sim.checker.violations:
            break
    # liveness phase
    sim.network.heal()
    sim.network.faults = NetworkFaults()
    for n in ids:
        if sim.nodes[n].status == PAUSED:
            sim.resume(n)
        elif sim.nodes[n].status == DOWN:
            sim.start(n)
    t0 = sim.now_ms
    bound = 2 * (timing.token_ms + timing.consensus_ms)
    ok = sim.run_until_true(lambda: sim.converged(ids) and all(sim.quorate(n) for n in ids), bound)
    res.converge_ms = sim.now_ms - t0
    if not ok:
        views = ", ".join(f"{n}:{sim.ring(n)}{list(sim.view(n))}q={int(sim.quorate(n))}"
                          for n in ids)
        res.liveness_failure = f"no single quorate view {bound} ms after the faults: {views}"
    else:
        sim.run_for(timing.join_ms * 4)
        problems = sim.check_clients()
        if problems:
            res.liveness_failure = "; ".join(problems)
    res.violations = list(sim.checker.violations)
    res.sim_ms = sim.now_ms
    res.views = sum(node.views for node in sim.nodes.values())
    return res


def _random_action(sim: Simulator, rng: random.Random, ids: list[int]) -> str:
    up = [n for n in ids if sim.nodes[n].status == UP]
    down = [n for n in ids if sim.nodes[n].status == DOWN]
    paused = [n for n in ids if sim.nodes[n].status == PAUSED]
    choices = ["split", "block", "heal", "heal"]
    if up:
        choices += ["kill", "stop", "pause"]
    if down:
        choices += ["start", "start"]
    if paused:
        choices += ["resume", "resume"]
    what = rng.choice(choices)
    node_actions = {
        "kill": (up, sim.kill),
        "stop": (up, sim.stop),
        "pause": (up, sim.pause),
        "start": (down, sim.start),
        "resume": (paused, sim.resume),
    }
    if what in node_actions:
        pool, act = node_actions[what]
        n = rng.choice(pool)
        act(n)
        return f"{what} {n}"
    if what == "split":
        shuffled = ids[:]
        rng.shuffle(shuffled)
        cut = rng.randint(1, len(ids) - 1)
        groups = [sorted(shuffled[:cut]), sorted(shuffled[cut:])]
        sim.network.split(groups, ids)
        return f"split {groups}"
    if what == "block":
        a, b = rng.sample(ids, 2)
        sim.network.block(a, b)
        return f"block {a}->{b}"
    sim.network.heal()
    return "heal"
