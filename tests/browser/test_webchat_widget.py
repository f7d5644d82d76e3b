"""The widget on the company's own site: a button that opens the chat in a frame, for allowed sites only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from playwright.async_api import expect

from tests.browser.conftest import Desk, conversation_link, shoot
from tests.daemon import free_port

SHOP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<script src="{bridge}/webhooks/webchat/widget.js" data-label="Questions?" defer></script></head>
<body><h1>The shop</h1><p>Everything a customer might want.</p></body></html>
"""


@asynccontextmanager
async def shop_site(bridge: str, port: int) -> AsyncIterator[str]:
    """A company's site on its own loopback port (so another origin), with the widget on its page."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=SHOP_PAGE.format(bridge=bridge.rstrip("/")), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_the_widget_on_an_allowed_site_opens_the_chat_and_a_message_reaches_an_agent(
    make_desk: Callable[[str], Awaitable[Desk]], tmp_path: Path
) -> None:
    port = free_port()
    desk = await make_desk(f'[channels.webchat]\nallowed_origins = ["http://127.0.0.1:{port}"]\n')
    await desk.add_agent("alice")
    agent = await desk.agent("alice")
    async with shop_site(desk.url(""), port) as shop:
        visitor = await desk.person()
        await visitor.goto(shop)
        button = visitor.get_by_role("button", name="Questions?")
        await expect(button).to_have_attribute("aria-expanded", "false")
        await button.click()
        await expect(button).to_have_attribute("aria-expanded", "true")
        chat = visitor.frame_locator('iframe[data-carebridge-webchat="frame"]')
        await chat.get_by_label("Your message").fill("Do you ship to Belgium?")
        await chat.get_by_label("Your message").press("Enter")
        await expect(chat.locator("#transcript .msg.in")).to_contain_text("Do you ship to Belgium?")
        await shoot(visitor, tmp_path, "widget")
        await expect(conversation_link(agent, 1)).to_contain_text("Web chat")


async def test_a_site_that_is_not_allowed_cannot_frame_the_chat(desk: Desk) -> None:
    refused: list[str] = []
    async with shop_site(desk.url(""), free_port()) as shop:
        visitor = await desk.person()
        visitor.on("console", lambda message: refused.append(message.text))
        await visitor.goto(shop)
        await visitor.get_by_role("button", name="Questions?").click()
        frame = visitor.locator('iframe[data-carebridge-webchat="frame"]')
        await expect(frame).to_be_attached()
        for _ in range(100):  # Chromium reports the refusal on the console
            if any("frame-ancestors" in text for text in refused):
                break
            await asyncio.sleep(0.05)
        assert any("frame-ancestors" in text for text in refused), refused
        handle = await frame.element_handle()
        content = await handle.content_frame() if handle else None
        assert content is not None and await content.locator("#chat").count() == 0
