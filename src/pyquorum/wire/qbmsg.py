"""libqb IPC and Corosync service messages, byte for byte (x86-64, host byte order).

Theory of operation
-------------------
Programs linked against Corosync's C libraries (libquorum, libvotequorum, libcmap,
libcfg) talk to the daemon through libqb IPC.  This module is the pure codec of that
traffic; the transport (sockets, the connection handshake, shared control files) is
``pyquorum.daemon.qbipc``.

Every message starts with a libqb header (``qb/qbipc_common.h``, every field aligned to
8 bytes)::

    request   {int32 id @0; int32 size @8}                  16 bytes
    response  {int32 id @0; int32 size @8; int32 error @16}  24 bytes

``size`` is the whole message.  Service messages are the structs of Corosync 3.1.7's
``include/corosync/ipc_quorum.h``, ``ipc_votequorum.h``, ``ipc_cmap.h``, ``ipc_cfg.h``
(with ``mar_gen.h``); the connection handshake is libqb 2.0's ``lib/ipc_int.h``
(``qb_ipc_connection_request`` / ``qb_ipc_connection_response``).  ``LAYOUTS`` lists the
size and the offset of every field this codec reads or writes; the unit test
``test_qbmsg_layout.py`` compiles those structs with gcc against the installed
``qb/qbipc_common.h`` and ``corosync/corotypes.h`` and compares every number, so the
offsets below are checked, not guessed.  Encoders write fields at ``LAYOUTS`` offsets
into a zeroed buffer of exactly the size Corosync sends (libqb's receiver reads
``header.size`` bytes into a buffer sized for the struct the library expects, so a reply
is never longer than Corosync's).

Requests decode into the same request classes as the native IPC (``pyquorum.wire.ipc``)
where one exists, so the daemon maps them to engine commands with the same functions;
the cmap calls and cfg calls only libqb clients make have their own classes here.
Decoding never raises: a request that is too short for its struct, or whose id the
service does not have, gives ``BadRequest`` (answered, as Corosync answers an unknown
id, with a bare response header: id 0, ``CS_ERR_INVALID_PARAM``).

Request and response ids::

    service     request -> response id
    quorum      0 getquorate 0, 1 trackstart 1, 2 trackstop 2, 3 gettype 4,
                4 model_gettype 5; events 3 (V0), 6 (V1 quorum), 7 (V1 nodelist)
    votequorum  0 getinfo 1, 1 setexpected .. 9 qdevice_master_wins 0 (status);
                events 3 quorum, 4 expected votes, 5 nodelist
    cmap        0 set 0, 1 delete 1, 2 get 2, 3 adjust_int 3, 4 iter_init 4,
                5 iter_next 5, 6 iter_finalize 6, 7 track_add 7, 8 track_delete 8,
                9 set_current_map 10
    cfg         5 get_node_addrs 11, 6 local_get 12, 7 reload_config 15; others
                answered CS_ERR_NOT_SUPPORTED with their Corosync response id
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from pyquorum.errors import CsErr
from pyquorum.types import RingId
from pyquorum.wire import ipc

# ------------------------------------------------------------------ libqb constants
QB_IPC_MSG_AUTHENTICATE: Final = -1
QB_IPC_MSG_NEW_EVENT_SOCK: Final = -2
QB_IPC_MSG_DISCONNECT: Final = -3
QB_IPC_SOCKET: Final = 0
"""``enum qb_ipc_type``: the transport the daemon answers with (datagram sockets)."""
PATH_MAX: Final = 4096
NAME_MAX: Final = 255
CS_MAX_NAME_LENGTH: Final = 256
QDEVICE_NAME_LEN: Final = 255
TOTEMIP_ADDRLEN: Final = 16
AF_INET: Final = 2
AF_INET6: Final = 10

# cmap value types (corosync/cmap.h, cmap_value_types_t)
CMAP_INT8, CMAP_UINT8, CMAP_INT16, CMAP_UINT16 = 1, 2, 3, 4
CMAP_INT32, CMAP_UINT32, CMAP_INT64, CMAP_UINT64 = 5, 6, 7, 8
CMAP_FLOAT, CMAP_DOUBLE, CMAP_STRING, CMAP_BINARY = 9, 10, 11, 12
_INT_TYPES: Final = {CMAP_INT8: "b", CMAP_UINT8: "B", CMAP_INT16: "h", CMAP_UINT16: "H",
                     CMAP_INT32: "i", CMAP_UINT32: "I", CMAP_INT64: "q", CMAP_UINT64: "Q"}


@dataclass(frozen=True, slots=True)
class Layout:
    """One C struct: its ``sizeof`` and the offset of each field used (``a.b`` nests)."""

    size: int
    fields: Mapping[str, int]


def _l(sizeof: int, /, **fields: int) -> Layout:
    return Layout(sizeof, MappingProxyType({k.replace("__", "."): v for k, v in fields.items()}))


LAYOUTS: Final[Mapping[str, Layout]] = MappingProxyType({
    # libqb qbipc_common.h / lib/ipc_int.h
    "qb_ipc_request_header": _l(16, id=0, size=8),
    "qb_ipc_response_header": _l(24, id=0, size=8, error=16),
    "qb_ipc_connection_request": _l(24, hdr=0, max_msg_size=16),
    "qb_ipc_connection_response": _l(12328, hdr=0, connection_type=24, max_msg_size=28,
                                     connection=32, request=40, response=4136, event=8232),
    # ipc_quorum.h
    "req_lib_quorum_trackstart": _l(24, track_flags=16),
    "req_lib_quorum_model_gettype": _l(24, model=16),
    "res_lib_quorum_getquorate": _l(32, quorate=24),
    "res_lib_quorum_gettype": _l(32, quorum_type=24),
    "res_lib_quorum_model_gettype": _l(32, quorum_type=24),
    "res_lib_quorum_notification": _l(48, quorate=24, ring_seq=32, view_list_entries=40,
                                      view_list=44),
    "res_lib_quorum_v1_quorum_notification": _l(56, quorate=24, ring_id__nodeid=32,
                                                ring_id__seq=40, view_list_entries=48,
                                                view_list=52),
    "res_lib_quorum_v1_nodelist_notification": _l(64, ring_id__nodeid=24, ring_id__seq=32,
                                                  member_list_entries=40,
                                                  joined_list_entries=48,
                                                  left_list_entries=56, member_list=60),
    # ipc_votequorum.h
    "req_lib_votequorum_getinfo": _l(24, nodeid=16),
    "req_lib_votequorum_setexpected": _l(24, expected_votes=16),
    "req_lib_votequorum_setvotes": _l(24, votes=16, nodeid=20),
    "req_lib_votequorum_trackstart": _l(32, context=16, track_flags=24),
    "req_lib_votequorum_general": _l(16),
    "req_lib_votequorum_qdevice_register": _l(272, name=16),
    "req_lib_votequorum_qdevice_unregister": _l(272, name=16),
    "req_lib_votequorum_qdevice_update": _l(528, oldname=16, newname=271),
    "req_lib_votequorum_qdevice_poll": _l(296, name=16, cast_vote=272, ring_id__nodeid=280,
                                          ring_id__seq=288),
    "req_lib_votequorum_qdevice_master_wins": _l(280, name=16, allow=272),
    "res_lib_votequorum_status": _l(24),
    "res_lib_votequorum_getinfo": _l(320, nodeid=24, state=28, votes=32, expected_votes=36,
                                     highest_expected=40, total_votes=44, quorum=48,
                                     flags=52, qdevice_votes=56, qdevice_name=60),
    "res_lib_votequorum_quorum_notification": _l(48, quorate=24, context=32,
                                                 node_list_entries=40, node_list=48),
    "res_lib_votequorum_nodelist_notification": _l(56, context=24, ring_id__nodeid=32,
                                                   ring_id__seq=40, node_list_entries=48,
                                                   node_list=56),
    "res_lib_votequorum_expectedvotes_notification": _l(40, context=24, expected_votes=32),
    # ipc_cmap.h (mar_name_t: u16 length @0, u8 value[256] @8; 264 bytes)
    "req_lib_cmap_set": _l(296, key_name__length=16, key_name__value=24, value_len=280,
                           type=288, value=296),
    "req_lib_cmap_delete": _l(280, key_name__value=24),
    "req_lib_cmap_get": _l(288, key_name__length=16, key_name__value=24, value_len=280),
    "res_lib_cmap_get": _l(40, value_len=24, type=32, value=40),
    "req_lib_cmap_adjust_int": _l(288, key_name__value=24, step=280),
    "req_lib_cmap_iter_init": _l(280, prefix__length=16, prefix__value=24),
    "res_lib_cmap_iter_init": _l(32, iter_handle=24),
    "req_lib_cmap_iter_next": _l(24, iter_handle=16),
    "res_lib_cmap_iter_next": _l(304, key_name__length=24, key_name__value=32,
                                 value_len=288, type=296),
    "req_lib_cmap_iter_finalize": _l(24, iter_handle=16),
    "req_lib_cmap_track_add": _l(296, key_name__value=24, track_type=280,
                                 track_inst_handle=288),
    "res_lib_cmap_track_add": _l(32, track_handle=24),
    "req_lib_cmap_track_delete": _l(24, track_handle=16),
    "res_lib_cmap_track_delete": _l(32, track_inst_handle=24),
    "req_lib_cmap_set_current_map": _l(24, map=16),
    # ipc_cfg.h
    "req_lib_cfg_get_node_addrs": _l(24, nodeid=16),
    "res_lib_cfg_get_node_addrs": _l(32, family=24, num_addrs=28, addrs=32),
    "res_lib_cfg_local_get": _l(32, local_nodeid=24),
})

REQ_HDR: Final = struct.Struct("=i4xi4x")
RES_HDR: Final = struct.Struct("=i4xi4xi4x")
_U8, _U32, _I32, _U64 = struct.Struct("=B"), struct.Struct("=I"), struct.Struct("=i"), \
    struct.Struct("=Q")
_U16 = struct.Struct("=H")


def _off(name: str, fld: str) -> int:
    return LAYOUTS[name].fields[fld]


def _size(name: str) -> int:
    return LAYOUTS[name].size


def response_header(res_id: int, size: int, error: int) -> bytes:
    """A bare libqb response header (24 bytes)."""
    return RES_HDR.pack(res_id, size, error)


def _buf(name: str, res_id: int, error: int, extra: int = 0) -> bytearray:
    size = _size(name) + extra
    buf = bytearray(size)
    RES_HDR.pack_into(buf, 0, res_id, size, error)
    return buf


def _put(fmt: struct.Struct, buf: bytearray, name: str, fld: str, value: int) -> None:
    fmt.pack_into(buf, _off(name, fld), value)


# ------------------------------------------------------------------ connection handshake
@dataclass(frozen=True, slots=True)
class ConnectionRequest:
    """``qb_ipc_connection_request``: the first (and only) message on the stream socket."""

    max_msg_size: int


@dataclass(frozen=True, slots=True)
class BadHandshake:
    """The first message was not a libqb connection request (the reason is for the log)."""

    reason: str


CONNECTION_REQUEST_SIZE: Final = LAYOUTS["qb_ipc_connection_request"].size
CONNECTION_RESPONSE_SIZE: Final = LAYOUTS["qb_ipc_connection_response"].size


def decode_connection_request(data: bytes) -> ConnectionRequest | BadHandshake:
    """The connection request (exactly ``CONNECTION_REQUEST_SIZE`` bytes), else why not."""
    if len(data) != CONNECTION_REQUEST_SIZE:
        return BadHandshake(f"{len(data)} bytes instead of {CONNECTION_REQUEST_SIZE}")
    msg_id, size = REQ_HDR.unpack_from(data)
    if msg_id != QB_IPC_MSG_AUTHENTICATE:
        return BadHandshake(f"message id {msg_id} is not QB_IPC_MSG_AUTHENTICATE")
    if size != CONNECTION_REQUEST_SIZE:
        return BadHandshake(f"header size {size} instead of {CONNECTION_REQUEST_SIZE}")
    (max_msg,) = _U32.unpack_from(data, _off("qb_ipc_connection_request", "max_msg_size"))
    return ConnectionRequest(max_msg)


def _cstr(text: str, width: int) -> bytes:
    raw = text.encode("utf-8", "surrogateescape")[: width - 1]
    return raw + b"\0" * (width - len(raw))


def encode_connection_response(error: int, *, max_msg_size: int = 0, connection: int = 0,
                               request: str = "", response: str = "") -> bytes:
    """``qb_ipc_connection_response``: ``error`` is 0 or a negative errno (a refusal).

    On success ``connection_type`` is the socket transport, ``request`` the path of the
    shared control file and ``response`` the base name of the datagram sockets.
    """
    name = "qb_ipc_connection_response"
    buf = bytearray(_size(name))
    RES_HDR.pack_into(buf, 0, QB_IPC_MSG_AUTHENTICATE, len(buf), error)
    if error == 0:
        _put(_I32, buf, name, "connection_type", QB_IPC_SOCKET)
        _put(_U32, buf, name, "max_msg_size", max_msg_size)
        _put(_U64, buf, name, "connection", connection)
        for fld, text in (("request", request), ("response", response)):
            off = _off(name, fld)
            buf[off:off + PATH_MAX] = _cstr(text, PATH_MAX)
    return bytes(buf)


# ------------------------------------------------------------------ requests
@dataclass(frozen=True, slots=True)
class BadRequest:
    """A request that cannot be served; answered with a bare header (id 0, ``error``)."""

    reason: str
    error: int = int(CsErr.CS_ERR_INVALID_PARAM)


@dataclass(frozen=True, slots=True)
class Disconnect:
    """``QB_IPC_MSG_DISCONNECT``: the client asks to close the connection."""


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A request id the service has but this daemon does not serve (CS_ERR_NOT_SUPPORTED)."""

    service: str
    request_id: int


@dataclass(frozen=True, slots=True)
class CmapGetReq:
    """``cmap_get``: ``value_len`` is the size of the caller's buffer (0: length only)."""

    key: str
    value_len: int


@dataclass(frozen=True, slots=True)
class CmapIterInitReq:
    """``cmap_iter_init(prefix)``."""

    prefix: str


@dataclass(frozen=True, slots=True)
class CmapIterNextReq:
    """``cmap_iter_next(handle)``."""

    handle: int


@dataclass(frozen=True, slots=True)
class CmapIterFinalizeReq:
    """``cmap_iter_finalize(handle)``."""

    handle: int


@dataclass(frozen=True, slots=True)
class CmapSetCurrentMapReq:
    """``cmap_initialize_map``: 0 default map, 1 stats map."""

    map: int


@dataclass(frozen=True, slots=True)
class CfgGetNodeAddrsReq:
    """``corosync_cfg_get_node_addrs(nodeid)`` (0: the local node)."""

    nodeid: int


@dataclass(frozen=True, slots=True)
class CfgLocalGetReq:
    """``corosync_cfg_local_get``."""


Request = object
"""A decoded request: an ``ipc`` request class or one of this module's classes."""

# (service, request id) -> response id of Corosync
RESPONSE_IDS: Final[Mapping[tuple[str, int], int]] = MappingProxyType({
    **{("quorum", i): r for i, r in ((0, 0), (1, 1), (2, 2), (3, 4), (4, 5))},
    ("votequorum", 0): 1,
    **{("votequorum", i): 0 for i in range(1, 10)},
    **{("cmap", i): i for i in range(9)},
    ("cmap", 9): 10,
    **{("cfg", i): r for i, r in ((0, 0), (1, 1), (2, 8), (3, 9), (4, 13), (5, 11),
                                   (6, 12), (7, 15), (8, 14))},
})
_MIN_SIZE: Final[Mapping[tuple[str, int], str]] = MappingProxyType({
    ("quorum", 1): "req_lib_quorum_trackstart",
    ("quorum", 4): "req_lib_quorum_model_gettype",
    ("votequorum", 0): "req_lib_votequorum_getinfo",
    ("votequorum", 1): "req_lib_votequorum_setexpected",
    ("votequorum", 2): "req_lib_votequorum_setvotes",
    ("votequorum", 3): "req_lib_votequorum_trackstart",
    ("votequorum", 5): "req_lib_votequorum_qdevice_register",
    ("votequorum", 6): "req_lib_votequorum_qdevice_unregister",
    ("votequorum", 7): "req_lib_votequorum_qdevice_update",
    ("votequorum", 8): "req_lib_votequorum_qdevice_poll",
    ("votequorum", 9): "req_lib_votequorum_qdevice_master_wins",
    ("cmap", 0): "req_lib_cmap_set",
    ("cmap", 1): "req_lib_cmap_delete",
    ("cmap", 2): "req_lib_cmap_get",
    ("cmap", 3): "req_lib_cmap_adjust_int",
    ("cmap", 4): "req_lib_cmap_iter_init",
    ("cmap", 5): "req_lib_cmap_iter_next",
    ("cmap", 6): "req_lib_cmap_iter_finalize",
    ("cmap", 7): "req_lib_cmap_track_add",
    ("cmap", 8): "req_lib_cmap_track_delete",
    ("cmap", 9): "req_lib_cmap_set_current_map",
    ("cfg", 5): "req_lib_cfg_get_node_addrs",
})


def _fixed_str(data: bytes, off: int, width: int) -> str | None:
    """A NUL-terminated C string of at most ``width`` bytes (None: no NUL inside)."""
    raw = data[off:off + width]
    end = raw.find(b"\0")
    if end < 0:
        return None
    return raw[:end].decode("utf-8", "surrogateescape")


def _name(data: bytes, name: str, fld: str) -> str | None:
    """A ``mar_name_t`` value (``fld`` is the struct's ``...value`` field)."""
    return _fixed_str(data, _off(name, fld), CS_MAX_NAME_LENGTH)


def request_header(data: bytes) -> tuple[int, int] | None:
    """(id, size) of a request, None when it is shorter than a header."""
    if len(data) < REQ_HDR.size:
        return None
    msg_id, size = REQ_HDR.unpack_from(data)
    return msg_id, size


def decode_request(service: str, data: bytes) -> Request:
    """One request datagram of ``service`` ("quorum", "votequorum", "cmap", "cfg").

    Never raises: what cannot be served is ``BadRequest`` (header shorter than 16 bytes,
    ``size`` not the datagram's length, a body too short for the struct, an unknown id,
    a name without its NUL), ``Disconnect`` or ``Unsupported``.
    """
    hdr = request_header(data)
    if hdr is None:
        return BadRequest(f"{len(data)} bytes: shorter than a request header")
    msg_id, size = hdr
    if msg_id == QB_IPC_MSG_DISCONNECT:
        return Disconnect()
    if size != len(data):
        return BadRequest(f"header size {size} but {len(data)} bytes received")
    if (service, msg_id) not in RESPONSE_IDS:
        return BadRequest(f"{service} has no request id {msg_id}")
    layout = _MIN_SIZE.get((service, msg_id))
    if layout is not None and len(data) < _size(layout):
        return BadRequest(f"{service} request {msg_id}: {len(data)} bytes, "
                          f"{layout} needs {_size(layout)}")
    decoder = _DECODERS.get(service)
    result = decoder(msg_id, data) if decoder is not None else None
    return Unsupported(service, msg_id) if result is None else result


def _u32(data: bytes, name: str, fld: str) -> int:
    return int(_U32.unpack_from(data, _off(name, fld))[0])


def _u64(data: bytes, name: str, fld: str) -> int:
    return int(_U64.unpack_from(data, _off(name, fld))[0])


def _decode_quorum(msg_id: int, data: bytes) -> Request | None:
    if msg_id == 0:
        return ipc.QuorumGetQuorateReq()
    if msg_id == 1:
        return ipc.QuorumTrackStartReq(_u32(data, "req_lib_quorum_trackstart", "track_flags"))
    if msg_id == 2:
        return ipc.QuorumTrackStopReq()
    if msg_id == 3:
        return ipc.QuorumGetTypeReq()
    return ipc.QuorumModelGetTypeReq(_u32(data, "req_lib_quorum_model_gettype", "model"))


def _qdevice_name(data: bytes, name: str, fld: str) -> str | BadRequest:
    text = _fixed_str(data, _off(name, fld), QDEVICE_NAME_LEN)
    return BadRequest(f"{name}.{fld} is not NUL-terminated") if text is None else text


def _decode_votequorum(msg_id: int, data: bytes) -> Request | None:
    if msg_id == 0:
        return ipc.VqGetInfoReq(_u32(data, "req_lib_votequorum_getinfo", "nodeid"))
    if msg_id == 1:
        return ipc.VqSetExpectedReq(
            _u32(data, "req_lib_votequorum_setexpected", "expected_votes"))
    if msg_id == 2:
        n = "req_lib_votequorum_setvotes"
        return ipc.VqSetVotesReq(_u32(data, n, "nodeid"), _u32(data, n, "votes"))
    if msg_id == 3:
        n = "req_lib_votequorum_trackstart"
        return ipc.VqTrackStartReq(_u64(data, n, "context"), _u32(data, n, "track_flags"))
    if msg_id == 4:
        return ipc.VqTrackStopReq()
    return _decode_qdevice(msg_id, data)


def _decode_qdevice(msg_id: int, data: bytes) -> Request | None:
    layout = {5: "req_lib_votequorum_qdevice_register",
              6: "req_lib_votequorum_qdevice_unregister",
              7: "req_lib_votequorum_qdevice_update",
              8: "req_lib_votequorum_qdevice_poll",
              9: "req_lib_votequorum_qdevice_master_wins"}[msg_id]
    first = _qdevice_name(data, layout, "oldname" if msg_id == 7 else "name")
    if isinstance(first, BadRequest):
        return first
    if msg_id == 5:
        return ipc.VqQdeviceRegisterReq(first)
    if msg_id == 6:
        return ipc.VqQdeviceUnregisterReq(first)
    if msg_id == 7:
        new = _qdevice_name(data, layout, "newname")
        return new if isinstance(new, BadRequest) else ipc.VqQdeviceUpdateReq(first, new)
    if msg_id == 8:
        ring = RingId(_u32(data, layout, "ring_id.nodeid"), _u64(data, layout, "ring_id.seq"))
        return ipc.VqQdevicePollReq(first, _u32(data, layout, "cast_vote"), ring)
    return ipc.VqQdeviceMasterWinsReq(first, _u32(data, layout, "allow"))


def _decode_cmap(msg_id: int, data: bytes) -> Request | None:
    if msg_id == 0:
        return _decode_cmap_set(data)
    if msg_id == 2:
        n = "req_lib_cmap_get"
        key = _name(data, n, "key_name.value")
        if key is None:
            return BadRequest("key name is not NUL-terminated", int(CsErr.CS_ERR_NAME_TOO_LONG))
        return CmapGetReq(key, _u64(data, n, "value_len"))
    if msg_id == 4:
        prefix = _name(data, "req_lib_cmap_iter_init", "prefix.value")
        if prefix is None:
            return BadRequest("prefix is not NUL-terminated", int(CsErr.CS_ERR_NAME_TOO_LONG))
        return CmapIterInitReq(prefix)
    if msg_id == 5:
        return CmapIterNextReq(_u64(data, "req_lib_cmap_iter_next", "iter_handle"))
    if msg_id == 6:
        return CmapIterFinalizeReq(_u64(data, "req_lib_cmap_iter_finalize", "iter_handle"))
    if msg_id == 9:
        (value,) = _I32.unpack_from(data, _off("req_lib_cmap_set_current_map", "map"))
        return CmapSetCurrentMapReq(int(value))
    return None  # delete, adjust_int, track_add, track_delete


def _decode_cmap_set(data: bytes) -> Request:
    n = "req_lib_cmap_set"
    key = _name(data, n, "key_name.value")
    if key is None:
        return BadRequest("key name is not NUL-terminated", int(CsErr.CS_ERR_NAME_TOO_LONG))
    value_len = _u64(data, n, "value_len")
    vtype = data[_off(n, "type")]
    off = _off(n, "value")
    if len(data) - off < value_len:
        return BadRequest(f"cmap set: value_len {value_len} beyond the message")
    raw = data[off:off + value_len]
    text = cmap_value_text(vtype, raw)
    if text is None:
        return BadRequest(f"cmap set: type {vtype} with {value_len} bytes")
    return ipc.CmapSetReq(key, text)


def cmap_value_text(vtype: int, raw: bytes) -> str | None:
    """A cmap value as the text of the daemon's view (None: bad type or length)."""
    code = _INT_TYPES.get(vtype)
    if code is not None:
        fmt = struct.Struct("=" + code)
        return str(fmt.unpack(raw)[0]) if len(raw) == fmt.size else None
    if vtype == CMAP_STRING:
        end = raw.find(b"\0")
        return (raw if end < 0 else raw[:end]).decode("utf-8", "surrogateescape")
    return None


def _decode_cfg(msg_id: int, data: bytes) -> Request | None:
    if msg_id == 5:
        return CfgGetNodeAddrsReq(_u32(data, "req_lib_cfg_get_node_addrs", "nodeid"))
    if msg_id == 6:
        return CfgLocalGetReq()
    if msg_id == 7:
        return ipc.CfgReloadReq()
    return None


_DECODERS: Final = {"quorum": _decode_quorum, "votequorum": _decode_votequorum,
                    "cmap": _decode_cmap, "cfg": _decode_cfg}


# ------------------------------------------------------------------ responses
@dataclass(frozen=True, slots=True)
class CmapValue:
    """A typed cmap value: its ``CMAP_VALUETYPE`` and bytes (strings end with NUL)."""

    type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class CmapGetRes:
    """The answer to ``CmapGetReq`` (``value`` None with an error)."""

    error: int
    value: CmapValue | None = None


@dataclass(frozen=True, slots=True)
class CmapIterInitRes:
    """The answer to ``CmapIterInitReq``."""

    error: int
    handle: int = 0


@dataclass(frozen=True, slots=True)
class CmapIterNextRes:
    """The answer to ``CmapIterNextReq``: the next key, its value's length and type."""

    error: int
    key: str = ""
    value: CmapValue | None = None


@dataclass(frozen=True, slots=True)
class StatusRes:
    """Any answer that is only a header (``error``)."""

    error: int


@dataclass(frozen=True, slots=True)
class CfgGetNodeAddrsRes:
    """The answer to ``CfgGetNodeAddrsReq``: address family and raw addresses (4 or 16
    bytes each)."""

    error: int
    family: int = 0
    addrs: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class CfgLocalGetRes:
    """The answer to ``CfgLocalGetReq``."""

    error: int
    nodeid: int = 0


def bad_request_response(error: int = int(CsErr.CS_ERR_INVALID_PARAM)) -> bytes:
    """Corosync's answer to a request it cannot dispatch: id 0, size 24, ``error``."""
    return response_header(0, RES_HDR.size, error)


def response_id(service: str, request_id: int) -> int:
    """Corosync's response id for a request id of ``service`` (0 if unknown)."""
    return RESPONSE_IDS.get((service, request_id), 0)


def request_id_of(service: str, req: Request) -> int:
    """The request id ``req`` was decoded from (for its response id)."""
    if isinstance(req, Unsupported):
        return req.request_id
    table = _REQUEST_IDS.get(service, {})
    return table.get(type(req), -1)


_REQUEST_IDS: Final[dict[str, dict[type, int]]] = {
    "quorum": {ipc.QuorumGetQuorateReq: 0, ipc.QuorumTrackStartReq: 1,
               ipc.QuorumTrackStopReq: 2, ipc.QuorumGetTypeReq: 3,
               ipc.QuorumModelGetTypeReq: 4},
    "votequorum": {ipc.VqGetInfoReq: 0, ipc.VqSetExpectedReq: 1, ipc.VqSetVotesReq: 2,
                   ipc.VqTrackStartReq: 3, ipc.VqTrackStopReq: 4,
                   ipc.VqQdeviceRegisterReq: 5, ipc.VqQdeviceUnregisterReq: 6,
                   ipc.VqQdeviceUpdateReq: 7, ipc.VqQdevicePollReq: 8,
                   ipc.VqQdeviceMasterWinsReq: 9},
    "cmap": {ipc.CmapSetReq: 0, CmapGetReq: 2, CmapIterInitReq: 4, CmapIterNextReq: 5,
             CmapIterFinalizeReq: 6, CmapSetCurrentMapReq: 9},
    "cfg": {CfgGetNodeAddrsReq: 5, CfgLocalGetReq: 6, ipc.CfgReloadReq: 7},
}


def encode_response(service: str, req: Request, res: object) -> bytes:
    """The response datagram for request ``req`` of ``service``.

    ``res`` is the response object: the native IPC response classes for quorum and
    votequorum (``ipc.QuorumGetQuorateRes``, ``QuorumStatusRes``, ``QuorumGetTypeRes``,
    ``VqGetInfoRes``, ``VqStatusRes``, ``CmapSetRes``, ``CfgReloadRes``) or this
    module's classes.  Its size is exactly Corosync's for that request.
    """
    rid = response_id(service, request_id_of(service, req))
    error = int(getattr(res, "error", int(CsErr.CS_ERR_LIBRARY)))
    if isinstance(res, ipc.QuorumGetQuorateRes):
        buf = _buf("res_lib_quorum_getquorate", rid, error)
        _put(_U32, buf, "res_lib_quorum_getquorate", "quorate", res.quorate)
        return bytes(buf)
    if isinstance(res, ipc.QuorumGetTypeRes):
        name = ("res_lib_quorum_model_gettype" if isinstance(req, ipc.QuorumModelGetTypeReq)
                else "res_lib_quorum_gettype")
        buf = _buf(name, rid, error)
        _put(_U32, buf, name, "quorum_type", res.quorum_type)
        return bytes(buf)
    if isinstance(res, ipc.VqGetInfoRes):
        return _encode_getinfo(rid, res)
    if isinstance(res, CmapGetRes):
        return _encode_cmap_get(rid, req, res)
    if isinstance(res, CmapIterInitRes):
        buf = _buf("res_lib_cmap_iter_init", rid, error)
        _put(_U64, buf, "res_lib_cmap_iter_init", "iter_handle", res.handle)
        return bytes(buf)
    if isinstance(res, CmapIterNextRes):
        return _encode_iter_next(rid, res)
    if isinstance(res, CfgGetNodeAddrsRes):
        return _encode_node_addrs(rid, res)
    if isinstance(res, CfgLocalGetRes):
        buf = _buf("res_lib_cfg_local_get", rid, error)
        _put(_U32, buf, "res_lib_cfg_local_get", "local_nodeid", res.nodeid)
        return bytes(buf)
    return response_header(rid, RES_HDR.size, error)


def _encode_getinfo(rid: int, res: ipc.VqGetInfoRes) -> bytes:
    n = "res_lib_votequorum_getinfo"
    buf = _buf(n, rid, res.error)
    for fld, value in (("nodeid", res.node_id), ("state", res.node_state),
                       ("votes", res.node_votes), ("expected_votes", res.node_expected_votes),
                       ("highest_expected", res.highest_expected),
                       ("total_votes", res.total_votes), ("quorum", res.quorum),
                       ("flags", res.flags), ("qdevice_votes", res.qdevice_votes)):
        _put(_U32, buf, n, fld, value)
    off = _off(n, "qdevice_name")
    buf[off:off + QDEVICE_NAME_LEN] = _cstr(res.qdevice_name, QDEVICE_NAME_LEN)
    return bytes(buf)


def _encode_cmap_get(rid: int, req: Request, res: CmapGetRes) -> bytes:
    """Corosync's sizes: ``sizeof + requested value_len`` on success, ``sizeof`` on error."""
    n = "res_lib_cmap_get"
    value = res.value
    if res.error != CsErr.CS_OK or value is None:
        return bytes(_buf(n, rid, res.error))
    wanted = req.value_len if isinstance(req, CmapGetReq) else 0
    buf = _buf(n, rid, res.error, extra=wanted)
    _put(_U64, buf, n, "value_len", len(value.data))
    _put(_U8, buf, n, "type", value.type)
    if wanted:
        off = _off(n, "value")
        buf[off:off + len(value.data)] = value.data
    return bytes(buf)


def _encode_iter_next(rid: int, res: CmapIterNextRes) -> bytes:
    n = "res_lib_cmap_iter_next"
    buf = _buf(n, rid, res.error)
    if res.error == CsErr.CS_OK and res.value is not None:
        raw = res.key.encode("utf-8", "surrogateescape")[: CS_MAX_NAME_LENGTH - 1]
        _put(_U16, buf, n, "key_name.length", len(raw))
        off = _off(n, "key_name.value")
        buf[off:off + len(raw)] = raw
        _put(_U64, buf, n, "value_len", len(res.value.data))
        _put(_U8, buf, n, "type", res.value.type)
    return bytes(buf)


def _encode_node_addrs(rid: int, res: CfgGetNodeAddrsRes) -> bytes:
    n = "res_lib_cfg_get_node_addrs"
    buf = _buf(n, rid, res.error, extra=TOTEMIP_ADDRLEN * len(res.addrs))
    _put(_U32, buf, n, "family", res.family)
    _put(_U32, buf, n, "num_addrs", len(res.addrs))
    off = _off(n, "addrs")
    for raw in res.addrs:
        buf[off:off + len(raw[:TOTEMIP_ADDRLEN])] = raw[:TOTEMIP_ADDRLEN]
        off += TOTEMIP_ADDRLEN
    return bytes(buf)


# ------------------------------------------------------------------ events
QUORUM_EVENT_V0: Final = 3
QUORUM_EVENT_V1: Final = 6
QUORUM_EVENT_NODELIST: Final = 7
VQ_EVENT_QUORUM: Final = 3
VQ_EVENT_EXPECTED_VOTES: Final = 4
VQ_EVENT_NODELIST: Final = 5


def _u32_list(buf: bytearray, off: int, values: tuple[int, ...]) -> None:
    for i, v in enumerate(values):
        _U32.pack_into(buf, off + 4 * i, v)


def encode_event(ev: object) -> bytes | None:
    """An event datagram for a native IPC event object (None: not an event)."""
    if isinstance(ev, ipc.QuorumV0Event):
        n = "res_lib_quorum_notification"
        buf = _buf(n, QUORUM_EVENT_V0, int(CsErr.CS_OK), extra=4 * len(ev.members))
        _put(_I32, buf, n, "quorate", ev.quorate)
        _put(_U64, buf, n, "ring_seq", ev.ring_seq)
        _put(_U32, buf, n, "view_list_entries", len(ev.members))
        _u32_list(buf, _off(n, "view_list"), ev.members)
        return bytes(buf)
    if isinstance(ev, ipc.QuorumV1Event):
        n = "res_lib_quorum_v1_quorum_notification"
        buf = _buf(n, QUORUM_EVENT_V1, int(CsErr.CS_OK), extra=4 * len(ev.members))
        _put(_I32, buf, n, "quorate", ev.quorate)
        _put(_U32, buf, n, "ring_id.nodeid", ev.ring.rep)
        _put(_U64, buf, n, "ring_id.seq", ev.ring.seq)
        _put(_U32, buf, n, "view_list_entries", len(ev.members))
        _u32_list(buf, _off(n, "view_list"), ev.members)
        return bytes(buf)
    if isinstance(ev, ipc.NodelistV1Event):
        n = "res_lib_quorum_v1_nodelist_notification"
        ids = ev.members + ev.joined + ev.left
        buf = _buf(n, QUORUM_EVENT_NODELIST, int(CsErr.CS_OK), extra=4 * len(ids))
        _put(_U32, buf, n, "ring_id.nodeid", ev.ring.rep)
        _put(_U64, buf, n, "ring_id.seq", ev.ring.seq)
        _put(_U32, buf, n, "member_list_entries", len(ev.members))
        _put(_U32, buf, n, "joined_list_entries", len(ev.joined))
        _put(_U32, buf, n, "left_list_entries", len(ev.left))
        _u32_list(buf, _off(n, "member_list"), ids)
        return bytes(buf)
    return _encode_vq_event(ev)


def _encode_vq_event(ev: object) -> bytes | None:
    if isinstance(ev, ipc.VqQuorumEvent):
        n = "res_lib_votequorum_quorum_notification"
        buf = _buf(n, VQ_EVENT_QUORUM, int(CsErr.CS_OK), extra=8 * len(ev.nodes))
        _put(_U32, buf, n, "quorate", ev.quorate)
        _put(_U64, buf, n, "context", ev.context)
        _put(_U32, buf, n, "node_list_entries", len(ev.nodes))
        off = _off(n, "node_list")
        for i, node in enumerate(ev.nodes):
            struct.pack_into("=II", buf, off + 8 * i, node.nodeid, node.state)
        return bytes(buf)
    if isinstance(ev, ipc.VqNodelistEvent):
        n = "res_lib_votequorum_nodelist_notification"
        buf = _buf(n, VQ_EVENT_NODELIST, int(CsErr.CS_OK), extra=4 * len(ev.members))
        _put(_U64, buf, n, "context", ev.context)
        _put(_U32, buf, n, "ring_id.nodeid", ev.ring.rep)
        _put(_U64, buf, n, "ring_id.seq", ev.ring.seq)
        _put(_U32, buf, n, "node_list_entries", len(ev.members))
        _u32_list(buf, _off(n, "node_list"), ev.members)
        return bytes(buf)
    if isinstance(ev, ipc.VqExpectedVotesEvent):
        n = "res_lib_votequorum_expectedvotes_notification"
        buf = _buf(n, VQ_EVENT_EXPECTED_VOTES, int(CsErr.CS_OK))
        _put(_U64, buf, n, "context", ev.context)
        _put(_U32, buf, n, "expected_votes", ev.expected_votes)
        return bytes(buf)
    return None


# ------------------------------------------------------------------ cmap value types
_U8_KEYS: Final = frozenset({
    "quorum.two_node", "quorum.wait_for_all", "quorum.last_man_standing",
    "quorum.auto_tie_breaker", "quorum.allow_downscale", "quorum.expected_votes_tracking",
    "quorum.device.master_wins", "runtime.votequorum.wait_for_all_status",
    "runtime.votequorum.two_node", "runtime.votequorum.qdevice_can_operate",
    "runtime.votequorum.qdevice_master_wins",
})
_U32_KEYS: Final = frozenset({
    "quorum.expected_votes", "quorum.votes", "quorum.last_man_standing_window",
    "quorum.leaving_timeout", "quorum.device.timeout", "quorum.device.sync_timeout",
    "quorum.device.votes", "runtime.votequorum.this_node_id",
    "runtime.votequorum.lowest_node_id", "runtime.votequorum.highest_node_id",
    "runtime.votequorum.atb_type", "runtime.votequorum.ev_barrier",
    "runtime.votequorum.ev_tracking_barrier", "totem.nodeid", "totem.version",
    "totem.token", "totem.token_coefficient", "totem.token_retransmit", "totem.hold",
    "totem.join", "totem.send_join", "totem.consensus", "totem.merge", "totem.downcheck",
    "totem.fail_recv_const", "totem.seqno_unchanged_const", "totem.window_size",
    "totem.max_messages", "totem.miss_count_const", "totem.netmtu",
    "totem.token_retransmits_before_loss_const", "totem.max_network_delay",
})
_U32_SUFFIXES: Final = (".nodeid", ".quorum_votes")


def cmap_key_type(key: str) -> int:
    """The ``CMAP_VALUETYPE`` Corosync gives ``key`` (STRING for keys it stores as text).

    ``nodelist.node.X.nodeid`` and ``quorum_votes``, votequorum's numeric keys and
    ``runtime.votequorum.*`` are integers as in Corosync (corosync-quorumtool reads
    ``nodelist.node.X.nodeid`` and ``runtime.votequorum.this_node_id`` with
    ``cmap_get_uint32``); ``runtime.config.totem.*`` are u32 and the daemon's counters
    ``runtime.pyquorum.stats.*`` u64.
    """
    if key in _U8_KEYS:
        return CMAP_UINT8
    if key in _U32_KEYS or key.startswith("runtime.config.totem."):
        return CMAP_UINT32
    if key.startswith("nodelist.node.") and key.endswith(_U32_SUFFIXES):
        return CMAP_UINT32
    if key == "totem.config_version" or key.startswith("runtime.pyquorum.stats."):
        return CMAP_UINT64
    return CMAP_STRING


def cmap_typed_value(key: str, text: str) -> CmapValue:
    """``text`` (the daemon's view) as Corosync's typed value of ``key``; a value that does
    not fit the key's integer type is given as a string."""
    vtype = cmap_key_type(key)
    code = _INT_TYPES.get(vtype)
    if code is not None and text.isascii() and text.isdigit() and len(text) <= 20:
        fmt = struct.Struct("=" + code)
        number = int(text)
        if number < 1 << (8 * fmt.size):
            return CmapValue(vtype, fmt.pack(number))
    return CmapValue(CMAP_STRING, text.encode("utf-8", "surrogateescape") + b"\0")
