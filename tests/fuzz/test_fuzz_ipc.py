"""Fuzz tier, IPC: ``decode_body``, ``FrameReader`` and ``RequestFramer`` on hostile streams.

Every stream is cut into arbitrary chunks and fed to both framers; the items they
return must equal those of a one-pass reference framer written here (so chunking never
changes the result), their buffers must stay within one frame, and a ``Malformed`` must
be the last item, leaving the framer broken for good.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from fuzz_strategies import IPC_CLASSES, IPC_MESSAGES, mutated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyquorum.daemon.ipcproto import (
    MAX_HELLO_BYTES,
    MAX_REQUEST_BYTES,
    RequestFramer,
    UnknownRequest,
)
from pyquorum.wire.codec import Malformed, MalformedReason
from pyquorum.wire.ipc import (
    IPC_TYPES,
    IPC_VERSION,
    MAX_FRAME_BYTES,
    FrameReader,
    Hello,
    decode_body,
    encode_frame,
)

HEADER: Final = 4
SLOW_OK = settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
LENGTHS: Final = [0, 1, 2, 3, MAX_HELLO_BYTES, MAX_HELLO_BYTES + 1, MAX_REQUEST_BYTES,
                  MAX_REQUEST_BYTES + 1, MAX_FRAME_BYTES, MAX_FRAME_BYTES + 1, 2**32 - 1]


def check_body(body: bytes) -> object:
    """decode_body's contract: Malformed with a reason, or a message encoding to ``body``."""
    result = decode_body(body)
    if isinstance(result, Malformed):
        assert isinstance(result.reason, MalformedReason) and result.detail
        return result
    assert type(result) in IPC_TYPES, type(result)
    assert encode_frame(result) == struct.pack(">I", len(body)) + body
    assert decode_body(encode_frame(result)[HEADER:]) == result
    return result


# ------------------------------------------------------------------ reference framers
def reference(stream: bytes, *, server: bool) -> list[object]:
    """The items of ``stream`` read in one pass.  ``server``: RequestFramer's rules (limit
    MAX_HELLO_BYTES until a Hello, then MAX_REQUEST_BYTES; unknown types are skipped as
    UnknownRequest); otherwise FrameReader's (limit MAX_FRAME_BYTES, unknown = Malformed)."""
    items: list[object] = []
    limit = MAX_HELLO_BYTES if server else MAX_FRAME_BYTES
    off = 0
    while len(stream) - off >= HEADER:
        (length,) = struct.unpack_from(">I", stream, off)
        if length < 2 or length > limit:
            reason = MalformedReason.TRUNCATED if length < 2 else MalformedReason.TOO_LARGE
            items.append(Malformed(reason, f"frame length {length}"))
            return items
        if len(stream) - off - HEADER < length:
            return items
        body = stream[off + HEADER : off + HEADER + length]
        off += HEADER + length
        msg = decode_body(body)
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


def feed_reader(chunks: list[bytes]) -> list[object]:
    reader = FrameReader()
    items: list[object] = []
    for chunk in chunks:
        was_broken = reader.broken
        got = reader.feed(chunk)
        assert all(not isinstance(x, Malformed) for x in got[:-1])
        if was_broken:
            assert got == []
        if got and isinstance(got[-1], Malformed):
            assert reader.broken
        assert reader.pending <= HEADER + MAX_FRAME_BYTES
        if reader.broken:
            assert reader.pending == 0  # nothing is kept once the stream is abandoned
        items.extend(got)
    return items


def feed_framer(chunks: list[bytes]) -> list[object]:
    """As the daemon does: feed, cut items, raise the limit after the hello."""
    framer = RequestFramer()
    items: list[object] = []
    for chunk in chunks:
        was_broken = framer.broken
        got = []
        framer.feed(chunk)
        while (item := framer.next_item()) is not None:
            assert not got or not isinstance(got[-1], Malformed)
            got.append(item)
            if isinstance(item, Hello) and not items and len(got) == 1:
                framer.max_body = MAX_REQUEST_BYTES
        if was_broken:
            assert got == []
        if framer.broken:
            assert framer.pending == 0
        else:
            assert framer.pending < HEADER + framer.max_body
        items.extend(got)
    for item in items:
        if isinstance(item, UnknownRequest):
            assert item.type_byte not in IPC_TYPES.values()
    return items


def rechunk(stream: bytes, sizes: list[int]) -> list[bytes]:
    chunks, off = [], 0
    for size in sizes:
        chunks.append(stream[off : off + size])
        off += size
    chunks.append(stream[off:])
    return chunks


def check_stream(stream: bytes, sizes: list[int]) -> None:
    chunks = rechunk(stream, sizes)
    assert feed_reader(chunks) == reference(stream, server=False)
    assert feed_framer(chunks) == reference(stream, server=True)


# ------------------------------------------------------------------ strategies
def _frame_piece(msg: Any) -> st.SearchStrategy[bytes]:
    frame = encode_frame(msg)
    return st.just(frame) | mutated(frame) | mutated(frame[HEADER:]).map(
        lambda body: struct.pack(">I", len(body)) + body
    )


PIECE: Final = st.one_of(
    IPC_MESSAGES.flatmap(_frame_piece),
    st.binary(max_size=40),
    st.tuples(st.sampled_from(LENGTHS), st.binary(max_size=16)).map(
        lambda t: struct.pack(">I", t[0]) + t[1]
    ),
    st.tuples(st.integers(0, 255), st.binary(max_size=24)).map(  # a body of an unknown type
        lambda t: struct.pack(">IBB", len(t[1]) + 2, IPC_VERSION, t[0]) + t[1]
    ),
)
HELLO: Final = encode_frame(Hello(3))
STREAMS: Final = st.tuples(st.booleans(), st.lists(PIECE, max_size=6)).map(
    lambda t: (HELLO if t[0] else b"") + b"".join(t[1])
)
SIZES: Final = st.lists(st.integers(0, 64), max_size=12)


# ------------------------------------------------------------------ (a) arbitrary bytes
@settings(max_examples=300)
@given(st.binary(max_size=2048))
def test_decode_body_of_arbitrary_bytes(data: bytes) -> None:
    check_body(data)


@settings(max_examples=300)
@given(st.sampled_from(sorted(IPC_TYPES.values())), st.binary(max_size=512))
def test_decode_body_of_arbitrary_fields_behind_a_valid_header(type_byte: int, rest: bytes) -> None:
    check_body(bytes([IPC_VERSION, type_byte]) + rest)


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=64), max_size=12))
def test_framers_on_arbitrary_chunks(chunks: list[bytes]) -> None:
    stream = b"".join(chunks)
    assert feed_reader(chunks) == reference(stream, server=False)
    assert feed_framer(chunks) == reference(stream, server=True)


# ------------------------------------------------------------------ (b) mutations
@SLOW_OK
@given(IPC_MESSAGES.flatmap(lambda m: st.tuples(st.just(m), mutated(encode_frame(m)[HEADER:]))))
def test_mutated_bodies_decode_consistently_or_are_malformed(case: tuple[Any, bytes]) -> None:
    msg, body = case
    result = check_body(body)
    if body == encode_frame(msg)[HEADER:]:
        assert result == msg


@SLOW_OK
@given(STREAMS, SIZES)
def test_framers_on_streams_of_valid_mutated_and_garbage_frames(stream: bytes,
                                                                sizes: list[int]) -> None:
    check_stream(stream, sizes)


# ------------------------------------------------------------------ (c) round trips
@SLOW_OK
@given(st.lists(IPC_MESSAGES, max_size=5), SIZES)
def test_valid_frames_round_trip_through_both_framers_in_any_chunking(
    msgs: list[Any], sizes: list[int]
) -> None:
    stream = b"".join(encode_frame(m) for m in msgs)
    assert feed_reader(rechunk(stream, sizes)) == msgs
    framer = RequestFramer(max_body=MAX_FRAME_BYTES)
    out = framer.feed_all(stream)
    assert out == msgs and framer.pending == 0 and not framer.broken


def test_every_ipc_message_class_is_covered() -> None:
    assert set(IPC_CLASSES) == set(IPC_TYPES)


# ------------------------------------------------------------------ (e) bounded buffering
@settings(max_examples=40)
@given(
    st.sampled_from(LENGTHS),
    st.binary(min_size=1, max_size=8),
    st.integers(1, MAX_FRAME_BYTES + 64 * 1024),
    st.integers(4096, 300_000),
)
def test_large_chunks_keep_the_buffers_within_one_frame(
    length: int, pattern: bytes, total: int, chunk: int
) -> None:
    """A frame header claiming ``length`` then ``total`` bytes, in chunks of ``chunk``."""
    stream = struct.pack(">I", length) + (pattern * (total // len(pattern) + 1))[:total]
    sizes = [chunk] * (len(stream) // chunk)
    check_stream(stream, sizes)


def test_a_frame_of_exactly_the_maximum_is_buffered_then_decoded() -> None:
    reader = FrameReader()
    body = bytes([IPC_VERSION, 0]) + bytes(MAX_FRAME_BYTES - 2)  # type 0 does not exist
    stream = struct.pack(">I", MAX_FRAME_BYTES) + body
    items: list[object] = []
    peak = 0
    for chunk in rechunk(stream, [65536] * (len(stream) // 65536)):
        items += reader.feed(chunk)
        peak = max(peak, reader.pending)
        assert reader.pending <= HEADER + MAX_FRAME_BYTES
    assert peak > MAX_FRAME_BYTES - 65536
    assert len(items) == 1 and isinstance(items[0], Malformed)
    assert items[0].reason is MalformedReason.UNKNOWN_TYPE and reader.broken
    assert reader.feed(HELLO) == [] and reader.pending == 0
