"""Conversations: one per stretch of contact with a customer on one identity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.errors import UnknownRecordError
from bridge.store.keyring import KeyOwner
from bridge.store.records import Conversation
from bridge.store.session import Session

_COLUMNS = "id, contact_id, identity_id, channel, status, queue, agent_id, created_at, updated_at, closed_at, language"
_STATUSES = ("queued", "assigned", "closed")
_UNSET: Any = object()


class ConversationsRepo:
    """``conversations``: who a stretch of contact is with, and where it stands (plain columns)."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def create(
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
        conversation_id = self._s.next_id("conversations")
        now = self._s.now()
        self._s.execute(
            f"INSERT INTO conversations({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, NULL, ?)",
            (conversation_id, contact_id, identity_id, channel, status, queue, now, now, language),
        )
        return Conversation(
            conversation_id, contact_id, identity_id, channel, status, queue, None, now, now, None, language
        )

    def get(self, conversation_id: int) -> Conversation | None:
        """One conversation, or None."""
        row = self._s.execute(f"SELECT {_COLUMNS} FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        return None if row is None else Conversation(*row)

    def open_for_identity(self, identity_id: int) -> Conversation | None:
        """The newest conversation of this identity that is not closed, or None."""
        row = self._s.execute(
            f"SELECT {_COLUMNS} FROM conversations WHERE identity_id = ? AND status != 'closed'"
            " ORDER BY id DESC LIMIT 1",
            (identity_id,),
        ).fetchone()
        return None if row is None else Conversation(*row)

    def of_contact(self, contact_id: int) -> list[Conversation]:
        """Every conversation of a contact, oldest first."""
        rows = self._s.execute(
            f"SELECT {_COLUMNS} FROM conversations WHERE contact_id = ? ORDER BY id", (contact_id,)
        ).fetchall()
        return [Conversation(*r) for r in rows]

    def update(
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
        now = self._s.now()
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
        cursor = self._s.execute(f"UPDATE conversations SET {', '.join(sets)} WHERE id = ?", values)
        if cursor.rowcount != 1:
            raise UnknownRecordError(f"no conversation {conversation_id}")

    def close(self, conversation_id: int) -> None:
        """Close a conversation (keeps its agent for the record)."""
        self.update(conversation_id, status="closed")

    def owner(self, conversation_id: int) -> KeyOwner:
        """The key owner of a conversation's data: its contact.

        :raises UnknownRecordError: when the conversation does not exist.
        """
        row = self._s.execute("SELECT contact_id FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None:
            raise UnknownRecordError(f"no conversation {conversation_id}")
        return KeyOwner.contact(row[0])

    def waiting(self, queues: Sequence[str], limit: int) -> list[Conversation]:
        """Queued conversations of ``queues``, oldest first."""
        if not queues or limit <= 0:
            return []
        marks = ",".join("?" * len(queues))
        rows = self._s.execute(
            f"SELECT {_COLUMNS} FROM conversations WHERE status = 'queued' AND queue IN ({marks})"
            " ORDER BY created_at, id LIMIT ?",
            (*queues, limit),
        ).fetchall()
        return [Conversation(*r) for r in rows]

    def page(
        self,
        *,
        visible_to: tuple[int, Sequence[str]] | None,
        status: str | None = None,
        queue: str | None = None,
        before: tuple[float, int] | None = None,
        limit: int = 50,
    ) -> list[Conversation]:
        """Conversations, most recently active first, for a listing page.

        :param visible_to: ``(agent id, their queues)``: only conversations that
            agent holds (or held last, once closed) and the waiting ones of their queues; None: all.
        :param before: ``(updated_at, id)`` of the last row of the previous page.
        """
        where: list[str] = []
        args: list[Any] = []
        if visible_to is not None:
            agent_id, queues = visible_to
            if queues:
                marks = ",".join("?" * len(queues))
                where.append(f"(agent_id = ? OR (status = 'queued' AND queue IN ({marks})))")
                args += [agent_id, *queues]
            else:
                where.append("agent_id = ?")
                args.append(agent_id)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if queue is not None:
            where.append("queue = ?")
            args.append(queue)
        if before is not None:
            where.append("(updated_at < ? OR (updated_at = ? AND id < ?))")
            args += [before[0], before[0], before[1]]
        sql = f"SELECT {_COLUMNS} FROM conversations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._s.execute(sql + " ORDER BY updated_at DESC, id DESC LIMIT ?", (*args, limit)).fetchall()
        return [Conversation(*r) for r in rows]

    def assigned_ids(self, agent_id: int, limit: int | None = None) -> list[int]:
        """The agent's assigned conversations, most recently active first."""
        rows = self._s.execute(
            "SELECT id FROM conversations WHERE agent_id = ? AND status = 'assigned'"
            " ORDER BY updated_at DESC, id DESC LIMIT ?",
            (agent_id, -1 if limit is None else limit),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def count_assigned(self, agent_id: int) -> int:
        """How many conversations are assigned to the agent and not closed."""
        (count,) = self._s.execute(
            "SELECT COUNT(*) FROM conversations WHERE agent_id = ? AND status = 'assigned'", (agent_id,)
        ).fetchone()
        return int(count)

    def agent_load(self, agent_id: int) -> tuple[int, float | None]:
        """``(open conversations, last activity on any of theirs)`` of an agent (routing)."""
        count, last = self._s.execute(
            "SELECT COUNT(CASE WHEN status = 'assigned' THEN 1 END), MAX(updated_at)"
            " FROM conversations WHERE agent_id = ?",
            (agent_id,),
        ).fetchone()
        return int(count), (float(last) if last is not None else None)

    def assign(self, conversation_id: int, agent_id: int) -> None:
        """Give the conversation to ``agent_id`` (status ``assigned``)."""
        self._s.execute(
            "UPDATE conversations SET agent_id = ?, status = 'assigned', updated_at = ? WHERE id = ?",
            (agent_id, self._s.now(), conversation_id),
        )

    def requeue(self, conversation_id: int, queue: str) -> None:
        """Put the conversation back to waiting in ``queue``, without an agent."""
        self._s.execute(
            "UPDATE conversations SET status = 'queued', agent_id = NULL, queue = ?, updated_at = ? WHERE id = ?",
            (queue, self._s.now(), conversation_id),
        )

    def touch(self, conversation_id: int) -> None:
        """Mark the conversation active now (``updated_at``)."""
        self._s.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (self._s.now(), conversation_id))

    def count_of_contact(self, contact_id: int) -> tuple[int, int]:
        """``(conversations, messages)`` of a contact (the erase confirmation)."""
        conversations = self._s.execute(
            "SELECT count(*) FROM conversations WHERE contact_id = ?", (contact_id,)
        ).fetchone()[0]
        messages = self._s.execute(
            "SELECT count(*) FROM messages"
            " WHERE conversation_id IN (SELECT id FROM conversations WHERE contact_id = ?)",
            (contact_id,),
        ).fetchone()[0]
        return int(conversations), int(messages)
