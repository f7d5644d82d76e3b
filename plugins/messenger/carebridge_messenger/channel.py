"""The Messenger channel: Meta's signed webhooks in, the Send API out.

Inbound, the webhook answers 200 only after the core has committed every
message of the POST (Meta retries anything else for up to 36 hours, and the
core drops the resulting duplicates by ``mid``). Outbound, the reply window
is decided here, before any request: free text inside 24 hours of the
customer's last message, the ``HUMAN_AGENT`` tag up to 7 days, and nothing at
all after that, so that no message is ever sent blindly.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from aiohttp import web

from bridge import (
    BridgeError,
    Channel,
    ChannelAuthFailed,
    ChannelContext,
    ChannelSchema,
    ChannelState,
    DeliveryError,
    DeliveryReceipt,
    OutboundMessage,
    SentParts,
    SimulatedRequest,
    WindowClosedError,
    hand_over,
    json_error,
    split_text,
    webhook_app,
)
from carebridge_meta import read_signed_json, signed_body, verify_subscription

from .api import MAX_TEXT, GraphClient
from .config import SCHEMA, MessengerConfig
from .webhook import CHANNEL, PayloadError, is_page_event, parse_events, send_metadata

#: Free text is allowed this long after the customer's last message.
STANDARD_WINDOW = 24 * 3600.0
#: The ``HUMAN_AGENT`` tag extends an agent's replies to this long.
HUMAN_AGENT_WINDOW = 7 * 24 * 3600.0
RESPONSE: Mapping[str, str] = MappingProxyType({"messaging_type": "RESPONSE"})
HUMAN_AGENT: Mapping[str, str] = MappingProxyType({"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"})


class MessengerChannel(Channel):
    """Facebook Messenger for one Page."""

    name: ClassVar[str] = CHANNEL
    label: ClassVar[str] = "Messenger"
    max_text_length: ClassVar[int | None] = MAX_TEXT
    reply_window: ClassVar[float | None] = STANDARD_WINDOW
    schema: ClassVar[ChannelSchema | None] = SCHEMA  # check_config validates with it

    def __init__(self, config: Mapping[str, Any], ctx: ChannelContext) -> None:
        super().__init__(config, ctx)
        self.settings = MessengerConfig.from_section(config)
        settings = self.settings
        self.client = GraphClient(ctx.http, settings.graph_url, settings.page_id, settings.page_access_token)
        # Split sends resume after their last accepted part when the outbox retries.
        self._partial = SentParts()

    @classmethod
    def normalize_address(cls, address: str) -> str:
        """Return a PSID as digits only.

        :raises ValueError: when ``address`` is not a Page-scoped id.
        """
        psid = address.strip()
        if not psid.isdigit():
            raise ValueError(f"not a Messenger PSID (digits only): {address!r}")
        return psid

    async def start(self) -> None:
        """Nothing to connect: Meta calls us, and the token is checked by the first send."""
        self.ctx.report(ChannelState.CONNECTED, None)

    # -- outbound ---------------------------------------------------------

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        """Send ``message.text`` to a PSID, split at word boundaries when longer than 2000.

        Messenger's Send API documents no quoting parameter, so ``reply_to``
        is not sent. Messenger has no re-engagement templates: a delivery
        asking for one is refused before any request (it would otherwise
        reach the customer as the core's placeholder text). When Meta answers
        a ``RESPONSE`` with "outside of allowed window" (10/2018278, its clock
        and ours disagree), the part is sent once more with the
        ``HUMAN_AGENT`` tag, as PROTOCOLS §1.6 prescribes for human replies.

        :raises WindowClosedError: the customer last wrote over 7 days ago (or
            never), or a template was asked for; raised before any request.
        :raises ChannelAuthFailed: Meta refused the Page token (code 190).
        :raises DeliveryUncertain: a part was sent in full and its answer lost;
            the echo of the last part (``metadata`` naming the delivery) settles it.
        :raises DeliveryError: ``retryable`` per Meta's error code.
        """
        if message.template:
            raise WindowClosedError(
                "Messenger has no re-engagement templates: the customer must write to the Page first",
                code="no_template",
            )
        window = self._window(message.last_inbound_at, time.time())
        if not message.text.strip():
            raise DeliveryError("nothing to send: the message text is empty", retryable=False, code="empty")
        parts = split_text(message.text, MAX_TEXT)
        done = self._partial.accepted(message.delivery_id, message.text)
        try:
            for number in range(len(done), len(parts)):
                metadata = send_metadata(message.delivery_id, number, len(parts))
                body: dict[str, Any] = {
                    "recipient": {"id": message.recipient},
                    "message": {"text": parts[number], "metadata": metadata},
                    **window,
                }
                try:
                    done.append(await self.client.send_message(body))
                except WindowClosedError:
                    if window != RESPONSE:
                        raise
                    window = HUMAN_AGENT
                    done.append(await self.client.send_message({**body, **window}))
        except DeliveryError as err:
            if isinstance(err, ChannelAuthFailed):
                self.ctx.log.error(
                    "Messenger refused the Page access token (code %s): renew channels.messenger.page_access_token",
                    err.code,
                )
                self.ctx.report(ChannelState.BAD_CREDENTIALS, "Page access token refused by Meta (code 190)")
            if not err.retryable:
                self._partial.finish(message.delivery_id)
            raise
        self._partial.finish(message.delivery_id)
        return DeliveryReceipt(tuple(done))

    async def mark_read(self, sender: str, external_id: str) -> None:
        """Show ``sender`` that their messages were seen (sender action ``mark_seen``)."""
        await self.client.post({"recipient": {"id": sender}, "sender_action": "mark_seen"})

    @staticmethod
    def _window(last_inbound_at: float | None, now: float) -> Mapping[str, str]:
        if last_inbound_at is None:
            raise WindowClosedError("the recipient has never written to the Page on Messenger", code="window_closed")
        age = now - last_inbound_at
        if age < STANDARD_WINDOW:
            return RESPONSE
        if age < HUMAN_AGENT_WINDOW:
            return HUMAN_AGENT
        raise WindowClosedError(
            "the recipient last wrote more than 7 days ago; Messenger allows no reply", code="window_closed"
        )

    # -- inbound ----------------------------------------------------------

    def web_app(self) -> web.Application:
        """Return the webhook app; the core mounts it at ``/webhooks/messenger``."""
        return webhook_app(self.ctx.max_body, receive=self._receive, verify=self._verify)

    async def _verify(self, request: web.Request) -> web.Response:
        return verify_subscription(request, self.settings.verify_token)

    async def _receive(self, request: web.Request) -> web.Response:
        payload = await read_signed_json(request, self.settings.app_secret)
        if not is_page_event(payload):
            # Signed by Meta for our app, but not a Page event: a 4xx would only
            # make Meta retry it for 36 hours, so acknowledge and drop it.
            self.ctx.log.info("ignored webhook for object %r", str(payload.get("object"))[:40])
            return web.json_response({"status": "ignored"})
        try:
            batch = parse_events(payload, page_id=self.settings.page_id, now=time.time())
        except PayloadError as err:
            return json_error(400, "malformed_payload", str(err))
        _log_ignored(self.ctx.log, batch.ignored)
        failed = await hand_over(self.ctx, batch.messages, batch.statuses)
        return failed or web.json_response({"status": "ok"})

    # -- simulate ---------------------------------------------------------

    @classmethod
    def simulate(cls, section: Mapping[str, Any], sender: str, text: str) -> SimulatedRequest:
        """Build a text-message webhook from ``sender``, signed as Meta signs it.

        :raises ConfigError: when the section is invalid.
        :raises BridgeError: when ``sender`` is not a PSID (the CLI prints it).
        """
        settings = MessengerConfig.from_section(section)
        try:
            psid = cls.normalize_address(sender)
        except ValueError as err:
            raise BridgeError(f"--from: {err}") from err
        now_ms = int(time.time() * 1000)
        payload = {
            "object": "page",
            "entry": [
                {
                    "id": settings.page_id,
                    "time": now_ms,
                    "messaging": [
                        {
                            "sender": {"id": psid},
                            "recipient": {"id": settings.page_id},
                            "timestamp": now_ms,
                            "message": {"mid": f"m_simulated_{secrets.token_hex(16)}", "text": text},
                        }
                    ],
                }
            ],
        }
        body, headers = signed_body(payload, settings.app_secret)
        return SimulatedRequest(method="POST", path=f"/webhooks/{CHANNEL}", headers=headers, body=body)


def _log_ignored(log: logging.Logger, kinds: list[str]) -> None:
    """Log what a POST carried that was not stored, by kind and count only (never text)."""
    counts = Counter(kinds)
    # Echoes of our own sends arrive for every message we send: routine, not news.
    own = counts.pop("own_echo", 0)
    if own:
        log.debug("ignored %d echo(es) of our own sends", own)
    if counts:
        log.info("ignored Messenger events: %s", ", ".join(f"{kind} x{n}" for kind, n in sorted(counts.items())))
