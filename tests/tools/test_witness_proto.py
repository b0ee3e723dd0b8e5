"""pyquorum-witness, sans I/O: codec, authenticated sessions, the ffsplit decision and
the rule that a previous winner releases the vote before anyone else gets it.

Everything here is pure: byte strings in, messages out; the engine takes ``now_ms``.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyquorum.tools import witness_proto as wp
from pyquorum.tools.witness_proto import (
    Challenge,
    ClientSession,
    ConnectionReplaced,
    ConnectionTimedOut,
    Error,
    Heartbeat,
    HeartbeatReply,
    Hello,
    HoldReleased,
    MembershipReport,
    NodeReport,
    PeerMisbehaved,
    ProtocolError,
    ReleaseAwaited,
    ServerSession,
    Vote,
    VoteApplied,
    VoteDecided,
    VoteInfo,
    Welcome,
    WitnessEngine,
    decide,
    decode_message,
    encode_message,
)
from pyquorum.types import RingId

KEY = bytes(range(64))
OTHER_KEY = bytes(range(1, 65))
SNONCE = b"S" * 16
CNONCE = b"C" * 16


# ====================================================================== codec
MESSAGES = [
    Challenge(1, SNONCE),
    Hello(1, "clu", 7, CNONCE),
    Hello(1, "ü" * 127, 0xFFFFFFFF, CNONCE),
    Welcome(250, 1000),
    MembershipReport(1, RingId(1, 0x9D), (1, 2, 3), True),
    MembershipReport(0xFFFFFFFF, None, (), False),
    MembershipReport(3, RingId(0xFFFFFFFF, 2**64 - 1), tuple(range(1, 4097)), False),
    Heartbeat(0),
    Heartbeat(2**64 - 1),
    HeartbeatReply(5),
    VoteInfo(1, RingId(1, 4), Vote.ACK),
    VoteInfo(2, None, Vote.NACK),
    VoteApplied(9, RingId(2, 8), Vote.NACK),
    Error(3, "bad report"),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_codec_round_trip(msg: wp.Message) -> None:
    t, body = encode_message(msg)
    assert decode_message(t, body) == msg


@settings(derandomize=True, max_examples=200)
@given(seq=st.integers(0, 2**32 - 1),
       rep=st.integers(1, 2**32 - 1), rseq=st.integers(0, 2**64 - 1),
       members=st.sets(st.integers(1, 2**32 - 1), min_size=1, max_size=50),
       quorate=st.booleans())
def test_membership_report_round_trip(seq: int, rep: int, rseq: int, members: set[int],
                                      quorate: bool) -> None:
    msg = MembershipReport(seq, RingId(rep, rseq), tuple(sorted(members)), quorate)
    assert decode_message(*encode_message(msg)) == msg


@settings(derandomize=True, max_examples=300)
@given(t=st.integers(0, 12), body=st.binary(max_size=64))
def test_decoding_garbage_raises_only_protocol_error(t: int, body: bytes) -> None:
    try:
        decode_message(t, body)
    except ProtocolError as e:
        assert e.reason == "malformed"


@pytest.mark.parametrize("t, body", [
    (4, encode_message(MembershipReport(1, RingId(1, 1), (1, 2), False))[1] + b"x"),
    (4, encode_message(MembershipReport(1, RingId(1, 1), (1, 2), False))[1][:-1]),
    (4, bytes(4) + b"\x00" + bytes(12) + b"\x00" + (1).to_bytes(4, "big") + (1).to_bytes(4, "big")),
    (4, bytes(4) + b"\x01" + bytes(12) + b"\x00" + (2).to_bytes(4, "big")
     + (2).to_bytes(4, "big") + (1).to_bytes(4, "big")),       # members not ascending
    (4, bytes(4) + b"\x01" + bytes(12) + b"\x02" + bytes(4)),  # bad quorate flag
    (7, bytes(4) + b"\x01" + bytes(12) + b"\x03"),             # bad vote
    (7, bytes(4) + b"\x02" + bytes(12) + b"\x01"),             # bad ring flag
    (2, (1).to_bytes(2, "big") + bytes(4) + (1).to_bytes(2, "big") + b"c" + CNONCE),  # node 0
    (2, (1).to_bytes(2, "big") + (1).to_bytes(4, "big") + bytes(2) + CNONCE),  # empty name
    (9, bytes(2) + (2).to_bytes(2, "big") + b"\xff\xfe"),      # not UTF-8
    (42, b""),
])
def test_malformed_bodies_are_rejected(t: int, body: bytes) -> None:
    with pytest.raises(ProtocolError) as err:
        decode_message(t, body)
    assert err.value.reason == "malformed"


def test_encoder_refuses_out_of_range_values() -> None:
    with pytest.raises(ValueError):
        encode_message(MembershipReport(1, RingId(1, 1), (2, 1), False))
    with pytest.raises(ValueError):
        encode_message(Hello(1, "", 1, CNONCE))
    with pytest.raises(ValueError):
        encode_message(Heartbeat(2**64))


# ====================================================================== sessions
def handshake(key_server: bytes = KEY, key_client: bytes = KEY,
              snonce: bytes = SNONCE, cnonce: bytes = CNONCE
              ) -> tuple[ServerSession, ClientSession]:
    """A server and a client session after Challenge, Hello and Welcome."""
    server = ServerSession(key_server, snonce)
    client = ClientSession(key_client, cluster_name="c1", node_id=3, nonce=cnonce)
    assert client.feed(server.take_output()) == [Challenge(1, snonce)]
    assert server.feed(client.take_output()) == [Hello(1, "c1", 3, cnonce)]
    server.send(Welcome(100, 400))
    assert client.feed(server.take_output()) == [Welcome(100, 400)]
    return server, client


def test_session_round_trip_both_directions() -> None:
    server, client = handshake()
    client.send(MembershipReport(1, RingId(1, 8), (1, 3), True))
    client.send(Heartbeat(1))
    data = client.take_output()
    # byte at a time: frames are reassembled
    got: list[wp.Message] = []
    for i in range(len(data)):
        got += server.feed(data[i:i + 1])
    assert got == [MembershipReport(1, RingId(1, 8), (1, 3), True), Heartbeat(1)]
    server.send(HeartbeatReply(1))
    server.send(VoteInfo(1, RingId(1, 8), Vote.ACK))
    assert client.feed(server.take_output()) == [HeartbeatReply(1),
                                                 VoteInfo(1, RingId(1, 8), Vote.ACK)]


def test_tampered_frame_is_rejected() -> None:
    server, client = handshake()
    client.send(Heartbeat(1))
    frame = bytearray(client.take_output())
    frame[6] ^= 0x01  # inside the body
    with pytest.raises(ProtocolError) as err:
        server.feed(bytes(frame))
    assert err.value.reason == "bad_mac"
    with pytest.raises(ProtocolError):  # the session stays dead
        server.feed(b"")
    assert server.failed


def test_tampered_mac_is_rejected() -> None:
    server, client = handshake()
    client.send(Heartbeat(1))
    frame = bytearray(client.take_output())
    frame[-1] ^= 0x80
    with pytest.raises(ProtocolError) as err:
        server.feed(bytes(frame))
    assert err.value.reason == "bad_mac"


def test_wrong_key_is_rejected_by_both_sides() -> None:
    server = ServerSession(KEY, SNONCE)
    client = ClientSession(OTHER_KEY, cluster_name="c1", node_id=3, nonce=CNONCE)
    with pytest.raises(ProtocolError) as err:
        client.feed(server.take_output())  # the challenge does not verify
    assert err.value.reason == "bad_mac"
    # a client with the wrong key that ignores the challenge's MAC still fails at the hello
    fake = ClientSession(OTHER_KEY, cluster_name="c1", node_id=3, nonce=CNONCE)
    fake._recv_key = fake._send_key = b"x" * 32
    fake._send_with(fake._send_key, Hello(1, "c1", 3, CNONCE))
    with pytest.raises(ProtocolError) as err:
        ServerSession(KEY, SNONCE).feed(fake.take_output())
    assert err.value.reason == "bad_mac"


def test_truncated_frame_is_reported_at_eof() -> None:
    server, client = handshake()
    client.send(MembershipReport(1, RingId(1, 8), (1, 3), False))
    data = client.take_output()
    assert server.feed(data[:-5]) == []
    with pytest.raises(ProtocolError) as err:
        server.eof()
    assert err.value.reason == "truncated"


def test_clean_eof_between_frames_is_fine() -> None:
    server, client = handshake()
    client.send(Heartbeat(1))
    assert server.feed(client.take_output()) == [Heartbeat(1)]
    server.eof()


def test_oversized_and_undersized_frames_are_rejected_from_the_header() -> None:
    server, _ = handshake()
    with pytest.raises(ProtocolError) as err:
        server.feed(struct.pack(">I", wp.DEFAULT_MAX_FRAME_BYTES + 1))
    assert err.value.reason == "too_large"
    server2, _ = handshake()
    with pytest.raises(ProtocolError) as err:
        server2.feed(struct.pack(">I", 3) + b"abc")
    assert err.value.reason == "malformed"


def test_replayed_session_is_refused() -> None:
    """Everything a client sent in one session, replayed on a new connection (new
    server nonce) fails at the hello."""
    # record a whole session from the client's side
    s2 = ServerSession(KEY, SNONCE)
    c2 = ClientSession(KEY, cluster_name="c1", node_id=3, nonce=CNONCE)
    c2.feed(s2.take_output())
    recorded_hello = c2.take_output()
    c2_report = MembershipReport(2, RingId(1, 8), (1, 3), False)
    s2.feed(recorded_hello)
    s2.send(Welcome(100, 400))
    c2.feed(s2.take_output())
    c2.send(c2_report)
    recorded = recorded_hello + c2.take_output()
    fresh = ServerSession(KEY, b"N" * 16)
    fresh.take_output()
    with pytest.raises(ProtocolError) as err:
        fresh.feed(recorded)
    assert err.value.reason == "bad_mac"


def test_replayed_or_reordered_frame_within_a_session_is_refused() -> None:
    server, client = handshake()
    client.send(Heartbeat(1))
    first = client.take_output()
    assert server.feed(first) == [Heartbeat(1)]
    with pytest.raises(ProtocolError) as err:
        server.feed(first)  # the same frame again: sequence 1 expected, 0 in the MAC
    assert err.value.reason == "bad_mac"

    server, client = handshake()
    client.send(Heartbeat(1))
    a = client.take_output()
    client.send(Heartbeat(2))
    b = client.take_output()
    with pytest.raises(ProtocolError):
        server.feed(b + a)


def test_reflected_frame_is_refused() -> None:
    """A server frame sent back to the server fails (direction in the MAC)."""
    server, _ = handshake()
    server.send(HeartbeatReply(1))
    reflected = server.take_output()
    with pytest.raises(ProtocolError):
        server.feed(reflected)


def test_frame_with_valid_mac_but_bad_body_is_malformed() -> None:
    server, _ = handshake()
    key = wp._session_key(KEY, SNONCE, CNONCE)
    payload = bytes([5]) + b"\x00\x01"  # a heartbeat needs 8 bytes
    mac = hmac.new(key, b"C2S" + (1).to_bytes(8, "big") + payload, hashlib.sha256).digest()
    with pytest.raises(ProtocolError) as err:
        server.feed(struct.pack(">I", len(payload) + 32) + payload + mac)
    assert err.value.reason == "malformed"


def test_first_frame_must_be_hello_and_server_messages_are_refused_from_a_client() -> None:
    server = ServerSession(KEY, SNONCE)
    client = ClientSession(KEY, cluster_name="c1", node_id=3, nonce=CNONCE)
    client.feed(server.take_output())
    client.take_output()  # drop the hello
    client.send(Heartbeat(1))
    with pytest.raises(ProtocolError) as err:
        server.feed(client.take_output())
    assert err.value.reason == "unexpected"

    server, client = handshake()
    key = wp._session_key(KEY, SNONCE, CNONCE)
    t, body = encode_message(VoteInfo(1, RingId(1, 1), Vote.ACK))
    payload = bytes([t]) + body
    mac = hmac.new(key, b"C2S" + (1).to_bytes(8, "big") + payload, hashlib.sha256).digest()
    with pytest.raises(ProtocolError) as err:
        server.feed(struct.pack(">I", len(payload) + 32) + payload + mac)
    assert err.value.reason == "unexpected"


def test_client_needs_welcome_before_anything_else() -> None:
    server = ServerSession(KEY, SNONCE)
    client = ClientSession(KEY, cluster_name="c1", node_id=3, nonce=CNONCE)
    client.feed(server.take_output())
    server.feed(client.take_output())
    server.send(VoteInfo(1, RingId(1, 1), Vote.ACK))
    with pytest.raises(ProtocolError) as err:
        client.feed(server.take_output())
    assert err.value.reason == "unexpected"


def test_sessions_refuse_to_send_the_other_sides_messages() -> None:
    server, client = handshake()
    with pytest.raises(TypeError):
        client.send(VoteInfo(1, None, Vote.ACK))
    with pytest.raises(TypeError):
        server.send(Heartbeat(1))


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        ServerSession(b"short", SNONCE)
    assert wp.load_key(b"k" * 16) == b"k" * 16


# ====================================================================== decide (table)
R = RingId


def reps(*rows: tuple[int, RingId, tuple[int, ...]]) -> dict[int, NodeReport]:
    return {n: NodeReport(n, ring, members) for n, ring, members in rows}


DECIDE_TABLE = [
    # name, reports, previous winner, winner members (None: no winner), stable, reason
    ("3 vs 1",
     reps((1, R(1, 8), (1,)), (2, R(2, 8), (2, 3, 4)), (3, R(2, 8), (2, 3, 4)),
          (4, R(2, 8), (2, 3, 4))),
     (), (2, 3, 4), True, "more members"),
    ("2 vs 2, lowest id",
     reps((1, R(1, 8), (1, 2)), (2, R(1, 8), (1, 2)), (3, R(3, 8), (3, 4)),
          (4, R(3, 8), (3, 4))),
     (1, 2, 3, 4), (1, 2), True, "it holds the lowest node id"),
    ("2 vs 2, the previous winner keeps it",
     reps((1, R(1, 12), (1, 2)), (2, R(1, 12), (1, 2)), (3, R(3, 8), (3, 4)),
          (4, R(3, 8), (3, 4))),
     (3, 4), (3, 4), True, "it had the vote before"),
    ("2 vs 2, a node of one half does not report (qnetd: active clients)",
     reps((1, R(1, 8), (1, 2)), (3, R(3, 8), (3, 4)), (4, R(3, 8), (3, 4))),
     (), (3, 4), True, "more members connected to the witness"),
    ("3 (one reporting) vs 2 (both reporting): members count, reporting or not",
     reps((1, R(1, 8), (1, 2, 3)), (4, R(4, 8), (4, 5)), (5, R(4, 8), (4, 5))),
     (), (1, 2, 3), True, "more members"),
    ("a node changing ring: the others still list it in the old ring",
     reps((1, R(1, 8), (1, 2, 3)), (2, R(1, 8), (1, 2, 3)), (3, R(3, 12), (3,))),
     (), None, False, ""),
    ("the same node ring change, once everyone moved",
     reps((1, R(1, 12), (1, 2)), (2, R(1, 12), (1, 2)), (3, R(3, 12), (3,))),
     (), (1, 2), True, "more members"),
    ("members disagree within one ring",
     reps((1, R(1, 8), (1, 2)), (2, R(1, 8), (1, 2, 3))),
     (), None, False, ""),
    ("a lone reporter", reps((2, R(2, 8), (2,))), (1, 2), (2,), True, "the only partition"),
    ("nobody reports", {}, (), None, True, "no node reports a ring"),
]


@pytest.mark.parametrize("name, reports, previous, winner, stable, reason", DECIDE_TABLE,
                         ids=[row[0] for row in DECIDE_TABLE])
def test_decide(name: str, reports: dict[int, NodeReport], previous: tuple[int, ...],
                winner: tuple[int, ...] | None, stable: bool, reason: str) -> None:
    d = decide(reports, previous)
    assert d.stable == stable, d
    assert (d.winner.members if d.winner else None) == winner, d
    if stable:
        assert d.reason == reason


def test_decide_is_independent_of_report_order() -> None:
    rows = [(1, R(1, 8), (1, 2)), (2, R(1, 8), (1, 2)), (3, R(3, 8), (3, 4)),
            (4, R(3, 8), (3, 4))]
    a = decide(reps(*rows), ())
    b = decide(reps(*reversed(rows)), ())
    assert a == b


# ====================================================================== engine
T = 1000     # timeout_ms
G = 500      # release_grace_ms


class Drive:
    """A WitnessEngine with connections named by node id (conn = node id, or a
    reconnection number), and its outputs collected."""

    def __init__(self, quiet: int = 0) -> None:
        self.now = 0
        self.e = WitnessEngine(0, timeout_ms=T, release_grace_ms=G, startup_quiet_ms=quiet)
        self.out: list[wp.WitnessOutput] = []

    def at(self, now: int) -> Drive:
        self.now = now
        return self

    def drain(self) -> list[wp.WitnessOutput]:
        got = []
        while (o := self.e.next_output()) is not None:
            got.append(o)
        self.out += got
        return got

    def votes(self) -> dict[int, tuple[RingId | None, Vote]]:
        """node -> (ring, vote) of the VoteDecided drained now."""
        return {o.node_id: (o.info.ring, o.info.vote) for o in self.drain()
                if isinstance(o, VoteDecided)}

    def connect(self, *nodes: int, cluster: str = "c") -> None:
        for n in nodes:
            self.e.connected(n, cluster, n, self.now)

    def report(self, ring: RingId | None, members: tuple[int, ...], *nodes: int) -> None:
        for n in nodes:
            self.e.reported(n, MembershipReport(1, ring, members if ring else (), False),
                            self.now)

    def apply(self, node: int, conn: int | None = None, cluster: str = "c") -> None:
        info = self.e.last_vote(cluster, node)
        assert info is not None
        self.e.vote_applied(node if conn is None else conn,
                            VoteApplied(info.seq, info.ring, info.vote), self.now)


R12 = R(1, 8)
R1 = R(1, 12)
R2 = R(2, 12)


def test_engine_acks_the_whole_cluster() -> None:
    d = Drive()
    d.connect(1, 2)
    d.report(R12, (1, 2), 1, 2)
    assert d.votes() == {1: (R12, Vote.ACK), 2: (R12, Vote.ACK)}
    assert d.e.holders("c") == {1: R12, 2: R12}


def test_engine_split_one_vs_one_lowest_id_wins_after_nacks_are_applied() -> None:
    d = Drive()
    d.connect(1, 2)
    d.report(R12, (1, 2), 1, 2)
    d.votes()
    d.report(R2, (2,), 2)          # node 2 moved first: unstable (1 still lists 2 in R12)
    assert d.votes() == {}
    d.report(R1, (1,), 1)
    # tie 1 vs 1, both were in the previous winner: lowest id; node 2 held ACK(R12)
    # and is in another ring: it must release before node 1 gets ACK
    assert d.votes() == {2: (R2, Vote.NACK)}
    assert any(isinstance(o, ReleaseAwaited) and o.holders == (2,) for o in d.out)
    d.at(10).apply(2)
    assert d.votes() == {1: (R1, Vote.ACK)}
    assert d.e.holders("c") == {1: R1}


def test_previous_winner_must_release_before_another_partition_gets_ack() -> None:
    """Node 1 alone held the vote; nodes 2 and 3 come up in their own ring (bigger)."""
    d = Drive()
    d.connect(1)
    d.report(R1, (1,), 1)
    assert d.votes() == {1: (R1, Vote.ACK)}
    r23 = R(2, 16)
    d.at(100).connect(2, 3)
    d.report(r23, (2, 3), 2, 3)
    assert d.votes() == {1: (R1, Vote.NACK)}      # no ACK yet for 2 and 3
    assert d.e.last_vote("c", 2) is None
    # a VoteApplied for an older vote does not release
    d.e.vote_applied(1, VoteApplied(1, R1, Vote.ACK), 110)
    assert d.votes() == {}
    d.at(120).apply(1)
    assert d.votes() == {2: (r23, Vote.ACK), 3: (r23, Vote.ACK)}
    assert any(isinstance(o, HoldReleased) and o.how == "nack-applied" for o in d.out)


def test_previous_winner_that_vanishes_is_released_after_timeout_plus_grace() -> None:
    d = Drive()
    d.connect(1)
    d.report(R1, (1,), 1)
    d.votes()
    r23 = R(2, 16)
    d.at(300).connect(2, 3)
    d.report(r23, (2, 3), 2, 3)
    assert d.votes() == {1: (R1, Vote.NACK)}
    # node 1 never answers and its heartbeats stop; 2 and 3 keep talking
    for t in range(400, T + 1, 200):
        d.e.heard(2, t)
        d.e.heard(3, t)
    assert d.e.next_deadline() == T  # node 1 last heard at 0
    d.e.tick(T)
    out = d.drain()
    assert ConnectionTimedOut(1, "c", 1) in out
    assert not [o for o in out if isinstance(o, VoteDecided)]
    assert d.e.next_deadline() == T + G
    d.e.heard(2, T + G - 1)
    d.e.heard(3, T + G - 1)
    d.e.tick(T + G - 1)
    assert d.votes() == {}
    d.e.tick(T + G)
    assert d.votes() == {2: (r23, Vote.ACK), 3: (r23, Vote.ACK)}


def test_node_that_reports_no_daemon_is_released_after_grace() -> None:
    d = Drive()
    d.connect(1, 2)
    d.report(R12, (1, 2), 1, 2)
    d.votes()
    d.at(100).report(None, (), 2)        # node 2's daemon died; its agent is still there
    d.report(R1, (1,), 1)
    assert d.votes() == {}               # node 2 held ACK(R12): wait
    d.e.heard(1, 100 + G - 1)
    d.e.heard(2, 100 + G - 1)
    d.e.tick(100 + G - 1)
    assert d.votes() == {}
    d.e.tick(100 + G)
    assert d.votes() == {1: (R1, Vote.ACK)}


def test_tie_keeps_previous_winner() -> None:
    d = Drive()
    r34 = R(3, 8)
    d.connect(3, 4)
    d.report(r34, (3, 4), 3, 4)
    assert d.votes() == {3: (r34, Vote.ACK), 4: (r34, Vote.ACK)}
    d.at(50).connect(1, 2)
    d.report(R12, (1, 2), 1, 2)
    assert d.votes() == {1: (R12, Vote.NACK), 2: (R12, Vote.NACK)}
    assert d.e.chosen("c") is not None and d.e.chosen("c").members == (3, 4)  # type: ignore[union-attr]


def test_node_changing_ring_into_the_winner_is_not_in_the_way() -> None:
    """Node 3 held ACK for ring A and joins ring B with the others: it gets ACK(B)
    without waiting (its vote counts only on itself, now in B)."""
    d = Drive()
    ra, rb = R(1, 8), R(1, 12)
    d.connect(1, 2, 3)
    d.report(ra, (1, 2, 3), 1, 2, 3)
    d.votes()
    d.at(10).report(rb, (1, 2, 3), 1, 2, 3)
    assert d.votes() == {1: (rb, Vote.ACK), 2: (rb, Vote.ACK), 3: (rb, Vote.ACK)}


def test_unreporting_member_of_the_winner_is_in_the_way_only_if_it_held_another_ring() -> None:
    d = Drive()
    ra = R(1, 8)
    d.connect(1, 2)
    d.report(ra, (1, 2), 1, 2)
    d.votes()
    d.at(10).e.disconnected(2, 10)      # node 2's agent restarts: its hold is for ring ra
    d.report(ra, (1, 2), 1)
    assert d.votes() == {}               # nothing new for node 1; no wait for node 2
    d.at(20).connect(2)
    d.report(ra, (1, 2), 2)
    assert d.votes() == {2: (ra, Vote.ACK)}


def test_reconnection_replaces_the_old_connection() -> None:
    d = Drive()
    d.connect(1)
    d.report(R1, (1,), 1)
    d.votes()
    d.at(5).e.connected(101, "c", 1, 5)
    out = d.drain()
    assert ConnectionReplaced(1, "c", 1) in out
    d.e.reported(101, MembershipReport(2, R1, (1,), False), 6)
    assert {o.conn: o.info.vote for o in d.drain() if isinstance(o, VoteDecided)} == {
        101: Vote.ACK}


def test_report_without_the_reporter_is_misbehaviour() -> None:
    d = Drive()
    d.connect(1)
    d.report(R(2, 8), (2, 3), 1)
    out = d.drain()
    assert [type(o) for o in out if isinstance(o, PeerMisbehaved)] == [PeerMisbehaved]
    assert d.e.connection_count() == 0


def test_clusters_are_independent() -> None:
    d = Drive()
    d.e.connected(1, "a", 1, 0)
    d.e.connected(2, "b", 1, 0)
    d.e.reported(1, MembershipReport(1, R1, (1,), False), 0)
    d.e.reported(2, MembershipReport(1, R1, (1,), False), 0)
    got = {(o.cluster, o.node_id): o.info.vote for o in d.drain()
           if isinstance(o, VoteDecided)}
    assert got == {("a", 1): Vote.ACK, ("b", 1): Vote.ACK}
    d.e.disconnected(1, 1)
    d.e.disconnected(2, 1)
    d.e.tick(1 + T + G)
    assert d.e.clusters() == []


def test_startup_quiet_period_delays_acks_but_not_nacks() -> None:
    d = Drive(quiet=700)
    d.connect(1, 2)
    d.report(R1, (1,), 1)
    d.report(R2, (2,), 2)
    assert d.votes() == {2: (R2, Vote.NACK)}
    assert d.e.next_deadline() == 700
    d.e.heard(1, 699)
    d.e.heard(2, 699)
    d.e.tick(699)
    assert d.votes() == {}
    d.e.tick(700)
    assert d.votes() == {1: (R1, Vote.ACK)}


def test_exactly_one_partition_holds_the_vote_through_a_sequence() -> None:
    """A scripted history with partitions forming and healing: at every step the nodes
    that were sent an ACK they may still be using lie in one ring."""
    d = Drive()
    steps: list[tuple[int, RingId | None, tuple[int, ...], tuple[int, ...]]] = [
        (0, R(1, 4), (1, 2, 3, 4), (1, 2, 3, 4)),
        (10, R(3, 8), (3, 4), (3, 4)),
        (20, R(1, 8), (1, 2), (1, 2)),
        (30, R(1, 12), (1, 2, 3), (1, 2, 3)),
        (40, R(4, 12), (4,), (4,)),
        (50, R(2, 16), (2, 3), (2, 3)),
        (60, R(1, 16), (1,), (1,)),
        (70, R(1, 20), (1, 2, 3, 4), (1, 2, 3, 4)),
    ]
    d.connect(1, 2, 3, 4)
    acked: dict[int, RingId | None] = {}
    for now, ring, members, who in steps:
        d.at(now).report(ring, members, *who)
        for _ in range(4):  # agents apply NACKs as they come
            for node, (r, vote) in d.votes().items():
                if vote == Vote.ACK:
                    acked[node] = r
                else:
                    acked.pop(node, None)
                    d.apply(node)
            holders = {r for r in acked.values()}
            assert len(holders) <= 1, (now, acked)
    assert set(acked) == {1, 2, 3, 4}
