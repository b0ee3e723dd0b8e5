"""Binary codec for node-to-node messages (``pyquorum.wire.messages``).

Theory of operation
-------------------
The layout of every message is derived once, at import time, from the field
annotations of its dataclass.  Each annotation compiles to a *shape*:

=================  ==========================================================
annotation         bytes on the wire (big-endian)
=================  ==========================================================
``U8..U64``        the unsigned integer
``RingId``         u32 rep, u64 seq
dataclass          its fields in declaration order, inline
``tuple[T, ...]``  u16 count, then the items
``Str``            u16 length, then that many bytes of UTF-8
``OrderedPayload`` u8 tag (``PAYLOAD_TAGS``), then the payload's fields
=================  ==========================================================

A datagram is ``u8 WIRE_VERSION, u8 MsgType`` followed by the message's fields.
Consecutive fixed-width fields are merged into one precompiled ``struct.Struct``
so that a heartbeat is one ``pack`` / ``unpack_from`` call.

``decode`` never raises on bytes from the network: every failure is returned as
a ``Malformed`` value naming the reason.  ``encode`` raises ``EncodeError`` (a
``ValueError``: the local caller built a message that cannot be sent).

Limits: a tuple holds at most ``MAX_ITEMS`` (384, Corosync's
``PROCESSOR_COUNT_MAX``) items, or ``MAX_WIDE_ITEMS`` (1024) when its items are
``NodeInfo`` or ``CatchUp``; a string is at most ``MAX_STR_BYTES`` bytes of valid
UTF-8; a message is at most ``MAX_MESSAGE_BYTES``, which leaves room for the
crypto header and tag inside one UDP datagram (65507 bytes).
"""

from __future__ import annotations

import struct
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from enum import Enum
from operator import attrgetter
from typing import Any, Final

from pyquorum.types import RingId
from pyquorum.wire.messages import (
    MESSAGE_TYPES,
    PAYLOAD_TAGS,
    WIRE_VERSION,
    CatchUp,
    ClusterMessage,
    NodeInfo,
)

__all__ = [
    "MAX_DATAGRAM_BYTES",
    "MAX_ITEMS",
    "MAX_MESSAGE_BYTES",
    "MAX_STR_BYTES",
    "MAX_WIDE_ITEMS",
    "EncodeError",
    "Malformed",
    "MalformedReason",
    "MessageCodec",
    "decode",
    "encode",
]

MAX_DATAGRAM_BYTES: Final = 65_507
"""The largest UDP payload over IPv4."""
MAX_MESSAGE_BYTES: Final = MAX_DATAGRAM_BYTES - 128
"""The largest encoded message: 128 bytes stay free for the crypto header and tag."""
MAX_ITEMS: Final = 384
"""Items in a tuple field (Corosync's ``PROCESSOR_COUNT_MAX``)."""
MAX_WIDE_ITEMS: Final = 1024
"""Items in a tuple of ``NodeInfo`` or ``CatchUp`` (a member and its qdevice; logs)."""
MAX_STR_BYTES: Final = 1024
"""Bytes of UTF-8 in a string field."""

_WIDE_ITEM_TYPES: Final = frozenset({NodeInfo, CatchUp})
_INT_FORMATS: Final = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q"}
_U8: Final = struct.Struct(">B")
_U16: Final = struct.Struct(">H")
_HEADER: Final = struct.Struct(">BB")


class MalformedReason(Enum):
    """Why a datagram could not be decoded (the remote peer's fault)."""

    TRUNCATED = "truncated"
    TOO_LARGE = "too large"
    BAD_VERSION = "bad version"
    UNKNOWN_TYPE = "unknown type"
    BAD_TAG = "bad tag"
    TRAILING_BYTES = "trailing bytes"
    TOO_MANY_ITEMS = "too many items"
    BAD_STRING = "bad string"
    BAD_VALUE = "bad value"  # a message constructor refused the decoded values


@dataclass(frozen=True, slots=True)
class Malformed:
    """A datagram that is not a valid message; ``detail`` is for the log."""

    reason: MalformedReason
    detail: str


class EncodeError(ValueError):
    """A message cannot be encoded: a value is out of range or of the wrong type (local misuse)."""


class _Bad(Exception):
    """Internal: raised while decoding, turned into ``Malformed`` by ``decode``."""

    def __init__(self, reason: MalformedReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# ------------------------------------------------------------------------------ shapes
# Every shape decodes from (buf, offset) and encodes by appending bytes to a list.
# A fixed-width shape also has a struct format, the dotted attribute paths of its
# ints (``ring.rep``) so that one ``attrgetter`` flattens it, and ``build`` to
# rebuild it from unpacked ints; runs of fixed-width fields share one Struct.

_Getter = Callable[[Any], tuple[Any, ...]]


def _getter(paths: list[str]) -> _Getter:
    if len(paths) == 1:
        get = attrgetter(paths[0])
        return lambda v: (get(v),)
    return attrgetter(*paths)


class _Shape:
    fmt: str | None = None  # struct format (no byte order) when fixed-width
    nslots = 0  # ints the fixed format holds
    name = "?"

    def decode(self, buf: bytes, off: int) -> tuple[Any, int]:
        raise NotImplementedError

    def encode(self, value: Any, out: list[bytes]) -> None:
        raise NotImplementedError

    def paths(self, prefix: str) -> list[str]:
        raise NotImplementedError

    def build(self, vals: tuple[Any, ...], i: int) -> tuple[Any, int]:
        raise NotImplementedError


class _Int(_Shape):
    nslots = 1

    def __init__(self, width: str) -> None:
        self.fmt = _INT_FORMATS[width]
        self.name = width

    def paths(self, prefix: str) -> list[str]:
        return [prefix]

    def build(self, vals: tuple[Any, ...], i: int) -> tuple[Any, int]:
        return vals[i], i + 1


class _Str(_Shape):
    name = "str"

    def decode(self, buf: bytes, off: int) -> tuple[Any, int]:
        (n,) = _U16.unpack_from(buf, off)
        off += 2
        if n > MAX_STR_BYTES:
            raise _Bad(MalformedReason.BAD_STRING, f"string of {n} bytes > {MAX_STR_BYTES}")
        end = off + n
        if end > len(buf):
            raise _Bad(MalformedReason.TRUNCATED, f"string of {n} bytes cut short")
        try:
            return bytes(buf[off:end]).decode("utf-8"), end
        except UnicodeDecodeError as exc:
            raise _Bad(MalformedReason.BAD_STRING, f"invalid UTF-8: {exc}") from None

    def encode(self, value: Any, out: list[bytes]) -> None:
        if not isinstance(value, str):
            raise EncodeError(f"expected str, got {type(value).__name__}")
        try:
            raw = value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise EncodeError(f"string is not encodable as UTF-8: {exc}") from None
        if len(raw) > MAX_STR_BYTES:
            raise EncodeError(f"string of {len(raw)} bytes > {MAX_STR_BYTES}")
        out.append(_U16.pack(len(raw)))
        out.append(raw)


class _Tuple(_Shape):
    def __init__(self, item: _Shape, max_items: int) -> None:
        self.item = item
        self.max_items = max_items
        self.name = f"tuple[{item.name}]"
        self.item_struct = struct.Struct(">" + item.fmt) if item.fmt is not None else None
        fixed_record = isinstance(item, _Record) and item.fmt is not None
        self.item_flat = _getter(item.paths("")) if fixed_record else None

    def decode(self, buf: bytes, off: int) -> tuple[Any, int]:
        (n,) = _U16.unpack_from(buf, off)
        off += 2
        if n > self.max_items:
            raise _Bad(MalformedReason.TOO_MANY_ITEMS, f"{self.name}: {n} > {self.max_items}")
        st = self.item_struct
        if st is None:
            items = []
            for _ in range(n):
                item, off = self.item.decode(buf, off)
                items.append(item)
            return tuple(items), off
        end = off + n * st.size
        if end > len(buf):
            raise _Bad(MalformedReason.TRUNCATED, f"{self.name}: {n} items cut short")
        if self.item_flat is None:  # ints
            return struct.unpack_from(f">{n}{self.item.fmt}", buf, off), end
        build = self.item.build
        return tuple(build(v, 0)[0] for v in st.iter_unpack(buf[off:end])), end

    def encode(self, value: Any, out: list[bytes]) -> None:
        if not isinstance(value, tuple | list):
            raise EncodeError(f"{self.name}: expected a tuple, got {type(value).__name__}")
        n = len(value)
        if n > self.max_items:
            raise EncodeError(f"{self.name}: {n} items > {self.max_items}")
        out.append(_U16.pack(n))
        st, flat = self.item_struct, self.item_flat
        if st is None:
            for item in value:
                self.item.encode(item, out)
        elif flat is None:
            out.append(_pack(f">{n}{self.item.fmt}", self.name, tuple(value)))
        else:
            out.extend(_pack(st, self.name, _flat(flat, item, self.item.name)) for item in value)


@dataclass(frozen=True, slots=True)
class _Step:
    """Part of a record: a run of fixed-width fields (one Struct) or one variable field."""

    struct: struct.Struct | None  # None: the single variable-width field ``name``
    name: str
    shapes: tuple[_Shape, ...]
    flat: _Getter  # the run's ints, by dotted attribute paths from the record
    ints: bool  # every field of the run is an int: unpacked values pass straight through


class _Record(_Shape):
    """A dataclass (or ``RingId``): its fields in order, fixed runs merged into Structs."""

    def __init__(self, cls: type, field_shapes: list[tuple[str, _Shape]]) -> None:
        self.cls = cls
        self.name = cls.__name__
        self.fields = field_shapes
        steps: list[_Step] = []
        i = 0
        while i < len(field_shapes):
            j = i
            while j < len(field_shapes) and field_shapes[j][1].fmt is not None:
                j += 1
            if j == i:  # a variable-width field
                name, shape = field_shapes[i]
                steps.append(_Step(None, name, (shape,), attrgetter(name), False))
                i += 1
                continue
            run = field_shapes[i:j]
            shapes = tuple(s for _, s in run)
            fmt = ">" + "".join(s.fmt or "" for s in shapes)
            paths = [p for n, s in run for p in s.paths(n)]
            ints = all(isinstance(s, _Int) for s in shapes)
            steps.append(_Step(struct.Struct(fmt), run[0][0], shapes, _getter(paths), ints))
            i = j
        self.steps = tuple(steps)
        self.all_ints = False
        if len(steps) == 1 and steps[0].struct is not None:
            self.fmt = steps[0].struct.format[1:]
            self.nslots = len(self.paths(""))
            self.all_ints = steps[0].ints

    def paths(self, prefix: str) -> list[str]:
        dot = prefix + "." if prefix else ""
        return [p for n, s in self.fields for p in s.paths(dot + n)]

    def decode(self, buf: bytes, off: int) -> tuple[Any, int]:
        values: list[Any] = []
        for step in self.steps:
            st = step.struct
            if st is None:
                value, off = step.shapes[0].decode(buf, off)
                values.append(value)
                continue
            vals = st.unpack_from(buf, off)
            off += st.size
            if step.ints:
                values.extend(vals)
                continue
            k = 0
            for shape in step.shapes:
                value, k = shape.build(vals, k)
                values.append(value)
        return self.cls(*values), off

    def encode(self, value: Any, out: list[bytes]) -> None:
        if not isinstance(value, self.cls):
            raise EncodeError(f"expected {self.name}, got {type(value).__name__}")
        for step in self.steps:
            if step.struct is None:
                step.shapes[0].encode(step.flat(value), out)
            else:
                out.append(_pack(step.struct, self.name, _flat(step.flat, value, self.name)))

    def build(self, vals: tuple[Any, ...], i: int) -> tuple[Any, int]:
        if self.all_ints:
            return self.cls(*vals[i : i + self.nslots]), i + self.nslots
        values: list[Any] = []
        for _, shape in self.fields:
            value, i = shape.build(vals, i)
            values.append(value)
        return self.cls(*values), i


class _Payload(_Shape):
    name = "OrderedPayload"

    def __init__(self, by_tag: Mapping[int, _Record], by_type: Mapping[type, tuple[int, _Record]]):
        self.by_tag = by_tag
        self.by_type = by_type

    def decode(self, buf: bytes, off: int) -> tuple[Any, int]:
        (tag,) = _U8.unpack_from(buf, off)
        record = self.by_tag.get(tag)
        if record is None:
            raise _Bad(MalformedReason.BAD_TAG, f"unknown payload tag {tag}")
        return record.decode(buf, off + 1)

    def encode(self, value: Any, out: list[bytes]) -> None:
        entry = self.by_type.get(type(value))
        if entry is None:
            raise EncodeError(f"not an ordered payload: {type(value).__name__}")
        out.append(_U8.pack(entry[0]))
        entry[1].encode(value, out)


def _flat(getter: _Getter, value: Any, where: str) -> tuple[Any, ...]:
    try:
        return getter(value)
    except AttributeError as exc:
        raise EncodeError(f"{where}: a nested value has the wrong type: {exc}") from None


def _pack(st: struct.Struct | str, where: str, values: tuple[Any, ...]) -> bytes:
    try:
        return st.pack(*values) if isinstance(st, struct.Struct) else struct.pack(st, *values)
    except struct.error as exc:
        raise EncodeError(f"{where}: value out of range or not an int: {exc}") from None


# ------------------------------------------------------------------------ compilation
class _Compiler:
    """Turns annotations into shapes; used once, at import time."""

    def __init__(self) -> None:
        self.records: dict[type, _Record] = {}
        self.payload: _Payload | None = None

    def record(self, cls: type) -> _Record:
        if cls not in self.records:
            if cls is RingId:
                shapes: list[tuple[str, _Shape]] = [("rep", _Int("u32")), ("seq", _Int("u64"))]
            else:
                if not is_dataclass(cls):
                    raise TypeError(f"wire: cannot encode {cls!r}")
                hints = typing.get_type_hints(cls, include_extras=True)
                shapes = [(f.name, self.shape(hints[f.name])) for f in fields(cls)]
            self.records[cls] = _Record(cls, shapes)
        return self.records[cls]

    def shape(self, hint: Any) -> _Shape:
        origin = typing.get_origin(hint)
        if origin is typing.Annotated:
            marker = hint.__metadata__[0]
            if marker == "str":
                return _Str()
            if marker not in _INT_FORMATS:
                raise TypeError(f"wire: unknown width marker {marker!r}")
            return _Int(marker)
        if origin is tuple:
            item_type, *rest = typing.get_args(hint)
            if rest != [Ellipsis]:
                raise TypeError(f"wire: only tuple[T, ...] is supported, not {hint!r}")
            wide = item_type in _WIDE_ITEM_TYPES
            return _Tuple(self.shape(item_type), MAX_WIDE_ITEMS if wide else MAX_ITEMS)
        if origin in (typing.Union, types.UnionType):
            if set(typing.get_args(hint)) != set(PAYLOAD_TAGS):
                raise TypeError(f"wire: the only union is OrderedPayload, not {hint!r}")
            return self.payload_shape()
        if not isinstance(hint, type):
            raise TypeError(f"wire: cannot encode {hint!r}")
        return self.record(hint)

    def payload_shape(self) -> _Payload:
        if self.payload is None:
            by_tag = {tag: self.record(cls) for cls, tag in PAYLOAD_TAGS.items()}
            by_type = {cls: (tag, by_tag[tag]) for cls, tag in PAYLOAD_TAGS.items()}
            self.payload = _Payload(types.MappingProxyType(by_tag), types.MappingProxyType(by_type))
        return self.payload


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one message class goes on the wire."""

    type_byte: int
    record: _Record
    fixed: struct.Struct | None  # header + all fields, when the message is fixed-width
    flat: _Getter | None  # all the ints of a fixed-width message


class MessageCodec:
    """Encoder/decoder for one family of messages: ``u8 version, u8 type`` then fields.

    The cluster datagrams use one instance; the IPC frames (``pyquorum.wire.ipc``)
    another, with their own type table, version and size limit.
    """

    def __init__(self, message_types: Mapping[type, int], version: int, max_bytes: int) -> None:
        compiler = _Compiler()
        by_class: dict[type, _Plan] = {}
        for cls, msg_type in message_types.items():
            record = compiler.record(cls)
            if record.fmt is None:
                by_class[cls] = _Plan(int(msg_type), record, None, None)
            else:
                fixed = struct.Struct(">BB" + record.fmt)
                by_class[cls] = _Plan(int(msg_type), record, fixed, _getter(record.paths("")))
        self._by_class: Mapping[type, _Plan] = types.MappingProxyType(by_class)
        self._by_type: Mapping[int, _Plan] = types.MappingProxyType(
            {plan.type_byte: plan for plan in by_class.values()})
        self.version = version
        self.max_bytes = max_bytes

    def encode(self, msg: Any) -> bytes:
        """Encode one message; raises ``EncodeError`` on local misuse."""
        plan = self._by_class.get(type(msg))
        if plan is None:
            raise EncodeError(f"not a message of this codec: {type(msg).__name__}")
        record = plan.record
        if plan.fixed is not None and plan.flat is not None:
            try:
                return plan.fixed.pack(self.version, plan.type_byte, *plan.flat(msg))
            except (struct.error, AttributeError) as exc:
                raise EncodeError(
                    f"{record.name}: a value is out of range or of the wrong type: {exc}"
                ) from None
        out = [_HEADER.pack(self.version, plan.type_byte)]
        record.encode(msg, out)
        data = b"".join(out)
        if len(data) > self.max_bytes:
            raise EncodeError(f"{record.name} encodes to {len(data)} bytes > {self.max_bytes}")
        return data

    def decode(self, data: bytes) -> Any:
        """Decode one message; never raises: anything invalid comes back as ``Malformed``."""
        size = len(data)
        if size < 2:
            if size == 1 and data[0] != self.version:
                return Malformed(MalformedReason.BAD_VERSION, f"wire version {data[0]}")
            return Malformed(MalformedReason.TRUNCATED, f"{size} bytes, no header")
        if data[0] != self.version:
            return Malformed(MalformedReason.BAD_VERSION, f"wire version {data[0]}")
        if size > self.max_bytes:
            return Malformed(MalformedReason.TOO_LARGE, f"{size} bytes > {self.max_bytes}")
        plan = self._by_type.get(data[1])
        if plan is None:
            return Malformed(MalformedReason.UNKNOWN_TYPE, f"message type {data[1]}")
        record = plan.record
        try:
            fixed = plan.fixed
            if fixed is not None:
                if size != fixed.size:
                    short = size < fixed.size
                    reason = MalformedReason.TRUNCATED if short else MalformedReason.TRAILING_BYTES
                    return Malformed(reason, f"{record.name}: {size} bytes, expected {fixed.size}")
                return record.build(fixed.unpack_from(data), 2)[0]
            msg, off = record.decode(data, 2)
        except _Bad as exc:
            return Malformed(exc.reason, f"{record.name}: {exc.detail}")
        except struct.error:
            return Malformed(MalformedReason.TRUNCATED, f"{record.name}: cut short")
        except (ValueError, TypeError) as exc:  # a message constructor refused the values
            return Malformed(MalformedReason.BAD_VALUE, f"{record.name}: {exc}")
        if off != size:
            return Malformed(MalformedReason.TRAILING_BYTES,
                             f"{record.name}: {size - off} extra bytes")
        return msg


_CLUSTER: Final = MessageCodec(MESSAGE_TYPES, WIRE_VERSION, MAX_MESSAGE_BYTES)


# -------------------------------------------------------------------------------- API
def encode(msg: ClusterMessage) -> bytes:
    """Encode a cluster message to bytes.

    Raises ``EncodeError`` (a ``ValueError``) when a value does not fit its field,
    a tuple or string is too long, or the message exceeds ``MAX_MESSAGE_BYTES``.
    """
    if type(msg) not in MESSAGE_TYPES:
        raise EncodeError(f"not a cluster message: {type(msg).__name__}")
    return _CLUSTER.encode(msg)


def decode(data: bytes) -> ClusterMessage | Malformed:
    """Decode one datagram; never raises: anything invalid comes back as ``Malformed``."""
    return typing.cast("ClusterMessage | Malformed", _CLUSTER.decode(data))
