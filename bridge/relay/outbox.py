"""The durable outbox: every delivery is a row first, written with its message.

Rows are sealed under the key of the person whose data they carry (a
customer's text under the contact's key, so erasing the contact shreds the
copy too). The worker (``worker.py``) sends them; the functions here are the
sync repository it and the relay use inside ``store.read``/``store.write``.

Order: a row is *due* only when no earlier pending row goes to the same
recipient on the same channel, so a customer (or agent) sees messages in
the order they were written, across retries and restarts. Free text behind
a held row is held too (in order) rather than sent past it; a re-engagement
template waits only for earlier templates, so it reaches someone whose free
text is held.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..store import KeyOwner

RecipientKind = str  # "contact" | "agent"
CHANNEL_UNAVAILABLE = "channel"
WINDOW_CLOSED = "window"


def retry_delay(
    attempt: int,
    base: float,
    maximum: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Return the wait before retry number ``attempt`` (1-based).

    Exponential (``base * 2**(attempt-1)``, capped at ``maximum``) with
    "equal jitter": half the delay fixed, half random, so retries of many rows
    spread out but never come back at once. A platform's ``retry_after`` is a
    floor: we never call back sooner than asked.
    """
    rng = rng or random.Random()
    delay = float(min(maximum, base * (2 ** max(0, attempt - 1))))
    jittered = delay / 2 + rng.uniform(0, delay / 2)
    if retry_after is not None and retry_after > jittered:
        return float(retry_after)
    return jittered


@dataclass(frozen=True)
class Delivery:
    """One outbox row, decrypted."""

    id: int
    conversation_id: int | None
    message_id: int | None
    owner: Any
    channel: str
    recipient_kind: str
    recipient_id: int
    recipient: str
    text: str
    reply_to: str | None
    template: bool
    meta: Mapping[str, str] = field(default_factory=dict)
    status: str = "pending"
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str | None = None
    hold_reason: str | None = None
    created_at: float = 0.0


def owner_of(kind: str, owner_id: int) -> KeyOwner:
    """Rebuild the key owner recorded in a row (``KeyOwner.SYSTEM`` compares equal to its parts)."""
    return KeyOwner(kind, owner_id)


def enqueue(
    tx: Any,
    *,
    channel: str,
    recipient: str,
    recipient_kind: RecipientKind,
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
    conn = tx.conn
    row_id = tx.next_id("outbox")
    now = tx.now()
    conn.execute(
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
            tx.seal(key_owner, "outbox", "recipient", row_id, recipient),
            tx.seal(key_owner, "outbox", "body", row_id, text),
            tx.seal(key_owner, "outbox", "reply_to", row_id, reply_to) if reply_to else None,
            1 if template else 0,
            tx.seal(key_owner, "outbox", "meta", row_id, json.dumps(dict(meta))) if meta else None,
            status,
            now,
            last_error,
            now,
            hold_reason,
        ),
    )
    return int(row_id)


_COLUMNS = (
    "id, conversation_id, message_id, key_kind, key_owner, channel, recipient_kind, recipient_id, recipient,"
    " body, reply_to, template, meta, status, attempts, next_attempt_at, last_error, hold_reason, created_at"
)


def _decode(tx: Any, row: Sequence[Any]) -> Delivery:
    (
        row_id,
        conv,
        msg,
        kind,
        owner_id,
        channel,
        rkind,
        rid,
        recipient,
        body,
        reply_to,
        template,
        meta,
        status,
        attempts,
        next_at,
        last_error,
        hold_reason,
        created_at,
    ) = tuple(row)
    owner = owner_of(kind, owner_id)
    return Delivery(
        id=row_id,
        conversation_id=conv,
        message_id=msg,
        owner=owner,
        channel=channel,
        recipient_kind=rkind,
        recipient_id=rid,
        recipient=tx.open_text(owner, "outbox", "recipient", row_id, recipient),
        text=tx.open_text(owner, "outbox", "body", row_id, body),
        reply_to=tx.open_text(owner, "outbox", "reply_to", row_id, reply_to) if reply_to is not None else None,
        template=bool(template),
        meta=json.loads(tx.open_text(owner, "outbox", "meta", row_id, meta)) if meta is not None else {},
        status=status,
        attempts=attempts,
        next_attempt_at=next_at,
        last_error=last_error,
        hold_reason=hold_reason,
        created_at=created_at,
    )


def load(tx: Any, delivery_id: int) -> Delivery | None:
    """Return one row, decrypted, or None."""
    row = tx.conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (delivery_id,)).fetchone()
    return _decode(tx, row) if row else None


def load_unsealed(tx: Any, delivery_id: int) -> Delivery | None:
    """One row with its plain columns only (recipient and text left empty).

    For a row whose sealed cells fail their integrity check: enough to mark it
    failed and tell the responsible agent without decrypting anything.
    """
    row = tx.conn.execute(
        "SELECT id, conversation_id, message_id, key_kind, key_owner, channel, recipient_kind, recipient_id,"
        " template, status, attempts FROM outbox WHERE id = ?",
        (delivery_id,),
    ).fetchone()
    if row is None:
        return None
    row_id, conv, msg, kind, owner_id, channel, rkind, rid, template, status, attempts = tuple(row)
    return Delivery(
        id=row_id, conversation_id=conv, message_id=msg, owner=owner_of(kind, owner_id), channel=channel,
        recipient_kind=rkind, recipient_id=rid, recipient="", text="", reply_to=None, template=bool(template),
        status=status, attempts=attempts,
    )  # fmt: skip


# Pending rows first in line for their recipient stream: no earlier pending row
# to the same person on the same channel (a template waits only for templates).
# ``behind`` marks free text queued behind a held delivery to that person.
_FIRST_IN_LINE = (
    "SELECT o.id, o.channel, o.next_attempt_at, o.template = 0 AND EXISTS (SELECT 1 FROM outbox h"
    "   WHERE h.recipient_kind = o.recipient_kind AND h.recipient_id = o.recipient_id AND h.channel = o.channel"
    "   AND h.id < o.id AND h.status = 'held') AS behind"
    " FROM outbox o WHERE o.status = 'pending'"
    " AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.recipient_kind = o.recipient_kind"
    "   AND p.recipient_id = o.recipient_id AND p.channel = o.channel AND p.id < o.id AND p.status = 'pending'"
    "   AND (o.template = 0 OR p.template = 1))"
)


def due(
    tx: Any,
    now: float,
    *,
    exclude: Sequence[int] = (),
    per_channel: int = 8,
    skip_channels: Sequence[str] = (),
) -> tuple[list[tuple[int, str, bool]], float | None]:
    """Plan one round of the worker.

    Returns ``(rows, next_at)``: up to ``per_channel`` due rows of each
    channel as ``(id, channel, behind_hold)``, soonest first, so that a
    backlog on one channel never starves another; and when the next row
    that is not due yet will be (None if none). ``behind_hold`` is True for
    free text queued behind a held delivery to the same person: its window
    is known to be closed, so the worker applies the fall-backs, not a send.
    """
    skip = tuple(skip_channels)
    not_skipped = f" AND channel NOT IN ({','.join('?' * len(skip))})" if skip else ""
    limit = per_channel + len(exclude)
    rows = tx.conn.execute(
        f"WITH line AS ({_FIRST_IN_LINE}) SELECT id, channel, behind FROM ("
        "  SELECT id, channel, next_attempt_at, behind,"
        "  ROW_NUMBER() OVER (PARTITION BY channel ORDER BY next_attempt_at, id) AS n"
        f"  FROM line WHERE next_attempt_at <= ?{not_skipped})"
        " WHERE n <= ? ORDER BY next_attempt_at, id",
        (now, *skip, limit),
    ).fetchall()
    (next_at,) = tx.conn.execute(
        f"WITH line AS ({_FIRST_IN_LINE}) SELECT MIN(next_attempt_at) FROM line WHERE next_attempt_at > ?{not_skipped}",
        (now, *skip),
    ).fetchone()
    excluded = set(exclude)
    planned = [(int(r[0]), str(r[1]), bool(r[2])) for r in rows if r[0] not in excluded]
    return planned, (float(next_at) if next_at is not None else None)


def mark_sent(tx: Any, delivery: Delivery, external_ids: Sequence[str]) -> None:
    """Record a platform's acceptance and its message id(s), in one commit."""
    now = tx.now()
    first = tx.blind(f"extid:{delivery.channel}", external_ids[0]) if external_ids else None
    tx.conn.execute(
        "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, external_index = ?,"
        " last_error = NULL, hold_reason = NULL WHERE id = ?",
        (now, first, delivery.id),
    )
    for part, external_id in enumerate(external_ids):
        tx.conn.execute(
            "INSERT OR REPLACE INTO outbox_ids (channel, external_index, outbox_id, part) VALUES (?, ?, ?, ?)",
            (delivery.channel, tx.blind(f"extid:{delivery.channel}", external_id), delivery.id, part),
        )
    if delivery.message_id is not None and delivery.recipient_kind == "contact":
        if external_ids:
            # The customer may quote this message; the store correlates by its platform id.
            tx.set_message_external_id(delivery.message_id, external_ids[0])
        set_message_status(tx, delivery.message_id, "sent")


def set_message_status(tx: Any, message_id: int, status: str) -> None:
    """Move an outbound message's status forward (never back from read to delivered)."""
    rank = {"pending": 0, "held": 1, "sent": 2, "delivered": 3, "read": 4, "failed": 5}
    row = tx.conn.execute("SELECT status FROM messages WHERE id = ?", (message_id,)).fetchone()
    if row is None:
        return
    current = row[0]
    if status in ("failed", "held", "pending") or rank.get(status, 0) > rank.get(current, -1):
        tx.conn.execute("UPDATE messages SET status = ? WHERE id = ?", (status, message_id))


def mark_retry(tx: Any, delivery_id: int, next_attempt_at: float, error: str) -> None:
    """Count a failed attempt and schedule the next one."""
    tx.conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?",
        (next_attempt_at, error[:500], delivery_id),
    )


def mark_failed(tx: Any, delivery: Delivery, error: str) -> None:
    """Give up on a delivery for good."""
    tx.conn.execute(
        "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?, hold_reason = NULL WHERE id = ?",
        (error[:500], delivery.id),
    )
    if delivery.message_id is not None and delivery.recipient_kind == "contact":
        set_message_status(tx, delivery.message_id, "failed")


def hold(tx: Any, delivery: Delivery, reason: str, error: str) -> None:
    """Park a delivery until its recipient (or channel) can be reached again."""
    tx.conn.execute(
        "UPDATE outbox SET status = 'held', hold_reason = ?, last_error = ? WHERE id = ?",
        (reason, error[:500], delivery.id),
    )
    if delivery.message_id is not None and delivery.recipient_kind == "contact":
        set_message_status(tx, delivery.message_id, "held")


def release_held(tx: Any, recipient_kind: str, recipient_id: int, channel: str) -> int:
    """Put a person's window-held deliveries on ``channel`` back in line; return how many."""
    cur = tx.conn.execute(
        "UPDATE outbox SET status = 'pending', hold_reason = NULL, next_attempt_at = ?"
        " WHERE status = 'held' AND hold_reason = ? AND recipient_kind = ? AND recipient_id = ? AND channel = ?",
        (tx.now(), WINDOW_CLOSED, recipient_kind, recipient_id, channel),
    )
    return int(cur.rowcount)


def release_channel(tx: Any, channels: Sequence[str]) -> int:
    """Put rows held because their channel was unavailable back in line."""
    if not channels:
        return 0
    marks = ",".join("?" * len(channels))
    cur = tx.conn.execute(
        f"UPDATE outbox SET status = 'pending', hold_reason = NULL, next_attempt_at = ?"
        f" WHERE status = 'held' AND hold_reason = ? AND channel IN ({marks})",
        (tx.now(), CHANNEL_UNAVAILABLE, *channels),
    )
    return int(cur.rowcount)


def find_by_external_id(tx: Any, channel: str, external_id: str) -> Delivery | None:
    """Return the delivery one of whose parts the platform knows as ``external_id``."""
    row = tx.conn.execute(
        "SELECT outbox_id FROM outbox_ids WHERE channel = ? AND external_index = ?",
        (channel, tx.blind(f"extid:{channel}", external_id)),
    ).fetchone()
    return load(tx, row[0]) if row else None


def stats(tx: Any, now: float) -> tuple[int, float]:
    """Return (rows waiting: pending or held, age in seconds of the oldest pending row)."""
    depth, oldest = tx.conn.execute(
        "SELECT COUNT(*), MIN(CASE WHEN status = 'pending' THEN created_at END) FROM outbox"
        " WHERE status IN ('pending', 'held')"
    ).fetchone()
    return int(depth), (max(0.0, now - oldest) if oldest is not None else 0.0)


def flag(tx: Any, name: str, subject: str) -> bool:
    """Set a once-per-period flag; return True when it was not set before."""
    cur = tx.conn.execute(
        "INSERT OR IGNORE INTO relay_flags (name, subject, at) VALUES (?, ?, ?)", (name, subject, tx.now())
    )
    return bool(cur.rowcount == 1)


def clear_flag(tx: Any, name: str, subject: str) -> None:
    """End a period: the next ``flag`` call succeeds again."""
    tx.conn.execute("DELETE FROM relay_flags WHERE name = ? AND subject = ?", (name, subject))
