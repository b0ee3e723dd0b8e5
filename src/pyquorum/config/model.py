"""The typed, frozen configuration model with Corosync's defaults and derived timing.

Built from the flattened cmap-style keys by ``pyquorum.config.build.build_config``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

DEFAULT_PORT = 5405


@dataclass(frozen=True, slots=True)
class TotemTiming:
    """The effective totem timing for a nodelist of ``n_nodes`` (spec 5.2)."""

    token_ms: int
    consensus_ms: int
    join_ms: int
    merge_ms: int
    token_retransmit_ms: int
    hold_ms: int
    heartbeat_interval_ms: int
    """knet_ping_interval: effective token / 4; our heartbeat period."""


def float32(value: float) -> float:
    """Round ``value`` to the nearest IEEE-754 single, as Corosync's ``float`` arithmetic does."""
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


@dataclass(frozen=True, slots=True)
class TotemConfig:
    """The ``totem`` section."""

    cluster_name: str = ""
    transport: str = "knet"
    token_ms: int = 3000
    token_coefficient_ms: int = 650
    consensus_ms: int | None = None
    """None: derived as 1.2 x effective token."""
    join_ms: int = 50
    merge_ms: int = 200
    token_retransmit_ms: int | None = None
    hold_ms: int | None = None
    crypto_cipher: str = "aes256"
    crypto_hash: str = "sha256"
    keyfile: str = "/etc/pyquorum/authkey"
    port: int = DEFAULT_PORT
    ip_version: str = "ipv4-6"

    def timing(self, n_nodes: int) -> TotemTiming:
        """Return the effective timing Corosync 3.1.7 derives for ``n_nodes`` nodelist entries."""
        token = self.token_ms
        if n_nodes > 2 and self.token_coefficient_ms:
            token += (n_nodes - 2) * self.token_coefficient_ms
        consensus = self.consensus_ms
        if consensus is None:
            consensus = int(float32(1.2 * token))
        retransmit = self.token_retransmit_ms
        if retransmit is None:
            retransmit = int(token / 4.2)
        hold = self.hold_ms
        if hold is None:
            hold = int(retransmit * 0.8 - 10)
        return TotemTiming(
            token_ms=token,
            consensus_ms=consensus,
            join_ms=self.join_ms,
            merge_ms=self.merge_ms,
            token_retransmit_ms=retransmit,
            hold_ms=hold,
            heartbeat_interval_ms=max(1, token // 4),
        )

    @property
    def crypto_enabled(self) -> bool:
        """True unless both crypto_cipher and crypto_hash are explicitly ``none``."""
        return not (self.crypto_cipher == "none" and self.crypto_hash == "none")


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One ``nodelist.node`` entry."""

    nodeid: int
    name: str | None = None
    ring_addrs: tuple[str, ...] = ()
    """ring0_addr, ring1_addr, ... in link order (missing links are skipped)."""
    quorum_votes: int = 1
    port: int | None = None
    """pyquorum key ``port``: this node's UDP port (None: ``totem.interface.0.mcastport``,
    default 5405).  Lets several nodes share one address, as ``pyquorum-lab`` does."""


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """The ``quorum.device`` subsection (present only when ``model`` is non-empty)."""

    model: str
    votes: int | None = None
    timeout_ms: int = 10000
    sync_timeout_ms: int = 30000


@dataclass(frozen=True, slots=True)
class QuorumConfig:
    """The ``quorum`` section as configured (before votequorum's startup derivation)."""

    provider: str | None = None
    """``corosync_votequorum`` or None (no provider: always quorate)."""
    expected_votes: int = 0
    votes: int = 1
    two_node: bool = False
    wait_for_all: bool | None = None
    """None: follows two_node."""
    last_man_standing: bool = False
    last_man_standing_window_ms: int = 10000
    auto_tie_breaker: bool = False
    auto_tie_breaker_node: str = "lowest"
    allow_downscale: bool = False
    expected_votes_tracking: bool = False
    device: DeviceConfig | None = None


@dataclass(frozen=True, slots=True)
class LoggerSubsys:
    """Per-subsystem logging overrides (``logging.logger_subsys``)."""

    subsys: str
    to_stderr: bool | None = None
    to_syslog: bool | None = None
    to_logfile: bool | None = None
    debug: str | None = None
    logfile_priority: str | None = None
    syslog_priority: str | None = None


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """The ``logging`` section."""

    timestamp: str = "hires"
    fileline: bool = False
    function_name: bool = False
    to_stderr: bool = True
    to_syslog: bool = True
    to_logfile: bool = False
    logfile: str | None = None
    logfile_priority: str = "info"
    syslog_priority: str = "info"
    syslog_facility: str = "daemon"
    debug: str = "off"
    """off, on or trace."""
    subsys: tuple[LoggerSubsys, ...] = ()


@dataclass(frozen=True, slots=True)
class SystemConfig:
    """The ``system`` section (``run_dir`` and ``libqb_ipc`` are pyquorum keys)."""

    state_dir: str = "/var/lib/pyquorum"
    run_dir: str = "/run/pyquorum"
    libqb_ipc: bool = False
    """``libqb_ipc: yes`` also serves Corosync's C client libraries (libqb IPC on the
    abstract sockets "cmap", "cfg", "quorum", "votequorum"; ``daemon/qbipc.py``)."""


@dataclass(frozen=True, slots=True)
class UidGidConfig:
    """uid/gid allowed to use the IPC besides root (``uidgid`` sections, ``uidgid.d/``)."""

    uids: frozenset[int] = frozenset()
    gids: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """The whole typed configuration."""

    totem: TotemConfig = field(default_factory=TotemConfig)
    nodes: tuple[NodeConfig, ...] = ()
    quorum: QuorumConfig = field(default_factory=QuorumConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    system: SystemConfig = field(default_factory=SystemConfig)
    uidgid: UidGidConfig = field(default_factory=UidGidConfig)
    source: str = "<config>"
    """The file the configuration was read from (for error messages)."""

    def timing(self) -> TotemTiming:
        """The effective totem timing for this nodelist."""
        return self.totem.timing(len(self.nodes))

    def node(self, nodeid: int) -> NodeConfig | None:
        """The nodelist entry of ``nodeid``, if any."""
        for n in self.nodes:
            if n.nodeid == nodeid:
                return n
        return None

    @property
    def node_ids(self) -> tuple[int, ...]:
        """Configured node ids, ascending."""
        return tuple(sorted(n.nodeid for n in self.nodes))
