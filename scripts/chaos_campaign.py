#!/usr/bin/env python3
"""The long chaos campaign on real daemons (issue 5, point 1).

    scripts/chaos_campaign.py --nodes 5 --steps 500 --seed S --token 1000 --json OUT

Runs ``tests/chaos/chaoscampaign.py`` (network namespaces, nftables faults, one real
``pyquorumd`` and one tracking client per node), prints every step and a summary table,
and writes the result as JSON.  Needs root, ``ip netns`` and ``nft``.  Exit status: 0 no
violation, 1 violations, 2 the environment cannot run it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "chaos"))

from chaoscampaign import CampaignConfig, recheck, run_campaign, summary_table  # noqa: E402
from chaosnet import environment_problem  # noqa: E402


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # cleanup runs in the finally blocks


def main(argv: Sequence[str] | None = None) -> int:
    """Command line."""
    p = argparse.ArgumentParser(description="pyquorum chaos campaign on real daemons")
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--steps", type=int, default=500, help="fault steps (heals are extra)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--token", type=int, default=1000, help="totem token (ms)")
    p.add_argument("--token-coefficient", type=int, default=0,
                   help="totem token_coefficient (ms; default 0: the effective token is "
                        "--token; Corosync's default is 650)")
    p.add_argument("--max-wall", type=float, default=4 * 3600.0,
                   help="stop taking fault steps after this many seconds")
    p.add_argument("--heal-every", type=int, default=8,
                   help="force a full heal every N fault steps")
    p.add_argument("--converge-timeout", type=float, default=60.0)
    p.add_argument("--json", metavar="OUT", help="write the result here")
    p.add_argument("--table", metavar="TXT", help="also write the summary table here")
    p.add_argument("--keep", metavar="DIR",
                   help="copy the driver log, traces and daemon logs to DIR")
    p.add_argument("--quiet", action="store_true", help="do not print every step")
    p.add_argument("--recheck", metavar="DIR",
                   help="no campaign: run the checker again on artifacts kept with --keep "
                        "DIR and update the result given by --json in place")
    args = p.parse_args(argv)
    if args.recheck:
        if not args.json:
            p.error("--recheck needs --json (the result to update)")
        res = recheck(json.loads(Path(args.json).read_text()), Path(args.recheck))
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
        return _finish(res, args.table)
    problem = environment_problem()
    if problem:
        print(f"chaos_campaign: {problem}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    cfg = CampaignConfig(nodes=args.nodes, steps=args.steps, seed=args.seed,
                         token_ms=args.token, token_coefficient_ms=args.token_coefficient,
                         max_wall_s=args.max_wall,
                         heal_every=args.heal_every, converge_timeout_s=args.converge_timeout,
                         keep_dir=args.keep)

    def out(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    res = run_campaign(cfg, out, args.json)
    return _finish(res, args.table)


def _finish(res: dict[str, Any], table_path: str | None) -> int:
    table = summary_table(res)
    print(table, flush=True)
    if table_path:
        Path(table_path).parent.mkdir(parents=True, exist_ok=True)
        Path(table_path).write_text(table + "\n")
    return 1 if res["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
