"""Fixtures for the Instagram plugin tests.

The channel is built exactly as the core builds it: a ``ChannelContext``
whose callbacks record what the channel hands over (that context is the
plugin's only seam), a real aiohttp client session, and the fake Instagram
messaging API on loopback.
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
from carebridge_instagram import InstagramChannel

from bridge.testing import RecordingCore
from tests.fakes.instagram_graph import FakeInstagramGraph

FIXTURES = Path(__file__).parent / "fixtures"
IG_USER_ID = "17841400000000001"
APP_SECRET = "test-ig-app-secret"
VERIFY_TOKEN = "test-ig-verify-token"
TOKEN = "IGQWRtest-instagram-user-token"
MAX_BODY = 64 * 1024
CUSTOMER = "1111111111111111"
OTHER = "2222222222222222"

Core = RecordingCore
Client = TestClient[web.Request, web.Application]


def fixture_bytes(name: str) -> bytes:
    """Return a captured-style payload's exact bytes (signatures are over these)."""
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(fixture_bytes(name))
    return payload


@pytest.fixture
def section() -> dict[str, Any]:
    """A valid ``[channels.instagram]`` section (graph_url points nowhere until a test sets it)."""
    return {
        "enabled": True,
        "ig_user_id": IG_USER_ID,
        "access_token": TOKEN,
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
        "graph_url": "http://127.0.0.1:9/v25.0",
    }


@pytest.fixture
def core() -> Core:
    return RecordingCore(media=False)


@pytest.fixture
def make_channel(core: Core, http: aiohttp.ClientSession) -> Callable[[dict[str, Any]], InstagramChannel]:
    def make(section: dict[str, Any]) -> InstagramChannel:
        return InstagramChannel(section, core.context(http, "instagram", max_body=MAX_BODY))

    return make


@pytest.fixture
async def graph(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]], section: dict[str, Any]
) -> FakeInstagramGraph:
    """The fake Instagram API on loopback; ``section["graph_url"]`` points at it."""
    fake = FakeInstagramGraph(ig_user_id=IG_USER_ID, token=TOKEN, app_secret=APP_SECRET)
    server = await aiohttp_server(fake.app)
    section["graph_url"] = fake.graph_url(server)
    return fake


@pytest.fixture
async def channel(
    graph: FakeInstagramGraph, section: dict[str, Any], make_channel: Callable[[dict[str, Any]], InstagramChannel]
) -> InstagramChannel:
    return make_channel(section)


@pytest.fixture
async def webhook(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    section: dict[str, Any],
    make_channel: Callable[[dict[str, Any]], InstagramChannel],
) -> Client:
    """A client for the channel's webhook, mounted at /webhooks/instagram as the core mounts it."""
    channel = make_channel(section)
    root = web.Application(client_max_size=MAX_BODY)
    root.add_subapp("/webhooks/instagram", channel.web_app())
    return await aiohttp_client(root)
