"""Agents: who answers customers, where they are reached, when they are on shift.

Everything here is a plain sync function taking the store's ``tx``: the
relay calls them inside the write transaction that records an agent's
message, so a command and its effects commit together, and the CLI calls them
through ``store.write``/``store.read`` while the daemon runs.

Agent addresses, emails, TOTP secrets and password hashes are sealed under the
agent's own data key (``KeyOwner("agent", id)``); addresses are found through
a keyed blind index (``tx.blind("agent:<channel>", address)``), never by
plaintext. Names are plaintext usernames, unique.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .agent_fields import (
    DEFAULT_QUEUE,
    ROLES,
    AgentError,
    mask_address,
    normalize_address,
    parse_address,
    validate_name,
    validate_queues,
)
from .errors import IntegrityError, UnknownRecordError
from .models import Address
from .store import KeyOwner

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_QUEUE", "ROLES", "Agent", "AgentError", "Candidate", "address_owner", "create_agent", "disable",
    "end_shift", "find_agent_by_identity", "get_agent", "get_agent_by_name", "get_password_hash", "get_totp_secret",
    "identity_last_inbound", "is_online", "list_agents", "mask_address", "normalize_address", "online_candidates",
    "open_conversations", "parse_address", "require_agent", "set_channel", "set_current_conversation",
    "start_shift", "touch_identity", "validate_name", "validate_queues",
]  # fmt: skip

_AGENT_COLUMNS = "id, name, role, channel, address, email, capacity, queues, disabled, current_conversation_id"


@dataclass(frozen=True, slots=True)
class Agent:
    """One agent, decrypted.

    :param channel: the preferred channel (``whatsapp``, ``messenger``, ``email``, ``console``).
    :param address: the platform address on that channel (``""`` for the console).
    """

    id: int
    name: str
    role: str
    channel: str
    address: str
    email: str | None
    capacity: int
    queues: tuple[str, ...]
    disabled: bool
    current_conversation_id: int | None

    @property
    def preferred(self) -> Address:
        """Where relayed customer messages and notices go."""
        return Address(self.channel, self.address)


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


def _owner(agent_id: int) -> KeyOwner:
    return KeyOwner.agent(agent_id)


def _blind(tx: Any, channel: str, address: str) -> bytes:
    return bytes(tx.blind(f"agent:{channel}", normalize_address(channel, address)))


def _row_to_agent(tx: Any, row: sqlite3.Row | tuple[Any, ...]) -> Agent:
    agent_id, name, role, channel, address, email, capacity, queues, disabled, current = tuple(row)
    owner = _owner(agent_id)
    return Agent(
        id=agent_id,
        name=name,
        role=role,
        channel=channel,
        address=tx.open_text(owner, "agents", "address", agent_id, address) if address is not None else "",
        email=tx.open_text(owner, "agents", "email", agent_id, email) if email is not None else None,
        capacity=int(capacity),
        queues=tuple(json.loads(queues or "[]")),
        disabled=bool(disabled),
        current_conversation_id=current,
    )


def _check_address_free(tx: Any, address: Address, agent_id: int | None) -> bytes | None:
    if address.channel == "console":
        return None
    index = _blind(tx, address.channel, address.address)
    row = tx.conn.execute(
        "SELECT agent_id FROM agent_identities WHERE channel = ? AND address_index = ?", (address.channel, index)
    ).fetchone()
    if row is not None and row[0] != agent_id:
        other = tx.conn.execute("SELECT name FROM agents WHERE id = ?", (row[0],)).fetchone()
        raise AgentError(f"{address.channel} address already belongs to agent {other[0] if other else row[0]!r}")
    return index


def address_owner(tx: Any, address: Address) -> Agent | None:
    """Return the agent whose identity ``address`` is, or None (always None for the console)."""
    if address.channel == "console":
        return None
    return find_agent_by_identity(tx, address.channel, address.address)


def _put_identity(tx: Any, agent_id: int, address: Address, index: bytes | None) -> None:
    """Make ``address`` the agent's one identity on its channel (replacing an older one there)."""
    if index is None:
        return
    conn = tx.conn
    existing = conn.execute(
        "SELECT id, address_index FROM agent_identities WHERE agent_id = ? AND channel = ?", (agent_id, address.channel)
    ).fetchall()
    if any(bytes(row[1]) == index for row in existing):
        return
    conn.execute("DELETE FROM agent_identities WHERE agent_id = ? AND channel = ?", (agent_id, address.channel))
    identity_id = tx.next_id("agent_identities")
    sealed = tx.seal(_owner(agent_id), "agent_identities", "address", identity_id, address.address)
    conn.execute(
        "INSERT INTO agent_identities (id, agent_id, channel, address_index, address, last_inbound_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, NULL, ?)",
        (identity_id, agent_id, address.channel, index, sealed, tx.now()),
    )


def create_agent(
    tx: Any,
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

    :raises AgentError: duplicate name, bad role/capacity/queue, or an
        address that already belongs to another agent.
    """
    validate_name(name)
    if role not in ROLES:
        raise AgentError(f"invalid role {role!r}: expected one of {', '.join(ROLES)}")
    if capacity < 1:
        raise AgentError(f"invalid capacity {capacity}: at least 1")
    if email is not None:
        try:
            email = Address.parse(f"email:{email}").address
        except ValueError as err:
            raise AgentError(str(err)) from err
    queue_tuple = validate_queues(queues)
    conn = tx.conn
    if conn.execute("SELECT 1 FROM agents WHERE name = ?", (name,)).fetchone():
        raise AgentError(f"an agent named {name!r} already exists")
    index = _check_address_free(tx, address, None)
    agent_id = tx.next_id("agents")
    owner = _owner(agent_id)
    tx.new_key(owner)
    conn.execute(
        "INSERT INTO agents (id, name, role, channel, address, email, capacity, queues, disabled,"
        " totp_secret, password_hash, created_at, current_conversation_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, NULL)",
        (
            agent_id,
            name,
            role,
            address.channel,
            tx.seal(owner, "agents", "address", agent_id, address.address) if address.address else None,
            tx.seal(owner, "agents", "email", agent_id, email) if email else None,
            capacity,
            json.dumps(list(queue_tuple)),
            tx.seal(owner, "agents", "totp_secret", agent_id, totp_secret),
            tx.seal(owner, "agents", "password_hash", agent_id, password_hash) if password_hash else None,
            tx.now(),
        ),
    )
    _put_identity(tx, agent_id, address, index)
    agent = get_agent(tx, agent_id)
    assert agent is not None  # noqa: S101 - just inserted in this transaction
    return agent


def get_agent(tx: Any, agent_id: int) -> Agent | None:
    """Return the agent with this id, or None."""
    row = tx.conn.execute(f"SELECT {_AGENT_COLUMNS} FROM agents WHERE id = ?", (agent_id,)).fetchone()
    return _row_to_agent(tx, row) if row else None


def get_agent_by_name(tx: Any, name: str) -> Agent | None:
    """Return the agent with this username, or None."""
    row = tx.conn.execute(f"SELECT {_AGENT_COLUMNS} FROM agents WHERE name = ?", (name,)).fetchone()
    return _row_to_agent(tx, row) if row else None


def require_agent(tx: Any, name: str) -> Agent:
    """Return the agent named ``name``.

    :raises UnknownRecordError: when there is none.
    """
    agent = get_agent_by_name(tx, name)
    if agent is None:
        raise UnknownRecordError(f"no agent named {name!r}")
    return agent


def list_agents(tx: Any) -> list[Agent]:
    """Every agent, by name."""
    rows = tx.conn.execute(f"SELECT {_AGENT_COLUMNS} FROM agents ORDER BY name").fetchall()
    return [_row_to_agent(tx, row) for row in rows]


def find_agent_by_identity(tx: Any, channel: str, address: str) -> Agent | None:
    """Return the agent who writes from ``channel``/``address``, disabled or not, or None."""
    row = tx.conn.execute(
        "SELECT agent_id FROM agent_identities WHERE channel = ? AND address_index = ?",
        (channel, _blind(tx, channel, address)),
    ).fetchone()
    return get_agent(tx, row[0]) if row else None


def touch_identity(tx: Any, agent_id: int, channel: str, address: str, ts: float) -> None:
    """Record that the agent wrote from this identity at ``ts`` (opens reply windows)."""
    tx.conn.execute(
        "UPDATE agent_identities SET last_inbound_at = MAX(COALESCE(last_inbound_at, 0), ?)"
        " WHERE agent_id = ? AND channel = ? AND address_index = ?",
        (ts, agent_id, channel, _blind(tx, channel, address)),
    )


def identity_last_inbound(tx: Any, agent_id: int, channel: str) -> float | None:
    """When the agent last wrote to us on ``channel``, or None (for platform reply windows)."""
    (value,) = tx.conn.execute(
        "SELECT MAX(last_inbound_at) FROM agent_identities WHERE agent_id = ? AND channel = ?", (agent_id, channel)
    ).fetchone()
    return float(value) if value is not None else None


def get_totp_secret(tx: Any, agent_id: int) -> str:
    """Return the agent's TOTP secret (base32).

    :raises UnknownRecordError: no such agent.
    """
    row = tx.conn.execute("SELECT totp_secret FROM agents WHERE id = ?", (agent_id,)).fetchone()
    if row is None:
        raise UnknownRecordError(f"no agent with id {agent_id}")
    return str(tx.open_text(_owner(agent_id), "agents", "totp_secret", agent_id, row[0]))


def get_password_hash(tx: Any, agent_id: int) -> str | None:
    """Return the agent's console password hash, or None when none was enrolled."""
    row = tx.conn.execute("SELECT password_hash FROM agents WHERE id = ?", (agent_id,)).fetchone()
    if row is None or row[0] is None:
        return None
    return str(tx.open_text(_owner(agent_id), "agents", "password_hash", agent_id, row[0]))


def set_channel(tx: Any, agent_id: int, address: Address) -> Agent:
    """Make ``address`` the agent's preferred channel; their identities elsewhere stay.

    :raises AgentError: the address belongs to another agent.
    :raises UnknownRecordError: no such agent.
    """
    if get_agent(tx, agent_id) is None:
        raise UnknownRecordError(f"no agent with id {agent_id}")
    index = _check_address_free(tx, address, agent_id)
    sealed = tx.seal(_owner(agent_id), "agents", "address", agent_id, address.address) if address.address else None
    tx.conn.execute("UPDATE agents SET channel = ?, address = ? WHERE id = ?", (address.channel, sealed, agent_id))
    _put_identity(tx, agent_id, address, index)
    agent = get_agent(tx, agent_id)
    assert agent is not None  # noqa: S101 - checked above
    return agent


def disable(tx: Any, agent_id: int) -> None:
    """Disable the agent and end their shift (the caller requeues their conversations)."""
    tx.conn.execute("UPDATE agents SET disabled = 1, current_conversation_id = NULL WHERE id = ?", (agent_id,))
    end_shift(tx, agent_id, tx.now())


def start_shift(tx: Any, agent_id: int, now: float, ttl: float) -> None:
    """Put the agent online until ``now + ttl`` (a second login extends the open shift)."""
    conn = tx.conn
    updated = conn.execute(
        "UPDATE shifts SET expires_at = ? WHERE agent_id = ? AND ended_at IS NULL"
        " AND started_at <= ? AND expires_at > ?",
        (now + ttl, agent_id, now, now),
    ).rowcount
    if not updated:
        conn.execute(
            "INSERT INTO shifts (id, agent_id, started_at, expires_at, ended_at) VALUES (?, ?, ?, ?, NULL)",
            (tx.next_id("shifts"), agent_id, now, now + ttl),
        )


def end_shift(tx: Any, agent_id: int, now: float) -> bool:
    """End the agent's open shift; return True if there was one."""
    return bool(
        tx.conn.execute(
            "UPDATE shifts SET ended_at = ? WHERE agent_id = ? AND ended_at IS NULL AND expires_at > ?",
            (now, agent_id, now),
        ).rowcount
    )


def _shift_start(tx: Any, agent_id: int, now: float) -> float | None:
    row = tx.conn.execute(
        "SELECT MIN(started_at) FROM shifts WHERE agent_id = ? AND ended_at IS NULL"
        " AND started_at <= ? AND expires_at > ?",
        (agent_id, now, now),
    ).fetchone()
    return float(row[0]) if row and row[0] is not None else None


def is_online(tx: Any, agent_id: int, now: float) -> bool:
    """True when the agent is enabled and on a shift that has not ended or expired."""
    disabled = tx.conn.execute("SELECT disabled FROM agents WHERE id = ?", (agent_id,)).fetchone()
    return bool(disabled is not None and not disabled[0] and _shift_start(tx, agent_id, now) is not None)


def open_conversations(tx: Any, agent_id: int) -> int:
    """How many conversations are assigned to the agent and not closed."""
    (count,) = tx.conn.execute(
        "SELECT COUNT(*) FROM conversations WHERE agent_id = ? AND status = 'assigned'", (agent_id,)
    ).fetchone()
    return int(count)


def online_candidates(tx: Any, queue: str, now: float) -> list[Candidate]:
    """Online, enabled agents serving ``queue`` with fewer open conversations than their capacity."""
    rows = tx.conn.execute(
        f"SELECT {_AGENT_COLUMNS} FROM agents WHERE disabled = 0 AND id IN"
        " (SELECT agent_id FROM shifts WHERE ended_at IS NULL AND started_at <= ? AND expires_at > ?) ORDER BY id",
        (now, now),
    ).fetchall()
    out: list[Candidate] = []
    for row in rows:
        if queue not in json.loads(row[7] or "[]"):
            continue
        agent_id = row[0]
        count, last_activity = tx.conn.execute(
            "SELECT COUNT(CASE WHEN status = 'assigned' THEN 1 END), MAX(updated_at)"
            " FROM conversations WHERE agent_id = ?",
            (agent_id,),
        ).fetchone()
        if count >= row[6]:
            continue
        started = _shift_start(tx, agent_id, now) or now
        idle_since = max(started, float(last_activity or 0.0))
        try:
            agent = _row_to_agent(tx, row)
        except IntegrityError as err:  # one damaged record must not stop routing to the others
            log.error("agent %d is unreadable and gets no conversations: %s", agent_id, err)
            continue
        out.append(Candidate(agent=agent, open_conversations=int(count), idle_since=idle_since))
    return out


def set_current_conversation(tx: Any, agent_id: int, conversation_id: int | None) -> None:
    """Make ``conversation_id`` the one the agent's plain replies go to (None: none)."""
    tx.conn.execute("UPDATE agents SET current_conversation_id = ? WHERE id = ?", (conversation_id, agent_id))
