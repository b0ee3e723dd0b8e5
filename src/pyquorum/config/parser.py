"""corosync.conf grammar: text in, flattened cmap-style keys out (spec 6.1).

Theory of operation
-------------------
The text is split on ``\\n`` only (as ``fgets`` does) and every line is classified in
Corosync's order: comment/blank, section opener (any ``{``), key/value (first ``:``),
closer (a lone ``}``), else error.  Sections form a stack of frames; each frame knows
the flattened prefix its items go to:

* ``nodelist.node`` gets ``nodelist.node.<i>`` with i counted in file order;
* ``totem.interface`` and ``logging.logger_subsys`` are *buffered*: their items are
  held until the closing brace, because ``linknumber`` / ``subsys`` may come last and
  decide the prefix (``totem.interface.<L>``, ``logging.logger_subsys.<S>``);
* ``uidgid`` accepts only ``uid`` and ``gid`` and stores ``uidgid.config.uid.<name>``
  (names are resolved to numbers by ``load_config``, the only code touching passwd).

A repeated key overwrites the earlier value (keeping its first position); repeated
sections merge.  Every error is a ``ConfigError(filename, line, reason)``.  This
module is pure: no file access.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from pyquorum.errors import ConfigError

LINE_MAX = 510
"""Visible bytes allowed on a line (Corosync reads lines into a 512-byte buffer)."""
KEYNAME_MAXLEN = 256
"""cmap's key name limit: a flattened key must be shorter than this."""

_BLANKS = " \t"
_INT_RE = re.compile(r"[+-]?[0-9]+")


def parse_int(text: str, lo: int, hi: int) -> int | None:
    """Parse a plain base-10 integer within ``[lo, hi]`` as Corosync's ``safe_atoq`` does.

    Returns None for anything else (hex, blanks, ``yes``, out of range).
    """
    if _INT_RE.fullmatch(text) is None:
        return None
    value = int(text)
    return value if lo <= value <= hi else None


def int_range_error(key: str, value: str, lo: int, hi: int) -> str:
    """The reason text for a typed key that is not an integer within its range."""
    return f'{key}: expected to be integer in range [{lo}, {hi}], but "{value}" was given'


@dataclass(frozen=True, slots=True)
class ParsedConfig:
    """The flattened keys of one file, in file order, each with its value and line.

    ``keys`` holds ``(key, value, line)``; a key appears once (the last value and its
    line win; the position is that of the first occurrence).  ``sections`` holds
    ``(flattened_prefix, line)`` for every section opened, e.g. ``("nodelist.node.0", 9)``.
    """

    filename: str
    keys: tuple[tuple[str, str, int], ...] = ()
    sections: tuple[tuple[str, int], ...] = ()
    _index: Mapping[str, tuple[str, int]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        merged: dict[str, tuple[str, int]] = {}
        for key, value, line in self.keys:
            merged[key] = (value, line)
        object.__setattr__(self, "keys", tuple((k, v, n) for k, (v, n) in merged.items()))
        first: dict[str, int] = {}
        for prefix, line in self.sections:
            first.setdefault(prefix, line)
        object.__setattr__(self, "sections", tuple(first.items()))
        object.__setattr__(self, "_index", merged)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of ``key``, or ``default`` when absent."""
        entry = self._index.get(key)
        return default if entry is None else entry[0]

    def line_of(self, key: str) -> int | None:
        """The line ``key`` was (last) set on, or None when absent."""
        entry = self._index.get(key)
        return None if entry is None else entry[1]

    def section_line(self, prefix: str) -> int | None:
        """The line a section with flattened ``prefix`` was first opened on, if any."""
        for name, line in self.sections:
            if name == prefix:
                return line
        return None

    def items(self, prefix: str = "") -> Iterator[tuple[str, str, int]]:
        """``(key, value, line)`` of every key starting with ``prefix``, in file order."""
        return (entry for entry in self.keys if entry[0].startswith(prefix))

    def with_keys(self, keys: Iterable[tuple[str, str, int]]) -> ParsedConfig:
        """A copy with ``keys`` replaced (duplicates collapse, the last one wins)."""
        return ParsedConfig(self.filename, tuple(keys), self.sections)


@dataclass(slots=True)
class _Buffer:
    """Items of a buffered section (interface or logger_subsys) awaiting its prefix."""

    kind: str
    items: list[tuple[str, str, int]] = field(default_factory=list)
    linknumber: int = 0
    subsys: tuple[str, int] | None = None


@dataclass(slots=True)
class _Frame:
    raw: str
    """Unflattened section path, e.g. ``nodelist.node``."""
    prefix: str
    """Flattened prefix (absolute), or the relative prefix inside a buffer."""
    line: int
    buffer: _Buffer | None = None
    buffer_root: bool = False
    uidgid: bool = False


@dataclass(slots=True)
class _Parser:
    filename: str
    uidgid_only: bool
    keys: list[tuple[str, str, int]] = field(default_factory=list)
    sections: list[tuple[str, int]] = field(default_factory=list)
    stack: list[_Frame] = field(default_factory=list)
    node_count: int = 0

    def error(self, line: int, reason: str) -> ConfigError:
        return ConfigError(self.filename, line, reason)

    def emit(self, key: str, value: str, line: int) -> None:
        if _nbytes(key) >= KEYNAME_MAXLEN:
            raise self.error(line, "New key makes total cmap path too long")
        self.keys.append((key, value, line))

    def open_section(self, name: str, line: int) -> None:
        parent = self.stack[-1] if self.stack else None
        raw = f"{parent.raw}.{name}" if parent else name
        if _nbytes(raw) >= KEYNAME_MAXLEN:
            raise self.error(line, "Start of section makes total cmap path too long")
        if self.uidgid_only and raw != "uidgid":
            raise self.error(line, "uidgid: Can't add subsection different than uidgid")
        if parent is not None and parent.uidgid:
            raise self.error(line, "Subsections are not allowed within uidgid section")
        if parent is not None and parent.buffer is not None:
            frame = _Frame(raw, f"{parent.prefix}{name}.", line, parent.buffer)
        elif raw in ("totem.interface", "logging.logger_subsys"):
            frame = _Frame(raw, "", line, _Buffer(raw), buffer_root=True)
        elif raw == "uidgid":
            frame = _Frame(raw, raw, line, uidgid=True)
        elif raw == "nodelist.node":
            frame = _Frame(raw, f"nodelist.node.{self.node_count}", line)
            self.node_count += 1
        else:
            frame = _Frame(raw, f"{parent.prefix}.{name}" if parent else name, line)
        if frame.buffer is None:
            self.sections.append((frame.prefix, line))
        self.stack.append(frame)

    def item(self, key: str, value: str, line: int) -> None:
        frame = self.stack[-1] if self.stack else None
        if frame is None:
            if self.uidgid_only:
                raise self.error(line, "uidgid: Only uid and gid are allowed items")
            self.emit(key, value, line)
        elif frame.uidgid:
            if key not in ("uid", "gid"):
                raise self.error(line, "uidgid: Only uid and gid are allowed items")
            self.emit(f"uidgid.config.{key}.{value}", "1", line)
        elif frame.buffer is not None:
            buf = frame.buffer
            if frame.buffer_root and buf.kind == "totem.interface" and key == "linknumber":
                number = parse_int(value, 0, 255)
                if number is None:
                    raise self.error(
                        line, int_range_error("totem.interface.linknumber", value, 0, 255)
                    )
                buf.linknumber = number
            elif frame.buffer_root and buf.kind == "logging.logger_subsys" and key == "subsys":
                buf.subsys = (value, line)
            else:
                buf.items.append((frame.prefix + key, value, line))
        else:
            self.emit(f"{frame.prefix}.{key}", value, line)

    def close_section(self, line: int) -> None:
        frame = self.stack.pop()
        buf = frame.buffer
        if not frame.buffer_root or buf is None:
            return
        if buf.kind == "totem.interface":
            base = f"totem.interface.{buf.linknumber}"
        else:
            if buf.subsys is None:
                raise self.error(line, "No subsys key in logger_subsys directive")
            base = f"logging.logger_subsys.{buf.subsys[0]}"
        self.sections.append((base, frame.line))
        for rel, value, item_line in buf.items:
            self.emit(f"{base}.{rel}", value, item_line)
        if buf.subsys is not None:
            self.emit(f"{base}.subsys", *buf.subsys)


def _nbytes(text: str) -> int:
    """Length of ``text`` in bytes as it was in the file (UTF-8, undecodable bytes escaped)."""
    try:
        return len(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return len(text.encode("utf-8", "surrogatepass"))


def parse_text(text: str, filename: str, *, uidgid_only: bool = False) -> ParsedConfig:
    """Parse corosync.conf ``text`` (spec 6.1) into flattened keys.

    ``filename`` is only used in errors.  With ``uidgid_only`` (files of ``uidgid.d/``)
    the text may contain nothing but ``uidgid`` sections.  Raises ``ConfigError`` with
    the file and line at fault, and nothing else.
    """
    parser = _Parser(filename, uidgid_only)
    lines = text.split("\n")
    terminated = lines[-1] == ""
    if terminated:
        lines.pop()
    for number, raw_line in enumerate(lines, start=1):
        unterminated_last = number == len(lines) and not terminated
        if _nbytes(raw_line) > LINE_MAX + unterminated_last:
            raise parser.error(number, "Line too long")
        line = raw_line.removesuffix("\r").rstrip(_BLANKS)
        stripped = line.lstrip(_BLANKS)
        if not stripped or stripped.startswith("#"):
            continue
        if "{" in line:
            before, _, after = line.partition("{")
            name = before.strip(_BLANKS).rstrip(_BLANKS + ":")
            if not name:
                raise parser.error(number, "Missing section name before opening bracket '{'")
            if after.strip(_BLANKS):
                raise parser.error(number, "Extra characters after opening bracket '{'")
            parser.open_section(name, number)
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip(_BLANKS)
            if not key:
                raise parser.error(number, "Key name can't be empty")
            parser.item(key, value.strip(_BLANKS), number)
        elif "}" in line:
            if stripped != "}":
                raise parser.error(number, "Extra characters before or after closing bracket '}'")
            if not parser.stack:
                raise parser.error(number, "Unexpected closing brace")
            parser.close_section(number)
        else:
            raise parser.error(number, "Line is not opening or closing section or key value")
    if parser.stack:
        frame = parser.stack[-1]
        raise parser.error(
            len(lines),
            f"Missing closing brace (section '{frame.raw}' opened at line {frame.line})",
        )
    return ParsedConfig(filename, tuple(parser.keys), tuple(parser.sections))
