"""``Channel.pages()``: a channel's pages at top-level paths, mounted by the core's application."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge import Channel, DeliveryReceipt, OutboundMessage, PageHandler, hookimpl
from bridge.errors import PluginLoadError
from bridge.web import make_app
from tests.e2e.harness import make_bridge


class PageChannel(Channel):
    """A channel with a customer page; ``wanted`` sets the paths it asks for."""

    name: ClassVar[str] = "pagey"
    wanted: ClassVar[tuple[str, ...]] = ("/help",)

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        return DeliveryReceipt(("x",))

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=f"page of {self.name}", headers={"Content-Security-Policy": "default-src 'none'"})

    def pages(self) -> Mapping[str, PageHandler]:
        return dict.fromkeys(self.wanted, self.page)


class OtherPageChannel(PageChannel):
    name: ClassVar[str] = "pagey2"


class _Plugin:
    @hookimpl
    def register_channels(self, register: Callable[[type[Channel]], None]) -> None:
        register(PageChannel)
        register(OtherPageChannel)


async def test_a_channel_page_is_served_at_its_top_level_path(
    tmp_path: Path, aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
) -> None:
    bridge = await make_bridge(tmp_path, channels="[channels.pagey]\n", plugins=[("pagey", _Plugin())])
    try:
        client = await aiohttp_client(make_app(bridge))
        response = await client.get("/help")
        assert response.status == 200 and await response.text() == "page of pagey"
        assert response.headers["Content-Security-Policy"] == "default-src 'none'"
        assert (await client.head("/help")).status == 200
        assert (await client.post("/help")).status == 405
    finally:
        await bridge.close()


@pytest.mark.parametrize("path", ["/api", "/healthz", "/", "/static", "/webhooks", "help", "/a/b", "/Help", "/login"])
async def test_a_page_the_core_keeps_or_a_malformed_one_stops_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    monkeypatch.setattr(PageChannel, "wanted", (path,))
    bridge = await make_bridge(tmp_path, channels="[channels.pagey]\n", plugins=[("pagey", _Plugin())])
    try:
        with pytest.raises(PluginLoadError, match="channel pagey: cannot serve a page at"):
            make_app(bridge)
    finally:
        await bridge.close()


async def test_two_channels_may_not_serve_the_same_page(tmp_path: Path) -> None:
    bridge = await make_bridge(
        tmp_path, channels="[channels.pagey]\n[channels.pagey2]\n", plugins=[("pagey", _Plugin())]
    )
    try:
        with pytest.raises(PluginLoadError, match="the page /help is already served by channel pagey"):
            make_app(bridge)
    finally:
        await bridge.close()
