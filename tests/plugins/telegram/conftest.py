"""Fixtures for the Telegram plugin tests.

The channel is built exactly as the core builds it: a ``ChannelContext``
whose callbacks record what the channel hands over, a real aiohttp client
session, and the fake Bot API on loopback.
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
from carebridge_telegram import TelegramChannel

from bridge.testing import RecordingCore
from tests.fakes.telegram_bot_api import FakeBotApi

FIXTURES = Path(__file__).parent / "fixtures"
BOT_TOKEN = "123456789:AAtest-bot-token_0123456789"
SECRET = "test-webhook-secret_0123-abc"
MAX_BODY = 64 * 1024
ANN = 43

Core = RecordingCore
Client = TestClient[web.Request, web.Application]


def fixture_bytes(name: str) -> bytes:
    """Return a captured-style update's exact bytes."""
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(fixture_bytes(name))
    return payload


@pytest.fixture
def section() -> dict[str, Any]:
    """A valid ``[channels.telegram]`` section (api_url points nowhere until a test sets it)."""
    return {"enabled": True, "bot_token": BOT_TOKEN, "webhook_secret": SECRET, "api_url": "http://127.0.0.1:9"}


@pytest.fixture
def core() -> Core:
    return RecordingCore(statuses=False, media=False)


@pytest.fixture
def make_channel(core: Core, http: aiohttp.ClientSession) -> Callable[[dict[str, Any]], TelegramChannel]:
    def make(section: dict[str, Any]) -> TelegramChannel:
        return TelegramChannel(section, core.context(http, "telegram", max_body=MAX_BODY))

    return make


@pytest.fixture
async def api(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]], section: dict[str, Any]
) -> FakeBotApi:
    """The fake Bot API on loopback; ``section["api_url"]`` points at it."""
    fake = FakeBotApi(token=BOT_TOKEN)
    server = await aiohttp_server(fake.app)
    section["api_url"] = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
async def channel(
    api: FakeBotApi, section: dict[str, Any], make_channel: Callable[[dict[str, Any]], TelegramChannel]
) -> TelegramChannel:
    return make_channel(section)


@pytest.fixture
async def webhook(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    section: dict[str, Any],
    make_channel: Callable[[dict[str, Any]], TelegramChannel],
) -> Client:
    """A client for the channel's webhook, mounted at /webhooks/telegram as the core mounts it."""
    channel = make_channel(section)
    root = web.Application(client_max_size=MAX_BODY)
    root.add_subapp("/webhooks/telegram", channel.web_app())
    return await aiohttp_client(root)
