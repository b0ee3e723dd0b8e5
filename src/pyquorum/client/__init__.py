"""pyquorum.client: talk to the local ``pyquorumd``.

Three faces over one connection machine (``_conn``) and one process-wide handle table
(``_handles``, libqb's hdb):

* ``pyquorum.client.quorum`` / ``pyquorum.client.votequorum``: ``quorum.h`` /
  ``votequorum.h`` with Corosync's names, constants and return codes (errors raise
  ``CsError``); ``pyquorum.client.cfg`` (``corosync_cfg_reload_config``),
  ``pyquorum.client.cmap`` and ``pyquorum.client.testhook``.
* ``QuorumClient`` / ``VotequorumClient``: context managers giving typed events
  (``pyquorum.client.events``).
* ``AsyncQuorumClient`` / ``AsyncVotequorumClient``: the same for asyncio.

The daemon's socket is ``<run_dir>/pyquorum.sock``: the ``run_dir`` keyword, else
``$PYQUORUM_RUN_DIR``, else ``/run/pyquorum``.

The quorum and votequorum functions can drive a real Corosync daemon instead, through its
C libraries (``_corosync``): ``backend="corosync"`` on the initialize calls, or
``PYQUORUM_BACKEND=corosync``; the libraries are loaded only then.
"""

from pyquorum.client.aio import AsyncQuorumClient, AsyncVotequorumClient
from pyquorum.client.cmap import cmap_get_prefix
from pyquorum.client.events import (
    Disconnected,
    Event,
    ExpectedVotesEvent,
    NodelistEvent,
    QuorumEvent,
    VotequorumEvent,
    VotequorumNodelistEvent,
)
from pyquorum.client.facade import QuorumClient, VotequorumClient
from pyquorum.errors import CsErr, CsError

__all__ = [
    "AsyncQuorumClient",
    "AsyncVotequorumClient",
    "CsErr",
    "CsError",
    "Disconnected",
    "Event",
    "ExpectedVotesEvent",
    "NodelistEvent",
    "QuorumClient",
    "QuorumEvent",
    "VotequorumClient",
    "VotequorumEvent",
    "VotequorumNodelistEvent",
    "cmap_get_prefix",
]
