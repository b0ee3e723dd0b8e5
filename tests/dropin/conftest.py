"""Fixtures of the drop-in tier (Corosync's own C clients against pyquorumd).

The tier is skipped, with the reason, when it cannot run here (``dropcluster.
environment_problem``: not root, no ``ip netns``, Corosync or its -dev packages and gcc not
installable).  Every cluster is torn down whatever happens.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from dropcluster import (
    TOKEN_MS,
    CorosyncCluster,
    PyquorumCluster,
    Side,
    compile_qtrack,
    corosync_side,
    environment_problem,
    identical_config,
    pyquorum_side,
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
def twin_clusters() -> Iterator[tuple[Side, Side, CorosyncCluster, PyquorumCluster]]:
    """Two identical, quorate 3-node clusters: real Corosync and pyquorumd with libqb IPC
    (the pyquorumd nodes run the Corosync nodes' own corosync.conf, see
    ``identical_config``)."""
    _skip_unless_possible()
    cs = CorosyncCluster(f"pqdi{os.getpid()}c", CS_NET)
    pq = PyquorumCluster(3, "p", PQ_NET)
    sides: tuple[Side, ...] = ()
    try:
        cs.up(3, token_ms=TOKEN_MS, start=False)
        pq.setup(lambda i: identical_config(
            (cs.workdir / f"n{i}" / "corosync.conf").read_text(), corosync_net=CS_NET,
            net=PQ_NET, node_dir=pq.node_dir(i)))
        cs.sh("start", "all")
        pq.start_daemons(pq.nodes)
        sides = (corosync_side(cs), pyquorum_side(pq))
        wait_views(sides, (1, 2, 3), quorate=True)
        yield sides[0], sides[1], cs, pq
    finally:
        try:
            for side in sides:
                side.close()
            cs.clean()
        finally:
            assert pq.close() == []


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
