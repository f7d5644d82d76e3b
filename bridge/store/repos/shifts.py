"""Shifts (when an agent is on duty) and the TOTP time steps already used.

Plain columns only: times and counters carry no personal data. The login
rules (replay, lock-out) are the agents layer's; this repository stores.
"""

from __future__ import annotations

from bridge.store.session import Session


class ShiftsRepo:
    """``shifts`` and ``totp_used``."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def start(self, agent_id: int, now: float, ttl: float) -> None:
        """Put the agent on duty until ``now + ttl`` (a second login extends the open shift)."""
        updated = self._s.execute(
            "UPDATE shifts SET expires_at = ? WHERE agent_id = ? AND ended_at IS NULL"
            " AND started_at <= ? AND expires_at > ?",
            (now + ttl, agent_id, now, now),
        ).rowcount
        if not updated:
            self._s.execute(
                "INSERT INTO shifts (id, agent_id, started_at, expires_at, ended_at) VALUES (?, ?, ?, ?, NULL)",
                (self._s.next_id("shifts"), agent_id, now, now + ttl),
            )

    def end(self, agent_id: int, now: float) -> bool:
        """End the agent's open shift; return True if there was one."""
        cursor = self._s.execute(
            "UPDATE shifts SET ended_at = ? WHERE agent_id = ? AND ended_at IS NULL AND expires_at > ?",
            (now, agent_id, now),
        )
        return bool(cursor.rowcount)

    def started_at(self, agent_id: int, now: float) -> float | None:
        """When the agent's shift running at ``now`` began, or None when they are off duty."""
        row = self._s.execute(
            "SELECT MIN(started_at) FROM shifts WHERE agent_id = ? AND ended_at IS NULL"
            " AND started_at <= ? AND expires_at > ?",
            (agent_id, now, now),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def last_totp_step(self, agent_id: int) -> int | None:
        """The newest TOTP time step the agent used, or None."""
        (last,) = self._s.execute("SELECT MAX(counter) FROM totp_used WHERE agent_id = ?", (agent_id,)).fetchone()
        return None if last is None else int(last)

    def use_totp_step(self, agent_id: int, step: int, now: float) -> None:
        """Record ``step`` as used; only the newest step is kept (it is all the replay rule needs)."""
        self._s.execute("INSERT INTO totp_used (agent_id, counter, used_at) VALUES (?, ?, ?)", (agent_id, step, now))
        self._s.execute("DELETE FROM totp_used WHERE agent_id = ? AND counter < ?", (agent_id, step))
