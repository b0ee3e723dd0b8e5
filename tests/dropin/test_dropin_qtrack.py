"""The tier's C client (``qtrack.c``: libquorum, model V1, ``CS_TRACK_CHANGES |
CS_TRACK_CURRENT``, poll + ``CS_DISPATCH_ALL``) and the Python client (``pyquorum.client``,
native backend: ``tests/chaos/chaos_client.py``) watch the same pyquorumd node at the same
time, through the kill of another node and its restart: both must report the same
callbacks in the same order, ring ids included (one daemon feeds both)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from dropcluster import CMD_TIMEOUT_S, PyquorumCluster, wait_until

pytestmark = pytest.mark.dropin

WATCHED = 1
LIFETIME_S = 120
CALLBACKS = ("nodelist", "quorum")


def callbacks(path: Path) -> list[dict[str, Any]]:
    """The callback records of a trace, without what the two clients cannot share (``t``,
    the process)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if not line.endswith("}"):
            continue  # a line still being written
        rec = json.loads(line)
        if rec["kind"] in CALLBACKS:
            del rec["t"]
            out.append(rec)
    return out


def last_quorum(records: list[dict[str, Any]]) -> tuple[list[int], int] | None:
    quorum = [r for r in records if r["kind"] == "quorum"]
    return (quorum[-1]["members"], quorum[-1]["quorate"]) if quorum else None


def test_c_client_and_python_client_see_the_same_callbacks(
        pyquorum_cluster: PyquorumCluster, qtrack: Path) -> None:
    pq = pyquorum_cluster
    c_trace = pq.dir / "qtrack.jsonl"
    py_trace = pq.trace_path(WATCHED)
    with open(c_trace, "wb") as out:
        proc = subprocess.Popen(["ip", "netns", "exec", pq.ns(WATCHED), str(qtrack),
                                 str(WATCHED), str(LIFETIME_S)],
                                stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    pq.all_procs.append(proc)  # stopped by the cluster's close() whatever happens
    pq.start_client(WATCHED)

    def both_at(members: list[int], quorate: int) -> bool:
        return (last_quorum(callbacks(c_trace)) == (members, quorate)
                == last_quorum(callbacks(py_trace)))

    wait_until(lambda: both_at([1, 2, 3], 1), "both clients' first view")
    pq.kill(3)
    wait_until(lambda: both_at([1, 2], 1), "both clients' view without node 3")
    pq.start_daemons([3])
    wait_until(lambda: both_at([1, 2, 3], 1), "both clients' view with node 3 back")

    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=CMD_TIMEOUT_S)
    assert proc.returncode == 0, err
    c_lines = [json.loads(line) for line in c_trace.read_text().splitlines()]
    assert [r["kind"] for r in c_lines[:2]] == ["start", "connect"]
    assert c_lines[1]["quorum_type"] == 1 and c_lines[-1]["kind"] == "exit"

    c_events, py_events = callbacks(c_trace), callbacks(py_trace)
    assert c_events == py_events
    kinds = [(r["kind"], r["members"], r.get("joined"), r.get("left")) for r in c_events]
    assert kinds[:2] == [("nodelist", [1, 2, 3], [], []), ("quorum", [1, 2, 3], None, None)]
    assert ("nodelist", [1, 2], [], [3]) in kinds
    assert ("nodelist", [1, 2, 3], [3], []) in kinds
    rings = [tuple(r["ring"]) for r in c_events]
    assert rings == sorted(rings, key=lambda ring: ring[1]), "ring seqs must not go back"
