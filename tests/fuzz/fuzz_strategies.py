"""Shared Hypothesis strategies of the fuzz tier: messages from their dataclasses, mutations.

Not a test module (no ``test_`` prefix): the fuzz test files import it by name, as the
other tiers import their helpers (pytest puts this directory on ``sys.path``).
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any, Final

from hypothesis import strategies as st

from pyquorum.types import RingId
from pyquorum.wire.codec import MAX_STR_BYTES
from pyquorum.wire.ipc import IPC_TYPES
from pyquorum.wire.messages import MESSAGE_TYPES

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fuzz"))
from fuzzseeds import CONFIGS  # fuzz/ holds the campaign's seed corpus

MAXIMA: Final = {"u8": 0xFF, "u16": 0xFFFF, "u32": 0xFFFF_FFFF, "u64": 0xFFFF_FFFF_FFFF_FFFF}
RING_HINTS: Final = [("rep", typing.Annotated[int, "u32"]), ("seq", typing.Annotated[int, "u64"])]
TEXT: Final = st.characters(codec="utf-8")

CLUSTER_CLASSES: Final = sorted(MESSAGE_TYPES, key=lambda c: MESSAGE_TYPES[c])
IPC_CLASSES: Final = sorted(IPC_TYPES, key=lambda c: IPC_TYPES[c])

# Every (cipher, hash) pair SecureChannel accepts; the last one is unprotected.
MODES: Final = [
    ("aes256", "sha256"), ("aes192", "sha1"), ("aes128", "sha512"), ("none", "md5"),
    ("none", "sha1"), ("none", "sha256"), ("none", "sha384"), ("none", "sha512"),
    ("none", "none"),
]  # fmt: skip
PROTECTED_MODES: Final = MODES[:-1]
KEY: Final = bytes(range(32, 96))


def _hints(cls: type) -> list[tuple[str, Any]]:
    if cls is RingId:
        return RING_HINTS
    hints = typing.get_type_hints(cls, include_extras=True)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]


def value_strategy(hint: Any, max_items: int = 3) -> st.SearchStrategy[Any]:
    """Any value of a wire field type (ints favour 0 and the maximum)."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        marker = hint.__metadata__[0]
        if marker == "str":
            return st.text(TEXT, max_size=24) | st.just("€" * (MAX_STR_BYTES // 3))
        top = MAXIMA[marker]
        return st.sampled_from([0, 1, top]) | st.integers(0, top)
    if origin is tuple:
        item = value_strategy(typing.get_args(hint)[0], max_items)
        return st.lists(item, max_size=max_items).map(tuple)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([value_strategy(c, max_items) for c in typing.get_args(hint)])
    return st.builds(hint, **{name: value_strategy(h, max_items) for name, h in _hints(hint)})


CLUSTER_MESSAGES: Final = st.one_of([value_strategy(c) for c in CLUSTER_CLASSES])
IPC_MESSAGES: Final = st.one_of([value_strategy(c) for c in IPC_CLASSES])


# ------------------------------------------------------------------ byte mutations
def _apply(raw: bytearray, op: str, draw: Any) -> None:
    n = len(raw)
    if op == "flip" and n:
        pos = draw(st.integers(0, n - 1))
        raw[pos] ^= 1 << draw(st.integers(0, 7))
    elif op == "set" and n:
        raw[draw(st.integers(0, n - 1))] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
    elif op == "insert":
        pos = draw(st.integers(0, n))
        raw[pos:pos] = draw(st.binary(min_size=1, max_size=8))
    elif op == "delete" and n:
        pos = draw(st.integers(0, n - 1))
        del raw[pos : pos + draw(st.integers(1, 8))]
    elif op == "truncate":
        del raw[draw(st.integers(0, n)) :]
    elif op == "duplicate" and n:
        pos = draw(st.integers(0, n - 1))
        chunk = raw[pos : pos + draw(st.integers(1, 16))]
        at = draw(st.integers(0, n))
        raw[at:at] = chunk
    elif op == "count" and n >= 2:  # a u16 length/count at any offset: 0, max, off by one
        pos = draw(st.integers(0, n - 2))
        raw[pos : pos + 2] = draw(st.sampled_from([0, 1, 0xFFFF, 384, 385, 1024, 1025])).to_bytes(
            2, "big"
        )


MUTATIONS: Final = ("flip", "set", "insert", "delete", "truncate", "duplicate", "count")


@st.composite
def mutated(draw: Any, data: bytes, max_ops: int = 6) -> bytes:
    """``data`` after 1..``max_ops`` random flips, inserts, deletes, truncations, ..."""
    raw = bytearray(data)
    for op in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=max_ops)):
        _apply(raw, op, draw)
    return bytes(raw)


# ------------------------------------------------------------------ corosync.conf
README_CONF: Final = CONFIGS[0]
"""The example of README.md ("Running a cluster"), one brace a line as Corosync requires,
with numeric uidgid ids (build_config takes ids; load_config resolves names); the same
text seeds the atheris config target (``fuzz/fuzzseeds.py``)."""
