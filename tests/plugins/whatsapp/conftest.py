"""Fixtures for the WhatsApp plugin tests.

The channel is built as the core builds it: a ``ChannelContext`` whose
callbacks record into lists (that context is the plugin's only seam), a real
aiohttp client session, and the fake Cloud API served on loopback.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.testing import RecordingCore
from carebridge_whatsapp import WhatsAppChannel
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


Core = RecordingCore  # the name the tests import


def media_prefix(server: TestServer) -> str:
    """The ``media_url_allow`` entry for media the fake serves itself."""
    return str(server.make_url("/media-download/"))


@pytest.fixture
def core() -> Core:
    return Core()


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
        "media_url_allow": [media_prefix(fake_server)],
        "reengage_template": TEMPLATE,
        "template_language": "en_US",
    }


@pytest.fixture
def make_channel(section: dict[str, Any], core: Core, http: aiohttp.ClientSession) -> Callable[..., WhatsAppChannel]:
    """Build a channel; keyword arguments override config keys (``max_body`` the context's)."""

    def make(*, max_body: int = MAX_BODY, **overrides: Any) -> WhatsAppChannel:
        channel = WhatsAppChannel({**section, **overrides}, core.context(http, "whatsapp", max_body=max_body))
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
