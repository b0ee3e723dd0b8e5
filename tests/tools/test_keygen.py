"""pyquorum-keygen: mode 0400, size, atomic write, refuses to overwrite without --force."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pyquorum.tools import keygen


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_default_size_and_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "authkey"
    assert keygen.main(["-k", str(key)]) == 0
    assert key.stat().st_size == keygen.DEFAULT_KEY_BYTES == 256
    assert _mode(key) == 0o400
    assert str(key) in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["authkey"]  # no temporary left


def test_size_option_and_randomness(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert keygen.main(["-k", str(a), "--size", "512"]) == 0
    assert keygen.main(["--key-file", str(b), "-s", "512"]) == 0
    assert a.stat().st_size == 512 and a.read_bytes() != b.read_bytes()


@pytest.mark.parametrize("size", ["0", "127", "4097", "-1"])
def test_bad_sizes_exit_1(tmp_path: Path, size: str, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "k"
    assert keygen.main(["-k", str(key), "--size", size]) == 1
    assert not key.exists() and "key size" in capsys.readouterr().err


def test_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "authkey"
    key.write_bytes(b"old")
    assert keygen.main(["-k", str(key)]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err
    assert key.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["authkey"]


def test_force_replaces(tmp_path: Path) -> None:
    key = tmp_path / "authkey"
    key.write_bytes(b"old")
    key.chmod(0o644)
    assert keygen.main(["-k", str(key), "--force"]) == 0
    assert key.stat().st_size == 256 and _mode(key) == 0o400
    first = key.read_bytes()
    assert keygen.main(["-k", str(key), "--force"]) == 0  # also over a 0400 file
    assert key.read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["authkey"]


def test_creates_the_parent_directory_0700(tmp_path: Path) -> None:
    key = tmp_path / "etc" / "pyquorum" / "authkey"
    assert keygen.main(["-k", str(key)]) == 0
    assert _mode(key.parent) == 0o700 and _mode(key) == 0o400


def test_unwritable_directory_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert keygen.main(["-k", str(blocker / "authkey")]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_as_a_process(tmp_path: Path) -> None:
    key = tmp_path / "k"
    cmd = [sys.executable, "-m", "pyquorum.tools.keygen", "-k", str(key)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and key.stat().st_size == 256 and _mode(key) == 0o400
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1 and "already exists" in r.stderr
    r = subprocess.run([*cmd, "--force", "--size", "1024"], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0 and key.stat().st_size == 1024
    r = subprocess.run([sys.executable, "-m", "pyquorum.tools.keygen", "-h"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and "--force" in r.stdout


def test_write_key_api(tmp_path: Path) -> None:
    key = tmp_path / "k"
    keygen.write_key(str(key), 128)
    with pytest.raises(keygen.KeyExistsError):
        keygen.write_key(str(key))
    with pytest.raises(ValueError):
        keygen.write_key(str(tmp_path / "other"), 10)
    assert os.path.getsize(key) == 128
