"""The fake Graph API refuses what Meta refuses (so passing sends prove something)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.fakes.messenger_graph import FakeMessengerGraph
from tests.plugins.messenger.conftest import PAGE_ID, PAGE_TOKEN

PSID = "2000000000000001"
AUTH = {"Authorization": f"Bearer {PAGE_TOKEN}"}


@pytest.fixture
async def fake(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient]],
) -> tuple[FakeMessengerGraph, TestClient]:
    graph = FakeMessengerGraph(page_id=PAGE_ID, token=PAGE_TOKEN)
    graph.customer_wrote(PSID)
    return graph, await aiohttp_client(graph.app)


def _body(**over: object) -> dict[str, Any]:
    body: dict[str, Any] = {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": {"text": "hi"}}
    body.update(over)
    return body


async def _send(
    client: TestClient,
    body: object,
    *,
    path: str = f"/v25.0/{PAGE_ID}/messages",
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with client.post(path, json=body, headers=AUTH if headers is None else headers, params=params) as resp:
        return resp.status, await resp.json()


async def test_accepts_a_valid_send_with_bearer_or_query_token(fake: tuple[FakeMessengerGraph, TestClient]) -> None:
    graph, client = fake
    status, answer = await _send(client, _body())
    assert status == 200 and answer["recipient_id"] == PSID and answer["message_id"].startswith("m_")
    status, _ = await _send(client, _body(), headers={}, params={"access_token": PAGE_TOKEN})
    status2, _ = await _send(client, _body(), path="/me/messages")
    assert (status, status2) == (200, 200)
    assert graph.texts_to(PSID) == ["hi", "hi", "hi"]
    assert graph.auth == ["bearer", "query", "bearer"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": PAGE_TOKEN}])
async def test_token_required(fake: tuple[FakeMessengerGraph, TestClient], headers: dict[str, str]) -> None:
    graph, client = fake
    status, answer = await _send(client, _body(), headers=headers)
    assert status == 401
    assert answer["error"]["code"] == 190 and answer["error"]["type"] == "OAuthException"
    assert graph.sent == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"messaging_type": "RESPONSE", "message": {"text": "hi"}}, "recipient"),
        (_body(messaging_type="PROMO"), "messaging_type"),
        (_body(messaging_type="MESSAGE_TAG"), "tag"),
        (_body(messaging_type="MESSAGE_TAG", tag="ACCOUNT_UPDATE"), "tag"),
        (_body(tag="HUMAN_AGENT"), "tag"),
        (_body(message={}), "Text or attachment"),
        (_body(message={"text": "x" * 2001}), "2000"),
        (_body(message={"text": "hi", "metadata": "m" * 1001}), "1000"),
        (_body(sender_action="mark_seen"), "Exactly one"),
        ([1, 2], "JSON object"),
    ],
)
async def test_body_shape_enforced_with_code_100(
    fake: tuple[FakeMessengerGraph, TestClient], body: object, fragment: str
) -> None:
    graph, client = fake
    status, answer = await _send(client, body)
    assert status == 400 and answer["error"]["code"] == 100
    assert fragment in answer["error"]["message"]
    assert graph.sent == []


async def test_wrong_page_id_is_refused(fake: tuple[FakeMessengerGraph, TestClient]) -> None:
    _graph, client = fake
    status, answer = await _send(client, _body(), path="/v25.0/999/messages")
    assert status == 400 and (answer["error"]["code"], answer["error"]["error_subcode"]) == (100, 33)


async def test_window_per_recipient(fake: tuple[FakeMessengerGraph, TestClient]) -> None:
    graph, client = fake
    graph.customer_wrote(PSID, time.time() - 30 * 3600)
    status, answer = await _send(client, _body())
    assert status == 400
    assert (answer["error"]["code"], answer["error"]["error_subcode"]) == (10, 2018278)
    status, _ = await _send(client, _body(messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT"))
    assert status == 200
    graph.customer_wrote(PSID, time.time() - 8 * 24 * 3600)
    status, answer = await _send(client, _body(messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT"))
    assert status == 400 and answer["error"]["code"] == 10
    status, answer = await _send(client, _body(recipient={"id": "2999"}))
    assert (answer["error"]["code"], answer["error"]["error_subcode"]) == (100, 2018001)


async def test_scripted_errors_use_metas_bodies_then_recover(fake: tuple[FakeMessengerGraph, TestClient]) -> None:
    graph, client = fake
    graph.fail_next(2, code=2)
    graph.fail_next(1, code=551, after=1)
    first = await _send(client, _body())
    second = await _send(client, _body())
    third = await _send(client, _body())
    fourth = await _send(client, _body())
    fifth = await _send(client, _body())
    assert first[0] == second[0] == 500 and first[1]["error"]["is_transient"] is True
    assert first[1]["error"]["message"].startswith("An unexpected error")
    assert third[0] == 200
    assert fourth[0] == 400 and fourth[1]["error"]["message"] == "(#551) This person isn't available right now."
    assert fifth[0] == 200
    assert len(graph.sent) == 2 and len(graph.requests) == 5
