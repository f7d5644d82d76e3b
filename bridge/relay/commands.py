"""Agent commands: ``/name args`` sent from any agent channel.

The relay calls ``handle_agent_command`` inside the write transaction that
records the agent's message, so a command and everything it changes commit
together. Each handler runs inside its own ``Tx.savepoint``: a refusal
(``CommandRefused``) rolls back whatever the handler had done and answers the
agent with the reason. Plugins add commands with the ``register_commands``
hook (``/secure`` arrives that way).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge import agents as agents_repo
from bridge.errors import BridgeError
from bridge.models import InboundMessage
from bridge.relay import reads
from bridge.relay.command_table import CommandTable, parse_command
from bridge.relay.format import format_prefix

if TYPE_CHECKING:
    from bridge.relay.context import RelayContext
from bridge.store import Agent, Conversation, Tx

UNKNOWN = "Unknown command /{name}. Send /help."
NOT_LOGGED_IN = "You are not logged in. Send /login CODE."
DISABLED = "Your agent account is disabled. Ask an administrator."
#: An agent's text starting with this is a reply, sent without its first "/".
ESCAPE = "//"
_CONV_REF = re.compile(r"^#?(\d{1,18})$")


class CommandRefused(BridgeError):
    """A command cannot do what was asked; the message is the answer to the agent."""


@dataclass
class CommandContext:
    """What a command handler gets: the transaction, relay helpers, the agent and their message.

    :param tx: the store transaction (sync; valid only during the call).
    :param rctx: the relay context (config, templates, ``now()``, strategy, ``wake()``).
    :param agent: the agent who sent the command, as stored before the command.
    :param message: the agent's message as the channel parsed it.
    :param now: the time the command is handled (epoch seconds).
    :param table: the command table (``/help`` lists it).
    """

    tx: Tx
    rctx: RelayContext
    agent: Agent
    message: InboundMessage
    now: float
    table: CommandTable | None = None

    def refresh(self) -> Agent:
        """Re-read the agent (after a command changed it) and return it."""
        agent = self.tx.agents.get(self.agent.id)
        if agent is not None:
            self.agent = agent
        return self.agent


def handle_agent_command(
    tx: Tx, rctx: RelayContext, table: CommandTable, agent: Agent, message: InboundMessage
) -> str | None:
    """Run the command in ``message.text`` for ``agent``; return the answer to send them.

    Unknown commands, commands of a disabled agent, and commands that need a
    shift from an agent who is not online are answered, never run. A
    ``CommandRefused`` rolls back the handler's changes and its text is the answer.
    """
    parsed = parse_command(message.text, first_line_only=rctx.commands_in_first_line(message.channel))
    if parsed is None:
        return UNKNOWN.format(name=message.text.strip()[1:].split(maxsplit=1)[0] if message.text.strip()[1:] else "")
    name, args = parsed
    if agent.disabled:
        return DISABLED
    command = table.lookup(name)
    if command is None:
        return UNKNOWN.format(name=name)
    now = float(rctx.now())
    if not command.public and not agents_repo.is_online(tx, agent.id, now):
        return NOT_LOGGED_IN
    ctx = CommandContext(tx=tx, rctx=rctx, agent=agent, message=message, now=now, table=table)
    try:
        with tx.savepoint():
            answer = command.handler(ctx, args)
    except CommandRefused as refusal:
        return str(refusal)
    return answer


# --- helpers shared by the built-in commands, transfer and plugin commands -------------


def actor(agent: Agent) -> str:
    """The audit-log actor for an agent (their username, never an address)."""
    return f"agent:{agent.name}"


def parse_conversation_ref(text: str) -> int | None:
    """Return the id in ``42`` or ``#42``, else None."""
    match = _CONV_REF.match(text.strip())
    return int(match.group(1)) if match else None


def split_target(args: str) -> tuple[int | None, str]:
    """Split an optional leading ``#42``/``42`` off ``args``: ``(42, rest)`` or ``(None, args)``."""
    head, _, rest = args.strip().partition(" ")
    ref = parse_conversation_ref(head) if head else None
    return (ref, rest.strip()) if ref is not None else (None, args.strip())


def label(ctx: CommandContext, conv: Conversation) -> str:
    """``[#42 Jan · WhatsApp]`` for a conversation."""
    return format_prefix(conv.id, reads.contact_name(ctx.tx, conv.contact_id), ctx.rctx.label(conv.channel))


def own_conversation(ctx: CommandContext, conversation_id: int | None) -> Conversation:
    """Return the agent's open conversation ``conversation_id`` (default: their current one).

    :raises CommandRefused: none given and none current, or not theirs, or closed.
    """
    if conversation_id is None:
        conversation_id = ctx.agent.current_conversation_id
        if conversation_id is None:
            raise CommandRefused("You have no current conversation. Send /list, then /switch ID.")
    conv = ctx.tx.conversations.get(conversation_id)
    if conv is None or conv.agent_id != ctx.agent.id:
        raise CommandRefused(f"Conversation #{conversation_id} is not one of yours. Send /list to see yours.")
    if conv.status == "closed":
        raise CommandRefused(f"Conversation #{conversation_id} is closed.")
    return conv


def customer_window_open(ctx: CommandContext, conv: Conversation) -> bool:
    """Whether the customer can get free text now on their channel (no reply window, or inside it).

    Courtesy notices (closed, transferred) are skipped when the window is
    closed: a re-engagement template only to say goodbye would invite a reply
    to a conversation that is over.
    """
    window = ctx.rctx.channel_window(conv.channel)
    if window is None:
        return True
    identity = ctx.tx.contacts.get_identity(conv.identity_id) if conv.identity_id is not None else None
    last = identity.last_inbound_at if identity is not None else None
    return last is not None and ctx.now - float(last) < float(window)


def open_conversation_ids(tx: Tx, agent_id: int) -> list[int]:
    """The agent's assigned conversations, most recently active first."""
    return tx.conversations.assigned_ids(agent_id)
