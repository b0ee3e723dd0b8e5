"""The simulator reproduces the client traces recorded from real Corosync 3.1.7.

Each scenario of ``../shared/oracle/traces/`` has a script in ``scenarios/``; the
simulated tracking clients write qclient.py's JSON lines, and the oracle's own
``compare.py`` compares them after its normalisation (event kinds and order, quorate,
members, joined, left; ring ids by order, never by value; no timing).
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from types import ModuleType

import pytest

from pyquorum.sim.scenario import run_script
from pyquorum.sim.traces import write_traces

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
"""Not imported from conftest: tests/integration has a conftest too, and which one
``import conftest`` finds depends on collection order."""

TRACES = [
    "a_start3",
    "b_kill3",
    "c_restart3",
    "d_partition_1_2__3",
    "e_partition5_1_2__3_4_5",
    "f_two_node",
    "g_wait_for_all",
    "h_last_man_standing",
    "h2_no_lms_control",
    "i_pause_resume",
    "j_partition_heal_minority_first",
]


def _compare_module(oracle: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("oracle_compare", oracle / "compare.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", TRACES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_simulator_matches_corosync_trace(name: str, seed: int, oracle_dir: Path,
                                          tmp_path: Path) -> None:
    res = run_script((SCENARIOS / f"{name}.scn").read_text(), seed=seed)
    assert res.ok, (res.failures, res.sim.checker.violations)
    write_traces(res.sim, tmp_path / name)
    out = io.StringIO()
    ok, per_trace = _compare_module(oracle_dir).compare_scenario(
        str(oracle_dir / "traces" / name), str(tmp_path / name), out=out, label=name)
    assert ok, f"replay: python -m pyquorum.sim --script tests/sim/scenarios/{name}.scn " \
               f"--seed {seed}\n{out.getvalue()}"
    assert per_trace, "no trace was compared"
