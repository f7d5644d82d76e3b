"""The Instagram channel: Meta's signed webhooks in, the Instagram messaging API out.

Inbound, the webhook answers 200 only after the core has committed every
message of the POST (Meta retries anything else, and the core drops the
resulting duplicates by ``mid``). Outbound, the reply window is decided here,
before any request: free text inside 24 hours of the customer's last message,
the ``HUMAN_AGENT`` tag up to 7 days, and nothing at all after that, so that
no message is ever sent blindly.
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
    webhook_app,
)
from carebridge_meta import read_signed_json, signed_body, verify_subscription

from .api import MAX_TEXT, GraphClient, split_message
from .config import SCHEMA, InstagramConfig
from .webhook import CHANNEL, PayloadError, is_instagram_event, parse_events

#: Free text is allowed this long after the customer's last message.
STANDARD_WINDOW = 24 * 3600.0
#: The ``HUMAN_AGENT`` tag extends an agent's replies to this long.
HUMAN_AGENT_WINDOW = 7 * 24 * 3600.0
RESPONSE: Mapping[str, str] = MappingProxyType({"messaging_type": "RESPONSE"})
HUMAN_AGENT: Mapping[str, str] = MappingProxyType({"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"})


class InstagramChannel(Channel):
    """Instagram Direct messages of one professional account."""

    name: ClassVar[str] = CHANNEL
    label: ClassVar[str] = "Instagram"
    max_text_length: ClassVar[int | None] = MAX_TEXT
    reply_window: ClassVar[float | None] = STANDARD_WINDOW
    schema: ClassVar[ChannelSchema | None] = SCHEMA  # check_config validates with it

    def __init__(self, config: Mapping[str, Any], ctx: ChannelContext) -> None:
        super().__init__(config, ctx)
        self.settings = InstagramConfig.from_section(config)
        settings = self.settings
        self.client = GraphClient(ctx.http, settings.graph_url, settings.ig_user_id, settings.access_token)
        # Split sends resume after their last accepted part when the outbox retries.
        self._partial = SentParts()

    @classmethod
    def normalize_address(cls, address: str) -> str:
        """Return an Instagram-scoped id (IGSID) as digits only.

        :raises ValueError: when ``address`` is not an IGSID.
        """
        igsid = address.strip()
        if not (igsid.isascii() and igsid.isdigit()):
            raise ValueError(f"not an Instagram-scoped id (digits only): {address!r}")
        return igsid

    async def start(self) -> None:
        """Nothing to connect: Meta calls us, and the token is checked by the first send."""
        self.ctx.report(ChannelState.CONNECTED, None)

    # -- outbound ---------------------------------------------------------

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        """Send ``message.text`` to an IGSID, split in order when longer than Instagram allows.

        Parts keep to 1000 characters and 1000 UTF-8 bytes. Instagram has no
        re-engagement templates: a delivery asking for one is refused before
        any request. When Meta answers a ``RESPONSE`` with "outside of allowed
        window" (its clock and ours disagree), the part is sent once more with
        the ``HUMAN_AGENT`` tag. ``reply_to`` is not sent: quoting a message is
        not part of the documented send contract.

        :raises WindowClosedError: the customer last wrote over 7 days ago (or
            never), or a template was asked for; raised before any request.
        :raises ChannelAuthFailed: Meta refused the access token (code 190).
        :raises DeliveryError: ``retryable`` per Meta's error code.
        """
        if message.template:
            raise WindowClosedError(
                "Instagram has no re-engagement templates: the customer must write to the account first",
                code="no_template",
            )
        window = self._window(message.last_inbound_at, time.time())
        if not message.text.strip():
            raise DeliveryError("nothing to send: the message text is empty", retryable=False, code="empty")
        parts = split_message(message.text)
        done = self._partial.accepted(message.delivery_id, message.text)
        try:
            for part in parts[len(done) :]:
                body: dict[str, Any] = {"recipient": {"id": message.recipient}, "message": {"text": part}, **window}
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
                    "Instagram refused the access token (code %s): renew channels.instagram.access_token", err.code
                )
                self.ctx.report(ChannelState.BAD_CREDENTIALS, "access token refused by Meta (code 190)")
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
            raise WindowClosedError("the recipient has never written to the account on Instagram", code="window_closed")
        age = now - last_inbound_at
        if age < STANDARD_WINDOW:
            return RESPONSE
        if age < HUMAN_AGENT_WINDOW:
            return HUMAN_AGENT
        raise WindowClosedError(
            "the recipient last wrote more than 7 days ago; Instagram allows no reply", code="window_closed"
        )

    # -- inbound ----------------------------------------------------------

    def web_app(self) -> web.Application:
        """Return the webhook app; the core mounts it at ``/webhooks/instagram``."""
        return webhook_app(self.ctx.max_body, receive=self._receive, verify=self._verify)

    async def _verify(self, request: web.Request) -> web.Response:
        return verify_subscription(request, self.settings.verify_token)

    async def _receive(self, request: web.Request) -> web.Response:
        payload = await read_signed_json(request, self.settings.app_secret)
        if not is_instagram_event(payload):
            # Signed by Meta for our app, but not an Instagram event: a 4xx would
            # only make Meta retry it, so acknowledge and drop it.
            self.ctx.log.info("ignored webhook for object %r", str(payload.get("object"))[:40])
            return web.json_response({"status": "ignored"})
        try:
            batch = parse_events(payload, ig_user_id=self.settings.ig_user_id, now=time.time())
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
        :raises BridgeError: when ``sender`` is not an IGSID (the CLI prints it).
        """
        settings = InstagramConfig.from_section(section)
        try:
            igsid = cls.normalize_address(sender)
        except ValueError as err:
            raise BridgeError(f"--from: {err}") from err
        now_ms = int(time.time() * 1000)
        payload = {
            "object": "instagram",
            "entry": [
                {
                    "id": settings.ig_user_id,
                    "time": now_ms,
                    "messaging": [
                        {
                            "sender": {"id": igsid},
                            "recipient": {"id": settings.ig_user_id},
                            "timestamp": now_ms,
                            "message": {"mid": f"aWdf_simulated_{secrets.token_hex(16)}", "text": text},
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
    # Echoes arrive for every message the account sends: routine, not news.
    echoes = counts.pop("echo", 0)
    if echoes:
        log.debug("ignored %d echo(es) of the account's own messages", echoes)
    if counts:
        log.info("ignored Instagram events: %s", ", ".join(f"{kind} x{n}" for kind, n in sorted(counts.items())))
