"""Fuzz tier, libqb endpoint: the decoders of what a local C client can send.

``decode_connection_request`` and ``decode_request`` take datagrams straight from a
client's socket (``daemon/qbipc.py``); whatever the bytes, they must return a value of
their documented union and never raise.  Structured inputs (a valid header, a known or
unknown request id, a random body of about the right size) reach past the header checks
into every service's body decoder, which plain random bytes would rarely do.
"""

from __future__ import annotations

import struct
from typing import Final

from hypothesis import given, settings
from hypothesis import strategies as st

from pyquorum.wire import ipc
from pyquorum.wire import qbmsg as qb

SERVICES: Final = ("quorum", "votequorum", "cmap", "cfg")
EXAMPLES = settings(max_examples=400)


def _known(value: object) -> bool:
    """A value of ``decode_request``'s union: an IPC request class or one of qbmsg's."""
    return (isinstance(value, qb.BadRequest | qb.Disconnect | qb.Unsupported)
            or type(value).__module__ in (ipc.__name__, qb.__name__))


@EXAMPLES
@given(st.binary(max_size=qb.CONNECTION_REQUEST_SIZE * 2))
def test_connection_request_never_raises(data: bytes) -> None:
    res = qb.decode_connection_request(data)
    assert isinstance(res, qb.ConnectionRequest | qb.BadHandshake)


@EXAMPLES
@given(st.sampled_from(SERVICES), st.binary(max_size=512))
def test_any_datagram_is_a_request_or_a_refusal(service: str, data: bytes) -> None:
    assert _known(qb.decode_request(service, data))


@st.composite
def _framed(draw: st.DrawFn) -> tuple[str, bytes]:
    """A request whose header is right (id known or not, size = length)."""
    service = draw(st.sampled_from(SERVICES))
    ids = sorted(i for s, i in qb.RESPONSE_IDS if s == service)
    msg_id = draw(st.one_of(st.sampled_from(ids), st.integers(-4, 40)))
    body = draw(st.one_of(st.binary(max_size=64), st.binary(min_size=256, max_size=1200)))
    if draw(st.booleans()):  # a NUL-free name field makes the string checks bite
        body = body.replace(b"\0", b"x")
    data = qb.REQ_HDR.pack(msg_id, qb.REQ_HDR.size + len(body)) + body
    return service, data


@EXAMPLES
@given(_framed())
def test_framed_requests_reach_the_body_decoders_without_raising(
        case: tuple[str, bytes]) -> None:
    service, data = case
    res = qb.decode_request(service, data)
    assert _known(res)
    msg_id = struct.unpack_from("=i", data)[0]
    if not isinstance(res, qb.BadRequest | qb.Unsupported):
        # a request that decoded has an id the service knows, or is the disconnect
        assert (service, msg_id) in qb.RESPONSE_IDS or isinstance(res, qb.Disconnect)


@EXAMPLES
@given(st.integers(-2**31, 2**31 - 1), st.binary(max_size=64))
def test_cmap_value_text_never_raises(vtype: int, raw: bytes) -> None:
    assert qb.cmap_value_text(vtype, raw) is None or isinstance(
        qb.cmap_value_text(vtype, raw), str)
