"""TOTP: RFC 6238 vectors, the ±1 step window, input normalisation, enrolment URI."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import urllib.parse
from pathlib import Path

import pyotp
import pytest

from bridge.agents import totp
from bridge.store import Store
from tests.core.agentkit import add_agent, open_store

# RFC 6238 Appendix B (PROTOCOLS §4.1): 8 digits, T0 = 0, X = 30 s.
SEEDS = {
    "sha1": ("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", hashlib.sha1),
    "sha256": ("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA====", hashlib.sha256),
    "sha512": (
        "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNA=",
        hashlib.sha512,
    ),
}
VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize(("at", "sha1", "sha256", "sha512"), VECTORS)
def test_rfc6238_vectors(at: int, sha1: str, sha256: str, sha512: str) -> None:
    for name, expected in (("sha1", sha1), ("sha256", sha256), ("sha512", sha512)):
        seed, digest = SEEDS[name]
        assert pyotp.TOTP(seed, digits=8, digest=digest).at(at) == expected, name


def test_rfc6238_six_digit_codes_are_the_last_six_of_the_sha1_vector() -> None:
    seed = SEEDS["sha1"][0]
    for at, sha1, _, _ in VECTORS:
        assert totp.match_timecode(seed, sha1[-6:], at) == at // 30


def test_new_secret_is_160_bits_of_base32() -> None:
    secret = totp.new_secret()
    assert len(secret) == 32
    assert len(base64.b32decode(secret)) == 20
    assert secret != totp.new_secret()


def test_window_accepts_one_step_either_side_only() -> None:
    secret = totp.new_secret()
    code = pyotp.TOTP(secret).at(3000)  # step 100
    assert totp.match_timecode(secret, code, 3000) == 100
    assert totp.match_timecode(secret, code, 3000 - 30) == 100  # clock of the phone ahead
    assert totp.match_timecode(secret, code, 3029 + 30) == 100  # typed late
    assert totp.match_timecode(secret, code, 3000 + 60) is None
    assert totp.match_timecode(secret, code, 3000 - 31) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("123456", "123456"),
        (" 123 456 ", "123456"),
        ("12345", None),
        ("1234567", None),
        ("12345a", None),
        ("١٢٣٤٥٦", None),
        ("", None),
    ],
)
def test_normalize_code_requires_six_ascii_digits(raw: str, expected: str | None) -> None:
    assert totp.normalize_code(raw) == expected


def test_short_secret_is_refused_by_pyotp() -> None:
    with pytest.raises(ValueError, match="112 bits"):
        totp.match_timecode("JBSWY3DPEHPK3PXP", "123456", 59)


def test_provisioning_uri_names_issuer_and_account() -> None:
    secret = totp.new_secret()
    uri = totp.provisioning_uri(secret, account="alice", issuer="Care Desk")
    parsed = urllib.parse.urlparse(uri)
    assert parsed.scheme == "otpauth" and parsed.netloc == "totp"
    assert urllib.parse.unquote(parsed.path) == "/Care Desk:alice"
    query = urllib.parse.parse_qs(parsed.query)
    assert query["secret"] == [secret] and query["issuer"] == ["Care Desk"]


# --- replay protection against the real store --------------------------------------


async def _store_with_agent(tmp_path: Path) -> tuple[Store, int, str]:
    store = await open_store(tmp_path)
    agent, secret = await store.write(lambda tx: add_agent(tx, "alice", "console"))
    return store, agent.id, secret


async def test_a_code_is_accepted_once_per_agent(tmp_path: Path) -> None:
    store, agent_id, secret = await _store_with_agent(tmp_path)
    try:
        code = pyotp.TOTP(secret).at(3000)
        verify = lambda at, c=code: store.write(lambda tx: totp.verify(tx, agent_id, secret, c, at))  # noqa: E731
        assert await verify(3000) is totp.TotpResult.ACCEPTED
        assert await verify(3000) is totp.TotpResult.REPLAYED
        assert await verify(3031) is totp.TotpResult.REPLAYED  # still inside the window
        assert await verify(3000, "12345") is totp.TotpResult.MALFORMED
        assert await verify(3000, f"{(int(code) + 1) % 10**6:06d}") is totp.TotpResult.INVALID
        # The next step's code works; after it, the previous step's code is refused even inside the window.
        assert await verify(3030, pyotp.TOTP(secret).at(3030)) is totp.TotpResult.ACCEPTED
        assert await verify(3030, pyotp.TOTP(secret).at(3000)) is totp.TotpResult.REPLAYED
        rows = await store.read(
            lambda tx: tx._session.conn.execute("SELECT agent_id, counter FROM totp_used").fetchall()
        )
        assert [tuple(r) for r in rows] == [(agent_id, 101)]
    finally:
        await store.close()


async def test_two_concurrent_logins_with_one_code_let_exactly_one_in(tmp_path: Path) -> None:
    store, agent_id, secret = await _store_with_agent(tmp_path)
    try:
        code = pyotp.TOTP(secret).at(6000)
        results = await asyncio.gather(
            *(store.write(lambda tx: totp.verify(tx, agent_id, secret, code, 6000)) for _ in range(4))
        )
        assert sorted(r.value for r in results) == ["accepted", "replayed", "replayed", "replayed"]
    finally:
        await store.close()


async def test_codes_are_tracked_per_agent(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    try:
        (a, secret_a), (b, secret_b) = await store.write(
            lambda tx: (add_agent(tx, "alice", "console"), add_agent(tx, "bob", "messenger:42"))
        )
        at = 9000
        assert (
            await store.write(lambda tx: totp.verify(tx, a.id, secret_a, pyotp.TOTP(secret_a).at(at), at))
            is totp.TotpResult.ACCEPTED
        )
        assert (
            await store.write(lambda tx: totp.verify(tx, b.id, secret_b, pyotp.TOTP(secret_b).at(at), at))
            is totp.TotpResult.ACCEPTED
        )
        # Alice's code is no good for bob (at a step where their codes differ, as almost all do).
        later = next(
            t for t in range(at + 30, at + 3000, 30) if pyotp.TOTP(secret_a).at(t) != pyotp.TOTP(secret_b).at(t)
        )
        wrong = pyotp.TOTP(secret_a).at(later)
        assert await store.write(lambda tx: totp.verify(tx, b.id, secret_b, wrong, later)) is totp.TotpResult.INVALID
    finally:
        await store.close()
