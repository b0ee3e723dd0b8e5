"""pyquorum-lab end to end: real daemons, a kill/restart script, signals, clean-up.

Each test runs ``python -m pyquorum.tools.lab`` with ``TMPDIR`` pointing at a fresh
short directory (Unix socket paths must stay short), and checks afterwards that every
daemon PID it reported is gone and that the directory is empty again.  All waits are
bounded (process timeouts, ``select`` on the lab's stdout).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyquorum.daemon.main", reason="pyquorum.daemon.main not written yet")
pytest.importorskip("pyquorum.client.aio", reason="pyquorum.client.aio not written yet")

LAB_TIMEOUT_S = 180


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pqlt-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _lab_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pyquorum.tools.lab", *args]


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ, TMPDIR=str(tmp))
    env.pop("PYQUORUM_RUN_DIR", None)
    return env


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _is_daemon_alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"pyquorum.daemon" in cmdline


def _assert_cleaned_up(events: list[dict[str, Any]], tmp: Path) -> None:
    pids = [e["pid"] for e in events if e["event"] == "node_started"]
    assert pids and not [p for p in pids if _is_daemon_alive(p)]
    started = next(e for e in events if e["event"] == "lab_started")
    finished = events[-1]
    assert finished["event"] == "lab_finished" and finished["removed"] is True
    assert not os.path.exists(started["dir"])
    assert list(tmp.iterdir()) == []


def _index(events: list[dict[str, Any]], start: int, **match: Any) -> int:
    for i in range(start, len(events)):
        if all(events[i].get(k) == v for k, v in match.items()):
            return i
    raise AssertionError(f"no event {match} after #{start}")


SCRIPT = """\
# kill and restart node 3
wait-quorate 60s
kill 3
wait-quorate 1 2 60s   # nodes 1 and 2, quorate without node 3
start 3
wait-quorate           # every running node, together
status
quit
"""


def test_script_kill_and_restart(short_tmp: Path) -> None:
    script = short_tmp.parent / f"{short_tmp.name}.lab"
    script.write_text(SCRIPT)
    try:
        r = subprocess.run(_lab_cmd("--script", str(script), "--json", "--token", "1000"),
                           capture_output=True, text=True, timeout=LAB_TIMEOUT_S,
                           env=_env(short_tmp), check=False)
    finally:
        script.unlink()
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    ev = _events(r.stdout)
    assert [e["node"] for e in ev if e["event"] == "node_started"][3:] == [3]
    results = [e for e in ev if e["event"] == "result"]
    assert [e["ok"] for e in results] == [True] * 5  # status and quit have no result
    assert [e["line"] for e in results] == [2, 3, 4, 5, 6]

    killed = _index(ev, 0, event="node_killed", node=3)
    # node 3 left: nodes 1 and 2 report a quorate view of [1, 2] ...
    for node in (1, 2):
        _index(ev, killed, event="quorum", node=node, members=[1, 2], quorate=True)
        i = _index(ev, killed, event="nodelist", node=node, members=[1, 2])
        assert 3 in ev[i]["left"]
    # ... and rejoined: after the restart every node reports [1, 2, 3] quorate
    restarted = _index(ev, killed, event="node_started", node=3)
    for node in (1, 2, 3):
        _index(ev, restarted, event="quorum", node=node, members=[1, 2, 3], quorate=True)
    i = _index(ev, restarted, event="nodelist", node=1, members=[1, 2, 3])
    assert 3 in ev[i]["joined"]
    status = next(e for e in ev if e["event"] == "status")
    assert [n["members"] for n in status["nodes"]] == [[1, 2, 3]] * 3
    stopped = sorted(e["node"] for e in ev if e["event"] == "node_stopped")
    assert stopped == [1, 2, 3]
    assert all(e["exit_status"] == 0 for e in ev if e["event"] == "node_stopped")
    _assert_cleaned_up(ev, short_tmp)


def test_failed_wait_ends_the_script_with_1(short_tmp: Path) -> None:
    script = short_tmp.parent / f"{short_tmp.name}.lab"
    script.write_text("wait-quorate 60s\nkill 2\nstop 3\nwait-quorate 1 1.5\nstatus\n")
    try:
        r = subprocess.run(_lab_cmd("--script", str(script), "--json", "--token", "1000"),
                           capture_output=True, text=True, timeout=LAB_TIMEOUT_S,
                           env=_env(short_tmp), check=False)
    finally:
        script.unlink()
    assert r.returncode == 1, r.stdout[-4000:] + r.stderr[-4000:]
    ev = _events(r.stdout)
    failed = [e for e in ev if e["event"] == "result" and not e["ok"]]
    assert len(failed) == 1 and failed[0]["line"] == 4 and "timeout" in failed[0]["error"]
    assert not [e for e in ev if e["event"] == "status"]  # the script stopped there
    assert ev[-1]["exit_code"] == 1
    _assert_cleaned_up(ev, short_tmp)


def test_bad_script_is_rejected_before_starting(short_tmp: Path) -> None:
    script = short_tmp.parent / f"{short_tmp.name}.lab"
    script.write_text("wait-quorate\nkill 7\n")
    try:
        r = subprocess.run(_lab_cmd("--script", str(script)), capture_output=True, text=True,
                           timeout=60, env=_env(short_tmp), check=False)
    finally:
        script.unlink()
    assert r.returncode == 1 and "line 2" in r.stderr and "bad node" in r.stderr
    assert r.stdout == "" and list(short_tmp.iterdir()) == []


def _read_until(proc: subprocess.Popen[str], want: str, timeout_s: float) -> list[str]:
    """Lines of the lab's stdout until one contains ``want`` (bounded by select)."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    fd = proc.stdout.fileno()
    buf = b""
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{want!r} not seen in {lines[-20:]}"
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(fd, 65536)
        assert chunk, f"lab exited before {want!r}: {lines[-20:]}"
        buf += chunk
        *done, buf = buf.split(b"\n")
        lines += [d.decode() for d in done]
        if any(want in line for line in lines):
            return lines


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_every_daemon_and_cleans_up(short_tmp: Path, sig: signal.Signals) -> None:
    # stdin stays open (no EOF, which would mean "quit") until the lab has exited
    stdin_r, stdin_w = os.pipe()
    proc = subprocess.Popen(_lab_cmd("--json", "--token", "1000"), stdin=stdin_r,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(short_tmp))
    os.close(stdin_r)
    try:
        lines = _read_until(proc, '"quorate": true', 60)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(stdin_w)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, err
    ev = _events("\n".join(lines) + "\n" + out)
    assert any(e["event"] == "signal" and e["signal"] == sig.name for e in ev)
    assert sorted(e["node"] for e in ev if e["event"] == "node_stopped") == [1, 2, 3]
    _assert_cleaned_up(ev, short_tmp)


def test_interactive_commands_on_stdin(short_tmp: Path) -> None:
    proc = subprocess.Popen(_lab_cmd("--nodes", "2", "--token", "1000", "--quorum",
                                     "two_node=1"),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(short_tmp))
    assert proc.stdin is not None
    try:
        _read_until(proc, "node 2 started", 60)
        proc.stdin.write("wait-quorate 60s\nbogus\nhelp\nstatus\nsetexpected 2\nquit\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "wait-quorate 60s: ok" in out and "unknown command 'bogus'" in out
    assert "commands (typed on stdin" in out and "setexpected 2: ok" in out
    assert "node  state" in out and "lab: removed" in out
    assert list(short_tmp.iterdir()) == []
