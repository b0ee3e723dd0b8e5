"""pyquorum.wire: pure codecs for cluster messages and the datagram crypto."""

from pyquorum.wire.codec import (
    MAX_DATAGRAM_BYTES,
    MAX_MESSAGE_BYTES,
    EncodeError,
    Malformed,
    MalformedReason,
    decode,
    encode,
)
from pyquorum.wire.crypto import Opened, Rejected, RejectReason, SecureChannel

__all__ = [
    "MAX_DATAGRAM_BYTES",
    "MAX_MESSAGE_BYTES",
    "EncodeError",
    "Malformed",
    "MalformedReason",
    "Opened",
    "RejectReason",
    "Rejected",
    "SecureChannel",
    "decode",
    "encode",
]
