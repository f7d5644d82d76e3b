"""Agents: who answers customers, where they are reached, when they are on shift.

Everything here is a plain sync function taking the store's ``tx``: the
relay calls them inside the write transaction that records an agent's
message, so a command and its effects commit together, and the CLI calls them
through ``store.write``/``store.read`` while the daemon runs. The rules (who
may be enrolled, what an address may be, who is online and has room) are
here; storing them is ``tx.agents``/``tx.shifts``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from bridge.agents.fields import (
    ROLES,
    AgentError,
    normalize_email,
    validate_name,
    validate_queues,
)
from bridge.errors import UnknownRecordError
from bridge.models import Address
from bridge.store import Agent, Tx

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Candidate:
    """An online agent who can take one more conversation, for a routing strategy.

    :param open_conversations: conversations assigned to them and not closed.
    :param idle_since: when they last got activity on a conversation (or
        started their shift, if later); smaller means idle for longer.
    """

    agent: Agent
    open_conversations: int
    idle_since: float


def _check_address_free(tx: Tx, address: Address, agent_id: int | None) -> None:
    if address.channel == "console":
        return
    owner = tx.agents.identity_owner(address.channel, address.address)
    if owner is not None and owner != agent_id:
        other = tx.agents.get(owner)
        raise AgentError(f"{address.channel} address already belongs to agent {other.name if other else owner!r}")


def address_owner(tx: Tx, address: Address) -> Agent | None:
    """Return the agent whose identity ``address`` is, or None (always None for the console)."""
    if address.channel == "console":
        return None
    return find_agent_by_identity(tx, address.channel, address.address)


def create_agent(
    tx: Tx,
    *,
    name: str,
    address: Address,
    role: str = "agent",
    email: str | None = None,
    queues: Iterable[str] = (),
    capacity: int = 5,
    totp_secret: str,
    password_hash: str | None = None,
) -> Agent:
    """Enrol an agent with their own data key; return it.

    ``address`` must already be normalized by its channel (``Addresses.parse``).

    :raises AgentError: duplicate name, bad role/capacity/queue, or an
        address that already belongs to another agent.
    """
    validate_name(name)
    if role not in ROLES:
        raise AgentError(f"invalid role {role!r}: expected one of {', '.join(ROLES)}")
    if capacity < 1:
        raise AgentError(f"invalid capacity {capacity}: at least 1")
    if email is not None:
        email = normalize_email(email)
    queue_tuple = validate_queues(queues)
    if tx.agents.name_taken(name):
        raise AgentError(f"an agent named {name!r} already exists")
    _check_address_free(tx, address, None)
    agent_id = tx.agents.insert(
        name=name, role=role, channel=address.channel, address=address.address, email=email, queues=queue_tuple,
        capacity=capacity, totp_secret=totp_secret, password_hash=password_hash,
    )  # fmt: skip
    agent = tx.agents.get(agent_id)
    if agent is None:  # just inserted in this transaction
        raise UnknownRecordError(f"no agent with id {agent_id}")
    return agent


def require_agent(tx: Tx, name: str) -> Agent:
    """Return the agent named ``name``.

    :raises UnknownRecordError: when there is none.
    """
    agent = tx.agents.get_by_name(name)
    if agent is None:
        raise UnknownRecordError(f"no agent named {name!r}")
    return agent


def find_agent_by_identity(tx: Tx, channel: str, address: str) -> Agent | None:
    """Return the agent who writes from ``channel``/``address`` (normalized), disabled or not, or None."""
    return tx.agents.find_by_identity(channel, address)


def touch_identity(tx: Tx, agent_id: int, channel: str, address: str, at: float) -> None:
    """Record that the agent wrote from ``channel``/``address`` at ``at`` (opens reply windows)."""
    tx.agents.touch_identity(agent_id, channel, address, at)


def set_channel(tx: Tx, agent_id: int, address: Address) -> Agent:
    """Move the agent to ``address``: their preferred channel and an identity of theirs.

    The address they leave is retired: from now on a message from it is not
    the agent's (a customer's, like anyone else's). Other identities an admin
    added (``add_identity``) stay.

    :raises AgentError: the address belongs to another agent.
    :raises UnknownRecordError: no such agent.
    """
    if tx.agents.get(agent_id) is None:
        raise UnknownRecordError(f"no agent with id {agent_id}")
    _check_address_free(tx, address, agent_id)
    tx.agents.set_channel(agent_id, address.channel, address.address)
    agent = tx.agents.get(agent_id)
    if agent is None:  # checked above
        raise UnknownRecordError(f"no agent with id {agent_id}")
    return agent


def identities(tx: Tx, agent_id: int) -> list[Address]:
    """Every address the agent is recognised by (their preferred one among them), oldest first."""
    return [Address(channel, address) for channel, address in tx.agents.identities(agent_id)]


def add_identity(tx: Tx, agent_id: int, address: Address) -> bool:
    """Let the agent also write from ``address`` (normalized); False when it already was theirs.

    :raises AgentError: the console (it needs no identity) or another agent's address.
    :raises UnknownRecordError: no such agent.
    """
    if tx.agents.get(agent_id) is None:
        raise UnknownRecordError(f"no agent with id {agent_id}")
    if address.channel == "console" or not address.address:
        raise AgentError("the console needs no identity: agents log in to it with their password")
    _check_address_free(tx, address, agent_id)
    return tx.agents.add_identity(agent_id, address.channel, address.address)


def remove_identity(tx: Tx, agent_id: int, address: Address) -> None:
    """Retire one identity of the agent: messages from ``address`` are no longer theirs.

    :raises AgentError: it is where the agent receives conversations (move
        them first with ``set_channel``), or it is not theirs.
    :raises UnknownRecordError: no such agent.
    """
    agent = tx.agents.get(agent_id)
    if agent is None:
        raise UnknownRecordError(f"no agent with id {agent_id}")
    if agent.preferred == address:
        raise AgentError(
            f"{address.channel} address is where {agent.name} receives conversations; move them first (set-channel)"
        )
    if not tx.agents.remove_identity(agent_id, address.channel, address.address):
        raise AgentError(f"that {address.channel} address is not an identity of {agent.name}")


def disable(tx: Tx, agent_id: int) -> None:
    """Disable the agent and end their shift (the caller requeues their conversations)."""
    tx.agents.disable(agent_id)
    end_shift(tx, agent_id, tx.now())


def start_shift(tx: Tx, agent_id: int, now: float, ttl: float) -> None:
    """Put the agent online until ``now + ttl`` (a second login extends the open shift)."""
    tx.shifts.start(agent_id, now, ttl)


def end_shift(tx: Tx, agent_id: int, now: float) -> bool:
    """End the agent's open shift; return True if there was one."""
    return tx.shifts.end(agent_id, now)


def is_online(tx: Tx, agent_id: int, now: float) -> bool:
    """True when the agent is enabled and on a shift that has not ended or expired."""
    disabled = tx.agents.is_disabled(agent_id)
    return disabled is False and tx.shifts.started_at(agent_id, now) is not None


def online_candidates(tx: Tx, queue: str, now: float) -> list[Candidate]:
    """Online, enabled agents serving ``queue`` with fewer open conversations than their capacity."""
    out: list[Candidate] = []
    for online in tx.agents.online(now):
        agent = online.agent
        if queue not in agent.queues or online.open_conversations >= agent.capacity:
            continue
        idle_since = max(online.shift_started, online.last_activity or 0.0)
        out.append(Candidate(agent=agent, open_conversations=online.open_conversations, idle_since=idle_since))
    return out
