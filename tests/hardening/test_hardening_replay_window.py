"""The secure channel's replay state is bounded: one fixed-size record per sender that
proved it holds the key, a ``WINDOW``-bit bitmap in each.

* 5,000 forged senders (wrong key) leave no record at all.
* With ``allowed_senders`` (the configured nodes), unknown ids are refused before any
  cryptography and leave no record either.
* One real sender, 20,000 datagrams delivered out of order: one record, a bitmap of at
  most ``WINDOW`` bits, every datagram accepted once, every replay refused, and
  anything older than the window refused.
* ``NodeEngine`` builds its channel with the configured nodes as ``allowed_senders``
  (updated on reload), so even with ``crypto_cipher``/``crypto_hash`` both ``none``
  a forged sender id gets no record.
"""

from __future__ import annotations

import dataclasses
import os
import random

from pyquorum.core.engine import NodeEngine, StoredState
from pyquorum.sim.scenario import cluster_config
from pyquorum.types import RingId
from pyquorum.wire.codec import encode
from pyquorum.wire.crypto import WINDOW, Opened, Rejected, RejectReason, SecureChannel
from pyquorum.wire.messages import Heartbeat, MemberState

KEY = os.urandom(64)
CIPHER, HASH = "aes256", "sha256"


def channel(node_id: int, key: bytes = KEY, allowed: frozenset[int] | None = None,
            incarnation: int = 1) -> SecureChannel:
    return SecureChannel(key, CIPHER, HASH, node_id, incarnation,
                         node_id.to_bytes(8, "big"), allowed)


def records(ch: SecureChannel) -> int:
    return len(ch._peers)


def test_forged_senders_leave_no_record() -> None:
    receiver = channel(1)
    wrong = os.urandom(64)
    for sender in range(2, 5002):
        out = receiver.open(channel(sender, wrong).seal(b"x" * 40))
        assert isinstance(out, Rejected) and out.reason is RejectReason.AUTH_FAILED
    assert records(receiver) == 0


def test_unconfigured_senders_are_refused_before_any_state() -> None:
    receiver = channel(1, allowed=frozenset({1, 2, 3}))
    for sender in range(4, 1004):
        out = receiver.open(channel(sender).seal(b"x"))  # the right key, not configured
        assert isinstance(out, Rejected) and out.reason is RejectReason.UNKNOWN_SENDER
    assert records(receiver) == 0
    assert isinstance(receiver.open(channel(2).seal(b"x")), Opened)
    assert records(receiver) == 1


def test_one_record_with_a_bounded_window_per_sender() -> None:
    receiver, sender = channel(1), channel(2)
    sealed = [sender.seal(i.to_bytes(4, "big")) for i in range(20_000)]
    rng = random.Random("replay-window")
    order = []
    for start in range(0, len(sealed), 500):  # reordered within blocks of 500 < WINDOW
        block = list(range(start, min(start + 500, len(sealed))))
        rng.shuffle(block)
        order += block
    for i in order:
        assert isinstance(receiver.open(sealed[i]), Opened)
        peer = receiver._peers[2]
        assert peer.seen.bit_length() <= WINDOW
    assert records(receiver) == 1
    for i in (19_999, 19_000, len(sealed) - WINDOW):  # replays inside the window
        out = receiver.open(sealed[i])
        assert isinstance(out, Rejected) and out.reason is RejectReason.REPLAYED
    out = receiver.open(sealed[len(sealed) - WINDOW - 1])  # older than the window
    assert isinstance(out, Rejected) and out.reason is RejectReason.REPLAYED
    # a restart of the sender (new incarnation) replaces its record, not adds one
    assert isinstance(receiver.open(channel(2, incarnation=2).seal(b"new")), Opened)
    assert records(receiver) == 1


def test_engine_without_crypto_keeps_no_record_for_unconfigured_senders() -> None:
    config = cluster_config(["3"])
    config = dataclasses.replace(config, totem=dataclasses.replace(
        config.totem, crypto_cipher="none", crypto_hash="none"))
    engine = NodeEngine(1, config, random.Random("gap"), StoredState(), 0, None)
    for sender in range(10, 2010):
        forged = SecureChannel(None, "none", "none", sender, 1, bytes(8))
        hb = Heartbeat(sender, RingId(sender, 4), MemberState.OPERATIONAL, 0)
        engine.receive_datagram(forged.seal(encode(hb)), None, 1)
    assert engine.rejected_by_reason["unknown_sender"] == 2000  # refused by the channel
    assert len(engine._channel._peers) == 0  # no record for any of them
