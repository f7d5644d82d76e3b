"""The installed plugin inside the real daemon: mounted webhook, simulate, dedupe, health.

``carebridge run`` runs as a subprocess (tests/daemon.py) with the Instagram
channel enabled and its Graph URL on the local fake, so the plugin is found
through its entry point and wired exactly as the core wires it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.store.keyfile import generate_key, write_key_file
from carebridge_meta import sign
from tests.daemon import DaemonProcess, run_cli, write_config
from tests.fakes.instagram_graph import FakeInstagramGraph
from tests.plugins.instagram.conftest import APP_SECRET, CUSTOMER, IG_USER_ID, TOKEN, VERIFY_TOKEN, fixture_bytes


async def test_daemon_serves_the_instagram_webhook_and_simulate_reaches_it(
    tmp_path: Path, aiohttp_server: Callable[[web.Application], Awaitable[TestServer]]
) -> None:
    graph = FakeInstagramGraph(ig_user_id=IG_USER_ID, token=TOKEN, app_secret=APP_SECRET)
    server = await aiohttp_server(graph.app)
    (tmp_path / "var").mkdir()
    write_key_file(tmp_path / "var" / "master.key", generate_key())
    config = write_config(
        tmp_path,
        "[channels.instagram]\n"
        f'ig_user_id = "{IG_USER_ID}"\naccess_token = "env:IG_TEST_TOKEN"\napp_secret = "{APP_SECRET}"\n'
        f'verify_token = "{VERIFY_TOKEN}"\ngraph_url = "{graph.graph_url(server)}"\n',
    )
    env = {"IG_TEST_TOKEN": TOKEN}
    async with DaemonProcess(config, env=env) as daemon, aiohttp.ClientSession() as http:
        params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "8412"}
        async with http.get(daemon.url("/webhooks/instagram"), params=params) as resp:
            assert (resp.status, await resp.text()) == (200, "8412")
        body = fixture_bytes("instagram-text-message.json")
        async with http.post(
            daemon.url("/webhooks/instagram"), data=body, headers={"X-Hub-Signature-256": sign(body, "wrong")}
        ) as resp:
            assert resp.status == 403
        status, out, err = await run_cli(
            "simulate", "instagram", "--from", CUSTOMER, "--text", "Hello from simulate", "-c", str(config), env=env
        )
        assert status == 0, err
        assert "HTTP 200" in out
        for _ in range(2):  # Meta's retry of the same signed body: acknowledged again, stored once
            async with http.post(
                daemon.url("/webhooks/instagram"), data=body, headers={"X-Hub-Signature-256": sign(body, APP_SECRET)}
            ) as resp:
                assert resp.status == 200
        async with http.get(daemon.url("/healthz")) as resp:
            health = await resp.json()
        assert health["channels"]["instagram"]["state"] == "connected"
        assert health["plugins"]["instagram"]["channels"] == ["instagram"]
    assert daemon.returncode == 0
    assert TOKEN not in daemon.stderr and "Hello from simulate" not in daemon.stderr
    status, out, err = await run_cli("gdpr", "export", f"instagram:{CUSTOMER}", "-c", str(config), env=env)
    assert status == 0, err
    texts = [m["text"] for c in json.loads(out)["conversations"] for m in c["messages"] if m["direction"] == "in"]
    assert sorted(texts) == ["Hello from simulate", "Hi! Is the café open on Sunday?"]
    stored = b"".join(p.read_bytes() for p in (tmp_path / "var").glob("carebridge.db*"))
    assert b"Hello from simulate" not in stored and b"Sunday" not in stored and CUSTOMER.encode() not in stored
