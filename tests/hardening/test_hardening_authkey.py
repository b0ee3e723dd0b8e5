"""The authkey must be a regular file that only its owner can access.

``read_authkey`` directly for every case, then real daemons for the start-up line:
exit 1 and one line on stderr naming the file (and the mode, for a permission
refusal).  Accepted: 0400, 0600 (owner-writable), a symlink to such a file, 16 to 4096
bytes.  Refused: any group or other bit (0440, 0404, 0640, 0420, 0402, 0644), a
directory, a FIFO (without hanging), a symlink to a loose file, an empty, short or too
long file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import LocalCluster

from pyquorum.daemon.authkey import MAX_AUTHKEY_BYTES, read_authkey
from pyquorum.daemon.errors import StartupError

WAIT_S = 20.0
KEY = os.urandom(128)


def key_file(tmp_path: Path, mode: int, data: bytes = KEY, name: str = "authkey") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    path.chmod(mode)
    return path


def refusal(path: Path) -> str:
    with pytest.raises(StartupError) as info:
        read_authkey(str(path))
    text = str(info.value)
    assert str(path) in text, text
    return text


@pytest.mark.parametrize("mode", [0o400, 0o600])
def test_owner_only_modes_are_accepted(tmp_path: Path, mode: int) -> None:
    assert read_authkey(str(key_file(tmp_path, mode))) == (KEY, [])


@pytest.mark.parametrize("mode", [0o440, 0o404, 0o640, 0o644, 0o420, 0o402, 0o410, 0o401])
def test_group_or_other_bits_are_refused_naming_file_and_mode(tmp_path: Path,
                                                              mode: int) -> None:
    text = refusal(key_file(tmp_path, mode))
    assert f"(mode {mode:04o})" in text and "group or others" in text
    assert "chmod 0400" in text


def test_a_symlink_to_a_good_file_is_followed(tmp_path: Path) -> None:
    target = key_file(tmp_path, 0o400)
    link = tmp_path / "link"
    link.symlink_to(target)
    assert read_authkey(str(link)) == (KEY, [])


def test_a_symlink_to_a_loose_file_is_refused(tmp_path: Path) -> None:
    target = key_file(tmp_path, 0o644)
    link = tmp_path / "link"
    link.symlink_to(target)
    assert "(mode 0644)" in refusal(link)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "keydir"
    d.mkdir(mode=0o700)
    assert "not a regular file (a directory)" in refusal(d)


def test_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    assert "not a regular file (a FIFO)" in refusal(fifo)  # no writer: would block


def test_empty_short_and_long_files_are_refused(tmp_path: Path) -> None:
    assert refusal(key_file(tmp_path, 0o400, b"", "empty")).startswith(
        "Could only read 0 bits of minimum 128 bits")
    assert "Could only read 120 bits" in refusal(key_file(tmp_path, 0o400, b"x" * 15, "short"))
    assert read_authkey(str(key_file(tmp_path, 0o400, b"k" * 16, "min")))[0] == b"k" * 16
    top = b"k" * MAX_AUTHKEY_BYTES
    assert read_authkey(str(key_file(tmp_path, 0o400, top, "max")))[0] == top
    text = refusal(key_file(tmp_path, 0o400, top + b"k", "long"))
    assert f"longer than {MAX_AUTHKEY_BYTES} bytes" in text


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    assert refusal(tmp_path / "nothing").startswith("Could not open")


# ====================================================================== the daemon
def start_fails(c: LocalCluster) -> str:
    """Start node 1, expect exit 1 and exactly one line on stderr; return it."""
    c.start(1, wait_ready=False)
    assert c.wait_exit(1, WAIT_S) == 1
    lines = c.stderr(1).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyquorumd: "), lines
    return lines[0]


@pytest.mark.parametrize("mode", [0o440, 0o404])
def test_daemon_refuses_to_start_with_a_readable_key(
        hardening_cluster: Callable[..., LocalCluster], mode: int) -> None:
    c = hardening_cluster(1)
    c.keyfile.chmod(mode)
    line = start_fails(c)
    assert str(c.keyfile) in line and f"(mode {mode:04o})" in line, line


def test_daemon_refuses_a_directory_and_an_empty_key(
        hardening_cluster: Callable[..., LocalCluster]) -> None:
    c = hardening_cluster(1)
    c.keyfile.unlink()
    c.keyfile.mkdir(mode=0o700)
    try:
        line = start_fails(c)
        assert f"{c.keyfile}: the authkey is not a regular file (a directory)" in line
    finally:
        c.keyfile.rmdir()
    key_file(c.keyfile.parent, 0o400, b"", c.keyfile.name)
    (c.node_dir(1) / "stderr.txt").unlink()  # start_fails wants the new line only
    line = start_fails(c)
    assert line.endswith(f"Could only read 0 bits of minimum 128 bits from {c.keyfile}.")


def test_daemon_starts_with_0600_and_through_a_symlink(
        hardening_cluster: Callable[..., LocalCluster]) -> None:
    c = hardening_cluster(1)
    c.keyfile.chmod(0o600)
    c.start(1)
    assert c.stop(1) == 0
    real = c.keyfile.with_name("authkey.real")
    c.keyfile.rename(real)
    c.keyfile.symlink_to(real)
    try:
        c.start(1)
        assert c.stop(1) == 0
    finally:
        c.keyfile.unlink()
        real.rename(c.keyfile)
