"""A real Bridge in-process, with in-memory channels, for relay tests.

The channels here are genuine ``Channel`` subclasses registered through a
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
from bridge import hookimpl, strategies
from bridge.app import Bridge
from bridge.channel import Channel
from bridge.config import load_config
from bridge.errors import DeliveryError
from bridge.models import Address, DeliveryReceipt, InboundMessage, OutboundMessage
from bridge.plugins import make_plugin_manager
from tests.daemon import write_config


class MemoryChannel(Channel):
    """A channel that keeps what it sends; ``script`` makes sends fail in order."""

    name = "memory"
    max_text_length = 2000

    def __init__(self, config: Any, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.sent: list[OutboundMessage] = []
        self.attempts: list[OutboundMessage] = []
        self.script: list[BaseException | None] = []
        self.counter = 0

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        self.attempts.append(message)
        if self.script:
            item = self.script.pop(0)
            if item is not None:
                raise item
        self.counter += 1
        self.sent.append(message)
        return DeliveryReceipt(external_ids=(f"{self.name}-out-{self.counter}",))

    async def inbound(self, sender: str, text: str, **kwargs: Any) -> str:
        """Deliver one message as if the platform had posted it; return its id."""
        self.counter += 1
        external_id = kwargs.pop("external_id", f"{self.name}-in-{self.counter}")
        message = InboundMessage(
            channel=self.name, sender=sender, external_id=external_id, text=text,
            timestamp=kwargs.pop("timestamp", time.time()), **kwargs,
        )  # fmt: skip
        await self.ctx.deliver([message])
        return external_id

    def texts_to(self, recipient: str) -> list[str]:
        return [m.text for m in self.sent if m.recipient == recipient and not m.template]


class SecondChannel(MemoryChannel):
    """Another platform, so customers and agents can sit on different channels."""

    name = "second"


class _Plugin:
    @hookimpl
    def register_channels(self, register: Callable[[type[Channel]], None]) -> None:
        register(MemoryChannel)
        register(SecondChannel)


CHANNELS = '[channels.memory]\nenabled = true\n[channels.second]\nenabled = true\n'


async def make_bridge(tmp_path: Path, extra: str = "", *, channels: str = CHANNELS) -> Bridge:
    """Build and start a Bridge on a fresh store under ``tmp_path``."""
    path = write_config(tmp_path, channels + extra)
    config = load_config(path)
    registry = make_plugin_manager(
        load_entry_points=False, plugins=[("core-routing", strategies), ("test-channels", _Plugin())]
    )
    bridge = await Bridge.create(config, registry)
    try:
        await bridge.start()
    except BaseException:
        await bridge.close()
        raise
    return bridge


async def add_agent(bridge: Bridge, name: str, address: str, **kwargs: Any) -> tuple[agents_repo.Agent, str]:
    """Create an agent; return it and its TOTP secret."""
    secret = pyotp.random_base32(32)
    agent = await bridge.store.write(
        lambda tx: agents_repo.create_agent(tx, name=name, address=Address.parse(address), totp_secret=secret, **kwargs)
    )
    return agent, secret


async def wait_for(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, what: str = "") -> None:
    """Poll until ``predicate`` holds (the worker is asynchronous by design)."""
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


def retryable(message: str = "HTTP 500") -> DeliveryError:
    return DeliveryError(message, retryable=True, code="2")
