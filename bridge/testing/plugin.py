"""The kit's pytest fixtures, registered through carebridge's ``pytest11`` entry point.

Installing carebridge is enough for a plugin's tests to use them; nothing to
import or list in a ``conftest.py``. Every fixture cleans up after itself.

- ``free_port``: a loopback TCP port that was free a moment ago.
- ``recording_core``: a ``RecordingCore``; ``recording_core.context(http, "acme")``
  is the ``ChannelContext`` to build a channel on.
- ``http_session``: an ``aiohttp.ClientSession`` (the core lends channels one).
- ``serve_app``: ``await serve_app(app)`` serves an aiohttp app (a fake
  platform) on loopback and returns its ``TestServer``.
- ``bridge_factory``: ``await bridge_factory(config_text, plugins=[...])``
  builds a real Bridge on a store under ``tmp_path``; ``bridge_factory.serve(bridge)``
  serves it over HTTP (see ``make_test_bridge``).
- ``daemon_factory``: ``await daemon_factory(config_path)`` runs the real daemon
  until the test ends (see ``DaemonProcess``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.testing.asyncio_support import async_fixture
from bridge.testing.bridges import BridgeFactory
from bridge.testing.fakes import start_server
from bridge.testing.processes import DaemonProcess
from bridge.testing.processes import free_port as _free_port
from bridge.testing.recorder import RecordingCore


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return _free_port()


@pytest.fixture
def recording_core() -> RecordingCore:
    """A recorder of what a channel hands the core (it accepts statuses and media)."""
    return RecordingCore()


@async_fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session, closed after the test."""
    async with aiohttp.ClientSession() as session:
        yield session


@async_fixture
async def serve_app() -> AsyncIterator[Callable[[web.Application], Awaitable[TestServer]]]:
    """``await serve_app(app)``: serve ``app`` on loopback until the test ends."""
    servers: list[TestServer] = []

    async def serve(app: web.Application) -> TestServer:
        server = await start_server(app)
        servers.append(server)
        return server

    yield serve
    for server in reversed(servers):
        await server.close()


@async_fixture
async def bridge_factory(tmp_path: Path) -> AsyncIterator[BridgeFactory]:
    """Build real bridges on a store under ``tmp_path``; all are closed after the test."""
    factory = BridgeFactory(tmp_path)
    try:
        yield factory
    finally:
        await factory.close()


@async_fixture
async def daemon_factory() -> AsyncIterator[Callable[..., Awaitable[DaemonProcess]]]:
    """``await daemon_factory(config, **options)``: a started ``DaemonProcess``, stopped after the test."""
    daemons: list[DaemonProcess] = []

    async def start(config: Path | None, **options: Any) -> DaemonProcess:
        daemon = DaemonProcess(config, **options)
        daemons.append(daemon)
        return await daemon.start()

    yield start
    for daemon in reversed(daemons):
        if daemon.proc is not None and daemon.proc.returncode is None:
            await daemon.stop()
