"""The libqb / Corosync message codec (``pyquorum.wire.qbmsg``) against the real headers.

``test_layouts_match_gcc`` compiles the structs with gcc on the installed
``qb/qbipc_common.h`` (libqb-dev) and ``corosync/corotypes.h`` / ``votequorum.h``
(libcorosync-common-dev, libvotequorum-dev).  The service structs themselves are not
installed by Debian (``ipc_quorum.h``, ``ipc_votequorum.h``, ``ipc_cmap.h``, ``ipc_cfg.h``,
``mar_gen.h`` are internal to Corosync; ``qb_ipc_connection_*`` to libqb), so they are
written out below exactly as in Corosync 3.1.7 / libqb 2.0.6, on the installed headers'
types and alignment attributes: gcc then computes every size and offset.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from pyquorum.errors import CsErr
from pyquorum.types import RingId
from pyquorum.wire import ipc
from pyquorum.wire import qbmsg as qb

_HEADERS = ("/usr/include/qb/qbipc_common.h", "/usr/include/corosync/corotypes.h",
            "/usr/include/corosync/votequorum.h")

_STRUCTS = r"""
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>
#include <qb/qbipc_common.h>
#include <corosync/corotypes.h>
#include <corosync/votequorum.h>
#define A8 __attribute__((aligned(8)))
/* libqb 2.0 lib/ipc_int.h */
struct qb_ipc_connection_request { struct qb_ipc_request_header hdr; uint32_t max_msg_size; } A8;
struct qb_ipc_connection_response { struct qb_ipc_response_header hdr; int32_t connection_type;
  uint32_t max_msg_size; intptr_t connection; char request[PATH_MAX]; char response[PATH_MAX];
  char event[PATH_MAX]; } A8;
/* corosync 3.1.7 include/corosync/mar_gen.h */
typedef struct { uint16_t length A8; uint8_t value[CS_MAX_NAME_LENGTH] A8; } mar_name_t;
/* ipc_quorum.h */
typedef struct { uint32_t nodeid A8; uint64_t seq A8; } mar_quorum_ring_id_t;
struct req_lib_quorum_trackstart { struct qb_ipc_request_header header A8;
  unsigned int track_flags; };
struct req_lib_quorum_model_gettype { struct qb_ipc_request_header header A8; uint32_t model A8; };
struct res_lib_quorum_getquorate { struct qb_ipc_response_header header A8; uint32_t quorate; };
struct res_lib_quorum_gettype { struct qb_ipc_response_header header A8; uint32_t quorum_type; };
struct res_lib_quorum_model_gettype { struct qb_ipc_response_header header A8;
  uint32_t quorum_type A8; };
struct res_lib_quorum_notification { struct qb_ipc_response_header header A8; int32_t quorate A8;
  uint64_t ring_seq A8; uint32_t view_list_entries A8; uint32_t view_list[]; };
struct res_lib_quorum_v1_quorum_notification { struct qb_ipc_response_header header A8;
  int32_t quorate A8; mar_quorum_ring_id_t ring_id A8; uint32_t view_list_entries A8;
  uint32_t view_list[]; };
struct res_lib_quorum_v1_nodelist_notification { struct qb_ipc_response_header header A8;
  mar_quorum_ring_id_t ring_id A8; uint32_t member_list_entries A8;
  uint32_t joined_list_entries A8; uint32_t left_list_entries A8; uint32_t member_list[]; };
/* ipc_votequorum.h */
struct mar_votequorum_ring_id { uint32_t nodeid; uint64_t seq; };
struct req_lib_votequorum_getinfo { struct qb_ipc_request_header header A8; int nodeid; };
struct req_lib_votequorum_setexpected { struct qb_ipc_request_header header A8;
  unsigned int expected_votes; };
struct req_lib_votequorum_setvotes { struct qb_ipc_request_header header A8;
  unsigned int votes; int nodeid; };
struct req_lib_votequorum_trackstart { struct qb_ipc_request_header header A8;
  uint64_t context; unsigned int track_flags; };
struct req_lib_votequorum_general { struct qb_ipc_request_header header A8; };
struct req_lib_votequorum_qdevice_register { struct qb_ipc_request_header header A8;
  char name[VOTEQUORUM_QDEVICE_MAX_NAME_LEN]; };
struct req_lib_votequorum_qdevice_unregister { struct qb_ipc_request_header header A8;
  char name[VOTEQUORUM_QDEVICE_MAX_NAME_LEN]; };
struct req_lib_votequorum_qdevice_update { struct qb_ipc_request_header header A8;
  char oldname[VOTEQUORUM_QDEVICE_MAX_NAME_LEN]; char newname[VOTEQUORUM_QDEVICE_MAX_NAME_LEN]; };
struct req_lib_votequorum_qdevice_poll { struct qb_ipc_request_header header A8;
  char name[VOTEQUORUM_QDEVICE_MAX_NAME_LEN]; int cast_vote;
  struct mar_votequorum_ring_id ring_id A8; };
struct req_lib_votequorum_qdevice_master_wins { struct qb_ipc_request_header header A8;
  char name[VOTEQUORUM_QDEVICE_MAX_NAME_LEN]; unsigned int allow; };
struct res_lib_votequorum_status { struct qb_ipc_response_header header A8; };
struct res_lib_votequorum_getinfo { struct qb_ipc_response_header header A8; unsigned int nodeid;
  unsigned int state; unsigned int votes; unsigned int expected_votes;
  unsigned int highest_expected;
  unsigned int total_votes; unsigned int quorum; unsigned int flags; unsigned int qdevice_votes;
  char qdevice_name[VOTEQUORUM_QDEVICE_MAX_NAME_LEN]; };
struct votequorum_node_wire { uint32_t nodeid; uint32_t state; };
struct res_lib_votequorum_quorum_notification { struct qb_ipc_response_header header A8;
  uint32_t quorate A8; uint64_t context A8; uint32_t node_list_entries A8;
  struct votequorum_node_wire node_list[] A8; };
struct res_lib_votequorum_nodelist_notification { struct qb_ipc_response_header header A8;
  uint64_t context A8; struct mar_votequorum_ring_id ring_id A8; uint32_t node_list_entries A8;
  uint32_t node_list[] A8; };
struct res_lib_votequorum_expectedvotes_notification { struct qb_ipc_response_header header A8;
  uint64_t context A8; uint32_t expected_votes A8; };
/* ipc_cmap.h */
struct req_lib_cmap_set { struct qb_ipc_request_header header A8; mar_name_t key_name A8;
  uint64_t value_len A8; uint8_t type A8; uint8_t value[] A8; };
struct req_lib_cmap_delete { struct qb_ipc_request_header header A8; mar_name_t key_name A8; };
struct req_lib_cmap_get { struct qb_ipc_request_header header A8; mar_name_t key_name A8;
  uint64_t value_len A8; };
struct res_lib_cmap_get { struct qb_ipc_response_header header A8; uint64_t value_len A8;
  uint8_t type A8; uint8_t value[] A8; };
struct req_lib_cmap_adjust_int { struct qb_ipc_request_header header A8;
  mar_name_t key_name A8; int32_t step A8; };
struct req_lib_cmap_iter_init { struct qb_ipc_request_header header A8; mar_name_t prefix A8; };
struct res_lib_cmap_iter_init { struct qb_ipc_response_header header A8; uint64_t iter_handle A8; };
struct req_lib_cmap_iter_next { struct qb_ipc_request_header header A8; uint64_t iter_handle A8; };
struct res_lib_cmap_iter_next { struct qb_ipc_response_header header A8; mar_name_t key_name A8;
  uint64_t value_len A8; uint8_t type A8; };
struct req_lib_cmap_iter_finalize { struct qb_ipc_request_header header A8;
  uint64_t iter_handle A8; };
struct req_lib_cmap_track_add { struct qb_ipc_request_header header A8; mar_name_t key_name A8;
  int32_t track_type A8; uint64_t track_inst_handle A8; };
struct res_lib_cmap_track_add { struct qb_ipc_response_header header A8;
  uint64_t track_handle A8; };
struct req_lib_cmap_track_delete { struct qb_ipc_request_header header A8;
  uint64_t track_handle A8; };
struct res_lib_cmap_track_delete { struct qb_ipc_response_header header A8;
  uint64_t track_inst_handle A8; };
struct req_lib_cmap_set_current_map { struct qb_ipc_request_header header A8; int32_t map A8; };
/* ipc_cfg.h */
struct req_lib_cfg_get_node_addrs { struct qb_ipc_request_header header A8; unsigned int nodeid; };
struct res_lib_cfg_get_node_addrs { struct qb_ipc_response_header header A8; unsigned int family;
  unsigned int num_addrs; char addrs[]; };
struct res_lib_cfg_local_get { struct qb_ipc_response_header header A8; uint32_t local_nodeid A8; };
int main(void) {
"""


def _c_program() -> str:
    lines = [_STRUCTS]
    for name, layout in qb.LAYOUTS.items():
        lines.append(f'  printf("{name} sizeof %zu\\n", sizeof(struct {name}));')
        for fld in layout.fields:
            lines.append(f'  printf("{name} {fld} %zu\\n", offsetof(struct {name}, {fld}));')
    lines.append("  return 0;\n}\n")
    return "\n".join(lines)


def _gcc_layouts(tmp_path: Path) -> dict[tuple[str, str], int]:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: cannot check the layouts against the C headers")
    missing = [h for h in _HEADERS if not Path(h).is_file()]
    if missing:
        pytest.skip(f"headers missing ({', '.join(missing)}): install libqb-dev, "
                    "libcorosync-common-dev and libvotequorum-dev")
    src = tmp_path / "layout.c"
    src.write_text(_c_program())
    exe = tmp_path / "layout"
    res = subprocess.run([gcc, "-Wall", "-o", str(exe), str(src)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30, check=True)
    out: dict[tuple[str, str], int] = {}
    for line in run.stdout.splitlines():
        name, fld, value = line.split()
        out[(name, fld)] = int(value)
    return out


def test_layouts_match_gcc(tmp_path: Path) -> None:
    measured = _gcc_layouts(tmp_path)
    ours: dict[tuple[str, str], int] = {}
    for name, layout in qb.LAYOUTS.items():
        ours[(name, "sizeof")] = layout.size
        for fld, off in layout.fields.items():
            ours[(name, fld)] = off
    assert measured == ours


def test_headers_are_the_declared_structs() -> None:
    assert qb.REQ_HDR.size == qb.LAYOUTS["qb_ipc_request_header"].size
    assert qb.RES_HDR.size == qb.LAYOUTS["qb_ipc_response_header"].size


# ------------------------------------------------------------------ handshake
def _conn_request(msg_id: int = qb.QB_IPC_MSG_AUTHENTICATE, size: int = 24,
                  max_msg: int = 1 << 20) -> bytes:
    return qb.REQ_HDR.pack(msg_id, size) + struct.pack("=I4x", max_msg)


def test_connection_request_decodes_and_rejects_garbage() -> None:
    assert qb.decode_connection_request(_conn_request()) == qb.ConnectionRequest(1 << 20)
    for bad in (_conn_request(msg_id=0), _conn_request(size=16), b"\0" * 23, b"x" * 25):
        assert isinstance(qb.decode_connection_request(bad), qb.BadHandshake)


def test_connection_response_fields() -> None:
    raw = qb.encode_connection_response(0, max_msg_size=4096, connection=7,
                                        request="/dev/shm/d/qb-control-quorum",
                                        response="/dev/shm/d/qb-quorum")
    assert len(raw) == qb.CONNECTION_RESPONSE_SIZE == 12328
    assert qb.RES_HDR.unpack_from(raw) == (qb.QB_IPC_MSG_AUTHENTICATE, 12328, 0)
    assert struct.unpack_from("=iIQ", raw, 24) == (qb.QB_IPC_SOCKET, 4096, 7)
    assert raw[40:40 + 29] == b"/dev/shm/d/qb-control-quorum\0"
    assert raw[4136:4136 + 21] == b"/dev/shm/d/qb-quorum\0"
    refused = qb.encode_connection_response(-13)
    assert qb.RES_HDR.unpack_from(refused) == (qb.QB_IPC_MSG_AUTHENTICATE, 12328, -13)
    assert refused[24:] == bytes(12328 - 24)


# ------------------------------------------------------------------ requests
def _req(msg_id: int, body: bytes = b"", size: int | None = None) -> bytes:
    total = 16 + len(body)
    return qb.REQ_HDR.pack(msg_id, total if size is None else size) + body


def _name(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("=H6x", len(raw)) + raw + bytes(256 - len(raw))


def test_quorum_requests() -> None:
    assert qb.decode_request("quorum", _req(0)) == ipc.QuorumGetQuorateReq()
    assert qb.decode_request("quorum", _req(1, struct.pack("=I4x", 3))) == \
        ipc.QuorumTrackStartReq(3)
    assert qb.decode_request("quorum", _req(2)) == ipc.QuorumTrackStopReq()
    assert qb.decode_request("quorum", _req(3)) == ipc.QuorumGetTypeReq()
    assert qb.decode_request("quorum", _req(4, struct.pack("=I4x", 1))) == \
        ipc.QuorumModelGetTypeReq(1)


def test_votequorum_requests() -> None:
    dec = qb.decode_request
    assert dec("votequorum", _req(0, struct.pack("=i4x", 3))) == ipc.VqGetInfoReq(3)
    assert dec("votequorum", _req(1, struct.pack("=I4x", 5))) == ipc.VqSetExpectedReq(5)
    assert dec("votequorum", _req(2, struct.pack("=Ii", 2, 7))) == ipc.VqSetVotesReq(7, 2)
    assert dec("votequorum", _req(3, struct.pack("=QI4x", 1 << 60, 2))) == \
        ipc.VqTrackStartReq(1 << 60, 2)
    assert dec("votequorum", _req(4)) == ipc.VqTrackStopReq()
    name = b"Qdevice".ljust(255, b"\0")
    assert dec("votequorum", _req(5, name + b"\0")) == ipc.VqQdeviceRegisterReq("Qdevice")
    assert dec("votequorum", _req(6, name + b"\0")) == ipc.VqQdeviceUnregisterReq("Qdevice")
    assert dec("votequorum", _req(7, name + b"New".ljust(255, b"\0") + bytes(2))) == \
        ipc.VqQdeviceUpdateReq("Qdevice", "New")
    poll = name + b"\0" + struct.pack("=i4xI4xQ", 1, 3, 0x2a)
    assert dec("votequorum", _req(8, poll)) == \
        ipc.VqQdevicePollReq("Qdevice", 1, RingId(3, 0x2a))
    assert dec("votequorum", _req(9, name + b"\0" + struct.pack("=I4x", 1))) == \
        ipc.VqQdeviceMasterWinsReq("Qdevice", 1)


def test_cmap_and_cfg_requests() -> None:
    dec = qb.decode_request
    assert dec("cmap", _req(2, _name("quorum.provider") + struct.pack("=Q", 16))) == \
        qb.CmapGetReq("quorum.provider", 16)
    assert dec("cmap", _req(4, _name("nodelist."))) == qb.CmapIterInitReq("nodelist.")
    assert dec("cmap", _req(5, struct.pack("=Q", 9))) == qb.CmapIterNextReq(9)
    assert dec("cmap", _req(6, struct.pack("=Q", 9))) == qb.CmapIterFinalizeReq(9)
    assert dec("cmap", _req(9, struct.pack("=i4x", 0))) == qb.CmapSetCurrentMapReq(0)
    u8 = _name("quorum.cancel_wait_for_all") + struct.pack("=QB7x", 1, qb.CMAP_UINT8) + b"\1"
    assert dec("cmap", _req(0, u8)) == ipc.CmapSetReq("quorum.cancel_wait_for_all", "1")
    assert dec("cmap", _req(1, _name("a"))) == qb.Unsupported("cmap", 1)
    assert dec("cfg", _req(5, struct.pack("=I4x", 2))) == qb.CfgGetNodeAddrsReq(2)
    assert dec("cfg", _req(6)) == qb.CfgLocalGetReq()
    assert dec("cfg", _req(7)) == ipc.CfgReloadReq()
    assert dec("cfg", _req(0)) == qb.Unsupported("cfg", 0)


@pytest.mark.parametrize("data", [
    b"", b"\0" * 15,                                 # shorter than a header
    _req(0, size=99),                                # size is not the datagram's length
    _req(1),                                         # trackstart without its flags
    _req(5, b"x" * 256),                             # qdevice name without NUL
    _req(77),                                        # no such request id
], ids=["empty", "short", "size", "truncated", "no-nul", "unknown-id"])
def test_bad_requests_never_raise(data: bytes) -> None:
    service = "votequorum" if data[:4] == struct.pack("=i", 5) else "quorum"
    got = qb.decode_request(service, data)
    assert isinstance(got, qb.BadRequest)
    assert got.error == CsErr.CS_ERR_INVALID_PARAM


def test_disconnect_and_bad_key_names() -> None:
    assert qb.decode_request("cmap", _req(qb.QB_IPC_MSG_DISCONNECT)) == qb.Disconnect()
    no_nul = struct.pack("=H6x", 256) + b"k" * 256 + struct.pack("=Q", 0)
    got = qb.decode_request("cmap", _req(2, no_nul))
    assert isinstance(got, qb.BadRequest) and got.error == CsErr.CS_ERR_NAME_TOO_LONG


def test_bad_request_response_is_corosyncs() -> None:
    assert qb.bad_request_response() == qb.RES_HDR.pack(0, 24, 7)


# ------------------------------------------------------------------ responses and events
def test_quorum_responses() -> None:
    res = qb.encode_response("quorum", ipc.QuorumGetQuorateReq(), ipc.QuorumGetQuorateRes(0, 1))
    assert res == qb.RES_HDR.pack(0, 32, 0) + struct.pack("=I4x", 1)
    res = qb.encode_response("quorum", ipc.QuorumTrackStopReq(), ipc.QuorumStatusRes(0))
    assert res == qb.RES_HDR.pack(2, 24, 0)
    res = qb.encode_response("quorum", ipc.QuorumModelGetTypeReq(1), ipc.QuorumGetTypeRes(0, 1))
    assert res == qb.RES_HDR.pack(5, 32, 0) + struct.pack("=I4x", 1)
    res = qb.encode_response("quorum", ipc.QuorumGetTypeReq(), ipc.QuorumGetTypeRes(0, 1))
    assert qb.RES_HDR.unpack_from(res) == (4, 32, 0)


def test_votequorum_responses() -> None:
    info = ipc.VqGetInfoRes(0, 1, 1, 2, 3, 3, 5, 3, 2 | 64, 1, "Qdevice")
    res = qb.encode_response("votequorum", ipc.VqGetInfoReq(0), info)
    assert len(res) == 320 and qb.RES_HDR.unpack_from(res) == (1, 320, 0)
    assert struct.unpack_from("=9I", res, 24) == (1, 1, 2, 3, 3, 5, 3, 66, 1)
    assert res[60:68] == b"Qdevice\0"
    res = qb.encode_response("votequorum", ipc.VqSetVotesReq(1, 1), ipc.VqStatusRes(17))
    assert res == qb.RES_HDR.pack(0, 24, 17)


OK = int(CsErr.CS_OK)  # 1 in corotypes.h


def test_cmap_responses_have_corosyncs_sizes() -> None:
    value = qb.cmap_typed_value("runtime.votequorum.this_node_id", "3")
    assert value == qb.CmapValue(qb.CMAP_UINT32, struct.pack("=I", 3))
    res = qb.encode_response("cmap", qb.CmapGetReq("k", 16), qb.CmapGetRes(OK, value))
    assert len(res) == 40 + 16
    assert struct.unpack_from("=QB", res, 24) == (4, qb.CMAP_UINT32)
    assert res[40:44] == struct.pack("=I", 3)
    length_only = qb.encode_response("cmap", qb.CmapGetReq("k", 0), qb.CmapGetRes(OK, value))
    assert len(length_only) == 40
    missing = qb.encode_response("cmap", qb.CmapGetReq("k", 16), qb.CmapGetRes(12))
    assert qb.RES_HDR.unpack_from(missing) == (2, 40, 12)
    text = qb.cmap_typed_value("quorum.provider", "corosync_votequorum")
    nxt = qb.encode_response("cmap", qb.CmapIterNextReq(1),
                             qb.CmapIterNextRes(OK, "quorum.provider", text))
    assert len(nxt) == 304
    assert struct.unpack_from("=H", nxt, 24)[0] == len("quorum.provider")
    assert nxt[32:48] == b"quorum.provider\0"
    assert struct.unpack_from("=QB", nxt, 288) == (len("corosync_votequorum") + 1,
                                                   qb.CMAP_STRING)
    assert qb.RES_HDR.unpack_from(qb.encode_response(
        "cmap", qb.CmapIterNextReq(1), qb.CmapIterNextRes(27))) == (5, 304, 27)


def test_cmap_value_types() -> None:
    assert qb.cmap_key_type("nodelist.node.0.nodeid") == qb.CMAP_UINT32
    assert qb.cmap_key_type("nodelist.node.0.ring0_addr") == qb.CMAP_STRING
    assert qb.cmap_key_type("runtime.votequorum.two_node") == qb.CMAP_UINT8
    assert qb.cmap_key_type("runtime.pyquorum.stats.qb_malformed") == qb.CMAP_UINT64
    # a value that does not fit its key's type is given as a string
    assert qb.cmap_typed_value("quorum.two_node", "300").type == qb.CMAP_STRING
    assert qb.cmap_typed_value("quorum.votes", "x").data == b"x\0"


def test_cfg_responses() -> None:
    res = qb.encode_response("cfg", qb.CfgGetNodeAddrsReq(1), qb.CfgGetNodeAddrsRes(
        0, qb.AF_INET, (bytes([127, 0, 0, 1]),)))
    assert qb.RES_HDR.unpack_from(res) == (11, 48, 0)
    assert struct.unpack_from("=II", res, 24) == (qb.AF_INET, 1)
    assert res[32:48] == bytes([127, 0, 0, 1]) + bytes(12)
    res = qb.encode_response("cfg", qb.CfgLocalGetReq(), qb.CfgLocalGetRes(0, 4))
    assert res == qb.RES_HDR.pack(12, 32, 0) + struct.pack("=I4x", 4)


def test_events() -> None:
    v0 = qb.encode_event(ipc.QuorumV0Event(1, 0x10, (1, 2)))
    assert v0 is not None and len(v0) == 48 + 8
    assert qb.RES_HDR.unpack_from(v0) == (3, 56, OK)
    assert struct.unpack_from("=i4xQI", v0, 24) == (1, 0x10, 2)
    assert struct.unpack_from("=II", v0, 44) == (1, 2)
    v1 = qb.encode_event(ipc.QuorumV1Event(0, RingId(2, 9), (2,)))
    assert v1 is not None and qb.RES_HDR.unpack_from(v1) == (6, 60, OK)
    assert struct.unpack_from("=I4xQI", v1, 32) == (2, 9, 1)
    nl = qb.encode_event(ipc.NodelistV1Event(RingId(1, 5), (1, 2), (2,), (3,)))
    assert nl is not None and qb.RES_HDR.unpack_from(nl) == (7, 64 + 16, OK)
    assert struct.unpack_from("=4I", nl, 60) == (1, 2, 2, 3)
    vqq = qb.encode_event(ipc.VqQuorumEvent(7, 1, (ipc.VqNode(1, 1), ipc.VqNode(2, 2))))
    assert vqq is not None and qb.RES_HDR.unpack_from(vqq) == (3, 48 + 16, OK)
    assert struct.unpack_from("=4I", vqq, 48) == (1, 1, 2, 2)
    vqn = qb.encode_event(ipc.VqNodelistEvent(7, RingId(1, 5), (1,)))
    assert vqn is not None and qb.RES_HDR.unpack_from(vqn) == (5, 60, OK)
    exp = qb.encode_event(ipc.VqExpectedVotesEvent(7, 3))
    assert exp == qb.RES_HDR.pack(4, 40, OK) + struct.pack("=QI4x", 7, 3)
    assert qb.encode_event(object()) is None
