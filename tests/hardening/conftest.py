"""Fixtures of the hardening tests: real daemons through tests/integration's ``harness``.

``harness`` (``LocalCluster``, ``RawIpcClient``) lives in tests/integration, which pytest
puts on ``sys.path`` only for the tests of that directory; it is added here too so that
``import harness`` works when this directory runs alone.  The fixtures are defined here
(nothing is imported from another conftest).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_INTEGRATION = str(Path(__file__).resolve().parent.parent / "integration")
if _INTEGRATION not in sys.path:
    sys.path.insert(0, _INTEGRATION)

from harness import LocalCluster  # noqa: E402


@pytest.fixture
def hardening_cluster() -> Iterator[Callable[..., LocalCluster]]:
    """Factory ``hardening_cluster(n=3, **kwargs) -> LocalCluster``; every daemon it
    started is killed (by PID) and every file removed at teardown."""
    made: list[tuple[LocalCluster, Path]] = []

    def make(n: int = 3, **kwargs: Any) -> LocalCluster:
        base = Path(tempfile.mkdtemp(prefix="pyquorum-hard-"))
        base.chmod(0o755)
        kwargs.setdefault("token_ms", 1000)
        cluster = LocalCluster(base, n, **kwargs)
        made.append((cluster, base))
        return cluster

    yield make
    for cluster, base in made:
        cluster.close()
        if os.environ.get("PYQUORUM_KEEP_LOGS") != "1":
            shutil.rmtree(base, ignore_errors=True)
