"""The durable outbox: every delivery is a row first, written with its message.

Rows are sealed under the key of the person whose data they carry (a
customer's text under the contact's key, so erasing the contact shreds the
copy too). The relay decides what to enqueue and what an outcome means; this
repository keeps the rows and answers the worker's questions.

Order: a row is *due* only when no earlier pending row goes to the same
recipient on the same channel, so a customer (or agent) sees messages in the
order they were written, across retries and restarts. Free text behind a held
row is marked ``behind_hold`` (in order) rather than sent past it; a
re-engagement template waits only for earlier templates, so it reaches
someone whose free text is held.

Cost: the rows first in line carry ``in_line = 1`` (at most two per stream,
kept by the triggers of migration 103 on every insert, status change and
delete), so picking due rows, and every status change, reads a few index
entries whatever the number of rows sent before or queued behind.

Several daemons on one database (PostgreSQL): the worker plans from a
snapshot, then ``claim``s the rows it will send, a lease taken with
``FOR UPDATE SKIP LOCKED`` on rows still pending and in line; a row another
daemon holds waits until its lease runs out (its daemon died).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from bridge.store.keyring import KeyOwner
from bridge.store.records import Delivery, DuePlan
from bridge.store.repos.messages import MessagesRepo
from bridge.store.scrub import scrub_error
from bridge.store.session import Session

#: Why a row is held: released when the person writes again ...
WINDOW_CLOSED = "window"
#: ... or when the channel is enabled again.
CHANNEL_UNAVAILABLE = "channel"

_COLUMNS = (
    "id, conversation_id, message_id, key_kind, key_owner, channel, recipient_kind, recipient_id, recipient,"
    " body, reply_to, template, meta, status, attempts, next_attempt_at, last_error, hold_reason, created_at,"
    " uncertain_at"
)

# The line (``in_line``, kept by the triggers of migration 103) holds at most
# two pending rows per recipient stream: every pick reads that partial index
# and never a stream's history. ``behind`` marks free text queued behind a
# held delivery to the same person (a seek in the partial index of held rows).
_CHANNELS_IN_LINE = (
    "WITH RECURSIVE line(channel) AS ("
    " SELECT MIN(channel) FROM outbox WHERE in_line = 1"
    " UNION ALL SELECT (SELECT MIN(o.channel) FROM outbox o WHERE o.in_line = 1 AND o.channel > line.channel)"
    " FROM line WHERE line.channel IS NOT NULL)"
    " SELECT channel FROM line WHERE channel IS NOT NULL"
)
_DUE_ON_CHANNEL = (
    "SELECT o.id, o.next_attempt_at, o.template = 0 AND EXISTS (SELECT 1 FROM outbox h WHERE h.status = 'held'"
    "   AND h.recipient_kind = o.recipient_kind AND h.recipient_id = o.recipient_id AND h.channel = o.channel"
    "   AND h.id < o.id) AS behind"
    " FROM outbox o WHERE o.in_line = 1 AND o.channel = ? AND o.next_attempt_at <= ?"
    " ORDER BY o.next_attempt_at, o.id LIMIT ?"
)
_NEXT_ON_CHANNEL = "SELECT MIN(next_attempt_at) FROM outbox WHERE in_line = 1 AND channel = ? AND next_attempt_at > ?"


def _error(text: str | None) -> str | None:
    """``last_error`` as stored: at most 500 characters, addresses and ids scrubbed.

    Scrubbed here for every backend (PostgreSQL has no scrub triggers; on
    SQLite migration 2's triggers scrub again whatever else writes the column).
    """
    return None if text is None else scrub_error(text[:500])


def _extid_kind(channel: str) -> str:
    return f"extid:{channel}"


class OutboxRepo:
    """``outbox`` and ``outbox_ids`` (every platform id of every part of a sent delivery)."""

    def __init__(self, session: Session, messages: MessagesRepo) -> None:
        self._s = session
        self._messages = messages

    def enqueue(
        self,
        *,
        channel: str,
        recipient: str,
        recipient_kind: str,
        recipient_id: int,
        text: str,
        key_owner: KeyOwner,
        conversation_id: int | None = None,
        message_id: int | None = None,
        reply_to: str | None = None,
        template: bool = False,
        meta: Mapping[str, str] | None = None,
        status: str = "pending",
        hold_reason: str | None = None,
        last_error: str | None = None,
    ) -> int:
        """Insert one delivery and return its id (the idempotency key for the channel)."""
        if recipient_kind not in ("contact", "agent"):
            raise ValueError(f"recipient_kind must be 'contact' or 'agent', not {recipient_kind!r}")
        row_id = self._s.next_id("outbox")
        now = self._s.now()
        seal = self._s.seal
        self._s.execute(
            "INSERT INTO outbox (id, conversation_id, message_id, key_kind, key_owner, channel, recipient_kind,"
            " recipient_id, recipient, body, reply_to, template, meta, status, attempts, next_attempt_at,"
            " last_error, created_at, hold_reason) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,?,?,?,?)",
            (
                row_id,
                conversation_id,
                message_id,
                key_owner.kind,
                key_owner.id,
                channel,
                recipient_kind,
                recipient_id,
                seal(key_owner, "outbox", "recipient", row_id, recipient),
                seal(key_owner, "outbox", "body", row_id, text),
                seal(key_owner, "outbox", "reply_to", row_id, reply_to) if reply_to else None,
                1 if template else 0,
                seal(key_owner, "outbox", "meta", row_id, json.dumps(dict(meta))) if meta else None,
                status,
                now,
                _error(last_error),
                now,
                hold_reason,
            ),
        )
        self._s.notify("outbox")  # idle workers of other daemons on the same database look again
        return int(row_id)

    def _decode(self, row: Sequence[Any]) -> Delivery:
        (row_id, conv, msg, kind, owner_id, channel, rkind, rid, recipient, body, reply_to, template, meta, status,
         attempts, next_at, last_error, hold_reason, created_at, uncertain_at) = tuple(row)  # fmt: skip
        owner = KeyOwner(kind, owner_id)
        opened = self._s.open_text
        return Delivery(
            id=row_id,
            conversation_id=conv,
            message_id=msg,
            owner=owner,
            channel=channel,
            recipient_kind=rkind,
            recipient_id=rid,
            recipient=opened(owner, "outbox", "recipient", row_id, recipient),
            text=opened(owner, "outbox", "body", row_id, body),
            reply_to=opened(owner, "outbox", "reply_to", row_id, reply_to) if reply_to is not None else None,
            template=bool(template),
            meta=json.loads(opened(owner, "outbox", "meta", row_id, meta)) if meta is not None else {},
            status=status,
            attempts=attempts,
            next_attempt_at=next_at,
            last_error=last_error,
            hold_reason=hold_reason,
            created_at=created_at,
            uncertain_at=uncertain_at,
        )

    def load(self, delivery_id: int) -> Delivery | None:
        """One row, decrypted, or None."""
        row = self._s.execute(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (delivery_id,)).fetchone()
        return self._decode(row) if row else None

    def load_unsealed(self, delivery_id: int) -> Delivery | None:
        """One row with its plain columns only (recipient and text left empty).

        For a row whose sealed cells fail their integrity check: enough to mark it
        failed and tell the responsible agent without decrypting anything.
        """
        row = self._s.execute(
            "SELECT id, conversation_id, message_id, key_kind, key_owner, channel, recipient_kind, recipient_id,"
            " template, status, attempts, uncertain_at FROM outbox WHERE id = ?",
            (delivery_id,),
        ).fetchone()
        if row is None:
            return None
        row_id, conv, msg, kind, owner_id, channel, rkind, rid, template, status, attempts, uncertain = tuple(row)
        return Delivery(
            id=row_id, conversation_id=conv, message_id=msg, owner=KeyOwner(kind, owner_id), channel=channel,
            recipient_kind=rkind, recipient_id=rid, recipient="", text="", reply_to=None, template=bool(template),
            status=status, attempts=attempts, uncertain_at=uncertain,
        )  # fmt: skip

    def due(
        self, now: float, *, exclude: Sequence[int] = (), per_channel: int = 8, skip_channels: Sequence[str] = ()
    ) -> DuePlan:
        """Plan one round of the worker: up to ``per_channel`` due rows of each channel, soonest first.

        A backlog on one channel never starves another. The cost is a few
        index seeks per channel and row returned, whatever the number of rows
        sent before or waiting behind (see ``_DUE_ON_CHANNEL``).
        """
        skip = set(skip_channels)
        excluded = set(exclude)
        limit = per_channel + len(excluded)
        found: list[tuple[float, int, str, bool]] = []
        next_at: float | None = None
        for (channel,) in self._s.execute(_CHANNELS_IN_LINE).fetchall():
            if channel in skip:
                continue
            for row_id, at, behind in self._s.execute(_DUE_ON_CHANNEL, (channel, now, limit)).fetchall():
                if row_id not in excluded:
                    found.append((float(at), int(row_id), str(channel), bool(behind)))
            (later,) = self._s.execute(_NEXT_ON_CHANNEL, (channel, now)).fetchone()
            if later is not None and (next_at is None or later < next_at):
                next_at = float(later)
        found.sort()
        return DuePlan([(row_id, channel, behind) for _at, row_id, channel, behind in found], next_at)

    def claim(self, ids: Sequence[int], owner: str, until: float) -> list[int]:
        """Lease the rows among ``ids`` still first in line to ``owner`` until ``until``; return the ids it got.

        A row is taken when it is pending and in line now (the plan was read
        from a snapshot: another daemon may have sent it, or put an earlier
        row back in line, since), and it has no lease, its lease ran out (its
        daemon died) or ``owner`` holds it already; rows another daemon is
        claiming at this moment are skipped, not waited for.
        """
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self._s.execute(
            "UPDATE outbox SET lease_owner = ?, lease_until = ? WHERE id IN ("
            f"SELECT id FROM outbox WHERE id IN ({marks}) AND status = 'pending' AND in_line = 1"
            f" AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?){self._s.row_locks}) RETURNING id",
            (owner, until, *ids, self._s.now(), owner),
        ).fetchall()
        return sorted(int(r[0]) for r in rows)

    def leased_elsewhere(self, ids: Sequence[int], owner: str) -> dict[int, float]:
        """``{id: lease_until}`` of the rows among ``ids`` another daemon holds a live lease on."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._s.execute(
            f"SELECT id, lease_until FROM outbox WHERE id IN ({marks}) AND lease_owner IS NOT NULL"
            " AND lease_owner != ? AND lease_until >= ?",
            (*ids, owner, self._s.now()),
        ).fetchall()
        return {int(r[0]): float(r[1]) for r in rows}

    def renew(self, ids: Sequence[int], owner: str, until: float) -> int:
        """Extend ``owner``'s leases on ``ids`` (sends still under way); return how many it still holds."""
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        cursor = self._s.execute(
            f"UPDATE outbox SET lease_until = ? WHERE id IN ({marks}) AND lease_owner = ?", (until, *ids, owner)
        )
        return int(cursor.rowcount)

    def mark_sent(self, delivery: Delivery, external_ids: Sequence[str], *, attempt: bool = True) -> None:
        """Record a platform's acceptance and its message id(s), in one commit.

        :param attempt: count it as an attempt (False when a platform report settles an earlier one).
        """
        kind = _extid_kind(delivery.channel)
        first = self._s.blind(kind, external_ids[0]) if external_ids else None
        self._s.execute(
            "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + ?, external_index = ?,"
            " last_error = NULL, hold_reason = NULL, uncertain_at = NULL WHERE id = ?",
            (self._s.now(), 1 if attempt else 0, first, delivery.id),
        )
        for part, external_id in enumerate(external_ids):
            self._s.execute(
                "INSERT INTO outbox_ids (channel, external_index, outbox_id, part) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (channel, external_index) DO UPDATE SET outbox_id = excluded.outbox_id,"
                " part = excluded.part",
                (delivery.channel, self._s.blind(kind, external_id), delivery.id, part),
            )
        if delivery.message_id is not None and delivery.recipient_kind == "contact":
            if external_ids:
                # The customer may quote this message; the store correlates by its platform id.
                self._messages.set_external_id(delivery.message_id, external_ids[0])
            self._messages.advance_status(delivery.message_id, "sent")

    def mark_retry(self, delivery_id: int, next_attempt_at: float, error: str) -> None:
        """Count a failed attempt and schedule the next one (a row no longer pending is left alone)."""
        self._s.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
            " WHERE id = ? AND status = 'pending'",
            (next_attempt_at, _error(error), delivery_id),
        )

    def mark_uncertain(self, delivery_id: int, next_attempt_at: float, error: str) -> bool:
        """Count an attempt whose answer was lost: the platform may have the message.

        The row stays pending until ``next_attempt_at``, so that a report from
        the platform naming it (``confirm_sent``) can settle it first; a row
        already settled (a report beat us to it) is left alone. Returns whether
        the row was still pending.
        """
        cursor = self._s.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, uncertain_at = ?"
            " WHERE id = ? AND status = 'pending'",
            (next_attempt_at, _error(error), self._s.now(), delivery_id),
        )
        return int(cursor.rowcount) > 0

    def confirm_sent(self, delivery_id: int, channel: str, external_id: str) -> Delivery | None:
        """The platform reports it has delivery ``delivery_id`` as ``external_id``: record it sent.

        For a report naming our own idempotency key (WhatsApp's
        ``biz_opaque_callback_data``, Messenger's echo ``metadata``). Only a
        pending row on that channel is changed; returns it (as it was, plain
        columns only), else None. Nothing is decrypted: echoes of every send come here.
        """
        delivery = self.load_unsealed(delivery_id)
        if delivery is None or delivery.status != "pending" or delivery.channel != channel:
            return None
        self.mark_sent(delivery, [external_id], attempt=False)
        return delivery

    def set_last_error(self, delivery_id: int, error: str) -> None:
        """Say why a row waits without counting an attempt (e.g. its channel's credentials were refused)."""
        self._s.execute("UPDATE outbox SET last_error = ? WHERE id = ?", (_error(error), delivery_id))

    def mark_failed(self, delivery: Delivery, error: str) -> None:
        """Give up on a delivery for good."""
        self._s.execute(
            "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?, hold_reason = NULL"
            " WHERE id = ?",
            (_error(error), delivery.id),
        )
        if delivery.message_id is not None and delivery.recipient_kind == "contact":
            self._messages.advance_status(delivery.message_id, "failed")

    def hold(self, delivery: Delivery, reason: str, error: str) -> None:
        """Park a delivery until its recipient (or channel) can be reached again."""
        self._s.execute(
            "UPDATE outbox SET status = 'held', hold_reason = ?, last_error = ? WHERE id = ?",
            (reason, _error(error), delivery.id),
        )
        if delivery.message_id is not None and delivery.recipient_kind == "contact":
            self._messages.advance_status(delivery.message_id, "held")

    def release_held(self, recipient_kind: str, recipient_id: int, channel: str) -> int:
        """Put a person's window-held deliveries on ``channel`` back in line; return how many."""
        cursor = self._s.execute(
            "UPDATE outbox SET status = 'pending', hold_reason = NULL, next_attempt_at = ?"
            " WHERE status = 'held' AND hold_reason = ? AND recipient_kind = ? AND recipient_id = ? AND channel = ?",
            (self._s.now(), WINDOW_CLOSED, recipient_kind, recipient_id, channel),
        )
        if cursor.rowcount:
            self._s.notify("outbox")
        return int(cursor.rowcount)

    def release_channels(self, channels: Sequence[str]) -> int:
        """Put rows held because their channel was unavailable back in line."""
        if not channels:
            return 0
        marks = ",".join("?" * len(channels))
        cursor = self._s.execute(
            f"UPDATE outbox SET status = 'pending', hold_reason = NULL, next_attempt_at = ?"
            f" WHERE status = 'held' AND hold_reason = ? AND channel IN ({marks})",
            (self._s.now(), CHANNEL_UNAVAILABLE, *channels),
        )
        if cursor.rowcount:
            self._s.notify("outbox")
        return int(cursor.rowcount)

    def find_by_external_id(self, channel: str, external_id: str) -> Delivery | None:
        """The delivery one of whose parts the platform knows as ``external_id``."""
        row = self._s.execute(
            "SELECT outbox_id FROM outbox_ids WHERE channel = ? AND external_index = ?",
            (channel, self._s.blind(_extid_kind(channel), external_id)),
        ).fetchone()
        return self.load(row[0]) if row else None

    def sent_message_ids(self, contact_id: int, channel: str, until: float) -> list[int]:
        """Messages sent to a contact on ``channel`` up to ``until`` (a platform's read/delivery watermark)."""
        rows = self._s.execute(
            "SELECT message_id FROM outbox WHERE recipient_kind = 'contact' AND recipient_id = ? AND channel = ?"
            " AND status = 'sent' AND message_id IS NOT NULL AND sent_at <= ?",
            (contact_id, channel, until),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def oldest_pending_age(self, now: float) -> float:
        """Age in seconds of the oldest pending row (0 with none): one seek, whatever the backlog."""
        row = self._s.execute(
            "SELECT created_at FROM outbox WHERE status = 'pending' AND status IN ('pending', 'held')"
            " ORDER BY status, id LIMIT 1"
        ).fetchone()
        return max(0.0, now - float(row[0])) if row is not None else 0.0

    def waiting(self) -> int:
        """Rows waiting (pending or held); counting reads every open row, so callers pace it."""
        (depth,) = self._s.execute("SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'held')").fetchone()
        return int(depth)

    @staticmethod
    def extid_kind(channel: str) -> str:
        """Blind-index kind of the platform ids of our sends on ``channel``."""
        return _extid_kind(channel)
