"""Bounded memory in membership: what a peer (or a long-lived ring) can make us hold.

Two ``Membership`` instances are wired together by a tiny in-memory router (no
network, no clock: time is an argument), then driven past every bound:

* ``_log``: only the last ``LOG_TAIL`` delivered messages are kept, however long the
  ring lives; the delivered count keeps counting (JOINs carry both).
* ``_buffer``: a peer sending sequence numbers far ahead of delivery cannot make a
  member buffer more than ``ORDERED_WINDOW`` of them; the gap is still repaired.
* ``_sequenced`` (representative): at most ``ORDERED_WINDOW`` messages retained;
  acknowledged ones are trimmed, and while a member acknowledges nothing new requests
  wait (counted) and are numbered once it catches up (none is lost).
* JOIN sets: a JOIN whose sets would grow ``proc | fail`` past ``MAX_NODES`` (or carries
  more log or NODEINFOs than a JOIN can) is ignored; before the bound such JOINs made our
  own JOIN unencodable, an ``EncodeError`` that stopped the daemon.
"""

from __future__ import annotations

import random

from pyquorum.core import membership as mb
from pyquorum.core.engine import NodeEngine, StoredState
from pyquorum.sim.scenario import cluster_config
from pyquorum.types import RingId
from pyquorum.wire.codec import encode
from pyquorum.wire.crypto import SecureChannel
from pyquorum.wire.messages import (
    Heartbeat,
    Join,
    MemberState,
    Ordered,
    OrderedRequest,
    Reconfigure,
    ReconfigureParam,
)

CONFIG = cluster_config(["2"])
TIMING = CONFIG.timing()
MAX_STEPS = 10_000


class Pair:
    """Nodes 1 (the representative) and 2, delivering every message at once."""

    def __init__(self) -> None:
        self.now = 0
        self.nodes = {n: mb.Membership(n, (1, 2), TIMING, 0, (), 0) for n in (1, 2)}
        self.dropped_to: set[int] = set()
        self.settle()
        for _ in range(MAX_STEPS):
            if all(m.state is mb.State.OPERATIONAL and m.members == (1, 2)
                   for m in self.nodes.values()):
                break
            self.now += 10
            for m in self.nodes.values():
                m.handle_timer(self.now)
            self.settle()
        else:
            raise AssertionError("the pair did not form a ring")
        for m in self.nodes.values():
            while m.next_event() is not None:
                pass

    @property
    def rep(self) -> mb.Membership:
        return self.nodes[1]

    @property
    def member(self) -> mb.Membership:
        return self.nodes[2]

    def settle(self) -> None:
        """Deliver queued messages until none is left (bounded)."""
        for _ in range(MAX_STEPS):
            moved = False
            for m in list(self.nodes.values()):
                for out in m.take_outgoing():
                    for dest in out.destinations:
                        if dest in self.nodes and dest not in self.dropped_to:
                            moved = True
                            self.nodes[dest].receive(out.message, self.now)
            if not moved:
                return
        raise AssertionError("messages kept flowing")

    def heartbeat(self, sender: int) -> None:
        """``sender``'s heartbeat, now (carries its delivered count)."""
        m = self.nodes[sender]
        m._send_heartbeat()  # drive the protocol step directly
        self.settle()


def payload(i: int) -> Reconfigure:
    return Reconfigure(1, i, ReconfigureParam.EXPECTED_VOTES)


def delivered(m: mb.Membership) -> list[int]:
    out = []
    while (ev := m.next_event()) is not None:
        if isinstance(ev, mb.OrderedDelivered):
            out.append(ev.seqno)
    return out


def test_log_keeps_only_the_tail_of_a_long_lived_ring() -> None:
    p = Pair()
    n = 5 * mb.ORDERED_WINDOW
    for i in range(n):
        p.member.submit(payload(i), p.now)
        p.settle()
        if i % 100 == 0:
            p.heartbeat(2)  # acknowledgements let the representative trim
    for m in p.nodes.values():
        assert delivered(m) == list(range(1, n + 1))
        assert len(m._log) == mb.LOG_TAIL
        assert m._delivered == n
        join = m._make_join()
        assert join.delivered == n and len(join.log) == mb.LOG_TAIL
        assert [c.seqno for c in join.log] == list(range(n - mb.LOG_TAIL + 1, n + 1))
        encode(join)  # still a valid message
    assert len(p.rep._sequenced) <= mb.ORDERED_WINDOW
    assert p.rep.stats["ordered_deferred"] == 0


def test_future_seqnos_from_a_peer_are_bounded_and_the_gap_still_repairs() -> None:
    p = Pair()
    ring = p.member.ring
    # the representative numbers one message, but the member does not get it
    p.dropped_to = {2}
    p.rep.submit(payload(0), p.now)
    p.settle()
    p.dropped_to = set()
    # a peer floods the member with sequence numbers far ahead of delivery
    for seqno in range(2, 2 + 20 * mb.ORDERED_WINDOW):
        p.member.receive(Ordered(1, ring, seqno, 1, 10_000 + seqno, payload(seqno)), p.now)
    assert len(p.member._buffer) == mb.ORDERED_WINDOW - 1
    assert p.member.stats["ordered_dropped"] == 19 * mb.ORDERED_WINDOW + 1
    p.member.take_outgoing()  # its NACKs; the repair comes from the real representative:
    p.now += TIMING.join_ms
    p.heartbeat(1)  # the representative's count: the member NACKs seqno 1 and gets it
    got = delivered(p.member)
    assert got == list(range(1, mb.ORDERED_WINDOW + 1))  # 1, then the buffered window
    assert p.member._buffer == {}


def test_representative_retains_at_most_a_window_and_defers_without_acks() -> None:
    p = Pair()
    p.dropped_to = {2}  # the member hears nothing: it never acknowledges
    n = mb.ORDERED_WINDOW + 200
    for i in range(n):
        p.rep.submit(payload(i), p.now)
    p.settle()
    assert len(p.rep._sequenced) == mb.ORDERED_WINDOW
    assert p.rep.stats["ordered_deferred"] == 200
    assert len(p.rep._pending) == 200  # kept, re-sent later
    assert delivered(p.rep) == list(range(1, mb.ORDERED_WINDOW + 1))
    # the member comes back, repairs by NACK, acknowledges; the deferred ones follow
    p.dropped_to = set()
    for _ in range(50):
        if not p.rep._pending:
            break
        p.now += TIMING.join_ms * 4 + 200
        p.heartbeat(1)
        p.heartbeat(2)
        p.rep.handle_timer(p.now)
        p.member.handle_timer(p.now)
        p.settle()
    assert not p.rep._pending
    assert delivered(p.rep) == list(range(mb.ORDERED_WINDOW + 1, n + 1))
    assert delivered(p.member) == list(range(1, n + 1))
    assert len(p.rep._sequenced) <= mb.ORDERED_WINDOW


def test_a_repeated_request_is_still_answered_not_numbered_again() -> None:
    p = Pair()
    ring = p.rep.ring
    req = OrderedRequest(2, ring, 7, payload(7))
    p.rep.receive(req, p.now)
    p.rep.receive(req, p.now)
    assert p.rep._rep_seqno == 1
    sent = [o.message for o in p.rep.take_outgoing()]
    assert [m.seqno for m in sent if isinstance(m, Ordered)] == [1, 1]


def test_acknowledgements_come_from_heartbeats_and_nacks() -> None:
    p = Pair()
    for i in range(10):
        p.member.submit(payload(i), p.now)
        p.settle()
    p.heartbeat(2)
    assert p.rep._acked == {2: 10}
    # a heartbeat that claims more than was numbered is clamped
    p.rep.receive(Heartbeat(2, p.rep.ring, MemberState.OPERATIONAL, 1_000_000), p.now)
    assert p.rep._acked == {2: 10}


def join_from(sender: int, ring: RingId, proc: tuple[int, ...], fail: tuple[int, ...] = (),
              ) -> Join:
    return Join(sender=sender, ring=ring, max_seq=ring.seq, proc=proc, fail=fail, infos=(),
                delivered=0, log=())


def test_join_sets_are_bounded_and_our_join_stays_encodable() -> None:
    m = mb.Membership(1, (1, 2), TIMING, 0, (), 0)
    peer_ring = RingId(2, 5)
    # each JOIN is valid on the wire (384 ids at most), but together they exceed it
    for k in range(10):
        ids = tuple(range(1000 + k * 384, 1000 + (k + 1) * 384))
        m.receive(join_from(2, peer_ring, ids[:200], ids[200:]), 10 + k)
    assert len(m._proc | m._fail) <= mb.MAX_NODES
    assert m.stats["oversized_joins"] >= 9
    for out in m.take_outgoing():
        encode(out.message)  # before the bound: EncodeError (tuple of > 384 items)


def test_oversized_join_does_not_stop_an_engine() -> None:
    """The same flood through sealed datagrams: the engine (the daemon's pump) goes on."""
    key = bytes(range(32))
    engine = NodeEngine(1, CONFIG, random.Random("hardening"), StoredState(), 0, key)
    t = CONFIG.totem
    peer = SecureChannel(key, t.crypto_cipher, t.crypto_hash, 2, 1, b"\x02" * 8)
    for k in range(10):
        ids = tuple(range(1000 + k * 384, 1000 + (k + 1) * 384))
        data = peer.seal(encode(join_from(2, RingId(2, 5), ids)))
        engine.receive_datagram(data, None, 10 + k)  # raised EncodeError before
        engine.handle_timer(10 + k)
    assert engine.membership.stats["oversized_joins"] >= 9
    engine.datagrams_to_send(20)
