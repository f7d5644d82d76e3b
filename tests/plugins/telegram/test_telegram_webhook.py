"""The Telegram webhook over real loopback HTTP, mounted as the core mounts it.

Telegram authenticates an update only by the secret it was given at
``setWebhook``, sent back in ``X-Telegram-Bot-Api-Secret-Token``: no header
is 401, a wrong one 403, and neither stores anything.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from tests.plugins.conftest import BlackHole
from tests.plugins.telegram.conftest import MAX_BODY, SECRET, Client, Core, fixture_bytes

URL = "/webhooks/telegram"
HEADER = "X-Telegram-Bot-Api-Secret-Token"


async def _post(client: Client, body: bytes, secret: str | None = SECRET) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[HEADER] = secret
    async with client.post(URL, data=body, headers=headers) as resp:
        return resp.status, await resp.text()


async def test_an_authenticated_update_is_stored_then_answered_with_an_empty_200(
    webhook: Client, core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        status, text = await _post(webhook, fixture_bytes("telegram-private-text.json"))
    # Any JSON carrying a "method" would be run by the Bot API: the answer stays empty.
    assert (status, text) == (200, "")
    (batch,) = core.deliveries
    (msg,) = batch
    assert (msg.channel, msg.sender, msg.external_id, msg.sender_name) == ("telegram", "43", "43:17", "Ann Müller")
    assert msg.text == "Grüß Gott! Wo bleibt mein Paket?"
    assert "Paket" not in caplog.text and SECRET not in caplog.text


async def test_both_mount_paths_answer(webhook: Client, core: Core) -> None:
    for path in (URL, URL + "/"):
        body = fixture_bytes("telegram-private-text.json")
        async with webhook.post(path, data=body, headers={HEADER: SECRET}) as resp:
            assert resp.status == 200
    assert [m.external_id for m in core.messages] == ["43:17", "43:17"]  # the core drops the redelivery


async def test_a_missing_secret_token_is_401_and_nothing_is_stored(webhook: Client, core: Core) -> None:
    status, text = await _post(webhook, fixture_bytes("telegram-private-text.json"), secret=None)
    assert status == 401 and json.loads(text)["error"]["code"] == "secret_token_missing"
    assert core.deliveries == []


@pytest.mark.parametrize("wrong", ["", "test-webhook-secret_0123-abd", SECRET + "x", SECRET[:-1], "ünïcode"])
async def test_a_wrong_secret_token_is_403_and_nothing_is_stored(webhook: Client, core: Core, wrong: str) -> None:
    async with webhook.post(
        URL, data=fixture_bytes("telegram-private-text.json"), headers={HEADER: wrong.encode().decode("latin-1")}
    ) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "secret_token_invalid"
    assert core.deliveries == []


async def test_a_get_is_not_allowed(webhook: Client) -> None:
    async with webhook.get(URL, headers={HEADER: SECRET}) as resp:
        assert resp.status == 405


async def test_malformed_json_is_400(webhook: Client, core: Core) -> None:
    for body in (b'{"update_id": 1, "message": {', b"[1, 2]", b"\xff\xfe"):
        status, text = await _post(webhook, body)
        assert status == 400 and json.loads(text)["error"]["code"] == "malformed_json"
    assert core.deliveries == []


async def test_an_oversize_body_is_413(webhook: Client, core: Core) -> None:
    update = json.loads(fixture_bytes("telegram-private-text.json"))
    update["message"]["text"] = "x" * (MAX_BODY + 1)
    status, text = await _post(webhook, json.dumps(update).encode())
    assert status == 413 and json.loads(text)["error"]["code"] == "body_too_large"
    assert core.deliveries == []


async def test_storing_failure_is_500_so_that_telegram_posts_the_update_again(webhook: Client, core: Core) -> None:
    core.fail_deliver = RuntimeError("store unavailable")
    status, text = await _post(webhook, fixture_bytes("telegram-private-text.json"))
    assert status == 500 and json.loads(text)["error"]["code"] == "store_failed"


async def test_a_button_press_is_stored_and_acknowledged_in_the_webhook_answer(webhook: Client, core: Core) -> None:
    status, text = await _post(webhook, fixture_bytes("telegram-callback-query.json"))
    assert status == 200
    assert json.loads(text) == {"method": "answerCallbackQuery", "callback_query_id": "4382bfdwdsb323b2d9"}
    assert [m.text for m in core.messages] == ["answered:no"]


@pytest.mark.parametrize(
    ("fixture", "kind"),
    [
        ("telegram-group-message.json", "supergroup_message"),
        ("telegram-channel-post.json", "channel_post"),
        ("telegram-service-message.json", "service_message"),
        ("telegram-my-chat-member-blocked.json", "my_chat_member"),
    ],
)
async def test_what_is_not_stored_is_acknowledged_and_logged_by_kind_only(
    webhook: Client, core: Core, caplog: pytest.LogCaptureFixture, fixture: str, kind: str
) -> None:
    with caplog.at_level(logging.INFO, logger="carebridge.telegram"):
        assert await _post(webhook, fixture_bytes(fixture)) == (200, "")
    assert core.deliveries == []
    assert f"ignored Telegram updates: {kind} x1" in caplog.text
    for content in ("hello group", "opening hours", "warehouse", "Parcel fans", "Shop news", "Müller"):
        assert content not in caplog.text


async def test_answered_without_any_call_to_the_bot_api(
    section: dict[str, Any],
    make_channel: Callable[[dict[str, Any]], Any],
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    core: Core,
    black_hole: BlackHole,
) -> None:
    channel = make_channel({**section, "api_url": black_hole.url})
    root = web.Application(client_max_size=MAX_BODY)
    root.add_subapp(URL, channel.web_app())
    client = await aiohttp_client(root)
    assert (await _post(client, fixture_bytes("telegram-private-text.json")))[0] == 200
    assert len(core.messages) == 1 and black_hole.connections == 0
