"""The configuration: ``bridge.toml`` loaded into frozen, typed sections (see ``settings``)."""

from __future__ import annotations

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
