"""``pyquorum-keygen``: write a random cluster authkey (like corosync-keygen).

The key is ``os.urandom`` bytes, written atomically: a temporary file in the target
directory (mode 0400 from creation), fsync, rename over the target, fsync of the
directory.  A missing parent directory is created with mode 0700.  An existing key is
never replaced without ``--force``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Final

DEFAULT_KEYFILE: Final = "/etc/pyquorum/authkey"
DEFAULT_KEY_BYTES: Final = 256
MIN_KEY_BYTES: Final = 128
"""1024 bits, Corosync's TOTEM_PRIVATE_KEY_LEN_MIN."""
MAX_KEY_BYTES: Final = 4096
KEY_MODE: Final = 0o400
DIR_MODE: Final = 0o700


class KeyExistsError(FileExistsError):
    """The key file exists and overwriting was not asked for."""


def write_key(path: str, size: int = DEFAULT_KEY_BYTES, *, force: bool = False) -> None:
    """Write ``size`` random bytes to ``path`` atomically with mode 0400.

    Raises ``KeyExistsError`` if ``path`` exists and ``force`` is false, ``ValueError``
    for a size outside ``MIN_KEY_BYTES..MAX_KEY_BYTES``, ``OSError`` on I/O failures
    (the temporary file is removed).
    """
    if not MIN_KEY_BYTES <= size <= MAX_KEY_BYTES:
        raise ValueError(f"key size must be {MIN_KEY_BYTES}..{MAX_KEY_BYTES} bytes, not {size}")
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=DIR_MODE, exist_ok=True)
    if not force and os.path.lexists(path):
        raise KeyExistsError(path)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, KEY_MODE)
    try:
        try:
            data = os.urandom(size)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, KEY_MODE)
            os.fsync(fd)
        finally:
            os.close(fd)
        if not force and os.path.lexists(path):
            raise KeyExistsError(path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``pyquorum-keygen``."""
    p = argparse.ArgumentParser(
        prog="pyquorum-keygen",
        description="Write a random authentication key for pyquorumd (totem.keyfile). "
                    "The file gets mode 0400; its directory is created with mode 0700 "
                    "if missing. Copy the same key to every node.",
    )
    p.add_argument("-k", "--key-file", dest="keyfile", default=DEFAULT_KEYFILE,
                   metavar="FILE", help=f"where to write the key (default {DEFAULT_KEYFILE})")
    p.add_argument("--force", action="store_true",
                   help="replace an existing key file")
    p.add_argument("-s", "--size", type=int, default=DEFAULT_KEY_BYTES, metavar="BYTES",
                   help=f"key size in bytes, {MIN_KEY_BYTES}..{MAX_KEY_BYTES} "
                        f"(default {DEFAULT_KEY_BYTES})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pyquorum-keygen``; returns the exit status."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    try:
        write_key(args.keyfile, args.size, force=args.force)
    except KeyExistsError:
        print(f"pyquorum-keygen: {args.keyfile} already exists; not overwriting it "
              "(use --force to replace it)", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"pyquorum-keygen: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"pyquorum-keygen: cannot write {args.keyfile}: {e.strerror or e}",
              file=sys.stderr)
        return 1
    print(f"Wrote {args.size}-byte key to {args.keyfile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
