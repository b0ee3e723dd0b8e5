"""The import rules of the architecture (section 2), enforced by walking every import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "pyquorum"

# package -> (allowed pyquorum packages, forbidden stdlib/third-party top-level modules)
RULES: dict[str, tuple[set[str], set[str]]] = {
    "types": (set(), {"asyncio", "socket", "time", "threading", "os"}),
    "errors": (set(), {"asyncio", "socket", "time", "threading", "os"}),
    "wire": ({"types", "errors"}, {"asyncio", "socket", "time", "threading", "selectors"}),
    "config": ({"types", "errors"}, {"asyncio", "socket", "time", "threading", "selectors"}),
    "core": (
        {"types", "errors", "wire", "config"},
        {"asyncio", "socket", "selectors", "time", "os", "threading", "signal", "subprocess",
         "random_module_state"},
    ),
    "ipc": ({"types", "errors", "wire"}, {"asyncio", "socket", "time", "os", "threading"}),
    "sim": (
        {"core", "wire", "config", "ipc", "types", "errors"},
        {"asyncio", "socket", "time", "threading"},
    ),
    "daemon": ({"types", "errors", "wire", "config", "core", "ipc"}, set()),
    "client": ({"ipc", "wire", "types", "errors"}, set()),
    "tools": ({"client", "config", "types", "errors"}, set()),
}


# Explicit exemptions: (file relative to src/pyquorum, module) with the reason.
EXEMPT: dict[tuple[str, str], str] = {
    ("sim/__main__.py", "time"): "the CLI reports wall_seconds; the simulation never reads it",
}


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            if node.module == "pyquorum":
                out.extend((node.lineno, f"pyquorum.{a.name}") for a in node.names)
    return out


def _files() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if _package_of(p) in RULES)


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_architecture(path: Path) -> None:
    pkg = _package_of(path)
    allowed, forbidden = RULES[pkg]
    bad = []
    rel = str(path.relative_to(SRC))
    for lineno, name in _imports(path):
        if (rel, name) in EXEMPT:
            continue
        parts = name.split(".")
        if parts[0] == "pyquorum" and len(parts) > 1:
            target = parts[1]
            if target != pkg and target in RULES and target not in allowed:
                bad.append(f"line {lineno}: {name}")
        elif parts[0] in forbidden:
            bad.append(f"line {lineno}: {name}")
    assert not bad, f"{path.relative_to(SRC)} ({pkg}) has forbidden imports: {bad}"


def test_core_uses_no_module_level_random() -> None:
    """The core takes an injected random.Random: no calls on the random module itself."""
    for path in (SRC / "core").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == "random" and node.attr != "Random"):
                pytest.fail(f"{path.name}:{node.lineno} uses random.{node.attr}")


def test_the_rule_table_covers_every_package() -> None:
    pkgs = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert pkgs <= set(RULES), pkgs - set(RULES)
