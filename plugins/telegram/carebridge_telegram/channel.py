"""The Telegram channel: Bot API webhooks in, ``sendMessage`` out.

Telegram does not sign its webhooks. What it offers instead is a secret
chosen at ``setWebhook`` (``secret_token``) that it sends back in the
``X-Telegram-Bot-Api-Secret-Token`` header of every update; the webhook
compares it in constant time and fails closed (401 without it, 403 with a
wrong one, nothing stored either way). An update is answered 200 only after
the core committed its message; anything else makes Telegram post it again,
and the core drops the duplicate by its ``"<chat_id>:<message_id>"`` id.

Telegram has no reply window: a bot may write to anyone who started it, for
as long as they have not blocked it (403, permanent).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, ClassVar

from aiohttp import web

from bridge import (
    BridgeError,
    Channel,
    ChannelAuthError,
    ChannelAuthFailed,
    ChannelContext,
    ChannelSchema,
    ChannelState,
    ChannelUnavailable,
    DeliveryError,
    DeliveryReceipt,
    OutboundMessage,
    SentParts,
    SimulatedRequest,
    WindowClosedError,
    hand_over,
    json_error,
    read_body,
    split_text,
    webhook_app,
)

from .api import MAX_TEXT, BotApi
from .config import SCHEMA, TelegramConfig
from .webhook import CHANNEL, parse_update

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_CHAT_ID = re.compile(r"^[+-]?\d+$")
_QUOTE = re.compile(r"^(-?\d+):(\d+)$")


class TelegramChannel(Channel):
    """A Telegram bot's private chats."""

    name: ClassVar[str] = CHANNEL
    label: ClassVar[str] = "Telegram"
    max_text_length: ClassVar[int | None] = MAX_TEXT
    reply_window: ClassVar[float | None] = None
    schema: ClassVar[ChannelSchema | None] = SCHEMA  # check_config validates with it

    def __init__(self, config: Mapping[str, Any], ctx: ChannelContext) -> None:
        super().__init__(config, ctx)
        self.settings = TelegramConfig.from_section(config)
        self.api = BotApi(ctx.http, self.settings.api_url, self.settings.bot_token)
        # Split sends resume after their last accepted part when the outbox retries.
        self._partial = SentParts()

    @classmethod
    def normalize_address(cls, address: str) -> str:
        """Return a chat id in its canonical form (``0043`` → ``43``, ``+7`` → ``7``).

        Private chats have the user's (positive) id; the sign is kept because
        Telegram writes group ids as negative numbers.

        :raises ValueError: when ``address`` is not an integer.
        """
        text = address.strip()
        if not (text.isascii() and _CHAT_ID.match(text)):
            raise ValueError(f"not a Telegram chat id (an integer): {address!r}")
        return str(int(text))

    async def start(self) -> None:
        """Check the bot token with ``getMe``.

        :raises ChannelAuthError: the Bot API refuses the token (401, 404).
        :raises ChannelUnavailable: it cannot be reached, is rate-limiting or failing (429, 5xx).
        """
        try:
            answer = await self.api.request("getMe")
        except DeliveryError as err:
            raise ChannelUnavailable(f"Telegram Bot API unavailable: {err}") from err
        if not answer.ok:
            reason = f"getMe answered HTTP {answer.status}: {answer.description}"
            if answer.code == 429 or answer.code >= 500:
                raise ChannelUnavailable(f"Telegram Bot API unavailable: {reason}")
            raise ChannelAuthError(f"Telegram refused the bot token ({reason}): check channels.telegram.bot_token")
        username = answer.result.get("username") if isinstance(answer.result, dict) else None
        self.ctx.log.info("Telegram bot @%s ready", str(username or "?")[:64])
        self.ctx.report(ChannelState.CONNECTED, None)

    # -- outbound ---------------------------------------------------------

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        """Send ``message.text`` to a chat, split in order when longer than 4096 characters.

        The first part quotes ``reply_to`` (``reply_parameters``) when it names
        a message of the same chat; a quote that no longer exists does not
        stop the message (``allow_sending_without_reply``). Telegram has no
        re-engagement templates: a delivery asking for one is refused before
        any request.

        :raises ChannelAuthFailed: the Bot API refused the token.
        :raises DeliveryError: retryable for 429 (with ``retry_after``), 5xx
            and network failures; permanent for 400, 403 and other refusals.
        """
        if message.template:
            raise WindowClosedError("Telegram has no re-engagement templates", code="no_template")
        try:
            chat_id = int(self.normalize_address(message.recipient))
        except ValueError:
            raise DeliveryError(
                "the recipient is not a Telegram chat id", retryable=False, code="bad_recipient"
            ) from None
        if not message.text.strip():
            raise DeliveryError("nothing to send: the message text is empty", retryable=False, code="empty")
        parts = split_text(message.text, MAX_TEXT)
        done = self._partial.accepted(message.delivery_id, message.text)
        quote = _quoted_message(message.reply_to, chat_id)
        try:
            for index in range(len(done), len(parts)):
                payload: dict[str, Any] = {"chat_id": chat_id, "text": parts[index]}
                if index == 0 and quote is not None:
                    payload["reply_parameters"] = {"message_id": quote, "allow_sending_without_reply": True}
                done.append(f"{chat_id}:{await self.api.send_message(payload)}")
        except DeliveryError as err:
            if isinstance(err, ChannelAuthFailed):
                self.ctx.log.error(
                    "Telegram refused the bot token (HTTP %s): renew channels.telegram.bot_token", err.code
                )
                self.ctx.report(ChannelState.BAD_CREDENTIALS, f"bot token refused by the Bot API (HTTP {err.code})")
            if not err.retryable:
                self._partial.finish(message.delivery_id)
            raise
        self._partial.finish(message.delivery_id)
        return DeliveryReceipt(tuple(done))

    # -- inbound ----------------------------------------------------------

    def web_app(self) -> web.Application:
        """Return the webhook app; the core mounts it at ``/webhooks/telegram``."""
        return webhook_app(self.ctx.max_body, receive=self._receive)

    async def _receive(self, request: web.Request) -> web.Response:
        offered = request.headers.get(SECRET_HEADER)
        if offered is None:
            return json_error(401, "secret_token_missing", f"{SECRET_HEADER} header is required")
        if not hmac.compare_digest(offered.encode(), self.settings.webhook_secret.encode()):
            return json_error(403, "secret_token_invalid", f"{SECRET_HEADER} does not match")
        body = await read_body(request)
        try:
            update = json.loads(body)
        except (UnicodeDecodeError, ValueError) as err:
            return json_error(400, "malformed_json", f"body is not valid JSON: {err}")
        if not isinstance(update, dict):
            return json_error(400, "malformed_json", "body must be a JSON object")
        batch = parse_update(update, now=time.time())
        _log_ignored(self.ctx.log, batch.ignored)
        failed = await hand_over(self.ctx, batch.messages, [])
        if failed is not None:
            return failed
        if batch.callback_query_id is not None:
            # The Bot API runs a method given in the webhook's answer: stop the button's spinner.
            return web.json_response({"method": "answerCallbackQuery", "callback_query_id": batch.callback_query_id})
        # An empty 200: any JSON with a "method" would be run by the Bot API as a request.
        return web.Response(status=200)

    # -- simulate ---------------------------------------------------------

    @classmethod
    def simulate(cls, section: Mapping[str, Any], sender: str, text: str) -> SimulatedRequest:
        """Build the update Telegram would post for ``text`` in the private chat ``sender``.

        :raises ConfigError: when the section is invalid.
        :raises BridgeError: when ``sender`` is not a chat id (the CLI prints it).
        """
        settings = TelegramConfig.from_section(section)
        try:
            chat_id = int(cls.normalize_address(sender))
        except ValueError as err:
            raise BridgeError(f"--from: {err}") from err
        person = {"id": chat_id, "is_bot": False, "first_name": "Simulated"}
        update = {
            "update_id": secrets.randbelow(2**31),
            "message": {
                "message_id": secrets.randbelow(2**40) + 1,
                "from": person,
                "chat": {"id": chat_id, "type": "private", "first_name": "Simulated"},
                "date": int(time.time()),
                "text": text,
            },
        }
        body = json.dumps(update).encode()
        headers = {"Content-Type": "application/json", SECRET_HEADER: settings.webhook_secret}
        return SimulatedRequest(method="POST", path=f"/webhooks/{CHANNEL}", headers=headers, body=body)


def _quoted_message(reply_to: str | None, chat_id: int) -> int | None:
    """The message id to quote, when ``reply_to`` is ``"<chat_id>:<message_id>"`` of this chat."""
    match = _QUOTE.match(reply_to or "")
    if match is None or int(match.group(1)) != chat_id:
        return None
    return int(match.group(2))


def _log_ignored(log: logging.Logger, kinds: list[str]) -> None:
    """Log what an update carried that was not stored, by kind only (never text)."""
    if kinds:
        counts = Counter(kinds)
        log.info("ignored Telegram updates: %s", ", ".join(f"{kind} x{n}" for kind, n in sorted(counts.items())))
