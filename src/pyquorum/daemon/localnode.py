"""Which nodelist entry is this host, and the UDP addresses of every node.

Corosync's rule: an explicit node id wins (``--nodeid``); else the entry whose
``name`` equals the host name or the short host name; else the entry whose
``ring0_addr`` resolves to an address of this host.  When several entries match (a
local cluster, every node on 127.0.0.1) the daemon refuses and asks for ``--nodeid``.
An address "is of this host" when a UDP socket can be bound to it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

from pyquorum.config.model import ClusterConfig, NodeConfig
from pyquorum.daemon.errors import StartupError

SockAddr = tuple[str, int] | tuple[str, int, int, int]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A resolved UDP endpoint: address family and socket address."""

    family: socket.AddressFamily
    address: SockAddr


def _families(ip_version: str) -> list[socket.AddressFamily]:
    return {
        "ipv4": [socket.AF_INET],
        "ipv6": [socket.AF_INET6],
        "ipv6-4": [socket.AF_INET6, socket.AF_INET],
    }.get(ip_version, [socket.AF_INET, socket.AF_INET6])


def resolve(host: str, port: int, ip_version: str,
            family: socket.AddressFamily | None = None) -> Endpoint | None:
    """Resolve ``host`` for UDP in ``ip_version``'s preference order (or one ``family``)."""
    for fam in [family] if family is not None else _families(ip_version):
        try:
            infos = socket.getaddrinfo(host, port, fam, socket.SOCK_DGRAM)
        except (OSError, UnicodeError):
            continue
        for _, _, _, _, sockaddr in infos:
            return Endpoint(fam, sockaddr)  # type: ignore[arg-type]
    return None


def is_local_address(host: str) -> bool:
    """True when ``host`` resolves to an address a socket of this host can bind."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError):
        return False
    for family, _, _, _, sockaddr in infos:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.bind((sockaddr[0], 0, *sockaddr[2:]))
        except OSError:
            continue
        return True
    return False


def node_port(config: ClusterConfig, node: NodeConfig) -> int:
    """The UDP port of ``node``: its ``port`` key, else ``totem.port`` (5405)."""
    return node.port if node.port is not None else config.totem.port


def find_local_node(
    config: ClusterConfig,
    nodeid: int | None,
    *,
    hostname: str | None = None,
    is_local: Callable[[str], bool] = is_local_address,
) -> NodeConfig:
    """The nodelist entry of this host; raises ``StartupError`` naming the config file."""
    src = config.source
    if not config.nodes:
        raise StartupError(f"{src}: the nodelist is empty; pyquorumd needs a nodelist")
    if nodeid is not None:
        node = config.node(nodeid)
        if node is None:
            raise StartupError(
                f"{src}: node id {nodeid} (from --nodeid) is not in the nodelist "
                f"(configured: {', '.join(str(n) for n in config.node_ids)})"
            )
        return _with_address(config, node)
    host = hostname if hostname is not None else socket.gethostname()
    names = {host, host.split(".")[0]}
    by_name = [n for n in config.nodes if n.name is not None and n.name in names]
    if len(by_name) == 1:
        return _with_address(config, by_name[0])
    if len(by_name) > 1:
        ids = ", ".join(str(n.nodeid) for n in by_name)
        raise StartupError(
            f"{src}: nodes {ids} are all named after this host ({host}); "
            "start with --nodeid N to choose one"
        )
    by_addr = [n for n in config.nodes if n.ring_addrs and is_local(n.ring_addrs[0])]
    if len(by_addr) == 1:
        return _with_address(config, by_addr[0])
    if len(by_addr) > 1:
        ids = ", ".join(str(n.nodeid) for n in by_addr)
        raise StartupError(
            f"{src}: nodes {ids} all have a ring0_addr of this host, so the local node is "
            "ambiguous; start with --nodeid N"
        )
    raise StartupError(
        f"{src}: no nodelist entry is named '{host}' or has a ring0_addr of this host; "
        "fix the nodelist or start with --nodeid N"
    )


def _with_address(config: ClusterConfig, node: NodeConfig) -> NodeConfig:
    if not node.ring_addrs:
        raise StartupError(f"{config.source}: node {node.nodeid} has no ring0_addr")
    return node


def resolve_endpoints(config: ClusterConfig, local: NodeConfig
                      ) -> tuple[Endpoint, dict[int, Endpoint]]:
    """The local bind endpoint and every other node's endpoint (same address family).

    Raises ``StartupError`` naming the config file when an address does not resolve.
    """
    ipv = config.totem.ip_version
    me = resolve(local.ring_addrs[0], node_port(config, local), ipv)
    if me is None:
        raise StartupError(
            f"{config.source}: ring0_addr '{local.ring_addrs[0]}' of node {local.nodeid} "
            f"(this node) does not resolve to an address ({ipv})"
        )
    peers: dict[int, Endpoint] = {}
    for node in config.nodes:
        if node.nodeid == local.nodeid:
            continue
        if not node.ring_addrs:
            raise StartupError(f"{config.source}: node {node.nodeid} has no ring0_addr")
        ep = resolve(node.ring_addrs[0], node_port(config, node), ipv, me.family)
        if ep is None:
            raise StartupError(
                f"{config.source}: ring0_addr '{node.ring_addrs[0]}' of node {node.nodeid} "
                f"does not resolve to an address of the local node's family"
            )
        peers[node.nodeid] = ep
    return me, peers
