"""The parts of the configuration the ``carebridge telegram`` commands need.

The file is found and read exactly as every ``carebridge`` command does
(``bridge.load_config``: ``-c FILE``, ``$CAREBRIDGE_CONFIG``, ``./bridge.toml``,
secret references resolved); this module only picks and checks what
registering the webhook needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bridge import ConfigError, load_config

from .config import SECTION, TelegramConfig


@dataclass(frozen=True, slots=True)
class CliSettings:
    """What ``telegram set-webhook`` reads from the configuration.

    :param path: the file it came from (None: the embedded defaults).
    :param public_url: ``[server] public_url`` without a trailing slash.
    :param telegram: the validated ``[channels.telegram]`` section.
    """

    path: Path | None
    public_url: str
    telegram: TelegramConfig


def load_cli_settings(option: str | None) -> CliSettings:
    """Read and check ``[server] public_url`` and ``[channels.telegram]``.

    :raises ConfigError: naming the file or the key path and what is wrong.
    """
    config = load_config(option)
    where = config.describe()
    section = config.channels.get("telegram")
    if section is None:
        raise ConfigError(f"{SECTION}: not configured ({where})")
    if not section.get("enabled", True):
        raise ConfigError(f"{SECTION}: not enabled ({where})")
    if not config.server.public_url:
        raise ConfigError(f"server.public_url: required to register the webhook ({where})")
    return CliSettings(
        path=config.path, public_url=config.server.public_url, telegram=TelegramConfig.from_section(section)
    )
