"""The ``[channels.instagram]`` section, validated into a typed config.

The core hands each plugin its raw section with secrets already resolved
(``env:``/``file:``/``credential:``) and ``enabled`` filled in. The keys are
declared once, in ``SCHEMA``: it checks them and names the offending key in
its ``ConfigError`` (secret values are never quoted back: a mistyped token
must not end up in a log or a terminal scroll-back), tells the daemon which
values to mask in its logs, and gives ``carebridge init`` the section it writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge import ChannelSchema, ConfigKey

SECTION = "channels.instagram"
#: The Instagram API with Instagram Login is served from graph.instagram.com (README, "Facts").
DEFAULT_GRAPH_URL = "https://graph.instagram.com/v25.0"

SCHEMA = ChannelSchema(
    "instagram",
    # Ids and tokens may be written as bare numbers in TOML; each is read as text.
    ConfigKey(
        "ig_user_id",
        kind="id",
        required=True,
        pattern=r"[0-9]+",
        invalid="expected the account's numeric id",
        comment="the Instagram professional account's id",
    ),
    ConfigKey("access_token", kind="id", required=True, secret=True, comment="the Instagram User access token"),
    ConfigKey("app_secret", kind="id", required=True, secret=True, comment="the app secret that signs webhooks"),
    ConfigKey("verify_token", kind="id", required=True, secret=True, comment="the token typed in the App Dashboard"),
    ConfigKey("graph_url", kind="url", default=DEFAULT_GRAPH_URL, comment="the API base including its version"),
    doc="Instagram messaging through Meta's Graph API (plugin carebridge-instagram).",
)


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
        """Validate a raw ``[channels.instagram]`` section (see ``SCHEMA``).

        :raises ConfigError: naming ``channels.instagram.<key>`` and what is wrong.
        """
        return cls(**SCHEMA.validate(section))
