"""The Instagram channel: Meta's signed webhooks in, the Instagram messaging API out.

The webhook, the reply window and the resumable split sends are Meta's and
shared with Messenger (``carebridge_meta.MessagingChannel``). What is
Instagram's: one professional account, Instagram-scoped ids (IGSIDs) as
addresses, and parts that keep to both 1000 characters and 1000 UTF-8 bytes.
"""

from __future__ import annotations

from typing import ClassVar

from bridge import ChannelSchema
from carebridge_meta import MessagingChannel, MessagingConfig, MessagingParser, SendApiClient

from .api import MAX_TEXT, GraphClient, split_message
from .config import SCHEMA, InstagramConfig
from .webhook import CHANNEL, InstagramParser


class InstagramChannel(MessagingChannel):
    """Instagram Direct messages of one professional account.

    When Meta answers a ``RESPONSE`` with "outside of allowed window"
    (10/2534022), the part is sent once more with the ``HUMAN_AGENT`` tag.
    """

    name: ClassVar[str] = CHANNEL
    label: ClassVar[str] = "Instagram"
    max_text_length: ClassVar[int | None] = MAX_TEXT
    schema: ClassVar[ChannelSchema | None] = SCHEMA  # check_config validates with it
    config_type: ClassVar[type[MessagingConfig]] = InstagramConfig
    client_type: ClassVar[type[SendApiClient]] = GraphClient
    parser_type: ClassVar[type[MessagingParser]] = InstagramParser
    account_noun: ClassVar[str] = "account"
    token_noun: ClassVar[str] = "access token"
    address_noun: ClassVar[str] = "an Instagram-scoped id"

    def split(self, text: str) -> list[str]:
        """Cut in order into parts of at most 1000 characters and 1000 UTF-8 bytes (``split_message``)."""
        return split_message(text)
