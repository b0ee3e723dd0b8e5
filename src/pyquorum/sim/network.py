"""The simulated network: loss, delay (hence reordering), duplication, partitions.

It carries the real encrypted datagrams the engines produce. Every decision comes
from one ``random.Random`` derived from the run's seed, so a run replays exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class NetworkFaults:
    """Probabilities and delays of the simulated links (all times in ms)."""

    loss: float = 0.0
    duplicate: float = 0.0
    delay_min_ms: int = 1
    delay_max_ms: int = 3
    spike: float = 0.0
    """Probability that a datagram takes an extra ``spike_ms`` (reordering)."""
    spike_ms: int = 200


@dataclass(slots=True)
class Network:
    """Decides, for each datagram sent, when (and whether) it arrives."""

    rng: random.Random
    faults: NetworkFaults = field(default_factory=NetworkFaults)
    blocked: set[tuple[int, int]] = field(default_factory=set)
    """Directed (source, destination) pairs that drop everything."""
    dropped: int = 0
    delivered: int = 0

    def arrivals(self, source: int, destination: int, now_ms: int) -> list[int]:
        """The arrival times of one datagram (empty: lost; two: duplicated)."""
        if (source, destination) in self.blocked:
            self.dropped += 1
            return []
        f = self.faults
        if f.loss and self.rng.random() < f.loss:
            self.dropped += 1
            return []
        copies = 2 if f.duplicate and self.rng.random() < f.duplicate else 1
        out = []
        for _ in range(copies):
            delay = self.rng.randint(f.delay_min_ms, f.delay_max_ms)
            if f.spike and self.rng.random() < f.spike:
                delay += self.rng.randint(1, f.spike_ms)
            out.append(now_ms + delay)
        self.delivered += copies
        return out

    def split(self, groups: list[list[int]], all_nodes: list[int]) -> None:
        """Symmetric partition: nodes talk only inside their group (unnamed nodes alone)."""
        group_of: dict[int, int] = {}
        for i, g in enumerate(groups):
            for n in g:
                group_of[n] = i
        next_id = len(groups)
        for n in all_nodes:
            if n not in group_of:
                group_of[n] = next_id
                next_id += 1
        self.blocked = {
            (a, b) for a in all_nodes for b in all_nodes if a != b and group_of[a] != group_of[b]
        }

    def block(self, source: int, destination: int) -> None:
        """One-way partition: drop everything from ``source`` to ``destination``."""
        self.blocked.add((source, destination))

    def heal(self) -> None:
        """Remove every partition."""
        self.blocked = set()
