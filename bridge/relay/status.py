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
from . import outbox, windows

if TYPE_CHECKING:
    from .context import RelayContext


def apply_status_updates(tx: Any, rctx: RelayContext, channel: str, updates: list[StatusUpdate]) -> int:
    """Apply every report; return how many deliveries they touched."""
    touched = 0
    for update in updates:
        if update.external_id:
            delivery = outbox.find_by_external_id(tx, channel, update.external_id)
            if delivery is None:
                continue
            touched += 1
            if update.status == "failed":
                windows.on_status_failed(tx, rctx, delivery, update.error_code, update.error_title)
            elif (
                update.status in ("delivered", "read")
                and delivery.message_id is not None
                and delivery.recipient_kind == "contact"
            ):
                outbox.set_message_status(tx, delivery.message_id, update.status)
        elif update.watermark is not None and update.recipient and update.status in ("delivered", "read"):
            touched += _watermark(tx, channel, update.recipient, update.watermark, update.status)
    return touched


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
