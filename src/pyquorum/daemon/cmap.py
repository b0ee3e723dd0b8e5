"""The daemon's read-only cmap view (``CmapGetPrefixReq``).

Keys, all values as text:

* every key configured in the file (``totem.*``, ``quorum.*``, ``nodelist.*``, ...),
  then the effective ``totem.cluster_name``, ``totem.transport``, ``quorum.provider``;
* ``nodelist.node.<i>.{nodeid,name,ring0_addr,port,quorum_votes}`` (i in file order,
  port and votes effective);
* ``runtime.votequorum.*`` (with a provider), ``runtime.config.totem.*`` (effective
  timing for this nodelist), ``runtime.pyquorum.{node_id,ring_id,members,quorate}``,
  ``runtime.pyquorum.quorate_changed_ns`` (added by the driver: CLOCK_MONOTONIC of the
  last change of the quorate bit, 0 if none yet);
* ``runtime.pyquorum.stats.*``: the engine's counters, datagrams rejected per reason,
  membership counters, and the transport, IPC and daemon counters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from pyquorum.config import parse_text
from pyquorum.config.model import ClusterConfig
from pyquorum.core.engine import NodeEngine
from pyquorum.daemon.localnode import node_port
from pyquorum.errors import ConfigError

CONFIG_PREFIXES = ("totem.", "quorum.", "nodelist.", "logging.", "system.", "uidgid.")
RELOADABLE_PREFIXES = ("quorum.", "nodelist.", "uidgid.")
"""The configured keys a reload replaces (see ``pyquorum.config.reload``)."""


def read_configured_keys(path: str) -> tuple[tuple[str, str], ...]:
    """The flattened keys as written in the file, for the cmap view (empty if unreadable)."""
    try:
        text = Path(path).read_bytes().decode("utf-8", "surrogateescape")
        parsed = parse_text(text, path)
    except (OSError, ConfigError):
        return ()
    return tuple((k, v) for k, v, _ in parsed.keys)


def reloaded_keys(old: Iterable[tuple[str, str]], new: Iterable[tuple[str, str]]
                  ) -> tuple[tuple[str, str], ...]:
    """After a reload: the new file's reloadable keys, the old ones for everything else
    (``quorum.provider`` keeps its running value)."""
    def reloadable(k: str) -> bool:
        return k.startswith(RELOADABLE_PREFIXES) and k != "quorum.provider"
    kept = [(k, v) for k, v in old if not reloadable(k)]
    return tuple(kept + [(k, v) for k, v in new if reloadable(k)])


def cmap_view(config: ClusterConfig, configured: Iterable[tuple[str, str]],
              engine: NodeEngine, counters: Iterable[Mapping[str, int]]) -> dict[str, str]:
    """Every key of the view."""
    keys = {k: v for k, v in configured if k.startswith(CONFIG_PREFIXES)}
    keys["totem.cluster_name"] = config.totem.cluster_name
    keys["totem.transport"] = config.totem.transport
    if config.quorum.provider:
        keys["quorum.provider"] = config.quorum.provider
    for i, node in enumerate(config.nodes):
        p = f"nodelist.node.{i}."
        keys[p + "nodeid"] = str(node.nodeid)
        if node.name is not None:
            keys[p + "name"] = node.name
        for link, addr in enumerate(node.ring_addrs):
            keys.setdefault(f"{p}ring{link}_addr", addr)
        if node.ring_addrs:
            keys[p + "ring0_addr"] = node.ring_addrs[0]
        keys[p + "port"] = str(node_port(config, node))
        keys[p + "quorum_votes"] = str(node.quorum_votes)
    if engine.vq is not None:
        for k, v in engine.vq.runtime_keys().items():
            keys[f"runtime.votequorum.{k}"] = str(v)
    t = config.timing()
    for name, value in (("token", t.token_ms), ("consensus", t.consensus_ms),
                        ("join", t.join_ms), ("merge", t.merge_ms),
                        ("token_retransmit", t.token_retransmit_ms), ("hold", t.hold_ms)):
        keys[f"runtime.config.totem.{name}"] = str(value)
    keys["runtime.pyquorum.node_id"] = str(engine.node_id)
    keys["runtime.pyquorum.ring_id"] = str(engine.ring)
    keys["runtime.pyquorum.members"] = " ".join(str(m) for m in engine.members)
    keys["runtime.pyquorum.quorate"] = str(int(engine.quorate))
    stats = "runtime.pyquorum.stats."
    for k, v in engine.stats.items():
        keys[stats + k] = str(v)
    for reason, v in engine.rejected_by_reason.items():
        keys[f"{stats}rejected.{reason}"] = str(v)
    for k, v in engine.membership.stats.items():
        keys[f"{stats}membership.{k}"] = str(v)
    for group in counters:
        for k, v in group.items():
            keys[stats + k] = str(v)
    return keys


def select(view: Mapping[str, str], prefix: str) -> list[tuple[str, str]]:
    """The (key, value) pairs starting with ``prefix``, sorted by key."""
    return sorted((k, v) for k, v in view.items() if k.startswith(prefix))
