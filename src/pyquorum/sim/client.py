"""A simulated tracking client per node, writing qclient.py's JSON lines.

It behaves like the oracle's ``qclient.py --reconnect``: ``model_initialize(V1)``,
``getquorate``, ``trackstart(CURRENT|CHANGES)``, then one line per callback. It talks
to its node's engine through ``handle_command`` exactly as the IPC server will.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyquorum.core.engine import (
    NodeEngine,
    Notified,
    QuorumGetQuorate,
    QuorumGetType,
    QuorumTrackStart,
    Replied,
)
from pyquorum.core.tracking import (
    CS_TRACK_CHANGES,
    CS_TRACK_CURRENT,
    QUORUM_MODEL_V1,
    NodelistNotification,
    QuorumNotification,
)
from pyquorum.errors import CsErr
from pyquorum.types import RingId


def ring_json(ring: RingId) -> dict[str, int]:
    """qclient's ring id form."""
    return {"nodeid": ring.rep, "seq": ring.seq}


@dataclass(slots=True)
class SimClient:
    """One tracking client; ``lines`` are the trace in qclient's format."""

    node: int
    flags: int = CS_TRACK_CURRENT | CS_TRACK_CHANGES
    lines: list[dict[str, Any]] = field(default_factory=list)
    conn: int | None = None
    failing: bool = False
    _init: dict[str, Any] = field(default_factory=dict)
    _buffer: list[dict[str, Any]] = field(default_factory=list)
    _initialized: bool = False
    quorum_events: list[tuple[RingId, bool, tuple[int, ...]]] = field(default_factory=list)

    def _line(self, t_ms: int, kind: str, **fields: Any) -> dict[str, Any]:
        return {"t": t_ms / 1000.0, "node": self.node, "kind": kind, **fields}

    def connect_failed(self, t_ms: int) -> None:
        """initialize failed (no daemon): logged once per failure series, like qclient."""
        if not self.failing:
            self.lines.append(self._line(t_ms, "init_failed", rc=int(CsErr.CS_ERR_LIBRARY),
                                         rc_name="CS_ERR_LIBRARY"))
            self.failing = True

    def connect(self, engine: NodeEngine, conn: int, t_ms: int) -> None:
        """The daemon is up: initialize, getquorate, trackstart."""
        self.conn = conn
        self.failing = False
        self._init = {}
        self._buffer = []
        self._initialized = False
        self.quorum_events = []
        engine.connection_opened(conn)
        engine.handle_command(conn, QuorumGetType(QUORUM_MODEL_V1), t_ms)
        engine.handle_command(conn, QuorumGetQuorate(), t_ms)
        engine.handle_command(conn, QuorumTrackStart(self.flags), t_ms)

    def disconnected(self, t_ms: int) -> None:
        """The daemon died under us: dispatch returns CS_ERR_LIBRARY."""
        if self.conn is None:
            return
        self.conn = None
        self.lines.append(self._line(t_ms, "disconnect", rc=int(CsErr.CS_ERR_LIBRARY),
                                     rc_name="CS_ERR_LIBRARY"))

    def on_event(self, ev: Replied | Notified, t_ms: int) -> None:
        """An engine event addressed to our connection."""
        if isinstance(ev, Replied):
            cmd = ev.command
            if isinstance(cmd, QuorumGetType):
                self._init.update(rc=int(ev.error), quorum_type=ev.value)
            elif isinstance(cmd, QuorumGetQuorate):
                self._init.update(getquorate_rc=int(ev.error), getquorate=ev.value)
            elif isinstance(cmd, QuorumTrackStart):
                self._init.update(trackstart_flags=self.flags, trackstart_rc=int(ev.error))
                self.lines.append(self._line(t_ms, "init", **self._init))
                self.lines.extend(self._buffer)
                self._buffer = []
                self._initialized = True
            return
        note = ev.notification
        if isinstance(note, NodelistNotification):
            line = self._line(t_ms, "nodelist", ring_id=ring_json(note.ring),
                              members=list(note.members), joined=list(note.joined),
                              left=list(note.left))
        else:
            assert isinstance(note, QuorumNotification)
            line = self._line(t_ms, "quorum", quorate=note.quorate, ring_id=ring_json(note.ring),
                              members=list(note.members))
            self.quorum_events.append((note.ring, note.quorate, note.members))
        if self._initialized:
            self.lines.append(line)
        else:
            self._buffer.append(line)
