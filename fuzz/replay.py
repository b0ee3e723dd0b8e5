"""Run fuzz inputs through a target without atheris: reproduce a finding, measure coverage.

    python fuzz/replay.py codec CORPUS/artifacts/codec/crash-...   # the traceback
    python fuzz/replay.py config CORPUS/config                       # every file of a dir

Exit status: 0 when every input passed, 1 when one raised (its traceback is printed).
``campaign.py`` runs this under ``coverage`` to report the line coverage of a corpus.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from fuzztargets import TARGETS


def inputs(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for name in paths:
        path = Path(name)
        out.extend(sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path])
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in TARGETS:
        print(f"usage: replay.py {{{'|'.join(TARGETS)}}} FILE_OR_DIR...", file=sys.stderr)
        return 2
    one = TARGETS[argv[0]]
    failed = 0
    files = inputs(argv[1:])
    for path in files:
        try:
            one(path.read_bytes())
        except Exception:
            failed += 1
            print(f"FAILED {path}", file=sys.stderr)
            traceback.print_exc()
    print(f"{len(files)} inputs, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
