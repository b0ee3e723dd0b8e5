"""``system { libqb_ipc: yes|no }``: the switch of the libqb endpoint for C clients."""

from __future__ import annotations

import pytest

from pyquorum.config import parse_text
from pyquorum.config.build import build_config
from pyquorum.config.model import ClusterConfig
from pyquorum.config.reload import plan_reload
from pyquorum.errors import ConfigError

NODES = "nodelist {\n node {\n  nodeid: 1\n  ring0_addr: 127.0.0.1\n }\n}\n"


def build(text: str) -> ClusterConfig:
    return build_config(parse_text(text, "/etc/corosync/corosync.conf"))


def test_off_by_default() -> None:
    assert build("").system.libqb_ipc is False
    assert build("system {\n run_dir: /tmp/r\n}\n").system.libqb_ipc is False


@pytest.mark.parametrize(("word", "on"), [("yes", True), ("no", False)])
def test_yes_and_no(word: str, on: bool) -> None:
    assert build(f"system {{\n libqb_ipc: {word}\n}}\n").system.libqb_ipc is on


@pytest.mark.parametrize("word", ["on", "1", "YES", ""])
def test_other_values_name_file_and_line(word: str) -> None:
    with pytest.raises(ConfigError) as err:
        build(f"totem {{\n}}\nsystem {{\n state_dir: /tmp/s\n libqb_ipc: {word}\n}}\n")
    assert str(err.value).startswith("/etc/corosync/corosync.conf:5: system.libqb_ipc")
    assert "yes, no" in str(err.value)


def test_reload_keeps_the_running_value() -> None:
    running = build(NODES + "system {\n libqb_ipc: yes\n}\n")
    plan = plan_reload(running, build(NODES), 1)
    assert plan.config.system.libqb_ipc is True
    assert any("system" in notice for notice in plan.notices)
