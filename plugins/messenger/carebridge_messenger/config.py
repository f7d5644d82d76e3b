"""The ``[channels.messenger]`` section, validated into a typed config.

The core hands each plugin its raw section with secrets already resolved
(``env:``/``file:``/``credential:``) and ``enabled`` filled in. The keys are
declared once, in ``SCHEMA``: it checks them and names the offending key in
its ``ConfigError``, and tells the daemon which values to mask in its logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge import ChannelSchema, ConfigKey

SECTION = "channels.messenger"
DEFAULT_GRAPH_URL = "https://graph.facebook.com/v25.0"

SCHEMA = ChannelSchema(
    "messenger",
    # Ids and tokens may be written as bare numbers in TOML; each is read as text.
    ConfigKey(
        "page_id",
        kind="id",
        required=True,
        pattern=r"[0-9]+",
        invalid="expected the Page's numeric id",
        comment="the Facebook Page's numeric id",
    ),
    ConfigKey("page_access_token", kind="id", required=True, secret=True, comment="the Page access token"),
    ConfigKey("app_secret", kind="id", required=True, secret=True, comment="the app secret that signs webhooks"),
    ConfigKey("verify_token", kind="id", required=True, secret=True, comment="the token typed in the App Dashboard"),
    ConfigKey("graph_url", kind="url", default=DEFAULT_GRAPH_URL, comment="the Graph API base including its version"),
    doc="Facebook Messenger through Meta's Graph API (plugin carebridge-messenger).",
)


@dataclass(frozen=True, slots=True)
class MessengerConfig:
    """Settings of the Messenger channel.

    :param page_id: the Facebook Page's numeric id; sends go to ``{graph_url}/{page_id}/messages``.
    :param page_access_token: the Page token (sent as the ``access_token`` query parameter; never logged).
    :param app_secret: the app secret that signs webhook POSTs (``X-Hub-Signature-256``).
    :param verify_token: the token typed in the App Dashboard for the ``hub.*`` handshake.
    :param graph_url: the Graph API base including its version.
    """

    page_id: str
    page_access_token: str
    app_secret: str
    verify_token: str
    graph_url: str = DEFAULT_GRAPH_URL
    enabled: bool = True

    def __repr__(self) -> str:
        # Keep secrets out of tracebacks and debug logs.
        return f"MessengerConfig(page_id={self.page_id!r}, graph_url={self.graph_url!r}, enabled={self.enabled!r})"

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> MessengerConfig:
        """Validate a raw ``[channels.messenger]`` section (see ``SCHEMA``).

        :raises ConfigError: naming ``channels.messenger.<key>`` and what is wrong.
        """
        return cls(**SCHEMA.validate(section))
