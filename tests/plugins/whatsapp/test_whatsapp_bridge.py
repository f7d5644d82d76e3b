"""The plugin inside the real core: Bridge, store, relay and web app, against the fake Cloud API.

These prove the channel's side of issue 5's "done when": a WhatsApp customer
and a WhatsApp agent talk through the bridge, and media arrives encrypted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiohttp.test_utils import TestServer

import carebridge_whatsapp
from bridge.app.bridge import Bridge
from bridge.testing import BridgeFactory
from carebridge_meta import signed_body
from tests.e2e.harness import add_agent, wait_for
from tests.fakes.whatsapp_cloud import FakeWhatsAppCloud
from tests.plugins.whatsapp.conftest import (
    APP_SECRET,
    PHONE_NUMBER_ID,
    TEMPLATE,
    TOKEN,
    VERIFY_TOKEN,
    media_prefix,
)

CUSTOMER = "+15550002222"
AGENT = "+15550009999"


@pytest.fixture
async def bridge(fake: FakeWhatsAppCloud, fake_server: TestServer, bridge_factory: BridgeFactory) -> Bridge:
    section = (
        "[channels.whatsapp]\n"
        f'phone_number_id = "{PHONE_NUMBER_ID}"\naccess_token = "{TOKEN}"\napp_secret = "{APP_SECRET}"\n'
        f'verify_token = "{VERIFY_TOKEN}"\ngraph_url = "{fake.graph_url(fake_server)}"\n'
        f'media_url_allow = ["{media_prefix(fake_server)}"]\n'
        f'reengage_template = "{TEMPLATE}"\n'
    )
    created = await bridge_factory(section, plugins=[("whatsapp", carebridge_whatsapp)], start=False)
    server = await bridge_factory.serve(created)
    fake.webhook_url = str(server.make_url("/webhooks/whatsapp"))
    return created


def texts_to(fake: FakeWhatsAppCloud, number: str) -> list[str]:
    return [s.text or "" for s in fake.sent if s.to == number.lstrip("+") and s.text is not None]


async def test_customer_and_agent_both_on_whatsapp_talk_through_the_bridge(
    bridge: Bridge, fake: FakeWhatsAppCloud
) -> None:
    _, secret = await add_agent(bridge, "alice", f"whatsapp:{AGENT}")
    await fake.send_inbound(AGENT, f"/login {pyotp.TOTP(secret).now()}")
    await fake.send_inbound(CUSTOMER, "Where is my parcel?", name="Ann Example")
    await wait_for(lambda: any("Where is my parcel?" in t for t in texts_to(fake, AGENT)), what="relay to the agent")
    await fake.send_inbound(AGENT, "It left the warehouse today.")
    await wait_for(lambda: "It left the warehouse today." in texts_to(fake, CUSTOMER), what="reply to the customer")
    assert bridge.channel_state("whatsapp")[0].value == "connected"


async def test_media_arrives_encrypted_in_the_store(bridge: Bridge, fake: FakeWhatsAppCloud, tmp_path: Path) -> None:
    picture = b"PNGDATA-" + os.urandom(4096) + b"-UNIQUEPLAINTEXTMARKER"
    media_id = fake.add_media(picture, "image/png")
    message = {
        "from": CUSTOMER[1:], "id": "wamid.MEDIA-E2E", "timestamp": "1735689600", "type": "image",
        "image": {"id": media_id, "mime_type": "image/png", "caption": "Zebra caption 4711"},
    }  # fmt: skip
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": PHONE_NUMBER_ID}, "messages": [message]}
    payload = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"value": value}]}]}
    body, headers = signed_body(payload, APP_SECRET)
    async with bridge.http.post(fake.webhook_url or "", data=body, headers=headers) as resp:
        assert resp.status == 200
    channel = bridge.channels["whatsapp"]
    await channel.media.drain()  # type: ignore[attr-defined]
    assert fake.downloads == [media_id]

    def read_back(tx: Any) -> bytes:
        attachment = tx.attachments.by_external("whatsapp", "wamid.MEDIA-E2E", 0)
        return bytes(tx.attachments.read(attachment.id))

    assert await bridge.store.read(read_back) == picture
    files = [p for p in (tmp_path / "var").rglob("*") if p.is_file()]
    assert any(p.parent == bridge.store.media_dir for p in files), "the bytes are in a media file"
    for path in files:
        data = path.read_bytes()
        for secret in (b"UNIQUEPLAINTEXTMARKER", b"Zebra caption", CUSTOMER[1:].encode()):
            assert secret not in data, f"{secret!r} in plaintext in {path.name}"


async def test_131047_arriving_as_a_failed_status_takes_the_window_path(
    bridge: Bridge, fake: FakeWhatsAppCloud
) -> None:
    fake.window_mode = "status"  # the platform accepts the send, then reports it failed
    _, secret = await add_agent(bridge, "alice", f"whatsapp:{AGENT}")
    await fake.send_inbound(AGENT, f"/login {pyotp.TOTP(secret).now()}")
    await fake.send_inbound(CUSTOMER, "old question", name="Ann Example")
    await wait_for(lambda: any("old question" in t for t in texts_to(fake, AGENT)), what="relay to the agent")
    fake.user_wrote(CUSTOMER, ts=0)  # on the platform the customer's window has closed
    await fake.send_inbound(AGENT, "Sorry for the wait!")
    await wait_for(lambda: [f.text for f in fake.failed] == ["Sorry for the wait!"], what="the refused send")
    await wait_for(
        lambda: [s.template for s in fake.sent if s.to == CUSTOMER[1:] and s.template] == [TEMPLATE],
        what="re-engagement template",
    )
    await wait_for(lambda: any("will not deliver" in t for t in texts_to(fake, AGENT)), what="agent told")
    assert fake.webhook_answers == [200], "the failed status was accepted"
    assert "Sorry for the wait!" not in texts_to(fake, CUSTOMER)
    await fake.send_inbound(CUSTOMER, "I'm back")
    await wait_for(lambda: "Sorry for the wait!" in texts_to(fake, CUSTOMER), what="held reply released")


async def test_webhook_answers_with_and_without_a_trailing_slash(bridge: Bridge, fake: FakeWhatsAppCloud) -> None:
    base = (fake.webhook_url or "").rstrip("/")
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "42"}
    for url in (base, base + "/"):
        async with bridge.http.get(url, params=params) as resp:
            assert resp.status == 200 and await resp.text() == "42"
