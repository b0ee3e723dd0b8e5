"""The IPC server of a real daemon: admission, access control, framing, cmap, order."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from harness import LocalCluster, RawIpcClient, connect_as, v1_tracker, view_reached

from pyquorum.errors import CsErr
from pyquorum.wire import ipc

WAIT_S = 20.0
NOBODY = 65534


def one_node(local_cluster: Callable[..., LocalCluster], **kwargs: object) -> LocalCluster:
    """A quorate single-node cluster (votequorum: 1 of 1 vote)."""
    c = local_cluster(1, **kwargs)
    c.start(1)
    return c


def test_malformed_frame_closes_only_that_client(
        local_cluster: Callable[..., LocalCluster]) -> None:
    c = one_node(local_cluster)
    good = v1_tracker(c.run_dir(1))
    try:
        good.collect_events(view_reached((1,), quorate=1), WAIT_S)
        for garbage in (struct.pack(">I", 3) + b"\x09\x0a\x00",        # bad version
                        struct.pack(">I", 0x7FFF_FFFF) + b"\x01",        # absurd length
                        struct.pack(">I", 4) + b"\x01\x0b\x00\x00"):  # TRACKSTART, cut short
            bad = RawIpcClient(c.run_dir(1), ipc.SERVICE_QUORUM)
            try:
                assert bad.ok
                bad.send_raw(garbage)
                assert bad.closed_by_daemon(WAIT_S), f"still open after {garbage!r}"
            finally:
                bad.close()
        assert good.request(ipc.QuorumGetQuorateReq()) == ipc.QuorumGetQuorateRes(CsErr.CS_OK, 1)
        assert good.request(ipc.QuorumTrackStartReq(1)) == ipc.QuorumStatusRes(CsErr.CS_ERR_EXIST)
        assert isinstance(good.next_event(WAIT_S), ipc.NodelistV1Event)
        assert isinstance(good.next_event(WAIT_S), ipc.QuorumV1Event)
        stats = c.cmap(1, "runtime.pyquorum.stats.ipc_malformed")
        assert stats == {"runtime.pyquorum.stats.ipc_malformed": "3"}
        assert "sent a malformed frame" in c.log(1)
    finally:
        good.close()


def test_foreign_and_unknown_requests_get_error_reply_and_keep_the_connection(
        local_cluster: Callable[..., LocalCluster]) -> None:
    c = one_node(local_cluster)
    with RawIpcClient(c.run_dir(1), ipc.SERVICE_QUORUM) as q:
        assert q.ok and q.conn_id != 0
        invalid = CsErr.CS_ERR_INVALID_PARAM
        assert q.request(ipc.VqGetInfoReq(0)) == ipc.ErrorReply(invalid, 40)
        assert q.request(ipc.CmapGetPrefixReq("")) == ipc.ErrorReply(invalid, 70)
        assert q.request(ipc.Hello(3)) == ipc.ErrorReply(invalid, 1)
        q.send_raw(struct.pack(">I", 2) + bytes([ipc.IPC_VERSION, 0xEE]))
        assert q.recv() == ipc.ErrorReply(invalid, 0xEE)
        assert q.request(ipc.QuorumModelGetTypeReq(7)) == ipc.QuorumGetTypeRes(invalid, 0)
        assert q.request(ipc.QuorumGetTypeReq()) == ipc.QuorumGetTypeRes(CsErr.CS_OK, 1)
        assert q.request(ipc.QuorumGetQuorateReq()) == ipc.QuorumGetQuorateRes(CsErr.CS_OK, 1)
    with RawIpcClient(c.run_dir(1), ipc.SERVICE_VOTEQUORUM) as vq:
        assert vq.request(ipc.VqQdeviceUnregisterReq("dev")) == ipc.VqStatusRes(
            CsErr.CS_ERR_NOT_EXIST)  # qdevice requests reach votequorum (none registered)
        info = vq.request(ipc.VqGetInfoReq(0))
        assert isinstance(info, ipc.VqGetInfoRes) and info.error == CsErr.CS_OK
        assert (info.node_id, info.node_votes, info.quorum) == (1, 1, 1)
        assert info.flags & 2  # VOTEQUORUM_INFO_QUORATE
        missing = vq.request(ipc.VqGetInfoReq(99))
        assert missing == ipc.VqGetInfoRes(CsErr.CS_ERR_NOT_EXIST, 0, 0, 0, 0, 0, 0, 0, 0, 0, "")
        assert vq.request(ipc.QuorumGetQuorateReq()) == ipc.ErrorReply(
            CsErr.CS_ERR_INVALID_PARAM, 10)


def test_pipelined_requests_are_answered_in_order(
        local_cluster: Callable[..., LocalCluster]) -> None:
    c = one_node(local_cluster)
    with RawIpcClient(c.run_dir(1), ipc.SERVICE_VOTEQUORUM) as vq:
        # setexpected is answered after ordered delivery, getinfo at once: order must hold
        for msg in (ipc.VqSetExpectedReq(1), ipc.Sync(7), ipc.VqGetInfoReq(0),
                    ipc.VqTrackStopReq(), ipc.VqSetVotesReq(1, 1), ipc.VqGetInfoReq(1)):
            vq.send(msg)
        answers = [vq.recv() for _ in range(6)]
        assert answers[1] == ipc.SyncReply(7)  # Sync waits its turn behind setexpected
        del answers[1]
        assert [type(a) for a in answers] == [ipc.VqStatusRes, ipc.VqGetInfoRes, ipc.VqStatusRes,
                                              ipc.VqStatusRes, ipc.VqGetInfoRes], answers
        assert answers[0] == ipc.VqStatusRes(CsErr.CS_OK)
        assert answers[2] == ipc.VqStatusRes(CsErr.CS_ERR_NOT_EXIST)
        assert answers[3] == ipc.VqStatusRes(CsErr.CS_OK)
    with RawIpcClient(c.run_dir(1), ipc.SERVICE_QUORUM) as q:
        q.send(ipc.QuorumModelGetTypeReq(1))
        for _ in range(40):  # more than the in-flight limit: the daemon throttles, then resumes
            q.send(ipc.QuorumTrackStartReq(1))
        q.send(ipc.QuorumGetQuorateReq())
        assert q.recv() == ipc.QuorumGetTypeRes(CsErr.CS_OK, 1)
        for _ in range(40):
            assert q.recv() == ipc.QuorumStatusRes(CsErr.CS_OK)
        assert q.recv() == ipc.QuorumGetQuorateRes(CsErr.CS_OK, 1)
        # every snapshot was written before its answer: all 80 events are there already
        events = q.collect_events(lambda evs: len(evs) == 80, 0.0)
        assert q.next_event(0.0) is None
        assert q.request(ipc.QuorumTrackStartReq(1)) == ipc.QuorumStatusRes(CsErr.CS_OK)
        assert isinstance(q.next_event(0.0), ipc.NodelistV1Event)  # no wait needed
        assert isinstance(q.next_event(0.0), ipc.QuorumV1Event)
        assert [type(e) for e in events[:2]] == [ipc.NodelistV1Event, ipc.QuorumV1Event]


def test_access_control_by_peer_credentials(local_cluster: Callable[..., LocalCluster]) -> None:
    c = one_node(local_cluster)
    assert connect_as(NOBODY, NOBODY, c.run_dir(1)) == (CsErr.CS_ERR_ACCESS, None)
    assert connect_as(NOBODY, 0, c.run_dir(1)) == (CsErr.CS_OK, CsErr.CS_OK)  # gid 0
    refused = c.cmap(1, "runtime.pyquorum.stats.ipc_refused_access")
    assert refused == {"runtime.pyquorum.stats.ipc_refused_access": "1"}
    assert "IPC connection refused (CS_ERR_ACCESS)" in c.log(1)
    assert c.stop(1) == 0
    c.write_config(1, extra="uidgid {\n    uid: 65534\n}\n")
    c.start(1)
    assert connect_as(NOBODY, NOBODY, c.run_dir(1)) == (CsErr.CS_OK, CsErr.CS_OK)
    assert connect_as(NOBODY + 1, NOBODY + 1, c.run_dir(1)) == (CsErr.CS_ERR_ACCESS, None)


def test_library_for_services_that_do_not_exist(
        local_cluster: Callable[..., LocalCluster]) -> None:
    c = one_node(local_cluster, quorum={"provider": ""}, hooks=False)
    for service in (ipc.SERVICE_VOTEQUORUM, ipc.SERVICE_TESTHOOK, 42):
        with RawIpcClient(c.run_dir(1), service) as conn:
            assert conn.hello_error == CsErr.CS_ERR_LIBRARY, service
            assert conn.events_sock is None
            assert conn.closed_by_daemon(WAIT_S)
    with RawIpcClient(c.run_dir(1), ipc.SERVICE_QUORUM) as q:  # no provider: QUORUM_FREE
        assert q.request(ipc.QuorumModelGetTypeReq(1)) == ipc.QuorumGetTypeRes(CsErr.CS_OK, 0)
        assert q.request(ipc.QuorumGetQuorateReq()) == ipc.QuorumGetQuorateRes(CsErr.CS_OK, 1)
    keys = c.cmap(1)
    assert "quorum.provider" not in keys
    assert not any(k.startswith("runtime.votequorum.") for k in keys)
    assert keys["runtime.pyquorum.stats.ipc_refused_library"] == "3"


def test_cmap_view(local_cluster: Callable[..., LocalCluster]) -> None:
    c = local_cluster(3)
    c.start(1)
    keys = c.cmap(1)
    assert list(keys) == sorted(keys)
    assert keys["totem.cluster_name"] == "pyquorum-lab"
    assert keys["totem.transport"] == "udpu"
    assert keys["totem.token"] == "1000"
    assert keys["quorum.provider"] == "corosync_votequorum"
    for i, n in enumerate((1, 2, 3)):
        p = f"nodelist.node.{i}."
        assert keys[p + "nodeid"] == str(n)
        assert keys[p + "name"] == f"node{n}"
        assert keys[p + "ring0_addr"] == "127.0.0.1"
        assert keys[p + "port"] == str(c.port(n))
        assert keys[p + "quorum_votes"] == "1"
    assert keys["runtime.votequorum.this_node_id"] == "1"
    assert keys["runtime.config.totem.token"] == "1650"  # 1000 + (3 - 2) x 650
    assert keys["runtime.config.totem.consensus"] == "1980"
    for stat in ("received", "sent", "rejected", "malformed", "udp_sent", "ipc_malformed",
                 "ipc_refused_access", "rejected.auth_failed", "state_writes"):
        assert f"runtime.pyquorum.stats.{stat}" in keys, stat
    only = c.cmap(1, "nodelist.node.2.")
    assert set(only) == {f"nodelist.node.2.{k}" for k in
                         ("nodeid", "name", "ring0_addr", "port", "quorum_votes")}
    assert c.cmap(1, "no.such.prefix") == {}


def test_client_that_does_not_read_its_events_is_disconnected(
        local_cluster: Callable[..., LocalCluster]) -> None:
    """More than 4 MiB of unread events: the daemon logs and drops that client only."""
    c = one_node(local_cluster)
    other = v1_tracker(c.run_dir(1))
    lazy = RawIpcClient(c.run_dir(1), ipc.SERVICE_QUORUM)
    try:
        assert lazy.request(ipc.QuorumModelGetTypeReq(1)).error == CsErr.CS_OK
        batch = ipc.encode_frame(ipc.QuorumTrackStartReq(1)) * 1024  # 2 events each
        deadline = time.monotonic() + 25.0
        sent = 0
        try:
            while time.monotonic() < deadline:
                lazy.send_raw(batch)
                for _ in range(1024):
                    lazy.recv()
                sent += 1024
        except (ConnectionError, OSError):
            pass
        else:
            raise AssertionError(f"still connected after {sent} snapshots")
        assert sent * 56 > 4 * 1024 * 1024 * 0.9  # ~56 bytes of events per snapshot
        assert c.cmap(1, "runtime.pyquorum.stats.ipc_evicted_backlog") == {
            "runtime.pyquorum.stats.ipc_evicted_backlog": "1"}
        assert "does not read its events" in c.log(1)
        assert other.request(ipc.QuorumGetQuorateReq()) == ipc.QuorumGetQuorateRes(CsErr.CS_OK, 1)
    finally:
        lazy.close()
        other.close()


def test_closing_either_socket_ends_the_connection(
        local_cluster: Callable[..., LocalCluster]) -> None:
    c = one_node(local_cluster)
    a = v1_tracker(c.run_dir(1))
    b = v1_tracker(c.run_dir(1))
    try:
        assert a.events_sock is not None and b.events_sock is not None
        a.events_sock.close()  # only the event channel: the daemon drops the connection
        a.events_sock = None
        assert a.closed_by_daemon(WAIT_S)
        b.sock.close()  # only the request socket: the event channel hangs up
        b.events_sock.settimeout(WAIT_S)
        while b.events_sock.recv(65536):  # the snapshot queued before, then EOF
            pass
        assert c.cmap(1, "runtime.pyquorum.stats.ipc_clients") == {
            "runtime.pyquorum.stats.ipc_clients": "1"}  # only the cmap connection itself
    finally:
        a.close()
        b.close()
