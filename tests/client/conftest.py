"""Fixtures of the client tests: a short run directory and the fake daemon in it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_fakedaemon import FakeDaemon

from pyquorum.client._handles import HANDLES


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A fresh directory with a short path (AF_UNIX paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="pqc", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(run_dir: Path) -> Iterator[FakeDaemon]:
    """A running fake daemon serving ``run_dir``."""
    fake = FakeDaemon(run_dir)
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def no_leaked_handles() -> Iterator[None]:
    """Every test finalizes what it opened: the process-wide table ends as it began."""
    before = len(HANDLES)
    yield
    assert len(HANDLES) == before, "a test left a handle open"
