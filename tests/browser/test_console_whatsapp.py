"""A WhatsApp customer answered from the console: the reply window counts down, the reply reaches WhatsApp."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import expect

from tests.browser.conftest import WEBCHAT, Desk, conversation_link, shoot
from tests.fakes.whatsapp_cloud import FakeWhatsAppCloud
from tests.plugins.whatsapp.conftest import APP_SECRET, PHONE_NUMBER_ID, TOKEN, VERIFY_TOKEN

CUSTOMER = "+15550002222"


async def test_a_whatsapp_customer_is_answered_from_the_console_within_the_reply_window(
    make_desk: Callable[..., Awaitable[Desk]],
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
    tmp_path: Path,
) -> None:
    cloud = FakeWhatsAppCloud(token=TOKEN, phone_number_id=PHONE_NUMBER_ID, app_secret=APP_SECRET)
    server = await aiohttp_server(cloud.app)
    section = (
        WEBCHAT + "[channels.whatsapp]\n"
        f'phone_number_id = "{PHONE_NUMBER_ID}"\n'
        'access_token = "env:CB_TEST_WA_TOKEN"\n'
        f'app_secret = "{APP_SECRET}"\n'
        f'verify_token = "{VERIFY_TOKEN}"\n'
        f'graph_url = "{cloud.graph_url(server)}"\n'
    )
    desk = await make_desk(section, {"CB_TEST_WA_TOKEN": TOKEN})
    await desk.add_agent("alice")
    agent = await desk.agent("alice")
    # The customer writes on WhatsApp: the fake Cloud API posts the signed webhook (and opens its window).
    cloud.webhook_url = desk.url("/webhooks/whatsapp")
    await cloud.send_inbound(CUSTOMER, "Is my order shipped?", name="Jan")

    entry = conversation_link(agent, 1)
    await expect(entry).to_contain_text("#1 Jan")
    await expect(entry).to_contain_text("WhatsApp")
    countdown = entry.locator("[data-window-for]")
    await expect(countdown).to_have_attribute("data-window", "open")
    await expect(countdown).to_contain_text("Reply window: 23 h 59 min")
    await shoot(agent, tmp_path, "inbox-whatsapp")

    await entry.click()
    await expect(agent.locator("#window")).to_contain_text("Reply window: 23 h 59 min")
    reply = agent.get_by_label("Reply to the customer")
    await reply.fill("Yes, it left today.")
    await reply.press("Enter")
    await expect(agent.locator("#transcript .msg.out")).to_contain_text("Yes, it left today.")
    for _ in range(200):
        if any(sent.text == "Yes, it left today." for sent in cloud.sent):
            break
        await agent.wait_for_timeout(25)
    assert [(sent.to, sent.text) for sent in cloud.sent if sent.text] == [(CUSTOMER.lstrip("+"), "Yes, it left today.")]
