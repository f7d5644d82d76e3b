"""Decrypted records handed out by the repository methods (plain frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
