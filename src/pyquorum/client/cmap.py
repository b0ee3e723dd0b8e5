"""The daemon's cmap keys (service CMAP 0): a read-only view plus one trigger key.

Only what ``pyquorumtool`` and the tests need: ``cmap_get_prefix`` to read, and
``cmap_set`` / ``cmap_set_uint8`` for the one writable key,
``quorum.cancel_wait_for_all`` (like ``corosync-cmapctl -s quorum.cancel_wait_for_all
u8 1``: cancel wait_for_all on every node).  Every other key is read-only (CS_ERR_ACCESS):
change the configuration file and reload it (``pyquorum.client.cfg``) instead.  Each call
opens a short-lived connection.
"""

from __future__ import annotations

import os
from typing import Final

from pyquorum.client._common import check_error, check_uint
from pyquorum.client._conn import Connection
from pyquorum.errors import CsErr, CsError
from pyquorum.wire.ipc import (
    SERVICE_CMAP,
    CmapGetPrefixReq,
    CmapGetPrefixRes,
    CmapSetReq,
    CmapSetRes,
)

__all__ = ["CMAP_CANCEL_WAIT_FOR_ALL", "cmap_get_prefix", "cmap_set", "cmap_set_uint8"]

CMAP_CANCEL_WAIT_FOR_ALL: Final = "quorum.cancel_wait_for_all"
"""The only writable key: a u8 whose value 1..255 cancels wait_for_all cluster-wide."""


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


def cmap_set(key: str, value: str, *,
             run_dir: str | os.PathLike[str] | None = None) -> None:
    """Set ``key`` to ``value`` (as text); returns once the daemon has acted on it.

    Only ``quorum.cancel_wait_for_all`` is writable: a decimal u8, where 1..255 cancels
    wait_for_all on every node (returns once that was delivered) and 0 does nothing.
    Raises ``CsError``: ACCESS for any other key, NOT_EXIST without a votequorum
    provider, INVALID_PARAM for a value that is not a u8, LIBRARY when no daemon runs.
    """
    if not isinstance(key, str) or not isinstance(value, str):
        raise CsError(CsErr.CS_ERR_INVALID_PARAM, f"key {key!r} / value {value!r}: not text")
    conn = Connection.open(SERVICE_CMAP, run_dir, need_events=False)
    try:
        res = conn.request(CmapSetReq(key, value), CmapSetRes)
    finally:
        conn.close()
    check_error(res.error)


def cmap_set_uint8(key: str, value: int, *,
                   run_dir: str | os.PathLike[str] | None = None) -> None:
    """``cmap_set_uint8``: ``cmap_set`` of a u8 (a value outside 0..255 is INVALID_PARAM
    before any IPC)."""
    cmap_set(key, str(check_uint(value, 8)), run_dir=run_dir)
