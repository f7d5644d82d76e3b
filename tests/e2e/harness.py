"""A real Bridge in-process, with in-memory channels, for relay tests.

The bridge and ``MemoryChannel`` come from the core's test kit
(``bridge.testing``): genuine ``Channel`` subclasses registered through a
plugin object, exactly as a third-party platform would be; the store, relay,
worker, commands and agents are the production code. Platform fakes for
end-to-end tests (Meta) live in tests/fakes/.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pyotp

from bridge import agents as agents_repo
from bridge.app.bridge import Bridge
from bridge.errors import DeliveryError, WindowClosedError
from bridge.models import DeliveryReceipt, OutboundMessage
from bridge.testing import MemoryChannel, channels_plugin, make_test_bridge
from tests.core.agentkit import parse_address


class SecondChannel(MemoryChannel):
    """Another platform, so customers and agents can sit on different channels."""

    name = "second"


class WindowedChannel(MemoryChannel):
    """A platform with a one-hour reply window, refusing free text outside it."""

    name = "windowed"
    reply_window = 3600.0

    def can_reengage(self) -> bool:
        return True  # it has a template for closed windows, like WhatsApp

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        last = message.last_inbound_at
        if not message.template and (last is None or time.time() - last >= self.reply_window):
            self.attempts.append(message)
            raise WindowClosedError("(#131047) Re-engagement message", code="131047")
        return await super().send(message)


class MailChannel(MemoryChannel):
    """Stands in for an email channel (the fall-back of closed windows)."""

    name = "email"


_TEST_CHANNELS = channels_plugin(MemoryChannel, SecondChannel, WindowedChannel, MailChannel)[1]

CHANNELS = "[channels.memory]\nenabled = true\n[channels.second]\nenabled = true\n"


async def make_bridge(
    tmp_path: Path,
    extra: str = "",
    *,
    channels: str = CHANNELS,
    plugins: list[tuple[str, object]] | None = None,
    server: str = "",
) -> Bridge:
    """Build and start a Bridge on a fresh (or existing) store under ``tmp_path`` (``bridge.testing.make_test_bridge``).

    :param server: extra ``key = value`` lines for ``[server]`` (``shutdown_timeout``, ...).
    """
    return await make_test_bridge(
        tmp_path, channels + extra, plugins=[("test-channels", _TEST_CHANNELS), *(plugins or [])], server=server
    )


async def add_agent(bridge: Bridge, name: str, address: str, **kwargs: Any) -> tuple[agents_repo.Agent, str]:
    """Create an agent; return it and its TOTP secret."""
    secret = pyotp.random_base32(32)
    agent = await bridge.store.write(
        lambda tx: agents_repo.create_agent(tx, name=name, address=parse_address(address), totp_secret=secret, **kwargs)
    )
    return agent, secret


async def wait_for(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 60.0, what: str = "") -> None:
    """Poll until ``predicate`` holds (the worker is asynchronous by design).

    The timeout is a generous safety net for a loaded machine, not a
    measurement: passing runs return as soon as the condition holds.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.01)


async def login(bridge: Bridge, channel: str, address: str, secret: str, *, timestamp: float | None = None) -> None:
    """Log an agent in the way they would: ``/login CODE`` from their identity."""
    extra = {} if timestamp is None else {"timestamp": timestamp}
    await bridge.channels[channel].inbound(address, f"/login {pyotp.TOTP(secret).now()}", **extra)  # type: ignore[attr-defined]


def outbox_rows(bridge: Bridge) -> Awaitable[list[tuple[Any, ...]]]:
    """``(id, channel, recipient_kind, status, attempts, template, hold_reason, last_error)`` of every row."""
    return bridge.store.read(
        lambda tx: tx._session.conn.execute(
            "SELECT id, channel, recipient_kind, status, attempts, template, hold_reason, last_error FROM outbox ORDER BY id"
        ).fetchall()
    )


def retryable(message: str = "HTTP 500") -> DeliveryError:
    return DeliveryError(message, retryable=True, code="2")
