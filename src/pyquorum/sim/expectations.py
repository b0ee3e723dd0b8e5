"""Expectation lines of the scenario language: ``#= NODES field=value ...``.

A policy script (``tests/sim/scenarios/policy_*.scn``) follows each ``snapshot LABEL``
with comment lines that state what every running node must report at that point:
``quorate``/``inquorate``, ``view=1,2``, ``expected=3``, ``quorum=2``, ``flags=...``,
``flips=N`` (quorum callbacks outside a sync since the previous snapshot; 0 unless
given) and ``runtime.votequorum`` keys by the short names of ``RUNTIME_KEYS``.  The
simulator tier and the real-daemon tier read the same files through this parser.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyquorum.sim.scenario import ScenarioError

RUNTIME_KEYS = {"wfa": "wait_for_all_status", "lowest": "lowest_node_id",
                "highest_id": "highest_node_id", "ev_barrier": "ev_barrier",
                "evt_barrier": "ev_tracking_barrier"}
"""Short expectation names of ``runtime.votequorum`` keys."""


@dataclass
class Expectation:
    """One ``#=`` line: ``fields`` expected on each of ``nodes`` at snapshot ``label``."""

    label: str
    lineno: int
    nodes: tuple[int, ...]
    fields: dict[str, str]


def parse_expectations(text: str) -> list[Expectation]:
    """The ``#=`` lines of a script, each tied to the snapshot above it.

    Raises ``ScenarioError`` for a ``#=`` line before any snapshot, without nodes, or
    with a word that is neither a state nor ``field=value``.
    """
    out: list[Expectation] = []
    label: str | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("snapshot "):
            label = line.split(None, 1)[1]
        elif line.startswith("#="):
            words = line[2:].split()
            if label is None or not words:
                raise ScenarioError(lineno, "'#=' needs NODES after a snapshot")
            fields: dict[str, str] = {"flips": "0"}
            for w in words[1:]:
                if w in ("quorate", "inquorate"):
                    fields["state"] = w
                elif "=" in w:
                    k, v = w.split("=", 1)
                    fields[k] = v
                else:
                    raise ScenarioError(lineno, f"bad expectation {w!r}")
            if "state" in fields and "view" in fields:
                fields["callback"] = f"{fields['state']} view={fields['view']}"
            nodes = tuple(int(x) for x in words[0].split(","))
            out.append(Expectation(label, lineno, nodes, fields))
    return out
