"""The email channel: IMAP or LMTP in, SMTP out through the submission server.

Inbound, a mail becomes one ``InboundMessage`` however many of our addresses
it was sent to, and it is acknowledged (LMTP ``250``; IMAP: flagged and
moved) only after the core has committed it and its attachments' bytes.
Automated mail is taken, so that it is not bounced, but never stored. A
sender over ``max_mails_per_hour`` is kept out for the rest of the hour.
Outbound, ``send`` submits one threaded mail per delivery; its Message-ID is
the receipt.

An email's From is only a claim (``senders_vouched = False``): each message
carries the verdict of the trusted ``Authentication-Results``
(``InboundMessage.authenticated``), and the core lets a mail act for an
agent only with that verdict or on a reply token issued to that agent.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import replace
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any, ClassVar

from bridge import (
    Channel,
    ChannelAuthFailed,
    ChannelContext,
    ChannelState,
    DeliveryError,
    DeliveryReceipt,
    OutboundMessage,
    UnknownRecordError,
)

from .config import EmailConfig, split_address
from .imap import Disposition, ImapInbound
from .limits import WINDOW, SenderCap, Verdict
from .lmtp import LmtpHandler, LmtpServer
from .parse import CHANNEL, MailError, automated_reason, parse_mail, read_mail
from .smtp import build_message, submit

#: The /healthz reason while a sender is over the cap.
OVER_CAP = "mail from a sender over max_mails_per_hour is kept out (see the log)"
# Headers that name where an IMAP mail was delivered to: the reply token is in one of them.
#: The channel-state key of this bridge's random Message-ID part (stable across restarts).
_INSTANCE_KEY = "message_id_instance"
_DELIVERED_TO = ("Delivered-To", "X-Original-To", "Envelope-To", "To", "Cc")


class EmailChannel(Channel):
    """Email for one support address (``from_address``) and its domain."""

    name: ClassVar[str] = CHANNEL
    max_text_length: ClassVar[int | None] = None
    reply_window: ClassVar[float | None] = None
    label: ClassVar[str] = "Email"
    # An agent's reply carries the quoted mail below it: only the first line may be a command.
    commands_in_first_line: ClassVar[bool] = True
    # Anyone can write any From: the sender is proven by a trusted Authentication-Results or a token.
    senders_vouched: ClassVar[bool] = False

    def __init__(self, config: Mapping[str, Any], ctx: ChannelContext) -> None:
        super().__init__(config, ctx)
        self.settings = EmailConfig.from_section(config)
        settings = self.settings
        self.cap = SenderCap(settings.max_mails_per_hour)
        self._connection: tuple[ChannelState, str | None] = (ChannelState.STARTING, None)
        self._cap_timer: asyncio.TimerHandle | None = None
        self._instance = ""  # loaded in start()
        self.lmtp: LmtpServer | None = None
        self.imap: ImapInbound | None = None
        if settings.imap is not None:
            self.imap = ImapInbound(
                settings.imap, self._received_imap, self._report_connection, ctx.load_state, ctx.save_state, ctx.log,
                max_size=settings.max_mail_size,
            )  # fmt: skip
        else:
            handler = LmtpHandler(settings.domain, self._received, ctx.log)
            self.lmtp = LmtpServer(
                handler, settings.lmtp_host, settings.lmtp_port, hostname=settings.domain,
                max_size=settings.max_mail_size,
            )  # fmt: skip

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
        """Start the LMTP receiver; IMAP connects in ``run`` (its login shows in /healthz, never stops start-up)."""
        self._instance = await self.ctx.load_state(_INSTANCE_KEY) or ""
        if not self._instance:
            self._instance = secrets.token_hex(8)
            await self.ctx.save_state(_INSTANCE_KEY, self._instance)
        if self.lmtp is not None:
            await self.lmtp.start()
            self.ctx.log.info("LMTP receiver listening on %s:%d", self.settings.lmtp_host, self.lmtp.bound_port)
            self._report_connection(ChannelState.CONNECTED, None)

    async def run(self) -> None:
        """Read the mailbox until stopped (IMAP); with LMTP the receiver works on its own."""
        if self.imap is not None:
            await self.imap.run()

    async def stop(self) -> None:
        """Stop the LMTP receiver or close the IMAP connection."""
        if self._cap_timer is not None:
            self._cap_timer.cancel()
        if self.lmtp is not None:
            await self.lmtp.stop()
        if self.imap is not None:
            await self.imap.stop()

    # -- health -----------------------------------------------------------

    def _report_connection(self, state: ChannelState, reason: str | None) -> None:
        self._connection = (state, reason)
        self._report()

    def _report(self) -> None:
        state, reason = self._connection
        if self.cap.active() and state is ChannelState.CONNECTED:
            state, reason = ChannelState.DEGRADED, OVER_CAP
        self.ctx.report(state, reason)

    def _cap_tripped(self) -> None:
        """Tell the operator once (log + /healthz) and look again when the hour is over."""
        self.ctx.log.warning(
            "a sender went over max_mails_per_hour (%d): their mail is kept out of the bridge until an hour has"
            " passed (a mail loop or a flood?)", self.settings.max_mails_per_hour,
        )  # fmt: skip
        self._report()
        if self._cap_timer is not None:
            self._cap_timer.cancel()
        self._cap_timer = asyncio.get_running_loop().call_later(WINDOW + 1, self._report)

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
        mail = build_message(self.settings, replace(message, recipient=recipient), instance=self._instance)
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

    async def _received(self, raw: bytes, mail_from: str, recipients: Sequence[str]) -> Disposition:
        """Take in one mail from LMTP; raising makes the LMTP answer 451 (the MTA retries)."""
        try:
            mail = read_mail(raw)
        except (ValueError, LookupError, IndexError, TypeError, AttributeError) as err:
            self.ctx.log.warning("a mail could not be parsed (%s); it was refused", type(err).__name__)
            return Disposition.UNPARSEABLE
        return await self._take_in(mail, raw, mail_from, recipients)

    async def _received_imap(self, raw: bytes) -> Disposition:
        """Take in one mail read from the mailbox; raising leaves it there for the next try."""
        try:
            mail = read_mail(raw)
            mail_from, recipients = _envelope_of(mail)
        except (ValueError, LookupError, IndexError, TypeError, AttributeError) as err:
            self.ctx.log.warning("a mail could not be parsed (%s); it goes to the error folder", type(err).__name__)
            return Disposition.UNPARSEABLE
        if mail_from is None:
            self.ctx.log.warning(
                "a mail could not be parsed (no sender: no Return-Path, no From); it goes to the error folder"
            )
            return Disposition.UNPARSEABLE
        return await self._take_in(mail, raw, mail_from, recipients)

    async def _take_in(self, mail: EmailMessage, raw: bytes, mail_from: str, recipients: Sequence[str]) -> Disposition:
        settings = self.settings
        try:
            reason = automated_reason(mail, mail_from, own_address=settings.from_address)
            if reason is not None:
                self.ctx.log.info("took but did not store an automated mail (%s)", reason)
                return Disposition.SKIPPED
            parsed = parse_mail(
                mail, raw, mail_from=mail_from, recipients=recipients, domain=settings.domain,
                trusted_authserv_ids=settings.trusted_authserv_ids,
            )  # fmt: skip
        except (MailError, ValueError, LookupError, IndexError, TypeError, AttributeError) as err:
            # Logged without content: the kind of problem only.
            what = str(err) if isinstance(err, MailError) else type(err).__name__
            self.ctx.log.warning("a mail could not be parsed (%s); it was not stored", what)
            return Disposition.UNPARSEABLE
        message = parsed.message
        verdict = self.cap.check(message.sender, message.authenticated is True)
        if verdict is not Verdict.ADMIT:
            if verdict is Verdict.REFUSE_FIRST:
                self._cap_tripped()
            return Disposition.OVER_CAP
        await self.ctx.deliver([message])
        for index, (data, mime) in enumerate(parsed.attachment_data):
            try:
                await self.ctx.save_media(message.external_id, index, data, mime)
            except UnknownRecordError:
                # Not a stored customer message (an agent's mail, or a refused one): its files are
                # not kept, the core tells the agent so. Never an error the MTA would retry.
                self.ctx.log.info("the attachments of a mail that is not a customer message were dropped")
                break
        return Disposition.STORED


def _envelope_of(mail: EmailMessage) -> tuple[str | None, list[str]]:
    """The envelope an MTA would have given over LMTP, from the headers of a delivered mail.

    ``Return-Path`` is written at final delivery (``<>`` for a bounce); without
    it the From stands in, and with neither there is no sender (None). The
    recipients are where it was delivered to, so a ``reply+TOKEN@`` address is found.
    """
    mail_from: str | None = None
    return_path = mail.get("Return-Path")
    if return_path is not None:
        mail_from = str(return_path).strip() or "<>"
    else:
        senders = [a for _n, a in getaddresses([str(mail.get("From") or "")]) if "@" in a]
        mail_from = senders[0] if senders else None
    recipients: list[str] = []
    for name in _DELIVERED_TO:
        for value in mail.get_all(name) or []:
            recipients.extend(a for _n, a in getaddresses([str(value)]) if "@" in a)
    return mail_from, recipients
