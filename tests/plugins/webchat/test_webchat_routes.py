"""The chat's routes over real HTTP: the contract of DESIGN §12, auth, limits, length, origins, files."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bridge import CONTACT_EMAIL, DeliveryError, OutboundMessage
from carebridge_webchat.tokens import address_of
from tests.plugins.webchat.conftest import BASE, Chat

MakeChat = Callable[[dict[str, Any]], Awaitable[Chat]]
SHOP = "https://shop.example.org"


async def test_a_session_is_a_token_and_the_address_derived_from_it(chat: Chat) -> None:
    response = await chat.client.post(f"{BASE}/session")
    assert response.status == 201 and response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"token", "address"}
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", body["token"])
    assert body["address"] == f"webchat:{address_of(body['token'])}"
    assert re.fullmatch(r"webchat:[0-9a-f]{32}", body["address"])
    other = await chat.session()
    assert other[0] != body["token"] and other[1] != body["address"]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"email": "not an address"}, "bad_email"),
        ({"email": "ann@localhost"}, "bad_email"),
        ({"email": "<ann@example.org>"}, "bad_email"),
        ({"email": 7}, "bad_email"),
        ({"name": ["Ann"]}, "bad_name"),
        ({"name": "A" * 81}, "bad_name"),
    ],
)
async def test_a_session_refuses_a_bad_profile(chat: Chat, payload: dict[str, Any], code: str) -> None:
    response = await chat.client.post(f"{BASE}/session", json=payload)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == code


async def test_a_session_refuses_a_body_that_is_no_json_object(chat: Chat) -> None:
    for body in (b"{", b"[1]", b"\xff"):
        response = await chat.client.post(f"{BASE}/session", data=body)
        assert response.status == 400 and (await response.json())["error"]["code"] == "bad_json"


async def test_a_message_is_delivered_once_with_the_chat_address_as_sender(chat: Chat) -> None:
    token, address = await chat.session()
    response = await chat.say(token, "  Hello, my order did not arrive  ")
    assert response.status == 201
    external_id = (await response.json())["id"]
    [message] = chat.core.messages
    assert message.channel == "webchat" and f"webchat:{message.sender}" == address
    assert message.text == "Hello, my order did not arrive" and message.external_id == external_id
    assert message.sender_name is None and message.meta == {}
    await chat.say(token, "second")
    assert len({m.external_id for m in chat.core.messages}) == 2


async def test_name_and_email_go_with_the_first_message_only(chat: Chat) -> None:
    token, _ = await chat.session(name="  Ann   de Vries ", email=" Ann@Example.ORG ")
    assert (await chat.say(token, "one")).status == 201
    assert (await chat.say(token, "two")).status == 201
    first, second = chat.core.messages
    assert first.sender_name == "Ann de Vries" and first.meta == {CONTACT_EMAIL: "ann@example.org"}
    assert second.sender_name is None and second.meta == {}


async def test_a_failed_store_is_a_503_and_the_profile_waits_for_the_retry(chat: Chat) -> None:
    token, _ = await chat.session(name="Ann")
    chat.core.fail_deliver = RuntimeError("disk full")
    response = await chat.say(token, "hello")
    assert response.status == 503 and (await response.json())["error"]["code"] == "store_failed"
    chat.core.fail_deliver = None
    assert (await chat.say(token, "hello")).status == 201
    assert chat.core.messages[0].sender_name == "Ann"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer short", "Basic " + "a" * 43, "Bearer " + "a" * 42 + "!"])
async def test_a_message_without_a_well_formed_token_is_refused(chat: Chat, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = await chat.client.post(f"{BASE}/messages", json={"text": "hi"}, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await response.json())["error"]["code"] == "unauthorized"
    assert chat.core.messages == []


async def test_length_and_emptiness(chat: Chat) -> None:
    token, _ = await chat.session()
    too_long = await chat.say(token, "x" * 101)
    assert too_long.status == 413 and (await too_long.json())["error"]["code"] == "text_too_long"
    assert (await chat.say(token, "x" * 100)).status == 201
    for payload in ({"text": "   "}, {"text": 5}, {}):
        response = await chat.client.post(
            f"{BASE}/messages", json=payload, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status == 400 and (await response.json())["error"]["code"] == "empty_text"
    assert [len(m.text) for m in chat.core.messages] == [100]


async def test_one_chat_is_limited_and_the_answer_says_when_to_retry(make_chat: MakeChat) -> None:
    chat = await make_chat({"address_rate": "3/minute"})
    token, _ = await chat.session()
    other, _ = await chat.session()
    for n in range(3):
        assert (await chat.say(token, f"m{n}")).status == 201
    refused = await chat.say(token, "m3")
    assert refused.status == 429 and (await refused.json())["error"]["code"] == "too_many_requests"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert (await chat.say(other, "another chat from the same client")).status == 201
    assert [m.text for m in chat.core.messages] == ["m0", "m1", "m2", "another chat from the same client"]


async def test_one_client_is_limited_across_its_chats(make_chat: MakeChat) -> None:
    chat = await make_chat({"client_rate": "3/minute", "address_rate": "100/minute"})
    tokens = [(await chat.session())[0] for _ in range(4)]
    statuses = [(await chat.say(token, "hi")).status for token in tokens]
    assert statuses == [201, 201, 201, 429]
    assert len(chat.core.messages) == 3


async def test_new_chats_per_client_are_limited(make_chat: MakeChat) -> None:
    chat = await make_chat({"session_rate": "2/minute"})
    statuses = [(await chat.client.post(f"{BASE}/session")).status for _ in range(3)]
    assert statuses == [201, 201, 429]


async def test_an_allowed_site_gets_cors_and_a_preflight(chat: Chat) -> None:
    preflight = await chat.client.options(
        f"{BASE}/messages",
        headers={
            "Origin": SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == SHOP
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    token, _ = await chat.session()
    response = await chat.say(token, "from the shop", Origin=SHOP)
    assert response.status == 201 and response.headers["Access-Control-Allow-Origin"] == SHOP
    refused = await chat.client.post(f"{BASE}/messages", json={"text": "x"}, headers={"Origin": SHOP})
    assert refused.status == 401 and refused.headers["Access-Control-Allow-Origin"] == SHOP


async def test_another_site_is_refused_and_given_no_cors(chat: Chat) -> None:
    preflight = await chat.client.options(
        f"{BASE}/session", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status == 403 and "Access-Control-Allow-Origin" not in preflight.headers
    token, _ = await chat.session()
    for origin in ("https://evil.example", "null", "https://shop.example.org.evil.example"):
        response = await chat.say(token, "x", Origin=origin)
        assert response.status == 403 and (await response.json())["error"]["code"] == "origin_not_allowed"
        assert "Access-Control-Allow-Origin" not in response.headers
    events = await chat.client.get(
        f"{BASE}/events", params={"token": token}, headers={"Origin": "https://evil.example"}
    )
    assert events.status == 403
    assert chat.core.messages == []


async def test_the_bridges_own_page_needs_no_cors(chat: Chat) -> None:
    token, _ = await chat.session()
    own = str(chat.client.make_url("")).rstrip("/")
    response = await chat.say(token, "from /chat", Origin=own)
    assert response.status == 201 and "Access-Control-Allow-Origin" not in response.headers


async def test_the_page_has_a_strict_policy_and_only_the_allowed_sites_may_frame_it(make_chat: MakeChat) -> None:
    framed = await make_chat({"allowed_origins": [SHOP], "title": "<b>Help</b> & more"})
    page = await framed.client.get("/chat")
    assert page.status == 200 and page.content_type == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert policy.endswith(f"frame-ancestors 'self' {SHOP}") and "X-Frame-Options" not in page.headers
    html = await page.text()
    assert "<title>&lt;b&gt;Help&lt;/b&gt; &amp; more</title>" in html and "<b>" not in html
    assert 'data-max-text="2000"' in html
    # Everything the page loads is on the bridge itself; no inline script or style.
    assert re.findall(r'(?:src|href)="([^"]+)"', html) == [
        f"{BASE}/static/chat.svg",
        f"{BASE}/static/chat.css",
        f"{BASE}/static/chat.js",
    ]
    assert "<script>" not in html and "<style" not in html and " style=" not in html
    alone = await make_chat({})
    page = await alone.client.get("/chat")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Content-Security-Policy"].endswith("frame-ancestors 'none'")


async def test_the_files(chat: Chat) -> None:
    script = await chat.client.get(f"{BASE}/static/chat.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    assert script.headers["X-Content-Type-Options"] == "nosniff"
    assert "EventSource" in await script.text()
    style = await chat.client.get(f"{BASE}/static/chat.css")
    assert style.content_type == "text/css"
    widget = await chat.client.get(f"{BASE}/widget.js")
    assert widget.status == 200 and widget.content_type == "text/javascript"
    assert widget.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert "/chat?embed=1" in await widget.text()
    for missing in (f"{BASE}/static/chat.html", f"{BASE}/static/..%2fchannel.py", f"{BASE}/static/widget.js.map"):
        assert (await chat.client.get(missing)).status == 404


async def test_events_need_a_token_and_a_chat_has_few_streams(chat: Chat) -> None:
    assert (await chat.client.get(f"{BASE}/events")).status == 401
    assert (await chat.client.get(f"{BASE}/events", params={"token": "nope"})).status == 401
    token, _ = await chat.session()
    streams = [await chat.client.get(f"{BASE}/events", params={"token": token}) for _ in range(5)]
    assert all(s.status == 200 and s.content_type == "text/event-stream" for s in streams)
    refused = await chat.client.get(f"{BASE}/events", headers={"Authorization": f"Bearer {token}"})
    assert refused.status == 429 and (await refused.json())["error"]["code"] == "too_many_streams"
    other, _ = await chat.session()
    assert (await chat.client.get(f"{BASE}/events", params={"token": other})).status == 200
    streams[0].close()
    for _ in range(100):  # the closed one frees its place once the server sees it gone
        again = await chat.client.get(f"{BASE}/events", params={"token": token})
        if again.status == 200:
            break
        await again.release()
        await asyncio.sleep(0.1)
    assert again.status == 200


async def test_send_wakes_the_chat_and_answers_a_unique_receipt(chat: Chat) -> None:
    token, address = await chat.session()
    address_id = address.partition(":")[2]
    stream = chat.channel.hub.open(address_id)
    receipts = {
        (
            await chat.channel.send(OutboundMessage(delivery_id=n, channel="webchat", recipient=address_id, text="hi"))
        ).external_id
        for n in (1, 2)
    }
    assert len(receipts) == 2 and all(r.startswith("wc-") for r in receipts)
    assert stream.woken.is_set()
    with pytest.raises(DeliveryError) as info:
        await chat.channel.send(OutboundMessage(delivery_id=3, channel="webchat", recipient=token, text="hi"))
    assert not info.value.retryable
    with pytest.raises(DeliveryError) as info:
        await chat.channel.send(
            OutboundMessage(delivery_id=4, channel="webchat", recipient=address_id, text="", template=True)
        )
    assert not info.value.retryable
