"""Fixtures of the Corosync tier: real Corosync 3.1.7 clusters in network namespaces.

The whole tier is skipped, with the reason, when it cannot run here (``cscluster.
environment_problem``: not root, no ``ip netns``, Corosync not installable).  Every
cluster is torn down (``cluster.sh clean``) whatever happens.  During each test
``PYQUORUM_BACKEND=corosync``, so calls that name no backend use the Corosync backend too.

``api_conformance_checks`` (the check bodies shared with tests/integration) lives in
tests/integration, which pytest puts on ``sys.path`` only for that directory's tests: it
is added here.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_INTEGRATION = str(Path(__file__).resolve().parent.parent / "integration")
if _INTEGRATION not in sys.path:
    sys.path.insert(0, _INTEGRATION)

import api_conformance_checks as checks  # noqa: E402
from cscluster import CorosyncCluster, CorosyncTarget, environment_problem  # noqa: E402

from pyquorum.client import _corosync  # noqa: E402

_PROBLEM: list[str | None] = []
_FRESH = itertools.count(1)


def _skip_unless_possible() -> None:
    if not _PROBLEM:
        _PROBLEM.append(environment_problem())
    if _PROBLEM[0]:
        pytest.skip(f"Corosync tier: {_PROBLEM[0]}")


def _prefix(tag: str) -> str:
    return f"pqcs{os.getpid()}{tag}"


@pytest.fixture(autouse=True)
def corosync_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """``PYQUORUM_BACKEND=corosync`` for the duration of each test of this tier."""
    monkeypatch.setenv(_corosync.BACKEND_ENV, _corosync.BACKEND_COROSYNC)


@pytest.fixture(scope="module")
def cluster() -> Iterator[CorosyncTarget]:
    """A quorate 3-node Corosync cluster (token 1000) shared by a module's read-only tests."""
    _skip_unless_possible()
    cs = CorosyncCluster(_prefix("s"), "10.213.90")
    try:
        cs.up(3)
        target = CorosyncTarget(cs)
        for n in (1, 2, 3):
            target.wait_ipc(n)
        checks.wait_quorate(target, (1, 2, 3))
        yield target
    finally:
        cs.clean()


@pytest.fixture
def fresh_cluster() -> Iterator[Callable[..., CorosyncTarget]]:
    """Factory ``fresh_cluster(n=3, *, two_node, wait_for_all, token_ms)`` of private
    clusters, configured and not started."""
    _skip_unless_possible()
    made: list[CorosyncCluster] = []

    def make(n: int = 3, **kwargs: Any) -> CorosyncTarget:
        cs = CorosyncCluster(_prefix(f"f{next(_FRESH)}"), f"10.213.{91 + len(made)}")
        made.append(cs)
        cs.up(n, start=False, **kwargs)
        return CorosyncTarget(cs)

    yield make
    for cs in made:
        cs.clean()
