"""Carebridge: a self-hosted customer-care bridge.

The public API for plugin authors is exactly what this module re-exports.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .channel import Channel, ChannelContext, PendingMedia, SimulatedRequest
from .errors import (
    BridgeError,
    ChannelAuthError,
    ChannelAuthFailed,
    ChannelError,
    ChannelUnavailable,
    ConfigError,
    DeliveryError,
    WindowClosedError,
)
from .hookspecs import hookimpl
from .models import (
    Address,
    Attachment,
    ChannelState,
    DeliveryReceipt,
    Finding,
    InboundMessage,
    OutboundMessage,
    StatusUpdate,
)

try:
    __version__ = version("carebridge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "Address",
    "Attachment",
    "BridgeError",
    "Channel",
    "ChannelAuthError",
    "ChannelAuthFailed",
    "ChannelContext",
    "ChannelError",
    "ChannelState",
    "ChannelUnavailable",
    "ConfigError",
    "DeliveryError",
    "DeliveryReceipt",
    "Finding",
    "InboundMessage",
    "OutboundMessage",
    "PendingMedia",
    "SimulatedRequest",
    "StatusUpdate",
    "WindowClosedError",
    "__version__",
    "hookimpl",
]
