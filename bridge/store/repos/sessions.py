"""Console sessions and the failed-login counts that are not an agent's own.

A session is found by a keyed hash (blind index) of its cookie token: the
token itself is never stored, so a copy of the database cannot be replayed as
a cookie. Failed logins per client address and per unknown username are kept
the same way (a keyed hash, never the address or the name), so the spraying
limit survives a restart without the store learning who tried.
"""

from __future__ import annotations

from bridge.store.records import ConsoleSession
from bridge.store.session import Session

_TOKEN_KIND = "console_session"
_COLUMNS = "id, agent_id, created_at, expires_at"


def _failure_kind(scope: str) -> str:
    return f"login_failure:{scope}"


class SessionsRepo:
    """``console_sessions`` and ``login_failures``."""

    def __init__(self, session: Session) -> None:
        self._s = session

    # -- sessions -------------------------------------------------------------
    def create(self, agent_id: int, token: str, ttl: float) -> ConsoleSession:
        """Start a session for ``agent_id`` that ends ``ttl`` seconds from now; return it."""
        session_id = self._s.next_id("console_sessions")
        now = self._s.now()
        self._s.execute(
            "INSERT INTO console_sessions (id, token_hash, agent_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            (session_id, self._s.blind(_TOKEN_KIND, token), agent_id, now, now + ttl),
        )
        return ConsoleSession(session_id, agent_id, now, now + ttl)

    def find(self, token: str, now: float) -> ConsoleSession | None:
        """The live session whose cookie token is ``token``, or None (unknown or expired)."""
        row = self._s.execute(
            f"SELECT {_COLUMNS} FROM console_sessions WHERE token_hash = ? AND expires_at > ?",
            (self._s.blind(_TOKEN_KIND, token), now),
        ).fetchone()
        return None if row is None else ConsoleSession(int(row[0]), int(row[1]), float(row[2]), float(row[3]))

    def end(self, session_id: int) -> bool:
        """End one session; return True if it existed."""
        return bool(self._s.execute("DELETE FROM console_sessions WHERE id = ?", (session_id,)).rowcount)

    def end_agent(self, agent_id: int) -> int:
        """End every session of an agent (disabled, say); return how many there were."""
        return int(self._s.execute("DELETE FROM console_sessions WHERE agent_id = ?", (agent_id,)).rowcount)

    def live_count(self, agent_id: int, now: float) -> int:
        """How many sessions of the agent are live at ``now``."""
        (count,) = self._s.execute(
            "SELECT COUNT(*) FROM console_sessions WHERE agent_id = ? AND expires_at > ?", (agent_id, now)
        ).fetchone()
        return int(count)

    def purge(self, now: float, failures_before: float) -> tuple[int, int]:
        """Drop sessions expired at ``now`` and failure counts older than ``failures_before``.

        Returns ``(sessions, failures)`` removed.
        """
        sessions = self._s.execute("DELETE FROM console_sessions WHERE expires_at <= ?", (now,)).rowcount
        failures = self._s.execute("DELETE FROM login_failures WHERE at < ?", (failures_before,)).rowcount
        return int(sessions), int(failures)

    # -- failed logins -----------------------------------------------------------
    def record_failure(self, scope: str, key: str, at: float) -> None:
        """Count one failed login for ``key`` (a client address or an unknown name) in ``scope``."""
        self._s.execute(
            "INSERT INTO login_failures (id, scope, key_index, at) VALUES (?, ?, ?, ?)",
            (self._s.next_id("login_failures"), scope, self._s.blind(_failure_kind(scope), key), at),
        )

    def recent_failures(self, scope: str, key: str, since: float, limit: int) -> list[float]:
        """Times of the newest ``limit`` failures of ``key`` in ``scope`` after ``since``, newest first."""
        rows = self._s.execute(
            "SELECT at FROM login_failures WHERE scope = ? AND key_index = ? AND at > ? ORDER BY at DESC, id DESC"
            " LIMIT ?",
            (scope, self._s.blind(_failure_kind(scope), key), since, limit),
        ).fetchall()
        return [float(r[0]) for r in rows]
