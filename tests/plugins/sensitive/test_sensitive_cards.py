"""Card numbers: Luhn (stdnum) and an issuer's prefix and length, plain or grouped."""

from __future__ import annotations

import pytest

from carebridge_sensitive.cards import is_card_number, issuer_of
from tests.plugins.sensitive.spans import found

# The networks' and payment providers' published test numbers.
VALID = [
    ("4111111111111111", "Visa"),
    ("4012888888881881", "Visa"),
    ("4242424242424242", "Visa"),
    ("4222222222222", "Visa"),
    ("4000000000000000006", "Visa"),
    ("5555555555554444", "Mastercard"),
    ("5105105105105100", "Mastercard"),
    ("2223003122003222", "Mastercard"),
    ("2720990000000007", "Mastercard"),
    ("378282246310005", "American Express"),
    ("371449635398431", "American Express"),
    ("6011111111111117", "Discover"),
    ("6011000990139424", "Discover"),
    ("30569309025904", "Diners Club"),
    ("38520000023237", "Diners Club"),
    ("36227206271667", "Diners Club"),
    ("3530111333300000", "JCB"),
    ("3566002020360505", "JCB"),
    ("6759649826438453", "Maestro"),
    ("6304000000000000", "Maestro"),
    ("501800000009", "Maestro"),
    ("6200000000000005", "UnionPay"),
    ("6205500000000000004", "UnionPay"),
]


@pytest.mark.parametrize(("number", "issuer"), VALID)
def test_card_found_plain(number: str, issuer: str) -> None:
    assert issuer_of(number) == issuer
    assert found(f"Mijn kaart is {number}.") == [("card", number)]


@pytest.mark.parametrize(
    "printed",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5555 5555 5555 4444",
        "3782 822463 10005",
        "3056 930902 5904",
        "6205 5000 0000 0000 004",
    ],
)
def test_card_found_grouped(printed: str) -> None:
    assert found(f"card: {printed} exp 12/27") == [("card", printed)]


def test_card_found_before_its_security_code() -> None:
    text = "4111 1111 1111 1111 123"
    assert found(text) == [("card", "4111 1111 1111 1111")]


def test_two_cards_in_one_run_are_two_findings() -> None:
    text = "5555555555554444 5105105105105100"
    assert found(text) == [("card", "5555555555554444"), ("card", "5105105105105100")]


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("4111111111111112", "fails Luhn"),
        ("5555555555554445", "fails Luhn"),
        ("1234567812345670", "Luhn-valid, no issuer starts with 1"),
        ("9999999999999995", "Luhn-valid, no issuer starts with 9"),
        ("411111111111116", "Luhn-valid Visa prefix, but Visa has no 15-digit cards"),
        ("55555555555555552", "Luhn-valid Mastercard prefix, but 17 digits"),
        ("2721000000000004", "Luhn-valid, just past the Mastercard 2-series"),
        ("41111111111111111111", "20 digits"),
    ],
)
def test_card_not_found(number: str, why: str) -> None:
    assert not is_card_number(number), why
    assert found(f"nummer {number}") == [], why


@pytest.mark.parametrize(
    "text",
    [
        "+4111111111111111",  # after a plus sign: a phone number
        "JVGL4111111111111111",  # inside a tracking number
        "4111111111111111AB",
        "12,4111111111111111",  # the decimals of an amount
        "41 11 11 11 11 11 11 11",  # pairs are not how cards are printed
    ],
)
def test_card_not_found_inside_other_things(text: str) -> None:
    assert found(text) == []
