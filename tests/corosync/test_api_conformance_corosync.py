"""The client API conformance checks against real Corosync 3.1.7 (the Corosync backend).

The same test bodies as ``tests/integration/test_api_conformance.py``
(``api_conformance_checks.py``), run on Corosync clusters in network namespaces
(``conftest.py``) through ``backend="corosync"``: every row of
``../shared/oracle/api-edge-cases.md`` and the votequorum checks of spec section 4.8.
"""

from __future__ import annotations

import api_conformance_checks as checks
import pytest

pytestmark = pytest.mark.corosync

# the shared test functions, collected as tests of this module
globals().update({name: obj for name, obj in vars(checks).items()
                  if name.startswith("test_") and callable(obj)})
