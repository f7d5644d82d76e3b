"""Conversations: one per stretch of contact with a customer on one identity."""

from __future__ import annotations

from typing import Any

from ..errors import UnknownRecordError
from .base import TxBase
from .keyring import KeyOwner
from .records import Conversation

_COLUMNS = "id, contact_id, identity_id, channel, status, queue, agent_id, created_at, updated_at, closed_at, language"
_STATUSES = ("queued", "assigned", "closed")
_UNSET: Any = object()


class ConversationsMixin(TxBase):
    """Repository methods for ``conversations``."""

    def create_conversation(
        self,
        contact_id: int,
        identity_id: int | None,
        channel: str,
        *,
        queue: str = "default",
        language: str | None = None,
        status: str = "queued",
    ) -> Conversation:
        """Start a new conversation (status ``queued`` unless told otherwise)."""
        if status not in _STATUSES:
            raise ValueError(f"unknown conversation status {status!r}")
        conversation_id = self.next_id("conversations")
        now = self.now()
        self.conn.execute(
            f"INSERT INTO conversations({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, NULL, ?)",
            (conversation_id, contact_id, identity_id, channel, status, queue, now, now, language),
        )
        return Conversation(
            conversation_id, contact_id, identity_id, channel, status, queue, None, now, now, None, language
        )

    def get_conversation(self, conversation_id: int) -> Conversation | None:
        """One conversation, or None."""
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        return None if row is None else Conversation(*row)

    def open_conversation(self, identity_id: int) -> Conversation | None:
        """The newest conversation of this identity that is not closed, or None."""
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM conversations WHERE identity_id = ? AND status != 'closed'"
            " ORDER BY id DESC LIMIT 1",
            (identity_id,),
        ).fetchone()
        return None if row is None else Conversation(*row)

    def conversations_of(self, contact_id: int) -> list[Conversation]:
        """Every conversation of a contact, oldest first."""
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM conversations WHERE contact_id = ? ORDER BY id", (contact_id,)
        ).fetchall()
        return [Conversation(*r) for r in rows]

    def update_conversation(
        self,
        conversation_id: int,
        *,
        status: str = _UNSET,
        queue: str = _UNSET,
        agent_id: int | None = _UNSET,
        language: str | None = _UNSET,
    ) -> None:
        """Change status/queue/agent/language; ``updated_at`` moves, ``closed_at`` follows status."""
        sets = ["updated_at = ?"]
        now = self.now()
        values: list[Any] = [now]
        if status is not _UNSET:
            if status not in _STATUSES:
                raise ValueError(f"unknown conversation status {status!r}")
            sets += ["status = ?", "closed_at = ?"]
            values += [status, now if status == "closed" else None]
        for column, value in (("queue", queue), ("agent_id", agent_id), ("language", language)):
            if value is not _UNSET:
                sets.append(f"{column} = ?")
                values.append(value)
        values.append(conversation_id)
        cursor = self.conn.execute(f"UPDATE conversations SET {', '.join(sets)} WHERE id = ?", values)
        if cursor.rowcount != 1:
            raise UnknownRecordError(f"no conversation {conversation_id}")

    def close_conversation(self, conversation_id: int) -> None:
        """Close a conversation (keeps its agent for the record)."""
        self.update_conversation(conversation_id, status="closed")

    def conversation_owner(self, conversation_id: int) -> KeyOwner:
        """The key owner of a conversation's data: its contact.

        :raises UnknownRecordError: when the conversation does not exist.
        """
        row = self.conn.execute("SELECT contact_id FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None:
            raise UnknownRecordError(f"no conversation {conversation_id}")
        return KeyOwner.contact(row[0])
