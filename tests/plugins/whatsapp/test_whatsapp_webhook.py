"""Webhook tests through a real aiohttp server hosting the channel's sub-app."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bridge import BridgeError
from carebridge_meta import sign, signed_body
from carebridge_whatsapp import WhatsAppChannel
from tests.plugins.conftest import BlackHole
from tests.plugins.whatsapp.conftest import (
    APP_SECRET,
    VERIFY_TOKEN,
    Core,
    fixture_bytes,
    fixture_json,
)

# Signatures PROTOCOLS §2.10 lists for the committed sample bytes (secret test-app-secret).
PROTOCOL_SIGNATURES = {
    "whatsapp-text-message.json": "sha256=b1e38b115591983aa1918b6bdc427d426965dcf1f8733c5e48bf733c8bd7abc0",
    "whatsapp-image-reply-with-context.json": "sha256=cd5e3271cc0e2f0da178eb3c2b9598e19f196c76a833bc597718203831364f59",
    "whatsapp-statuses.json": "sha256=016a504f5fa8813bd0cc56e460473689bb238399fb8768dee98f03cf36e89c1f",
}


async def post(client: TestClient, payload: dict[str, Any]) -> Any:
    body, headers = signed_body(payload, APP_SECRET)
    return await client.post("/", data=body, headers=headers)


async def test_verification_echoes_the_challenge(webhook: TestClient) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    resp = await webhook.get("/", params=params)
    assert resp.status == 200
    assert await resp.text() == "1158201444"
    assert resp.content_type == "text/plain"


async def test_verification_with_wrong_token_is_403(webhook: TestClient) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"}
    resp = await webhook.get("/", params=params)
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "verification_failed"


@pytest.mark.parametrize("name", sorted(PROTOCOL_SIGNATURES))
async def test_sample_payloads_signed_as_meta_signs_them_are_accepted(
    webhook: TestClient, core: Core, name: str
) -> None:
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": PROTOCOL_SIGNATURES[name]}
    resp = await webhook.post("/", data=fixture_bytes(name), headers=headers)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"status": "ok"}
    assert len(core.messages) + len(core.statuses) >= 1


async def test_missing_signature_is_401_and_nothing_delivered(webhook: TestClient, core: Core) -> None:
    resp = await webhook.post(
        "/", data=fixture_bytes("whatsapp-text-message.json"), headers={"Content-Type": "application/json"}
    )
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "signature_missing"
    assert core.deliveries == [] and core.status_batches == []


async def test_wrong_signature_is_403_and_nothing_delivered(webhook: TestClient, core: Core) -> None:
    body = fixture_bytes("whatsapp-text-message.json")
    _, headers = signed_body(fixture_json("whatsapp-text-message.json"), "another-secret")
    resp = await webhook.post("/", data=body, headers=headers)
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "signature_invalid"
    assert core.deliveries == []


async def test_reserialised_body_does_not_match_metas_signature(webhook: TestClient, core: Core) -> None:
    decoded = json.dumps(fixture_json("whatsapp-text-message.json"), ensure_ascii=False).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": PROTOCOL_SIGNATURES["whatsapp-text-message.json"],
    }
    resp = await webhook.post("/", data=decoded, headers=headers)
    assert resp.status == 403 and core.deliveries == []


async def test_malformed_json_is_400(webhook: TestClient, core: Core) -> None:
    body = b'{"object": "whatsapp_business_account", '
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, APP_SECRET)}
    resp = await webhook.post("/", data=body, headers=headers)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "malformed_json"
    assert core.deliveries == []


async def test_wrong_object_is_400_with_a_precise_error(webhook: TestClient, core: Core) -> None:
    resp = await post(webhook, {"object": "page", "entry": []})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == "bad_payload" and "whatsapp_business_account" in error["message"]
    assert core.deliveries == []


async def test_oversize_body_is_413(aiohttp_client: Any, make_channel: Any, core: Core) -> None:
    channel: WhatsAppChannel = make_channel(max_body=1024)
    client = await aiohttp_client(channel.web_app())
    payload = fixture_json("whatsapp-text-message.json")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "x" * 4000
    resp = await post(client, payload)
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "body_too_large"
    assert core.deliveries == []


def _message(kind: str, content: Any, n: int) -> dict[str, Any]:
    return {"from": "15550002222", "id": f"wamid.EVERY{n}", "timestamp": "1735689600", "type": kind, kind: content}


async def test_every_message_type_and_statuses_arrive_in_one_deliver_call(webhook: TestClient, core: Core) -> None:
    items = [
        ("text", {"body": "hello"}),
        ("image", {"id": "m1", "mime_type": "image/jpeg", "sha256": "x"}),
        ("audio", {"id": "m2", "mime_type": "audio/ogg"}),
        ("video", {"id": "m3", "mime_type": "video/mp4"}),
        ("document", {"id": "m4", "mime_type": "application/pdf", "filename": "a.pdf"}),
        ("sticker", {"id": "m5", "mime_type": "image/webp"}),
        ("location", {"latitude": 1.5, "longitude": 2.5}),
        ("contacts", [{"name": {"formatted_name": "Ann"}, "phones": [{"phone": "+15550009999"}]}]),
        ("interactive", {"type": "button_reply", "button_reply": {"id": "b1", "title": "Yes"}}),
        ("interactive", {"type": "list_reply", "list_reply": {"id": "l1", "title": "Refund"}}),
        ("button", {"text": "Stop", "payload": "STOP"}),
        ("reaction", {"message_id": "wamid.OURS", "emoji": "\u2764"}),
        ("order", {"catalog_id": "1"}),
    ]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"phone_number_id": "400000000000001"},
        "contacts": [{"profile": {"name": "Ann"}, "wa_id": "15550002222"}],
        "messages": [_message(kind, content, n) for n, (kind, content) in enumerate(items)],
        "statuses": [{"id": "wamid.OURS", "status": "read", "timestamp": "1735689601", "recipient_id": "15550002222"}],
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    # Media downloads are not part of this test: the media ids are unknown to the fake.
    resp = await post(webhook, payload)
    assert resp.status == 200
    assert len(core.deliveries) == 1, "one POST must be one deliver call"
    texts = [m.text for m in core.deliveries[0]]
    assert texts == [
        "hello",
        "",
        "",
        "",
        "",
        "",
        "(1.5, 2.5)",
        "Ann +15550009999",
        "Yes",
        "Refund",
        "Stop",
        "[reaction \u2764]",
        "[unsupported message]",
    ]
    kinds = [m.attachments[0].kind if m.attachments else None for m in core.deliveries[0]]
    assert kinds[:8] == [None, "image", "audio", "video", "file", "sticker", "location", "contacts"]
    assert all(m.sender == "+15550002222" and m.sender_name == "Ann" for m in core.deliveries[0])
    assert [(s.status, s.external_id) for s in core.statuses] == [("read", "wamid.OURS")]


async def test_failing_store_answers_500_so_meta_retries(
    webhook: TestClient, core: Core, channel: WhatsAppChannel
) -> None:
    core.fail_deliver = RuntimeError("disk full")
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": PROTOCOL_SIGNATURES["whatsapp-image-reply-with-context.json"],
    }
    resp = await webhook.post("/", data=fixture_bytes("whatsapp-image-reply-with-context.json"), headers=headers)
    assert resp.status == 500
    assert (await resp.json())["error"]["code"] == "store_failed"
    assert channel.media.pending == 0, "no media is fetched for messages that were not stored"


async def test_simulated_request_passes_the_channels_own_verification(
    webhook: TestClient, core: Core, section: dict[str, Any]
) -> None:
    request = WhatsAppChannel.simulate(section, "+15550002222", "Grüße from the CLI")
    assert request.method == "POST" and request.path == "/webhooks/whatsapp"
    resp = await webhook.post("/", data=request.body, headers=dict(request.headers))
    assert resp.status == 200
    (msg,) = core.messages
    assert msg.text == "Grüße from the CLI" and msg.sender == "+15550002222"
    assert msg.external_id.startswith("wamid.")
    again = WhatsAppChannel.simulate(section, "15550002222", "x")
    assert json.loads(again.body)["entry"][0]["changes"][0]["value"]["messages"][0]["id"] != msg.external_id


async def test_webhook_logs_carry_no_text_or_phone_number(
    webhook: TestClient, core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": PROTOCOL_SIGNATURES["whatsapp-text-message.json"],
    }
    resp = await webhook.post("/", data=fixture_bytes("whatsapp-text-message.json"), headers=headers)
    assert resp.status == 200 and core.messages
    assert "nchen" not in caplog.text and "5550002222" not in caplog.text


def test_simulate_refuses_a_sender_that_is_not_a_number(section: dict[str, Any]) -> None:
    with pytest.raises(BridgeError, match="^--from: not an E.164 phone number"):
        WhatsAppChannel.simulate(section, "alice", "hi")


async def test_answered_without_waiting_for_the_platform(
    make_channel: Any, aiohttp_client: Any, core: Core, black_hole: BlackHole
) -> None:
    # The Cloud API hangs: the webhook must still be answered once the messages are stored.
    channel: WhatsAppChannel = make_channel(graph_url=black_hole.url)
    client: TestClient = await aiohttp_client(channel.web_app())
    body = fixture_bytes("whatsapp-image-reply-with-context.json")
    resp = await client.post("/", data=body, headers={"X-Hub-Signature-256": sign(body, APP_SECRET)})
    assert resp.status == 200 and len(core.messages) == 1
    assert channel.media.pending == 1, "the media download goes on in the background"
    await channel.stop()
