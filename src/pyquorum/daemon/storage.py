"""Durable ``StoredState``: one small JSON file per node id under ``system.state_dir``.

A write is atomic and durable before ``save`` returns: write a temporary file in the
same directory, fsync it, rename it over the old file, fsync the directory.  A file
that exists but does not parse is a start-up error, never a silent reset: ring ids
must keep rising across restarts (architecture R2), and a reset would reuse them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

from pyquorum.core.engine import StoredState
from pyquorum.daemon.errors import StartupError, StorageError

FORMAT: Final = 1
MAX_STATE_BYTES: Final = 4096
"""A state file is a few dozen bytes; anything larger is not ours."""
_U64_MAX: Final = 0xFFFF_FFFF_FFFF_FFFF


def state_path(state_dir: str | Path, node_id: int) -> Path:
    """The state file of ``node_id``: ``<state_dir>/pyquorum-node<N>.state``."""
    return Path(state_dir) / f"pyquorum-node{node_id}.state"


def _u64(doc: dict[str, Any], key: str, path: Path, *, optional: bool = False) -> int | None:
    value = doc.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _U64_MAX:
        raise StartupError(
            f"{path}: corrupt state file: '{key}' is {value!r}, expected an integer in "
            f"[0, {_U64_MAX}]; move the file away only if this node's ring ids may restart"
        )
    return value


def parse_state(text: str, path: Path, node_id: int) -> StoredState:
    """Parse a state file's text; raises ``StartupError`` naming ``path`` if it is corrupt."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise StartupError(f"{path}: corrupt state file (not JSON: {exc})") from None
    if not isinstance(doc, dict):
        raise StartupError(f"{path}: corrupt state file (not a JSON object)")
    if doc.get("format") != FORMAT:
        raise StartupError(f"{path}: unknown state file format {doc.get('format')!r}")
    if doc.get("node_id") != node_id:
        raise StartupError(
            f"{path}: the state file belongs to node {doc.get('node_id')!r}, not {node_id}"
        )
    max_seq = _u64(doc, "max_seq", path)
    incarnation = _u64(doc, "incarnation", path)
    assert max_seq is not None and incarnation is not None
    return StoredState(
        max_seq=max_seq,
        ev_barrier=_u64(doc, "ev_barrier", path, optional=True),
        incarnation=incarnation,
    )


class StateStore:
    """Reads and durably writes one node's ``StoredState``."""

    def __init__(self, state_dir: str | Path, node_id: int) -> None:
        self.directory = Path(state_dir)
        self.node_id = node_id
        self.path = state_path(self.directory, node_id)
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self.writes = 0

    def prepare(self) -> None:
        """Create the state directory (mode 0700) if needed; ``StartupError`` if impossible."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(
                f"{self.directory}: cannot create the state directory: {exc.strerror}"
            ) from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise StartupError(f"{self.directory}: the state directory is not writable")

    def load(self) -> StoredState:
        """The stored state, or a fresh one if there is no file; ``StartupError`` if corrupt."""
        try:
            with open(self.path, "rb") as f:
                data = f.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return StoredState()
        except OSError as exc:
            raise StartupError(f"{self.path}: cannot read the state file: {exc.strerror}") from None
        if len(data) > MAX_STATE_BYTES:
            raise StartupError(f"{self.path}: corrupt state file (over {MAX_STATE_BYTES} bytes)")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise StartupError(f"{self.path}: corrupt state file (not UTF-8)") from None
        return parse_state(text, self.path, self.node_id)

    def save(self, state: StoredState) -> None:
        """Write ``state`` atomically and durably; raises ``StorageError`` on failure."""
        doc = {
            "format": FORMAT,
            "node_id": self.node_id,
            "max_seq": state.max_seq,
            "ev_barrier": state.ev_barrier,
            "incarnation": state.incarnation,
        }
        data = (json.dumps(doc, sort_keys=True) + "\n").encode()
        try:
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._tmp, self.path)
            dfd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot write the state file: {exc}") from exc
        self.writes += 1
