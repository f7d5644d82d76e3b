"""The append-only audit log, chained with an HMAC so edits and deletions show.

Each row's ``hash`` is HMAC(audit key, prev_hash || id, at, actor, action,
subject, sealed detail). The audit key derives from the store's random HMAC
root key, so someone with only the database file cannot recompute the chain;
triggers refuse UPDATE and DELETE; the head (last id and hash) is kept sealed
in ``meta`` so cutting rows off the end shows too.

Someone holding the master key could still cut entries off the end and seal
an earlier head again. Against that the daemon logs an *anchor* (the head
hash and the entry count, ``HASH:COUNT``) at every start and daily, so the
journal keeps copies outside the store; :meth:`AuditRepo.verify` checks that
anchors are still on the chain.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bridge.errors import IntegrityError
from bridge.store import crypto
from bridge.store.keyring import SYSTEM_KEY
from bridge.store.records import AuditCheck, AuditEntry
from bridge.store.session import Session

GENESIS = bytes(32)
_HEAD = "audit_head"


def _record(row_id: int, at: float, actor: str, action: str, subject: str | None, detail: bytes | None) -> bytes:
    return json.dumps([row_id, at, actor, action, subject]).encode() + b"\0" + (detail or b"")


class AuditRepo:
    """``audit_log``: append-only, HMAC-chained; details sealed under the system key."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def append(self, actor: str, action: str, subject: str | None = None, detail: Any = None) -> int:
        """Append an audit entry; ``detail`` (JSON-able) is sealed under the system key.

        Never put message text or secrets in ``subject`` (plaintext); use ids like ``contact:42``.
        """
        # Several daemons on one database: one appender at a time, and the id taken
        # inside that turn, so the chain's order is the ids' order.
        self._s.serialize("audit_log")
        row_id = self._s.next_id("audit_log")
        at = self._s.now()
        last = self._s.execute("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
        prev = last[0] if last else GENESIS
        blob = None
        if detail is not None:
            blob = self._s.seal(SYSTEM_KEY, "audit_log", "detail", row_id, json.dumps(detail))
        digest = crypto.chain_hash(self._s.audit_key, prev, _record(row_id, at, actor, action, subject, blob))
        self._s.execute(
            "INSERT INTO audit_log(id, at, actor, action, subject, detail, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)",
            (row_id, at, actor, action, subject, blob, prev, digest),
        )
        head = self._s.seal(SYSTEM_KEY, "meta", "value", _HEAD, json.dumps([row_id, digest.hex()]))
        self._s.execute(
            "INSERT INTO meta(name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (_HEAD, head),
        )
        return row_id

    def entries(self, subject: str | None = None, *, limit: int | None = None) -> list[AuditEntry]:
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
        for row_id, at, actor, action, subj, blob in self._s.execute(sql, args):
            detail = None
            if blob is not None:
                try:
                    detail = json.loads(self._s.open_text(SYSTEM_KEY, "audit_log", "detail", row_id, blob))
                except IntegrityError:
                    detail = None
            entries.append(AuditEntry(row_id, at, actor, action, subj, detail))
        return entries

    def page(self, *, before_id: int | None = None, limit: int = 50, subject: str | None = None) -> list[AuditEntry]:
        """Audit entries newest first (below ``before_id``, of one ``subject``), for an admin's listing."""
        sql = "SELECT id, at, actor, action, subject, detail FROM audit_log WHERE id < ?"
        args: list[Any] = [before_id if before_id is not None else 1 << 62]
        if subject is not None:
            sql += " AND subject = ?"
            args.append(subject)
        rows = self._s.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [AuditEntry(row_id, at, actor, action, subj, self._detail(row_id, blob))
                for row_id, at, actor, action, subj, blob in rows]  # fmt: skip

    def _detail(self, row_id: int, blob: bytes | None) -> Any:
        if blob is None:
            return None
        try:
            return json.loads(self._s.open_text(SYSTEM_KEY, "audit_log", "detail", row_id, blob))
        except IntegrityError:
            return None

    def anchor(self) -> tuple[str, int]:
        """The chain's head hash (hex) and entry count: the anchor to keep outside the store."""
        count = int(self._s.execute("SELECT count(*) FROM audit_log").fetchone()[0])
        last = self._s.execute("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
        return (bytes(last[0]) if last else GENESIS).hex(), count

    def verify(self, anchors: Sequence[tuple[str, int]] = ()) -> AuditCheck:
        """Walk the chain; report the first row that does not verify, or an anchor not on it.

        :param anchors: ``(head hash hex, entry count)`` pairs taken earlier
            (:meth:`anchor`): entry number ``count`` must still carry that hash.
        """
        wanted: dict[int, str] = {}
        for digest_hex, position in anchors:
            if position == 0 and digest_hex.lower() != GENESIS.hex():
                return AuditCheck(False, 0, None, "an anchor with 0 entries has the all-zero hash")
            wanted[int(position)] = digest_hex.lower()
        prev = GENESIS
        count = 0
        last_id = 0
        cursor = self._s.execute(
            "SELECT id, at, actor, action, subject, detail, prev_hash, hash FROM audit_log ORDER BY id"
        )
        for row_id, at, actor, action, subject, blob, prev_hash, digest in cursor:
            if prev_hash != prev:
                return AuditCheck(False, count, row_id, "its prev_hash does not match the previous entry")
            record = _record(row_id, at, actor, action, subject, blob)
            expected = crypto.chain_hash(self._s.audit_key, prev, record)
            if expected != digest:
                return AuditCheck(False, count, row_id, "its hash does not match its content")
            if blob is not None:
                try:
                    self._s.open_bytes(SYSTEM_KEY, "audit_log", "detail", row_id, blob)
                except IntegrityError:
                    return AuditCheck(False, count, row_id, "its detail failed authentication")
            prev = digest
            last_id = row_id
            count += 1
            if count in wanted and wanted[count] != bytes(digest).hex():
                return AuditCheck(False, count, row_id, f"it is entry {count} but does not carry the anchor's hash")
        beyond = [position for position in wanted if position > count]
        if beyond:
            return AuditCheck(
                False, count, None,
                f"the anchor of entry {max(beyond)} is past its end ({count} entries): entries were removed",
            )  # fmt: skip
        head = self._s.execute("SELECT value FROM meta WHERE name = ?", (_HEAD,)).fetchone()
        if head is None:
            if count:
                return AuditCheck(False, count, last_id, "the audit head record is missing")
            return AuditCheck(True, 0)
        try:
            head_id, head_hash = json.loads(self._s.open_text(SYSTEM_KEY, "meta", "value", _HEAD, head[0]))
        except IntegrityError:
            return AuditCheck(False, count, last_id or None, "the audit head record failed authentication")
        if head_id != last_id or head_hash != prev.hex():
            return AuditCheck(False, count, head_id, f"entries after {last_id} are missing (head is {head_id})")
        return AuditCheck(True, count)

    def recent_actions(self, subject: str, actions: Sequence[str], since: float, limit: int) -> list[tuple[float, str]]:
        """``(at, action)`` of the newest ``limit`` entries of ``subject`` with one of ``actions`` after ``since``."""
        marks = ",".join("?" * len(actions))
        rows = self._s.execute(
            f"SELECT at, action FROM audit_log WHERE subject = ? AND action IN ({marks}) AND at > ?"
            " ORDER BY id DESC LIMIT ?",
            (subject, *actions, since, limit),
        ).fetchall()
        return [(float(r[0]), str(r[1])) for r in rows]
