"""Fixtures: the Meta fakes on loopback and a Bridge wired to them through the real plugins."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

import carebridge_messenger
import carebridge_whatsapp
from bridge.app.bridge import Bridge
from bridge.config import load_config
from bridge.plugins import make_plugin_manager
from bridge.relay import strategies
from bridge.web import make_app
from tests.daemon import write_config
from tests.e2e.world import (
    PAGE_ID,
    PAGE_TOKEN,
    WA_NUMBER_ID,
    WA_SECRET,
    WA_TEMPLATE,
    WA_TOKEN,
    World,
    channel_sections,
)
from tests.fakes.messenger_graph import FakeMessengerGraph
from tests.fakes.whatsapp_cloud import FakeWhatsAppCloud

FAST = '[delivery]\nretry_base = "20ms"\nretry_max = "100ms"\nmax_attempts = 5\n'


@pytest.fixture
async def world(aiohttp_server: Callable[..., Any]) -> World:
    wa = FakeWhatsAppCloud(token=WA_TOKEN, phone_number_id=WA_NUMBER_ID, app_secret=WA_SECRET, templates=(WA_TEMPLATE,))
    graph = FakeMessengerGraph(page_id=PAGE_ID, token=PAGE_TOKEN)
    return World(wa, graph, await aiohttp_server(wa.app), await aiohttp_server(graph.app))


@pytest.fixture
async def make_world_bridge(
    world: World, tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> AsyncIterator[Callable[..., Any]]:
    """Return ``async build(extra="") -> Bridge`` serving the real app; closed at teardown."""
    built: list[Bridge] = []

    async def build(extra: str = FAST) -> Bridge:
        wa_url, graph_url = world.graph_urls()
        config = load_config(write_config(tmp_path, channel_sections(wa_url, graph_url) + extra))
        registry = make_plugin_manager(
            load_entry_points=False,
            plugins=[
                ("core-routing", strategies),
                ("whatsapp", carebridge_whatsapp),
                ("messenger", carebridge_messenger),
            ],
        )
        bridge = await Bridge.create(config, registry)
        built.append(bridge)
        server: TestServer = await aiohttp_server(make_app(bridge))
        world.point_at(str(server.make_url("/")))
        return bridge

    yield build
    for bridge in built:
        await bridge.close()
