"""Reply tokens against the real store: unguessable, bound to conversation and recipient, kept across restarts.

A token is what lets a mail act for an agent without a trusted
``Authentication-Results``, so every way of making one up must fail:
flipping a character, cutting it short, moving it to another
conversation or recipient, and guessing (10,000 random tries).
"""

from __future__ import annotations

import random
import sqlite3
import string
from pathlib import Path

from bridge.app.bridge import Bridge
from bridge.relay import reply_tokens
from bridge.relay.reply_tokens import MAC_CHARS, TokenClaim
from bridge.store import Tx
from tests.e2e.harness import make_bridge


async def issue(bridge: Bridge, conversation: int | None, kind: reply_tokens.RecipientKind, recipient: int) -> str:
    return await bridge.store.write(lambda tx: reply_tokens.issue(tx, conversation, kind, recipient))


async def verify(bridge: Bridge, token: str) -> TokenClaim | None:
    return await bridge.store.write(lambda tx: reply_tokens.verify(tx, token))


async def verify_all(bridge: Bridge, tokens: list[str]) -> list[TokenClaim | None]:
    def check(tx: Tx) -> list[TokenClaim | None]:
        return [reply_tokens.verify(tx, t) for t in tokens]

    return await bridge.store.write(check)


def test_a_token_carries_at_least_80_bits_of_mac() -> None:
    assert MAC_CHARS * 5 >= 80


async def test_issued_tokens_verify_and_say_what_they_were_issued_for(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path)
    try:
        agent = await issue(bridge, 42, "agent", 3)
        customer = await issue(bridge, 42, "contact", 3)
        notice = await issue(bridge, None, "agent", 3)
        assert len({agent, customer, notice}) == 3
        assert await verify(bridge, agent) == TokenClaim(42, "agent", 3)
        assert await verify(bridge, customer) == TokenClaim(42, "contact", 3)
        assert await verify(bridge, notice) == TokenClaim(None, "agent", 3)
        assert await verify(bridge, agent.upper()) == TokenClaim(42, "agent", 3), "mail systems may fold the case"
        assert (await verify(bridge, agent)).is_agent(3) and not (await verify(bridge, agent)).is_agent(4)  # type: ignore[union-attr]
    finally:
        await bridge.close()


async def test_tampered_truncated_or_reused_tokens_are_refused(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path)
    try:
        token = await issue(bridge, 42, "agent", 3)
        head, mac = token.split("-")
        alphabet = "abcdefghijklmnopqrstuvwxyz234567"
        flipped = [
            token[:i] + next(c for c in alphabet if c != token[i]) + token[i + 1 :]
            for i in range(len(token))
            if token[i] in alphabet and i > len(head)
        ]
        forged = [
            *flipped,
            token[:-1],  # truncated
            token[: len(head) + 11],  # cut to 50 bits
            token + "a",
            f"43a3-{mac}",  # another conversation
            f"42a4-{mac}",  # another agent
            f"42u3-{mac}",  # the customer of the same number
            f"042a3-{mac}",  # the same numbers, written differently
            "c42",  # the old guessable form
            "",
            f"42a3-{mac}-{mac}",
        ]
        assert len(flipped) == MAC_CHARS
        assert await verify_all(bridge, forged) == [None] * len(forged)
        assert await verify(bridge, token) is not None
    finally:
        await bridge.close()


async def test_ten_thousand_random_tokens_all_fail(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path)
    rng = random.Random(80)
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    try:
        await issue(bridge, 1, "agent", 1)  # the key exists
        guesses = [
            f"{rng.randint(0, 500)}{rng.choice('au')}{rng.randint(1, 50)}-{''.join(rng.choices(alphabet, k=MAC_CHARS))}"
            for _ in range(10_000)
        ]
        noise = [
            "".join(rng.choices(string.ascii_letters + string.digits + "-._", k=rng.randint(1, 64))) for _ in range(500)
        ]
        results = await verify_all(bridge, guesses + noise)
        assert results.count(None) == len(results)
    finally:
        await bridge.close()


async def test_the_key_is_made_once_kept_sealed_and_survives_a_restart(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path)
    try:
        token = await issue(bridge, 7, "contact", 2)
        key = await bridge.store.write(lambda tx: tx.secrets.get_or_create(reply_tokens.KEY_NAME))
    finally:
        await bridge.close()
    bridge = await make_bridge(tmp_path)
    try:
        assert await verify(bridge, token) == TokenClaim(7, "contact", 2)
        assert await issue(bridge, 7, "contact", 2) == token
    finally:
        await bridge.close()
    with sqlite3.connect(tmp_path / "var" / "carebridge.db") as conn:
        (stored,) = conn.execute("SELECT value FROM meta WHERE name = 'secret:reply_token_key'").fetchone()
    assert len(key) == 32 and key not in stored, "the key is kept sealed under the system key"
