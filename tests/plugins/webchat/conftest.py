"""Fixtures for the website chat tests.

Two ways to serve the channel, both over real loopback HTTP:

* ``chat`` builds the channel exactly as the core does, with a recording
  ``ChannelContext`` (what it delivers is kept), mounted like the core
  mounts it (sub-app at ``/webhooks/webchat``, pages at top level): for the
  routes' own rules (auth, limits, origins, validation);
* ``bridge_chat`` serves a real in-process Bridge (store, relay, outbox)
  with the webchat plugin and the test channels agents use: for what goes
  through the core (history, streams, replies).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

import carebridge_webchat
from bridge.app.bridge import Bridge
from bridge.web import make_app
from carebridge_webchat import WebchatChannel
from tests.e2e.harness import CHANNELS, make_bridge
from tests.plugins.recorder import RecordingCore

Client = TestClient[web.Request, web.Application]
BASE = "/webhooks/webchat"


@dataclass
class Chat:
    """A served chat channel and what it handed the core."""

    client: Client
    channel: WebchatChannel
    core: RecordingCore

    async def session(self, **profile: str) -> tuple[str, str]:
        """Open a chat; return ``(token, address)``."""
        response = await self.client.post(f"{BASE}/session", json=profile)
        assert response.status == 201, await response.text()
        body = await response.json()
        return body["token"], body["address"]

    async def say(self, token: str, text: str, **headers: str) -> aiohttp.ClientResponse:
        """POST one message with the token."""
        return await self.client.post(
            f"{BASE}/messages", json={"text": text}, headers={"Authorization": f"Bearer {token}", **headers}
        )


@pytest.fixture
def section() -> dict[str, Any]:
    """A ``[channels.webchat]`` section with one allowed other site."""
    return {"enabled": True, "allowed_origins": ["https://shop.example.org"], "max_text": 100}


@pytest.fixture
async def make_chat(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
) -> AsyncIterator[Callable[[dict[str, Any]], Awaitable[Chat]]]:
    """Return ``async make(section) -> Chat``; the channels are stopped at teardown."""
    made: list[WebchatChannel] = []
    sessions: list[aiohttp.ClientSession] = []

    async def make(section: dict[str, Any]) -> Chat:
        core = RecordingCore(statuses=False, media=False)
        http = aiohttp.ClientSession()
        sessions.append(http)
        channel = WebchatChannel(section, core.context(http, "webchat"))
        made.append(channel)
        await channel.start()
        app = web.Application()
        app.add_subapp(BASE, channel.web_app())
        for path, handler in channel.pages().items():
            app.router.add_get(path, handler)
        return Chat(await aiohttp_client(app), channel, core)

    yield make
    for channel in made:
        await channel.stop()
    for http in sessions:
        await http.close()


@pytest.fixture
async def chat(make_chat: Callable[[dict[str, Any]], Awaitable[Chat]], section: dict[str, Any]) -> Chat:
    return await make_chat(section)


@dataclass
class BridgeChat:
    """A real Bridge serving the chat, and a client of its application."""

    bridge: Bridge
    client: Client

    async def session(self, **profile: str) -> tuple[str, str]:
        response = await self.client.post(f"{BASE}/session", json=profile)
        assert response.status == 201, await response.text()
        body = await response.json()
        return body["token"], body["address"]

    async def say(self, token: str, text: str) -> None:
        response = await self.client.post(
            f"{BASE}/messages", json={"text": text}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status == 201, await response.text()


@pytest.fixture
async def bridge_chat(
    tmp_path: Path, aiohttp_client: Callable[[web.Application], Awaitable[Client]]
) -> AsyncIterator[BridgeChat]:
    bridge = await make_bridge(
        tmp_path,
        '[delivery]\nretry_base = "20ms"\nretry_max = "100ms"\n',
        channels=CHANNELS + "[channels.webchat]\n[channels.email]\n",
        plugins=[("webchat", carebridge_webchat)],
    )
    try:
        yield BridgeChat(bridge, await aiohttp_client(make_app(bridge)))
    finally:
        await bridge.close()


class Events:
    """A reader of one Server-Sent Events response: ``await events.next()`` is ``(event, id, data)``."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 10.0) -> tuple[str, str | None, dict[str, Any]]:
        """The next event that carries data (comments and pings are skipped)."""
        event, event_id, data = "message", None, []
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("the stream ended")
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if data:
                        return event, event_id, json.loads("\n".join(data))
                    event, event_id = "message", None
                    continue
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "event":
                    event = value
                elif field == "id":
                    event_id = value
                elif field == "data":
                    data.append(value)

    async def nothing_within(self, seconds: float) -> bool:
        """True when no event arrives within ``seconds``."""
        try:
            await self.next(timeout=seconds)
        except TimeoutError:
            return True
        return False
