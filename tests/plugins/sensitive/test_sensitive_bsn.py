"""BSN: eight or nine digits passing the eleven-test, only when a BSN keyword is near."""

from __future__ import annotations

import pytest
from stdnum.nl import bsn

from tests.plugins.sensitive.spans import found


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("BSN: 123456782", "123456782"),
        ("bsn 111222333", "111222333"),
        ("Mijn BSN is 999999990.", "999999990"),
        ("BSN-nummer: 12345672", "12345672"),
        ("burgerservicenummer 1234.56.782", "1234.56.782"),
        ("Burgerservicenummer (BSN): 123 456 782", "123 456 782"),
        ("mijn sofinummer is 123-456-782", "123-456-782"),
        ("sofi-nummer 123456782", "123456782"),
        ("citizen service number: 123456782", "123456782"),
        ("Citizen Service Number of my son is 111222333", "111222333"),
        ("bsn van mijn zoon: 123456782", "123456782"),
        ("123456782 is mijn BSN", "123456782"),
        ("123456782 (BSN)", "123456782"),
    ],
)
def test_bsn_found_near_a_keyword(text: str, number: str) -> None:
    assert bsn.is_valid(number.replace(".", "").replace(" ", "").replace("-", ""))
    assert found(text) == [("bsn", number)]


@pytest.mark.parametrize(
    "text",
    [
        "123456782",  # valid, but no keyword
        "order 123456782",
        "klantnummer 111222333",
        "BSN 123456789",  # fails the eleven-test
        "BSN: 1234567",  # too short
        "BSN 1234567820",  # too long
        "BSN heb ik nu even niet bij de hand, bel 123456782",  # keyword too far away
        "BSN: 123456782 1234",  # part of a longer spaced number
    ],
)
def test_bsn_not_found(text: str) -> None:
    assert [f for f in found(text) if f[0] == "bsn"] == []
