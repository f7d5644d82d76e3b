"""The built-in agent commands: /login /logout /list /switch /close /note /help.

Handlers follow the ``register_commands`` contract: ``handler(ctx, args)``
runs inside the store transaction and returns the answer for the agent (or
None when it already sent what the agent needs). An answer that names a
customer is sent by the handler itself with ``notify_agent(...,
conversation_id=...)`` (or ``about=`` for several), so it is sealed under
the customer's key or deleted with them; a returned answer is sealed under
the agent's key and names nobody. Refusals raise
``CommandRefused`` so that nothing they touched is kept; failed logins
*return* their answer instead, because their audit entry must be kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from bridge import agents as agents_repo
from bridge.agents import login
from bridge.hookspecs import hookimpl
from bridge.relay import actions, secure, transfer
from bridge.relay.command_table import CommandTable
from bridge.relay.commands import (
    CommandContext,
    CommandRefused,
    actor,
    label,
    open_conversation_ids,
    own_conversation,
    parse_conversation_ref,
    split_target,
)
from bridge.relay.routing import assign_waiting, notify_agent

T = TypeVar("T")
WAITING_LIMIT = 1000  # counted for answers only
LOGIN_USAGE = "Send /login followed by the 6-digit code from your authenticator app, e.g. /login 123456."
LOGIN_INVALID = "That code is not valid. Check that your phone's clock is right and send /login with the current code."
LOGIN_REPLAYED = "That code was already used. Wait for the next code in your app, then send /login again."


def _duration(seconds: float) -> str:
    if seconds >= 3600 and round(seconds) % 3600 == 0:
        hours = int(seconds // 3600)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def cmd_login(ctx: CommandContext, args: str) -> str | None:
    """Check the TOTP code, start (or extend) the shift, then take waiting conversations."""
    tx, agent = ctx.tx, ctx.agent
    security = ctx.rctx.config.security
    result = login.check_code(
        tx, agent, args, ctx.now, max_attempts=security.login_max_attempts, lockout=security.lockout,
        actor=actor(agent), detail={"channel": ctx.message.channel, "ttl": security.session_ttl},
    )  # fmt: skip
    if result.outcome is login.LoginOutcome.MALFORMED:
        raise CommandRefused(LOGIN_USAGE)
    if not result.accepted:
        observer = ctx.rctx.observer
        tx.after_commit(observer.login_refused)
    if result.outcome is login.LoginOutcome.LOCKED:
        return f"Too many failed logins. Try again in {_duration(result.retry_after)}."
    if result.outcome is login.LoginOutcome.REPLAYED:
        return LOGIN_REPLAYED
    if not result.accepted:
        return LOGIN_INVALID
    ttl = security.session_ttl
    agents_repo.start_shift(tx, agent.id, ctx.now, ttl)
    agent = ctx.refresh()
    room = max(0, agent.capacity - tx.conversations.count_assigned(agent.id))
    waiting = len(tx.conversations.waiting(agent.queues, WAITING_LIMIT))
    answer = f"You are logged in for {_duration(ttl)}."
    if not waiting:
        answer += " No conversations are waiting."
    elif room >= waiting:
        answer += f" {waiting} waiting conversation(s) follow."
    else:
        answer += (
            f" {waiting} conversation(s) are waiting; you have room for {room} (capacity {agent.capacity}),"
            " so the oldest of them follow."
            if room
            else f" {waiting} conversation(s) are waiting, but you already have {agent.capacity} open, your maximum."
        )
    # Sent before the hand-offs so the agent reads it first.
    notify_agent(tx, ctx.rctx, agent, answer)
    assign_waiting(tx, ctx.rctx, agent)
    return None


def cmd_logout(ctx: CommandContext, args: str) -> str | None:
    """End the shift; the agent's open conversations go back to their queues (``actions.end_shift``)."""
    tx, agent = ctx.tx, ctx.agent
    requeued = actions.end_shift(tx, ctx.rctx, agent, ctx.now)
    tx.audit.append(actor(agent), "agent.logout", f"agent:{agent.id}", {"requeued": requeued})
    if not requeued:
        return "You are logged out."
    return f"You are logged out. {requeued} conversation(s) went back to the queue."


def cmd_list(ctx: CommandContext, args: str) -> str | None:
    """List the agent's open conversations, marking the current one."""
    tx, agent = ctx.tx, ctx.agent
    lines = []
    for conversation_id in open_conversation_ids(tx, agent.id):
        conv = tx.conversations.get(conversation_id)
        if conv is None:
            continue
        mark = "  ← current" if conversation_id == agent.current_conversation_id else ""
        lines.append(f"{label(ctx, conv)[1:-1]} · {conv.status}{mark}")
    waiting = len(tx.conversations.waiting(agent.queues, WAITING_LIMIT))
    tail = f"\n{waiting} conversation(s) waiting in your queues." if waiting else ""
    if not lines:
        return "You have no open conversations." + tail
    text = "Your conversations:\n" + "\n".join(lines) + tail
    notify_agent(tx, ctx.rctx, agent, text, about=open_conversation_ids(tx, agent.id))
    return None


def cmd_switch(ctx: CommandContext, args: str) -> str | None:
    """Make one of the agent's conversations the one plain replies go to."""
    conversation_id = parse_conversation_ref(args)
    if conversation_id is None:
        raise CommandRefused(
            "Send /switch followed by a conversation number, e.g. /switch 42. Send /list to see yours."
        )
    conv = own_conversation(ctx, conversation_id)
    ctx.tx.agents.set_current_conversation(ctx.agent.id, conv.id)
    text = f"Now answering {label(ctx, conv)}. Your messages go to this customer."
    notify_agent(ctx.tx, ctx.rctx, ctx.agent, text, conversation_id=conv.id)
    return None


def cmd_close(ctx: CommandContext, args: str) -> str | None:
    """Close the current conversation (or ``/close 42``); tell the customer if a text is set (``actions.close``)."""
    conversation_id, rest = split_target(args)
    if rest:
        raise CommandRefused("Send /close, or /close followed by a conversation number.")
    conv = own_conversation(ctx, conversation_id)
    done = _act(lambda: actions.close(ctx.tx, ctx.rctx, ctx.agent, conv.id, ctx.now))
    more = f" You have {done.remaining} open conversation(s); send /list." if done.remaining else ""
    notify_agent(ctx.tx, ctx.rctx, ctx.agent, f"Closed {done.label}.{more}", conversation_id=conv.id)
    return None


def cmd_note(ctx: CommandContext, args: str) -> str | None:
    """Store an internal note on the current conversation (or ``/note 42 TEXT``); never sent (``actions.note``)."""
    conversation_id, text = split_target(args)
    if not text:
        raise CommandRefused("Send /note followed by the text of the note.")
    conv = own_conversation(ctx, conversation_id)
    _act(lambda: actions.note(ctx.tx, ctx.agent, conv.id, text, ctx.message.channel))
    text = f"Note added to {label(ctx, conv)}. The customer does not see it."
    notify_agent(ctx.tx, ctx.rctx, ctx.agent, text, conversation_id=conv.id)
    return None


def _act(action: Callable[[], T]) -> T:
    """Run a shared action; its refusal becomes the chat answer."""
    try:
        return action()
    except actions.ActionRefused as refusal:
        raise CommandRefused(str(refusal)) from refusal


def cmd_help(ctx: CommandContext, args: str) -> str | None:
    """List the commands."""
    table = ctx.table if ctx.table is not None else CommandTable()
    return table.help_text()


@hookimpl(tryfirst=True)
def register_commands(register: Callable[..., None]) -> None:
    """Register the built-in commands, before any plugin's (entry point ``core-commands``)."""
    register(
        "login", cmd_login, "/login CODE — start your shift with the code from your authenticator app", public=True
    )
    register("logout", cmd_logout, "end your shift; your open conversations go back to the queue")
    register("list", cmd_list, "your open conversations (the current one is marked)")
    register("switch", cmd_switch, "/switch ID — answer conversation ID from now on")
    register("close", cmd_close, "close the current conversation (or /close ID)")
    register("note", cmd_note, "/note TEXT — internal note on the current conversation, never sent")
    register("help", cmd_help, "this list", public=True)
    transfer.register_transfer_commands(register)
    register("secure", secure.cmd_secure, "/secure TEXT — mail TEXT to the customer, never by chat (/secure cancel)")
