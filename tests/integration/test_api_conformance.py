"""Every row of ``../shared/oracle/api-edge-cases.md`` against a live pyquorumd cluster.

Each test names the section and row it checks.  The calls go through the
corosync-shaped module ``pyquorum.client.quorum``; ``rc()`` turns its raise-or-return
style back into the C return code, so the tables compare one to one with the oracle.
"""

from __future__ import annotations

import itertools
import select
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import LocalCluster

from pyquorum.client import quorum as q
from pyquorum.errors import CsErr, CsError

OK = CsErr.CS_OK
LIBRARY = CsErr.CS_ERR_LIBRARY
TRY_AGAIN = CsErr.CS_ERR_TRY_AGAIN
INVALID_PARAM = CsErr.CS_ERR_INVALID_PARAM
BAD_HANDLE = CsErr.CS_ERR_BAD_HANDLE
EXIST = CsErr.CS_ERR_EXIST
CUR, CHG, ONLY = q.CS_TRACK_CURRENT, q.CS_TRACK_CHANGES, q.CS_TRACK_CHANGES_ONLY
ONE, ALL, BLOCKING, ONE_NB = (q.CS_DISPATCH_ONE, q.CS_DISPATCH_ALL, q.CS_DISPATCH_BLOCKING,
                              q.CS_DISPATCH_ONE_NONBLOCKING)
WAIT_S = 30.0
"""Upper bound of every wait for a cluster event (token 1000: detection takes ~1.5 s)."""


def rc(fn: Callable[..., Any], *args: Any) -> CsErr:
    """The C return code of a call: CS_OK, or the code of the CsError it raised."""
    try:
        fn(*args)
    except CsError as e:
        return CsErr(e.code)
    return OK


class Probe:
    """One V1 (or V0) handle whose callbacks append ``(kind, ...)`` tuples to ``events``."""

    def __init__(self, run_dir: Path, model: int = q.QUORUM_MODEL_V1,
                 context: object = None) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.cond = threading.Condition()
        if model == q.QUORUM_MODEL_V1:
            data: Any = q.QuorumModelV1Data(self._quorum_v1, self._nodelist)
        else:
            data = q.QuorumModelV0Data(self._quorum_v0)
        self.handle, self.quorum_type = q.quorum_model_initialize(
            model, data, context, run_dir=str(run_dir))

    def _add(self, ev: tuple[Any, ...]) -> None:
        with self.cond:
            self.events.append(ev)
            self.cond.notify_all()

    def _quorum_v1(self, h: int, quorate: int, ring: q.QuorumRingId, members: list[int]) -> None:
        self._add(("quorum", quorate, (ring.nodeid, ring.seq), tuple(members)))

    def _quorum_v0(self, h: int, quorate: int, ring_seq: int, members: list[int]) -> None:
        self._add(("quorum0", quorate, ring_seq, tuple(members)))

    def _nodelist(self, h: int, ring: q.QuorumRingId, members: list[int], joined: list[int],
                  left: list[int]) -> None:
        self._add(("nodelist", (ring.nodeid, ring.seq), tuple(members), tuple(joined),
                   tuple(left)))

    def take(self) -> list[tuple[Any, ...]]:
        """Dispatch everything queued (ALL) and return the new events."""
        start = len(self.events)
        q.quorum_dispatch(self.handle, ALL)
        return self.events[start:]

    def kinds(self, events: list[tuple[Any, ...]]) -> list[str]:
        return [e[0] for e in events]

    def wait_for(self, pred: Callable[[list[tuple[Any, ...]]], bool],
                 timeout: float = WAIT_S) -> list[tuple[Any, ...]]:
        """Poll the fd and dispatch until ``pred(events)`` holds (bounded)."""
        fd = q.quorum_fd_get(self.handle)
        deadline = time.monotonic() + timeout
        while not pred(self.events):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; events so far: {self.events}"
            r, _, _ = select.select([fd], [], [], left)
            if r:
                q.quorum_dispatch(self.handle, ALL)
        return self.events

    def readable(self, timeout: float = 0.0) -> bool:
        r, _, _ = select.select([q.quorum_fd_get(self.handle)], [], [], timeout)
        return bool(r)

    def close(self) -> None:
        rc(q.quorum_finalize, self.handle)


# ====================================================================== fixtures
@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """A quorate 3-node cluster shared by the read-only tests of this module."""
    base = Path(tempfile.mkdtemp(prefix="pyquorum-conf-"))
    base.chmod(0o755)
    c = LocalCluster(base, 3, token_ms=1000)
    try:
        for n in (1, 2, 3):
            c.start(n)
        p = Probe(c.run_dir(1))
        try:
            q.quorum_trackstart(p.handle, CUR | CHG)
            p.wait_for(lambda evs: any(e[0] == "quorum" and e[1] == 1 and len(e[3]) == 3
                                       for e in evs))
        finally:
            p.close()
        yield c
    finally:
        c.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def fresh_cluster() -> Iterator[Callable[..., LocalCluster]]:
    """Factory of private clusters for the tests that kill, restart or isolate nodes."""
    made: list[tuple[LocalCluster, Path]] = []

    def make(n: int = 3, **kwargs: Any) -> LocalCluster:
        base = Path(tempfile.mkdtemp(prefix="pyquorum-conf-"))
        base.chmod(0o755)
        kwargs.setdefault("token_ms", 1000)
        c = LocalCluster(base, n, **kwargs)
        made.append((c, base))
        return c

    yield make
    for c, base in made:
        c.close()
        shutil.rmtree(base, ignore_errors=True)


def quorate_probe(c: LocalCluster, node: int = 1) -> Probe:
    return Probe(c.run_dir(node))


# ====================================================================== §1 initialization
def test_s1_model_initialize_v1_and_v0_give_ok_type_set_nonzero_handle(
        cluster: LocalCluster) -> None:
    for model in (q.QUORUM_MODEL_V1, q.QUORUM_MODEL_V0):
        p = Probe(cluster.run_dir(1), model)
        assert p.handle != 0
        assert p.quorum_type == q.QUORUM_SET == 1
        p.close()


def test_s1_invalid_model_is_invalid_param(cluster: LocalCluster) -> None:
    assert rc(q.quorum_model_initialize, 7, None, None) == INVALID_PARAM
    with pytest.raises(CsError) as e:
        q.quorum_model_initialize(7, None, None, run_dir=str(cluster.run_dir(1)))
    assert e.value.code == INVALID_PARAM


def test_s1_no_daemon_is_library_immediately(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(CsError) as e:
        q.quorum_model_initialize(q.QUORUM_MODEL_V1, None, None, run_dir=str(tmp_path))
    assert e.value.code == LIBRARY
    assert time.monotonic() - t0 < 1.0


def test_s1_fd_context_and_no_event_before_trackstart(cluster: LocalCluster) -> None:
    p = Probe(cluster.run_dir(1), context=0x1234)
    try:
        fd = q.quorum_fd_get(p.handle)
        assert isinstance(fd, int) and fd >= 0
        assert q.quorum_context_get(p.handle) == 0x1234
        assert not p.readable(0.2)  # nothing is queued until trackstart
        assert q.quorum_getquorate(p.handle) == 1
    finally:
        p.close()


def test_s1_getquorate_is_zero_on_an_inquorate_node(fresh_cluster: Callable[..., LocalCluster],
                                                    ) -> None:
    c = fresh_cluster(3)
    c.start(1)  # alone: a singleton ring, inquorate (2 of 3 votes needed)
    p = quorate_probe(c)
    try:
        assert q.quorum_getquorate(p.handle) == 0
    finally:
        p.close()


# ====================================================================== §2 dispatch
def test_s2_nothing_pending(cluster: LocalCluster) -> None:
    p = quorate_probe(cluster)
    try:
        assert rc(q.quorum_dispatch, p.handle, ALL) == OK
        assert rc(q.quorum_dispatch, p.handle, ONE_NB) == TRY_AGAIN
        for bad in (0, 5, 99):
            assert rc(q.quorum_dispatch, p.handle, bad) == INVALID_PARAM
        assert p.events == []
    finally:
        p.close()


def _blocked_dispatch(p: Probe, flags: int) -> tuple[threading.Thread, list[CsErr]]:
    result: list[CsErr] = []
    t = threading.Thread(target=lambda: result.append(rc(q.quorum_dispatch, p.handle, flags)),
                         daemon=True)
    t.start()
    return t, result


@pytest.mark.parametrize("flags", [ONE, BLOCKING])
def test_s2_one_and_blocking_block_with_nothing_pending(cluster: LocalCluster,
                                                        flags: int) -> None:
    p = quorate_probe(cluster)
    t, result = _blocked_dispatch(p, flags)
    t.join(0.5)
    assert t.is_alive() and result == []  # still blocked
    q.quorum_finalize(p.handle)  # pyquorum wakes a dispatch blocked in another thread
    t.join(WAIT_S)
    assert not t.is_alive()
    assert result == [BAD_HANDLE]


@pytest.mark.parametrize(("flags", "first", "then_all"), [
    (ONE, ["nodelist"], ["quorum"]),
    (ALL, ["nodelist", "quorum"], []),
    (ONE_NB, ["nodelist"], ["quorum"]),
])
def test_s2_two_pending(cluster: LocalCluster, flags: int, first: list[str],
                        then_all: list[str]) -> None:
    p = quorate_probe(cluster)
    try:
        q.quorum_trackstart(p.handle, CUR)
        assert p.readable(WAIT_S)
        assert rc(q.quorum_dispatch, p.handle, flags) == OK
        assert p.kinds(p.events) == first
        assert p.kinds(p.take()) == then_all
    finally:
        p.close()


def test_s2_blocking_delivers_both_then_keeps_blocking(cluster: LocalCluster) -> None:
    p = quorate_probe(cluster)
    q.quorum_trackstart(p.handle, CUR)
    t, result = _blocked_dispatch(p, BLOCKING)
    with p.cond:
        assert p.cond.wait_for(lambda: len(p.events) >= 2, WAIT_S)
    t.join(0.3)
    assert t.is_alive() and result == []
    assert p.kinds(p.events) == ["nodelist", "quorum"]
    q.quorum_finalize(p.handle)
    t.join(WAIT_S)
    assert result == [BAD_HANDLE]


def test_s2_dispatch_one_returns_after_each_callback_of_a_membership_change(
        fresh_cluster: Callable[..., LocalCluster]) -> None:
    c = fresh_cluster(3)
    for n in (1, 2, 3):
        c.start(n)
    p = quorate_probe(c)
    try:
        q.quorum_trackstart(p.handle, ONLY)
        c.kill(3)
        assert rc(q.quorum_dispatch, p.handle, ONE) == OK
        assert p.kinds(p.events) == ["nodelist"]
        assert rc(q.quorum_dispatch, p.handle, ONE) == OK
        assert p.kinds(p.events) == ["nodelist", "quorum"]
    finally:
        p.close()


# ====================================================================== §3 trackstart/trackstop
PAIR = ["nodelist", "quorum"]
TRACK_TABLE = [
    # (sequence of calls, expected rc of each, callbacks queued by each)
    ([("start", CUR | CHG), ("start", CUR | CHG), ("start", ONLY)],
     [OK, EXIST, EXIST], [PAIR, PAIR, []]),
    ([("start", CUR), ("start", CUR)], [OK, OK], [PAIR, PAIR]),
    ([("start", CUR), ("start", CUR | CHG)], [OK, OK], [PAIR, PAIR]),
    ([("start", CUR), ("stop", 0)], [OK, OK], [PAIR, []]),
    ([("start", ONLY), ("start", CUR)], [OK, EXIST], [[], PAIR]),
    ([("start", ONLY), ("start", ONLY)], [OK, EXIST], [[], []]),
    ([("start", CHG), ("stop", 0), ("stop", 0), ("start", CHG)],
     [OK, OK, OK, OK], [PAIR, [], [], PAIR]),
    ([("start", 0), ("start", CHG)], [OK, OK], [[], PAIR]),
    ([("start", 0x08)], [OK], [[]]),
    ([("start", 0x07)], [OK], [PAIR]),
    ([("stop", 0)], [OK], [[]]),
    ([("stop", 0), ("stop", 0)], [OK, OK], [[], []]),
]


@pytest.mark.parametrize(("calls", "rcs", "queued"), TRACK_TABLE,
                         ids=[str(i) for i in range(len(TRACK_TABLE))])
def test_s3_trackstart_trackstop_table(cluster: LocalCluster, calls: list[tuple[str, int]],
                                       rcs: list[CsErr], queued: list[list[str]]) -> None:
    p = quorate_probe(cluster)
    try:
        got_rcs, got_queued = [], []
        for op, flags in calls:
            if op == "start":
                got_rcs.append(rc(q.quorum_trackstart, p.handle, flags))
            else:
                got_rcs.append(rc(q.quorum_trackstop, p.handle))
            # events are queued before the reply: they are readable at once
            got_queued.append(p.kinds(p.take()))
        assert got_rcs == rcs
        assert got_queued == queued
    finally:
        p.close()


def test_s3_snapshot_content_nodelist_first_empty_joined_left(cluster: LocalCluster) -> None:
    p = quorate_probe(cluster)
    try:
        q.quorum_trackstart(p.handle, CUR)
        evs = p.take()
        (kn, ring_n, members_n, joined, left), (kq, quorate, ring_q, members_q) = evs
        assert (kn, kq) == ("nodelist", "quorum")
        assert ring_n == ring_q and ring_n[0] == 1
        assert members_n == members_q == (1, 2, 3)
        assert joined == () and left == ()
        assert quorate == 1
    finally:
        p.close()


def test_s3_v0_snapshot_is_one_quorum_callback(cluster: LocalCluster) -> None:
    p = Probe(cluster.run_dir(1), q.QUORUM_MODEL_V0)
    try:
        q.quorum_trackstart(p.handle, CUR)
        evs = p.take()
        assert len(evs) == 1
        kind, quorate, ring_seq, members = evs[0]
        assert kind == "quorum0" and quorate == 1 and members == (1, 2, 3)
        assert isinstance(ring_seq, int) and ring_seq > 0
    finally:
        p.close()


def test_s3_callback_sequences_per_flag_set_across_kill_and_restart(
        fresh_cluster: Callable[..., LocalCluster]) -> None:
    c = fresh_cluster(3)
    for n in (1, 2, 3):
        c.start(n)
    flag_sets = {"CURRENT": CUR, "CHANGES": CHG, "CHANGES_ONLY": ONLY,
                 "CURRENT|CHANGES": CUR | CHG, "CURRENT|CHANGES_ONLY": CUR | ONLY}
    probes = {name: quorate_probe(c) for name in flag_sets}
    stopped = quorate_probe(c)
    watcher = quorate_probe(c)
    try:
        watcher_flags = CUR | CHG
        q.quorum_trackstart(watcher.handle, watcher_flags)
        watcher.wait_for(lambda evs: any(e[0] == "quorum" and len(e[3]) == 3 for e in evs))
        for name, flags in flag_sets.items():
            q.quorum_trackstart(probes[name].handle, flags)
        q.quorum_trackstart(stopped.handle, CUR | CHG)
        q.quorum_trackstop(stopped.handle)
        at_start = {name: p.kinds(p.take()) for name, p in probes.items()}
        assert at_start == {"CURRENT": PAIR, "CHANGES": PAIR, "CHANGES_ONLY": [],
                            "CURRENT|CHANGES": PAIR, "CURRENT|CHANGES_ONLY": PAIR}
        assert stopped.kinds(stopped.take()) == PAIR

        c.kill(3)
        watcher.wait_for(lambda evs: any(e[0] == "quorum" and e[3] == (1, 2) for e in evs))
        c.start(3)
        watcher.wait_for(lambda evs: evs[-1][0] == "quorum" and evs[-1][3] == (1, 2, 3)
                         and any(e[0] == "quorum" and e[3] == (1, 2) for e in evs))
        # the watcher saw both changes; every tracker has them queued by now
        changes = watcher.events[2:]
        assert [e[0] for e in changes] == ["nodelist", "quorum", "nodelist", "quorum"]
        assert changes[0][4] == (3,) and changes[0][3] == ()  # left=[3]
        assert changes[2][3] == (3,) and changes[2][4] == ()  # joined=[3]
        for name, p in probes.items():
            got = p.take()
            if name == "CURRENT":
                assert got == []
            else:
                assert got == changes, name
        assert stopped.take() == []
    finally:
        for p in (*probes.values(), stopped, watcher):
            p.close()


# ====================================================================== §4 context
def test_s4_context_set_get(cluster: LocalCluster) -> None:
    p = quorate_probe(cluster)
    try:
        q.quorum_context_set(p.handle, 0xABCDEF)
        assert q.quorum_context_get(p.handle) == 0xABCDEF
        q.quorum_context_set(p.handle, None)
        assert q.quorum_context_get(p.handle) is None
    finally:
        p.close()


# ====================================================================== §5 bad handles
def test_s5_every_call_after_finalize_is_bad_handle(cluster: LocalCluster) -> None:
    p = quorate_probe(cluster)
    h = p.handle
    assert rc(q.quorum_finalize, h) == OK
    calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [
        (q.quorum_finalize, (h,)), (q.quorum_fd_get, (h,)), (q.quorum_getquorate, (h,)),
        *((q.quorum_dispatch, (h, f)) for f in (ONE, ALL, BLOCKING, ONE_NB)),
        (q.quorum_trackstart, (h, CUR)), (q.quorum_trackstop, (h,)),
        (q.quorum_context_set, (h, 1)), (q.quorum_context_get, (h,)),
    ]
    for fn, args in calls:
        assert rc(fn, *args) == BAD_HANDLE, fn.__name__


@pytest.mark.parametrize("handle", [0, 0x123456789])
def test_s5_never_issued_handles_are_bad_handle(handle: int) -> None:
    assert rc(q.quorum_getquorate, handle) == BAD_HANDLE
    assert rc(q.quorum_dispatch, handle, ALL) == BAD_HANDLE
    assert rc(q.quorum_finalize, handle) == BAD_HANDLE
    assert rc(q.quorum_dispatch, handle, 0) == INVALID_PARAM  # the flag is checked first


def test_s5_finalize_inside_a_callback_makes_dispatch_bad_handle(cluster: LocalCluster) -> None:
    box: dict[str, int] = {}

    def on_nodelist(h: int, *_: Any) -> None:
        q.quorum_finalize(h)

    h, _ = q.quorum_model_initialize(q.QUORUM_MODEL_V1, q.QuorumModelV1Data(None, on_nodelist),
                                     None, run_dir=str(cluster.run_dir(1)))
    box["h"] = h
    q.quorum_trackstart(h, CUR)
    assert rc(q.quorum_dispatch, h, ALL) == BAD_HANDLE
    assert rc(q.quorum_getquorate, h) == BAD_HANDLE


# ====================================================================== §6 daemon death
def test_s6_daemon_killed_under_connected_clients(
        fresh_cluster: Callable[..., LocalCluster]) -> None:
    c = fresh_cluster(2, quorum={"two_node": 1})
    c.start(1)
    c.start(2)
    idle = quorate_probe(c)
    one = quorate_probe(c)
    blocking = quorate_probe(c)
    q.quorum_context_set(idle.handle, 0x55)
    q.quorum_trackstart(blocking.handle, CUR)
    t_one, r_one = _blocked_dispatch(one, ONE)
    t_blk, r_blk = _blocked_dispatch(blocking, BLOCKING)
    with blocking.cond:
        assert blocking.cond.wait_for(lambda: len(blocking.events) == 2, WAIT_S)
    c.kill(1)
    t_one.join(WAIT_S)
    t_blk.join(WAIT_S)
    assert r_one == [LIBRARY] and one.events == []
    assert r_blk == [LIBRARY] and blocking.kinds(blocking.events) == PAIR

    poller = select.poll()
    fd = q.quorum_fd_get(idle.handle)
    poller.register(fd, select.POLLIN)
    (got_fd, revents), = poller.poll(int(WAIT_S * 1000))
    assert got_fd == fd and revents & select.POLLHUP and revents & select.POLLIN
    h = idle.handle
    for flags in (ALL, ALL, ONE_NB, ONE):
        assert rc(q.quorum_dispatch, h, flags) == LIBRARY
    assert rc(q.quorum_getquorate, h) == LIBRARY
    assert rc(q.quorum_trackstart, h, CUR) == LIBRARY
    assert rc(q.quorum_trackstop, h) == LIBRARY
    assert rc(q.quorum_fd_get, h) == OK
    assert q.quorum_context_get(h) == 0x55
    assert rc(q.quorum_finalize, h) == OK
    assert rc(q.quorum_finalize, h) == BAD_HANDLE
    for p in (one, blocking):
        assert rc(q.quorum_finalize, p.handle) == OK
    with pytest.raises(CsError) as e:
        q.quorum_model_initialize(q.QUORUM_MODEL_V1, None, None, run_dir=str(c.run_dir(1)))
    assert e.value.code == LIBRARY


# ====================================================================== §7 content
def test_s7_fresh_singleton_is_ring_n_5_inquorate_then_restart_continues(
        fresh_cluster: Callable[..., LocalCluster]) -> None:
    c = fresh_cluster(3)
    c.start(2)
    p = quorate_probe(c, 2)
    q.quorum_trackstart(p.handle, CUR)
    assert p.take() == [("nodelist", (2, 5), (2,), (), ()), ("quorum", 0, (2, 5), (2,))]
    p.close()
    c.stop(2)
    c.start(2)
    p = quorate_probe(c, 2)
    q.quorum_trackstart(p.handle, CUR)
    (_, ring, members, _, _), _ = p.take()
    p.close()
    assert ring[0] == 2 and ring[1] > 5 and members == (2,)


def test_s7_ring_seq_grows_by_4_and_rep_is_lowest(
        fresh_cluster: Callable[..., LocalCluster]) -> None:
    c = fresh_cluster(3)
    c.start(2)
    c.start(3)
    p = quorate_probe(c, 3)
    q.quorum_trackstart(p.handle, CUR | CHG)
    p.wait_for(lambda evs: any(e[0] == "quorum" and e[3] == (2, 3) for e in evs))
    c.start(1)
    p.wait_for(lambda evs: any(e[0] == "quorum" and e[3] == (1, 2, 3) for e in evs))
    rings = [e[2] for e in p.events if e[0] == "quorum"]
    assert rings[-1][0] == 1 and rings[-2][0] == 2
    seqs = [r[1] for r in rings]
    assert all(b > a for a, b in itertools.pairwise(seqs))
    p.close()


def test_s7_two_node_kill_keeps_survivor_quorate_restarted_waits_for_peer(
        fresh_cluster: Callable[..., LocalCluster]) -> None:
    c = fresh_cluster(2, quorum={"two_node": 1})
    c.start(1)
    c.start(2)
    p = quorate_probe(c, 1)
    q.quorum_trackstart(p.handle, CUR | CHG)
    p.wait_for(lambda evs: any(e[0] == "quorum" and e[1] == 1 and e[3] == (1, 2) for e in evs))
    c.kill(2)
    p.wait_for(lambda evs: bool(evs) and evs[-1][0] == "quorum" and evs[-1][3] == (1,))
    assert p.events[-1][1] == 1  # the survivor stays quorate
    p.close()
    # node 2 restarts cut off from node 1: wait_for_all keeps it inquorate
    c.block(1, [2])
    c.start(2)
    c.block(2, [1])
    p2 = quorate_probe(c, 2)
    assert q.quorum_getquorate(p2.handle) == 0
    q.quorum_trackstart(p2.handle, CUR | CHG)
    c.block(1, [])
    c.block(2, [])
    p2.wait_for(lambda evs: bool(evs) and evs[-1][0] == "quorum" and evs[-1][3] == (1, 2))
    assert p2.events[-1][1] == 1
    p2.close()


def test_s7_wait_for_all_two_of_three_inquorate_until_all_seen(
        fresh_cluster: Callable[..., LocalCluster]) -> None:
    c = fresh_cluster(3, quorum={"wait_for_all": 1})
    c.start(1)
    c.start(2)
    p = quorate_probe(c, 1)
    q.quorum_trackstart(p.handle, CUR | CHG)
    p.wait_for(lambda evs: any(e[0] == "quorum" and e[3] == (1, 2) for e in evs))
    assert all(e[1] == 0 for e in p.events if e[0] == "quorum")
    c.start(3)
    p.wait_for(lambda evs: evs[-1][0] == "quorum" and evs[-1][3] == (1, 2, 3))
    assert p.events[-1][1] == 1
    c.kill(3)
    p.wait_for(lambda evs: evs[-1][0] == "quorum" and evs[-1][3] == (1, 2))
    assert p.events[-1][1] == 1
    p.close()


def test_s7_quick_restart_is_in_both_joined_and_left(
        fresh_cluster: Callable[..., LocalCluster]) -> None:
    # token 5000: the restart (well under a second) is faster than failure detection
    c = fresh_cluster(2, quorum={"two_node": 1}, token_ms=5000)
    c.start(1)
    c.start(2)
    p = quorate_probe(c, 2)
    q.quorum_trackstart(p.handle, CUR | CHG)
    p.wait_for(lambda evs: any(e[0] == "quorum" and e[3] == (1, 2) for e in evs))
    mark = len(p.events)
    c.kill(1)
    c.start(1)
    p.wait_for(lambda evs: len(evs) > mark and evs[-1][0] == "quorum")
    nodelists = [e for e in p.events[mark:] if e[0] == "nodelist"]
    assert nodelists[-1][2:] == ((1, 2), (1,), (1,))
    p.close()
