"""Who handles a conversation, and the deliveries that follow from it.

Sync helpers run inside ``store.write``: they change conversations, write
events and enqueue outbox rows in the caller's transaction, so an
assignment and the messages it releases commit together. H6's commands and
transfer use them too (see RELAY-SHARED).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge import agents as agents_repo
from bridge.errors import IntegrityError
from bridge.relay import reads, reply_tokens, sensitive
from bridge.relay.format import (
    attachment_line,
    cap_for_relay,
    display_name,
    format_prefix,
    relay_text,
)
from bridge.store import Agent, Conversation, KeyOwner, Message, Tx

if TYPE_CHECKING:
    from bridge.relay.context import RelayContext

__all__ = [
    "assign",
    "assign_waiting",
    "close_idle",
    "format_prefix",
    "notify_agent",
    "recent_messages",
    "relay_to_agent",
    "requeue",
    "route",
    "send_to_customer",
]

log = logging.getLogger(__name__)

QUEUED_NOTICE = "queued_notice"
#: Message meta the core sets on a customer message whose sender failed the channel's check.
UNVERIFIED_SENDER = "sender_unverified"
#: What an agent sees after the prefix of such a message.
UNVERIFIED_WARNING = "[unverified sender: this may not be who it claims]"
# Meta of the core's own, never passed back to a channel as threading data.
_CORE_META = frozenset({UNVERIFIED_SENDER, "reply_token", "recipient_kind"})


@dataclass(frozen=True)
class RoutingCandidate:
    """What a ``choose_agent`` strategy sees of one agent (see bridge.relay.strategies)."""

    agent: Agent
    open_conversations: int
    idle_since: float
    last_assigned_at: float | None


def recent_messages(tx: Tx, conversation_id: int, n: int) -> list[Message]:
    """The last ``n`` messages, decrypted, oldest first."""
    return reads.recent_messages(tx, conversation_id, n)


def notify_agent(
    tx: Tx,
    rctx: RelayContext,
    agent: Agent,
    text: str,
    *,
    conversation_id: int | None = None,
    about: Sequence[int] = (),
) -> int | None:
    """Enqueue ``text`` to the agent's preferred channel; return the outbox id.

    Whatever names or quotes a customer must be erased with them. A notice
    about one conversation (``conversation_id``) is sealed under its
    customer's key, so destroying that key is enough. A notice naming several
    conversations at once (``about``: ``/list``) is sealed under the agent's
    key, and each conversation it names is recorded so erasure and retention
    delete the row. Anything else is sealed under the agent's key and must
    name no customer. Returns None when the agent has no reachable address.
    """
    if agent.channel != "console" and not agent.address:
        return None
    about = list(dict.fromkeys(about))
    if conversation_id is None and len(about) == 1:
        conversation_id = about[0]
    owner = KeyOwner.agent(agent.id)
    # A reply token even outside a conversation: an answer to a notice is provably the agent's.
    meta: dict[str, str] = {"reply_token": reply_tokens.issue(tx, None, "agent", agent.id)}
    if conversation_id is not None:
        conv = tx.conversations.get(conversation_id)
        if conv is not None:
            owner = KeyOwner.contact(conv.contact_id)
            # Threading data for channels that use it (email: Subject, Reply-To token).
            meta = agent_thread_meta(tx, conv.id, agent.id, _conversation_label(tx, rctx, conv))
        return _enqueue_to_agent(tx, rctx, agent, text, owner=owner, conversation_id=conversation_id, meta=meta)
    row = _enqueue_to_agent(tx, rctx, agent, text, owner=owner, conversation_id=None, meta=meta)
    if about:
        tx.gdpr.name_in_notice(row, about)
    return row


def _enqueue_to_agent(
    tx: Tx,
    rctx: RelayContext,
    agent: Agent,
    text: str,
    *,
    owner: KeyOwner,
    conversation_id: int | None,
    meta: dict[str, str] | None,
    message_id: int | None = None,
) -> int:
    """One outbox row to the agent's preferred channel, then wake the worker after commit.

    Whatever reaches an agent on a third-party chat platform has its sensitive
    spans masked here, the one place every agent-bound text passes.
    """
    # What the channel needs to know of the recipient (email marks where an agent's reply ends).
    meta = {**(meta or {}), "recipient_kind": "agent"}
    row = tx.outbox.enqueue(
        channel=agent.channel,
        recipient=agent.address,
        recipient_kind="agent",
        recipient_id=agent.id,
        text=cap_for_relay(sensitive.for_agent(rctx, agent.channel, text), *rctx.relay_limits(agent.channel)),
        key_owner=owner,
        conversation_id=conversation_id,
        message_id=message_id,
        meta=meta,
    )
    rctx.wake()
    return row


def agent_thread_meta(tx: Tx, conversation_id: int, agent_id: int, label: str) -> dict[str, str]:
    """Threading data for what an agent receives about a conversation.

    Channels that thread use it (email: the Subject and a Reply-To token
    bound to this conversation and this agent, so an answer finds its
    conversation even when the mail client drops In-Reply-To, and proves it
    comes from whoever got our mail); the others ignore it.
    """
    return {"subject": label, "reply_token": reply_tokens.issue(tx, conversation_id, "agent", agent_id)}


def _conversation_label(tx: Tx, rctx: RelayContext, conv: Conversation) -> str:
    return format_prefix(conv.id, reads.contact_name(tx, conv.contact_id), rctx.label(conv.channel))


def send_to_customer(
    tx: Tx,
    rctx: RelayContext,
    conversation_id: int,
    text: str,
    *,
    agent_id: int | None = None,
    reply_to: str | None = None,
    kind: str = "out",
) -> int:
    """Store an outbound message (``out`` or ``system``) and its delivery; return the message id.

    An agent's reply (``out``) holding sensitive data goes only to a customer on email.

    :raises ValueError: for an unknown conversation or one without a customer identity.
    :raises SensitiveReplyRefused: an ``out`` text with a finding, for a chat platform; nothing was stored.
    """
    conv = tx.conversations.get(conversation_id)
    if conv is None or conv.identity_id is None:
        raise ValueError(f"conversation {conversation_id} has no customer to send to")
    ident = tx.contacts.get_identity(conv.identity_id)
    if ident is None:
        raise ValueError(f"conversation {conversation_id} has no customer identity")
    found = sensitive.check_reply(tx, rctx, conv, ident.channel, text) if kind == "out" else False
    meta = {
        k: str(v)
        for k, v in reads.last_inbound_meta(tx, conversation_id).items()
        if isinstance(v, (str, int)) and k not in _CORE_META
    }
    meta["reply_token"] = reply_tokens.issue(tx, conversation_id, "contact", ident.contact_id)
    meta["recipient_kind"] = "contact"
    message_id = tx.messages.insert(
        conversation_id, direction=kind, channel=ident.channel, text=text, agent_id=agent_id, status="pending",
        sensitive=found,
    )  # fmt: skip
    if message_id is None:  # only a message with a platform id can be a duplicate; ours has none yet
        raise ValueError(f"conversation {conversation_id}: the outbound message was not stored")
    contact_id, channel, address = ident.contact_id, ident.channel, ident.address
    rctx.stored(tx, channel, kind)
    tx.outbox.enqueue(
        channel=channel,
        recipient=address,
        recipient_kind="contact",
        recipient_id=contact_id,
        text=text,
        key_owner=KeyOwner.contact(contact_id),
        conversation_id=conversation_id,
        message_id=message_id,
        reply_to=reply_to,
        meta=meta or None,
    )
    tx.conversations.touch(conversation_id)
    rctx.wake()
    return int(message_id)


def relay_to_agent(
    tx: Tx,
    rctx: RelayContext,
    conv: Conversation,
    agent: Agent,
    message: Message,
    *,
    contact: str | None = None,
) -> int | None:
    """Enqueue one customer message to the agent, prefixed, and mark it relayed.

    A message that failed its integrity check (the store logged which cell)
    reaches the agent as a notice saying so, and is marked ``failed``. On a
    third-party chat platform a message holding a ``block`` kind is withheld
    (the agent is told so) and other findings are masked.
    """
    name = contact if contact is not None else reads.contact_name(tx, conv.contact_id)
    prefix = format_prefix(conv.id, name, rctx.label(conv.channel))
    label = prefix
    if message.meta.get(UNVERIFIED_SENDER):
        label = f"{prefix} {UNVERIFIED_WARNING}"
    status = reads.RELAYED
    try:
        lines = [attachment_line(a.kind, a.id, rctx.public_url, a.meta) for a in tx.attachments.of_message(message.id)]
    except IntegrityError as err:
        log.error("message %d: its attachments cannot be relayed: %s", message.id, err)
        lines = ["[attachment unreadable: it failed its integrity check in the store]"]
    withheld = [] if message.unreadable else sensitive.withheld_kinds(rctx, agent.channel, message.text)
    if message.unreadable:
        text = f"{prefix} (message {message.id} failed its integrity check in the store and cannot be shown)"
        status = reads.FAILED
    elif withheld:
        text = rctx.templates.render(
            "sensitive_withheld", None, conversation=conv.id, contact=display_name(name, conv.id),
            channel=rctx.label(conv.channel), kinds=sensitive.kinds_text(withheld),
        )  # fmt: skip
    else:
        text = relay_text(label, message.text or "", lines)
    row = _enqueue_to_agent(
        tx, rctx, agent, text, owner=KeyOwner.contact(conv.contact_id), conversation_id=conv.id,
        meta=agent_thread_meta(tx, conv.id, agent.id, prefix), message_id=message.id,
    )  # fmt: skip
    tx.messages.set_inbound_status(message.id, status)
    return row


def _history_line(rctx: RelayContext, channel: str, name: str, msg: Message, agents: dict[int, str]) -> str:
    who = {"in": name, "out": agents.get(msg.agent_id or 0, "agent"), "note": "note", "system": "bridge"}
    speaker = who.get(msg.direction, msg.direction)
    if msg.direction == "note":
        speaker = f"note by {agents.get(msg.agent_id or 0, 'agent')}"
    if msg.text is None:
        return f"{speaker}: [unreadable]"
    return f"{speaker}: {sensitive.history_text(rctx, channel, msg.text, msg.status)}"


def handoff_text(tx: Tx, rctx: RelayContext, conv: Conversation, name: str, *, history: int,
                 note: str | None, from_agent: Agent | None, channel: str) -> str:  # fmt: skip
    """The hand-off an agent receives: header (with note), then the last ``history`` messages.

    One text, so it arrives as one message (the channel splits it if the
    platform's limit requires) and cannot interleave with other deliveries.
    ``channel`` is the receiving agent's: on a chat platform, withheld
    messages and answers to ``/secure`` are named rather than quoted.
    """
    by = f" by {from_agent.name}" if from_agent else ""
    header = rctx.templates.render(
        "handoff", None, conversation=conv.id, contact=name, channel=rctx.label(conv.channel),
        from_agent=by, note=f" Note: {note}" if note else "",
    )  # fmt: skip
    messages = reads.recent_messages(tx, conv.id, history, exclude_status=reads.WAITING) if history > 0 else []
    if not messages:
        return header
    names = tx.agents.names()  # plaintext usernames
    lines = [_history_line(rctx, channel, name, msg, names) for msg in messages]
    return "\n".join([header, f"Last {len(messages)} message(s):", *lines])


def assign(
    tx: Tx,
    rctx: RelayContext,
    conversation_id: int,
    agent: Agent,
    *,
    history: int = 0,
    note: str | None = None,
    reason: str,
    from_agent: Agent | None = None,
) -> None:
    """Give a conversation to ``agent`` and deliver what they need to take it over.

    Sets agent and status, writes an ``assigned`` event, makes it the agent's
    current conversation and records the assignment time (round robin); then
    enqueues one hand-off message (header, ``note`` and the last ``history``
    messages) when either is given, then every customer message not yet
    relayed to an agent, oldest first.
    """
    conv = tx.conversations.get(conversation_id)
    if conv is None:
        raise ValueError(f"unknown conversation {conversation_id}")
    now = tx.now()
    previous = conv.agent_id
    tx.conversations.assign(conversation_id, agent.id)
    reads.write_event(
        tx, conv, "assigned", from_agent=from_agent.id if from_agent else previous, to_agent=agent.id,
        detail={"reason": reason},
    )  # fmt: skip
    tx.agents.set_current_conversation(agent.id, conversation_id)
    tx.agents.record_assignment(agent.id, now)
    tx.relay.clear_flag(QUEUED_NOTICE, str(conversation_id))
    name = display_name(reads.contact_name(tx, conv.contact_id), conv.id)
    if history > 0 or note:
        text = handoff_text(
            tx, rctx, conv, name, history=history, note=note, from_agent=from_agent, channel=agent.channel
        )
        notify_agent(tx, rctx, agent, text, conversation_id=conv.id)
    for msg in reads.unrelayed_messages(tx, conv.id):
        relay_to_agent(tx, rctx, conv, agent, msg, contact=name)


def _candidates(tx: Tx, queue: str, now: float, exclude: int | None) -> list[RoutingCandidate]:
    out = []
    for cand in agents_repo.online_candidates(tx, queue, now):
        if cand.agent.id == exclude:
            continue
        last = tx.agents.last_assigned_at(cand.agent.id)
        out.append(RoutingCandidate(cand.agent, cand.open_conversations, cand.idle_since, last))
    return out


def route(
    tx: Tx, rctx: RelayContext, conversation_id: int, *, exclude: int | None = None, history: int = 0
) -> Agent | None:
    """Pick an online agent for a waiting conversation with the strategy; assign it.

    Returns the agent, or None when nobody is free (the conversation waits).
    """
    conv = tx.conversations.get(conversation_id)
    if conv is None:
        return None
    candidates = _candidates(tx, conv.queue, rctx.now(), exclude)
    if not candidates:
        return None
    try:
        chosen = rctx.hooks.choose_agent(rctx.strategy, conv, candidates)
    except Exception:  # boundary: a broken strategy plugin must not refuse the customer's message
        log.exception("routing strategy %r failed; conversation %s waits in its queue", rctx.strategy, conv.id)
        return None
    if chosen is None:
        return None
    agent = chosen.agent if isinstance(chosen, RoutingCandidate) else chosen
    if not isinstance(agent, Agent) or agent.id not in {c.agent.id for c in candidates}:
        log.error("routing strategy %r returned %r, not one of the candidates; the conversation waits",
                  rctx.strategy, type(chosen).__name__)  # fmt: skip
        return None
    assign(tx, rctx, conversation_id, agent, history=history, reason="routed")
    return agent


def was_assigned_before(tx: Tx, conversation_id: int) -> bool:
    """Whether the conversation had an agent before (it then comes with its history)."""
    return tx.events.has(conversation_id, "assigned")


def assign_waiting(tx: Tx, rctx: RelayContext, agent: Agent) -> list[int]:
    """Assign waiting conversations of the agent's queues to them, oldest first, up to capacity.

    A conversation that had an agent before (put back by a logout) comes with
    its recent history, so the new agent sees what was said.
    """
    room = agent.capacity - tx.conversations.count_assigned(agent.id)
    assigned: list[int] = []
    for conv in tx.conversations.waiting(agent.queues, room):
        history = rctx.config.routing.history_messages if was_assigned_before(tx, conv.id) else 0
        assign(tx, rctx, conv.id, agent, history=history, reason="login")
        assigned.append(conv.id)
    return assigned


def requeue(tx: Tx, rctx: RelayContext, conversation_id: int, queue: str | None = None) -> None:
    """Put a conversation back to waiting (in ``queue`` if given) and try another online agent."""
    conv = tx.conversations.get(conversation_id)
    if conv is None or conv.status == "closed":
        return
    previous = conv.agent_id
    tx.conversations.requeue(conversation_id, queue or conv.queue)
    tx.agents.release_conversation(conversation_id)
    reads.write_event(tx, conv, "requeued", from_agent=previous, detail={"queue": queue or conv.queue})
    route(tx, rctx, conversation_id, exclude=previous, history=rctx.config.routing.history_messages)


#: Conversations closed per transaction by the idle auto-close (the rest wait for the next run).
IDLE_BATCH = 200


def close_idle(tx: Tx, rctx: RelayContext, idle_for: float) -> list[int]:
    """Close open conversations with no activity for ``idle_for`` seconds; return their ids.

    The customer gets the ``closed_idle`` notice when their channel can still
    take free text (a closed reply window is not knocked on just to say
    goodbye), and the assigned agent is told, under the customer's key.
    """
    closed: list[int] = []
    for conversation_id in tx.retention.idle(idle_for, IDLE_BATCH):
        conv = tx.conversations.get(conversation_id)
        if conv is None:
            continue
        notice = rctx.templates.render("closed_idle", conv.language).strip()
        if notice and _window_open(tx, rctx, conv):
            send_to_customer(tx, rctx, conv.id, notice, kind="system")
        tx.conversations.close(conv.id)
        tx.agents.release_conversation(conv.id)
        reads.write_event(tx, conv, "closed", from_agent=conv.agent_id, detail={"reason": "idle"})
        agent = tx.agents.get(conv.agent_id) if conv.agent_id is not None else None
        if agent is not None and not agent.disabled:
            label = _conversation_label(tx, rctx, conv)
            minutes = max(1, round(idle_for / 60))
            notify_agent(tx, rctx, agent, f"{label} was closed after {minutes} minute(s) without activity.",
                         conversation_id=conv.id)  # fmt: skip
        closed.append(conv.id)
    return closed


def _window_open(tx: Tx, rctx: RelayContext, conv: Conversation) -> bool:
    """Whether the customer's channel takes free text now (no reply window, or inside it)."""
    window = rctx.channel_window(conv.channel)
    if window is None:
        return True
    identity = tx.contacts.get_identity(conv.identity_id) if conv.identity_id is not None else None
    last = identity.last_inbound_at if identity is not None else None
    return last is not None and rctx.now() - float(last) < float(window)
