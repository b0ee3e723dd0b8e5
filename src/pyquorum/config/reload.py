"""What a configuration reload may change at run time (pure).

Corosync's cfg service loads the new file into a staging map, drops the entries that
cannot change at run time with the notice "Modified entry '<key>' in corosync.conf
cannot be changed at run-time" (``remove_ro_entries``), and copies the rest into
cmap, where votequorum's runtime re-read picks up ``quorum.*`` and ``nodelist.*``
(spec 4.10).

pyquorum applies at run time:

* ``nodelist``: nodes added (they may join), removed (a removed member is failed)
  and changed votes or addresses of other nodes;
* ``quorum.*`` except ``quorum.provider``, through votequorum's runtime re-read;
* ``uidgid``: the IPC access list;
* ``totem.keyfile`` and the key in it: a new key is rotated in without dropping the
  cluster (``NodeEngine.rotate_key``).

Everything else keeps its running value and gets the notice above: ``totem.*``
(but the keyfile)
(Corosync can change some totem timeouts at run time; pyquorum cannot yet),
``quorum.provider``, this node's own address and port, ``logging.*`` and ``system.*``.
A new file in which this node is missing is refused as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from pyquorum.config.model import ClusterConfig, NodeConfig
from pyquorum.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """The configuration to run with after a reload, and the notices to log."""

    config: ClusterConfig
    notices: tuple[str, ...]


def _notice(key: str) -> str:
    return f"Modified entry '{key}' in corosync.conf cannot be changed at run-time"


def plan_reload(current: ClusterConfig, new: ClusterConfig, local_nodeid: int) -> ReloadPlan:
    """Merge ``new`` into ``current`` for node ``local_nodeid`` (see the module docstring).

    Raises ``ConfigError`` (naming the new file) when the nodelist of a node that
    runs with one no longer contains this node.
    """
    notices: list[str] = []
    for f in fields(current.totem):
        if f.name != "keyfile" and getattr(current.totem, f.name) != getattr(new.totem, f.name):
            notices.append(_notice(f"totem.{f.name}"))
    if current.quorum.provider != new.quorum.provider:
        notices.append(_notice("quorum.provider"))
    if current.logging != new.logging:
        notices.append(_notice("logging"))
    if current.system != new.system:
        notices.append(_notice("system"))

    nodes = new.nodes
    old_local = current.node(local_nodeid)
    new_local = new.node(local_nodeid)
    if old_local is not None and new_local is None:
        raise ConfigError(new.source, None,
                          f"this node (nodeid {local_nodeid}) is not in the new nodelist; "
                          "the reload is refused")
    if old_local is not None and new_local is not None:
        kept = _keep_local_address(old_local, new_local, notices)
        nodes = tuple(kept if n.nodeid == local_nodeid else n for n in new.nodes)

    config = replace(
        current,
        totem=replace(current.totem, keyfile=new.totem.keyfile),
        nodes=nodes,
        quorum=replace(new.quorum, provider=current.quorum.provider),
        uidgid=new.uidgid,
        source=new.source,
    )
    return ReloadPlan(config, tuple(notices))


def _keep_local_address(old: NodeConfig, new: NodeConfig, notices: list[str]) -> NodeConfig:
    """Our own address and port are bound: keep them (with a notice if they changed)."""
    if old.ring_addrs != new.ring_addrs:
        notices.append(_notice(f"nodelist.node (nodeid {old.nodeid}).ring0_addr"))
    if old.port != new.port:
        notices.append(_notice(f"nodelist.node (nodeid {old.nodeid}).port"))
    return replace(new, ring_addrs=old.ring_addrs, port=old.port)
