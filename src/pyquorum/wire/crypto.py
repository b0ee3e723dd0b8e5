"""Datagram protection: authenticated encryption and a per-sender replay window.

Theory of operation
-------------------
Every datagram starts with a clear header that is authenticated with the body::

    u8 FORMAT_VERSION, u8 mode, u32 sender, u64 incarnation, 8 bytes boot_nonce, u64 counter

``mode`` is ``cipher << 4 | hash`` from ``crypto_cipher`` / ``crypto_hash``, so two
nodes configured differently never accept each other (as in Corosync).

==================  ===========================================================
configuration       body
==================  ===========================================================
cipher aes*         AES-GCM(plaintext, AAD = header), 16-byte tag.  The key is
                    HKDF-SHA256(authkey, salt ``pyquorum-v1``, info = mode,
                    sender, incarnation, boot_nonce): unique per sender boot, and
                    the nonce is the counter, so a (key, nonce) pair never repeats.
cipher none + hash  plaintext, then HMAC-<hash>(HKDF(authkey), header + plaintext).
none + none         plaintext only (no protection; still replay-checked).
==================  ===========================================================

``open`` checks, in order: header (TRUNCATED, BAD_VERSION, BAD_MODE), sender (SELF,
UNKNOWN_SENDER), the replay state (STALE_INCARNATION, REPLAYED), then the tag
(AUTH_FAILED).  Only a datagram whose tag verifies updates the sender's record,
which holds the incarnation, boot nonce, highest counter and a ``WINDOW``-wide
bitmap of recently seen counters (bit k: ``highest - k`` was seen).  A higher
incarnation replaces the record (the sender restarted); a lower one, or the same
one with another boot nonce, is stale.  Records exist only for senders that
proved they hold the key, so forged traffic cannot grow them.

Key rotation.  A channel can hold a second authkey (``add_key``): ``open`` tries
the key that last verified for that sender boot, then the others, so datagrams
sealed under either key are accepted; ``seal`` keeps using the *send key* until
``use_key`` switches it, and ``drop_keys`` forgets the others.  Keys are named by a
``fingerprint`` (HKDF of the key, 8 bytes as an int) that reveals nothing about the
key.  The engine orders the switch across the cluster (``NodeEngine.rotate_key``).

The class is pure: no clock, no randomness (the caller supplies ``incarnation``
and ``boot_nonce``, fresh at every start), no module-level mutable state.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import types
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pyquorum.wire.codec import MAX_DATAGRAM_BYTES

__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAX_OVERHEAD",
    "MAX_PLAINTEXT_BYTES",
    "WINDOW",
    "Opened",
    "RejectReason",
    "Rejected",
    "SecureChannel",
]

FORMAT_VERSION: Final = 1
WINDOW: Final = 1024
"""Counters this far below the highest one seen are still accepted once each."""
MIN_AUTHKEY_BYTES: Final = 16
COUNTER_MAX: Final = 0xFFFF_FFFF_FFFF_FFFF

_HEADER: Final = struct.Struct(">BBIQ8sQ")
_COUNTER: Final = struct.Struct(">Q")
HEADER_SIZE: Final = _HEADER.size
_SALT: Final = b"pyquorum-v1"
_GCM_TAG: Final = 16
_CIPHERS: Final = {"none": (0, 0), "aes128": (1, 16), "aes192": (2, 24), "aes256": (3, 32)}
_HASHES: Final = {"none": 0, "md5": 1, "sha1": 2, "sha256": 3, "sha384": 4, "sha512": 5}
MAX_KEYS: Final = 2
"""Keys a channel holds at once: the send key and one being rotated in or out."""
MAX_OVERHEAD: Final = HEADER_SIZE + 64
"""The most bytes ``seal`` adds to a plaintext (header + an HMAC-SHA512 tag)."""
MAX_PLAINTEXT_BYTES: Final = MAX_DATAGRAM_BYTES - MAX_OVERHEAD
"""The largest plaintext ``seal`` accepts: every sealed datagram fits in one UDP payload."""
_MASK: Final = (1 << WINDOW) - 1


class RejectReason(Enum):
    """Why ``open`` dropped a datagram (the remote peer's fault, or an attack)."""

    TRUNCATED = "truncated"
    BAD_VERSION = "bad version"
    BAD_MODE = "bad mode"
    SELF = "from self"
    UNKNOWN_SENDER = "unknown sender"
    STALE_INCARNATION = "stale incarnation"
    REPLAYED = "replayed"
    AUTH_FAILED = "authentication failed"


@dataclass(frozen=True, slots=True)
class Opened:
    """An authentic, fresh datagram from ``sender``."""

    sender: int
    plaintext: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    """A dropped datagram; ``detail`` is for the log."""

    reason: RejectReason
    detail: str


@dataclass(slots=True)
class _Peer:
    """Replay state (and the derived AEAD) of one authenticated sender."""

    incarnation: int
    boot_nonce: bytes
    highest: int
    seen: int  # bit k set: counter highest - k was accepted
    aead: AESGCM | None
    key: int  # fingerprint of the key that verified this boot's last datagram


@dataclass(slots=True)
class _Key:
    """One authkey and what is derived from it."""

    authkey: bytes
    hmac_key: bytes
    own_aead: AESGCM | None


class SecureChannel:
    """Seals outgoing datagrams of one node and opens those of its peers.

    ``crypto_cipher`` is one of none/aes128/aes192/aes256 and ``crypto_hash`` one of
    none/md5/sha1/sha256/sha384/sha512, as in corosync.conf.  ``authkey`` (at least
    16 bytes) is required unless both are none.  ``incarnation`` and ``boot_nonce``
    (8 bytes) must be fresh at every start of the node.  Raises ``ValueError`` for
    an invalid configuration (a cipher without a hash is refused, as by Corosync).
    """

    def __init__(
        self,
        authkey: bytes | None,
        crypto_cipher: str,
        crypto_hash: str,
        node_id: int,
        incarnation: int,
        boot_nonce: bytes,
        allowed_senders: frozenset[int] | None = None,
    ) -> None:
        if crypto_cipher not in _CIPHERS:
            raise ValueError(f"unknown crypto_cipher {crypto_cipher!r}")
        if crypto_hash not in _HASHES:
            raise ValueError(f"unknown crypto_hash {crypto_hash!r}")
        cipher_code, self._key_bytes = _CIPHERS[crypto_cipher]
        hash_code = _HASHES[crypto_hash]
        if cipher_code and not hash_code:
            raise ValueError(f"crypto_cipher {crypto_cipher} requires a crypto_hash")
        if not 0 <= node_id <= 0xFFFF_FFFF:
            raise ValueError(f"node_id {node_id} out of range")
        if not 0 <= incarnation <= COUNTER_MAX:
            raise ValueError(f"incarnation {incarnation} out of range")
        if not isinstance(boot_nonce, bytes) or len(boot_nonce) != 8:
            raise ValueError("boot_nonce must be 8 bytes")
        protected = bool(cipher_code or hash_code)
        if protected and (authkey is None or len(authkey) < MIN_AUTHKEY_BYTES):
            raise ValueError(f"an authkey of at least {MIN_AUTHKEY_BYTES} bytes is required")
        self._mode = cipher_code << 4 | hash_code
        self._hash_name = crypto_hash if cipher_code == 0 and hash_code else None
        self._tag_size = (
            _GCM_TAG
            if cipher_code
            else (hashlib.new(crypto_hash).digest_size if self._hash_name else 0)
        )
        self.node_id = node_id
        self.incarnation = incarnation
        self.boot_nonce = boot_nonce
        self._allowed = allowed_senders
        self._counter = 0
        self._header_prefix = _HEADER.pack(
            FORMAT_VERSION, self._mode, node_id, incarnation, boot_nonce, 0
        )[: HEADER_SIZE - 8]
        self._keys: dict[int, _Key] = {}
        self._send_key = self.add_key(bytes(authkey or b""))
        self._peers: dict[int, _Peer] = {}
        self._rejected = dict.fromkeys(RejectReason, 0)
        self._accepted = 0

    # ------------------------------------------------------------------ keys
    def _derive(self, authkey: bytes, info: bytes, length: int) -> bytes:
        info = b"pyquorum " + info + bytes([self._mode])
        hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT, info=info)
        return hkdf.derive(authkey)

    def _aead(self, authkey: bytes, sender: int, incarnation: int, boot_nonce: bytes
              ) -> AESGCM | None:
        if not self._key_bytes:
            return None
        info = b"aes-gcm" + struct.pack(">IQ", sender, incarnation) + boot_nonce
        return AESGCM(self._derive(authkey, info, self._key_bytes))

    def key_fingerprint(self, authkey: bytes) -> int:
        """The name of ``authkey`` in this channel's mode (reveals nothing of the key)."""
        return int.from_bytes(self._derive(authkey, b"fingerprint", 8), "big")

    def add_key(self, authkey: bytes) -> int:
        """Accept datagrams sealed with ``authkey`` too; returns its fingerprint.

        Raises ``ValueError`` for a short key, or when ``MAX_KEYS`` keys are held
        already (finish the previous rotation with ``drop_keys`` first).
        """
        if self._mode and len(authkey) < MIN_AUTHKEY_BYTES:
            raise ValueError(f"an authkey of at least {MIN_AUTHKEY_BYTES} bytes is required")
        fp = self.key_fingerprint(authkey)
        if fp in self._keys:
            return fp
        if len(self._keys) >= MAX_KEYS:
            raise ValueError(f"already {MAX_KEYS} keys: drop the old one first")
        self._keys[fp] = _Key(
            bytes(authkey),
            self._derive(authkey, b"hmac", 32) if self._hash_name else b"",
            self._aead(authkey, self.node_id, self.incarnation, self.boot_nonce),
        )
        return fp

    def set_allowed_senders(self, allowed: frozenset[int] | None) -> None:
        """A reload changed the nodelist: senders outside ``allowed`` are refused (and
        their replay records forgotten); None accepts any sender."""
        self._allowed = allowed
        if allowed is not None:
            self._peers = {n: p for n, p in self._peers.items() if n in allowed}

    def use_key(self, fingerprint: int) -> None:
        """Seal with the key ``fingerprint`` (added before) from now on."""
        if fingerprint not in self._keys:
            raise ValueError(f"unknown key {fingerprint:#018x}")
        self._send_key = fingerprint

    def drop_keys(self) -> None:
        """Forget every key but the send key."""
        self._keys = {self._send_key: self._keys[self._send_key]}

    @property
    def send_key(self) -> int:
        """The fingerprint of the key ``seal`` uses."""
        return self._send_key

    @property
    def keys(self) -> tuple[int, ...]:
        """The fingerprints of every key ``open`` accepts (the send key first)."""
        return (self._send_key, *(k for k in self._keys if k != self._send_key))

    # ------------------------------------------------------------------ API
    @property
    def stats(self) -> Mapping[RejectReason, int]:
        """Datagrams rejected so far, per reason (a read-only view)."""
        return types.MappingProxyType(self._rejected)

    @property
    def protected(self) -> bool:
        """Whether datagrams are authenticated (false only for cipher none + hash none)."""
        return self._mode != 0

    @property
    def accepted(self) -> int:
        """Datagrams accepted so far."""
        return self._accepted

    def seal(self, plaintext: bytes) -> bytes:
        """Protect one outgoing datagram (header, then ciphertext or plaintext and tag)."""
        if self._counter >= COUNTER_MAX:
            raise ValueError("datagram counter exhausted: restart with a new incarnation")
        self._counter += 1
        if len(plaintext) > MAX_PLAINTEXT_BYTES:
            raise ValueError(f"plaintext of {len(plaintext)} bytes > {MAX_PLAINTEXT_BYTES}")
        header = self._header_prefix + _COUNTER.pack(self._counter)
        key = self._keys[self._send_key]
        if key.own_aead is not None:
            return header + key.own_aead.encrypt(_nonce(self._counter), plaintext, header)
        if self._hash_name is not None:
            tag = hmac.new(key.hmac_key, header + plaintext, self._hash_name).digest()
            return header + plaintext + tag
        return header + plaintext

    def open(self, datagram: bytes) -> Opened | Rejected:
        """Authenticate, decrypt and replay-check one datagram; never raises."""
        result = self._open(datagram)
        if isinstance(result, Rejected):
            self._rejected[result.reason] += 1
        else:
            self._accepted += 1
        return result

    def _open(self, datagram: bytes) -> Opened | Rejected:
        size = len(datagram)
        if size < HEADER_SIZE:
            return Rejected(RejectReason.TRUNCATED, f"{size} bytes, no header")
        version, mode, sender, incarnation, boot_nonce, counter = _HEADER.unpack_from(datagram)
        if version != FORMAT_VERSION:
            return Rejected(RejectReason.BAD_VERSION, f"format version {version}")
        if mode != self._mode:
            return Rejected(RejectReason.BAD_MODE, f"mode {mode:#04x}, ours {self._mode:#04x}")
        if size < HEADER_SIZE + self._tag_size:
            return Rejected(RejectReason.TRUNCATED, f"{size} bytes, no room for the tag")
        if sender == self.node_id:
            return Rejected(RejectReason.SELF, f"claims to be from us ({sender})")
        if self._allowed is not None and sender not in self._allowed:
            return Rejected(RejectReason.UNKNOWN_SENDER, f"node {sender} is not configured")
        peer = self._peers.get(sender)
        same_boot = False
        if peer is not None:
            if incarnation < peer.incarnation or (
                incarnation == peer.incarnation and boot_nonce != peer.boot_nonce
            ):
                return Rejected(
                    RejectReason.STALE_INCARNATION,
                    f"node {sender} incarnation {incarnation}, known {peer.incarnation}",
                )
            same_boot = incarnation == peer.incarnation
            if same_boot and not _fresh(peer, counter):
                return Rejected(RejectReason.REPLAYED, f"node {sender} counter {counter}")
        header = bytes(datagram[:HEADER_SIZE])
        body = bytes(datagram[HEADER_SIZE:])
        verified = self._verify(header, body, sender, incarnation, boot_nonce, counter,
                                peer if same_boot else None)
        if verified is None:
            return Rejected(RejectReason.AUTH_FAILED, f"claimed sender {sender}")
        plaintext, aead, fp = verified
        # Authentic: only now may the replay state move.
        if peer is None or not same_boot:
            self._peers[sender] = _Peer(incarnation, boot_nonce, counter, 1, aead, fp)
        else:
            _record(peer, counter)
            peer.aead, peer.key = aead, fp
        return Opened(sender, plaintext)

    def _verify(self, header: bytes, body: bytes, sender: int, incarnation: int,
                boot_nonce: bytes, counter: int, peer: _Peer | None
                ) -> tuple[bytes, AESGCM | None, int] | None:
        """(plaintext, AEAD used, key fingerprint) under the first key that verifies:
        the one that verified this sender boot last, then the others."""
        order = list(self._keys)
        if peer is not None and peer.key in self._keys:
            order.remove(peer.key)
            order.insert(0, peer.key)
        for fp in order:
            key = self._keys[fp]
            if self._key_bytes:
                aead = peer.aead if peer is not None and fp == peer.key else None
                if aead is None:
                    aead = self._aead(key.authkey, sender, incarnation, boot_nonce)
                assert aead is not None
                try:
                    return aead.decrypt(_nonce(counter), body, header), aead, fp
                except (InvalidTag, ValueError, OverflowError):
                    continue
            if self._hash_name is not None:
                split = len(body) - self._tag_size
                plaintext, tag = body[:split], body[split:]
                want = hmac.new(key.hmac_key, header + plaintext, self._hash_name).digest()
                if hmac.compare_digest(tag, want):
                    return plaintext, None, fp
                continue
            return body, None, fp
        return None


def _nonce(counter: int) -> bytes:
    return counter.to_bytes(12, "big")


def _fresh(peer: _Peer, counter: int) -> bool:
    if counter > peer.highest:
        return True
    age = peer.highest - counter
    return age < WINDOW and not (peer.seen >> age) & 1


def _record(peer: _Peer, counter: int) -> None:
    if counter > peer.highest:
        shift = counter - peer.highest
        peer.seen = ((peer.seen << shift) | 1) & _MASK if shift < WINDOW else 1
        peer.highest = counter
    else:
        peer.seen |= 1 << (peer.highest - counter)
