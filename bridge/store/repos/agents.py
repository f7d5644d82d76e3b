"""Agents and their identities: addresses, emails and secrets sealed under each agent's own key.

Addresses are found through a keyed blind index (``agent:<channel>``), never
by plaintext. Names are plaintext usernames, unique. Validation of what an
admin typed is the agents layer's (``bridge.agents``); this repository
stores and reads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from bridge.errors import IntegrityError, StoreError, UnknownRecordError
from bridge.store.keyring import KeyOwner
from bridge.store.records import Agent, OnlineAgent
from bridge.store.session import Session

log = logging.getLogger("carebridge.store")

_COLUMNS = "id, name, role, channel, address, email, capacity, queues, disabled, current_conversation_id"


def identity_kind(channel: str) -> str:
    """Blind-index kind of an agent address on ``channel``."""
    return f"agent:{channel}"


class AgentsRepo:
    """``agents`` and ``agent_identities``."""

    def __init__(self, session: Session) -> None:
        self._s = session

    # -- reading ------------------------------------------------------------
    def _agent(self, row: Any) -> Agent:
        agent_id, name, role, channel, address, email, capacity, queues, disabled, current = tuple(row)
        owner = KeyOwner.agent(agent_id)
        return Agent(
            id=agent_id,
            name=name,
            role=role,
            channel=channel,
            address=self._s.open_text(owner, "agents", "address", agent_id, address) if address is not None else "",
            email=self._s.open_text(owner, "agents", "email", agent_id, email) if email is not None else None,
            capacity=int(capacity),
            queues=tuple(json.loads(queues or "[]")),
            disabled=bool(disabled),
            current_conversation_id=current,
        )

    def get(self, agent_id: int) -> Agent | None:
        """The agent with this id, or None."""
        row = self._s.execute(f"SELECT {_COLUMNS} FROM agents WHERE id = ?", (agent_id,)).fetchone()
        return self._agent(row) if row else None

    def get_by_name(self, name: str) -> Agent | None:
        """The agent with this username, or None."""
        row = self._s.execute(f"SELECT {_COLUMNS} FROM agents WHERE name = ?", (name,)).fetchone()
        return self._agent(row) if row else None

    def name_taken(self, name: str) -> bool:
        """Whether an agent (enabled or not) already has this username."""
        return self._s.execute("SELECT 1 FROM agents WHERE name = ?", (name,)).fetchone() is not None

    def all(self) -> list[Agent]:
        """Every agent, by name."""
        rows = self._s.execute(f"SELECT {_COLUMNS} FROM agents ORDER BY name").fetchall()
        return [self._agent(row) for row in rows]

    def enabled_ids(self) -> list[int]:
        """Ids of the agents that are not disabled, ascending."""
        return [int(r[0]) for r in self._s.execute("SELECT id FROM agents WHERE disabled = 0 ORDER BY id")]

    def names(self) -> dict[int, str]:
        """Every agent's username by id (plaintext; for transcripts and exports)."""
        return {int(r[0]): str(r[1]) for r in self._s.execute("SELECT id, name FROM agents")}

    def is_disabled(self, agent_id: int) -> bool | None:
        """Whether the agent is disabled (None: no such agent)."""
        row = self._s.execute("SELECT disabled FROM agents WHERE id = ?", (agent_id,)).fetchone()
        return None if row is None else bool(row[0])

    def totp_secret(self, agent_id: int) -> str:
        """The agent's TOTP secret (base32).

        :raises UnknownRecordError: no such agent.
        """
        row = self._s.execute("SELECT totp_secret FROM agents WHERE id = ?", (agent_id,)).fetchone()
        if row is None:
            raise UnknownRecordError(f"no agent with id {agent_id}")
        return self._s.open_text(KeyOwner.agent(agent_id), "agents", "totp_secret", agent_id, row[0])

    def password_hash(self, agent_id: int) -> str | None:
        """The agent's console password hash, or None when none was enrolled."""
        row = self._s.execute("SELECT password_hash FROM agents WHERE id = ?", (agent_id,)).fetchone()
        if row is None or row[0] is None:
            return None
        return self._s.open_text(KeyOwner.agent(agent_id), "agents", "password_hash", agent_id, row[0])

    # -- identities ---------------------------------------------------------
    def identity_owner(self, channel: str, address: str) -> int | None:
        """The id of the agent who writes from ``channel``/``address`` (already normalized), or None."""
        row = self._s.execute(
            "SELECT agent_id FROM agent_identities WHERE channel = ? AND address_index = ?",
            (channel, self._s.blind(identity_kind(channel), address)),
        ).fetchone()
        return None if row is None else int(row[0])

    def find_by_identity(self, channel: str, address: str) -> Agent | None:
        """The agent who writes from ``channel``/``address``, disabled or not, or None."""
        agent_id = self.identity_owner(channel, address)
        return None if agent_id is None else self.get(agent_id)

    def identities(self, agent_id: int) -> list[tuple[str, str]]:
        """Every identity of the agent as ``(channel, address)``, decrypted, oldest first."""
        rows = self._s.execute(
            "SELECT id, channel, address FROM agent_identities WHERE agent_id = ? ORDER BY id", (agent_id,)
        ).fetchall()
        owner = KeyOwner.agent(agent_id)
        return [(str(r[1]), self._s.open_text(owner, "agent_identities", "address", r[0], r[2])) for r in rows]

    def add_identity(self, agent_id: int, channel: str, address: str) -> bool:
        """Make ``channel``/``address`` an identity of the agent (next to the others); False if it already was.

        :raises StoreError: the address is another agent's identity (check first).
        """
        owner = self.identity_owner(channel, address)
        if owner == agent_id:
            return False
        if owner is not None:
            raise StoreError(f"that {channel} address is already another agent's identity")
        identity_id = self._s.next_id("agent_identities")
        sealed = self._s.seal(KeyOwner.agent(agent_id), "agent_identities", "address", identity_id, address)
        self._s.execute(
            "INSERT INTO agent_identities (id, agent_id, channel, address_index, address, last_inbound_at, created_at)"
            " VALUES (?, ?, ?, ?, ?, NULL, ?)",
            (identity_id, agent_id, channel, self._s.blind(identity_kind(channel), address), sealed, self._s.now()),
        )
        return True

    def remove_identity(self, agent_id: int, channel: str, address: str) -> bool:
        """Retire one identity of the agent: from now on that address is nobody's agent. False if it was not theirs."""
        cursor = self._s.execute(
            "DELETE FROM agent_identities WHERE agent_id = ? AND channel = ? AND address_index = ?",
            (agent_id, channel, self._s.blind(identity_kind(channel), address)),
        )
        return bool(cursor.rowcount)

    def touch_identity(self, agent_id: int, channel: str, address: str, at: float) -> None:
        """Record that the agent wrote from this identity at ``at`` (opens reply windows)."""
        self._s.execute(
            "UPDATE agent_identities SET last_inbound_at = CASE WHEN last_inbound_at IS NULL OR last_inbound_at < ?"
            " THEN ? ELSE last_inbound_at END WHERE agent_id = ? AND channel = ? AND address_index = ?",
            (at, at, agent_id, channel, self._s.blind(identity_kind(channel), address)),
        )

    def last_inbound_at(self, agent_id: int, channel: str) -> float | None:
        """When the agent last wrote to us on ``channel``, or None (for platform reply windows)."""
        (value,) = self._s.execute(
            "SELECT MAX(last_inbound_at) FROM agent_identities WHERE agent_id = ? AND channel = ?", (agent_id, channel)
        ).fetchone()
        return float(value) if value is not None else None

    # -- writing ------------------------------------------------------------
    def insert(
        self,
        *,
        name: str,
        role: str,
        channel: str,
        address: str,
        email: str | None,
        queues: Sequence[str],
        capacity: int,
        totp_secret: str,
        password_hash: str | None,
    ) -> int:
        """Insert an agent with a new data key (and their identity on ``channel``); return the id."""
        agent_id = self._s.next_id("agents")
        owner = KeyOwner.agent(agent_id)
        self._s.new_key(owner)
        seal = self._s.seal
        self._s.execute(
            "INSERT INTO agents (id, name, role, channel, address, email, capacity, queues, disabled,"
            " totp_secret, password_hash, created_at, current_conversation_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, NULL)",
            (
                agent_id,
                name,
                role,
                channel,
                seal(owner, "agents", "address", agent_id, address) if address else None,
                seal(owner, "agents", "email", agent_id, email) if email else None,
                capacity,
                json.dumps(list(queues)),
                seal(owner, "agents", "totp_secret", agent_id, totp_secret),
                seal(owner, "agents", "password_hash", agent_id, password_hash) if password_hash else None,
                self._s.now(),
            ),
        )
        if address:
            self.add_identity(agent_id, channel, address)
        return agent_id

    def set_channel(self, agent_id: int, channel: str, address: str) -> tuple[str, str] | None:
        """Move the agent to ``channel``/``address`` (an identity of theirs from now on).

        The identity of the address they leave is retired; others stay.
        Returns the retired ``(channel, address)``, or None.
        """
        before = self.get(agent_id)
        sealed = self._s.seal(KeyOwner.agent(agent_id), "agents", "address", agent_id, address) if address else None
        self._s.execute("UPDATE agents SET channel = ?, address = ? WHERE id = ?", (channel, sealed, agent_id))
        if address:
            self.add_identity(agent_id, channel, address)
        if before is None or not before.address or (before.channel, before.address) == (channel, address):
            return None
        if self.remove_identity(agent_id, before.channel, before.address):
            return before.channel, before.address
        return None

    def set_queues(self, agent_id: int, queues: Sequence[str]) -> None:
        """Replace the queues the agent serves (already validated)."""
        self._s.execute("UPDATE agents SET queues = ? WHERE id = ?", (json.dumps(list(queues)), agent_id))

    def set_capacity(self, agent_id: int, capacity: int) -> None:
        """Set how many open conversations the agent may hold at once (already validated)."""
        self._s.execute("UPDATE agents SET capacity = ? WHERE id = ?", (capacity, agent_id))

    def disable(self, agent_id: int) -> None:
        """Mark the agent disabled and clear their current conversation."""
        self._s.execute("UPDATE agents SET disabled = 1, current_conversation_id = NULL WHERE id = ?", (agent_id,))

    def set_current_conversation(self, agent_id: int, conversation_id: int | None) -> None:
        """Make ``conversation_id`` the one the agent's plain replies go to (None: none)."""
        self._s.execute("UPDATE agents SET current_conversation_id = ? WHERE id = ?", (conversation_id, agent_id))

    def release_conversation(self, conversation_id: int) -> None:
        """No agent has ``conversation_id`` as their current one any more (it was closed or requeued)."""
        self._s.execute(
            "UPDATE agents SET current_conversation_id = NULL WHERE current_conversation_id = ?", (conversation_id,)
        )

    # -- routing --------------------------------------------------------------
    def online(self, now: float) -> list[OnlineAgent]:
        """Enabled agents on a shift at ``now``, with their load; unreadable ones are logged and skipped."""
        rows = self._s.execute(
            f"SELECT {_COLUMNS}, s.started FROM agents JOIN (SELECT agent_id, MIN(started_at) AS started FROM shifts"
            " WHERE ended_at IS NULL AND started_at <= ? AND expires_at > ? GROUP BY agent_id) s"
            " ON s.agent_id = agents.id WHERE disabled = 0 ORDER BY id",
            (now, now),
        ).fetchall()
        out: list[OnlineAgent] = []
        for row in rows:
            agent_id = int(row[0])
            count, last = self._s.execute(
                "SELECT COUNT(CASE WHEN status = 'assigned' THEN 1 END), MAX(updated_at)"
                " FROM conversations WHERE agent_id = ?",
                (agent_id,),
            ).fetchone()
            try:
                agent = self._agent(row[:10])
            except IntegrityError as err:  # one damaged record must not stop routing to the others
                log.error("agent %d is unreadable and gets no conversations: %s", agent_id, err)
                continue
            out.append(OnlineAgent(agent, int(count), float(last) if last is not None else None, float(row[10])))
        return out

    def last_assigned_at(self, agent_id: int) -> float | None:
        """When the agent was last given a conversation (round robin), or None."""
        row = self._s.execute("SELECT last_assigned_at FROM routing_state WHERE agent_id = ?", (agent_id,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def record_assignment(self, agent_id: int, at: float) -> None:
        """Remember when the agent was last given a conversation (survives restarts)."""
        self._s.execute(
            "INSERT INTO routing_state (agent_id, last_assigned_at) VALUES (?, ?)"
            " ON CONFLICT(agent_id) DO UPDATE SET last_assigned_at = excluded.last_assigned_at",
            (agent_id, at),
        )
