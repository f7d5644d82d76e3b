"""WhatsApp's address rule: E.164 numbers written ``+<digits>``."""

from __future__ import annotations

import pytest

from carebridge_whatsapp.address import normalize_e164
from carebridge_whatsapp.webhook import address_from_wa_id


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("+15551234567", "+15551234567"),
        ("15551234567", "+15551234567"),
        ("+1 (555) 123-4567", "+15551234567"),
        ("+31.6.1234.5678", "+31612345678"),
        ("1234567", "+1234567"),
        ("123456789012345", "+123456789012345"),
    ],
)
def test_numbers_normalise_to_plus_and_digits(raw: str, normal: str) -> None:
    assert normalize_e164(raw) == normal


@pytest.mark.parametrize(
    "raw",
    ["", "+", "ann@example.org", "+0155512345", "123456", "1234567890123456", "++15551234567", "+1555123456x"],
)
def test_anything_else_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="not an E.164 phone number"):
        normalize_e164(raw)


def test_a_wa_id_that_is_no_number_is_kept_as_it_is() -> None:
    assert address_from_wa_id("15550002222") == "+15550002222"
    assert address_from_wa_id("ann.example") == "ann.example"
