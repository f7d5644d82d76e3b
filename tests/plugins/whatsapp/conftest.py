"""Fixtures for the WhatsApp plugin tests.

The channel is built as the core builds it: a ``ChannelContext`` whose
callbacks record into lists (that context is the plugin's only seam), a real
aiohttp client session, and the fake Cloud API served on loopback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from carebridge_whatsapp import WhatsAppChannel

from bridge import ChannelContext, ChannelState, InboundMessage, StatusUpdate
from tests.fakes.whatsapp_cloud import FakeWhatsAppCloud

FIXTURES = Path(__file__).parent / "fixtures"
PHONE_NUMBER_ID = "400000000000001"
APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
TOKEN = "test-token"
TEMPLATE = "hello_world"
MAX_BODY = 64 * 1024


def fixture_bytes(name: str) -> bytes:
    """A sample payload's exact bytes (signatures are over these)."""
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    """A sample payload, parsed."""
    return json.loads(fixture_bytes(name))


class Core:
    """Stands in for the core behind ``ChannelContext``: records what the channel hands over."""

    def __init__(self) -> None:
        self.deliveries: list[list[InboundMessage]] = []
        self.status_batches: list[list[StatusUpdate]] = []
        self.media: list[tuple[str, int, bytes, str | None]] = []
        self.reports: list[tuple[ChannelState, str | None]] = []
        self.fail_deliver: Exception | None = None
        self.fail_save: Exception | None = None
        self.save_attempts = 0
        self.status_arrived = asyncio.Event()

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
        self.status_arrived.set()

    async def save_media(self, external_id: str, index: int, data: bytes, mime: str | None) -> None:
        self.save_attempts += 1
        if self.fail_save is not None:
            raise self.fail_save
        self.media.append((external_id, index, data, mime))

    def report(self, state: ChannelState, reason: str | None) -> None:
        self.reports.append((state, reason))


@pytest.fixture
def core() -> Core:
    return Core()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    session = aiohttp.ClientSession()
    yield session
    await session.close()


@pytest.fixture
def fake() -> FakeWhatsAppCloud:
    return FakeWhatsAppCloud(token=TOKEN, phone_number_id=PHONE_NUMBER_ID, app_secret=APP_SECRET, templates=(TEMPLATE,))


@pytest.fixture
async def fake_server(aiohttp_server: Callable[..., Any], fake: FakeWhatsAppCloud) -> TestServer:
    server: TestServer = await aiohttp_server(fake.app)
    return server


@pytest.fixture
def section(fake: FakeWhatsAppCloud, fake_server: TestServer) -> dict[str, Any]:
    """A valid ``[channels.whatsapp]`` section pointing at the fake."""
    return {
        "enabled": True,
        "phone_number_id": PHONE_NUMBER_ID,
        "access_token": TOKEN,
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
        "graph_url": fake.graph_url(fake_server),
        "reengage_template": TEMPLATE,
        "template_language": "en_US",
    }


@pytest.fixture
def make_channel(section: dict[str, Any], core: Core, http: aiohttp.ClientSession) -> Callable[..., WhatsAppChannel]:
    """Build a channel; keyword arguments override config keys (``max_body`` the context's)."""

    def make(*, max_body: int = MAX_BODY, **overrides: Any) -> WhatsAppChannel:
        ctx = ChannelContext(
            http=http,
            deliver=core.deliver,
            update_status=core.update_status,
            save_media=core.save_media,
            report=core.report,
            log=logging.getLogger("carebridge.whatsapp"),
            max_body=max_body,
        )
        channel = WhatsAppChannel({**section, **overrides}, ctx)
        channel.media.retry_delays = (0.0, 0.0, 0.0)  # retry at once: tests must not sleep
        return channel

    return make


@pytest.fixture
async def channel(make_channel: Callable[..., WhatsAppChannel]) -> AsyncIterator[WhatsAppChannel]:
    ch = make_channel()
    yield ch
    await ch.stop()


@pytest.fixture
async def webhook(aiohttp_client: Callable[..., Any], channel: WhatsAppChannel) -> TestClient:
    """A client for the channel's webhook sub-app, served on loopback."""
    client: TestClient = await aiohttp_client(channel.web_app())
    return client
