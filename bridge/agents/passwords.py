"""Console passwords: scrypt hashes with a per-password salt.

Agents enrol a console password with ``carebridge agent add``; the console
login checks it. Only the hash is kept (itself sealed under the agent's data
key by ``bridge.agents``). The hash text carries its own parameters, so they
can be raised later without breaking existing hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from bridge.errors import BridgeError

# RFC 7914 / OWASP: N=2**15, r=8, p=1 costs ~32 MiB and well under a second here.
_N = 2**15
_R = 8
_P = 1
_SALT_BYTES = 16
_KEY_BYTES = 32
_SCHEME = "scrypt"
MIN_LENGTH = 8
MAX_LENGTH = 1024


class PasswordPolicyError(BridgeError):
    """A new password does not meet the policy (too short or too long)."""


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # maxmem must cover 128 * n * r bytes plus some slack, or OpenSSL refuses.
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 1024 * 1024, dklen=_KEY_BYTES
    )


def check_policy(password: str) -> None:
    """Refuse a password too short to resist guessing, or absurdly long.

    :raises PasswordPolicyError: saying what is wrong.
    """
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError(f"password too short: at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError(f"password too long: at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    """Return ``scrypt$N$r$p$salt$hash`` (salt and hash in unpadded base64).

    :raises PasswordPolicyError: when the password breaks the policy.
    """
    check_policy(password)
    salt = os.urandom(_SALT_BYTES)
    key = _derive(password, salt, _N, _R, _P)
    return "$".join((_SCHEME, str(_N), str(_R), str(_P), _b64(salt), _b64(key)))


def check_password(password: str, stored: str) -> bool:
    """Return True when ``password`` matches the ``stored`` hash (constant-time compare).

    A malformed hash never matches; it does not raise, so a login answer
    cannot tell a broken record from a wrong password.
    """
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != _SCHEME or len(password) > MAX_LENGTH:
            return False
        expected = _unb64(key)
        actual = _derive(password, _unb64(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def needs_rehash(stored: str) -> bool:
    """True when ``stored`` was made with weaker parameters than today's."""
    parts = stored.split("$")
    try:
        return parts[0] != _SCHEME or int(parts[1]) < _N or int(parts[2]) < _R or int(parts[3]) < _P
    except (IndexError, ValueError):
        return True


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
