"""The chaos tier's checker: reads the tracking clients' traces and the driver log.

Input: ``traces[node]`` = that node's client records in file order (see
``chaos_client.py``), ``driver`` = the driver log records (see ``chaosnet.py``), all
timestamps in seconds of one CLOCK_MONOTONIC.  ``check()`` returns a JSON-ready report;
``report["violations"]`` lists every finding as one line of text.

The rules, exactly
==================

**Accepted views.**  A node *holds* a view from its client's ``quorum`` event until the
next ``quorum`` event of that node (the ``nodelist`` event that precedes it by less than a
millisecond does not interrupt the view), the client's ``disconnect``, or the
driver's ``kill`` / ``stop`` of that daemon (at ``t0``, just before the signal).  A client
event is accepted only while the daemon runs (after the driver's ``start`` ``t0``, before
``kill``/``stop`` ``t0``) and after a ``connect`` the client logged while it ran; late
events of a dead daemon are ignored.  While the daemon is SIGSTOPped (driver ``pause``
``t0`` .. ``resume`` ``t``) the node holds nothing: a frozen node cannot act on its view
(Corosync behaves the same: a paused node keeps its last callback until it runs again);
on ``resume`` it holds its last view again.

**(a) Split brain.**  Two nodes ``x`` and ``y`` *disagree* while both hold quorate views
of different rings (whatever rings: a side that keeps re-forming new rings does not restart
the clock).  They are *separated* while the fault log drops the traffic ``x -> y`` or
``y -> x`` entirely (partition, one-way block or a cut flapping link; random loss never
separates): they cannot exchange messages both ways, so no protocol can make them agree.
A **split brain** is a continuous stretch longer than the grace
``G = token + consensus + margin`` (default margin 500 ms) during which two nodes disagree
and are separated all along: both act as quorate in different memberships and cannot
talk.  The grace is the time a correct node needs to notice that it lost its peers
(``token``, failure detection) and to agree on a new view (``consensus``); a view replaced
by its successor milliseconds later on another node, or a cut-off node that drops its
quorate view within ``G``, is normal succession.  Separation is measured from the moment
the fault log separates the two nodes, so a link that flaps faster than ``G`` never makes
a split brain, while a real one (two sides of a cut both quorate) shows as soon as it
lasts ``G``.  Independently, two quorate views held at overlapping times (any overlap, no
grace, no fault condition) whose member sets are disjoint are a split brain too (with a
strict majority quorum two quorate member sets must intersect).  Disagreements longer than
``G`` that were not a split brain are listed as ``prolonged_divergence`` (a warning to
investigate, not a violation: the two nodes could talk); the longest disagreement and the
longest separated one are reported (``max_concurrent_quorate_ms``,
``max_separated_quorate_ms``) to show the margin.

A second warning, ``stale_quorate``, is a node that holds a quorate view of ring ``R`` for
longer than ``G`` after another member of ``R`` left it (reported another ring, or was
killed or stopped): the node still acts as quorate in a ring that no longer exists as
such (``max_stale_quorate_ms`` is the longest).

**(b) Ring disagreement.**  Every ``nodelist`` and ``quorum`` event of every node (accepted
or not) maps its ring id to its member list; two different lists for one ring id are a
violation.  So is a node reporting a ring without itself, and two nodes reporting the same
ring with different ``quorate`` (the quorum of a ring is computed from the same inputs on
every member).

**(c) Seq regression.**  Per node, over all its events in order, across daemon restarts
(the seq is persisted): when the ring id changes, the new seq must be higher than every
seq reported before by that node.

**(d) Convergence after a heal.**  A driver ``heal`` record (``t``: every fault removed,
restarted daemons READY) opens a window that ends at the ``t0`` of the next driver action.
The *active* nodes are those not down and not paused after the heal.  *Agreement* holds at
time ``t`` when every active node holds the same ring, whose members are exactly the
active nodes, with ``quorate`` equal to "the active nodes are a strict majority of the
nodelist".  The convergence time is from the heal to the start of the last stretch of
agreement that lasts until the end of the window (0 if agreement held throughout;
``from_step_start_ms`` also counts the heal step's own resumes and restarts); no
agreement at the end of the window is a violation, and so is a convergence time above
``2 x (token + consensus)``.

**(e) Quorum arithmetic** (extra, the configuration is a plain majority): every
``quorum`` event must have ``quorate == (2 x len(members) > number of nodes)``.
"""

from __future__ import annotations

import bisect
import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Ring = tuple[int, int]

DEFAULT_MARGIN_MS = 500
INFO_KINDS = frozenset({"converged", "convergence_timeout", "note", "client_start"})
"""Driver records that are not actions (they do not end a heal's window)."""


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (a torn last line is ignored)."""
    out: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


@dataclass(frozen=True, slots=True)
class Held:
    """One node holding one view during ``[start, end)``."""

    node: int
    ring: Ring
    members: tuple[int, ...]
    quorate: int
    start: float
    end: float


def _ring(rec: dict[str, Any]) -> Ring:
    return int(rec["ring"][0]), int(rec["ring"][1])


def _fmt_ring(r: Ring) -> str:
    return f"{r[0]}.{r[1]:x}"


def held_views(node: int, trace: Sequence[dict[str, Any]], driver: Sequence[dict[str, Any]],
               t_end: float) -> list[Held]:
    """The views node ``node`` held (quorate or not), per the rules of the module."""
    events: list[tuple[float, int, str, dict[str, Any]]] = []
    for rec in driver:
        if rec.get("args", {}).get("node") != node:
            continue
        kind = rec["kind"]
        if kind in ("kill", "stop", "pause", "start"):
            events.append((float(rec["t0"]), 0, kind, rec))
        elif kind == "resume":
            events.append((float(rec["t"]), 0, kind, rec))
    for k, rec in enumerate(trace):
        events.append((float(rec["t"]), 1 + k, "trace", rec))
    events.sort(key=lambda e: (e[0], e[1]))

    out: list[Held] = []
    alive = False
    connected = False
    paused = False
    view: tuple[Ring, tuple[int, ...], int] | None = None
    open_since: float | None = None

    def close(t: float) -> None:
        nonlocal open_since
        if open_since is not None and view is not None:
            out.append(Held(node, view[0], view[1], view[2], open_since, t))
        open_since = None

    def reopen(t: float) -> None:
        nonlocal open_since
        if alive and connected and not paused and view is not None:
            open_since = t

    for t, _, kind, rec in events:
        if kind in ("kill", "stop"):
            close(t)
            alive = connected = paused = False
            view = None
        elif kind == "start":
            close(t)
            alive, connected, paused, view = True, False, False, None
        elif kind == "pause":
            close(t)
            paused = True
        elif kind == "resume":
            paused = False
            if open_since is None:
                reopen(t)
        else:
            tkind = rec.get("kind")
            if tkind == "connect":
                close(t)
                connected = alive
                view = None
            elif tkind in ("disconnect", "exit", "giveup"):
                close(t)
                connected = False
                view = None
            elif tkind == "quorum" and alive and connected:
                close(t)
                view = (_ring(rec), tuple(int(m) for m in rec["members"]), int(rec["quorate"]))
                reopen(t)
    close(max(t_end, events[-1][0]) if events else t_end)
    return out


@dataclass(frozen=True, slots=True)
class NetPoint:
    """The fault state from time ``t`` on."""

    t: float
    cut: frozenset[tuple[int, int]]
    down: frozenset[int]
    paused: frozenset[int]


def net_timeline(driver: Sequence[dict[str, Any]]) -> list[NetPoint]:
    """The fault state after each driver record, in time order."""
    pts = [NetPoint(float(r["t"]), frozenset((int(a), int(b)) for a, b in r.get("cut", [])),
                    frozenset(int(x) for x in r.get("down", [])),
                    frozenset(int(x) for x in r.get("paused", [])))
           for r in driver if "t" in r]
    pts.sort(key=lambda p: p.t)
    return pts


def _state_at(points: Sequence[NetPoint], t: float) -> NetPoint | None:
    lo, hi = 0, len(points)
    while lo < hi:  # last point with p.t <= t
        mid = (lo + hi) // 2
        if points[mid].t <= t:
            lo = mid + 1
        else:
            hi = mid
    return points[lo - 1] if lo > 0 else None


def separated(cut: frozenset[tuple[int, int]], a: Iterable[int], b: Iterable[int]) -> bool:
    """Every x of ``a`` and y of ``b`` have x -> y or y -> x dropped entirely."""
    bs = list(b)
    return all((x, y) in cut or (y, x) in cut for x in a for y in bs)


# ====================================================================== the checks
@dataclass
class SplitBrainFindings:
    """What rule (a) found."""

    split_brains: list[dict[str, Any]]
    prolonged: list[dict[str, Any]]
    max_concurrent_s: float
    """Longest stretch of two nodes quorate in different rings."""
    max_separated_s: float
    """Longest such stretch with the two nodes separated all along."""


def _quorate_ring_at(intervals: Sequence[Held], starts: Sequence[float], t: float
                     ) -> Held | None:
    k = bisect.bisect_right(starts, t) - 1
    if k >= 0 and intervals[k].start <= t < intervals[k].end:
        return intervals[k]
    return None


def check_split_brain(held: Sequence[Held], net: Sequence[NetPoint], grace_s: float
                      ) -> SplitBrainFindings:
    """Rule (a), node pair by node pair: split brains (separated disagreement longer than
    the grace, and disjoint quorate member sets at any overlap) and prolonged
    disagreements (warnings)."""
    out = SplitBrainFindings([], [], 0.0, 0.0)
    by_node: dict[int, list[Held]] = {}
    for h in held:
        if h.quorate and h.end > h.start:
            by_node.setdefault(h.node, []).append(h)
    for hs in by_node.values():
        hs.sort(key=lambda h: h.start)
    starts = {n: [h.start for h in hs] for n, hs in by_node.items()}
    net_times = [p.t for p in net]
    disjoint_seen: set[tuple[Ring, Ring]] = set()
    nodes = sorted(by_node)
    for i, x in enumerate(nodes):
        for y in nodes[i + 1:]:
            times = sorted({h.start for h in by_node[x]} | {h.end for h in by_node[x]}
                           | {h.start for h in by_node[y]} | {h.end for h in by_node[y]}
                           | set(net_times))
            conc: dict[str, Any] | None = None
            sep: dict[str, Any] | None = None

            def record(run: dict[str, Any], end: float, xy: tuple[int, int] = (x, y)
                       ) -> dict[str, Any]:
                return {"nodes": list(xy), "since": run["since"], "until": end,
                        "overlap_ms": round(1000 * (end - run["since"])),
                        "rings": [[_fmt_ring(a), _fmt_ring(b)] for a, b in run["rings"]],
                        "members": {_fmt_ring(r): list(m) for r, m in run["members"].items()},
                        **({"cut": sorted(run["cut"])} if "cut" in run else {})}

            for k in range(len(times) - 1):
                a = times[k]
                hx = _quorate_ring_at(by_node[x], starts[x], a)
                hy = _quorate_ring_at(by_node[y], starts[y], a)
                diverge = hx is not None and hy is not None and hx.ring != hy.ring
                st = _state_at(net, a)
                cut = st.cut if st is not None else frozenset()
                apart = (x, y) in cut or (y, x) in cut
                if sep is not None and not (diverge and apart):
                    length = a - sep["since"]
                    out.max_separated_s = max(out.max_separated_s, length)
                    if length > grace_s:
                        out.split_brains.append(record(sep, a))
                        assert conc is not None
                        conc["flagged"] = True
                    sep = None
                if conc is not None and not diverge:
                    length = a - conc["since"]
                    out.max_concurrent_s = max(out.max_concurrent_s, length)
                    if length > grace_s and not conc["flagged"]:
                        out.prolonged.append(record(conc, a))
                    conc = None
                if not diverge:
                    continue
                assert hx is not None and hy is not None
                pair = (min(hx.ring, hy.ring), max(hx.ring, hy.ring))
                if conc is None:
                    conc = {"since": a, "rings": [], "members": {}, "flagged": False}
                for run in (conc, sep):
                    if run is not None and pair not in run["rings"]:
                        run["rings"].append(pair)
                        run["members"][hx.ring] = hx.members
                        run["members"][hy.ring] = hy.members
                if apart:
                    if sep is None:
                        sep = {"since": a, "rings": [pair], "cut": set(),
                               "members": {hx.ring: hx.members, hy.ring: hy.members}}
                    sep["cut"] |= {c for c in ((x, y), (y, x)) if c in cut}
                if not set(hx.members) & set(hy.members) and pair not in disjoint_seen:
                    disjoint_seen.add(pair)
                    out.split_brains.append({
                        "nodes": [x, y], "since": a, "disjoint": True,
                        "rings": [[_fmt_ring(hx.ring), _fmt_ring(hy.ring)]],
                        "members": {_fmt_ring(hx.ring): list(hx.members),
                                    _fmt_ring(hy.ring): list(hy.members)}})
                    conc["flagged"] = True
            if times:
                end = times[-1]
                if sep is not None:
                    length = end - sep["since"]
                    out.max_separated_s = max(out.max_separated_s, length)
                    if length > grace_s:
                        out.split_brains.append(record(sep, end))
                        assert conc is not None
                        conc["flagged"] = True
                if conc is not None:
                    length = end - conc["since"]
                    out.max_concurrent_s = max(out.max_concurrent_s, length)
                    if length > grace_s and not conc["flagged"]:
                        out.prolonged.append(record(conc, end))
    disjoint = [r for r in out.split_brains if r.get("disjoint")]
    out.split_brains = _episodes([r for r in out.split_brains if not r.get("disjoint")]) \
        + disjoint
    out.prolonged = _episodes(out.prolonged)
    return out


def _episodes(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Node-pair records merged into episodes (records overlapping in time)."""
    out: list[dict[str, Any]] = []
    for r in sorted(records, key=lambda r: r["since"]):
        cur = out[-1] if out else None
        if cur is None or r["since"] >= cur["until"]:
            out.append({"since": r["since"], "until": r["until"], "overlap_ms": r["overlap_ms"],
                        "pairs": [r["nodes"]], "rings": list(r["rings"]),
                        "members": dict(r["members"]),
                        **({"cut": list(r["cut"])} if "cut" in r else {})})
            continue
        cur["until"] = max(cur["until"], r["until"])
        cur["overlap_ms"] = max(cur["overlap_ms"], r["overlap_ms"])
        cur["pairs"].append(r["nodes"])
        cur["rings"] += [x for x in r["rings"] if x not in cur["rings"]]
        cur["members"].update(r["members"])
        if "cut" in r:
            cur["cut"] = sorted({tuple(c) for c in cur.get("cut", [])}
                                | {tuple(c) for c in r["cut"]})
    for e in out:
        e["nodes"] = sorted({n for p in e["pairs"] for n in p})
    return out


def ring_departures(traces: Mapping[int, Sequence[dict[str, Any]]],
                    driver: Sequence[dict[str, Any]]) -> dict[tuple[int, Ring], float]:
    """``(node, ring) -> t``: when the node left the ring after first reporting it (it
    reported another ring, or its daemon was killed or stopped)."""
    out: dict[tuple[int, Ring], float] = {}
    for node, trace in traces.items():
        events: list[tuple[float, Ring | None]] = [
            (float(r["t"]), _ring(r)) for r in trace if r.get("kind") in ("nodelist", "quorum")]
        events += [(float(r["t0"]), None) for r in driver
                   if r["kind"] in ("kill", "stop") and r.get("args", {}).get("node") == node]
        events.sort(key=lambda e: e[0])
        current: Ring | None = None
        for t, ring in events:
            if current is not None and ring != current:
                out.setdefault((node, current), t)
            current = ring
    return out


def check_stale(held: Sequence[Held], departures: Mapping[tuple[int, Ring], float],
                grace_s: float) -> tuple[list[dict[str, Any]], float]:
    """(warnings, longest): a node holding a quorate view of ring R for longer than the
    grace after another member of R had left R."""
    warnings: list[dict[str, Any]] = []
    longest = 0.0
    for h in held:
        if not h.quorate:
            continue
        gone = [departures[(m, h.ring)] for m in h.members
                if m != h.node and (m, h.ring) in departures]
        if not gone or min(gone) >= h.end:
            continue
        stale = h.end - max(h.start, min(gone))
        longest = max(longest, stale)
        if stale > grace_s:
            warnings.append({"node": h.node, "ring": _fmt_ring(h.ring),
                             "members": list(h.members), "held": [h.start, h.end],
                             "first_member_left": min(gone), "stale_ms": round(1000 * stale)})
    return warnings, longest


def check_rings(traces: Mapping[int, Sequence[dict[str, Any]]], n_nodes: int
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(ring disagreements, seq regressions, quorum arithmetic mismatches): (b), (c), (e)."""
    members: dict[Ring, tuple[tuple[int, ...], int, float]] = {}
    quorate: dict[Ring, tuple[int, int, float]] = {}
    disagreements: list[dict[str, Any]] = []
    regressions: list[dict[str, Any]] = []
    mismatches: list[dict[str, Any]] = []
    reported: set[tuple[Ring, int, str, object]] = set()
    for node in sorted(traces):
        last: Ring | None = None
        max_seq = -1
        for rec in traces[node]:
            if rec.get("kind") not in ("nodelist", "quorum"):
                continue
            ring = _ring(rec)
            mem = tuple(int(m) for m in rec["members"])
            t = float(rec["t"])
            seen = members.setdefault(ring, (mem, node, t))
            if seen[0] != mem and (ring, node, "members", mem) not in reported:
                reported.add((ring, node, "members", mem))
                disagreements.append({"ring": _fmt_ring(ring), "node": node, "t": t,
                                      "members": list(mem), "other_node": seen[1],
                                      "other_members": list(seen[0]), "other_t": seen[2]})
            if node not in mem and (ring, node, "self", mem) not in reported:
                reported.add((ring, node, "self", mem))
                disagreements.append({"ring": _fmt_ring(ring), "node": node, "t": t,
                                      "members": list(mem), "self_missing": True})
            if rec["kind"] == "quorum":
                q = int(rec["quorate"])
                seen_q = quorate.setdefault(ring, (q, node, t))
                if seen_q[0] != q and (ring, node, "quorate", q) not in reported:
                    reported.add((ring, node, "quorate", q))
                    disagreements.append({"ring": _fmt_ring(ring), "node": node, "t": t,
                                          "quorate": q, "other_node": seen_q[1],
                                          "other_quorate": seen_q[0]})
                if q != int(2 * len(mem) > n_nodes):
                    mismatches.append({"ring": _fmt_ring(ring), "node": node, "t": t,
                                       "members": list(mem), "quorate": q})
            if ring != last:
                if ring[1] <= max_seq:
                    regressions.append({"node": node, "t": t, "ring": _fmt_ring(ring),
                                        "previous": _fmt_ring(last) if last else None,
                                        "max_seq_before": f"{max_seq:x}"})
                last = ring
                max_seq = max(max_seq, ring[1])
    return disagreements, regressions, mismatches


def _agree(by_node: dict[int, list[Held]], active: Sequence[int], want_q: int,
           t: float) -> bool:
    """Every active node holds the same ring, of exactly the active nodes, quorate as
    expected, at time ``t``."""
    ring: Ring | None = None
    for i in active:
        cur = [h for h in by_node.get(i, []) if h.start <= t < h.end]
        if not cur:
            return False
        h = cur[-1]
        if h.members != tuple(active) or h.quorate != want_q:
            return False
        if ring is None:
            ring = h.ring
        elif h.ring != ring:
            return False
    return True


def check_convergence(held: Sequence[Held], driver: Sequence[dict[str, Any]],
                      nodes: Sequence[int], bound_s: float) -> list[dict[str, Any]]:
    """One record per driver ``heal``: rule (d)."""
    actions = sorted((r for r in driver if r["kind"] not in INFO_KINDS),
                     key=lambda r: float(r["t0"]))
    by_node: dict[int, list[Held]] = {}
    for h in held:
        by_node.setdefault(h.node, []).append(h)
    out: list[dict[str, Any]] = []
    for k, rec in enumerate(actions):
        if rec["kind"] != "heal":
            continue
        th = float(rec["t"])
        later = [float(r["t0"]) for r in actions[k + 1:] if float(r["t0"]) >= th]
        we = min(later) if later else max((h.end for h in held), default=th)
        active = [i for i in nodes if i not in rec.get("down", []) and
                  i not in rec.get("paused", [])]
        want_q = int(2 * len(active) > len(nodes))
        points = sorted({th} | {h.start for h in held if th < h.start < we}
                        | {h.end for h in held if th < h.end < we})

        since: float | None = None
        for p in points:
            if _agree(by_node, active, want_q, p):
                if since is None:
                    since = p
            else:
                since = None
        item: dict[str, Any] = {"step": rec.get("step"), "t": th,
                                "window_s": round(we - th, 3), "active": active}
        if since is None:
            item.update(converged=False, converge_ms=None, flagged=True)
        else:
            ms = round(1000 * (since - th), 1)
            item.update(converged=True, converge_ms=ms, flagged=ms > 1000 * bound_s)
            started = rec.get("args", {}).get("step_started")
            if started is not None:  # including the restarts and resumes of the heal
                item["from_step_start_ms"] = round(1000 * (since - float(started)), 1)
        out.append(item)
    return out


def check(traces: Mapping[int, Sequence[dict[str, Any]]], driver: Sequence[dict[str, Any]],
          nodes: Sequence[int], token_ms: int, consensus_ms: int,
          margin_ms: int = DEFAULT_MARGIN_MS) -> dict[str, Any]:
    """Every rule of the module docstring; a JSON-ready report."""
    grace_s = (token_ms + consensus_ms + margin_ms) / 1000
    bound_s = 2 * (token_ms + consensus_ms) / 1000
    t_end = max([float(r["t"]) for r in driver]
                + [float(r["t"]) for tr in traces.values() for r in tr] + [0.0])
    held: list[Held] = []
    for i in nodes:
        held += held_views(i, traces.get(i, []), driver, t_end)
    net = net_timeline(driver)
    sb = check_split_brain(held, net, grace_s)
    split, prolonged = sb.split_brains, sb.prolonged
    stale, longest_stale = check_stale(held, ring_departures(traces, driver), grace_s)
    disagreements, regressions, mismatches = check_rings(traces, len(nodes))
    heals = check_convergence(held, driver, nodes, bound_s)
    times = [h["converge_ms"] for h in heals if h["converge_ms"] is not None]
    violations: list[str] = []
    for s in split:
        what = "disjoint quorate member sets" if s.get("disjoint") else \
            f"quorate in different rings while separated for {s['overlap_ms']} ms " \
            f"(node pairs {s['pairs']})"
        rings = s["rings"][:3] + (["..."] if len(s["rings"]) > 3 else [])
        members = {r: m for r, m in s["members"].items() if any(r in p for p in rings)}
        violations.append(f"split brain: nodes {s['nodes']} {what}, rings {rings} "
                          f"({len(s['rings'])} ring pairs), members {members}, "
                          f"from t={s['since']:.3f}")
    for d in disagreements:
        violations.append(f"ring disagreement: {json.dumps(d, sort_keys=True)}")
    for r in regressions:
        violations.append(f"seq regression: node {r['node']} reported ring {r['ring']} after "
                          f"seq {r['max_seq_before']} (t={r['t']:.3f})")
    for m in mismatches:
        violations.append(f"quorum arithmetic: node {m['node']} ring {m['ring']} members "
                          f"{m['members']} quorate={m['quorate']} (t={m['t']:.3f})")
    for h in heals:
        if not h["converged"]:
            violations.append(f"no convergence after the heal of step {h['step']} "
                              f"(window {h['window_s']} s)")
        elif h["flagged"]:
            violations.append(f"slow convergence after the heal of step {h['step']}: "
                              f"{h['converge_ms']} ms > {1000 * bound_s:.0f} ms")
    return {
        "grace_ms": round(1000 * grace_s),
        "convergence_bound_ms": round(1000 * bound_s),
        "split_brains": split,
        "ring_disagreements": disagreements,
        "seq_regressions": regressions,
        "quorum_mismatches": mismatches,
        "prolonged_divergence": prolonged,
        "stale_quorate": stale,
        "max_stale_quorate_ms": round(1000 * longest_stale),
        "max_concurrent_quorate_ms": round(1000 * sb.max_concurrent_s),
        "max_separated_quorate_ms": round(1000 * sb.max_separated_s),
        "heals": heals,
        "convergence_ms": {
            "count": len(times),
            "median": statistics.median(times) if times else None,
            "max": max(times) if times else None,
        },
        "quorate_views_checked": sum(1 for h in held if h.quorate),
        "violations": violations,
    }


def check_dir(work_dir: Path, nodes: Sequence[int], token_ms: int, consensus_ms: int,
              margin_ms: int = DEFAULT_MARGIN_MS) -> dict[str, Any]:
    """``check`` on the files of a ``ChaosCluster`` work directory."""
    traces = {i: load_jsonl(work_dir / f"trace-{i}.jsonl") for i in nodes}
    driver = load_jsonl(work_dir / "driver.jsonl")
    return check(traces, driver, nodes, token_ms, consensus_ms, margin_ms)
