"""Fuzz tier: regression tests for every bug the fuzzers found (Hypothesis or atheris).

Each test names the fuzzer and the input that found the bug; the inputs are the
shrunk ones, so the test reproduces the failure on the unfixed code.
"""

from __future__ import annotations

import struct

import pytest

from pyquorum.wire.codec import Malformed, MalformedReason
from pyquorum.wire.ipc import MAX_FRAME_BYTES, FrameReader


# Found by tests/fuzz/test_fuzz_ipc.py::test_framers_on_arbitrary_chunks (shrunk to
# chunks=[b"\x00\x00", b"\x00\x00"]): FrameReader broke on a bad frame but kept the rest
# of the stream in its buffer, so one hostile chunk was held for the life of the reader,
# however large (3 MiB fed after a bad length header stayed buffered: more than
# MAX_FRAME_BYTES + 4).  Fixed in wire/ipc.py: the buffer is dropped when the reader
# breaks, as RequestFramer already did.
@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (b"\x00\x00\x00\x00", MalformedReason.TRUNCATED),  # length 0
        (b"\xff\xff\xff\xff" + bytes(3 * MAX_FRAME_BYTES), MalformedReason.TOO_LARGE),
        (struct.pack(">I", 3) + b"\x07\x00\x00" + b"\x00\x00\x00\x02" * (MAX_FRAME_BYTES // 2),
         MalformedReason.BAD_VERSION),
    ],
    ids=["length-0", "oversized-length-then-3MiB", "bad-version-then-2MiB"],
)
def test_frame_reader_drops_its_buffer_when_it_breaks(stream: bytes,
                                                      reason: MalformedReason) -> None:
    reader = FrameReader()
    items = reader.feed(stream)
    assert len(items) == 1 and isinstance(items[0], Malformed)
    assert items[0].reason is reason
    assert reader.broken
    assert reader.pending == 0
    assert reader.feed(b"\x00\x00\x00\x02\x01\x04") == [] and reader.pending == 0
