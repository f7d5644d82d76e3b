"""Console password hashing: scrypt, salted, constant-time check."""

from __future__ import annotations

import pytest

from bridge.agents import passwords
from bridge.agents.passwords import (
    PasswordPolicyError,
    check_password,
    hash_password,
    needs_rehash,
)


def test_hash_then_check_accepts_only_the_same_password() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("scrypt$32768$8$1$")
    assert "correct horse" not in stored
    assert check_password("correct horse battery", stored)
    assert not check_password("correct horse batterY", stored)
    assert not check_password("", stored)


def test_each_hash_has_its_own_salt() -> None:
    first, second = hash_password("same password"), hash_password("same password")
    assert first != second
    assert first.split("$")[4] != second.split("$")[4]
    assert check_password("same password", first) and check_password("same password", second)


@pytest.mark.parametrize(
    "stored", ["", "scrypt$1$2", "bcrypt$16384$8$1$AAAA$BBBB", "scrypt$x$8$1$AAAA$BBBB", "scrypt$16384$8$1$!!$BBBB"]
)
def test_malformed_hash_never_matches_and_never_raises(stored: str) -> None:
    assert check_password("whatever123", stored) is False


def test_policy_refuses_short_and_huge_passwords() -> None:
    with pytest.raises(PasswordPolicyError, match="at least 8"):
        hash_password("short")
    with pytest.raises(PasswordPolicyError, match="too long"):
        hash_password("x" * (passwords.MAX_LENGTH + 1))
    assert not check_password("x" * (passwords.MAX_LENGTH + 1), hash_password("x" * 8))


def test_needs_rehash_flags_weaker_parameters() -> None:
    assert not needs_rehash(hash_password("a fine password"))
    weaker = hash_password("a fine password").replace("scrypt$32768$", "scrypt$16384$", 1)
    assert needs_rehash(weaker)
    assert needs_rehash("garbage")
