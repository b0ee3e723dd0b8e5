"""Fuzz tier, configuration: ``parse_text`` + ``build_config`` on hostile text.

Extends tests/unit/test_config_parser.py (random text and a grammar alphabet) with
line-level mutations of a complete valid corosync.conf (the README's example), values
at and beyond every typed range, bytes read as ``load_config`` reads them, and
``load_config`` itself.  The contract: success, or a ``ConfigError`` that names the
file and a line of it, and nothing else.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Final

from fuzz_strategies import README_CONF, mutated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyquorum.config import build_config, config_from_text, load_config, parse_text
from pyquorum.errors import ConfigError

NAME: Final = "fuzz.conf"
SLOW_OK = settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow])

SECTIONS: Final = ["totem", "nodelist", "node", "quorum", "device", "logging", "logger_subsys",
                   "interface", "system", "uidgid", "resources", "x", "nodelist.node",
                   "totem.interface", "node.0"]
KEYS: Final = ["version", "cluster_name", "crypto_cipher", "crypto_hash", "keyfile", "token",
               "token_coefficient", "consensus", "join", "merge", "hold", "token_retransmit",
               "downcheck", "max_network_delay", "linknumber", "mcastport", "ttl", "nodeid",
               "name", "ring0_addr", "ring7_addr", "port", "quorum_votes", "provider",
               "expected_votes", "votes", "two_node", "wait_for_all", "last_man_standing",
               "auto_tie_breaker", "allow_downscale", "model", "sync_timeout", "subsys",
               "debug", "to_syslog", "timestamp", "syslog_facility", "uid", "gid",
               "state_dir", "nodelist.node.0.nodeid", "totem.token", "quorum.device.model",
               "config_version", "knet_compression_level"]
VALUES: Final = ["0", "1", "2", "3", "-1", "+1", "29", "30", "255", "256", "65535", "65536",
                 "4294967295", "4294967296", "18446744073709551615", "18446744073709551616",
                 "-2147483649", "0x10", "1e3", "abc", "", "yes", "no", "none", "aes256",
                 "md5", "corosync_votequorum", "net", "hires", "QUORUM", "é", "\udcff",
                 "{", "}", ":", "#", "1" * 400]
LINE: Final = st.one_of(
    st.just("}"),
    st.builds("{} {{".format, st.sampled_from(SECTIONS)),
    st.builds("{}: {}".format, st.sampled_from(KEYS), st.sampled_from(VALUES)),
    st.builds("{}{}".format, st.sampled_from([" ", "\t", "  #", "\r"]), st.text(max_size=30)),
    st.text(max_size=40),
    st.just("k" * 600),
)


def check_error(err: ConfigError, text: str) -> None:
    """A ConfigError names this file and one of its lines, with a message."""
    lines = max(1, text.count("\n") + 1)
    assert err.file == NAME
    assert isinstance(err.line, int), f"no line: {err}"
    assert 1 <= err.line <= lines, (err.line, lines)
    assert err.message
    assert str(err) == f"{NAME}:{err.line}: {err.message}"


def check_config(text: str, *, uidgid_only: bool = False) -> None:
    try:
        parsed = parse_text(text, NAME, uidgid_only=uidgid_only)
    except ConfigError as err:
        check_error(err, text)
        return
    lines = text.count("\n") + 1
    assert all(key and 1 <= line <= lines for key, _, line in parsed.keys)
    try:
        config = build_config(parsed)
    except ConfigError as err:
        check_error(err, text)
        return
    ids = [n.nodeid for n in config.nodes]
    assert len(ids) == len(set(ids)) and 0 not in ids
    assert config.timing().token_ms >= 30


@st.composite
def conf_mutation(draw: Any, base: str = README_CONF) -> str:
    """``base`` after 1-5 line edits: delete, duplicate, swap, insert, revalue, truncate."""
    lines = base.split("\n")
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "value", "cut"]))
        i = draw(st.integers(0, len(lines) - 1)) if lines else 0
        if op == "delete" and lines:
            del lines[i]
        elif op == "duplicate" and lines:
            lines.insert(i, lines[i])
        elif op == "swap" and lines:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "insert":
            lines.insert(i, draw(LINE))
        elif op == "value" and lines and ":" in lines[i]:
            key = lines[i].partition(":")[0]
            lines[i] = f"{key}: {draw(st.sampled_from(VALUES))}"
        elif op == "cut":
            text = "\n".join(lines)
            lines = text[: draw(st.integers(0, len(text)))].split("\n")
    return "\n".join(lines)


def _as_read(data: bytes) -> str:
    """How load_config turns file bytes into text."""
    return data.decode("utf-8", "surrogateescape")


# ------------------------------------------------------------------ (f) arbitrary text
@settings(max_examples=300)
@given(st.lists(LINE, max_size=30).map("\n".join), st.booleans())
def test_arbitrary_lines_of_the_grammar(text: str, uidgid_only: bool) -> None:
    check_config(text, uidgid_only=uidgid_only)


@settings(max_examples=200)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_as_load_config_reads_them(data: bytes) -> None:
    check_config(_as_read(data))


# ------------------------------------------------------------------ (f) mutations
def test_the_readme_example_builds() -> None:
    config = config_from_text(README_CONF, NAME)
    assert [n.nodeid for n in config.nodes] == [1, 2, 3]


@SLOW_OK
@given(conf_mutation())
def test_line_mutations_of_a_valid_conf(text: str) -> None:
    check_config(text)


@SLOW_OK
@given(mutated(README_CONF.encode(), max_ops=8))
def test_byte_mutations_of_a_valid_conf(data: bytes) -> None:
    check_config(_as_read(data))


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(conf_mutation(), mutated(README_CONF.encode()).map(_as_read)))
def test_load_config_on_mutated_files(text: str) -> None:
    """The file path end to end: bytes on disk, uidgid names resolved, uidgid.d read."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "corosync.conf")
        with open(path, "wb") as f:
            f.write(text.encode("utf-8", "surrogateescape"))
        try:
            load_config(path)
        except ConfigError as err:
            lines = max(1, text.count("\n") + 1)
            assert err.file == path and err.message
            assert err.line is not None and 1 <= err.line <= lines, str(err)
