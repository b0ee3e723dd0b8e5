"""pyquorumtool --reload and --cancel-wait-for-all (pyquorum extensions; fake client API)."""

from __future__ import annotations

import io
import json

import pytest
from test_quorumtool_cli import FakeApi, run

from pyquorum.errors import CsErr
from pyquorum.tools import quorumtool as qt

QUORUM_CALLS = ("quorum_initialize", "votequorum_initialize", "cmap(quorum.)")


class CfgFakeApi(FakeApi):
    """The CLI tests' fake plus the cfg and cmap-set calls."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.reloads = 0
        self.cmap_sets: list[tuple[str, int]] = []

    def corosync_cfg_initialize(self) -> int:
        self._call("cfg_initialize")
        return 33

    def corosync_cfg_finalize(self, handle: int) -> None:
        assert handle == 33
        self._call("cfg_finalize")

    def corosync_cfg_reload_config(self, handle: int) -> None:
        assert handle == 33
        self._call("cfg_reload")
        self.reloads += 1

    def cmap_set_uint8(self, key: str, value: int) -> None:
        self._call(f"cmap_set({key},{value})")
        self.cmap_sets.append((key, value))


SET = "cmap_set(quorum.cancel_wait_for_all,1)"


# ====================================================================== parsing
@pytest.mark.parametrize(("argv", "command"), [
    (["--reload"], "reload"), (["--cancel-wait-for-all"], "cancel_wfa"),
    (["-s", "--reload"], "reload"), (["--reload", "-s"], "status"),
    (["--reload", "--cancel-wait-for-all"], "cancel_wfa"),
    (["--cancel-wait-for-all", "--reload"], "reload"),
    (["--cancel-wait-for-all", "-e", "2"], "setexpected"),
    (["-l", "--cancel-wait-for-all", "--json"], "cancel_wfa"),
    (["--reload", "-m"], "monitor"),
])
def test_last_command_option_wins(argv: list[str], command: str) -> None:
    got = qt.parse_args(argv)
    assert isinstance(got, qt.ToolOptions) and got.command == command


@pytest.mark.parametrize("argv", [["--reload=1"], ["--cancel-wait-for-all=yes"]])
def test_the_new_options_take_no_argument(argv: list[str]) -> None:
    got = qt.parse_args(argv)
    assert isinstance(got, qt.ParseExit) and got.code == 1
    assert got.stderr == f"pyquorumtool: option '{argv[0].split('=')[0]}' doesn't allow an " \
                         "argument\n"


def test_usage_mentions_them() -> None:
    text = qt.usage_text()
    assert "  --reload       tell every node of the cluster to reload its configuration\n" in text
    assert "  --cancel-wait-for-all\n" in text
    assert "corosync-cfgtool -R" in text and "quorum.cancel_wait_for_all u8 1" in text


# ====================================================================== --reload
def test_reload_ok_uses_the_cfg_service_only() -> None:
    api = CfgFakeApi()
    assert run(api, "--reload") == (0, "Reloading corosync.conf...\nDone\n", "")
    assert api.calls == ["cfg_initialize", "cfg_reload", "cfg_finalize"]
    assert api.reloads == 1


def test_reload_json() -> None:
    api = CfgFakeApi()
    rc, out, err = run(api, "--reload", "--json")
    assert (rc, err) == (0, "") and json.loads(out) == {"ok": True}
    assert out.count("\n") == 1


def test_reload_failure() -> None:
    api = CfgFakeApi(fail={"cfg_reload": CsErr.CS_ERR_LIBRARY})
    assert run(api, "--reload") == (1, "Reloading corosync.conf...\n",
                                    "Could not reload configuration. Error CS_ERR_LIBRARY\n")
    assert api.calls == ["cfg_initialize", "cfg_reload", "cfg_finalize"]  # still finalized
    api = CfgFakeApi(fail={"cfg_reload": CsErr.CS_ERR_LIBRARY})
    rc, out, err = run(api, "--reload", "--json")
    assert (rc, out) == (1, "") and err.startswith("Could not reload configuration.")


def test_reload_without_a_daemon() -> None:
    api = CfgFakeApi(fail={"cfg_initialize": CsErr.CS_ERR_LIBRARY})
    assert run(api, "--reload") == (
        1, "Reloading corosync.conf...\n",
        "Could not initialize corosync configuration API error CS_ERR_LIBRARY\n")
    assert api.calls == ["cfg_initialize"]  # nothing to finalize


def test_reload_needs_no_votequorum() -> None:
    api = CfgFakeApi(provider=None, quorum_type=0)
    assert run(api, "--reload")[0] == 0
    assert not set(QUORUM_CALLS) & set(api.calls)


# ====================================================================== --cancel-wait-for-all
def test_cancel_wait_for_all_ok_uses_cmap_only() -> None:
    api = CfgFakeApi()
    assert run(api, "--cancel-wait-for-all") == (0, "", "")
    assert api.calls == [SET]
    assert api.cmap_sets == [("quorum.cancel_wait_for_all", 1)]


def test_cancel_wait_for_all_json() -> None:
    api = CfgFakeApi()
    rc, out, err = run(api, "--json", "--cancel-wait-for-all")
    assert (rc, err) == (0, "") and json.loads(out) == {"ok": True}


@pytest.mark.parametrize("code", [CsErr.CS_ERR_NOT_EXIST, CsErr.CS_ERR_ACCESS,
                                  CsErr.CS_ERR_LIBRARY])
def test_cancel_wait_for_all_failure(code: CsErr) -> None:
    api = CfgFakeApi(fail={SET: code})
    assert run(api, "--cancel-wait-for-all") == (
        1, "", f"Failed to set key quorum.cancel_wait_for_all. Error {code.name}\n")
    api = CfgFakeApi(fail={SET: code})
    rc, out, _ = run(api, "--cancel-wait-for-all", "--json")
    assert (rc, out) == (1, "")


# ====================================================================== command choice
def test_the_last_command_is_the_one_run() -> None:
    api = CfgFakeApi()
    rc, out, _ = run(api, "--reload", "-l")
    assert rc == 0 and "Membership information" in out
    assert "cfg_initialize" not in api.calls and SET not in api.calls
    api = CfgFakeApi()
    assert run(api, "-s", "--cancel-wait-for-all", "--reload")[0] == 0
    assert api.calls == ["cfg_initialize", "cfg_reload", "cfg_finalize"]


def test_ctrl_c_during_reload_exits_1() -> None:
    class Interrupted(CfgFakeApi):
        def corosync_cfg_reload_config(self, handle: int) -> None:
            raise KeyboardInterrupt

    api = Interrupted()
    rc, _, _ = run(api, "--reload")
    assert rc == 1 and api.calls == ["cfg_initialize", "cfg_finalize"]


def test_real_client_api_reports_a_missing_daemon() -> None:
    out, err = io.StringIO(), io.StringIO()
    rc = qt.run_tool(["--reload", "--run-dir", "/nonexistent-pyquorum-run"], out=out, err=err)
    assert rc == 1 and err.getvalue() == (
        "Could not initialize corosync configuration API error CS_ERR_LIBRARY\n")
    err = io.StringIO()
    rc = qt.run_tool(["--cancel-wait-for-all", "--run-dir", "/nonexistent-pyquorum-run"],
                     out=io.StringIO(), err=err)
    assert rc == 1 and err.getvalue() == (
        "Failed to set key quorum.cancel_wait_for_all. Error CS_ERR_LIBRARY\n")
