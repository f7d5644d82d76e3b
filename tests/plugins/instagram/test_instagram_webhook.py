"""The Instagram webhook over real loopback HTTP, mounted as the core mounts it.

Authentication is Meta's (``hub.*`` handshake, ``X-Hub-Signature-256`` over
the raw bytes, from ``carebridge_meta``); a refused request stores nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from carebridge_meta import sign, signed_body
from tests.plugins.conftest import BlackHole
from tests.plugins.instagram.conftest import (
    APP_SECRET,
    CUSTOMER,
    IG_USER_ID,
    MAX_BODY,
    VERIFY_TOKEN,
    Client,
    Core,
    fixture_bytes,
)

URL = "/webhooks/instagram"
TEXT_MID = (
    "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMTI0NDI1ODU5OTE3NTI2OTQw"
    "ODg3NjozMjUwMzM2MTczNzg4MTI5NDExMzU3NjQ4OTczNTY4NDA5NgZDZD"
)


async def _post(client: Client, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with client.post(URL, data=body, headers=headers or {}) as resp:
        return resp.status, await resp.json()


def _signed(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, APP_SECRET)}


async def test_verification_echoes_the_challenge_verbatim(webhook: Client) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    for path in (URL, URL + "/"):
        async with webhook.get(path, params=params) as resp:
            assert (resp.status, resp.content_type, await resp.text()) == (200, "text/plain", "1158201444")


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN},
        {},
    ],
)
async def test_verification_refuses_anything_else(webhook: Client, params: dict[str, str]) -> None:
    async with webhook.get(URL, params=params) as resp:
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "verification_failed"


async def test_signed_text_message_is_delivered_and_acknowledged_without_logging_it(
    webhook: Client, core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    body = fixture_bytes("instagram-text-message.json")
    assert b"caf\\u00e9" in body, "the fixture is escaped as Meta sends it"
    with caplog.at_level(logging.DEBUG):
        status, answer = await _post(webhook, body, _signed(body))
    assert (status, answer) == (200, {"status": "ok"})
    (batch,) = core.deliveries
    (msg,) = batch
    assert (msg.channel, msg.sender, msg.external_id) == ("instagram", CUSTOMER, TEXT_MID)
    assert msg.text == "Hi! Is the café open on Sunday?"
    assert msg.timestamp == 1735689599.876
    assert "Sunday" not in caplog.text and CUSTOMER not in caplog.text


async def test_meta_redelivering_a_post_hands_the_same_mid_again(webhook: Client, core: Core) -> None:
    body = fixture_bytes("instagram-text-message.json")
    for _ in range(2):
        assert (await _post(webhook, body, _signed(body)))[0] == 200
    assert [m.external_id for m in core.messages] == [TEXT_MID] * 2  # the core drops the second


async def test_missing_signature_is_401_and_nothing_is_stored(webhook: Client, core: Core) -> None:
    body = fixture_bytes("instagram-text-message.json")
    status, answer = await _post(webhook, body, {"Content-Type": "application/json"})
    assert status == 401 and answer["error"]["code"] == "signature_missing"
    assert core.deliveries == [] and core.status_batches == []


async def test_wrong_signature_is_403_and_nothing_is_stored(webhook: Client, core: Core) -> None:
    body = fixture_bytes("instagram-text-message.json")
    utf8 = json.dumps(json.loads(body), ensure_ascii=False, indent=2).encode()
    for data, header in (
        (body, sign(body, "the-messenger-apps-secret")),
        (body, "sha1=" + "0" * 40),
        (body, sign(body + b" ", APP_SECRET)),
        (utf8, sign(body, APP_SECRET)),  # the same content re-serialised is other bytes
    ):
        status, answer = await _post(webhook, data, {"X-Hub-Signature-256": header})
        assert status == 403 and answer["error"]["code"] == "signature_invalid"
    assert core.deliveries == [] and core.status_batches == []


async def test_malformed_bodies_are_400(webhook: Client, core: Core) -> None:
    for body in (b'{"object": "instagram", "entry": [', b"[1, 2]"):
        status, answer = await _post(webhook, body, _signed(body))
        assert status == 400 and answer["error"]["code"] == "malformed_json"
    for payload in ({"object": "instagram", "entry": "nope"}, {"object": "instagram", "entry": [{"messaging": 1}]}):
        body = json.dumps(payload).encode()
        status, answer = await _post(webhook, body, _signed(body))
        assert status == 400 and answer["error"]["code"] == "malformed_payload"
    assert core.deliveries == []


async def test_oversize_body_is_413_and_nothing_is_stored(webhook: Client, core: Core) -> None:
    payload = json.loads(fixture_bytes("instagram-text-message.json"))
    payload["entry"][0]["messaging"][0]["message"]["text"] = "x" * (MAX_BODY + 1)
    body, headers = signed_body(payload, APP_SECRET)
    status, answer = await _post(webhook, body, headers)
    assert status == 413 and answer["error"]["code"] == "body_too_large"
    assert core.deliveries == []


async def test_a_batch_is_handed_over_in_one_call_messages_then_statuses(webhook: Client, core: Core) -> None:
    stories = fixture_bytes("instagram-story-reply-and-mention.json")
    others = fixture_bytes("instagram-echo-read-and-other-events.json")
    assert (await _post(webhook, stories, _signed(stories)))[0] == 200
    assert (await _post(webhook, others, _signed(others)))[0] == 200
    assert [len(batch) for batch in core.deliveries] == [2], "the second POST carried no customer message"
    assert [[s.status for s in batch] for batch in core.status_batches] == [["read"]]


async def test_storing_failure_is_500_so_that_meta_retries(webhook: Client, core: Core) -> None:
    core.fail_deliver = RuntimeError("store unavailable")
    body = fixture_bytes("instagram-text-message.json")
    status, answer = await _post(webhook, body, _signed(body))
    assert status == 500 and answer["error"]["code"] == "store_failed"


async def test_other_objects_are_acknowledged_and_dropped(webhook: Client, core: Core) -> None:
    body = json.dumps({"object": "page", "entry": [{"id": IG_USER_ID, "messaging": []}]}).encode()
    assert await _post(webhook, body, _signed(body)) == (200, {"status": "ignored"})
    assert core.deliveries == []


async def test_what_is_not_stored_is_logged_by_kind_never_by_content(
    webhook: Client, core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    body = fixture_bytes("instagram-echo-read-and-other-events.json")
    with caplog.at_level(logging.INFO, logger="carebridge.instagram"):
        assert (await _post(webhook, body, _signed(body)))[0] == 200
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("ignored Instagram events"))
    assert line == "ignored Instagram events: change:comments x1, other_account x1, reaction x1, referral x1"
    for secret in ("open at 10", "Nice!", "for another account", "summer-sale", CUSTOMER):
        assert secret not in caplog.text


async def test_answered_without_any_call_to_the_platform(
    section: dict[str, Any],
    make_channel: Callable[[dict[str, Any]], Any],
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    core: Core,
    black_hole: BlackHole,
) -> None:
    channel = make_channel({**section, "graph_url": black_hole.url})
    root = web.Application(client_max_size=MAX_BODY)
    root.add_subapp(URL, channel.web_app())
    client = await aiohttp_client(root)
    body = fixture_bytes("instagram-text-message.json")
    assert (await _post(client, body, _signed(body)))[0] == 200
    assert len(core.messages) == 1 and black_hole.connections == 0
