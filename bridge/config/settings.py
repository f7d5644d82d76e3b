"""Load ``bridge.toml`` into frozen, typed settings.

Why this shape: every mistake in a config file must stop the daemon before
anything starts, with a message naming the key path (``server.port: expected
an integer``), and a misspelt key must never be silently ignored. The core
sections are parsed here against a small schema (the value parsers live in
``bridge.config.values``); each ``[channels.<name>]``
section is handed raw (secrets resolved, ``enabled`` filled in) to its
plugin, which validates it in ``Channel.check_config``.

Lookup order for the file: the ``path`` argument, ``$CAREBRIDGE_CONFIG``,
``./bridge.toml``, else the embedded defaults (everything relative to the
current directory). Paths inside a file are relative to the file's directory.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bridge.config import values as cv
from bridge.config.values import Parser, resolve_secret
from bridge.errors import ConfigError

__all__ = ["Config", "find_config_file", "load_config", "parse_config", "resolve_secret"]

ENV_VAR = "CAREBRIDGE_CONFIG"
DEFAULT_FILE = "bridge.toml"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
SYNCHRONOUS = ("off", "normal", "full", "extra")
STORE_BACKENDS = ("sqlite", "postgresql")
SENSITIVE_POLICIES = ("redact", "block", "allow")
_CHANNEL_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
#: What runs with no file at all: the console and the website chat, which need no secrets (DESIGN §12).
EMBEDDED: Mapping[str, Any] = {"channels": {"webchat": {}}}


@dataclass(frozen=True)
class ServerConfig:
    """``[server]``: where the HTTP server listens and how it behaves.

    The edge limits (``header_timeout`` … ``max_inflight_body_bytes_per_address``)
    bound what slow or numerous clients can hold (``bridge.web.edge``).
    ``admin_listen`` is ``(host, port)`` or None; ``admin_token`` is the
    resolved secret (hidden from ``repr``) or ``""``.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    max_body: int = 2 * 1024 * 1024
    shutdown_timeout: float = 10.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_connections_per_address: int = 100
    max_inflight_body_bytes: int = 64 * 1024 * 1024
    max_inflight_body_bytes_per_address: int = 16 * 1024 * 1024
    admin_listen: tuple[str, int] | None = None
    admin_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class LoggingConfig:
    """``[logging]``: the level of the one-line-per-event stderr log."""

    level: str = "info"


@dataclass(frozen=True)
class PluginsConfig:
    """``[plugins]``: plugins whose absence must stop start-up."""

    required: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoreConfig:
    """``[store]``: the encrypted database and its master-key reference.

    ``key`` stays a reference (``file:/abs/path``, ``env:NAME``,
    ``credential:NAME``): the store loads it, so the key itself never sits in
    this object. ``backend`` is ``sqlite`` (the embedded file at ``path``) or
    ``postgresql`` (the database named by ``dsn``, a resolved secret hidden
    from ``repr``; several daemons may share it). Media files live in the
    directory beside ``path`` with either backend. ``pool_size`` bounds the
    PostgreSQL connections one daemon holds for reads.
    """

    path: Path = Path("var/carebridge.db")
    key: str = "file:var/master.key"
    synchronous: str = "full"
    backend: str = "sqlite"
    dsn: str = field(default="", repr=False)
    pool_size: int = 4


@dataclass(frozen=True)
class SecurityConfig:
    """``[security]``: console sessions and login throttling.

    ``login_max_attempts_per_address`` (0: no such limit) must be higher than
    ``login_max_attempts``: it stops one address guessing across accounts.
    """

    session_ttl: float = 8 * 3600.0
    login_max_attempts: int = 5
    login_max_attempts_per_address: int = 20
    lockout: float = 15 * 60.0
    totp_issuer: str = "Carebridge"


@dataclass(frozen=True)
class RoutingConfig:
    """``[routing]``: how conversations reach agents."""

    strategy: str = "least_busy"
    rules_file: Path | None = None
    history_messages: int = 10
    decline_timeout: float = 120.0
    transfer_notice: bool = False
    window_warning: float = 3600.0


@dataclass(frozen=True)
class DeliveryConfig:
    """``[delivery]``: the outbox worker's retries, parallelism and limits.

    ``confirm_wait``: after a send whose answer was lost, how long to wait for
    the platform's own report of it before sending again. ``max_parts_per_message``:
    the most platform messages one relayed text may become (the rest is left
    in the console). ``max_backlog_age``: /healthz says ``degraded`` once the
    oldest waiting delivery is older (0: never). ``lease``: with several
    daemons on one PostgreSQL database, how long a daemon holds the rows it
    is sending (renewed while a send lasts); a dead daemon's rows go to the
    others after at most this long.
    """

    max_attempts: int = 8
    retry_base: float = 2.0
    retry_max: float = 600.0
    concurrency: int = 4
    confirm_wait: float = 30.0
    max_parts_per_message: int = 4
    max_backlog_age: float = 900.0
    lease: float = 30.0


@dataclass(frozen=True)
class TemplatesConfig:
    """``[templates]``: an optional YAML file overriding built-in notices."""

    file: Path | None = None


@dataclass(frozen=True)
class RetentionConfig:
    """``[retention]``: purge closed conversations after this many days (0: never);
    close open conversations idle for ``close_idle_after`` seconds (0: never)."""

    closed_after_days: int = 90
    close_idle_after: float = 0.0


@dataclass(frozen=True)
class SensitiveConfig:
    """``[sensitive]``: what happens to detected sensitive spans in chat copies.

    ``kinds`` overrides ``policy`` for single finding kinds (``iban``, ``card``,
    ``bsn``, ``code``, ``password`` or an admin pattern's kind);
    ``patterns_file`` is a YAML list of ``{kind, pattern}`` an admin adds.
    """

    policy: str = "redact"
    kinds: tuple[tuple[str, str], ...] = ()
    patterns_file: Path | None = None

    def policy_for(self, kind: str) -> str:
        """The policy that applies to findings of ``kind``."""
        return dict(self.kinds).get(kind, self.policy)


@dataclass(frozen=True)
class Config:
    """The whole configuration; ``path`` is None for the embedded defaults."""

    path: Path | None
    base_dir: Path
    server: ServerConfig = field(default_factory=ServerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    templates: TemplatesConfig = field(default_factory=TemplatesConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    sensitive: SensitiveConfig = field(default_factory=SensitiveConfig)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)

    def enabled_channels(self) -> list[str]:
        """Names of the channel sections with ``enabled = true``, sorted."""
        return sorted(name for name, section in self.channels.items() if section.get("enabled", True))

    def describe(self) -> str:
        """Say where this configuration came from, for the first log lines."""
        return f"config file {self.path}" if self.path else f"embedded defaults (relative to {self.base_dir})"


_SCHEMA: dict[str, tuple[type, dict[str, Parser]]] = {
    "server": (
        ServerConfig,
        {
            "host": cv.string,
            "port": cv.integer(0, 65535),
            "public_url": cv.public_url,
            "max_body": cv.integer(1),
            "shutdown_timeout": cv.duration,
            "tls_cert": cv.optional_path,
            "tls_key": cv.optional_path,
            "header_timeout": cv.positive_duration,
            "body_timeout": cv.positive_duration,
            "max_connections_per_address": cv.integer(0),
            "max_inflight_body_bytes": cv.integer(1),
            "max_inflight_body_bytes_per_address": cv.integer(1),
            "admin_listen": cv.listen_address,
            "admin_token": cv.string,
        },
    ),
    "logging": (LoggingConfig, {"level": cv.choice(LOG_LEVELS)}),
    "plugins": (PluginsConfig, {"required": cv.names}),
    "store": (
        StoreConfig,
        {
            "path": cv.path,
            "key": cv.key_ref,
            "synchronous": cv.choice(SYNCHRONOUS),
            "backend": cv.choice(STORE_BACKENDS),
            "dsn": cv.string,
            "pool_size": cv.integer(1, 100),
        },
    ),
    "security": (
        SecurityConfig,
        {
            "session_ttl": cv.duration,
            "login_max_attempts": cv.integer(1),
            "login_max_attempts_per_address": cv.integer(0),
            "lockout": cv.duration,
            "totp_issuer": cv.string,
        },
    ),
    "routing": (
        RoutingConfig,
        {
            "strategy": cv.string,
            "rules_file": cv.optional_path,
            "history_messages": cv.integer(0),
            "decline_timeout": cv.duration,
            "transfer_notice": cv.boolean,
            "window_warning": cv.duration,
        },
    ),
    "delivery": (
        DeliveryConfig,
        {
            "max_attempts": cv.integer(1),
            "retry_base": cv.duration,
            "retry_max": cv.duration,
            "concurrency": cv.integer(1),
            "confirm_wait": cv.duration,
            "max_parts_per_message": cv.integer(1),
            "max_backlog_age": cv.duration,
            "lease": cv.positive_duration,
        },
    ),
    "templates": (TemplatesConfig, {"file": cv.optional_path}),
    "retention": (RetentionConfig, {"closed_after_days": cv.integer(0), "close_idle_after": cv.duration}),
    "sensitive": (
        SensitiveConfig,
        {
            "policy": cv.choice(SENSITIVE_POLICIES),
            "kinds": cv.choice_table(SENSITIVE_POLICIES),
            "patterns_file": cv.optional_path,
        },
    ),
}
_TOP_LEVEL = (*_SCHEMA, "channels")


def _section(name: str, raw: object, base_dir: Path) -> object:
    cls, parsers = _SCHEMA[name]
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a table, got {cv.type_name(raw)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in parsers:
            raise ConfigError(f"{name}.{key}: unknown key (expected one of: {', '.join(parsers)})")
        values[key] = parsers[key](value, f"{name}.{key}", base_dir)
    # Defaults that are paths are relative to the config's directory too.
    for f in fields(cls):
        default = f.default
        if f.name not in values and isinstance(default, Path):
            values[f.name] = cv.resolve_path(str(default), base_dir)
        if f.name not in values and name == "store" and f.name == "key":
            values[f.name] = cv.key_ref(default, "store.key", base_dir)
    return cls(**values)


def _resolve_tree(value: object, key: str, base_dir: Path) -> object:
    if isinstance(value, str):
        return resolve_secret(value, key, base_dir)
    if isinstance(value, list):
        return [_resolve_tree(v, f"{key}[{i}]", base_dir) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _resolve_tree(v, f"{key}.{k}", base_dir) for k, v in value.items()}
    return value


def _channel_path(name: str, value: Any, base_dir: Path) -> Any:
    """Make a channel's ``*_file`` path absolute: paths are relative to the config file (DESIGN §11)."""
    if name.endswith("_file") and isinstance(value, str) and value and not Path(value).is_absolute():
        return str(base_dir / value)
    return value


def _channels(raw: object, base_dir: Path) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict):
        raise ConfigError(f"channels: expected a table of [channels.<name>] sections, got {cv.type_name(raw)}")
    out: dict[str, dict[str, Any]] = {}
    for name, section in raw.items():
        key = f"channels.{name}"
        if not _CHANNEL_NAME.match(name):
            raise ConfigError(f"{key}: channel names are lower-case letters, digits, '-' and '_'")
        if not isinstance(section, dict):
            raise ConfigError(f"{key}: expected a table, got {cv.type_name(section)}")
        enabled = cv.boolean(section.get("enabled", True), f"{key}.enabled", base_dir)
        body: dict[str, Any] = dict(section)
        if enabled:  # a disabled channel's secrets may legitimately be absent on this host
            body = {k: _resolve_tree(v, f"{key}.{k}", base_dir) for k, v in section.items()}
            body = {k: _channel_path(k, v, base_dir) for k, v in body.items()}
        body["enabled"] = enabled
        out[name] = body
    return out


def parse_config(data: Mapping[str, Any], *, path: Path | None, base_dir: Path) -> Config:
    """Turn parsed TOML into a ``Config``; ``load_config`` is the usual entry.

    :raises ConfigError: naming the first bad key path.
    """
    for key in data:
        if key not in _TOP_LEVEL:
            raise ConfigError(f"{key}: unknown key (expected one of: {', '.join(_TOP_LEVEL)})")
    sections: dict[str, Any] = {name: _section(name, data.get(name, {}), base_dir) for name in _SCHEMA}
    server: ServerConfig = sections["server"]
    if (server.tls_cert is None) != (server.tls_key is None):
        missing = "server.tls_key" if server.tls_key is None else "server.tls_cert"
        raise ConfigError(f"{missing}: required when the other of tls_cert/tls_key is set")
    _check_server(server)
    store: StoreConfig = sections["store"]
    if store.backend == "postgresql" and not store.dsn.strip():
        raise ConfigError('store.dsn: required when store.backend is postgresql (e.g. "env:CAREBRIDGE_DSN")')
    security: SecurityConfig = sections["security"]
    per_address = security.login_max_attempts_per_address
    if per_address and per_address <= security.login_max_attempts:
        raise ConfigError(
            "security.login_max_attempts_per_address: must be higher than security.login_max_attempts"
            f" ({security.login_max_attempts}), or 0 for no per-address limit"
        )
    delivery: DeliveryConfig = sections["delivery"]
    if delivery.retry_max < delivery.retry_base:
        raise ConfigError("delivery.retry_max: must not be shorter than delivery.retry_base")
    channels = _channels(data.get("channels", {}), base_dir)
    return Config(path=path, base_dir=base_dir, channels=channels, **sections)


def _check_server(server: ServerConfig) -> None:
    """Cross-key rules of ``[server]``: budgets that can hold one full body, two distinct listeners."""
    for key in ("max_inflight_body_bytes", "max_inflight_body_bytes_per_address"):
        if getattr(server, key) < server.max_body:
            raise ConfigError(f"server.{key}: must be at least server.max_body ({server.max_body})")
    if server.admin_listen is not None and server.admin_listen == (server.host, server.port):
        raise ConfigError("server.admin_listen: must differ from server.host:server.port")


def find_config_file(path: str | Path | None) -> Path | None:
    """Return the file ``load_config`` would read, or None for embedded defaults.

    :raises ConfigError: when an explicitly named file does not exist.
    """
    if path is not None and str(path) != "":
        explicit, origin = Path(path), "-c"
    elif os.environ.get(ENV_VAR):
        explicit, origin = Path(os.environ[ENV_VAR]), f"${ENV_VAR}"
    else:
        candidate = Path.cwd() / DEFAULT_FILE
        return candidate if candidate.is_file() else None
    if not explicit.is_file():
        raise ConfigError(f"{explicit}: configuration file not found (from {origin})")
    return explicit


def load_config(path: str | Path | None = None) -> Config:
    """Load the configuration (see the module docstring for the lookup order).

    :raises ConfigError: for a missing named file, invalid TOML, or any bad key.
    """
    found = find_config_file(path)
    if found is None:
        return parse_config(EMBEDDED, path=None, base_dir=Path.cwd())
    found = found.resolve()
    try:
        with found.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{found}: invalid TOML: {err}") from err
    except OSError as err:
        raise ConfigError(f"{found}: cannot read: {err}") from err
    return parse_config(data, path=found, base_dir=found.parent)
