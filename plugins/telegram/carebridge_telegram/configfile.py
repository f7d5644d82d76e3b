"""The parts of ``bridge.toml`` the ``carebridge telegram`` commands need.

A CLI command a plugin registers gets its parsed arguments only; the public
``bridge`` API offers no configuration loader. So this module finds the file
the way every ``carebridge`` command does (``-c FILE``, else
``$CAREBRIDGE_CONFIG``, else ``./bridge.toml``), reads ``[server] public_url``
and ``[channels.telegram]``, and resolves the secret references those two
may hold (``env:NAME``, ``file:PATH`` relative to the file, ``credential:NAME``
from ``$CREDENTIALS_DIRECTORY``) exactly as DESIGN §4 describes them.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bridge import ConfigError

from .config import SECTION, TelegramConfig

ENV_VAR = "CAREBRIDGE_CONFIG"
DEFAULT_FILE = "bridge.toml"
_SECRET_KINDS = ("env", "file", "credential")


@dataclass(frozen=True, slots=True)
class CliSettings:
    """What ``telegram set-webhook`` reads from the configuration.

    :param path: the file it came from.
    :param public_url: ``[server] public_url`` without a trailing slash.
    :param telegram: the validated ``[channels.telegram]`` section.
    """

    path: Path
    public_url: str
    telegram: TelegramConfig


def find_config_file(option: str | None) -> Path:
    """Return the configuration file to read.

    :raises ConfigError: when a named file does not exist, or no file is found
        at all (the embedded defaults have no Telegram channel).
    """
    if option:
        path, origin = Path(option), "-c"
    elif os.environ.get(ENV_VAR):
        path, origin = Path(os.environ[ENV_VAR]), f"${ENV_VAR}"
    else:
        path, origin = Path.cwd() / DEFAULT_FILE, "the current directory"
        if not path.is_file():
            raise ConfigError(f"no {DEFAULT_FILE} in the current directory: pass -c FILE with a [{SECTION}] section")
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found (from {origin})")
    return path.resolve()


def load_cli_settings(option: str | None) -> CliSettings:
    """Read and check ``[server] public_url`` and ``[channels.telegram]``.

    :raises ConfigError: naming the file or the key path and what is wrong.
    """
    path = find_config_file(option)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from err
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err}") from err
    base = path.parent
    channels = data.get("channels", {})
    section = channels.get("telegram") if isinstance(channels, dict) else None
    if not isinstance(section, dict):
        raise ConfigError(f"{SECTION}: not configured in {path}")
    if section.get("enabled", True) is False:
        raise ConfigError(f"{SECTION}: not enabled in {path}")
    resolved = {key: _resolve(value, f"{SECTION}.{key}", base) for key, value in section.items()}
    telegram = TelegramConfig.from_section(resolved)
    server = data.get("server", {})
    raw_url = server.get("public_url", "") if isinstance(server, dict) else ""
    public_url = _resolve(raw_url, "server.public_url", base) if isinstance(raw_url, str) else raw_url
    return CliSettings(path=path, public_url=_public_url(public_url, path), telegram=telegram)


def _public_url(value: object, path: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"server.public_url: required to register the webhook (set it in {path})")
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"server.public_url: expected an http(s) URL such as 'https://care.example.org', got {value!r}"
        )
    return url


def _resolve(value: object, key: str, base: Path) -> object:
    """Resolve ``env:``, ``file:`` and ``credential:`` references; anything else is returned as it is."""
    if not isinstance(value, str):
        return value
    kind, sep, rest = value.partition(":")
    if not sep or kind not in _SECRET_KINDS:
        return value
    name = rest.strip()
    if not name:
        raise ConfigError(f"{key}: '{kind}:' needs a name after the colon")
    if kind == "env":
        if name not in os.environ:
            raise ConfigError(f"{key}: environment variable {name} is not set")
        secret = os.environ[name]
    else:
        source = _secret_file(kind, name, key, base)
        try:
            secret = source.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ConfigError(f"{key}: {kind} {source} not found") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{key}: cannot read {kind} {source}: {err}") from err
    if not secret:
        raise ConfigError(f"{key}: {kind}:{name} is empty")
    return secret


def _secret_file(kind: str, name: str, key: str, base: Path) -> Path:
    if kind == "file":
        path = Path(name).expanduser()
        return path if path.is_absolute() else base / path
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise ConfigError(f"{key}: credential {name} needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=)")
    if "/" in name or name in (".", ".."):
        raise ConfigError(f"{key}: credential name {name!r} must not contain '/'")
    return Path(directory) / name
