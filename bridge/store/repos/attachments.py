"""Attachments: metadata in the database, bytes in encrypted files under media_dir.

A file is named by a random id (nothing about its content or owner), sealed
under the contact's key with the associated data ``attachments.file.<id>``,
written with fsync before the transaction commits and removed again if the
function rolls back.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from bridge.errors import IntegrityError, StoreError, UnknownRecordError
from bridge.store.keyfile import fsync_dir
from bridge.store.keyring import KeyOwner
from bridge.store.records import AttachmentRecord
from bridge.store.repos.messages import external_kind
from bridge.store.session import Session

_COLUMNS = "id, message_id, idx, kind, mime, meta, file, size"


class AttachmentsRepo:
    """``attachments`` and their media files, sealed under the message's contact key."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _message_owner(self, message_id: int) -> KeyOwner:
        row = self._s.execute(
            "SELECT c.contact_id FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE m.id = ?",
            (message_id,),
        ).fetchone()
        if row is None:
            raise UnknownRecordError(f"no message {message_id}")
        return KeyOwner.contact(row[0])

    def add(
        self,
        message_id: int,
        idx: int,
        kind: str,
        *,
        mime: str | None = None,
        meta: dict[str, Any] | None = None,
        data: bytes | None = None,
    ) -> int:
        """Record attachment number ``idx`` of a message (bytes optional, add later)."""
        owner = self._message_owner(message_id)
        attachment_id = self._s.next_id("attachments")
        meta_blob = self._s.seal(owner, "attachments", "meta", attachment_id, json.dumps(dict(meta or {})))
        self._s.execute(
            "INSERT INTO attachments(id, message_id, idx, kind, mime, meta, file, size) VALUES (?,?,?,?,?,?,NULL,NULL)",
            (attachment_id, message_id, idx, kind, mime, meta_blob),
        )
        if data is not None:
            self._write_file(owner, attachment_id, data, mime)
        return attachment_id

    def store_data(self, attachment_id: int, data: bytes, mime: str | None = None) -> None:
        """Save (or replace) the bytes of an attachment."""
        row = self._s.execute("SELECT message_id FROM attachments WHERE id = ?", (attachment_id,)).fetchone()
        if row is None:
            raise UnknownRecordError(f"no attachment {attachment_id}")
        self._write_file(self._message_owner(row[0]), attachment_id, data, mime)

    def _write_file(self, owner: KeyOwner, attachment_id: int, data: bytes, mime: str | None) -> None:
        old = self._s.execute("SELECT file FROM attachments WHERE id = ?", (attachment_id,)).fetchone()
        name = secrets.token_hex(16)
        path = self._s.media_dir / name
        blob = self._s.seal(owner, "attachments", "file", attachment_id, data)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, blob)
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_dir(self._s.media_dir)
        except OSError as err:
            path.unlink(missing_ok=True)
            raise StoreError(f"cannot write a media file in {self._s.media_dir}: {err}") from err
        self._s.on_rollback(lambda: path.unlink(missing_ok=True))
        self._s.execute(
            "UPDATE attachments SET file = ?, size = ?, mime = coalesce(?, mime) WHERE id = ?",
            (name, len(data), mime, attachment_id),
        )
        if old is not None and old[0]:
            stale = self._s.media_dir / old[0]
            self._s.after_commit(lambda: stale.unlink(missing_ok=True))

    def _attachment(self, row: tuple[Any, ...], owner: KeyOwner) -> AttachmentRecord:
        meta = json.loads(self._s.open_text(owner, "attachments", "meta", row[0], row[5])) if row[5] else {}
        return AttachmentRecord(row[0], row[1], row[2], row[3], row[4], meta, row[6], row[7])

    def of_message(self, message_id: int) -> list[AttachmentRecord]:
        """The attachments of a message, in order."""
        owner = self._message_owner(message_id)
        rows = self._s.execute(
            f"SELECT {_COLUMNS} FROM attachments WHERE message_id = ? ORDER BY idx", (message_id,)
        ).fetchall()
        return [self._attachment(r, owner) for r in rows]

    def get(self, attachment_id: int) -> AttachmentRecord | None:
        """One attachment row, meta decrypted."""
        row = self._s.execute(f"SELECT {_COLUMNS} FROM attachments WHERE id = ?", (attachment_id,)).fetchone()
        return None if row is None else self._attachment(row, self._message_owner(row[1]))

    def by_external(self, channel: str, external_id: str, idx: int) -> AttachmentRecord | None:
        """Attachment ``idx`` of the message the platform calls ``external_id``."""
        row = self._s.execute(
            f"SELECT {', '.join('a.' + c.strip() for c in _COLUMNS.split(','))} FROM attachments a"
            " JOIN messages m ON m.id = a.message_id WHERE m.channel = ? AND m.external_index = ? AND a.idx = ?",
            (channel, self._s.blind(external_kind(channel), external_id), idx),
        ).fetchone()
        return None if row is None else self._attachment(row, self._message_owner(row[1]))

    def read(self, attachment_id: int) -> bytes:
        """The decrypted bytes of an attachment.

        :raises UnknownRecordError: no such attachment, or its bytes were never saved.
        :raises IntegrityError: the file was tampered with or swapped.
        """
        row = self._s.execute("SELECT message_id, file FROM attachments WHERE id = ?", (attachment_id,)).fetchone()
        if row is None or not row[1]:
            raise UnknownRecordError(f"attachment {attachment_id} has no stored bytes")
        path: Path = self._s.media_dir / row[1]
        try:
            blob = path.read_bytes()
        except FileNotFoundError as err:
            raise IntegrityError(
                f"attachments.file of row {attachment_id} is missing", table="attachments", column="file",
                row_id=attachment_id,
            ) from err  # fmt: skip
        return self._s.open_bytes(self._message_owner(row[0]), "attachments", "file", attachment_id, blob)

    def missing_bytes(self, channel: str) -> list[tuple[int, int]]:
        """``(attachment id, message id)`` of ``channel``'s inbound attachments with no stored bytes, oldest first."""
        rows = self._s.execute(
            "SELECT a.id, m.id FROM attachments a JOIN messages m ON m.id = a.message_id"
            " WHERE m.channel = ? AND m.direction = 'in' AND a.file IS NULL ORDER BY m.id, a.idx",
            (channel,),
        ).fetchall()
        return [(int(r[0]), int(r[1])) for r in rows]
