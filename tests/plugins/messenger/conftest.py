"""Fixtures for the Messenger plugin tests.

The channel is built exactly as the core builds it: a ``ChannelContext``
whose ``deliver``/``update_status`` callbacks collect into lists (that
context is the plugin's only seam), a real aiohttp client session, and the
fake Graph API on loopback.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge.testing import RecordingCore
from carebridge_messenger import MessengerChannel
from tests.fakes.messenger_graph import FakeMessengerGraph

FIXTURES = Path(__file__).parent / "fixtures"
PAGE_ID = "100000000000001"
APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
PAGE_TOKEN = "test-page-token"
MAX_BODY = 64 * 1024


def fixture_bytes(name: str) -> bytes:
    """Return a sample payload's exact bytes (signatures are over these)."""
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    """Return a sample payload parsed."""
    return json.loads(fixture_bytes(name))


Core = RecordingCore  # the name the tests import


@pytest.fixture
def section() -> dict[str, Any]:
    """A valid ``[channels.messenger]`` section (graph_url points nowhere until a test sets it)."""
    return {
        "enabled": True,
        "page_id": PAGE_ID,
        "page_access_token": PAGE_TOKEN,
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
        "graph_url": "http://127.0.0.1:9/v25.0",
    }


@pytest.fixture
def core() -> Core:
    return RecordingCore(media=False)


@pytest.fixture
def make_channel(core: Core, http: aiohttp.ClientSession) -> Callable[[dict[str, Any]], MessengerChannel]:
    def make(section: dict[str, Any]) -> MessengerChannel:
        return MessengerChannel(section, core.context(http, "messenger", max_body=MAX_BODY))

    return make


@pytest.fixture
async def graph(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]], section: dict[str, Any]
) -> FakeMessengerGraph:
    """The fake Graph API on loopback; ``section["graph_url"]`` points at it."""
    fake = FakeMessengerGraph(page_id=PAGE_ID, token=PAGE_TOKEN)
    server = await aiohttp_server(fake.app)
    section["graph_url"] = str(server.make_url("/v25.0"))
    return fake


@pytest.fixture
async def channel(
    graph: FakeMessengerGraph,
    section: dict[str, Any],
    make_channel: Callable[[dict[str, Any]], MessengerChannel],
) -> MessengerChannel:
    return make_channel(section)


@pytest.fixture
async def webhook(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient]],
    section: dict[str, Any],
    make_channel: Callable[[dict[str, Any]], MessengerChannel],
) -> TestClient:
    """A client for the channel's webhook, mounted at /webhooks/messenger as the core mounts it."""
    channel = make_channel(section)
    root = web.Application(client_max_size=MAX_BODY)
    root.add_subapp("/webhooks/messenger", channel.web_app())
    return await aiohttp_client(root)
