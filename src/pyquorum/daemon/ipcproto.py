"""The pure half of the IPC server: admission, framing, requests, responses, events.

Theory of operation
-------------------
A connection's first frame is ``Hello(service)``.  ``admit`` decides the answer in
Corosync's order (``ipc_glue.c``: the endpoint must exist, then the daemon must have
completed its first sync, then the peer's credentials are checked)::

    check                                                    HelloReply error
    -------------------------------------------------------  -------------------------
    unknown service, votequorum without a provider,          CS_ERR_LIBRARY (2): the
    TESTHOOK without PYQUORUM_TEST_HOOKS=1                   endpoint does not exist
    the first view is not installed yet                      CS_ERR_TRY_AGAIN (6)
    uid != 0, gid != 0, neither in ``uidgid``                CS_ERR_ACCESS (11)
    otherwise                                                CS_OK + event channel fd

CMAP (0), CFG (1) and QUORUM (3) are always offered; all services share the
credential rule.

After the hello, every frame is a request of the connection's service.
``RequestFramer`` cuts the byte stream: a frame whose type byte is unknown keeps the
stream usable (the length says where the next frame starts) and gets
``ErrorReply(CS_ERR_INVALID_PARAM, type)``, as does a well-formed request of another
service; anything else that does not decode (bad length, bad version, truncated
fields) breaks the stream and the connection is closed.  The length header is checked
as soon as its 4 bytes are in: a frame over ``MAX_HELLO_BYTES`` (before the hello) or
``MAX_REQUEST_BYTES`` (after it) is refused before any of its body is waited for, so
the framer never holds more than one request body and one ``recv``.

``to_command`` maps quorum, votequorum and cfg requests to engine commands,
``cmap_set_action`` decides a cmap set, ``response_for`` maps the engine's ``Replied``
back to the response class, and ``event_for`` encodes callbacks (``Notified``) for the
event channel::

    request                        engine command           response
    -----------------------------  -----------------------  ------------------------------
    Quorum*Req                     Quorum*                  Quorum*Res
    Vq*Req                         Vq*                      VqGetInfoRes / VqStatusRes
    CfgReloadReq                   CfgReload                CfgReloadRes (when this node
                                                            has reloaded)
    CmapSetReq, key                VqCancelWaitForAll       CmapSetRes (when CANCEL_WFA
    quorum.cancel_wait_for_all,                             was delivered)
    value 1..255
    CmapSetReq, anything else      none                     CmapSetRes at once (see
                                                            ``cmap_set_action``)
    CmapGetPrefixReq, TestBlockReq none                     answered at once by the server

pyquorum's cmap is read-only except for that one trigger key: a configuration change
goes through the file and a reload (``CfgReloadReq``), never through cmap.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from pyquorum.config.model import UidGidConfig
from pyquorum.core.engine import (
    CfgReload,
    Command,
    QuorumGetQuorate,
    QuorumGetType,
    QuorumTrackStart,
    QuorumTrackStop,
    Replied,
    VqCancelWaitForAll,
    VqGetInfo,
    VqQdeviceMasterWins,
    VqQdevicePoll,
    VqQdeviceRegister,
    VqQdeviceUnregister,
    VqQdeviceUpdate,
    VqSetExpected,
    VqSetVotes,
    VqTrackStart,
    VqTrackStop,
)
from pyquorum.core.tracking import (
    QUORUM_MODEL_V1,
    NodelistNotification,
    QuorumNotification,
    VqExpectedVotesNotification,
    VqNodelistNotification,
    VqQuorumNotification,
)
from pyquorum.core.votequorum import VoteQuorumInfo
from pyquorum.errors import CsErr
from pyquorum.wire import ipc
from pyquorum.wire.codec import Malformed, MalformedReason

MAX_REQUEST_BYTES: Final = 64 * 1024
"""The largest request frame body accepted (the largest valid request is a few KiB)."""
MAX_HELLO_BYTES: Final = 64
"""Before the hello, a frame larger than this is garbage."""
_LENGTH: Final = struct.Struct(">I")


# ------------------------------------------------------------------ admission
@dataclass(frozen=True, slots=True)
class PeerCred:
    """SO_PEERCRED of a client: process id, user id, group id."""

    pid: int
    uid: int
    gid: int


def allowed(cred: PeerCred, uidgid: UidGidConfig) -> bool:
    """uid 0 or gid 0, or a uid/gid listed in the ``uidgid`` configuration."""
    return (cred.uid == 0 or cred.gid == 0 or cred.uid in uidgid.uids
            or cred.gid in uidgid.gids)


def service_available(service: int, *, has_votequorum: bool, hooks: bool) -> bool:
    """Whether the daemon offers ``service`` (votequorum only with its provider)."""
    if service in (ipc.SERVICE_QUORUM, ipc.SERVICE_CMAP, ipc.SERVICE_CFG):
        return True
    if service == ipc.SERVICE_VOTEQUORUM:
        return has_votequorum
    if service == ipc.SERVICE_TESTHOOK:
        return hooks
    return False


def admit(service: int, cred: PeerCred, *, ready: bool, has_votequorum: bool, hooks: bool,
          uidgid: UidGidConfig) -> CsErr:
    """The HelloReply error for a connection (see the module's table)."""
    if not service_available(service, has_votequorum=has_votequorum, hooks=hooks):
        return CsErr.CS_ERR_LIBRARY
    if not ready:
        return CsErr.CS_ERR_TRY_AGAIN
    if not allowed(cred, uidgid):
        return CsErr.CS_ERR_ACCESS
    return CsErr.CS_OK


# ------------------------------------------------------------------ framing
@dataclass(frozen=True, slots=True)
class UnknownRequest:
    """A complete frame whose type byte this daemon does not know."""

    type_byte: int


class RequestFramer:
    """Cuts a client's byte stream into messages (``ipc.FrameReader`` plus unknown types).

    ``feed`` adds bytes; ``next_item`` returns one decoded message, an
    ``UnknownRequest``, a ``Malformed`` (after which the stream is ``broken`` and must
    be closed), or None when no complete frame is buffered.  Items are cut one at a
    time so that ``max_body`` may change between them (it grows after the hello).
    """

    def __init__(self, max_body: int = MAX_HELLO_BYTES) -> None:
        self._buf = bytearray()
        self.max_body = max_body
        self.broken = False

    def feed(self, data: bytes) -> None:
        """Add bytes received from the client."""
        if not self.broken:
            self._buf += data

    def next_item(self) -> object | None:
        """The next complete item, or None."""
        if self.broken or len(self._buf) < _LENGTH.size:
            return None
        (length,) = _LENGTH.unpack_from(self._buf)
        if length < 2 or length > self.max_body:
            self.broken = True
            self._buf.clear()
            reason = MalformedReason.TRUNCATED if length < 2 else MalformedReason.TOO_LARGE
            return Malformed(reason, f"frame length {length}")
        end = _LENGTH.size + length
        if len(self._buf) < end:
            return None
        body = bytes(self._buf[_LENGTH.size:end])
        del self._buf[:end]
        msg = ipc.decode_body(body)
        if isinstance(msg, Malformed):
            if msg.reason is MalformedReason.UNKNOWN_TYPE:
                return UnknownRequest(body[1])
            self.broken = True
            self._buf.clear()
        return msg

    def feed_all(self, data: bytes) -> list[object]:
        """``feed`` then every complete item (for tests and simple callers)."""
        self.feed(data)
        out = []
        while (item := self.next_item()) is not None:
            out.append(item)
        return out

    @property
    def pending(self) -> int:
        """Bytes held back (complete frames not yet taken, then an incomplete one)."""
        return len(self._buf)

    @property
    def ready(self) -> bool:
        """``next_item`` would return an item: a complete frame, or a length header that
        is already known to be bad (checked before the body is waited for)."""
        if self.broken or len(self._buf) < _LENGTH.size:
            return False
        length: int = _LENGTH.unpack_from(self._buf)[0]
        return length < 2 or length > self.max_body or len(self._buf) >= _LENGTH.size + length


def type_byte(msg: object) -> int:
    """The IPC type byte of a message object."""
    return ipc.IPC_TYPES.get(type(msg), 0)


# ------------------------------------------------------------------ requests -> commands
def to_command(msg: object) -> Command | None:
    """The engine command for a quorum/votequorum/cfg request, else None (cmap sets go
    through ``cmap_set_action``)."""
    if isinstance(msg, ipc.CfgReloadReq):
        return CfgReload()
    if isinstance(msg, ipc.QuorumGetQuorateReq):
        return QuorumGetQuorate()
    if isinstance(msg, ipc.QuorumTrackStartReq):
        return QuorumTrackStart(msg.flags)
    if isinstance(msg, ipc.QuorumTrackStopReq):
        return QuorumTrackStop()
    if isinstance(msg, ipc.QuorumGetTypeReq):
        return QuorumGetType(None)
    if isinstance(msg, ipc.QuorumModelGetTypeReq):
        return QuorumGetType(msg.model)
    if isinstance(msg, ipc.VqGetInfoReq):
        return VqGetInfo(msg.nodeid)
    if isinstance(msg, ipc.VqSetExpectedReq):
        return VqSetExpected(msg.expected_votes)
    if isinstance(msg, ipc.VqSetVotesReq):
        return VqSetVotes(msg.nodeid, msg.votes)
    if isinstance(msg, ipc.VqTrackStartReq):
        return VqTrackStart(msg.context, msg.flags)
    if isinstance(msg, ipc.VqTrackStopReq):
        return VqTrackStop()
    return _qdevice_command(msg)


def _qdevice_command(msg: object) -> Command | None:
    """The quorum-device requests (each answered with ``VqStatusRes``)."""
    if isinstance(msg, ipc.VqQdeviceRegisterReq):
        return VqQdeviceRegister(msg.name)
    if isinstance(msg, ipc.VqQdeviceUnregisterReq):
        return VqQdeviceUnregister(msg.name)
    if isinstance(msg, ipc.VqQdeviceUpdateReq):
        return VqQdeviceUpdate(msg.old_name, msg.new_name)
    if isinstance(msg, ipc.VqQdevicePollReq):
        return VqQdevicePoll(msg.name, msg.cast_vote, msg.ring)
    if isinstance(msg, ipc.VqQdeviceMasterWinsReq):
        return VqQdeviceMasterWins(msg.name, msg.allow)
    return None


CANCEL_WAIT_FOR_ALL_KEY: Final = "quorum.cancel_wait_for_all"
"""The only writable cmap key: a trigger, as in Corosync (which resets it to 0)."""
_U8_DIGITS: Final = 3


def parse_u8(text: str) -> int | None:
    """A cmap u8 value given as text: decimal digits only, 0..255; else None."""
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0")
    if len(digits) > _U8_DIGITS:  # bounds int() on long strings
        return None
    value = int(digits or "0")
    return value if value <= 0xFF else None


def cmap_set_action(msg: ipc.CmapSetReq, *, has_votequorum: bool) -> Command | CsErr:
    """What a cmap set does: an engine command (answered when the engine replies), or
    the error to answer at once (CS_OK: accepted, nothing to do).

    In this order: any key but ``quorum.cancel_wait_for_all`` -> CS_ERR_ACCESS (the cmap
    view is read-only; reload the configuration file instead); no votequorum provider
    -> CS_ERR_NOT_EXIST; a value that is not a u8 in decimal -> CS_ERR_INVALID_PARAM;
    0 -> CS_OK; 1..255 -> ``VqCancelWaitForAll`` (RECONFIGURE CANCEL_WFA to every node).
    """
    if msg.key != CANCEL_WAIT_FOR_ALL_KEY:
        return CsErr.CS_ERR_ACCESS
    if not has_votequorum:
        return CsErr.CS_ERR_NOT_EXIST
    value = parse_u8(msg.value)
    if value is None:
        return CsErr.CS_ERR_INVALID_PARAM
    if value == 0:
        return CsErr.CS_OK
    return VqCancelWaitForAll()


def invalid_model(msg: object) -> bool:
    """MODEL_GETTYPE with a model other than V0/V1 (Corosync answers INVALID_PARAM)."""
    return isinstance(msg, ipc.QuorumModelGetTypeReq) and msg.model not in (0, 1)


def error_response(msg: object, error: CsErr) -> object:
    """The response class of request ``msg`` carrying only ``error``."""
    if isinstance(msg, ipc.QuorumGetQuorateReq):
        return ipc.QuorumGetQuorateRes(int(error), 0)
    if isinstance(msg, ipc.QuorumGetTypeReq | ipc.QuorumModelGetTypeReq):
        return ipc.QuorumGetTypeRes(int(error), 0)
    if isinstance(msg, ipc.QuorumTrackStartReq | ipc.QuorumTrackStopReq):
        return ipc.QuorumStatusRes(int(error))
    if isinstance(msg, ipc.VqGetInfoReq):
        return _getinfo_res(error, None)
    if isinstance(msg, ipc.CmapGetPrefixReq):
        return ipc.CmapGetPrefixRes(int(error), ())
    if isinstance(msg, ipc.CmapSetReq):
        return ipc.CmapSetRes(int(error))
    if isinstance(msg, ipc.CfgReloadReq):
        return ipc.CfgReloadRes(int(error))
    return ipc.VqStatusRes(int(error))


def _getinfo_res(error: CsErr, info: VoteQuorumInfo | None) -> ipc.VqGetInfoRes:
    if info is None or error != CsErr.CS_OK:
        return ipc.VqGetInfoRes(int(error), 0, 0, 0, 0, 0, 0, 0, 0, 0, "")
    return ipc.VqGetInfoRes(
        int(error), info.node_id, info.node_state, info.node_votes, info.node_expected_votes,
        info.highest_expected, info.total_votes, info.quorum, int(info.flags),
        info.qdevice_votes, info.qdevice_name,
    )


def response_for(ev: Replied) -> object:
    """The IPC response for an engine ``Replied`` event."""
    cmd, err = ev.command, CsErr(ev.error)
    value = ev.value if isinstance(ev.value, int) else 0
    if isinstance(cmd, QuorumGetQuorate):
        return ipc.QuorumGetQuorateRes(int(err), value)
    if isinstance(cmd, QuorumGetType):
        return ipc.QuorumGetTypeRes(int(err), value)
    if isinstance(cmd, QuorumTrackStart | QuorumTrackStop):
        return ipc.QuorumStatusRes(int(err))
    if isinstance(cmd, VqGetInfo):
        info = ev.value if isinstance(ev.value, VoteQuorumInfo) else None
        return _getinfo_res(err, info)
    if isinstance(cmd, CfgReload):
        return ipc.CfgReloadRes(int(err))
    if isinstance(cmd, VqCancelWaitForAll):  # only a cmap set sends it
        return ipc.CmapSetRes(int(err))
    return ipc.VqStatusRes(int(err))


# ------------------------------------------------------------------ notifications -> events
Notification = (QuorumNotification | NodelistNotification | VqQuorumNotification
                | VqNodelistNotification | VqExpectedVotesNotification)


def event_for(note: Notification) -> object:
    """The IPC event message of an engine notification."""
    if isinstance(note, QuorumNotification):
        if note.model == QUORUM_MODEL_V1:
            return ipc.QuorumV1Event(int(note.quorate), note.ring, tuple(note.members))
        return ipc.QuorumV0Event(int(note.quorate), note.ring.seq, tuple(note.members))
    if isinstance(note, NodelistNotification):
        return ipc.NodelistV1Event(note.ring, tuple(note.members), tuple(note.joined),
                                   tuple(note.left))
    if isinstance(note, VqQuorumNotification):
        return ipc.VqQuorumEvent(note.context, int(note.quorate),
                                 tuple(ipc.VqNode(n, s) for n, s in note.nodes))
    if isinstance(note, VqNodelistNotification):
        return ipc.VqNodelistEvent(note.context, note.ring, tuple(note.members))
    return ipc.VqExpectedVotesEvent(note.context, note.expected_votes)
