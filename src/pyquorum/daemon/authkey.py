"""Reading ``totem.keyfile`` (Corosync's authkey) with Corosync's limits."""

from __future__ import annotations

import os
import stat
from typing import Final

from pyquorum.config.model import ClusterConfig
from pyquorum.daemon.errors import StartupError
from pyquorum.wire.crypto import MIN_AUTHKEY_BYTES

MAX_AUTHKEY_BYTES: Final = 4096
"""Corosync's TOTEM_PRIVATE_KEY_LEN_MAX."""


def read_authkey(path: str) -> tuple[bytes, list[str]]:
    """The key bytes and warnings (loose permissions); ``StartupError`` naming ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise StartupError(f"Could not open {path}: {exc.strerror}") from None
    warnings = []
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StartupError(f"{path}: the authkey is not a regular file")
        if st.st_mode & 0o077:
            warnings.append(
                f"{path}: the authkey is readable by group or others (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); use mode 0400"
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
    return key, warnings


def load_authkey(config: ClusterConfig) -> tuple[bytes | None, list[str]]:
    """The key for ``config`` (None when crypto is explicitly off) and warnings to log."""
    if not config.totem.crypto_enabled:
        return None, [
            "totem.crypto_cipher and totem.crypto_hash are both 'none': cluster traffic is "
            "NEITHER AUTHENTICATED NOR ENCRYPTED; anyone who can send UDP to this node can "
            "disturb the cluster"
        ]
    return read_authkey(config.totem.keyfile)
