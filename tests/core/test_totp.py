"""TOTP: RFC 6238 vectors, the ±1 step window, input normalisation, enrolment URI."""

from __future__ import annotations

import base64
import hashlib
import urllib.parse

import pyotp
import pytest

from bridge import totp

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


@pytest.mark.parametrize(("raw", "expected"), [("123456", "123456"), (" 123 456 ", "123456"), ("12345", None), ("1234567", None), ("12345a", None), ("١٢٣٤٥٦", None), ("", None)])
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
