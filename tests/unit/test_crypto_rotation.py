"""SecureChannel with two keys: the authkey rotation primitives (add/use/drop)."""

from __future__ import annotations

import pytest

from pyquorum.wire.crypto import Opened, Rejected, RejectReason, SecureChannel

OLD, NEW, THIRD = b"o" * 32, b"n" * 32, b"t" * 32


@pytest.mark.parametrize("mode", [("aes256", "sha256"), ("none", "sha256")])
def test_both_keys_open_and_the_send_key_seals(mode: tuple[str, str]) -> None:
    a = SecureChannel(OLD, *mode, 1, 1, b"aaaaaaaa")
    b = SecureChannel(OLD, *mode, 2, 1, b"bbbbbbbb")
    old_fp = a.send_key
    new_fp = b.add_key(NEW)
    assert b.keys == (old_fp, new_fp) and b.send_key == old_fp
    assert isinstance(b.open(a.seal(b"under old")), Opened)
    a.add_key(NEW)
    a.use_key(new_fp)
    assert b.open(a.seal(b"under new")) == Opened(1, b"under new")  # same boot, other key
    assert isinstance(b.open(a.seal(b"new again")), Opened)
    b.use_key(new_fp)
    b.drop_keys()
    assert b.keys == (new_fp,)
    stale = SecureChannel(OLD, *mode, 3, 1, b"cccccccc")
    rejected = b.open(stale.seal(b"old key"))
    assert isinstance(rejected, Rejected) and rejected.reason == RejectReason.AUTH_FAILED


def test_fingerprints_name_keys_without_revealing_them() -> None:
    ch = SecureChannel(OLD, "aes256", "sha256", 1, 1, b"aaaaaaaa")
    fp = ch.key_fingerprint(OLD)
    assert fp == ch.send_key and fp != ch.key_fingerprint(NEW)
    assert fp.to_bytes(8, "big") not in OLD
    assert ch.add_key(OLD) == fp and ch.keys == (fp,)  # adding the same key is a no-op


def test_limits_and_misuse() -> None:
    ch = SecureChannel(OLD, "aes256", "sha256", 1, 1, b"aaaaaaaa")
    ch.add_key(NEW)
    with pytest.raises(ValueError, match="drop the old one first"):
        ch.add_key(THIRD)
    with pytest.raises(ValueError, match="unknown key"):
        ch.use_key(ch.key_fingerprint(THIRD))
    with pytest.raises(ValueError, match="at least 16 bytes"):
        SecureChannel(OLD, "aes256", "sha256", 1, 1, b"aaaaaaaa").add_key(b"short")
