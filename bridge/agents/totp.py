"""Time-based one-time passwords (RFC 6238) for agent logins, replay-proof.

pyotp computes and compares the codes; it does not stop a code from being
used twice. RFC 6238 §5.2 and ASVS 2.8.4 require that, so ``verify`` keeps the
last accepted time step per agent in ``totp_used`` and accepts only a code
whose step is newer, inside the caller's write transaction: two logins with
one code cannot both pass, and neither can an older code after a newer one.
"""

from __future__ import annotations

import enum
import logging
import re
from typing import TYPE_CHECKING

import pyotp

if TYPE_CHECKING:
    from bridge.store import Tx

log = logging.getLogger(__name__)

DIGITS = 6
INTERVAL = 30
# One step of clock drift or typing delay either way (PROTOCOLS §4.2).
VALID_WINDOW = 1
_CODE = re.compile(rf"\d{{{DIGITS}}}")


class TotpResult(enum.Enum):
    """Why a code was accepted or refused (the caller words the answer)."""

    ACCEPTED = "accepted"
    MALFORMED = "malformed"  # not six digits
    INVALID = "invalid"  # wrong code or outside the window
    REPLAYED = "replayed"  # right code, but its time step was already used


def new_secret() -> str:
    """Return a new 160-bit secret in base32 (32 characters), from the OS CSPRNG."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """Return the ``otpauth://totp/...`` URI an authenticator app enrols from."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).provisioning_uri(name=account, issuer_name=issuer)


def normalize_code(code: str) -> str | None:
    """Return the code without spaces, or None unless it is exactly six ASCII digits."""
    compact = "".join(code.split())
    return compact if _CODE.fullmatch(compact) and compact.isascii() else None


def match_timecode(secret: str, code: str, now: float) -> int | None:
    """Return the time step ``code`` belongs to (current ±1), or None; no replay check."""
    compact = normalize_code(code)
    if compact is None:
        return None
    # pyotp's verify_and_get_timecode does this too, but only from 2.10 on.
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL)
    current = totp.timecode(now)
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if step >= 0 and pyotp.utils.strings_equal(compact, totp.generate_otp(step)):
            return step
    return None


def verify(tx: Tx, agent_id: int, secret: str, code: str, now: float) -> TotpResult:
    """Check ``code`` for ``agent_id`` and, when accepted, record its time step.

    Must run inside a store write transaction, so that the check and the
    record commit together.
    """
    if normalize_code(code) is None:
        return TotpResult.MALFORMED
    step = match_timecode(secret, code, now)
    if step is None:
        return TotpResult.INVALID
    last = tx.shifts.last_totp_step(agent_id)
    if last is not None and step <= last:
        # ASVS 2.8.5: a reused code is logged; the caller also audits it.
        log.warning("agent %s: TOTP code replayed (time step %s, last used %s)", agent_id, step, last)
        return TotpResult.REPLAYED
    tx.shifts.use_totp_step(agent_id, step, now)
    return TotpResult.ACCEPTED
