"""The website chat channel: the first channel whose data never leaves the operator's server.

Customers write on a page the bridge serves itself (``/chat``, or framed on
the company's own site by ``widget.js``). Their messages go up by POST and
through the same ingest, routing, relay, outbox and rules as every other
channel's, so a webchat customer can be answered from an agent's WhatsApp
and a WhatsApp customer from the console. What the core delivers to a chat
(an agent's reply, a notice) reaches ``send()``, which wakes that
customer's open event streams; with none open it is still delivered: it is
in the history the page shows when it next connects.

Addresses are ``webchat:<32 hex digits>``, a one-way hash of the token the
customer's browser keeps (``tokens``). There is no reply window and no
re-engagement template: a chat can be written to as long as it exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from aiohttp import web

from bridge import (
    Channel,
    ChannelContext,
    ChannelState,
    DeliveryError,
    DeliveryReceipt,
    OutboundMessage,
    PageHandler,
)

from .config import WebchatConfig
from .routes import CHANNEL, ChatRoutes
from .streams import StreamHub
from .tokens import is_address


class WebchatChannel(Channel):
    """Customers on the bridge's own chat page."""

    name: ClassVar[str] = CHANNEL
    label: ClassVar[str] = "Web chat"
    max_text_length: ClassVar[int | None] = None
    reply_window: ClassVar[float | None] = None

    def __init__(self, config: Mapping[str, Any], ctx: ChannelContext) -> None:
        super().__init__(config, ctx)
        self.settings = WebchatConfig.from_section(config)
        self.hub = StreamHub()
        self.routes = ChatRoutes(self.settings, ctx, self.hub)

    @classmethod
    def check_config(cls, section: Mapping[str, Any]) -> None:
        """Validate ``[channels.webchat]``; raise ``ConfigError`` naming the key."""
        WebchatConfig.from_section(section)

    @classmethod
    def normalize_address(cls, address: str) -> str:
        """Return a chat's address id (32 hex digits, lower case).

        :raises ValueError: for anything else (a token is never an address).
        """
        text = address.strip().lower()
        if not is_address(text):
            raise ValueError("not a website chat address (32 hex digits)")
        return text

    async def start(self) -> None:
        """Nothing to connect to: the chat is served by the bridge itself."""
        self.ctx.report(ChannelState.CONNECTED, None)

    async def stop(self) -> None:
        """End the open streams and forget the rate-limit windows."""
        self.hub.close_all()
        await self.routes.close()

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        """Deliver to a chat: wake its open streams, which show the stored message.

        :raises DeliveryError: (permanent) for a recipient that is no chat
            address, or a re-engagement template (a chat has no window).
        """
        if message.template:
            raise DeliveryError("the website chat has no re-engagement templates", retryable=False, code="no_template")
        try:
            address = self.normalize_address(message.recipient)
        except ValueError:
            raise DeliveryError("the recipient is not a chat address", retryable=False, code="bad_recipient") from None
        self.hub.wake(address)
        return DeliveryReceipt((f"wc-{uuid.uuid4().hex}",))

    def web_app(self) -> web.Application:
        """``/webhooks/webchat``: session, messages, events, widget and the page's files."""
        return self.routes.app()

    def pages(self) -> Mapping[str, PageHandler]:
        """``/chat``: the customer page."""
        return {"/chat": self.routes.page}
