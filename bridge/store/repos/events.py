"""Conversation events: assignments, requeues, transfers, declines, closes.

``detail`` (a transfer note, a queue name) is sealed under the customer's key:
erasing the customer erases their events' details too.
"""

from __future__ import annotations

import json
from typing import Any

from bridge.errors import IntegrityError
from bridge.store.keyring import KeyOwner
from bridge.store.records import ConversationEvent, PendingTransfer
from bridge.store.session import Session


class EventsRepo:
    """``events``."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def write(
        self,
        conversation_id: int,
        contact_id: int,
        kind: str,
        *,
        from_agent: int | None = None,
        to_agent: int | None = None,
        detail: dict[str, Any] | None = None,
        expires_at: float | None = None,
    ) -> int:
        """Append an event; ``detail`` is sealed under the contact's key."""
        event_id = self._s.next_id("events")
        sealed = (
            self._s.seal(KeyOwner.contact(contact_id), "events", "detail", event_id, json.dumps(detail))
            if detail
            else None
        )
        self._s.execute(
            "INSERT INTO events (id, conversation_id, kind, from_agent, to_agent, detail, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (event_id, conversation_id, kind, from_agent, to_agent, sealed, self._s.now(), expires_at),
        )
        return int(event_id)

    def has(self, conversation_id: int, kind: str) -> bool:
        """Whether the conversation has at least one event of ``kind``."""
        row = self._s.execute(
            "SELECT 1 FROM events WHERE conversation_id = ? AND kind = ? LIMIT 1", (conversation_id, kind)
        ).fetchone()
        return row is not None

    def pending_transfer(self, kind: str, agent_id: int, conversation_id: int | None) -> PendingTransfer | None:
        """The latest ``kind`` event to ``agent_id`` of a conversation they still hold, not superseded.

        Superseded: assigned or requeued since, so the transfer is history, not
        the reason they hold it.
        """
        sql = (
            "SELECT e.id, e.conversation_id, e.from_agent, e.expires_at FROM events e"
            " JOIN conversations c ON c.id = e.conversation_id"
            " WHERE e.kind = ? AND e.to_agent = ? AND c.agent_id = ? AND c.status = 'assigned'"
            " AND NOT EXISTS (SELECT 1 FROM events a WHERE a.conversation_id = e.conversation_id"
            " AND a.kind IN ('assigned', 'requeued') AND a.id > e.id)"
        )
        params: list[object] = [kind, agent_id, agent_id]
        if conversation_id is not None:
            sql += " AND e.conversation_id = ?"
            params.append(conversation_id)
        row = self._s.execute(sql + " ORDER BY e.id DESC LIMIT 1", params).fetchone()
        if row is None:
            return None
        return PendingTransfer(int(row[0]), int(row[1]), row[2], row[3])

    def expire(self, event_id: int, at: float) -> None:
        """End an event's time window now (a used ``/decline``)."""
        self._s.execute("UPDATE events SET expires_at = ? WHERE id = ?", (at, event_id))

    def after(self, after_id: int, limit: int) -> list[ConversationEvent]:
        """Events with an id above ``after_id``, oldest first (live updates; details stay sealed)."""
        rows = self._s.execute(
            "SELECT id, conversation_id, kind, from_agent, to_agent, created_at FROM events WHERE id > ?"
            " ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [ConversationEvent(int(r[0]), int(r[1]), str(r[2]), r[3], r[4], float(r[5])) for r in rows]

    def last_id(self) -> int:
        """The highest event id so far (0: none)."""
        (top,) = self._s.execute("SELECT MAX(id) FROM events").fetchone()
        return int(top or 0)

    def notes(self, conversation_id: int, contact_id: int) -> list[str]:
        """The notes written with the conversation's events (``detail["note"]`` of transfers).

        A detail that fails its integrity check is skipped: it cannot be shown, so it cannot be matched.
        """
        rows = self._s.execute(
            "SELECT id, detail FROM events WHERE conversation_id = ? AND detail IS NOT NULL ORDER BY id",
            (conversation_id,),
        ).fetchall()
        found: list[str] = []
        for event_id, blob in rows:
            try:
                text = self._s.open_optional(KeyOwner.contact(contact_id), "events", "detail", event_id, blob)
            except IntegrityError:
                continue
            detail = json.loads(text) if text else None
            if isinstance(detail, dict) and isinstance(detail.get("note"), str) and detail["note"]:
                found.append(detail["note"])
        return found
