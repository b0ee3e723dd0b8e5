"""Typed configuration: schema checks, model mapping, timing and startup validation."""

from __future__ import annotations

import pytest

from pyquorum.config import (
    ClusterConfig,
    DeviceConfig,
    LoggerSubsys,
    NodeConfig,
    QuorumConfig,
    TotemConfig,
    UidGidConfig,
    build_config,
    config_from_text,
    parse_text,
    validate_votequorum,
)
from pyquorum.errors import ConfigError


def nodelist(n: int, votes: tuple[int, ...] = ()) -> str:
    body = "".join(
        f"  node {{\n    ring0_addr: 10.0.0.{i}\n    nodeid: {i}\n"
        + (f"    quorum_votes: {votes[i - 1]}\n" if votes else "")
        + "  }\n"
        for i in range(1, n + 1)
    )
    return f"nodelist {{\n{body}}}\n"


def build(text: str) -> ClusterConfig:
    return config_from_text(text, "test.conf")


def build_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config_from_text(text, "bad.conf")
    assert info.value.file == "bad.conf"
    return info.value


def line_with(text: str, needle: str) -> int:
    """1-based line of the first line of ``text`` containing ``needle``."""
    return next(i for i, line in enumerate(text.split("\n"), 1) if needle in line)


def assert_error_at(text: str, needle: str, *words: str) -> ConfigError:
    err = build_error(text)
    assert err.line == line_with(text, needle), err
    for word in words:
        assert word in err.message, err.message
    return err


FULL = """\
totem {
    version: 2
    cluster_name: oracle
    transport: knet
    token: 2000
    token_coefficient: 0
    join: 60
    merge: 250
    crypto_cipher: aes128
    crypto_hash: sha512
    keyfile: /etc/k
    ip_version: ipv6
    interface {
        mcastport: 6000
    }
}
nodelist {
    node {
        ring1_addr: 10.1.0.1
        ring0_addr: fd00::1
        name: node1
        nodeid: 1
        quorum_votes: 2
    }
    node {
        ring0_addr: fd00::2
        ring2_addr: 10.2.0.2
        name: node2
        nodeid: 2
    }
    node {
        ring0_addr: fd00::3
        nodeid: 30
    }
}
quorum {
    provider: corosync_votequorum
    expected_votes: 4
    wait_for_all: 0
    last_man_standing: 1
    last_man_standing_window: 20000
    expected_votes_tracking: 1
}
logging {
    to_stderr: no
    to_syslog: off
    to_logfile: yes
    logfile: /var/log/pyquorum.log
    timestamp: on
    fileline: on
    debug: trace
    logfile_priority: debug
    syslog_facility: local3
    logger_subsys {
        subsys: VOTEQ
        debug: on
        to_stderr: yes
    }
}
system {
    state_dir: /tmp/x/state
    run_dir: /tmp/x/run
    qb_ipc_type: socket
}
uidgid {
    uid: 1000
    gid: 0
}
"""


def test_defaults_are_the_models() -> None:
    assert build_config(parse_text("", "f.conf")) == ClusterConfig(source="f.conf")
    config = build("")
    assert config.totem.crypto_cipher == "aes256"
    assert config.totem.crypto_enabled
    assert config.system.state_dir == "/var/lib/pyquorum"
    assert config.quorum.provider is None


def test_full_file_maps_onto_the_model() -> None:
    config = build(FULL)
    assert config.totem == TotemConfig(
        cluster_name="oracle",
        transport="knet",
        token_ms=2000,
        token_coefficient_ms=0,
        join_ms=60,
        merge_ms=250,
        crypto_cipher="aes128",
        crypto_hash="sha512",
        keyfile="/etc/k",
        port=6000,
        ip_version="ipv6",
    )
    assert config.nodes == (
        NodeConfig(1, "node1", ("fd00::1", "10.1.0.1"), 2),
        NodeConfig(2, "node2", ("fd00::2", "10.2.0.2"), 1),
        NodeConfig(30, None, ("fd00::3",), 1),
    )
    assert config.node_ids == (1, 2, 30)
    assert config.quorum == QuorumConfig(
        provider="corosync_votequorum",
        expected_votes=4,
        wait_for_all=False,
        last_man_standing=True,
        last_man_standing_window_ms=20000,
        expected_votes_tracking=True,
    )
    log = config.logging
    assert (log.to_stderr, log.to_syslog, log.to_logfile) == (False, False, True)
    assert (log.logfile, log.timestamp, log.fileline, log.function_name) == (
        "/var/log/pyquorum.log",
        "on",
        True,
        False,
    )
    assert (log.debug, log.logfile_priority, log.syslog_facility) == ("trace", "debug", "local3")
    assert log.subsys == (LoggerSubsys("VOTEQ", to_stderr=True, debug="on"),)
    assert (config.system.state_dir, config.system.run_dir) == ("/tmp/x/state", "/tmp/x/run")
    assert config.uidgid == UidGidConfig(uids=frozenset({1000}), gids=frozenset({0}))
    assert config.timing().token_ms == 2000  # coefficient 0: no per-node growth


def test_quorum_switches_and_device() -> None:
    config = build(
        "quorum {\n two_node: 1\n wait_for_all: 1\n auto_tie_breaker: 7\n"
        " auto_tie_breaker_node: 3 1\n allow_downscale: 1\n votes: 3\n"
        " device {\n  model: net\n  votes: 2\n  timeout: 5000\n  sync_timeout: 9000\n }\n}\n"
    )
    q = config.quorum
    assert (q.two_node, q.wait_for_all, q.auto_tie_breaker, q.allow_downscale) == (
        True,
        True,
        True,
        True,
    )
    assert (q.auto_tie_breaker_node, q.votes) == ("3 1", 3)
    assert q.device == DeviceConfig("net", 2, 5000, 9000)
    assert build("quorum {\n wait_for_all: 0\n}\n").quorum.wait_for_all is False
    assert build("").quorum.wait_for_all is None
    no_model = build("quorum {\n device {\n  model:\n  votes: 1\n }\n}\n")
    assert no_model.quorum.device is None
    assert build("quorum {\n device {\n  model: net\n }\n}\n").quorum.device == DeviceConfig("net")


@pytest.mark.parametrize(
    ("n_nodes", "totem", "token", "consensus"),
    [
        (3, "", 3650, 4380),
        (2, "", 3000, 3600),
        (1, "", 3000, 3600),
        (5, "", 4950, 5940),
        (3, "token: 1000\n", 1650, 1980),
        (3, "consensus: 5000\n", 3650, 5000),
        (4, "token: 1000\ntoken_coefficient: 100\n", 1200, 1440),
    ],
)
def test_effective_timing(n_nodes: int, totem: str, token: int, consensus: int) -> None:
    timing = build(f"totem {{\n{totem}}}\n" + nodelist(n_nodes)).timing()
    assert (timing.token_ms, timing.consensus_ms) == (token, consensus)


def test_timing_worked_values_for_three_nodes() -> None:
    t = build(nodelist(3)).timing()
    assert (t.token_retransmit_ms, t.hold_ms, t.join_ms, t.merge_ms) == (869, 685, 50, 200)


# ---------------------------------------------------------------- typed keys


@pytest.mark.parametrize(
    ("section", "line", "bounds"),
    [
        ("totem", "token: 3000ms", "[0, 4294967295]"),
        ("totem", "token: 0x10", "[0, 4294967295]"),
        ("totem", "token: -1", "[0, 4294967295]"),
        ("totem", "token: 4294967296", "[0, 4294967295]"),
        ("totem", "token: 1 000", "[0, 4294967295]"),
        ("totem", "token:", "[0, 4294967295]"),
        ("totem", "window_size: lots", "[0, 4294967295]"),
        ("totem", "knet_compression_level: 2147483648", "[-2147483648, 2147483647]"),
        ("totem", "config_version: -1", "[0, 18446744073709551615]"),
        ("quorum", "two_node: yes", "[0, 255]"),
        ("quorum", "wait_for_all: 256", "[0, 255]"),
        ("quorum", "expected_votes: three", "[0, 4294967295]"),
        ("quorum", "leaving_timeout: 1.5", "[0, 4294967295]"),
        ("resources", "watchdog_timeout: 6s", "[0, 4294967295]"),
    ],
)
def test_typed_keys_must_be_integers_in_range(section: str, line: str, bounds: str) -> None:
    text = f"# comment\n{section} {{\n    {line}\n}}\n"
    err = build_error(text)
    assert err.line == 3
    key = line.split(":")[0]
    assert err.message.startswith(f"{section}.{key}: expected to be integer in range {bounds}")


def test_typed_keys_in_nested_sections() -> None:
    text = "quorum {\n device {\n  model: net\n  votes: x\n }\n}\n"
    assert_error_at(text, "votes: x", "quorum.device.votes: expected to be integer in range")
    text = "totem {\n interface {\n  linknumber: 2\n  mcastport: 65536\n }\n}\n"
    assert_error_at(text, "mcastport", "totem.interface.2.mcastport: expected", "[0, 65535]")
    text = "totem {\n interface {\n  knet_link_priority: 300\n }\n}\n"
    assert_error_at(text, "knet_link_priority", "totem.interface.0.knet_link_priority")
    text = nodelist(2).replace("nodeid: 2", "nodeid: two")
    assert_error_at(text, "nodeid: two", "nodelist.node.1.nodeid: expected")
    text = nodelist(2).replace("  }\n}", "    quorum_votes: -2\n  }\n}")
    assert_error_at(text, "quorum_votes", "nodelist.node.1.quorum_votes: expected")


def test_typed_keys_accept_plain_integers() -> None:
    config = build(
        "totem {\n token: +3000\n knet_compression_level: -1\n"
        " config_version: 18446744073709551615\n}\nquorum {\n two_node: 0\n}\n"
    )
    assert config.totem.token_ms == 3000


@pytest.mark.parametrize(
    ("section", "line"),
    [
        ("totem", "crypto_cipher: blowfish"),
        ("totem", "crypto_hash: sha3"),
        ("totem", "ip_version: ipv5"),
        ("totem", "transport: tcp"),
        ("system", "qb_ipc_type: pipe"),
        ("system", "sched_rr: on"),
        ("system", "move_to_root_cgroup: maybe"),
        ("logging", "to_stderr: true"),
        ("logging", "to_syslog: 1"),
        ("logging", "fileline: enabled"),
        ("logging", "timestamp: hi-res"),
        ("logging", "debug: verbose"),
        ("logging", "logfile_priority: loud"),
        ("logging", "syslog_facility: local9"),
    ],
)
def test_validated_string_keys(section: str, line: str) -> None:
    text = f"{section} {{\n\n  {line}\n}}\n"
    err = build_error(text)
    key, value = (part.strip() for part in line.split(":"))
    assert err.line == 3
    assert err.message.startswith(f'{section}.{key}: invalid value "{value}"; use one of:')


def test_logger_subsys_values_are_validated() -> None:
    text = "logging {\n logger_subsys {\n  subsys: QUORUM\n  debug: yes\n }\n}\n"
    assert_error_at(text, "debug: yes", 'logging.logger_subsys.QUORUM.debug: invalid value "yes"')


@pytest.mark.parametrize(("word", "value"), [("yes", True), ("on", True), ("no", False)])
def test_logging_booleans(word: str, value: bool) -> None:
    log = build(f"logging {{\n to_stderr: {word}\n function_name: {word}\n}}\n").logging
    assert (log.to_stderr, log.function_name) == (value, value)


def test_unknown_provider_is_fatal() -> None:
    text = "quorum {\n  provider: corosync_quorum_magic\n}\n"
    assert_error_at(text, "provider", "unknown quorum provider", "corosync_votequorum")
    assert_error_at("quorum {\n provider:\n}\n", "provider", "unknown quorum provider")


def test_no_provider_skips_votequorum_checks() -> None:
    config = build("quorum {\n two_node: 1\n device {\n  model: net\n }\n}\n")
    assert config.quorum.provider is None


def test_cipher_needs_a_hash() -> None:
    text = "totem {\n crypto_hash: none\n}\n"
    assert_error_at(text, "crypto_hash", "requires a crypto_hash other than none")
    assert not build("totem {\n crypto_hash: none\n crypto_cipher: none\n}\n").totem.crypto_enabled


def test_unresolved_uidgid_name_in_pure_build() -> None:
    assert_error_at("\nuidgid {\n uid: root\n}\n", "uid: root", "not a numeric id")
    extra = UidGidConfig(uids=frozenset({5}), gids=frozenset({6}))
    config = build_config(parse_text("uidgid {\n uid: 7\n}\n", "f"), extra_uidgid=extra)
    assert config.uidgid == UidGidConfig(uids=frozenset({5, 7}), gids=frozenset({6}))


# ---------------------------------------------------------------- nodelist


def test_nodeid_is_required_naming_the_node_section() -> None:
    text = nodelist(1) + "nodelist {\n  node {\n    ring0_addr: 10.0.0.9\n  }\n}\n"
    err = build_error(text)
    assert err.line == 8  # the second node's section opener
    assert "nodelist.node.1: nodeid is required" in err.message


def test_nodeid_zero_is_reserved() -> None:
    text = nodelist(2).replace("nodeid: 2", "nodeid: 0")
    assert_error_at(text, "nodeid: 0", "nodeid 0 is reserved")


def test_duplicate_nodeids() -> None:
    text = nodelist(3).replace("nodeid: 3", "nodeid: 1")
    err = build_error(text)
    assert err.line == line_with(text, "10.0.0.3") + 1
    assert "nodeid 1 is already used by the node at line 2" in err.message


# ---------------------------------------------------------------- totem minimums


@pytest.mark.parametrize(
    ("totem", "needle", "words"),
    [
        ("token: 29", "token:", ("totem.token: the effective value 29 ms",)),
        ("join: 20", "join", ("totem.join", "minimum of 30 ms")),
        ("merge: 0", "merge", ("totem.merge",)),
        ("consensus: 25", "consensus", ("totem.consensus",)),
        ("token_retransmit: 10", "token_retransmit", ("totem.token_retransmit",)),
        ("hold: 13", "hold", ("totem.hold", "minimum of 14 ms")),
        ("downcheck: 5", "downcheck", ("totem.downcheck",)),
        ("max_network_delay: 29", "max_network_delay", ("totem.max_network_delay",)),
        ("token: 100", "token:", ("totem.token_retransmit", "derived from totem.token")),
        ("consensus: 100\n  join: 200", "consensus", ("at least join (200 ms)",)),
    ],
)
def test_totem_minimums(totem: str, needle: str, words: tuple[str, ...]) -> None:
    text = f"totem {{\n  cluster_name: c\n  {totem}\n}}\n" + nodelist(2)
    assert_error_at(text, needle, *words)


def test_totem_minimums_use_the_effective_token() -> None:
    # token 50 alone is too low for 2 nodes (retransmit 11), fine with 3 (effective 700)
    assert_error_at("totem {\n token: 50\n}\n" + nodelist(2), "token:", "token_retransmit")
    assert build("totem {\n token: 50\n}\n" + nodelist(3)).timing().token_ms == 700
    assert build("totem {\n token: 30\n token_retransmit: 30\n hold: 14\n join: 30\n}\n")


# ---------------------------------------------------------------- votequorum startup rules

VQ = "quorum {\n  provider: corosync_votequorum\n"


def test_votequorum_needs_nodelist_or_expected_votes() -> None:
    text = "totem {\n}\n" + VQ + "}\n"
    assert_error_at(text, "provider", "nodelist or quorum.expected_votes must be configured")
    assert build(VQ + "  expected_votes: 3\n}\n").quorum.expected_votes == 3
    assert build(VQ + "}\n" + nodelist(1)).nodes


def test_votequorum_two_node_with_qdevice() -> None:
    text = nodelist(2) + VQ + "  two_node: 1\n  device {\n    model: net\n  }\n}\n"
    assert_error_at(text, "two_node", "two_node and a quorum device", "remove quorum.two_node")


def test_votequorum_atb_lms_odd_cluster_without_wfa() -> None:
    text = nodelist(3) + VQ + "  auto_tie_breaker: 1\n  last_man_standing: 1\n}\n"
    assert_error_at(text, "last_man_standing", "odd sized cluster (3 nodelist votes)")
    # non-fatal variants: even votes, wait_for_all, or no LMS (votequorum disables ATB)
    build(nodelist(4) + VQ + "  auto_tie_breaker: 1\n  last_man_standing: 1\n}\n")
    build(nodelist(3) + VQ + "  auto_tie_breaker: 1\n last_man_standing: 1\n wait_for_all: 1\n}\n")
    build(nodelist(3) + VQ + "  auto_tie_breaker: 1\n}\n")
    build(nodelist(3, (1, 1, 2)) + VQ + "  auto_tie_breaker: 1\n  last_man_standing: 1\n}\n")
    # two_node makes wait_for_all follow it, even though ATB turns two_node off later
    build(nodelist(3) + VQ + "  two_node: 1\n  auto_tie_breaker: 1\n  last_man_standing: 1\n}\n")


@pytest.mark.parametrize("feature", ["last_man_standing", "auto_tie_breaker", "allow_downscale"])
def test_votequorum_qdevice_incompatible_features(feature: str) -> None:
    text = nodelist(4) + VQ + f"  {feature}: 1\n  device {{\n    model: net\n  }}\n}}\n"
    assert_error_at(text, feature, f"quorum.device is not compatible with {feature}")


def test_votequorum_qdevice_with_atb_disabled_on_odd_cluster_is_accepted() -> None:
    config = build(nodelist(3) + VQ + "  auto_tie_breaker: 1\n  device {\n    model: net\n  }\n}\n")
    assert config.quorum.device == DeviceConfig("net")


def test_votequorum_expected_votes_with_qdevice_needs_device_votes() -> None:
    text = VQ + "  expected_votes: 5\n  device {\n    model: net\n  }\n}\n"
    assert_error_at(text, "model: net", "quorum.device.votes must be specified", "expected_votes")
    build(VQ + "  expected_votes: 5\n  device {\n    model: net\n    votes: 2\n  }\n}\n")


def test_votequorum_uneven_node_votes_with_qdevice_needs_device_votes() -> None:
    text = nodelist(3, (1, 2, 1)) + VQ + "  device {\n    model: net\n  }\n}\n"
    assert_error_at(text, "model: net", "not all nodes vote 1 (3 nodes, 4 nodelist votes)")
    build(nodelist(3, (1, 2, 1)) + VQ + "  device {\n    model: net\n    votes: 3\n  }\n}\n")
    build(nodelist(3) + VQ + "  device {\n    model: net\n  }\n}\n")  # rule 13: automatic


@pytest.mark.parametrize(
    ("expected", "votes", "fatal"), [(3, 2, True), (3, 1, False), (2, 5, True)]
)
def test_votequorum_device_votes_vs_expected_votes(expected: int, votes: int, fatal: bool) -> None:
    text = (
        nodelist(2)
        + VQ
        + f"  expected_votes: {expected}\n  device {{\n    model: net\n    votes: {votes}\n"
        + "  }\n}\n"
    )
    if fatal:
        assert_error_at(text, "    votes:", "too high or quorum.expected_votes", "at least 2")
    else:
        assert build(text).quorum.device == DeviceConfig("net", votes)


def test_validate_votequorum_without_lines() -> None:
    config = ClusterConfig(quorum=QuorumConfig(provider="corosync_votequorum"), source="x.conf")
    with pytest.raises(ConfigError) as info:
        validate_votequorum(config)
    assert (info.value.file, info.value.line) == ("x.conf", None)
    validate_votequorum(ClusterConfig(quorum=QuorumConfig(expected_votes=2)))
