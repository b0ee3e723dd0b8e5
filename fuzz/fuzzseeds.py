"""Deterministic seed inputs for the atheris campaign: valid encodings of every target.

Built from the real message dataclasses (their ``Annotated`` field widths), so a new
message or field is seeded without editing this file.  Everything here is a pure
function of fixed seeds: the campaign driver writes the seeds into the corpus, and the
sealed-datagram harness recomputes the same genuine datagrams to recognise a forgery.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import struct
import types
import typing
from pathlib import Path
from typing import Any, Final

from pyquorum.types import RingId
from pyquorum.wire import qbmsg
from pyquorum.wire.codec import MAX_STR_BYTES, encode
from pyquorum.wire.crypto import SecureChannel
from pyquorum.wire.ipc import IPC_TYPES, Hello, encode_frame
from pyquorum.wire.messages import MESSAGE_TYPES

MAXIMA: Final = {"u8": 0xFF, "u16": 0xFFFF, "u32": 0xFFFF_FFFF, "u64": 0xFFFF_FFFF_FFFF_FFFF}
RING_HINTS: Final = [("rep", typing.Annotated[int, "u32"]), ("seq", typing.Annotated[int, "u64"])]
CLUSTER_CLASSES: Final = sorted(MESSAGE_TYPES, key=lambda c: MESSAGE_TYPES[c])
IPC_CLASSES: Final = sorted(IPC_TYPES, key=lambda c: IPC_TYPES[c])
WORDS: Final = ["", "qdevice", "net", "nœud-✓", "quorum.cancel_wait_for_all", "x" * 64]

# The sealed-datagram target: byte 0 of an input picks the mode (low nibble), whether
# the receiver first opens the primer from the sender (bit 7), whether it restricts
# senders to the nodelist {1, 3} (bit 6) and whether it also holds the second key of a
# key rotation (bit 5); the rest is the datagram.
MODES: Final = [
    ("aes256", "sha256"), ("aes192", "sha1"), ("aes128", "sha512"), ("none", "md5"),
    ("none", "sha1"), ("none", "sha256"), ("none", "sha384"), ("none", "sha512"),
    ("none", "none"),
]  # fmt: skip
KEY: Final = bytes(range(32, 96))
SECOND_KEY: Final = bytes(range(96, 160))
SENDER: Final = (1, 5, b"\x01\x05boot!!")  # node id, incarnation, boot nonce
RECEIVER: Final = (2, 9, b"\x02\x09boot!!")
PRIMER: Final = b"primer"
FLAG_PRIME: Final = 0x80
FLAG_ALLOWED: Final = 0x40
FLAG_SECOND_KEY: Final = 0x20


def _hints(cls: type) -> list[tuple[str, Any]]:
    if cls is RingId:
        return RING_HINTS
    hints = typing.get_type_hints(cls, include_extras=True)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]


def sample(hint: Any, rng: random.Random, max_items: int = 3) -> Any:
    """A random value of a wire field type (ints favour 0, 1 and the maximum)."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        marker = hint.__metadata__[0]
        if marker == "str":
            return rng.choice(WORDS)
        top = MAXIMA[marker]
        return rng.choice([0, 1, top, rng.randint(0, top)])
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return tuple(sample(item, rng, max_items) for _ in range(rng.randint(0, max_items)))
    if origin in (typing.Union, types.UnionType):
        return sample(rng.choice(typing.get_args(hint)), rng, max_items)
    return hint(*(sample(h, rng, max_items) for _, h in _hints(hint)))


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
    if origin in (typing.Union, types.UnionType):
        return extreme(typing.get_args(hint)[0], top=top, items=items)
    return hint(*(extreme(h, top=top, items=items) for _, h in _hints(hint)))


def messages(classes: list[type], per_class: int, seed: str) -> list[Any]:
    """Zeros, maxima and ``per_class`` random instances of every class."""
    rng = random.Random(seed)
    out: list[Any] = []
    for cls in classes:
        out.append(extreme(cls, top=False, items=0))
        out.append(extreme(cls, top=True, items=1))
        out.extend(sample(cls, rng) for _ in range(per_class))
    return out


def cluster_seeds() -> list[bytes]:
    """Encoded cluster messages (``codec.decode`` input)."""
    return [encode(m) for m in messages(CLUSTER_CLASSES, 6, "fuzz:cluster")]


def sealed_datagrams() -> dict[tuple[int, int], dict[bytes, bytes]]:
    """Per (mode index, key 0 or 1): every genuine datagram of the sender and its plaintext.

    The first of each mode under key 0 seals ``PRIMER`` (counter 1); the others seal one
    encoded message of each cluster class.  Under key 1 the sender has rotated to
    ``SECOND_KEY`` (``add_key`` + ``use_key``).  AES-GCM and HMAC are deterministic for
    a fixed key, nonce and counter, so these are the same bytes in every process.
    """
    plaintexts = [PRIMER] + [encode(m) for m in messages(CLUSTER_CLASSES, 1, "fuzz:sealed")]
    out: dict[tuple[int, int], dict[bytes, bytes]] = {}
    for index, (cipher, digest) in enumerate(MODES):
        for key_no in (0, 1):
            sender = SecureChannel(KEY, cipher, digest, *SENDER)
            if key_no:
                sender.use_key(sender.add_key(SECOND_KEY))
            out[index, key_no] = {sender.seal(p): p for p in plaintexts}
    return out


def primer(mode_index: int, genuine: dict[tuple[int, int], dict[bytes, bytes]]) -> bytes:
    """The counter-1 datagram of a mode under key 0 (opened first when asked for)."""
    return next(iter(genuine[mode_index, 0]))


def sealed_seeds() -> list[bytes]:
    """Selector byte + genuine datagram, with and without priming, sender filter, 2nd key."""
    out = []
    for (index, key_no), datagrams in sealed_datagrams().items():
        for n, datagram in enumerate(datagrams):
            flags = (FLAG_PRIME if n % 2 else 0) | (FLAG_ALLOWED if n % 3 == 0 else 0)
            flags |= FLAG_SECOND_KEY if key_no or n % 4 == 1 else 0
            out.append(bytes([index | flags]) + datagram)
    return out


def ipc_seeds() -> list[bytes]:
    """Chunk selector byte + streams: a hello then requests, single frames of each type."""
    msgs = messages(IPC_CLASSES, 3, "fuzz:ipc")
    out = [bytes([n % 256]) + encode_frame(m) for n, m in enumerate(msgs)]
    hello = encode_frame(Hello(3))
    for n in range(0, len(msgs), 4):
        out.append(bytes([7 * n % 256]) + hello + b"".join(encode_frame(m) for m in msgs[n:n + 4]))
    out.append(b"\x00" + struct.pack(">I", 2) + b"\x01\x00")  # an unknown type
    return out


CONFIGS: Final = [
    # The README's example (one brace a line, numeric uidgid ids).
    """totem {
    version: 2
    cluster_name: demo
    crypto_cipher: aes256
    crypto_hash: sha256
    keyfile: /etc/pyquorum/authkey
    interface {
        linknumber: 0
        mcastport: 5405
    }
}
nodelist {
    node {
        nodeid: 1
        name: node1
        ring0_addr: 10.0.0.1
    }
    node {
        nodeid: 2
        name: node2
        ring0_addr: 10.0.0.2
    }
    node {
        nodeid: 3
        name: node3
        ring0_addr: 10.0.0.3
        port: 5406
    }
}
quorum {
    provider: corosync_votequorum
    wait_for_all: 1
}
logging {
    to_syslog: yes
    to_stderr: no
    logger_subsys {
        subsys: QUORUM
        debug: on
    }
}
system {
    state_dir: /var/lib/pyquorum
    run_dir: /run/pyquorum
}
uidgid {
    uid: 0
    gid: 0
}
""",
    # Two nodes, crypto off, the timing keys.
    """totem {
    version: 2
    cluster_name: two
    crypto_cipher: none
    crypto_hash: none
    token: 1000
    token_coefficient: 0
    consensus: 1200
    join: 60
    hold: 180
}
nodelist {
    node {
        ring0_addr: 127.0.0.1
        nodeid: 1
        quorum_votes: 1
    }
    node {
        ring0_addr: 127.0.0.1
        nodeid: 2
        port: 5406
    }
}
quorum {
    provider: corosync_votequorum
    two_node: 1
    last_man_standing: 0
}
logging {
    timestamp: hires
    fileline: off
    syslog_facility: local3
}
""",
    # A quorum device, expected votes, every votequorum switch.
    """totem {
\tcrypto_cipher: aes128
\tcrypto_hash: sha1
}
nodelist {
\tnode {
\t\tnodeid: 10
\t\tring0_addr: 10.1.0.10
\t\tring1_addr: 10.2.0.10
\t}
\tnode {
\t\tnodeid: 20
\t\tring0_addr: 10.1.0.20
\t}
\tnode {
\t\tnodeid: 30
\t\tring0_addr: 10.1.0.30
\t}
}
quorum {
\tprovider: corosync_votequorum
\texpected_votes: 4
\twait_for_all: 0
\tauto_tie_breaker_node: lowest
\tdevice {
\t\tmodel: net
\t\tvotes: 1
\t\ttimeout: 10000
\t\tsync_timeout: 30000
\t}
}
resources {
\twatchdog_timeout: 6
}
""",
    # A uidgid.d file.
    "uidgid {\n    uid: 0\n    gid: 0\n}\n",
]


def config_seeds() -> list[bytes]:
    return [text.encode() for text in CONFIGS]


def qb_seeds() -> list[bytes]:
    """Selector byte + datagram: every request id of every service with a body of its
    struct's size (zeros, then a name-like body), an unknown id, the disconnect, and
    connection requests (valid and short)."""
    services = ("quorum", "votequorum", "cmap", "cfg")
    out = []
    for (service, msg_id), _ in sorted(qbmsg.RESPONSE_IDS.items()):
        selector = bytes([services.index(service)])
        layout = qbmsg._MIN_SIZE.get((service, msg_id))
        body_len = (qbmsg._size(layout) if layout else qbmsg.REQ_HDR.size) - qbmsg.REQ_HDR.size
        for body in (bytes(body_len), (b"\x08\x00" + b"quorum.provider\x00").ljust(body_len,
                                                                              b"\x00")):
            out.append(selector + qbmsg.REQ_HDR.pack(msg_id, qbmsg.REQ_HDR.size + len(body))
                       + body)
    out.append(b"\x00" + qbmsg.REQ_HDR.pack(99, qbmsg.REQ_HDR.size))
    out.append(b"\x02" + qbmsg.REQ_HDR.pack(qbmsg.QB_IPC_MSG_DISCONNECT, qbmsg.REQ_HDR.size))
    conn = qbmsg.REQ_HDR.pack(qbmsg.QB_IPC_MSG_AUTHENTICATE, qbmsg.CONNECTION_REQUEST_SIZE)
    out.append(b"\x04" + conn + struct.pack("=I4x", 1 << 20))
    out.append(b"\x04" + conn)
    return out


SEEDS: Final = {
    "codec": cluster_seeds,
    "sealed": sealed_seeds,
    "ipc": ipc_seeds,
    "config": config_seeds,
    "qb": qb_seeds,
}


def write_seeds(target: str, directory: Path) -> int:
    """Write the target's seeds as ``seed-<sha1>`` files (idempotent); return how many."""
    directory.mkdir(parents=True, exist_ok=True)
    seeds = SEEDS[target]()
    for data in seeds:
        (directory / f"seed-{hashlib.sha1(data).hexdigest()}").write_bytes(data)
    return len(seeds)
