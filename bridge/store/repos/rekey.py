"""Re-encryption under new data keys (``keys rotate --rekey``).

Each contact's and each agent's data key is replaced by a new random one:
every cell sealed under it (and every media file) is opened with the old key
and sealed again under the new one, the old key row is deleted and a new one
inserted, all in one transaction per group of owners. The run records the
highest key id it started with in ``meta`` (``rekey_upto``): a key with a
higher id is new since the run began, so a crashed run resumes where it
stopped and a key the daemon created meanwhile is left alone. Each
transaction bumps ``key_epoch`` so a running daemon drops its cached keys
(:meth:`bridge.store.keyring.Keyring.sync`).

Not replaced, only re-wrapped by the master key: the system key (it seals
the audit log's details, and the audit chain hashes those ciphertexts, so
re-sealing them would break the chain and every anchor taken before) and the
HMAC root key (blind indexes of platform ids cannot be recomputed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bridge.store import crypto
from bridge.store.keyring import KEY_EPOCH_NAME, KeyOwner
from bridge.store.repos.attachments import AttachmentsRepo
from bridge.store.session import Session

_UPTO = "rekey_upto"
_OF_CONTACT_CONVERSATIONS = "conversation_id IN (SELECT id FROM conversations WHERE contact_id = ?)"

#: Every sealed cell, by key-owner kind: (table, sealed columns, rows of one owner).
CELLS: dict[str, tuple[tuple[str, tuple[str, ...], str], ...]] = {
    "contact": (
        ("contacts", ("name", "email"), "id = ?"),
        ("contact_identities", ("address",), "contact_id = ?"),
        ("messages", ("body", "external_id", "meta"), _OF_CONTACT_CONVERSATIONS),
        ("attachments", ("meta",), f"message_id IN (SELECT id FROM messages WHERE {_OF_CONTACT_CONVERSATIONS})"),
        ("events", ("detail",), _OF_CONTACT_CONVERSATIONS),
        ("secure_pending", ("secret", "address"), "contact_id = ?"),
    ),
    "agent": (
        ("agents", ("address", "email", "totp_secret", "password_hash"), "id = ?"),
        ("agent_identities", ("address",), "agent_id = ?"),
    ),
}
#: Outbox rows name their key owner themselves.
OUTBOX = ("outbox", ("recipient", "body", "reply_to", "meta"), "key_kind = ? AND key_owner = ?")
#: BLOB columns that are not sealed under a contact's or agent's key (blind indexes end in ``_index``).
NOT_REKEYED = frozenset({("keys", "wrapped"), ("meta", "value"), ("audit_log", "detail"),
                         ("audit_log", "prev_hash"), ("audit_log", "hash"),
                         ("console_sessions", "token_hash"), ("channel_state", "value")})  # fmt: skip
REKEYED_KINDS = tuple(CELLS)


def _known_columns() -> set[tuple[str, str]]:
    known = {(OUTBOX[0], column) for column in OUTBOX[1]} | set(NOT_REKEYED)
    for cells in CELLS.values():
        known.update((table, column) for table, columns, _ in cells for column in columns)
    return known


class RekeyRepo:
    """Replacing data keys and re-sealing what they sealed."""

    def __init__(self, session: Session, attachments: AttachmentsRepo) -> None:
        self._s = session
        self._attachments = attachments

    def unknown_columns(self) -> list[str]:
        """BLOB columns of the schema this module does not know (a rekey would strand what they seal).

        The catalogue is the backend's (``Session.blob_columns``).
        """
        known = _known_columns()
        unknown = [
            f"{table}.{column}"
            for table, column in self._s.blob_columns()
            if not column.endswith("_index") and (table, column) not in known
        ]
        return sorted(unknown)

    def begin(self) -> int:
        """Start (or resume) a run; return the highest key id it replaces."""
        row = self._s.execute("SELECT value FROM meta WHERE name = ?", (_UPTO,)).fetchone()
        if row is not None:
            return int(row[0])
        upto = int(self._s.execute("SELECT coalesce(max(id), 0) FROM keys").fetchone()[0])
        self._s.execute("INSERT INTO meta(name, value) VALUES (?, ?)", (_UPTO, str(upto).encode()))
        return upto

    def resuming(self) -> bool:
        """Whether an earlier run was interrupted (its ``rekey_upto`` row is still there)."""
        return self._s.execute("SELECT 1 FROM meta WHERE name = ?", (_UPTO,)).fetchone() is not None

    def remaining(self, upto: int) -> int:
        """How many data keys the run still has to replace."""
        marks = ",".join("?" * len(REKEYED_KINDS))
        row = self._s.execute(
            f"SELECT count(*) FROM keys WHERE id <= ? AND owner_kind IN ({marks})", (upto, *REKEYED_KINDS)
        ).fetchone()
        return int(row[0])

    def step(self, upto: int, owners: int) -> dict[str, int]:
        """Replace the keys of up to ``owners`` owners (lowest key ids first); return counts.

        ``keys`` 0 means the run is done. ``unreadable`` counts cells that did
        not open under their old key (damaged before): they stay as they were.
        """
        marks = ",".join("?" * len(REKEYED_KINDS))
        rows = self._s.execute(
            f"SELECT owner_kind, owner_id FROM keys WHERE id <= ? AND owner_kind IN ({marks}) ORDER BY id LIMIT ?",
            (upto, *REKEYED_KINDS, owners),
        ).fetchall()
        counts = {"keys": 0, "cells": 0, "files": 0, "unreadable": 0}
        for kind, owner_id in rows:
            cells, files, unreadable = self._rekey(KeyOwner(str(kind), int(owner_id)))
            counts["keys"] += 1
            counts["cells"] += cells
            counts["files"] += files
            counts["unreadable"] += unreadable
        if rows:
            # meta.value is a BLOB: the counter is kept as decimal text bytes, which both
            # backends store there (PostgreSQL's bytea takes no integer) and int() reads back.
            row = self._s.execute("SELECT value FROM meta WHERE name = ?", (KEY_EPOCH_NAME,)).fetchone()
            epoch = int(row[0]) + 1 if row is not None and row[0] is not None else 1
            self._s.execute(
                "INSERT INTO meta(name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (KEY_EPOCH_NAME, str(epoch).encode()),
            )
        return counts

    def finish(self) -> None:
        """End the run."""
        self._s.execute("DELETE FROM meta WHERE name = ?", (_UPTO,))

    def _rekey(self, owner: KeyOwner) -> tuple[int, int, int]:
        old = self._s.key_for(owner, create=False)
        plain: list[tuple[str, str, int, bytes]] = []
        unreadable = 0
        for table, columns, where in (*CELLS[owner.kind], OUTBOX):
            args: Sequence[object] = (owner.kind, owner.id) if table == OUTBOX[0] else (owner.id,)
            rows = self._s.execute(f"SELECT id, {', '.join(columns)} FROM {table} WHERE {where}", args).fetchall()
            for row in rows:
                for column, blob in zip(columns, row[1:], strict=True):
                    if blob is None:
                        continue
                    try:
                        plain.append(
                            (table, column, int(row[0]), crypto.open_blob(old, crypto.aad(table, column, row[0]), blob))
                        )
                    except crypto.DecryptError:
                        unreadable += 1
        files: list[tuple[int, bytes]] = []
        if owner.kind == "contact":
            for attachment_id, name in self._s.execute(
                "SELECT id, file FROM attachments WHERE file IS NOT NULL AND message_id IN"
                f" (SELECT id FROM messages WHERE {_OF_CONTACT_CONVERSATIONS})",
                (owner.id,),
            ).fetchall():
                try:
                    blob = Path(self._s.media_dir / name).read_bytes()
                    files.append(
                        (
                            int(attachment_id),
                            crypto.open_blob(old, crypto.aad("attachments", "file", attachment_id), blob),
                        )
                    )
                except (OSError, crypto.DecryptError):
                    unreadable += 1
        self._s.shred_key(owner)
        self._s.new_key(owner)
        for table, column, row_id, data in plain:
            sealed = self._s.seal(owner, table, column, row_id, data)
            self._s.execute(f"UPDATE {table} SET {column} = ? WHERE id = ?", (sealed, row_id))  # noqa: S608 (fixed names)
        for attachment_id, data in files:
            self._attachments.store_data(attachment_id, data)
        return len(plain), len(files), unreadable
