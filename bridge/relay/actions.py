"""What an agent does to a conversation, whether they type a chat command or call the API.

Why one module: a reply, a transfer, a close, a note or taking a waiting
conversation must follow the same rules from every face (who may, what the
customer is told, what is audited), so the chat commands
(``bridge.relay.builtin_commands``, ``bridge.relay.transfer``) and the HTTP
API (``bridge.web.api``) both call these functions. Each runs inside the
caller's store write and either returns a typed result or raises
:class:`ActionRefused`, whose ``refusal`` says why (the face words it: chat
adds hints about commands, the API maps it to a status). Nothing a refused
action touched is kept when the caller runs it in a savepoint.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge import agents as agents_repo
from bridge.errors import BridgeError, IntegrityError
from bridge.relay import reads
from bridge.relay.format import format_prefix
from bridge.relay.routing import (
    assign,
    assign_waiting,
    notify_agent,
    requeue,
    send_to_customer,
    was_assigned_before,
)
from bridge.relay.sensitive import SensitiveReplyRefused
from bridge.store import Agent, Conversation, Tx

if TYPE_CHECKING:
    from bridge.relay.context import RelayContext

TRANSFERRED = "transferred"
CLOSED = "closed"


class Refusal(enum.Enum):
    """Why an action was refused (the value is the API's error code)."""

    NOT_FOUND = "not_found"  # no such conversation
    NOT_YOURS = "not_yours"  # someone else's conversation
    CLOSED = "closed"  # the conversation is closed
    EMPTY = "empty"  # no text where text is needed
    ALREADY_YOURS = "already_yours"
    UNKNOWN_TARGET = "unknown_target"  # no agent or queue of that name
    TARGET_DISABLED = "target_disabled"
    TARGET_OFFLINE = "target_offline"
    TARGET_FULL = "target_full"  # the colleague has no room
    NOT_WAITING = "not_waiting"  # taken or closed meanwhile
    NOT_YOUR_QUEUE = "not_your_queue"
    NOT_ON_SHIFT = "not_on_shift"
    AT_CAPACITY = "at_capacity"
    DAMAGED = "damaged_record"  # a record it needs failed its integrity check
    SENSITIVE = "sensitive_data"  # a reply carries data that must not go by chat: use /secure
    REFUSED = "refused"  # a flow of its own (a plugin command, /secure) said no


class ActionRefused(BridgeError):
    """An action cannot be done; ``refusal`` says why and the message says it in words."""

    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal


@dataclass(frozen=True, slots=True)
class Closed:
    """A closed conversation, and how many the agent still has open."""

    conversation: Conversation
    label: str
    remaining: int


@dataclass(frozen=True, slots=True)
class Transferred:
    """Where a conversation went: to ``agent``, or to ``queue`` (where ``taker`` may have taken it)."""

    conversation: Conversation
    label: str
    agent: Agent | None = None
    queue: str | None = None
    taker: Agent | None = None


def conversation_label(tx: Tx, rctx: RelayContext, conv: Conversation) -> str:
    """``[#42 Jan · WhatsApp]`` for a conversation."""
    return format_prefix(conv.id, reads.contact_name(tx, conv.contact_id), rctx.label(conv.channel))


def actor(agent: Agent) -> str:
    """The audit-log actor for an agent (their username, never an address)."""
    return f"agent:{agent.name}"


def minutes(seconds: float) -> str:
    """``2 minutes`` (at least one)."""
    count = max(1, round(seconds / 60))
    return f"{count} minute{'s' if count != 1 else ''}"


def _audit(tx: Tx, agent: Agent, action: str, conv: Conversation, detail: dict[str, Any], via: str | None) -> None:
    tx.audit.append(actor(agent), action, f"conversation:{conv.id}", {**detail, "via": via} if via else detail)


def own_conversation(tx: Tx, agent: Agent, conversation_id: int) -> Conversation:
    """Return the agent's open conversation ``conversation_id``.

    :raises ActionRefused: NOT_FOUND, NOT_YOURS or CLOSED.
    """
    conv = tx.conversations.get(conversation_id)
    if conv is None:
        raise ActionRefused(Refusal.NOT_FOUND, f"There is no conversation #{conversation_id}.")
    if conv.agent_id != agent.id:
        raise ActionRefused(Refusal.NOT_YOURS, f"Conversation #{conversation_id} is not one of yours.")
    if conv.status == "closed":
        raise ActionRefused(Refusal.CLOSED, f"Conversation #{conversation_id} is closed.")
    return conv


def customer_window_open(tx: Tx, rctx: RelayContext, conv: Conversation, now: float) -> bool:
    """Whether the customer can get free text now on their channel (no reply window, or inside it).

    Courtesy notices (closed, transferred) are skipped when the window is
    closed: a re-engagement template only to say goodbye would invite a reply
    to a conversation that is over.
    """
    window = rctx.channel_window(conv.channel)
    if window is None:
        return True
    identity = tx.contacts.get_identity(conv.identity_id) if conv.identity_id is not None else None
    last = identity.last_inbound_at if identity is not None else None
    return last is not None and now - float(last) < float(window)


# --- the actions ------------------------------------------------------------------


def reply(tx: Tx, rctx: RelayContext, agent: Agent, conversation_id: int, text: str, *, via: str | None = None) -> int:
    """Send ``text`` to the customer of the agent's open conversation; return the message id.

    It goes through ``send_to_customer``, the path of every chat reply (the
    outbox, the channel's rules, the sensitive-data rules).

    :raises ActionRefused: not theirs, closed, empty, sensitive data on a chat channel, or the
        customer's record is damaged.
    """
    if not text.strip():
        raise ActionRefused(Refusal.EMPTY, "The reply has no text.")
    conv = own_conversation(tx, agent, conversation_id)
    try:
        message_id = send_to_customer(tx, rctx, conv.id, text, agent_id=agent.id)
    except IntegrityError as err:  # raised before anything was written
        raise ActionRefused(
            Refusal.DAMAGED, "The customer's record failed its integrity check; nothing was sent."
        ) from err
    except SensitiveReplyRefused as err:  # raised before anything was written; names kinds, never values
        raise ActionRefused(Refusal.SENSITIVE, str(err)) from err
    if via:
        _audit(tx, agent, "conversation.reply", conv, {"message": message_id}, via)
    return message_id


def note(tx: Tx, agent: Agent, conversation_id: int, text: str, channel: str) -> int:
    """Store an internal note on the agent's open conversation (never sent); return its id.

    :raises ActionRefused: not theirs, closed, or empty.
    """
    if not text.strip():
        raise ActionRefused(Refusal.EMPTY, "The note has no text.")
    conv = own_conversation(tx, agent, conversation_id)
    message_id = tx.messages.insert(
        conv.id, direction="note", channel=channel, text=text, agent_id=agent.id, status="stored"
    )
    if message_id is None:  # only a message with a platform id can be a duplicate; a note has none
        raise ValueError(f"conversation {conv.id}: the note was not stored")
    return message_id


def close(
    tx: Tx, rctx: RelayContext, agent: Agent, conversation_id: int, now: float, *, via: str | None = None
) -> Closed:
    """Close the agent's open conversation; the customer gets the ``closed`` notice if one is set.

    :raises ActionRefused: not theirs, or already closed.
    """
    conv = own_conversation(tx, agent, conversation_id)
    label = conversation_label(tx, rctx, conv)
    notice = rctx.templates.render("closed", conv.language).strip()
    if notice and customer_window_open(tx, rctx, conv, now):
        send_to_customer(tx, rctx, conv.id, notice, agent_id=agent.id, kind="system")
    tx.conversations.close(conv.id)
    tx.agents.release_conversation(conv.id)
    reads.write_event(tx, conv, CLOSED, from_agent=agent.id)
    _audit(tx, agent, "conversation.close", conv, {"by": agent.name}, via)
    after = tx.conversations.get(conv.id) or conv
    return Closed(after, label, len(tx.conversations.assigned_ids(agent.id)))


def known_queues(tx: Tx, rctx: RelayContext) -> set[str]:
    """Queues of the routing rules plus every queue an agent serves."""
    queues = set(getattr(rctx.rules, "queues", ()) or ())
    for agent in tx.agents.all():
        queues.update(agent.queues)
    return queues


def _check_target(tx: Tx, agent: Agent, target: Agent, conversation_id: int, now: float) -> None:
    # Refusals are answered under the agent's own key: they name the conversation by number only.
    if target.id == agent.id:
        raise ActionRefused(Refusal.ALREADY_YOURS, f"Conversation #{conversation_id} is already yours.")
    if target.disabled:
        raise ActionRefused(Refusal.TARGET_DISABLED, f"Cannot transfer to {target.name}: their account is disabled.")
    if not agents_repo.is_online(tx, target.id, now):
        raise ActionRefused(Refusal.TARGET_OFFLINE, f"Cannot transfer to {target.name}: they are not logged in.")
    open_count = tx.conversations.count_assigned(target.id)
    if open_count >= target.capacity:
        raise ActionRefused(
            Refusal.TARGET_FULL,
            f"Cannot transfer to {target.name}: they already have {open_count} open conversation(s), their maximum.",
        )


def _notify_customer_of_transfer(tx: Tx, rctx: RelayContext, conv: Conversation, now: float) -> None:
    if not rctx.config.routing.transfer_notice:
        return
    notice = rctx.templates.render("transfer", conv.language).strip()
    if notice and customer_window_open(tx, rctx, conv, now):
        send_to_customer(tx, rctx, conv.id, notice, kind="system")


def transfer(
    tx: Tx,
    rctx: RelayContext,
    agent: Agent,
    conversation_id: int,
    target_name: str,
    note_text: str,
    now: float,
    *,
    channel: str,
    via: str | None = None,
) -> Transferred:
    """Hand the agent's open conversation to a colleague or a queue, with an optional note.

    A colleague gets the hand-off (note and history) and may decline within
    ``[routing] decline_timeout`` (the caller tells them how); a queue gets
    the note as an internal note, so whoever takes it sees it.

    :raises ActionRefused: not theirs or closed; no such agent or queue; a
        colleague who is the agent, disabled, off shift or full.
    """
    conv = own_conversation(tx, agent, conversation_id)
    label = conversation_label(tx, rctx, conv)
    note_text = " ".join(note_text.split())
    target = tx.agents.get_by_name(target_name) if target_name else None
    if target is not None:
        _check_target(tx, agent, target, conv.id, now)
        if agent.current_conversation_id == conv.id:
            tx.agents.set_current_conversation(agent.id, None)
        assign(tx, rctx, conv.id, target, history=rctx.config.routing.history_messages, note=note_text or None,
               reason="transfer", from_agent=agent)  # fmt: skip
        timeout = rctx.config.routing.decline_timeout
        reads.write_event(tx, conv, TRANSFERRED, from_agent=agent.id, to_agent=target.id,
                          detail={"note": note_text} if note_text else None, expires_at=now + timeout)  # fmt: skip
        if timeout > 0:
            notify_agent(tx, rctx, target, f"{label} You can hand it back with /decline within {minutes(timeout)}.",
                         conversation_id=conv.id)  # fmt: skip
        _notify_customer_of_transfer(tx, rctx, conv, now)
        _audit(tx, agent, "conversation.transfer", conv, {"from": agent.name, "to": target.name}, via)
        return Transferred(tx.conversations.get(conv.id) or conv, label, agent=target)
    if not target_name or target_name not in known_queues(tx, rctx):
        raise ActionRefused(Refusal.UNKNOWN_TARGET, f"There is no agent or queue named {target_name!r}.")
    if agent.current_conversation_id == conv.id:
        tx.agents.set_current_conversation(agent.id, None)
    if note_text:
        # Stored as an internal note, so whoever takes it from the queue sees it in the history.
        tx.messages.insert(conv.id, direction="note", channel=channel, text=note_text, agent_id=agent.id,
                           status="stored")  # fmt: skip
    reads.write_event(tx, conv, TRANSFERRED, from_agent=agent.id, detail={"queue": target_name})
    requeue(tx, rctx, conv.id, queue=target_name)
    _notify_customer_of_transfer(tx, rctx, conv, now)
    _audit(tx, agent, "conversation.transfer", conv, {"from": agent.name, "queue": target_name}, via)
    after = tx.conversations.get(conv.id) or conv
    taker = tx.agents.get(after.agent_id) if after.agent_id else None
    return Transferred(after, label, queue=target_name, taker=taker)


def take(
    tx: Tx, rctx: RelayContext, agent: Agent, conversation_id: int, now: float, *, via: str | None = None
) -> Conversation:
    """Give a conversation waiting in one of the agent's queues to them, with its history if it had an agent.

    :raises ActionRefused: no such conversation, not waiting any more, not in
        their queues, the agent is off shift or has no room.
    """
    conv = tx.conversations.get(conversation_id)
    if conv is None:
        raise ActionRefused(Refusal.NOT_FOUND, f"There is no conversation #{conversation_id}.")
    if conv.status != "queued":
        if conv.agent_id == agent.id and conv.status == "assigned":
            raise ActionRefused(Refusal.ALREADY_YOURS, f"Conversation #{conv.id} is already yours.")
        raise ActionRefused(Refusal.NOT_WAITING, f"Conversation #{conv.id} is not waiting any more ({conv.status}).")
    if conv.queue not in agent.queues:
        raise ActionRefused(Refusal.NOT_YOUR_QUEUE, f"Conversation #{conv.id} waits in a queue you do not serve.")
    if agent.disabled or not agents_repo.is_online(tx, agent.id, now):
        raise ActionRefused(
            Refusal.NOT_ON_SHIFT, "You are not on shift: start one with /login CODE in your chat first."
        )
    open_count = tx.conversations.count_assigned(agent.id)
    if open_count >= agent.capacity:
        raise ActionRefused(Refusal.AT_CAPACITY, f"You already have {open_count} open conversation(s), your maximum.")
    history = rctx.config.routing.history_messages if was_assigned_before(tx, conv.id) else 0
    assign(tx, rctx, conv.id, agent, history=history, reason="take")
    _audit(tx, agent, "conversation.take", conv, {"by": agent.name}, via)
    return tx.conversations.get(conv.id) or conv


# --- shifts ------------------------------------------------------------------------


def start_shift(tx: Tx, rctx: RelayContext, agent: Agent, now: float, ttl: float) -> list[int]:
    """Put the agent on shift until ``now + ttl`` and give them waiting conversations; return their ids."""
    agents_repo.start_shift(tx, agent.id, now, ttl)
    refreshed = tx.agents.get(agent.id) or agent
    return assign_waiting(tx, rctx, refreshed)


def end_shift(tx: Tx, rctx: RelayContext, agent: Agent, now: float) -> int:
    """End the agent's shift; their open conversations go back to their queues. Return how many."""
    agents_repo.end_shift(tx, agent.id, now)
    tx.agents.set_current_conversation(agent.id, None)
    return _requeue_all(tx, rctx, agent)


def _requeue_all(tx: Tx, rctx: RelayContext, agent: Agent) -> int:
    open_ids = tx.conversations.assigned_ids(agent.id)
    for conversation_id in reversed(open_ids):  # oldest activity first, like a queue
        requeue(tx, rctx, conversation_id)
    return len(open_ids)


def disable_agent(tx: Tx, rctx: RelayContext, agent: Agent) -> int:
    """Disable the agent: their shift and console sessions end, their conversations go to others or wait.

    Returns how many conversations were requeued (as ``carebridge agent disable``).
    """
    agents_repo.disable(tx, agent.id)
    tx.sessions.end_agent(agent.id)
    return _requeue_all(tx, rctx, agent)
