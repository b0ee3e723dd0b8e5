"""Simulator throughput: swarm seeds per CPU-minute for 5 and 32 nodes.

What it measures
    ``pyquorum.sim.swarm.run_seed(seed, SwarmOptions(nodes=N))`` (every other option at
    its default: 12 random fault steps, 2 % loss, 1 % duplication, 1 % delay spikes, the
    token picked per seed, then the liveness phase and the client check) is run for
    seeds 1, 2, 3, ... until the CPU budget of that size is spent.  The CPU time of each
    seed is ``time.process_time()`` around the call (this process only, user + system,
    so other load on the machine changes the result far less than wall time would).

    Reported per size: seeds run, total CPU seconds, **seeds per CPU-minute**
    (``seeds / cpu_seconds * 60``), the per-seed CPU time (median, p99, max), the
    simulated seconds per CPU second, and any seed that failed (a safety violation or a
    liveness failure: a finding about pyquorum, with the command that replays it).

How
    Sequentially, in this process, one seed at a time.  The budget is checked between
    seeds, so the last seed of a size may run past it (one seed is bounded by the
    simulator itself: a fixed number of steps and a bounded liveness phase); ``--max-seeds``
    and ``--max-wall`` bound every size as well.  The same seeds are run every time, so
    two runs on one machine compare like with like.

Run
    python bench/bench_sim.py                      # 5 and 32 nodes, 60 CPU-s each
    python bench/bench_sim.py --quick              # 5 CPU-s per size
    python bench/bench_sim.py --sizes 5 --seconds 3 --json /tmp/sim.json

Prints a markdown table and writes ``bench/results/bench_sim.json`` (or ``--json``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchcommon

from pyquorum.sim.swarm import SwarmOptions, run_seed

NAME = "bench_sim"
DEFAULT_SIZES = (5, 32)
DEFAULT_SECONDS = 60.0
QUICK_SECONDS = 5.0


@dataclass(slots=True)
class SizeResult:
    """The seeds run for one cluster size."""

    nodes: int
    cpu_per_seed_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    sim_s: float = 0.0
    failed: list[dict[str, Any]] = field(default_factory=list)
    stopped_by: str = ""

    @property
    def seeds(self) -> int:
        """How many seeds ran."""
        return len(self.cpu_per_seed_s)

    @property
    def cpu_s(self) -> float:
        """Total CPU seconds of the seeds."""
        return sum(self.cpu_per_seed_s)

    @property
    def seeds_per_cpu_minute(self) -> float | None:
        """The throughput (None without any CPU time measured)."""
        return self.seeds / self.cpu_s * 60.0 if self.cpu_s > 0 else None


def run_size(nodes: int, budget_s: float, first_seed: int, max_seeds: int,
             max_wall_s: float, verbose: bool) -> SizeResult:
    """Run seeds from ``first_seed`` on until ``budget_s`` CPU seconds are spent (at
    least one seed), or ``max_seeds`` seeds, or ``max_wall_s`` wall seconds."""
    opts = SwarmOptions(nodes=nodes)
    out = SizeResult(nodes)
    wall0 = time.monotonic()
    for seed in range(first_seed, first_seed + max_seeds):
        c0 = time.process_time()
        res = run_seed(seed, opts)
        cpu = time.process_time() - c0
        out.cpu_per_seed_s.append(cpu)
        out.sim_s += res.sim_ms / 1000.0
        if not res.ok:
            out.failed.append({
                "seed": seed,
                "violations": res.violations[:5],
                "liveness_failure": res.liveness_failure,
                "replay": f"python -m pyquorum.sim --seed {seed} --nodes {nodes}",
            })
        if verbose:
            print(f"  nodes={nodes} seed={seed} cpu={cpu:.3f}s ok={res.ok}", file=sys.stderr)
        if out.cpu_s >= budget_s:
            out.stopped_by = "cpu budget"
            break
        if time.monotonic() - wall0 >= max_wall_s:
            out.stopped_by = "wall limit"
            break
    else:
        out.stopped_by = "max seeds"
    out.wall_s = time.monotonic() - wall0
    return out


def result_row(r: SizeResult) -> dict[str, Any]:
    """The JSON row of one size."""
    spm = r.seeds_per_cpu_minute
    return {
        "nodes": r.nodes,
        "seeds": r.seeds,
        "cpu_s": round(r.cpu_s, 3),
        "wall_s": round(r.wall_s, 3),
        "seeds_per_cpu_minute": round(spm, 2) if spm is not None else None,
        "cpu_per_seed_s": benchcommon.stats(r.cpu_per_seed_s),
        "sim_s_per_cpu_s": round(r.sim_s / r.cpu_s, 2) if r.cpu_s > 0 else None,
        "failed_seeds": r.failed,
        "stopped_by": r.stopped_by,
        "samples_cpu_per_seed_s": [round(x, 6) for x in r.cpu_per_seed_s],
    }


def parse_sizes(text: str) -> list[int]:
    """``"5,32"`` -> ``[5, 32]`` (each at least 2)."""
    return benchcommon.int_list(text, 2, 256, "--sizes")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; exit 0 (1 if a seed failed: a finding, the numbers still stand)."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=parse_sizes, default=list(DEFAULT_SIZES),
                   help="node counts, comma separated (default 5,32)")
    p.add_argument("--seconds", type=float, default=None,
                   help=f"CPU budget per size in seconds (default {DEFAULT_SECONDS:g}; "
                        f"--quick: {QUICK_SECONDS:g})")
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--max-seeds", type=int, default=100_000, help="per size")
    p.add_argument("--max-wall", type=float, default=None,
                   help="wall-clock limit per size in seconds (default 3 x --seconds + 60)")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_SECONDS:g} CPU-s per size")
    p.add_argument("--json", metavar="OUT", help=f"default bench/results/{NAME}.json")
    p.add_argument("--verbose", "-v", action="store_true", help="one line per seed (stderr)")
    args = p.parse_args(argv)
    budget = args.seconds if args.seconds is not None else (
        QUICK_SECONDS if args.quick else DEFAULT_SECONDS)
    max_wall = args.max_wall if args.max_wall is not None else 3 * budget + 60.0
    if budget <= 0 or args.max_seeds < 1 or max_wall <= 0:
        p.error("--seconds, --max-seeds and --max-wall must be positive")

    results = [run_size(n, budget, args.first_seed, args.max_seeds, max_wall, args.verbose)
               for n in args.sizes]
    rows = [result_row(r) for r in results]
    print(benchcommon.table(
        ["nodes", "seeds", "CPU s", "seeds/CPU-min", "CPU/seed median s", "CPU/seed p99 s",
         "CPU/seed max s", "sim s per CPU s", "failed seeds"],
        [[r["nodes"], r["seeds"], r["cpu_s"], r["seeds_per_cpu_minute"],
          r["cpu_per_seed_s"].get("median"), r["cpu_per_seed_s"].get("p99"),
          r["cpu_per_seed_s"].get("max"), r["sim_s_per_cpu_s"], len(r["failed_seeds"])]
         for r in rows]))
    for r in rows:
        for f in r["failed_seeds"]:
            print(f"FAILED nodes={r['nodes']} seed={f['seed']}: {f['liveness_failure'] or ''} "
                  f"{f['violations']} (replay: {f['replay']})", file=sys.stderr)
    params = {"sizes": args.sizes, "cpu_budget_s": budget, "first_seed": args.first_seed,
              "max_seeds": args.max_seeds, "max_wall_s": max_wall, "quick": args.quick,
              "swarm_options": "SwarmOptions(nodes=N), other fields default",
              "clock": "time.process_time() per seed"}
    path = benchcommon.write_json(NAME, params, rows, args.json)
    print(f"\nwrote {path}")
    return 1 if any(r["failed_seeds"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
