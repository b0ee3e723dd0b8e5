"""Write a simulation's client traces in the oracle's layout (``node<i>.jsonl``, ``driver.jsonl``)
so ``../shared/oracle/compare.py`` can compare them with the real Corosync's."""

from __future__ import annotations

import json
from pathlib import Path

from pyquorum.sim.world import Simulator


def write_traces(sim: Simulator, directory: Path) -> None:
    """Write ``driver.jsonl`` and one ``node<i>.jsonl`` per node into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "driver.jsonl").open("w") as f:
        for line in sim.driver_lines():
            f.write(json.dumps(line) + "\n")
    for node, lines in sim.client_traces().items():
        with (directory / f"node{node}.jsonl").open("w") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
