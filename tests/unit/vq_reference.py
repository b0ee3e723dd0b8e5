"""An independent, deliberately plain reference of votequorum (spec 4.2-4.7).

Written from the spec text, not from ``pyquorum.core.votequorum``: it shares no code
with it (only ints, lists and dicts), so Hypothesis can run both side by side and
compare them.  Scope: nodelist configurations without a quorum device, with two_node,
wait_for_all, auto_tie_breaker (lowest/highest/list), last_man_standing,
allow_downscale and expected_votes_tracking.

Observable outputs are kept in ``self.out`` as tuples:
``("quorum", quorate, quorum)``, ``("expected", value)``, ``("barrier", value)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MEMBER, DEAD, LEAVING = 1, 2, 3
QUORATE, LEAVING_FLAG, WFASTATUS, FIRST = 1, 2, 4, 8
EXPECTED_VOTES, NODE_VOTES, CANCEL_WFA = 1, 2, 3


def majority(votes: int) -> int:
    """The strict majority of ``votes`` (the table of 4.4: 1->1, 2->2, 3->2, 4->3, ...)."""
    return votes // 2 + 1


@dataclass
class RefConfig:
    """The few configuration inputs the reference understands."""

    nodes: dict[int, int]
    """nodeid -> quorum_votes of the nodelist."""
    expected_votes: int = 0
    two_node: bool = False
    wait_for_all: bool | None = None
    last_man_standing: bool = False
    lms_window_ms: int = 10000
    atb: str | None = None
    """None: auto_tie_breaker off; else the auto_tie_breaker_node string."""
    allow_downscale: bool = False
    ev_tracking: bool = False


@dataclass
class Entry:
    state: int
    votes: int
    expected: int
    flags: int


@dataclass
class RefNode:
    """One node's votequorum, straight from the spec."""

    cfg: RefConfig
    me: int
    stored_barrier: int | None
    now: int = 0
    out: list[tuple[int | bool | str, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        cfg = self.cfg
        self.table: dict[int, Entry] = {self.me: Entry(MEMBER, 1, 0, FIRST)}
        self.quorum = 0
        self.quorate = False
        self.syncing = False
        self.members: list[int] = []
        self.prev_members: list[int] = []
        self.lowest: int | None = None
        self.highest: int | None = None
        self.timer: int | None = None
        # 4.2 derivations, in the table's order
        self.wfa = cfg.two_node if cfg.wait_for_all is None else cfg.wait_for_all
        self.atb_mode = "none"
        self.atb_list: list[int] = []
        if cfg.atb is not None:
            if cfg.atb in ("lowest", "highest"):
                self.atb_mode = cfg.atb
            else:
                for word in cfg.atb.split():
                    if not word.isdigit() or int(word) == 0:
                        break
                    self.atb_list.append(int(word))
                if self.atb_list:
                    self.atb_mode = "list"
        self.downscale = cfg.allow_downscale
        self.evt = cfg.ev_tracking or cfg.allow_downscale
        self.evt_barrier = 0
        if self.evt:
            if self.stored_barrier is None:
                self.persist(0)
            else:
                self.evt_barrier = self.stored_barrier
        self.two_node = cfg.two_node and self.atb_mode == "none"
        nev = sum(cfg.nodes.values())
        if self.atb_mode != "none" and nev % 2 == 1 and not self.wfa:
            self.atb_mode = "none"
        self.lms = cfg.last_man_standing
        configured = self.evt_barrier if self.evt else cfg.expected_votes
        us = self.table[self.me]
        us.votes = cfg.nodes[self.me]
        us.expected = configured if configured else nev
        self.ev_barrier = us.expected
        self.waiting = self.wfa
        self.set_flag(WFASTATUS, self.waiting)
        self.recalc(False, False)

    # -------------------------------------------------------------- helpers
    @property
    def us(self) -> Entry:
        return self.table[self.me]

    def set_flag(self, flag: int, on: bool) -> None:
        if on:
            self.us.flags |= flag
        else:
            self.us.flags &= ~flag

    def persist(self, value: int) -> None:
        self.evt_barrier = value
        self.out.append(("barrier", value))

    def member_entries(self) -> dict[int, Entry]:
        return {i: e for i, e in self.table.items() if e.state == MEMBER}

    def present(self, nodeid: int | None) -> bool:
        return nodeid is not None and nodeid in self.member_entries()

    def info(self) -> tuple[int, int, int, int]:
        """Our NODEINFO as (nodeid, votes, expected, flags)."""
        return (self.me, self.us.votes, self.us.expected, self.us.flags)

    def node_states(self) -> list[tuple[int, int]]:
        return sorted((i, e.state) for i, e in self.table.items())

    # -------------------------------------------------------------- 4.4
    def calc(self, allow_decrease: bool, max_expected: int, downscale: bool) -> tuple[int, int]:
        if downscale and allow_decrease and max_expected:
            max_expected = max(max_expected, self.ev_barrier)
        members = self.member_entries().values()
        total = sum(e.votes for e in members)
        expected = max_expected if max_expected > 0 else max(e.expected for e in members)
        q = max(majority(expected), majority(total))
        if not allow_decrease and q < self.quorum:
            q = self.quorum
        if self.two_node and len(members) <= 2:
            q = 1
        return q, total

    def recalc(self, allow_decrease: bool, by_current_nodes: bool) -> None:
        members = self.member_entries()
        potential = sum(e.votes for e in members.values())
        if potential > self.us.expected:
            self.us.expected = potential
            self.out.append(("expected", potential))
        if self.evt and self.us.expected > self.evt_barrier:
            self.persist(self.us.expected)
        count = len(members) if by_current_nodes else 0
        self.quorum, total = self.calc(allow_decrease, count, self.downscale)
        if count:
            for e in members.values():
                e.expected = count
        self.decide(total)

    def tie_breaker_passes(self) -> bool:
        if self.atb_mode == "lowest":
            return self.present(self.lowest)
        if self.atb_mode == "highest":
            return self.present(self.highest)
        for pos, candidate in enumerate(self.atb_list):
            if candidate in self.members:
                earlier = self.atb_list[:pos]
                return all(x not in self.prev_members for x in earlier)
        return False

    def decide(self, total: int) -> None:
        if self.wfa and self.waiting:
            if total != self.us.expected:
                return
            self.waiting = False
            self.set_flag(WFASTATUS, False)
        ok = total >= self.quorum
        if ok:
            ids = list(self.member_entries())
            self.lowest, self.highest = min(ids), max(ids)
        if (
            not ok
            and self.atb_mode != "none"
            and total == self.us.expected // 2
            and len(self.prev_members) - len(self.members) < self.quorum
            and self.tie_breaker_passes()
        ):
            ok = True
        flipped = ok != self.quorate
        self.quorate = ok
        self.set_flag(QUORATE, ok)
        if self.wfa:
            self.waiting = not ok
            self.set_flag(WFASTATUS, not ok)
        if flipped and not self.syncing:
            self.out.append(("quorum", self.quorate, self.quorum))

    # -------------------------------------------------------------- 4.6 / 4.7
    def sync_init(self, members: list[int], now: int) -> None:
        self.now = now
        self.syncing = True
        if len(members) > 1:
            self.set_flag(FIRST, False)
        gone = [n for n in self.members if n not in members]
        for n in gone:
            if n in self.table:
                self.table[n].state = DEAD
        if self.lms:
            cond_a = len(members) >= self.quorum and bool(gone)
            cond_b = (
                len(members) <= self.quorum
                and self.atb_mode != "none"
                and self.present(self.lowest)
            )
            if cond_a or cond_b:
                self.timer = now + self.cfg.lms_window_ms
        self.prev_members = list(self.members)
        self.members = list(members)

    def nodeinfo(self, nodeid: int, votes: int, expected: int, flags: int) -> None:
        if nodeid == 0:
            assert votes == 0, "the reference has no quorum device"
            return
        before = self.table.get(nodeid)
        snapshot = (
            None if before is None else (before.state, before.votes, before.expected, before.flags)
        )
        entry = before if before is not None else Entry(DEAD, 0, 0, 0)
        self.table[nodeid] = entry
        entry.flags, entry.votes = flags, votes
        leaving = bool(flags & LEAVING_FLAG)
        entry.state = LEAVING if leaving and nodeid != self.me else MEMBER
        allow_decrease = by_node = leaving
        remote_quorate = bool(flags & QUORATE)
        if not self.quorate and remote_quorate:
            self.us.expected = expected
            allow_decrease = True
        entry.expected = expected if (remote_quorate or self.evt) else self.us.expected
        if self.lms and votes > 1:
            self.lms = False
            self.timer = None
        changed = snapshot != (entry.state, entry.votes, entry.expected, entry.flags)
        if before is None or nodeid == self.me or flags & FIRST or changed:
            self.recalc(allow_decrease, by_node)
        # X's flags as stored *now*: for our own entry the recalc above rewrote them
        if self.wfa and entry.flags & QUORATE and not entry.flags & WFASTATUS:
            self.waiting = False
            self.set_flag(WFASTATUS, False)

    def activate(self) -> None:
        self.recalc(False, False)
        self.out.append(("quorum", self.quorate, self.quorum))
        self.syncing = False

    def reconfigure(self, param: int, nodeid: int, value: int) -> None:
        if param == EXPECTED_VOTES:
            if value:
                for e in self.member_entries().values():
                    e.expected = value
            self.out.append(("expected", self.us.expected))
            self.ev_barrier = value
            if self.evt:
                self.us.expected = max(self.us.expected, self.evt_barrier)
            self.recalc(True, False)
        elif param == NODE_VOTES:
            if nodeid in self.table:
                self.table[nodeid].votes = value
                self.recalc(True, False)
        elif param == CANCEL_WFA:
            self.waiting = False
            self.set_flag(WFASTATUS, False)
            self.recalc(False, False)

    def fire_timer(self, now: int) -> None:
        if self.timer is not None and self.timer <= now:
            self.timer = None
            if self.quorate:
                self.recalc(True, True)

    # -------------------------------------------------------------- 4.8
    def setexpected_ok(self, value: int) -> bool:
        q, total = self.calc(True, value, downscale=False)
        return not (value < total or (self.quorate and q > total))

    def setvotes_result(self, nodeid: int, votes: int) -> str:
        if nodeid not in self.table:
            return "unknown"
        saved = self.table[nodeid].votes
        self.table[nodeid].votes = votes
        q, total = self.calc(True, 0, self.downscale)
        self.table[nodeid].votes = saved
        return "invalid" if (q < total // 2 or q > total) else "ok"
