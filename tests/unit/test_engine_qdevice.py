"""The quorum-device commands through NodeEngine and the simulator (spec 4.9, 4.7).

Each node runs real engines over the simulated network; a ``Device`` plays a quorum
device on one node: it tracks votequorum (to learn the ring id it must poll with, from
the nodelist callback, as corosync-qdevice does) and sends the five qdevice commands
through ``handle_command`` exactly as the daemon's IPC server does.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pyquorum.config.model import ClusterConfig, DeviceConfig
from pyquorum.core.engine import (
    Command,
    EngineEvent,
    NodeEngine,
    Notified,
    QuorumChanged,
    QuorumGetQuorate,
    Replied,
    ViewInstalled,
    VqGetInfo,
    VqQdeviceMasterWins,
    VqQdevicePoll,
    VqQdeviceRegister,
    VqQdeviceUnregister,
    VqQdeviceUpdate,
    VqTrackStart,
)
from pyquorum.core.tracking import (
    CS_TRACK_CHANGES,
    CS_TRACK_CURRENT,
    VqNodelistNotification,
    VqQuorumNotification,
)
from pyquorum.core.votequorum import VoteQuorumInfo, VoteQuorumInfoFlag
from pyquorum.daemon import ipcproto
from pyquorum.errors import CsErr
from pyquorum.sim.scenario import cluster_config
from pyquorum.sim.world import SimNode, Simulator
from pyquorum.types import RingId
from pyquorum.wire import ipc
from pyquorum.wire.messages import QdeviceSynced

OK = CsErr.CS_OK
DEV = 200  # the device's connection id on its node
CLIENT = 300  # another client's connection
TIMEOUT, SYNC_TIMEOUT = 2000, 6000
INFO_REG = VoteQuorumInfoFlag.QDEVICE_REGISTERED
INFO_ALIVE = VoteQuorumInfoFlag.QDEVICE_ALIVE
INFO_VOTE = VoteQuorumInfoFlag.QDEVICE_CAST_VOTE


def device_config(n: int, **device: Any) -> ClusterConfig:
    cfg = cluster_config([str(n), "token", "1000"])
    dev = DeviceConfig("net", timeout_ms=TIMEOUT, sync_timeout_ms=SYNC_TIMEOUT, **device)
    return replace(cfg, quorum=replace(cfg.quorum, device=dev))


class QdSim(Simulator):
    """A Simulator that records every engine event per node, across restarts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.log: list[tuple[int, int, EngineEvent]] = []
        super().__init__(*args, **kwargs)

    def _pump(self, node: SimNode) -> None:
        engine = node.engine
        if engine is not None and not getattr(engine, "_recorded", False):
            next_event = engine.next_event
            nid = node.node_id

            def recording_next_event() -> EngineEvent | None:
                ev = next_event()
                if ev is not None:
                    self.log.append((nid, self.now_ms, ev))
                return ev

            engine.next_event = recording_next_event  # type: ignore[method-assign]
            engine._recorded = True  # type: ignore[attr-defined]
        super()._pump(node)

    def engine(self, n: int) -> NodeEngine:
        engine = self.nodes[n].engine
        assert engine is not None
        return engine

    def command(self, n: int, conn: int, cmd: Command) -> None:
        self.engine(n).handle_command(conn, cmd, self.now_ms)
        self._pump(self.nodes[n])

    def replies(self, n: int, conn: int) -> list[Replied]:
        return [ev for nid, _, ev in self.log
                if nid == n and isinstance(ev, Replied) and ev.conn == conn]

    def ask(self, n: int, conn: int, cmd: Command, timeout_ms: int = 2000) -> Replied:
        """Send ``cmd`` and run until it is answered."""
        before = len(self.replies(n, conn))
        self.command(n, conn, cmd)
        assert self.run_until_true(lambda: len(self.replies(n, conn)) > before, timeout_ms)
        return self.replies(n, conn)[before]

    def info(self, n: int, nodeid: int = 0) -> VoteQuorumInfo:
        ans = self.ask(n, CLIENT, VqGetInfo(nodeid))
        assert isinstance(ans.value, VoteQuorumInfo), ans
        return ans.value

    def views(self, n: int) -> list[tuple[int, ViewInstalled]]:
        return [(t, ev) for nid, t, ev in self.log if nid == n and isinstance(ev, ViewInstalled)]


class Device:
    """A quorum device on node ``n``: tracks votequorum, registers, polls."""

    def __init__(self, sim: QdSim, n: int, name: str = "Qdevice") -> None:
        self.sim, self.n, self.name = sim, n, name
        sim.engine(n).connection_opened(DEV)
        assert sim.ask(n, DEV, VqTrackStart(0, CS_TRACK_CURRENT | CS_TRACK_CHANGES)).error == OK

    @property
    def ring(self) -> RingId:
        """The ring of the last votequorum nodelist callback (what qdevice polls with)."""
        rings = [ev.notification.ring for nid, _, ev in self.sim.log
                 if nid == self.n and isinstance(ev, Notified) and ev.conn == DEV
                 and isinstance(ev.notification, VqNodelistNotification)]
        return rings[-1]

    def register(self) -> CsErr:
        return self.sim.ask(self.n, DEV, VqQdeviceRegister(self.name)).error

    def poll(self, cast_vote: int = 1, ring: RingId | None = None) -> CsErr:
        cmd = VqQdevicePoll(self.name, cast_vote, ring if ring is not None else self.ring)
        return self.sim.ask(self.n, DEV, cmd).error


def cluster(n: int, seed: int = 3, **device: Any) -> QdSim:
    sim = QdSim(device_config(n, **device), seed)
    nodes = list(range(1, n + 1))
    for node in nodes:
        sim.start(node)
    assert sim.run_until_true(
        lambda: sim.converged(nodes) and all(sim.quorate(x) for x in nodes), 10_000)
    for node in nodes:
        sim.engine(node).connection_opened(CLIENT)
    return sim


def with_devices(n: int, **device: Any) -> tuple[QdSim, dict[int, Device]]:
    sim = cluster(n, **device)
    devices = {node: Device(sim, node) for node in range(1, n + 1)}
    for d in devices.values():
        assert d.register() == OK
        assert d.poll() == OK
    sim.run_for(200)  # the NODEINFOs of the polls reach everyone
    return sim, devices


# ====================================================================== register
def test_register_reply_is_deferred_until_the_registration_comes_back() -> None:
    sim = cluster(3)
    dev = Device(sim, 2)  # node 2 is not the representative: the message travels
    sim.command(2, DEV, VqQdeviceRegister("Qdevice"))
    assert [r for r in sim.replies(2, DEV) if isinstance(r.command, VqQdeviceRegister)] == []
    assert sim.run_until_true(lambda: len(sim.replies(2, DEV)) == 2, 1000)
    assert sim.replies(2, DEV)[-1] == Replied(DEV, VqQdeviceRegister("Qdevice"), OK)
    sim.run_for(200)
    for n in (1, 2, 3):
        info = sim.info(n, 2)
        assert (info.qdevice_name, info.qdevice_votes) == ("Qdevice", 2)
        assert info.flags & INFO_REG
        assert not sim.info(n, 1).flags & INFO_REG
    assert dev.register() == OK  # already registered, same name: at once
    assert sim.ask(2, DEV, VqQdeviceRegister("Other")).error == CsErr.CS_ERR_EXIST


def test_second_register_in_flight_is_try_again() -> None:
    sim = cluster(2)
    Device(sim, 2)
    sim.command(2, DEV, VqQdeviceRegister("Qdevice"))
    sim.command(2, DEV, VqQdeviceRegister("Qdevice"))
    assert [r.error for r in sim.replies(2, DEV)[1:]] == [CsErr.CS_ERR_TRY_AGAIN]
    assert sim.run_until_true(lambda: len(sim.replies(2, DEV)) == 3, 1000)
    assert sim.replies(2, DEV)[-1].error == OK


def test_name_clash_between_two_nodes_second_gets_exist() -> None:
    sim = cluster(3)
    a, b = Device(sim, 2, "A"), Device(sim, 3, "B")
    sim.command(2, DEV, VqQdeviceRegister("A"))
    sim.command(3, DEV, VqQdeviceRegister("B"))
    assert sim.run_until_true(
        lambda: len(sim.replies(2, DEV)) == 2 and len(sim.replies(3, DEV)) == 2, 1000)
    answers = {2: sim.replies(2, DEV)[-1].error, 3: sim.replies(3, DEV)[-1].error}
    assert sorted(answers.values()) == [OK, CsErr.CS_ERR_EXIST]
    winner = "A" if answers[2] == OK else "B"
    sim.run_for(200)
    assert {sim.info(n).qdevice_name for n in (1, 2, 3)} == {winner}
    # in sequence: the second name is refused; the recorded one is accepted
    loser = b if winner == "A" else a
    assert loser.register() == CsErr.CS_ERR_EXIST
    loser.name = winner
    assert loser.register() == OK


def test_poll_with_a_stale_ring_is_message_error_and_ignored() -> None:
    sim = cluster(2)
    dev = Device(sim, 1)
    assert dev.poll() == CsErr.CS_ERR_NOT_EXIST
    assert dev.register() == OK
    assert dev.poll(ring=RingId(1, 1)) == CsErr.CS_ERR_MESSAGE_ERROR
    assert not sim.info(1).flags & INFO_ALIVE
    dev.name = "Other"
    assert dev.poll() == CsErr.CS_ERR_INVALID_PARAM
    dev.name = "Qdevice"
    assert dev.poll() == OK
    assert sim.info(1).flags & (INFO_ALIVE | INFO_VOTE) == INFO_ALIVE | INFO_VOTE


def test_cast_vote_adds_the_device_votes_only_on_the_casting_node() -> None:
    sim = cluster(3)  # derived device votes 2, expected 5
    devices = {n: Device(sim, n) for n in (1, 2)}
    for d in devices.values():
        assert d.register() == OK
    assert devices[1].poll(cast_vote=1) == OK
    assert devices[2].poll(cast_vote=0) == OK
    sim.run_for(200)
    assert sim.info(1).total_votes == 5
    assert sim.info(2).total_votes == 3 and sim.info(3).total_votes == 3
    assert sim.info(3, 1).total_votes == 5  # getinfo counts the queried node's device
    assert sim.info(3, 2).flags & (INFO_ALIVE | INFO_VOTE) == INFO_ALIVE
    assert {sim.info(n).quorum for n in (1, 2, 3)} == {3}


# ====================================================================== sync wait and votes
def test_survivor_waits_for_its_device_then_stays_quorate() -> None:
    sim, devices = with_devices(2)
    assert sim.info(1).total_votes == 3
    sim.kill(2)
    assert sim.run_until_true(lambda: sim.engine(1).members == (1,), 5000)
    ring = sim.engine(1).ring
    # the view is installed but not activated: no ViewInstalled, quorum requests wait
    assert [ev.ring for _, ev in sim.views(1)][-1] != ring
    sim.command(1, CLIENT, QuorumGetQuorate())
    assert not [r for r in sim.replies(1, CLIENT) if isinstance(r.command, QuorumGetQuorate)]
    assert devices[1].ring == ring  # ... but the device learned the new ring
    sim.run_for(500)
    assert [ev.ring for _, ev in sim.views(1)][-1] != ring
    assert devices[1].poll() == OK
    assert [ev.ring for _, ev in sim.views(1)][-1] == ring
    assert sim.views(1)[-1][1].quorate
    answer = [r for r in sim.replies(1, CLIENT) if isinstance(r.command, QuorumGetQuorate)]
    assert [(r.error, r.value) for r in answer] == [(OK, 1)]
    assert not [ev for nid, _, ev in sim.log if nid == 1 and isinstance(ev, QuorumChanged)]
    info = sim.info(1)
    assert (info.total_votes, info.quorum) == (2, 2)
    # the votequorum quorum event of the activation lists the qdevice entry (0, 0)
    last = [ev.notification for nid, _, ev in sim.log
            if nid == 1 and isinstance(ev, Notified) and ev.conn == DEV
            and isinstance(ev.notification, VqQuorumNotification)][-1]
    assert (last.quorate, last.nodes) == (True, ((1, 1), (2, 2), (0, 0)))


def test_sync_timeout_activates_without_the_device_vote() -> None:
    sim, _ = with_devices(2)
    sim.kill(2)
    assert sim.run_until_true(lambda: sim.engine(1).members == (1,), 5000)
    installed_at = sim.now_ms
    ring = sim.engine(1).ring
    assert sim.run_until_true(lambda: sim.views(1)[-1][1].ring == ring, SYNC_TIMEOUT + 500)
    t, view = sim.views(1)[-1]
    assert installed_at + SYNC_TIMEOUT - 1000 <= t <= installed_at + SYNC_TIMEOUT
    assert not view.quorate
    assert sim.info(1).flags & (INFO_REG | INFO_ALIVE | INFO_VOTE) == INFO_REG


def test_every_member_activates_after_the_slowest_device() -> None:
    sim, devices = with_devices(3)
    sim.kill(3)
    assert sim.run_until_true(
        lambda: sim.engine(1).members == (1, 2) and sim.engine(2).members == (1, 2), 5000)
    ring = sim.engine(1).ring
    assert devices[1].poll() == OK
    sim.run_for(1000)
    assert all(sim.views(n)[-1][1].ring != ring for n in (1, 2))  # node 2's device is late
    polled_at = sim.now_ms
    assert devices[2].poll() == OK
    assert sim.run_until_true(lambda: all(sim.views(n)[-1][1].ring == ring for n in (1, 2)),
                              1000)
    for n in (1, 2):
        t, view = sim.views(n)[-1]
        assert t >= polled_at and view.quorate


def test_poll_timeout_withdraws_the_vote_and_recomputes_quorum() -> None:
    sim, devices = with_devices(2)
    sim.kill(2)
    assert sim.run_until_true(lambda: sim.engine(1).members == (1,), 5000)
    assert devices[1].poll() == OK
    assert sim.views(1)[-1][1].quorate
    last_poll = sim.now_ms
    assert sim.run_until_true(
        lambda: any(isinstance(ev, QuorumChanged) for nid, _, ev in sim.log if nid == 1),
        TIMEOUT + 1000)
    flips = [(t, ev) for nid, t, ev in sim.log if nid == 1 and isinstance(ev, QuorumChanged)]
    assert len(flips) == 1
    t, ev = flips[0]
    assert not ev.quorate and last_poll + TIMEOUT <= t <= last_poll + TIMEOUT + 200
    info = sim.info(1)
    assert info.flags & (INFO_REG | INFO_ALIVE | INFO_VOTE) == INFO_REG
    assert info.total_votes == 1
    assert devices[1].poll() == OK  # the device comes back: so does quorum
    assert sim.run_until_true(lambda: sim.quorate(1), 500)


def test_no_device_poll_no_wait_view_changes_are_immediate() -> None:
    sim = cluster(3)
    Device(sim, 1).register()  # registered but never polled: not alive
    sim.kill(3)
    assert sim.run_until_true(lambda: sim.engine(1).members == (1, 2), 5000)
    assert sim.views(1)[-1][1].ring == sim.engine(1).ring
    assert not any(isinstance(getattr(ev, "payload", None), QdeviceSynced)
                   for _, _, ev in sim.log)


def test_restarted_node_learns_the_recorded_name_at_the_next_view() -> None:
    sim, _ = with_devices(3)
    sim.kill(3)
    sim.run_for(200)
    sim.start(3)
    assert sim.run_until_true(lambda: sim.converged([1, 2, 3]), 10_000)
    sim.run_for(SYNC_TIMEOUT + 500)  # node 3's new engine has no device: 1 and 2 poll late
    assert sim.engine(3).vq is not None
    assert sim.engine(3).vq.qdevice_name == "Qdevice"


# ====================================================================== master_wins, unregister
def test_master_wins_unregister_and_update_through_the_engine() -> None:
    sim, devices = with_devices(2)
    assert sim.ask(1, DEV, VqQdeviceMasterWins("Qdevice", 1)).error == OK
    assert sim.ask(1, DEV, VqQdeviceMasterWins("Wrong", 1)).error == CsErr.CS_ERR_INVALID_PARAM
    sim.run_for(200)
    assert sim.info(2, 1).flags & VoteQuorumInfoFlag.QDEVICE_MASTER_WINS
    assert sim.ask(1, DEV, VqQdeviceUpdate("Qdevice", "Renamed")).error == OK
    sim.run_for(200)
    assert {sim.info(n).qdevice_name for n in (1, 2)} == {"Renamed"}
    devices[1].name = devices[2].name = "Renamed"
    assert sim.ask(1, DEV, VqQdeviceUnregister("Renamed")).error == OK
    assert sim.ask(1, DEV, VqQdeviceUnregister("Renamed")).error == CsErr.CS_ERR_NOT_EXIST
    sim.run_for(200)
    assert not sim.info(2, 1).flags & (INFO_REG | VoteQuorumInfoFlag.QDEVICE_MASTER_WINS)
    assert sim.info(1).qdevice_name == "Renamed"  # node 2's device is still registered
    assert sim.ask(2, DEV, VqQdeviceUnregister("Renamed")).error == OK
    sim.run_for(200)
    assert {sim.info(n).qdevice_name for n in (1, 2)} == {""}


# ====================================================================== IPC mapping
@pytest.mark.parametrize(("request_msg", "command"), [
    (ipc.VqQdeviceRegisterReq("Qdevice"), VqQdeviceRegister("Qdevice")),
    (ipc.VqQdeviceUnregisterReq("Qdevice"), VqQdeviceUnregister("Qdevice")),
    (ipc.VqQdeviceUpdateReq("a", "b"), VqQdeviceUpdate("a", "b")),
    (ipc.VqQdevicePollReq("Qdevice", 1, RingId(1, 9)), VqQdevicePoll("Qdevice", 1, RingId(1, 9))),
    (ipc.VqQdeviceMasterWinsReq("Qdevice", 0), VqQdeviceMasterWins("Qdevice", 0)),
])
def test_qdevice_requests_map_to_engine_commands(request_msg: object, command: Command) -> None:
    assert ipcproto.to_command(request_msg) == command
    replied = Replied(7, command, CsErr.CS_ERR_MESSAGE_ERROR)
    assert ipcproto.response_for(replied) == ipc.VqStatusRes(22)
