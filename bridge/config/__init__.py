"""The configuration: ``bridge.toml`` loaded into frozen, typed sections (see ``settings``)."""

from __future__ import annotations

from bridge.config.options import add_config_option
from bridge.config.settings import (
    Config,
    DeliveryConfig,
    LoggingConfig,
    PluginsConfig,
    RetentionConfig,
    RoutingConfig,
    SecurityConfig,
    SensitiveConfig,
    ServerConfig,
    StoreConfig,
    TemplatesConfig,
    find_config_file,
    load_config,
    parse_config,
)
from bridge.config.values import resolve_secret

__all__ = [
    "Config",
    "add_config_option",
    "DeliveryConfig",
    "LoggingConfig",
    "PluginsConfig",
    "RetentionConfig",
    "RoutingConfig",
    "SecurityConfig",
    "SensitiveConfig",
    "ServerConfig",
    "StoreConfig",
    "TemplatesConfig",
    "find_config_file",
    "load_config",
    "parse_config",
    "resolve_secret",
]
