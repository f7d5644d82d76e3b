"""The email channel: LMTP in from the local MTA, SMTP out through the submission server.

Inbound, a mail becomes one ``InboundMessage`` however many of our addresses
it was sent to, and the MTA hears ``250`` for each recipient only after the
core has committed it (and its attachments' bytes). Automated mail is
accepted from the MTA, so that it is not bounced, but never stored.
Outbound, ``send`` submits one threaded mail per delivery; its Message-ID is
the receipt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from bridge import (
    Channel,
    ChannelAuthFailed,
    ChannelContext,
    ChannelState,
    DeliveryError,
    DeliveryReceipt,
    OutboundMessage,
)

from .config import EmailConfig, split_address
from .lmtp import LmtpHandler, LmtpServer
from .parse import CHANNEL, automated_reason, parse_mail, read_mail
from .smtp import build_message, submit


class EmailChannel(Channel):
    """Email for one support address (``from_address``) and its domain."""

    name: ClassVar[str] = CHANNEL
    max_text_length: ClassVar[int | None] = None
    reply_window: ClassVar[float | None] = None
    label: ClassVar[str] = "Email"
    # An agent's reply carries the quoted mail below it: only the first line may be a command.
    commands_in_first_line: ClassVar[bool] = True

    def __init__(self, config: Mapping[str, Any], ctx: ChannelContext) -> None:
        super().__init__(config, ctx)
        self.settings = EmailConfig.from_section(config)
        settings = self.settings
        handler = LmtpHandler(settings.domain, self._received, ctx.log)
        self.lmtp = LmtpServer(handler, settings.lmtp_host, settings.lmtp_port, hostname=settings.domain)

    @classmethod
    def check_config(cls, section: Mapping[str, Any]) -> None:
        """Validate ``[channels.email]``; raise ``ConfigError`` naming the key."""
        EmailConfig.from_section(section)

    @classmethod
    def normalize_address(cls, address: str) -> str:
        """Return a plain ``local@domain`` address, lower-cased.

        :raises ValueError: when ``address`` is not one.
        """
        text = address.strip()
        split_address(text)
        return text.lower()

    async def start(self) -> None:
        """Start the LMTP receiver; SMTP credentials are checked by the first send."""
        await self.lmtp.start()
        self.ctx.log.info("LMTP receiver listening on %s:%d", self.settings.lmtp_host, self.lmtp.bound_port)
        self.ctx.report(ChannelState.CONNECTED, None)

    async def stop(self) -> None:
        """Stop the LMTP receiver."""
        await self.lmtp.stop()

    # -- outbound ---------------------------------------------------------

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        """Mail ``message.text`` to ``message.recipient`` in the thread ``message.meta`` names.

        :raises ChannelAuthFailed: the SMTP server refused our login.
        :raises DeliveryError: retryable for 4xx/connection/timeout, permanent for 5xx.
        """
        if message.template:
            raise DeliveryError("email has no re-engagement templates", retryable=False, code="no_template")
        if not message.text.strip():
            raise DeliveryError("nothing to send: the message text is empty", retryable=False, code="empty")
        try:
            recipient = self.normalize_address(message.recipient)
        except ValueError as err:
            raise DeliveryError(str(err), retryable=False, code="bad_address") from err
        mail = build_message(self.settings, replace(message, recipient=recipient))
        try:
            await submit(self.settings, mail)
        except ChannelAuthFailed as err:
            self.ctx.log.error(
                "the SMTP server refused our login (%s): check channels.email.smtp_username/password", err.code
            )
            self.ctx.report(ChannelState.BAD_CREDENTIALS, "SMTP login refused")
            raise
        return DeliveryReceipt((str(mail["Message-ID"]),))

    # -- inbound ----------------------------------------------------------

    async def _received(self, raw: bytes, mail_from: str, recipients: Sequence[str]) -> None:
        """Store one received mail; raising makes the LMTP answer 451 (the MTA retries)."""
        mail = read_mail(raw)
        reason = automated_reason(mail, mail_from, own_address=self.settings.from_address)
        if reason is not None:
            self.ctx.log.info("accepted but did not store an automated mail (%s)", reason)
            return
        parsed = parse_mail(mail, raw, mail_from=mail_from, recipients=recipients, domain=self.settings.domain)
        await self.ctx.deliver([parsed.message])
        for index, (data, mime) in enumerate(parsed.attachment_data):
            await self.ctx.save_media(parsed.message.external_id, index, data, mime)
