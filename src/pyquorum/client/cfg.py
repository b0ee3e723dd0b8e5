"""The configuration library subset: ``corosync/cfg.h`` (libcfg) in Python (service CFG 1).

Only what pyquorum's cfg service offers: a handle (``corosync_cfg_initialize`` /
``corosync_cfg_finalize``, the same process-wide handle table and connection machine as
``pyquorum.client.quorum``), ``corosync_cfg_fd_get``, ``corosync_cfg_dispatch`` and
``corosync_cfg_reload_config``, the call behind ``corosync-cfgtool -R``.  The daemon
sends no cfg callbacks (there is no shutdown negotiation), so the event fd only ever
hangs up, when the daemon goes away.  Failures raise ``CsError``.

Typical use::

    handle = corosync_cfg_initialize()
    try:
        corosync_cfg_reload_config(handle)   # every node re-reads its configuration file
    finally:
        corosync_cfg_finalize(handle)
"""

from __future__ import annotations

import os

from pyquorum.client._common import (
    CS_DISPATCH_ALL,
    CS_DISPATCH_BLOCKING,
    CS_DISPATCH_ONE,
    CS_DISPATCH_ONE_NONBLOCKING,
    ClientInstance,
    check_error,
    dispatch,
    fd_get,
    finalize,
    request,
)
from pyquorum.client._conn import Connection
from pyquorum.client._handles import HANDLES
from pyquorum.errors import CsErr, CsError
from pyquorum.wire.ipc import SERVICE_CFG, CfgReloadReq, CfgReloadRes

__all__ = [
    "CS_DISPATCH_ALL",
    "CS_DISPATCH_BLOCKING",
    "CS_DISPATCH_ONE",
    "CS_DISPATCH_ONE_NONBLOCKING",
    "corosync_cfg_dispatch",
    "corosync_cfg_fd_get",
    "corosync_cfg_finalize",
    "corosync_cfg_initialize",
    "corosync_cfg_reload_config",
]


class _CfgInstance(ClientInstance):
    """A cfg handle: its connection (no callbacks, no context)."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn, None)

    def deliver(self, handle: int, event: object) -> None:
        """The cfg service sends no events: any event is a protocol error."""
        raise CsError(CsErr.CS_ERR_LIBRARY, f"unexpected event {type(event).__name__}")


def corosync_cfg_initialize(callbacks: object | None = None, *,
                            run_dir: str | os.PathLike[str] | None = None) -> int:
    """Connect to the cfg service and return a handle (no request is sent).

    ``callbacks`` (libcfg's ``corosync_cfg_callbacks_t``) is accepted for the shape of
    the C call and ignored: pyquorum's cfg service has no callbacks.  No daemon: LIBRARY;
    refused: ACCESS; not ready: TRY_AGAIN.
    """
    del callbacks  # no cfg callbacks exist in pyquorum
    conn = Connection.open(SERVICE_CFG, run_dir)
    return HANDLES.create(_CfgInstance(conn))


def corosync_cfg_finalize(handle: int) -> None:
    """Close the handle; a second finalize (or a stale handle) gives BAD_HANDLE."""
    finalize(handle, _CfgInstance)


def corosync_cfg_fd_get(handle: int) -> int:
    """The handle's event fd (no IPC); it never has events and hangs up when the daemon
    goes away."""
    return fd_get(handle, _CfgInstance)


def corosync_cfg_dispatch(handle: int, flags: int) -> None:
    """Dispatch (see ``quorum_dispatch``); there are no cfg events, so this only ever
    waits, returns, raises TRY_AGAIN (ONE_NONBLOCKING) or LIBRARY (daemon gone)."""
    dispatch(handle, flags, _CfgInstance)


def corosync_cfg_reload_config(handle: int) -> None:
    """Make every node of the cluster re-read its configuration file (the request is
    delivered in agreed order); returns once the local node has reloaded.

    Raises ``CsError``: LIBRARY when the local configuration file is unusable (or the
    daemon is lost), BAD_HANDLE for a finalized handle.
    """
    res = request(handle, _CfgInstance, CfgReloadReq(), CfgReloadRes)
    check_error(res.error)
