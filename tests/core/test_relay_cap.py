"""``cap_for_relay``: a relayed text becomes at most N platform messages, with a note where it was cut."""

from __future__ import annotations

import random

import pytest

from bridge.parts import split_text
from bridge.relay.format import cap_for_relay


def test_a_2mb_text_becomes_at_most_four_whatsapp_messages_ending_with_the_note() -> None:
    text = "[#42 Jan · WhatsApp] " + "lorem ipsum " * 175_000  # about 2 MB
    capped = cap_for_relay(text, 4096, 4)
    parts = split_text(capped, 4096)
    assert len(parts) <= 4
    assert capped.startswith("[#42 Jan · WhatsApp] lorem ipsum")
    omitted = len(text) - len(capped.rsplit("\n[…", 1)[0])
    assert capped.endswith(f"[… {omitted} more characters: the full message is in the Carebridge console]")


@pytest.mark.parametrize(("limit", "parts"), [(None, 4), (4096, 4), (2000, 1)])
def test_what_fits_is_left_alone(limit: int | None, parts: int) -> None:
    text = "short enough " * 100
    assert cap_for_relay(text, limit, parts) == text
    assert cap_for_relay("x" * 10_000, None, 1) == "x" * 10_000, "email and the console have no limit"


def test_any_text_fits_the_budget_after_capping() -> None:
    rng = random.Random(4)
    for _ in range(500):
        limit, most = rng.randint(80, 400), rng.randint(1, 5)
        text = "".join(rng.choice("ab \n") for _ in range(rng.randint(0, 4000)))
        capped = cap_for_relay(text, limit, most)
        assert len(split_text(capped, limit)) <= most
        assert capped == text or "full message is in the Carebridge console" in capped
