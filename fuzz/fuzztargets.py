"""The five fuzz targets: one function per decoder, raising only when a contract breaks.

Each ``*_one(data)`` feeds one input to a decoder and checks its documented result;
any exception escaping it is a finding (atheris records it as a crash).  The harness
scripts (``fuzz_<target>.py``) import this module under ``atheris.instrument_imports``
so that ``pyquorum`` is instrumented; ``tests/fuzz/test_fuzz_harnesses.py`` runs the
same functions over the seeds without atheris.

========  ================================================================================
target    contract checked
========  ================================================================================
codec     ``codec.decode``: a ``Malformed`` with a reason and a detail, or a message whose
          encoding is exactly the input (the datagram after decryption)
sealed    ``SecureChannel.open`` (every mode, fresh or primed receiver, with or without a
          sender filter, with one key or both keys of a rotation): a ``Rejected``, or
          ``Opened`` only for a genuine datagram of the sender, under a key the receiver
          holds, not opened before (protected modes); then ``decode`` as above
ipc       ``decode_body``, ``FrameReader`` and ``RequestFramer`` fed the stream in chunks:
          the items equal a one-pass reference framer, ``Malformed`` is last and breaks the
          framer, buffers stay within one frame
config    ``parse_text`` (also ``uidgid_only``), ``resolve_uidgid``, ``build_config``:
          success or a ``ConfigError`` naming the file and one of its lines
qb        the libqb endpoint's decoders (``wire/qbmsg.py``), what a local C client sends:
          ``decode_connection_request`` gives a request or ``BadHandshake``;
          ``decode_request`` of each service gives a request of an id that service knows,
          or ``BadRequest`` / ``Disconnect`` / ``Unsupported``
========  ================================================================================
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

import fuzzseeds

from pyquorum.config import build_config, parse_text, resolve_uidgid
from pyquorum.daemon.ipcproto import (
    MAX_HELLO_BYTES,
    MAX_REQUEST_BYTES,
    RequestFramer,
    UnknownRequest,
)
from pyquorum.errors import ConfigError
from pyquorum.wire import qbmsg
from pyquorum.wire.codec import Malformed, MalformedReason, decode, encode
from pyquorum.wire.crypto import Opened, Rejected, RejectReason, SecureChannel
from pyquorum.wire.ipc import (
    IPC_TYPES,
    MAX_FRAME_BYTES,
    FrameReader,
    Hello,
    decode_body,
    encode_frame,
)
from pyquorum.wire.messages import MESSAGE_TYPES


class ContractBroken(AssertionError):
    """A decoder broke its documented contract (a finding)."""


def require(condition: bool, what: str) -> None:
    if not condition:
        raise ContractBroken(what)


# ------------------------------------------------------------------ codec
def check_malformed(result: object) -> None:
    if not isinstance(result, Malformed):
        raise ContractBroken(f"not Malformed: {result!r}")
    require(isinstance(result.reason, MalformedReason), f"bad reason {result.reason!r}")
    require(isinstance(result.detail, str) and bool(result.detail), "Malformed without detail")


def check_cluster(data: bytes) -> object:
    result = decode(data)
    if isinstance(result, Malformed):
        check_malformed(result)
        return result
    require(type(result) in MESSAGE_TYPES, f"decode returned {type(result).__name__}")
    again = encode(result)
    require(again == data, f"{data.hex()} decodes to {result!r}, which encodes to {again.hex()}")
    return result


def codec_one(data: bytes) -> None:
    check_cluster(data)


# ------------------------------------------------------------------ sealed datagrams
GENUINE: Final = fuzzseeds.sealed_datagrams()
PRIMERS: Final = {index: fuzzseeds.primer(index, GENUINE) for index, _ in GENUINE}
_UNPROTECTED: Final = fuzzseeds.MODES.index(("none", "none"))


def sealed_one(data: bytes) -> None:
    if not data:
        return
    index = (data[0] & 0x0F) % len(fuzzseeds.MODES)
    cipher, digest = fuzzseeds.MODES[index]
    allowed = frozenset({1, 3}) if data[0] & fuzzseeds.FLAG_ALLOWED else None
    receiver = SecureChannel(fuzzseeds.KEY, cipher, digest, *fuzzseeds.RECEIVER, allowed)
    keys = (0,)
    if data[0] & fuzzseeds.FLAG_SECOND_KEY:
        receiver.add_key(fuzzseeds.SECOND_KEY)
        keys = (0, 1)
    primed = bool(data[0] & fuzzseeds.FLAG_PRIME)
    if primed:
        require(isinstance(receiver.open(PRIMERS[index]), Opened), "the primer did not open")
    datagram = data[1:]
    result = receiver.open(datagram)
    if isinstance(result, Rejected):
        require(isinstance(result.reason, RejectReason) and bool(result.detail), "bad Rejected")
        return
    require(isinstance(result, Opened), f"open returned {type(result).__name__}")
    if index != _UNPROTECTED:
        plaintexts = [GENUINE[index, k].get(datagram) for k in keys]
        plaintext = next((p for p in plaintexts if p is not None), None)
        require(plaintext is not None, f"a forged datagram opened: {datagram.hex()}")
        require(not (primed and datagram == PRIMERS[index]), "a replayed datagram opened")
        require(result.plaintext == plaintext and result.sender == fuzzseeds.SENDER[0],
                "a genuine datagram opened to the wrong plaintext or sender")
    check_cluster(result.plaintext)


# ------------------------------------------------------------------ IPC framing
_HEADER: Final = 4


def check_body(body: bytes) -> object:
    result = decode_body(body)
    if isinstance(result, Malformed):
        check_malformed(result)
        return result
    require(type(result) in IPC_TYPES, f"decode_body returned {type(result).__name__}")
    again = encode_frame(result)[_HEADER:]
    require(again == body, f"{body.hex()} decodes to {result!r}, which encodes to {again.hex()}")
    return result


def reference_items(stream: bytes, *, server: bool) -> list[object]:
    """One pass over ``stream`` with FrameReader's rules, or RequestFramer's (``server``)."""
    items: list[object] = []
    limit = MAX_HELLO_BYTES if server else MAX_FRAME_BYTES
    off = 0
    while len(stream) - off >= _HEADER:
        (length,) = struct.unpack_from(">I", stream, off)
        if length < 2 or length > limit:
            reason = MalformedReason.TRUNCATED if length < 2 else MalformedReason.TOO_LARGE
            items.append(Malformed(reason, f"frame length {length}"))
            return items
        if len(stream) - off - _HEADER < length:
            return items
        body = stream[off + _HEADER : off + _HEADER + length]
        off += _HEADER + length
        msg = check_body(body)
        if isinstance(msg, Malformed):
            if server and msg.reason is MalformedReason.UNKNOWN_TYPE:
                items.append(UnknownRequest(body[1]))
                continue
            items.append(msg)
            return items
        items.append(msg)
        if server and isinstance(msg, Hello) and len(items) == 1:
            limit = MAX_REQUEST_BYTES
    return items


def _reader_items(chunks: list[bytes]) -> list[object]:
    reader = FrameReader()
    items: list[object] = []
    for chunk in chunks:
        was_broken = reader.broken
        got = reader.feed(chunk)
        require(not (was_broken and got), "a broken FrameReader returned items")
        require(all(not isinstance(x, Malformed) for x in got[:-1]), "items after a Malformed")
        require(not got or not isinstance(got[-1], Malformed) or reader.broken,
                "Malformed without breaking")
        require(reader.pending <= _HEADER + MAX_FRAME_BYTES, f"holds {reader.pending} bytes")
        require(not reader.broken or reader.pending == 0, "a broken FrameReader holds bytes")
        items.extend(got)
    return items


def _framer_items(chunks: list[bytes]) -> list[object]:
    framer = RequestFramer()
    items: list[object] = []
    for chunk in chunks:
        was_broken = framer.broken
        framer.feed(chunk)
        got: list[object] = []
        for _ in range(len(chunk) // 6 + 2):  # a frame takes at least 6 bytes: bounded
            item = framer.next_item()
            if item is None:
                break
            require(not got or not isinstance(got[-1], Malformed), "items after a Malformed")
            got.append(item)
            if isinstance(item, Hello) and not items and len(got) == 1:
                framer.max_body = MAX_REQUEST_BYTES
        else:
            require(framer.next_item() is None, "more frames than bytes")
        require(not (was_broken and got), "a broken RequestFramer returned items")
        if framer.broken:
            require(framer.pending == 0, "a broken RequestFramer holds bytes")
        else:
            require(framer.pending < _HEADER + framer.max_body, f"holds {framer.pending} bytes")
        items.extend(got)
    for item in items:
        if isinstance(item, UnknownRequest):
            require(item.type_byte not in IPC_TYPES.values(), "a known type was unknown")
    return items


def ipc_one(data: bytes) -> None:
    if not data:
        return
    selector, stream = data[0], data[1:]
    size = selector % 64 + 1 if selector < 0xC0 else max(1, len(stream))
    chunks = [stream[i : i + size] for i in range(0, len(stream), size)] or [b""]
    if len(stream) >= _HEADER:
        check_body(stream[_HEADER:])
    want = reference_items(stream, server=False)
    require(_reader_items(chunks) == want, "FrameReader differs from the reference")
    want = reference_items(stream, server=True)
    require(_framer_items(chunks) == want, "RequestFramer differs from the reference")


# ------------------------------------------------------------------ configuration
NAME: Final = "fuzz.conf"


def _check_error(err: ConfigError, text: str) -> None:
    lines = max(1, text.count("\n") + 1)
    require(err.file == NAME, f"error names {err.file!r}")
    require(isinstance(err.line, int) and 1 <= err.line <= lines,
            f"error without a line of the file ({err.line}, {lines} lines): {err}")
    require(bool(err.message) and str(err) == f"{NAME}:{err.line}: {err.message}",
            f"badly formed error {err}")


def check_config(text: str, *, uidgid_only: bool) -> None:
    try:
        parsed = parse_text(text, NAME, uidgid_only=uidgid_only)
        lines = text.count("\n") + 1
        require(all(key and 1 <= line <= lines for key, _, line in parsed.keys), "bad key line")
        parsed = resolve_uidgid(parsed)
        if not uidgid_only:
            config = build_config(parsed)
            ids = [n.nodeid for n in config.nodes]
            require(len(ids) == len(set(ids)) and 0 not in ids, f"bad node ids {ids}")
    except ConfigError as err:
        _check_error(err, text)


def config_one(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")  # as load_config reads a file
    check_config(text, uidgid_only=False)
    check_config(text, uidgid_only=True)


# ------------------------------------------------------------------ libqb endpoint
QB_SERVICES: Final = ("quorum", "votequorum", "cmap", "cfg")
"""Selector byte % 5: one of these services, or (4) the connection handshake."""


def qb_one(data: bytes) -> None:
    if not data:
        return
    selector, datagram = data[0] % 5, data[1:]
    if selector == 4:
        hs = qbmsg.decode_connection_request(datagram)
        require(isinstance(hs, qbmsg.ConnectionRequest | qbmsg.BadHandshake),
                f"handshake decoded to {type(hs).__name__}")
        return
    service = QB_SERVICES[selector]
    req = qbmsg.decode_request(service, datagram)
    if isinstance(req, qbmsg.BadRequest | qbmsg.Disconnect | qbmsg.Unsupported):
        return
    require(type(req).__module__ in ("pyquorum.wire.ipc", "pyquorum.wire.qbmsg"),
            f"{service} request decoded to {type(req).__name__}")
    msg_id = struct.unpack_from("=i", datagram)[0]
    require((service, msg_id) in qbmsg.RESPONSE_IDS, f"{service} accepted unknown id {msg_id}")
    require(qbmsg.request_id_of(service, req) == msg_id,
            f"{service} id {msg_id} decoded as {type(req).__name__}")


TARGETS: Final[dict[str, Callable[[bytes], None]]] = {
    "codec": codec_one,
    "sealed": sealed_one,
    "ipc": ipc_one,
    "config": config_one,
    "qb": qb_one,
}
