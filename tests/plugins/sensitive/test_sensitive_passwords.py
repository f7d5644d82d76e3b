"""Passwords: the value after the keyword, never the keyword itself."""

from __future__ import annotations

import pytest

from tests.plugins.sensitive.spans import found


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("password: hunter2", "hunter2"),
        ("Password = Tr0ub4dor&3", "Tr0ub4dor&3"),
        ("PASSWORD:correcthorse", "correcthorse"),
        ("new password:\nhunter", "hunter"),
        ("passwd s3cr3t", "s3cr3t"),
        ("passwd: letmein", "letmein"),
        ("pw: abc, thanks", "abc"),
        ("pwd=Sommer!", "Sommer!"),
        ("wachtwoord: geheim", "geheim"),
        ("Mijn wachtwoord is Welkom01!", "Welkom01!"),
        ("mijn wachtwoord is zomerZon", "zomerZon"),
        ("Het wachtwoord was: x9y8", "x9y8"),
        ("my password is hunter2.", "hunter2."),
        ('wachtwoord: "paard batterij nietje"', "paard batterij nietje"),
        ("password is 'correct horse'", "correct horse"),
        ("password: “met spaties”", "met spaties"),
    ],
)
def test_password_value_found(text: str, value: str) -> None:
    assert found(text) == [("password", value)]


@pytest.mark.parametrize(
    "text",
    [
        "I forgot my password",
        "password reset please",
        "my password is wrong",
        "my password is not working",
        "wachtwoord is verlopen.",
        "wachtwoord is geblokkeerd",
        "Wachtwoord vergeten?",
        "Password:\n\nDear support,",  # nothing after the keyword but a blank line
        "passport: NXC123456",  # not a password keyword
        "pwned",
        "the word passwordless",
    ],
)
def test_password_not_found(text: str) -> None:
    assert found(text) == []
