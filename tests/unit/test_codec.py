"""pyquorum.wire.codec: round trips, limits, golden bytes, and decode never raising."""

from __future__ import annotations

import dataclasses
import struct
import types
import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyquorum.types import RingId
from pyquorum.wire.codec import (
    MAX_ITEMS,
    MAX_MESSAGE_BYTES,
    MAX_STR_BYTES,
    MAX_WIDE_ITEMS,
    EncodeError,
    Malformed,
    MalformedReason,
    decode,
    encode,
)
from pyquorum.wire.messages import (
    MESSAGE_TYPES,
    PAYLOAD_TAGS,
    WIRE_VERSION,
    CatchUp,
    Heartbeat,
    Install,
    NodeInfo,
    Ordered,
    OrderedNack,
    QdeviceRename,
)

MAXIMA = {"u8": 0xFF, "u16": 0xFFFF, "u32": 0xFFFF_FFFF, "u64": 0xFFFF_FFFF_FFFF_FFFF}
MESSAGE_CLASSES = sorted(MESSAGE_TYPES, key=lambda c: MESSAGE_TYPES[c])
NO_SURROGATES = st.characters(codec="utf-8")
RING_HINTS = [("rep", typing.Annotated[int, "u32"]), ("seq", typing.Annotated[int, "u64"])]


# ------------------------------------------------------- built from the annotations
def _hints(cls: type) -> list[tuple[str, Any]]:
    if cls is RingId:  # a plain dataclass in pyquorum.types: u32 rep, u64 seq on the wire
        return RING_HINTS
    hints = typing.get_type_hints(cls, include_extras=True)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def strategy(hint: Any, max_items: int = 4) -> st.SearchStrategy[Any]:
    """A Hypothesis strategy for any field type, favouring 0 and the maximum."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        marker = hint.__metadata__[0]
        if marker == "str":
            return st.text(NO_SURROGATES, max_size=40) | st.just("é" * (MAX_STR_BYTES // 2))
        top = MAXIMA[marker]
        return st.sampled_from([0, top]) | st.integers(0, top)
    if origin is tuple:
        item = strategy(typing.get_args(hint)[0], max_items)
        return st.lists(item, max_size=max_items).map(tuple)
    if _is_union(hint):
        return st.one_of([strategy(cls, max_items) for cls in typing.get_args(hint)])
    kwargs = {name: strategy(h, max_items) for name, h in _hints(hint)}
    return st.builds(hint, **kwargs)


MESSAGES = st.one_of([strategy(cls) for cls in MESSAGE_CLASSES])


def extreme(hint: Any, *, top: bool, items: int) -> Any:
    """Every int at 0 or its maximum, every tuple with ``items`` members."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        marker = hint.__metadata__[0]
        if marker == "str":
            return "€" * (MAX_STR_BYTES // 3) if top else ""
        return MAXIMA[marker] if top else 0
    if origin is tuple:
        return (extreme(typing.get_args(hint)[0], top=top, items=items),) * items
    if _is_union(hint):
        return extreme(NodeInfo, top=top, items=items)
    return hint(*(extreme(h, top=top, items=items) for _, h in _hints(hint)))


def _round_trip(msg: Any) -> bytes:
    data = encode(msg)
    assert decode(data) == msg
    assert encode(decode(data)) == data  # type: ignore[arg-type]
    return data


# ------------------------------------------------------------------- round trips
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(MESSAGES)
def test_every_message_round_trips(msg: Any) -> None:
    data = _round_trip(msg)
    assert data[:2] == bytes([WIRE_VERSION, MESSAGE_TYPES[type(msg)]])


@pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("top", [False, True], ids=["zeros", "maxima"])
def test_boundary_values_round_trip(cls: type, top: bool) -> None:
    _round_trip(extreme(cls, top=top, items=0))
    _round_trip(extreme(cls, top=top, items=MAX_ITEMS))


def test_unicode_and_longest_strings_round_trip() -> None:
    names = ["", "qdevice", "nœud-✓-節点", "🦀" * (MAX_STR_BYTES // 4), "x" * MAX_STR_BYTES]
    for old in names:
        for new in names:
            _round_trip(Ordered(1, RingId(1, 8), 2, 3, 4, QdeviceRename(old, new)))


def test_wide_tuples_allow_1024_items() -> None:
    info = NodeInfo(1, 1, 3, 0)
    catchup = CatchUp(RingId(1, 4), 1, 2, 7, info)
    _round_trip(Install(1, RingId(1, 8), (), (), (info,) * MAX_WIDE_ITEMS, ()))
    _round_trip(Install(1, RingId(1, 8), (), (), (), (catchup,) * MAX_WIDE_ITEMS))
    with pytest.raises(EncodeError):
        encode(Install(1, RingId(1, 8), (), (), (info,) * (MAX_WIDE_ITEMS + 1), ()))


def test_golden_heartbeat() -> None:
    msg = Heartbeat(sender=0x01020304, ring=RingId(1, 0x1122334455667788), state=1, seqno=9,
                    beat=0x0A0B, heard=(2, 7))
    golden = bytes.fromhex("01 01 01020304 00000001 1122334455667788 01 00000009"
                           " 0000000000000A0B 0002 00000002 00000007")
    assert encode(msg) == golden
    assert decode(golden) == msg


def test_layout_is_declaration_order_big_endian() -> None:
    data = encode(OrderedNack(sender=5, ring=RingId(2, 3), from_seqno=7))
    assert data == struct.pack(">BBIIQI", WIRE_VERSION, 7, 5, 2, 3, 7)
    data = encode(Ordered(1, RingId(1, 2), 3, 4, 5, QdeviceRename("a", "bc")))
    assert data[-8:] == b"\x03\x00\x01a\x00\x02bc"


# ------------------------------------------------------------------------ encode errors
@pytest.mark.parametrize(
    "msg",
    [
        Heartbeat(-1, RingId(1, 1), 0, 0),
        Heartbeat(1 << 32, RingId(1, 1), 0, 0),
        Heartbeat(1, RingId(1, 1 << 64), 0, 0),
        Heartbeat(1, RingId(1, 1), 256, 0),
        Heartbeat(1, (1, 1), 0, 0),  # type: ignore[arg-type]
        Heartbeat("1", RingId(1, 1), 0, 0),  # type: ignore[arg-type]
        OrderedNack(1, RingId(1, 1), 1.5),  # type: ignore[arg-type]
        Install(1, RingId(1, 1), (1,) * (MAX_ITEMS + 1), (), (), ()),
        Install(1, RingId(1, 1), (-1,), (), (), ()),
        Install(1, RingId(1, 1), (), (RingId(-1, 0),), (), ()),
        Install(1, RingId(1, 1), (), (), (NodeInfo(1, 1, 1, 1 << 32),), ()),
        Install(1, RingId(1, 1), (), (), ("x",), ()),  # type: ignore[arg-type]
        Install(1, RingId(1, 1), 5, (), (), ()),  # type: ignore[arg-type]
        Ordered(1, RingId(1, 1), 1, 1, 1, QdeviceRename("x" * (MAX_STR_BYTES + 1), "")),
        Ordered(1, RingId(1, 1), 1, 1, 1, QdeviceRename("\udc80", "")),
        Ordered(1, RingId(1, 1), 1, 1, 1, QdeviceRename(b"x", "")),  # type: ignore[arg-type]
        Ordered(1, RingId(1, 1), 1, 1, 1, RingId(1, 1)),  # type: ignore[arg-type]
    ],
)
def test_encode_rejects_values_that_do_not_fit(msg: Any) -> None:
    with pytest.raises(EncodeError) as info:
        encode(msg)
    assert isinstance(info.value, ValueError)


def test_encode_rejects_non_messages_and_oversized_messages() -> None:
    with pytest.raises(EncodeError):
        encode(RingId(1, 2))  # type: ignore[arg-type]
    long = QdeviceRename("x" * MAX_STR_BYTES, "y" * MAX_STR_BYTES)
    catchup = CatchUp(RingId(1, 1), 1, 1, 1, long)
    with pytest.raises(EncodeError, match="bytes >"):
        encode(Install(1, RingId(1, 1), (), (), (), (catchup,) * 40))


# ------------------------------------------------------------------------ decode errors
def _reason(data: bytes) -> MalformedReason:
    result = decode(data)
    assert isinstance(result, Malformed), result
    assert result.detail
    return result.reason


def test_decode_reports_each_malformation() -> None:
    nack = encode(OrderedNack(1, RingId(1, 1), 1))
    assert _reason(b"") is MalformedReason.TRUNCATED
    assert _reason(b"\x01") is MalformedReason.TRUNCATED
    assert _reason(b"\x02") is MalformedReason.BAD_VERSION
    assert _reason(b"\x09" + nack[1:]) is MalformedReason.BAD_VERSION
    assert _reason(b"\x01\x00") is MalformedReason.UNKNOWN_TYPE
    assert _reason(b"\x01\xff" + nack[2:]) is MalformedReason.UNKNOWN_TYPE
    assert _reason(nack[:-1]) is MalformedReason.TRUNCATED
    assert _reason(nack + b"\x00") is MalformedReason.TRAILING_BYTES
    assert _reason(b"\x01\x03" + bytes(MAX_MESSAGE_BYTES)) is MalformedReason.TOO_LARGE

    ordered = encode(Ordered(1, RingId(1, 1), 1, 1, 1, QdeviceRename("ab", "")))
    tag_at = len(ordered) - 1 - 4 - 2  # tag, "ab" with its length, empty string
    assert ordered[tag_at] == PAYLOAD_TAGS[QdeviceRename]
    bad_tag = ordered[:tag_at] + b"\x09" + ordered[tag_at + 1 :]
    assert _reason(bad_tag) is MalformedReason.BAD_TAG
    bad_utf8 = ordered[:-4] + b"\xff\xfe" + ordered[-2:]
    assert _reason(bad_utf8) is MalformedReason.BAD_STRING
    long_len = ordered[: tag_at + 1] + struct.pack(">H", MAX_STR_BYTES + 1) + ordered[-4:]
    assert _reason(long_len) is MalformedReason.BAD_STRING
    past_end = ordered[: tag_at + 1] + struct.pack(">H", 9) + b"ab"
    assert _reason(past_end) is MalformedReason.TRUNCATED


def test_decode_enforces_item_limits() -> None:
    empty = encode(Install(1, RingId(1, 1), (), (), (), ()))
    members_at = 2 + 4 + 12
    many = struct.pack(">H", MAX_ITEMS + 1) + bytes(4 * (MAX_ITEMS + 1))
    data = empty[:members_at] + many + empty[members_at + 2 :]
    assert _reason(data) is MalformedReason.TOO_MANY_ITEMS
    infos_at = members_at + 4
    wide = struct.pack(">H", MAX_WIDE_ITEMS + 1) + bytes(16 * (MAX_WIDE_ITEMS + 1))
    data = empty[:infos_at] + wide + empty[infos_at + 2 :]
    assert _reason(data) is MalformedReason.TOO_MANY_ITEMS
    claims_many = empty[:members_at] + struct.pack(">H", 300) + empty[members_at + 2 :]
    assert _reason(claims_many) is MalformedReason.TRUNCATED


# ---------------------------------------------------------------- decode never raises
def _never_raises(data: bytes) -> None:
    result = decode(data)
    assert isinstance(result, (Malformed, *MESSAGE_CLASSES))
    if not isinstance(result, Malformed):
        assert encode(result) == data  # a decodable datagram has exactly one encoding


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_decode_of_random_bytes_never_raises(data: bytes) -> None:
    _never_raises(data)


@settings(max_examples=500)
@given(st.sampled_from(sorted(MESSAGE_TYPES.values())), st.binary(max_size=300))
def test_decode_of_random_bodies_never_raises(msg_type: int, body: bytes) -> None:
    _never_raises(bytes([WIRE_VERSION, msg_type]) + body)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(MESSAGES)
def test_every_truncation_is_malformed(msg: Any) -> None:
    data = encode(msg)
    for cut in range(len(data)):
        assert isinstance(decode(data[:cut]), Malformed)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(MESSAGES, st.data())
def test_single_byte_mutations_never_raise(msg: Any, data: st.DataObject) -> None:
    raw = bytearray(encode(msg))
    for _ in range(20):
        pos = data.draw(st.integers(0, len(raw) - 1))
        mutated = raw.copy()
        mutated[pos] = data.draw(st.integers(0, 255))
        _never_raises(bytes(mutated))


def test_decode_accepts_bytearray_and_memoryview() -> None:
    msg = Heartbeat(1, RingId(1, 2), 0, 3)
    data = encode(msg)
    assert decode(bytearray(data)) == msg  # type: ignore[arg-type]
    assert decode(memoryview(data)) == msg  # type: ignore[arg-type]
    ordered = Ordered(1, RingId(1, 1), 1, 1, 1, QdeviceRename("ä", "b"))
    assert decode(memoryview(encode(ordered))) == ordered  # type: ignore[arg-type]
