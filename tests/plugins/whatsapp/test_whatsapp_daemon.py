"""The installed plugin inside the real daemon: mounted webhook, simulate, dedupe, media, health.

``carebridge run`` runs as a subprocess (tests/daemon.py) with the WhatsApp
channel enabled and its Graph URL on the local fake, so the plugin is found
through its entry point and wired exactly as in production.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.store.keyfile import generate_key, write_key_file
from carebridge_meta import sign, signed_body
from tests.daemon import DaemonProcess, run_cli, write_config
from tests.fakes.whatsapp_cloud import FakeWhatsAppCloud
from tests.plugins.whatsapp.conftest import (
    APP_SECRET,
    PHONE_NUMBER_ID,
    TEMPLATE,
    TOKEN,
    VERIFY_TOKEN,
    fixture_bytes,
    media_prefix,
)


def _config(tmp_path: Path, graph_url: str, media_allow: str) -> Path:
    (tmp_path / "var").mkdir()
    write_key_file(tmp_path / "var" / "master.key", generate_key())
    return write_config(
        tmp_path,
        "[channels.whatsapp]\n"
        f'phone_number_id = "{PHONE_NUMBER_ID}"\n'
        'access_token = "env:H4_TEST_WA_TOKEN"\n'
        f'app_secret = "{APP_SECRET}"\n'
        f'verify_token = "{VERIFY_TOKEN}"\n'
        f'graph_url = "{graph_url}"\n'
        f'media_url_allow = ["{media_allow}"]\n'
        f'reengage_template = "{TEMPLATE}"\n',
    )


async def test_daemon_serves_the_whatsapp_webhook_simulate_and_media(
    tmp_path: Path, aiohttp_server: Callable[[web.Application], Awaitable[TestServer]]
) -> None:
    fake = FakeWhatsAppCloud(token=TOKEN, phone_number_id=PHONE_NUMBER_ID, app_secret=APP_SECRET, templates=(TEMPLATE,))
    server = await aiohttp_server(fake.app)
    config = _config(tmp_path, fake.graph_url(server), media_prefix(server))
    env = {"H4_TEST_WA_TOKEN": TOKEN}
    picture = os.urandom(50_000) + b"PLAINTEXT-PICTURE-TAIL"
    media_id = fake.add_media(picture, "image/jpeg")
    async with DaemonProcess(config, env=env) as daemon, aiohttp.ClientSession() as http:
        params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "8412"}
        async with http.get(daemon.url("/webhooks/whatsapp"), params=params) as resp:
            assert (resp.status, await resp.text()) == (200, "8412")
        body = fixture_bytes("whatsapp-text-message.json")
        async with http.post(
            daemon.url("/webhooks/whatsapp"), data=body, headers={"X-Hub-Signature-256": sign(body, "wrong")}
        ) as resp:
            assert resp.status == 403
        status, out, err = await run_cli(
            "simulate",
            "whatsapp",
            "--from",
            "+15550002222",
            "--text",
            "Hello from simulate",
            "-c",
            str(config),
            env=env,
        )
        assert status == 0, err
        assert "HTTP 200" in out
        for _ in range(2):  # Meta's retry of the same signed body: acknowledged again, stored once
            async with http.post(
                daemon.url("/webhooks/whatsapp"), data=body, headers={"X-Hub-Signature-256": sign(body, APP_SECRET)}
            ) as resp:
                assert resp.status == 200
        message = {
            "from": "15550002222", "id": "wamid.DAEMON-MEDIA", "timestamp": "1735689700", "type": "image",
            "image": {"id": media_id, "mime_type": "image/jpeg", "caption": "Photo of the dent"},
        }  # fmt: skip
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"phone_number_id": PHONE_NUMBER_ID},
            "messages": [message],
        }
        media_body, headers = signed_body(
            {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"value": value}]}]}, APP_SECRET
        )
        async with http.post(daemon.url("/webhooks/whatsapp"), data=media_body, headers=headers) as resp:
            assert resp.status == 200
        for _ in range(500):  # the download runs in the background after the 200
            if fake.downloads and list((tmp_path / "var").rglob("*media*/*")):
                break
            await asyncio.sleep(0.02)
        async with http.get(daemon.url("/healthz")) as resp:
            health = await resp.json()
        assert health["channels"]["whatsapp"]["state"] == "connected"
        assert health["plugins"]["whatsapp"]["channels"] == ["whatsapp"]
    assert daemon.returncode == 0
    assert fake.downloads == [media_id]
    assert TOKEN not in daemon.stderr and "Hello from simulate" not in daemon.stderr
    assert "5550002222" not in daemon.stderr and "media-download" not in daemon.stderr
    status, out, err = await run_cli("gdpr", "export", "whatsapp:+15550002222", "-c", str(config), env=env)
    assert status == 0, err
    texts = [m["text"] for c in json.loads(out)["conversations"] for m in c["messages"] if m["direction"] == "in"]
    assert sorted(texts) == ["Hello from simulate", "Hi! Do you ship to München?", "Photo of the dent"]
    stored = [p for p in (tmp_path / "var").rglob("*") if p.is_file()]
    assert any("media" in str(p.relative_to(tmp_path)) for p in stored), "the picture is kept in the store"
    for path in stored:
        data = path.read_bytes()
        for plain in (b"PLAINTEXT-PICTURE-TAIL", b"Hello from simulate", b"Photo of the dent", b"15550002222"):
            assert plain not in data, f"{plain!r} in plaintext in {path.name}"
