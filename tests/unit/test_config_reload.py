"""What a reload may change at run time (``pyquorum.config.reload.plan_reload``)."""

from __future__ import annotations

import pytest

from pyquorum.config import config_from_text
from pyquorum.config.model import ClusterConfig
from pyquorum.config.reload import plan_reload
from pyquorum.errors import ConfigError

BASE = """
totem {{
  version: 2
  cluster_name: {name}
  token: {token}
  crypto_cipher: none
  crypto_hash: none
}}
nodelist {{
{nodes}
}}
quorum {{
  provider: corosync_votequorum
{quorum}
}}
logging {{
  to_syslog: no
  debug: {debug}
}}
uidgid {{
  uid: {uid}
}}
"""


def node(i: int, addr: str | None = None, votes: int = 1, port: int | None = None) -> str:
    lines = ["  node {", f"    nodeid: {i}", f"    ring0_addr: {addr or f'127.0.0.{i}'}",
             f"    quorum_votes: {votes}"]
    if port:
        lines.append(f"    port: {port}")
    return "\n".join([*lines, "  }"])


def conf(*, nodes: tuple[str, ...] = (), name: str = "c1", token: int = 1000,
         quorum: str = "", debug: str = "off", uid: int = 1000,
         source: str = "new.conf") -> ClusterConfig:
    text = BASE.format(nodes="\n".join(nodes or tuple(node(i) for i in (1, 2, 3))),
                       name=name, token=token, quorum=quorum, debug=debug, uid=uid)
    return config_from_text(text, source)


def test_quorum_nodelist_and_uidgid_are_taken_from_the_new_file() -> None:
    cur = conf(source="cur.conf")
    new = conf(nodes=(node(1), node(2, votes=2), node(3, "10.0.0.3"), node(4)),
               quorum="  two_node: 0\n  expected_votes: 9", uid=2000)
    plan = plan_reload(cur, new, 1)
    assert plan.notices == ()
    assert plan.config.node_ids == (1, 2, 3, 4)
    assert plan.config.node(2).quorum_votes == 2  # type: ignore[union-attr]
    assert plan.config.node(3).ring_addrs == ("10.0.0.3",)  # type: ignore[union-attr]
    assert plan.config.quorum.expected_votes == 9
    assert 2000 in plan.config.uidgid.uids
    assert plan.config.source == "new.conf"


def test_keys_that_cannot_change_keep_their_running_values_with_a_notice() -> None:
    cur = conf()
    new = conf(name="other", token=5000, debug="on",
               nodes=(node(1, "127.0.0.9", port=6000), node(2), node(3)))
    plan = plan_reload(cur, new, 1)
    assert plan.config.totem == cur.totem
    assert plan.config.logging == cur.logging
    assert plan.config.node(1).ring_addrs == ("127.0.0.1",)  # type: ignore[union-attr]
    assert plan.config.node(1).port is None  # type: ignore[union-attr]
    words = "\n".join(plan.notices)
    for key in ("totem.cluster_name", "totem.token_ms", "logging",
                "nodelist.node (nodeid 1).ring0_addr", "nodelist.node (nodeid 1).port"):
        assert f"Modified entry '{key}' in corosync.conf cannot be changed at run-time" in words


def test_the_provider_cannot_change() -> None:
    cur = conf()
    new = config_from_text(BASE.format(
        nodes="\n".join(node(i) for i in (1, 2, 3)), name="c1", token=1000, quorum="",
        debug="off", uid=1000).replace("provider: corosync_votequorum", ""), "new.conf")
    plan = plan_reload(cur, new, 1)
    assert plan.config.quorum.provider == "corosync_votequorum"
    assert any("'quorum.provider'" in n for n in plan.notices)


def test_a_nodelist_without_this_node_is_refused_naming_the_file() -> None:
    with pytest.raises(ConfigError, match=r"new\.conf: this node \(nodeid 3\) is not in"):
        plan_reload(conf(), conf(nodes=(node(1), node(2))), 3)
