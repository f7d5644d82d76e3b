"""The agent API of the real daemon (subprocess), with the real WhatsApp plugin talking to the fake Cloud API.

Logins with each kind of failure, a code refused once used (across a restart,
and across chat and API), the lock-out, a reply over the API reaching the
WhatsApp customer, and a console session's event stream getting a new
customer message.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pyotp

from tests.daemon import DaemonProcess, run_cli, write_config
from tests.e2e.harness import wait_for
from tests.e2e.world import (
    PAGE_ID,
    PAGE_TOKEN,
    WA_NUMBER_ID,
    WA_SECRET,
    WA_TEMPLATE,
    WA_TOKEN,
    World,
    channel_sections,
)
from tests.fakes.messenger_graph import FakeMessengerGraph
from tests.fakes.whatsapp_cloud import FakeWhatsAppCloud

PASSWORD = "correct horse battery staple"
ALICE = "+15550001111"
CUSTOMER = "+15557778888"
FAILED = {"error": {"code": "login_failed", "message": "wrong username, password or code"}}


async def _add(config: Path, name: str, channel: str, *extra: str) -> str:
    status, out, err = await run_cli(
        "agent", "add", name, "--channel", channel, "--password-stdin", *extra, "-c", str(config),
        stdin=f"{PASSWORD}\n".encode(),
    )  # fmt: skip
    assert status == 0, err
    found = re.search(r"secret=([A-Z2-7]{32})", out)
    assert found, out
    return found.group(1)


def _client() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _login(
    http: aiohttp.ClientSession, daemon: DaemonProcess, name: str, password: str, code: str
) -> tuple[int, Any]:
    body = {"username": name, "password": password, "totp": code}
    async with http.post(daemon.url("/api/login"), json=body) as response:
        return response.status, await response.json()


def _code(secret: str, offset: int = 0) -> str:
    """The code ``offset`` steps from now (the ±1 window accepts the next one)."""
    return pyotp.TOTP(secret).at(time.time() + 30 * offset)


async def test_daemon_login_failures_replays_lockout_reply_and_events(
    tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> None:
    wa = FakeWhatsAppCloud(token=WA_TOKEN, phone_number_id=WA_NUMBER_ID, app_secret=WA_SECRET, templates=(WA_TEMPLATE,))
    graph = FakeMessengerGraph(page_id=PAGE_ID, token=PAGE_TOKEN)
    world = World(wa, graph)
    wa_server = await aiohttp_server(wa.app)
    graph_server = await aiohttp_server(graph.app)
    sections = channel_sections(wa.graph_url(wa_server), str(graph_server.make_url("/v25.0")))
    config = write_config(tmp_path, sections + "[security]\nlogin_max_attempts = 3\n")
    alice = await _add(config, "alice", f"whatsapp:{ALICE}")
    root = await _add(config, "root", "console", "--role", "admin", "--queue", "vip")
    used = _code(alice)

    async with _client() as alice_api:
        async with DaemonProcess(config) as daemon:
            world.point_at(daemon.url("/"))
            status, answer = await _login(alice_api, daemon, "alice", PASSWORD, used)
            assert status == 200, answer
            csrf = answer["csrf_token"]
            answers = []
            async with _client() as http:
                for name, password, code in (
                    ("mallory", PASSWORD, _code(alice)),  # unknown user
                    ("root", "not the password", _code(root)),  # wrong password
                    ("root", PASSWORD, f"{(int(_code(root)) + 1) % 1_000_000:06d}"),  # wrong code
                    ("alice", PASSWORD, used),  # replayed code
                ):
                    answers.append(await _login(http, daemon, name, password, code))
            assert answers == [(401, FAILED)] * 4

        # A restart forgets nothing: the used code is still refused, the session still holds.
        async with DaemonProcess(config) as daemon:
            world.point_at(daemon.url("/"))
            async with _client() as http:
                assert await _login(http, daemon, "alice", PASSWORD, used) == (401, FAILED)
                # A code used in chat is refused on the API.
                chat_code = _code(alice, 1)
                await world.whatsapp(ALICE, f"/login {chat_code}")
                await wait_for(
                    lambda: any(t.startswith("You are logged in") for t in world.wa_texts(ALICE)), what="login"
                )
                assert await _login(http, daemon, "alice", PASSWORD, chat_code) == (401, FAILED)
            async with alice_api.get(daemon.url("/api/me")) as response:
                assert response.status == 200, "a session survives a restart"

            # root (an admin on the console) sees the new customer message in his event stream.
            async with _client() as console:
                status, me = await _login(console, daemon, "root", PASSWORD, _code(root))
                assert status == 200, me
                events: list[tuple[str, Any]] = []

                async def listen() -> None:
                    async with console.get(daemon.url("/api/events")) as response:
                        assert response.status == 200
                        name = ""
                        async for raw in response.content:
                            line = raw.decode().rstrip("\r\n")
                            if line.startswith("event: "):
                                name = line[7:]
                            elif line.startswith("data: "):
                                events.append((name, json.loads(line[6:])))
                                if name == "message":
                                    return

                listener = asyncio.create_task(listen())
                await asyncio.sleep(0.3)
                await world.whatsapp(CUSTOMER, "Hello, where is my order?", name="Jan")
                async with asyncio.timeout(30):
                    await listener
                message = events[-1][1]
                assert message["message"]["text"] == "Hello, where is my order?"
                conversation_id = message["conversation_id"]
                await wait_for(lambda: any("where is my order" in t for t in world.wa_texts(ALICE)), what="relay")

                # alice (on her WhatsApp shift, holding the conversation) replies over the API.
                url = daemon.url(f"/api/conversations/{conversation_id}/messages")
                async with alice_api.post(url, json={"text": "It ships today."}) as response:
                    assert response.status == 403, "no CSRF token, no reply"
                async with alice_api.post(
                    url, json={"text": "It ships today."}, headers={"X-CSRF-Token": csrf}
                ) as response:
                    assert response.status == 201, await response.text()
                await wait_for(lambda: "It ships today." in world.wa_texts(CUSTOMER), what="the reply at the customer")
                async with console.get(url) as response:
                    assert response.status == 200, "an admin reads every transcript"
                    texts = [m["text"] for m in (await response.json())["messages"]]
                assert texts == ["Hello, where is my order?", "It ships today."]

            # Lock-out: three failures, then 429 with Retry-After even with the right password and code.
            async with _client() as http:
                for _ in range(3):
                    assert (await _login(http, daemon, "root", "wrong password!", _code(root)))[0] == 401
                async with http.post(
                    daemon.url("/api/login"), json={"username": "root", "password": PASSWORD, "totp": _code(root, 1)}
                ) as response:
                    assert response.status == 429
                    assert 0 < int(response.headers["Retry-After"]) <= 900
            async with aiohttp.ClientSession() as http:
                async with http.get(daemon.url("/metrics")) as response:
                    metrics = await response.text()
            failures = re.search(r"^carebridge_login_failures_total (\S+)$", metrics, re.M)
            assert failures and float(failures.group(1)) >= 5

        status, out, err = await run_cli("audit", "verify", "-c", str(config))
        assert status == 0, out + err
        assert daemon.returncode == 0, daemon.stderr
        for secret in (PASSWORD, CUSTOMER, CUSTOMER.lstrip("+"), "It ships today"):
            assert secret not in daemon.stderr
