"""Platform reports on what we sent: sent, delivered, read, failed.

Reports name a platform message id (any part of a split text) or, for
Messenger, a watermark covering every earlier message to a recipient.
``delivered``/``read`` move the customer-facing message's status forward;
``failed`` takes the window path for code 131047, else the delivery fails and
the agent is told.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..models import StatusUpdate
from ..store.scrub import scrub_error
from . import outbox, windows

if TYPE_CHECKING:
    from .context import RelayContext


def apply_status_updates(tx: Any, rctx: RelayContext, channel: str, updates: list[StatusUpdate]) -> int:
    """Apply every report; return how many deliveries they touched.

    A report may beat our own commit of the platform's answer (the webhook
    races the send's 2xx): one naming an id we do not know yet is kept in
    ``early_statuses`` and applied when the send is recorded (``apply_early``).
    """
    touched = 0
    for update in updates:
        if update.external_id:
            delivery = outbox.find_by_external_id(tx, channel, update.external_id)
            if delivery is None:
                if update.status in ("delivered", "read", "failed"):
                    tx.conn.execute(
                        "INSERT OR IGNORE INTO early_statuses (channel, external_index, status, error_code,"
                        " error_title, at) VALUES (?, ?, ?, ?, ?, ?)",
                        (channel, tx.blind(f"extid:{channel}", update.external_id), update.status,
                         update.error_code, scrub_error(update.error_title), tx.now()),
                    )  # fmt: skip
                continue
            touched += 1
            _apply(tx, rctx, delivery, update.status, update.error_code, update.error_title)
        elif update.watermark is not None and update.recipient and update.status in ("delivered", "read"):
            touched += _watermark(tx, channel, update.recipient, update.watermark, update.status)
    return touched


def _apply(tx: Any, rctx: RelayContext, delivery: outbox.Delivery, status: str, code: str | None,
           title: str | None) -> None:  # fmt: skip
    if status == "failed":
        windows.on_status_failed(tx, rctx, delivery, code, title)
    elif status in ("delivered", "read") and delivery.message_id is not None and delivery.recipient_kind == "contact":
        outbox.set_message_status(tx, delivery.message_id, status)


def apply_early(tx: Any, rctx: RelayContext, delivery_id: int, channel: str, external_ids: list[str]) -> int:
    """Apply reports that arrived before the send was recorded; return how many."""
    applied = 0
    order = {"delivered": 0, "read": 1, "failed": 2}
    found: list[tuple[str, str | None, str | None, bytes]] = []
    for external_id in external_ids:
        index = tx.blind(f"extid:{channel}", external_id)
        rows = tx.conn.execute(
            "SELECT status, error_code, error_title FROM early_statuses WHERE channel = ? AND external_index = ?",
            (channel, index),
        ).fetchall()
        found.extend((r[0], r[1], r[2], index) for r in rows)
    for status, code, title, index in sorted(found, key=lambda f: order.get(f[0], 0)):
        delivery = outbox.load(tx, delivery_id)
        if delivery is not None:
            _apply(tx, rctx, delivery, status, code, title)
            applied += 1
        tx.conn.execute("DELETE FROM early_statuses WHERE channel = ? AND external_index = ?", (channel, index))
    return applied


def _watermark(tx: Any, channel: str, recipient: str, watermark: float, status: str) -> int:
    """Mark every message sent to ``recipient`` up to ``watermark`` delivered or read."""
    identity = tx.find_identity(channel, recipient)
    if identity is None:
        return 0
    rows = tx.conn.execute(
        "SELECT message_id FROM outbox WHERE recipient_kind = 'contact' AND recipient_id = ? AND channel = ?"
        " AND status = 'sent' AND message_id IS NOT NULL AND sent_at <= ?",
        (identity.contact_id, channel, watermark),
    ).fetchall()
    for (message_id,) in rows:
        outbox.set_message_status(tx, message_id, status)
    return len(rows)
