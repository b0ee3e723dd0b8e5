"""pyquorumtool: argument parsing, exit codes and the call flow (fake client API)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

import pyquorum
from pyquorum.errors import CsErr, CsError
from pyquorum.tools import quorumtool as qt
from pyquorum.tools.qtformat import INFO_QUORATE, INFO_WAIT_FOR_ALL, NodeVqInfo


# ====================================================================== parsing
def parse(*argv: str, env: str | None = None) -> qt.ToolOptions:
    got = qt.parse_args(list(argv), env_run_dir=env)
    assert isinstance(got, qt.ToolOptions), got
    return got


def parse_exit(*argv: str) -> qt.ParseExit:
    got = qt.parse_args(list(argv))
    assert isinstance(got, qt.ParseExit), got
    return got


def test_default_command_is_status() -> None:
    o = parse()
    assert o.command == "status" and o.run_dir == "/run/pyquorum" and not o.json


@pytest.mark.parametrize(("argv", "command"), [
    (["-l", "-s"], "status"), (["-s", "-l"], "nodes"), (["-m"], "monitor"),
    (["-l", "-m", "-s"], "status"), (["-e", "2", "-l"], "nodes"), (["-l", "-e", "2"],
                                                                     "setexpected"),
    (["-f"], "unregister"), (["-v", "0"], "setvotes"), (["-sl"], "nodes"),
])
def test_last_command_option_wins(argv: list[str], command: str) -> None:
    assert parse(*argv).command == command


def test_display_switches_and_clusters() -> None:
    o = parse("-Hpia", "-o", "n", "--json", "--run-dir", "/tmp/x")
    assert o.display.hex_ids and o.display.machine_parsable and o.ip and o.all_addrs
    assert o.display.sort == "n" and o.json and o.run_dir == "/tmp/x"
    assert parse("-He5").votes == 5 and parse("-He5").display.hex_ids
    assert parse("--run-dir=/r").run_dir == "/r"
    assert parse("-oi").display.sort == "i" and parse("-o", "address").display.sort == "a"
    assert parse(env="/from/env").run_dir == "/from/env"
    assert parse("extra", "-l", "args").command == "nodes"  # non-options are ignored


@pytest.mark.parametrize(("argv", "votes"), [
    (["-e", "3"], 3), (["-e", "0x10"], 16), (["-e", "010"], 8), (["-e", " 7"], 7),
    (["-e", "3abc"], 3), (["-e", "+4"], 4), (["-e", "2147483647"], 2147483647),
    (["-v", "0"], 0), (["-v", "5", "-n", "0x2"], 5),
])
def test_numbers_follow_strtol(argv: list[str], votes: int) -> None:
    assert parse(*argv).votes == votes


@pytest.mark.parametrize(("argv", "message"), [
    (["-e", "0"], "New expected votes value was not valid, try a positive number\n"),
    (["-e", "-3"], "New expected votes value was not valid, try a positive number\n"),
    (["-e", "abc"], "New expected votes value was not valid, try a positive number\n"),
    (["-e", "2147483648"], "New expected votes value was not valid, try a positive number\n"),
    (["-v", "-1"], "New votes value was not valid, try a positive number or zero\n"),
    (["-v", "x"], "New votes value was not valid, try a positive number or zero\n"),
    (["-n", "0"], "The nodeid was not valid, try a positive number\n"),
    (["-n", "4294967296"], "The nodeid was not valid, try a positive number\n"),
    (["-o", "x"], "Invalid ordering option. valid orders are a(address), i(node ID) or "
                  "n(name)\n"),
    (["-o", ""], "Invalid ordering option. valid orders are a(address), i(node ID) or "
                 "n(name)\n"),
])
def test_invalid_values_exit_1(argv: list[str], message: str) -> None:
    e = parse_exit(*argv)
    assert (e.code, e.stdout, e.stderr) == (1, "", message)


def test_node_id_of_minus_n() -> None:
    assert parse("-v", "1", "-n", "4294967295").nodeid == 4294967295
    assert parse("-v", "1").nodeid is None


@pytest.mark.parametrize(("argv", "error"), [
    (["-x"], "pyquorumtool: invalid option -- 'x'\n"),
    (["-s", "-Z"], "pyquorumtool: invalid option -- 'Z'\n"),
    (["-e"], "pyquorumtool: option requires an argument -- 'e'\n"),
    (["--bogus"], "pyquorumtool: unrecognized option '--bogus'\n"),
    (["--run-dir"], "pyquorumtool: option '--run-dir' requires an argument\n"),
    (["--json=1"], "pyquorumtool: option '--json' doesn't allow an argument\n"),
])
def test_unknown_options_print_usage_and_exit_1(argv: list[str], error: str) -> None:
    e = parse_exit(*argv)
    assert e.code == 1 and e.stderr == error
    assert e.stdout == qt.usage_text() and e.stdout.startswith("usage: \npyquorumtool <options>")


def test_a_later_command_overrides_an_unknown_option_as_in_getopt() -> None:
    o = parse("-Z", "-l")
    assert o.command == "nodes" and o.warnings == "pyquorumtool: invalid option -- 'Z'\n"


def test_version_and_help() -> None:
    v = parse_exit("-V")
    assert (v.code, v.stdout) == (0, f"pyquorumtool version: {pyquorum.__version__}\n")
    h = parse_exit("-h")
    assert h.code == 0 and h.stdout == qt.usage_text() and h.stderr == ""
    assert "  -s             show quorum status\n" in h.stdout
    assert "--json" in h.stdout and "--run-dir DIR" in h.stdout
    # -V acts when reached, like the C getopt loop: a later bad value is never seen
    assert parse_exit("-V", "-e", "0").code == 0
    assert parse_exit("-e", "0", "-V").code == 1


def _run_module(*argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYQUORUM_RUN_DIR="/nonexistent-pyquorum-run")
    return subprocess.run([sys.executable, "-m", "pyquorum.tools.quorumtool", *argv],
                          capture_output=True, text=True, timeout=60, env=env, check=False)


def test_main_as_a_process() -> None:
    r = _run_module("-V")
    assert (r.returncode, r.stdout) == (0, f"pyquorumtool version: {pyquorum.__version__}\n")
    r = _run_module("-h")
    assert r.returncode == 0 and r.stdout.startswith("usage: \n")
    r = _run_module("-q")
    assert r.returncode == 1 and "invalid option -- 'q'" in r.stderr and "usage:" in r.stdout
    r = _run_module("-e", "nope")
    assert r.returncode == 1 and "not valid" in r.stderr
    r = _run_module("-s")
    assert r.returncode == 1 and r.stderr == "Cannot initialize QUORUM service\n"
    assert r.stdout == ""


# ====================================================================== fake client
@dataclass
class _Channel:
    """A queue of callbacks with a pipe whose read end is the pollable fd."""

    pending: deque[Callable[[], None]] = field(default_factory=deque)
    r: int = -1
    w: int = -1

    def __post_init__(self) -> None:
        self.r, self.w = os.pipe()

    def push(self, fire: Callable[[], None]) -> None:
        self.pending.append(fire)
        os.write(self.w, b"e")

    def die(self) -> None:
        if self.w >= 0:
            os.close(self.w)
            self.w = -1

    def dispatch(self, flags: int) -> None:
        if not self.pending:
            if self.w < 0:
                raise CsError(CsErr.CS_ERR_LIBRARY)
            if flags in (qt.CS_DISPATCH_ONE_NONBLOCKING,):
                raise CsError(CsErr.CS_ERR_TRY_AGAIN)
            if flags == qt.CS_DISPATCH_ALL:
                return
            raise AssertionError("a blocking dispatch would hang")
        count = 1 if flags != qt.CS_DISPATCH_ALL else len(self.pending)
        for _ in range(count):
            os.read(self.r, 1)
            self.pending.popleft()()

    def close(self) -> None:
        self.die()
        os.close(self.r)


class FakeApi:
    """A scripted daemon: one node's view, votequorum infos, failures on demand."""

    def __init__(self, *, members: tuple[int, ...] = (1, 2, 3), quorate: bool = True,
                 local: int = 1, provider: str | None = "corosync_votequorum",
                 quorum_type: int = 1, ring: tuple[int, int] = (1, 9),
                 fail: dict[str, CsErr] | None = None) -> None:
        self.members = members
        self.quorate = quorate
        self.local = local
        self.provider = provider
        self.quorum_type = quorum_type
        self.ring = ring
        self.fail = fail or {}
        self.calls: list[str] = []
        self.q = _Channel()
        self.v = _Channel()
        self.q_notify: qt.QuorumNotify | None = None
        self.v_notify: qt.VqNodelistNotify | None = None
        self.expected = 3
        self.votes: dict[int, int] = {}
        self.tracking = {"q": 0, "v": 0}

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise CsError(self.fail[name])

    def info(self, nodeid: int) -> NodeVqInfo:
        if nodeid not in self.members:
            raise CsError(CsErr.CS_ERR_NOT_EXIST)
        flags = (INFO_QUORATE if self.quorate else 0) | INFO_WAIT_FOR_ALL
        total = sum(self.votes.get(n, 1) for n in self.members)
        return NodeVqInfo(nodeid, 1, self.votes.get(nodeid, 1), self.expected, self.expected,
                          total, self.expected // 2 + 1, flags)

    # ------------------------------------------------ events
    def queue_quorum_event(self) -> None:
        quorate, seq, members = int(self.quorate), self.ring[1], list(self.members)
        assert self.q_notify is not None
        notify = self.q_notify
        self.q.push(lambda: notify(1, quorate, seq, members))

    def queue_vq_nodelist(self) -> None:
        rep, seq, n = self.ring[0], self.ring[1], len(self.members)
        assert self.v_notify is not None
        notify = self.v_notify
        self.v.push(lambda: notify(rep, seq, n))

    # ------------------------------------------------ ClientApi
    def quorum_initialize(self, notify: qt.QuorumNotify) -> tuple[int, int]:
        self._call("quorum_initialize")
        self.q_notify = notify
        return 11, self.quorum_type

    def quorum_finalize(self, handle: int) -> None:
        self._call("quorum_finalize")

    def quorum_fd_get(self, handle: int) -> int:
        return self.q.r

    def quorum_dispatch(self, handle: int, flags: int) -> None:
        self._call("quorum_dispatch")
        self.q.dispatch(flags)

    def quorum_getquorate(self, handle: int) -> int:
        self._call("quorum_getquorate")
        return int(self.quorate)

    def quorum_trackstart(self, handle: int, flags: int) -> None:
        self._call(f"quorum_trackstart({flags})")
        self.queue_quorum_event()

    def quorum_trackstop(self, handle: int) -> None:
        self._call("quorum_trackstop")

    def votequorum_initialize(self, nodelist_notify: qt.VqNodelistNotify) -> int:
        self._call("votequorum_initialize")
        self.v_notify = nodelist_notify
        return 22

    def votequorum_finalize(self, handle: int) -> None:
        self._call("votequorum_finalize")

    def votequorum_fd_get(self, handle: int) -> int:
        return self.v.r

    def votequorum_dispatch(self, handle: int, flags: int) -> None:
        self._call("votequorum_dispatch")
        self.v.dispatch(flags)

    def votequorum_trackstart(self, handle: int, context: int, flags: int) -> None:
        self._call(f"votequorum_trackstart({flags})")
        self.queue_vq_nodelist()

    def votequorum_getinfo(self, handle: int, nodeid: int) -> NodeVqInfo:
        self._call(f"getinfo({nodeid})")
        return self.info(nodeid)

    def votequorum_setexpected(self, handle: int, expected_votes: int) -> None:
        self._call(f"setexpected({expected_votes})")
        self.expected = expected_votes

    def votequorum_setvotes(self, handle: int, nodeid: int, votes: int) -> None:
        self._call(f"setvotes({nodeid},{votes})")
        self.votes[nodeid] = votes

    def votequorum_qdevice_unregister(self, handle: int, name: str) -> None:
        self._call(f"qdevice_unregister({name})")

    def cmap_get_prefix(self, prefix: str) -> dict[str, str]:
        self._call(f"cmap({prefix})")
        keys = {"runtime.votequorum.this_node_id": str(self.local)}
        if self.provider is not None:
            keys["quorum.provider"] = self.provider
        for i, n in enumerate((1, 2, 3)):
            keys[f"nodelist.node.{i}.nodeid"] = str(n)
            keys[f"nodelist.node.{i}.name"] = f"node{n}"
            keys[f"nodelist.node.{i}.ring0_addr"] = "127.0.0.1"
        return {k: v for k, v in keys.items() if k.startswith(prefix)}

    def close(self) -> None:
        self.q.close()
        self.v.close()


def run(api: FakeApi, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        rc = qt.run_tool(list(argv), out=out, err=err, api_factory=lambda _d: api)
    finally:
        api.close()
    return rc, out.getvalue(), err.getvalue()


def _strip_date(text: str) -> str:
    return "\n".join("Date:             X" if line.startswith("Date:") else line
                     for line in text.split("\n"))


def test_status_quorate_flow_and_output() -> None:
    api = FakeApi()
    rc, out, err = run(api, "-s")
    assert (rc, err) == (0, "")
    assert _strip_date(out) == (
        "Quorum information\n------------------\nDate:             X\n"
        "Quorum provider:  corosync_votequorum\nNodes:            3\nNode ID:          1\n"
        "Ring ID:          1.9\nQuorate:          Yes\n\n"
        "Votequorum information\n----------------------\nExpected votes:   3\n"
        "Highest expected: 3\nTotal votes:      3\nQuorum:           2  \n"
        "Flags:            Quorate WaitForAll \n\n"
        "Membership information\n----------------------\n    Nodeid      Votes Name\n"
        "         1          1 node1 (local)\n         2          1 node2\n"
        "         3          1 node3\n")
    calls = api.calls
    assert calls.index("quorum_getquorate") < calls.index("quorum_trackstart(1)")
    assert calls.index("quorum_trackstart(1)") < calls.index("quorum_dispatch")
    assert calls.index("quorum_dispatch") < calls.index("quorum_trackstop")
    assert calls.index("quorum_trackstop") < calls.index("votequorum_trackstart(1)")
    assert calls.index("votequorum_trackstart(1)") < calls.index("votequorum_dispatch")
    assert "quorum_finalize" in calls and "votequorum_finalize" in calls


def test_status_not_quorate_exits_2() -> None:
    rc, out, _ = run(FakeApi(members=(1,), quorate=False, ring=(1, 0xD)), "-s", "-H")
    assert rc == 2
    assert "Quorum:           2 Activity blocked\n" in out
    assert "Ring ID:          1.d\n" in out and "Node ID:          0x00000001\n" in out
    assert out.endswith("0x00000001          1 node1 (local)\n")


def test_status_json() -> None:
    rc, out, _ = run(FakeApi(quorate=False), "--json")
    obj = json.loads(out)
    assert rc == 2 and obj["quorate"] is False and obj["ring"] == "1.9"
    assert [m["name"] for m in obj["members"]] == ["node1", "node2", "node3"]
    assert obj["votequorum"]["flag_names"] == ["WaitForAll"]


def test_daemon_not_running() -> None:
    rc, out, err = run(FakeApi(fail={"quorum_initialize": CsErr.CS_ERR_LIBRARY}), "-s")
    assert (rc, out, err) == (1, "", "Cannot initialize QUORUM service\n")
    rc, out, err = run(FakeApi(fail={"votequorum_initialize": CsErr.CS_ERR_LIBRARY}), "-l")
    assert (rc, err) == (1, "Cannot initialise VOTEQUORUM service\n")


def test_dispatch_error_exits_1() -> None:
    api = FakeApi(fail={"quorum_dispatch": CsErr.CS_ERR_LIBRARY})
    rc, out, err = run(api, "-s")
    assert (rc, out) == (1, "")
    assert err == "Unable to dispatch quorum status: CS_ERR_LIBRARY\n"


def test_without_provider_status_fails_with_bad_handle() -> None:
    rc, out, err = run(FakeApi(provider=None, quorum_type=0), "-s")
    assert (rc, out) == (1, "")
    assert err == "Unable to start votequorum status tracking: CS_ERR_BAD_HANDLE\n"
    rc, out, err = run(FakeApi(provider=None, quorum_type=0), "-l")
    assert rc == 0 and out.endswith("    Nodeid Name\n         1 node1\n         2 node2\n"
                                    "         3 node3\n")


def test_list_nodes() -> None:
    rc, out, _ = run(FakeApi(local=2), "-l", "-p", "-i")
    assert rc == 0
    assert out == ("\nMembership information\n----------------------\n"
                   "    Nodeid      Votes    Qdevice Name\n"
                   "         1          1         NR 127.0.0.1\n"
                   "         2          1         NR 127.0.0.1 (local)\n"
                   "         3          1         NR 127.0.0.1\n")


def test_local_getinfo_error_is_reported_after_printing() -> None:
    rc, out, err = run(FakeApi(local=7), "-s")
    assert rc == 1 and "Votequorum information" in out and "Membership information" in out
    assert err == "Unable to get node info: CS_ERR_NOT_EXIST\n"


def test_setexpected_and_setvotes() -> None:
    api = FakeApi()
    assert run(api, "-e", "5")[0] == 0 and api.expected == 5
    api = FakeApi(local=2)
    assert run(api, "-v", "3")[0] == 0 and api.votes == {2: 3}
    api = FakeApi()
    assert run(api, "-v", "0", "-n", "3")[0] == 0 and api.votes == {3: 0}


def test_setexpected_failure_prints_cs_strerror() -> None:
    api = FakeApi(fail={"setexpected(1)": CsErr.CS_ERR_INVALID_PARAM})
    assert run(api, "-e", "1") == (1, "", "Unable to set expected votes: CS_ERR_INVALID_PARAM\n")
    api = FakeApi(fail={"setvotes(9,2)": CsErr.CS_ERR_NAME_NOT_FOUND})
    assert run(api, "-v", "2", "-n", "9") == (
        1, "", "Unable to set votes 2 for nodeid: 9: CS_ERR_NAME_NOT_FOUND\n")


def test_starred_commands_need_votequorum() -> None:
    rc, _, err = run(FakeApi(provider="corosync_ykd"), "-e", "2")
    assert rc == 1 and err == ("You cannot change expected votes, corosync is not using "
                               "votequorum\n")


def test_unregister_without_a_device_is_ok() -> None:
    api = FakeApi()
    assert run(api, "-f")[0] == 0
    assert not any(c.startswith("qdevice_unregister") for c in api.calls)


class _MonitorApi(FakeApi):
    """Feeds -m: after each printed block, the next scripted step happens."""

    def __init__(self, script: list[str], **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.script = script

    def step(self) -> None:
        if not self.script:
            return
        step = self.script.pop(0)
        if step == "lose-3":
            self.members, self.ring = (1, 2), (1, 0xD)
            self.queue_vq_nodelist()
            self.queue_quorum_event()
        elif step == "late-vq":  # votequorum's nodelist event comes after quorum's
            self.ring = (2, 0xE)
            self.queue_quorum_event()
            fire = self.q.pending.pop()

            def fire_then_vq() -> None:  # only once the tool consumed the quorum event
                fire()
                self.queue_vq_nodelist()

            self.q.pending.append(fire_then_vq)
        elif step == "flip":
            self.quorate = False
            self.queue_quorum_event()  # no membership change: no vq nodelist event
        elif step == "die":
            self.q.die()
            self.v.die()
        elif step == "interrupt":
            raise KeyboardInterrupt


class _HookedOut(io.StringIO):
    """Calls ``hook`` after each -m block (the blank line, or a JSON line)."""

    def __init__(self, hook: Callable[[], None]) -> None:
        super().__init__()
        self.hook = hook

    def write(self, s: str) -> int:
        n = super().write(s)
        if s == "\n" or s.startswith("{"):
            self.hook()
        return n


def run_monitor(api: _MonitorApi, *argv: str) -> tuple[int, str, str]:
    out, err = _HookedOut(api.step), io.StringIO()
    try:
        rc = qt.run_tool(list(argv), out=out, err=err, api_factory=lambda _d: api)
    finally:
        api.close()
    return rc, out.getvalue(), err.getvalue()


def test_monitor_prints_each_event_then_fails_when_the_daemon_dies() -> None:
    api = _MonitorApi(["lose-3", "flip", "die"])
    rc, out, err = run_monitor(api, "-m")
    assert rc == 1 and err in ("Unable to dispatch quorum status: CS_ERR_LIBRARY\n",
                               "Unable to dispatch votequorum status: CS_ERR_LIBRARY\n")
    blocks = out.split("Quorum information\n")[1:]
    assert len(blocks) == 3
    assert all(b.endswith("\n\n") for b in blocks)  # a blank line after every block
    assert "Nodes:            3\n" in blocks[0] and "Ring ID:          1.9\n" in blocks[0]
    assert "Nodes:            2\n" in blocks[1] and "Ring ID:          1.d\n" in blocks[1]
    assert "Quorate:          No\n" in blocks[2] and "Ring ID:          1.d\n" in blocks[2]
    assert "quorum_trackstart(2)" in api.calls and "votequorum_trackstart(2)" in api.calls


def test_monitor_stops_cleanly_on_ctrl_c() -> None:
    api = _MonitorApi(["interrupt"])
    rc, _, err = run_monitor(api, "-m", "--json")
    assert (rc, err) == (0, "")
    assert "quorum_finalize" in api.calls


def test_monitor_json_one_object_per_event() -> None:
    api = _MonitorApi(["lose-3", "die"])
    rc, out, _ = run_monitor(api, "-m", "--json")
    lines = out.strip("\n").split("\n")
    assert rc == 1 and len(lines) == 2
    assert [json.loads(x)["nodes"] for x in lines] == [3, 2]


def test_monitor_waits_for_the_ring_representative() -> None:
    api = _MonitorApi(["late-vq", "die"])
    rc, out, _ = run_monitor(api, "-m")
    blocks = out.split("Quorum information\n")[1:]
    assert rc == 1 and len(blocks) == 2
    assert "Ring ID:          2.e\n" in blocks[1]


class _MuteLossApi(_MonitorApi):
    """A client whose dispatch does not report the lost daemon (TRY_AGAIN, or a quiet
    return) while the event fd is hung up; each dispatch is counted so that a monitor
    that busy-loops on the hung-up fd fails the test instead of hanging it."""

    MAX_DISPATCHES = 200

    def __init__(self, script: list[str], mute: str) -> None:
        super().__init__(script)
        self.mute = mute
        self.dispatches = 0

    def _count(self) -> None:
        self.dispatches += 1
        if self.dispatches > self.MAX_DISPATCHES:
            raise AssertionError("-m spins on a hung-up event fd")

    def quorum_dispatch(self, handle: int, flags: int) -> None:
        self._count()
        if self.mute == "q" and self.q.w < 0 and not self.q.pending:
            raise CsError(CsErr.CS_ERR_TRY_AGAIN)
        super().quorum_dispatch(handle, flags)

    def votequorum_dispatch(self, handle: int, flags: int) -> None:
        self._count()
        if self.mute == "v" and self.v.w < 0 and not self.v.pending:
            return
        super().votequorum_dispatch(handle, flags)

    def step(self) -> None:
        if self.script and self.script[0] in ("q-dies", "v-dies"):
            (self.q if self.script.pop(0) == "q-dies" else self.v).die()
            return
        super().step()


@pytest.mark.parametrize(("mute", "what"), [("q", "quorum"), ("v", "votequorum")])
def test_monitor_ends_on_a_hung_up_fd_even_when_dispatch_does_not_say_so(
        mute: str, what: str) -> None:
    api = _MuteLossApi([f"{mute}-dies"], mute)
    rc, out, err = run_monitor(api, "-m")
    assert (rc, err) == (1, f"Unable to dispatch {what} status: CS_ERR_LIBRARY\n")
    assert out.count("Quorum information\n") == 1 and api.dispatches < 10
