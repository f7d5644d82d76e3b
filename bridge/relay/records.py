"""Read helpers the relay uses often, on top of the store's repositories.

The store (``tx.get_conversation``, ``tx.get_contact``, ``tx.recent_messages``,
…) owns decryption; these add the relay's own questions: which customer
messages wait for an agent, which conversations wait in a queue.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..errors import IntegrityError
from ..store import KeyOwner
from ..store.records import Conversation, Message

log = logging.getLogger(__name__)

WAITING = "waiting"  # status of a customer message not yet relayed to an agent
RELAYED = "relayed"
FAILED = "failed"  # a customer message that could not be relayed (its record failed its integrity check)

_CONV = "id, contact_id, identity_id, channel, status, queue, agent_id, created_at, updated_at, closed_at, language"


def get_conversation(tx: Any, conversation_id: int) -> Conversation | None:
    """Return a conversation, or None."""
    result: Conversation | None = tx.get_conversation(conversation_id)
    return result


def waiting_conversations(tx: Any, queues: tuple[str, ...], limit: int) -> list[Conversation]:
    """Queued conversations of ``queues``, oldest first."""
    if not queues or limit <= 0:
        return []
    marks = ",".join("?" * len(queues))
    rows = tx.conn.execute(
        f"SELECT {_CONV} FROM conversations WHERE status = 'queued' AND queue IN ({marks})"
        " ORDER BY created_at, id LIMIT ?",
        (*queues, limit),
    ).fetchall()
    return [Conversation(*tuple(r)) for r in rows]


def _contact(tx: Any, contact_id: int) -> Any:
    """The contact, or None when missing or when its record fails its integrity check (logged).

    A damaged name must not stop the customer's messages: prefixes fall back
    to "Customer N" and the operator learns from the log which cell it was.
    """
    try:
        return tx.get_contact(contact_id)
    except IntegrityError as err:
        log.error("contact %d is unreadable, relaying without their name: %s", contact_id, err)
        return None


def contact_name(tx: Any, contact_id: int) -> str | None:
    """The contact's display name, decrypted, or None."""
    contact = _contact(tx, contact_id)
    return contact.name if contact is not None else None


def contact_email(tx: Any, contact_id: int) -> tuple[str | None, bool]:
    """The contact's email address (decrypted) and whether it was verified."""
    contact = _contact(tx, contact_id)
    if contact is None:
        return None, False
    return contact.email, bool(contact.email_verified)


def recent_messages(tx: Any, conversation_id: int, n: int, *, exclude_status: str | None = None) -> list[Message]:
    """The last ``n`` messages of a conversation (optionally skipping one status), oldest first."""
    if n <= 0 or tx.get_conversation(conversation_id) is None:
        return []
    if exclude_status is None:
        return list(tx.recent_messages(conversation_id, n, strict=False))
    ids = [
        r[0]
        for r in tx.conn.execute(
            "SELECT id FROM messages WHERE conversation_id = ? AND status != ? ORDER BY id DESC LIMIT ?",
            (conversation_id, exclude_status, n),
        ).fetchall()
    ]
    return [m for m in (tx.get_message(i, strict=False) for i in reversed(ids)) if m is not None]


def unrelayed_messages(tx: Any, conversation_id: int) -> list[Message]:
    """Customer messages not yet relayed to any agent, oldest first."""
    ids = [
        r[0]
        for r in tx.conn.execute(
            "SELECT id FROM messages WHERE conversation_id = ? AND direction = 'in' AND status = ? ORDER BY id",
            (conversation_id, WAITING),
        ).fetchall()
    ]
    return [m for m in (tx.get_message(i, strict=False) for i in ids) if m is not None]


def last_inbound_meta(tx: Any, conversation_id: int) -> dict[str, Any]:
    """The channel meta of the customer's latest message (email threading headers)."""
    row = tx.conn.execute(
        "SELECT id FROM messages WHERE conversation_id = ? AND direction = 'in' ORDER BY id DESC LIMIT 1",
        (conversation_id,),
    ).fetchone()
    if row is None:
        return {}
    message = tx.get_message(row[0], strict=False)
    return dict(message.meta) if message is not None else {}


def read_mark_target(tx: Any, message_id: int) -> tuple[str, str, str] | None:
    """``(channel, customer address, platform id)`` of a customer message, to mark it read."""
    message = tx.get_message(message_id, strict=False)
    if message is None or message.direction != "in" or not message.external_id:
        return None
    conv = tx.get_conversation(message.conversation_id)
    if conv is None or conv.identity_id is None:
        return None
    identity = tx.get_identity(conv.identity_id)
    if identity is None:
        return None
    return str(message.channel), str(identity.address), str(message.external_id)


def write_event(
    tx: Any,
    conv: Conversation,
    kind: str,
    *,
    from_agent: int | None = None,
    to_agent: int | None = None,
    detail: dict[str, Any] | None = None,
    expires_at: float | None = None,
) -> int:
    """Append a conversation event; ``detail`` is sealed under the customer's key."""
    event_id = tx.next_id("events")
    sealed = (
        tx.seal(KeyOwner.contact(conv.contact_id), "events", "detail", event_id, json.dumps(detail)) if detail else None
    )
    tx.conn.execute(
        "INSERT INTO events (id, conversation_id, kind, from_agent, to_agent, detail, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (event_id, conv.id, kind, from_agent, to_agent, sealed, tx.now(), expires_at),
    )
    return int(event_id)
