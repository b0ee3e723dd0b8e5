"""Every row of ``../shared/oracle/api-edge-cases.md`` against live pyquorumd clusters.

The checks themselves are in ``api_conformance_checks.py`` (shared with the Corosync tier,
``tests/corosync``, which runs the same bodies against real Corosync 3.1.7); this module
supplies the pyquorum target: pyquorumd daemons on 127.0.0.1 (``harness.LocalCluster``),
reached through the native backend with their ``run_dir``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import api_conformance_checks as checks
import pytest
from api_conformance_checks import ModelData
from harness import LocalCluster

from pyquorum.client import quorum as q
from pyquorum.client import votequorum as vq

# the shared test functions, collected as tests of this module
globals().update({name: obj for name, obj in vars(checks).items()
                  if name.startswith("test_") and callable(obj)})


class PyquorumTarget:
    """``checks.Target`` over a ``LocalCluster``; partitions use the daemons' test hook."""

    backend = "pyquorum"

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self._groups: list[set[int]] | None = None

    def _run_dir(self, node: int) -> str:
        return str(self.cluster.run_dir(node))

    def initialize(self, node: int, model: int, data: ModelData,
                   context: object = None) -> tuple[int, int]:
        return q.quorum_model_initialize(model, data, context, run_dir=self._run_dir(node),
                                         backend=self.backend)

    def v0_initialize(self, node: int,
                      callbacks: q.QuorumCallbacks | None) -> tuple[int, int]:
        return q.quorum_initialize(callbacks, run_dir=self._run_dir(node), backend=self.backend)

    def vq_initialize(self, node: int, callbacks: vq.VotequorumCallbacks | None) -> int:
        return vq.votequorum_initialize(callbacks, run_dir=self._run_dir(node),
                                        backend=self.backend)

    def start(self, node: int) -> None:
        self.cluster.start(node)  # returns after READY: the IPC answers
        self._apply_partition(node)

    def kill(self, node: int) -> None:
        self.cluster.kill(node)

    def stop(self, node: int) -> None:
        self.cluster.stop(node)

    def _apply_partition(self, node: int) -> None:
        if self._groups is None:
            return
        mine = next((g for g in self._groups if node in g), {node})
        self.cluster.block(node, [m for m in range(1, self.cluster.n + 1) if m not in mine])

    def _running(self) -> list[int]:
        return [n for n in range(1, self.cluster.n + 1) if self.cluster.running(n)]

    def partition(self, groups: Sequence[Sequence[int]]) -> None:
        self._groups = [set(g) for g in groups]
        for node in self._running():
            self._apply_partition(node)

    def heal(self) -> None:
        self._groups = None
        for node in self._running():
            self.cluster.block(node, [])


def _make(n: int, made: list[tuple[LocalCluster, Path]], *, two_node: bool = False,
          wait_for_all: bool = False, token_ms: int = 1000) -> PyquorumTarget:
    base = Path(tempfile.mkdtemp(prefix="pyquorum-conf-"))
    base.chmod(0o755)
    quorum: dict[str, str | int] = {}
    if two_node:
        quorum["two_node"] = 1
    if wait_for_all:
        quorum["wait_for_all"] = 1
    c = LocalCluster(base, n, quorum=quorum, token_ms=token_ms)
    made.append((c, base))
    return PyquorumTarget(c)


def _close(made: list[tuple[LocalCluster, Path]]) -> None:
    for c, base in made:
        c.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[PyquorumTarget]:
    """A quorate 3-node cluster shared by the read-only tests of this module."""
    made: list[tuple[LocalCluster, Path]] = []
    try:
        target = _make(3, made)
        for n in (1, 2, 3):
            target.start(n)
        checks.wait_quorate(target, (1, 2, 3))
        yield target
    finally:
        _close(made)


@pytest.fixture
def fresh_cluster() -> Iterator[Callable[..., PyquorumTarget]]:
    """Factory of private clusters for the tests that kill, restart or isolate nodes."""
    made: list[tuple[LocalCluster, Path]] = []

    def make(n: int = 3, **kwargs: Any) -> PyquorumTarget:
        return _make(n, made, **kwargs)

    yield make
    _close(made)
