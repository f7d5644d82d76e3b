"""Fixtures for the Messenger plugin tests.

The channel is built exactly as the core builds it: a ``ChannelContext``
whose ``deliver``/``update_status`` callbacks collect into lists (that
context is the plugin's only seam), a real aiohttp client session, and the
fake Graph API on loopback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from carebridge_messenger import MessengerChannel

from bridge import ChannelContext, ChannelState, InboundMessage, StatusUpdate
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


class Core:
    """Stands in for the core behind ``ChannelContext``: records what the channel hands over."""

    def __init__(self) -> None:
        self.deliveries: list[list[InboundMessage]] = []
        self.status_batches: list[list[StatusUpdate]] = []
        self.reports: list[tuple[ChannelState, str | None]] = []
        self.fail_deliver: Exception | None = None

    @property
    def messages(self) -> list[InboundMessage]:
        return [m for batch in self.deliveries for m in batch]

    @property
    def statuses(self) -> list[StatusUpdate]:
        return [s for batch in self.status_batches for s in batch]

    async def deliver(self, messages: Sequence[InboundMessage]) -> None:
        if self.fail_deliver is not None:
            raise self.fail_deliver
        self.deliveries.append(list(messages))

    async def update_status(self, updates: Sequence[StatusUpdate]) -> None:
        self.status_batches.append(list(updates))

    async def save_media(self, external_id: str, index: int, data: bytes, mime: str | None) -> None:
        raise AssertionError("Messenger media arrive as URLs; save_media must not be called")

    def report(self, state: ChannelState, reason: str | None) -> None:
        self.reports.append((state, reason))


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
    return Core()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def make_channel(core: Core, http: aiohttp.ClientSession) -> Callable[[dict[str, Any]], MessengerChannel]:
    def make(section: dict[str, Any]) -> MessengerChannel:
        ctx = ChannelContext(
            http=http,
            deliver=core.deliver,
            update_status=core.update_status,
            save_media=core.save_media,
            report=core.report,
            log=logging.getLogger("carebridge.messenger"),
            max_body=MAX_BODY,
        )
        return MessengerChannel(section, ctx)

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
