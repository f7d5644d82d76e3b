"""Erasure (crypto-shredding), subject-access export and retention purge."""

from __future__ import annotations

import json
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


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC text (the export's time format)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class GdprRepo:
    """Whole-contact operations (erase, export) and the retention purge, on the other repositories."""

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

        Rows go with ``secure_delete`` on; media files are removed after the
        commit; the WAL is checkpointed and truncated after the commit so no
        copy of the wrapped key stays in it. Returns counts of what went.

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
        self._s.execute(
            "DELETE FROM outbox WHERE (key_kind = 'contact' AND key_owner = ?)"
            " OR (recipient_kind = 'contact' AND recipient_id = ?)",
            (contact_id, contact_id),
        )
        self._s.execute("DELETE FROM contacts WHERE id = ?", (contact_id,))
        self._s.shred_key(KeyOwner.contact(contact_id))
        self._unlink_after_commit(files)
        self._s.after_commit(self._s.checkpoint)
        return counts

    def purge_closed(self, days: float, *, limit: int | None = None) -> int:
        """Delete the messages (and media) of conversations closed more than ``days`` ago.

        The conversation rows stay (status, times, agent) for statistics; returns
        the number of messages deleted, at most ``limit`` (``Store.purge_closed``
        calls this in chunks so webhooks are not held up behind one big delete).
        """
        cutoff = self._s.now() - days * 86400.0
        sql = (
            "SELECT m.id FROM conversations c JOIN messages m ON m.conversation_id = c.id"
            " WHERE c.status = 'closed' AND c.closed_at < ?"
        )
        args: tuple[Any, ...] = (cutoff,) if limit is None else (cutoff, limit)
        ids = [r[0] for r in self._s.execute(sql if limit is None else sql + " LIMIT ?", args)]
        if not ids:
            return 0
        self._s.execute("CREATE TEMP TABLE IF NOT EXISTS purge_ids(id INTEGER PRIMARY KEY)")
        self._s.execute("DELETE FROM temp.purge_ids")
        self._s.executemany("INSERT INTO temp.purge_ids(id) VALUES (?)", [(i,) for i in ids])
        files = [
            r[0]
            for r in self._s.execute(
                "SELECT file FROM attachments WHERE message_id IN (SELECT id FROM temp.purge_ids) AND file IS NOT NULL"
            )
        ]
        cursor = self._s.execute("DELETE FROM messages WHERE id IN (SELECT id FROM temp.purge_ids)")
        self._s.execute("DELETE FROM temp.purge_ids")
        self._unlink_after_commit(files)
        return cursor.rowcount

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
