"""pyquorum: a pure-Python implementation of the Corosync cluster quorum service."""

from pyquorum.errors import ConfigError, CsErr, CsError
from pyquorum.types import NodeId, RingId

__version__ = "0.1.0"

__all__ = ["ConfigError", "CsErr", "CsError", "NodeId", "RingId", "__version__"]
