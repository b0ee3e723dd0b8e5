"""The cfg service (1) and cmap set frames: codec round trips and the daemon's pure half
(``pyquorum.daemon.ipcproto``: admission, request -> command, Replied -> response)."""

from __future__ import annotations

import struct

import pytest

from pyquorum.config.model import UidGidConfig
from pyquorum.core.engine import CfgReload, Replied, VqCancelWaitForAll, VqSetExpected
from pyquorum.daemon import ipcproto as proto
from pyquorum.errors import CsErr
from pyquorum.wire import ipc
from pyquorum.wire.codec import Malformed

ROOT = proto.PeerCred(1, 0, 0)
USER = proto.PeerCred(2, 1000, 1000)
NONE = UidGidConfig()
KEY = "quorum.cancel_wait_for_all"
OK = int(CsErr.CS_OK)  # 1, as in corotypes.h


# ------------------------------------------------------------------ codec
@pytest.mark.parametrize("msg", [
    ipc.CfgReloadReq(), ipc.CfgReloadRes(0), ipc.CfgReloadRes(0xFFFF_FFFF),
    ipc.CmapSetReq("", ""), ipc.CmapSetReq(KEY, "1"), ipc.CmapSetReq("é" * 512, "€" * 341),
    ipc.CmapSetRes(0), ipc.CmapSetRes(int(CsErr.CS_ERR_ACCESS)),
])
def test_new_frames_round_trip(msg: object) -> None:
    frame = ipc.encode_frame(msg)
    (length,) = struct.unpack_from(">I", frame)
    assert length == len(frame) - 4
    assert ipc.decode_body(frame[4:]) == msg
    reader = ipc.FrameReader()
    assert [item for i in range(len(frame)) for item in reader.feed(frame[i:i + 1])] == [msg]


def test_golden_bytes_and_type_bytes() -> None:
    assert ipc.encode_frame(ipc.CfgReloadReq()) == b"\x00\x00\x00\x02\x01\x50"
    assert ipc.encode_frame(ipc.CfgReloadRes(2)) == b"\x00\x00\x00\x06\x01\x51\x00\x00\x00\x02"
    assert ipc.encode_frame(ipc.CmapSetReq("a", "1")) == (
        b"\x00\x00\x00\x08\x01\x48" + b"\x00\x01a" + b"\x00\x011")
    assert ipc.encode_frame(ipc.CmapSetRes(11)) == b"\x00\x00\x00\x06\x01\x49\x00\x00\x00\x0b"
    types = ipc.IPC_TYPES
    assert (types[ipc.CmapSetReq], types[ipc.CmapSetRes]) == (72, 73)
    assert (types[ipc.CfgReloadReq], types[ipc.CfgReloadRes]) == (80, 81)
    assert len(set(types.values())) == len(types)  # unique over all services
    assert (ipc.CfgReloadReq.CS_ID, ipc.CfgReloadRes.CS_ID) == (7, 15)  # ipc_cfg.h
    assert (ipc.CmapSetReq.CS_ID, ipc.CmapSetRes.CS_ID) == (0, 0)       # ipc_cmap.h


def test_services_and_their_requests() -> None:
    assert ipc.SERVICE_CFG == 1 and ipc.SERVICE_CFG in ipc.SERVICES
    assert ipc.REQUESTS_BY_SERVICE[ipc.SERVICE_CFG] == (ipc.CfgReloadReq,)
    assert ipc.CmapSetReq in ipc.REQUESTS_BY_SERVICE[ipc.SERVICE_CMAP]
    for service, requests in ipc.REQUESTS_BY_SERVICE.items():
        others = [r for s, rs in ipc.REQUESTS_BY_SERVICE.items() if s != service for r in rs]
        assert not set(requests) & set(others)


def test_truncated_cmap_set_is_malformed() -> None:
    frame = ipc.encode_frame(ipc.CmapSetReq(KEY, "1"))
    for cut in range(2, len(frame) - 4):
        assert isinstance(ipc.decode_body(frame[4:4 + cut]), Malformed), cut


# ------------------------------------------------------------------ admission
@pytest.mark.parametrize(("cred", "ready", "vq", "uidgid", "want"), [
    (ROOT, True, True, NONE, CsErr.CS_OK),
    (ROOT, True, False, NONE, CsErr.CS_OK),          # offered without votequorum too
    (ROOT, False, True, NONE, CsErr.CS_ERR_TRY_AGAIN),
    (USER, True, True, NONE, CsErr.CS_ERR_ACCESS),
    (USER, True, True, UidGidConfig(uids=frozenset({1000})), CsErr.CS_OK),
    (USER, True, True, UidGidConfig(gids=frozenset({1000})), CsErr.CS_OK),
    (proto.PeerCred(3, 1000, 0), True, True, NONE, CsErr.CS_OK),
])
def test_cfg_admission(cred: proto.PeerCred, ready: bool, vq: bool, uidgid: UidGidConfig,
                       want: CsErr) -> None:
    for hooks in (False, True):
        got = proto.admit(ipc.SERVICE_CFG, cred, ready=ready, has_votequorum=vq, hooks=hooks,
                          uidgid=uidgid)
        assert got == want
    assert proto.service_available(ipc.SERVICE_CFG, has_votequorum=False, hooks=False)


# ------------------------------------------------------------------ mapping
def test_cfg_reload_maps_to_the_engine_and_back() -> None:
    cmd = proto.to_command(ipc.CfgReloadReq())
    assert cmd == CfgReload()
    assert proto.response_for(Replied(4, CfgReload(), CsErr.CS_OK)) == ipc.CfgReloadRes(OK)
    assert proto.response_for(Replied(4, CfgReload(), CsErr.CS_ERR_LIBRARY)) \
        == ipc.CfgReloadRes(int(CsErr.CS_ERR_LIBRARY))
    assert proto.error_response(ipc.CfgReloadReq(), CsErr.CS_ERR_NOT_SUPPORTED) \
        == ipc.CfgReloadRes(int(CsErr.CS_ERR_NOT_SUPPORTED))


def test_cancel_wait_for_all_answers_as_a_cmap_set() -> None:
    assert proto.to_command(ipc.CmapSetReq(KEY, "1")) is None  # not a plain request
    assert proto.response_for(Replied(4, VqCancelWaitForAll(), CsErr.CS_OK)) \
        == ipc.CmapSetRes(OK)
    assert proto.response_for(Replied(4, VqCancelWaitForAll(), CsErr.CS_ERR_LIBRARY)) \
        == ipc.CmapSetRes(int(CsErr.CS_ERR_LIBRARY))
    assert proto.error_response(ipc.CmapSetReq(KEY, "1"), CsErr.CS_ERR_TOO_BIG) \
        == ipc.CmapSetRes(int(CsErr.CS_ERR_TOO_BIG))
    # the other votequorum commands keep their response class
    assert proto.response_for(Replied(4, VqSetExpected(3), CsErr.CS_OK)) == ipc.VqStatusRes(OK)


@pytest.mark.parametrize(("key", "value", "vq", "want"), [
    (KEY, "1", True, VqCancelWaitForAll()),
    (KEY, "255", True, VqCancelWaitForAll()),
    (KEY, "007", True, VqCancelWaitForAll()),
    (KEY, "0", True, CsErr.CS_OK),
    (KEY, "000", True, CsErr.CS_OK),
    (KEY, "256", True, CsErr.CS_ERR_INVALID_PARAM),
    (KEY, "-1", True, CsErr.CS_ERR_INVALID_PARAM),
    (KEY, "+1", True, CsErr.CS_ERR_INVALID_PARAM),
    (KEY, " 1", True, CsErr.CS_ERR_INVALID_PARAM),
    (KEY, "1 ", True, CsErr.CS_ERR_INVALID_PARAM),
    (KEY, "0x1", True, CsErr.CS_ERR_INVALID_PARAM),
    (KEY, "", True, CsErr.CS_ERR_INVALID_PARAM),
    (KEY, "\u0661", True, CsErr.CS_ERR_INVALID_PARAM),  # a non-ASCII digit
    (KEY, "9" * 1000, True, CsErr.CS_ERR_INVALID_PARAM),
    (KEY, "1", False, CsErr.CS_ERR_NOT_EXIST),
    (KEY, "bad", False, CsErr.CS_ERR_NOT_EXIST),     # no such key before a bad value
    ("quorum.expected_votes", "3", True, CsErr.CS_ERR_ACCESS),
    ("quorum.cancel_wait_for_all.x", "1", True, CsErr.CS_ERR_ACCESS),
    ("", "1", False, CsErr.CS_ERR_ACCESS),
])
def test_cmap_set_action(key: str, value: str, vq: bool, want: object) -> None:
    got = proto.cmap_set_action(ipc.CmapSetReq(key, value), has_votequorum=vq)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize(("text", "want"), [
    ("0", 0), ("1", 1), ("255", 255), ("0255", 255), ("256", None), ("", None), ("1.0", None),
    ("1e2", None), ("00000000000000000001", 1),
])
def test_parse_u8(text: str, want: int | None) -> None:
    assert proto.parse_u8(text) == want


def test_framer_passes_the_new_requests() -> None:
    f = proto.RequestFramer(max_body=proto.MAX_REQUEST_BYTES)
    data = ipc.encode_frame(ipc.CfgReloadReq()) + ipc.encode_frame(ipc.CmapSetReq(KEY, "1"))
    assert f.feed_all(data) == [ipc.CfgReloadReq(), ipc.CmapSetReq(KEY, "1")]
    assert proto.type_byte(ipc.CfgReloadReq()) == 80
