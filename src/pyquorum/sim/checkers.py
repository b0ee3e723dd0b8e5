"""Safety checkers run after every simulation step (requirements R1, R2, R3, R7).

R7 is checked two ways: no two quorate views with disjoint members at any instant, and,
node pair by node pair, no two nodes that cannot talk (a partition or one-way block
between them) quorate in different rings for longer than token + consensus.

The quorum reference here is deliberately independent of ``core.votequorum``: for a
plain configuration (no two_node, LMS, ATB, downscale, EVT or runtime changes) a node
is quorate exactly when its view holds a strict majority of the nodelist's votes
(with wait_for_all, quorate still implies that majority).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyquorum.config.model import ClusterConfig
from pyquorum.types import RingId
from pyquorum.wire.messages import NodeInfo


def plain_majority_applies(config: ClusterConfig) -> bool:
    """True when quorum is a fixed strict majority of the nodelist votes."""
    q = config.quorum
    return (
        q.provider == "corosync_votequorum"
        and not q.two_node
        and not q.last_man_standing
        and not q.auto_tie_breaker
        and not q.allow_downscale
        and not q.expected_votes_tracking
        and q.expected_votes == 0
        and q.device is None
    )


@dataclass(slots=True)
class SafetyChecker:
    """Collects violations; a violation is a string naming the rule, time and nodes."""

    config: ClusterConfig
    violations: list[str] = field(default_factory=list)
    ring_members: dict[RingId, tuple[int, ...]] = field(default_factory=dict)
    ring_infos: dict[RingId, tuple[NodeInfo, ...]] = field(default_factory=dict)
    last_seq: dict[int, int] = field(default_factory=dict)
    runtime_changes: bool = False
    """Set when a scenario changes expected votes or votes (R7 then allows more)."""
    _votes: dict[int, int] = field(init=False)
    _total: int = field(init=False)
    _separated_since: dict[tuple[int, int], int] = field(default_factory=dict)
    _separated_flagged: set[tuple[int, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._votes = {n.nodeid: n.quorum_votes for n in self.config.nodes}
        self._total = sum(self._votes.values())

    def majority(self, members: tuple[int, ...]) -> bool:
        """Whether ``members`` hold a strict majority of the nodelist votes."""
        return 2 * sum(self._votes.get(m, 0) for m in members) > self._total

    def on_view(self, t_ms: int, node: int, ring: RingId, members: tuple[int, ...],
                quorate: bool, infos: tuple[NodeInfo, ...]) -> None:
        """A node installed a view (R1, R2, R3, and the quorum reference)."""
        seen = self.ring_members.setdefault(ring, members)
        if seen != members:
            self._fail(t_ms, f"R1 ring {ring} installed by node {node} with {list(members)}, "
                             f"by others with {list(seen)}")
        prev = self.last_seq.get(node)
        if prev is not None and ring.seq <= prev:
            self._fail(t_ms, f"R2 node {node} installed ring {ring} after seq {prev:x}")
        self.last_seq[node] = ring.seq
        if node not in members:
            self._fail(t_ms, f"R1 node {node} installed ring {ring} without itself")
        seen_infos = self.ring_infos.setdefault(ring, infos)
        if seen_infos != infos:
            self._fail(t_ms, f"R3 ring {ring}: node {node} computed quorum from other inputs")
        if self.reference_applies():
            want = self.majority(members)
            if quorate and not want:
                self._fail(t_ms, f"R7 node {node} quorate in ring {ring} {list(members)} "
                                 "without a majority")
            if want and not quorate and self.config.quorum.wait_for_all is not True:
                self._fail(t_ms, f"R3 node {node} inquorate in ring {ring} {list(members)} "
                                 "with a majority")

    def reference_applies(self) -> bool:
        """The plain-majority reference is valid for this run."""
        return plain_majority_applies(self.config) and not self.runtime_changes

    def check_split_brain(
        self, t_ms: int, views: dict[int, tuple[RingId, tuple[int, ...]]]
    ) -> None:
        """R7: no two quorate views with disjoint members (where the config forbids it)."""
        if not self.reference_applies():
            return
        items = sorted(views.items())
        for i, (a, (ra, ma)) in enumerate(items):
            for b, (rb, mb) in items[i + 1:]:
                if ra != rb and not set(ma) & set(mb):
                    self._fail(t_ms, f"R7 split brain: node {a} quorate in {ra} {list(ma)}, "
                                     f"node {b} quorate in {rb} {list(mb)}")

    def check_separated(self, t_ms: int, views: dict[int, tuple[RingId, bool]],
                        blocked: set[tuple[int, int]], grace_ms: int) -> None:
        """R7 per node pair (the chaos checker's rule): two nodes that cannot exchange
        messages both ways (any direction blocked) must not both stay quorate in
        different rings for longer than ``grace_ms`` (token + consensus: the time a
        correct node needs to notice it lost its peers and agree on a new view)."""
        if not self.reference_applies():
            return
        active: set[tuple[int, int]] = set()
        items = sorted(views.items())
        for i, (a, (ra, qa)) in enumerate(items):
            for b, (rb, qb) in items[i + 1:]:
                if qa and qb and ra != rb and ((a, b) in blocked or (b, a) in blocked):
                    active.add((a, b))
        for pair in list(self._separated_since):
            if pair not in active:
                del self._separated_since[pair]
        for pair in active:
            since = self._separated_since.setdefault(pair, t_ms)
            if t_ms - since > grace_ms and pair not in self._separated_flagged:
                self._separated_flagged.add(pair)
                self._fail(t_ms, f"R7 split brain: nodes {pair[0]} and {pair[1]} cannot talk "
                                 f"and both stayed quorate in different rings since "
                                 f"t={since}ms (more than {grace_ms} ms)")
            elif t_ms - since <= grace_ms:
                self._separated_flagged.discard(pair)

    def _fail(self, t_ms: int, text: str) -> None:
        self.violations.append(f"t={t_ms}ms {text}")
