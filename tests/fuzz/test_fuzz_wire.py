"""Fuzz tier, datagrams: ``codec.decode`` and ``SecureChannel.open`` on hostile bytes.

Extends tests/unit/test_codec.py and test_crypto.py (which cover single-byte mutations
and short random inputs) with multi-step structure-aware mutations of valid encodings,
inputs up to the datagram size, the full receive path (open, then decode) and the
replay state of a receiver that already knows the sender.
"""

from __future__ import annotations

import struct
from typing import Any

from fuzz_strategies import (
    CLUSTER_CLASSES,
    CLUSTER_MESSAGES,
    KEY,
    MODES,
    PROTECTED_MODES,
    mutated,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyquorum.wire.codec import MAX_DATAGRAM_BYTES, Malformed, MalformedReason, decode, encode
from pyquorum.wire.crypto import HEADER_SIZE, Opened, Rejected, RejectReason, SecureChannel
from pyquorum.wire.messages import MESSAGE_TYPES, WIRE_VERSION

SECOND_KEY = bytes(range(100, 164))
SLOW_OK = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])


def check_decode(data: bytes) -> object:
    """The decode contract: a Malformed with a reason and a detail, or a message whose
    encoding is exactly ``data`` (one encoding per message) and that decodes back."""
    result = decode(data)
    if isinstance(result, Malformed):
        assert isinstance(result.reason, MalformedReason)
        assert isinstance(result.detail, str) and result.detail
        return result
    assert type(result) in MESSAGE_TYPES, type(result)
    assert encode(result) == data
    assert decode(encode(result)) == result
    return result


def channel(node_id: int, mode: tuple[str, str], incarnation: int = 7) -> SecureChannel:
    nonce = bytes([node_id, incarnation % 256]) * 4
    return SecureChannel(KEY, mode[0], mode[1], node_id, incarnation, nonce)


# ------------------------------------------------------------------ (a) arbitrary bytes
@settings(max_examples=300)
@given(st.binary(max_size=4096))
def test_decode_of_arbitrary_bytes_is_a_message_or_malformed(data: bytes) -> None:
    check_decode(data)


@settings(max_examples=300)
@given(st.sampled_from(sorted(MESSAGE_TYPES.values())), st.binary(max_size=2048))
def test_decode_of_arbitrary_bodies_behind_a_valid_header(msg_type: int, body: bytes) -> None:
    check_decode(bytes([WIRE_VERSION, msg_type]) + body)


@settings(max_examples=40)
@given(st.binary(min_size=1, max_size=16), st.integers(MAX_DATAGRAM_BYTES - 200, 70_000))
def test_decode_of_datagram_sized_garbage(pattern: bytes, size: int) -> None:
    data = bytes([WIRE_VERSION, 3]) + (pattern * (size // len(pattern) + 1))[:size]
    check_decode(data)


# ------------------------------------------------------------------ (b) mutations
@SLOW_OK
@given(CLUSTER_MESSAGES.flatmap(lambda m: st.tuples(st.just(m), mutated(encode(m)))))
def test_mutated_encodings_decode_consistently_or_are_malformed(case: tuple[Any, bytes]) -> None:
    msg, data = case
    result = check_decode(data)
    if data == encode(msg):
        assert result == msg


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(CLUSTER_MESSAGES, min_size=2, max_size=2), st.data())
def test_spliced_encodings_decode_consistently_or_are_malformed(
    msgs: list[Any], data: st.DataObject
) -> None:
    """Cut-and-paste across messages: a header of one, the fields of others."""
    parts = []
    for msg in msgs:
        raw = encode(msg)
        start = data.draw(st.integers(0, len(raw)))
        parts.append(raw[start : data.draw(st.integers(start, len(raw)))])
    check_decode(encode(msgs[0])[:2] + b"".join(parts))


# ------------------------------------------------------------------ (c) round trips
@SLOW_OK
@given(CLUSTER_MESSAGES, st.sampled_from(MODES))
def test_messages_round_trip_through_seal_open_and_decode(msg: Any, mode: tuple[str, str]) -> None:
    """The whole receive path: encode, seal, open, decode gives the message back."""
    sender, receiver = channel(1, mode), channel(2, mode)
    opened = receiver.open(sender.seal(encode(msg)))
    assert isinstance(opened, Opened) and opened.sender == 1
    assert decode(opened.plaintext) == msg


def test_every_cluster_message_class_is_covered() -> None:
    assert len(CLUSTER_CLASSES) == len(MESSAGE_TYPES) == 7


# ------------------------------------------------------------------ (d) before decryption
@settings(max_examples=300)
@given(st.sampled_from(MODES), st.binary(max_size=2048), st.booleans())
def test_open_of_arbitrary_bytes_is_a_rejection(
    mode: tuple[str, str], data: bytes, knows_sender: bool
) -> None:
    receiver = channel(2, mode)
    if knows_sender:  # the peer record exists: the replay and same-boot paths run too
        assert isinstance(receiver.open(channel(1, mode).seal(b"x")), Opened)
    result = receiver.open(data)
    if mode in PROTECTED_MODES:
        assert isinstance(result, Rejected), result
        assert isinstance(result.reason, RejectReason) and result.detail
    else:
        assert isinstance(result, Opened | Rejected)


@SLOW_OK
@given(st.sampled_from(PROTECTED_MODES), CLUSTER_MESSAGES, st.booleans(), st.data())
def test_a_mutated_sealed_datagram_never_opens(
    mode: tuple[str, str], msg: Any, rotating: bool, data: st.DataObject
) -> None:
    """Flip, insert, delete, truncate, splice: the result is always a rejection, and a
    rejection never moves the replay state (the genuine datagram still opens after it).
    ``rotating``: both hold a second key and the sender seals with it (key rotation)."""
    sender, receiver = channel(1, mode), channel(2, mode)
    assert isinstance(receiver.open(sender.seal(b"first")), Opened)  # the sender is known
    if rotating:
        receiver.add_key(SECOND_KEY)
        sender.use_key(sender.add_key(SECOND_KEY))
    genuine = sender.seal(encode(msg))
    forged = data.draw(mutated(genuine))
    before = receiver.accepted
    if forged != genuine:
        result = receiver.open(forged)
        assert isinstance(result, Rejected), (forged.hex(), result)
        assert result.detail
        assert receiver.accepted == before
    opened = receiver.open(genuine)
    assert isinstance(opened, Opened) and decode(opened.plaintext) == msg


@settings(max_examples=200)
@given(
    st.sampled_from(PROTECTED_MODES),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.binary(max_size=200),
)
def test_forged_headers_from_a_known_sender_never_open(
    mode: tuple[str, str], sender_id: int, incarnation: int, counter: int, body: bytes
) -> None:
    """A well-formed header in our mode (any sender, incarnation, counter) with any body."""
    sender, receiver = channel(1, mode), channel(2, mode)
    assert isinstance(receiver.open(sender.seal(b"hello")), Opened)
    genuine = sender.seal(b"next")
    version, mode_byte = genuine[0], genuine[1]
    nonce = genuine[2 + 4 + 8 : 2 + 4 + 8 + 8]
    header = struct.pack(">BBIQ8sQ", version, mode_byte, sender_id, incarnation, nonce, counter)
    assert len(header) == HEADER_SIZE
    result = receiver.open(header + body)
    assert isinstance(result, Rejected), result
    assert isinstance(receiver.open(genuine), Opened)
