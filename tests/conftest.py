"""Shared fixtures: a real third-party plugin installed as a ``*.dist-info`` folder.

Why a dist-info folder and not a patched loader: it is exactly how pip
installs a plugin, so discovery goes through ``importlib.metadata`` and the
``carebridge`` entry-point group as it would in production. Put the folder
on ``PYTHONPATH`` for a subprocess, or ``monkeypatch.syspath_prepend`` it.
"""

from __future__ import annotations

import ipaddress
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.core.test_store_kit import Backend
from tests.pg import PostgresServer, running_server

ACME_PLUGIN = '''
"""Acme Chat: a tiny third-party channel used by the core's tests."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time

from aiohttp import web

from bridge import (
    Attachment, Channel, ChannelAuthError, ChannelUnavailable, ConfigError, DeliveryReceipt, InboundMessage,
    SimulatedRequest, hookimpl,
)


class AcmeChannel(Channel):
    name = "acme"
    max_text_length = 500

    @classmethod
    def check_config(cls, section):
        if not isinstance(section.get("token"), str) or not section.get("token"):
            raise ConfigError("channels.acme.token: required (a non-empty string)")
        unknown = sorted(set(section) - {"enabled", "token", "fail_start", "slow_stop"})
        if unknown:
            raise ConfigError(f"channels.acme.{unknown[0]}: unknown key")

    starts = 0
    in_flight = 0  # webhook handlers still inside their X-Acme-Delay
    resumed = []  # (external_id, index, media_id) handed to resume_media, across instances

    async def start(self):
        type(self).starts += 1
        if self.config.get("fail_start") == "auth":
            raise ChannelAuthError("token rejected by Acme")
        if self.config.get("fail_start") == "once" and type(self).starts == 1:
            raise ChannelUnavailable("Acme is down for maintenance")

    stop_entered = None  # with slow_stop: asyncio.Events the test sets up
    stop_gate = None

    async def stop(self):
        if self.config.get("slow_stop"):
            type(self).stop_entered.set()
            await type(self).stop_gate.wait()

    async def send(self, message):
        return DeliveryReceipt(external_ids=("acme-1",))

    def web_app(self):
        app = web.Application()

        async def receive(request):
            if request.headers.get("X-Acme-Token") != self.config["token"]:
                raise web.HTTPForbidden(reason="bad token")
            body = await request.read()
            data = json.loads(body)
            self.in_flight += 1  # tests wait on GET /webhooks/acme/in-flight instead of sleeping
            try:
                await asyncio.sleep(float(request.headers.get("X-Acme-Delay", "0")))  # a slow platform handler
            finally:
                self.in_flight -= 1
            media = tuple(Attachment(kind="image", media_id=m, mime="image/png") for m in data.get("media", ()))
            await self.ctx.deliver([InboundMessage(channel="acme", sender=data["from"], external_id=data["id"],
                                                   text=data["text"], timestamp=time.time(), attachments=media)])
            return web.json_response({"ok": True})

        async def boom(request):
            raise RuntimeError("acme handler bug")

        async def in_flight(request):
            return web.json_response({"in_flight": self.in_flight})

        app.router.add_post("", receive)
        app.router.add_post("/", receive)
        app.router.add_get("/boom", boom)
        app.router.add_get("/in-flight", in_flight)
        return app

    async def resume_media(self, pending):
        # Media ids are fetched "from Acme" as their own bytes.
        for item in pending:
            type(self).resumed.append((item.external_id, item.index, item.attachment.media_id))
            await self.ctx.save_media(item.external_id, item.index, item.attachment.media_id.encode(), "image/png")

    @classmethod
    def simulate(cls, section, sender, text):
        body = json.dumps({"from": sender, "text": text, "id": f"sim-{time.time_ns()}"}).encode()
        return SimulatedRequest("POST", "/webhooks/acme", {"X-Acme-Token": section["token"],
                                                           "Content-Type": "application/json"}, body)


@hookimpl
def register_channels(register):
    register(AcmeChannel)


@contextlib.asynccontextmanager
async def _lifespan(bridge):
    marker = os.environ.get("ACME_LIFESPAN_FILE")
    if marker:
        with open(marker, "a") as f:
            f.write("enter\\n")
    try:
        yield
    finally:
        if marker:
            with open(marker, "a") as f:
                f.write("exit\\n")


@hookimpl
def lifespan(bridge):
    return _lifespan(bridge)
'''


def install_plugin(site: Path, dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """Write modules and a ``<dist>-<version>.dist-info`` with METADATA and entry_points.txt."""
    site.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[carebridge]\n{lines}", encoding="utf-8")


@pytest.fixture
def plugin_site(tmp_path: Path) -> Path:
    """A site directory holding ``acme-chat 1.2.3`` (channel ``acme``) and a broken plugin.

    ``broken-plugin 0.1`` registers entry point ``broken`` whose import fails.
    """
    site = tmp_path / "site"
    install_plugin(site, "acme-chat", "1.2.3", {"acme": "acme_chat"}, {"acme_chat": ACME_PLUGIN})
    install_plugin(
        site,
        "broken-plugin",
        "0.1",
        {"broken": "broken_plugin"},
        {"broken_plugin": 'raise ImportError("needs libbroken, which is not installed")\n'},
    )
    return site


_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_loopback(host: object) -> bool:
    if not isinstance(host, str):
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that tries to reach a host other than this machine's loopback.

    Every platform URL in a test config must point at a local fake; this makes
    a forgotten one a loud error instead of a connection attempt to the world.
    (Daemon subprocesses get their URLs from the same test configs.)
    """
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def guard(address: object) -> None:
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            raise OSError(f"tests may only connect to loopback addresses, not {address[0]!r}")

    def connect(self: socket.socket, address: object) -> None:
        guard(address)
        real_connect(self, address)  # type: ignore[arg-type]

    def connect_ex(self: socket.socket, address: object) -> int:
        guard(address)
        return real_connect_ex(self, address)  # type: ignore[arg-type]

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host is not None and not _is_loopback(host if not isinstance(host, bytes) else host.decode()):
            raise socket.gaierror(socket.EAI_NONAME, f"tests may only resolve loopback names, not {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session, started on first use (see tests/pg.py)."""
    with running_server() as server:
        yield server


@pytest.fixture
def pg_dsn(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    dsn = pg_server.new_database()
    yield dsn
    pg_server.drop_database(dsn)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each store backend in turn (PostgreSQL on a fresh database of the session's server)."""
    if request.param == "postgresql":
        return Backend("postgresql", request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_server"))
    return Backend("sqlite")
