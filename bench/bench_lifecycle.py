"""Lifecycle: clean stop and cold start of a 3-node cluster, pyquorum vs Corosync.

What it measures (both systems in the same run, identical totem settings)
    (a) ``stop``, clean leave: a 3-node cluster with one tracking client per node (the
        clusters, clients and settings of ``bench_failover.py``).  Per repetition node 3's
        daemon gets SIGTERM (pyquorumd and corosync both leave the cluster cleanly on
        it); t0 = ``time.monotonic()`` immediately before ``os.kill(pid, SIGTERM)``; a
        survivor's sample is the time of its first quorum callback after t0 whose member
        list no longer contains node 3, minus t0.  Node 3 is restarted and must rejoin
        (every node's latest quorum callback lists [1, 2, 3], quorate) before a settle
        pause and the next repetition.  Also recorded: how long the victim took to exit
        (pyquorum: the exit the harness reaps; Corosync: polled, so +-50 ms).  Target for
        pyquorum: median over all survivors <= 100 ms.
    (b) ``cold``, cold start: as ``measure.py cold_run`` defines it.  Per repetition a
        fresh cluster (new namespaces, empty state directories): the three tracking
        clients are started first and retry initialize every 20 ms (the repetition
        starts once each has reported a failed initialize); t0 = ``time.monotonic()``
        just before starting all three daemons (pyquorum: three ``Popen`` in a row, then
        the harness waits for READY; Corosync: ``cluster.sh start all``).  Reported: the
        first quorate quorum callback on any node, and the time by which all 3 nodes had
        a quorate callback listing [1, 2, 3] (max over nodes of each node's first), both
        minus t0; also IPC ready (first successful initialize per node) and when each
        daemon process was forked (from /proc, 10 ms resolution).  Target for pyquorum:
        median first quorate callback <= 1 s (Corosync measured 2.6 s at its defaults).

    Statistics per system: median / p90 / max / spread (max - min) in ms, and the
    pyquorum / Corosync ratio of the medians.

Identical settings
    Both configurations say ``token: T`` and ``token_coefficient: 650`` (``--tokens``:
    ``default`` = 3000, Corosync's defaults, or a number of ms) with ``consensus`` and
    ``join`` unset (derived: 1.2 x effective token, 50 ms); effective token T + (3 - 2) x
    650.  The values each running cluster really uses are read back and stored in the
    JSON (``runtime_totem``) and compared.  Harness differences: Corosync knet, crypto
    off; pyquorum UDP unicast, aes256 + sha256 (see ``bench_failover.py``).

How to run (root; ``ip netns``, ``nft``; the Corosync side also needs ``corosync`` and
``../shared/oracle``, else it is skipped with the reason printed)::

    python bench/bench_lifecycle.py                     # stop + cold, 10 reps each, token 3000
    python bench/bench_lifecycle.py --quick             # smoke test: 1 rep of each
    python bench/bench_lifecycle.py --parts cold --systems pyquorum --reps 20
    python bench/bench_lifecycle.py --tokens default,1000 --json /tmp/lifecycle.json

Prints markdown tables and writes ``bench/results/lifecycle.json`` (``--quick``:
``lifecycle-quick.json``; ``--json PATH`` overrides).  Namespaces: Corosync ``bnl-*``
on 10.213.94.0/24 (``--cs-prefix``, ``--cs-net``), pyquorum ``bnlp<pid>x<k>-*`` on
10.213.96.0/24; everything started is stopped by PID and every namespace deleted, also
on failure.  Exit status: 0 all measured, 1 something failed, 2 nothing could run.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchcommon
from bench_failover import (
    CLIENT_RETRY_S,
    CLIENTS_TIMEOUT_S,
    COROSYNC_DEFAULT_COEFFICIENT_MS,
    BenchError,
    Places,
    System,
    check_systems,
    compare_settings,
    install_sigterm,
    make_system,
    ms,
    places_from_args,
    proc_start_mono,
    ratio,
    run_signal_cell,
    stat,
    timing_text,
    token_ms_of,
)

PARTS = ("stop", "cold")
NODES = 3
STOP_TARGET_MS = 100.0
COLD_TARGET_MS = 1000.0


# ====================================================================== (a) clean stop
def run_stop(system: str, token: str, args: argparse.Namespace, deadline: float,
             places: Places) -> dict[str, Any]:
    """One system's clean-stop repetitions (SIGTERM of node 3); the result row."""
    row = run_signal_cell(system, NODES, token, signal.SIGTERM, args.reps, args.settle,
                          "highest", deadline, places, f"stop-t{token}")
    row["part"] = "stop"
    exits = [(smp.get("victim_exit") or {}) for smp in row["samples"]]
    row["victim_exit_ms"] = benchcommon.stats(
        [e.get("exit_ms", e.get("seen_gone_ms")) for e in exits])
    row["victim_exit_forced"] = sum(1 for e in exits if e.get("forced"))
    return row


# ====================================================================== (b) cold start
def full_quorate(s: System, node: int, t0: float) -> float | None:
    """When ``node`` first had a quorate callback listing every node (after ``t0``)."""
    want = tuple(s.nodes)
    cb = next((c for c in s.quorum_cbs(node) if c.t > t0 and c.quorate and c.members == want),
              None)
    return None if cb is None else cb.t


def cold_rep(system: str, token: str, rep: int, places: Places) -> dict[str, Any]:
    """One cold start of a fresh 3-node cluster; the repetition's record (ms after t0)."""
    s = make_system(system, NODES, token_ms_of(token), places, f"cold-t{token}-rep{rep}")
    res: dict[str, Any] = {"rep": rep}
    bound = s.timing_bound_s()
    try:
        s.prepare()
        s.start_clients()
        if not s.poll_until(lambda: all(s.init_failures(i) > 0 for i in s.nodes),
                            CLIENTS_TIMEOUT_S):
            raise BenchError(f"{system}: the clients did not report a failed initialize "
                             f"within {CLIENTS_TIMEOUT_S:.0f} s")
        t0 = s.start_daemons(s.nodes)
        res["t0"] = round(t0, 6)
        res["daemon_fork_ms"] = {i: ms(proc_start_mono(s.daemon_pid(i)), t0)
                                 for i in s.nodes}
        ok = s.poll_until(lambda: all(full_quorate(s, i, t0) is not None for i in s.nodes),
                          60.0 + 3 * bound)
        first_q: dict[int, float | None] = {}
        for i in s.nodes:
            cb = next((c for c in s.quorum_cbs(i) if c.t > t0 and c.quorate), None)
            first_q[i] = ms(cb.t, t0) if cb else None
        full = {i: ms(full_quorate(s, i, t0), t0) for i in s.nodes}
        ipc = {i: ms(next((t for t in s.connect_times(i) if t > t0), None), t0)
               for i in s.nodes}
        got_q = [v for v in first_q.values() if v is not None]
        got_full = [v for v in full.values() if v is not None]
        forks = [v for v in res["daemon_fork_ms"].values() if v is not None]
        res.update({
            "ipc_ready_ms": ipc, "first_quorate_cb_ms": first_q, "full_quorate_cb_ms": full,
            "first_quorate_any_ms": min(got_q) if got_q else None,
            "full_quorate_all_ms": max(got_full) if len(got_full) == NODES else None,
            "memberships_seen": {i: [list(c.members) for c in s.quorum_cbs(i)]
                                 for i in s.nodes}})
        if got_q and forks:
            res["first_quorate_any_since_last_fork_ms"] = round(min(got_q) - max(forks), 3)
        res["runtime_totem"] = s.runtime_totem()
        res["configured_totem"] = s.configured_totem()
        print(f"   cold {system} token={token} rep {rep}: first quorate "
              f"{res['first_quorate_any_ms']} ms, all 3 quorate {res['full_quorate_all_ms']} "
              f"ms (ipc ready {sorted(v for v in ipc.values() if v is not None)})", flush=True)
        if not ok:
            raise BenchError(f"{system}: not all 3 nodes quorate together within "
                             f"{60.0 + 3 * bound:.0f} s")
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
        res["error"] = f"{type(exc).__name__}: {exc}"
        print(f"   ERROR cold {system} token={token} rep {rep}: {res['error']}", flush=True)
    finally:
        res["leftovers"] = s.close()
        places.done(s.work_dir)
        if res["leftovers"]:
            print(f"   LEFTOVERS {system}: {res['leftovers']}", flush=True)
    return res


def run_cold(system: str, token: str, args: argparse.Namespace, deadline: float,
             places: Places) -> dict[str, Any]:
    """One system's cold-start repetitions; the result row."""
    runs: list[dict[str, Any]] = []
    row: dict[str, Any] = {"part": "cold", "system": system, "nodes": NODES,
                           "token_option": token, "token_ms": token_ms_of(token),
                           "token_coefficient_ms": COROSYNC_DEFAULT_COEFFICIENT_MS,
                           "runs": runs}
    for rep in range(1, args.reps + 1):
        if time.monotonic() > deadline:
            row["truncated"] = f"--max-wall reached before repetition {rep}"
            break
        runs.append(cold_rep(system, token, rep, places))
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        row["error"] = f"{len(errors)} of {len(runs)} repetitions failed: {errors[0]}"
    row["leftovers"] = [x for r in runs for x in r["leftovers"]]
    row["reps_done"] = len(runs)
    row["runtime_totem"] = next((r["runtime_totem"] for r in runs if "runtime_totem" in r), {})
    row["configured_totem"] = next(
        (r["configured_totem"] for r in runs if "configured_totem" in r), {})
    row["first_quorate_any_ms"] = benchcommon.stats([r.get("first_quorate_any_ms")
                                                     for r in runs])
    row["full_quorate_all_ms"] = benchcommon.stats([r.get("full_quorate_all_ms")
                                                    for r in runs])
    row["ipc_ready_ms"] = benchcommon.stats(
        [v for r in runs for v in (r.get("ipc_ready_ms") or {}).values()])
    row["first_quorate_any_since_last_fork_ms"] = benchcommon.stats(
        [r.get("first_quorate_any_since_last_fork_ms") for r in runs])
    return row


# ====================================================================== output
def comparison(part: str, token: str, cell: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """pyquorum / Corosync ratios and pyquorum's target of one part and token."""
    by = {r["system"]: r for r in cell}
    pq, cs = by.get("pyquorum"), by.get("corosync")
    key = "quorum_cb_all_survivors_ms" if part == "stop" else "first_quorate_any_ms"
    target = STOP_TARGET_MS if part == "stop" else COLD_TARGET_MS
    med = stat(pq, key, "median") if pq else None
    out: dict[str, Any] = {
        "row": "comparison", "part": part, "nodes": NODES, "token_option": token,
        "key": key, "ratio_median": ratio(pq, cs, key),
        "pyquorum_target_ms": target, "pyquorum_median_ms": med,
        "meets_target": None if med is None else med <= target,
        "settings": compare_settings(cell)}
    if part == "cold":
        out["ratio_median_full_quorate_all"] = ratio(pq, cs, "full_quorate_all_ms")
    if out["settings"]["identical"] is False:
        print(f"WARNING {part} token={token}: effective totem settings differ: "
              f"{out['settings']['runtime']}", flush=True)
    return out


def render_tables(results: Sequence[dict[str, Any]]) -> str:
    """The markdown tables of both parts (ms)."""
    cmps = {(r["part"], r["token_option"]): r for r in results if r["row"] == "comparison"}
    stop_rows: list[list[Any]] = []
    cold_rows: list[list[Any]] = []
    for r in results:
        if r["row"] != "measurement":
            continue
        cmp = cmps.get((r["part"], r["token_option"]))
        is_pq = r["system"] == "pyquorum"
        rat = cmp["ratio_median"] if cmp and is_pq else None
        met = cmp["meets_target"] if cmp and is_pq else None
        status = "error" if r.get("error") else "ok"
        if r["part"] == "stop":
            k = "quorum_cb_all_survivors_ms"
            stop_rows.append([
                r["token_option"], r["system"], timing_text(r), r["reps_done"],
                stat(r, k, "median"), stat(r, k, "p90"), stat(r, k, "max"),
                stat(r, k, "spread"), stat(r, "quorum_cb_last_survivor_ms", "median"),
                stat(r, "victim_exit_ms", "median"), rat, met, status])
        else:
            k = "first_quorate_any_ms"
            cold_rows.append([
                r["token_option"], r["system"], timing_text(r), r["reps_done"],
                stat(r, "ipc_ready_ms", "median"), stat(r, k, "median"), stat(r, k, "p90"),
                stat(r, k, "max"), stat(r, k, "spread"),
                stat(r, "full_quorate_all_ms", "median"), stat(r, "full_quorate_all_ms", "max"),
                rat, met, status])
    out: list[str] = []
    if stop_rows:
        out += [f"### (a) clean stop (SIGTERM of node 3) -> quorum callback on the survivors, "
                f"3 nodes (ms; target pyquorum median <= {STOP_TARGET_MS:.0f} ms)", "",
                benchcommon.table(
                    ["token", "system", "runtime token / consensus / join (ms)", "reps",
                     "median", "p90", "max", "spread", "last surv. median",
                     "victim exit median", "pq/cs median", "target met", "status"],
                    stop_rows), ""]
    if cold_rows:
        out += [f"### (b) cold start of 3 nodes -> first quorate callback (ms after starting "
                f"the daemons; target pyquorum median <= {COLD_TARGET_MS:.0f} ms)", "",
                benchcommon.table(
                    ["token", "system", "runtime token / consensus / join (ms)", "reps",
                     "IPC ready median", "first quorate median", "p90", "max", "spread",
                     "all 3 quorate median", "all 3 quorate max", "pq/cs median",
                     "target met", "status"], cold_rows), ""]
    return "\n".join(out)


# ====================================================================== main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(
        description="Clean stop and cold start of 3 nodes, pyquorum vs Corosync 3.1.7 with "
                    "identical totem settings (see the module docstring).")
    p.add_argument("--parts", default="stop,cold", help="comma list of stop,cold (both)")
    p.add_argument("--systems", default="pyquorum,corosync",
                   help="comma list of pyquorum,corosync (default both)")
    p.add_argument("--tokens", default="default",
                   help="totem token: 'default' (3000) or ms, comma list (default: default)")
    p.add_argument("--reps", type=int, default=10, help="repetitions per part and system (10)")
    p.add_argument("--settle", type=float, default=3.0,
                   help="stop: pause after the rejoin before the next stop, s (pacing; 3.0)")
    p.add_argument("--json", metavar="PATH", help="JSON output (default "
                   "bench/results/lifecycle.json; --quick: lifecycle-quick.json)")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 rep of each part")
    p.add_argument("--max-wall", type=float, default=3 * 3600.0,
                   help="start no repetition after this many seconds (default 3 h)")
    p.add_argument("--keep", metavar="DIR",
                   help="keep configs, traces and daemon logs under DIR")
    p.add_argument("--cs-prefix", default="bnl", help="Corosync namespace prefix (bnl)")
    p.add_argument("--cs-net", default="10.213.94", help="Corosync subnet /24 (10.213.94)")
    args = p.parse_args(argv)
    if args.quick:
        args.reps = 1
    args.part_list = [x.strip() for x in args.parts.split(",") if x.strip()]
    args.system_list = [x.strip() for x in args.systems.split(",") if x.strip()]
    args.token_list = [x.strip() for x in args.tokens.split(",") if x.strip()]
    if not args.part_list or any(x not in PARTS for x in args.part_list):
        p.error(f"--parts: choose from {', '.join(PARTS)}")
    if not args.system_list or any(x not in ("pyquorum", "corosync") for x in args.system_list):
        p.error("--systems: choose from pyquorum, corosync")
    try:
        for t in args.token_list:
            token_ms_of(t)
    except ValueError as exc:
        p.error(f"--tokens: {exc}")
    if args.reps < 1 or args.reps > 1000:
        p.error("--reps: 1..1000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status."""
    args = parse_args(argv)
    install_sigterm()
    benchcommon.precompile_pyquorum()
    out = args.json or str(benchcommon.RESULTS_DIR
                           / ("lifecycle-quick.json" if args.quick else "lifecycle.json"))
    systems, skipped = check_systems(args.system_list)
    params: dict[str, Any] = {
        "argv": sys.argv[1:], "parts": args.part_list, "systems": args.system_list,
        "skipped": skipped, "nodes": NODES, "tokens": args.token_list, "reps": args.reps,
        "settle_s": args.settle, "quick": args.quick,
        "token_coefficient_ms": COROSYNC_DEFAULT_COEFFICIENT_MS,
        "consensus_join": "unset in both configurations (derived: 1.2 x token, 50 ms)",
        "stop_sample": "t of the first quorum callback on a survivor whose members lack "
                       "node 3, minus t0 = monotonic() just before os.kill(pid, SIGTERM)",
        "cold_sample": "t0 = monotonic() just before starting all 3 daemons (clients "
                       "already retrying); first quorate callback on any node, and all 3 "
                       "nodes quorate with [1, 2, 3]",
        "clients": {"pyquorum": "tests/chaos/chaos_client.py (retry 20 ms)",
                    "corosync": f"oracle qclient.py --reconnect --retry-interval "
                                f"{CLIENT_RETRY_S}"},
        "transport": {"pyquorum": "udpu, crypto aes256/sha256 (chaosnet.py)",
                      "corosync": "knet, crypto none (cluster.sh)"},
        "targets_ms": {"stop_pyquorum_median": STOP_TARGET_MS,
                       "cold_first_quorate_pyquorum_median": COLD_TARGET_MS}}
    if not systems:
        print("nothing to run", flush=True)
        benchcommon.write_json("lifecycle", params, [], out)
        return 2
    places = places_from_args(args, "bnl", "10.213.96")
    deadline = time.monotonic() + args.max_wall
    results: list[dict[str, Any]] = []
    failed = False
    try:
        for part in args.part_list:
            for token in args.token_list:
                cell: list[dict[str, Any]] = []
                for system in systems:
                    print(f"== {part}: {system}, 3 nodes, token {token}, {args.reps} reps",
                          flush=True)
                    run = run_stop if part == "stop" else run_cold
                    row = run(system, token, args, deadline, places)
                    row["row"] = "measurement"
                    failed = failed or bool(row.get("error")) or bool(row["leftovers"])
                    cell.append(row)
                    results.append(row)
                    benchcommon.write_json("lifecycle", params, results, out)
                results.append(comparison(part, token, cell))
                benchcommon.write_json("lifecycle", params, results, out)
    finally:
        if not places.keep:
            shutil.rmtree(places.root, ignore_errors=True)
    print()
    print(render_tables(results))
    path = benchcommon.write_json("lifecycle", params, results, out)
    print(f"JSON: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
