"""Fixtures for the carebridge-meta tests: its helpers served by a real loopback server.

``carebridge_meta`` has no channel of its own, so the tests mount its
helpers in the sub-app a Meta channel builds (``bridge.webhook_app``) and
talk to it over HTTP, exactly as Meta would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge import webhook_app
from carebridge_meta import read_signed_json, verify_subscription

APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
MAX_BODY = 4096

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def make_client(aiohttp_client: Callable[[web.Application], Awaitable[Client]]) -> MakeClient:
    """Serve ``verify_subscription`` (GET) and ``read_signed_json`` (POST, echoing the payload)."""

    async def make(*, verify_token: str = VERIFY_TOKEN, app_secret: str = APP_SECRET) -> Client:
        async def verify(request: web.Request) -> web.Response:
            return verify_subscription(request, verify_token)

        async def receive(request: web.Request) -> web.Response:
            payload: dict[str, Any] = await read_signed_json(request, app_secret)
            return web.json_response({"received": payload})

        return await aiohttp_client(webhook_app(MAX_BODY, receive=receive, verify=verify))

    return make


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    """The helpers with the test app's secret and verify token."""
    return await make_client()
