"""Messages: encrypted under the contact's key, deduplicated by platform id.

This is the hot path of every webhook: plain ``sqlite3`` statements on the
writer connection, one blind index and one or two seals per message.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

from .. import crypto
from ..errors import IntegrityError
from .base import TxBase
from .keyring import KeyOwner
from .records import Message

log = logging.getLogger("carebridge.store")

_DIRECTIONS = ("in", "out", "note", "system")
_COLUMNS = "id, conversation_id, direction, channel, agent_id, external_id, status, sensitive, body, meta, created_at"


def external_kind(channel: str) -> str:
    """Blind-index kind of a platform message id on ``channel``."""
    return f"message:{channel}"


class MessagesMixin(TxBase):
    """Repository methods for ``messages``."""

    def insert_message(
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
        owner = owner or self.conversation_owner(conversation_id)
        aead = self._key(owner, create=True)[1]
        message_id = self.next_id("messages")
        external_index = external_blob = meta_blob = None
        if external_id is not None:
            external_index = self.blind(external_kind(channel), external_id)
            external_blob = crypto.seal(aead, b"messages.external_id.%d" % message_id, external_id.encode())
        if meta:
            meta_blob = crypto.seal(aead, b"messages.meta.%d" % message_id, json.dumps(meta).encode())
        try:
            self.conn.execute(
                "INSERT INTO messages(id, conversation_id, direction, channel, agent_id, external_index, external_id,"
                " reply_to_index, status, sensitive, body, meta, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    message_id,
                    conversation_id,
                    direction,
                    channel,
                    agent_id,
                    external_index,
                    external_blob,
                    None if reply_to is None else self.blind(external_kind(channel), reply_to),
                    status or ("received" if direction == "in" else "stored"),
                    int(sensitive),
                    crypto.seal(aead, b"messages.body.%d" % message_id, text.encode()),
                    meta_blob,
                    self.now() if created_at is None else created_at,
                ),
            )
        except sqlite3.IntegrityError as err:
            # dedupe by the UNIQUE index: cheaper than a SELECT before every insert
            if external_index is not None and "messages.external_index" in str(err):
                return None
            raise
        return message_id

    def message_id_by_external(self, channel: str, external_id: str) -> int | None:
        """The id of the message the platform calls ``external_id`` on ``channel``."""
        row = self.conn.execute(
            "SELECT id FROM messages WHERE channel = ? AND external_index = ?",
            (channel, self.blind(external_kind(channel), external_id)),
        ).fetchone()
        return None if row is None else row[0]

    def set_message_status(self, channel: str, external_id: str, status: str) -> int | None:
        """Set the status of a message found by platform id; return its id or None."""
        message_id = self.message_id_by_external(channel, external_id)
        if message_id is not None:
            self.conn.execute("UPDATE messages SET status = ? WHERE id = ?", (status, message_id))
        return message_id

    def update_message_status(self, message_id: int, status: str) -> None:
        """Set the status of a message by id."""
        self.conn.execute("UPDATE messages SET status = ? WHERE id = ?", (status, message_id))

    def set_message_external_id(self, message_id: int, external_id: str, *, status: str | None = None) -> None:
        """Record the platform id of a message we sent (after the platform's 2xx)."""
        row = self.conn.execute(
            "SELECT m.channel, c.contact_id FROM messages m JOIN conversations c ON c.id = m.conversation_id"
            " WHERE m.id = ?",
            (message_id,),
        ).fetchone()
        if row is None:
            return
        channel, contact_id = row
        owner = KeyOwner.contact(contact_id)
        self.conn.execute(
            "UPDATE messages SET external_index = ?, external_id = ?, status = coalesce(?, status) WHERE id = ?",
            (
                self.blind(external_kind(channel), external_id),
                self.seal(owner, "messages", "external_id", message_id, external_id),
                status,
                message_id,
            ),
        )

    def _open_row(self, row: tuple[Any, ...], owner: KeyOwner) -> tuple[str, str | None, str | None]:
        """Decrypt body, external id and meta; fast path first (history pages are hot)."""
        message_id = row[0]
        try:
            aead = self._key(owner, create=False)[1]
            text = crypto.open_blob(aead, b"messages.body.%d" % message_id, row[8]).decode()
            external = None if row[5] is None else crypto.open_blob(
                aead, b"messages.external_id.%d" % message_id, row[5]).decode()  # fmt: skip
            meta = None if row[9] is None else crypto.open_blob(aead, b"messages.meta.%d" % message_id, row[9]).decode()
            return text, external, meta
        except (crypto.DecryptError, IntegrityError):
            pass
        # slow path: the checked primitives raise an IntegrityError naming the cell
        return (
            self.open_text(owner, "messages", "body", message_id, row[8]),
            self.open_optional(owner, "messages", "external_id", message_id, row[5]),
            self.open_optional(owner, "messages", "meta", message_id, row[9]),
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

    def get_message(self, message_id: int, *, strict: bool = True) -> Message | None:
        """One message, decrypted."""
        row = self.conn.execute(
            f"SELECT {_COLUMNS}, (SELECT contact_id FROM conversations c WHERE c.id = m.conversation_id)"
            " FROM messages m WHERE id = ?",
            (message_id,),
        ).fetchone()
        if row is None:
            return None
        return self._message(row, KeyOwner.contact(row[11]), strict)

    def recent_messages(
        self, conversation_id: int, limit: int = 50, *, before_id: int | None = None, strict: bool = True
    ) -> list[Message]:
        """The newest ``limit`` messages of a conversation (before ``before_id``), oldest first.

        :param strict: raise :class:`IntegrityError` on a tampered record; with
            False it is returned with ``unreadable=True`` and logged.
        """
        owner = self.conversation_owner(conversation_id)
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE conversation_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (conversation_id, before_id if before_id is not None else 1 << 62, limit),
        ).fetchall()
        return [self._message(r, owner, strict) for r in reversed(rows)]

    def messages_of(self, conversation_id: int, *, strict: bool = True) -> list[Message]:
        """Every message of a conversation, oldest first."""
        owner = self.conversation_owner(conversation_id)
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
        ).fetchall()
        return [self._message(r, owner, strict) for r in rows]
