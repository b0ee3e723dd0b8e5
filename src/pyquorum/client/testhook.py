"""Test hooks of a daemon started with ``PYQUORUM_TEST_HOOKS=1`` (service TESTHOOK 99).

Each call opens a short-lived connection.  A daemon without test hooks refuses the
connection (the ``CsError`` it answers, or LIBRARY).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from pyquorum.client._common import check_error, check_uint
from pyquorum.client._conn import Connection
from pyquorum.wire.ipc import SERVICE_TESTHOOK, TestBlockReq, VqStatusRes

__all__ = ["block"]


def block(nodeids: Sequence[int], *, run_dir: str | os.PathLike[str] | None = None) -> None:
    """Make the local daemon drop all cluster traffic to and from ``nodeids``
    (empty: heal every block).  Raises ``CsError``."""
    msg = TestBlockReq(tuple(check_uint(n) for n in nodeids))
    conn = Connection.open(SERVICE_TESTHOOK, run_dir, need_events=False)
    try:
        res = conn.request(msg, VqStatusRes)
    finally:
        conn.close()
    check_error(res.error)
