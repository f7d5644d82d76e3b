"""Read helpers the relay uses often, on top of the store's repositories.

The store (``tx.conversations``, ``tx.contacts``, ``tx.messages``, …) owns
statements and decryption; these add the relay's own questions and its
tolerance of damaged records: which customer messages wait for an agent, a
contact's name for a prefix even when their record fails its integrity check.
"""

from __future__ import annotations

import logging
from typing import Any

from bridge.errors import IntegrityError
from bridge.store import Contact, Conversation, Message, Tx

log = logging.getLogger(__name__)

WAITING = "waiting"  # status of a customer message not yet relayed to an agent
RELAYED = "relayed"
FAILED = "failed"  # a customer message that could not be relayed (its record failed its integrity check)


def _contact(tx: Tx, contact_id: int) -> Contact | None:
    """The contact, or None when missing or when its record fails its integrity check (logged).

    A damaged name must not stop the customer's messages: prefixes fall back
    to "Customer N" and the operator learns from the log which cell it was.
    """
    try:
        return tx.contacts.get(contact_id)
    except IntegrityError as err:
        log.error("contact %d is unreadable, relaying without their name: %s", contact_id, err)
        return None


def contact_name(tx: Tx, contact_id: int) -> str | None:
    """The contact's display name, decrypted, or None."""
    contact = _contact(tx, contact_id)
    return contact.name if contact is not None else None


def contact_email(tx: Tx, contact_id: int) -> tuple[str | None, bool]:
    """The contact's email address (decrypted) and whether it was verified."""
    contact = _contact(tx, contact_id)
    if contact is None:
        return None, False
    return contact.email, bool(contact.email_verified)


def recent_messages(tx: Tx, conversation_id: int, n: int, *, exclude_status: str | None = None) -> list[Message]:
    """The last ``n`` messages of a conversation (optionally skipping one status), oldest first."""
    if n <= 0 or tx.conversations.get(conversation_id) is None:
        return []
    if exclude_status is None:
        return list(tx.messages.recent(conversation_id, n, strict=False))
    ids = tx.messages.recent_ids_excluding(conversation_id, exclude_status, n)
    return [m for m in (tx.messages.get(i, strict=False) for i in ids) if m is not None]


def unrelayed_messages(tx: Tx, conversation_id: int) -> list[Message]:
    """Customer messages not yet relayed to any agent, oldest first."""
    ids = tx.messages.inbound_ids_with_status(conversation_id, WAITING)
    return [m for m in (tx.messages.get(i, strict=False) for i in ids) if m is not None]


def last_inbound_meta(tx: Tx, conversation_id: int) -> dict[str, Any]:
    """The channel meta of the customer's latest message (email threading headers)."""
    message_id = tx.messages.last_inbound_id(conversation_id)
    if message_id is None:
        return {}
    message = tx.messages.get(message_id, strict=False)
    return dict(message.meta) if message is not None else {}


def read_mark_target(tx: Tx, message_id: int) -> tuple[str, str, str] | None:
    """``(channel, customer address, platform id)`` of a customer message, to mark it read."""
    message = tx.messages.get(message_id, strict=False)
    if message is None or message.direction != "in" or not message.external_id:
        return None
    conv = tx.conversations.get(message.conversation_id)
    if conv is None or conv.identity_id is None:
        return None
    identity = tx.contacts.get_identity(conv.identity_id)
    if identity is None:
        return None
    return str(message.channel), str(identity.address), str(message.external_id)


def write_event(
    tx: Tx,
    conv: Conversation,
    kind: str,
    *,
    from_agent: int | None = None,
    to_agent: int | None = None,
    detail: dict[str, Any] | None = None,
    expires_at: float | None = None,
) -> int:
    """Append a conversation event; ``detail`` is sealed under the customer's key."""
    return tx.events.write(
        conv.id, conv.contact_id, kind, from_agent=from_agent, to_agent=to_agent, detail=detail, expires_at=expires_at
    )
