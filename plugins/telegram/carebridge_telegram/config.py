"""The ``[channels.telegram]`` section, validated into a typed config.

The core hands each plugin its raw section with secrets already resolved
(``env:``/``file:``/``credential:``) and ``enabled`` filled in; this module
checks every key and names the offending one in its ``ConfigError``. The bot
token and the webhook secret are never quoted back in an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bridge import ConfigError

SECTION = "channels.telegram"
DEFAULT_API_URL = "https://api.telegram.org"
_REQUIRED = ("bot_token", "webhook_secret")
_KNOWN = frozenset({"enabled", "api_url", *_REQUIRED})
#: What @BotFather hands out: the bot's numeric id, a colon, then the secret part.
_BOT_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
#: ``setWebhook``'s ``secret_token``: "1-256 characters. Only characters A-Z, a-z, 0-9, _ and - are allowed."
_WEBHOOK_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


@dataclass(frozen=True, slots=True)
class TelegramConfig:
    """Settings of the Telegram channel.

    :param bot_token: the token from @BotFather; part of every Bot API URL (never logged).
    :param webhook_secret: the ``secret_token`` given to ``setWebhook``; Telegram
        sends it back in ``X-Telegram-Bot-Api-Secret-Token`` on every update.
    :param api_url: the Bot API server (a local ``telegram-bot-api`` server works too).
    """

    bot_token: str
    webhook_secret: str
    api_url: str = DEFAULT_API_URL
    enabled: bool = True

    def __repr__(self) -> str:
        # Keep secrets out of tracebacks and debug logs.
        return f"TelegramConfig(api_url={self.api_url!r}, enabled={self.enabled!r})"

    @property
    def bot_id(self) -> str:
        """The bot's own user id: the part of the token before the colon (not a secret)."""
        return self.bot_token.partition(":")[0]

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> TelegramConfig:
        """Validate a raw ``[channels.telegram]`` section.

        :raises ConfigError: naming ``channels.telegram.<key>`` and what is wrong.
        """
        if not isinstance(section, Mapping):
            raise ConfigError(f"{SECTION}: expected a table")
        unknown = sorted(set(section) - _KNOWN)
        if unknown:
            raise ConfigError(f"{SECTION}.{unknown[0]}: unknown key (expected one of {', '.join(sorted(_KNOWN))})")
        token = _required_text(section, "bot_token")
        if not _BOT_TOKEN.match(token):
            raise ConfigError(f"{SECTION}.bot_token: expected the token from @BotFather (digits, ':', then letters)")
        secret = _required_text(section, "webhook_secret")
        if not _WEBHOOK_SECRET.match(secret):
            raise ConfigError(
                f"{SECTION}.webhook_secret: expected 1-256 characters of A-Z, a-z, 0-9, '_' and '-' "
                "(what the Bot API accepts as secret_token)"
            )
        enabled = section.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{SECTION}.enabled: expected true or false")
        return cls(
            bot_token=token, webhook_secret=secret, api_url=_api_url(section.get("api_url", DEFAULT_API_URL)),
            enabled=enabled,
        )  # fmt: skip


def _required_text(section: Mapping[str, Any], key: str) -> str:
    value = section.get(key)
    if value is None:
        raise ConfigError(f"{SECTION}.{key}: required")
    if not isinstance(value, str):
        raise ConfigError(f"{SECTION}.{key}: expected a string")
    text = value.strip()
    if not text:
        raise ConfigError(f"{SECTION}.{key}: must not be empty")
    return text


def _api_url(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{SECTION}.api_url: expected a URL like {DEFAULT_API_URL!r}")
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"{SECTION}.api_url: expected an http(s) URL like {DEFAULT_API_URL!r}, got {value!r}")
    return url
