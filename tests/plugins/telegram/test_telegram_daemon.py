"""The installed plugin inside the real daemon: getMe at start, set-webhook, updates, simulate, health.

``carebridge run`` runs as a subprocess (tests/daemon.py) with the Telegram
channel enabled and its ``api_url`` on the fake Bot API, which learns the
daemon's webhook from ``carebridge telegram set-webhook`` and then posts
updates to it, as Telegram would.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.store.keyfile import generate_key, write_key_file
from tests.daemon import DaemonProcess, free_port, run_cli, write_config
from tests.fakes.telegram_bot_api import FakeBotApi
from tests.plugins.telegram.conftest import BOT_TOKEN, SECRET, fixture_bytes

ENV = {"TG_TEST_TOKEN": BOT_TOKEN, "TG_TEST_SECRET": SECRET}


async def test_daemon_serves_the_telegram_webhook_registered_by_set_webhook(
    tmp_path: Path, aiohttp_server: Callable[[web.Application], Awaitable[TestServer]]
) -> None:
    api = FakeBotApi(token=BOT_TOKEN, insecure_loopback=True)
    server = await aiohttp_server(api.app)
    (tmp_path / "var").mkdir()
    write_key_file(tmp_path / "var" / "master.key", generate_key())
    port = free_port()
    config = write_config(
        tmp_path,
        "[channels.telegram]\n"
        'bot_token = "env:TG_TEST_TOKEN"\nwebhook_secret = "env:TG_TEST_SECRET"\n'
        f'api_url = "{str(server.make_url("")).rstrip("/")}"\n',
        port=port,
        server=f'public_url = "http://127.0.0.1:{port}"',
    )
    async with DaemonProcess(config, env=ENV) as daemon, aiohttp.ClientSession() as http:
        assert api.calls == ["getMe"], "start() checked the token"
        status, out, err = await run_cli("telegram", "set-webhook", "-c", str(config), env=ENV)
        assert status == 0, err
        assert api.webhook_url == daemon.url("/webhooks/telegram") and "Webhook was set" in out
        # Telegram posting an update: stored, answered 200; posted again: stored once (checked below).
        await api.user_writes(43, "Grüß Gott! Wo bleibt mein Paket?", first_name="Ann", last_name="Müller")
        await api.user_writes(43, "Grüß Gott! Wo bleibt mein Paket?", message_id=1)
        async with http.post(
            daemon.url("/webhooks/telegram"), data=fixture_bytes("telegram-private-text.json"),
            headers={"X-Telegram-Bot-Api-Secret-Token": "guessed"},
        ) as resp:  # fmt: skip
            assert resp.status == 403
        status, out, err = await run_cli(
            "simulate", "telegram", "--from", "0043", "--text", "Hello from simulate", "-c", str(config), env=ENV
        )
        assert status == 0, err
        assert "HTTP 200" in out
        async with http.get(daemon.url("/healthz")) as resp:
            health = await resp.json()
        assert health["channels"]["telegram"]["state"] == "connected"
        assert health["plugins"]["telegram"]["channels"] == ["telegram"]
    assert daemon.returncode == 0
    assert BOT_TOKEN not in daemon.stderr and SECRET not in daemon.stderr and "Paket" not in daemon.stderr
    status, out, err = await run_cli("gdpr", "export", "telegram:43", "-c", str(config), env=ENV)
    assert status == 0, err
    exported = json.loads(out)
    assert exported["contact"]["name"] == "Ann Müller"
    texts = [m["text"] for c in exported["conversations"] for m in c["messages"] if m["direction"] == "in"]
    assert texts == ["Grüß Gott! Wo bleibt mein Paket?", "Hello from simulate"]
    stored = b"".join(p.read_bytes() for p in (tmp_path / "var").glob("carebridge.db*"))
    assert b"Paket" not in stored and b"Hello from simulate" not in stored and "Müller".encode() not in stored
