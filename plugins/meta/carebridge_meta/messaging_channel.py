"""The channel Messenger and Instagram share: Meta's signed webhooks in, the Send API out.

Inbound, the webhook answers 200 only after the core has committed every
message of the POST (Meta retries anything else, and the core drops the
resulting duplicates by ``mid``). Outbound, the reply window is decided
here, before any request: free text inside 24 hours of the customer's last
message, the ``HUMAN_AGENT`` tag up to 7 days, and nothing at all after
that, so that no message is ever sent blindly (PROTOCOLS §1.6).

A platform subclasses :class:`MessagingChannel` with its config, its Send
API client, its webhook parser, how it cuts a text into parts and what one
part's ``message`` object holds, and the words its errors use.
"""

from __future__ import annotations

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

from .handshake import verify_subscription
from .messaging import MessagingParser, PayloadError
from .messaging_config import MessagingConfig
from .send_api import TOKEN_CODE, SendApiClient
from .signatures import read_signed_json, signed_body

#: Free text is allowed this long after the customer's last message.
STANDARD_WINDOW = 24 * 3600.0
#: The ``HUMAN_AGENT`` tag extends an agent's replies to this long.
HUMAN_AGENT_WINDOW = 7 * 24 * 3600.0
RESPONSE: Mapping[str, str] = MappingProxyType({"messaging_type": "RESPONSE"})
HUMAN_AGENT: Mapping[str, str] = MappingProxyType({"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"})


class MessagingChannel(Channel):
    """One account on a Meta messaging platform.

    Sends are split into parts (:meth:`split`); a retry after a failed part
    resumes with that part (``SentParts``). There are no re-engagement
    templates: a delivery asking for one is refused before any request (it
    would otherwise reach the customer as the core's placeholder text). When
    Meta answers a ``RESPONSE`` with "outside of allowed window" (its clock
    and ours disagree), the part is sent once more with the ``HUMAN_AGENT``
    tag. ``reply_to`` is not sent: neither Send API documents quoting.

    :cvar config_type: the platform's config (``channels.<name>``).
    :cvar client_type: the platform's Send API client.
    :cvar parser_type: the platform's webhook parser (its ``webhook_object`` is
        what ``simulate`` posts and the webhook accepts).
    :cvar account_noun: what the customer writes to, in errors (``Page``, ``account``).
    :cvar token_noun: the access token's name, in the log and the channel state.
    :cvar address_noun: what ``normalize_address`` accepts, as its error names
        it (``a Messenger PSID``).
    """

    reply_window: ClassVar[float | None] = STANDARD_WINDOW
    config_type: ClassVar[type[MessagingConfig]]
    client_type: ClassVar[type[SendApiClient]]
    parser_type: ClassVar[type[MessagingParser]]
    account_noun: ClassVar[str]
    token_noun: ClassVar[str]
    address_noun: ClassVar[str]

    def __init__(self, config: Mapping[str, Any], ctx: ChannelContext) -> None:
        super().__init__(config, ctx)
        self.settings = settings = self.config_type.from_section(config)
        self.client = self.client_type(ctx.http, settings.graph_url, settings.account_id, settings.token)
        # Split sends resume after their last accepted part when the outbox retries.
        self._partial = SentParts()

    def split(self, text: str) -> list[str]:
        """Cut ``text`` into the parts one message each may carry, in order.

        The default cuts at word boundaries into parts of ``max_text_length`` characters.
        """
        return split_text(text, self.max_text_length) if self.max_text_length else [text]

    def message_part(self, text: str, delivery_id: int, part: int, parts: int) -> dict[str, Any]:
        """Return the Send API ``message`` object of one part (``part`` counts from 0)."""
        return {"text": text}

    @classmethod
    def normalize_address(cls, address: str) -> str:
        """Return an app- or account-scoped user id as ASCII digits only.

        :raises ValueError: when ``address`` is anything else (a name, a phone number).
        """
        scoped = address.strip()
        if not (scoped.isascii() and scoped.isdigit()):
            raise ValueError(f"not {cls.address_noun} (digits only): {address!r}")
        return scoped

    async def start(self) -> None:
        """Nothing to connect: Meta calls us, and the token is checked by the first send."""
        self.ctx.report(ChannelState.CONNECTED, None)

    # -- outbound ---------------------------------------------------------

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        """Send ``message.text`` to the recipient's scoped id, in parts when it is too long for one.

        :raises WindowClosedError: the customer last wrote over 7 days ago (or
            never), or a template was asked for; raised before any request.
        :raises ChannelAuthFailed: Meta refused the access token (code 190).
        :raises DeliveryUncertain: a part was sent in full and its answer lost,
            where the platform's echo settles it (``SendApiClient``).
        :raises DeliveryError: ``retryable`` per Meta's error code.
        """
        label = self.display_label()
        if message.template:
            raise WindowClosedError(
                f"{label} has no re-engagement templates: the customer must write to the {self.account_noun} first",
                code="no_template",
            )
        window = self._window(message.last_inbound_at, time.time())
        if not message.text.strip():
            raise DeliveryError("nothing to send: the message text is empty", retryable=False, code="empty")
        parts = self.split(message.text)
        done = self._partial.accepted(message.delivery_id, message.text)
        try:
            for number in range(len(done), len(parts)):
                body: dict[str, Any] = {
                    "recipient": {"id": message.recipient},
                    "message": self.message_part(parts[number], message.delivery_id, number, len(parts)),
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
                self._token_refused(err)
            if not err.retryable:
                self._partial.finish(message.delivery_id)
            raise
        self._partial.finish(message.delivery_id)
        return DeliveryReceipt(tuple(done))

    async def mark_read(self, sender: str, external_id: str) -> None:
        """Show ``sender`` that their messages were seen (sender action ``mark_seen``)."""
        await self.client.post({"recipient": {"id": sender}, "sender_action": "mark_seen"})

    def _window(self, last_inbound_at: float | None, now: float) -> Mapping[str, str]:
        if last_inbound_at is None:
            raise WindowClosedError(
                f"the recipient has never written to the {self.account_noun} on {self.display_label()}",
                code="window_closed",
            )
        age = now - last_inbound_at
        if age < STANDARD_WINDOW:
            return RESPONSE
        if age < HUMAN_AGENT_WINDOW:
            return HUMAN_AGENT
        raise WindowClosedError(
            f"the recipient last wrote more than 7 days ago; {self.display_label()} allows no reply",
            code="window_closed",
        )

    def _token_refused(self, err: ChannelAuthFailed) -> None:
        """Tell the operator which key to renew (never the token), and stop sending."""
        self.ctx.log.error(
            "%s refused the %s (code %s): renew channels.%s.%s",
            self.display_label(), self.token_noun, err.code, self.name, self.settings.token_key,
        )  # fmt: skip
        self.ctx.report(ChannelState.BAD_CREDENTIALS, f"{self.token_noun} refused by Meta (code {TOKEN_CODE})")

    # -- inbound ----------------------------------------------------------

    def web_app(self) -> web.Application:
        """Return the webhook app; the core mounts it at ``/webhooks/<name>``."""
        return webhook_app(self.ctx.max_body, receive=self._receive, verify=self._verify)

    async def _verify(self, request: web.Request) -> web.Response:
        return verify_subscription(request, self.settings.verify_token)

    async def _receive(self, request: web.Request) -> web.Response:
        payload = await read_signed_json(request, self.settings.app_secret)
        if not self.parser_type.accepts(payload):
            # Signed by Meta for our app, but another object: a 4xx would only
            # make Meta retry it, so acknowledge and drop it.
            self.ctx.log.info("ignored webhook for object %r", str(payload.get("object"))[:40])
            return web.json_response({"status": "ignored"})
        try:
            batch = self.parser_type(self.settings.account_id).parse(payload, now=time.time())
        except PayloadError as err:
            return json_error(400, "malformed_payload", str(err))
        self._log_ignored(batch.ignored)
        failed = await hand_over(self.ctx, batch.messages, batch.statuses)
        return failed or web.json_response({"status": "ok"})

    def _log_ignored(self, kinds: list[str]) -> None:
        """Log what a POST carried that was not stored, by kind and count only (never text)."""
        log = self.ctx.log
        counts = Counter(kinds)
        # Echoes arrive for every message we send: routine, not news.
        echoes = counts.pop(self.parser_type.echo_kind, 0)
        if echoes:
            log.debug("ignored %d echo(es) of the %s's own messages", echoes, self.account_noun)
        if counts:
            log.info(
                "ignored %s events: %s",
                self.display_label(),
                ", ".join(f"{kind} x{n}" for kind, n in sorted(counts.items())),
            )

    # -- simulate ---------------------------------------------------------

    @classmethod
    def simulate(cls, section: Mapping[str, Any], sender: str, text: str) -> SimulatedRequest:
        """Build a text-message webhook from ``sender``, signed as Meta signs it.

        :raises ConfigError: when the section is invalid.
        :raises BridgeError: when ``sender`` is not a scoped user id (the CLI prints it).
        """
        settings = cls.config_type.from_section(section)
        try:
            scoped = cls.normalize_address(sender)
        except ValueError as err:
            raise BridgeError(f"--from: {err}") from err
        now_ms = int(time.time() * 1000)
        account = settings.account_id
        payload = {
            "object": cls.parser_type.webhook_object,
            "entry": [
                {
                    "id": account,
                    "time": now_ms,
                    "messaging": [
                        {
                            "sender": {"id": scoped},
                            "recipient": {"id": account},
                            "timestamp": now_ms,
                            "message": {
                                "mid": f"{cls.parser_type.simulated_mid_prefix}{secrets.token_hex(16)}",
                                "text": text,
                            },
                        }
                    ],
                }
            ],
        }
        body, headers = signed_body(payload, settings.app_secret)
        return SimulatedRequest(method="POST", path=f"/webhooks/{cls.name}", headers=headers, body=body)
