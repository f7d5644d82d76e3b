"""The second factor of every login, and the lock-out after repeated failures: one place for both.

Chat shifts (``/login CODE``) and console sessions both come here, so a code
used in one is refused in the other, and failures anywhere count towards the
same lock-out. Six digits carry about 20 bits, so NIST SP 800-63B requires
limiting failed attempts per account; every attempt goes into the audit log,
which is also where the lock-out reads them from (one source of truth, kept
across restarts).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.agents import totp

if TYPE_CHECKING:
    from bridge.store import Agent, Tx

LOGIN = "agent.login"
FAILED = "agent.login_failed"
REPLAYED = "agent.login_replayed"
LOCKED = "agent.login_locked"


class LoginOutcome(enum.Enum):
    """How a login attempt ended (the caller words the answer)."""

    ACCEPTED = "accepted"
    MALFORMED = "malformed"  # not a six-digit code
    INVALID = "invalid"  # wrong code (or, for the console, wrong password)
    REPLAYED = "replayed"  # right code, already used
    LOCKED = "locked"  # too many failures: not even checked


@dataclass(frozen=True, slots=True)
class LoginResult:
    """The outcome and, when locked, how many seconds the lock still lasts."""

    outcome: LoginOutcome
    retry_after: float = 0.0

    @property
    def accepted(self) -> bool:
        """Whether the login may proceed."""
        return self.outcome is LoginOutcome.ACCEPTED


def subject(agent_id: int) -> str:
    """The audit subject of an agent's logins."""
    return f"agent:{agent_id}"


def locked_for(tx: Tx, agent_id: int, now: float, max_attempts: int, lockout: float) -> float:
    """Seconds the account stays locked: ``max_attempts`` failed logins in a row within ``lockout``."""
    if max_attempts <= 0 or lockout <= 0:
        return 0.0
    rows = tx.audit.recent_actions(subject(agent_id), (LOGIN, FAILED, REPLAYED), now - lockout, max_attempts)
    if len(rows) < max_attempts or any(action == LOGIN for _at, action in rows):
        return 0.0
    return max(0.0, rows[0][0] + lockout - now)


def record_failure(tx: Tx, agent: Agent, actor: str, detail: dict[str, Any]) -> None:
    """Count a failed login that the code check did not see (e.g. a wrong console password)."""
    tx.audit.append(actor, FAILED, subject(agent.id), detail)


def check_code(
    tx: Tx,
    agent: Agent,
    code: str,
    now: float,
    *,
    max_attempts: int,
    lockout: float,
    actor: str,
    detail: dict[str, Any],
) -> LoginResult:
    """Check ``code`` for ``agent`` (replay-proof, lock-out first) and audit the attempt.

    Must run inside a store write: the used time step, the audit entry and
    whatever the caller starts on success commit together. A success is
    audited as ``agent.login`` with ``detail``; the caller adds what it
    starts (a shift, a session).
    """
    if totp.normalize_code(code) is None:
        return LoginResult(LoginOutcome.MALFORMED)
    locked = locked_for(tx, agent.id, now, max_attempts, lockout)
    if locked > 0:
        tx.audit.append(actor, LOCKED, subject(agent.id), detail)
        return LoginResult(LoginOutcome.LOCKED, locked)
    verdict = totp.verify(tx, agent.id, tx.agents.totp_secret(agent.id), code, now)
    if verdict is totp.TotpResult.REPLAYED:
        tx.audit.append(actor, REPLAYED, subject(agent.id), detail)
        return LoginResult(LoginOutcome.REPLAYED)
    if verdict is not totp.TotpResult.ACCEPTED:
        tx.audit.append(actor, FAILED, subject(agent.id), detail)
        return LoginResult(LoginOutcome.INVALID)
    tx.audit.append(actor, LOGIN, subject(agent.id), detail)
    return LoginResult(LoginOutcome.ACCEPTED)
