"""``WhatsAppChannel``: webhooks in, Cloud API sends out, the 24-hour window in between.

The channel knows the platform's mechanics only. Which template to send to
whom when a window is closed, telling the agent and falling back to email are
the core's decisions: the channel raises ``WindowClosedError`` and sends the
configured re-engagement template when asked (``OutboundMessage.template``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from aiohttp import web

from bridge import (
    BridgeError,
    Channel,
    ChannelAuthError,
    ChannelAuthFailed,
    ChannelContext,
    ChannelState,
    ChannelUnavailable,
    DeliveryError,
    DeliveryReceipt,
    OutboundMessage,
    PendingMedia,
    SentParts,
    SimulatedRequest,
    WindowClosedError,
    hand_over,
    json_error,
    split_text,
    webhook_app,
)
from carebridge_meta import read_signed_json, signed_body, verify_subscription

from .address import normalize_e164
from .api import CloudClient
from .config import WhatsAppConfig
from .media import MediaFetcher, message_ref
from .webhook import OBJECT, PayloadError, callback_data, parse_payload


class WhatsAppChannel(Channel):
    """The WhatsApp Business Cloud API as a Carebridge channel."""

    name: ClassVar[str] = "whatsapp"
    label: ClassVar[str] = "WhatsApp"
    max_text_length: ClassVar[int | None] = 4096
    reply_window: ClassVar[float | None] = 24 * 3600

    def __init__(self, config: Mapping[str, Any], ctx: ChannelContext) -> None:
        super().__init__(config, ctx)
        self.settings = WhatsAppConfig.from_section(config)
        self.client = CloudClient(
            ctx.http,
            self.settings.graph_url,
            self.settings.phone_number_id,
            self.settings.access_token,
            self.settings.media_url_allow,
        )
        self.media = MediaFetcher(self.client, ctx.save_media, ctx.log, self.settings.max_media_bytes)
        # Parts of a split text already accepted, by delivery id: a retry after a
        # failure in the middle resumes instead of sending the first parts twice.
        self._sent_parts = SentParts()

    @classmethod
    def check_config(cls, section: Mapping[str, Any]) -> None:
        """Validate ``[channels.whatsapp]``; raises ``ConfigError`` naming the key."""
        WhatsAppConfig.from_section(section)

    @classmethod
    def normalize_address(cls, address: str) -> str:
        """E.164 with ``+`` (``15551234567`` → ``+15551234567``); raises ValueError otherwise."""
        return normalize_e164(address)

    def can_reengage(self) -> bool:
        """True when ``reengage_template`` is configured: it is what reaches a closed window."""
        return bool(self.settings.reengage_template)

    async def start(self) -> None:
        """Check the token and the phone number id with one Graph call.

        :raises ChannelAuthError: the token or the number id is refused.
        :raises ChannelUnavailable: the API cannot be reached now.
        """
        try:
            await self.client.phone_number()
        except DeliveryError as err:
            if err.retryable:
                raise ChannelUnavailable(f"WhatsApp Cloud API unavailable: {err}") from err
            raise ChannelAuthError(f"WhatsApp refused the configured credentials: {err}") from err
        self.ctx.report(ChannelState.CONNECTED, None)

    async def stop(self) -> None:
        """Cancel media downloads still running and wait for them.

        A cancelled download is not lost: the core hands it back to
        ``resume_media`` at the next start.
        """
        await self.media.close()

    async def resume_media(self, pending: Sequence[PendingMedia]) -> None:
        """Schedule the downloads an earlier run left unfinished, as for a fresh webhook.

        Returns at once; media ids older than WhatsApp's 7 days are skipped
        with a log line.
        """
        started = self.media.resume(pending)
        self.ctx.log.info("resuming %d of %d unfetched media file(s)", started, len(pending))

    # -- inbound -------------------------------------------------------------

    def web_app(self) -> web.Application:
        """The webhook sub-app: GET verification, POST signed notifications.

        Mounted at ``/webhooks/whatsapp``; both that path and the one with a
        trailing slash answer, since the callback URL is typed by hand in
        Meta's dashboard.
        """
        return webhook_app(self.ctx.max_body, receive=self._receive, verify=self._verify)

    async def _verify(self, request: web.Request) -> web.Response:
        return verify_subscription(request, self.settings.verify_token)

    async def _receive(self, request: web.Request) -> web.Response:
        payload = await read_signed_json(request, self.settings.app_secret)
        try:
            events = parse_payload(payload, phone_number_id=self.settings.phone_number_id)
        except PayloadError as err:
            return json_error(400, "bad_payload", str(err))
        failed = await hand_over(self.ctx, events.messages, events.statuses)
        if failed is not None:
            return failed
        self.media.schedule(events.messages)
        return web.json_response({"status": "ok"})

    # -- outbound ------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        """Send text (split at 4096 characters) or the re-engagement template.

        :raises WindowClosedError: free text outside the 24-hour window (no API
            call is made), a template asked for but none configured, or 131047.
        :raises ChannelAuthFailed: code 190.
        :raises DeliveryUncertain: a request was sent in full and its answer
            lost; the statuses of the last part (``biz_opaque_callback_data``
            naming the delivery) settle it.
        :raises DeliveryError: retryable for rate limits, 5xx and network.
        """
        to = _wa_id(message.recipient)
        if message.template:
            return DeliveryReceipt((await self._send_template(to, callback_data(message.delivery_id, 0, 1)),))
        if not message.text.strip():
            raise DeliveryError("WhatsApp cannot send an empty text", retryable=False, code="empty_text")
        if message.last_inbound_at is None or time.time() - message.last_inbound_at >= (self.reply_window or 0):
            raise WindowClosedError(
                "the 24-hour WhatsApp window is closed: the recipient has not written in the last 24 hours"
            )
        parts = split_text(message.text, self.max_text_length or 4096)
        done = self._sent_parts.accepted(message.delivery_id, message.text)
        for number, part in enumerate(parts):
            if number < len(done):
                continue
            body: dict[str, Any] = {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": to,
                "type": "text",
                "text": {"body": part, "preview_url": False},
                "biz_opaque_callback_data": callback_data(message.delivery_id, number, len(parts)),
            }
            if message.reply_to and number == 0:
                body["context"] = {"message_id": message.reply_to}
            done.append(_message_id(await self.client.post_message(body)))
        self._sent_parts.finish(message.delivery_id)
        return DeliveryReceipt(tuple(done))

    async def _send_template(self, to: str, callback: str) -> str:
        name = self.settings.reengage_template
        if not name:
            raise WindowClosedError("no re-engagement template configured (channels.whatsapp.reengage_template)")
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "template",
            "template": {"name": name, "language": {"code": self.settings.template_language}},
            "biz_opaque_callback_data": callback,
        }
        return _message_id(await self.client.post_message(body))

    async def mark_read(self, sender: str, external_id: str) -> None:
        """Mark a customer's message (and the earlier ones) read; best effort.

        A failure is logged, not raised: a missing blue tick must never hold up
        a delivery. A refused token also marks the channel degraded.
        """
        body = {"messaging_product": "whatsapp", "status": "read", "message_id": external_id}
        try:
            await self.client.post_message(body)
        except ChannelAuthFailed as err:
            self.ctx.log.error("marking %s read: token refused (code %s)", message_ref(external_id), err.code)
            self.ctx.report(ChannelState.DEGRADED, "access token refused (code 190)")
        except DeliveryError as err:
            self.ctx.log.warning("marking %s read failed: %s", message_ref(external_id), err)

    # -- carebridge simulate -------------------------------------------------

    @classmethod
    def simulate(cls, section: Mapping[str, Any], sender: str, text: str) -> SimulatedRequest:
        """A text webhook from ``sender`` (E.164), signed with the configured app secret.

        :raises ConfigError: when the section is invalid.
        :raises BridgeError: when ``sender`` is not a phone number (the CLI prints it).
        """
        settings = WhatsAppConfig.from_section(section)
        try:
            wa_id = normalize_e164(sender)[1:]
        except ValueError as err:
            raise BridgeError(f"--from: {err}") from err
        payload = {
            "object": OBJECT,
            "entry": [
                {
                    "id": settings.phone_number_id,
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {"phone_number_id": settings.phone_number_id},
                                "contacts": [{"wa_id": wa_id}],
                                "messages": [
                                    {
                                        "from": wa_id,
                                        "id": f"wamid.SIM{uuid.uuid4().hex.upper()}",
                                        "timestamp": str(int(time.time())),
                                        "type": "text",
                                        "text": {"body": text},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
        body, headers = signed_body(payload, settings.app_secret)
        return SimulatedRequest(method="POST", path="/webhooks/whatsapp", headers=headers, body=body)


def _wa_id(address: str) -> str:
    """``+15551234567`` → ``15551234567``: the digits Meta's examples send as ``to``."""
    try:
        return normalize_e164(address)[1:]
    except ValueError as err:
        # The error text reaches logs and the outbox: it must not carry the number itself.
        raise DeliveryError(
            "the recipient is not an E.164 WhatsApp number", retryable=False, code="bad_recipient"
        ) from err


def _message_id(answer: Mapping[str, Any]) -> str:
    messages = answer.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], dict) and messages[0].get("id"):
        return str(messages[0]["id"])
    return ""
