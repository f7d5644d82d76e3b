"""Shared set-up for the API tests: a real Bridge and its web app over loopback, agents with passwords.

The Bridge is the production one with the in-memory test channels of the e2e
harness (genuine ``Channel`` plugins); its store may run on a settable clock,
so lock-outs and expiries are tested without sleeping. Passwords are hashed
with the real scrypt parameters, once per test module.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiohttp.test_utils import TestClient

from bridge import agents as agents_repo
from bridge.agents import passwords
from bridge.app.bridge import Bridge
from bridge.config import load_config
from bridge.plugins import make_plugin_manager
from bridge.relay import strategies
from bridge.web import make_app
from tests.core.agentkit import parse_address
from tests.daemon import write_config
from tests.e2e.harness import _TEST_CHANNELS, CHANNELS, MemoryChannel

PASSWORD = "correct horse battery staple"
DeskFactory = Callable[..., Awaitable["ApiDesk"]]


@functools.cache
def password_hash() -> str:
    """The hash of ``PASSWORD`` (scrypt is slow on purpose: computed once)."""
    return passwords.hash_password(PASSWORD)


class LiveClock:
    """The real clock plus an offset a test may move (``now += 600``): the store's clock in API tests.

    Running with real time keeps the store in step with the relay and the
    outbox worker (which use the real clock); moving it forward is for what
    the store alone decides (lock-outs, session expiry).
    """

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    @property
    def now(self) -> float:
        return self()

    @now.setter
    def now(self, value: float) -> None:
        self.offset += value - self()


class ApiDesk:
    """A started bridge, an HTTP client of its app, and the agents' TOTP secrets."""

    def __init__(self, bridge: Bridge, client: TestClient[Any, Any], clock: LiveClock) -> None:
        self.bridge = bridge
        self.client = client
        self.clock = clock
        self.secrets: dict[str, str] = {}
        self.logins: dict[str, int] = {}

    @property
    def memory(self) -> MemoryChannel:
        channel = self.bridge.channels["memory"]
        assert isinstance(channel, MemoryChannel)
        return channel

    async def add_agent(self, name: str, address: str = "console", **kwargs: Any) -> agents_repo.Agent:
        """Enrol an agent with ``PASSWORD`` and a fresh TOTP secret."""
        secret = pyotp.random_base32(32)
        self.secrets[name] = secret
        return await self.bridge.store.write(
            lambda tx: agents_repo.create_agent(
                tx, name=name, address=parse_address(address), totp_secret=secret, password_hash=password_hash(),
                **kwargs,
            )
        )  # fmt: skip

    def code(self, name: str, at: float | None = None) -> str:
        """The agent's TOTP code at ``at`` (default: the clock's now)."""
        return pyotp.TOTP(self.secrets[name]).at(self.clock.now if at is None else at)

    async def login(self, name: str, *, password: str = PASSWORD, code: str | None = None) -> tuple[int, Any]:
        """POST /api/login; return the status and the JSON answer (the cookie stays in the client's jar)."""
        body = {"username": name, "password": password, "totp": self.code(name) if code is None else code}
        async with self.client.post("/api/login", json=body) as response:
            return response.status, await response.json()

    async def session(self, name: str) -> str:
        """Log ``name`` in and return the CSRF token.

        The first login uses the current code, a second the next one (inside
        the ±1 step window), so a replay is never what refuses it and the
        clock need not move (the outbox worker runs on the real clock).
        """
        count = self.logins.get(name, 0)
        if count > 1:
            raise AssertionError("at most two logins per agent per test without moving the clock")
        self.logins[name] = count + 1
        status, body = await self.login(name, code=self.code(name, self.clock.now + 30 * count))
        assert status == 200, body
        return str(body["csrf_token"])


@pytest.fixture
async def make_desk(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[DeskFactory]:
    """Build desks: a bridge whose store clock can be moved forward, served by its real app."""
    bridges: list[Bridge] = []

    async def factory(extra: str = "", *, server: str = "", plugins: list[tuple[str, object]] | None = None) -> ApiDesk:
        directory = tmp_path / f"bridge{len(bridges)}"
        directory.mkdir()
        config = load_config(write_config(directory, CHANNELS + extra, server=server))
        registry = make_plugin_manager(
            load_entry_points=False,
            plugins=[("core-routing", strategies), ("test-channels", _TEST_CHANNELS), *(plugins or [])],
        )
        clock = LiveClock()
        bridge = await Bridge.create(config, registry, clock=clock)
        bridges.append(bridge)
        client = await aiohttp_client(make_app(bridge))
        return ApiDesk(bridge, client, clock)

    yield factory
    for bridge in bridges:
        await bridge.close()
