"""Fuzz tier: the atheris harnesses of ``fuzz/`` stay runnable without atheris.

Every target function of ``fuzz/fuzztargets.py`` runs over the seeds the campaign
writes into its corpus (so a change to a decoder that breaks a harness or makes a seed
invalid fails here, not in the middle of a campaign), and the driver's reading of
libFuzzer's output is checked on a canned log.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

from pyquorum.wire.crypto import HEADER_SIZE, Opened

FUZZ_DIR = Path(__file__).resolve().parents[2] / "fuzz"
TARGETS = ["codec", "sealed", "ipc", "config", "qb"]


@pytest.fixture
def fuzz_modules(monkeypatch: pytest.MonkeyPatch) -> dict[str, ModuleType]:
    monkeypatch.syspath_prepend(str(FUZZ_DIR))
    return {name: importlib.import_module(name) for name in ("fuzzseeds", "fuzztargets",
                                                             "campaign")}


@pytest.mark.parametrize("target", TARGETS)
def test_every_seed_passes_its_target(fuzz_modules: dict[str, ModuleType], target: str) -> None:
    seeds = fuzz_modules["fuzzseeds"].SEEDS[target]()
    assert len(seeds) >= 4
    one = fuzz_modules["fuzztargets"].TARGETS[target]
    for data in seeds:
        one(data)
    one(b"")


def test_targets_and_harness_scripts_match(fuzz_modules: dict[str, ModuleType]) -> None:
    assert list(fuzz_modules["fuzztargets"].TARGETS) == TARGETS
    assert list(fuzz_modules["campaign"].TARGETS) == TARGETS
    for target in TARGETS:
        script = (FUZZ_DIR / f"fuzz_{target}.py").read_text()
        assert f"from fuzztargets import {target}_one" in script


def test_a_forged_datagram_that_opens_is_reported(fuzz_modules: dict[str, ModuleType],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The sealed target would catch a channel that accepts anything."""
    targets = fuzz_modules["fuzztargets"]
    genuine = next(iter(targets.GENUINE[0, 0]))
    targets.sealed_one(bytes([0]) + genuine)  # genuine: opens
    forged = bytes([0]) + genuine[:-1] + bytes([genuine[-1] ^ 1])
    targets.sealed_one(forged)  # rejected
    rotated = next(iter(targets.GENUINE[0, 1]))  # sealed under the second key
    targets.sealed_one(bytes([fuzz_modules["fuzzseeds"].FLAG_SECOND_KEY]) + rotated)  # opens
    targets.sealed_one(bytes([0]) + rotated)  # rejected: the receiver lacks the key
    monkeypatch.setattr(targets.SecureChannel, "open",
                        lambda self, datagram: Opened(1, datagram[HEADER_SIZE:]))
    with pytest.raises(targets.ContractBroken, match="forged"):
        targets.sealed_one(forged)


CANNED_LOG = """\
INFO: Seed: 1
#2\tINITED cov: 40 ft: 50 corp: 2/10b exec/s: 0 rss: 50Mb
#1024\tNEW    cov: 41 ft: 57 corp: 3/14b lim: 4 exec/s: 512 rss: 50Mb L: 4/4 MS: 1 ChangeBit-

 === Uncaught Python exception: ===
IndexError: index out of range
Traceback (most recent call last):
==1== ERROR: libFuzzer: fuzz target exited
artifact_prefix='/c/'; Test unit written to /c/crash-abc
stat::number_of_executed_units: 1100
stat::new_units_added:          1
stat::peak_rss_mb:              51
"""


def test_the_driver_reads_libfuzzer_output(fuzz_modules: dict[str, ModuleType]) -> None:
    campaign = fuzz_modules["campaign"]
    result = campaign.TargetResult("codec")
    executions, findings = campaign._parse(CANNED_LOG, result)
    assert executions == 1100
    assert (result.coverage_edges, result.features, result.new_units) == (41, 57, 1)
    assert [(f.kind, f.artifact, f.error) for f in findings] == [
        ("crash", "/c/crash-abc", "IndexError: index out of range")]
