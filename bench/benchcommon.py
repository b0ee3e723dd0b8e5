"""Shared helpers of the benchmarks: statistics, the machine, JSON output, tables.

Every benchmark prints a table and writes one JSON document:
``{"benchmark": name, "machine": machine(), "params": {...}, "results": [...]}``,
where each result row carries a ``stats(...)`` summary of its samples (seconds or
milliseconds, the key names the unit) and the raw samples themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SHARED = REPO.parent / "shared"
ORACLE = SHARED / "oracle"
CHAOS_DIR = REPO / "tests" / "chaos"


def percentile(xs: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation between closest ranks."""
    if not xs:
        raise ValueError("no samples")
    s = sorted(xs)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def stats(xs: Sequence[float | None]) -> dict[str, Any]:
    """median, p90, p99, min, max, spread (max - min), stdev and count of ``xs``
    (``None`` samples, i.e. missing measurements, are counted apart)."""
    vals = [float(x) for x in xs if x is not None]
    out: dict[str, Any] = {"n": len(vals), "missing": len(xs) - len(vals)}
    if not vals:
        return out
    out.update({
        "median": round(statistics.median(vals), 6),
        "p90": round(percentile(vals, 0.90), 6),
        "p99": round(percentile(vals, 0.99), 6),
        "min": round(min(vals), 6),
        "max": round(max(vals), 6),
        "spread": round(max(vals) - min(vals), 6),
        "stdev": round(statistics.stdev(vals), 6) if len(vals) > 1 else 0.0,
    })
    return out


_bytecode = "not checked"


def precompile_pyquorum() -> str:
    """Compile pyquorum's modules to bytecode (``compileall``), as ``pip install`` does,
    so that every daemon the benchmark starts loads ``.pyc`` files instead of compiling
    its sources (with ``PYTHONDONTWRITEBYTECODE`` set, as on the machine these numbers
    come from, nothing else would write them).  Returns, and records for ``machine()``,
    what happened."""
    global _bytecode
    import compileall

    import pyquorum
    root = Path(pyquorum.__file__).resolve().parent
    try:
        ok = compileall.compile_dir(str(root), quiet=1)
    except OSError as exc:
        _bytecode = f"not precompiled ({exc})"
    else:
        _bytecode = f"precompiled ({root})" if ok else f"precompile failed for some of {root}"
    return _bytecode


def machine() -> dict[str, Any]:
    """Where the numbers were measured."""
    def first_line(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                                  check=False).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return ""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu": model, "cores": os.cpu_count(), "mem_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(), "python": sys.version.split()[0],
        "corosync": first_line(["corosync", "-v"]),
        "loadavg_at_start": os.getloadavg(), "pyquorum_bytecode": _bytecode,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_json(name: str, params: dict[str, Any], results: list[dict[str, Any]],
               out: str | None = None) -> Path:
    """Write the benchmark's JSON document (default ``bench/results/<name>.json``)."""
    path = Path(out) if out else RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "machine": machine(), "params": params, "results": results}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-markdown table (also readable as plain text)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
             for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        return f"{c:.3f}"
    return "-" if c is None else str(c)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # the finally blocks clean up


def install_sigterm() -> None:
    """SIGTERM raises SystemExit, so every ``finally`` (cleanup) runs."""
    signal.signal(signal.SIGTERM, _terminate)


def int_list(text: str, lo: int, hi: int, what: str) -> list[int]:
    """``"8,16,32"`` -> ``[8, 16, 32]``, each in ``lo..hi`` (an argparse type)."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or any(not lo <= n <= hi for n in values):
        raise argparse.ArgumentTypeError(f"bad {what} {text!r} (each {lo}..{hi})")
    return values


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of ``pid`` in clock ticks (None if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
