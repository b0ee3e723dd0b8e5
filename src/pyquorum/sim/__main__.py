"""``python -m pyquorum.sim``: swarm runs over many seeds, or one scenario script.

The last output line is one JSON object with at least ``seeds``, ``violations``,
``liveness_failures``, ``sim_seconds`` and ``wall_seconds``. A failing seed is printed
with the exact command that replays it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time as wallclock
from pathlib import Path

from pyquorum.sim.scenario import ScenarioError, run_script
from pyquorum.sim.swarm import SwarmOptions, run_seed
from pyquorum.sim.traces import write_traces


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pyquorum.sim", description=__doc__)
    p.add_argument("--seed", type=int, default=1, help="first (or only) seed")
    p.add_argument("--seeds", type=int, default=1, help="how many seeds from --seed on")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--steps", type=int, default=12, help="random faults per run")
    p.add_argument("--loss", type=float, default=0.02, help="datagram loss probability")
    p.add_argument("--duplicate", type=float, default=0.01, help="duplication probability")
    p.add_argument("--spike", type=float, default=0.01,
                   help="probability of a delay spike (reordering)")
    p.add_argument("--token", type=int, default=None, help="totem token ms (default: per seed)")
    p.add_argument("--script", type=Path, help="run this scenario file instead of a swarm")
    p.add_argument("--traces", type=Path, help="write client traces (qclient format) here")
    p.add_argument("--verbose", "-v", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the simulator; exit 0 only without violations and liveness failures."""
    args = _parser().parse_args(argv)
    t0 = wallclock.monotonic()
    if args.script:
        return _run_script(args, t0)
    opts = SwarmOptions(nodes=args.nodes, steps=args.steps, loss=args.loss,
                        duplicate=args.duplicate, spike=args.spike, token_ms=args.token)
    violations = liveness = 0
    sim_ms = 0
    failed: list[int] = []
    for seed in range(args.seed, args.seed + args.seeds):
        res = run_seed(seed, opts)
        sim_ms += res.sim_ms
        violations += len(res.violations)
        liveness += res.liveness_failure is not None
        if args.verbose:
            print(f"seed {seed}: views={res.views} converge={res.converge_ms}ms ok={res.ok}")
        if not res.ok:
            failed.append(seed)
            print(f"FAILED seed {seed}:", file=sys.stderr)
            for v in res.violations[:10]:
                print(f"  violation: {v}", file=sys.stderr)
            if res.liveness_failure:
                print(f"  liveness: {res.liveness_failure}", file=sys.stderr)
            for a in res.actions:
                print(f"  action {a}", file=sys.stderr)
            replay = ["python", "-m", "pyquorum.sim", "--seed", str(seed), "--nodes",
                      str(args.nodes), "--steps", str(args.steps), "--loss", str(args.loss),
                      "--duplicate", str(args.duplicate), "--spike", str(args.spike)]
            if args.token:
                replay += ["--token", str(args.token)]
            print(f"  replay: {shlex.join(replay)}", file=sys.stderr)
    summary = {
        "seeds": args.seeds,
        "nodes": args.nodes,
        "violations": violations,
        "liveness_failures": liveness,
        "failed_seeds": failed[:20],
        "sim_seconds": round(sim_ms / 1000, 3),
        "wall_seconds": round(wallclock.monotonic() - t0, 3),
    }
    print(json.dumps(summary, sort_keys=True))
    return 0 if not failed else 1


def _run_script(args: argparse.Namespace, t0: float) -> int:
    try:
        res = run_script(args.script.read_text(), seed=args.seed)
    except ScenarioError as e:
        print(f"{args.script}: {e}", file=sys.stderr)
        return 2
    for f in res.failures:
        print(f"{args.script}: {f}", file=sys.stderr)
    for v in res.sim.checker.violations:
        print(f"{args.script}: violation: {v}", file=sys.stderr)
    if args.traces:
        write_traces(res.sim, args.traces)
    if not res.ok:
        print(f"replay: python -m pyquorum.sim --script {shlex.quote(str(args.script))} "
              f"--seed {args.seed}", file=sys.stderr)
    summary = {
        "seeds": 1,
        "script": str(args.script),
        "failures": len(res.failures),
        "violations": len(res.sim.checker.violations),
        "liveness_failures": 0,
        "sim_seconds": round(res.sim.now_ms / 1000, 3),
        "wall_seconds": round(wallclock.monotonic() - t0, 3),
    }
    print(json.dumps(summary, sort_keys=True))
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
