"""pyquorum-lab pure parts: command/script parsing, the wait-quorate rule, the table."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from pyquorum.tools.lab import (
    CommandError,
    LabCommand,
    LabOutput,
    NodeReport,
    TableRow,
    VotesInfo,
    build_parser,
    format_table,
    parse_command,
    parse_script,
    quorate_reached,
)


@pytest.mark.parametrize(("text", "want"), [
    ("kill 3", LabCommand("kill", nodes=(3,), text="kill 3")),
    ("  START 1  # restart", LabCommand("start", nodes=(1,), text="START 1")),
    ("setexpected 2", LabCommand("setexpected", value=2, text="setexpected 2")),
    ("sleep 250", LabCommand("sleep", value=250, text="sleep 250")),
    ("wait-quorate", LabCommand("wait-quorate", text="wait-quorate")),
    ("wait-quorate 1 2", LabCommand("wait-quorate", nodes=(1, 2), text="wait-quorate 1 2")),
    ("wait-quorate 1 2 30", LabCommand("wait-quorate", nodes=(1, 2), timeout_s=30.0,
                                       text="wait-quorate 1 2 30")),
    ("wait-quorate 3 2s", LabCommand("wait-quorate", nodes=(3,), timeout_s=2.0,
                                     text="wait-quorate 3 2s")),
    ("wait-quorate 1.5", LabCommand("wait-quorate", timeout_s=1.5, text="wait-quorate 1.5")),
    ("wait-quorate timeout=9 1", LabCommand("wait-quorate", nodes=(1,), timeout_s=9.0,
                                            text="wait-quorate timeout=9 1")),
    ("status", LabCommand("status", text="status")),
    ("quit", LabCommand("quit", text="quit")),
])
def test_parse_command(text: str, want: LabCommand) -> None:
    assert parse_command(text, 3) == want


@pytest.mark.parametrize("text", ["", "   ", "# only a comment"])
def test_blank_lines(text: str) -> None:
    assert parse_command(text, 3) is None


@pytest.mark.parametrize(("text", "message"), [
    ("kill", "usage: kill N"), ("kill 4", "bad node '4'"), ("kill x", "bad node"),
    ("stop 0", "bad node"), ("frobnicate", "unknown command"), ("setexpected 0", "at least 1"),
    ("sleep -1", "usage: sleep MS"), ("status now", "takes no arguments"),
    ("wait-quorate 9 1", "bad wait-quorate argument '9'"), ("wait-quorate 1s 2s", "one timeout"),
    ("wait-quorate 0s", "bad timeout"), ("wait-quorate xs", "bad timeout"),
])
def test_bad_commands(text: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse_command(text, 3)


def test_parse_script_numbers_lines() -> None:
    cmds = parse_script("# scenario\nwait-quorate\n\nkill 3  # bye\n", 3)
    assert [(c.line, c.verb) for c in cmds] == [(2, "wait-quorate"), (4, "kill")]
    with pytest.raises(CommandError, match="line 3: "):
        parse_script("status\n\nkill 9\n", 3)


def _r(members: tuple[int, ...], quorate: bool = True, connected: bool = True) -> NodeReport:
    return NodeReport(connected=connected, ring="1.9", members=members, quorate=quorate)


def test_quorate_reached() -> None:
    full = {1: _r((1, 2, 3)), 2: _r((1, 2, 3)), 3: _r((1, 2, 3))}
    assert quorate_reached([1, 2, 3], full, down=[])
    # node 3 was killed but 1 and 2 have not noticed yet: not reached
    assert not quorate_reached([1, 2], full, down=[3])
    after = {1: _r((1, 2)), 2: _r((1, 2))}
    assert quorate_reached([1, 2], after, down=[3])
    assert not quorate_reached([1, 2], {1: _r((1, 2)), 2: _r((1, 2), quorate=False)}, [3])
    assert not quorate_reached([1, 2], {1: _r((1, 2))}, down=[3])  # no report from 2
    assert not quorate_reached([1, 2], {1: _r((1, 2)), 2: _r((1, 2), connected=False)}, [])
    assert not quorate_reached([1, 2, 3], {1: _r((1, 2)), 2: _r((1, 2)), 3: _r((3,))}, [])
    assert not quorate_reached([], full, down=[])


def test_format_table() -> None:
    rows = [
        TableRow(1, "running", 4242, NodeReport(True, "1.d", (1, 2), True,
                                                VotesInfo(1, 2, 3, 2))),
        TableRow(2, "paused", 4243, NodeReport(True, "1.d", (1, 2), False)),
        TableRow(3, "killed", None, NodeReport()),
    ]
    assert format_table(rows) == (
        "node  state        pid  ring       quorate  votes          members\n"
        "   1  running     4242  1.d        yes      2/3 q=2        1 2\n"
        "   2  paused      4243  1.d        NO       -              1 2\n"
        "   3  killed         -  -          -        -              -\n")


def test_output_json_and_human() -> None:
    buf = io.StringIO()
    ticks = iter([10.0, 11.5, 12.0])
    out = LabOutput(buf, json_mode=True, clock=lambda: next(ticks))
    out.emit("quorum", node=1, ring="1.9", members=[1, 2], quorate=True)
    assert json.loads(buf.getvalue()) == {"t": 1.5, "event": "quorum", "node": 1,
                                          "ring": "1.9", "members": [1, 2], "quorate": True}
    buf = io.StringIO()
    ticks = iter([0.0, 2.0, 3.0, 4.0])
    out = LabOutput(buf, json_mode=False, clock=lambda: next(ticks))
    out.emit("node_killed", node=3, pid=77, exit_status=-9)
    out.emit("votes", node=1, node_votes=1, total_votes=3, expected_votes=3, quorum=2)
    out.emit("result", command="kill 3", ok=False, error="node 3 is not running")
    assert buf.getvalue() == (
        "[   2.000] node 3 killed (pid 77) (exit status -9)\n"
        "[   4.000]   kill 3: FAILED: node 3 is not running\n")


def test_help_describes_the_lab() -> None:
    text = build_parser().format_help()
    for word in ("pyquorumd", "127.0.0.1", "--script", "--json", "--token", "--keep",
                 "wait-quorate", "setexpected", "pause N", "SIGTERM"):
        assert word in text
    r = subprocess.run([sys.executable, "-m", "pyquorum.tools.lab", "--help"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and "wait-quorate" in r.stdout


def test_bad_command_line() -> None:
    r = subprocess.run([sys.executable, "-m", "pyquorum.tools.lab", "--nodes", "0"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1 and "--nodes" in r.stderr
    r = subprocess.run([sys.executable, "-m", "pyquorum.tools.lab", "--script",
                        "/nonexistent/script"], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 1 and "cannot read" in r.stderr
