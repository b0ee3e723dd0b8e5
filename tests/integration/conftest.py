"""Fixtures of the daemon integration tests: private local clusters, torn down always."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import LocalCluster


@pytest.fixture
def local_cluster() -> Iterator[Callable[..., LocalCluster]]:
    """Factory ``local_cluster(n=3, **kwargs) -> LocalCluster``; every daemon it started is
    killed (by PID) and every file removed at teardown."""
    made: list[tuple[LocalCluster, Path]] = []

    def make(n: int = 3, **kwargs: Any) -> LocalCluster:
        base = Path(tempfile.mkdtemp(prefix="pyquorum-it-"))
        base.chmod(0o755)  # world-traversable: tests connect as an unprivileged uid
        kwargs.setdefault("token_ms", 1000)
        cluster = LocalCluster(base, n, **kwargs)
        made.append((cluster, base))
        return cluster

    yield make
    for cluster, base in made:
        cluster.close()
        if os.environ.get("PYQUORUM_KEEP_LOGS") != "1":
            shutil.rmtree(base, ignore_errors=True)
