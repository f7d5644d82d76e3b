"""The Channel base class and the context the core lends to each channel.

A platform plugin is one ``Channel`` subclass. It reaches the core only
through ``ChannelContext``: it never imports the store, the router or the app.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import aiohttp
from aiohttp import web

from bridge.errors import ChannelError
from bridge.models import (
    Attachment,
    ChannelState,
    DeliveryReceipt,
    InboundMessage,
    OutboundMessage,
    StatusUpdate,
)
from bridge.schema import ChannelSchema

#: ``InboundMessage.meta`` key: an email address the customer gave the channel themself (a
#: website chat session). The core stores it as the contact's email address (not verified: no
#: code confirmed it) and keeps it out of the message's stored meta; ``/secure`` mails a
#: website-chat customer at that address without a round-trip (DESIGN §12).
CONTACT_EMAIL = "contact_email"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One message of a customer's own conversation, as ``ChannelContext.history`` returns it.

    :param id: the stored message's id (increasing; use it to drop repeats).
    :param direction: ``in`` (the customer's), ``out`` (an agent's reply) or
        ``system`` (a notice of the bridge). Internal notes are never returned.
    :param created_at: when it was stored, epoch seconds.
    """

    id: int
    direction: Literal["in", "out", "system"]
    text: str
    created_at: float


DeliverCallback = Callable[[Sequence[InboundMessage]], Awaitable[None]]
StatusCallback = Callable[[Sequence[StatusUpdate]], Awaitable[None]]
MediaCallback = Callable[[str, int, bytes, str | None], Awaitable[None]]
ReportCallback = Callable[[ChannelState, str | None], None]
HistoryCallback = Callable[[str, int], Awaitable[Sequence[HistoryEntry]]]
PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def no_history(address: str, limit: int) -> Sequence[HistoryEntry]:
    """The ``history`` of a context that has no store behind it: nothing."""
    return ()


LoadStateCallback = Callable[[str], Awaitable[str | None]]
SaveStateCallback = Callable[[str, str], Awaitable[None]]


async def _no_state_to_load(key: str) -> str | None:
    raise ChannelError("this channel context has no state store (it was not lent by a running bridge)")


async def _no_state_to_save(key: str, value: str) -> None:
    raise ChannelError("this channel context has no state store (it was not lent by a running bridge)")


@dataclass(frozen=True, slots=True)
class ChannelContext:
    """What the core lends a channel.

    :param http: the shared client session; never open your own.
    :param deliver: hand inbound messages to the core; returns once they are
        committed to the store (answer the platform only after it returns).
        Duplicates (same ``external_id``) are dropped by the core.
    :param update_status: hand delivery/read/failure reports to the core.
    :param save_media: ``save_media(external_id, index, data, mime)`` stores
        the bytes of attachment ``index`` of an already delivered message,
        encrypted (for platforms whose media must be fetched).
    :param report: tell the core the channel's health (shown in /healthz).
    :param log: the channel's logger; never log message text or tokens.
    :param max_body: the largest webhook body the operator allows, in bytes.
    :param public_url: the bridge's public base URL (for links), may be empty.
    :param history: ``await history(address, limit)``: the newest ``limit``
        messages (oldest first) of the conversation of ``address`` on this
        channel — the open one, else the latest — as ``HistoryEntry`` items:
        what the customer wrote and what was sent to them on this channel,
        never internal notes nor anything sent elsewhere (``/secure`` mail).
        Read-only; for channels that show a customer their own conversation
        (a website chat that reconnects). Empty for an unknown address.
    :param load_state: ``await load_state(key)`` returns the text last saved
        under ``key`` by this channel, or None. For bookkeeping a pull channel
        must keep across restarts (an IMAP folder's UIDVALIDITY and last UID);
        each channel has its own keys. Never for messages: those go to ``deliver``.
    :param save_state: ``await save_state(key, value)`` stores ``value`` (at most
        64 KiB of text) under ``key`` (at most 200 characters), encrypted,
        replacing the previous value; it returns once committed.
    """

    http: aiohttp.ClientSession
    deliver: DeliverCallback
    update_status: StatusCallback
    save_media: MediaCallback
    report: ReportCallback
    log: logging.Logger
    max_body: int = 2 * 1024 * 1024
    public_url: str = ""
    history: HistoryCallback = no_history
    load_state: LoadStateCallback = _no_state_to_load
    save_state: SaveStateCallback = _no_state_to_save


@dataclass(frozen=True, slots=True)
class PendingMedia:
    """An attachment whose bytes were never stored (the daemon stopped mid-download).

    :param external_id: the platform id of the message that carried it.
    :param index: its position among that message's attachments.
    :param attachment: what the channel parsed at the time (media id, mime, …).
    :param received_at: when the message arrived, epoch seconds.
    """

    external_id: str
    index: int
    attachment: Attachment
    received_at: float


@dataclass(frozen=True, slots=True)
class SimulatedRequest:
    """An HTTP request a channel builds for ``carebridge simulate``."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


class Channel(ABC):
    """One messaging platform.

    Subclasses set ``name`` (equal to the plugin's entry-point name and to its
    ``[channels.<name>]`` config section) and implement ``send``. Webhook
    platforms return an aiohttp sub-application from ``web_app``; the core
    mounts it at ``/webhooks/<name>``. Pull platforms (IMAP) loop in ``run``.

    :cvar max_text_length: the longest text one platform message may carry;
        ``send`` splits longer texts itself.
    :cvar reply_window: seconds after the recipient's last message during
        which free text may be sent, or None when the platform has no window.
    :cvar label: the platform's display name in relayed prefixes
        (``[#42 Jan · WhatsApp]``); empty: the name with a capital.
    :cvar commands_in_first_line: an agent's command is only the first line
        of their message (mail bodies carry a quoted reply below it).
    :cvar schema: the declared keys of ``[channels.<name>]`` (``ChannelSchema``):
        ``check_config`` validates with it, the daemon masks its secret values
        in logs and ``carebridge init`` writes the section from it. None: the
        channel checks its section itself and secrets are guessed by key name.
    :cvar senders_vouched: the platform vouches for the sender of every
        message it hands over (signed webhooks carry the platform's own user
        ids). False where the sender is only what the message claims (an
        email's From): there a message acts for an agent only when
        ``InboundMessage.authenticated`` is True or it carries a reply token
        the bridge issued to that agent (``meta["reply_token"]``).
    """

    name: ClassVar[str]
    max_text_length: ClassVar[int | None] = None
    reply_window: ClassVar[float | None] = None
    label: ClassVar[str] = ""
    commands_in_first_line: ClassVar[bool] = False
    schema: ClassVar[ChannelSchema | None] = None
    senders_vouched: ClassVar[bool] = True

    @classmethod
    def display_label(cls) -> str:
        """The platform's display name (``label``, or the name with a capital)."""
        return cls.label or cls.name[:1].upper() + cls.name[1:]

    def __init__(self, config: Mapping[str, Any], ctx: ChannelContext) -> None:
        self.config = config
        self.ctx = ctx

    @classmethod
    def check_config(cls, section: Mapping[str, Any]) -> None:
        """Validate this channel's config section without starting anything.

        The default validates with ``schema`` when the channel declares one.

        :raises ConfigError: naming ``channels.<name>.<key>``.
        """
        if cls.schema is not None:
            cls.schema.validate(section)

    @classmethod
    def normalize_address(cls, address: str) -> str:
        """Return the canonical form of a platform address (used for lookups).

        :raises ValueError: when the address cannot be one of this platform's.
        """
        return address.strip()

    async def start(self) -> None:
        """Prepare to send and receive; raise ``ChannelAuthError`` or ``ChannelUnavailable``."""

    async def run(self) -> None:
        """Receive loop for pull platforms; webhook platforms leave it as is."""

    async def stop(self) -> None:
        """Release what ``start`` acquired."""

    @abstractmethod
    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        """Send one message and return the platform's id(s) for it.

        :raises DeliveryError: with ``retryable`` saying whether a retry can help.
        :raises WindowClosedError: when the platform's reply window is closed.
        :raises ChannelAuthFailed: when the platform refuses our credentials.
        """

    def can_reengage(self) -> bool:
        """Whether ``send`` can deliver an ``OutboundMessage(template=True)``.

        True for platforms with an approved re-engagement template configured
        (WhatsApp); the core then offers it when the reply window is closed.
        """
        return False

    async def resume_media(self, pending: Sequence[PendingMedia]) -> None:
        """Fetch media left unstored by an earlier run and hand it to ``ctx.save_media``.

        Called once after ``start()`` with the channel's attachments that have a
        media id but no stored bytes. Platforms that push bytes inline or keep
        no media ids leave this as is.
        """

    async def mark_read(self, sender: str, external_id: str) -> None:
        """Tell the platform an inbound message was seen by an agent (optional)."""

    def web_app(self) -> web.Application | None:
        """Return the webhook sub-application, mounted at ``/webhooks/<name>``."""
        return None

    def pages(self) -> Mapping[str, PageHandler]:
        """Return pages served at top-level paths, outside ``/webhooks/<name>``: ``{"/chat": handler}``.

        For channels whose customers open a page of the bridge itself (a
        website chat). Each path answers GET (and HEAD) with its handler, which
        sets its own headers (Content-Security-Policy, caching). A path must
        be a plain ``/word`` that neither the core (``/api``, ``/healthz``,
        ``/metrics``, ``/webhooks`` and the console's ``/``, ``/login``,
        ``/logout``, ``/conversations``, ``/admin``, ``/static``,
        ``/console``) nor another channel serves: start-up stops naming the
        channel otherwise. Called once, when the web application is built.
        """
        return {}

    @classmethod
    def simulate(cls, section: Mapping[str, Any], sender: str, text: str) -> SimulatedRequest:
        """Build the webhook request the platform would send for ``text`` from ``sender``.

        Used by ``carebridge simulate``; the request must pass the channel's
        own verification (signature) with the configured secrets. Channels that
        cannot simulate keep this default, which raises ``ChannelError``.
        """
        raise ChannelError(f"channel {cls.name!r} cannot simulate inbound messages")


RegisterChannel = Callable[[type[Channel]], None]
