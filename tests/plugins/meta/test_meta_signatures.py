"""``X-Hub-Signature-256``: signing, the constant-time check, and the answers to refused POSTs."""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from carebridge_meta import SIGNATURE_HEADER, sign, signature_ok, signed_body
from tests.plugins.meta.conftest import APP_SECRET, MAX_BODY, Client, MakeClient

# PROTOCOLS §0.2 test vectors (secret test-app-secret): Meta signs the escaped form.
ESCAPED = b'{"text":"caf\\u00e9"}'
ESCAPED_SIGNATURE = "sha256=03a188fdd88ca2b5e9096727c5129f9be1065ab33f39bedda391f3161a305c1f"
UTF8 = '{"text":"café"}'.encode()
UTF8_SIGNATURE = "sha256=0fa954d7ce127c0274623db3e729f781cc9ac98e7895afa78a14f8d5a5a762a1"


def test_sign_matches_the_protocol_vectors() -> None:
    assert SIGNATURE_HEADER == "X-Hub-Signature-256"
    assert sign(ESCAPED, APP_SECRET) == ESCAPED_SIGNATURE
    assert sign(UTF8, APP_SECRET) == UTF8_SIGNATURE


def test_signature_ok_accepts_only_the_signature_of_these_bytes() -> None:
    assert signature_ok(ESCAPED, ESCAPED_SIGNATURE, APP_SECRET)
    assert signature_ok(ESCAPED, f" {ESCAPED_SIGNATURE}\t", APP_SECRET), "header whitespace is not part of it"
    assert not signature_ok(UTF8, ESCAPED_SIGNATURE, APP_SECRET), "the decoded form is different bytes"
    assert not signature_ok(ESCAPED, ESCAPED_SIGNATURE, "another-secret")
    assert not signature_ok(ESCAPED, ESCAPED_SIGNATURE.removeprefix("sha256="), APP_SECRET)
    assert not signature_ok(ESCAPED, "sha1=" + "0" * 40, APP_SECRET), "the legacy SHA-1 header is not accepted"
    assert not signature_ok(ESCAPED, None, APP_SECRET)
    assert not signature_ok(ESCAPED, "", APP_SECRET)


def test_an_empty_app_secret_never_matches() -> None:
    # A channel configured without a secret must fail closed, even against the empty-key HMAC.
    assert not signature_ok(ESCAPED, sign(ESCAPED, ""), "")


def test_the_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    wrong = ESCAPED_SIGNATURE[:-1] + "0"
    assert signature_ok(ESCAPED, ESCAPED_SIGNATURE, APP_SECRET)
    assert not signature_ok(ESCAPED, wrong, APP_SECRET)
    assert compared == [
        (ESCAPED_SIGNATURE.encode(), ESCAPED_SIGNATURE.encode()),
        (ESCAPED_SIGNATURE.encode(), wrong.encode()),
    ], "every verdict comes from hmac.compare_digest over the whole value"


def test_signed_body_serialises_as_meta_does_and_verifies() -> None:
    body, headers = signed_body({"text": "café"}, APP_SECRET)
    assert body == b'{"text": "caf\\u00e9"}'
    assert headers == {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, APP_SECRET)}
    assert signature_ok(body, headers[SIGNATURE_HEADER], APP_SECRET)


async def _post(client: Client, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with client.post("/", data=body, headers=headers) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


def _code(answer: dict[str, Any]) -> str:
    return str(answer["error"]["code"])


async def test_a_signed_object_is_parsed_from_the_raw_bytes(client: Client) -> None:
    status, answer = await _post(client, ESCAPED, {SIGNATURE_HEADER: ESCAPED_SIGNATURE})
    assert (status, answer) == (200, {"received": {"text": "café"}})


async def test_a_missing_signature_is_401(client: Client) -> None:
    status, answer = await _post(client, ESCAPED, {"Content-Type": "application/json"})
    assert (status, _code(answer)) == (401, "signature_missing")


async def test_a_wrong_signature_is_403(client: Client) -> None:
    for header in (sign(ESCAPED, "another-secret"), UTF8_SIGNATURE, "sha256=nothex"):
        status, answer = await _post(client, ESCAPED, {SIGNATURE_HEADER: header})
        assert (status, _code(answer)) == (403, "signature_invalid")


async def test_a_channel_without_app_secret_refuses_every_post(make_client: MakeClient) -> None:
    client = await make_client(app_secret="")
    status, answer = await _post(client, ESCAPED, {SIGNATURE_HEADER: sign(ESCAPED, "")})
    assert (status, _code(answer)) == (403, "signature_invalid")


@pytest.mark.parametrize("body", [b'{"object": "page", "entry": [', b"[1, 2]", b'"text"', b"\xff\xfe"])
async def test_signed_but_malformed_or_not_an_object_is_400(client: Client, body: bytes) -> None:
    status, answer = await _post(client, body, {SIGNATURE_HEADER: sign(body, APP_SECRET)})
    assert (status, _code(answer)) == (400, "malformed_json")


async def test_a_declared_oversize_body_is_413(client: Client) -> None:
    body, headers = signed_body({"text": "x" * MAX_BODY}, APP_SECRET)
    status, answer = await _post(client, body, headers)
    assert (status, _code(answer)) == (413, "body_too_large")
    assert str(MAX_BODY) in answer["error"]["message"]


async def test_an_oversize_chunked_body_is_413(client: Client) -> None:
    body, headers = signed_body({"text": "x" * MAX_BODY}, APP_SECRET)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1024):
            yield body[start : start + 1024]

    status, answer = await _post(client, chunks(), headers)
    assert (status, _code(answer)) == (413, "body_too_large")


async def test_the_size_is_checked_before_the_signature(client: Client) -> None:
    body = json.dumps({"text": "x" * MAX_BODY}).encode()
    status, answer = await _post(client, body, {})
    assert (status, _code(answer)) == (413, "body_too_large")
