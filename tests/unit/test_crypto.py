"""pyquorum.wire.crypto: sealing, authentication, replay window, and open never raising."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyquorum.wire.crypto import (
    HEADER_SIZE,
    MAX_PLAINTEXT_BYTES,
    WINDOW,
    Opened,
    Rejected,
    RejectReason,
    SecureChannel,
)

KEY = bytes(range(64))
OTHER_KEY = bytes(range(1, 65))
MODES = [
    ("aes256", "sha256"),
    ("aes192", "sha1"),
    ("aes128", "sha512"),
    ("none", "md5"),
    ("none", "sha1"),
    ("none", "sha256"),
    ("none", "sha384"),
    ("none", "sha512"),
    ("none", "none"),
]
PROTECTED = [m for m in MODES if m != ("none", "none")]
mode_ids = [f"{c}-{h}" for c, h in MODES]
protected_ids = [f"{c}-{h}" for c, h in PROTECTED]


def channel(
    node_id: int,
    mode: tuple[str, str] = ("aes256", "sha256"),
    *,
    key: bytes = KEY,
    incarnation: int = 1,
    nonce: bytes | None = None,
    allowed: frozenset[int] | None = None,
) -> SecureChannel:
    boot_nonce = nonce if nonce is not None else bytes([node_id % 256, incarnation % 256]) * 4
    return SecureChannel(key, mode[0], mode[1], node_id, incarnation, boot_nonce, allowed)


def reason(result: Opened | Rejected) -> RejectReason:
    assert isinstance(result, Rejected), result
    assert result.detail
    return result.reason


def accepted(result: Opened | Rejected, plaintext: bytes | None = None) -> bool:
    if plaintext is not None and isinstance(result, Opened):
        assert result.plaintext == plaintext
    return isinstance(result, Opened)


# ------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("mode", MODES, ids=mode_ids)
def test_round_trip_in_every_mode(mode: tuple[str, str]) -> None:
    a, b = channel(1, mode), channel(2, mode)
    for text in [b"", b"heartbeat", bytes(range(256)) * 4]:
        assert b.open(a.seal(text)) == Opened(1, text)
        assert a.open(b.seal(text)) == Opened(2, text)
    assert b.accepted == 3
    assert a.protected == (mode != ("none", "none"))


def test_header_is_clear_and_counter_starts_at_one() -> None:
    a = channel(7, incarnation=3, nonce=b"ABCDEFGH")
    for expected in (1, 2, 3):
        header = struct.unpack_from(">BBIQ8sQ", a.seal(b"x"))
        assert header == (1, 0x33, 7, 3, b"ABCDEFGH", expected)


def test_aes_encrypts_and_keys_differ_per_sender_boot() -> None:
    text = b"secret votequorum state" * 2
    sealed = [channel(n, incarnation=i).seal(text) for n in (1, 2) for i in (1, 2)]
    bodies = {s[HEADER_SIZE:] for s in sealed}
    assert len(bodies) == 4  # same counter, same plaintext: different key each time
    assert all(text not in s for s in sealed)


def test_hmac_mode_sends_plaintext_with_tag() -> None:
    sealed = channel(1, ("none", "sha256")).seal(b"hello")
    assert sealed[HEADER_SIZE : HEADER_SIZE + 5] == b"hello"
    assert len(sealed) == HEADER_SIZE + 5 + 32


def test_seal_refuses_plaintext_that_cannot_fit_a_datagram() -> None:
    a = channel(1, ("none", "sha512"))
    assert len(a.seal(bytes(MAX_PLAINTEXT_BYTES))) <= 65_507
    with pytest.raises(ValueError):
        a.seal(bytes(MAX_PLAINTEXT_BYTES + 1))


# --------------------------------------------------------------------- authentication
@pytest.mark.parametrize("mode", PROTECTED, ids=protected_ids)
def test_any_tampered_byte_fails_authentication(mode: tuple[str, str]) -> None:
    a, b = channel(1, mode), channel(2, mode)
    sealed = a.seal(b"payload!")
    for pos in range(2, len(sealed)):  # 0, 1: version and mode, checked before the tag
        forged = bytearray(sealed)
        forged[pos] ^= 0x80
        assert reason(b.open(bytes(forged))) is RejectReason.AUTH_FAILED, pos
    assert b.stats[RejectReason.AUTH_FAILED] == len(sealed) - 2
    assert accepted(b.open(sealed), b"payload!")  # the forgeries changed nothing


@pytest.mark.parametrize("mode", MODES, ids=mode_ids)
def test_truncated_datagrams(mode: tuple[str, str]) -> None:
    a, b = channel(1, mode), channel(2, mode)
    sealed = a.seal(b"")
    for cut in range(len(sealed)):
        assert reason(b.open(sealed[:cut])) is RejectReason.TRUNCATED
    assert b.stats[RejectReason.TRUNCATED] == len(sealed)
    assert accepted(b.open(sealed))


def test_version_and_mode_mismatch() -> None:
    b = channel(2)
    sealed = channel(1).seal(b"x")
    assert reason(b.open(b"\x02" + sealed[1:])) is RejectReason.BAD_VERSION
    for other in [("aes128", "sha256"), ("aes256", "sha1"), ("none", "sha256"), ("none", "none")]:
        assert reason(b.open(channel(1, other).seal(b"x"))) is RejectReason.BAD_MODE
        assert reason(channel(2, other).open(sealed)) is RejectReason.BAD_MODE


@pytest.mark.parametrize("mode", PROTECTED, ids=protected_ids)
def test_wrong_key_or_foreign_cluster_fails(mode: tuple[str, str]) -> None:
    b = channel(2, mode)
    foreign = channel(1, mode, key=OTHER_KEY)
    for _ in range(3):
        assert reason(b.open(foreign.seal(b"join"))) is RejectReason.AUTH_FAILED
    assert reason(b.open(channel(3, mode, key=KEY[:16]).seal(b"j"))) is RejectReason.AUTH_FAILED
    assert b.accepted == 0


def test_own_node_id_and_unknown_senders_are_rejected() -> None:
    b = channel(2, allowed=frozenset({1, 2, 3}))
    twin = channel(2, incarnation=9)
    assert reason(b.open(twin.seal(b"x"))) is RejectReason.SELF
    assert reason(b.open(channel(4).seal(b"x"))) is RejectReason.UNKNOWN_SENDER
    assert accepted(b.open(channel(3).seal(b"x")))


# ---------------------------------------------------------------------- replay window
@pytest.mark.parametrize("mode", MODES, ids=mode_ids)
def test_replay_is_rejected(mode: tuple[str, str]) -> None:
    a, b = channel(1, mode), channel(2, mode)
    sealed = a.seal(b"once")
    assert accepted(b.open(sealed))
    assert reason(b.open(sealed)) is RejectReason.REPLAYED
    assert b.stats[RejectReason.REPLAYED] == 1


def test_out_of_order_within_window_is_accepted_once_each() -> None:
    a, b = channel(1), channel(2)
    sealed = [a.seal(bytes([i % 256])) for i in range(WINDOW)]
    order = list(reversed(sealed[::2])) + sealed[1::2]
    for s in order:
        assert accepted(b.open(s))
    for s in order:
        assert reason(b.open(s)) is RejectReason.REPLAYED
    assert b.accepted == WINDOW


def test_older_than_window_is_replayed() -> None:
    a, b = channel(1), channel(2)
    sealed = [a.seal(b"") for _ in range(WINDOW + 2)]
    assert accepted(b.open(sealed[-1]))  # counter WINDOW + 2
    assert reason(b.open(sealed[0])) is RejectReason.REPLAYED  # age WINDOW + 1
    assert reason(b.open(sealed[1])) is RejectReason.REPLAYED  # age WINDOW
    assert accepted(b.open(sealed[2]))  # age WINDOW - 1: the oldest still in the window


def test_large_jump_clears_window() -> None:
    a, b = channel(1), channel(2)
    first = a.seal(b"")
    assert accepted(b.open(first))
    for _ in range(5000):
        a.seal(b"")
    assert accepted(b.open(a.seal(b"")))
    assert reason(b.open(first)) is RejectReason.REPLAYED


@pytest.mark.parametrize("mode", MODES, ids=mode_ids)
def test_restart_with_higher_incarnation(mode: tuple[str, str]) -> None:
    b = channel(2, mode)
    old = channel(1, mode, incarnation=5)
    old_sealed = [old.seal(b"old") for _ in range(10)]
    assert accepted(b.open(old_sealed[5]))
    new = channel(1, mode, incarnation=6)
    assert accepted(b.open(new.seal(b"new")), b"new")  # counter 1 again: a new record
    assert accepted(b.open(new.seal(b"new")))
    assert reason(b.open(old_sealed[7])) is RejectReason.STALE_INCARNATION
    same_inc_other_boot = channel(1, mode, incarnation=6, nonce=b"otherbt!")
    assert reason(b.open(same_inc_other_boot.seal(b"x"))) is RejectReason.STALE_INCARNATION
    assert b.stats[RejectReason.STALE_INCARNATION] == 2


@pytest.mark.parametrize("mode", PROTECTED, ids=protected_ids)
def test_forged_packets_do_not_move_the_replay_state(mode: tuple[str, str]) -> None:
    a, b = channel(1, mode, incarnation=3), channel(2, mode)
    sealed = [a.seal(bytes([i])) for i in range(5)]
    assert accepted(b.open(sealed[0]))
    far = bytearray(sealed[1])
    struct.pack_into(">Q", far, HEADER_SIZE - 8, 10 * WINDOW)  # the counter
    assert reason(b.open(bytes(far))) is RejectReason.AUTH_FAILED
    restart = bytearray(sealed[1])
    struct.pack_into(">Q", restart, 6, 4)  # claims incarnation 4, a restart
    assert reason(b.open(bytes(restart))) is RejectReason.AUTH_FAILED
    for s in sealed[1:]:
        assert accepted(b.open(s))  # the window neither jumped nor was replaced


def test_unprotected_mode_still_checks_replays() -> None:
    a = SecureChannel(None, "none", "none", 1, 1, b"12345678")
    b = SecureChannel(None, "none", "none", 2, 1, b"87654321")
    sealed = a.seal(b"plain")
    assert sealed.endswith(b"plain")
    assert accepted(b.open(sealed), b"plain")
    assert reason(b.open(sealed)) is RejectReason.REPLAYED


# ------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    ("key", "cipher", "hash_"),
    [
        (KEY, "aes256", "none"),  # Corosync refuses a cipher without a hash
        (None, "aes256", "sha256"),
        (None, "none", "sha1"),
        (KEY[:15], "none", "sha256"),
        (KEY, "aes512", "sha256"),
        (KEY, "aes256", "sha3"),
        (KEY, "AES256", "sha256"),
    ],
)
def test_invalid_configuration_raises(key: bytes | None, cipher: str, hash_: str) -> None:
    with pytest.raises(ValueError):
        SecureChannel(key, cipher, hash_, 1, 1, b"12345678")


@pytest.mark.parametrize(
    ("node_id", "incarnation", "nonce"),
    [(-1, 1, b"12345678"), (1 << 32, 1, b"12345678"), (1, -1, b"12345678"), (1, 1, b"1234567")],
)
def test_invalid_identity_raises(node_id: int, incarnation: int, nonce: bytes) -> None:
    with pytest.raises(ValueError):
        SecureChannel(KEY, "aes256", "sha256", node_id, incarnation, nonce)


def test_stats_are_read_only() -> None:
    b = channel(2)
    assert set(b.stats) == set(RejectReason)
    assert all(count == 0 for count in b.stats.values())
    with pytest.raises(TypeError):
        b.stats[RejectReason.REPLAYED] = 5  # type: ignore[index]


# ----------------------------------------------------------------------- open never raises
@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_open_of_random_bytes_never_raises(data: bytes) -> None:
    for mode in (("aes128", "sha1"), ("none", "sha256"), ("none", "none")):
        assert isinstance(channel(2, mode).open(data), Opened | Rejected)


@settings(max_examples=300)
@given(st.sampled_from(MODES), st.binary(max_size=120), st.data())
def test_open_of_mutated_datagrams_never_raises(
    mode: tuple[str, str], text: bytes, data: st.DataObject
) -> None:
    a, b = channel(1, mode), channel(2, mode)
    sealed = bytearray(a.seal(text))
    pos = data.draw(st.integers(0, len(sealed) - 1))
    sealed[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(sealed)))
    result = b.open(bytes(sealed[:cut]))
    assert isinstance(result, Opened | Rejected)
    assert b.accepted + sum(b.stats.values()) == 1


@settings(max_examples=300)
@given(
    st.sampled_from(MODES),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**64 - 1),
    st.binary(min_size=8, max_size=8),
    st.integers(0, 2**64 - 1),
    st.binary(max_size=80),
)
def test_open_of_well_formed_headers_never_raises(
    mode: tuple[str, str], sender: int, inc: int, nonce: bytes, counter: int, body: bytes
) -> None:
    b = channel(2, mode)
    mode_byte = channel(1, mode).seal(b"")[1]
    header = struct.pack(">BBIQ8sQ", 1, mode_byte, sender, inc, nonce, counter)
    result = b.open(header + body)
    if mode != ("none", "none"):
        assert isinstance(result, Rejected)
    else:
        assert isinstance(result, Opened | Rejected)
