"""Small value types shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType

NodeId = NewType("NodeId", int)
"""A 32-bit Corosync node id; 0 is reserved (the quorum device pseudo-node)."""

NODEID_MAX = 0xFFFFFFFF
SEQ_MAX = 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True, slots=True, order=False)
class RingId:
    """A membership (ring) identifier: representative node id and sequence number.

    Rings are ordered by ``seq`` first (the sequence strictly increases on every
    node), then by representative.  The text form is Corosync's ``rep.seq`` in
    lowercase hex, for example ``1.9d``.
    """

    rep: int
    seq: int

    def sort_key(self) -> tuple[int, int]:
        """Return the key rings are ordered by: (seq, rep)."""
        return (self.seq, self.rep)

    def __lt__(self, other: RingId) -> bool:
        return self.sort_key() < other.sort_key()

    def __le__(self, other: RingId) -> bool:
        return self.sort_key() <= other.sort_key()

    def __gt__(self, other: RingId) -> bool:
        return self.sort_key() > other.sort_key()

    def __ge__(self, other: RingId) -> bool:
        return self.sort_key() >= other.sort_key()

    def __str__(self) -> str:
        return f"{self.rep:x}.{self.seq:x}"


NULL_RING = RingId(0, 0)
"""The ring id Corosync reports before any provider view exists."""
