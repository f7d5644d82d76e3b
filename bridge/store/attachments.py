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

from ..errors import IntegrityError, StoreError, UnknownRecordError
from ..keyfile import fsync_dir
from .base import TxBase
from .keyring import KeyOwner
from .messages import external_kind
from .records import AttachmentRecord

_COLUMNS = "id, message_id, idx, kind, mime, meta, file, size"


class AttachmentsMixin(TxBase):
    """Repository methods for ``attachments`` and their media files."""

    def _message_owner(self, message_id: int) -> KeyOwner:
        row = self.conn.execute(
            "SELECT c.contact_id FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE m.id = ?",
            (message_id,),
        ).fetchone()
        if row is None:
            raise UnknownRecordError(f"no message {message_id}")
        return KeyOwner.contact(row[0])

    def add_attachment(
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
        attachment_id = self.next_id("attachments")
        meta_blob = self.seal(owner, "attachments", "meta", attachment_id, json.dumps(dict(meta or {})))
        self.conn.execute(
            "INSERT INTO attachments(id, message_id, idx, kind, mime, meta, file, size) VALUES (?,?,?,?,?,?,NULL,NULL)",
            (attachment_id, message_id, idx, kind, mime, meta_blob),
        )
        if data is not None:
            self._write_file(owner, attachment_id, data, mime)
        return attachment_id

    def store_attachment_data(self, attachment_id: int, data: bytes, mime: str | None = None) -> None:
        """Save (or replace) the bytes of an attachment."""
        row = self.conn.execute("SELECT message_id FROM attachments WHERE id = ?", (attachment_id,)).fetchone()
        if row is None:
            raise UnknownRecordError(f"no attachment {attachment_id}")
        self._write_file(self._message_owner(row[0]), attachment_id, data, mime)

    def _write_file(self, owner: KeyOwner, attachment_id: int, data: bytes, mime: str | None) -> None:
        old = self.conn.execute("SELECT file FROM attachments WHERE id = ?", (attachment_id,)).fetchone()
        name = secrets.token_hex(16)
        path = self.media_dir / name
        blob = self.seal(owner, "attachments", "file", attachment_id, data)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, blob)
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_dir(self.media_dir)
        except OSError as err:
            path.unlink(missing_ok=True)
            raise StoreError(f"cannot write a media file in {self.media_dir}: {err}") from err
        self.on_rollback(lambda: path.unlink(missing_ok=True))
        self.conn.execute(
            "UPDATE attachments SET file = ?, size = ?, mime = coalesce(?, mime) WHERE id = ?",
            (name, len(data), mime, attachment_id),
        )
        if old is not None and old[0]:
            stale = self.media_dir / old[0]
            self.after_commit(lambda: stale.unlink(missing_ok=True))

    def _attachment(self, row: tuple[Any, ...], owner: KeyOwner) -> AttachmentRecord:
        meta = json.loads(self.open_text(owner, "attachments", "meta", row[0], row[5])) if row[5] else {}
        return AttachmentRecord(row[0], row[1], row[2], row[3], row[4], meta, row[6], row[7])

    def attachments_of(self, message_id: int) -> list[AttachmentRecord]:
        """The attachments of a message, in order."""
        owner = self._message_owner(message_id)
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM attachments WHERE message_id = ? ORDER BY idx", (message_id,)
        ).fetchall()
        return [self._attachment(r, owner) for r in rows]

    def get_attachment(self, attachment_id: int) -> AttachmentRecord | None:
        """One attachment row, meta decrypted."""
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM attachments WHERE id = ?", (attachment_id,)).fetchone()
        return None if row is None else self._attachment(row, self._message_owner(row[1]))

    def attachment_by_external(self, channel: str, external_id: str, idx: int) -> AttachmentRecord | None:
        """Attachment ``idx`` of the message the platform calls ``external_id``."""
        row = self.conn.execute(
            f"SELECT {', '.join('a.' + c.strip() for c in _COLUMNS.split(','))} FROM attachments a"
            " JOIN messages m ON m.id = a.message_id WHERE m.channel = ? AND m.external_index = ? AND a.idx = ?",
            (channel, self.blind(external_kind(channel), external_id), idx),
        ).fetchone()
        return None if row is None else self._attachment(row, self._message_owner(row[1]))

    def read_attachment(self, attachment_id: int) -> bytes:
        """The decrypted bytes of an attachment.

        :raises UnknownRecordError: no such attachment, or its bytes were never saved.
        :raises IntegrityError: the file was tampered with or swapped.
        """
        row = self.conn.execute("SELECT message_id, file FROM attachments WHERE id = ?", (attachment_id,)).fetchone()
        if row is None or not row[1]:
            raise UnknownRecordError(f"attachment {attachment_id} has no stored bytes")
        path: Path = self.media_dir / row[1]
        try:
            blob = path.read_bytes()
        except FileNotFoundError as err:
            raise IntegrityError(
                f"attachments.file of row {attachment_id} is missing", table="attachments", column="file",
                row_id=attachment_id,
            ) from err  # fmt: skip
        return self.open_bytes(self._message_owner(row[0]), "attachments", "file", attachment_id, blob)
