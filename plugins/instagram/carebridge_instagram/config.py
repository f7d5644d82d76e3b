"""The ``[channels.instagram]`` section, validated into a typed config.

The core hands each plugin its raw section with secrets already resolved
(``env:``/``file:``/``credential:``) and ``enabled`` filled in. The keys are
declared once, in ``SCHEMA`` (the shape every Meta messaging section shares,
``carebridge_meta.messaging_schema``): it checks them and names the
offending key in its ``ConfigError`` (secret values are never quoted back: a
mistyped token must not end up in a log or a terminal scroll-back), tells
the daemon which values to mask in its logs, and gives ``carebridge init``
the section it writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from bridge import ChannelSchema
from carebridge_meta import MessagingConfig, messaging_schema

SECTION = "channels.instagram"
#: The Instagram API with Instagram Login is served from graph.instagram.com (README, "Facts").
DEFAULT_GRAPH_URL = "https://graph.instagram.com/v25.0"

SCHEMA = messaging_schema(
    "instagram",
    account_key="ig_user_id",
    account="the Instagram professional account's id",
    account_expected="expected the account's numeric id",
    token_key="access_token",
    token="the Instagram User access token",
    graph_url=DEFAULT_GRAPH_URL,
    graph_url_comment="the API base including its version",
    doc="Instagram messaging through Meta's Graph API (plugin carebridge-instagram).",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class InstagramConfig(MessagingConfig):
    """Settings of the Instagram channel (and those of ``MessagingConfig``).

    :param ig_user_id: the Instagram professional account's id (``user_id`` of
        ``GET /me``); webhooks carry it as ``entry[].id`` and sends go to
        ``{graph_url}/{ig_user_id}/messages``.
    :param access_token: the Instagram User access token (an ``Authorization: Bearer`` header; never logged).
    """

    schema: ClassVar[ChannelSchema] = SCHEMA
    account_key: ClassVar[str] = "ig_user_id"
    token_key: ClassVar[str] = "access_token"

    ig_user_id: str
    access_token: str = field(repr=False)
    graph_url: str = DEFAULT_GRAPH_URL
