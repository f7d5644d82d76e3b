"""Messages: encrypted under the contact's key, deduplicated by platform id.

This is the hot path of every webhook: one statement on the writer
connection, one blind index and one or two seals per message.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from bridge.errors import IntegrityError
from bridge.store import crypto
from bridge.store.keyring import KeyOwner
from bridge.store.records import Message
from bridge.store.repos.conversations import ConversationsRepo
from bridge.store.session import Session

log = logging.getLogger("carebridge.store")

_DIRECTIONS = ("in", "out", "note", "system")
_COLUMNS = "id, conversation_id, direction, channel, agent_id, external_id, status, sensitive, body, meta, created_at"


def external_kind(channel: str) -> str:
    """Blind-index kind of a platform message id on ``channel``."""
    return f"message:{channel}"


#: Outbound message statuses in the order they may move forward (never back from read to delivered).
_STATUS_RANK = {"pending": 0, "held": 1, "sent": 2, "delivered": 3, "read": 4, "failed": 5}


class MessagesRepo:
    """``messages``: sealed under the conversation's contact key, found by platform id's blind index."""

    def __init__(self, session: Session, conversations: ConversationsRepo) -> None:
        self._s = session
        self._conversations = conversations

    def insert(
        self,
        conversation_id: int,
        *,
        direction: str,
        channel: str,
        text: str,
        external_id: str | None = None,
        reply_to: str | None = None,
        agent_id: int | None = None,
        status: str | None = None,
        sensitive: bool = False,
        meta: dict[str, Any] | None = None,
        created_at: float | None = None,
        owner: KeyOwner | None = None,
    ) -> int | None:
        """Store one message; return its id, or None when ``(channel, external_id)`` is already stored.

        :param owner: the conversation's key owner if the caller knows it (saves a lookup).
        :param status: defaults to ``received`` for ``in`` and ``stored`` otherwise.
        """
        if direction not in _DIRECTIONS:
            raise ValueError(f"unknown message direction {direction!r}")
        owner = owner or self._conversations.owner(conversation_id)
        aead = self._s.key_for(owner, create=True)
        message_id = self._s.next_id("messages")
        external_index = external_blob = meta_blob = None
        if external_id is not None:
            external_index = self._s.blind(external_kind(channel), external_id)
            external_blob = crypto.seal(aead, b"messages.external_id.%d" % message_id, external_id.encode())
        if meta:
            meta_blob = crypto.seal(aead, b"messages.meta.%d" % message_id, json.dumps(meta).encode())
        # Dedupe by the UNIQUE index (cheaper than a SELECT before every insert).
        inserted = self._s.execute(
            "INSERT INTO messages(id, conversation_id, direction, channel, agent_id, external_index, external_id,"
            " reply_to_index, status, sensitive, body, meta, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (channel, external_index) DO NOTHING",
            (
                message_id,
                conversation_id,
                direction,
                channel,
                agent_id,
                external_index,
                external_blob,
                None if reply_to is None else self._s.blind(external_kind(channel), reply_to),
                status or ("received" if direction == "in" else "stored"),
                int(sensitive),
                crypto.seal(aead, b"messages.body.%d" % message_id, text.encode()),
                meta_blob,
                self._s.now() if created_at is None else created_at,
            ),
        ).rowcount
        return message_id if inserted else None

    def id_by_external(self, channel: str, external_id: str) -> int | None:
        """The id of the message the platform calls ``external_id`` on ``channel``."""
        row = self._s.execute(
            "SELECT id FROM messages WHERE channel = ? AND external_index = ?",
            (channel, self._s.blind(external_kind(channel), external_id)),
        ).fetchone()
        return None if row is None else row[0]

    def set_status_by_external(self, channel: str, external_id: str, status: str) -> int | None:
        """Set the status of a message found by platform id; return its id or None."""
        message_id = self.id_by_external(channel, external_id)
        if message_id is not None:
            self._s.execute("UPDATE messages SET status = ? WHERE id = ?", (status, message_id))
        return message_id

    def set_status(self, message_id: int, status: str) -> None:
        """Set the status of a message by id."""
        self._s.execute("UPDATE messages SET status = ? WHERE id = ?", (status, message_id))

    def set_external_id(self, message_id: int, external_id: str, *, status: str | None = None) -> None:
        """Record the platform id of a message we sent (after the platform's 2xx)."""
        row = self._s.execute(
            "SELECT m.channel, c.contact_id FROM messages m JOIN conversations c ON c.id = m.conversation_id"
            " WHERE m.id = ?",
            (message_id,),
        ).fetchone()
        if row is None:
            return
        channel, contact_id = row
        owner = KeyOwner.contact(contact_id)
        self._s.execute(
            "UPDATE messages SET external_index = ?, external_id = ?, status = coalesce(?, status) WHERE id = ?",
            (
                self._s.blind(external_kind(channel), external_id),
                self._s.seal(owner, "messages", "external_id", message_id, external_id),
                status,
                message_id,
            ),
        )

    def _open_row(self, row: tuple[Any, ...], owner: KeyOwner) -> tuple[str, str | None, str | None]:
        """Decrypt body, external id and meta; fast path first (history pages are hot)."""
        message_id = row[0]
        try:
            aead = self._s.key_for(owner, create=False)
            text = crypto.open_blob(aead, b"messages.body.%d" % message_id, row[8]).decode()
            external = None if row[5] is None else crypto.open_blob(
                aead, b"messages.external_id.%d" % message_id, row[5]).decode()  # fmt: skip
            meta = None if row[9] is None else crypto.open_blob(aead, b"messages.meta.%d" % message_id, row[9]).decode()
            return text, external, meta
        except (crypto.DecryptError, IntegrityError):
            pass
        # slow path: the checked primitives raise an IntegrityError naming the cell
        return (
            self._s.open_text(owner, "messages", "body", message_id, row[8]),
            self._s.open_optional(owner, "messages", "external_id", message_id, row[5]),
            self._s.open_optional(owner, "messages", "meta", message_id, row[9]),
        )

    def _message(self, row: tuple[Any, ...], owner: KeyOwner, strict: bool) -> Message:
        message_id = row[0]
        try:
            text, external, meta_text = self._open_row(row, owner)
        except IntegrityError as err:
            if strict:
                raise
            log.error("unreadable record: %s", err)
            return Message(message_id, row[1], row[2], row[3], None, row[10], row[6], bool(row[7]), row[4],
                           unreadable=True)  # fmt: skip
        return Message(
            id=message_id,
            conversation_id=row[1],
            direction=row[2],
            channel=row[3],
            agent_id=row[4],
            external_id=external,
            status=row[6],
            sensitive=bool(row[7]),
            text=text,
            meta=json.loads(meta_text) if meta_text else {},
            created_at=row[10],
        )

    def get(self, message_id: int, *, strict: bool = True) -> Message | None:
        """One message, decrypted."""
        row = self._s.execute(
            f"SELECT {_COLUMNS}, (SELECT contact_id FROM conversations c WHERE c.id = m.conversation_id)"
            " FROM messages m WHERE id = ?",
            (message_id,),
        ).fetchone()
        if row is None:
            return None
        return self._message(row, KeyOwner.contact(row[11]), strict)

    def recent(
        self, conversation_id: int, limit: int = 50, *, before_id: int | None = None, strict: bool = True
    ) -> list[Message]:
        """The newest ``limit`` messages of a conversation (before ``before_id``), oldest first.

        :param strict: raise :class:`IntegrityError` on a tampered record; with
            False it is returned with ``unreadable=True`` and logged.
        """
        owner = self._conversations.owner(conversation_id)
        rows = self._s.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE conversation_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (conversation_id, before_id if before_id is not None else 1 << 62, limit),
        ).fetchall()
        return [self._message(r, owner, strict) for r in reversed(rows)]

    def after(self, after_id: int, limit: int, *, strict: bool = False) -> list[Message]:
        """Messages of any conversation with an id above ``after_id``, oldest first (live updates)."""
        rows = self._s.execute(
            f"SELECT {_COLUMNS}, (SELECT contact_id FROM conversations c WHERE c.id = m.conversation_id)"
            " FROM messages m WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [self._message(r, KeyOwner.contact(r[11]), strict) for r in rows if r[11] is not None]

    def last_id(self) -> int:
        """The highest message id so far (0: none)."""
        (top,) = self._s.execute("SELECT MAX(id) FROM messages").fetchone()
        return int(top or 0)

    def of_conversation(self, conversation_id: int, *, strict: bool = True) -> list[Message]:
        """Every message of a conversation, oldest first."""
        owner = self._conversations.owner(conversation_id)
        rows = self._s.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
        ).fetchall()
        return [self._message(r, owner, strict) for r in rows]

    def recent_ids_excluding(self, conversation_id: int, status: str, limit: int) -> list[int]:
        """Ids of the newest ``limit`` messages whose status is not ``status``, oldest first."""
        rows = self._s.execute(
            "SELECT id FROM messages WHERE conversation_id = ? AND status != ? ORDER BY id DESC LIMIT ?",
            (conversation_id, status, limit),
        ).fetchall()
        return [int(r[0]) for r in reversed(rows)]

    def inbound_ids_with_status(self, conversation_id: int, status: str) -> list[int]:
        """Ids of the customer's messages in ``status`` (e.g. not yet relayed), oldest first."""
        rows = self._s.execute(
            "SELECT id FROM messages WHERE conversation_id = ? AND direction = 'in' AND status = ? ORDER BY id",
            (conversation_id, status),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def last_inbound_id(self, conversation_id: int) -> int | None:
        """The id of the customer's latest message in the conversation, or None."""
        row = self._s.execute(
            "SELECT id FROM messages WHERE conversation_id = ? AND direction = 'in' ORDER BY id DESC LIMIT 1",
            (conversation_id,),
        ).fetchone()
        return None if row is None else int(row[0])

    def unanswered(self, conversation_id: int) -> int:
        """How many customer messages came after the last reply or note of an agent."""
        (count,) = self._s.execute(
            "SELECT COUNT(*) FROM messages WHERE conversation_id = ? AND direction = 'in' AND id > COALESCE("
            "(SELECT MAX(id) FROM messages WHERE conversation_id = ? AND direction IN ('out', 'note')), 0)",
            (conversation_id, conversation_id),
        ).fetchone()
        return int(count)

    def set_inbound_status(self, message_id: int, status: str) -> None:
        """Set the status of a customer message (relayed, failed, …); other directions are left alone."""
        self._s.execute("UPDATE messages SET status = ? WHERE id = ? AND direction = 'in'", (status, message_id))

    def author(self, message_id: int) -> int | None:
        """The agent who wrote a message, or None."""
        row = self._s.execute("SELECT agent_id FROM messages WHERE id = ?", (message_id,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def advance_status(self, message_id: int, status: str) -> None:
        """Move an outbound message's status forward (never back from read to delivered).

        ``failed``, ``held`` and ``pending`` always apply: they are outcomes, not progress.
        """
        row = self._s.execute("SELECT status FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            return
        if status in ("failed", "held", "pending") or _STATUS_RANK.get(status, 0) > _STATUS_RANK.get(row[0], -1):
            self._s.execute("UPDATE messages SET status = ? WHERE id = ?", (status, message_id))
