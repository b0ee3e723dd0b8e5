"""``python -m pyquorum.sim``: the JSON summary line and the replay command on failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyquorum.sim", *args], capture_output=True,
                          text=True, timeout=300)


def test_swarm_summary_is_the_last_line() -> None:
    out = _sim("--seed", "5", "--seeds", "3", "--nodes", "3", "--steps", "4")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("seeds", "violations", "liveness_failures", "sim_seconds", "wall_seconds"):
        assert key in summary
    assert summary["seeds"] == 3 and summary["violations"] == 0
    assert summary["sim_seconds"] > 0


def test_failing_script_prints_replay_command(tmp_path: Path) -> None:
    script = tmp_path / "bad.scn"
    script.write_text("cluster 3\nup all\nwait-quorate all\nassert inquorate 2\n")
    out = _sim("--script", str(script), "--seed", "9")
    assert out.returncode == 1
    assert "line 4: node 2 is not inquorate" in out.stderr
    assert f"replay: python -m pyquorum.sim --script {script} --seed 9" in out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["failures"] == 1


def test_script_writes_oracle_format_traces(tmp_path: Path) -> None:
    script = tmp_path / "k.scn"
    script.write_text("cluster 3\nup all\nwait-quorate all\nkill 3\nwait-view 1,2 = 1,2\n")
    out = _sim("--script", str(script), "--traces", str(tmp_path / "t"))
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in (tmp_path / "t" / "node1.jsonl").read_text().splitlines()]
    assert lines[0]["kind"] == "init"
    assert lines[-1] == {**lines[-1], "kind": "quorum", "quorate": True, "members": [1, 2]}
    assert (tmp_path / "t" / "driver.jsonl").exists()
