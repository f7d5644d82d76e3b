"""The Bridge and its web app in-process, over real loopback HTTP (pytest-aiohttp)."""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest

from bridge.app.bridge import Bridge
from bridge.errors import ChannelAuthError, ConfigError, PluginLoadError
from bridge.models import ChannelState
from bridge.testing import BridgeFactory as KitFactory
from bridge.web import make_app

BridgeFactory = Callable[..., Any]


@pytest.fixture
def acme(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(plugin_site))
    sys.modules.pop("acme_chat", None)
    module = importlib.import_module("acme_chat")
    yield module
    sys.modules.pop("acme_chat", None)


@pytest.fixture
def make_bridge(bridge_factory: KitFactory, acme: ModuleType) -> BridgeFactory:
    """Build a Bridge (not started) from config text; plugins: acme, or every installed one (the kit's factory)."""

    async def factory(
        extra: str = "[channels.acme]\ntoken = 'acme-token'\n", *, entry_points: bool = False, server: str = ""
    ) -> Bridge:
        plugins = [] if entry_points else [("acme", acme)]
        return await bridge_factory(extra, plugins=plugins, entry_points=entry_points, server=server, start=False)

    return factory


async def test_healthz_reports_version_plugins_channels_store_scheduler(
    make_bridge: BridgeFactory, aiohttp_client: Any
) -> None:
    instance = await make_bridge()
    client = await aiohttp_client(make_app(instance))
    response = await client.get("/healthz")
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["status"] == "ok"
    assert body["version"]
    assert body["plugins"]["acme"] == {"version": None, "channels": ["acme"], "error": None}
    assert body["channels"] == {"acme": {"state": "connected", "reason": None}}
    assert body["store"]["status"] == "ok"
    assert body["scheduler"]["running"] is True
    assert [job["id"] for job in body["scheduler"]["jobs"]] == ["retention", "sessions", "audit_anchor"]
    assert body["outbox"]["running"] is True


async def test_broken_plugin_not_enabled_is_listed_and_degrades_health(
    make_bridge: BridgeFactory, aiohttp_client: Any
) -> None:
    instance = await make_bridge(entry_points=True)  # the site also holds broken-plugin
    client = await aiohttp_client(make_app(instance))
    body = await (await client.get("/healthz")).json()
    assert body["status"] == "degraded"
    assert body["plugins"]["broken"]["error"] == "ImportError: needs libbroken, which is not installed"
    assert body["plugins"]["acme"]["version"] == "1.2.3"
    assert body["channels"]["acme"]["state"] == "connected"


async def test_enabled_channel_of_a_broken_plugin_stops_start_up(make_bridge: BridgeFactory) -> None:
    with pytest.raises(
        PluginLoadError, match="channels.broken: enabled, but plugin 'broken' failed to load: ImportError"
    ):
        await make_bridge("[channels.broken]\n", entry_points=True)


async def test_missing_required_plugin_stops_start_up(make_bridge: BridgeFactory) -> None:
    with pytest.raises(PluginLoadError, match="plugins.required: plugin 'telepathy' is not available: not installed"):
        await make_bridge("[plugins]\nrequired = ['telepathy']\n")


async def test_invalid_channel_section_stops_start_up(make_bridge: BridgeFactory) -> None:
    with pytest.raises(ConfigError, match="channels.acme.token: required"):
        await make_bridge("[channels.acme]\ntoken = ''\n")


async def test_refused_credentials_stop_start_up(make_bridge: BridgeFactory) -> None:
    instance = await make_bridge("[channels.acme]\ntoken = 'acme-token'\nfail_start = 'auth'\n")
    with pytest.raises(ChannelAuthError, match="channel acme: the platform refused the credentials: token rejected"):
        await instance.start()
    assert instance.channel_state("acme") == (ChannelState.BAD_CREDENTIALS, "token rejected by Acme")
    assert not instance.scheduler.running  # start-up rolled back


async def test_unreachable_channel_is_retried_in_the_background(make_bridge: BridgeFactory, acme: ModuleType) -> None:
    acme.AcmeChannel.starts = 0
    instance = await make_bridge("[channels.acme]\ntoken = 'acme-token'\nfail_start = 'once'\n")
    await instance.start()
    assert instance.channel_state("acme") == (ChannelState.TRANSIENT_DISCONNECT, "Acme is down for maintenance")
    assert instance.health()["status"] == "degraded"
    for _ in range(100):
        if instance.channel_state("acme")[0] is ChannelState.CONNECTED:
            break
        await asyncio.sleep(0.05)
    assert instance.channel_state("acme") == (ChannelState.CONNECTED, None)
    assert acme.AcmeChannel.starts == 2


async def test_webhook_is_stored_counted_and_timed(make_bridge: BridgeFactory, aiohttp_client: Any) -> None:
    instance = await make_bridge()
    client = await aiohttp_client(make_app(instance))
    body = json.dumps({"from": "ann-1", "text": "hello there", "id": "m-1"})
    response = await client.post("/webhooks/acme", data=body, headers={"X-Acme-Token": "acme-token"})
    assert response.status == 200, await response.text()
    count = await instance.store.read(
        lambda tx: tx._session.conn.execute("SELECT count(*) FROM messages WHERE direction = 'in'").fetchone()[0]
    )
    assert count == 1
    metrics = await (await client.get("/metrics")).text()
    assert 'carebridge_http_requests_total{route="/webhooks/acme",status="200"} 1.0' in metrics
    assert 'carebridge_webhook_latency_seconds_count{channel="acme"} 1.0' in metrics
    assert 'carebridge_messages_stored_total{channel="acme",direction="in"} 1.0' in metrics


async def test_errors_are_json_with_the_right_status(make_bridge: BridgeFactory, aiohttp_client: Any) -> None:
    instance = await make_bridge()
    client = await aiohttp_client(make_app(instance))
    response = await client.get("/nowhere")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
    response = await client.post("/healthz")
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]
    response = await client.post("/webhooks/acme", data="{}", headers={"X-Acme-Token": "wrong"})
    assert response.status == 403
    assert await response.json() == {"error": {"code": "forbidden", "message": "bad token"}}
    response = await client.get("/webhooks/acme/boom")
    assert response.status == 500
    assert await response.json() == {"error": {"code": "internal_error", "message": "internal error"}}
    metrics = await (await client.get("/metrics")).text()
    assert 'carebridge_http_requests_total{route="unmatched",status="404"} 1.0' in metrics
    assert 'carebridge_http_requests_total{route="/webhooks/acme",status="500"} 1.0' in metrics


async def test_body_over_max_body_is_413_json_and_stores_nothing(
    make_bridge: BridgeFactory, aiohttp_client: Any
) -> None:
    instance = await make_bridge()
    limit = instance.config.server.max_body
    client = await aiohttp_client(make_app(instance))
    big = json.dumps({"from": "ann", "text": "x" * limit, "id": "big"}).encode()
    response = await client.post("/webhooks/acme", data=io.BytesIO(big), headers={"X-Acme-Token": "acme-token"})
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit applies while reading
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    response = await client.post("/webhooks/acme", data=chunks(), headers={"X-Acme-Token": "acme-token"})
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "too_large"
    count = await instance.store.read(
        lambda tx: tx._session.conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    )
    assert count == 0


async def test_small_max_body_from_config(make_bridge: BridgeFactory, aiohttp_client: Any) -> None:
    instance = await make_bridge("[channels.acme]\ntoken = 'acme-token'\n", server="max_body = 100")
    client = await aiohttp_client(make_app(instance))
    response = await client.post("/webhooks/acme", data=b"x" * 101, headers={"X-Acme-Token": "acme-token"})
    assert response.status == 413
    assert (await response.json())["error"]["message"] == "request body exceeds 100 bytes"
    response = await client.post("/webhooks/acme", data=b"not json", headers={"X-Acme-Token": "wrong"})
    assert response.status == 403  # under the limit: the handler decides


async def test_lifespan_contexts_are_entered_and_left(
    make_bridge: BridgeFactory, aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "lifespan.txt"
    monkeypatch.setenv("ACME_LIFESPAN_FILE", str(marker))
    instance = await make_bridge()
    client = await aiohttp_client(make_app(instance))
    assert (await client.get("/healthz")).status == 200
    assert marker.read_text() == "enter\n"
    await client.close()
    assert marker.read_text() == "enter\nexit\n"


async def test_a_cancelled_stop_is_finished_by_close(
    make_bridge: BridgeFactory, acme: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A grace period running out cancels the waiter, not the shutdown: close() still leaves every lifespan."""
    marker = tmp_path / "lifespan.txt"
    monkeypatch.setenv("ACME_LIFESPAN_FILE", str(marker))
    acme.AcmeChannel.stop_entered, acme.AcmeChannel.stop_gate = asyncio.Event(), asyncio.Event()
    instance = await make_bridge("[channels.acme]\ntoken = 'acme-token'\nslow_stop = true\n")
    await instance.start()
    stopping = asyncio.create_task(instance.stop())
    await acme.AcmeChannel.stop_entered.wait()  # the bridge is inside the channel's stop()
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert marker.read_text() == "enter\n"
    acme.AcmeChannel.stop_gate.set()
    await instance.close()
    assert marker.read_text() == "enter\nexit\n"


async def test_metrics_registry_is_per_bridge(make_bridge: BridgeFactory) -> None:
    first = await make_bridge()
    first.metrics.login_failures.inc()
    second = await make_bridge()
    body, content_type = second.metrics.render()
    assert content_type.startswith("text/plain")
    assert b"carebridge_login_failures_total 0.0" in body
    assert b"\ncarebridge_outbox_depth 0.0\n" in body
    assert b"\ncarebridge_deliveries_total{" not in body  # labelled: no samples until a delivery


async def test_client_session_is_shared_with_channels(make_bridge: BridgeFactory) -> None:
    instance = await make_bridge()
    channel = instance.channels["acme"]
    assert channel.ctx.http is instance.http
    assert isinstance(instance.http, aiohttp.ClientSession)
    assert channel.ctx.max_body == instance.config.server.max_body


async def test_media_left_unfetched_goes_to_the_channel_at_the_next_start(
    make_bridge: BridgeFactory, aiohttp_client: Any, acme: ModuleType
) -> None:
    acme.AcmeChannel.resumed = []
    first = await make_bridge()
    client = await aiohttp_client(make_app(first))
    body = json.dumps({"from": "ann-1", "text": "photo", "id": "m-1", "media": ["media-photo"]})
    response = await client.post("/webhooks/acme", data=body, headers={"X-Acme-Token": "acme-token"})
    assert response.status == 200, await response.text()
    await client.close()  # stopped before Acme's media was ever fetched
    await first.close()
    assert acme.AcmeChannel.resumed == []

    second = await make_bridge()
    await second.start()
    assert acme.AcmeChannel.resumed == [("m-1", 0, "media-photo")]
    stored = await second.store.read(lambda tx: tx.attachments.read(tx.attachments.by_external("acme", "m-1", 0).id))
    assert stored == b"media-photo"
    await second.close()

    third = await make_bridge()
    await third.start()
    assert len(acme.AcmeChannel.resumed) == 1  # fetched once, never handed out again


async def test_a_strategy_no_plugin_provides_stops_start_up(make_bridge: BridgeFactory) -> None:
    with pytest.raises(ConfigError, match="routing.strategy: no installed plugin provides strategy 'fastest'"):
        await make_bridge("[channels.acme]\ntoken = 'acme-token'\n[routing]\nstrategy = 'fastest'\n")


# --- the edge: body budgets and timeouts, the admin endpoints -------------------


async def _start_slow_post(port: int, length: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a POST to the acme webhook whose body (``length`` bytes) is not sent yet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /webhooks/acme HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Acme-Token: acme-token\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode()
    )
    await writer.drain()
    return reader, writer


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer off a raw connection: status, headers, body (by Content-Length)."""
    status = int((await asyncio.wait_for(reader.readline(), 5)).split()[1])
    headers: dict[str, str] = {}
    while line := (await asyncio.wait_for(reader.readline(), 5)).strip():
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 5)
    return status, headers, body


def _padded_webhook(length: int, message_id: str) -> bytes:
    body = json.dumps({"from": "ann", "id": message_id, "text": ""}).encode()
    return body[:-2] + b" " * (length - len(body)) + body[-2:]


@pytest.mark.parametrize(
    ("server", "status", "code"),
    [
        ("max_body = 1000\nmax_inflight_body_bytes = 1000\nmax_inflight_body_bytes_per_address = 5000", 503, "busy"),
        (
            "max_body = 1000\nmax_inflight_body_bytes = 5000\nmax_inflight_body_bytes_per_address = 1000",
            429,
            "too_many_requests",
        ),
    ],
    ids=["total", "per-address"],
)
async def test_bodies_beyond_the_inflight_budget_are_refused_before_being_read(
    make_bridge: BridgeFactory, aiohttp_client: Any, server: str, status: int, code: str
) -> None:
    instance = await make_bridge(server=server)
    client = await aiohttp_client(make_app(instance))
    reader, writer = await _start_slow_post(client.port, 1000)  # holds the whole budget while it crawls
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        response = await client.post("/webhooks/acme", data=b"{}", headers={"X-Acme-Token": "acme-token"})
        if response.status == status or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.02)  # the first request's head has not been parsed yet
    assert response.status == status
    error = (await response.json())["error"]
    assert set(error) == {"code", "message"} and error["code"] == code and "in flight" in error["message"]
    assert response.headers["Retry-After"] == "1" and response.headers.get("Connection") == "close"
    assert (await client.get("/healthz")).status == 200, "requests without a body pass"
    writer.write(_padded_webhook(1000, "slow-1"))
    first, _, answer = await _read_answer(reader)
    writer.close()
    assert first == 200, answer
    body = json.dumps({"from": "bob", "id": "after", "text": "hi"}).encode()
    response = await client.post("/webhooks/acme", data=body, headers={"X-Acme-Token": "acme-token"})
    assert response.status == 200, "the budget was given back"


async def test_a_body_slower_than_body_timeout_gets_408(make_bridge: BridgeFactory, aiohttp_client: Any) -> None:
    instance = await make_bridge(server='body_timeout = "300ms"')
    client = await aiohttp_client(make_app(instance))
    reader, writer = await _start_slow_post(client.port, 100)
    writer.write(b'{"from"')
    status, headers, answer = await _read_answer(reader)
    writer.close()
    assert (status, headers["connection"]) == (408, "close")
    assert json.loads(answer) == {
        "error": {"code": "request_timeout", "message": "request body not received within 0.3s"}
    }
    count = await instance.store.read(
        lambda tx: tx._session.conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    )
    assert count == 0


async def test_admin_listen_moves_healthz_and_metrics_off_the_main_app(
    make_bridge: BridgeFactory, aiohttp_client: Any
) -> None:
    from bridge.web.app import make_admin_app

    instance = await make_bridge(server='admin_listen = "127.0.0.1:1"')
    main = await aiohttp_client(make_app(instance))
    for path in ("/healthz", "/metrics"):
        response = await main.get(path)
        assert response.status == 404 and (await response.json())["error"]["code"] == "not_found"
    admin = await aiohttp_client(make_admin_app(instance))
    assert (await admin.get("/healthz")).status == 200
    assert (await admin.get("/metrics")).status == 200
    assert (await admin.post("/webhooks/acme", data=b"{}")).status == 404


async def test_admin_token_guards_healthz_and_metrics(
    make_bridge: BridgeFactory, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CB_TEST_ADMIN", "tok-admin-1")
    instance = await make_bridge(server='admin_token = "env:CB_TEST_ADMIN"')
    client = await aiohttp_client(make_app(instance))
    for path in ("/healthz", "/metrics"):
        for headers in ({}, {"Authorization": "Bearer tok-admin-2"}, {"Authorization": "Basic tok-admin-1"}):
            response = await client.get(path, headers=headers)
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "unauthorized"
        assert (await client.get(path, headers={"Authorization": "Bearer tok-admin-1"})).status == 200
        assert (await client.get(path, headers={"Authorization": "bearer  tok-admin-1"})).status == 200
    body = json.dumps({"from": "ann", "id": "t-1", "text": "hi"}).encode()
    response = await client.post("/webhooks/acme", data=body, headers={"X-Acme-Token": "acme-token"})
    assert response.status == 200, "webhooks need no admin token"
