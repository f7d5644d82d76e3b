"""The plugin authors' kit (``bridge.testing``): its pieces and the fixtures its pytest plugin registers.

The fixtures used here (``recording_core``, ``http_session``, ``serve_app``,
``bridge_factory``, ``free_port``) are not imported: the ``pytest11`` entry
point of the installed carebridge brings them, as it does for a plugin's tests.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge import ChannelState, DeliveryError, InboundMessage, StatusUpdate
from bridge.testing import (
    BridgeFactory,
    FakePlatform,
    MemoryChannel,
    RecordingCore,
    ScriptedAnswer,
    add_agent,
    channels_plugin,
    login_code,
    make_test_bridge,
    serve_bridge,
)
from tests.e2e.harness import wait_for

MEMORY = "[channels.memory]\n"


def test_the_kit_is_a_pytest_plugin_of_the_installed_core() -> None:
    [entry] = [e for e in metadata.entry_points(group="pytest11") if e.value == "bridge.testing.plugin"]
    assert entry.name == "carebridge" and entry.dist is not None and entry.dist.name == "carebridge"


def test_free_port_is_a_loopback_port_nobody_listens_on(free_port: int) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port))


async def test_recording_core_records_and_fails_on_request(
    recording_core: RecordingCore, http_session: aiohttp.ClientSession
) -> None:
    ctx = recording_core.context(http_session, "acme", max_body=1234)
    assert (ctx.http, ctx.max_body, ctx.log.name) == (http_session, 1234, "carebridge.acme")
    message = InboundMessage(channel="acme", sender="ann", external_id="m1", text="hi", timestamp=1.0)
    await ctx.deliver([message])
    await ctx.update_status([StatusUpdate(channel="acme", status="read", timestamp=2.0, external_id="o1")])
    await ctx.save_media("m1", 0, b"png", "image/png")
    ctx.report(ChannelState.CONNECTED, None)
    assert recording_core.messages == [message] and recording_core.statuses[0].status == "read"
    assert recording_core.media == [("m1", 0, b"png", "image/png")]
    assert recording_core.reports == [(ChannelState.CONNECTED, None)]
    recording_core.fail_deliver = RuntimeError("disk full")
    with pytest.raises(RuntimeError, match="disk full"):
        await ctx.deliver([message])
    strict = RecordingCore(statuses=False, media=False).context(http_session, "acme")
    with pytest.raises(AssertionError, match="reports no statuses"):
        await strict.update_status([])
    with pytest.raises(AssertionError, match="media arrive as URLs"):
        await strict.save_media("m1", 0, b"", None)


async def test_a_memory_channels_customer_reaches_an_agent_and_the_answer_comes_back(tmp_path: Path) -> None:
    bridge = await make_test_bridge(tmp_path, MEMORY, plugins=[channels_plugin(MemoryChannel)])
    try:
        memory = bridge.channels["memory"]
        assert isinstance(memory, MemoryChannel)
        assert bridge.channel_state("memory")[0] is ChannelState.CONNECTED  # the core reports it, after start()
        _, secret = await add_agent(bridge, "alice", "memory:agent-1")
        await memory.inbound("agent-1", f"/login {login_code(secret)}")
        await memory.inbound("ann", "Where is my parcel?")
        await wait_for(lambda: any("Where is my parcel?" in t for t in memory.texts_to("agent-1")), what="relay")
        await memory.inbound("agent-1", "On its way.")
        await wait_for(lambda: memory.texts_to("ann") == ["On its way."], what="the answer")
        assert memory.receipts and all(r.startswith("memory-out-") for r in memory.receipts.values())
    finally:
        await bridge.close()


async def test_a_scripted_failure_is_retried_by_the_outbox(tmp_path: Path) -> None:
    fast = '[delivery]\nretry_base = "10ms"\nretry_max = "20ms"\n'
    bridge = await make_test_bridge(tmp_path, MEMORY + fast, plugins=[channels_plugin(MemoryChannel)])
    try:
        memory = bridge.channels["memory"]
        assert isinstance(memory, MemoryChannel)
        memory.script = [DeliveryError("HTTP 500", retryable=True)]
        _, secret = await add_agent(bridge, "alice", "memory:agent-1")
        await memory.inbound("agent-1", f"/login {login_code(secret)}")
        await wait_for(lambda: len(memory.sent) == 1, what="the login answer, at the second attempt")
        assert len(memory.attempts) == 2
    finally:
        await bridge.close()


async def test_a_second_bridge_on_the_same_folder_opens_the_same_store(tmp_path: Path) -> None:
    first = await make_test_bridge(tmp_path, MEMORY, plugins=[channels_plugin(MemoryChannel)])
    try:
        await first.channels["memory"].inbound("ann", "hello", external_id="m-1")  # type: ignore[attr-defined]
    finally:
        await first.close()
    second = await make_test_bridge(tmp_path, MEMORY, plugins=[channels_plugin(MemoryChannel)], start=False)
    try:
        assert await second.store.read(lambda tx: tx.messages.id_by_external("memory", "m-1")) is not None
    finally:
        await second.close()


async def test_bridge_factory_serves_a_bridge_and_cleans_up(bridge_factory: BridgeFactory) -> None:
    bridge = await bridge_factory(MEMORY, plugins=[channels_plugin(MemoryChannel)], start=False)
    server = await bridge_factory.serve(bridge)  # starting the app starts the bridge
    async with aiohttp.ClientSession() as session, session.get(server.make_url("/healthz")) as response:
        body = await response.json()
    assert response.status == 200 and body["channels"]["memory"]["state"] == "connected"
    assert bridge_factory.bridges == [bridge] and bridge_factory.servers == [server]


async def test_serve_bridge_stops_the_bridge_with_its_server(tmp_path: Path) -> None:
    bridge = await make_test_bridge(tmp_path, MEMORY, plugins=[channels_plugin(MemoryChannel)], start=False)
    server = await serve_bridge(bridge)
    assert str(server.make_url("/")).startswith("http://127.0.0.1:")
    assert bridge.health()["outbox"]["running"] is True
    await server.close()
    assert bridge.health()["outbox"]["running"] is False
    await bridge.close()


def test_channels_plugin_needs_a_class() -> None:
    name, plugin = channels_plugin(MemoryChannel)
    assert name == "memory" and "MemoryChannel" in repr(plugin)
    with pytest.raises(ValueError, match="at least one"):
        channels_plugin()


class FakeEcho(FakePlatform):
    """A platform whose only route echoes; scripted answers apply to POSTs only."""

    def __init__(self) -> None:
        super().__init__()
        self.app.router.add_route("*", "/echo", self.echo)

    async def echo(self, request: web.Request) -> web.Response:
        return web.json_response({"got": (await request.read()).decode()})

    def scripted_for(self, request: web.Request) -> bool:
        return request.method == "POST"


async def test_fake_platforms_record_requests_and_script_answers(
    serve_app: Callable[[web.Application], Awaitable[TestServer]],
) -> None:
    fake = FakeEcho()
    server = await serve_app(fake.app)
    fake.fail_next(2, status=503, body={"error": "busy"}, headers={"Retry-After": "7"}, after=1)
    fake.script(ScriptedAnswer(status=429, body="slow down"))
    answers: list[tuple[int, Any]] = []
    async with aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/echo"), params={"q": "1"}) as response:  # not scripted: a GET
            answers.append((response.status, await response.json()))
        for n in range(5):
            async with session.post(server.make_url("/echo?x=1&x=2"), data=f"body {n}") as response:
                answers.append((response.status, response.headers.get("Retry-After"), await response.text()))
    assert answers[0] == (200, {"got": ""})
    assert [a[0] for a in answers[1:]] == [200, 503, 503, 429, 200]
    assert answers[2][1:] == ("7", '{"error": "busy"}') and answers[4][2] == "slow down"
    assert fake.pending_script == 0
    posts = fake.requests_to("/echo", "POST")
    assert [r.body for r in posts] == [f"body {n}".encode() for n in range(5)] and posts[0].query == {"x": "2"}
    assert (fake.requests[0].method, fake.requests[0].query) == ("GET", {"q": "1"})
    async with aiohttp.ClientSession() as session, session.put(server.make_url("/echo"), json={"a": 1}) as response:
        assert response.status == 200
    assert fake.requests[-1].json() == {"a": 1} and fake.requests[-1].headers["Content-Type"] == "application/json"


async def test_a_fake_platform_can_drop_the_connection(
    serve_app: Callable[[web.Application], Awaitable[TestServer]],
) -> None:
    fake = FakeEcho()
    server = await serve_app(fake.app)
    fake.disconnect_next(1)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.post(server.make_url("/echo"), data=b"x") as response:
                await response.read()
        async with session.post(server.make_url("/echo"), data=b"y") as response:
            assert (await response.json()) == {"got": "y"}
    assert [r.body for r in fake.requests] == [b"x", b"y"]
