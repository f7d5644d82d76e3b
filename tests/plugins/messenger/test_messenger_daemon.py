"""The installed plugin inside the real daemon: mounted webhook, simulate, dedupe, health.

These run ``carebridge run`` as a subprocess (tests/daemon.py) with the
Messenger channel enabled and its Graph URL on the local fake, so they show
the plugin is found through its entry point and wired as the core wires it.
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
from tests.fakes.messenger_graph import FakeMessengerGraph
from tests.plugins.messenger.conftest import (
    APP_SECRET,
    PAGE_ID,
    PAGE_TOKEN,
    VERIFY_TOKEN,
    fixture_bytes,
)


async def _daemon_config(tmp_path: Path, graph_url: str) -> Path:
    (tmp_path / "var").mkdir()
    write_key_file(tmp_path / "var" / "master.key", generate_key())
    return write_config(
        tmp_path,
        "[channels.messenger]\n"
        f'page_id = "{PAGE_ID}"\n'
        'page_access_token = "env:H3_TEST_PAGE_TOKEN"\n'
        f'app_secret = "{APP_SECRET}"\n'
        f'verify_token = "{VERIFY_TOKEN}"\n'
        f'graph_url = "{graph_url}"\n',
    )


async def test_daemon_serves_the_messenger_webhook_and_simulate_reaches_it(
    tmp_path: Path, aiohttp_server: Callable[[web.Application], Awaitable[TestServer]]
) -> None:
    graph = FakeMessengerGraph(page_id=PAGE_ID, token=PAGE_TOKEN)
    server = await aiohttp_server(graph.app)
    config = await _daemon_config(tmp_path, str(server.make_url("/v25.0")))
    env = {"H3_TEST_PAGE_TOKEN": PAGE_TOKEN}
    async with DaemonProcess(config, env=env) as daemon, aiohttp.ClientSession() as http:
        params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "8412"}
        async with http.get(daemon.url("/webhooks/messenger"), params=params) as resp:
            assert (resp.status, await resp.text()) == (200, "8412")
        body = fixture_bytes("messenger-text-message.json")
        async with http.post(
            daemon.url("/webhooks/messenger"), data=body, headers={"X-Hub-Signature-256": sign(body, "wrong")}
        ) as resp:
            assert resp.status == 403
        status, out, err = await run_cli(
            "simulate",
            "messenger",
            "--from",
            "2000000000000001",
            "--text",
            "Hello from simulate",
            "-c",
            str(config),
            env=env,
        )
        assert status == 0, err
        assert "HTTP 200" in out
        # Meta's retry of the same signed body: acknowledged again, stored once.
        for _ in range(2):
            async with http.post(
                daemon.url("/webhooks/messenger"), data=body, headers={"X-Hub-Signature-256": sign(body, APP_SECRET)}
            ) as resp:
                assert resp.status == 200
        async with http.get(daemon.url("/healthz")) as resp:
            health = await resp.json()
        assert health["channels"]["messenger"]["state"] == "connected"
        assert health["plugins"]["messenger"]["channels"] == ["messenger"]
    assert daemon.returncode == 0
    assert PAGE_TOKEN not in daemon.stderr and "Hello from simulate" not in daemon.stderr
    status, out, err = await run_cli("gdpr", "export", "messenger:2000000000000001", "-c", str(config), env=env)
    assert status == 0, err
    texts = [m["text"] for c in json.loads(out)["conversations"] for m in c["messages"] if m["direction"] == "in"]
    assert sorted(texts) == ["Hello from simulate", "Hello, is anyone there? Café opens at 9?"]
    stored = b"".join(p.read_bytes() for p in (tmp_path / "var").glob("carebridge.db*"))
    assert b"Hello from simulate" not in stored and b"anyone there" not in stored
