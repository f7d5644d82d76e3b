"""A real Bridge in-process, with in-memory channels, for relay tests.

The channels here are genuine ``Channel`` subclasses registered through a
plugin object, exactly as a third-party platform would be; the store, relay,
worker, commands and agents are the production code. Platform fakes for
end-to-end tests (Meta) live in tests/fakes/.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyotp

from bridge import agents as agents_repo
from bridge import hookimpl
from bridge.app.bridge import Bridge
from bridge.channel import Channel, PendingMedia
from bridge.config import load_config
from bridge.errors import DeliveryError, DeliveryUncertain, WindowClosedError
from bridge.models import (
    DeliveryReceipt,
    InboundMessage,
    OutboundMessage,
    StatusUpdate,
)
from bridge.plugins import make_plugin_manager
from bridge.relay import strategies
from tests.core.agentkit import parse_address
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
        self.receipts: dict[int, str] = {}  # delivery id -> the platform id we answered
        self.read_marks: list[tuple[str, str]] = []
        self.gate: asyncio.Event | None = None  # when set, sends wait for it (a slow platform)
        self.in_flight = 0
        self.max_in_flight = 0
        #: a status report the platform posts before its send answer reaches us (a race real webhooks win)
        self.early_report: StatusUpdate | None = None
        self.resumed: list[PendingMedia] = []  # what resume_media was handed, in order
        #: a malformed answer a buggy plugin might return instead of its receipt
        self.bad_receipt: DeliveryReceipt | None = None
        #: the next N sends reach the platform (kept in ``sent``) but their answer is lost
        self.lose_answers = 0
        #: the platform reports each message it accepts, naming our delivery id, after this many seconds
        self.reports_after: float | None = None
        self._reports: set[asyncio.Task[None]] = set()

    async def mark_read(self, sender: str, external_id: str) -> None:
        self.read_marks.append((sender, external_id))

    async def resume_media(self, pending: Sequence[PendingMedia]) -> None:
        """Fetch each pending file again (its bytes are the media id) and save it."""
        for item in pending:
            self.resumed.append(item)
            media_id = item.attachment.media_id or ""
            data = f"bytes of {media_id}".encode()
            await self.ctx.save_media(item.external_id, item.index, data, item.attachment.mime)

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        self.attempts.append(message)
        if self.gate is not None:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await self.gate.wait()
            finally:
                self.in_flight -= 1
        if self.script:
            item = self.script.pop(0)
            if item is not None:
                raise item
        self.counter += 1
        self.sent.append(message)
        if self.bad_receipt is not None:
            return self.bad_receipt
        self.receipts[message.delivery_id] = f"{self.name}-out-{self.counter}"
        if self.reports_after is not None:
            self._report_later(message.delivery_id, self.receipts[message.delivery_id], self.reports_after)
        if self.lose_answers > 0:
            self.lose_answers -= 1
            raise DeliveryUncertain("the connection dropped after the request was sent", confirmable=True)
        if self.early_report is not None:
            report, self.early_report = self.early_report, None
            await self.ctx.update_status([replace(report, external_id=self.receipts[message.delivery_id])])
        return DeliveryReceipt(external_ids=(self.receipts[message.delivery_id],))

    def _report_later(self, delivery_id: int, external_id: str, delay: float) -> None:
        """Post a ``delivered`` report naming the delivery, as WhatsApp statuses do, after ``delay``."""

        async def report() -> None:
            await asyncio.sleep(delay)
            update = StatusUpdate(channel=self.name, status="delivered", timestamp=time.time(),
                                  external_id=external_id, delivery_id=delivery_id)  # fmt: skip
            await self.ctx.update_status([update])

        task = asyncio.get_running_loop().create_task(report())
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

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


class _Plugin:
    @hookimpl
    def register_channels(self, register: Callable[[type[Channel]], None]) -> None:
        register(MemoryChannel)
        register(SecondChannel)
        register(WindowedChannel)
        register(MailChannel)


CHANNELS = "[channels.memory]\nenabled = true\n[channels.second]\nenabled = true\n"


async def make_bridge(
    tmp_path: Path,
    extra: str = "",
    *,
    channels: str = CHANNELS,
    plugins: list[tuple[str, object]] | None = None,
    server: str = "",
) -> Bridge:
    """Build and start a Bridge on a fresh (or existing) store under ``tmp_path``.

    :param server: extra ``key = value`` lines for ``[server]`` (``shutdown_timeout``, ...).
    """
    path = write_config(tmp_path, channels + extra, server=server)
    config = load_config(path)
    registry = make_plugin_manager(
        load_entry_points=False,
        plugins=[("core-routing", strategies), ("test-channels", _Plugin()), *(plugins or [])],
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
