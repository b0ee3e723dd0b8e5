"""corosync.conf grammar and flattening (spec 6.1), and load_config with uidgid.d."""

from __future__ import annotations

import ast
import grp
import pwd
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyquorum.config import ParsedConfig, build_config, load_config, parse_text
from pyquorum.errors import ConfigError

EXAMPLE = """\
totem {
    version: 2
    cluster_name: oracle
    transport: knet
    crypto_cipher: none
    crypto_hash: none
}
nodelist {
    node {
        ring0_addr: 10.213.77.1
        name: node1
        nodeid: 1
    }
    node {
        ring0_addr: 10.213.77.2
        name: node2
        nodeid: 2
    }
}
quorum {
    provider: corosync_votequorum
    two_node: 1
}
logging {
    to_stderr: no
    timestamp: hires
}
system {
    state_dir: /tmp/x/state
}
"""


def parse(text: str) -> ParsedConfig:
    return parse_text(text, "test.conf")


def parse_error(text: str, **kwargs: bool) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_text(text, "bad.conf", **kwargs)
    assert info.value.file == "bad.conf"
    return info.value


def as_dict(parsed: ParsedConfig) -> dict[str, str]:
    return {key: value for key, value, _ in parsed.keys}


# ---------------------------------------------------------------- good files


def test_example_file_flattens_in_file_order_with_lines() -> None:
    parsed = parse(EXAMPLE)
    assert parsed.keys[:5] == (
        ("totem.version", "2", 2),
        ("totem.cluster_name", "oracle", 3),
        ("totem.transport", "knet", 4),
        ("totem.crypto_cipher", "none", 5),
        ("totem.crypto_hash", "none", 6),
    )
    assert parsed.get("nodelist.node.0.ring0_addr") == "10.213.77.1"
    assert parsed.get("nodelist.node.1.nodeid") == "2"
    assert parsed.line_of("nodelist.node.1.nodeid") == 17
    assert parsed.get("quorum.two_node") == "1"
    assert parsed.line_of("system.state_dir") == 29
    assert parsed.get("missing") is None
    assert parsed.get("missing", "dflt") == "dflt"
    assert parsed.line_of("missing") is None
    assert "logging.timestamp" in parsed
    assert [k for k, _, _ in parsed.items("nodelist.node.1.")] == [
        "nodelist.node.1.ring0_addr",
        "nodelist.node.1.name",
        "nodelist.node.1.nodeid",
    ]
    assert parsed.sections == (
        ("totem", 1),
        ("nodelist", 8),
        ("nodelist.node.0", 9),
        ("nodelist.node.1", 14),
        ("quorum", 20),
        ("logging", 24),
        ("system", 28),
    )
    assert parsed.section_line("nodelist.node.1") == 14
    assert parsed.section_line("nope") is None


def test_comments_are_whole_line_only() -> None:
    parsed = parse(
        "# top comment\n"
        "totem {\n"
        "    # indented comment: with colon {\n"
        "\t#tab comment }\n"
        "    cluster_name: prod # not a comment\n"
        "}\n"
    )
    assert as_dict(parsed) == {"totem.cluster_name": "prod # not a comment"}
    assert parsed.line_of("totem.cluster_name") == 5


def test_values_may_contain_colons_and_be_empty() -> None:
    parsed = parse(
        "nodelist {\n"
        "  node {\n"
        "    ring0_addr: fe80::1:2%eth0\n"
        "    ring1_addr:2001:db8::7\n"
        "    name:\n"
        "    nodeid :   7   \n"
        "  }\n"
        "}\n"
    )
    assert as_dict(parsed) == {
        "nodelist.node.0.ring0_addr": "fe80::1:2%eth0",
        "nodelist.node.0.ring1_addr": "2001:db8::7",
        "nodelist.node.0.name": "",
        "nodelist.node.0.nodeid": "7",
    }


def test_section_opener_forms_and_blanks() -> None:
    parsed = parse(
        "quorum: {\r\n"
        "\tprovider:\tcorosync_votequorum \t\r\n"
        "}\r\n"
        "  totem{\n"
        "    token: 1000\n"
        "  }   \n"
        "system :{\n"
        "  state_dir: /a b\n"
        "\t}"
    )
    assert as_dict(parsed) == {
        "quorum.provider": "corosync_votequorum",
        "totem.token": "1000",
        "system.state_dir": "/a b",
    }


def test_repeated_keys_overwrite_and_sections_merge() -> None:
    parsed = parse(
        "totem {\n"
        "  token: 1000\n"
        "  join: 60\n"
        "}\n"
        "quorum {\n"
        "  provider: corosync_votequorum\n"
        "}\n"
        "totem {\n"
        "  token: 2000\n"
        "  merge: 300\n"
        "}\n"
        "totem {\n"
        "  token: 4000\n"
        "}\n"
    )
    assert parsed.keys == (
        ("totem.token", "4000", 13),
        ("totem.join", "60", 3),
        ("quorum.provider", "corosync_votequorum", 6),
        ("totem.merge", "300", 10),
    )
    assert parsed.section_line("totem") == 1


def test_section_names_are_case_sensitive_and_unknown_keys_kept() -> None:
    parsed = parse("Totem {\n  Token: 5\n  whatever: x y z\n}\nfoo: bar\n")
    assert as_dict(parsed) == {"Totem.Token": "5", "Totem.whatever": "x y z", "foo": "bar"}


def test_nodes_are_numbered_in_file_order_across_nodelist_sections() -> None:
    parsed = parse(
        "nodelist {\n"
        "  node {\n"
        "    nodeid: 3\n"
        "    extra {\n"
        "      k: v\n"
        "    }\n"
        "  }\n"
        "}\n"
        "nodelist {\n"
        "  node {\n"
        "    nodeid: 1\n"
        "  }\n"
        "  node {\n"
        "  }\n"
        "}\n"
    )
    assert as_dict(parsed) == {
        "nodelist.node.0.nodeid": "3",
        "nodelist.node.0.extra.k": "v",
        "nodelist.node.1.nodeid": "1",
    }
    assert parsed.section_line("nodelist.node.2") == 13


def test_interface_flattening_uses_linknumber_wherever_it_appears() -> None:
    parsed = parse(
        "totem {\n"
        "  interface {\n"
        "    mcastport: 5405\n"
        "    knet_link_priority: 3\n"
        "  }\n"
        "  interface {\n"
        "    knet_ping_interval: 100\n"
        "    linknumber: 1\n"
        "    mcastport: 5406\n"
        "  }\n"
        "}\n"
    )
    assert parsed.keys == (
        ("totem.interface.0.mcastport", "5405", 3),
        ("totem.interface.0.knet_link_priority", "3", 4),
        ("totem.interface.1.knet_ping_interval", "100", 7),
        ("totem.interface.1.mcastport", "5406", 9),
    )
    assert parsed.section_line("totem.interface.1") == 6


@pytest.mark.parametrize("value", ["256", "-1", "one", "0x1", ""])
def test_interface_bad_linknumber(value: str) -> None:
    err = parse_error(f"totem {{\n interface {{\n  linknumber: {value}\n }}\n}}\n")
    assert err.line == 3
    assert "totem.interface.linknumber: expected to be integer in range [0, 255]" in err.message


def test_logger_subsys_flattening() -> None:
    parsed = parse(
        "logging {\n"
        "  to_syslog: yes\n"
        "  logger_subsys {\n"
        "    debug: on\n"
        "    subsys: QUORUM\n"
        "  }\n"
        "  logger_subsys {\n"
        "    subsys: VOTEQ\n"
        "    to_stderr: off\n"
        "  }\n"
        "}\n"
    )
    assert parsed.keys == (
        ("logging.to_syslog", "yes", 2),
        ("logging.logger_subsys.QUORUM.debug", "on", 4),
        ("logging.logger_subsys.QUORUM.subsys", "QUORUM", 5),
        ("logging.logger_subsys.VOTEQ.to_stderr", "off", 9),
        ("logging.logger_subsys.VOTEQ.subsys", "VOTEQ", 8),
    )


def test_logger_subsys_without_subsys_fails_at_its_closing_brace() -> None:
    err = parse_error("logging {\n  logger_subsys {\n    debug: on\n  }\n}\n")
    assert (err.line, err.message) == (4, "No subsys key in logger_subsys directive")


def test_uidgid_flattening_keeps_names_for_load_to_resolve() -> None:
    parsed = parse("uidgid {\n  uid: root\n  gid: 1000\n}\nuidgid {\n  uid: hacluster\n}\n")
    assert parsed.keys == (
        ("uidgid.config.uid.root", "1", 2),
        ("uidgid.config.gid.1000", "1", 3),
        ("uidgid.config.uid.hacluster", "1", 6),
    )


def test_uidgid_rejects_other_keys_and_subsections() -> None:
    err = parse_error("uidgid {\n  uid: root\n  user: x\n}\n")
    assert (err.line, err.message) == (3, "uidgid: Only uid and gid are allowed items")
    err = parse_error("uidgid {\n  sub {\n  }\n}\n")
    assert (err.line, err.message) == (2, "Subsections are not allowed within uidgid section")


def test_uidgid_only_mode() -> None:
    parsed = parse_text("# drop-in\nuidgid {\n  gid: haclient\n}\n", "d", uidgid_only=True)
    assert parsed.keys == (("uidgid.config.gid.haclient", "1", 3),)
    err = parse_error("uidgid {\n}\ntotem {\n}\n", uidgid_only=True)
    assert (err.line, err.message) == (3, "uidgid: Can't add subsection different than uidgid")
    err = parse_error("\nuid: root\n", uidgid_only=True)
    assert (err.line, err.message) == (2, "uidgid: Only uid and gid are allowed items")


def test_braces_inside_values() -> None:
    # '{' anywhere makes a section opener; '}' with a ':' is just part of a value
    assert as_dict(parse("totem {\n  name: a}b\n}\n")) == {"totem.name": "a}b"}
    err = parse_error("totem {\n  cluster_name: a{b}\n}\n")
    assert (err.line, err.message) == (2, "Extra characters after opening bracket '{'")


# ---------------------------------------------------------------- errors


def test_line_length_limit() -> None:
    ok = "k: " + "v" * 507  # 510 bytes
    assert parse(ok + "\n").get("k") == "v" * 507
    assert parse(ok + "v").get("k") == "v" * 508  # unterminated final line: 511
    err = parse_error("a: b\n" + ok + "v\n")
    assert (err.line, err.message) == (2, "Line too long")
    err = parse_error("a: b\n" + ok + "vv")
    assert (err.line, err.message) == (2, "Line too long")
    err = parse_error("a: b\n" + ok + "\r\n")  # the \r counts
    assert err.line == 2
    err = parse_error("k: " + "é" * 254 + "\n")  # 511 bytes, 257 characters
    assert (err.line, err.message) == (1, "Line too long")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("totem {\n  token: 1\n", 2, "Missing closing brace"),
        ("a {\n b {\n }\n\n# end\n", 5, "Missing closing brace"),
        ("totem {\n}\n}\n", 3, "Unexpected closing brace"),
        ("x: 1\n  {\n", 2, "Missing section name before opening bracket '{'"),
        ("x: 1\n : {\n", 2, "Missing section name before opening bracket '{'"),
        ("totem { token: 5\n}\n", 1, "Extra characters after opening bracket '{'"),
        ("totem {\n token: 5 }\n", 2, "Missing closing brace"),
        ("totem {\n  } }\n}\n", 2, "Extra characters before or after closing bracket '}'"),
        ("totem {\n}}\n", 2, "Extra characters before or after closing bracket '}'"),
        ("totem {\n  token 5\n}\n", 2, "Line is not opening or closing section or key value"),
        ("key = value\n", 1, "Line is not opening or closing section or key value"),
        ("totem {\n  : 5\n}\n", 2, "Key name can't be empty"),
    ],
)
def test_grammar_errors(text: str, line: int, message: str) -> None:
    err = parse_error(text)
    assert err.line == line
    assert err.message.startswith(message)
    assert str(err).startswith(f"bad.conf:{line}: {message}")


def test_missing_closing_brace_names_the_open_section() -> None:
    err = parse_error("quorum {\n  provider: corosync_votequorum\n  device {\n}\n")
    assert err.line == 4
    assert "'quorum' opened at line 1" in err.message


def test_cmap_key_length_limit() -> None:
    assert parse("a {\n" + "k" * 253 + ": v\n}\n").get("a." + "k" * 253) == "v"  # 255 chars
    err = parse_error("a {\n" + "k" * 254 + ": v\n}\n")
    assert (err.line, err.message) == (2, "New key makes total cmap path too long")
    err = parse_error("a {\n" + "s" * 254 + " {\n}\n}\n")
    assert (err.line, err.message) == (2, "Start of section makes total cmap path too long")
    # the flattened form counts: the node index makes this key one character too long
    err = parse_error("nodelist {\n node {\n" + "k" * 240 + ": v\n }\n}\n")
    assert (err.line, err.message) == (3, "New key makes total cmap path too long")


GRAMMAR_ALPHABET = st.sampled_from(
    ["{", "}", ":", "#", " ", "\t", "\r", "\n", "a", "node", "nodelist", "totem", "interface",
     "linknumber", "logger_subsys", "logging", "subsys", "uidgid", "uid", "é", "\x00", "1"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), st.lists(GRAMMAR_ALPHABET).map("".join)), st.booleans())
def test_garbage_raises_only_config_error(text: str, uidgid_only: bool) -> None:
    """Whatever the text, parse_text and build_config raise nothing but ConfigError."""
    try:
        parsed = parse_text(text, "fuzz.conf", uidgid_only=uidgid_only)
    except ConfigError as err:
        assert err.file == "fuzz.conf"
        assert err.line is not None and err.line >= 1
    else:
        for key, _, line in parsed.keys:
            assert key and line >= 1
        try:
            build_config(parsed)
        except ConfigError as err:
            assert err.file == "fuzz.conf"


# ---------------------------------------------------------------- load_config


def _root_names() -> tuple[str, str]:
    return pwd.getpwuid(0).pw_name, grp.getgrgid(0).gr_name


def test_load_config_reads_file_and_uidgid_dir(tmp_path: Path) -> None:
    user, group = _root_names()
    conf = tmp_path / "corosync.conf"
    conf.write_text(EXAMPLE + f"uidgid {{\n  uid: {user}\n  gid: 4242\n}}\n")
    drop = tmp_path / "uidgid.d"
    drop.mkdir()
    (drop / "a").write_text(f"uidgid {{\n  gid: {group}\n  uid: 1001\n}}\n")
    (drop / "b").write_text("# empty\n")
    (drop / "subdir").mkdir()
    (drop / "subdir" / "ignored").write_text("not a config\n")
    config = load_config(str(conf))
    assert config.source == str(conf)
    assert config.uidgid.uids == {0, 1001}
    assert config.uidgid.gids == {0, 4242}
    assert [n.nodeid for n in config.nodes] == [1, 2]
    assert config.system.state_dir == "/tmp/x/state"


def test_load_config_without_uidgid_dir(tmp_path: Path) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text(EXAMPLE)
    assert load_config(str(conf)).uidgid.uids == frozenset()


def test_uidgid_dir_file_with_other_sections_is_named(tmp_path: Path) -> None:
    conf = tmp_path / "corosync.conf"
    conf.write_text(EXAMPLE)
    (tmp_path / "uidgid.d").mkdir()
    bad = tmp_path / "uidgid.d" / "pacemaker"
    bad.write_text("uidgid {\n  uid: 0\n}\n\nquorum {\n}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(conf))
    assert (info.value.file, info.value.line) == (str(bad), 5)


def test_unknown_user_and_group_are_errors_with_file_and_line(tmp_path: Path) -> None:
    conf = tmp_path / "corosync.conf"
    conf.write_text(EXAMPLE + "uidgid {\n  uid: no-such-user-pyquorum\n}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(conf))
    assert (info.value.file, info.value.line) == (str(conf), 32)
    assert "'no-such-user-pyquorum' user is not found" in info.value.message
    conf.write_text(EXAMPLE)
    (tmp_path / "uidgid.d").mkdir()
    drop = tmp_path / "uidgid.d" / "x"
    drop.write_text("\n\nuidgid {\n  gid: no-such-group-pyquorum\n}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(conf))
    assert (info.value.file, info.value.line) == (str(drop), 4)


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.conf"
    with pytest.raises(ConfigError) as info:
        load_config(str(missing))
    assert (info.value.file, info.value.line) == (str(missing), None)
    bad = tmp_path / "bad.conf"
    bad.write_bytes(b"totem {\n  cluster_name: \xff\xfe\n  token: x\n}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(bad))
    assert (info.value.file, info.value.line) == (str(bad), 3)


def test_config_modules_import_only_pure_stdlib_outside_load() -> None:
    import pyquorum.config as package

    pure = {"__future__", "re", "struct", "dataclasses", "collections.abc", "types"}
    allowed = {"pyquorum.errors", "pyquorum.types"} | pure
    directory = Path(package.__file__).parent
    for path in directory.glob("*.py"):
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
        imported = {m for m in imported if not m.startswith("pyquorum.config")}
        extra = {"os", "pwd", "grp"} if path.name == "load.py" else set()
        assert imported <= allowed | extra, (path.name, imported - allowed - extra)
