"""The webhook building blocks ``bridge`` offers plugin authors of any platform.

``webhook_app``, ``read_body`` and ``hand_over`` are served by a real
loopback server here, with the recording core behind ``ChannelContext``, as a
third-party channel would use them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge import (
    InboundMessage,
    StatusUpdate,
    hand_over,
    http_error,
    json_error,
    read_body,
    webhook_app,
)
from bridge.testing import RecordingCore

MAX_BODY = 2048
Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]


async def echo(request: web.Request) -> web.Response:
    """Answer with the raw body read through ``read_body``."""
    return web.Response(body=await read_body(request), content_type="application/octet-stream")


async def test_posts_answer_on_the_mount_path_with_and_without_a_slash(aiohttp_client: AiohttpClient) -> None:
    root = web.Application()
    root.add_subapp("/webhooks/acme", webhook_app(MAX_BODY, receive=echo))
    client = await aiohttp_client(root)
    for path in ("/webhooks/acme", "/webhooks/acme/"):
        async with client.post(path, data=b"\x00raw bytes\xff") as resp:
            assert resp.status == 200 and await resp.read() == b"\x00raw bytes\xff"


async def test_without_a_handshake_a_get_is_405_and_with_one_it_is_answered(aiohttp_client: AiohttpClient) -> None:
    plain = await aiohttp_client(webhook_app(MAX_BODY, receive=echo))
    async with plain.get("/") as resp:
        assert resp.status == 405

    async def verify(request: web.Request) -> web.Response:
        return web.Response(text=request.query.get("challenge", ""))

    with_handshake = await aiohttp_client(webhook_app(MAX_BODY, receive=echo, verify=verify))
    for path in ("", "/"):
        async with with_handshake.get(path, params={"challenge": "c-1"}) as resp:
            assert resp.status == 200 and await resp.text() == "c-1"


async def test_read_body_refuses_a_declared_or_chunked_oversize_body_as_json(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(webhook_app(MAX_BODY, receive=echo))
    body = b"x" * (MAX_BODY + 1)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    for data in (body, chunks()):
        async with client.post("/", data=data) as resp:
            assert resp.status == 413 and resp.content_type == "application/json"
            assert await resp.json() == {
                "error": {"code": "body_too_large", "message": f"request body exceeds {MAX_BODY} bytes"}
            }
    async with client.post("/", data=b"x" * MAX_BODY) as resp:
        assert resp.status == 200, "the limit itself is allowed"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503])
async def test_a_raised_http_error_answers_like_json_error(aiohttp_client: AiohttpClient, status: int) -> None:
    async def refuse(request: web.Request) -> web.Response:
        raise http_error(status, "refused", "the reason")

    client = await aiohttp_client(webhook_app(MAX_BODY, receive=refuse))
    expected = json_error(status, "refused", "the reason")
    async with client.post("/", data=b"{}") as resp:
        assert (resp.status, resp.content_type) == (status, "application/json")
        assert await resp.text() == expected.text


def test_http_error_refuses_a_status_that_is_no_refusal() -> None:
    for status in (200, 302, 405):
        with pytest.raises(ValueError, match=str(status)):
            http_error(status, "nope", "not an error answer")


def _message(n: int) -> InboundMessage:
    return InboundMessage(channel="acme", sender=f"user-{n}", external_id=f"m{n}", text=f"secret text {n}",
                          timestamp=1735689600.0 + n)  # fmt: skip


async def test_hand_over_commits_messages_then_statuses_and_returns_none() -> None:
    core = RecordingCore()
    status = StatusUpdate(channel="acme", status="read", timestamp=1735689700.0, external_id="ours-1")
    async with aiohttp.ClientSession() as http:
        answer = await hand_over(core.context(http, "acme"), [_message(1), _message(2)], [status])
        assert answer is None
        assert await hand_over(core.context(http, "acme"), [], []) is None, "an empty POST calls nothing"
    assert [[m.external_id for m in batch] for batch in core.deliveries] == [["m1", "m2"]]
    assert core.status_batches == [[status]]


async def test_a_failed_store_is_a_500_so_the_platform_retries(caplog: pytest.LogCaptureFixture) -> None:
    core = RecordingCore()
    core.fail_deliver = RuntimeError("disk full")
    status = StatusUpdate(channel="acme", status="read", timestamp=1735689700.0, external_id="ours-1")
    async with aiohttp.ClientSession() as http:
        with caplog.at_level(logging.ERROR):
            answer = await hand_over(core.context(http, "acme"), [_message(1)], [status])
    assert answer is not None and answer.status == 500 and answer.text is not None
    assert json.loads(answer.text)["error"]["code"] == "store_failed"
    assert core.status_batches == [], "statuses wait until the messages are stored"
    assert "storing a webhook failed (1 messages, 1 statuses)" in caplog.text
    assert "secret text" not in caplog.text and "user-1" not in caplog.text
