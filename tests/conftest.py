"""Settings shared by every test tier."""

from __future__ import annotations

from hypothesis import settings

# No per-example wall-clock deadline: speed is measured by benchmarks, not asserted in
# tests, and a loaded 2-core CI machine once took 296 ms for one codec example.
settings.register_profile("pyquorum", deadline=None)
settings.load_profile("pyquorum")
