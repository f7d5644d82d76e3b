"""Telegram end to end through the real daemon subprocess.

The daemon runs ``carebridge run`` with the Telegram, WhatsApp and Messenger
plugins pointed at their loopback fakes; ``carebridge telegram set-webhook``
registers the daemon's webhook with the fake Bot API, which then posts
updates to it as Telegram does. Agents enrol with ``carebridge agent add`` and
start their shifts with ``/login CODE`` from their own messenger.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.daemon import DaemonProcess, free_port, run_cli, write_config
from tests.e2e.conftest import FAST
from tests.e2e.harness import wait_for
from tests.e2e.world import World, channel_sections
from tests.fakes.telegram_bot_api import FakeBotApi

TOKEN = "123456789:AAe2e-telegram-token_42"
SECRET = "e2e-telegram-webhook-secret"
ENV = {"TG_E2E_TOKEN": TOKEN}
CUSTOMER_CHAT = 7001  # a customer writing to the bot
ALICE = "+15550001111"  # agent on WhatsApp
BOB_CHAT = 43  # agent on Telegram
MESSENGER_CUSTOMER = "2000000000000077"


@dataclass
class Setup:
    """The daemon's configuration and the fake Bot API it talks to."""

    config: Path
    api: FakeBotApi


async def enrol(config: Path, name: str, channel: str, *extra: str) -> str:
    """``carebridge agent add``; return the agent's TOTP secret from the otpauth:// URI."""
    status, out, err = await run_cli(
        "agent", "add", name, "--channel", channel, "--password-stdin", *extra, "-c", str(config),
        env=ENV, stdin=b"correct horse battery staple\n",
    )  # fmt: skip
    assert status == 0, err
    found = re.search(r"secret=([A-Z2-7]+)", out)
    assert found, out
    return found.group(1)


def code(secret: str) -> str:
    return pyotp.TOTP(secret).now()


@pytest.fixture
async def setup(
    world: World, tmp_path: Path, aiohttp_server: Callable[[web.Application], Awaitable[TestServer]]
) -> AsyncIterator[Setup]:
    api = FakeBotApi(token=TOKEN, insecure_loopback=True)
    server = await aiohttp_server(api.app)
    port = free_port()
    telegram = (
        "[channels.telegram]\n"
        f'bot_token = "env:TG_E2E_TOKEN"\nwebhook_secret = "{SECRET}"\n'
        f'api_url = "{str(server.make_url("")).rstrip("/")}"\n'
    )
    config = write_config(
        tmp_path, channel_sections(*world.graph_urls()) + telegram + FAST,
        port=port, server=f'public_url = "http://127.0.0.1:{port}"',
    )  # fmt: skip
    yield Setup(config=config, api=api)


async def test_a_telegram_customer_is_answered_by_an_agent_on_whatsapp(world: World, setup: Setup) -> None:
    secret = await enrol(setup.config, "alice", f"whatsapp:{ALICE}")
    api = setup.api
    async with DaemonProcess(setup.config, env=ENV) as daemon:
        world.point_at(daemon.url("/"))
        status, _out, err = await run_cli("telegram", "set-webhook", "-c", str(setup.config), env=ENV)
        assert status == 0, err
        await world.whatsapp(ALICE, f"/login {code(secret)}")
        await wait_for(lambda: any("logged in" in t for t in world.wa_texts(ALICE)), what="alice's login answer")

        first = await api.user_writes(CUSTOMER_CHAT, "Hallo, wo bleibt mein Paket?", first_name="Jan", last_name="Smit")
        relayed = "[#1 Jan Smit · Telegram] Hallo, wo bleibt mein Paket?"
        await wait_for(lambda: relayed in world.wa_texts(ALICE), what="the Telegram message relayed to WhatsApp")

        await world.whatsapp(ALICE, "It left the warehouse today.")
        await wait_for(lambda: api.texts_to(CUSTOMER_CHAT) == ["It left the warehouse today."], what="the answer")
        # The customer quotes that answer and edits their question: both reach alice, in order.
        answer_id = api.sent[-1].message_id
        await api.user_writes(CUSTOMER_CHAT, "Danke! Und wann kommt es?", reply_to=answer_id)
        await api.user_edits(CUSTOMER_CHAT, first, "Hallo, wo bleibt mein Paket 4711?")
        edited = "[#1 Jan Smit · Telegram] [edited] Hallo, wo bleibt mein Paket 4711?"
        await wait_for(lambda: edited in world.wa_texts(ALICE), what="the edit relayed")
        assert world.wa_texts(ALICE)[1:] == [relayed, "[#1 Jan Smit · Telegram] Danke! Und wann kommt es?", edited]
    assert daemon.returncode == 0
    assert TOKEN not in daemon.stderr and "Paket" not in daemon.stderr


async def test_an_agent_on_telegram_answers_a_messenger_customer(world: World, setup: Setup) -> None:
    secret = await enrol(setup.config, "bob", f"telegram:{BOB_CHAT}")
    api = setup.api
    async with DaemonProcess(setup.config, env=ENV) as daemon:
        world.point_at(daemon.url("/"))
        status, _out, err = await run_cli("telegram", "set-webhook", "-c", str(setup.config), env=ENV)
        assert status == 0, err
        await api.user_writes(BOB_CHAT, f"/login {code(secret)}", first_name="Bob")
        await wait_for(lambda: any("logged in" in t for t in api.texts_to(BOB_CHAT)), what="bob's login answer")

        await world.messenger(MESSENGER_CUSTOMER, "Do you ship to Belgium?")
        relayed = "[#1 Customer 1 · Messenger] Do you ship to Belgium?"
        await wait_for(lambda: relayed in api.texts_to(BOB_CHAT), what="the Messenger message relayed to Telegram")

        # Bob answers by quoting the relayed message, as Telegram users do.
        quoted = next(s.message_id for s in api.sent if s.chat_id == BOB_CHAT and s.text == relayed)
        await api.user_writes(BOB_CHAT, "Yes, within three working days.", reply_to=quoted)
        await wait_for(
            lambda: world.fb_texts(MESSENGER_CUSTOMER) == ["Yes, within three working days."], what="bob's answer"
        )
        assert not any("Yes, within" in t for t in world.wa_texts(ALICE)), "nothing went astray"
    assert daemon.returncode == 0
    assert TOKEN not in daemon.stderr and "Belgium" not in daemon.stderr


async def test_an_agent_enrolled_as_telegram_0043_is_recognised_writing_from_chat_43(
    world: World, setup: Setup
) -> None:
    secret = await enrol(setup.config, "carol", "telegram:0043")
    api = setup.api
    async with DaemonProcess(setup.config, env=ENV):
        status, _out, err = await run_cli("telegram", "set-webhook", "-c", str(setup.config), env=ENV)
        assert status == 0, err
        await api.user_writes(43, f"/login {code(secret)}", first_name="Carol")
        # The webhook was answered, so the message is committed: as an agent's, not as a customer's.
        status, _out, _err = await run_cli("gdpr", "export", "telegram:43", "-c", str(setup.config), env=ENV)
        assert status == 1, "chat 43 must not have become a customer contact"
        await wait_for(lambda: any("logged in" in t for t in api.texts_to(43)), what="carol's login answer")
