"""Typed events of the Pythonic clients (``facade`` and ``aio``).

Each is a frozen, slotted dataclass built from one callback of the Corosync-shaped
library; ``Disconnected`` ends every stream (the daemon went away).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from pyquorum.types import RingId

__all__ = [
    "Disconnected",
    "Event",
    "ExpectedVotesEvent",
    "NodelistEvent",
    "QuorumEvent",
    "VotequorumEvent",
    "VotequorumNodelistEvent",
]


@dataclass(frozen=True, slots=True)
class QuorumEvent:
    """The quorum service's quorum notification (V1): quorate state of a ring."""

    quorate: bool
    ring: RingId
    members: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class NodelistEvent:
    """The quorum service's nodelist notification: members, and who joined and left
    relative to the last completed view (both empty in a trackstart snapshot)."""

    ring: RingId
    members: tuple[int, ...]
    joined: tuple[int, ...]
    left: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class VotequorumEvent:
    """votequorum's quorum notification: ``nodes`` are ``(nodeid, state)`` pairs
    (nodeid 0: the qdevice), ``context`` is the one given to ``track``."""

    quorate: bool
    nodes: tuple[tuple[int, int], ...]
    context: int


@dataclass(frozen=True, slots=True)
class ExpectedVotesEvent:
    """votequorum's expected-votes notification."""

    expected_votes: int
    context: int


@dataclass(frozen=True, slots=True)
class VotequorumNodelistEvent:
    """votequorum's nodelist notification (the ring a qdevice must poll with)."""

    ring: RingId
    members: tuple[int, ...]
    context: int


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection to the daemon is lost; no event follows."""


Event: TypeAlias = (QuorumEvent | NodelistEvent | VotequorumEvent | ExpectedVotesEvent
                    | VotequorumNodelistEvent | Disconnected)
"""Any event of the Pythonic clients."""
