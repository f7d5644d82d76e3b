"""Decrypted records handed out by the repository methods (plain frozen dataclasses)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.models import Address
from bridge.store.keyring import KeyOwner


@dataclass(frozen=True, slots=True)
class Contact:
    """A customer. ``name``/``email`` are decrypted; None when unknown."""

    id: int
    name: str | None
    email: str | None
    email_verified: bool
    created_at: float


@dataclass(frozen=True, slots=True)
class Identity:
    """One address of a contact on one channel (``whatsapp`` + ``+3161…``)."""

    id: int
    contact_id: int
    channel: str
    address: str
    last_inbound_at: float | None
    created_at: float


@dataclass(frozen=True, slots=True)
class Conversation:
    """A conversation with a contact; ``status`` is queued, assigned or closed."""

    id: int
    contact_id: int
    identity_id: int | None
    channel: str
    status: str
    queue: str
    agent_id: int | None
    created_at: float
    updated_at: float
    closed_at: float | None
    language: str | None


@dataclass(frozen=True, slots=True)
class Message:
    """A stored message, decrypted.

    ``text`` is None and ``unreadable`` True when the record failed its
    integrity check and the caller asked not to raise (``strict=False``).
    """

    id: int
    conversation_id: int
    direction: str
    channel: str
    text: str | None
    created_at: float
    status: str
    sensitive: bool
    agent_id: int | None = None
    external_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    unreadable: bool = False


@dataclass(frozen=True, slots=True)
class AttachmentRecord:
    """An attachment row; its bytes (if fetched) are in an encrypted file under media_dir."""

    id: int
    message_id: int
    idx: int
    kind: str
    mime: str | None
    meta: dict[str, Any]
    file: str | None
    size: int | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit-log entry, detail decrypted."""

    id: int
    at: float
    actor: str
    action: str
    subject: str | None
    detail: Any


@dataclass(frozen=True, slots=True)
class AuditCheck:
    """Result of walking the audit hash chain."""

    ok: bool
    count: int
    bad_id: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Erasure:
    """What erasing a contact removed."""

    contact_id: int
    conversations: int
    messages: int
    files: int


@dataclass(frozen=True, slots=True)
class Agent:
    """One agent, decrypted.

    :param channel: the preferred channel (``whatsapp``, ``messenger``, ``email``, ``console``).
    :param address: the platform address on that channel (``""`` for the console).
    """

    id: int
    name: str
    role: str
    channel: str
    address: str
    email: str | None
    capacity: int
    queues: tuple[str, ...]
    disabled: bool
    current_conversation_id: int | None

    @property
    def preferred(self) -> Address:
        """Where relayed customer messages and notices go."""
        return Address(self.channel, self.address)


@dataclass(frozen=True, slots=True)
class OnlineAgent:
    """An enabled agent on shift, with what routing needs to know of their load.

    :param open_conversations: conversations assigned to them and not closed.
    :param last_activity: the newest ``updated_at`` of their conversations (None: never had one).
    :param shift_started: when their current shift began.
    """

    agent: Agent
    open_conversations: int
    last_activity: float | None
    shift_started: float


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row, decrypted.

    :param uncertain_at: when a send of it last ended without an answer (the
        connection dropped after the request was written, or the daemon cut the
        send off at shutdown): the platform may already have it.
    """

    id: int
    conversation_id: int | None
    message_id: int | None
    owner: KeyOwner
    channel: str
    recipient_kind: str
    recipient_id: int
    recipient: str
    text: str
    reply_to: str | None
    template: bool
    meta: Mapping[str, str] = field(default_factory=dict)
    status: str = "pending"
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str | None = None
    hold_reason: str | None = None
    created_at: float = 0.0
    uncertain_at: float | None = None


@dataclass(frozen=True, slots=True)
class DuePlan:
    """One round of the outbox worker: what to send now, and when to look again.

    :param rows: ``(delivery id, channel, behind_hold)``, soonest first; ``behind_hold``
        marks free text queued behind a held delivery to the same person.
    :param next_at: when the next row that is not due yet will be (None: none).
    """

    rows: list[tuple[int, str, bool]]
    next_at: float | None


@dataclass(frozen=True, slots=True)
class EarlyStatus:
    """A platform report that arrived before the send it names was recorded."""

    status: str
    error_code: str | None
    error_title: str | None
    window_closed: bool


@dataclass(frozen=True, slots=True)
class PendingTransfer:
    """The latest transfer of a conversation to an agent who may still decline it."""

    event_id: int
    conversation_id: int
    from_agent: int | None
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A console session that has not expired (its token is never kept, only a keyed hash of it)."""

    id: int
    agent_id: int
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class ConversationEvent:
    """One row of a conversation's event log (its sealed detail left out)."""

    id: int
    conversation_id: int
    kind: str
    from_agent: int | None
    to_agent: int | None
    created_at: float
