"""Typed errors of the daemon's start-up and storage."""

from __future__ import annotations


class StartupError(Exception):
    """The daemon cannot start: the message is one line and names the file at fault."""


class StorageError(Exception):
    """Persisted state could not be made durable (the local host's fault: disk, permissions)."""
