"""Instagram end to end through the real daemon subprocess.

The daemon runs ``carebridge run`` with the Instagram, WhatsApp and Messenger
plugins pointed at their loopback fakes. Instagram messages are posted by the
fake Instagram API itself, signed with the app secret as Meta signs them;
what the daemon sends is checked at the fakes, which refuse what Meta would
refuse (text limits, the 24-hour window). Agents enrol with ``carebridge
agent add`` and start their shifts with ``/login CODE``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pyotp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.daemon import DaemonProcess, run_cli, write_config
from tests.e2e.conftest import FAST
from tests.e2e.harness import wait_for
from tests.e2e.world import World, channel_sections
from tests.fakes.instagram_graph import FakeInstagramGraph

IG_USER_ID = "17841400000000001"
TOKEN = "IGQWRe2e-instagram-token"
APP_SECRET = "e2e-instagram-app-secret"
ENV = {"IG_E2E_TOKEN": TOKEN}
CUSTOMER = "1111111111111111"  # a customer writing to the account
ALICE = "+15550001111"  # agent on WhatsApp
BOB = "5555555555555555"  # agent on Instagram
MESSENGER_CUSTOMER = "2000000000000077"


async def enrol(config: Path, name: str, channel: str) -> str:
    """``carebridge agent add``; return the agent's TOTP secret from the otpauth:// URI."""
    status, out, err = await run_cli(
        "agent", "add", name, "--channel", channel, "--password-stdin", "-c", str(config),
        env=ENV, stdin=b"correct horse battery staple\n",
    )  # fmt: skip
    assert status == 0, err
    found = re.search(r"secret=([A-Z2-7]+)", out)
    assert found, out
    return found.group(1)


def code(secret: str) -> str:
    return pyotp.TOTP(secret).now()


@pytest.fixture
async def ig(aiohttp_server: Callable[[web.Application], Awaitable[TestServer]]) -> tuple[FakeInstagramGraph, str]:
    fake = FakeInstagramGraph(ig_user_id=IG_USER_ID, token=TOKEN, app_secret=APP_SECRET)
    server = await aiohttp_server(fake.app)
    return fake, fake.graph_url(server)


def _config(world: World, tmp_path: Path, graph_url: str) -> Path:
    instagram = (
        "[channels.instagram]\n"
        f'ig_user_id = "{IG_USER_ID}"\naccess_token = "env:IG_E2E_TOKEN"\napp_secret = "{APP_SECRET}"\n'
        f'verify_token = "e2e-verify"\ngraph_url = "{graph_url}"\n'
    )
    return write_config(tmp_path, channel_sections(*world.graph_urls()) + instagram + FAST)


async def test_an_instagram_customer_is_answered_by_an_agent_on_whatsapp(
    world: World, tmp_path: Path, ig: tuple[FakeInstagramGraph, str]
) -> None:
    graph, graph_url = ig
    config = _config(world, tmp_path, graph_url)
    secret = await enrol(config, "alice", f"whatsapp:{ALICE}")
    async with DaemonProcess(config, env=ENV) as daemon:
        world.point_at(daemon.url("/"))
        graph.webhook_url = daemon.url("/webhooks/instagram")
        await world.whatsapp(ALICE, f"/login {code(secret)}")
        await wait_for(lambda: any("logged in" in t for t in world.wa_texts(ALICE)), what="alice's login answer")

        mid = await graph.send_inbound(CUSTOMER, "Hi! Is the café open on Sunday?")
        await graph.send_inbound(CUSTOMER, "Hi! Is the café open on Sunday?", mid=mid)  # Meta's redelivery
        relayed = "[#1 Customer 1 · Instagram] Hi! Is the café open on Sunday?"
        await wait_for(lambda: relayed in world.wa_texts(ALICE), what="the Instagram message relayed to WhatsApp")

        bread = "We also bake fresh bread every morning, with seasonal specials."
        answer = " ".join(["Yes, from 10 to 4.", *[bread] * 20])
        await world.whatsapp(ALICE, answer)
        await wait_for(lambda: len(graph.texts_to(CUSTOMER)) >= 2, what="the answer, split for Instagram")
        parts = graph.texts_to(CUSTOMER)
        assert len(parts) == 2 and all(len(p) <= 1000 for p in parts)
        assert " ".join(parts) == answer
        assert world.wa_texts(ALICE).count(relayed) == 1, "the redelivered webhook was stored once"
        assert graph.auth and set(graph.auth) == {"bearer"}
    assert daemon.returncode == 0
    assert TOKEN not in daemon.stderr and "Sunday" not in daemon.stderr


async def test_an_agent_on_instagram_answers_a_messenger_customer(
    world: World, tmp_path: Path, ig: tuple[FakeInstagramGraph, str]
) -> None:
    graph, graph_url = ig
    config = _config(world, tmp_path, graph_url)
    secret = await enrol(config, "bob", f"instagram:{BOB}")
    async with DaemonProcess(config, env=ENV) as daemon:
        world.point_at(daemon.url("/"))
        graph.webhook_url = daemon.url("/webhooks/instagram")
        await graph.send_inbound(BOB, f"/login {code(secret)}")
        await wait_for(lambda: any("logged in" in t for t in graph.texts_to(BOB)), what="bob's login answer")

        await world.messenger(MESSENGER_CUSTOMER, "Do you ship to Belgium?")
        relayed = "[#1 Customer 1 · Messenger] Do you ship to Belgium?"
        await wait_for(lambda: relayed in graph.texts_to(BOB), what="the Messenger message relayed to Instagram")

        await graph.send_inbound(BOB, "Yes, within three working days.")
        await wait_for(
            lambda: world.fb_texts(MESSENGER_CUSTOMER) == ["Yes, within three working days."], what="bob's answer"
        )
        assert all(body["messaging_type"] == "RESPONSE" for body in graph.sent), "bob wrote within 24 hours"
    assert daemon.returncode == 0
    assert TOKEN not in daemon.stderr and "Belgium" not in daemon.stderr
