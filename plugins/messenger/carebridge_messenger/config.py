"""The ``[channels.messenger]`` section, validated into a typed config.

The core hands each plugin its raw section with secrets already resolved
(``env:``/``file:``/``credential:``) and ``enabled`` filled in. The keys are
declared once, in ``SCHEMA`` (the shape every Meta messaging section shares,
``carebridge_meta.messaging_schema``): it checks them and names the
offending key in its ``ConfigError``, and tells the daemon which values to
mask in its logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from bridge import ChannelSchema
from carebridge_meta import MessagingConfig, messaging_schema

SECTION = "channels.messenger"
DEFAULT_GRAPH_URL = "https://graph.facebook.com/v25.0"

SCHEMA = messaging_schema(
    "messenger",
    account_key="page_id",
    account="the Facebook Page's numeric id",
    account_expected="expected the Page's numeric id",
    token_key="page_access_token",
    token="the Page access token",
    graph_url=DEFAULT_GRAPH_URL,
    graph_url_comment="the Graph API base including its version",
    doc="Facebook Messenger through Meta's Graph API (plugin carebridge-messenger).",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessengerConfig(MessagingConfig):
    """Settings of the Messenger channel (and those of ``MessagingConfig``).

    :param page_id: the Facebook Page's numeric id; sends go to ``{graph_url}/{page_id}/messages``.
    :param page_access_token: the Page token (sent as the ``access_token`` query parameter; never logged).
    """

    schema: ClassVar[ChannelSchema] = SCHEMA
    account_key: ClassVar[str] = "page_id"
    token_key: ClassVar[str] = "page_access_token"

    page_id: str
    page_access_token: str = field(repr=False)
    graph_url: str = DEFAULT_GRAPH_URL
