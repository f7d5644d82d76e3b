"""Carebridge: a self-hosted customer-care bridge.

The public API for plugin authors is exactly what this module re-exports.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from bridge.channel import (
    CONTACT_EMAIL,
    Channel,
    ChannelContext,
    HistoryEntry,
    LoadStateCallback,
    MediaCallback,
    PageHandler,
    PendingMedia,
    RegisterChannel,
    SaveStateCallback,
    SimulatedRequest,
)
from bridge.config import Config, add_config_option, load_config
from bridge.errors import (
    BridgeError,
    ChannelAuthError,
    ChannelAuthFailed,
    ChannelError,
    ChannelUnavailable,
    ConfigError,
    DeliveryError,
    DeliveryUncertain,
    UnknownRecordError,
    WindowClosedError,
)
from bridge.hookspecs import hookimpl
from bridge.http_errors import http_error, json_error
from bridge.models import (
    Address,
    Attachment,
    ChannelState,
    DeliveryReceipt,
    Finding,
    InboundMessage,
    OutboundMessage,
    StatusKind,
    StatusUpdate,
)
from bridge.parts import SentParts, split_text
from bridge.schema import ChannelSchema, ConfigKey, check_section_keys
from bridge.webhooks import hand_over, read_body, webhook_app

try:
    __version__ = version("carebridge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "CONTACT_EMAIL",
    "Address",
    "Attachment",
    "BridgeError",
    "Channel",
    "ChannelAuthError",
    "ChannelAuthFailed",
    "ChannelContext",
    "ChannelError",
    "ChannelSchema",
    "ChannelState",
    "ChannelUnavailable",
    "Config",
    "ConfigError",
    "ConfigKey",
    "DeliveryError",
    "DeliveryUncertain",
    "DeliveryReceipt",
    "Finding",
    "HistoryEntry",
    "InboundMessage",
    "LoadStateCallback",
    "MediaCallback",
    "OutboundMessage",
    "PageHandler",
    "PendingMedia",
    "RegisterChannel",
    "SaveStateCallback",
    "SentParts",
    "SimulatedRequest",
    "StatusKind",
    "StatusUpdate",
    "UnknownRecordError",
    "WindowClosedError",
    "__version__",
    "add_config_option",
    "check_section_keys",
    "hand_over",
    "hookimpl",
    "http_error",
    "json_error",
    "load_config",
    "read_body",
    "split_text",
    "webhook_app",
]
