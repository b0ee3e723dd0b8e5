"""The daemon's pure pieces, without processes: admission (TRY_AGAIN before the first
view is hard to catch live), framing, mapping, storage, logging, local node."""

from __future__ import annotations

import io
import json
import re
import struct
from pathlib import Path

import pytest

from pyquorum.config import config_from_text
from pyquorum.config.model import LoggerSubsys, LoggingConfig, UidGidConfig
from pyquorum.core.engine import QuorumGetQuorate, Replied, StoredState, VqGetInfo
from pyquorum.core.tracking import (
    NodelistNotification,
    QuorumNotification,
    VqQuorumNotification,
)
from pyquorum.daemon import ipcproto as proto
from pyquorum.daemon.errors import StartupError
from pyquorum.daemon.localnode import find_local_node
from pyquorum.daemon.logsys import DaemonLog, format_line, thresholds_for
from pyquorum.daemon.storage import StateStore
from pyquorum.errors import CsErr
from pyquorum.types import RingId
from pyquorum.wire import ipc
from pyquorum.wire.codec import Malformed

ROOT = proto.PeerCred(1, 0, 0)
USER = proto.PeerCred(2, 1000, 1000)
NONE = UidGidConfig()


# ------------------------------------------------------------------ admission
@pytest.mark.parametrize(("service", "cred", "ready", "vq", "hooks", "uidgid", "want"), [
    (ipc.SERVICE_QUORUM, ROOT, True, True, False, NONE, CsErr.CS_OK),
    (ipc.SERVICE_QUORUM, ROOT, False, True, False, NONE, CsErr.CS_ERR_TRY_AGAIN),
    (ipc.SERVICE_CMAP, ROOT, False, True, False, NONE, CsErr.CS_ERR_TRY_AGAIN),
    (ipc.SERVICE_QUORUM, USER, False, True, False, NONE, CsErr.CS_ERR_TRY_AGAIN),
    (ipc.SERVICE_QUORUM, USER, True, True, False, NONE, CsErr.CS_ERR_ACCESS),
    (ipc.SERVICE_QUORUM, USER, True, True, False, UidGidConfig(uids=frozenset({1000})),
     CsErr.CS_OK),
    (ipc.SERVICE_QUORUM, USER, True, True, False, UidGidConfig(gids=frozenset({1000})),
     CsErr.CS_OK),
    (ipc.SERVICE_QUORUM, proto.PeerCred(3, 1000, 0), True, True, False, NONE, CsErr.CS_OK),
    (ipc.SERVICE_QUORUM, proto.PeerCred(3, 0, 1000), True, True, False, NONE, CsErr.CS_OK),
    (ipc.SERVICE_VOTEQUORUM, ROOT, True, False, False, NONE, CsErr.CS_ERR_LIBRARY),
    (ipc.SERVICE_VOTEQUORUM, ROOT, False, False, False, NONE, CsErr.CS_ERR_LIBRARY),
    (ipc.SERVICE_VOTEQUORUM, ROOT, True, True, False, NONE, CsErr.CS_OK),
    (ipc.SERVICE_TESTHOOK, ROOT, True, True, False, NONE, CsErr.CS_ERR_LIBRARY),
    (ipc.SERVICE_TESTHOOK, ROOT, True, True, True, NONE, CsErr.CS_OK),
    (42, ROOT, True, True, True, NONE, CsErr.CS_ERR_LIBRARY),
])
def test_admission(service: int, cred: proto.PeerCred, ready: bool, vq: bool, hooks: bool,
                   uidgid: UidGidConfig, want: CsErr) -> None:
    got = proto.admit(service, cred, ready=ready, has_votequorum=vq, hooks=hooks, uidgid=uidgid)
    assert got == want


# ------------------------------------------------------------------ framing
def test_framer_cuts_frames_and_survives_unknown_types() -> None:
    f = proto.RequestFramer(max_body=proto.MAX_REQUEST_BYTES)
    data = (ipc.encode_frame(ipc.QuorumGetQuorateReq())
            + struct.pack(">I", 3) + bytes([ipc.IPC_VERSION, 0xEE, 0x00])
            + ipc.encode_frame(ipc.QuorumTrackStartReq(3)))
    items = []
    for i in range(len(data)):  # one byte at a time
        items += f.feed_all(data[i:i + 1])
    assert items == [ipc.QuorumGetQuorateReq(), proto.UnknownRequest(0xEE),
                     ipc.QuorumTrackStartReq(3)]
    assert not f.broken and f.pending == 0


@pytest.mark.parametrize("garbage", [
    struct.pack(">I", 1) + b"\x01",                       # shorter than the header
    struct.pack(">I", 100) + bytes(100),                  # over the hello limit
    struct.pack(">I", 2) + b"\x07\x0a",                   # bad version
    struct.pack(">I", 3) + bytes([ipc.IPC_VERSION, 11, 0]),  # TRACKSTART cut short
])
def test_framer_breaks_on_malformed_frames(garbage: bytes) -> None:
    f = proto.RequestFramer()
    items = f.feed_all(garbage + ipc.encode_frame(ipc.Hello(3)))
    assert len(items) == 1 and isinstance(items[0], Malformed)
    assert f.broken and f.feed_all(ipc.encode_frame(ipc.Hello(3))) == []


def test_hello_limit_then_request_limit() -> None:
    f = proto.RequestFramer()
    big = ipc.encode_frame(ipc.CmapGetPrefixReq("x" * 200))
    f.feed(ipc.encode_frame(ipc.Hello(0)) + big)
    assert f.next_item() == ipc.Hello(0)
    f.max_body = proto.MAX_REQUEST_BYTES  # what the server does once admitted
    assert f.next_item() == ipc.CmapGetPrefixReq("x" * 200)


# ------------------------------------------------------------------ mapping
def test_requests_map_to_commands_and_answers_back() -> None:
    assert proto.to_command(ipc.QuorumModelGetTypeReq(1)).model == 1  # type: ignore[union-attr]
    assert proto.to_command(ipc.QuorumGetTypeReq()).model is None  # type: ignore[union-attr]
    assert proto.to_command(ipc.CmapGetPrefixReq("")) is None
    assert proto.invalid_model(ipc.QuorumModelGetTypeReq(7))
    ev = Replied(1, QuorumGetQuorate(), CsErr.CS_OK, 1)
    assert proto.response_for(ev) == ipc.QuorumGetQuorateRes(CsErr.CS_OK, 1)
    ev = Replied(1, VqGetInfo(9), CsErr.CS_ERR_NOT_EXIST)
    assert proto.response_for(ev) == ipc.VqGetInfoRes(CsErr.CS_ERR_NOT_EXIST, 0, 0, 0, 0, 0, 0,
                                                      0, 0, 0, "")


def test_notifications_encode_per_model() -> None:
    ring = RingId(1, 9)
    v0 = proto.event_for(QuorumNotification(0, True, ring, (1, 2)))
    assert v0 == ipc.QuorumV0Event(1, 9, (1, 2))
    v1 = proto.event_for(QuorumNotification(1, False, ring, (1, 2)))
    assert v1 == ipc.QuorumV1Event(0, ring, (1, 2))
    nl = proto.event_for(NodelistNotification(ring, (1, 2), (2,), (3,)))
    assert nl == ipc.NodelistV1Event(ring, (1, 2), (2,), (3,))
    vq = proto.event_for(VqQuorumNotification(7, True, ((1, 1), (3, 2))))
    assert vq == ipc.VqQuorumEvent(7, 1, (ipc.VqNode(1, 1), ipc.VqNode(3, 2)))
    for event in (v0, v1, nl, vq):
        ipc.encode_frame(event)


# ------------------------------------------------------------------ storage
def test_state_store_round_trip_and_corruption(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state", 4)
    store.prepare()
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert store.load() == StoredState()
    store.save(StoredState(max_seq=21, ev_barrier=3, incarnation=7))
    assert store.load() == StoredState(max_seq=21, ev_barrier=3, incarnation=7)
    assert not list((tmp_path / "state").glob("*.tmp"))
    doc = json.loads(store.path.read_text())
    doc["node_id"] = 5
    store.path.write_text(json.dumps(doc))
    with pytest.raises(StartupError, match="belongs to node 5"):
        store.load()
    for bad in ("", "[]", '{"format": 1, "node_id": 4, "max_seq": -1, "incarnation": 0}',
                '{"format": 1, "node_id": 4, "max_seq": true, "incarnation": 0}', "\xff"):
        store.path.write_text(bad)
        with pytest.raises(StartupError, match=re.escape(str(store.path))):
            store.load()


# ------------------------------------------------------------------ logging
def test_log_format_like_corosync() -> None:
    line = format_line(0.123, 42, "vm", 5, "QUORUM", "Members[3]: 1 2 3", "hires")
    assert line.endswith(".123 [42] vm pyquorumd notice  [QUORUM] Members[3]: 1 2 3")
    assert format_line(0.0, 1, "h", 4, "MAIN", "x", "off") == "[1] h pyquorumd warning [MAIN  ] x"
    on = format_line(0.5, 1, "h", 6, "TOTEM", "y", "on")
    assert on.endswith(":00 [1] h pyquorumd info    [TOTEM ] y")


def test_log_thresholds_and_subsystem_overrides(tmp_path: Path) -> None:
    cfg = LoggingConfig(to_stderr=True, to_syslog=False, to_logfile=True,
                        logfile=str(tmp_path / "log"), logfile_priority="notice",
                        subsys=(LoggerSubsys("VOTEQ", debug="on"),
                                LoggerSubsys("TOTEM", to_stderr=False)))
    assert thresholds_for(cfg, "QUORUM") == (5, 5, -1)
    assert thresholds_for(cfg, "VOTEQ") == (7, 7, -1)
    assert thresholds_for(cfg, "TOTEM") == (-1, 5, -1)
    err = io.StringIO()
    log = DaemonLog(cfg, stderr=err)
    log.log("info", "QUORUM", "hidden")
    log.log("notice", "QUORUM", "shown")
    log.log("debug", "VOTEQ", "debug shown")
    log.log("warning", "TOTEM", "file only")
    log.close()
    text = (tmp_path / "log").read_text()
    assert "hidden" not in text and "shown" in text and "debug shown" in text
    assert "file only" in text and "file only" not in err.getvalue()
    assert "[QUORUM] shown" in err.getvalue()


def test_logfile_that_cannot_be_opened_is_a_startup_error(tmp_path: Path) -> None:
    cfg = LoggingConfig(to_logfile=True, logfile=str(tmp_path / "no" / "such" / "log"))
    with pytest.raises(StartupError, match="cannot open the log file"):
        DaemonLog(cfg)


# ------------------------------------------------------------------ local node
CONF = """
nodelist {
    node {
        nodeid: 1
        name: alpha
        ring0_addr: 127.0.0.1
    }
    node {
        nodeid: 2
        name: beta
        ring0_addr: 10.255.255.1
    }
    node {
        nodeid: 3
        name: gamma
        ring0_addr: 127.0.0.1
    }
}
"""


def test_local_node_rules() -> None:
    config = config_from_text(CONF, "/etc/x.conf")
    local = {"127.0.0.1"}.__contains__
    assert find_local_node(config, 2, hostname="zzz", is_local=local).nodeid == 2
    assert find_local_node(config, None, hostname="beta.example.com",
                           is_local=local).nodeid == 2
    assert find_local_node(config, None, hostname="gamma", is_local=local).nodeid == 3
    with pytest.raises(StartupError, match="ambiguous; start with --nodeid"):
        find_local_node(config, None, hostname="zzz", is_local=local)
    with pytest.raises(StartupError, match=re.escape("/etc/x.conf: no nodelist entry")):
        find_local_node(config, None, hostname="zzz", is_local=lambda a: False)
    with pytest.raises(StartupError, match="node id 9"):
        find_local_node(config, 9, hostname="zzz", is_local=local)
