"""The quorum service (``QuorumService``) on its own: trackstart/trackstop return codes and
the notifications each call queues (oracle api-edge-cases.md section 3), the per-flag
behaviour on membership changes, joined/left lists (spec 3.12) and the no-provider mode."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyquorum.core.tracking import (
    CS_TRACK_CHANGES,
    CS_TRACK_CHANGES_ONLY,
    CS_TRACK_CURRENT,
    QUORUM_FREE,
    QUORUM_MODEL_V0,
    QUORUM_MODEL_V1,
    QUORUM_SET,
    NodelistNotification,
    QuorumNotification,
    QuorumService,
    QuorumServiceNotification,
)
from pyquorum.errors import CsErr
from pyquorum.types import NULL_RING, RingId

CUR = CS_TRACK_CURRENT
CHG = CS_TRACK_CHANGES
ONLY = CS_TRACK_CHANGES_ONLY
OK = CsErr.CS_OK
EXIST = CsErr.CS_ERR_EXIST

RING_9 = RingId(1, 0x9)
RING_D = RingId(1, 0xD)
RING_12 = RingId(1, 0x12)
ALL3 = (1, 2, 3)
CONN = 7


# ====================================================================== helpers
def quorate_service(members: Sequence[int] = ALL3, ring: RingId = RING_9) -> QuorumService:
    """A provider-backed service after one completed sync of ``ring`` (quorate)."""
    svc = QuorumService(provider=True)
    svc.sync_started(ring, members)
    svc.nodelist_activated(members)
    svc.quorum_changed(True, ring, members)
    svc.take_notifications()
    return svc


def connect(svc: QuorumService, conn: int = CONN, model: int = QUORUM_MODEL_V1) -> None:
    svc.connect(conn)
    assert svc.gettype(conn, model) == QUORUM_SET
    assert svc.take_notifications() == []


def notes_for(svc: QuorumService, conn: int = CONN) -> list[QuorumServiceNotification]:
    out = svc.take_notifications()
    assert all(c == conn for c, _ in out), out
    return [n for _, n in out]


def snapshot(model: int, quorate: bool = True, ring: RingId = RING_9,
             members: tuple[int, ...] = ALL3) -> list[QuorumServiceNotification]:
    """The immediate current-state "pair" (V0: only the quorum callback)."""
    quorum = QuorumNotification(model, quorate, ring, members)
    if model == QUORUM_MODEL_V0:
        return [quorum]
    return [NodelistNotification(ring, members, (), ()), quorum]


def kill_node_3(svc: QuorumService) -> None:
    """Node 3 SIGKILLed: ring 1.d with [1, 2], transitional [1, 2]."""
    svc.sync_started(RING_D, (1, 2))
    svc.nodelist_activated((1, 2))
    svc.quorum_changed(True, RING_D, (1, 2))


def rejoin_node_3(svc: QuorumService) -> None:
    """Node 3 restarted: ring 1.12 with [1, 2, 3]; it comes from its own ring."""
    svc.sync_started(RING_12, ALL3)
    svc.nodelist_activated((1, 2))
    svc.quorum_changed(True, RING_12, ALL3)


KILL_V1: list[QuorumServiceNotification] = [
    NodelistNotification(RING_D, (1, 2), (), (3,)),
    QuorumNotification(QUORUM_MODEL_V1, True, RING_D, (1, 2)),
]
REJOIN_V1: list[QuorumServiceNotification] = [
    NodelistNotification(RING_12, ALL3, (3,), ()),
    QuorumNotification(QUORUM_MODEL_V1, True, RING_12, ALL3),
]


# ====================================================================== section 3 table
# Each row: the calls on one handle (("start", flags) or ("stop",)), the rc of each call,
# how many current-state snapshots each call queues, and whether the handle then tracks.
Call = tuple[str, int] | tuple[str]
ROWS: list[tuple[str, list[Call], list[CsErr], list[int], bool]] = [
    ("current|changes x2 then changes_only",
     [("start", CUR | CHG), ("start", CUR | CHG), ("start", ONLY)],
     [OK, EXIST, EXIST], [1, 1, 0], True),
    ("current x2", [("start", CUR), ("start", CUR)], [OK, OK], [1, 1], False),
    ("current then current|changes", [("start", CUR), ("start", CUR | CHG)],
     [OK, OK], [1, 1], True),
    ("current then trackstop", [("start", CUR), ("stop",)], [OK, OK], [1, 0], False),
    ("changes_only then current", [("start", ONLY), ("start", CUR)],
     [OK, EXIST], [0, 1], True),
    ("changes_only x2", [("start", ONLY), ("start", ONLY)], [OK, EXIST], [0, 0], True),
    ("changes, stop, stop, changes",
     [("start", CHG), ("stop",), ("stop",), ("start", CHG)],
     [OK, OK, OK, OK], [1, 0, 0, 1], True),
    ("zero then changes", [("start", 0), ("start", CHG)], [OK, OK], [0, 1], True),
    ("undefined bit 0x08", [("start", 0x08)], [OK], [0], False),
    ("all three bits 0x07", [("start", 0x07)], [OK], [1], True),
    ("trackstop without trackstart", [("stop",)], [OK], [0], False),
    ("trackstop twice", [("stop",), ("stop",)], [OK, OK], [0, 0], False),
]


@pytest.mark.parametrize("model", [QUORUM_MODEL_V1, QUORUM_MODEL_V0], ids=["V1", "V0"])
@pytest.mark.parametrize(
    ("calls", "rcs", "snapshots", "tracking"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_sequence_on_one_handle(
    model: int, calls: list[Call], rcs: list[CsErr], snapshots: list[int], tracking: bool
) -> None:
    svc = quorate_service()
    connect(svc, model=model)
    for call, want_rc, want_snapshots in zip(calls, rcs, snapshots, strict=True):
        if call[0] == "start":
            assert len(call) == 2
            rc = svc.trackstart(CONN, call[1])
        else:
            rc = svc.trackstop(CONN)
        assert rc == want_rc, call
        assert notes_for(svc) == snapshot(model) * want_snapshots, call
    # whether the handle tracks shows on the next membership change
    kill_node_3(svc)
    got = notes_for(svc)
    if not tracking:
        assert got == []
    elif model == QUORUM_MODEL_V1:
        assert got == KILL_V1
    else:
        assert got == [QuorumNotification(QUORUM_MODEL_V0, True, RING_D, (1, 2))]


def test_snapshot_pair_content_nodelist_first_same_ring_empty_joined_left() -> None:
    svc = quorate_service()
    connect(svc)
    assert svc.trackstart(CONN, CUR) == OK
    first, second = notes_for(svc)
    assert first == NodelistNotification(RING_9, ALL3, (), ())
    assert second == QuorumNotification(QUORUM_MODEL_V1, True, RING_9, ALL3)
    assert isinstance(first, NodelistNotification)
    assert first.joined == () and first.left == ()
    assert first.ring == second.ring


def test_snapshot_after_changes_keeps_joined_left_empty() -> None:
    """Even right after a change with joined/left, the snapshot's lists are empty."""
    svc = quorate_service()
    kill_node_3(svc)
    svc.take_notifications()
    connect(svc)
    assert svc.trackstart(CONN, CUR) == OK
    assert notes_for(svc) == snapshot(QUORUM_MODEL_V1, ring=RING_D, members=(1, 2))


def test_snapshot_nodelist_uses_last_started_sync() -> None:
    """The snapshot nodelist reports the sync that started; the quorum part the last view."""
    svc = quorate_service()
    svc.sync_started(RING_D, (1, 2))  # not activated yet
    connect(svc)
    assert svc.trackstart(CONN, CUR) == OK
    assert notes_for(svc) == [
        NodelistNotification(RING_D, (1, 2), (), ()),
        QuorumNotification(QUORUM_MODEL_V1, True, RING_9, ALL3),
    ]


def test_inquorate_snapshot_reports_quorate_zero() -> None:
    svc = QuorumService(provider=True)
    svc.sync_started(RingId(1, 5), (1,))
    svc.nodelist_activated((1,))
    svc.quorum_changed(False, RingId(1, 5), (1,))
    svc.take_notifications()
    connect(svc)
    assert svc.trackstart(CONN, CUR | CHG) == OK
    assert notes_for(svc) == snapshot(QUORUM_MODEL_V1, quorate=False, ring=RingId(1, 5),
                                      members=(1,))


def test_v0_snapshot_is_only_the_quorum_callback() -> None:
    svc = quorate_service()
    connect(svc, model=QUORUM_MODEL_V0)
    assert svc.trackstart(CONN, CUR | CHG) == OK
    got = notes_for(svc)
    assert got == [QuorumNotification(QUORUM_MODEL_V0, True, RING_9, ALL3)]
    assert got[0].ring.seq == 9  # V0 clients read the seq only


def test_connection_defaults_to_v0_until_model_gettype() -> None:
    svc = quorate_service()
    svc.connect(CONN)
    assert svc.trackstart(CONN, CUR) == OK
    assert notes_for(svc) == snapshot(QUORUM_MODEL_V0)
    assert svc.gettype(CONN, None) == QUORUM_SET  # plain GETTYPE keeps the model
    assert svc.trackstart(CONN, CUR) == OK
    assert notes_for(svc) == snapshot(QUORUM_MODEL_V0)
    assert svc.gettype(CONN, QUORUM_MODEL_V1) == QUORUM_SET
    assert svc.trackstart(CONN, CUR) == OK
    assert notes_for(svc) == snapshot(QUORUM_MODEL_V1)


def test_fresh_service_is_inquorate_with_provider() -> None:
    svc = QuorumService(provider=True)
    assert svc.quorate is False
    connect(svc)
    assert svc.trackstart(CONN, CUR) == OK
    quorum = notes_for(svc)[-1]
    assert quorum == QuorumNotification(QUORUM_MODEL_V1, False, NULL_RING, ())


# ====================================================================== per flag set, on changes
FLAG_ROWS: list[tuple[str, int, bool, bool]] = [
    # name, flags, snapshot at trackstart, events on changes
    ("CURRENT", CUR, True, False),
    ("CHANGES", CHG, True, True),
    ("CHANGES_ONLY", ONLY, False, True),
    ("CURRENT|CHANGES", CUR | CHG, True, True),
    ("CURRENT|CHANGES_ONLY", CUR | ONLY, True, True),
]


@pytest.mark.parametrize(("flags", "at_start", "on_changes"), [r[1:] for r in FLAG_ROWS],
                         ids=[r[0] for r in FLAG_ROWS])
def test_callback_sequences_per_flag_set(flags: int, at_start: bool, on_changes: bool) -> None:
    svc = quorate_service()
    connect(svc)
    assert svc.trackstart(CONN, flags) == OK
    assert notes_for(svc) == (snapshot(QUORUM_MODEL_V1) if at_start else [])
    kill_node_3(svc)
    assert notes_for(svc) == (KILL_V1 if on_changes else [])
    rejoin_node_3(svc)
    assert notes_for(svc) == (REJOIN_V1 if on_changes else [])


def test_trackstop_after_current_changes_stops_everything() -> None:
    svc = quorate_service()
    connect(svc)
    assert svc.trackstart(CONN, CUR | CHG) == OK
    assert notes_for(svc) == snapshot(QUORUM_MODEL_V1)
    assert svc.trackstop(CONN) == OK
    kill_node_3(svc)
    assert notes_for(svc) == []
    rejoin_node_3(svc)
    assert notes_for(svc) == []


def test_v0_tracker_gets_quorum_on_changes_but_never_nodelist() -> None:
    svc = quorate_service()
    connect(svc, model=QUORUM_MODEL_V0)
    assert svc.trackstart(CONN, CHG) == OK
    notes_for(svc)
    kill_node_3(svc)
    rejoin_node_3(svc)
    assert notes_for(svc) == [
        QuorumNotification(QUORUM_MODEL_V0, True, RING_D, (1, 2)),
        QuorumNotification(QUORUM_MODEL_V0, True, RING_12, ALL3),
    ]
    svc.sync_started(RingId(1, 0x16), ALL3)
    svc.nodelist_activated(ALL3)
    assert svc.take_notifications() == []


def test_quorum_event_sent_even_when_quorate_does_not_change() -> None:
    svc = quorate_service()
    connect(svc)
    svc.trackstart(CONN, ONLY)
    svc.quorum_changed(True, RING_9, ALL3)
    svc.quorum_changed(True, RING_9, ALL3)
    assert notes_for(svc) == [QuorumNotification(QUORUM_MODEL_V1, True, RING_9, ALL3)] * 2


def test_quorum_flip_outside_sync_updates_bit_and_view() -> None:
    svc = quorate_service()
    connect(svc)
    svc.trackstart(CONN, ONLY)
    svc.quorum_changed(False, RING_9, (3, 1, 2))
    assert svc.quorate is False
    assert svc.view_members == ALL3  # sorted
    assert notes_for(svc) == [QuorumNotification(QUORUM_MODEL_V1, False, RING_9, ALL3)]


def test_every_tracker_gets_every_event_in_connection_order() -> None:
    svc = quorate_service()
    for conn, model in ((5, QUORUM_MODEL_V1), (2, QUORUM_MODEL_V0), (9, QUORUM_MODEL_V1)):
        connect(svc, conn, model)
        assert svc.trackstart(conn, ONLY) == OK
    svc.connect(4)  # connected, not tracking
    kill_node_3(svc)
    got = svc.take_notifications()
    assert [c for c, _ in got] == [5, 9, 2, 5, 9]  # nodelist (V1 only), then quorum
    assert got[0][1] == got[1][1] == KILL_V1[0]
    assert got[2][1] == QuorumNotification(QUORUM_MODEL_V0, True, RING_D, (1, 2))


def test_snapshot_goes_only_to_the_calling_connection() -> None:
    svc = quorate_service()
    connect(svc, 1)
    connect(svc, 2)
    assert svc.trackstart(1, CHG) == OK
    svc.take_notifications()
    assert svc.trackstart(2, CUR) == OK
    assert {c for c, _ in svc.take_notifications()} == {2}


# ====================================================================== trackstop, disconnect
@pytest.mark.parametrize("conn", [CONN, 12345])
def test_trackstop_always_ok(conn: int) -> None:
    svc = quorate_service()
    connect(svc)
    assert svc.trackstop(conn) == OK  # not tracking (12345 never connected)
    assert svc.trackstart(CONN, CHG) == OK
    assert svc.trackstop(conn) == OK
    assert svc.trackstop(conn) == OK


def test_queued_events_survive_trackstop() -> None:
    svc = quorate_service()
    connect(svc)
    svc.trackstart(CONN, CUR | CHG)
    svc.trackstop(CONN)
    assert notes_for(svc) == snapshot(QUORUM_MODEL_V1)


def test_disconnect_removes_tracking() -> None:
    svc = quorate_service()
    connect(svc, 1)
    connect(svc, 2)
    assert svc.trackstart(1, CHG) == OK
    assert svc.trackstart(2, CHG) == OK
    svc.take_notifications()
    svc.disconnect(1)
    svc.disconnect(99)  # unknown: harmless
    kill_node_3(svc)
    assert {c for c, _ in svc.take_notifications()} == {2}
    # the same connection id later is a fresh connection: V0, not tracking
    svc.connect(1)
    assert svc.trackstart(1, CHG) == OK  # not EXIST
    assert svc.take_notifications() == [
        (1, QuorumNotification(QUORUM_MODEL_V0, True, RING_D, (1, 2)))]


# ====================================================================== joined / left
def nodelist_after(svc: QuorumService, ring: RingId, members: Sequence[int],
                   transitional: Sequence[int]) -> NodelistNotification:
    svc.sync_started(ring, members)
    svc.nodelist_activated(transitional)
    out = [n for c, n in svc.take_notifications() if c == CONN]
    assert len(out) == 1
    assert isinstance(out[0], NodelistNotification)
    return out[0]


def tracking_service() -> QuorumService:
    svc = QuorumService(provider=True)
    connect(svc)
    assert svc.trackstart(CONN, ONLY) == OK
    return svc


def test_first_sync_joined_is_everyone_including_self() -> None:
    svc = tracking_service()
    assert nodelist_after(svc, RingId(1, 5), (1,), (1,)) == NodelistNotification(
        RingId(1, 5), (1,), (1,), ())
    svc2 = tracking_service()
    assert nodelist_after(svc2, RING_9, (3, 1, 2), (2,)) == NodelistNotification(
        RING_9, ALL3, ALL3, ())


def test_kill_gives_left_3() -> None:
    svc = tracking_service()
    nodelist_after(svc, RING_9, ALL3, ALL3)
    note = nodelist_after(svc, RING_D, (1, 2), (1, 2))
    assert (note.members, note.joined, note.left) == ((1, 2), (), (3,))


def test_rejoin_gives_joined_3() -> None:
    svc = tracking_service()
    nodelist_after(svc, RING_D, (1, 2), (1, 2))
    note = nodelist_after(svc, RING_12, ALL3, (1, 2))
    assert (note.members, note.joined, note.left) == (ALL3, (3,), ())


def test_quick_restart_is_in_both_joined_and_left() -> None:
    """Survivor 2 of a two_node cluster; node 1 restarted faster than the token."""
    svc = tracking_service()
    nodelist_after(svc, RingId(1, 9), (1, 2), (1, 2))
    note = nodelist_after(svc, RingId(1, 0xD), (1, 2), (2,))
    assert (note.members, note.joined, note.left) == ((1, 2), (1,), (1,))


def test_paused_node_resuming_sees_others_joined_and_left() -> None:
    """Node 3 paused past the token: it comes alone from the old ring 1.9."""
    svc = tracking_service()
    nodelist_after(svc, RING_9, ALL3, ALL3)
    note = nodelist_after(svc, RING_12, ALL3, (3,))
    assert (note.members, note.joined, note.left) == (ALL3, (1, 2), (1, 2))


def test_transitional_member_missing_from_new_view_is_left() -> None:
    svc = tracking_service()
    nodelist_after(svc, RING_9, ALL3, ALL3)
    note = nodelist_after(svc, RING_D, (1, 2), ALL3)
    assert (note.joined, note.left) == ((), (3,))


def test_aborted_sync_accumulates_relative_to_last_activation() -> None:
    svc = tracking_service()
    nodelist_after(svc, RING_9, ALL3, ALL3)
    svc.sync_started(RING_D, (1, 2))  # aborted before the nodelist step activated
    assert svc.take_notifications() == []
    note = nodelist_after(svc, RingId(1, 0x11), (1,), (1,))
    assert (note.ring, note.members, note.joined, note.left) == (RingId(1, 0x11), (1,), (),
                                                                 (2, 3))


def test_not_tracking_v1_gets_no_nodelist_but_old_list_still_advances() -> None:
    svc = QuorumService(provider=True)
    connect(svc)
    svc.sync_started(RING_9, ALL3)
    svc.nodelist_activated(ALL3)
    assert svc.take_notifications() == []
    assert svc.trackstart(CONN, ONLY) == OK
    note = nodelist_after(svc, RING_D, (1, 2), (1, 2))
    assert (note.joined, note.left) == ((), (3,))


member_sets = st.frozensets(st.integers(min_value=1, max_value=10), max_size=10)


@settings(max_examples=300, deadline=None)
@given(old=member_sets, trans=member_sets, new=member_sets)
def test_joined_left_properties(old: frozenset[int], trans: frozenset[int],
                                new: frozenset[int]) -> None:
    svc = tracking_service()
    nodelist_after(svc, RING_9, sorted(old), sorted(old))
    note = nodelist_after(svc, RING_D, sorted(new), sorted(trans))
    joined, left = set(note.joined), set(note.left)
    assert joined <= new
    assert left & new <= joined
    assert new - old <= joined
    assert left <= old
    assert list(note.joined) == sorted(joined) and list(note.left) == sorted(left)
    assert note.members == tuple(sorted(new))


# ====================================================================== no provider
def test_no_provider_gettype_free_and_always_quorate() -> None:
    svc = QuorumService(provider=False)
    svc.connect(CONN)
    assert svc.gettype(CONN, QUORUM_MODEL_V1) == QUORUM_FREE
    assert svc.gettype(CONN, None) == QUORUM_FREE
    assert svc.quorate is True


def test_no_provider_snapshot_ring_zero_no_members() -> None:
    svc = QuorumService(provider=False)
    svc.connect(CONN)
    svc.gettype(CONN, QUORUM_MODEL_V1)
    svc.sync_started(RING_9, ALL3)
    svc.nodelist_activated(ALL3)
    assert svc.trackstart(CONN, CUR) == OK
    assert notes_for(svc) == [
        NodelistNotification(RING_9, ALL3, (), ()),
        QuorumNotification(QUORUM_MODEL_V1, True, RingId(0, 0), ()),
    ]


def test_no_provider_nodelist_flows_quorum_changed_sends_nothing() -> None:
    svc = QuorumService(provider=False)
    svc.connect(CONN)
    svc.gettype(CONN, QUORUM_MODEL_V1)
    assert svc.trackstart(CONN, ONLY) == OK
    svc.sync_started(RING_9, ALL3)
    svc.nodelist_activated(ALL3)
    assert notes_for(svc) == [NodelistNotification(RING_9, ALL3, ALL3, ())]
    svc.quorum_changed(False, RING_9, ALL3)
    assert svc.take_notifications() == []
    assert svc.quorate is True
    assert (svc.view_ring, svc.view_members) == (NULL_RING, ())
    kill_node_3(svc)
    assert notes_for(svc) == [NodelistNotification(RING_D, (1, 2), (), (3,))]
