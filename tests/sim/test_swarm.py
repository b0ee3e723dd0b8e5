"""Swarm: seeded random fault schedules with safety checked after every step.

The default run covers 200 seeds (3 and 5 nodes); ``-m slow`` runs 10,000.
A failure names the seed and the command that replays it.
"""

from __future__ import annotations

import pytest

from pyquorum.sim.swarm import RunResult, SwarmOptions, run_seed


def _report(res: RunResult, opts: SwarmOptions) -> str:
    cmd = (f"python -m pyquorum.sim --seed {res.seed} --nodes {opts.nodes} --steps {opts.steps} "
           f"--loss {opts.loss} --duplicate {opts.duplicate} --spike {opts.spike}")
    return "\n".join([f"seed {res.seed} failed; replay: {cmd}", *res.violations,
                      str(res.liveness_failure), *res.actions])


def _run_many(seeds: range, opts: SwarmOptions) -> None:
    for seed in seeds:
        res = run_seed(seed, opts)
        assert res.ok, _report(res, opts)


@pytest.mark.parametrize("block", range(4))
def test_swarm_3_nodes(block: int) -> None:
    _run_many(range(block * 40, block * 40 + 40), SwarmOptions(nodes=3))


def test_swarm_5_nodes_lossy() -> None:
    _run_many(range(1000, 1040), SwarmOptions(nodes=5, steps=10, loss=0.05, spike=0.03,
                                              duplicate=0.03))


@pytest.mark.slow
@pytest.mark.parametrize("block", range(10))
def test_swarm_slow_10000_seeds(block: int) -> None:
    base = 100_000 + block * 1000
    for seed in range(base, base + 1000):
        nodes = 3 + seed % 3  # 3, 4 and 5 nodes
        opts = SwarmOptions(nodes=nodes, steps=12, loss=0.02 + (seed % 5) * 0.01)
        res = run_seed(seed, opts)
        assert res.ok, _report(res, opts)
