"""Reading ``totem.keyfile`` (Corosync's authkey) with Corosync's limits.

The key must be a regular file (a symlink to one is followed) that only its owner may
access: any permission bit for group or others (``mode & 0o077``: readable, or writable,
which would let someone plant a key they know) refuses the start, and a reload keeps
the old key.  Every refusal names the file; a permission refusal also names the mode.
The file is opened non-blocking, so a FIFO in its place is refused instead of hanging
the start-up, and at most ``MAX_AUTHKEY_BYTES + 1`` bytes are read.
"""

from __future__ import annotations

import os
import stat
from typing import Final

from pyquorum.config.model import ClusterConfig
from pyquorum.daemon.errors import StartupError
from pyquorum.wire.crypto import MIN_AUTHKEY_BYTES

MAX_AUTHKEY_BYTES: Final = 4096
"""Corosync's TOTEM_PRIVATE_KEY_LEN_MAX."""
FORBIDDEN_MODE_BITS: Final = 0o077
"""Permission bits of group and others: any of them refuses the key."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def read_authkey(path: str) -> tuple[bytes, list[str]]:
    """The key bytes and warnings to log (none today); ``StartupError`` naming ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise StartupError(f"Could not open {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StartupError(f"{path}: the authkey is not a regular file "
                               f"({_kind(st.st_mode)})")
        mode = stat.S_IMODE(st.st_mode)
        if mode & FORBIDDEN_MODE_BITS:
            raise StartupError(
                f"{path}: the authkey is accessible by group or others (mode {mode:04o}); "
                f"it must be readable by its owner only: chmod 0400 {path}"
            )
        chunks = []
        total = 0
        while total <= MAX_AUTHKEY_BYTES:
            chunk = os.read(fd, MAX_AUTHKEY_BYTES + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise StartupError(f"Could not read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    key = b"".join(chunks)
    if len(key) < MIN_AUTHKEY_BYTES:
        raise StartupError(
            f"Could only read {len(key) * 8} bits of minimum {MIN_AUTHKEY_BYTES * 8} bits "
            f"from {path}."
        )
    if len(key) > MAX_AUTHKEY_BYTES:
        raise StartupError(f"{path}: the authkey is longer than {MAX_AUTHKEY_BYTES} bytes")
    return key, []


def load_authkey(config: ClusterConfig) -> tuple[bytes | None, list[str]]:
    """The key for ``config`` (None when crypto is explicitly off) and warnings to log."""
    if not config.totem.crypto_enabled:
        return None, [
            "totem.crypto_cipher and totem.crypto_hash are both 'none': cluster traffic is "
            "NEITHER AUTHENTICATED NOR ENCRYPTED; anyone who can send UDP to this node can "
            "disturb the cluster"
        ]
    return read_authkey(config.totem.keyfile)
