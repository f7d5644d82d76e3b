"""The ``[channels.telegram]`` section, validated into a typed config.

The core hands each plugin its raw section with secrets already resolved
(``env:``/``file:``/``credential:``) and ``enabled`` filled in. The keys are
declared once, in ``SCHEMA``: it checks them (naming the offending key in its
``ConfigError``, never quoting the bot token or the webhook secret), tells
the daemon which values to mask in its logs, and gives ``carebridge init``
the section it writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge import ChannelSchema, ConfigKey

SECTION = "channels.telegram"
DEFAULT_API_URL = "https://api.telegram.org"

SCHEMA = ChannelSchema(
    "telegram",
    ConfigKey(
        "bot_token",
        required=True,
        secret=True,
        # What @BotFather hands out: the bot's numeric id, a colon, then the secret part.
        pattern=r"[0-9]+:[A-Za-z0-9_-]+",
        invalid="expected the token from @BotFather (digits, ':', then letters)",
        comment="the token from @BotFather",
    ),
    ConfigKey(
        "webhook_secret",
        required=True,
        secret=True,
        # setWebhook's secret_token: "1-256 characters. Only characters A-Z, a-z, 0-9, _ and - are allowed."
        pattern=r"[A-Za-z0-9_-]{1,256}",
        invalid=("expected 1-256 characters of A-Z, a-z, 0-9, '_' and '-' (what the Bot API accepts as secret_token)"),
        comment="1-256 of A-Z a-z 0-9 _ -; register with `carebridge telegram set-webhook`",
    ),
    ConfigKey(
        "api_url", kind="url", default=DEFAULT_API_URL, comment="the Bot API server (or a local telegram-bot-api)"
    ),
    doc="Telegram: a bot's private chats through the Bot API (plugin carebridge-telegram).",
)


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
        """Validate a raw ``[channels.telegram]`` section (see ``SCHEMA``).

        :raises ConfigError: naming ``channels.telegram.<key>`` and what is wrong.
        """
        return cls(**SCHEMA.validate(section))
