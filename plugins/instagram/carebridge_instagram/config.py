"""The ``[channels.instagram]`` section, validated into a typed config.

The core hands each plugin its raw section with secrets already resolved
(``env:``/``file:``/``credential:``) and ``enabled`` filled in; this module
checks every key and names the offending one in its ``ConfigError``. Secret
values are never quoted back in an error: a mistyped token must not end up in
a log or a terminal scroll-back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bridge import ConfigError

SECTION = "channels.instagram"
#: The Instagram API with Instagram Login is served from graph.instagram.com (README, "Facts").
DEFAULT_GRAPH_URL = "https://graph.instagram.com/v25.0"
_REQUIRED = ("ig_user_id", "access_token", "app_secret", "verify_token")
_KNOWN = frozenset({"enabled", "graph_url", *_REQUIRED})


@dataclass(frozen=True, slots=True)
class InstagramConfig:
    """Settings of the Instagram channel.

    :param ig_user_id: the Instagram professional account's id (``user_id`` of
        ``GET /me``); webhooks carry it as ``entry[].id`` and sends go to
        ``{graph_url}/{ig_user_id}/messages``.
    :param access_token: the Instagram User access token (an ``Authorization: Bearer`` header; never logged).
    :param app_secret: the app secret that signs webhook POSTs (``X-Hub-Signature-256``).
    :param verify_token: the token typed in the App Dashboard for the ``hub.*`` handshake.
    :param graph_url: the API base including its version.
    """

    ig_user_id: str
    access_token: str
    app_secret: str
    verify_token: str
    graph_url: str = DEFAULT_GRAPH_URL
    enabled: bool = True

    def __repr__(self) -> str:
        # Keep secrets out of tracebacks and debug logs.
        return (
            f"InstagramConfig(ig_user_id={self.ig_user_id!r}, graph_url={self.graph_url!r}, enabled={self.enabled!r})"
        )

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> InstagramConfig:
        """Validate a raw ``[channels.instagram]`` section.

        :raises ConfigError: naming ``channels.instagram.<key>`` and what is wrong.
        """
        if not isinstance(section, Mapping):
            raise ConfigError(f"{SECTION}: expected a table")
        unknown = sorted(set(section) - _KNOWN)
        if unknown:
            raise ConfigError(f"{SECTION}.{unknown[0]}: unknown key (expected one of {', '.join(sorted(_KNOWN))})")
        values = {key: _required_text(section, key) for key in _REQUIRED}
        if not values["ig_user_id"].isdigit():
            raise ConfigError(f"{SECTION}.ig_user_id: expected the account's numeric id, got {values['ig_user_id']!r}")
        enabled = section.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{SECTION}.enabled: expected true or false")
        return cls(
            ig_user_id=values["ig_user_id"],
            access_token=values["access_token"],
            app_secret=values["app_secret"],
            verify_token=values["verify_token"],
            graph_url=_graph_url(section.get("graph_url", DEFAULT_GRAPH_URL)),
            enabled=enabled,
        )


def _required_text(section: Mapping[str, Any], key: str) -> str:
    value = section.get(key)
    if value is None:
        raise ConfigError(f"{SECTION}.{key}: required")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"{SECTION}.{key}: expected a string")
    text = str(value).strip()
    if not text:
        raise ConfigError(f"{SECTION}.{key}: must not be empty")
    return text


def _graph_url(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{SECTION}.graph_url: expected a URL like {DEFAULT_GRAPH_URL!r}")
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"{SECTION}.graph_url: expected an http(s) URL like {DEFAULT_GRAPH_URL!r}, got {value!r}")
    return url
