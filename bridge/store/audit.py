"""The append-only audit log, chained with an HMAC so edits and deletions show.

Each row's ``hash`` is HMAC(audit key, prev_hash || id, at, actor, action,
subject, sealed detail). The audit key derives from the store's random HMAC
root key, so someone with only the database file cannot recompute the chain;
triggers refuse UPDATE and DELETE; the head (last id and hash) is kept sealed
in ``meta`` so cutting rows off the end shows too.
"""

from __future__ import annotations

import json
from typing import Any

from .. import crypto
from ..errors import IntegrityError
from .base import TxBase
from .keyring import KeyOwner
from .records import AuditCheck, AuditEntry

GENESIS = bytes(32)
_HEAD = "audit_head"


def _record(row_id: int, at: float, actor: str, action: str, subject: str | None, detail: bytes | None) -> bytes:
    return json.dumps([row_id, at, actor, action, subject]).encode() + b"\0" + (detail or b"")


class AuditMixin(TxBase):
    """Repository methods for ``audit_log``."""

    def audit(self, actor: str, action: str, subject: str | None = None, detail: Any = None) -> int:
        """Append an audit entry; ``detail`` (JSON-able) is sealed under the system key.

        Never put message text or secrets in ``subject`` (plaintext); use ids like ``contact:42``.
        """
        row_id = self.next_id("audit_log")
        at = self.now()
        last = self.conn.execute("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
        prev = last[0] if last else GENESIS
        blob = None
        if detail is not None:
            blob = self.seal(KeyOwner.SYSTEM, "audit_log", "detail", row_id, json.dumps(detail))
        digest = crypto.chain_hash(self.keyring.audit_key, prev, _record(row_id, at, actor, action, subject, blob))
        self.conn.execute(
            "INSERT INTO audit_log(id, at, actor, action, subject, detail, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)",
            (row_id, at, actor, action, subject, blob, prev, digest),
        )
        head = self.seal(KeyOwner.SYSTEM, "meta", "value", _HEAD, json.dumps([row_id, digest.hex()]))
        self.conn.execute("INSERT OR REPLACE INTO meta(name, value) VALUES (?, ?)", (_HEAD, head))
        return row_id

    def audit_entries(self, subject: str | None = None, *, limit: int | None = None) -> list[AuditEntry]:
        """Audit entries (of one subject), oldest first; unreadable details become None."""
        sql = "SELECT id, at, actor, action, subject, detail FROM audit_log"
        args: list[Any] = []
        if subject is not None:
            sql += " WHERE subject = ?"
            args.append(subject)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        entries = []
        for row_id, at, actor, action, subj, blob in self.conn.execute(sql, args):
            detail = None
            if blob is not None:
                try:
                    detail = json.loads(self.open_text(KeyOwner.SYSTEM, "audit_log", "detail", row_id, blob))
                except IntegrityError:
                    detail = None
            entries.append(AuditEntry(row_id, at, actor, action, subj, detail))
        return entries

    def verify_audit(self) -> AuditCheck:
        """Walk the chain; report the first row that does not verify."""
        prev = GENESIS
        count = 0
        last_id = 0
        cursor = self.conn.execute(
            "SELECT id, at, actor, action, subject, detail, prev_hash, hash FROM audit_log ORDER BY id"
        )
        for row_id, at, actor, action, subject, blob, prev_hash, digest in cursor:
            if prev_hash != prev:
                return AuditCheck(False, count, row_id, "its prev_hash does not match the previous entry")
            record = _record(row_id, at, actor, action, subject, blob)
            expected = crypto.chain_hash(self.keyring.audit_key, prev, record)
            if expected != digest:
                return AuditCheck(False, count, row_id, "its hash does not match its content")
            if blob is not None:
                try:
                    self.open_bytes(KeyOwner.SYSTEM, "audit_log", "detail", row_id, blob)
                except IntegrityError:
                    return AuditCheck(False, count, row_id, "its detail failed authentication")
            prev = digest
            last_id = row_id
            count += 1
        head = self.conn.execute("SELECT value FROM meta WHERE name = ?", (_HEAD,)).fetchone()
        if head is None:
            if count:
                return AuditCheck(False, count, last_id, "the audit head record is missing")
            return AuditCheck(True, 0)
        try:
            head_id, head_hash = json.loads(self.open_text(KeyOwner.SYSTEM, "meta", "value", _HEAD, head[0]))
        except IntegrityError:
            return AuditCheck(False, count, last_id or None, "the audit head record failed authentication")
        if head_id != last_id or head_hash != prev.hex():
            return AuditCheck(False, count, head_id, f"entries after {last_id} are missing (head is {head_id})")
        return AuditCheck(True, count)
