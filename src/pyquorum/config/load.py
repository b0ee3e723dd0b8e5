"""``load_config``: the only code of ``pyquorum.config`` that touches files (and passwd)."""

from __future__ import annotations

import grp
import os
import pwd
import re

from pyquorum.config.build import build_config
from pyquorum.config.model import ClusterConfig, UidGidConfig
from pyquorum.config.parser import ParsedConfig, parse_int, parse_text
from pyquorum.errors import ConfigError

UIDGID_DIR = "uidgid.d"
_UIDGID_KEY = re.compile(r"uidgid\.config\.(uid|gid)\.(.*)")


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError(path, None, f"Can't read file {path}: {exc.strerror}") from exc
    return data.decode("utf-8", "surrogateescape")


def _lookup(kind: str, name: str, file: str, line: int) -> int:
    """Resolve a user or group name (a plain number is accepted as an id too)."""
    try:
        if kind == "uid":
            return pwd.getpwnam(name).pw_uid
        return grp.getgrnam(name).gr_gid
    except (KeyError, ValueError):
        number = parse_int(name, 0, 0xFFFFFFFF)
        if number is not None:
            return number
    what = "user is not found in /etc/passwd" if kind == "uid" else "group is not in /etc/group"
    raise ConfigError(file, line, f"uidgid: the '{name}' {what}")


def resolve_uidgid(parsed: ParsedConfig) -> ParsedConfig:
    """``parsed`` with every ``uidgid.config.<uid|gid>.<name>`` key turned numeric."""
    keys = []
    for key, value, line in parsed.keys:
        match = _UIDGID_KEY.fullmatch(key)
        if match is not None:
            kind, name = match.groups()
            key = f"uidgid.config.{kind}.{_lookup(kind, name, parsed.filename, line)}"
        keys.append((key, value, line))
    return parsed.with_keys(keys)


def _uidgid_dir_ids(config_path: str) -> UidGidConfig:
    """Ids from every regular file in ``uidgid.d/`` next to the configuration file."""
    directory = os.path.join(os.path.dirname(config_path), UIDGID_DIR)
    uids: set[int] = set()
    gids: set[int] = set()
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return UidGidConfig()
    for name in names:
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            continue
        parsed = resolve_uidgid(parse_text(_read(path), path, uidgid_only=True))
        for key, _, _ in parsed.items("uidgid.config."):
            kind, _, number = key.removeprefix("uidgid.config.").partition(".")
            (uids if kind == "uid" else gids).add(int(number))
    return UidGidConfig(uids=frozenset(uids), gids=frozenset(gids))


def load_config(path: str, *, runtime: bool = False) -> ClusterConfig:
    """Read and parse the corosync.conf at ``path`` plus its ``uidgid.d/``; build and validate.

    Raises ``ConfigError`` naming the file and line at fault (or just the file when it
    cannot be read).  ``runtime``: a reload (see ``build_config``).
    """
    parsed = resolve_uidgid(parse_text(_read(path), path))
    return build_config(parsed, extra_uidgid=_uidgid_dir_ids(path), runtime=runtime)
