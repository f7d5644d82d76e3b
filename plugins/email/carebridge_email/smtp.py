"""Outbound mail: build a threaded reply and submit it with aiosmtplib.

A reply carries the customer's Message-ID in ``In-Reply-To`` and at the end
of ``References`` (RFC 5322 §3.6.4) and keeps their Subject with one ``Re: ``
so it lands in the same thread in their mailbox. ``Reply-To`` is
``reply+<token>@<our domain>`` with the token the core issued for this
conversation and recipient (opaque here): whatever the client does, the
answer comes back to our own domain with the token on it. A mail to an
agent starts with the "reply above this line" marker, so that what they
quote below their answer (hand-offs carry internal notes) is cut off.

TLS is never opportunistic: ``starttls`` requires the upgrade (aiosmtplib's
default would silently stay plaintext and send the password in clear).
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import aiosmtplib

from bridge import ChannelAuthFailed, DeliveryError, DeliveryUncertain, OutboundMessage

from .config import EmailConfig
from .parse import REPLY_MARKER, TOKEN_RE

#: The Subject of a message that answers nothing (a code, a notice).
NEUTRAL_SUBJECT = "A message from customer care"
TIMEOUT = 30.0
_MSGID_RE = re.compile(r"<[^<>\s]+@[^<>\s]+>")
_ADDRESS_RE = re.compile(r"[^\s<>\"'@]+@[^\s<>\"'@]+")
_RE_PREFIX = re.compile(r"^\s*((re|aw|sv|antw)\s*(\[\d+\])?\s*:\s*)+", re.I)


def reply_subject(subject: str) -> str:
    """``Re: <subject>`` with exactly one ``Re: `` (earlier ``Re:``/``AW:`` prefixes folded)."""
    return "Re: " + _RE_PREFIX.sub("", subject).strip()


def build_message(settings: EmailConfig, message: OutboundMessage, *, instance: str = "") -> EmailMessage:
    """Build the mail for ``message``; its ``Message-ID`` is the delivery receipt.

    The Message-ID is the same for every attempt of one delivery
    (``<cb.<delivery id>.<instance>@domain>``, ``instance`` a random text this
    bridge keeps): when an SMTP answer was lost and the mail is sent again,
    receiving systems that drop repeated Message-IDs keep one copy.

    ``meta`` (the customer's last mail, passed on by the core): ``subject``,
    ``message_id``, ``references``, ``in_reply_to``, ``reply_token``,
    ``recipient_kind``. A ``subject`` without a ``message_id`` is a subject
    the core chose, used as is. Without a token, Reply-To is our address.
    """
    meta: Mapping[str, str] = message.meta or {}
    domain = settings.domain
    parent = _msgids(meta.get("message_id"))[-1:]
    subject = _oneline(meta.get("subject", ""))
    mail = EmailMessage()
    mail["From"] = settings.from_address
    mail["To"] = message.recipient
    if subject:
        mail["Subject"] = reply_subject(subject) if parent else subject
    else:
        mail["Subject"] = NEUTRAL_SUBJECT
    mail["Date"] = format_datetime(datetime.fromtimestamp(time.time(), UTC))
    if instance:
        mail["Message-ID"] = f"<cb.{message.delivery_id}.{instance}@{domain}>"
    else:
        mail["Message-ID"] = make_msgid(idstring=f"cb{message.delivery_id}", domain=domain)
    if parent:
        mail["In-Reply-To"] = parent[0]
        earlier = _msgids(meta.get("references")) or _msgids(meta.get("in_reply_to"))[:1]
        mail["References"] = " ".join([*earlier, parent[0]][-20:])
    token = (message.meta or {}).get("reply_token", "")
    mail["Reply-To"] = f"reply+{token}@{domain}" if token and TOKEN_RE.match(token) else settings.from_address
    if meta.get("recipient_kind") == "contact":
        mail.set_content(message.text)
    else:
        mail.set_content(f"{REPLY_MARKER}\n\n{message.text}")
    return mail


async def submit(settings: EmailConfig, mail: EmailMessage) -> None:
    """Hand ``mail`` to the configured SMTP server.

    :raises ChannelAuthFailed: the server refused our credentials (5xx to AUTH).
    :raises DeliveryError: retryable for 4xx replies, connection errors and
        timeouts; permanent (``code`` = the SMTP code) for other 5xx replies.
    :raises DeliveryUncertain: the connection broke (or timed out) once the
        message data was on its way: the server may have queued the mail, and
        SMTP offers no way to ask.
    """
    client = _Submission(
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username or None,
        password=settings.smtp_password or None,
        use_tls=settings.smtp_tls == "tls",
        start_tls=settings.smtp_tls == "starttls",
        tls_context=tls_context(settings) if settings.smtp_tls != "none" else None,
        timeout=TIMEOUT,
    )
    try:
        async with client:
            await client.send_message(mail, sender=settings.from_address, recipients=[str(mail["To"])])
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as err:
        if client.data_sent:
            text = f"SMTP answer lost after the message was sent: {type(err).__name__}"
            raise DeliveryUncertain(text, confirmable=False) from err
        text = f"SMTP server unavailable: {type(err).__name__}: {_scrub(str(err))}"
        raise DeliveryError(text, retryable=True, code="connect") from err
    except aiosmtplib.SMTPAuthenticationError as err:
        if 500 <= err.code < 600:
            text = f"the SMTP server refused our login: {err.code} {_scrub(err.message)}"
            raise ChannelAuthFailed(text, code=str(err.code)) from err
        text = f"SMTP login failed for now: {err.code} {_scrub(err.message)}"
        raise DeliveryError(text, retryable=True, code=str(err.code)) from err
    except aiosmtplib.SMTPRecipientsRefused as err:
        first = err.recipients[0] if err.recipients else None
        code = first.code if first is not None else 550
        raise _classified(code, first.message if first is not None else "recipient refused") from err
    except aiosmtplib.SMTPResponseException as err:
        raise _classified(err.code, err.message) from err
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
        # Connection refused or dropped, TLS failure, timeout, STARTTLS missing: retry later.
        text = f"SMTP server unavailable: {type(err).__name__}: {_scrub(str(err))}"
        raise DeliveryError(text, retryable=True, code="connect") from err


class _Submission(aiosmtplib.SMTP):
    """An SMTP client that remembers whether the message data started going out.

    A connection lost before DATA leaves nothing at the server; one lost after
    it may leave a queued mail whose 250 we never saw.
    """

    data_sent = False

    async def data(self, message: str | bytes, /, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        self.data_sent = True
        return await super().data(message, **kwargs)


def tls_context(settings: EmailConfig) -> ssl.SSLContext:
    """A verifying client context: ``smtp_ca_file`` when set, else the system trust store."""
    if settings.smtp_ca_file is not None:
        return ssl.create_default_context(cafile=str(settings.smtp_ca_file))
    return ssl.create_default_context()


def _scrub(text: str) -> str:
    """A server's reply text without addresses: error texts reach logs and the outbox."""
    return _ADDRESS_RE.sub("<address>", text)[:300]


def _classified(code: int, reply: str) -> DeliveryError:
    text = _scrub(reply)
    if 400 <= code < 500:
        return DeliveryError(f"SMTP server deferred the mail: {code} {text}", retryable=True, code=str(code))
    if 500 <= code < 600:
        return DeliveryError(f"SMTP server rejected the mail: {code} {text}", retryable=False, code=str(code))
    return DeliveryError(f"unexpected SMTP reply: {code} {text}", retryable=True, code=str(code))


def _msgids(value: str | None) -> list[str]:
    return _MSGID_RE.findall(value or "")


def _oneline(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()[:900]
