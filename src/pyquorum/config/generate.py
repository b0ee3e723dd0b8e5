"""Render corosync.conf text for a local cluster (pyquorum-lab, integration tests).

Every node of a local cluster shares one address (127.0.0.1) and differs by its UDP
``port`` (a pyquorum nodelist key); each node gets its own file because ``system``
(state and run directories) is per node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LocalNode:
    """One node of a local cluster."""

    nodeid: int
    port: int
    name: str = ""
    votes: int = 1


def render_local_config(
    nodes: Sequence[LocalNode],
    *,
    state_dir: str,
    run_dir: str,
    keyfile: str | None,
    address: str = "127.0.0.1",
    cluster_name: str = "pyquorum-lab",
    token_ms: int | None = None,
    quorum_options: Mapping[str, str | int] | None = None,
    logfile: str | None = None,
    debug: bool = False,
    to_stderr: bool = True,
) -> str:
    """The text of one node's corosync.conf.

    ``keyfile`` None writes ``crypto_cipher: none`` and ``crypto_hash: none`` (an
    explicitly unencrypted cluster).  ``quorum_options`` are extra ``quorum`` keys
    (``two_node: 1``, ``wait_for_all: 1``, ...); the provider is always votequorum
    unless ``quorum_options`` sets ``provider`` to ``""`` (no provider).
    """
    totem = ["    version: 2", f"    cluster_name: {cluster_name}", "    transport: udpu"]
    if token_ms is not None:
        totem.append(f"    token: {token_ms}")
    if keyfile is None:
        totem += ["    crypto_cipher: none", "    crypto_hash: none"]
    else:
        totem += ["    crypto_cipher: aes256", "    crypto_hash: sha256", f"    keyfile: {keyfile}"]
    out = ["totem {", *totem, "}", "", "nodelist {"]
    for n in nodes:
        out += [
            "    node {",
            f"        nodeid: {n.nodeid}",
            f"        name: {n.name or f'node{n.nodeid}'}",
            f"        ring0_addr: {address}",
            f"        port: {n.port}",
        ]
        if n.votes != 1:
            out.append(f"        quorum_votes: {n.votes}")
        out.append("    }")
    out += ["}", ""]
    options = dict(quorum_options or {})
    provider = options.pop("provider", "corosync_votequorum")
    out.append("quorum {")
    if provider:
        out.append(f"    provider: {provider}")
    out += [f"    {key}: {value}" for key, value in options.items()]
    out += ["}", "", "logging {", "    timestamp: hires",
            f"    to_stderr: {'yes' if to_stderr else 'no'}", "    to_syslog: no"]
    if logfile is not None:
        out += ["    to_logfile: yes", f"    logfile: {logfile}"]
    if debug:
        out.append("    debug: on")
    out += ["}", "", "system {", f"    state_dir: {state_dir}", f"    run_dir: {run_dir}", "}", ""]
    return "\n".join(out)
