"""The Messenger channel: Meta's signed webhooks in, the Send API out.

The webhook, the reply window and the resumable split sends are Meta's and
shared with Instagram (``carebridge_meta.MessagingChannel``). What is
Messenger's: one Page, PSIDs as addresses, texts of up to 2000 characters
split at word boundaries, and the ``metadata`` on every part, whose echo
names the delivery (its last part names it alone), so that an answer lost
after Meta took the message is settled by that echo.
"""

from __future__ import annotations

from typing import Any, ClassVar

from bridge import ChannelSchema
from carebridge_meta import MessagingChannel, MessagingConfig, MessagingParser, SendApiClient

from .api import MAX_TEXT, GraphClient
from .config import SCHEMA, MessengerConfig
from .webhook import CHANNEL, PageParser, send_metadata


class MessengerChannel(MessagingChannel):
    """Facebook Messenger for one Page.

    When Meta answers a ``RESPONSE`` with "outside of allowed window"
    (10/2018278), the part is sent once more with the ``HUMAN_AGENT`` tag, as
    PROTOCOLS §1.6 prescribes for human replies.
    """

    name: ClassVar[str] = CHANNEL
    label: ClassVar[str] = "Messenger"
    max_text_length: ClassVar[int | None] = MAX_TEXT
    schema: ClassVar[ChannelSchema | None] = SCHEMA  # check_config validates with it
    config_type: ClassVar[type[MessagingConfig]] = MessengerConfig
    client_type: ClassVar[type[SendApiClient]] = GraphClient
    parser_type: ClassVar[type[MessagingParser]] = PageParser
    account_noun: ClassVar[str] = "Page"
    token_noun: ClassVar[str] = "Page access token"
    address_noun: ClassVar[str] = "a Messenger PSID"

    def message_part(self, text: str, delivery_id: int, part: int, parts: int) -> dict[str, Any]:
        """The part's text with the ``metadata`` its echo brings back (``send_metadata``)."""
        return {"text": text, "metadata": send_metadata(delivery_id, part, parts)}
