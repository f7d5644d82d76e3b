"""Everyday numbers in customer messages that no detector may touch."""

from __future__ import annotations

import time

import pytest

from carebridge_sensitive.scan import detect
from tests.plugins.sensitive.spans import found

MUST_NOT_MATCH = {
    "E.164 phone number": "Bel me op +31612345678",
    "E.164 phone number, spaced": "Call +31 6 1234 5678 or +44 20 7946 0958",
    "E.164 phone number, 13 digits": "mobile +4915123456789",
    "national phone number": "mijn nummer is 0612345678",
    "phone number with a dash": "06-12345678",
    "order number": "order 123456789",
    "order number with hash": "about order #20240518001",
    "bestelling": "bestelling 20240518",
    "date ISO": "geleverd op 2024-05-18",
    "date Dutch": "geleverd op 18-05-2024",
    "date with slashes": "on 18/05/2024",
    "date with dots": "op 18.05.2024",
    "time": "om 14:30 of 09:15:30",
    "amount in euro": "totaal € 1.234,56",
    "amount in dollars": "charged $1234.00",
    "amount with currency after": "1234 EUR",
    "large amount": "€ 1.234.567,89",
    "Dutch postcode": "1234 AB Amsterdam",
    "UK postcode": "London SW1A 1AA",
    "UPS tracking number": "1Z999AA10123456784",
    "PostNL tracking number": "3SABC123456789",
    "DHL tracking number": "JVGL0612345678901234",
    "year": "sinds begin van het jaar, in 2024",
    "house number": "Kerkstraat 1234",
    "ISBN-13": "ISBN 978-0-306-40615-7",
    "ISBN-13 plain": "ISBN 9780306406157",
    "ISBN-10": "ISBN 0-306-40615-2",
    "invoice number": "invoice 12345678",
    "factuurnummer": "factuurnummer 20240518",
    "nine digits without a BSN word": "klantnummer 123456782",
    "IBAN with a wrong checksum": "NL91ABNA0417164301",
    "card failing Luhn": "4111 1111 1111 1112",
    "card with no issuer": "1234 5678 1234 5670",
    "zip code": "zip code 90210",
    "percentage": "korting 1234%",
    "version": "version 10.15.7",
    "plain prose": "Goedemiddag, mijn pakket is nog steeds niet aangekomen.",
    "empty": "",
}


@pytest.mark.parametrize("text", MUST_NOT_MATCH.values(), ids=MUST_NOT_MATCH.keys())
def test_nothing_found(text: str) -> None:
    assert found(text) == []


def test_every_kind_in_one_message_sorted_by_start() -> None:
    text = (
        "Hoi! BSN 123456782, rekening NL91 ABNA 0417 1643 00, kaart 4111-1111-1111-1111, "
        "code 482913 en wachtwoord: Zomer2024! Bestelling 20240518 van 18-05-2024."
    )
    assert found(text) == [
        ("bsn", "123456782"),
        ("iban", "NL91 ABNA 0417 1643 00"),
        ("card", "4111-1111-1111-1111"),
        ("code", "482913"),
        ("password", "Zomer2024!"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "1 " * 20000,
        "4111 " * 10000,
        "code " + "a " * 20000 + "1234",
        "bsn " * 10000 + "123456782",
        "password: " * 10000,
        "NL91" * 10000,
        ("Lorem ipsum 12 dolor, code wachtwoord pin 2024 order 123456. " * 1000),
    ],
    ids=["digits", "groups", "long-gap", "keywords", "password-keywords", "iban-starts", "prose"],
)
def test_large_hostile_texts_stay_fast(text: str) -> None:
    started = time.perf_counter()
    detect(text)
    assert time.perf_counter() - started < 2.0
