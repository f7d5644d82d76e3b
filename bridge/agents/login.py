"""The second factor of every login, and the lock-out after repeated failures: one place for both.

Chat shifts (``/login CODE``) and console sessions both come here, so a code
used in one is refused in the other, and failures anywhere count towards the
same lock-out. Six digits carry about 20 bits, so NIST SP 800-63B requires
limiting failed attempts per account; every attempt goes into the audit log,
which is also where the lock-out reads them from (one source of truth, kept
across restarts).

The console login (password and code, every time) adds two limits that are
not an account's: failures per client address, higher than the per-account
limit, stop one address from spraying guesses across many accounts; and an
unknown username locks like a real one, so a lock-out cannot tell which names
exist. Both are counted in the store (``tx.sessions``) under keyed hashes.
The password is checked between a read (``console_candidate``) and the write
that decides (``finish_console_login``), off the store's writer thread: scrypt
is slow on purpose and must not hold up every other write.
"""

from __future__ import annotations

import enum
import functools
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.agents import passwords, totp

if TYPE_CHECKING:
    from bridge.store import Agent, Tx

LOGIN = "agent.login"
FAILED = "agent.login_failed"
REPLAYED = "agent.login_replayed"
LOCKED = "agent.login_locked"
#: ``login_failures`` scopes: per client address, and per username that is no agent's.
ADDRESS = "address"
UNKNOWN_NAME = "name"
_MAX_NAME = 256


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


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """The lock-out limits: ``max_attempts`` per account or name, ``max_per_address`` per client address.

    Failures count within ``lockout`` seconds; 0 switches a limit off.
    """

    max_attempts: int
    lockout: float
    max_per_address: int

    @classmethod
    def from_security(cls, security: Any) -> LoginPolicy:
        """Take the limits from a ``SecurityConfig``."""
        return cls(
            max_attempts=int(security.login_max_attempts),
            lockout=float(security.lockout),
            max_per_address=int(security.login_max_attempts_per_address),
        )


@dataclass(frozen=True, slots=True)
class ConsoleCandidate:
    """What the password check needs, read before it runs.

    :param agent: the agent with that username, or None (the dummy hash is checked instead).
    :param password_hash: the hash to check the password against (never None: the dummy stands in).
    :param retry_after: seconds an address, account or name lock still lasts (0: not locked).
    """

    agent: Agent | None
    password_hash: str
    retry_after: float


@functools.cache
def dummy_hash() -> str:
    """A hash no password matches, checked for unknown usernames so they cost the same time."""
    return passwords.hash_password(secrets.token_urlsafe(24))


def _name_key(username: str) -> str:
    return username[:_MAX_NAME]


def _window_lock(times: list[float], limit: int, lockout: float, now: float) -> float:
    """Seconds left of a lock from ``times`` (newest first, at most ``limit``) of failures in the window."""
    if limit <= 0 or lockout <= 0 or len(times) < limit:
        return 0.0
    return max(0.0, times[limit - 1] + lockout - now)


def _lock(tx: Tx, agent: Agent | None, username: str, address: str, now: float, policy: LoginPolicy) -> float:
    since = now - policy.lockout
    by_address = _window_lock(
        tx.sessions.recent_failures(ADDRESS, address, since, policy.max_per_address),
        policy.max_per_address, policy.lockout, now,
    )  # fmt: skip
    if agent is not None:
        by_account = locked_for(tx, agent.id, now, policy.max_attempts, policy.lockout)
    else:
        times = tx.sessions.recent_failures(UNKNOWN_NAME, _name_key(username), since, policy.max_attempts)
        by_account = _window_lock(times, policy.max_attempts, policy.lockout, now)
    return max(by_address, by_account)


def console_candidate(tx: Tx, username: str, address: str, now: float, policy: LoginPolicy) -> ConsoleCandidate:
    """Read who ``username`` is and whether a lock applies (a store read, before the password check)."""
    agent = tx.agents.get_by_name(username) if len(username) <= _MAX_NAME else None
    stored = tx.agents.password_hash(agent.id) if agent is not None else None
    return ConsoleCandidate(agent, stored or dummy_hash(), _lock(tx, agent, username, address, now, policy))


def _fail(tx: Tx, agent: Agent | None, username: str, address: str, now: float, actor: str,
          detail: dict[str, Any]) -> LoginResult:  # fmt: skip
    tx.sessions.record_failure(ADDRESS, address, now)
    if agent is None:
        tx.sessions.record_failure(UNKNOWN_NAME, _name_key(username), now)
        tx.audit.append(actor, FAILED, None, {**detail, "known": False})
    else:
        record_failure(tx, agent, actor, detail)
    return LoginResult(LoginOutcome.INVALID)


def refuse_locked(tx: Tx, agent: Agent | None, retry_after: float, actor: str, detail: dict[str, Any]) -> LoginResult:
    """Audit an attempt refused because a lock applies (nothing was checked)."""
    tx.audit.append(actor, LOCKED, subject(agent.id) if agent is not None else None, detail)
    return LoginResult(LoginOutcome.LOCKED, retry_after)


def finish_console_login(
    tx: Tx,
    username: str,
    address: str,
    password_ok: bool,
    code: str,
    now: float,
    policy: LoginPolicy,
    *,
    actor: str,
    detail: dict[str, Any],
) -> tuple[LoginResult, Agent | None]:
    """Decide a console login whose password was checked (``password_ok``); audit it.

    Must run inside a store write. Every failure (no such user, disabled,
    wrong password, malformed, wrong or replayed code) is INVALID or REPLAYED
    and counts against the address, and the account or name; a lock found
    here (it may have started since the read) is LOCKED. Returns the result
    and, when accepted, the agent.
    """
    agent = tx.agents.get_by_name(username) if len(username) <= _MAX_NAME else None
    locked = _lock(tx, agent, username, address, now, policy)
    if locked > 0:
        return refuse_locked(tx, agent, locked, actor, detail), None
    if agent is None or agent.disabled or not password_ok:
        return _fail(tx, agent, username, address, now, actor, detail), None
    result = check_code(
        tx, agent, code, now, max_attempts=policy.max_attempts, lockout=policy.lockout, actor=actor, detail=detail
    )
    if result.outcome is LoginOutcome.MALFORMED:
        return _fail(tx, agent, username, address, now, actor, detail), None
    if result.outcome in (LoginOutcome.INVALID, LoginOutcome.REPLAYED):
        tx.sessions.record_failure(ADDRESS, address, now)
    return result, (agent if result.accepted else None)
