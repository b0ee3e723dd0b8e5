"""Tracking client of the chaos tier: one per node, run inside the node's namespace.

    python chaos_client.py --node N --run-dir DIR --out TRACE.jsonl [--reconnect-timeout S]

Uses only the public client library (``pyquorum.client.quorum``: model V1,
``CS_TRACK_CURRENT | CS_TRACK_CHANGES``, a select + ``CS_DISPATCH_ALL`` loop) and appends
one JSON object per line to ``--out``, flushed at once, each with ``t`` =
``time.monotonic()`` (CLOCK_MONOTONIC is shared by every network namespace, so traces of
different nodes and the driver's log compare directly):

    {"t", "node", "kind": "start", "pid"}
    {"t", "node", "kind": "connect", "quorum_type"}
    {"t", "node", "kind": "nodelist", "ring": [rep, seq], "members", "joined", "left"}
    {"t", "node", "kind": "quorum", "ring": [rep, seq], "quorate": 0|1, "members"}
    {"t", "node", "kind": "disconnect", "error"}        the daemon went away
    {"t", "node", "kind": "init_failed", "error"}       first failure of a retry series
    {"t", "node", "kind": "giveup"}                     no daemon for --reconnect-timeout s
    {"t", "node", "kind": "exit"}

After a disconnect it reconnects (every 20 ms, for at most ``--reconnect-timeout``
seconds, then it gives up and exits 3).  SIGTERM ends it (exit 0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import IO, Any

from pyquorum.client import quorum as q
from pyquorum.errors import CsError

RETRY_S = 0.02
POLL_S = 0.5


class Stop(Exception):
    """SIGTERM/SIGINT arrived."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Stop()


class Tracer:
    """Writes the trace lines."""

    def __init__(self, node: int, out: IO[str]) -> None:
        self.node = node
        self.out = out

    def emit(self, kind: str, **fields: Any) -> None:
        """One JSON line, flushed."""
        rec: dict[str, Any] = {"t": time.monotonic(), "node": self.node, "kind": kind}
        rec.update(fields)
        self.out.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.out.flush()

    def on_quorum(self, handle: int, quorate: int, ring: q.QuorumRingId,
                  members: list[int]) -> None:
        """V1 quorum callback."""
        self.emit("quorum", ring=[ring.nodeid, ring.seq], quorate=int(quorate),
                  members=sorted(members))

    def on_nodelist(self, handle: int, ring: q.QuorumRingId, members: list[int],
                    joined: list[int], left: list[int]) -> None:
        """V1 nodelist callback."""
        self.emit("nodelist", ring=[ring.nodeid, ring.seq], members=sorted(members),
                  joined=sorted(joined), left=sorted(left))


def _track(tracer: Tracer, handle: int) -> str:
    """Track until the daemon goes away; the error that ended it."""
    q.quorum_trackstart(handle, q.CS_TRACK_CURRENT | q.CS_TRACK_CHANGES)
    fd = q.quorum_fd_get(handle)
    while True:
        select.select([fd], [], [], POLL_S)
        try:
            q.quorum_dispatch(handle, q.CS_DISPATCH_ALL)
        except CsError as exc:
            return exc.code.name


def run(node: int, run_dir: str, out: IO[str], reconnect_timeout: float) -> int:
    """The client's loop; its exit code."""
    tracer = Tracer(node, out)
    data = q.QuorumModelV1Data(tracer.on_quorum, tracer.on_nodelist)
    lost_since = time.monotonic()
    failing = False
    try:
        tracer.emit("start", pid=os.getpid())
        while True:
            try:
                handle, qtype = q.quorum_model_initialize(q.QUORUM_MODEL_V1, data,
                                                          run_dir=run_dir)
            except CsError as exc:
                if not failing:
                    tracer.emit("init_failed", error=exc.code.name)
                    failing = True
                if time.monotonic() - lost_since > reconnect_timeout:
                    tracer.emit("giveup")
                    return 3
                select.select([], [], [], RETRY_S)
                continue
            failing = False
            tracer.emit("connect", quorum_type=qtype)
            try:
                error = _track(tracer, handle)
            except CsError as exc:  # trackstart refused: the daemon went away meanwhile
                error = exc.code.name
            finally:
                with contextlib.suppress(CsError):
                    q.quorum_finalize(handle)
            tracer.emit("disconnect", error=error)
            lost_since = time.monotonic()
    except Stop:
        tracer.emit("exit")
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--node", type=int, required=True)
    p.add_argument("--run-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--reconnect-timeout", type=float, default=600.0)
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with open(args.out, "a", encoding="utf-8") as out:
        return run(args.node, args.run_dir, out, args.reconnect_timeout)


if __name__ == "__main__":
    sys.exit(main())
