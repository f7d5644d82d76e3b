"""Hand a conversation to a colleague or a queue (/transfer), and hand it back (/decline).

A transfer to a named agent writes a ``transferred`` event whose
``expires_at`` is the end of the decline window (``[routing]
decline_timeout``); ``/decline`` inside that window sends the conversation
back to the sender, or to the queue when the sender is no longer online. The
new agent gets a hand-off with the note and the last
``[routing] history_messages`` messages on their own channel; every
transfer and decline goes into the audit log.
"""

from __future__ import annotations

from collections.abc import Callable

from bridge import agents as agents_repo
from bridge.relay import actions
from bridge.relay.commands import (
    CommandContext,
    CommandRefused,
    actor,
    label,
    own_conversation,
    parse_conversation_ref,
    split_target,
)
from bridge.relay.reads import write_event
from bridge.relay.routing import assign, notify_agent, requeue
from bridge.store import Conversation

TRANSFERRED = actions.TRANSFERRED
DECLINED = "declined"
USAGE = "Send /transfer followed by a colleague's name or a queue, and optionally a note: /transfer bob Wants a refund."


def known_queues(ctx: CommandContext) -> set[str]:
    """Queues of the routing rules plus every queue an agent serves."""
    return actions.known_queues(ctx.tx, ctx.rctx)


def cmd_transfer(ctx: CommandContext, args: str) -> str | None:
    """``/transfer [#ID] AGENT|QUEUE [note]``: hand the (current) conversation over (``actions.transfer``)."""
    conversation_id, rest = split_target(args)
    target_name, _, note = rest.partition(" ")
    if not target_name:
        raise CommandRefused(USAGE)
    conv = own_conversation(ctx, conversation_id)
    try:
        done = actions.transfer(
            ctx.tx, ctx.rctx, ctx.agent, conv.id, target_name, note, ctx.now, channel=ctx.message.channel
        )
    except actions.ActionRefused as refusal:
        if refusal.refusal is actions.Refusal.UNKNOWN_TARGET:
            raise CommandRefused(f"{refusal} {USAGE}") from refusal
        raise CommandRefused(str(refusal)) from refusal
    if done.agent is not None:
        return _answer(ctx, conv, f"{done.label} is now with {done.agent.name}.")
    if done.taker is not None:
        return _answer(ctx, conv, f"{done.label} moved to queue {done.queue} and is now with {done.taker.name}.")
    return _answer(ctx, conv, f"{done.label} moved to queue {done.queue}; it waits there for an agent.")


def _answer(ctx: CommandContext, conv: Conversation, text: str) -> str | None:
    """Send an answer that names the customer under their key (erasing them erases it); nothing is left to return."""
    notify_agent(ctx.tx, ctx.rctx, ctx.agent, text, conversation_id=conv.id)
    return None


def _pending_transfer(ctx: CommandContext, conversation_id: int | None) -> tuple[int, int, int | None, float | None]:
    """The latest transfer *to this agent* of a conversation they still hold: (event, conversation, sender, expires)."""
    found = ctx.tx.events.pending_transfer(TRANSFERRED, ctx.agent.id, conversation_id)
    if found is None:
        which = f"#{conversation_id}" if conversation_id is not None else "a conversation"
        raise CommandRefused(f"There is no transfer of {which} to you to decline.")
    return found.event_id, found.conversation_id, found.from_agent, found.expires_at


def cmd_decline(ctx: CommandContext, args: str) -> str | None:
    """``/decline [ID]``: within the decline window, hand a transfer back to its sender."""
    tx, rctx, agent = ctx.tx, ctx.rctx, ctx.agent
    conversation_id = parse_conversation_ref(args) if args.strip() else None
    if args.strip() and conversation_id is None:
        raise CommandRefused("Send /decline, or /decline followed by the conversation number.")
    event_id, conv_id, sender_id, expires_at = _pending_transfer(ctx, conversation_id)
    conv = tx.conversations.get(conv_id)
    assert conv is not None  # noqa: S101 - joined above
    if expires_at is None or ctx.now >= expires_at:
        raise CommandRefused(
            f"Too late to decline conversation #{conv.id}: the time for that has passed. Use /transfer to pass it on."
        )
    # The window is used up: a second /decline must not bounce it again.
    tx.events.expire(event_id, ctx.now)
    write_event(tx, conv, DECLINED, from_agent=agent.id, to_agent=sender_id)
    if agent.current_conversation_id == conv.id:
        tx.agents.set_current_conversation(agent.id, None)
    sender = tx.agents.get(sender_id) if sender_id is not None else None
    tx.audit.append(actor(agent), "conversation.transfer_declined", f"conversation:{conv.id}",
             {"by": agent.name, "back_to": sender.name if sender else None})  # fmt: skip
    here = label(ctx, conv)
    if sender is not None and not sender.disabled and agents_repo.is_online(tx, sender.id, ctx.now):
        notify_agent(tx, rctx, sender, f"{here} {agent.name} declined the transfer; the conversation is yours again.",
                     conversation_id=conv.id)  # fmt: skip
        assign(tx, rctx, conv.id, sender, reason="declined", from_agent=agent)
        return _answer(ctx, conv, f"You declined {here}; it went back to {sender.name}.")
    requeue(tx, rctx, conv.id)
    after = tx.conversations.get(conv.id)
    who = sender.name if sender else "the sender"
    if after is not None and after.agent_id:
        taker = tx.agents.get(after.agent_id)
        went = taker.name if taker else "another agent"
        return _answer(ctx, conv, f"You declined {here}; {who} is not logged in, so it went to {went}.")
    return _answer(ctx, conv, f"You declined {here}; {who} is not logged in, so it waits in the queue {conv.queue}.")


def register_transfer_commands(register: Callable[..., None]) -> None:
    """Register /transfer and /decline (through ``register_commands``, with the other built-ins)."""
    register(
        "transfer", cmd_transfer, "/transfer AGENT|QUEUE [note] — hand the current conversation over, with its history"
    )
    register("decline", cmd_decline, "/decline — hand back a conversation just transferred to you (for a while)")
