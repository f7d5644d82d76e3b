"""Platform reports on what we sent: sent, delivered, read, failed.

Reports name a platform message id (any part of a split text) or, for
Messenger, a watermark covering every earlier message to a recipient. A
report that also names our delivery id settles a pending delivery (a send
whose answer was lost) before anything else (``fallbacks.confirm_by_report``).
``delivered``/``read`` move the customer-facing message's status forward;
``failed`` takes the window path when the channel marks it ``window_closed``,
else the delivery fails and the agent is told.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.models import StatusUpdate
from bridge.relay import fallbacks
from bridge.store import Delivery, Tx

if TYPE_CHECKING:
    from bridge.relay.context import RelayContext


def apply_status_updates(tx: Tx, rctx: RelayContext, channel: str, updates: list[StatusUpdate]) -> int:
    """Apply every report; return how many deliveries they touched.

    A report may beat our own commit of the platform's answer (the webhook
    races the send's 2xx): one naming an id we do not know yet is kept in
    ``early_statuses`` and applied when the send is recorded (``apply_early``).
    """
    touched = 0
    for update in updates:
        if update.delivery_id is not None and update.external_id:
            fallbacks.confirm_by_report(tx, rctx, channel, update)
        if update.external_id:
            delivery = tx.outbox.find_by_external_id(channel, update.external_id)
            if delivery is None:
                if update.status in ("delivered", "read", "failed"):
                    tx.relay.keep_early_status(
                        channel, tx.outbox.extid_kind(channel), update.external_id, update.status,
                        update.error_code, update.error_title, window_closed=update.window_closed,
                    )  # fmt: skip
                continue
            touched += 1
            _apply(tx, rctx, delivery, update.status, update.error_code, update.error_title, update.window_closed)
        elif update.watermark is not None and update.recipient and update.status in ("delivered", "read"):
            touched += _watermark(tx, channel, update.recipient, update.watermark, update.status)
    return touched


def _apply(tx: Tx, rctx: RelayContext, delivery: Delivery, status: str, code: str | None,
           title: str | None, window_closed: bool) -> None:  # fmt: skip
    if status == "failed":
        fallbacks.on_status_failed(tx, rctx, delivery, code, title, window_closed=window_closed)
    elif status in ("delivered", "read") and delivery.message_id is not None and delivery.recipient_kind == "contact":
        tx.messages.advance_status(delivery.message_id, status)


def apply_early(tx: Tx, rctx: RelayContext, delivery_id: int, channel: str, external_ids: list[str]) -> int:
    """Apply reports that arrived before the send was recorded; return how many."""
    applied = 0
    order = {"delivered": 0, "read": 1, "failed": 2}
    found = tx.relay.take_early_statuses(channel, tx.outbox.extid_kind(channel), external_ids)
    for early in sorted(found, key=lambda f: order.get(f.status, 0)):
        delivery = tx.outbox.load(delivery_id)
        if delivery is not None:
            _apply(tx, rctx, delivery, early.status, early.error_code, early.error_title, early.window_closed)
            applied += 1
    return applied


def _watermark(tx: Tx, channel: str, recipient: str, watermark: float, status: str) -> int:
    """Mark every message sent to ``recipient`` up to ``watermark`` delivered or read."""
    identity = tx.contacts.find_identity(channel, recipient)
    if identity is None:
        return 0
    message_ids = tx.outbox.sent_message_ids(identity.contact_id, channel, watermark)
    for message_id in message_ids:
        tx.messages.advance_status(message_id, status)
    return len(message_ids)
