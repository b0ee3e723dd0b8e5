"""A read-only view of the daemon's cmap keys (service CMAP 0).

Only what ``pyquorumtool`` and the tests need: ``cmap_get_prefix``.  Each call opens a
short-lived connection.
"""

from __future__ import annotations

import os

from pyquorum.client._common import check_error
from pyquorum.client._conn import Connection
from pyquorum.errors import CsErr, CsError
from pyquorum.wire.ipc import SERVICE_CMAP, CmapGetPrefixReq, CmapGetPrefixRes

__all__ = ["cmap_get_prefix"]


def cmap_get_prefix(prefix: str = "", *,
                    run_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Every cmap key starting with ``prefix`` (``""``: all of them), values as text.

    For example ``totem.*``, ``quorum.*``,
    ``nodelist.node.<i>.{nodeid,name,ring0_addr,port,quorum_votes}``,
    ``runtime.votequorum.*`` and ``runtime.pyquorum.stats.*``.  Raises ``CsError``
    (LIBRARY when no daemon runs).
    """
    if not isinstance(prefix, str):
        raise CsError(CsErr.CS_ERR_INVALID_PARAM, f"prefix {prefix!r} is not a str")
    conn = Connection.open(SERVICE_CMAP, run_dir, need_events=False)
    try:
        res = conn.request(CmapGetPrefixReq(prefix), CmapGetPrefixRes)
    finally:
        conn.close()
    check_error(res.error)
    return {item.key: item.value for item in res.items}
