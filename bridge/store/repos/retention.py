"""Retention: what the scheduled purge removes, and which open conversations have gone idle.

A conversation closed more than ``[retention] closed_after_days`` ago is
deleted with everything that carries its text: messages and notes, their
attachments and media files, events, and every outbox row of it or naming it
(:meth:`GdprRepo.forget_conversations`). A contact left with no
conversation at all goes too, with their identities and their data key, as
an erasure would. The audit log keeps only that a purge happened and its
counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.store.repos.gdpr import GdprRepo
from bridge.store.session import Session

_DAY = 86400.0
_DUE = "status = 'closed' AND closed_at < ?"

#: The keys of every count a purge (or its dry run) reports.
PURGE_COUNTS = ("conversations", "messages", "events", "outbox", "files", "contacts")


class RetentionRepo:
    """The retention purge and the idle auto-close's question, on top of :class:`GdprRepo`."""

    def __init__(self, session: Session, gdpr: GdprRepo) -> None:
        self._s = session
        self._gdpr = gdpr

    def cutoff(self, days: float) -> float:
        """The close time before which a conversation is due for the purge."""
        return self._s.now() - days * _DAY

    def plan(self, days: float) -> dict[str, int]:
        """What a purge now would delete, as counts only (``retention run --dry-run``)."""
        cutoff = self.cutoff(days)
        due = f"SELECT id FROM conversations WHERE {_DUE}"
        counts = {
            "conversations": self._count(f"SELECT count(*) FROM conversations WHERE {_DUE}", (cutoff,)),
            "messages": self._count(f"SELECT count(*) FROM messages WHERE conversation_id IN ({due})", (cutoff,)),
            "events": self._count(f"SELECT count(*) FROM events WHERE conversation_id IN ({due})", (cutoff,)),
            "outbox": self._count(
                f"SELECT count(*) FROM outbox WHERE conversation_id IN ({due}) OR id IN"
                f" (SELECT outbox_id FROM outbox_mentions WHERE conversation_id IN ({due}))",
                (cutoff, cutoff),
            ),
            "files": self._count(
                "SELECT count(*) FROM attachments WHERE file IS NOT NULL AND message_id IN"
                f" (SELECT id FROM messages WHERE conversation_id IN ({due}))",
                (cutoff,),
            ),
            "contacts": self._count(
                f"SELECT count(*) FROM contacts k WHERE EXISTS (SELECT 1 FROM conversations WHERE contact_id = k.id"
                f" AND {_DUE}) AND NOT EXISTS (SELECT 1 FROM conversations WHERE contact_id = k.id"
                f" AND NOT ({_DUE}))",
                (cutoff, cutoff),
            ),
        }
        return counts

    def purge_chunk(self, days: float, limit: int) -> dict[str, int]:
        """Delete up to ``limit`` due conversations (oldest first) and what they leave behind; return counts.

        Media files are unlinked after the commit; the caller checkpoints the
        WAL once the whole purge is done.
        """
        cutoff = self.cutoff(days)
        rows = self._s.execute(
            f"SELECT id, contact_id FROM conversations WHERE {_DUE} ORDER BY closed_at, id LIMIT ?", (cutoff, limit)
        ).fetchall()
        counts = dict.fromkeys(PURGE_COUNTS, 0)
        if not rows:
            return counts
        ids = [int(r[0]) for r in rows]
        contacts = sorted({int(r[1]) for r in rows})
        files = self._files(ids)
        for key, value in self._gdpr.forget_conversations(ids).items():
            counts[key] += value
        counts["files"] = len(files)
        for contact_id in contacts:
            if self._s.execute("SELECT 1 FROM conversations WHERE contact_id = ? LIMIT 1", (contact_id,)).fetchone():
                continue  # they still have a conversation: their contact record and key stay
            counts["outbox"] += self._gdpr.forget_contact(contact_id)
            counts["contacts"] += 1
        self._gdpr.unlink_after_commit(files)
        return counts

    def idle(self, idle_for: float, limit: int) -> list[int]:
        """Open conversations with no activity for ``idle_for`` seconds, longest idle first."""
        rows = self._s.execute(
            "SELECT id FROM conversations WHERE status != 'closed' AND updated_at < ? ORDER BY updated_at, id LIMIT ?",
            (self._s.now() - idle_for, limit),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def _files(self, conversation_ids: Sequence[int]) -> list[str]:
        marks = ",".join("?" * len(conversation_ids))
        rows = self._s.execute(
            "SELECT a.file FROM attachments a JOIN messages m ON m.id = a.message_id"
            f" WHERE m.conversation_id IN ({marks}) AND a.file IS NOT NULL",
            list(conversation_ids),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def _count(self, sql: str, args: Sequence[Any]) -> int:
        return int(self._s.execute(sql, args).fetchone()[0])
