"""votequorum's runtime re-read on a configuration reload (spec 4.10, 4.2 runtime column).

Each test starts a ``VoteQuorum`` from one configuration, reloads another, and checks
the state and the messages it asks to multicast (NODEINFO for us and the qdevice,
then RECONFIGURE for changed votes / expected votes), as Corosync's
``votequorum_refresh_config`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyquorum.config.model import ClusterConfig, DeviceConfig, NodeConfig, QuorumConfig
from pyquorum.core.votequorum import (
    AtbMode,
    Logged,
    NodeinfoBroadcastRequested,
    ReconfigureRequested,
    VoteQuorum,
    VqEvent,
)
from pyquorum.types import RingId
from pyquorum.wire.messages import NodeFlag, NodeInfo, Reconfigure, ReconfigureParam


def config(votes: Sequence[int] | int = 3, **quorum: object) -> ClusterConfig:
    vote_list = [1] * votes if isinstance(votes, int) else list(votes)
    nodes = tuple(NodeConfig(i, quorum_votes=v) for i, v in enumerate(vote_list, start=1))
    quorum.setdefault("provider", "corosync_votequorum")
    return ClusterConfig(nodes=nodes, quorum=QuorumConfig(**quorum))  # type: ignore[arg-type]


def drain(vq: VoteQuorum) -> list[VqEvent]:
    out = []
    while (ev := vq.next_event()) is not None:
        out.append(ev)
    return out


def started(cfg: ClusterConfig, members: Sequence[int] = (1, 2, 3)) -> VoteQuorum:
    """Node 1 up in a view of ``members`` (each with its configured votes)."""
    vq = VoteQuorum(cfg, 1, None, 0)
    vq.sync_init(members, members, RingId(1, 4), 0)
    for m in members:
        node = cfg.node(m)
        votes = node.quorum_votes if node is not None else 1
        info = vq.local_nodeinfo() if m == 1 else NodeInfo(m, votes, vq.expected_votes, 0)
        vq.deliver_nodeinfo(info, 0, sender=m)
    vq.sync_activate(0)
    drain(vq)
    return vq


def broadcasts(events: list[VqEvent]) -> list[object]:
    out: list[object] = []
    for ev in events:
        if isinstance(ev, NodeinfoBroadcastRequested):
            out.append(("nodeinfo", ev.info.nodeid))
        elif isinstance(ev, ReconfigureRequested):
            out.append(ev.payload)
    return out


def crit(events: list[VqEvent]) -> list[str]:
    return [e.message for e in events if isinstance(e, Logged) and e.level == "crit"]


def deliver_own(vq: VoteQuorum, events: list[VqEvent]) -> None:
    """Deliver what the reload multicast back to us, in order."""
    for ev in events:
        if isinstance(ev, NodeinfoBroadcastRequested):
            vq.deliver_nodeinfo(ev.info, 1, sender=1)
        elif isinstance(ev, ReconfigureRequested):
            vq.deliver_reconfigure(ev.payload, 1)


def test_unchanged_config_sends_both_nodeinfos_and_no_reconfigure() -> None:
    vq = started(config(3))
    vq.reload(config(3), 1)
    assert broadcasts(drain(vq)) == [("nodeinfo", 1), ("nodeinfo", 0)]
    assert (vq.votes, vq.expected_votes, vq.quorum, vq.quorate) == (1, 3, 2, True)


def test_changed_votes_and_nodelist_send_reconfigures_in_order() -> None:
    vq = started(config(3))
    vq.reload(config([2, 1, 1, 1]), 1)
    events = drain(vq)
    assert broadcasts(events) == [
        ("nodeinfo", 1), ("nodeinfo", 0),
        Reconfigure(1, 2, ReconfigureParam.NODE_VOTES),
        Reconfigure(1, 5, ReconfigureParam.EXPECTED_VOTES),
    ]
    deliver_own(vq, events)
    drain(vq)
    assert (vq.votes, vq.expected_votes, vq.total_votes, vq.quorum) == (2, 5, 4, 3)
    assert vq.quorate


def test_reload_has_no_safety_check_and_can_make_the_cluster_inquorate() -> None:
    """setexpected refuses values that make quorum impossible; a reload does not."""
    vq = started(config(3), members=(1, 2))
    vq.reload(config(3, expected_votes=7), 1)
    events = drain(vq)
    assert Reconfigure(1, 7, ReconfigureParam.EXPECTED_VOTES) in broadcasts(events)
    deliver_own(vq, events)
    drain(vq)
    assert (vq.expected_votes, vq.quorum, vq.quorate) == (7, 4, False)


def test_two_node_is_reset_and_wait_for_all_follows_it_unless_configured() -> None:
    vq = started(config(2, two_node=True), members=(1, 2))
    assert (vq.two_node, vq.wait_for_all) == (True, True)
    vq.reload(config(2), 1)
    drain(vq)
    assert (vq.two_node, vq.wait_for_all) == (False, False)  # Corosync PR #521
    vq.reload(config(2, two_node=True), 1)
    drain(vq)
    assert (vq.two_node, vq.wait_for_all) == (True, True)

    explicit = started(config(2, two_node=True, wait_for_all=True), members=(1, 2))
    explicit.reload(config(2, wait_for_all=False), 1)  # wait_for_all: startup only
    drain(explicit)
    assert (explicit.two_node, explicit.wait_for_all) == (False, True)


def test_wait_for_all_status_is_not_rearmed_by_a_reload() -> None:
    """Corosync PR #542: the status is set at startup only."""
    vq = started(config(3, wait_for_all=True))
    assert not vq.wait_for_all_status  # all nodes seen: cleared
    vq.reload(config(3, wait_for_all=True), 1)
    drain(vq)
    assert not vq.wait_for_all_status
    assert not vq.local_nodeinfo().flags & NodeFlag.WFASTATUS


def test_startup_only_keys_keep_their_running_values() -> None:
    vq = started(config(3))
    vq.reload(config(3, last_man_standing=True, allow_downscale=True,
                     expected_votes_tracking=True, auto_tie_breaker=True), 1)
    drain(vq)
    assert (vq.lms_enabled, vq.allow_downscale, vq.ev_tracking, vq.atb_mode) == (
        False, False, False, AtbMode.NONE)


def test_auto_tie_breaker_returns_to_its_startup_mode() -> None:
    """ATB given at startup but disabled on an odd cluster without wait_for_all (4.2
    #8) comes back when a reload makes the nodelist even."""
    vq = started(config(3, auto_tie_breaker=True))
    assert vq.atb_mode == AtbMode.NONE
    vq.reload(config(4, auto_tie_breaker=True), 1)
    drain(vq)
    assert vq.atb_mode == AtbMode.LOWEST
    vq.reload(config(5, auto_tie_breaker=True), 1)
    events = drain(vq)
    assert vq.atb_mode == AtbMode.NONE
    assert any("odd number of nodes" in m for m in crit(events))


def test_qdevice_fatal_combinations_disable_the_device_at_runtime() -> None:
    vq = started(config(3, last_man_standing=True))
    vq.reload(config(3, last_man_standing=True, device=DeviceConfig("net")), 1)
    events = drain(vq)
    assert not vq.qdevice_can_operate
    assert "configuration error: quorum.device is not compatible with last_man_standing" in \
        crit(events)
    assert "disabling quorum device operations" in crit(events)
    vq.reload(config(3, last_man_standing=True), 1)  # device gone from the file
    drain(vq)
    assert vq.qdevice_votes == 0


def test_a_fixed_device_config_re_enables_the_device() -> None:
    vq = started(config(3))
    vq.reload(config(3, expected_votes=5, device=DeviceConfig("net")), 1)
    drain(vq)
    assert not vq.qdevice_can_operate  # 4.2 #10: votes must be given with expected_votes
    vq.reload(config(3, expected_votes=5, device=DeviceConfig("net", votes=2)), 1)
    drain(vq)
    assert vq.qdevice_can_operate and vq.qdevice_votes == 2


def test_device_votes_are_derived_on_reload() -> None:
    vq = started(config(3))
    vq.reload(config(3, device=DeviceConfig("net")), 1)
    events = drain(vq)
    assert vq.qdevice_votes == 2  # 4.2 #13: N - 1
    assert Reconfigure(1, 5, ReconfigureParam.EXPECTED_VOTES) in broadcasts(events)


def test_two_node_with_an_unregistered_device_disables_the_device() -> None:
    vq = started(config(2), members=(1, 2))
    vq.reload(config(2, two_node=True, device=DeviceConfig("net", votes=1)), 1)
    events = drain(vq)
    assert vq.two_node and not vq.qdevice_can_operate
    assert "quorum device is not registered, allowing two_node" in crit(events)


def test_no_nodelist_and_no_expected_votes_keeps_the_current_data() -> None:
    vq = started(config(3))
    vq.reload(ClusterConfig(quorum=QuorumConfig(provider="corosync_votequorum")), 1)
    events = drain(vq)
    assert broadcasts(events) == []
    assert "will continue with current runtime data" in crit(events)
    assert (vq.votes, vq.expected_votes, vq.quorate) == (1, 3, True)
