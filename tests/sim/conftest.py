"""Shared helpers of the simulator tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ORACLE = REPO.parent / "shared" / "oracle"


@pytest.fixture
def oracle_dir() -> Path:
    """The oracle directory beside the repository (skip when it is not there)."""
    if not (ORACLE / "compare.py").exists():
        pytest.skip(f"the Corosync oracle is not beside the repository ({ORACLE})")
    return ORACLE
