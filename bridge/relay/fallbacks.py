"""Delivery outcomes that need a fall-back: closed reply windows, missing channels, failures.

A WhatsApp-style window closes 24 h after the recipient last wrote. A
refused free-text delivery (``WindowClosedError``, or a later ``failed``
status the channel marks ``window_closed``) is never dropped: the row is *held* and released when the
person writes again. Meanwhile, for a customer, the channel's re-engagement
template goes out once and the agent is told; for an agent, the template goes
out once and each held text is also mailed when they have an email address
and the email channel is enabled. Agents are warned before their window closes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bridge import agents as agents_repo
from bridge.errors import IntegrityError
from bridge.models import StatusUpdate
from bridge.relay import reads
from bridge.relay.format import display_name
from bridge.relay.routing import notify_agent
from bridge.store import (
    CHANNEL_UNAVAILABLE,
    WINDOW_CLOSED,
    Agent,
    Conversation,
    Delivery,
    Tx,
)

if TYPE_CHECKING:
    from bridge.relay.context import RelayContext

log = logging.getLogger(__name__)

REENGAGE = "reengage"
WARNED = "window_warning"
EMAIL = "email"


def load_for_send(tx: Tx, delivery_id: int) -> tuple[Delivery, float | None] | None:
    """Return a delivery and when its recipient last wrote on its channel."""
    delivery = tx.outbox.load(delivery_id)
    if delivery is None:
        return None
    return delivery, last_inbound(tx, delivery)


def last_inbound(tx: Tx, delivery: Delivery) -> float | None:
    """When the recipient of ``delivery`` last wrote to us on its channel (None: never)."""
    if delivery.recipient_kind == "agent":
        return tx.agents.last_inbound_at(delivery.recipient_id, delivery.channel)
    return tx.contacts.last_inbound_at(delivery.recipient_id, delivery.channel)


def _responsible_agent(tx: Tx, delivery: Delivery) -> tuple[Agent, Conversation] | None:
    """The agent to tell about a customer delivery: the conversation's, else the author's."""
    if delivery.conversation_id is None:
        return None
    conv = tx.conversations.get(delivery.conversation_id)
    if conv is None:
        return None
    agent_id = conv.agent_id
    if agent_id is None and delivery.message_id is not None:
        agent_id = tx.messages.author(delivery.message_id)
    agent = tx.agents.get(agent_id) if agent_id is not None else None
    return (agent, conv) if agent is not None else None


def tell_agent(tx: Tx, rctx: RelayContext, delivery: Delivery, key: str, **fields: Any) -> int | None:
    """Send notice ``key`` about a customer delivery to the responsible agent.

    An agent whose record fails its integrity check cannot be told: that is
    logged, and the delivery's own outcome is still recorded.
    """
    try:
        found = _responsible_agent(tx, delivery)
    except IntegrityError as err:
        log.error("cannot tell the agent about delivery %d (%s): %s", delivery.id, key, err)
        return None
    if found is None:
        return None
    agent, conv = found
    name = display_name(reads.contact_name(tx, conv.contact_id), conv.id)
    text = rctx.templates.render(
        key, None, conversation=conv.id, contact=name, channel=rctx.label(delivery.channel), **fields
    )
    return notify_agent(tx, rctx, agent, text, conversation_id=conv.id)


def on_channel_unavailable(tx: Tx, rctx: RelayContext, delivery: Delivery) -> None:
    """Hold a delivery whose channel is not installed or enabled; tell the agent."""
    error = f"channel {delivery.channel!r} is not installed or not enabled on this bridge"
    tx.outbox.hold(delivery, CHANNEL_UNAVAILABLE, error)
    if delivery.recipient_kind == "contact":
        tell_agent(tx, rctx, delivery, "channel_unavailable", error="")
    else:
        # Nobody can be told in chat: the agent's own channel is the missing one.
        log.warning(
            "agent %s prefers channel %s, which is not enabled: their deliveries are held"
            " (enable the channel or run `carebridge agent set-channel`)",
            delivery.recipient_id, delivery.channel,
        )  # fmt: skip


def on_failed(tx: Tx, rctx: RelayContext, delivery: Delivery, reason: str) -> None:
    """Give up on a delivery; a customer's failure is told to the agent."""
    tx.outbox.mark_failed(delivery, reason)
    if delivery.recipient_kind == "contact":
        tell_agent(tx, rctx, delivery, "delivery_failed", error=reason)


def on_unreadable(tx: Tx, rctx: RelayContext, delivery_id: int, error: IntegrityError) -> None:
    """Fail a delivery whose sealed cells were tampered with or corrupted; tell its agent.

    Retrying cannot help (the ciphertext will not change), and leaving the row
    pending would block every later delivery to the same person.
    """
    delivery = tx.outbox.load_unsealed(delivery_id)
    if delivery is None or delivery.status != "pending":
        return
    reason = f"integrity check failed, the stored message is unreadable: {error}"
    log.error("outbox: delivery %d on %s marked failed: %s", delivery.id, delivery.channel, reason)
    tx.outbox.mark_failed(delivery, reason)
    if delivery.recipient_kind == "contact":
        tell_agent(tx, rctx, delivery, "delivery_failed", error="it was damaged in the store (integrity check)")


def on_window_closed(tx: Tx, rctx: RelayContext, delivery: Delivery, reason: str) -> None:
    """Hold a delivery refused for a closed window and start the fall-backs (once per window)."""
    if delivery.template:
        # Even the template was refused: nothing else can reach them on this channel.
        on_failed(tx, rctx, delivery, reason)
        return
    tx.outbox.hold(delivery, WINDOW_CLOSED, reason)
    subject = f"{delivery.recipient_kind}:{delivery.recipient_id}:{delivery.channel}"
    first = tx.relay.flag(REENGAGE, subject)
    # Only a channel with an approved template configured can knock on a closed window.
    reengage = rctx.can_reengage(delivery.channel)
    if delivery.recipient_kind == "contact":
        if first:
            if reengage:
                _enqueue_template(tx, rctx, delivery, "[re-engagement template]")
            email, verified = reads.contact_email(tx, delivery.recipient_id)
            hint = " " + rctx.templates.render("email_hint") if email and verified else ""
            key = "window_closed_customer" if reengage else "window_closed_customer_wait"
            tell_agent(tx, rctx, delivery, key, email=hint)
        return
    agent = tx.agents.get(delivery.recipient_id)
    if agent is None:
        return
    if first and reengage:
        notice = rctx.templates.render("window_closed_agent", None, channel=rctx.label(delivery.channel))
        _enqueue_template(tx, rctx, delivery, notice)
    if agent.email and rctx.channel_enabled(EMAIL) and delivery.channel != EMAIL:
        tx.outbox.enqueue(
            channel=EMAIL,
            recipient=agent.email,
            recipient_kind="agent",
            recipient_id=agent.id,
            text=delivery.text,
            key_owner=delivery.owner,
            conversation_id=delivery.conversation_id,
            message_id=delivery.message_id,
            meta={"subject": "Carebridge: messages while your window is closed"},
        )
        rctx.wake()


def _enqueue_template(tx: Tx, rctx: RelayContext, delivery: Delivery, text: str) -> None:
    """Queue the channel's re-engagement template to the same recipient (``text`` is our record of it)."""
    tx.outbox.enqueue(
        channel=delivery.channel,
        recipient=delivery.recipient,
        recipient_kind=delivery.recipient_kind,
        recipient_id=delivery.recipient_id,
        text=text,
        key_owner=delivery.owner,
        conversation_id=delivery.conversation_id,
        template=True,
    )
    rctx.wake()


def on_status_failed(
    tx: Tx, rctx: RelayContext, delivery: Delivery, code: str | None, title: str | None, *, window_closed: bool
) -> None:
    """A delivery the platform accepted later failed: a closed window (the channel says so) takes the window path."""
    if delivery.status in ("failed", "cancelled", "held"):
        return  # already handled (platforms repeat status reports)
    reason = f"{title or 'delivery failed'}" + (f" (code {code})" if code else "")
    if window_closed:
        on_window_closed(tx, rctx, delivery, reason)
    else:
        on_failed(tx, rctx, delivery, reason)


def confirm_by_report(tx: Tx, rctx: RelayContext, channel: str, update: StatusUpdate) -> bool:
    """A platform report names our delivery: a pending one is recorded as sent, so it is never sent again.

    This is how a send whose answer was lost (or that was cut off at
    shutdown) is settled without a duplicate; it also settles a send whose
    answer has not been recorded yet, which the worker then records again
    harmlessly. Returns whether a pending delivery was settled.
    """
    if update.delivery_id is None or not update.external_id or update.status not in ("sent", "delivered", "read"):
        return False
    delivery = tx.outbox.confirm_sent(update.delivery_id, channel, update.external_id)
    if delivery is None:
        return False
    if delivery.uncertain_at is not None:
        log.info("delivery %d on %s: the platform reports it, so it is not sent again", delivery.id, channel)
        observer = rctx.observer
        tx.after_commit(lambda: observer.delivery(channel, "confirmed"))
    return True


def person_wrote(tx: Tx, rctx: RelayContext, kind: str, person_id: int, channel: str) -> int:
    """Release the window-held deliveries of someone who just wrote on ``channel``."""
    tx.relay.clear_flag(REENGAGE, f"{kind}:{person_id}:{channel}")
    released = tx.outbox.release_held(kind, person_id, channel)
    if released:
        rctx.wake()
    return released


def check_window_warnings(tx: Tx, rctx: RelayContext) -> int:
    """Warn online agents whose reply window closes within ``routing.window_warning``; once per window."""
    now = rctx.now()
    lead = rctx.config.routing.window_warning
    sent = 0
    for agent_id in tx.agents.enabled_ids():
        try:
            agent = tx.agents.get(agent_id)
        except IntegrityError as err:  # one damaged record must not cost the others their warning
            log.error("agent %d is unreadable and cannot be warned: %s", agent_id, err)
            continue
        if agent is None:
            continue
        window = rctx.channel_window(agent.channel)
        if window is None or agent.disabled or not agents_repo.is_online(tx, agent.id, now):
            continue
        last = tx.agents.last_inbound_at(agent.id, agent.channel)
        if last is None or not (last + window - lead <= now < last + window):
            continue
        if tx.relay.flag(WARNED, f"{agent.id}:{agent.channel}:{last:.3f}"):
            minutes = max(1, int((last + window - now) // 60))
            text = rctx.templates.render("window_warning", None, channel=rctx.label(agent.channel), minutes=minutes)
            notify_agent(tx, rctx, agent, text)
            sent += 1
    return sent
