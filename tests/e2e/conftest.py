"""Fixtures: the Meta fakes on loopback and a Bridge wired to them through the real plugins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import carebridge_messenger
import carebridge_whatsapp
from bridge.app.bridge import Bridge
from bridge.testing import BridgeFactory
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
def make_world_bridge(world: World, bridge_factory: BridgeFactory) -> Callable[..., Any]:
    """Return ``async build(extra="") -> Bridge`` serving the real app; closed at teardown (the kit's factory)."""

    async def build(extra: str = FAST) -> Bridge:
        wa_url, graph_url = world.graph_urls()
        bridge = await bridge_factory(
            channel_sections(wa_url, graph_url) + extra,
            plugins=[("whatsapp", carebridge_whatsapp), ("messenger", carebridge_messenger)],
            start=False,
        )
        server = await bridge_factory.serve(bridge)
        world.point_at(str(server.make_url("/")))
        return bridge

    return build
