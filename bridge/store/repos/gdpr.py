"""Erasure (crypto-shredding) and subject-access export, and the deletions retention shares with erasure."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bridge.errors import IntegrityError, UnknownRecordError
from bridge.store.keyring import KeyOwner
from bridge.store.repos.attachments import AttachmentsRepo
from bridge.store.repos.audit import AuditRepo
from bridge.store.repos.contacts import ContactsRepo
from bridge.store.repos.conversations import ConversationsRepo
from bridge.store.repos.messages import MessagesRepo
from bridge.store.session import Session

#: Ids per ``IN (...)`` list: far below every backend's limit on bound parameters.
_IN_CHUNK = 500


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC text (the export's time format)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class GdprRepo:
    """Whole-contact operations (erase, export) and the deletions they share with retention."""

    def __init__(
        self,
        session: Session,
        contacts: ContactsRepo,
        conversations: ConversationsRepo,
        messages: MessagesRepo,
        attachments: AttachmentsRepo,
        audit: AuditRepo,
    ) -> None:
        self._s = session
        self._contacts = contacts
        self._conversations = conversations
        self._messages = messages
        self._attachments = attachments
        self._audit = audit

    def _media_files(self, where: str, args: tuple[Any, ...]) -> list[str]:
        rows = self._s.execute(
            "SELECT a.file FROM attachments a JOIN messages m ON m.id = a.message_id"
            f" JOIN conversations c ON c.id = m.conversation_id WHERE {where} AND a.file IS NOT NULL",
            args,
        ).fetchall()
        return [r[0] for r in rows]

    def _unlink_after_commit(self, names: list[str]) -> None:
        paths = [self._s.media_dir / name for name in names]

        def unlink() -> None:
            for path in paths:
                path.unlink(missing_ok=True)

        if paths:
            self._s.after_commit(unlink)

    def erase_contact(self, contact_id: int) -> dict[str, int]:
        """Erase a contact: delete every row of theirs and destroy their data key.

        Rows go with ``secure_delete`` on: their conversations with every
        message, note, event and attachment, every outbox row sealed under
        their key or addressed to them, and every agent notice that names one
        of their conversations (``outbox_mentions``); media files are removed
        after the commit; the WAL is checkpointed and truncated after the
        commit so no copy of the wrapped key stays in it. What remains is the
        audit log (ids, actions and counts, never their data). Returns counts
        of what went.

        :raises UnknownRecordError: no such contact.
        """
        if self._s.execute("SELECT 1 FROM contacts WHERE id = ?", (contact_id,)).fetchone() is None:
            raise UnknownRecordError(f"no contact {contact_id}")
        files = self._media_files("c.contact_id = ?", (contact_id,))
        counts = {
            "conversations": self._s.execute(
                "SELECT count(*) FROM conversations WHERE contact_id = ?", (contact_id,)
            ).fetchone()[0],
            "messages": self._s.execute(
                "SELECT count(*) FROM messages WHERE conversation_id IN"
                " (SELECT id FROM conversations WHERE contact_id = ?)",
                (contact_id,),
            ).fetchone()[0],
            "files": len(files),
        }
        conversation_ids = [
            int(r[0]) for r in self._s.execute("SELECT id FROM conversations WHERE contact_id = ?", (contact_id,))
        ]
        self.forget_conversations(conversation_ids)
        self.forget_contact(contact_id)
        self._unlink_after_commit(files)
        self._s.after_commit(self._s.checkpoint)
        return counts

    # -- shared by erasure and retention -------------------------------------------
    def name_in_notice(self, outbox_id: int, conversation_ids: Sequence[int]) -> None:
        """Record that outbox row ``outbox_id`` names these conversations' customers.

        For a notice sealed under the agent's key because it names several
        customers at once: erasing or purging any of them deletes the row.
        """
        self._s.executemany(
            "INSERT INTO outbox_mentions(outbox_id, conversation_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(outbox_id, int(c)) for c in dict.fromkeys(conversation_ids)],
        )

    def forget_conversations(self, conversation_ids: Sequence[int]) -> dict[str, int]:
        """Delete conversations with everything that carries their text; return counts.

        Messages (notes included), attachments, events and outbox rows of the
        conversation go through the foreign keys; agent notices naming them
        (``outbox_mentions``) are deleted here first. Media files are not
        touched: the caller collects and unlinks them after the commit.
        """
        counts = {"conversations": 0, "messages": 0, "outbox": 0, "events": 0}
        for start in range(0, len(conversation_ids), _IN_CHUNK):
            ids = [int(i) for i in conversation_ids[start : start + _IN_CHUNK]]
            marks = ",".join("?" * len(ids))
            counts["messages"] += self._count(f"SELECT count(*) FROM messages WHERE conversation_id IN ({marks})", ids)
            counts["events"] += self._count(f"SELECT count(*) FROM events WHERE conversation_id IN ({marks})", ids)
            counts["outbox"] += self._s.execute(
                "DELETE FROM outbox WHERE id IN"
                f" (SELECT outbox_id FROM outbox_mentions WHERE conversation_id IN ({marks}))",
                ids,
            ).rowcount
            counts["outbox"] += self._s.execute(f"DELETE FROM outbox WHERE conversation_id IN ({marks})", ids).rowcount
            counts["conversations"] += self._s.execute(f"DELETE FROM conversations WHERE id IN ({marks})", ids).rowcount
        return counts

    def forget_contact(self, contact_id: int) -> int:
        """Delete a contact, their identities and every outbox row of theirs, and shred their key.

        Returns the number of outbox rows deleted (those not tied to a conversation).
        """
        outbox = self._s.execute(
            "DELETE FROM outbox WHERE (key_kind = 'contact' AND key_owner = ?)"
            " OR (recipient_kind = 'contact' AND recipient_id = ?)",
            (contact_id, contact_id),
        ).rowcount
        self._s.execute("DELETE FROM contacts WHERE id = ?", (contact_id,))
        self._s.shred_key(KeyOwner.contact(contact_id))
        return int(outbox)

    def unlink_after_commit(self, names: Sequence[str]) -> None:
        """Remove these media files once the transaction that dropped their rows commits."""
        self._unlink_after_commit(list(names))

    def _count(self, sql: str, args: Sequence[Any]) -> int:
        return int(self._s.execute(sql, args).fetchone()[0])

    def export_contact(self, contact_id: int) -> tuple[dict[str, Any], list[str]]:
        """Everything stored about a contact, decrypted, in the documented export shape.

        Returns ``(document, problems)``: a record that fails its integrity check
        is kept with ``text``/``name`` null and ``"unreadable": true``, and its
        error is listed in ``problems``.

        :raises UnknownRecordError: no such contact.
        """
        problems: list[str] = []
        row = self._s.execute("SELECT id, created_at FROM contacts WHERE id = ?", (contact_id,)).fetchone()
        if row is None:
            raise UnknownRecordError(f"no contact {contact_id}")
        contact: dict[str, Any] = {"id": contact_id, "name": None, "created_at": iso(row[1]), "email": None}
        try:
            found = self._contacts.get(contact_id)
            assert found is not None
            contact["name"], contact["email"] = found.name, found.email
        except IntegrityError as err:
            contact["unreadable"] = True
            problems.append(str(err))
        identities = []
        for ident_row in self._s.execute(
            "SELECT id, contact_id, channel, address, last_inbound_at, created_at FROM contact_identities"
            " WHERE contact_id = ? ORDER BY id",
            (contact_id,),
        ).fetchall():
            try:
                identities.append(
                    {"channel": ident_row[2], "address": self._contacts.identity_from_row(ident_row).address}
                )
            except IntegrityError as err:
                identities.append({"channel": ident_row[2], "address": None, "unreadable": True})
                problems.append(str(err))
        agents = dict(self._s.execute("SELECT id, name FROM agents").fetchall())
        conversations = []
        for conv in self._conversations.of_contact(contact_id):
            messages = []
            for message in self._messages.of_conversation(conv.id, strict=False):
                item: dict[str, Any] = {
                    "id": message.id,
                    "direction": message.direction,
                    "channel": message.channel,
                    "text": message.text,
                    "created_at": iso(message.created_at),
                    "sensitive": message.sensitive,
                }
                if message.unreadable:
                    item["unreadable"] = True
                    problems.append(f"messages.body of row {message.id} failed its integrity check")
                else:
                    item["attachments"] = self._export_attachments(message.id, problems)
                messages.append(item)
            conversations.append(
                {
                    "id": conv.id,
                    "channel": conv.channel,
                    "status": conv.status,
                    "agent": agents.get(conv.agent_id) if conv.agent_id is not None else None,
                    "created_at": iso(conv.created_at),
                    "messages": messages,
                    "events": self._export_events(conv.id, contact_id, agents, problems),
                }
            )
        # Entries about the contact and about each of their conversations (transfers, transcript access).
        subjects = [f"contact:{contact_id}"] + [f"conversation:{c['id']}" for c in conversations]
        entries = sorted((e for subject in subjects for e in self._audit.entries(subject)), key=lambda e: e.id)
        audit = [
            {"at": iso(e.at), "actor": e.actor, "action": e.action, "subject": e.subject, "detail": e.detail}
            for e in entries
        ]
        document = {"contact": contact, "identities": identities, "conversations": conversations, "audit": audit}
        return document, problems

    def _export_events(
        self, conversation_id: int, contact_id: int, agents: dict[int, str], problems: list[str]
    ) -> list[dict[str, Any]]:
        """Assignment and transfer events of a conversation; ``detail`` is sealed under the contact's key."""
        owner = KeyOwner.contact(contact_id)
        events = []
        for event_id, kind, from_agent, to_agent, blob, created_at in self._s.execute(
            "SELECT id, kind, from_agent, to_agent, detail, created_at FROM events"
            " WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        ).fetchall():
            item: dict[str, Any] = {
                "kind": kind,
                "from_agent": agents.get(from_agent),
                "to_agent": agents.get(to_agent),
                "detail": None,
                "created_at": iso(created_at),
            }
            try:
                text = self._s.open_optional(owner, "events", "detail", event_id, blob)
                item["detail"] = None if text is None else json.loads(text)
            except IntegrityError as err:
                item["unreadable"] = True
                problems.append(str(err))
            events.append(item)
        return events

    def _export_attachments(self, message_id: int, problems: list[str]) -> list[dict[str, Any]]:
        try:
            return [
                {"kind": a.kind, "mime": a.mime, "meta": a.meta, "size": a.size}
                for a in self._attachments.of_message(message_id)
            ]
        except IntegrityError as err:
            problems.append(str(err))
            return []
