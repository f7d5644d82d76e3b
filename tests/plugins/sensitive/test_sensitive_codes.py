"""One-time and login codes: 4–8 digits named by a keyword, English and Dutch."""

from __future__ import annotations

import pytest

from tests.plugins.sensitive.spans import found


@pytest.mark.parametrize(
    ("text", "code"),
    [
        # English, keyword before
        ("Your verification code is 123456", "123456"),
        ("Use code 4821 to log in", "4821"),
        ("OTP: 739201", "739201"),
        ("otp=1234", "1234"),
        ("My PIN is 1234", "1234"),
        ("2FA code: 123 456", "123 456"),
        ("security code 123-456", "123-456"),
        ("login code 55667788", "55667788"),
        ("CODE:4321", "4321"),
        ("the code they sent me is 246810", "246810"),
        ("passcode\n8642", "8642"),
        ("your code for the order: 5555", "5555"),
        # English, keyword after
        ("482913 is your Instagram code", "482913"),
        ("G-482913 is your Google verification code.", "482913"),
        # Dutch, keyword before
        ("Je verificatiecode is 123456", "123456"),
        ("Uw inlogcode voor MijnBank is 482913.", "482913"),
        ("pincode: 9876", "9876"),
        ("toegangscode 2468", "2468"),
        ("beveiligingscode = 13579", "13579"),
        ("bevestigingscode: 1234 5678", "1234 5678"),
        ("de code die ik kreeg is 246810", "246810"),
        ("Verificatie: 102938", "102938"),
        # Dutch, keyword after
        ("482913 is je inlogcode", "482913"),
        ("123456 is uw verificatiecode voor DigiD", "123456"),
    ],
)
def test_code_found(text: str, code: str) -> None:
    assert found(text) == [("code", code)]


def test_wachtwoord_names_a_code_and_a_password() -> None:
    text = "wachtwoord: 5678"
    assert found(text) == [("code", "5678"), ("password", "5678")]


@pytest.mark.parametrize(
    "text",
    [
        "123456",  # no keyword
        "Bel me op 06 1234 5678 voor de code",  # a phone number, keyword after but no "is"
        "code 123",  # too short
        "code 123456789",  # too long
        "code 1234 5678 9012",  # part of a longer grouped number
        "de code voor bestelling 20240518",
        "code for order 123456",
        "the code expires in 2024",
        "zip code 90210",
        "postcode: 1234 AB",
        "post-code 1234",
        "error code 4040",
        "tracking code 12345678",
        "kortingscode 2024",
        "discount code 5050",
        "pin 1234 EUR",
        "pin betaling van 1234 euro",
        "PIN 1234%",
        "code 18-05-2024",
        "code 18/05/2024",
        "code om 14:30",
        "code 1.234,56",
        "code +31612345678",
        "code geldig tot 2025",
        "code in het bericht van gisteren niet ontvangen sinds 2023",
        "codes are useless, 2024 was a bad year",
    ],
)
def test_code_not_found(text: str) -> None:
    assert found(text) == []
