"""Plain data passed between the core and channel plugins.

Every object here is a frozen dataclass: channels build them from platform
payloads, the core persists and routes them. None of them holds a secret.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Address:
    """Where a person is reached: a channel name and the platform's id for them.

    Round-trips through the ``channel:address`` text form used by the CLI and
    config (``whatsapp:+15551234567``, ``messenger:<PSID>``,
    ``email:ann@example.org``, ``console``). What an address of a platform
    may look like is that platform's channel's rule (``Channel.normalize_address``).
    """

    channel: str
    address: str = ""

    @classmethod
    def parse(cls, text: str) -> Address:
        """Split ``channel:address`` (channel lower-cased, both stripped); ``console`` needs no address.

        :raises ValueError: with a message saying what is wrong.
        """
        channel, sep, address = text.strip().partition(":")
        channel = channel.strip().lower()
        address = address.strip()
        if not channel or not channel.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"expected CHANNEL:ADDRESS, got {text!r}")
        if channel == "console":
            return cls("console", "")
        if not sep or not address:
            raise ValueError(f"expected CHANNEL:ADDRESS, got {text!r}")
        return cls(channel, address)

    def __str__(self) -> str:
        return self.channel if not self.address else f"{self.channel}:{self.address}"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A non-text part of a message: media, a file, a location or a contact card.

    :param kind: ``image``, ``audio``, ``video``, ``file``, ``sticker``,
        ``location``, ``contacts``, …
    :param url: where the platform serves it, if it gives a URL.
    :param media_id: the platform's media id, when bytes must be fetched.
    :param meta: other metadata (caption, coordinates, title); stored encrypted.
    """

    kind: str
    url: str | None = None
    media_id: str | None = None
    mime: str | None = None
    filename: str | None = None
    meta: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message a channel received, ready for the core to store and route.

    :param channel: the channel's name.
    :param sender: the platform id of the person on the other side (PSID,
        E.164 number, email address). For an ``echo`` this is still the
        person on the other side, i.e. the recipient of the business' message.
    :param external_id: the platform's message id, used to drop duplicates.
    :param text: the text (quick replies and button payloads become text).
    :param timestamp: when the platform says it was sent, epoch seconds.
    :param sender_name: a display name the platform gave, if any.
    :param reply_to: the platform id of the message this one quotes.
    :param echo: True for a message the business sent outside Carebridge
        (Messenger Page inbox); stored as outbound so the transcript is whole.
    :param meta: channel data needed to answer in thread (email headers).
    :param authenticated: the channel's verdict on ``sender``: True when
        something the operator trusts vouches for it (email: a trusted
        ``Authentication-Results`` with ``dmarc=pass``), False when that check
        was made and failed (the core marks such a customer message, and it
        can act for an agent only on a reply token issued to that agent),
        None when the channel gives no verdict. On a channel whose
        ``Channel.senders_vouched`` is True (signed webhooks) None means the
        platform itself vouches; where it is False (email), None is no proof.
    """

    channel: str
    sender: str
    external_id: str
    text: str
    timestamp: float
    sender_name: str | None = None
    reply_to: str | None = None
    attachments: tuple[Attachment, ...] = ()
    echo: bool = False
    meta: Mapping[str, str] = field(default_factory=dict)
    authenticated: bool | None = None


StatusKind = Literal["sent", "delivered", "read", "failed"]


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A platform's report on a message we sent (delivery, read, failure).

    :param external_id: the platform id of our message; for Messenger
        ``delivery``/``read`` watermarks, ``watermark`` is set instead and
        every earlier message to ``recipient`` is covered.
    :param window_closed: with ``failed``: the platform refused the message
        because the recipient's reply window is closed (the channel maps its
        own error code to this); the core holds it and starts the fall-backs
        instead of failing it.
    :param delivery_id: our delivery (``OutboundMessage.delivery_id``) when the
        platform echoes it back with the report (WhatsApp's
        ``biz_opaque_callback_data``, Messenger's echo ``metadata``) and the
        report is about its last part. With ``sent``, ``delivered`` or
        ``read`` it settles a send whose answer was lost (see
        ``DeliveryUncertain``): the delivery is recorded as sent, never resent.
    """

    channel: str
    status: StatusKind
    timestamp: float
    recipient: str | None = None
    external_id: str | None = None
    watermark: float | None = None
    error_code: str | None = None
    error_title: str | None = None
    window_closed: bool = False
    delivery_id: int | None = None


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One delivery the core asks a channel to make.

    :param delivery_id: the outbox row; stable across retries, usable as an
        idempotency key.
    :param recipient: the platform id to send to.
    :param reply_to: the platform id of a message to quote or answer in thread.
    :param last_inbound_at: when the recipient last wrote to us on this
        channel (epoch seconds), for platforms with a reply window; None if never.
    :param template: send the channel's configured re-engagement template
        instead of ``text`` (WhatsApp outside the 24-hour window).
    :param meta: channel data for threading (email subject, Message-ID, …).
    """

    delivery_id: int
    channel: str
    recipient: str
    text: str
    reply_to: str | None = None
    last_inbound_at: float | None = None
    template: bool = False
    conversation_id: int | None = None
    meta: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """What the platform answered to a successful send: its message id(s).

    A text split into parts yields one id per part, in order.
    """

    external_ids: tuple[str, ...]

    @property
    def external_id(self) -> str:
        """The id of the first part, the one replies are correlated with."""
        return self.external_ids[0] if self.external_ids else ""


class ChannelState(enum.Enum):
    """Health of a channel, shown in /healthz."""

    STARTING = "starting"
    CONNECTED = "connected"
    DEGRADED = "degraded"
    TRANSIENT_DISCONNECT = "transient_disconnect"
    BAD_CREDENTIALS = "bad_credentials"


@dataclass(frozen=True, slots=True)
class Finding:
    """A sensitive span found in a text by a ``detect_sensitive`` hook.

    :param kind: what it is (``iban``, ``card_number``, ``login_code``, …).
    :param start: index of the first character; ``end`` is one past the last.
    """

    kind: str
    start: int
    end: int
