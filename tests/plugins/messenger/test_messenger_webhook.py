"""Webhook tests over real loopback HTTP, the sub-app mounted as the core mounts it."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from carebridge_meta import sign, signed_body
from tests.plugins.conftest import BlackHole
from tests.plugins.messenger.conftest import (
    APP_SECRET,
    MAX_BODY,
    PAGE_ID,
    VERIFY_TOKEN,
    Core,
    fixture_bytes,
)

URL = "/webhooks/messenger"


async def _post(client: TestClient, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with client.post(URL, data=body, headers=headers or {}) as resp:
        return resp.status, await resp.json()


def _signed(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, APP_SECRET)}


async def test_verification_echoes_the_challenge_verbatim(webhook: TestClient) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    for path in (URL, URL + "/"):
        async with webhook.get(path, params=params) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/plain"
            assert await resp.text() == "1158201444"


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN},
        {},
    ],
)
async def test_verification_refuses_anything_else(webhook: TestClient, params: dict[str, str]) -> None:
    async with webhook.get(URL, params=params) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "verification_failed"


async def test_signed_text_message_is_delivered_once_and_acknowledged(
    webhook: TestClient, core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    body = fixture_bytes("messenger-text-message.json")
    assert _signed(body)["X-Hub-Signature-256"] == (
        "sha256=ed6e78e3b7e27165505a721871a9f4e5807f202705249dd98e6803bf6f9f75d3"
    )
    with caplog.at_level(logging.DEBUG):
        status, answer = await _post(webhook, body, _signed(body))
    assert "anyone there" not in caplog.text and "2000000000000001" not in caplog.text
    assert (status, answer) == (200, {"status": "ok"})
    (batch,) = core.deliveries
    (msg,) = batch
    assert msg.text == "Hello, is anyone there? Café opens at 9?"
    assert msg.external_id == "m_TESTmid0001AAAAbbbbCCCCddddEEEEffff"


async def test_replayed_mid_is_passed_with_the_same_external_id(webhook: TestClient, core: Core) -> None:
    # Dropping duplicates is the core's job; the plugin must hand the same mid both times.
    body = fixture_bytes("messenger-text-message.json")
    for _ in range(2):
        status, _answer = await _post(webhook, body, _signed(body))
        assert status == 200
    assert [m.external_id for m in core.messages] == ["m_TESTmid0001AAAAbbbbCCCCddddEEEEffff"] * 2


async def test_escaped_non_ascii_body_is_verified_over_the_raw_bytes(webhook: TestClient, core: Core) -> None:
    # PROTOCOLS §0.2 test vector: Meta signs the escaped form.
    payload = {
        "object": "page",
        "entry": [
            {
                "id": PAGE_ID,
                "time": 1,
                "messaging": [
                    {
                        "sender": {"id": "2000000000000001"},
                        "recipient": {"id": PAGE_ID},
                        "timestamp": 1,
                        "message": {"mid": "m_cafe", "text": "caf\u00e9"},
                    }
                ],
            }
        ],
    }
    body, headers = signed_body(payload, APP_SECRET)
    assert b"caf\\u00e9" in body
    assert sign(b'{"text":"caf\\u00e9"}', "test-app-secret") == (
        "sha256=03a188fdd88ca2b5e9096727c5129f9be1065ab33f39bedda391f3161a305c1f"
    )
    status, _answer = await _post(webhook, body, headers)
    assert status == 200
    assert core.messages[0].text == "café"
    # The same content re-serialised as UTF-8 is different bytes: that signature must not pass it.
    utf8 = json.dumps(payload, ensure_ascii=False).encode()
    status, answer = await _post(webhook, utf8, {"X-Hub-Signature-256": headers["X-Hub-Signature-256"]})
    assert status == 403 and answer["error"]["code"] == "signature_invalid"
    assert len(core.messages) == 1


async def test_missing_signature_is_401_and_nothing_is_delivered(webhook: TestClient, core: Core) -> None:
    body = fixture_bytes("messenger-text-message.json")
    status, answer = await _post(webhook, body, {"Content-Type": "application/json"})
    assert status == 401 and answer["error"]["code"] == "signature_missing"
    assert core.deliveries == [] and core.status_batches == []


async def test_wrong_signature_is_403_and_nothing_is_delivered(webhook: TestClient, core: Core) -> None:
    body = fixture_bytes("messenger-text-message.json")
    for header in (sign(body, "another-secret"), "sha1=" + "0" * 40, sign(body + b" ", APP_SECRET)):
        status, answer = await _post(webhook, body, {"X-Hub-Signature-256": header})
        assert status == 403 and answer["error"]["code"] == "signature_invalid"
    assert core.deliveries == [] and core.status_batches == []


async def test_malformed_json_is_400(webhook: TestClient, core: Core) -> None:
    for body in (b'{"object": "page", "entry": [', b"[1, 2]"):
        status, answer = await _post(webhook, body, _signed(body))
        assert status == 400 and answer["error"]["code"] == "malformed_json"
    body = json.dumps({"object": "page", "entry": "nope"}).encode()
    status, answer = await _post(webhook, body, _signed(body))
    assert status == 400 and answer["error"]["code"] == "malformed_payload"
    assert core.deliveries == []


async def test_oversize_body_is_413_and_nothing_is_delivered(webhook: TestClient, core: Core) -> None:
    payload = json.loads(fixture_bytes("messenger-text-message.json"))
    payload["entry"][0]["messaging"][0]["message"]["text"] = "x" * (MAX_BODY + 1)
    body, headers = signed_body(payload, APP_SECRET)
    status, answer = await _post(webhook, body, headers)
    assert status == 413 and answer["error"]["code"] == "body_too_large"
    assert core.deliveries == []


async def test_batched_post_is_delivered_in_one_call(webhook: TestClient, core: Core) -> None:
    def item(n: int) -> dict[str, Any]:
        return {
            "sender": {"id": f"20000000000000{n:02d}"},
            "recipient": {"id": PAGE_ID},
            "timestamp": 1735689700000 + n,
            "message": {"mid": f"m_batch{n}", "text": f"message {n}"},
        }

    payload = {
        "object": "page",
        "entry": [
            {"id": PAGE_ID, "time": 1735689701000, "messaging": [item(1), item(2)]},
            {"id": PAGE_ID, "time": 1735689702000, "messaging": [item(3), item(4)]},
        ],
    }
    body, headers = signed_body(payload, APP_SECRET)
    status, _answer = await _post(webhook, body, headers)
    assert status == 200
    assert len(core.deliveries) == 1
    assert [m.external_id for m in core.deliveries[0]] == ["m_batch1", "m_batch2", "m_batch3", "m_batch4"]


async def test_mixed_fixture_hands_messages_and_statuses_over(webhook: TestClient, core: Core) -> None:
    body = fixture_bytes("messenger-batched-mixed-events.json")
    status, _answer = await _post(webhook, body, _signed(body))
    assert status == 200
    assert len(core.deliveries) == 1 and len(core.deliveries[0]) == 3
    assert len(core.status_batches) == 1
    assert [s.status for s in core.statuses] == ["delivered", "delivered", "read"]


async def test_deliver_failure_is_500_so_that_meta_retries(webhook: TestClient, core: Core) -> None:
    core.fail_deliver = RuntimeError("store unavailable")
    body = fixture_bytes("messenger-text-message.json")
    status, answer = await _post(webhook, body, _signed(body))
    assert status == 500 and answer["error"]["code"] == "store_failed"
    assert core.status_batches == []


async def test_other_objects_are_acknowledged_and_dropped(webhook: TestClient, core: Core) -> None:
    body = json.dumps({"object": "instagram", "entry": [{"id": "1", "messaging": []}]}).encode()
    status, answer = await _post(webhook, body, _signed(body))
    assert (status, answer) == (200, {"status": "ignored"})
    assert core.deliveries == []


async def test_unknown_kinds_are_logged_by_kind_never_by_text(
    webhook: TestClient, core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    payload = {
        "object": "page",
        "entry": [
            {
                "id": PAGE_ID,
                "time": 1,
                "messaging": [
                    {
                        "sender": {"id": "2000000000000001"},
                        "recipient": {"id": PAGE_ID},
                        "timestamp": 1,
                        "message_edit": {"mid": "m_e", "text": "my secret pin 4321", "num_edit": 1},
                    },
                ],
            }
        ],
    }
    body, headers = signed_body(payload, APP_SECRET)
    with caplog.at_level(logging.DEBUG, logger="carebridge.messenger"):
        status, answer = await _post(webhook, body, headers)
    assert (status, answer) == (200, {"status": "ok"})
    assert "ignored Messenger events: message_edit x1" in caplog.text
    assert "4321" not in caplog.text
    assert core.deliveries == []


async def test_oversize_chunked_body_without_length_is_413(webhook: TestClient, core: Core) -> None:
    payload = json.loads(fixture_bytes("messenger-text-message.json"))
    payload["entry"][0]["messaging"][0]["message"]["text"] = "x" * (MAX_BODY + 1)
    body, headers = signed_body(payload, APP_SECRET)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    async with webhook.post(URL, data=chunks(), headers=headers) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "body_too_large"
    assert core.deliveries == []


async def test_answered_without_any_call_to_the_platform(
    section: dict[str, Any], make_channel: Any, aiohttp_client: Any, core: Core, black_hole: BlackHole
) -> None:
    channel = make_channel({**section, "graph_url": black_hole.url})
    root = web.Application(client_max_size=MAX_BODY)
    root.add_subapp(URL, channel.web_app())
    client: TestClient = await aiohttp_client(root)
    body = fixture_bytes("messenger-text-message.json")
    assert (await _post(client, body, _signed(body)))[0] == 200
    assert len(core.messages) == 1 and black_hole.connections == 0
