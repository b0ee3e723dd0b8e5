"""pyquorum.config: corosync.conf parser (exact grammar), typed frozen config, loader.

* ``parse_text(text, filename)`` -> ``ParsedConfig`` (flattened cmap-style keys, pure);
* ``build_config(parsed, extra_uidgid=None)`` -> ``ClusterConfig`` (typed, validated, pure);
* ``load_config(path)`` -> ``ClusterConfig`` (the only function that reads files).
"""

from pyquorum.config.build import build_config, validate_votequorum
from pyquorum.config.load import load_config, resolve_uidgid
from pyquorum.config.model import (
    ClusterConfig,
    DeviceConfig,
    LoggerSubsys,
    LoggingConfig,
    NodeConfig,
    QuorumConfig,
    SystemConfig,
    TotemConfig,
    TotemTiming,
    UidGidConfig,
)
from pyquorum.config.parser import ParsedConfig, parse_text


def config_from_text(text: str, filename: str = "<config>") -> ClusterConfig:
    """Parse and build ``text`` without touching files (numeric uidgid ids only)."""
    return build_config(parse_text(text, filename))


__all__ = [
    "ClusterConfig",
    "DeviceConfig",
    "LoggerSubsys",
    "LoggingConfig",
    "NodeConfig",
    "ParsedConfig",
    "QuorumConfig",
    "SystemConfig",
    "TotemConfig",
    "TotemTiming",
    "UidGidConfig",
    "build_config",
    "config_from_text",
    "load_config",
    "parse_text",
    "resolve_uidgid",
    "validate_votequorum",
]
