"""Typed values of ``bridge.toml``: one parser per kind of value, and secret references.

Each parser takes ``(raw value, key path, base directory)`` and returns the
typed value or raises a ``ConfigError`` that names the key path and what was
expected, so ``bridge.config`` only has to say which key takes which kind.
``resolve_secret`` is public: plugins resolve their own references with it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge.errors import ConfigError

_SECRET_PREFIXES = ("env:", "file:", "credential:")

Parser = Callable[[object, str, Path], Any]


def type_name(value: object) -> str:
    """Name the TOML type of ``value`` for an error message ("an integer")."""
    labels = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    labels.update({list: "an array", dict: "a table"})
    return labels.get(type(value), type(value).__name__)


def string(value: object, key: str, base_dir: Path) -> str:
    """A string; a secret reference is resolved."""
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {type_name(value)}")
    return resolve_secret(value, key, base_dir)


def choice(options: tuple[str, ...]) -> Parser:
    """A parser for one of ``options`` (case-insensitive)."""

    def parse(value: object, key: str, base_dir: Path) -> str:
        text = string(value, key, base_dir).strip().lower()
        if text not in options:
            raise ConfigError(f"{key}: expected one of {', '.join(options)}, got {value!r}")
        return text

    return parse


def integer(low: int, high: int | None = None) -> Parser:
    """A parser for an integer in ``[low, high]`` (booleans refused)."""

    def parse(value: object, key: str, base_dir: Path) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {type_name(value)}")
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{key}: expected an integer {bounds}, got {value}")
        return value

    return parse


def boolean(value: object, key: str, base_dir: Path) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {type_name(value)}")
    return value


def duration(value: object, key: str, base_dir: Path) -> float:
    """Seconds, from ``"10s"``, ``"15m"``, ``"8h"``, ``"2d"`` or a number."""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration like '10s', '15m' or '8h', got {type_name(value)}")
    return parse_duration(value, key)


def positive_duration(value: object, key: str, base_dir: Path) -> float:
    """A duration longer than zero."""
    seconds = duration(value, key, base_dir)
    if seconds <= 0:
        raise ConfigError(f"{key}: expected a duration longer than 0, got {value!r}")
    return seconds


def listen_address(value: object, key: str, base_dir: Path) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[::1]:9090`` for IPv6) as ``(host, port)``, or None for ``""``."""
    text = string(value, key, base_dir).strip()
    if not text:
        return None
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^\s:\[\]]+):(\d{1,5})", text)
    port = int(match.group(2) or match.group(4)) if match else 0
    if match is None or not 1 <= port <= 65535:
        raise ConfigError(f"{key}: expected HOST:PORT such as '127.0.0.1:9090', got {value!r}")
    return (match.group(1) or match.group(3), port)


def path(value: object, key: str, base_dir: Path) -> Path:
    """A non-empty path, relative to ``base_dir``."""
    text = string(value, key, base_dir)
    if not text.strip():
        raise ConfigError(f"{key}: expected a path, got an empty string")
    return resolve_path(text.strip(), base_dir)


def optional_path(value: object, key: str, base_dir: Path) -> Path | None:
    """A path, or None for an empty string."""
    if isinstance(value, str) and not value.strip():
        return None
    return path(value, key, base_dir)


def names(value: object, key: str, base_dir: Path) -> tuple[str, ...]:
    """An array of non-empty strings."""
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected an array of strings, got {type_name(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{key}[{i}]: expected a non-empty string, got {item!r}")
    return tuple(item.strip() for item in value)


def choice_table(options: tuple[str, ...]) -> Parser:
    """A table whose values are each one of ``options``, kept as sorted ``(key, value)`` pairs."""

    def parse(value: object, key: str, base_dir: Path) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {type_name(value)}")
        pick = choice(options)
        return tuple(sorted((str(k), pick(v, f"{key}.{k}", base_dir)) for k, v in value.items()))

    return parse


def key_ref(value: object, key: str, base_dir: Path) -> str:
    """Keep the master-key reference as text; make ``file:`` paths absolute."""
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {type_name(value)}")
    kind, sep, rest = value.partition(":")
    if not sep or kind not in ("file", "env", "credential") or not rest.strip():
        raise ConfigError(f"{key}: expected 'file:PATH', 'env:NAME' or 'credential:NAME', got {value!r}")
    if kind == "file":
        return f"file:{resolve_path(rest.strip(), base_dir)}"
    return f"{kind}:{rest.strip()}"


def public_url(value: object, key: str, base_dir: Path) -> str:
    """An http(s) base URL without a trailing slash, or ``""``."""
    text = string(value, key, base_dir).strip().rstrip("/")
    if text and not re.match(r"^https?://[^\s/]+", text):
        raise ConfigError(f"{key}: expected an http(s) URL such as 'https://care.example.org', got {value!r}")
    return text


def resolve_path(text: str, base_dir: Path) -> Path:
    """Expand ``~`` and make ``text`` absolute against ``base_dir``."""
    path = Path(text).expanduser()
    return path if path.is_absolute() else (base_dir / path)


def resolve_secret(value: str, key_path: str, base_dir: Path) -> str:
    """Resolve an ``env:NAME``, ``file:PATH`` or ``credential:NAME`` reference.

    Any other string is returned unchanged. File contents lose surrounding
    whitespace (a trailing newline is the norm in secret files).

    :raises ConfigError: naming ``key_path`` when the variable, file or
        credential is missing or empty.
    """
    kind, sep, rest = value.partition(":")
    if not sep or f"{kind}:" not in _SECRET_PREFIXES:
        return value
    rest = rest.strip()
    if not rest:
        raise ConfigError(f"{key_path}: '{kind}:' needs a name after the colon")
    if kind == "env":
        if rest not in os.environ:
            raise ConfigError(f"{key_path}: environment variable {rest} is not set")
        secret = os.environ[rest]
    else:
        if kind == "file":
            path = resolve_path(rest, base_dir)
        else:
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise ConfigError(
                    f"{key_path}: credential {rest} needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=)"
                )
            if "/" in rest or rest in (".", ".."):
                raise ConfigError(f"{key_path}: credential name {rest!r} must not contain '/'")
            path = Path(directory) / rest
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ConfigError(f"{key_path}: {kind} {path} not found") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{key_path}: cannot read {kind} {path}: {err}") from err
    if not secret:
        raise ConfigError(f"{key_path}: {kind}:{rest} is empty")
    return secret


def parse_duration(text: str | int | float, key: str) -> float:
    """Parse ``"10s"``, ``"15m"``, ``"8h"``, ``"2d"`` or a number of seconds.

    :raises ConfigError: naming ``key`` when the text is not a duration.
    """
    if isinstance(text, bool):
        raise ConfigError(f"{key}: expected a duration like '10s', '15m' or '8h'")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ConfigError(f"{key}: expected a positive duration")
        return float(text)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", str(text))
    if not match:
        raise ConfigError(f"{key}: expected a duration like '10s', '15m' or '8h', got {text!r}")
    value = float(match.group(1))
    unit = match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
