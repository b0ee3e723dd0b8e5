"""votequorum trackers through the engine (spec 4.8): the snapshot with this call's
context, EXIST after the snapshot, NOT_EXIST from trackstop when not tracking, and the
nodelist / quorum / expected-votes events of a tracking connection on membership changes
and RECONFIGURE, each carrying the context of the registration."""

from __future__ import annotations

from test_engine import ALL3, CONN, quorate_cluster

from pyquorum.core.engine import Notified, Replied, VqSetExpected, VqTrackStart, VqTrackStop
from pyquorum.core.tracking import (
    CS_TRACK_CHANGES,
    CS_TRACK_CHANGES_ONLY,
    CS_TRACK_CURRENT,
    VqExpectedVotesNotification,
    VqNodelistNotification,
    VqQuorumNotification,
)
from pyquorum.errors import CsErr

MEMBER, DEAD = 1, 2


def notes(sim: object, node: int, since: int = 0) -> list[object]:
    evs = sim.events(node, CONN)[since:]  # type: ignore[attr-defined]
    return [ev.notification for ev in evs if isinstance(ev, Notified)]


def test_snapshot_then_exist_then_trackstop_not_exist() -> None:
    sim = quorate_cluster()
    ring = sim.engine(1).ring
    sim.command(1, CONN, VqTrackStart(0xAB, CS_TRACK_CURRENT | CS_TRACK_CHANGES))
    sim.command(1, CONN, VqTrackStart(0xCD, CS_TRACK_CURRENT))
    sim.command(1, CONN, VqTrackStop())
    sim.command(1, CONN, VqTrackStop())
    replies = [ev.error for ev in sim.events(1, CONN) if isinstance(ev, Replied)]
    assert replies == [CsErr.CS_OK, CsErr.CS_ERR_EXIST, CsErr.CS_OK, CsErr.CS_ERR_NOT_EXIST]
    nodes = ((1, MEMBER), (2, MEMBER), (3, MEMBER))
    assert notes(sim, 1) == [
        VqNodelistNotification(0xAB, ring, ALL3), VqQuorumNotification(0xAB, True, nodes),
        # the second snapshot carries the context of *that* call
        VqNodelistNotification(0xCD, ring, ALL3), VqQuorumNotification(0xCD, True, nodes),
    ]


def test_changes_only_sends_no_snapshot_and_current_alone_does_not_register() -> None:
    sim = quorate_cluster()
    sim.command(1, CONN, VqTrackStart(1, CS_TRACK_CURRENT))
    sim.command(1, CONN, VqTrackStop())
    sim.command(1, CONN, VqTrackStart(2, CS_TRACK_CHANGES_ONLY))
    errors = [ev.error for ev in sim.events(1, CONN) if isinstance(ev, Replied)]
    assert errors == [CsErr.CS_OK, CsErr.CS_ERR_NOT_EXIST, CsErr.CS_OK]
    assert len(notes(sim, 1)) == 2  # only the CURRENT snapshot


def test_tracker_sees_nodelist_then_quorum_with_dead_node_after_a_kill() -> None:
    sim = quorate_cluster()
    sim.command(1, CONN, VqTrackStart(7, CS_TRACK_CHANGES_ONLY))
    mark = len(sim.events(1, CONN))
    sim.kill(3)
    assert sim.run_until_true(lambda: sim.converged([1, 2]), 20_000)
    sim.run_for(100)
    got = notes(sim, 1, mark)
    ring = sim.engine(1).ring
    assert got == [
        VqNodelistNotification(7, ring, (1, 2)),
        VqQuorumNotification(7, True, ((1, MEMBER), (2, MEMBER), (3, DEAD))),
    ]


def test_setexpected_sends_expected_votes_event_to_trackers_on_every_node() -> None:
    sim = quorate_cluster()
    for n in ALL3:
        sim.command(n, CONN, VqTrackStart(n * 10, CS_TRACK_CHANGES_ONLY))
    sim.command(2, CONN, VqSetExpected(4))
    assert sim.run_until_true(
        lambda: all(VqExpectedVotesNotification(n * 10, 4) in notes(sim, n) for n in ALL3),
        1_000)


def test_representative_request_submitted_during_gather_is_delivered_at_install() -> None:
    """Regression: the representative re-sends its pending requests when it installs a
    view, and delivers its own at once; iterating the pending table while delivery removes
    entries used to raise RuntimeError (dictionary changed size during iteration)."""
    from pyquorum.core import membership as mb

    sim = quorate_cluster()
    sim.kill(3)
    e1 = sim.engine(1)
    assert sim.run_until_true(lambda: e1.membership.state is mb.State.GATHER, 20_000)
    sim.command(1, CONN, VqSetExpected(3))
    assert sim.run_until_true(lambda: sim.converged([1, 2]), 20_000)
    sim.run_for(500)
    replies = [ev for ev in sim.events(1, CONN) if isinstance(ev, Replied)]
    assert [r.error for r in replies] == [CsErr.CS_OK]
