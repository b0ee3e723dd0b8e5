"""The client API conformance checks, shared by both backends.

Every row of ``../shared/oracle/api-edge-cases.md`` (libquorum, observed on Corosync
3.1.7) plus the votequorum rules of spec section 4.8, written once against a ``Target``:
a cluster of some backend whose nodes the test starts, kills and partitions and whose
daemons it connects to.  Two test modules import these test functions and supply the
fixtures ``cluster`` (a quorate 3-node target shared by the read-only checks) and
``fresh_cluster`` (a factory of private, not yet started targets):

* ``tests/integration/test_api_conformance.py``: pyquorumd daemons on loopback;
* ``tests/corosync/test_api_conformance_corosync.py``: real Corosync 3.1.7 in network
  namespaces, driven through the Corosync backend of the same client API.

Each test names the section and row it checks.  The calls go through the
corosync-shaped modules ``pyquorum.client.quorum`` / ``votequorum``; ``rc()`` turns
their raise-or-return style back into the C return code, so the tables compare one to
one with the oracle.  Nothing here depends on ring id values beyond what Corosync
itself shows (a fresh singleton is ``N.5``), nor on timing beyond upper bounds.
"""

from __future__ import annotations

import itertools
import select
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import pytest

from pyquorum.client import quorum as q
from pyquorum.client import votequorum as vq
from pyquorum.errors import CsErr, CsError

OK = CsErr.CS_OK
LIBRARY = CsErr.CS_ERR_LIBRARY
TRY_AGAIN = CsErr.CS_ERR_TRY_AGAIN
INVALID_PARAM = CsErr.CS_ERR_INVALID_PARAM
BAD_HANDLE = CsErr.CS_ERR_BAD_HANDLE
NOT_EXIST = CsErr.CS_ERR_NOT_EXIST
EXIST = CsErr.CS_ERR_EXIST
NAME_NOT_FOUND = CsErr.CS_ERR_NAME_NOT_FOUND
CUR, CHG, ONLY = q.CS_TRACK_CURRENT, q.CS_TRACK_CHANGES, q.CS_TRACK_CHANGES_ONLY
ONE, ALL, BLOCKING, ONE_NB = (q.CS_DISPATCH_ONE, q.CS_DISPATCH_ALL, q.CS_DISPATCH_BLOCKING,
                              q.CS_DISPATCH_ONE_NONBLOCKING)
WAIT_S = 30.0
"""Upper bound of every wait for a cluster event (token 1000: detection takes ~1.5 s on
pyquorum, ~3.5 s on Corosync with 3 nodes)."""


ModelData = q.QuorumModelV0Data | q.QuorumModelV1Data | None


class Target(Protocol):
    """A cluster of one backend, as the checks see it."""

    backend: str
    """``"pyquorum"`` or ``"corosync"``: the ``backend=`` of the initialize calls."""

    def initialize(self, node: int, model: int, data: ModelData,
                   context: object = None) -> tuple[int, int]:
        """``quorum_model_initialize`` connected to ``node``'s daemon."""

    def v0_initialize(self, node: int,
                      callbacks: q.QuorumCallbacks | None) -> tuple[int, int]:
        """``quorum_initialize`` connected to ``node``'s daemon."""

    def vq_initialize(self, node: int, callbacks: vq.VotequorumCallbacks | None) -> int:
        """``votequorum_initialize`` connected to ``node``'s daemon."""

    def start(self, node: int) -> None:
        """Start the node's daemon; return once its IPC answers."""

    def kill(self, node: int) -> None:
        """SIGKILL the node's daemon."""

    def stop(self, node: int) -> None:
        """SIGTERM the node's daemon (a clean leave) and wait for it to exit."""

    def partition(self, groups: Sequence[Sequence[int]]) -> None:
        """Cut all traffic between the groups (also for nodes started later)."""

    def heal(self) -> None:
        """Undo ``partition``."""


FreshCluster = Callable[..., Target]
"""``fresh_cluster(n=3, *, two_node=False, wait_for_all=False, token_ms=1000)``: a
private target, no daemon started."""


def rc(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> CsErr:
    """The C return code of a call: CS_OK, or the code of the CsError it raised."""
    try:
        fn(*args, **kwargs)
    except CsError as e:
        return CsErr(e.code)
    return OK


def poll_readable(fd: int, timeout: float) -> bool:
    r, _, _ = select.select([fd], [], [], timeout)
    return bool(r)


class Probe:
    """One V1 (or V0) handle whose callbacks append ``(kind, ...)`` tuples to ``events``."""

    def __init__(self, target: Target, node: int = 1, model: int = q.QUORUM_MODEL_V1,
                 context: object = None) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.cond = threading.Condition()
        if model == q.QUORUM_MODEL_V1:
            data: Any = q.QuorumModelV1Data(self._quorum_v1, self._nodelist)
        else:
            data = q.QuorumModelV0Data(self._quorum_v0)
        self.handle, self.quorum_type = target.initialize(node, model, data, context)

    def _add(self, ev: tuple[Any, ...]) -> None:
        with self.cond:
            self.events.append(ev)
            self.cond.notify_all()

    def _quorum_v1(self, h: int, quorate: int, ring: q.QuorumRingId, members: list[int]) -> None:
        assert isinstance(ring, q.QuorumRingId) and h == self.handle
        self._add(("quorum", quorate, (ring.nodeid, ring.seq), tuple(members)))

    def _quorum_v0(self, h: int, quorate: int, ring_seq: int, members: list[int]) -> None:
        self._add(("quorum0", quorate, ring_seq, tuple(members)))

    def _nodelist(self, h: int, ring: q.QuorumRingId, members: list[int], joined: list[int],
                  left: list[int]) -> None:
        assert isinstance(ring, q.QuorumRingId) and h == self.handle
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
            if poll_readable(fd, left):
                q.quorum_dispatch(self.handle, ALL)
        return self.events

    def readable(self, timeout: float = 0.0) -> bool:
        return poll_readable(q.quorum_fd_get(self.handle), timeout)

    def close(self) -> None:
        rc(q.quorum_finalize, self.handle)


def wait_quorate(target: Target, members: tuple[int, ...], node: int = 1) -> None:
    """Wait (bounded) until ``node`` reports a quorate view with exactly ``members``."""
    p = Probe(target, node)
    try:
        q.quorum_trackstart(p.handle, CUR | CHG)
        p.wait_for(lambda evs: any(e[0] == "quorum" and e[1] == 1 and e[3] == members
                                   for e in evs))
    finally:
        p.close()


# ====================================================================== §1 initialization
def test_s1_model_initialize_v1_and_v0_give_ok_type_set_nonzero_handle(cluster: Target) -> None:
    for model in (q.QUORUM_MODEL_V1, q.QUORUM_MODEL_V0):
        p = Probe(cluster, 1, model)
        assert p.handle != 0
        assert p.quorum_type == q.QUORUM_SET == 1
        p.close()


def test_s1_quorum_initialize_is_model_v0(cluster: Target) -> None:
    seen: list[tuple[int, int, int, list[int]]] = []
    h, quorum_type = cluster.v0_initialize(1, q.QuorumCallbacks(
        lambda hh, quorate, seq, members: seen.append((hh, quorate, seq, members))))
    try:
        assert h != 0 and quorum_type == q.QUORUM_SET
        assert q.quorum_context_get(h) is None
        q.quorum_trackstart(h, CUR)
        assert poll_readable(q.quorum_fd_get(h), WAIT_S)
        q.quorum_dispatch(h, ALL)
        assert len(seen) == 1
        assert seen[0][0] == h and seen[0][1] == 1 and seen[0][3] == [1, 2, 3]
    finally:
        assert rc(q.quorum_finalize, h) == OK


def test_s1_invalid_model_is_invalid_param(cluster: Target) -> None:
    assert rc(q.quorum_model_initialize, 7, None, None) == INVALID_PARAM
    assert rc(q.quorum_model_initialize, 7, None, None, backend=cluster.backend) \
        == INVALID_PARAM
    with pytest.raises(CsError) as e:
        cluster.initialize(1, 7, None, None)
    assert e.value.code == INVALID_PARAM


def test_s1_no_daemon_is_library_immediately(fresh_cluster: FreshCluster) -> None:
    c = fresh_cluster(1)  # configured, never started: no daemon to connect to
    t0 = time.monotonic()
    with pytest.raises(CsError) as e:
        c.initialize(1, q.QUORUM_MODEL_V1, None, None)
    assert e.value.code == LIBRARY
    assert time.monotonic() - t0 < 1.0


def test_s1_fd_context_and_no_event_before_trackstart(cluster: Target) -> None:
    p = Probe(cluster, context=0x1234)
    try:
        fd = q.quorum_fd_get(p.handle)
        assert isinstance(fd, int) and fd >= 0
        assert q.quorum_fd_get(p.handle) == fd  # the same fd for the life of the handle
        assert q.quorum_context_get(p.handle) == 0x1234
        assert not p.readable(0.2)  # nothing is queued until trackstart
        assert q.quorum_getquorate(p.handle) == 1
    finally:
        p.close()


def test_s1_getquorate_is_zero_on_an_inquorate_node(fresh_cluster: FreshCluster) -> None:
    c = fresh_cluster(3)
    c.start(1)  # alone: a singleton ring, inquorate (2 of 3 votes needed)
    p = Probe(c)
    try:
        assert q.quorum_getquorate(p.handle) == 0
    finally:
        p.close()


# ====================================================================== §2 dispatch
def test_s2_nothing_pending(cluster: Target) -> None:
    p = Probe(cluster)
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
def test_s2_one_and_blocking_block_with_nothing_pending(cluster: Target, flags: int) -> None:
    p = Probe(cluster)
    t, result = _blocked_dispatch(p, flags)
    t.join(0.5)
    assert t.is_alive() and result == []  # still blocked
    # pyquorum wakes a dispatch blocked in another thread (both backends: with the C
    # library alone this is a use-after-free, libqb frees the connection in finalize)
    q.quorum_finalize(p.handle)
    t.join(WAIT_S)
    assert not t.is_alive()
    assert result == [BAD_HANDLE]


@pytest.mark.parametrize(("flags", "first", "then_all"), [
    (ONE, ["nodelist"], ["quorum"]),
    (ALL, ["nodelist", "quorum"], []),
    (ONE_NB, ["nodelist"], ["quorum"]),
])
def test_s2_two_pending(cluster: Target, flags: int, first: list[str],
                        then_all: list[str]) -> None:
    p = Probe(cluster)
    try:
        q.quorum_trackstart(p.handle, CUR)
        assert p.readable(WAIT_S)
        assert rc(q.quorum_dispatch, p.handle, flags) == OK
        assert p.kinds(p.events) == first
        assert p.kinds(p.take()) == then_all
    finally:
        p.close()


def test_s2_blocking_delivers_both_then_keeps_blocking(cluster: Target) -> None:
    p = Probe(cluster)
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
        fresh_cluster: FreshCluster) -> None:
    c = fresh_cluster(3)
    for n in (1, 2, 3):
        c.start(n)
    wait_quorate(c, (1, 2, 3))
    p = Probe(c)
    try:
        q.quorum_trackstart(p.handle, ONLY)
        c.kill(3)
        assert p.readable(WAIT_S)  # bounds the wait; ONE itself would wait as long
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
def test_s3_trackstart_trackstop_table(cluster: Target, calls: list[tuple[str, int]],
                                       rcs: list[CsErr], queued: list[list[str]]) -> None:
    p = Probe(cluster)
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


def test_s3_snapshot_content_nodelist_first_empty_joined_left(cluster: Target) -> None:
    p = Probe(cluster)
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


def test_s3_v0_snapshot_is_one_quorum_callback(cluster: Target) -> None:
    p = Probe(cluster, 1, q.QUORUM_MODEL_V0)
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
        fresh_cluster: FreshCluster) -> None:
    c = fresh_cluster(3)
    for n in (1, 2, 3):
        c.start(n)
    flag_sets = {"CURRENT": CUR, "CHANGES": CHG, "CHANGES_ONLY": ONLY,
                 "CURRENT|CHANGES": CUR | CHG, "CURRENT|CHANGES_ONLY": CUR | ONLY}
    watcher = Probe(c)
    probes: dict[str, Probe] = {}
    stopped: Probe | None = None
    try:
        q.quorum_trackstart(watcher.handle, CUR | CHG)
        watcher.wait_for(lambda evs: any(e[0] == "quorum" and len(e[3]) == 3 for e in evs))
        mark = len(watcher.events)
        probes = {name: Probe(c) for name in flag_sets}
        stopped = Probe(c)
        for name, flags in flag_sets.items():
            q.quorum_trackstart(probes[name].handle, flags)
        q.quorum_trackstart(stopped.handle, CUR | CHG)
        q.quorum_trackstop(stopped.handle)
        at_start = {name: p.kinds(p.take()) for name, p in probes.items()}
        assert at_start == {"CURRENT": PAIR, "CHANGES": PAIR, "CHANGES_ONLY": [],
                            "CURRENT|CHANGES": PAIR, "CURRENT|CHANGES_ONLY": PAIR}
        assert stopped.kinds(stopped.take()) == PAIR

        c.kill(3)
        watcher.wait_for(lambda evs: any(e[0] == "quorum" and e[3] == (1, 2)
                                         for e in evs[mark:]))
        c.start(3)
        watcher.wait_for(lambda evs: evs[-1][0] == "quorum" and evs[-1][3] == (1, 2, 3)
                         and any(e[0] == "quorum" and e[3] == (1, 2) for e in evs[mark:]))
        changes = watcher.events[mark:]
        assert [e[0] for e in changes] == ["nodelist", "quorum", "nodelist", "quorum"]
        assert changes[0][4] == (3,) and changes[0][3] == ()  # left=[3]
        assert changes[2][3] == (3,) and changes[2][4] == ()  # joined=[3]
        # the daemon sends each event to one connection after the other: wait (bounded)
        # until every tracker has as many as the watcher, then compare
        for name, p in probes.items():
            if name != "CURRENT":
                start = len(p.events)
                got = p.wait_for(lambda evs, s=start: len(evs) - s >= len(changes))[start:]
                assert got == changes, name
        for p in (probes["CURRENT"], stopped):
            assert not p.readable(0.3)
            assert p.take() == []
    finally:
        for p in (*probes.values(), *([stopped] if stopped else []), watcher):
            p.close()


# ====================================================================== §4 context
def test_s4_context_set_get(cluster: Target) -> None:
    p = Probe(cluster)
    try:
        q.quorum_context_set(p.handle, 0xABCDEF)
        assert q.quorum_context_get(p.handle) == 0xABCDEF
        q.quorum_context_set(p.handle, None)
        assert q.quorum_context_get(p.handle) is None
    finally:
        p.close()


# ====================================================================== §5 bad handles
def test_s5_every_call_after_finalize_is_bad_handle(cluster: Target) -> None:
    p = Probe(cluster)
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


def test_s5_finalize_inside_a_callback_makes_dispatch_bad_handle(cluster: Target) -> None:
    def on_nodelist(h: int, *_: Any) -> None:
        q.quorum_finalize(h)

    h, _ = cluster.initialize(1, q.QUORUM_MODEL_V1, q.QuorumModelV1Data(None, on_nodelist))
    q.quorum_trackstart(h, CUR)
    assert rc(q.quorum_dispatch, h, ALL) == BAD_HANDLE
    assert rc(q.quorum_getquorate, h) == BAD_HANDLE


def test_s5_a_handle_of_one_library_is_bad_for_the_other(cluster: Target) -> None:
    p = Probe(cluster)
    vh = cluster.vq_initialize(1, None)
    try:
        assert rc(vq.votequorum_getinfo, p.handle, 0) == BAD_HANDLE
        assert rc(vq.votequorum_dispatch, p.handle, ALL) == BAD_HANDLE
        assert rc(q.quorum_getquorate, vh) == BAD_HANDLE
        assert rc(q.quorum_finalize, vh) == BAD_HANDLE
    finally:
        p.close()
        assert rc(vq.votequorum_finalize, vh) == OK


def test_s5_a_callback_exception_leaves_dispatch_with_the_rest_queued(cluster: Target) -> None:
    class Boom(Exception):
        pass

    seen: list[str] = []

    def on_nodelist(*_: Any) -> None:
        seen.append("nodelist")
        raise Boom

    h, _ = cluster.initialize(1, q.QUORUM_MODEL_V1, q.QuorumModelV1Data(
        lambda *_: seen.append("quorum"), on_nodelist))
    try:
        q.quorum_trackstart(h, CUR)
        with pytest.raises(Boom):
            q.quorum_dispatch(h, ALL)
        assert seen == ["nodelist"]
        q.quorum_dispatch(h, ALL)
        assert seen == ["nodelist", "quorum"]
    finally:
        q.quorum_finalize(h)


# ====================================================================== §6 daemon death
def test_s6_daemon_killed_under_connected_clients(fresh_cluster: FreshCluster) -> None:
    c = fresh_cluster(2, two_node=True)
    c.start(1)
    c.start(2)
    idle = Probe(c)
    one = Probe(c)
    blocking = Probe(c)
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
        c.initialize(1, q.QUORUM_MODEL_V1, None, None)
    assert e.value.code == LIBRARY


# ====================================================================== §7 content
def test_s7_fresh_singleton_is_ring_n_5_inquorate_then_restart_continues(
        fresh_cluster: FreshCluster) -> None:
    c = fresh_cluster(3)
    c.start(2)
    p = Probe(c, 2)
    q.quorum_trackstart(p.handle, CUR)
    assert p.take() == [("nodelist", (2, 5), (2,), (), ()), ("quorum", 0, (2, 5), (2,))]
    p.close()
    c.stop(2)
    c.start(2)
    p = Probe(c, 2)
    q.quorum_trackstart(p.handle, CUR)
    (_, ring, members, _, _), _ = p.take()
    p.close()
    assert ring[0] == 2 and ring[1] > 5 and members == (2,)


def test_s7_ring_seq_grows_and_rep_is_lowest(fresh_cluster: FreshCluster) -> None:
    c = fresh_cluster(3)
    c.start(2)
    c.start(3)
    p = Probe(c, 3)
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
        fresh_cluster: FreshCluster) -> None:
    c = fresh_cluster(2, two_node=True)
    c.start(1)
    c.start(2)
    p = Probe(c, 1)
    q.quorum_trackstart(p.handle, CUR | CHG)
    p.wait_for(lambda evs: any(e[0] == "quorum" and e[1] == 1 and e[3] == (1, 2) for e in evs))
    c.kill(2)
    p.wait_for(lambda evs: bool(evs) and evs[-1][0] == "quorum" and evs[-1][3] == (1,))
    assert p.events[-1][1] == 1  # the survivor stays quorate
    p.close()
    # node 2 restarts cut off from node 1: wait_for_all keeps it inquorate
    c.partition([[1], [2]])
    c.start(2)
    p2 = Probe(c, 2)
    assert q.quorum_getquorate(p2.handle) == 0
    q.quorum_trackstart(p2.handle, CUR | CHG)
    c.heal()
    p2.wait_for(lambda evs: bool(evs) and evs[-1][0] == "quorum" and evs[-1][3] == (1, 2))
    assert p2.events[-1][1] == 1
    p2.close()


def test_s7_wait_for_all_two_of_three_inquorate_until_all_seen(
        fresh_cluster: FreshCluster) -> None:
    c = fresh_cluster(3, wait_for_all=True)
    c.start(1)
    c.start(2)
    p = Probe(c, 1)
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


def test_s7_quick_restart_is_in_both_joined_and_left(fresh_cluster: FreshCluster) -> None:
    # token 5000: the restart (well under a second) is faster than failure detection
    c = fresh_cluster(2, two_node=True, token_ms=5000)
    c.start(1)
    c.start(2)
    p = Probe(c, 2)
    q.quorum_trackstart(p.handle, CUR | CHG)
    p.wait_for(lambda evs: any(e[0] == "quorum" and e[3] == (1, 2) for e in evs))
    mark = len(p.events)
    c.kill(1)
    c.start(1)
    p.wait_for(lambda evs: len(evs) > mark and evs[-1][0] == "quorum")
    nodelists = [e for e in p.events[mark:] if e[0] == "nodelist"]
    assert nodelists[-1][2:] == ((1, 2), (1,), (1,))
    p.close()


# ====================================================================== votequorum (spec 4.8)
class VqProbe:
    """A votequorum handle recording ``(kind, context, ...)`` tuples."""

    def __init__(self, target: Target, node: int = 1) -> None:
        self.events: list[tuple[Any, ...]] = []
        cbs = vq.VotequorumCallbacks(self._quorum, self._nodelist, self._expected)
        self.handle = target.vq_initialize(node, cbs)

    def _quorum(self, h: int, context: int, quorate: int,
                nodes: list[vq.VotequorumNode]) -> None:
        assert h == self.handle and all(isinstance(n, vq.VotequorumNode) for n in nodes)
        # compared as a set: Corosync 3.1.7 lists the other nodes first and the local node
        # last (node 1: [2, 3, 1], node 2: [1, 3, 2]); pyquorumd lists them ascending
        self.events.append(("quorum", context, quorate, frozenset(nodes)))

    def _nodelist(self, h: int, context: int, ring: vq.VotequorumRingId,
                  nodeids: list[int]) -> None:
        assert h == self.handle and isinstance(ring, vq.VotequorumRingId)
        self.events.append(("nodelist", context, (ring.nodeid, ring.seq), tuple(nodeids)))

    def _expected(self, h: int, context: int, expected_votes: int) -> None:
        assert h == self.handle
        self.events.append(("expected", context, expected_votes))

    def take(self) -> list[tuple[Any, ...]]:
        start = len(self.events)
        vq.votequorum_dispatch(self.handle, ALL)
        return self.events[start:]

    def wait_for(self, pred: Callable[[list[tuple[Any, ...]]], bool],
                 timeout: float = WAIT_S) -> list[tuple[Any, ...]]:
        fd = vq.votequorum_fd_get(self.handle)
        deadline = time.monotonic() + timeout
        while not pred(self.events):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; events so far: {self.events}"
            if poll_readable(fd, left):
                vq.votequorum_dispatch(self.handle, ALL)
        return self.events

    def close(self) -> None:
        rc(vq.votequorum_finalize, self.handle)


MEMBERS3 = frozenset(vq.VotequorumNode(n, vq.VOTEQUORUM_NODESTATE_MEMBER) for n in (1, 2, 3))


def test_vq_getinfo_of_a_quorate_three_node_cluster(cluster: Target) -> None:
    p = VqProbe(cluster)
    try:
        for nodeid, expect_id in ((0, 1), (1, 1), (2, 2), (3, 3)):
            info = vq.votequorum_getinfo(p.handle, nodeid)
            assert isinstance(info, vq.VotequorumInfo)
            assert (info.node_id, info.node_state, info.node_votes, info.node_expected_votes,
                    info.highest_expected, info.total_votes, info.quorum,
                    info.qdevice_votes, info.qdevice_name) == (
                expect_id, vq.VOTEQUORUM_NODESTATE_MEMBER, 1, 3, 3, 3, 2, 0, ""), nodeid
            assert info.flags & vq.VOTEQUORUM_INFO_QUORATE
        assert rc(vq.votequorum_getinfo, p.handle, 99) == NOT_EXIST
        assert rc(vq.votequorum_getinfo, p.handle, -1) == INVALID_PARAM
    finally:
        p.close()


def test_vq_trackstart_snapshot_carries_this_calls_context(cluster: Target) -> None:
    p = VqProbe(cluster)
    try:
        assert rc(vq.votequorum_trackstop, p.handle) == NOT_EXIST  # not tracking
        vq.votequorum_trackstart(p.handle, 0xFEED, CUR)
        (kn, ctx_n, ring, members), (kq, ctx_q, quorate, nodes) = p.take()
        assert (kn, ctx_n, members) == ("nodelist", 0xFEED, (1, 2, 3)) and ring[0] == 1
        assert (kq, ctx_q, quorate, nodes) == ("quorum", 0xFEED, 1, MEMBERS3)
        vq.votequorum_trackstart(p.handle, 7, CUR | CHG)
        assert [(e[0], e[1]) for e in p.take()] == [("nodelist", 7), ("quorum", 7)]
        assert rc(vq.votequorum_trackstart, p.handle, 8, CUR | CHG) == EXIST
        assert [(e[0], e[1]) for e in p.take()] == [("nodelist", 8), ("quorum", 8)]
        assert rc(vq.votequorum_trackstart, p.handle, 9, ONLY) == EXIST
        assert p.take() == []
        assert rc(vq.votequorum_trackstop, p.handle) == OK
        assert rc(vq.votequorum_trackstop, p.handle) == NOT_EXIST
        assert rc(vq.votequorum_trackstart, p.handle, 1, ONLY) == OK
        assert p.take() == []
    finally:
        p.close()


def test_vq_dispatch_flags_context_and_bad_handles(cluster: Target) -> None:
    p = VqProbe(cluster)
    h = p.handle
    assert rc(vq.votequorum_dispatch, h, ALL) == OK
    assert rc(vq.votequorum_dispatch, h, ONE_NB) == TRY_AGAIN
    for bad in (0, 5):
        assert rc(vq.votequorum_dispatch, h, bad) == INVALID_PARAM
    assert vq.votequorum_context_get(h) is None
    vq.votequorum_context_set(h, "ctx")
    assert vq.votequorum_context_get(h) == "ctx"
    assert isinstance(vq.votequorum_fd_get(h), int)
    assert rc(vq.votequorum_finalize, h) == OK
    for fn, args in [(vq.votequorum_finalize, ()), (vq.votequorum_fd_get, ()),
                     (vq.votequorum_getinfo, (0,)), (vq.votequorum_dispatch, (ALL,)),
                     (vq.votequorum_trackstart, (0, CUR)), (vq.votequorum_trackstop, ()),
                     (vq.votequorum_setexpected, (3,)), (vq.votequorum_setvotes, (1, 1)),
                     (vq.votequorum_context_get, ()), (vq.votequorum_context_set, (1,))]:
        assert rc(fn, h, *args) == BAD_HANDLE, fn.__name__


def test_vq_refused_changes_leave_the_cluster_as_it_was(cluster: Target) -> None:
    p = VqProbe(cluster)
    try:
        before = vq.votequorum_getinfo(p.handle, 0)
        assert rc(vq.votequorum_setexpected, p.handle, 2) == INVALID_PARAM  # < total votes
        assert rc(vq.votequorum_setvotes, p.handle, 99, 1) == NAME_NOT_FOUND
        for name in ("", "x" * 255):
            assert rc(vq.votequorum_qdevice_register, p.handle, name) == INVALID_PARAM
        assert rc(vq.votequorum_qdevice_unregister, p.handle, "Qdevice") == NOT_EXIST
        assert rc(vq.votequorum_qdevice_poll, p.handle, "Qdevice", 1,
                  vq.VotequorumRingId(1, 1)) == NOT_EXIST
        assert rc(vq.votequorum_qdevice_master_wins, p.handle, "Qdevice", 1) == NOT_EXIST
        assert rc(vq.votequorum_qdevice_update, p.handle, "Qdevice", "Q2") == NOT_EXIST
        assert vq.votequorum_getinfo(p.handle, 0) == before
    finally:
        p.close()


def test_vq_setexpected_raises_quorum_and_notifies_trackers(fresh_cluster: FreshCluster) -> None:
    c = fresh_cluster(3)
    for n in (1, 2, 3):
        c.start(n)
    wait_quorate(c, (1, 2, 3))
    p = VqProbe(c)
    other = VqProbe(c, 2)
    try:
        vq.votequorum_trackstart(p.handle, 11, CHG)
        vq.votequorum_trackstart(other.handle, 22, ONLY)
        p.take()
        vq.votequorum_setexpected(p.handle, 5)
        p.wait_for(lambda evs: ("expected", 11, 5) in evs)
        other.wait_for(lambda evs: ("expected", 22, 5) in evs)
        info = vq.votequorum_getinfo(p.handle, 0)
        assert (info.node_expected_votes, info.highest_expected, info.quorum) == (5, 5, 3)
        assert info.flags & vq.VOTEQUORUM_INFO_QUORATE  # 3 votes of 3 needed
        assert vq.votequorum_getinfo(other.handle, 0).quorum == 3
        assert vq.votequorum_getinfo(p.handle, 3).node_expected_votes == 5
    finally:
        p.close()
        other.close()
