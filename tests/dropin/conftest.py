"""Fixtures of the drop-in tier (Corosync's own C clients against pyquorumd).

The tier is skipped, with the reason, when it cannot run here (``dropcluster.
environment_problem``: not root, no ``ip netns``, Corosync or its -dev packages and gcc not
installable).  Every cluster is torn down whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dropcluster import (
    PyquorumCluster,
    Twins,
    compile_qtrack,
    environment_problem,
    pyquorum_side,
    twin_pair,
    wait_views,
)

_PROBLEM: list[str | None] = []
CS_NET = "10.213.64"
PQ_NET = "10.213.65"
PQ_TRACK_NET = "10.213.66"


def _skip_unless_possible() -> None:
    if not _PROBLEM:
        _PROBLEM.append(environment_problem())
    if _PROBLEM[0]:
        pytest.skip(f"drop-in tier: {_PROBLEM[0]}")


@pytest.fixture(scope="module")
def twin_clusters() -> Iterator[Twins]:
    """Two identical, quorate 3-node clusters: real Corosync and pyquorumd with libqb IPC
    (the pyquorumd nodes run the Corosync nodes' own corosync.conf, see
    ``identical_config``)."""
    _skip_unless_possible()
    with twin_pair(3, "", corosync_net=CS_NET, net=PQ_NET) as twins:
        wait_views(twins[:2], (1, 2, 3), quorate=True)
        yield twins


@pytest.fixture
def fresh_twins() -> Iterator[Callable[..., Twins]]:
    """Makes twin clusters with ``dropcluster.twin_pair``'s options (started, not
    awaited), each under its own tag (``k``, ``w``, ``n``... as the test names it); all
    torn down after the test."""
    _skip_unless_possible()
    with contextlib.ExitStack() as stack:
        def make(n: int, tag: str, **options: Any) -> Twins:
            return stack.enter_context(twin_pair(n, tag, corosync_net=CS_NET, net=PQ_NET,
                                                  **options))

        yield make


@pytest.fixture
def pyquorum_cluster() -> Iterator[PyquorumCluster]:
    """A quorate 3-node pyquorumd cluster (the chaos tier's configuration, libqb IPC on)."""
    _skip_unless_possible()
    pq = PyquorumCluster(3, "t", PQ_TRACK_NET)
    try:
        pq.setup()
        pq.start_daemons(pq.nodes)
        wait_views([pyquorum_side(pq)], (1, 2, 3), quorate=True)
        yield pq
    finally:
        assert pq.close() == []


@pytest.fixture(scope="session")
def qtrack() -> Iterator[Path]:
    """``qtrack.c`` compiled against libquorum."""
    _skip_unless_possible()
    with tempfile.TemporaryDirectory(prefix="pyquorum-qtrack-") as d:
        os.chmod(d, 0o755)
        yield compile_qtrack(Path(d))
