"""From flattened keys to the typed ``ClusterConfig`` (spec 6.1, 6.2, 5.2, 4.2).

Theory of operation
-------------------
1. Every key is matched against a schema (``_INT_KEYS``, ``_CHOICES``) after its
   variable parts are replaced by ``*`` (node index, link number, logger subsystem):
   typed keys must be plain base-10 integers in range, validated strings one of the
   allowed words.  Unknown keys are accepted and ignored.
2. The sections are mapped onto the frozen model of ``model.py``; absent keys take
   the model's defaults (pyquorum: encrypted by default, state in /var/lib/pyquorum).
3. The totem minimums are checked on the effective timing for this nodelist, and
   with provider ``corosync_votequorum`` the fatal votequorum startup rules run.

Every error is a ``ConfigError`` naming the file and the line of the key at fault.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from pyquorum.config.model import (
    DEFAULT_PORT,
    ClusterConfig,
    DeviceConfig,
    LoggerSubsys,
    LoggingConfig,
    NodeConfig,
    QuorumConfig,
    SystemConfig,
    TotemConfig,
    UidGidConfig,
)
from pyquorum.config.parser import ParsedConfig, int_range_error, parse_int
from pyquorum.errors import ConfigError

VOTEQUORUM = "corosync_votequorum"
MAX_LINKS = 8

U8 = (0, 0xFF)
U16 = (0, 0xFFFF)
U32 = (0, 0xFFFFFFFF)
I32 = (-0x80000000, 0x7FFFFFFF)
U64 = (0, 0xFFFFFFFFFFFFFFFF)

_TOTEM_U32 = (
    "version", "nodeid", "threads", "token", "token_coefficient", "token_retransmit",
    "token_warning", "hold", "token_retransmits_before_loss_const", "join", "send_join",
    "consensus", "merge", "downcheck", "fail_recv_const", "seqno_unchanged_const",
    "heartbeat_failures_allowed", "max_network_delay", "window_size", "max_messages",
    "miss_count_const", "knet_pmtud_interval", "knet_mtu", "knet_compression_threshold", "netmtu",
)  # fmt: skip
_QUORUM_U8 = (
    "two_node", "wait_for_all", "last_man_standing", "auto_tie_breaker", "allow_downscale",
    "expected_votes_tracking",
)  # fmt: skip
_QUORUM_U32 = ("expected_votes", "votes", "last_man_standing_window", "leaving_timeout")
_KNET_U32 = ("knet_ping_interval", "knet_ping_timeout", "knet_ping_precision", "knet_pong_count")

_INT_KEYS: Mapping[str, tuple[int, int]] = MappingProxyType(
    {
        **{f"totem.{k}": U32 for k in _TOTEM_U32},
        "totem.knet_compression_level": I32,
        "totem.config_version": U64,
        **{f"quorum.{k}": U32 for k in _QUORUM_U32},
        **{f"quorum.{k}": U8 for k in _QUORUM_U8},
        **{f"quorum.device.{k}": U32 for k in ("timeout", "sync_timeout", "votes")},
        "quorum.device.master_wins": U8,
        "nodelist.node.*.nodeid": U32,
        "nodelist.node.*.quorum_votes": U32,
        "nodelist.node.*.port": (1, 65535),
        **{f"totem.interface.*.{k}": U32 for k in _KNET_U32},
        "totem.interface.*.ttl": U8,
        "totem.interface.*.knet_link_priority": U8,
        "totem.interface.*.mcastport": U16,
        "resources.watchdog_timeout": U32,
    }
)

_BOOLEAN = ("yes", "on", "no", "off")
_PRIORITIES = ("emerg", "alert", "crit", "err", "error", "warning", "notice", "info", "debug")
_FACILITIES = (
    "daemon", "auth", "authpriv", "cron", "ftp", "kern", "lpr", "mail", "news", "syslog",
    "user", "uucp", *(f"local{i}" for i in range(8)),
)  # fmt: skip
_LOG_COMMON: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "to_stderr": _BOOLEAN,
        "to_syslog": _BOOLEAN,
        "to_logfile": _BOOLEAN,
        "debug": ("off", "on", "trace"),
        "logfile_priority": _PRIORITIES,
        "syslog_priority": _PRIORITIES,
    }
)

_CHOICES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "totem.transport": ("knet", "udpu", "udp"),
        "totem.ip_version": ("ipv4", "ipv6", "ipv4-6", "ipv6-4"),
        "totem.crypto_cipher": ("none", "aes256", "aes192", "aes128"),
        "totem.crypto_hash": ("none", "md5", "sha1", "sha256", "sha384", "sha512"),
        "system.qb_ipc_type": ("native", "shm", "socket"),
        "system.sched_rr": ("yes", "no"),
        "system.allow_knet_handle_fallback": ("yes", "no"),
        "system.move_to_root_cgroup": ("yes", "no", "auto"),
        "system.libqb_ipc": ("yes", "no"),
        "logging.timestamp": ("off", "on", "hires"),
        "logging.fileline": _BOOLEAN,
        "logging.function_name": _BOOLEAN,
        "logging.blackbox": _BOOLEAN,
        "logging.syslog_facility": _FACILITIES,
        **{f"logging.{k}": v for k, v in _LOG_COMMON.items()},
        **{f"logging.logger_subsys.*.{k}": v for k, v in _LOG_COMMON.items()},
    }
)

_INDEXED = re.compile(r"^(nodelist\.node|totem\.interface)\.[0-9]+\.")
_NODE_SECTION = re.compile(r"nodelist\.node\.[0-9]+")
_UIDGID_KEY = re.compile(r"uidgid\.config\.(uid|gid)\.(.*)")


class _Keys:
    """Typed reads over validated keys, and ``fail`` naming a key's file and line."""

    __slots__ = ("parsed",)

    def __init__(self, parsed: ParsedConfig) -> None:
        self.parsed = parsed

    def fail(self, message: str, *keys: str) -> ConfigError:
        """A ConfigError at the line of the first of ``keys`` present (keys or sections)."""
        for key in keys:
            line = self.parsed.line_of(key) or self.parsed.section_line(key)
            if line is not None:
                return ConfigError(self.parsed.filename, line, message)
        return ConfigError(self.parsed.filename, None, message)

    def text(self, key: str, default: str) -> str:
        value = self.parsed.get(key)
        return default if value is None else value

    def opt_text(self, key: str) -> str | None:
        return self.parsed.get(key)

    def opt_int(self, key: str) -> int | None:
        value = self.parsed.get(key)
        return None if value is None else int(value)

    def int(self, key: str, default: int) -> int:
        value = self.opt_int(key)
        return default if value is None else value

    def flag(self, key: str, default: bool = False) -> bool:
        """A u8 switch: any nonzero value is on."""
        value = self.opt_int(key)
        return default if value is None else value != 0

    def opt_boolean(self, key: str) -> bool | None:
        """A logging boolean: yes/on or no/off."""
        value = self.parsed.get(key)
        return None if value is None else value in ("yes", "on")

    def boolean(self, key: str, default: bool) -> bool:
        value = self.opt_boolean(key)
        return default if value is None else value


def _subsystems(parsed: ParsedConfig) -> list[str]:
    """Logger subsystem names, in file order."""
    names = []
    for key, value, _ in parsed.items("logging.logger_subsys."):
        if key == f"logging.logger_subsys.{value}.subsys":
            names.append(value)
    return names


def _schema_key(key: str, subsystems: list[str]) -> str:
    """``key`` with its variable part (node index, link number, subsystem) replaced by ``*``."""
    for name in subsystems:
        prefix = f"logging.logger_subsys.{name}."
        if key.startswith(prefix):
            return "logging.logger_subsys.*." + key[len(prefix) :]
    return _INDEXED.sub(r"\1.*.", key)


def _check_schema(parsed: ParsedConfig, keys: _Keys) -> None:
    subsystems = _subsystems(parsed)
    for key, value, _ in parsed.keys:
        pattern = _schema_key(key, subsystems)
        bounds = _INT_KEYS.get(pattern)
        if bounds is not None and parse_int(value, *bounds) is None:
            raise keys.fail(int_range_error(key, value, *bounds), key)
        allowed = _CHOICES.get(pattern)
        if allowed is not None and value not in allowed:
            raise keys.fail(
                f'{key}: invalid value "{value}"; use one of: {", ".join(allowed)}', key
            )
    provider = parsed.get("quorum.provider")
    if provider is not None and provider != VOTEQUORUM:
        raise keys.fail(
            f'quorum.provider: unknown quorum provider "{provider}"; the only provider is '
            f"{VOTEQUORUM} (remove the key to run without a quorum provider)",
            "quorum.provider",
        )


def _build_totem(keys: _Keys) -> TotemConfig:
    cipher = keys.text("totem.crypto_cipher", "aes256")
    digest = keys.text("totem.crypto_hash", "sha256")
    if cipher != "none" and digest == "none":
        raise keys.fail(
            f"totem.crypto_cipher: {cipher} requires a crypto_hash other than none "
            "(set crypto_hash, or crypto_cipher: none)",
            "totem.crypto_hash",
            "totem.crypto_cipher",
        )
    return TotemConfig(
        cluster_name=keys.text("totem.cluster_name", ""),
        transport=keys.text("totem.transport", "knet"),
        token_ms=keys.int("totem.token", 3000),
        token_coefficient_ms=keys.int("totem.token_coefficient", 650),
        consensus_ms=keys.opt_int("totem.consensus"),
        join_ms=keys.int("totem.join", 50),
        merge_ms=keys.int("totem.merge", 200),
        token_retransmit_ms=keys.opt_int("totem.token_retransmit"),
        hold_ms=keys.opt_int("totem.hold"),
        crypto_cipher=cipher,
        crypto_hash=digest,
        keyfile=keys.text("totem.keyfile", "/etc/pyquorum/authkey"),
        port=keys.int("totem.interface.0.mcastport", DEFAULT_PORT),
        ip_version=keys.text("totem.ip_version", "ipv4-6"),
    )


def _build_nodes(parsed: ParsedConfig, keys: _Keys) -> tuple[NodeConfig, ...]:
    nodes: list[NodeConfig] = []
    seen: dict[int, int] = {}
    for section, line in parsed.sections:
        if not _NODE_SECTION.fullmatch(section):
            continue
        nodeid = keys.opt_int(f"{section}.nodeid")
        if nodeid is None:
            raise ConfigError(
                parsed.filename, line, f"{section}: nodeid is required; add 'nodeid: <n>'"
            )
        if nodeid == 0:
            raise keys.fail(f"{section}.nodeid: nodeid 0 is reserved; use 1 or more",
                            f"{section}.nodeid")  # fmt: skip
        if nodeid in seen:
            raise keys.fail(
                f"{section}.nodeid: nodeid {nodeid} is already used by the node at line "
                f"{seen[nodeid]}; node ids must be unique",
                f"{section}.nodeid",
            )
        seen[nodeid] = line
        addrs = (keys.opt_text(f"{section}.ring{x}_addr") for x in range(MAX_LINKS))
        nodes.append(
            NodeConfig(
                nodeid=nodeid,
                name=keys.opt_text(f"{section}.name"),
                ring_addrs=tuple(a for a in addrs if a is not None),
                quorum_votes=keys.int(f"{section}.quorum_votes", 1),
                port=keys.opt_int(f"{section}.port"),
            )
        )
    return tuple(nodes)


def _build_quorum(keys: _Keys) -> QuorumConfig:
    model = keys.text("quorum.device.model", "")
    device = None
    if model:
        device = DeviceConfig(
            model=model,
            votes=keys.opt_int("quorum.device.votes"),
            timeout_ms=keys.int("quorum.device.timeout", 10000),
            sync_timeout_ms=keys.int("quorum.device.sync_timeout", 30000),
        )
    wait_for_all = keys.opt_int("quorum.wait_for_all")
    return QuorumConfig(
        provider=keys.opt_text("quorum.provider"),
        expected_votes=keys.int("quorum.expected_votes", 0),
        votes=keys.int("quorum.votes", 1),
        two_node=keys.flag("quorum.two_node"),
        wait_for_all=None if wait_for_all is None else wait_for_all != 0,
        last_man_standing=keys.flag("quorum.last_man_standing"),
        last_man_standing_window_ms=keys.int("quorum.last_man_standing_window", 10000),
        auto_tie_breaker=keys.flag("quorum.auto_tie_breaker"),
        auto_tie_breaker_node=keys.text("quorum.auto_tie_breaker_node", "lowest"),
        allow_downscale=keys.flag("quorum.allow_downscale"),
        expected_votes_tracking=keys.flag("quorum.expected_votes_tracking"),
        device=device,
    )


def _build_logging(parsed: ParsedConfig, keys: _Keys) -> LoggingConfig:
    subsys = []
    for name in _subsystems(parsed):
        p = f"logging.logger_subsys.{name}."
        subsys.append(
            LoggerSubsys(
                subsys=name,
                to_stderr=keys.opt_boolean(p + "to_stderr"),
                to_syslog=keys.opt_boolean(p + "to_syslog"),
                to_logfile=keys.opt_boolean(p + "to_logfile"),
                debug=keys.opt_text(p + "debug"),
                logfile_priority=keys.opt_text(p + "logfile_priority"),
                syslog_priority=keys.opt_text(p + "syslog_priority"),
            )
        )
    return LoggingConfig(
        timestamp=keys.text("logging.timestamp", "hires"),
        fileline=keys.boolean("logging.fileline", False),
        function_name=keys.boolean("logging.function_name", False),
        to_stderr=keys.boolean("logging.to_stderr", True),
        to_syslog=keys.boolean("logging.to_syslog", True),
        to_logfile=keys.boolean("logging.to_logfile", False),
        logfile=keys.opt_text("logging.logfile"),
        logfile_priority=keys.text("logging.logfile_priority", "info"),
        syslog_priority=keys.text("logging.syslog_priority", "info"),
        syslog_facility=keys.text("logging.syslog_facility", "daemon"),
        debug=keys.text("logging.debug", "off"),
        subsys=tuple(subsys),
    )


def _build_uidgid(parsed: ParsedConfig, keys: _Keys, extra: UidGidConfig) -> UidGidConfig:
    ids: dict[str, set[int]] = {"uid": set(extra.uids), "gid": set(extra.gids)}
    for key, _, _ in parsed.items("uidgid.config."):
        match = _UIDGID_KEY.fullmatch(key)
        if match is None:
            continue
        kind, name = match.groups()
        number = parse_int(name, *U32)
        if number is None:
            raise keys.fail(
                f"uidgid: {kind} '{name}' is not a numeric id (load_config resolves names)", key
            )
        ids[kind].add(number)
    return UidGidConfig(uids=frozenset(ids["uid"]), gids=frozenset(ids["gid"]))


def _check_totem_minimums(config: ClusterConfig, keys: _Keys) -> None:
    """Spec 5.2 minimum checks, on the effective timing for this nodelist."""
    t = config.timing()
    checks: list[tuple[str, int, int, tuple[str, ...]]] = [
        ("token", t.token_ms, 30, ("totem.token",)),
        ("token_retransmit", t.token_retransmit_ms, 30,
         ("totem.token_retransmit", "totem.token")),
        ("join", t.join_ms, 30, ("totem.join",)),
        ("consensus", t.consensus_ms, 30, ("totem.consensus", "totem.token")),
        ("merge", t.merge_ms, 30, ("totem.merge",)),
        ("hold", t.hold_ms, 14, ("totem.hold", "totem.token_retransmit", "totem.token")),
    ]  # fmt: skip
    for name in ("downcheck", "max_network_delay"):
        value = keys.opt_int(f"totem.{name}")
        if value is not None:
            checks.append((name, value, 30, (f"totem.{name}",)))
    for name, value, minimum, sources in checks:
        if value < minimum:
            configured = next((k for k in sources if k in keys.parsed), sources[0])
            derived = "" if configured == f"totem.{name}" else f" (derived from {configured})"
            raise keys.fail(
                f"totem.{name}: the effective value {value} ms{derived} is below the "
                f"minimum of {minimum} ms; raise {configured}",
                *sources,
            )
    if t.consensus_ms < t.join_ms:
        raise keys.fail(
            f"totem.consensus: the effective consensus ({t.consensus_ms} ms) must be at "
            f"least join ({t.join_ms} ms); raise totem.consensus or lower totem.join",
            "totem.consensus",
            "totem.token",
            "totem.join",
        )


def validate_votequorum(config: ClusterConfig, parsed: ParsedConfig | None = None) -> None:
    """Apply votequorum's fatal startup rules (spec 4.2 #1, #2, #8, #9, #10, #11, #12).

    ``parsed`` supplies the lines for the errors; without it errors name only the file.
    Non-fatal derivations (two_node off with ATB, ATB off on odd clusters, ...) are left
    to votequorum.
    """
    keys = _Keys(parsed if parsed is not None else ParsedConfig(config.source))
    q = config.quorum
    device = q.device
    node_count = len(config.nodes)
    nev = sum(n.quorum_votes for n in config.nodes)
    if not config.nodes and not q.expected_votes:
        raise keys.fail(
            "votequorum: nodelist or quorum.expected_votes must be configured; "
            "add a nodelist section or set quorum.expected_votes",
            "quorum.provider",
            "quorum",
        )
    if q.two_node and device is not None:
        raise keys.fail(
            "votequorum: two_node and a quorum device cannot be configured at the same time; "
            "remove quorum.two_node or the quorum.device section",
            "quorum.two_node",
        )
    wait_for_all = q.two_node if q.wait_for_all is None else q.wait_for_all
    auto_tie_breaker = q.auto_tie_breaker
    if auto_tie_breaker and nev % 2 and not wait_for_all:
        if q.last_man_standing:
            raise keys.fail(
                f"votequorum: auto_tie_breaker and last_man_standing are not available in an "
                f"odd sized cluster ({nev} nodelist votes) without wait_for_all; disable "
                "last_man_standing, keep auto_tie_breaker and set wait_for_all: 1",
                "quorum.last_man_standing",
                "quorum.auto_tie_breaker",
            )
        auto_tie_breaker = False  # votequorum disables it (non-fatal, logged there)
    if device is not None:
        for enabled, key in (
            (q.last_man_standing, "last_man_standing"),
            (auto_tie_breaker, "auto_tie_breaker"),
            (q.allow_downscale, "allow_downscale"),
        ):
            if enabled:
                raise keys.fail(
                    f"votequorum: quorum.device is not compatible with {key}; "
                    f"remove quorum.{key} or the quorum.device section",
                    f"quorum.{key}",
                )
    if device is not None and device.votes is None:
        if q.expected_votes:
            raise keys.fail(
                "votequorum: quorum.device.votes must be specified when "
                "quorum.expected_votes is set; add 'votes: <n>' to quorum.device",
                "quorum.device.model",
                "quorum.device",
            )
        if config.nodes and node_count != nev:
            raise keys.fail(
                f"votequorum: quorum.device.votes must be specified when not all nodes vote 1 "
                f"({node_count} nodes, {nev} nodelist votes); add 'votes: <n>' to quorum.device",
                "quorum.device.model",
                "quorum.device",
            )
    votes = device.votes if device is not None else None
    if votes and q.expected_votes and q.expected_votes - votes < 2:
        raise keys.fail(
            f"votequorum: quorum.device.votes ({votes}) is too high or "
            f"quorum.expected_votes ({q.expected_votes}) is too low; expected_votes must "
            "exceed the device votes by at least 2",
            "quorum.device.votes",
        )


def build_config(parsed: ParsedConfig, extra_uidgid: UidGidConfig | None = None, *,
                 runtime: bool = False) -> ClusterConfig:
    """Build the typed configuration from ``parsed`` (spec 6.1/6.2) and validate it.

    ``extra_uidgid`` adds ids from other sources (``uidgid.d/``); uidgid names in
    ``parsed`` must already be numeric (``load_config`` resolves them).  Raises
    ``ConfigError`` with the file and line of the key at fault.  ``runtime`` (a
    reload) skips votequorum's fatal startup rules: votequorum applies their runtime
    fallbacks instead (spec 4.2, 4.10).
    """
    keys = _Keys(parsed)
    _check_schema(parsed, keys)
    config = ClusterConfig(
        totem=_build_totem(keys),
        nodes=_build_nodes(parsed, keys),
        quorum=_build_quorum(keys),
        logging=_build_logging(parsed, keys),
        system=SystemConfig(
            state_dir=keys.text("system.state_dir", "/var/lib/pyquorum"),
            run_dir=keys.text("system.run_dir", "/run/pyquorum"),
            libqb_ipc=keys.text("system.libqb_ipc", "no") == "yes",
        ),
        uidgid=_build_uidgid(parsed, keys, extra_uidgid or UidGidConfig()),
        source=parsed.filename,
    )
    _check_totem_minimums(config, keys)
    if config.quorum.provider == VOTEQUORUM and not runtime:
        validate_votequorum(config, parsed)
    return config
