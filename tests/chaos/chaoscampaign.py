"""A seeded chaos campaign on real daemons (``chaosnet``), checked by ``chaoscheck``.

Every choice comes from ``random.Random(seed)`` and depends only on earlier choices, so a
seed gives the same fault schedule every time (which faults, on which nodes, for how
long); only the exact interleaving with the daemons' own timers differs between runs.
Pacing is planned on a virtual schedule: a fault step draws its wait, timed follow-ups
(the resume of a pause, the toggles of a flapping link) have planned offsets, and they run
in planned order at the planned real time (or at once if the harness is late).

Fault kinds (``FAULT_WEIGHTS``): ``kill`` (SIGKILL), ``stop`` (SIGTERM, clean leave),
``restart`` (a down daemon), ``pause`` (SIGSTOP, SIGCONT after 0.3-2.5 token), ``partition``
(2 or 3 random groups, symmetric), ``block`` (one-way, adds up), ``loss`` (5-30 % random
loss on every frame), ``flap`` (a link cut and restored 2-6 times, 0.1-1.5 token each), and
``heal``: ``partial`` (network restored, paused daemons resumed, down ones stay down) or
``full`` (also every down daemon restarted).  Every ``heal_every`` fault steps a full heal
is forced.  After every heal the campaign waits (bounded) for convergence, so the checker
can measure it; the campaign is bounded by its number of fault steps and by wall time,
after which it heals everything one last time.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chaoscheck import check_dir
from chaosnet import ChaosCluster, ChaosError

FAULT_WEIGHTS: dict[str, int] = {
    "kill": 10, "stop": 6, "restart": 12, "pause": 10, "partition": 14, "block": 8,
    "loss": 7, "flap": 8, "heal": 6,
}


@dataclass
class CampaignConfig:
    """What a campaign does."""

    nodes: int = 5
    steps: int = 30
    """Fault steps (heals are extra)."""
    seed: int = 1
    token_ms: int = 1000
    token_coefficient_ms: int = 0
    """0: the effective token is ``token_ms`` itself (Corosync's default, 650, would add
    650 ms per node above two)."""
    max_wall_s: float = 150.0
    """No new fault step after this many seconds (the final heal still runs)."""
    heal_every: int = 8
    wait_min: float = 0.2
    wait_max: float = 4.0
    """A fault step's wait, in tokens (uniform)."""
    settle_min: float = 0.2
    settle_max: float = 1.0
    """The quiet time after a heal converged, in tokens (uniform)."""
    converge_timeout_s: float = 30.0
    margin_ms: int = 500
    keep_dir: str | None = None
    """Copy the driver log, traces and daemon logs here."""
    weights: dict[str, int] = field(default_factory=lambda: dict(FAULT_WEIGHTS))


class Campaign:
    """One run: the cluster, the seeded choices and the planned schedule."""

    def __init__(self, cfg: CampaignConfig, out: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.out = out
        self.rng = random.Random(cfg.seed)
        self.cluster = ChaosCluster(cfg.nodes, token_ms=cfg.token_ms,
                                    token_coefficient_ms=cfg.token_coefficient_ms)
        self.tok = self.cluster.effective_token_ms / 1000
        self.faults: Counter[str] = Counter()
        self.heals: Counter[str] = Counter()
        self.pending: list[tuple[float, int, str, tuple[int, ...]]] = []
        """Planned follow-ups: (virtual time, order, what, nodes)."""
        self.vt = 0.0
        self.vt_real0 = 0.0
        self.order = 0
        self.errors: list[str] = []
        self.crashes: list[str] = []
        self.expected_down: set[int] = set()
        self.fault_steps = 0
        self.steps = 0

    # ------------------------------------------------------------------ schedule
    def _plan(self, offset: float, what: str, nodes: tuple[int, ...]) -> None:
        self.order += 1
        self.pending.append((self.vt + offset, self.order, what, nodes))
        self.pending.sort()

    def _run_followup(self, what: str, nodes: tuple[int, ...]) -> None:
        c = self.cluster
        if what == "resume":
            if c.running(nodes[0]) and nodes[0] in c.paused:
                c.resume(nodes[0])
        elif what == "cut":
            c.net.cuts.add((nodes[0], nodes[1]))
            c.apply_net("flap_cut", a=nodes[0], b=nodes[1])
        elif what == "restore":
            c.net.cuts.discard((nodes[0], nodes[1]))
            c.apply_net("flap_restore", a=nodes[0], b=nodes[1])

    def _wait(self, duration: float) -> None:
        """Advance the virtual clock by ``duration``, running due follow-ups on time."""
        end = self.vt + duration
        while self.pending and self.pending[0][0] <= end:
            due, _, what, nodes = self.pending.pop(0)
            self._sleep_until(due)
            self._run_followup(what, nodes)
        self._sleep_until(end)
        self.vt = end

    def _sleep_until(self, vt: float) -> None:
        target = self.vt_real0 + vt
        left = target - time.monotonic()
        if left > 0:  # pacing of the fault schedule (not synchronisation)
            time.sleep(left)

    def _resync_clock(self) -> None:
        """After an unplanned-length action (heal, restart), re-anchor the schedule."""
        self.vt_real0 = time.monotonic() - self.vt

    # ------------------------------------------------------------------ faults
    def _pick(self) -> str:
        c = self.cluster
        running = [i for i in c.nodes if c.running(i)]
        down = [i for i in c.nodes if not c.running(i)]
        ok = dict(self.cfg.weights)
        if len(running) <= 1:
            ok.pop("kill", None)
            ok.pop("stop", None)
        if not [i for i in running if i not in c.paused]:
            ok.pop("pause", None)
            ok.pop("stop", None)
        if not down:
            ok.pop("restart", None)
        kinds = sorted(k for k, w in ok.items() if w > 0)
        return self.rng.choices(kinds, weights=[ok[k] for k in kinds])[0]

    def _fault(self, kind: str) -> str:
        c, rng = self.cluster, self.rng
        running = [i for i in c.nodes if c.running(i)]
        if kind == "kill":
            i = rng.choice(running)
            self.expected_down.add(i)
            c.kill(i)
            return f"kill {i}"
        if kind == "stop":
            i = rng.choice([i for i in running if i not in c.paused])
            self.expected_down.add(i)
            code = c.stop(i)
            if code != 0:
                self.errors.append(f"step {self.steps}: clean stop of node {i} exited {code}")
            return f"stop {i} (exit {code})"
        if kind == "restart":
            i = rng.choice([i for i in c.nodes if not c.running(i)])
            c.start_daemons([i])
            self.expected_down.discard(i)
            self._resync_clock()
            return f"restart {i}"
        if kind == "pause":
            i = rng.choice([i for i in running if i not in c.paused])
            d = rng.uniform(0.3, 2.5) * self.tok
            c.pause(i)
            self._plan(d, "resume", (i,))
            return f"pause {i} for {d:.2f} s"
        if kind == "partition":
            order = list(c.nodes)
            rng.shuffle(order)
            k = 3 if rng.random() < 0.2 else 2
            cuts = sorted(rng.sample(range(1, len(order)), k - 1))
            groups = [sorted(order[a:b]) for a, b in
                      zip([0, *cuts], [*cuts, len(order)], strict=True)]
            c.net.groups = groups
            c.apply_net("partition", groups=groups)
            return "partition " + "|".join(",".join(map(str, g)) for g in groups)
        if kind == "block":
            a, b = rng.sample(c.nodes, 2)
            c.net.blocks.add((a, b))
            c.apply_net("block", a=a, b=b)
            return f"block {a}->{b}"
        if kind == "loss":
            p = rng.choice([5, 10, 20, 30])
            c.net.loss = p
            c.apply_net("loss", percent=p)
            return f"loss {p}%"
        if kind == "flap":
            a, b = sorted(rng.sample(c.nodes, 2))
            times = rng.randint(2, 6)
            t = 0.0
            for _ in range(times):
                t += rng.uniform(0.1, 1.5) * self.tok
                self._plan(t, "restore", (a, b))
                t += rng.uniform(0.1, 1.5) * self.tok
                self._plan(t, "cut", (a, b))
            self._plan(t + 0.001, "restore", (a, b))
            c.net.cuts.add((a, b))
            c.apply_net("flap_cut", a=a, b=b, toggles=times)
            return f"flap {a}-{b} x{times}"
        raise ValueError(kind)

    def heal(self, scope: str) -> str:
        """Remove every fault (``full``: also restart down daemons); wait to converge."""
        c = self.cluster
        t0 = time.monotonic()
        self.pending.clear()
        for i in sorted(c.paused):
            c.resume(i)
        down = [i for i in c.nodes if not c.running(i)]
        if scope == "full" and down:
            c.start_daemons(down)
            self.expected_down.clear()
        c.net.clear()
        c.apply_net("heal", scope=scope, step_started=t0)
        self.heals[scope] += 1
        took = c.wait_converged(self.cfg.converge_timeout_s)
        if took is None:
            c.record("convergence_timeout", t0=t0, scope=scope,
                     views={i: asdict(v) for i, v in c.follower.views.items()})
            text = f"heal ({scope}): NOT converged within {self.cfg.converge_timeout_s} s"
        else:
            c.record("converged", t0=t0, scope=scope, seconds=round(took, 3))
            text = f"heal ({scope}): converged in {1000 * took:.0f} ms"
        self._resync_clock()
        self._wait(self.rng.uniform(self.cfg.settle_min, self.cfg.settle_max) * self.tok)
        return text

    def _check_processes(self) -> None:
        c = self.cluster
        for i in c.nodes:
            p = c.daemons.get(i)
            if p is not None and p.poll() is not None and i not in self.expected_down:
                self.crashes.append(f"step {self.steps}: daemon {i} exited on its own "
                                    f"(code {p.returncode}): {c.stderr_tail(i)}")
                c.record("crash", node=i, code=p.returncode)
                self.expected_down.add(i)
            cl = c.clients.get(i)
            if cl is not None and cl.poll() is not None:
                self.crashes.append(f"step {self.steps}: client {i} exited (code "
                                    f"{cl.returncode})")
                c.record("client_exit", node=i, code=cl.returncode)
                c.start_client(i)

    # ------------------------------------------------------------------ the run
    def run(self) -> dict[str, Any]:
        """Run, check, clean up; the JSON-ready result."""
        cfg, c = self.cfg, self.cluster
        started = time.monotonic()
        stopped_by = "steps"
        report: dict[str, Any] = {}
        leftovers: list[str] = []
        try:
            c.setup()
            c.start()
            if c.wait_converged(cfg.converge_timeout_s) is None:
                self.errors.append("the cluster did not form at start")
            self._resync_clock()
            max_iter = 3 * cfg.steps + 10
            while self.fault_steps < cfg.steps and self.steps < max_iter:
                if time.monotonic() - started > cfg.max_wall_s:
                    stopped_by = "wall"
                    break
                self.steps += 1
                c.step = self.steps
                kind = self._pick()
                if kind == "heal":
                    scope = "full" if self.rng.random() < 0.5 else "partial"
                    text = self.heal(scope)
                else:
                    self.fault_steps += 1
                    self.faults[kind] += 1
                    text = self._fault(kind)
                    self._wait(self.rng.uniform(cfg.wait_min, cfg.wait_max) * self.tok)
                self.out(f"[{time.monotonic() - started:7.1f}s] step {self.steps:4d}  {text}")
                self._check_processes()
                if kind != "heal" and self.fault_steps % cfg.heal_every == 0:
                    self.steps += 1
                    c.step = self.steps
                    text = self.heal("full")
                    self.out(f"[{time.monotonic() - started:7.1f}s] step {self.steps:4d}  "
                             f"{text}")
                    self._check_processes()
            self.steps += 1
            c.step = self.steps
            text = self.heal("full")
            self.out(f"[{time.monotonic() - started:7.1f}s] final  {text}")
            self._check_processes()
            c.record("end")
        except ChaosError as exc:
            self.errors.append(f"step {self.steps}: harness error: {exc}")
            with contextlib.suppress(Exception):
                c.record("end", error=str(exc))
        finally:
            with contextlib.suppress(Exception):
                c.follower.poll()
            try:
                report = check_dir(c.dir, c.nodes, c.effective_token_ms, c.consensus_ms,
                                   cfg.margin_ms)
            except Exception as exc:  # a checker crash is a finding too
                self.errors.append(f"checker failed: {exc!r}")
            if cfg.keep_dir:
                self._keep(Path(cfg.keep_dir))
            leftovers = c.close()
        return self._result(report, leftovers, time.monotonic() - started, stopped_by)

    def _keep(self, dest: Path) -> None:
        c = self.cluster
        dest.mkdir(parents=True, exist_ok=True)
        for f in [c.driver_log, *(c.trace_path(i) for i in c.nodes)]:
            with contextlib.suppress(OSError):
                shutil.copy2(f, dest / f.name)
        for i in c.nodes:
            for name in ("pyquorumd.log", "stderr.txt", "client.err"):
                with contextlib.suppress(OSError):
                    shutil.copy2(c.node_dir(i) / name, dest / f"n{i}-{name}")

    def _result(self, report: dict[str, Any], leftovers: list[str], wall: float,
                stopped_by: str) -> dict[str, Any]:
        res: dict[str, Any] = {
            "config": {k: v for k, v in asdict(self.cfg).items() if k != "keep_dir"},
            "src_sha256": self.cluster.src_sha256,
            "effective_token_ms": self.cluster.effective_token_ms,
            "consensus_ms": self.cluster.consensus_ms,
            "wall_s": round(wall, 1),
            "stopped_by": stopped_by,
            "steps": self.steps,
            "fault_steps": self.fault_steps,
            "faults_by_kind": dict(sorted(self.faults.items())),
            "heal_steps": dict(sorted(self.heals.items())),
            "process_problems": self.crashes,
            "harness_errors": self.errors,
            "leftovers": leftovers,
        }
        return apply_report(res, report)


def apply_report(res: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """Fill a result's checker fields (counts, convergence, violations) from ``report``;
    the violations are the checker's plus process, harness and cleanup problems."""
    heals = report.get("heals", [])
    res.update({
        "split_brains": len(report.get("split_brains", [])),
        "ring_disagreements": len(report.get("ring_disagreements", [])),
        "seq_regressions": len(report.get("seq_regressions", [])),
        "quorum_mismatches": len(report.get("quorum_mismatches", [])),
        "prolonged_divergence": len(report.get("prolonged_divergence", [])),
        "stale_quorate": len(report.get("stale_quorate", [])),
        "max_stale_quorate_ms": report.get("max_stale_quorate_ms"),
        "max_concurrent_quorate_ms": report.get("max_concurrent_quorate_ms"),
        "max_separated_quorate_ms": report.get("max_separated_quorate_ms"),
        "heals": len(heals),
        "heals_not_converged": sum(1 for h in heals if not h["converged"]),
        "heals_slow": sum(1 for h in heals if h["converged"] and h["flagged"]),
        "convergence_ms": report.get("convergence_ms", {}),
        "grace_ms": report.get("grace_ms"),
        "convergence_bound_ms": report.get("convergence_bound_ms"),
        "quorate_views_checked": report.get("quorate_views_checked"),
    })
    violations = list(report.get("violations", []))
    violations += [f"daemon/client exit: {x}" for x in res.get("process_problems", [])]
    violations += [f"harness: {x}" for x in res.get("harness_errors", [])]
    violations += [f"cleanup: {x}" for x in res.get("leftovers", [])]
    res["violations"] = violations
    res["report"] = report
    return res


def recheck(result: dict[str, Any], artifacts: Path) -> dict[str, Any]:
    """Run the (current) checker again on a campaign's kept artifacts (``keep_dir``)."""
    cfg = result["config"]
    nodes = list(range(1, int(cfg["nodes"]) + 1))
    report = check_dir(artifacts, nodes, int(result["effective_token_ms"]),
                       int(result["consensus_ms"]), int(cfg["margin_ms"]))
    res = apply_report(dict(result), report)
    res["rechecked"] = True  # the checker ran again on the kept artifacts
    return res


def summary_table(res: dict[str, Any]) -> str:
    """The printed summary of a campaign result."""
    cfg = res["config"]
    conv = res["convergence_ms"]
    rows = [
        ("seed", cfg["seed"]), ("nodes", cfg["nodes"]),
        ("token, coefficient (ms)", f"{cfg['token_ms']}, {cfg['token_coefficient_ms']}"),
        ("effective token / consensus (ms)",
         f"{res['effective_token_ms']} / {res['consensus_ms']}"),
        ("split-brain grace (ms)", res["grace_ms"]),
        ("wall time (s)", res["wall_s"]), ("stopped by", res["stopped_by"]),
        ("steps (faults + heals)", res["steps"]), ("fault steps", res["fault_steps"]),
        ("faults by kind", ", ".join(f"{k} {v}" for k, v in res["faults_by_kind"].items())),
        ("heal steps", ", ".join(f"{k} {v}" for k, v in res["heal_steps"].items())),
        ("quorate views checked", res["quorate_views_checked"]),
        ("split brains", res["split_brains"]),
        ("ring disagreements", res["ring_disagreements"]),
        ("seq regressions", res["seq_regressions"]),
        ("quorum arithmetic mismatches", res["quorum_mismatches"]),
        ("prolonged divergence (warning)", res["prolonged_divergence"]),
        ("stale quorate views > grace (warning)", res["stale_quorate"]),
        ("longest stale quorate view (ms)", res["max_stale_quorate_ms"]),
        ("longest concurrently quorate (ms)", res["max_concurrent_quorate_ms"]),
        ("longest quorate + separated (ms)", res["max_separated_quorate_ms"]),
        ("heals measured", res["heals"]),
        ("convergence median / max (ms)", f"{conv.get('median')} / {conv.get('max')}"),
        (f"heals > {res['convergence_bound_ms']} ms", res["heals_slow"]),
        ("heals not converged", res["heals_not_converged"]),
        ("daemon/client exits", len(res["process_problems"])),
        ("harness errors", len(res["harness_errors"])),
        ("leftovers after cleanup", len(res["leftovers"])),
        ("VIOLATIONS", len(res["violations"])),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines += [f"  - {v}" for v in res["violations"]]
    return "\n".join(lines)


def run_campaign(cfg: CampaignConfig, out: Callable[[str], None] = print,
                 json_path: str | None = None) -> dict[str, Any]:
    """Run one campaign; write its JSON to ``json_path`` if given."""
    res = Campaign(cfg, out).run()
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(res, indent=1, sort_keys=False) + "\n")
    return res
