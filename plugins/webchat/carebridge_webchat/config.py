"""The ``[channels.webchat]`` section, validated into a typed config.

The website chat needs no secret and no platform account: the section may be
empty, and ``carebridge init`` writes it enabled. What an operator tunes is
who may embed the chat (``allowed_origins``), how long a customer message may
be (``max_text``) and how fast one client or one chat may write (the rates,
in the ``N/minute`` notation of the ``limits`` library).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from limits import RateLimitItem, parse

from bridge import ConfigError, check_section_keys

SECTION = "channels.webchat"
DEFAULT_TITLE = "Chat with us"
DEFAULT_MAX_TEXT = 2000
#: The longest text a customer may send in one message, whatever ``max_text`` says.
MAX_TEXT_CEILING = 20000
DEFAULT_RATES = {
    "session_rate": "10/minute",  # new chats one client address may open
    "client_rate": "60/minute",  # messages one client address may send, all chats together
    "address_rate": "20/minute",  # messages one chat may send
}
_KNOWN = frozenset({"enabled", "allowed_origins", "max_text", "title", *DEFAULT_RATES})


@dataclass(frozen=True, slots=True)
class WebchatConfig:
    """Settings of the website chat.

    :param allowed_origins: sites (``https://www.example.org``) whose pages may
        embed the widget and call the chat's routes from the browser (CORS);
        the bridge's own origin always may.
    :param max_text: the longest customer message, in characters.
    :param title: the heading of the customer page.
    :param session_rate: new chats per client address.
    :param client_rate: messages per client address.
    :param address_rate: messages per chat.
    """

    allowed_origins: tuple[str, ...] = ()
    max_text: int = DEFAULT_MAX_TEXT
    title: str = DEFAULT_TITLE
    session_rate: RateLimitItem = parse(DEFAULT_RATES["session_rate"])
    client_rate: RateLimitItem = parse(DEFAULT_RATES["client_rate"])
    address_rate: RateLimitItem = parse(DEFAULT_RATES["address_rate"])
    enabled: bool = True

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> WebchatConfig:
        """Validate a raw ``[channels.webchat]`` section.

        :raises ConfigError: naming ``channels.webchat.<key>`` and what is wrong.
        """
        check_section_keys(SECTION, section, _KNOWN)
        enabled = section.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{SECTION}.enabled: expected true or false")
        return cls(
            allowed_origins=_origins(section.get("allowed_origins", [])),
            max_text=_max_text(section.get("max_text", DEFAULT_MAX_TEXT)),
            title=_title(section.get("title", DEFAULT_TITLE)),
            session_rate=_rate(section, "session_rate"),
            client_rate=_rate(section, "client_rate"),
            address_rate=_rate(section, "address_rate"),
            enabled=enabled,
        )


def normalize_origin(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case, or None when ``value`` is no web origin."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def _origins(value: object) -> tuple[str, ...]:
    key = f"{SECTION}.allowed_origins"
    if not isinstance(value, list):
        raise ConfigError(f'{key}: expected a list of origins like ["https://www.example.org"]')
    origins: list[str] = []
    for index, item in enumerate(value):
        origin = normalize_origin(item) if isinstance(item, str) else None
        if origin is None:
            raise ConfigError(
                f'{key}[{index}]: expected an origin, scheme://host[:port] with no path, like "https://www.example.org"'
            )
        origins.append(origin)
    return tuple(dict.fromkeys(origins))


def _max_text(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TEXT_CEILING:
        raise ConfigError(f"{SECTION}.max_text: expected a number of characters from 1 to {MAX_TEXT_CEILING}")
    return value


def _title(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 100:
        raise ConfigError(f"{SECTION}.title: expected a text of 1 to 100 characters")
    return value.strip()


def _rate(section: Mapping[str, Any], key: str) -> RateLimitItem:
    value = section.get(key, DEFAULT_RATES[key])
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return parse(value)
    except ValueError:
        raise ConfigError(
            f'{SECTION}.{key}: expected a rate like "{DEFAULT_RATES[key]}" (N/second, N/minute, N/hour, N/day)'
        ) from None
